import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  EMPTY_EDGE,
  edgeFromTiles,
  edgeRootHash,
  extendEdge,
  integrate,
  type TileData,
  type TreeEdge,
} from '../../src/core/integrate.js';
import { HASH_SIZE, EMPTY_ROOT, leafHash } from '../../src/core/hash.js';
import { memoryNodeReader, proveInclusion, rootHash } from '../../src/core/tree.js';
import { TILE_WIDTH, newTiles, tileNodeReader, tilePath, tilesForSize, tileWidthAt } from '../../src/core/tile.js';
import { toHex, utf8 } from '../../src/core/encoding.js';
import { HEAVY_RUNS, arbLeaves, hex, leafNHashes, loadVectors } from './helpers.js';

const V = loadVectors('tree.json');
const LEAF_N_ROOTS = new Map((V.leafN.rootsHex as Array<{ size: number; rootHex: string }>).map((r) => [r.size, r.rootHex]));

/** A tile store keyed by path, plus the history of every emission. */
class Store {
  readonly byPath = new Map<string, Uint8Array>();
  /** Latest data per (level, index), whatever its width. */
  readonly latest = new Map<string, Uint8Array>();
  add(tiles: readonly TileData[]): void {
    for (const t of tiles) {
      this.byPath.set(tilePath(t.coord), t.data);
      this.latest.set(`${t.coord.level}/${t.coord.index}`, t.data);
    }
  }
  /** Reads exactly the partial tile published for a size. */
  exact = (level: number, index: number, width: number): Uint8Array => {
    const d = this.byPath.get(tilePath({ level, index, width }));
    if (!d) throw new Error(`tile ${tilePath({ level, index, width })} was never published`);
    return d;
  };
  /** Reads the widest version stored. */
  widest = (level: number, index: number): Uint8Array => {
    const d = this.latest.get(`${level}/${index}`);
    if (!d) throw new Error(`no tile ${level}/${index}`);
    return d;
  };
}

function edgeHex(e: TreeEdge): string[][] {
  return e.levels.map((l) => l.map(toHex));
}

/** Integrates `leaves` in batches of the given sizes (the last batch takes the rest). */
function integrateInBatches(leaves: readonly Uint8Array[], cuts: readonly number[]) {
  const store = new Store();
  const emissions: TileData[][] = [];
  let edge = EMPTY_EDGE;
  let at = 0;
  const steps: Array<{ size: number; root: Uint8Array; edge: TreeEdge; tiles: TileData[] }> = [];
  for (const c of [...cuts, leaves.length]) {
    const end = Math.min(leaves.length, Math.max(at, c));
    const r = integrate(edge, leaves.slice(at, end));
    store.add(r.tiles);
    emissions.push(r.tiles);
    steps.push({ size: end, root: r.rootHash, edge: r.edge, tiles: r.tiles });
    edge = r.edge;
    at = end;
  }
  return { store, emissions, steps, edge };
}

const arbLeavesAndCuts = arbLeaves(0, 700)
  .chain((leaves) =>
    fc.tuple(fc.constant(leaves), fc.array(fc.integer({ min: 0, max: leaves.length }), { maxLength: 12 }).map((cs) => cs.sort((a, b) => a - b)))
  );

describe('integrate', () => {
  it('gives the same final tiles and root for any split of the leaves into batches', () => {
    fc.assert(
      fc.property(arbLeavesAndCuts, ([leaves, cuts]) => {
        const one = integrateInBatches(leaves, []);
        const many = integrateInBatches(leaves, cuts);
        expect(toHex(many.steps.at(-1)!.root)).toBe(toHex(one.steps.at(-1)!.root));
        expect(toHex(one.steps.at(-1)!.root)).toBe(toHex(rootHash(leaves.length, memoryNodeReader(leaves))));
        expect(edgeHex(many.edge)).toEqual(edgeHex(one.edge));
        // The widest version of every tile is the same, and is what tilesForSize lists.
        const final = (s: Store) => [...s.latest].map(([k, d]) => `${k}:${toHex(d)}`).sort();
        expect(final(many.store)).toEqual(final(one.store));
        const latestPaths = [...many.store.latest].map(([k, d]) => {
          const [level, index] = k.split('/').map(Number);
          return tilePath({ level: level!, index: index!, width: d.length / HASH_SIZE });
        });
        expect(latestPaths.sort()).toEqual(tilesForSize(leaves.length).map(tilePath).sort());
      })
    );
  });

  it('emits exactly the tiles newTiles names, each at its width for the new size, and roots that match the tree', () => {
    fc.assert(
      fc.property(arbLeavesAndCuts, ([leaves, cuts]) => {
        const node = memoryNodeReader(leaves);
        let prev = 0;
        for (const s of integrateInBatches(leaves, cuts).steps) {
          expect(s.tiles.map((t) => tilePath(t.coord)).sort()).toEqual(newTiles(prev, s.size).map(tilePath).sort());
          for (const t of s.tiles) {
            expect(t.data.length).toBe(t.coord.width * HASH_SIZE);
            expect(t.coord.width).toBe(tileWidthAt(t.coord.level, t.coord.index, s.size));
          }
          expect(toHex(s.root)).toBe(toHex(rootHash(s.size, node)));
          expect(s.edge.size).toBe(s.size);
          prev = s.size;
        }
      })
    );
  });

  it('never emits a full tile twice, and every partial tile is a prefix of every later version of it', () => {
    fc.assert(
      fc.property(arbLeavesAndCuts, ([leaves, cuts]) => {
        const seen = new Map<string, Uint8Array>(); // (level, index) → data emitted last
        const full = new Set<string>();
        for (const batch of integrateInBatches(leaves, cuts).emissions) {
          for (const t of batch) {
            const key = `${t.coord.level}/${t.coord.index}`;
            expect(full.has(key), `full tile ${key} emitted again`).toBe(false);
            const before = seen.get(key);
            if (before) {
              expect(t.data.length).toBeGreaterThan(before.length);
              expect(toHex(t.data.subarray(0, before.length))).toBe(toHex(before));
            }
            seen.set(key, t.data);
            if (t.coord.width === TILE_WIDTH) full.add(key);
          }
        }
      })
    );
  });

  it('emits nothing and keeps the root when given no leaves', () => {
    const a = integrate(EMPTY_EDGE, []);
    expect(a.tiles).toEqual([]);
    expect(a.rootHash).toEqual(EMPTY_ROOT);
    const b = integrate(integrate(EMPTY_EDGE, leafNHashes(300)).edge, []);
    expect(b.tiles).toEqual([]);
    expect(toHex(b.rootHash)).toBe(toHex(rootHash(300, memoryNodeReader(leafNHashes(300)))));
  });

  it('does not modify the edge it was given', () => {
    const r1 = integrate(EMPTY_EDGE, leafNHashes(300));
    const before = edgeHex(r1.edge);
    integrate(r1.edge, leafNHashes(600).slice(300));
    expect(edgeHex(r1.edge)).toEqual(before);
    expect(EMPTY_EDGE.levels).toEqual([]);
  });

  it('throws RangeError for a leaf hash that is not 32 bytes', () => {
    expect(() => integrate(EMPTY_EDGE, [new Uint8Array(31)])).toThrow(RangeError);
  });

  describe('the "leaf %d" tree (specs.md §6.9)', () => {
    const leaves = leafNHashes(70000);
    const checkpoints = [0, 1, 255, 256, 257, 65535, 65536, 65537, 70000];

    it('reaches the vector root at sizes 0, 1, 255, 256, 257, 65535, 65536, 65537 and 70000', () => {
      const run = integrateInBatches(leaves, checkpoints.slice(0, -1));
      for (const s of run.steps) {
        const expected = s.size === 0 ? toHex(EMPTY_ROOT) : LEAF_N_ROOTS.get(s.size);
        expect(toHex(s.root), `size ${s.size}`).toBe(expected);
        expect(toHex(edgeRootHash(s.edge))).toBe(expected);
      }
    });

    it('reaches the same roots and tiles in uneven batches, and serves proofs from the tiles', () => {
      const cuts: number[] = [];
      for (let at = 0, step = 1; at < 70000; step = (step * 7 + 3) % 997, at += step) cuts.push(at);
      const run = integrateInBatches(leaves, [...cuts, ...checkpoints].sort((a, b) => a - b));
      for (const s of run.steps) {
        const expected = LEAF_N_ROOTS.get(s.size);
        if (expected) expect(toHex(s.root), `size ${s.size}`).toBe(expected);
      }
      const store = run.store;
      expect([...store.latest.keys()]).toHaveLength(tilesForSize(70000).length);
      const t0 = store.byPath.get('tile/0/000')!;
      expect(toHex(t0.subarray(0, 32))).toBe(V.leafN.leafHashesHex[0]);
      expect(toHex(t0.subarray(32, 64))).toBe(V.leafN.leafHashesHex[1]);
      expect(toHex(store.byPath.get('tile/1/000')!.subarray(0, 32))).toBe(LEAF_N_ROOTS.get(256));
      for (const p of ['tile/0/273.p/112', 'tile/1/001.p/17', 'tile/2/000.p/1']) expect(store.byPath.has(p), p).toBe(true);

      const reader = tileNodeReader(store.widest);
      expect(toHex(rootHash(70000, reader))).toBe(LEAF_N_ROOTS.get(70000));
      const [v] = V.leafN.inclusion as Array<{ leafIdx: number; treeSize: number; proofHex: string[] }>;
      expect(proveInclusion(v!.leafIdx, v!.treeSize, reader).map(toHex)).toEqual(v!.proofHex);
    });
  });
});

describe('extendEdge', () => {
  it('gives integrate()\'s edge and full tiles in any batching, and the root once at the end', () => {
    fc.assert(
      fc.property(arbLeavesAndCuts, ([leaves, cuts]) => {
        let edge: TreeEdge = EMPTY_EDGE;
        let ref: TreeEdge = EMPTY_EDGE;
        let from = 0;
        for (const to of [...cuts, leaves.length]) {
          const x = extendEdge(edge, leaves.slice(from, to));
          const r = integrate(ref, leaves.slice(from, to));
          expect(edgeHex(x.edge)).toEqual(edgeHex(r.edge));
          const full = r.tiles.filter((t) => t.coord.width === TILE_WIDTH);
          expect(x.fullTiles.map((t) => `${tilePath(t.coord)}:${toHex(t.data)}`)).toEqual(full.map((t) => `${tilePath(t.coord)}:${toHex(t.data)}`));
          edge = x.edge;
          ref = r.edge;
          from = to;
        }
        expect(toHex(edgeRootHash(edge))).toBe(toHex(rootHash(leaves.length, memoryNodeReader(leaves))));
      })
    );
  });
});

describe('edgeFromTiles', () => {
  it('rebuilds the edge and root from the partial tiles published for each size', () => {
    fc.assert(
      fc.property(arbLeavesAndCuts, ([leaves, cuts]) => {
        const run = integrateInBatches(leaves, cuts);
        for (const s of run.steps) {
          const edge = edgeFromTiles(s.size, run.store.exact);
          expect(edge.size).toBe(s.size);
          expect(edgeHex(edge)).toEqual(edgeHex(s.edge));
          expect(toHex(edgeRootHash(edge))).toBe(toHex(s.root));
        }
      })
    );
  });

  it('rebuilds the edge of any earlier size from the widest tiles stored later', () => {
    const leaves = leafNHashes(70000);
    const run = integrateInBatches(leaves, [256, 65536]);
    const node = memoryNodeReader(leaves);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70000 }), (size) => {
        const edge = edgeFromTiles(size, run.store.widest);
        expect(toHex(edgeRootHash(edge))).toBe(toHex(rootHash(size, node)));
      }),
      { numRuns: HEAVY_RUNS }
    );
    for (const [size, root] of LEAF_N_ROOTS) expect(toHex(edgeRootHash(edgeFromTiles(size, run.store.widest)))).toBe(root);
  });

  it('lets integration continue from a rebuilt edge exactly as from the in-memory one', () => {
    fc.assert(
      fc.property(arbLeaves(0, 600), arbLeaves(0, 300), (a, b) => {
        const first = integrate(EMPTY_EDGE, a);
        const store = new Store();
        store.add(first.tiles);
        const rebuilt = edgeFromTiles(a.length, store.exact);
        const x = integrate(first.edge, b);
        const y = integrate(rebuilt, b);
        expect(toHex(y.rootHash)).toBe(toHex(x.rootHash));
        expect(y.tiles.map((t) => `${tilePath(t.coord)}:${toHex(t.data)}`)).toEqual(x.tiles.map((t) => `${tilePath(t.coord)}:${toHex(t.data)}`));
      }),
      { numRuns: HEAVY_RUNS }
    );
  });

  it('reads nothing for the empty tree and only the partial tiles otherwise', () => {
    expect(edgeFromTiles(0, () => {
      throw new Error('read');
    })).toEqual({ size: 0, levels: [] });
    const reads: string[] = [];
    const run = integrateInBatches(leafNHashes(70000), []);
    edgeFromTiles(70000, (l, i, w) => {
      reads.push(tilePath({ level: l, index: i, width: w }));
      return run.store.exact(l, i, w);
    });
    expect(reads).toEqual(['tile/0/273.p/112', 'tile/1/001.p/17', 'tile/2/000.p/1']);
  });

  it('throws RangeError when a tile is narrower than the size needs', () => {
    const leaves = leafNHashes(10);
    const run = integrateInBatches(leaves, []);
    expect(() => edgeFromTiles(10, () => run.store.byPath.get('tile/0/000.p/10')!.subarray(0, 9 * 32))).toThrow(RangeError);
    expect(() => edgeFromTiles(-1, run.store.exact)).toThrow(RangeError);
  });
});

describe('edgeRootHash', () => {
  it('is the empty root for the empty edge', () => {
    expect(edgeRootHash(EMPTY_EDGE)).toEqual(EMPTY_ROOT);
  });
  it('equals rootHash for every size 1–600', () => {
    const leaves = Array.from({ length: 600 }, (_, i) => leafHash(utf8(`e${i}`)));
    const node = memoryNodeReader(leaves);
    let edge = EMPTY_EDGE;
    for (let n = 1; n <= 600; n++) {
      edge = integrate(edge, [leaves[n - 1]!]).edge;
      expect(toHex(edgeRootHash(edge)), `size ${n}`).toBe(toHex(rootHash(n, node)));
    }
  });
  it('matches the vector root of size 65536, whose edge is one hash at level 2', () => {
    const { edge } = integrate(EMPTY_EDGE, leafNHashes(65536));
    expect(edge.levels.map((l) => l.length)).toEqual([0, 0, 1]);
    expect(toHex(edgeRootHash(edge))).toBe(LEAF_N_ROOTS.get(65536));
    expect(toHex(edge.levels[2]![0]!)).toBe(LEAF_N_ROOTS.get(65536));
    expect(hex(LEAF_N_ROOTS.get(65536)!)).toHaveLength(32);
  });
});
