/**
 * The wire format of C2SP tlog-witness `POST <prefix>/add-checkpoint`.
 *
 *   old <decimal size>
 *   <base64 hash>…            0 to 63 consistency-proof lines
 *   <empty line>
 *   <checkpoint note, verbatim, with its signatures>
 *
 * and of the 409 answer's `text/x.tlog.size` body: the witness's size in decimal + "\n".
 */
import { decodeBase64, encodeBase64, parseDecimal, quote } from './encoding.js';
import { MalformedError, TooLargeError } from './errors.js';
import { HASH_SIZE } from './hash.js';
import { MAX_PROOF_HASHES } from './tlog-proof.js';

/** The request body cap used by transparency-dev/witness (`MaxRequestBodyBytes`). */
export const MAX_ADD_CHECKPOINT_SIZE = 16 * 1024;
/** Content type of the 409 answer carrying the witness's current size. */
export const TLOG_SIZE_CONTENT_TYPE = 'text/x.tlog.size';

export interface AddCheckpointRequest {
  /** The size of the checkpoint the client believes the witness last cosigned. */
  readonly oldSize: number;
  /** The consistency proof from oldSize to the checkpoint's size. */
  readonly proof: readonly Uint8Array[];
  /** The checkpoint as a signed note, verbatim. */
  readonly checkpoint: string;
}

export function formatAddCheckpoint(r: AddCheckpointRequest): string {
  if (r.proof.length > MAX_PROOF_HASHES) throw new RangeError(`a consistency proof has at most ${MAX_PROOF_HASHES} hashes`);
  let s = `old ${r.oldSize}\n`;
  for (const h of r.proof) s += encodeBase64(h) + '\n';
  return s + '\n' + r.checkpoint;
}

/**
 * Parses an add-checkpoint body strictly. The checkpoint note is returned unparsed and
 * unverified.
 * @throws {MalformedError}, {TooLargeError}
 */
export function parseAddCheckpoint(body: string): AddCheckpointRequest {
  const bad = (why: string) => new MalformedError(`malformed add-checkpoint request: ${why}`);
  if (body.length > MAX_ADD_CHECKPOINT_SIZE) throw new TooLargeError(`add-checkpoint request is larger than ${MAX_ADD_CHECKPOINT_SIZE} bytes`);
  const split = body.indexOf('\n\n');
  if (split < 0) throw bad('no empty line before the checkpoint');
  const head = body.slice(0, split).split('\n');
  const checkpoint = body.slice(split + 2);
  if (checkpoint === '') throw bad('missing checkpoint');
  const first = head[0]!;
  if (!first.startsWith('old ')) throw bad(`first line must be "old <size>", got ${quote(first.slice(0, 40))}`);
  const oldSize = parseDecimal(first.slice(4), 'malformed add-checkpoint request: old size');
  if (head.length - 1 > MAX_PROOF_HASHES) throw bad(`more than ${MAX_PROOF_HASHES} proof lines`);
  const proof: Uint8Array[] = [];
  for (let i = 1; i < head.length; i++) {
    const h = decodeBase64(head[i]!, `malformed add-checkpoint request: proof line ${i}`);
    if (h.length !== HASH_SIZE) throw bad(`proof line ${i} is not a 32-byte hash`);
    proof.push(h);
  }
  return { oldSize, proof, checkpoint };
}

export function formatTlogSize(size: number): string {
  return `${size}\n`;
}

/** Parses a `text/x.tlog.size` body. @throws {MalformedError} */
export function parseTlogSize(body: string): number {
  if (!body.endsWith('\n')) throw new MalformedError('malformed text/x.tlog.size body: no final newline');
  return parseDecimal(body.slice(0, -1), 'malformed text/x.tlog.size body');
}
