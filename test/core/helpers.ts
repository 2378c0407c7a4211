/**
 * Shared helpers for the core tests: loading spec/vectors, fast-check run counts, and a
 * plain recursive RFC 6962 reference (§1.2–1.5 of specs.md) to compare the core against.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { nodeHash, EMPTY_ROOT, leafHash } from '../../src/core/hash.js';
import { decodeBase64, fromHex, toHex, utf8 } from '../../src/core/encoding.js';

/** FC_NUM_RUNS raises (or lowers) every property's run count; the default is 100. */
export const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 100);
/** For the costlier properties: a quarter of NUM_RUNS, at least 10. */
export const HEAVY_RUNS = Math.max(10, Math.floor(NUM_RUNS / 4));
fc.configureGlobal({ numRuns: NUM_RUNS });

export function loadVectors<T = any>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../../spec/vectors/${name}`, import.meta.url), 'utf8')) as T;
}

export const hex = (s: string): Uint8Array => fromHex(s, 'test vector');
export const b64 = (s: string): Uint8Array => decodeBase64(s, 'test vector');
export { toHex };

/** Leaf hashes of the entries "leaf 0" … "leaf n-1" (golang/mod TestTree), memoised. */
const leafNCache: Uint8Array[] = [];
export function leafNHashes(n: number): Uint8Array[] {
  for (let i = leafNCache.length; i < n; i++) leafNCache.push(leafHash(utf8(`leaf ${i}`)));
  return leafNCache.slice(0, n);
}

function k(n: number): number {
  let p = 1;
  while (p * 2 < n) p *= 2;
  return p;
}

/** MTH(D[lo:hi]) by the RFC 6962 recursion, memoised per leaf list. */
export class ReferenceTree {
  private readonly memo = new Map<string, Uint8Array>();
  constructor(readonly leaves: readonly Uint8Array[]) {}

  mth(lo: number, hi: number): Uint8Array {
    if (hi === lo) return EMPTY_ROOT;
    if (hi - lo === 1) return this.leaves[lo]!;
    const key = `${lo}:${hi}`;
    let h = this.memo.get(key);
    if (!h) {
      const m = k(hi - lo);
      h = nodeHash(this.mth(lo, lo + m), this.mth(lo + m, hi));
      this.memo.set(key, h);
    }
    return h;
  }

  /** PATH(m, D[lo:hi]). */
  path(m: number, lo: number, hi: number): Uint8Array[] {
    if (hi - lo === 1) return [];
    const s = k(hi - lo);
    if (m < s) return [...this.path(m, lo, lo + s), this.mth(lo + s, hi)];
    return [...this.path(m - s, lo + s, hi), this.mth(lo, lo + s)];
  }

  /** PROOF(m, D[0:n]). */
  proof(m: number, n: number): Uint8Array[] {
    const sub = (m: number, lo: number, hi: number, b: boolean): Uint8Array[] => {
      if (m === hi - lo) return b ? [] : [this.mth(lo, hi)];
      const s = k(hi - lo);
      if (m <= s) return [...sub(m, lo, lo + s, b), this.mth(lo + s, hi)];
      return [...sub(m - s, lo + s, hi, false), this.mth(lo, lo + s)];
    };
    return sub(m, 0, n, true);
  }
}

export function bitLength(x: bigint): number {
  let n = 0;
  while (x > 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

export function popCount(x: bigint): number {
  let n = 0;
  while (x > 0n) {
    n += Number(x & 1n);
    x >>= 1n;
  }
  return n;
}

/** The inclusion proof length of specs.md §1.4 (merkle closed form). */
export function inclusionProofLength(index: number, size: number): number {
  const inner = bitLength(BigInt(index) ^ BigInt(size - 1));
  return inner + popCount(BigInt(index) >> BigInt(inner));
}

/** The consistency proof length of specs.md §1.6 (merkle closed form), 0 < m < n. */
export function consistencyProofLength(m: number, n: number): number {
  const inner = bitLength(BigInt(m - 1) ^ BigInt(n - 1));
  const border = popCount(BigInt(m - 1) >> BigInt(inner));
  let shift = 0;
  while ((BigInt(m) >> BigInt(shift)) % 2n === 0n) shift++;
  return (BigInt(m) === 1n << BigInt(shift) ? 0 : 1) + (inner - shift) + border;
}

/** A copy of `h` with bit `bit` (0 = most significant bit of byte 0) flipped. */
export function flipBit(h: Uint8Array, bit: number): Uint8Array {
  const out = h.slice();
  out[bit >> 3]! ^= 0x80 >> (bit & 7);
  return out;
}

/** 32-byte arbitrary hashes for fast-check. */
export const arbHash = fc.uint8Array({ minLength: 32, maxLength: 32 });

/**
 * A list of min–max distinct leaf hashes. The length is drawn with fc.integer, because
 * fc.array keeps lists short (about 10) unless told otherwise, which would never cross a
 * 256-hash tile.
 */
export function arbLeaves(min: number, max: number): fc.Arbitrary<Uint8Array[]> {
  return fc
    .tuple(fc.integer({ min, max }), fc.nat())
    .map(([n, seed]) => Array.from({ length: n }, (_, i) => leafHash(utf8(`${seed}:${i}`))));
}
