/**
 * bytea columns read without a string in between. postgres.js receives results in text
 * format and turns a bytea into a Buffer by decoding the column to a JS string and that
 * string from hex: for an 82 KB entry bundle, a 164 KB string per read, which made reading
 * tiles and bundles the largest CPU cost of serving an audit (bench/audit.ts). Queries that
 * read bulk bytea use postgres.js's `.raw()` (columns as Buffers of their text form) and
 * decode the hex here, byte to byte.
 */
import { StorageError } from '../core/errors.js';

/** Nibble value of an ASCII hex digit, 0xff for any other byte. */
const NIBBLE = new Uint8Array(256).fill(0xff);
for (let i = 0; i < 10; i++) NIBBLE[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  NIBBLE[0x41 + i] = 10 + i;
  NIBBLE[0x61 + i] = 10 + i;
}

/**
 * The bytes of a bytea in Postgres' hex output format (`\x` then two hex digits a byte,
 * bytea_output = hex, the default since Postgres 9.0), given as the column's raw text.
 * @throws {StorageError} If it is not in that format (`what` names the column).
 */
export function decodeByteaHex(text: Uint8Array, what: string): Uint8Array {
  if (text.length < 2 || text[0] !== 0x5c || text[1] !== 0x78 || (text.length & 1) !== 0) {
    throw new StorageError(`stored ${what} is not a bytea in hex output format (is bytea_output set to escape?)`);
  }
  const n = (text.length - 2) >> 1;
  const out = new Uint8Array(n);
  let bad = 0;
  for (let i = 0, j = 2; i < n; i++, j += 2) {
    const hi = NIBBLE[text[j]!]!;
    const lo = NIBBLE[text[j + 1]!]!;
    bad |= hi | lo;
    out[i] = (hi << 4) | lo;
  }
  // Any non-hex byte set a bit above the low nibble.
  if (bad > 0x0f) throw new StorageError(`stored ${what} holds a byte that is not a hex digit`);
  return out;
}

/** A raw text column holding a non-negative integer (a bigint or smallint), as a number. */
export function decodeIntText(text: Uint8Array, what: string): number {
  let n = 0;
  if (text.length === 0 || text.length > 16) throw new StorageError(`stored ${what} is not a safe size`);
  for (let i = 0; i < text.length; i++) {
    const d = text[i]! - 0x30;
    if (d < 0 || d > 9) throw new StorageError(`stored ${what} is not a safe size`);
    n = n * 10 + d;
  }
  if (!Number.isSafeInteger(n)) throw new StorageError(`stored ${what} is not a safe size`);
  return n;
}
