/**
 * @module
 * Ed25519 backed by `node:crypto` (OpenSSL), for the server's hot path. On Node 20 its
 * verify is roughly 10x faster than `nobleEd25519` (measured with
 * `test/note/ed25519.test.ts`-sized inputs), which matters for a witness or a log that
 * verifies many notes. It is not re-exported from `note/index.ts`, so client bundles never
 * pull in Node built-ins.
 *
 * Behavioural note: OpenSSL rejects S ≥ L like noble's strict mode, but accepts
 * small-order public keys (as Go's `crypto/ed25519` does), so this module rejects those
 * itself with {@link isWeakPublicKey}, once per cached key. What remains different is the
 * verification equation: OpenSSL checks the cofactorless one, noble the cofactored one, so
 * a signature crafted by the key holder with a mixed-order R can verify under noble only.
 * The two backends agree on every honestly generated signature.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { toHex } from '../core/encoding.js';
import {
  checkBytes,
  isBytes,
  isWeakPublicKey,
  ED25519_PUBLIC_KEY_SIZE,
  ED25519_SEED_SIZE,
  ED25519_SIGNATURE_SIZE,
  type Ed25519,
} from './ed25519.js';

// RFC 8410 §7: PKCS#8 PrivateKeyInfo for Ed25519 is this fixed 16-byte prefix followed by
// the 32-byte seed (wrapped in an OCTET STRING inside the OCTET STRING).
const PKCS8_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);
// RFC 8410 §4: SubjectPublicKeyInfo for Ed25519 is this fixed 12-byte prefix followed by
// the 32-byte public key (in a BIT STRING with no unused bits).
const SPKI_PREFIX = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

/** Keys a server uses are few (its own key, a handful of log or witness keys). */
const CACHE_LIMIT = 64;

/**
 * A small insertion-ordered cache: when full, the oldest entry is evicted, so memory stays
 * bounded even if an attacker makes us parse many different keys.
 */
function cached<T>(cache: Map<string, T>, key: string, make: () => T): T {
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const value = make();
  if (cache.size >= CACHE_LIMIT) {
    const oldest = cache.keys().next();
    if (oldest.done !== true) cache.delete(oldest.value);
  }
  cache.set(key, value);
  return value;
}

const privateKeys = new Map<string, KeyObject>();
/** `null` marks a key that {@link isWeakPublicKey} rejected or OpenSSL could not import. */
const publicKeys = new Map<string, KeyObject | null>();

function privateKeyObject(seed: Uint8Array): KeyObject {
  checkBytes(seed, ED25519_SEED_SIZE, 'ed25519 seed');
  return cached(privateKeys, toHex(seed), () => {
    const der = new Uint8Array(PKCS8_PREFIX.length + seed.length);
    der.set(PKCS8_PREFIX);
    der.set(seed, PKCS8_PREFIX.length);
    return createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  });
}

function publicKeyObject(pub: Uint8Array): KeyObject | null {
  return cached(publicKeys, toHex(pub), () => {
    if (isWeakPublicKey(pub)) return null;
    const der = new Uint8Array(SPKI_PREFIX.length + pub.length);
    der.set(SPKI_PREFIX);
    der.set(pub, SPKI_PREFIX.length);
    try {
      return createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
    } catch {
      return null;
    }
  });
}

/** Ed25519 through `node:crypto`, with a bounded per-key cache of parsed `KeyObject`s. */
export const nodeEd25519: Ed25519 = {
  publicKey(seed) {
    const spki = createPublicKey(privateKeyObject(seed)).export({ format: 'der', type: 'spki' });
    return new Uint8Array(spki.subarray(spki.length - ED25519_PUBLIC_KEY_SIZE));
  },
  sign(seed, msg) {
    // Ed25519 takes no separate digest: the algorithm argument must be null.
    return new Uint8Array(sign(null, msg, privateKeyObject(seed)));
  },
  verify(pub, msg, sig) {
    // attacker-controlled: pub (from a vkey), msg and sig (from a note).
    if (!isBytes(pub) || !isBytes(msg) || !isBytes(sig)) return false;
    if (pub.length !== ED25519_PUBLIC_KEY_SIZE || sig.length !== ED25519_SIGNATURE_SIZE) {
      return false;
    }
    try {
      const key = publicKeyObject(pub);
      return key !== null && verify(null, msg, key, sig);
    } catch {
      return false;
    }
  },
};
