/**
 * Fork evidence: two checkpoints of one origin, both validly signed by the log, that cannot
 * both be views of one append-only tree, plus the hashes that prove it. Anyone holding the
 * log's public key can check a file offline (spec/witness.md, "Fork evidence").
 *
 *   glasslog/fork-evidence@v1
 *   <base64 hash>…        the consistency path (0 lines when the sizes are equal)
 *   <empty line>
 *   <checkpoint note of the smaller (or equal) size, verbatim>
 *   <empty line>
 *   <checkpoint note of the larger size, verbatim>
 *
 * For sizes m < n, the path is PROOF(m, n) taken from the larger tree, with its seed made
 * explicit (for m a power of two, the hash of the subtree [0, m) comes first). Run through
 * the RFC 9162 consistency loop it yields the larger checkpoint's root, so the hashes are
 * the larger tree's, and a root for the first m entries that differs from the smaller
 * checkpoint's root. Forging such a path would need a SHA-256 collision. For m = n the two
 * roots simply differ.
 */
import { parseCheckpoint, type Checkpoint } from '../core/checkpoint.js';
import { decodeBase64, encodeBase64, equalBytes, quote } from '../core/encoding.js';
import { MalformedError, VerificationError } from '../core/errors.js';
import { EMPTY_ROOT, HASH_SIZE } from '../core/hash.js';
import { MAX_PROOF_HASHES } from '../core/tlog-proof.js';
import { consistencyPath, rootsFromConsistencyPath, type NodeReader } from '../core/tree.js';
import { openNote, parseNote, type NoteVerifier } from '../note/note.js';

export const FORK_EVIDENCE_HEADER = 'glasslog/fork-evidence@v1';
export const MAX_FORK_EVIDENCE_SIZE = 64 * 1024;

export interface ForkEvidence {
  /** The consistency path with explicit seed; empty when the sizes are equal. */
  readonly path: readonly Uint8Array[];
  /** The signed note of the checkpoint with the smaller (or equal) tree size. */
  readonly smaller: string;
  /** The signed note of the checkpoint with the larger tree size. */
  readonly larger: string;
}

export interface VerifiedFork {
  readonly origin: string;
  readonly smaller: Checkpoint;
  readonly larger: Checkpoint;
  /** For different sizes: the root of the first `smaller.treeSize` entries of the larger tree. */
  readonly prefixRoot?: Uint8Array;
}

export function formatForkEvidence(e: ForkEvidence): string {
  let s = FORK_EVIDENCE_HEADER + '\n';
  for (const h of e.path) s += encodeBase64(h) + '\n';
  return s + '\n' + e.smaller + '\n' + e.larger;
}

/**
 * Parses an evidence file strictly; the notes are returned unverified.
 * @throws {MalformedError}
 */
export function parseForkEvidence(text: string): ForkEvidence {
  const bad = (why: string) => new MalformedError(`malformed fork evidence: ${why}`);
  if (text.length > MAX_FORK_EVIDENCE_SIZE) throw bad('too large');
  const headEnd = text.indexOf('\n\n');
  if (headEnd < 0) throw bad('no empty line after the header');
  const head = text.slice(0, headEnd).split('\n');
  if (head[0] !== FORK_EVIDENCE_HEADER) throw bad(`first line must be ${FORK_EVIDENCE_HEADER}`);
  if (head.length - 1 > MAX_PROOF_HASHES + 1) throw bad(`more than ${MAX_PROOF_HASHES + 1} path hashes`);
  const path = head.slice(1).map((line, i) => {
    const h = decodeBase64(line, `malformed fork evidence: path line ${i + 1}`);
    if (h.length !== HASH_SIZE) throw bad(`path line ${i + 1} is not a 32-byte hash`);
    return h;
  });
  // A checkpoint body has no empty line, and signature lines are never empty, so the first
  // note ends at the second empty line after it starts: text, "\n", signatures, "\n".
  const rest = text.slice(headEnd + 2);
  const textEnd = rest.indexOf('\n\n');
  if (textEnd < 0) throw bad('the first checkpoint has no signatures');
  const sigsEnd = rest.indexOf('\n\n', textEnd + 2);
  if (sigsEnd < 0) throw bad('no empty line between the two checkpoints');
  const smaller = rest.slice(0, sigsEnd + 1);
  const larger = rest.slice(sigsEnd + 2);
  if (larger === '') throw bad('missing the second checkpoint');
  return { path, smaller, larger };
}

/** Opens a checkpoint note with the log's key and parses its body. */
function openCheckpoint(note: string, log: readonly NoteVerifier[], which: string): Checkpoint {
  let text: string;
  try {
    text = openNote(note, log).text;
  } catch (err) {
    throw new VerificationError(`fork evidence: the ${which} checkpoint is not signed by the log: ${(err as Error).message}`);
  }
  return parseCheckpoint(text);
}

/**
 * Checks fork evidence with nothing but the log's verifier key(s). Returns what it proves.
 * @throws {MalformedError} if the file does not parse
 * @throws {VerificationError} naming what does not hold (a signature, the origin, a hash)
 */
export function verifyForkEvidence(text: string, log: readonly NoteVerifier[]): VerifiedFork {
  const e = parseForkEvidence(text);
  const a = openCheckpoint(e.smaller, log, 'first');
  const b = openCheckpoint(e.larger, log, 'second');
  if (a.origin !== b.origin) throw new VerificationError(`fork evidence: the checkpoints have different origins, ${quote(a.origin)} and ${quote(b.origin)}`);
  if (a.treeSize > b.treeSize) throw new VerificationError(`fork evidence: the first checkpoint (size ${a.treeSize}) must not be larger than the second (size ${b.treeSize})`);
  if (a.treeSize === b.treeSize) {
    if (e.path.length !== 0) throw new VerificationError('fork evidence: checkpoints of equal size take no path hashes');
    if (equalBytes(a.rootHash, b.rootHash)) throw new VerificationError(`fork evidence: both checkpoints of size ${a.treeSize} have the same root; they do not conflict`);
    return { origin: a.origin, smaller: a, larger: b };
  }
  if (a.treeSize === 0) {
    throw new VerificationError('fork evidence: a checkpoint of size 0 is consistent with every tree (a wrong empty root is an invalid checkpoint, not a fork)');
  }
  const { oldRoot, newRoot } = rootsFromConsistencyPath(a.treeSize, b.treeSize, e.path);
  if (!equalBytes(newRoot, b.rootHash)) {
    throw new VerificationError(`fork evidence: the path does not lead to the root of the size ${b.treeSize} checkpoint`);
  }
  if (equalBytes(oldRoot, a.rootHash)) {
    throw new VerificationError(`fork evidence: the checkpoints are consistent (the size ${b.treeSize} tree extends the size ${a.treeSize} tree)`);
  }
  return { origin: a.origin, smaller: a, larger: b, prefixRoot: oldRoot };
}

/** What comparing two log-signed checkpoints of one origin found. */
export type Comparison =
  | { readonly kind: 'consistent' }
  | { readonly kind: 'fork'; readonly evidence: string }
  /** The larger tree's hashes (as served) do not lead to its signed root: nothing proven. */
  | { readonly kind: 'unproven'; readonly reason: string };

/**
 * Compares two checkpoint notes of one origin, already verified as signed by the log.
 * `larger` reads nodes of the tree of the larger checkpoint (typically from the log's
 * tiles); it is only called when the sizes differ, and what it returns is checked against
 * the larger checkpoint's signed root before anything is concluded.
 */
export function compareCheckpoints(
  x: { note: string; checkpoint: Checkpoint },
  y: { note: string; checkpoint: Checkpoint },
  larger: NodeReader | undefined
): Comparison {
  const [s, l] = x.checkpoint.treeSize <= y.checkpoint.treeSize ? [x, y] : [y, x];
  const m = s.checkpoint.treeSize;
  const n = l.checkpoint.treeSize;
  if (m === n) {
    if (equalBytes(s.checkpoint.rootHash, l.checkpoint.rootHash)) return { kind: 'consistent' };
    return { kind: 'fork', evidence: formatForkEvidence({ path: [], smaller: s.note, larger: l.note }) };
  }
  if (m === 0) {
    return equalBytes(s.checkpoint.rootHash, EMPTY_ROOT) ? { kind: 'consistent' } : { kind: 'unproven', reason: 'a size 0 checkpoint with a non-empty root' };
  }
  if (!larger) return { kind: 'unproven', reason: `no source of the size ${n} tree's hashes` };
  let path: Uint8Array[];
  try {
    path = consistencyPath(m, n, larger);
  } catch (err) {
    return { kind: 'unproven', reason: `could not read the size ${n} tree: ${(err as Error).message}` };
  }
  const { oldRoot, newRoot } = rootsFromConsistencyPath(m, n, path);
  if (!equalBytes(newRoot, l.checkpoint.rootHash)) {
    return { kind: 'unproven', reason: `the hashes served for the size ${n} tree do not lead to its signed root` };
  }
  if (equalBytes(oldRoot, s.checkpoint.rootHash)) return { kind: 'consistent' };
  return { kind: 'fork', evidence: formatForkEvidence({ path, smaller: s.note, larger: l.note }) };
}

/** Parses a checkpoint note's body without verifying it (for callers that verified it). */
export function checkpointOf(note: string): Checkpoint {
  return parseCheckpoint(parseNote(note).text);
}
