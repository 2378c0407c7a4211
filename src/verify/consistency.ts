/**
 * Offline consistency between two signed checkpoints of one log: both verify against the
 * trust (the log's key, or a policy with its quorum), they have one origin, and the RFC 6962
 * consistency proof leads from the older root to the newer one.
 */
import { quote } from '../core/encoding.js';
import { MalformedError, VerificationError } from '../core/errors.js';
import { HASH_SIZE } from '../core/hash.js';
import { verifyConsistency } from '../core/tree.js';
import type { Checkpoint } from '../core/checkpoint.js';
import { verifyTrustedCheckpoint, type ReceiptTrust } from './receipt.js';

export interface VerifiedConsistency {
  readonly old: Checkpoint;
  readonly new: Checkpoint;
}

/** @throws {MalformedError}, {VerificationError} naming which checkpoint or which hash failed */
export function verifyCheckpointConsistency(oldNote: string, newNote: string, proof: readonly Uint8Array[], trust: ReceiptTrust): VerifiedConsistency {
  const o = verifyTrustedCheckpoint(oldNote, trust, 'old checkpoint').checkpoint;
  const n = verifyTrustedCheckpoint(newNote, trust, 'new checkpoint').checkpoint;
  if (o.origin !== n.origin) throw new VerificationError(`the checkpoints are of different logs: ${quote(o.origin)} and ${quote(n.origin)}`);
  if (o.treeSize > n.treeSize) throw new VerificationError(`the old checkpoint (size ${o.treeSize}) is larger than the new one (size ${n.treeSize})`);
  for (const h of proof) if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) throw new MalformedError(`consistency proof: every hash is ${HASH_SIZE} bytes`);
  try {
    verifyConsistency(o.treeSize, n.treeSize, [...proof], o.rootHash, n.rootHash);
  } catch (err) {
    if (err instanceof VerificationError) throw new VerificationError(`${quote(o.origin)} ${o.treeSize} → ${n.treeSize}: ${err.message}`, { cause: err });
    throw err;
  }
  return { old: o, new: n };
}
