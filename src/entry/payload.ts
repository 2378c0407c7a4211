/**
 * @module
 * Payload commitments (spec/agent-entries.md §5). An event carries, for each payload, only
 * SHA-256("glasslog/payload/v1\n" ‖ salt ‖ payload) with a fresh random 32-byte salt. The
 * payload and its salt are kept beside the log, never in a leaf; erasing both leaves a
 * commitment that nobody can open or test guesses against.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, equalBytes, utf8 } from '../core/encoding.js';
import { HASH_SIZE } from '../core/hash.js';
import { webCryptoRandom, type RandomSource } from '../note/keys.js';

/** The size of a payload salt. */
export const PAYLOAD_SALT_SIZE = 32;

/** The domain-separation prefix of every payload commitment. */
export const PAYLOAD_COMMITMENT_CONTEXT = 'glasslog/payload/v1\n';
const CONTEXT_BYTES = utf8(PAYLOAD_COMMITMENT_CONTEXT);

/**
 * SHA-256("glasslog/payload/v1\n" ‖ salt ‖ data), the 32-byte commitment an event's
 * `payloads` field holds.
 *
 * @throws {TypeError} If an argument is not a Uint8Array.
 * @throws {RangeError} If `salt` is not {@link PAYLOAD_SALT_SIZE} bytes.
 */
export function payloadCommitment(salt: Uint8Array, data: Uint8Array): Uint8Array {
  if (!(salt instanceof Uint8Array)) throw new TypeError('payload salt must be a Uint8Array');
  if (!(data instanceof Uint8Array)) throw new TypeError('payload data must be a Uint8Array');
  if (salt.length !== PAYLOAD_SALT_SIZE) {
    throw new RangeError(`payload salt must be ${PAYLOAD_SALT_SIZE} bytes, got ${salt.length}`);
  }
  return sha256(concatBytes(CONTEXT_BYTES, salt, data));
}

/**
 * A fresh random salt. Salts must never be reused or derived from the payload: the salt
 * is what stops a guessed payload from being checked against a commitment.
 *
 * @throws {RangeError} If `random` returns the wrong length.
 */
export function newPayloadSalt(random: RandomSource = webCryptoRandom): Uint8Array {
  const s = random(PAYLOAD_SALT_SIZE);
  if (!(s instanceof Uint8Array) || s.length !== PAYLOAD_SALT_SIZE) {
    throw new RangeError(`random source must return ${PAYLOAD_SALT_SIZE} bytes`);
  }
  return s;
}

/** Reports whether (`salt`, `data`) opens `commitment`. Never throws. */
export function verifyPayloadCommitment(commitment: Uint8Array, salt: Uint8Array, data: Uint8Array): boolean {
  if (!(commitment instanceof Uint8Array) || commitment.length !== HASH_SIZE) return false;
  if (!(salt instanceof Uint8Array) || salt.length !== PAYLOAD_SALT_SIZE || !(data instanceof Uint8Array)) return false;
  return equalBytes(payloadCommitment(salt, data), commitment);
}
