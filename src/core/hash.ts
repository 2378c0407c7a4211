/**
 * RFC 6962 §2.1 hashing with SHA-256.
 */
import { sha256 } from '@noble/hashes/sha2.js';

export const HASH_SIZE = 32;

/** MTH({}) = SHA-256(""), the root of the empty tree. */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

/** SHA-256(0x00 || entry), RFC 6962 §2.1. */
export function leafHash(entry: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + entry.length);
  buf[0] = 0x00;
  buf.set(entry, 1);
  return sha256(buf);
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
