/**
 * Integration: appending leaf hashes to a tree kept as tiles, working only from the right
 * edge of the tree (the last, partial tile of every level), never from a full rebuild.
 * Pure: the caller loads the edge from storage and stores the tiles this returns.
 */
import { EMPTY_ROOT, HASH_SIZE, nodeHash } from './hash.js';
import { checkSize, concatBytes } from './encoding.js';
import { TILE_WIDTH, hashRun, levelSpan, tileWidthAt, type TileCoord } from './tile.js';
import { perfectSubtrees } from './tree.js';

/**
 * The right edge of a tree of `size` leaves: `levels[L]` holds the hashes of the partial
 * tile at level L (0–255 of them; empty when the level has no partial tile).
 */
export interface TreeEdge {
  readonly size: number;
  readonly levels: readonly (readonly Uint8Array[])[];
}

export interface TileData {
  readonly coord: TileCoord;
  /** Concatenated hashes, width × 32 bytes. */
  readonly data: Uint8Array;
}

export interface IntegrationResult {
  readonly edge: TreeEdge;
  /** Every tile that is new or wider, each once, at its final width. */
  readonly tiles: TileData[];
  readonly rootHash: Uint8Array;
}

export const EMPTY_EDGE: TreeEdge = { size: 0, levels: [] };

/**
 * Builds the edge of a tree of `size` from a reader of its partial tiles.
 * `readPartial(level, index, width)` must return at least `width` hashes of that tile.
 */
export function edgeFromTiles(size: number, readPartial: (level: number, index: number, width: number) => Uint8Array): TreeEdge {
  checkSize(size, 'size');
  const levels: Uint8Array[][] = [];
  for (let level = 0; Math.floor(size / levelSpan(level)) > 0; level++) {
    const index = Math.floor(size / levelSpan(level + 1));
    const width = tileWidthAt(level, index, size);
    const hashes: Uint8Array[] = [];
    if (width > 0) {
      const data = readPartial(level, index, width);
      if (data.length < width * HASH_SIZE) throw new RangeError(`tile ${level}/${index} is narrower than ${width}`);
      for (let i = 0; i < width; i++) hashes.push(data.slice(i * HASH_SIZE, (i + 1) * HASH_SIZE));
    }
    levels.push(hashes);
  }
  return { size, levels };
}

/** The root hash of the tree whose edge this is. */
export function edgeRootHash(edge: TreeEdge): Uint8Array {
  if (edge.size === 0) return EMPTY_ROOT;
  const subtrees: Uint8Array[] = [];
  for (let level = edge.levels.length - 1; level >= 0; level--) {
    const hashes = edge.levels[level]!;
    if (hashes.length === 0) continue;
    const data = concatBytes(...hashes);
    for (const [h, i] of perfectSubtrees(0, hashes.length)) {
      const count = 2 ** h;
      subtrees.push(hashRun(data, i * count, count));
    }
  }
  let r = subtrees[subtrees.length - 1]!;
  for (let i = subtrees.length - 2; i >= 0; i--) r = nodeHash(subtrees[i]!, r);
  return r;
}

/**
 * Appends `leafHashes` to the tree with edge `edge`. Returns the new edge, every tile
 * that changed (full tiles once complete; the partial tile of each touched level at its
 * new width), and the new root hash.
 */
export function integrate(edge: TreeEdge, leafHashes: readonly Uint8Array[]): IntegrationResult {
  const { edge: next, fullTiles, touched } = extendEdge(edge, leafHashes);
  const tiles = [...fullTiles];
  for (const level of touched) {
    const hashes = next.levels[level]!;
    if (hashes.length === 0) continue;
    tiles.push({
      coord: { level, index: Math.floor(next.size / levelSpan(level + 1)), width: hashes.length },
      data: concatBytes(...hashes),
    });
  }
  return { edge: next, tiles, rootHash: edgeRootHash(next) };
}

/**
 * The cheap part of {@link integrate}: the new edge and the tiles that became full, without
 * the partial tiles' data or the root (for a reader that integrates many batches and needs
 * the root once, at the end). `touched` lists the levels that changed, in increasing order.
 */
export function extendEdge(edge: TreeEdge, leafHashes: readonly Uint8Array[]): { edge: TreeEdge; fullTiles: TileData[]; touched: number[] } {
  const levels = edge.levels.map((l) => [...l]);
  const counts = levels.map((_, level) => Math.floor(edge.size / levelSpan(level)));
  const full = new Map<string, TileData>();
  const touched = new Set<number>();

  const add = (level: number, h: Uint8Array): void => {
    if (h.length !== HASH_SIZE) throw new RangeError(`hash of ${h.length} bytes`);
    if (levels.length === level) {
      levels.push([]);
      counts.push(0);
    }
    const hashes = levels[level]!;
    const index = Math.floor(counts[level]! / TILE_WIDTH);
    hashes.push(h);
    counts[level]!++;
    touched.add(level);
    if (hashes.length === TILE_WIDTH) {
      const data = concatBytes(...hashes);
      full.set(`${level}/${index}`, { coord: { level, index, width: TILE_WIDTH }, data });
      levels[level] = [];
      // Only full tiles are hashed into the level above (c2sp.org/tlog-tiles).
      add(level + 1, hashRun(data, 0, TILE_WIDTH));
    }
  };

  for (const h of leafHashes) add(0, h);

  const next: TreeEdge = { size: edge.size + leafHashes.length, levels };
  return { edge: next, fullTiles: [...full.values()], touched: [...touched].sort((a, b) => a - b) };
}
