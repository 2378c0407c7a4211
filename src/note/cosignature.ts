/**
 * @module
 * Checkpoint cosignatures, `cosignature/v1` (c2sp.org/tlog-cosignature, signature type
 * 0x04): a witness's Ed25519 signature over a timestamped checkpoint, carried as one more
 * signature line on the checkpoint note.
 *
 * The signature-line payload (after the 4-byte key ID) is a `timestamped_signature`:
 * an 8-byte big-endian POSIX timestamp in seconds, then the 64-byte Ed25519 signature of
 * `"cosignature/v1\ntime <timestamp>\n" || <checkpoint note text>`.
 */
import { MalformedError } from '../core/errors.js';
import { concatBytes, utf8 } from '../core/encoding.js';
import { nobleEd25519, ED25519_SIGNATURE_SIZE, type Ed25519 } from './ed25519.js';
import { ALG_COSIGNATURE_V1, formatKeyId, parseSignerKey, parseVerifierKey } from './keys.js';
import { checkNoteText, type NoteSignature, type NoteVerifier } from './note.js';

/** Size of the timestamp that prefixes a cosignature. */
export const COSIGNATURE_TIMESTAMP_SIZE = 8;
/** Size of a cosignature/v1 payload after the key ID: timestamp (8) + Ed25519 signature (64). */
export const COSIGNATURE_V1_SIZE = COSIGNATURE_TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE;

/** Produces cosignature/v1 signature lines for one witness key. */
export interface Cosigner {
  readonly name: string;
  readonly keyId: number;
  /**
   * Cosigns a checkpoint as of `timestamp` (POSIX seconds) and returns the signature line
   * to append to the checkpoint note (e.g. with `formatNote` or `signNote`'s `existing`).
   * @throws {MalformedError} If `checkpointText` is not valid note text.
   * @throws {RangeError} If `timestamp` is not a safe integer > 0.
   */
  cosign(checkpointText: string, timestamp: number): NoteSignature;
}

/** A {@link NoteVerifier} for cosignature/v1 lines that can also read their timestamp. */
export interface CosignatureVerifier extends NoteVerifier {
  /**
   * Returns the timestamp (POSIX seconds) of a cosignature payload (the bytes after the
   * key ID). Does NOT verify the signature: use it on signatures that `openNote` verified.
   * @throws {MalformedError} If `sig` is not 72 bytes or its timestamp is ≥ 2^53.
   */
  timestampOf(sig: Uint8Array): number;
}

/** Throws RangeError unless `t` is a safe integer ≥ `min` (programmer misuse). */
function checkTimestamp(t: number, min: number): void {
  if (!Number.isSafeInteger(t) || t < min) {
    throw new RangeError(`cosignature timestamp must be a safe integer ≥ ${min}, got ${t}`);
  }
}

/** `"cosignature/v1\ntime <t>\n"`: the part of the signed message before the checkpoint. */
function messagePrefix(timestamp: number): Uint8Array {
  // c2sp.org/tlog-cosignature: the timestamp is written in decimal with no leading zeroes;
  // Number#toString gives exactly that for a safe non-negative integer.
  return utf8(`cosignature/v1\ntime ${timestamp}\n`);
}

/**
 * Returns the message a cosignature/v1 signs:
 * `"cosignature/v1\ntime " || decimal(timestamp) || "\n" || checkpointText`
 * (c2sp.org/tlog-cosignature "Signed message"). The text is the whole checkpoint note
 * text, extension lines and final newline included, without the signature lines.
 *
 * @example
 * ```ts
 * cosignatureMessage('example.com/behind-the-sofa\n20852163\nCsUY…2q2I=\n', 1679315147);
 * // utf8('cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUY…2q2I=\n')
 * ```
 * @throws {MalformedError} If `checkpointText` is not valid note text.
 * @throws {RangeError} If `timestamp` is not a safe non-negative integer.
 */
export function cosignatureMessage(checkpointText: string, timestamp: number): Uint8Array {
  checkTimestamp(timestamp, 0);
  checkNoteText(checkpointText);
  return concatBytes(messagePrefix(timestamp), utf8(checkpointText));
}

/**
 * Reads the big-endian u64 timestamp at the start of a cosignature payload, or returns an
 * error message. c2sp.org/tlog-cosignature caps it at 2^63-1; we also need a safe integer.
 */
function readTimestamp(sig: Uint8Array): number | string {
  if (!(sig instanceof Uint8Array)) return 'cosignature is not a Uint8Array';
  if (sig.length !== COSIGNATURE_V1_SIZE) {
    return `cosignature is ${sig.length} bytes, want ${COSIGNATURE_V1_SIZE}`;
  }
  const view = new DataView(sig.buffer, sig.byteOffset, COSIGNATURE_TIMESTAMP_SIZE);
  const hi = view.getUint32(0, false);
  const lo = view.getUint32(4, false);
  if (hi >= 2 ** 31) return 'cosignature timestamp is 2^63 or more';
  const t = hi * 2 ** 32 + lo;
  if (!Number.isSafeInteger(t)) return 'cosignature timestamp exceeds 2^53-1';
  return t;
}

/**
 * Returns the timestamp (POSIX seconds) at the start of a cosignature/v1 payload (the 72
 * bytes after the key ID), without verifying anything. Useful to inspect cosignatures by
 * unknown witnesses; trust it only for signatures `openNote` verified.
 *
 * @throws {MalformedError} If `sig` is not 72 bytes, or its timestamp is ≥ 2^63 (invalid
 *   per c2sp.org/tlog-cosignature) or above 2^53-1 (not representable here).
 */
export function cosignatureTimestamp(sig: Uint8Array): number {
  const t = readTimestamp(sig);
  if (typeof t === 'string') throw new MalformedError(`malformed cosignature: ${t}`);
  return t;
}

/**
 * Builds a cosigner from a signer key with type byte 0x04
 * (`PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`; the key ID hashes the type byte
 * 0x04 and the public key, as c2sp.org/tlog-cosignature requires).
 *
 * Each cosigner identity MUST use its own key: the v1 message does not contain the
 * cosigner's name (c2sp.org/tlog-cosignature).
 *
 * @example
 * ```ts
 * const w = newCosigner(witnessSkey);
 * const line = w.cosign(checkpointText, Math.floor(Date.now() / 1000));
 * const cosigned = formatNote(checkpointText, [...parseNote(checkpoint).signatures, line]);
 * ```
 * @throws {MalformedError} If the key does not parse or is not a type 0x04 key.
 */
export function newCosigner(skey: string, impl: Ed25519 = nobleEd25519): Cosigner {
  const k = parseSignerKey(skey, impl);
  if (k.alg !== ALG_COSIGNATURE_V1) {
    throw new MalformedError(
      `signer key ${k.name}+${formatKeyId(k.keyId)}: a type 0x01 note key, not a type 0x04 cosignature key (use newSigner)`
    );
  }
  const { name, keyId, seed } = k;
  return {
    name,
    keyId,
    cosign(checkpointText, timestamp) {
      checkTimestamp(timestamp, 1);
      const sig = impl.sign(seed, cosignatureMessage(checkpointText, timestamp));
      // timestamped_signature: u64 timestamp (big-endian) || Ed25519 signature.
      const out = new Uint8Array(COSIGNATURE_V1_SIZE);
      const view = new DataView(out.buffer);
      view.setUint32(0, Math.floor(timestamp / 2 ** 32), false);
      view.setUint32(4, timestamp % 2 ** 32, false);
      out.set(sig, COSIGNATURE_TIMESTAMP_SIZE);
      return { name, keyId, signature: out };
    },
  };
}

/**
 * Builds a cosignature/v1 verifier from a type 0x04 verifier key
 * (`<name>+<hex id>+<base64(0x04 || public key)>`, which starts with `B` after the second
 * `+`). Its `verify(text, sig)` requires a 72-byte payload whose timestamp is below 2^63
 * (and, in JavaScript, at most 2^53-1), then checks the Ed25519 signature over
 * {@link cosignatureMessage}. It never throws. Timestamp 0 is accepted: cosignature/v1
 * gives it no special meaning and a stale timestamp is for the caller's freshness policy.
 *
 * Pass it to `openNote` with the log's verifier to check a cosigned checkpoint.
 *
 * @throws {MalformedError} If the key does not parse or is not a type 0x04 key.
 */
export function newCosignatureVerifier(
  vkey: string,
  impl: Ed25519 = nobleEd25519
): CosignatureVerifier {
  const k = parseVerifierKey(vkey);
  if (k.alg !== ALG_COSIGNATURE_V1) {
    throw new MalformedError(
      `verifier key ${k.name}+${formatKeyId(k.keyId)}: a type 0x01 note key, not a type 0x04 cosignature key (use newVerifier)`
    );
  }
  const { name, keyId, publicKey } = k;
  return {
    name,
    keyId,
    verify(text, sig) {
      // attacker-controlled: sig (from a note line) and text.
      if (!(sig instanceof Uint8Array) || !(text instanceof Uint8Array)) return false;
      const t = readTimestamp(sig);
      if (typeof t === 'string') return false;
      const msg = concatBytes(messagePrefix(t), text);
      return impl.verify(publicKey, msg, sig.subarray(COSIGNATURE_TIMESTAMP_SIZE));
    },
    timestampOf(sig) {
      const t = readTimestamp(sig);
      if (typeof t === 'string') {
        throw new MalformedError(`malformed cosignature by ${name}+${formatKeyId(keyId)}: ${t}`);
      }
      return t;
    },
  };
}
