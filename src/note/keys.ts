/**
 * @module
 * Key names, key IDs and the text encodings of keys used by signed notes:
 * verifier keys (`<name>+<hex id>+<base64(type || public key)>`, c2sp.org/signed-note)
 * and go-note signer keys (`PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>`).
 *
 * Parsing is strict: one canonical spelling per key. Error messages never contain key
 * material.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { MalformedError } from '../core/errors.js';
import { concatBytes, decodeBase64, encodeBase64, quote, utf8 } from '../core/encoding.js';
import {
  ED25519_PUBLIC_KEY_SIZE,
  ED25519_SEED_SIZE,
  nobleEd25519,
  type Ed25519,
} from './ed25519.js';

/** Signature type 0x01: Ed25519 over the note text (c2sp.org/signed-note). */
export const ALG_ED25519 = 0x01;
/** Signature type 0x04: timestamped Ed25519 checkpoint cosignature (c2sp.org/tlog-cosignature). */
export const ALG_COSIGNATURE_V1 = 0x04;

/** The signature types this module can parse and use. */
export type KeyAlgorithm = typeof ALG_ED25519 | typeof ALG_COSIGNATURE_V1;

/** A parsed verifier key. */
export interface VerifierKey {
  readonly name: string;
  /** The 32-bit key ID, recomputed and checked against the one in the string. */
  readonly keyId: number;
  readonly alg: KeyAlgorithm;
  /** The 32-byte Ed25519 public key, without the type byte. */
  readonly publicKey: Uint8Array;
}

/** A parsed signer (private) key. */
export interface SignerKey {
  readonly name: string;
  readonly keyId: number;
  readonly alg: KeyAlgorithm;
  /** The 32-byte Ed25519 seed (RFC 8032 private key). Secret. */
  readonly seed: Uint8Array;
  /** The public key derived from `seed`. */
  readonly publicKey: Uint8Array;
}

const SKEY_PREFIX = 'PRIVATE+KEY+';
const KEY_ID_HEX = /^[0-9a-f]{8}$/;
// Go's unicode.IsSpace is exactly the Unicode White_Space property.
const WHITE_SPACE = /\p{White_Space}/u;
// A lone surrogate cannot be encoded as UTF-8.
const LONE_SURROGATE = /\p{Surrogate}/u;
// c2sp.org/signed-note: no control characters below U+0020 anywhere in a note.
const CONTROL = /[\u0000-\u001f]/;

/**
 * Reports whether `name` is a valid key name: non-empty, valid Unicode (no lone
 * surrogates), no Unicode white space and no `+` (c2sp.org/signed-note, go-note
 * `isValidName`). Control characters are also refused, since a note carrying such a name
 * could never be opened.
 */
export function isValidKeyName(name: string): boolean {
  return (
    typeof name === 'string' &&
    name !== '' &&
    !name.includes('+') &&
    !WHITE_SPACE.test(name) &&
    !CONTROL.test(name) &&
    !LONE_SURROGATE.test(name)
  );
}

/**
 * Computes a key ID: the first 4 bytes of SHA-256(name || 0x0A || keyMaterial), read as a
 * big-endian uint32 (c2sp.org/signed-note "Signatures"; go-note `keyHash`).
 *
 * @param keyMaterial The signature type byte followed by the public key encoding.
 */
export function keyId(name: string, keyMaterial: Uint8Array): number {
  // key ID = SHA-256(key name || 0x0A || signature type || public key)[:4], big-endian
  const h = sha256(concatBytes(utf8(name), Uint8Array.of(0x0a), keyMaterial));
  return new DataView(h.buffer, h.byteOffset, 4).getUint32(0, false);
}

/** Formats a key ID as the 8 lowercase hex digits used in key strings. */
export function formatKeyId(id: number): string {
  checkKeyId(id);
  return id.toString(16).padStart(8, '0');
}

/** Throws RangeError unless `id` is a uint32 (programmer misuse). */
export function checkKeyId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new RangeError(`key id must be a uint32, got ${id}`);
  }
}

function isKnownAlg(alg: number): alg is KeyAlgorithm {
  return alg === ALG_ED25519 || alg === ALG_COSIGNATURE_V1;
}

function algName(alg: number): string {
  return '0x' + alg.toString(16).padStart(2, '0');
}

/**
 * Formats a verifier key, `<name>+<hex key id>+<base64(alg || publicKey)>`
 * (c2sp.org/signed-note "Verifier keys").
 *
 * @example
 * ```ts
 * formatVerifierKey('example.com/foo', ALG_ED25519, pub);
 * // 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k' for that key
 * ```
 * @throws {MalformedError} If `name` is not a valid key name.
 * @throws {RangeError} If `alg` is not a supported type or `publicKey` is not 32 bytes.
 */
export function formatVerifierKey(name: string, alg: KeyAlgorithm, publicKey: Uint8Array): string {
  if (!isValidKeyName(name)) throw new MalformedError(`invalid key name ${quote(name)}`);
  if (!isKnownAlg(alg)) throw new RangeError(`unsupported signature type ${algName(alg)}`);
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ED25519_PUBLIC_KEY_SIZE) {
    throw new RangeError(`public key must be ${ED25519_PUBLIC_KEY_SIZE} bytes`);
  }
  const material = concatBytes(Uint8Array.of(alg), publicKey);
  return `${name}+${formatKeyId(keyId(name, material))}+${encodeBase64(material)}`;
}

/** Splits `s` at the first `+`; `undefined` if there is none. */
function cutPlus(s: string): [string, string] | undefined {
  const i = s.indexOf('+');
  return i < 0 ? undefined : [s.slice(0, i), s.slice(i + 1)];
}

/** The fields shared by vkeys and skeys, checked for syntax only. */
interface KeyParts {
  name: string;
  id: number;
  idHex: string;
  /** The raw type byte, not yet checked against the known types. */
  alg: number;
  /** type byte || key bytes, as decoded. */
  material: Uint8Array;
}

/** Splits `<name>+<hex id>+<base64>` at its first two `+` and checks each part's syntax. */
function splitKey(what: string, s: string, keyKind: string): KeyParts {
  const first = cutPlus(s);
  if (first === undefined) throw new MalformedError(`${what}: missing "+" after the key name`);
  const [name, rest] = first;
  const second = cutPlus(rest);
  if (second === undefined) throw new MalformedError(`${what}: missing "+" after the key id`);
  const [idHex, b64] = second;
  if (!isValidKeyName(name)) throw new MalformedError(`${what}: invalid key name ${quote(name)}`);
  // c2sp.org/signed-note: the key ID is written as 8 lowercase hex digits. (go-note also
  // accepts upper case; we keep one spelling per key.)
  if (!KEY_ID_HEX.test(idHex)) {
    throw new MalformedError(`${what}: key id must be 8 lowercase hex digits`);
  }
  const material = decodeBase64(b64, `${what}: ${keyKind}`);
  const alg = material[0];
  if (alg === undefined) throw new MalformedError(`${what}: empty ${keyKind}`);
  return { name, id: parseInt(idHex, 16), idHex, alg, material };
}

/**
 * Parses a verifier key, `<name>+<hex key id>+<base64(type || public key)>`.
 *
 * Follows go-note `NewVerifier`, more strictly: the string is split at its first two `+`
 * only (standard base64 may contain `+`), the key ID must be exactly 8 lowercase hex
 * digits, the base64 must be canonical, the key ID is recomputed and must match, the type
 * must be 0x01 (Ed25519) or 0x04 (cosignature/v1), and the public key must be 32 bytes.
 *
 * @example
 * ```ts
 * const k = parseVerifierKey('example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k');
 * // k.name === 'example.com/foo', k.keyId === 0x530d903a, k.alg === ALG_ED25519
 * ```
 * @throws {MalformedError} On any deviation; the message says which part is wrong.
 */
export function parseVerifierKey(vkey: string): VerifierKey {
  // attacker-controlled when keys come from a policy or log list file.
  const what = 'malformed verifier key';
  const { name, id, idHex, alg, material } = splitKey(what, vkey, 'public key');
  // go-note NewVerifier checks the key ID over the decoded bytes before looking at the type.
  if (keyId(name, material) !== id) {
    throw new MalformedError(`${what}: key id ${idHex} does not match the key`);
  }
  if (!isKnownAlg(alg)) throw new MalformedError(`${what}: unknown signature type ${algName(alg)}`);
  const publicKey = material.slice(1);
  if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE) {
    throw new MalformedError(
      `${what}: public key is ${publicKey.length} bytes, want ${ED25519_PUBLIC_KEY_SIZE}`
    );
  }
  return { name, keyId: id, alg, publicKey };
}

/**
 * Parses a go-note signer key, `PRIVATE+KEY+<name>+<hex key id>+<base64(type || seed)>`,
 * with the same strictness as {@link parseVerifierKey}. The key ID must match the public
 * key derived from the seed. Type 0x04 keys use the same layout with type byte 0x04 (an
 * extension: go-note itself only knows type 0x01).
 *
 * @param impl The Ed25519 implementation used to derive the public key.
 * @throws {MalformedError} On any deviation. Messages never include the key material.
 */
export function parseSignerKey(skey: string, impl: Ed25519 = nobleEd25519): SignerKey {
  const what = 'malformed signer key';
  if (!skey.startsWith(SKEY_PREFIX)) {
    throw new MalformedError(`${what}: missing "PRIVATE+KEY+" prefix`);
  }
  const { name, id, idHex, alg, material } = splitKey(what, skey.slice(SKEY_PREFIX.length), 'seed');
  if (!isKnownAlg(alg)) throw new MalformedError(`${what}: unknown signature type ${algName(alg)}`);
  const seed = material.slice(1);
  if (seed.length !== ED25519_SEED_SIZE) {
    throw new MalformedError(`${what}: seed is ${seed.length} bytes, want ${ED25519_SEED_SIZE}`);
  }
  const publicKey = impl.publicKey(seed);
  // go-note NewSigner: the key ID hashes the public key, so it can only be checked after
  // deriving the public key from the seed.
  if (keyId(name, concatBytes(Uint8Array.of(alg), publicKey)) !== id) {
    throw new MalformedError(`${what}: key id ${idHex} does not match the key`);
  }
  return { name, keyId: id, alg, seed, publicKey };
}

/** Source of randomness: returns `length` fresh random bytes. */
export type RandomSource = (length: number) => Uint8Array;

/** The default random source, `crypto.getRandomValues` (Web Crypto; global in Node ≥ 19). */
export const webCryptoRandom: RandomSource = (length) =>
  crypto.getRandomValues(new Uint8Array(length));

/**
 * Generates a new Ed25519 key pair for `name` and returns it as a go-note signer key and
 * the matching verifier key. For `ALG_COSIGNATURE_V1` the type byte in both strings, and
 * therefore the key ID, is 0x04.
 *
 * @example
 * ```ts
 * const { skey, vkey } = generateKey('log.example.com/a');
 * // skey: 'PRIVATE+KEY+log.example.com/a+1a2b3c4d+A…'  (keep secret)
 * // vkey: 'log.example.com/a+1a2b3c4d+A…'              (publish)
 * ```
 * @throws {MalformedError} If `name` is not a valid key name.
 * @throws {RangeError} If `alg` is unsupported or `random` returns the wrong length.
 */
export function generateKey(
  name: string,
  alg: KeyAlgorithm = ALG_ED25519,
  random: RandomSource = webCryptoRandom
): { skey: string; vkey: string } {
  if (!isValidKeyName(name)) throw new MalformedError(`invalid key name ${quote(name)}`);
  if (!isKnownAlg(alg)) throw new RangeError(`unsupported signature type ${algName(alg)}`);
  const seed = random(ED25519_SEED_SIZE);
  if (!(seed instanceof Uint8Array) || seed.length !== ED25519_SEED_SIZE) {
    throw new RangeError(`random source must return ${ED25519_SEED_SIZE} bytes`);
  }
  const publicKey = nobleEd25519.publicKey(seed);
  const vkey = formatVerifierKey(name, alg, publicKey);
  const id = keyId(name, concatBytes(Uint8Array.of(alg), publicKey));
  const secret = encodeBase64(concatBytes(Uint8Array.of(alg), seed));
  const skey = `${SKEY_PREFIX}${name}+${formatKeyId(id)}+${secret}`;
  return { skey, vkey };
}
