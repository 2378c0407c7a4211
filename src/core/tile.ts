/**
 * C2SP tlog-tiles: tile coordinates, paths, and reading tree nodes out of tiles.
 *
 * A tile at level L, index N holds up to 256 hashes; hash i is the root of the perfect
 * subtree of 256^L leaves starting at leaf (N·256 + i)·256^L. A full tile has width 256,
 * a partial tile 1–255. Partial tiles are never hashed into the level above.
 */
import { HASH_SIZE, nodeHash } from './hash.js';
import { checkSize, parseDecimal, quote } from './encoding.js';
import { MalformedError } from './errors.js';
import type { NodeReader, RangeMemo } from './tree.js';

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;
/** c2sp.org/tlog-tiles: levels are 0–63. */
export const MAX_TILE_LEVEL = 63;

/** A tile or entry bundle: `level` is a number for hash tiles, 'entries' for bundles. */
export interface TileCoord {
  readonly level: number | 'entries';
  readonly index: number;
  /** 1–256; 256 is a full tile. */
  readonly width: number;
}

/** 256^level as a number (exact for the levels a safe-integer tree reaches). */
export function levelSpan(level: number): number {
  return TILE_WIDTH ** level;
}

/**
 * Encodes a tile index as 3-digit path elements, all but the last prefixed with "x":
 * 1234067 → "x001/x234/067" (c2sp.org/tlog-tiles).
 */
export function formatTileIndex(index: number): string {
  checkSize(index, 'tile index');
  let n = index;
  let s = String(n % 1000).padStart(3, '0');
  n = Math.floor(n / 1000);
  while (n > 0) {
    s = 'x' + String(n % 1000).padStart(3, '0') + '/' + s;
    n = Math.floor(n / 1000);
  }
  return s;
}

/** The path of a tile below the log prefix: "tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]". */
export function tilePath(t: TileCoord): string {
  if (t.level !== 'entries') {
    checkSize(t.level, 'tile level');
    if (t.level > MAX_TILE_LEVEL) throw new RangeError(`tile level ${t.level} above ${MAX_TILE_LEVEL}`);
  }
  if (!Number.isInteger(t.width) || t.width < 1 || t.width > TILE_WIDTH) {
    throw new RangeError(`tile width must be 1–${TILE_WIDTH}, got ${t.width}`);
  }
  const p = `tile/${t.level}/${formatTileIndex(t.index)}`;
  return t.width === TILE_WIDTH ? p : `${p}.p/${t.width}`;
}

/**
 * Parses a tile or entry-bundle path ("tile/…", no leading slash). Only the canonical
 * encoding is accepted: the parsed coordinates must format back to the same string.
 * @throws {MalformedError}
 */
export function parseTilePath(path: string): TileCoord {
  const bad = (why: string) => new MalformedError(`malformed tile path ${quote(path)}: ${why}`);
  const parts = path.split('/');
  if (parts.length < 3 || parts[0] !== 'tile') throw bad('expected tile/<L>/<N>[.p/<W>]');
  let level: number | 'entries';
  if (parts[1] === 'entries') level = 'entries';
  else {
    try {
      level = parseDecimal(parts[1]!, 'level');
    } catch {
      throw bad('level is not a canonical decimal');
    }
    if (level > MAX_TILE_LEVEL) throw bad(`level above ${MAX_TILE_LEVEL}`);
  }
  let width = TILE_WIDTH;
  let rest = parts.slice(2);
  const last = rest.length - 1;
  if (rest.length >= 2 && rest[last - 1]!.endsWith('.p')) {
    const w = rest[last]!;
    if (!/^[1-9][0-9]{0,2}$/.test(w) || Number(w) >= TILE_WIDTH) throw bad('partial width must be 1–255');
    width = Number(w);
    rest = rest.slice(0, last);
    rest[rest.length - 1] = rest[rest.length - 1]!.slice(0, -2);
  }
  let index = 0;
  for (let i = 0; i < rest.length; i++) {
    const el = rest[i]!;
    const isLast = i === rest.length - 1;
    const m = isLast ? /^[0-9]{3}$/.exec(el) : /^x[0-9]{3}$/.exec(el);
    if (!m) throw bad(isLast ? 'last index element must be 3 digits' : 'index elements before the last must be x followed by 3 digits');
    index = index * 1000 + Number(isLast ? el : el.slice(1));
  }
  if (!Number.isSafeInteger(index)) throw bad('index too large');
  const t: TileCoord = { level, index, width };
  if (tilePath(t) !== path) throw bad('not in canonical form');
  return t;
}

/**
 * The width of the tile at (level, index) in a tree of `size` leaves: 256 if full, 1–255
 * if partial, 0 if the tile does not exist at that size. For 'entries', level 0 applies.
 */
export function tileWidthAt(level: number | 'entries', index: number, size: number): number {
  const l = level === 'entries' ? 0 : level;
  const n = Math.floor(size / levelSpan(l)); // hashes that exist at this level
  const full = Math.floor(n / TILE_WIDTH);
  if (index < full) return TILE_WIDTH;
  if (index === full) return n % TILE_WIDTH;
  return 0;
}

/** Every tile (not bundle) that exists for a tree of `size`, full and partial. */
export function tilesForSize(size: number): TileCoord[] {
  checkSize(size, 'size');
  const out: TileCoord[] = [];
  for (let level = 0; Math.floor(size / levelSpan(level)) > 0; level++) {
    const n = Math.floor(size / levelSpan(level));
    const full = Math.floor(n / TILE_WIDTH);
    for (let i = 0; i < full; i++) out.push({ level, index: i, width: TILE_WIDTH });
    if (n % TILE_WIDTH > 0) out.push({ level, index: full, width: n % TILE_WIDTH });
  }
  return out;
}

/**
 * The tiles that are new or wider when the tree grows from `oldSize` to `newSize`
 * (go-tlog NewTiles): per level, every tile from the one holding the old edge to the one
 * holding the new edge, at its width for `newSize`.
 */
export function newTiles(oldSize: number, newSize: number): TileCoord[] {
  checkSize(oldSize, 'oldSize');
  checkSize(newSize, 'newSize');
  if (oldSize > newSize) throw new RangeError(`oldSize ${oldSize} exceeds newSize ${newSize}`);
  const out: TileCoord[] = [];
  for (let level = 0; Math.floor(newSize / levelSpan(level)) > 0; level++) {
    const oldN = Math.floor(oldSize / levelSpan(level));
    const newN = Math.floor(newSize / levelSpan(level));
    if (oldN === newN) continue;
    for (let i = Math.floor(oldN / TILE_WIDTH); i <= Math.floor(newN / TILE_WIDTH); i++) {
      const w = tileWidthAt(level, i, newSize);
      if (w > 0) out.push({ level, index: i, width: w });
    }
  }
  return out;
}

/** The Merkle root of a power-of-two-long run of hashes (go-tlog tileHash). */
export function hashRun(hashes: Uint8Array, offset: number, count: number): Uint8Array {
  if (count === 1) return hashes.subarray(offset * HASH_SIZE, (offset + 1) * HASH_SIZE);
  const half = count / 2;
  return nodeHash(hashRun(hashes, offset, half), hashRun(hashes, offset + half, half));
}

/** Where node (level, index) of the tree lives: which tile, and which run of its hashes. */
export function nodeTileAddress(level: number, index: number): { tileLevel: number; tileIndex: number; offset: number; count: number } {
  const tileLevel = Math.floor(level / TILE_HEIGHT);
  const within = level % TILE_HEIGHT;
  const count = 2 ** within;
  const perTile = TILE_WIDTH / count; // nodes of this height per tile
  return { tileLevel, tileIndex: Math.floor(index / perTile), offset: (index % perTile) * count, count };
}

/**
 * A NodeReader over tiles. `readTile(level, index)` returns the concatenated hashes of
 * the tile as stored (full, or partial of any width); the reader checks that it holds
 * the hashes a node needs.
 */
export function tileNodeReader(readTile: (level: number, index: number) => Uint8Array): NodeReader {
  return (level, index) => {
    const a = nodeTileAddress(level, index);
    const data = readTile(a.tileLevel, a.tileIndex);
    if (data.length < (a.offset + a.count) * HASH_SIZE) {
      throw new RangeError(`tile ${a.tileLevel}/${a.tileIndex} holds ${data.length / HASH_SIZE} hashes, node ${level}/${index} needs ${a.offset + a.count}`);
    }
    return hashRun(data, a.offset, a.count);
  };
}

/**
 * Which tiles (and how wide) a NodeReader-driven computation reads: a dry run with dummy
 * hashes, so the tiles can be fetched before the real run.
 */
export function tilesNeeded(run: (node: NodeReader, memo: RangeMemo) => unknown): Array<{ level: number; index: number; width: number }> {
  const need = new Map<string, { level: number; index: number; width: number }>();
  const zero = new Uint8Array(HASH_SIZE);
  run((level, index) => {
    const a = nodeTileAddress(level, index);
    const key = `${a.tileLevel}/${a.tileIndex}`;
    const width = a.offset + a.count;
    const prev = need.get(key);
    if (!prev || prev.width < width) need.set(key, { level: a.tileLevel, index: a.tileIndex, width });
    return zero;
  }, new Map());
  return [...need.values()];
}
