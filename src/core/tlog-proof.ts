/**
 * C2SP tlog-proof@v1: an inclusion proof bundled with the checkpoint it proves against.
 *
 *   c2sp.org/tlog-proof@v1
 *   [extra <base64>]
 *   index <decimal>
 *   <base64 hash>…          (leaf's sibling first, root's child last)
 *   <empty line>
 *   <checkpoint note, verbatim, with its signatures>
 */
import { HASH_SIZE } from './hash.js';
import { decodeBase64, encodeBase64, parseDecimal } from './encoding.js';
import { MalformedError } from './errors.js';

export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';
/** A proof for a tree of up to 2^63 leaves has at most 63 hashes. */
export const MAX_PROOF_HASHES = 63;
export const MAX_TLOG_PROOF_SIZE = 64 * 1024;

export interface TlogProof {
  readonly index: number;
  readonly proof: readonly Uint8Array[];
  /** The signed checkpoint note, verbatim. */
  readonly checkpoint: string;
  /** Unauthenticated opaque data; never to be trusted. */
  readonly extra?: Uint8Array;
}

/**
 * Formats a tlog-proof. `encodeHash` lets a caller formatting many proofs of one tree share
 * the base64 of the hashes they have in common (default: encodeBase64).
 */
export function formatTlogProof(p: TlogProof, encodeHash: (h: Uint8Array) => string = encodeBase64): string {
  let s = TLOG_PROOF_HEADER + '\n';
  if (p.extra !== undefined) s += `extra ${encodeBase64(p.extra)}\n`;
  s += `index ${p.index}\n`;
  for (const h of p.proof) s += encodeHash(h) + '\n';
  return s + '\n' + p.checkpoint;
}

/**
 * Parses a tlog-proof strictly. The checkpoint is returned unverified.
 * @throws {MalformedError}
 */
export function parseTlogProof(text: string): TlogProof {
  const bad = (why: string) => new MalformedError(`malformed tlog-proof: ${why}`);
  if (text.length > MAX_TLOG_PROOF_SIZE) throw bad('too large');
  const split = text.indexOf('\n\n');
  if (split < 0) throw bad('no empty line before the checkpoint');
  const head = text.slice(0, split).split('\n');
  const checkpoint = text.slice(split + 2);
  if (checkpoint === '') throw bad('missing checkpoint');
  let i = 0;
  if (head[i++] !== TLOG_PROOF_HEADER) throw bad(`first line must be ${TLOG_PROOF_HEADER}`);
  let extra: Uint8Array | undefined;
  if (head[i]?.startsWith('extra ')) extra = decodeBase64(head[i++]!.slice(6), 'malformed tlog-proof: extra');
  const idx = head[i++];
  if (idx === undefined || !idx.startsWith('index ')) throw bad('missing index line');
  const index = parseDecimal(idx.slice(6), 'malformed tlog-proof: index');
  const proof: Uint8Array[] = [];
  for (; i < head.length; i++) {
    const h = decodeBase64(head[i]!, `malformed tlog-proof: proof line ${proof.length + 1}`);
    if (h.length !== HASH_SIZE) throw bad(`proof line ${proof.length + 1} is not a 32-byte hash`);
    proof.push(h);
  }
  if (proof.length > MAX_PROOF_HASHES) throw bad(`more than ${MAX_PROOF_HASHES} proof hashes`);
  return extra === undefined ? { index, proof, checkpoint } : { index, proof, checkpoint, extra };
}
