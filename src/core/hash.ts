/**
 * RFC 6962 §2.1 hashing with SHA-256.
 *
 * SHA-256 is @noble/hashes (portable: the verifier runs in browsers). A server may install
 * a faster implementation with the same results (node:crypto, in src/cli) through
 * {@link useSha256}; it is the only mutable state of the core.
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

export const HASH_SIZE = 32;

let sha256: (data: Uint8Array) => Uint8Array = nobleSha256;

/** Replaces the SHA-256 implementation (it must compute SHA-256, byte for byte). */
export function useSha256(impl: (data: Uint8Array) => Uint8Array): void {
  const probe = impl(new Uint8Array([0x61, 0x62, 0x63]));
  const want = nobleSha256(new Uint8Array([0x61, 0x62, 0x63]));
  if (probe.length !== HASH_SIZE || !probe.every((b, i) => b === want[i])) throw new RangeError('useSha256: not SHA-256');
  sha256 = impl;
}

/** MTH({}) = SHA-256(""), the root of the empty tree. */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

// Scratch space for 0x00 || entry: hashing is synchronous and keeps nothing, so one buffer
// serves every call (a fresh allocation per leaf showed in the audit's profile).
let leafBuf = new Uint8Array(1024);

/** SHA-256(0x00 || entry), RFC 6962 §2.1. */
export function leafHash(entry: Uint8Array): Uint8Array {
  if (entry.length + 1 > leafBuf.length) {
    if (entry.length + 1 > 1 << 17) {
      const buf = new Uint8Array(1 + entry.length);
      buf.set(entry, 1);
      return sha256(buf);
    }
    leafBuf = new Uint8Array(1 << (32 - Math.clz32(entry.length)));
  }
  leafBuf[0] = 0x00;
  leafBuf.set(entry, 1);
  return sha256(leafBuf.subarray(0, 1 + entry.length));
}

const nodeBuf = new Uint8Array(1 + 2 * HASH_SIZE);
nodeBuf[0] = 0x01;

/** SHA-256(0x01 || left || right), RFC 6962 §2.1. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    throw new RangeError(`nodeHash: hashes must be ${HASH_SIZE} bytes`);
  }
  nodeBuf.set(left, 1);
  nodeBuf.set(right, 1 + HASH_SIZE);
  return sha256(nodeBuf);
}
