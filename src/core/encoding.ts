/**
 * Strict, canonical parsing of the scalar encodings used by the C2SP formats: decimal
 * numbers without leading zeroes, standard padded base64, lowercase hex. Every parser
 * rejects anything whose canonical re-encoding differs from the input.
 */
import { MalformedError } from './errors.js';

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/**
 * Parses an ASCII decimal with no sign, no leading zeroes and no spaces, and requires a
 * safe integer. `what` names the field in the error message.
 * @throws {MalformedError}
 */
export function parseDecimal(s: string, what: string): number {
  if (!DECIMAL.test(s)) throw new MalformedError(`${what}: ${quote(s)} is not a canonical decimal number`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new MalformedError(`${what}: ${quote(s)} is too large`);
  return n;
}

/** Throws RangeError unless `n` is a safe non-negative integer (programmer misuse). */
export function checkSize(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a safe non-negative integer, got ${n}`);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_LOOKUP[B64.charCodeAt(i)] = i;

/** Standard base64 (RFC 4648 §4) with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + '==';
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + '=';
  }
  return out;
}

/**
 * Decodes standard padded base64, rejecting other alphabets, missing or extra padding,
 * whitespace and non-zero trailing bits (so the encoding is canonical).
 * @throws {MalformedError}
 */
export function decodeBase64(s: string, what: string): Uint8Array {
  const bad = () => new MalformedError(`${what}: invalid base64`);
  if (s.length % 4 !== 0) throw bad();
  let pad = 0;
  if (s.endsWith('==')) pad = 2;
  else if (s.endsWith('=')) pad = 1;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    const last = i + 4 === s.length;
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const c = s.charCodeAt(i + j);
      let v: number;
      if (c === 61 /* = */ && last && j >= 4 - pad) v = 0;
      else {
        v = c < 128 ? B64_LOOKUP[c]! : -1;
        if (v < 0) throw bad();
      }
      n = (n << 6) | v;
    }
    const b0 = (n >> 16) & 255;
    const b1 = (n >> 8) & 255;
    const b2 = n & 255;
    if (!last || pad === 0) {
      out[o++] = b0;
      out[o++] = b1;
      out[o++] = b2;
    } else if (pad === 1) {
      if (b2 !== 0) throw bad();
      out[o++] = b0;
      out[o++] = b1;
    } else {
      if (b1 !== 0 || b2 !== 0) throw bad();
      out[o++] = b0;
    }
  }
  return out;
}

const HEX = '0123456789abcdef';

/** Lowercase hex. */
export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += HEX[b >> 4]! + HEX[b & 15]!;
  return s;
}

/** Parses lowercase hex only. @throws {MalformedError} */
export function fromHex(s: string, what: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-f]*$/.test(s)) throw new MalformedError(`${what}: invalid lowercase hex`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Decodes UTF-8, rejecting invalid sequences. @throws {MalformedError} */
export function fromUtf8(b: Uint8Array, what: string): string {
  try {
    return strictDecoder.decode(b);
  } catch (cause) {
    throw new MalformedError(`${what}: not valid UTF-8`, { cause });
  }
}

/** Quotes a fragment of untrusted input for an error message, truncated. */
export function quote(s: string): string {
  const t = s.length > 40 ? s.slice(0, 40) + '…' : s;
  return JSON.stringify(t);
}
