/**
 * The storage contract of the log. One implementation (src/storage/postgres.ts) serves
 * both a real Postgres and the embedded PGlite default through the same driver; the
 * shared suite in test/storage/log-store.suite.ts holds every store to this contract.
 *
 * Three steps, each atomic on its own (spec/lifecycle.md):
 *   sequence   — assign the next indices to entries and store them in entry bundles;
 *   integrate  — store the tiles for a range of sequenced entries and advance the tree;
 *   publish    — store a signed checkpoint for an integrated size.
 */
import type { TileData } from '../core/integrate.js';

export interface LogMeta {
  readonly origin: string;
  /** The log's verifier key, <origin>+<keyid>+<base64>. */
  readonly vkey: string;
}

export interface TreeState {
  /** Entries sequenced (the next index to assign). */
  readonly nextIndex: number;
  /** Entries integrated into tiles. */
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
}

export interface StoredCheckpoint {
  readonly treeSize: number;
  /** The signed note, verbatim. */
  readonly note: string;
}

export interface LogStore {
  /** Creates the tables if they do not exist. Idempotent. */
  migrate(): Promise<void>;

  /**
   * Takes the single-writer lock for this log, held until close(). A second writer on the
   * same database MUST fail here rather than sequence into the same log.
   * @throws {ConflictError} if another process holds it
   */
  lockWriter(): Promise<void>;

  /** The stored identity of the log, or null for a new database. */
  getMeta(): Promise<LogMeta | null>;
  /** Stores the identity of a new log; returns the stored one if another won the race. */
  initMeta(meta: LogMeta): Promise<LogMeta>;

  state(): Promise<TreeState>;

  /**
   * Assigns indices nextIndex … nextIndex+entries.length-1 to `entries`, in order, and
   * appends them to the entry bundles, in one transaction. MUST NOT resolve before that
   * transaction is durably committed. Returns the first index.
   */
  sequence(entries: readonly Uint8Array[]): Promise<number>;

  /** Sequenced entries [from, to), read back from the bundles. */
  readEntries(from: number, to: number): Promise<Uint8Array[]>;

  /**
   * Stores `tiles` and moves the tree from `oldSize` to `newSize` with `rootHash`, in one
   * transaction. A full tile is never rewritten; a partial tile is only ever replaced by a
   * wider one that extends it.
   * @throws {FatalError} if the stored tree size is not `oldSize` or a tile would change
   */
  integrate(oldSize: number, newSize: number, rootHash: Uint8Array, tiles: readonly TileData[]): Promise<void>;

  /** The stored hashes of tile (level, index) — full, or partial of its widest width — or null. */
  readTile(level: number, index: number): Promise<Uint8Array | null>;
  /** The stored entry bundle `index` (possibly partial, possibly past the tree size), or null. */
  readBundle(index: number): Promise<Uint8Array | null>;

  /**
   * Indices whose leaf hash starts with the same 6 bytes as `leafHash`, ascending
   * (candidates: the caller confirms against the tiles).
   */
  findLeaf(leafHash: Uint8Array): Promise<number[]>;

  /**
   * Stores a signed checkpoint for `treeSize` (≤ the integrated size). Idempotent for a
   * size already published with the same note.
   * @throws {FatalError} if it would publish a size smaller than the latest
   */
  publish(checkpoint: StoredCheckpoint): Promise<void>;
  /**
   * Replaces the note of a published size with the same checkpoint carrying more
   * signatures (witness cosignatures collected after publication). Returns whether it
   * changed anything; a note no longer than the stored one is ignored.
   */
  addCosignatures(checkpoint: StoredCheckpoint): Promise<boolean>;
  latestCheckpoint(): Promise<StoredCheckpoint | null>;
  checkpointAt(treeSize: number): Promise<StoredCheckpoint | null>;

  close(): Promise<void>;
}
