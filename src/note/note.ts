/**
 * @module
 * Signed notes (c2sp.org/signed-note, golang.org/x/mod/sumdb/note): parsing, formatting,
 * signing and opening, plus Ed25519 (type 0x01) signers and verifiers built from key
 * strings. Cosignatures (type 0x04) live in `cosignature.ts` and plug into
 * {@link openNote} as ordinary {@link NoteVerifier}s.
 *
 * A note is UTF-8 text, ending in a newline, then a blank line, then one or more signature
 * lines `— <key name> <base64(key id || signature)>\n`.
 */
import { MalformedError, TooLargeError, VerificationError } from '../core/errors.js';
import { decodeBase64, encodeBase64, quote, utf8 } from '../core/encoding.js';
import { nobleEd25519, ED25519_SIGNATURE_SIZE, type Ed25519 } from './ed25519.js';
import {
  ALG_ED25519,
  checkKeyId,
  formatKeyId,
  isValidKeyName,
  parseSignerKey,
  parseVerifierKey,
} from './keys.js';

/**
 * The largest note accepted, in UTF-8 bytes. c2sp.org/signed-note asks verifiers to bound
 * the note size; 1 MiB leaves room for 100 post-quantum (≈5 kB) signatures.
 */
export const MAX_NOTE_SIZE = 1 << 20;

/** At most this many signature lines per note (go-note `Open`; the spec requires ≥ 16). */
export const MAX_SIGNATURES = 100;

/** One signature line of a note. */
export interface NoteSignature {
  /** The key name, as written on the signature line. */
  readonly name: string;
  /** The 32-bit key ID: the first 4 decoded bytes of the line. */
  readonly keyId: number;
  /** The signature bytes after the 4-byte key ID (at least 1 byte). */
  readonly signature: Uint8Array;
}

/** Produces signatures for one key. */
export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  /**
   * Signs the note text (UTF-8, including its final newline) and returns the signature
   * bytes, without the key ID.
   */
  sign(text: Uint8Array): Uint8Array;
}

/** Checks signatures by one key. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  /**
   * Reports whether `sig` (the signature bytes after the key ID) is valid for the note
   * text `text` (UTF-8, including its final newline). MUST NOT throw on malformed `sig`.
   */
  verify(text: Uint8Array, sig: Uint8Array): boolean;
}

/** A parsed, unverified note. */
export interface Note {
  /** The signed text, ending in `\n`, without the blank separator line. */
  readonly text: string;
  /** Every signature line, in order, duplicates included. */
  readonly signatures: NoteSignature[];
}

/** The result of {@link openNote}. */
export interface OpenedNote {
  readonly text: string;
  /** Signatures by the given verifiers, all of which verified; at least one. */
  readonly verified: NoteSignature[];
  /** Signatures by keys not among the verifiers, which were ignored. */
  readonly unverified: NoteSignature[];
}

/** A signature by a known key failed to verify (go-note `InvalidSignatureError`). */
export class InvalidSignatureError extends VerificationError {
  readonly keyName: string;
  readonly keyId: number;
  constructor(keyName: string, keyId: number) {
    super(`invalid signature by known key ${keyLabel(keyName, keyId)}`);
    this.keyName = keyName;
    this.keyId = keyId;
  }
}

/**
 * The note is well formed but no signature is by a known key (go-note
 * `UnverifiedNoteError`). The parsed note is attached for diagnostics; it is NOT trusted.
 */
export class UnverifiedNoteError extends VerificationError {
  readonly text: string;
  readonly unverified: NoteSignature[];
  constructor(text: string, unverified: NoteSignature[]) {
    const shown = unverified.slice(0, 5).map((s) => keyLabel(s.name, s.keyId));
    const more = unverified.length - shown.length;
    if (more > 0) shown.push(`and ${more} more`);
    super(`no signature by a known key (note is signed by ${shown.join(', ')})`);
    this.text = text;
    this.unverified = unverified;
  }
}

/** `name+hex id`, with an over-long (attacker-supplied) name shortened for messages. */
function keyLabel(name: string, id: number): string {
  const n = name.length > 64 ? name.slice(0, 64) + '…' : name;
  return `${n}+${formatKeyId(id)}`;
}

/** Map key for a (name, key ID) pair; unambiguous because names contain no spaces. */
function pairKey(name: string, id: number): string {
  return `${name} ${id}`;
}

// c2sp.org/signed-note: the note MUST be valid UTF-8 with no control characters below
// U+0020 other than the newline.
const BAD_CONTROL = /[\u0000-\u0009\u000b-\u001f]/;
const LONE_SURROGATE = /\p{Surrogate}/u;
// U+2014 EM DASH, then U+0020 SPACE.
const SIG_PREFIX = '\u2014 ';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Checks the characters of a whole note or note text; `what` prefixes the message. */
function checkChars(s: string, what: string): void {
  if (LONE_SURROGATE.test(s)) throw new MalformedError(`${what}: not valid UTF-8 (lone surrogate)`);
  const m = BAD_CONTROL.exec(s);
  if (m !== null) {
    const code = m[0].charCodeAt(0).toString(16).padStart(4, '0');
    throw new MalformedError(`${what}: control character U+${code} at offset ${m.index}`);
  }
}

/**
 * Checks that `text` can be the text of a note: it ends in `\n`, is valid Unicode (no lone
 * surrogates) and has no control characters other than `\n` (c2sp.org/signed-note).
 * @throws {MalformedError}
 */
export function checkNoteText(text: string): void {
  const what = 'malformed note text';
  if (typeof text !== 'string') throw new TypeError('note text must be a string');
  if (!text.endsWith('\n')) throw new MalformedError(`${what}: does not end in a newline`);
  checkChars(text, what);
}

function tooLarge(size: number): TooLargeError {
  return new TooLargeError(`note is ${size} bytes, more than the ${MAX_NOTE_SIZE}-byte limit`);
}

/** Decodes and size-checks a message given as bytes or as a string. */
function decodeMessage(msg: string | Uint8Array): string {
  if (msg instanceof Uint8Array) {
    // Size first: never decode more than the limit.
    if (msg.length > MAX_NOTE_SIZE) throw tooLarge(msg.length);
    try {
      // ignoreBOM keeps a leading U+FEFF as part of the text instead of silently dropping it.
      return strictUtf8.decode(msg);
    } catch (cause) {
      throw new MalformedError('malformed note: not valid UTF-8', { cause });
    }
  }
  if (typeof msg !== 'string') throw new TypeError('note must be a string or a Uint8Array');
  // A UTF-16 code unit never takes fewer than one UTF-8 byte, so this bounds the work below.
  if (msg.length > MAX_NOTE_SIZE) throw tooLarge(msg.length);
  if (LONE_SURROGATE.test(msg)) {
    throw new MalformedError('malformed note: not valid UTF-8 (lone surrogate)');
  }
  const size = utf8(msg).length;
  if (size > MAX_NOTE_SIZE) throw tooLarge(size);
  return msg;
}

/** Parses one signature line (without its `\n`); `n` is its 1-based number. */
function parseSignatureLine(line: string, n: number): NoteSignature {
  const what = `malformed note: signature line ${n}`;
  // go-note Open: every line after the blank line must start with "— ", so trailing text
  // after the signatures is malformed too.
  if (!line.startsWith(SIG_PREFIX)) throw new MalformedError(`${what}: does not start with "— "`);
  const rest = line.slice(SIG_PREFIX.length);
  const space = rest.indexOf(' ');
  const name = space < 0 ? rest : rest.slice(0, space);
  const b64 = space < 0 ? '' : rest.slice(space + 1);
  if (!isValidKeyName(name)) throw new MalformedError(`${what}: invalid key name ${quote(name)}`);
  if (b64 === '') throw new MalformedError(`${what}: missing signature`);
  const raw = decodeBase64(b64, what);
  // go-note: a signature decodes to a 4-byte key ID and at least one byte of signature.
  if (raw.length < 5) {
    throw new MalformedError(`${what}: signature is ${raw.length} bytes, need at least 5`);
  }
  const keyId = new DataView(raw.buffer, raw.byteOffset, 4).getUint32(0, false);
  return { name, keyId, signature: raw.slice(4) };
}

/**
 * Parses a note without verifying any signature, as strictly as go-note `Open`.
 *
 * The message must be at most {@link MAX_NOTE_SIZE} UTF-8 bytes, valid UTF-8, free of
 * control characters other than `\n`, and split at its LAST `\n\n` into the text
 * (including the first of those two newlines) and a non-empty block of at most
 * {@link MAX_SIGNATURES} signature lines, each `— <name> <base64>\n` with a valid key name
 * and canonical base64 of at least 5 bytes. Nothing may follow the last signature line.
 *
 * Every signature is returned, in order, duplicates included, so that
 * `formatNote(n.text, n.signatures)` gives back the input exactly. Byte input is decoded
 * strictly (a leading byte-order mark is kept as text, not dropped).
 *
 * @throws {TooLargeError} If the note is larger than {@link MAX_NOTE_SIZE}.
 * @throws {MalformedError} On any other deviation; the message says where.
 */
export function parseNote(msg: string | Uint8Array): Note {
  // attacker-controlled: the whole message.
  const s = decodeMessage(msg);
  checkChars(s, 'malformed note');
  // go-note: split = LastIndex(msg, "\n\n"); text = msg[:split+1]; sigs = msg[split+2:].
  const split = s.lastIndexOf('\n\n');
  if (split < 0) throw new MalformedError('malformed note: no blank line before the signatures');
  const text = s.slice(0, split + 1);
  const block = s.slice(split + 2);
  if (block === '') throw new MalformedError('malformed note: no signature lines');
  if (!block.endsWith('\n')) {
    throw new MalformedError('malformed note: last signature line does not end in a newline');
  }
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) {
    throw new MalformedError(`malformed note: ${lines.length} signature lines, at most ${MAX_SIGNATURES} allowed`);
  }
  return { text, signatures: lines.map((line, i) => parseSignatureLine(line, i + 1)) };
}

/** Formats one signature line, `— <name> <base64(key ID || signature)>\n`. @throws {MalformedError} */
export function formatSignatureLine(sig: NoteSignature): string {
  if (!isValidKeyName(sig.name)) {
    throw new MalformedError(`malformed signature: invalid key name ${quote(sig.name)}`);
  }
  checkKeyId(sig.keyId);
  if (!(sig.signature instanceof Uint8Array) || sig.signature.length === 0) {
    throw new MalformedError(`malformed signature by ${keyLabel(sig.name, sig.keyId)}: empty signature`);
  }
  const raw = new Uint8Array(4 + sig.signature.length);
  new DataView(raw.buffer).setUint32(0, sig.keyId, false);
  raw.set(sig.signature, 4);
  return `${SIG_PREFIX}${sig.name} ${encodeBase64(raw)}\n`;
}

/**
 * Formats a note: the text, a blank line, then one line per signature, in the given order.
 * The result is always accepted by {@link parseNote}, which returns the same text and
 * signatures.
 *
 * @throws {MalformedError} If the text is not valid note text ({@link checkNoteText}), there
 *   are no signatures or more than {@link MAX_SIGNATURES}, or a signature has an invalid
 *   name or is empty.
 * @throws {TooLargeError} If the result would exceed {@link MAX_NOTE_SIZE}.
 * @throws {RangeError} If a key ID is not a uint32.
 */
export function formatNote(text: string, signatures: readonly NoteSignature[]): string {
  checkNoteText(text);
  if (signatures.length === 0) {
    throw new MalformedError('malformed note: a note needs at least one signature');
  }
  if (signatures.length > MAX_SIGNATURES) {
    throw new MalformedError(`malformed note: ${signatures.length} signatures, at most ${MAX_SIGNATURES} allowed`);
  }
  const out = text + '\n' + signatures.map(formatSignatureLine).join('');
  const size = utf8(out).length;
  if (size > MAX_NOTE_SIZE) throw tooLarge(size);
  return out;
}

/**
 * Signs `text` with every signer and returns the formatted note, like go-note `Sign`: the
 * `existing` signatures come first, minus any with the same (name, key ID) as one of the
 * signers, then the new signatures in signer order.
 *
 * @example
 * ```ts
 * const signer = newSigner(skey);
 * const note = signNote('example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n', [signer]);
 * ```
 * @throws {MalformedError} If the text does not end in `\n` or is otherwise invalid, or a
 *   signer's name is invalid. See also {@link formatNote}.
 */
export function signNote(
  text: string,
  signers: readonly NoteSigner[],
  existing: readonly NoteSignature[] = []
): string {
  checkNoteText(text);
  const textBytes = utf8(text);
  const replaced = new Set<string>();
  const fresh: NoteSignature[] = [];
  for (const signer of signers) {
    if (!isValidKeyName(signer.name)) {
      throw new MalformedError(`invalid signer: invalid key name ${quote(signer.name)}`);
    }
    checkKeyId(signer.keyId);
    replaced.add(pairKey(signer.name, signer.keyId));
    fresh.push({ name: signer.name, keyId: signer.keyId, signature: signer.sign(textBytes) });
  }
  const kept = existing.filter((s) => !replaced.has(pairKey(s.name, s.keyId)));
  return formatNote(text, [...kept, ...fresh]);
}

/**
 * Parses a note and checks its signatures against the known verifiers, like go-note `Open`:
 *
 * - A signature whose (name, key ID) matches a verifier MUST verify; if it does not, the
 *   whole note is rejected with {@link InvalidSignatureError} (c2sp.org/signed-note: a
 *   client SHOULD reject a note with a failed known signature).
 * - A repeated signature by the same known key is dropped without being checked; only the
 *   first one counts.
 * - Signatures by unknown keys are ignored (returned in `unverified`); identical repeated
 *   lines are dropped. The spec says an unknown (name, key ID) MUST be ignored even if the
 *   name or the ID alone matches.
 * - If no signature verified, the note is rejected with {@link UnverifiedNoteError}.
 *
 * Cosignatures are checked the same way by passing cosignature verifiers
 * (`newCosignatureVerifier`) along with the log's verifier.
 *
 * @example
 * ```ts
 * const { text, verified } = openNote(msg, [newVerifier(logVkey), newCosignatureVerifier(w1)]);
 * ```
 * @throws {TooLargeError} {@link MalformedError} As {@link parseNote}.
 * @throws {VerificationError} {@link InvalidSignatureError} or {@link UnverifiedNoteError}.
 * @throws {RangeError} If two different verifiers share the (name, key ID) of a signature.
 */
export function openNote(msg: string | Uint8Array, verifiers: readonly NoteVerifier[]): OpenedNote {
  const { text, signatures } = parseNote(msg);
  const known = new Map<string, NoteVerifier[]>();
  for (const v of verifiers) {
    const k = pairKey(v.name, v.keyId);
    const list = known.get(k);
    if (list === undefined) known.set(k, [v]);
    else if (!list.includes(v)) list.push(v);
  }
  const textBytes = utf8(text);
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seen = new Set<string>();
  const seenUnverified = new Set<string>();
  for (const sig of signatures) {
    const k = pairKey(sig.name, sig.keyId);
    const candidates = known.get(k);
    if (candidates === undefined) {
      // go-note: drop repeated identical unverified signatures.
      const line = `${k} ${encodeBase64(sig.signature)}`;
      if (!seenUnverified.has(line)) {
        seenUnverified.add(line);
        unverified.push(sig);
      }
      continue;
    }
    // go-note ambiguousVerifierError: a misconfigured verifier list, not bad input.
    if (candidates.length > 1) {
      throw new RangeError(`ambiguous key ${keyLabel(sig.name, sig.keyId)}: ${candidates.length} verifiers`);
    }
    // go-note: drop repeated signatures by a single verifier.
    if (seen.has(k)) continue;
    seen.add(k);
    if (!candidates[0]!.verify(textBytes, sig.signature)) {
      throw new InvalidSignatureError(sig.name, sig.keyId);
    }
    verified.push(sig);
  }
  if (verified.length === 0) throw new UnverifiedNoteError(text, unverified);
  return { text, verified, unverified };
}

/**
 * Builds an Ed25519 (type 0x01) note signer from a go-note signer key
 * (`PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`).
 *
 * @param impl The Ed25519 backend; pass `nodeEd25519` on the server for speed.
 * @throws {MalformedError} If the key does not parse, or is not a type 0x01 key (use
 *   `newCosigner` for type 0x04).
 */
export function newSigner(skey: string, impl: Ed25519 = nobleEd25519): NoteSigner {
  const k = parseSignerKey(skey, impl);
  if (k.alg !== ALG_ED25519) {
    throw new MalformedError(
      `signer key ${keyLabel(k.name, k.keyId)}: a type 0x04 cosignature key, not a type 0x01 note key (use newCosigner)`
    );
  }
  const seed = k.seed;
  return {
    name: k.name,
    keyId: k.keyId,
    // c2sp.org/signed-note: type 0x01 signs the note text itself with RFC 8032 Ed25519.
    sign: (text) => impl.sign(seed, text),
  };
}

/**
 * Builds an Ed25519 (type 0x01) note verifier from a verifier key
 * (`<name>+<hex id>+<base64(0x01 || public key)>`).
 *
 * @param impl The Ed25519 backend; pass `nodeEd25519` on the server for speed.
 * @throws {MalformedError} If the key does not parse, or is not a type 0x01 key (use
 *   `newCosignatureVerifier` for type 0x04).
 */
export function newVerifier(vkey: string, impl: Ed25519 = nobleEd25519): NoteVerifier {
  const k = parseVerifierKey(vkey);
  if (k.alg !== ALG_ED25519) {
    throw new MalformedError(
      `verifier key ${keyLabel(k.name, k.keyId)}: a type 0x04 cosignature key, not a type 0x01 note key (use newCosignatureVerifier)`
    );
  }
  const pub = k.publicKey;
  return {
    name: k.name,
    keyId: k.keyId,
    verify: (text, sig) => sig.length === ED25519_SIGNATURE_SIZE && impl.verify(pub, text, sig),
  };
}
