/**
 * C2SP tlog-checkpoint bodies: origin, tree size, root hash, optional extension lines.
 * The signed-note envelope around them lives in src/note.
 */
import { HASH_SIZE } from './hash.js';
import { decodeBase64, encodeBase64, parseDecimal, quote } from './encoding.js';
import { MalformedError } from './errors.js';

/** A generous cap on a checkpoint body; checked before anything else is parsed. */
export const MAX_CHECKPOINT_SIZE = 16 * 1024;

export interface Checkpoint {
  readonly origin: string;
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
  readonly extensions: readonly string[];
}

/** Formats the checkpoint body: each line ends in "\n". */
export function formatCheckpoint(c: Checkpoint): string {
  if (c.origin === '' || c.origin.includes('\n')) throw new RangeError('origin must be one non-empty line');
  if (!Number.isSafeInteger(c.treeSize) || c.treeSize < 0) throw new RangeError('treeSize must be a safe non-negative integer');
  if (c.rootHash.length !== HASH_SIZE) throw new RangeError('rootHash must be 32 bytes');
  for (const e of c.extensions) if (e === '' || e.includes('\n')) throw new RangeError('extension lines must be non-empty single lines');
  return [c.origin, String(c.treeSize), encodeBase64(c.rootHash), ...c.extensions].map((l) => l + '\n').join('');
}

/**
 * Parses a checkpoint body strictly: at least three non-empty lines each ending in "\n",
 * a canonical decimal size, a padded base64 32-byte hash, non-empty extension lines.
 * @throws {MalformedError}
 */
export function parseCheckpoint(text: string): Checkpoint {
  if (text.length > MAX_CHECKPOINT_SIZE) throw new MalformedError('malformed checkpoint: too large');
  if (!text.endsWith('\n')) throw new MalformedError('malformed checkpoint: does not end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new MalformedError('malformed checkpoint: fewer than three lines');
  const [origin, size, root, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin === '') throw new MalformedError('malformed checkpoint: empty origin');
  const treeSize = parseDecimal(size, 'malformed checkpoint: tree size');
  const rootHash = decodeBase64(root, 'malformed checkpoint: root hash');
  if (rootHash.length !== HASH_SIZE) throw new MalformedError(`malformed checkpoint: root hash ${quote(root)} is not 32 bytes`);
  for (const e of extensions) if (e === '') throw new MalformedError('malformed checkpoint: empty extension line');
  return { origin, treeSize, rootHash, extensions };
}
