/**
 * @module
 * Verifying a c2sp.org/tlog-proof@v1 receipt offline: the receipt's checkpoint must be
 * signed by the log (and, under a c2sp.org/tlog-policy, cosigned by a quorum of witnesses),
 * and its inclusion proof must lead from the entry's leaf hash at the stated index to the
 * checkpoint's root hash. Pure: no Node built-ins, so it runs in browsers.
 *
 * Every failure is a {@link MalformedError} (the receipt, the leaf or a key does not
 * parse) or a {@link VerificationError} (a signature, the origin, the index or a hash does
 * not check out), whose message says which. Nothing else is ever thrown.
 */
import { parseCheckpoint, type Checkpoint } from '../core/checkpoint.js';
import { encodeBase64, equalBytes, quote } from '../core/encoding.js';
import { MalformedError, TlogError, VerificationError } from '../core/errors.js';
import { HASH_SIZE, leafHash as rfc6962LeafHash } from '../core/hash.js';
import { parseTlogProof, type TlogProof } from '../core/tlog-proof.js';
import { rootFromInclusionProof } from '../core/tree.js';
import { formatKeyId } from '../note/keys.js';
import { InvalidSignatureError, newVerifier, openNote, UnverifiedNoteError } from '../note/note.js';
import { verifyCheckpoint, type Policy } from './policy.js';

/** A receipt that {@link verifyReceipt} accepted. */
export interface VerifiedReceipt {
  /** The entry's index in the log. */
  readonly index: number;
  /** The entry's RFC 6962 leaf hash, SHA-256(0x00 || entry). */
  readonly leafHash: Uint8Array;
  /** The checkpoint the inclusion proof leads to, signed by the log. */
  readonly checkpoint: Checkpoint;
  /** The checkpoint note, verbatim, with all its signature lines. */
  readonly note: string;
  /** Witness names (policy names) whose cosignature verified; empty with a bare log key. */
  readonly cosigned: ReadonlySet<string>;
}

/** What a receipt is checked against: the log's verifier key, or a tlog-policy. */
export type ReceiptTrust = { readonly logKey: string } | { readonly policy: Policy };

const NO_WITNESSES: ReadonlySet<string> = Object.freeze(new Set<string>());

/**
 * Verifies a c2sp.org/tlog-proof receipt for `leaf` (the entry bytes, or its leaf hash
 * given as `{ leafHash }`) against either the log's verifier key (`{ logKey: vkey }`) or a
 * tlog-policy (`{ policy }`: log key, witnesses and quorum, via `verifyCheckpoint`).
 *
 * Checks, in order: the receipt parses strictly; the checkpoint note carries a valid
 * signature by the log's key (a signature line by a known key that does not verify fails
 * the whole receipt, c2sp.org/signed-note) and, with a policy, meets the witness quorum;
 * the checkpoint's origin is the log's (the key name, or a policy log); the index is below
 * the tree size; the inclusion proof leads from the leaf hash to the checkpoint's root.
 *
 * Signatures by keys the caller does not know are ignored, and the receipt's `extra` line
 * is unauthenticated and ignored.
 *
 * @example
 * ```ts
 * const r = verifyReceipt(receiptText, entryBytes, { logKey: 'example.com/log+1a2b3c4d+A…' });
 * // r.index, r.checkpoint.treeSize, r.checkpoint.rootHash
 * ```
 * @throws {MalformedError} If the receipt, its checkpoint note, the leaf argument or the
 *   log key does not parse.
 * @throws {VerificationError} If a signature, the quorum, the origin, the index or the
 *   inclusion proof does not check out.
 */
export function verifyReceipt(
  receipt: string,
  leaf: Uint8Array | { readonly leafHash: Uint8Array },
  trust: ReceiptTrust
): VerifiedReceipt {
  try {
    return verify(receipt, leaf, trust);
  } catch (err) {
    if (err instanceof MalformedError || err instanceof VerificationError) throw err;
    // TooLargeError (an oversized note or checkpoint) and any other parse failure count as
    // malformed input; anything unexpected (a hand-built policy that openNote finds
    // ambiguous, a hostile getter) fails verification rather than escaping as another type.
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof TlogError) throw new MalformedError(`receipt: ${message}`, { cause: err });
    throw new VerificationError(`receipt: could not be verified: ${message}`, { cause: err });
  }
}

function verify(
  receipt: unknown,
  leaf: unknown,
  trust: unknown
): VerifiedReceipt {
  // attacker-controlled: the whole receipt. The leaf and the trust come from the caller.
  if (typeof receipt !== 'string') throw new MalformedError('receipt: not a string');
  const hash = leafHashOf(leaf);
  const p: TlogProof = parseTlogProof(receipt);

  const { checkpoint, cosigned } = verifyNote(p.checkpoint, trust);

  if (p.index >= checkpoint.treeSize) {
    throw new VerificationError(
      `receipt: index ${p.index} is not below the tree size ${checkpoint.treeSize} of checkpoint ${quote(checkpoint.origin)}`
    );
  }
  let root: Uint8Array;
  try {
    root = rootFromInclusionProof(hash, p.index, checkpoint.treeSize, [...p.proof]);
  } catch (err) {
    if (!(err instanceof VerificationError)) throw err;
    throw new VerificationError(`receipt: ${err.message} (leaf hash ${encodeBase64(hash)})`, { cause: err });
  }
  if (!equalBytes(root, checkpoint.rootHash)) {
    throw new VerificationError(
      `receipt: the inclusion proof of leaf hash ${encodeBase64(hash)} at index ${p.index} ` +
        `leads to root hash ${encodeBase64(root)}, not to the root hash ${encodeBase64(checkpoint.rootHash)} ` +
        `of checkpoint ${quote(checkpoint.origin)} at tree size ${checkpoint.treeSize}`
    );
  }
  return { index: p.index, leafHash: hash, checkpoint, note: p.checkpoint, cosigned };
}

/** The leaf hash of the caller's `leaf` argument. */
function leafHashOf(leaf: unknown): Uint8Array {
  // An empty entry is a valid RFC 6962 leaf (transparency-dev/merkle's test data has one),
  // though this log never accepts one.
  if (leaf instanceof Uint8Array) return rfc6962LeafHash(leaf);
  const h = typeof leaf === 'object' && leaf !== null ? (leaf as { leafHash?: unknown }).leafHash : undefined;
  if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
    throw new MalformedError(`receipt: the leaf must be the entry bytes or { leafHash } of ${HASH_SIZE} bytes`);
  }
  return Uint8Array.from(h);
}

/**
 * Verifies a checkpoint note against a trust (the log's key, or a policy with its quorum).
 * Messages start with `what` (e.g. "old checkpoint").
 * @throws {MalformedError}, {VerificationError}
 */
export function verifyTrustedCheckpoint(note: string, trust: ReceiptTrust, what = 'checkpoint'): { checkpoint: Checkpoint; cosigned: ReadonlySet<string> } {
  try {
    return verifyNote(note, trust, what);
  } catch (err) {
    if (err instanceof MalformedError || err instanceof VerificationError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof TlogError) throw new MalformedError(`${what}: ${message}`, { cause: err });
    throw new VerificationError(`${what}: could not be verified: ${message}`, { cause: err });
  }
}

/** Opens the checkpoint note with the trust's keys; returns the checkpoint and the witnesses. */
function verifyNote(note: string, trust: unknown, what = 'receipt'): { checkpoint: Checkpoint; cosigned: ReadonlySet<string> } {
  const t = (typeof trust === 'object' && trust !== null ? trust : {}) as { logKey?: unknown; policy?: unknown };
  if (typeof t.logKey === 'string') {
    let verifier;
    try {
      verifier = newVerifier(t.logKey);
    } catch (err) {
      throw new MalformedError(`${what}: the log key: ${(err as Error).message}`, { cause: err });
    }
    const label = `${verifier.name}+${formatKeyId(verifier.keyId)}`;
    let text: string;
    try {
      text = openNote(note, [verifier]).text;
    } catch (err) {
      if (err instanceof InvalidSignatureError) {
        throw new VerificationError(`${what}: the checkpoint's signature by the log key ${quote(label)} is invalid`, { cause: err });
      }
      if (err instanceof UnverifiedNoteError) {
        throw new VerificationError(`${what}: the checkpoint is not signed by the log key ${quote(label)}: ${err.message}`, { cause: err });
      }
      throw prefixed(err, `${what}: checkpoint note`);
    }
    let checkpoint: Checkpoint;
    try {
      checkpoint = parseCheckpoint(text);
    } catch (err) {
      throw prefixed(err, what);
    }
    // c2sp.org/tlog-checkpoint: the origin is the log's identity, and by convention (which
    // this log follows) its key's name.
    if (checkpoint.origin !== verifier.name) {
      throw new VerificationError(
        `${what}: checkpoint origin ${quote(checkpoint.origin)} is not the log key's name ${quote(verifier.name)}`
      );
    }
    return { checkpoint, cosigned: NO_WITNESSES };
  }
  if (typeof t.policy === 'object' && t.policy !== null) {
    const policy = t.policy as Policy;
    try {
      const v = verifyCheckpoint(policy, note);
      return { checkpoint: v.checkpoint, cosigned: v.cosigned };
    } catch (err) {
      if (err instanceof InvalidSignatureError) {
        throw new VerificationError(`${what}: the checkpoint's signature by ${keyRole(policy, err.keyName, err.keyId)} is invalid`, { cause: err });
      }
      throw prefixed(err, `${what}: checkpoint`);
    }
  }
  throw new MalformedError(`${what}: the trust must be { logKey } or { policy }`);
}

/** Names a known key by its role in the policy, for messages. */
function keyRole(policy: Policy, name: string, id: number): string {
  const label = quote(`${name}+${formatKeyId(id)}`);
  if (policy.logs.some((l) => l.verifier.name === name && l.verifier.keyId === id)) return `the log key ${label}`;
  const w = policy.witnesses.find((x) => x.verifier.name === name && x.verifier.keyId === id);
  return w === undefined ? `key ${label}` : `witness ${quote(w.name)} (key ${label})`;
}

/** The same kind of error with `prefix: ` before its message. */
function prefixed(err: unknown, prefix: string): Error {
  if (err instanceof VerificationError) return new VerificationError(`${prefix}: ${err.message}`, { cause: err });
  if (err instanceof TlogError) return new MalformedError(`${prefix}: ${err.message}`, { cause: err });
  return err instanceof Error ? err : new VerificationError(`${prefix}: ${String(err)}`);
}
