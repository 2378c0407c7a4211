import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  TILE_WIDTH,
  MAX_TILE_LEVEL,
  levelSpan,
  formatTileIndex,
  tilePath,
  parseTilePath,
  tileWidthAt,
  tilesForSize,
  newTiles,
  hashRun,
  nodeTileAddress,
  tileNodeReader,
  type TileCoord,
} from '../../src/core/tile.js';
import { memoryNodeReader, rootHash } from '../../src/core/tree.js';
import { MalformedError } from '../../src/core/errors.js';
import { concatBytes, toHex, utf8 } from '../../src/core/encoding.js';
import { leafHash } from '../../src/core/hash.js';
import { HEAVY_RUNS, arbLeaves, leafNHashes, loadVectors } from './helpers.js';

const V = loadVectors('tiles.json');

interface PathVector { level: number | 'entries'; index: number; width: number; path: string; source: string }
const validPaths = V.validPaths as PathVector[];

/**
 * Brute force, independent of the formulas in tile.ts: a hash exists at level l, position
 * k iff its 256^l leaves all exist, and a tile's width is the number of its positions that
 * exist. Tile height h is a parameter so that go-tlog's height-10 vectors can check it.
 */
function bruteTiles(size: number, h = 8): Map<string, number> {
  const width = 2 ** h;
  const out = new Map<string, number>();
  for (let level = 0; (2 ** h) ** level <= size; level++) {
    const span = (2 ** h) ** level;
    if (size <= 300000) {
      for (let k = 0; (k + 1) * span <= size; k++) {
        const key = `${level}/${Math.floor(k / width)}`;
        out.set(key, (out.get(key) ?? 0) + 1);
      }
    } else {
      // Too many hashes to count one by one (go-tlog's 49516586): count per tile instead.
      for (let t = 0; t * width * span < size; t++) {
        let w = 0;
        while (w < width && (t * width + w + 1) * span <= size) w++;
        if (w > 0) out.set(`${level}/${t}`, w);
      }
    }
  }
  return out;
}

function bruteNewTileCount(oldSize: number, newSize: number, h: number): number {
  const a = bruteTiles(oldSize, h);
  let n = 0;
  for (const [k, w] of bruteTiles(newSize, h)) if (a.get(k) !== w) n++;
  return n;
}

const arbCoord: fc.Arbitrary<TileCoord> = fc.record({
  level: fc.oneof(fc.integer({ min: 0, max: MAX_TILE_LEVEL }), fc.constant('entries' as const)),
  index: fc.oneof(fc.nat({ max: 2000 }), fc.maxSafeNat()),
  width: fc.integer({ min: 1, max: TILE_WIDTH }),
});

describe('levelSpan', () => {
  it('is 256^level', () => {
    expect(levelSpan(0)).toBe(1);
    expect(levelSpan(1)).toBe(256);
    expect(levelSpan(2)).toBe(65536);
    expect(levelSpan(6)).toBe(2 ** 48);
  });
});

describe('formatTileIndex', () => {
  it('encodes the spec examples (specs.md §2.3)', () => {
    for (const v of V.formatTileIndex as Array<{ index: number; encoded: string }>) expect(formatTileIndex(v.index)).toBe(v.encoded);
  });
  it('pads every group to 3 digits and prefixes all but the last with x', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        const s = formatTileIndex(n);
        const parts = s.split('/');
        parts.forEach((p, i) => expect(p).toMatch(i === parts.length - 1 ? /^[0-9]{3}$/ : /^x[0-9]{3}$/));
        if (parts.length > 1) expect(parts[0]).not.toBe('x000');
        expect(BigInt(parts.map((p) => p.replace('x', '')).join(''))).toBe(BigInt(n));
      })
    );
  });
  it('throws RangeError for a negative, fractional or unsafe index', () => {
    for (const n of [-1, 0.5, 2 ** 53, NaN]) expect(() => formatTileIndex(n)).toThrow(RangeError);
  });
});

describe('tilePath', () => {
  it('formats every valid path vector', () => {
    for (const v of validPaths) expect(tilePath({ level: v.level, index: v.index, width: v.width }), v.source).toBe(v.path);
  });
  it('formats entry bundle paths from an entry index and tree size (tessera EntriesPathForLogIndex)', () => {
    for (const v of V.entriesPaths as Array<{ seq: number; size: number; path: string }>) {
      const index = Math.floor(v.seq / TILE_WIDTH);
      expect(tilePath({ level: 'entries', index, width: tileWidthAt('entries', index, v.size) })).toBe(v.path);
    }
  });
  it('throws RangeError for a width outside 1–256, a level outside 0–63, or a bad index', () => {
    for (const t of [
      { level: 0, index: 0, width: 0 },
      { level: 0, index: 0, width: 257 },
      { level: 0, index: 0, width: 1.5 },
      { level: 64, index: 0, width: 1 },
      { level: -1, index: 0, width: 1 },
      { level: 0.5, index: 0, width: 1 },
      { level: 0, index: -1, width: 1 },
      { level: 'entries' as const, index: 2 ** 53, width: 1 },
    ]) {
      expect(() => tilePath(t), JSON.stringify(t)).toThrow(RangeError);
    }
  });
});

describe('parseTilePath', () => {
  it('parses every valid path vector back to its coordinates', () => {
    for (const v of validPaths) expect(parseTilePath(v.path), v.source).toEqual({ level: v.level, index: v.index, width: v.width });
  });
  it('rejects every invalid and non-canonical path with MalformedError', () => {
    for (const v of V.invalidPaths as Array<{ path: string; why: string }>) {
      expect(() => parseTilePath(v.path), `${JSON.stringify(v.path)}: ${v.why}`).toThrow(MalformedError);
    }
  });
  it('rejects indices above 2^53 − 1 with MalformedError (tessera accepts them as uint64)', () => {
    for (const v of V.beyondSafeInteger as Array<{ path: string }>) expect(() => parseTilePath(v.path), v.path).toThrow(MalformedError);
  });
  it('inverts tilePath for any coordinates', () => {
    fc.assert(
      fc.property(arbCoord, (t) => {
        expect(parseTilePath(tilePath(t))).toEqual(t);
      })
    );
  });
  it('either throws MalformedError or returns coordinates that format back to the input, for any string', () => {
    const alphabet = fc.constantFrom(...'tile/entries0123456789x.p/-+ '.split(''));
    const near = fc.array(alphabet, { maxLength: 30 }).map((cs) => 'tile/' + cs.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string(), near), (s) => {
        let t: TileCoord;
        try {
          t = parseTilePath(s);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
          return;
        }
        expect(tilePath(t)).toBe(s);
      }),
      { numRuns: Math.max(1000, 10 * HEAVY_RUNS) }
    );
  });
  it('rejects every single-character change of a valid path that is not itself canonical', () => {
    const chars = '0123456789xp./-+ ePX\n'.split('');
    for (const path of ['tile/15/x123/x456/789.p/41', 'tile/entries/x003/x057/500', 'tile/0/000']) {
      for (let i = 0; i < path.length; i++) {
        for (const c of chars) {
          const s = path.slice(0, i) + c + path.slice(i + 1);
          if (s === path) continue;
          let t: TileCoord | undefined;
          try {
            t = parseTilePath(s);
          } catch (e) {
            expect(e).toBeInstanceOf(MalformedError);
          }
          if (t) expect(tilePath(t)).toBe(s);
        }
      }
    }
  });
});

describe('tileWidthAt', () => {
  it('gives the widths of the size-70000 example (specs.md §2.5)', () => {
    expect(tileWidthAt(0, 272, 70000)).toBe(256);
    expect(tileWidthAt(0, 273, 70000)).toBe(112);
    expect(tileWidthAt(0, 274, 70000)).toBe(0);
    expect(tileWidthAt('entries', 273, 70000)).toBe(112);
    expect(tileWidthAt(1, 0, 70000)).toBe(256);
    expect(tileWidthAt(1, 1, 70000)).toBe(17);
    expect(tileWidthAt(2, 0, 70000)).toBe(1);
    expect(tileWidthAt(3, 0, 70000)).toBe(0);
  });
  it('agrees with the brute-force count for random sizes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 140000 }), (size) => {
        const brute = bruteTiles(size);
        for (let level = 0; level < 3; level++) {
          for (let index = 0; index < 300; index++) {
            expect(tileWidthAt(level, index, size)).toBe(brute.get(`${level}/${index}`) ?? 0);
          }
        }
      }),
      { numRuns: HEAVY_RUNS }
    );
  });
});

describe('tilesForSize', () => {
  it('lists exactly the tiles of the spec examples for sizes 70000 and 256 (specs.md §2.5, §6.9)', () => {
    for (const v of V.tilesForSize as Array<{ size: number; tiles: string[]; bundles: string[] }>) {
      const tiles = tilesForSize(v.size);
      expect(tiles.map(tilePath)).toEqual(v.tiles);
      const bundles = tiles.filter((t) => t.level === 0).map((t) => tilePath({ ...t, level: 'entries' }));
      expect(bundles).toEqual(v.bundles);
    }
  });
  it('returns nothing for the empty tree', () => {
    expect(tilesForSize(0)).toEqual([]);
  });
  it('never lists an empty tile, and agrees with the brute force for random sizes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 140000 }), (size) => {
        const tiles = tilesForSize(size);
        const brute = bruteTiles(size);
        expect(tiles).toHaveLength(brute.size);
        for (const t of tiles) {
          expect(t.width).toBeGreaterThan(0);
          expect(brute.get(`${t.level}/${t.index}`)).toBe(t.width);
        }
      }),
      { numRuns: HEAVY_RUNS }
    );
  });
  it('lists 65536 + 256 full tiles, one full level-2 tile and a level-3 partial tile for 2^24 leaves', () => {
    const tiles = tilesForSize(2 ** 24);
    expect(tiles.filter((t) => t.level === 0)).toHaveLength(65536);
    expect(tiles.filter((t) => t.level === 1)).toHaveLength(256);
    expect(tiles.filter((t) => t.level === 2).map(tilePath)).toEqual(['tile/2/000']);
    expect(tiles.filter((t) => t.level === 3).map(tilePath)).toEqual(['tile/3/000.p/1']);
  });
  it('throws RangeError for a negative or unsafe size', () => {
    expect(() => tilesForSize(-1)).toThrow(RangeError);
    expect(() => tilesForSize(2 ** 53)).toThrow(RangeError);
  });
});

describe('newTiles', () => {
  it('the brute-force model reproduces go-tlog TestNewTilesForSize at height 10', () => {
    const g = V.newTiles.goTlogHeight10;
    for (const c of g.cases as Array<{ oldSize: number; newSize: number; count: number }>) {
      expect(bruteNewTileCount(c.oldSize, c.newSize, g.height), `${c.oldSize}→${c.newSize}`).toBe(c.count);
    }
  });
  it('gives the derived height-8 counts for the same pairs and more', () => {
    for (const c of V.newTiles.height8.cases as Array<{ oldSize: number; newSize: number; count: number }>) {
      expect(newTiles(c.oldSize, c.newSize), `${c.oldSize}→${c.newSize}`).toHaveLength(c.count);
      if (c.newSize <= 200000) expect(bruteNewTileCount(c.oldSize, c.newSize, 8)).toBe(c.count);
    }
  });
  it('equals the set difference of tilesForSize(new) and tilesForSize(old) for random sizes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 140000 }), fc.integer({ min: 0, max: 140000 }), (a, b) => {
        const [o, n] = a <= b ? [a, b] : [b, a];
        const old = new Set(tilesForSize(o).map(tilePath));
        const expected = tilesForSize(n).map(tilePath).filter((p) => !old.has(p));
        expect(newTiles(o, n).map(tilePath).sort()).toEqual(expected.sort());
      }),
      { numRuns: HEAVY_RUNS }
    );
  });
  it('lists the new tiles exactly when the tree crosses 2^40 leaves', () => {
    expect(newTiles(2 ** 40 - 1, 2 ** 40).map(tilePath)).toEqual([
      tilePath({ level: 0, index: 2 ** 32 - 1, width: 256 }),
      tilePath({ level: 1, index: 2 ** 24 - 1, width: 256 }),
      tilePath({ level: 2, index: 2 ** 16 - 1, width: 256 }),
      tilePath({ level: 3, index: 2 ** 8 - 1, width: 256 }),
      'tile/4/000',
      'tile/5/000.p/1',
    ]);
    expect(newTiles(2 ** 40, 2 ** 40 + 1).map(tilePath)).toEqual([tilePath({ level: 0, index: 2 ** 32, width: 1 })]);
    expect(tilePath({ level: 0, index: 2 ** 32, width: 1 })).toBe('tile/0/x004/x294/x967/296.p/1');
  });
  it('returns nothing when the size does not change', () => {
    for (const n of [0, 1, 256, 70000]) expect(newTiles(n, n)).toEqual([]);
  });
  it('throws RangeError when the old size exceeds the new size', () => {
    expect(() => newTiles(2, 1)).toThrow(RangeError);
    expect(() => newTiles(-1, 1)).toThrow(RangeError);
  });
});

describe('hashRun', () => {
  it('is the Merkle root of a power-of-two run of hashes', () => {
    const leaves = leafNHashes(256);
    const data = concatBytes(...leaves);
    const node = memoryNodeReader(leaves);
    for (let level = 0; level <= 8; level++) {
      const count = 2 ** level;
      for (let i = 0; i < 256 / count; i += Math.max(1, 64 / count)) {
        expect(toHex(hashRun(data, i * count, count))).toBe(toHex(node(level, i)));
      }
    }
    expect(toHex(hashRun(data, 0, 256))).toBe(toHex(rootHash(256, node)));
  });
});

describe('nodeTileAddress', () => {
  it('matches the tessera NodeCoordsToTileAddress vectors', () => {
    for (const c of V.nodeTileAddress.cases as Array<Record<string, number>>) {
      expect(nodeTileAddress(c.level!, c.index!)).toEqual({
        tileLevel: c.tileLevel,
        tileIndex: c.tileIndex,
        offset: c.nodeIndex! * 2 ** c.nodeLevel!,
        count: 2 ** c.nodeLevel!,
      });
    }
  });
  it('places every node inside one tile, at the run of base hashes below it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 52 }), fc.maxSafeNat(), (level, i) => {
        const index = Math.floor(i / 2 ** level);
        const a = nodeTileAddress(level, index);
        expect(a.tileLevel).toBe(Math.floor(level / 8));
        expect(a.count).toBe(2 ** (level % 8));
        expect(a.offset % a.count).toBe(0);
        expect(a.offset + a.count).toBeLessThanOrEqual(TILE_WIDTH);
        // The node's first base hash is hash number tileIndex·256 + offset of its level.
        expect(BigInt(a.tileIndex) * 256n + BigInt(a.offset)).toBe(BigInt(index) * 2n ** BigInt(level % 8));
      })
    );
  });
});

/** Every tile of a tree as its concatenated hashes, built from memoryNodeReader. */
function tilesFromMemory(leaves: Uint8Array[]): Map<string, Uint8Array> {
  const node = memoryNodeReader(leaves);
  const out = new Map<string, Uint8Array>();
  for (const t of tilesForSize(leaves.length)) {
    if (t.level === 'entries') continue;
    const hashes: Uint8Array[] = [];
    for (let i = 0; i < t.width; i++) hashes.push(node(8 * t.level, t.index * TILE_WIDTH + i));
    out.set(`${t.level}/${t.index}`, concatBytes(...hashes));
  }
  return out;
}

describe('tileNodeReader', () => {
  it('agrees with memoryNodeReader for every node of random trees', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1100 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (n, seed) => {
        const leaves = Array.from({ length: n }, (_, i) => leafHash(utf8(`${seed}/${i}`)));
        const node = memoryNodeReader(leaves);
        const tiles = tilesFromMemory(leaves);
        const reader = tileNodeReader((level, index) => {
          const d = tiles.get(`${level}/${index}`);
          if (!d) throw new Error(`no tile ${level}/${index}`);
          return d;
        });
        for (let level = 0; 2 ** level <= n; level++) {
          for (let index = 0; (index + 1) * 2 ** level <= n; index++) {
            expect(toHex(reader(level, index))).toBe(toHex(node(level, index)));
          }
        }
        expect(toHex(rootHash(n, reader))).toBe(toHex(rootHash(n, node)));
      }),
      { numRuns: HEAVY_RUNS }
    );
  });
  it('gives the root of random trees of up to 600 leaves', () => {
    fc.assert(
      fc.property(arbLeaves(1, 600), (leaves) => {
        const tiles = tilesFromMemory(leaves);
        const reader = tileNodeReader((level, index) => tiles.get(`${level}/${index}`)!);
        expect(toHex(rootHash(leaves.length, reader))).toBe(toHex(rootHash(leaves.length, memoryNodeReader(leaves))));
      }),
      { numRuns: HEAVY_RUNS }
    );
  });
  it('throws RangeError when the stored tile is too narrow for the node', () => {
    const leaves = leafNHashes(10);
    const reader = tileNodeReader(() => concatBytes(...leaves));
    expect(() => reader(0, 10)).toThrow(RangeError);
    expect(() => reader(2, 2)).toThrow(RangeError);
    expect(toHex(reader(3, 0))).toBe(toHex(memoryNodeReader(leaves)(3, 0)));
  });
});
