/**
 * An in-memory cache of hash tiles with their interior nodes, so proofs for recent entries
 * cost lookups rather than re-hashing up to 255 nodes per tile. Full tiles are immutable
 * and cached as they are; a partial tile is replaced whenever a wider one arrives.
 */
import { HASH_SIZE, nodeHash } from '../core/hash.js';
import { TILE_HEIGHT, nodeTileAddress } from '../core/tile.js';
import type { NodeReader } from '../core/tree.js';

interface CachedTile {
  readonly data: Uint8Array;
  readonly width: number;
  /** levels[h][i]: the i-th complete node of height h inside the tile (h = 0 … 8). */
  levels?: Uint8Array[][];
}

function buildLevels(data: Uint8Array, width: number): Uint8Array[][] {
  const levels: Uint8Array[][] = [[]];
  for (let i = 0; i < width; i++) levels[0]!.push(data.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  for (let h = 1; h <= TILE_HEIGHT; h++) {
    const below = levels[h - 1]!;
    const row: Uint8Array[] = [];
    for (let i = 0; i + 1 < below.length; i += 2) row.push(nodeHash(below[i]!, below[i + 1]!));
    levels.push(row);
  }
  return levels;
}

/** A node was asked of a tile the cache does not hold (at that width). */
export class TileMissError extends RangeError {
  override name = 'TileMissError';
}

export class TileCache {
  private readonly tiles = new Map<string, CachedTile>();

  constructor(private readonly maxTiles = 8192) {}

  static key(level: number, index: number): string {
    return `${level}/${index}`;
  }

  /** Stores tile data if it is wider than what the cache holds. */
  put(level: number, index: number, data: Uint8Array): void {
    const key = TileCache.key(level, index);
    const width = data.length / HASH_SIZE;
    const old = this.tiles.get(key);
    if (old && old.width >= width) return;
    this.tiles.delete(key);
    this.tiles.set(key, { data, width });
    if (this.tiles.size > this.maxTiles) {
      // Evict the oldest insertion; right-edge tiles are re-put on every integration.
      const first = this.tiles.keys().next().value;
      if (first !== undefined) this.tiles.delete(first);
    }
  }

  get(level: number, index: number): Uint8Array | undefined {
    return this.tiles.get(TileCache.key(level, index))?.data;
  }

  has(level: number, index: number, width = 1): boolean {
    const t = this.tiles.get(TileCache.key(level, index));
    return t !== undefined && t.width >= width;
  }

  /** A NodeReader over the cached tiles; throws RangeError for a node it does not hold. */
  readonly node: NodeReader = (level, index) => {
    const a = nodeTileAddress(level, index);
    const t = this.tiles.get(TileCache.key(a.tileLevel, a.tileIndex));
    if (!t) throw new TileMissError(`tile ${a.tileLevel}/${a.tileIndex} is not cached`);
    if (!t.levels) t.levels = buildLevels(t.data, t.width);
    const h = t.levels[level % TILE_HEIGHT]![a.offset / a.count];
    if (!h) throw new TileMissError(`tile ${a.tileLevel}/${a.tileIndex} of width ${t.width} lacks node ${level}/${index}`);
    return h;
  };

  get size(): number {
    return this.tiles.size;
  }
}
