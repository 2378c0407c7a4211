/**
 * @module
 * The Ed25519 primitive used by signed notes and cosignatures (RFC 8032 §5.1), behind a
 * three-method interface so that the server can swap in the faster `node:crypto` backend
 * (`ed25519-node.ts`) while clients stay free of Node imports.
 *
 * This file is the only importer of `@noble/ed25519`.
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';

// @noble/ed25519's synchronous API needs a SHA-512 implementation before first use. Set it
// once, here, at module load, so every caller of `nobleEd25519` gets a ready library.
ed.hashes.sha512 = sha512;

/** Size in bytes of an Ed25519 seed (the RFC 8032 private key). */
export const ED25519_SEED_SIZE = 32;
/** Size in bytes of an Ed25519 public key. */
export const ED25519_PUBLIC_KEY_SIZE = 32;
/** Size in bytes of an Ed25519 signature. */
export const ED25519_SIGNATURE_SIZE = 64;

/**
 * An Ed25519 implementation (RFC 8032 "pure" Ed25519, no context, no prehash).
 *
 * Keys are 32-byte seeds, as in the go-note private key encoding, never 64-byte expanded
 * keys.
 */
export interface Ed25519 {
  /**
   * Derives the 32-byte public key from a 32-byte seed.
   * @throws {RangeError} If `seed` is not 32 bytes.
   */
  publicKey(seed: Uint8Array): Uint8Array;
  /**
   * Signs `msg` and returns the 64-byte signature. Ed25519 is deterministic: the same seed
   * and message always give the same signature.
   * @throws {RangeError} If `seed` is not 32 bytes.
   */
  sign(seed: Uint8Array, msg: Uint8Array): Uint8Array;
  /**
   * Reports whether `sig` is a valid signature of `msg` by `pub`. Never throws: any
   * malformed input (wrong lengths, a public key or R that does not decode, S ≥ L) gives
   * `false`.
   */
  verify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean;
}

/** Reports whether `b` is a Uint8Array (Node's Buffer included). */
export function isBytes(b: unknown): b is Uint8Array {
  return b instanceof Uint8Array;
}

/** Throws RangeError unless `b` is a Uint8Array of `length` bytes (programmer misuse). */
export function checkBytes(b: Uint8Array, length: number, what: string): void {
  if (!(b instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  if (b.length !== length) throw new RangeError(`${what} must be ${length} bytes, got ${b.length}`);
}

/**
 * Reports whether `pub` is unusable as an Ed25519 verification key under the strict rules
 * of {@link nobleEd25519}: not 32 bytes, not a canonical encoding of a curve point, or a
 * point of small order (for which trivial signatures verify on every message).
 * `nodeEd25519` calls this once per key so both backends reject the same keys.
 */
export function isWeakPublicKey(pub: Uint8Array): boolean {
  if (!(pub instanceof Uint8Array) || pub.length !== ED25519_PUBLIC_KEY_SIZE) return true;
  try {
    return ed.Point.fromBytes(pub, false).isSmallOrder();
  } catch {
    return true;
  }
}

/**
 * Pure-JavaScript Ed25519 from `@noble/ed25519`, usable in browsers and clients.
 *
 * Verification uses `{ zip215: false }`, the library's RFC 8032 / FIPS 186-5 strict branch:
 * the public key A and the point R must be canonical encodings (y < p), S must be < L, and
 * small-order public keys are rejected. noble's default (ZIP-215) accepts non-canonical
 * encodings that Go's `crypto/ed25519`, which x/mod `sumdb/note` and the witness ecosystem
 * use, rejects; strict mode keeps the two sides from disagreeing about which notes verify
 * in that direction. Honest signatures verify identically under both rules.
 *
 * One residual difference to know about: noble checks the cofactored equation
 * [8][S]B = [8]R + [8][k]A while Go and OpenSSL check the cofactorless one, and noble
 * rejects small-order public keys while they accept them. Only deliberately crafted
 * signatures (mixed-order R, or a small-order A) can tell the two apart.
 */
export const nobleEd25519: Ed25519 = {
  publicKey(seed) {
    checkBytes(seed, ED25519_SEED_SIZE, 'ed25519 seed');
    return ed.getPublicKey(seed);
  },
  sign(seed, msg) {
    checkBytes(seed, ED25519_SEED_SIZE, 'ed25519 seed');
    return ed.sign(msg, seed);
  },
  verify(pub, msg, sig) {
    // attacker-controlled: pub (from a vkey), msg and sig (from a note).
    if (!isBytes(pub) || !isBytes(msg) || !isBytes(sig)) return false;
    if (pub.length !== ED25519_PUBLIC_KEY_SIZE || sig.length !== ED25519_SIGNATURE_SIZE) {
      return false;
    }
    try {
      return ed.verify(sig, msg, pub, { zip215: false });
    } catch {
      return false;
    }
  },
};
