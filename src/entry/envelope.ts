/**
 * @module
 * The signed envelope (spec/agent-entries.md §4): the leaf bytes the log stores, a
 * canonical CBOR map `{ "sig": bytes(64), "entry": bytes }` whose signature is Ed25519
 * over `"glasslog/entry/v1\n" ‖ entry`.
 */
import { MalformedError, TooLargeError } from '../core/errors.js';
import { concatBytes, decodeBase64, encodeBase64, utf8 } from '../core/encoding.js';
import { leafHash } from '../core/hash.js';
import { ED25519_SIGNATURE_SIZE, nobleEd25519, type Ed25519 } from '../note/ed25519.js';
import { ALG_ED25519, parseSignerKey } from '../note/keys.js';
import { decodeCanonical, encodeCanonical } from './cbor.js';
import {
  decodeEntry,
  encodeEntry,
  entryFromJson,
  entryToJson,
  MAX_AGENT_ENTRY_SIZE,
  type Entry,
} from './entry.js';

/** The domain-separation prefix of every entry signature. */
export const ENTRY_SIGNATURE_CONTEXT = 'glasslog/entry/v1\n';
const CONTEXT_BYTES = utf8(ENTRY_SIGNATURE_CONTEXT);

/**
 * The largest envelope: map head (1) + "sig" (4) + bytes(64) head (2) + 64 + "entry" (6)
 * + a 3-byte length head + the largest entry, 16,464 bytes.
 */
export const MAX_ENVELOPE_SIZE = 1 + 4 + 2 + ED25519_SIGNATURE_SIZE + 6 + 3 + MAX_AGENT_ENTRY_SIZE;

/** A decoded, not yet verified, signed entry. */
export interface SignedEntry {
  readonly entry: Entry;
  /** The canonical encoding of `entry`: what is signed, after the context. */
  readonly entryBytes: Uint8Array;
  /** The 64-byte Ed25519 signature. */
  readonly signature: Uint8Array;
  /** the envelope: the leaf data */
  readonly bytes: Uint8Array;
  /** RFC 6962 leaf hash of `bytes`: SHA-256(0x00 ‖ bytes). */
  readonly leafHash: Uint8Array;
}

/** Who signs an entry of this type: the agent's own key, or the log's key. */
export function entrySignerKind(e: Entry): 'agent' | 'log' {
  return e.type === 'event' || e.type === 'run.close' ? 'agent' : 'log';
}

/** The message an entry signature covers: `"glasslog/entry/v1\n" ‖ entryBytes`. */
export function entrySigningMessage(entryBytes: Uint8Array): Uint8Array {
  return concatBytes(CONTEXT_BYTES, entryBytes);
}

/** {@link entrySigningMessage} in its two parts, for a signer or verifier that packs them itself. */
export function entrySigningParts(entryBytes: Uint8Array): readonly Uint8Array[] {
  return [CONTEXT_BYTES, entryBytes];
}

/**
 * Encodes and signs `entry` with a go-note signer key and returns the envelope.
 *
 * Events and run.close must be signed with the agent's key, registry and erasure entries
 * with the log's key (see {@link entrySignerKind}); this function does not check which.
 *
 * @param skey `PRIVATE+KEY+<name>+<id>+<base64>`, type 0x01 (Ed25519).
 * @throws {MalformedError} If the entry is invalid, or the key malformed or not type 0x01.
 * @throws {TooLargeError} If the entry's encoding is too large.
 */
export function signEntry(entry: Entry, skey: string, impl: Ed25519 = nobleEd25519): SignedEntry {
  const k = parseSignerKey(skey, impl);
  if (k.alg !== ALG_ED25519) throw new MalformedError('signEntry: the key must be an Ed25519 (type 0x01) key');
  const entryBytes = encodeEntry(entry);
  return envelope(entryBytes, impl.sign(k.seed, entrySigningMessage(entryBytes)));
}

function envelopeBytes(entryBytes: Uint8Array, signature: Uint8Array): Uint8Array {
  return encodeCanonical({ entry: entryBytes, sig: signature });
}

/**
 * Builds the envelope around an entry encoding and a signature: decodes the entry
 * strictly, and computes the leaf bytes and leaf hash. Does not verify the signature.
 *
 * @throws {MalformedError} If `entryBytes` is not a canonical entry or `signature` is not
 *   64 bytes.
 * @throws {TooLargeError} If the entry is too large.
 */
export function envelope(entryBytes: Uint8Array, signature: Uint8Array): SignedEntry {
  if (!(entryBytes instanceof Uint8Array)) throw new TypeError('envelope: entry must be a Uint8Array');
  if (!(signature instanceof Uint8Array)) throw new TypeError('envelope: signature must be a Uint8Array');
  if (signature.length !== ED25519_SIGNATURE_SIZE) {
    throw new MalformedError(`envelope.sig: ${signature.length} bytes, want ${ED25519_SIGNATURE_SIZE}`);
  }
  const entry = decodeEntry(entryBytes);
  const eb = new Uint8Array(entryBytes);
  const sig = new Uint8Array(signature);
  const bytes = envelopeBytes(eb, sig);
  return { entry, entryBytes: eb, signature: sig, bytes, leafHash: leafHash(bytes) };
}

/**
 * Decodes leaf bytes as an envelope, strictly: canonical CBOR, exactly the fields `entry`
 * (a canonical entry) and `sig` (64 bytes). Does not verify the signature.
 *
 * @throws {MalformedError} Messages start with `envelope` or `entry`.
 * @throws {TooLargeError} If the leaf or the entry is too large.
 */
export function decodeEnvelope(leaf: Uint8Array): SignedEntry {
  // attacker-controlled: leaf (from a tile, a bundle or a client).
  if (!(leaf instanceof Uint8Array)) throw new TypeError('envelope: expected a Uint8Array');
  if (leaf.length > MAX_ENVELOPE_SIZE) {
    throw new TooLargeError(`envelope: ${leaf.length} bytes, more than ${MAX_ENVELOPE_SIZE}`);
  }
  const fast = canonicalEnvelopeParts(leaf);
  if (fast !== undefined) {
    const bytes = new Uint8Array(leaf);
    const entryBytes = fast.entryBytes.slice();
    return { entry: decodeEntry(entryBytes), entryBytes, signature: fast.signature.slice(), bytes, leafHash: leafHash(bytes) };
  }
  const v = decodeCanonical(leaf, 'envelope');
  if (typeof v !== 'object' || v instanceof Uint8Array || Array.isArray(v)) {
    throw new MalformedError('envelope: expected a map');
  }
  for (const k of Object.keys(v)) {
    if (k !== 'entry' && k !== 'sig') throw new MalformedError(`envelope.${k}: unknown field`);
  }
  const entryBytes = Object.prototype.hasOwnProperty.call(v, 'entry') ? v['entry'] : undefined;
  const sig = Object.prototype.hasOwnProperty.call(v, 'sig') ? v['sig'] : undefined;
  if (entryBytes === undefined) throw new MalformedError('envelope.entry: missing');
  if (!(entryBytes instanceof Uint8Array)) throw new MalformedError('envelope.entry: expected bytes');
  if (sig === undefined) throw new MalformedError('envelope.sig: missing');
  if (!(sig instanceof Uint8Array)) throw new MalformedError('envelope.sig: expected bytes');
  if (sig.length !== ED25519_SIGNATURE_SIZE) {
    throw new MalformedError(`envelope.sig: ${sig.length} bytes, want ${ED25519_SIGNATURE_SIZE}`);
  }
  // decodeCanonical made sure `leaf` is the canonical encoding of {entry, sig}: exactly
  // what envelope() would rebuild, so it is kept rather than encoded again.
  const bytes = new Uint8Array(leaf);
  return { entry: decodeEntry(entryBytes), entryBytes, signature: sig, bytes, leafHash: leafHash(bytes) };
}

/** What {@link readEnvelope} reads: the entry, and views of `leaf`. */
export interface EnvelopeView {
  readonly entry: Entry;
  /** The entry's canonical encoding, a view into the leaf. */
  readonly entryBytes: Uint8Array;
  /** The 64-byte signature, a view into the leaf. */
  readonly signature: Uint8Array;
}

/**
 * {@link decodeEnvelope} without copies and without the leaf hash, for a reader of many
 * leaves that hashes them itself (the audit): the same checks and the same errors, but
 * `entryBytes` and `signature` are views into `leaf`, so the caller must neither change
 * `leaf` while it uses them nor keep them to keep `leaf` alive. Copies of every field of a
 * million entries made most of an audit's garbage.
 *
 * @throws {MalformedError}
 * @throws {TooLargeError}
 */
export function readEnvelope(leaf: Uint8Array): EnvelopeView {
  const fast = leaf instanceof Uint8Array && leaf.length <= MAX_ENVELOPE_SIZE ? canonicalEnvelopeParts(leaf) : undefined;
  if (fast === undefined) return decodeEnvelope(leaf); // the general parser: checks, or names what is wrong
  return { entry: decodeEntry(fast.entryBytes), entryBytes: fast.entryBytes, signature: fast.signature };
}

// {sig: bytes(64), entry: bytes(n)} has one canonical encoding: map(2), "sig" (the shorter
// key sorts first), a 64-byte string, "entry", the shortest head for n, the n bytes.
const SIG_PART = Uint8Array.of(0xa2, 0x63, 0x73, 0x69, 0x67, 0x58, 0x40);
const ENTRY_KEY = Uint8Array.of(0x65, 0x65, 0x6e, 0x74, 0x72, 0x79);

/**
 * The signature and entry bytes of `leaf` (views) when it is laid out exactly as that canonical
 * encoding, else undefined (then the general parser decides, and names what is wrong). A
 * match is what decodeCanonical would accept as {entry, sig} with a 64-byte sig, read
 * without building the map: the audit decodes a million envelopes.
 */
function canonicalEnvelopeParts(leaf: Uint8Array): { signature: Uint8Array; entryBytes: Uint8Array } | undefined {
  const SIG_END = SIG_PART.length + ED25519_SIGNATURE_SIZE;
  if (leaf.length < SIG_END + ENTRY_KEY.length + 1) return undefined;
  for (let i = 0; i < SIG_PART.length; i++) if (leaf[i] !== SIG_PART[i]) return undefined;
  for (let i = 0; i < ENTRY_KEY.length; i++) if (leaf[SIG_END + i] !== ENTRY_KEY[i]) return undefined;
  let o = SIG_END + ENTRY_KEY.length;
  const head = leaf[o]!;
  let n: number;
  if (head >= 0x40 && head <= 0x57) {
    n = head - 0x40;
    o += 1;
  } else if (head === 0x58 && o + 1 < leaf.length && leaf[o + 1]! >= 24) {
    n = leaf[o + 1]!;
    o += 2;
  } else if (head === 0x59 && o + 2 < leaf.length && ((leaf[o + 1]! << 8) | leaf[o + 2]!) >= 0x100) {
    n = (leaf[o + 1]! << 8) | leaf[o + 2]!;
    o += 3;
  } else {
    return undefined;
  }
  if (o + n !== leaf.length) return undefined;
  return { signature: leaf.subarray(SIG_PART.length, SIG_END), entryBytes: leaf.subarray(o) };
}

/**
 * Reports whether `e.signature` is a valid Ed25519 signature by `publicKey` over
 * `"glasslog/entry/v1\n" ‖ e.entryBytes` (RFC 8032, strict as in note/ed25519.ts).
 * Never throws: anything malformed gives `false`.
 */
export function verifyEntrySignature(e: SignedEntry, publicKey: Uint8Array, impl: Ed25519 = nobleEd25519): boolean {
  try {
    if (!(e.entryBytes instanceof Uint8Array)) return false;
    return impl.verify(publicKey, entrySigningMessage(e.entryBytes), e.signature) === true;
  } catch {
    return false;
  }
}

/**
 * The JSON form of a signed entry: `{ "entry": <entry JSON>, "sig": <base64> }`. The
 * entry's canonical bytes follow from its JSON form, so this carries the whole envelope.
 */
export function signedEntryToJson(e: SignedEntry): { entry: Record<string, unknown>; sig: string } {
  return { entry: entryToJson(e.entry), sig: encodeBase64(e.signature) };
}

/**
 * Parses the JSON form of a signed entry, strictly (see entryFromJson), and builds its
 * envelope. Does not verify the signature.
 *
 * @throws {MalformedError}
 * @throws {TooLargeError}
 */
export function signedEntryFromJson(json: unknown): SignedEntry {
  // attacker-controlled: json.
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new MalformedError('signed entry: expected an object');
  }
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'entry' && k !== 'sig' && o[k] !== undefined) throw new MalformedError(`${k}: unknown field`);
  }
  const own = (k: string) => (Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined);
  const sig = own('sig');
  if (sig === undefined) throw new MalformedError('sig: missing');
  if (typeof sig !== 'string') throw new MalformedError('sig: expected base64 text');
  const signature = decodeBase64(sig, 'sig');
  if (signature.length !== ED25519_SIGNATURE_SIZE) {
    throw new MalformedError(`sig: ${signature.length} bytes, want ${ED25519_SIGNATURE_SIZE}`);
  }
  const entry = entryFromJson(own('entry'));
  return envelope(encodeEntry(entry), signature);
}
