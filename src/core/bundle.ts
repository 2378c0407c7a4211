/**
 * C2SP tlog-tiles entry bundles: a sequence of entries, each a big-endian uint16 length
 * followed by that many bytes. A full bundle holds 256 entries.
 */
import { MalformedError } from './errors.js';
import { TILE_WIDTH } from './tile.js';

/** The largest entry a bundle can frame. */
export const MAX_ENTRY_SIZE = 0xffff;

/** Encodes entries as one bundle (or the part of one). */
export function encodeBundle(entries: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const e of entries) {
    if (e.length > MAX_ENTRY_SIZE) throw new RangeError(`entry of ${e.length} bytes exceeds ${MAX_ENTRY_SIZE}`);
    len += 2 + e.length;
  }
  const out = new Uint8Array(len);
  let o = 0;
  for (const e of entries) {
    out[o] = e.length >>> 8;
    out[o + 1] = e.length & 0xff;
    out.set(e, o + 2);
    o += 2 + e.length;
  }
  return out;
}

/**
 * Decodes a bundle. With `width`, exactly that many entries must be present.
 * Returned entries are views into `data`.
 * @throws {MalformedError}
 */
export function decodeBundle(data: Uint8Array, width?: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let o = 0;
  while (o < data.length) {
    if (out.length === TILE_WIDTH) throw new MalformedError('malformed entry bundle: more than 256 entries');
    if (o + 2 > data.length) throw new MalformedError(`malformed entry bundle: truncated length at entry ${out.length}`);
    const n = (data[o]! << 8) | data[o + 1]!;
    if (o + 2 + n > data.length) throw new MalformedError(`malformed entry bundle: entry ${out.length} truncated`);
    out.push(data.subarray(o + 2, o + 2 + n));
    o += 2 + n;
  }
  if (width !== undefined && out.length !== width) {
    throw new MalformedError(`malformed entry bundle: ${out.length} entries, expected ${width}`);
  }
  return out;
}
