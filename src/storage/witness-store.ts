/**
 * The storage of the witness (c2sp.org/tlog-witness): per log origin, the latest checkpoint
 * it cosigned, and the evidence of forks it detected. One implementation,
 * PostgresWitnessStore, serves a real Postgres and the embedded PGlite through the same
 * driver (postgres.js), exactly like PostgresLogStore (src/storage/postgres.ts); the shared
 * suite test/storage/witness-store.test.ts holds both to the WitnessStore contract.
 *
 * Tables (unqualified: the connection's search_path picks the schema, as for the log):
 *
 *   witness_checkpoints  one row per log origin: the latest checkpoint the witness cosigned.
 *     origin      text         PRIMARY KEY, the checkpoint's origin line
 *     tree_size   bigint       NOT NULL, >= 0
 *     root_hash   bytea        NOT NULL, 32 bytes
 *     note        text         NOT NULL, the note as served: the log's signature(s) the
 *                              witness verified plus its own cosignature, verbatim
 *     updated_at  timestamptz  NOT NULL, time of the last successful compare-and-swap
 *     Invariant: a row changes only by compareAndSwap from its exact (tree_size, root_hash),
 *     and tree_size never decreases. Rows are never deleted.
 *
 *   witness_forks  fork evidence, append-only except resolved_at.
 *     id               bigserial    PRIMARY KEY, insertion order ("oldest first" is id order)
 *     origin           text         NOT NULL
 *     evidence         text         NOT NULL, the evidence file, verbatim
 *     evidence_sha256  bytea        NOT NULL, SHA-256 of the UTF-8 evidence;
 *                                   UNIQUE (origin, evidence_sha256) makes recording idempotent
 *                                   (a hash, because a btree entry cannot hold a long text)
 *     detected_at      timestamptz  NOT NULL, when first recorded
 *     resolved_at      timestamptz  NULL while open; set once by resolveForks, never cleared
 *     Index (origin, id) for the per-origin listings.
 *
 * Conventions (as in postgres.ts): every write resolves only after its commit and the
 * afterCommit hook (the embedded store's WAL fsync); bigint columns are converted with
 * toSize(); bytea leaves as a Uint8Array view; stored data that breaks an invariant raises
 * StorageError; driver errors propagate unchanged; misuse by the caller is a RangeError.
 */
import { createHash } from 'node:crypto';
import postgres from 'postgres';
import { ConflictError, StorageError } from '../core/errors.js';
import { HASH_SIZE } from '../core/hash.js';
import { migrateSchema, schemaConnection, toSize } from './postgres.js';

type Sql = postgres.Sql<{}>;

/** The DDL of the witness tables (see the module comment). Idempotent. */
export const WITNESS_SCHEMA = `
CREATE TABLE IF NOT EXISTS witness_checkpoints (
  origin     text        PRIMARY KEY,
  tree_size  bigint      NOT NULL CHECK (tree_size >= 0),
  root_hash  bytea       NOT NULL CHECK (length(root_hash) = 32),
  note       text        NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS witness_forks (
  id              bigserial   PRIMARY KEY,
  origin          text        NOT NULL,
  evidence        text        NOT NULL,
  evidence_sha256 bytea       NOT NULL CHECK (length(evidence_sha256) = 32),
  detected_at     timestamptz NOT NULL DEFAULT now(),
  resolved_at     timestamptz,
  UNIQUE (origin, evidence_sha256)
);
CREATE INDEX IF NOT EXISTS witness_forks_origin_id ON witness_forks (origin, id);
`;

/** The latest checkpoint a witness cosigned for one log. */
export interface WitnessCheckpoint {
  /** The log's origin (the checkpoint's first line); the key of the record. */
  readonly origin: string;
  readonly treeSize: number;
  /** The checkpoint's root hash, 32 bytes. */
  readonly rootHash: Uint8Array;
  /** The checkpoint note as the witness serves it: the log's signature(s) it verified plus its own cosignature, verbatim. */
  readonly note: string;
}

/** Evidence that a log forked (two inconsistent checkpoints for one origin). */
export interface ForkRecord {
  /** Store-assigned, increasing in recording order. */
  readonly id: number;
  readonly origin: string;
  /** The evidence file, verbatim (format defined elsewhere; opaque text here). */
  readonly evidence: string;
  /** When the evidence was first recorded. */
  readonly detectedAt: Date;
  /** When an operator marked it resolved, or null while open. */
  readonly resolvedAt: Date | null;
}

/**
 * The outcome of a compare-and-swap: stored, or not stored with the state found instead
 * (null: no checkpoint for the origin).
 */
export type CasResult = { readonly stored: true } | { readonly stored: false; readonly current: WitnessCheckpoint | null };

/** The state a compare-and-swap expects: a tree size and root hash (the note is not compared). */
export interface WitnessState {
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
}

export interface WitnessStore {
  /** Creates the witness tables in the store's schema if they do not exist. Idempotent. */
  migrate(): Promise<void>;

  /**
   * Takes the single-process lock for this witness, held until close(). Postgres: a session
   * advisory lock keyed on the schema, like PostgresLogStore.lockWriter; the embedded store
   * (advisoryLock: false) makes it a no-op, its data-directory lock already admits one process.
   * @throws {ConflictError} if another process holds it
   */
  lockWitness(): Promise<void>;

  /** The latest checkpoint cosigned for `origin`, or null if none. */
  latest(origin: string): Promise<WitnessCheckpoint | null>;

  /** Every origin's latest checkpoint, ordered by origin (byte order of its UTF-8, COLLATE "C"). */
  all(): Promise<WitnessCheckpoint[]>;

  /**
   * Atomic compare-and-swap: stores `next` as the origin's latest iff the stored state is
   * exactly `expected` (null = no row for the origin; otherwise same treeSize AND rootHash;
   * the stored note is not compared, so the same size and root may be stored again with a
   * new note). Durable (committed, and afterCommit hook awaited) before it resolves.
   *
   * Returns {stored:false, current} with the state found otherwise. Safe under concurrent
   * callers from many connections: two concurrent CAS from the same expected state to
   * different next states ⇒ exactly one stores.
   *
   * @throws {RangeError} if next.treeSize < expected.treeSize (programmer error), or on a
   *   malformed argument (size not a safe non-negative integer, root not 32 bytes, empty
   *   origin, text holding NUL)
   */
  compareAndSwap(expected: WitnessState | null, next: WitnessCheckpoint): Promise<CasResult>;

  /**
   * Records fork evidence for an origin; idempotent for identical evidence text (returns the
   * existing record, resolved or not: recording it again does not reopen it). Durable before
   * resolving.
   * @throws {RangeError} on an empty origin or text holding NUL
   */
  recordFork(origin: string, evidence: string): Promise<ForkRecord>;

  /** Unresolved fork records of an origin, oldest first. */
  openForks(origin: string): Promise<ForkRecord[]>;

  /** All fork records (resolved too) of an origin, newest first. */
  forks(origin: string): Promise<ForkRecord[]>;

  /** Marks every open fork of the origin resolved (an operator acted); returns how many. Durable before resolving. */
  resolveForks(origin: string): Promise<number>;

  /** Releases the lock and the connections. */
  close(): Promise<void>;
}

export interface PostgresWitnessStoreOptions {
  /** The schema holding the witness tables (created if missing). */
  schema: string;
  /**
   * Take a session advisory lock in lockWitness(). On by default; the embedded store turns
   * it off because its data-directory lock already admits one process only.
   */
  advisoryLock?: boolean;
  /**
   * Runs after every committed write and before the write resolves. The embedded store
   * uses it to flush PGlite's files to disk, which PGlite itself never does.
   */
  afterCommit?: () => Promise<void>;
  /**
   * The store talks to a single-session engine (embedded PGlite): session settings are
   * made with SET (in migrate()) instead of connection startup parameters, which it ignores.
   */
  singleSession?: boolean;
}

/**
 * Opens a witness store on the Postgres at `url` with its tables in `schema`; `max` bounds
 * the pool (default 4). Connects once, so a bad URL fails here; call migrate() next.
 */
export async function openPostgresWitnessStore(url: string, opts: { schema: string; max?: number }): Promise<PostgresWitnessStore> {
  const sql = postgres(url, { max: opts.max ?? 4, onnotice: () => undefined, connection: schemaConnection(opts.schema) });
  try {
    await sql`SELECT 1`;
  } catch (err) {
    await sql.end({ timeout: 5 }).catch(() => undefined);
    throw err;
  }
  return new PostgresWitnessStore(sql, { schema: opts.schema });
}

function bytes(v: unknown): Uint8Array {
  const b = v as Uint8Array;
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function checkText(v: string, what: string, nonEmpty: boolean): void {
  if (typeof v !== 'string') throw new RangeError(`${what} must be a string`);
  if (nonEmpty && v === '') throw new RangeError(`${what} must not be empty`);
  if (v.includes('\0')) throw new RangeError(`${what} must not contain NUL (Postgres text cannot hold it)`);
}

function checkState(s: WitnessState, what: string): void {
  if (!Number.isSafeInteger(s.treeSize) || s.treeSize < 0) throw new RangeError(`${what} tree size ${String(s.treeSize)} is not a safe size`);
  if (!(s.rootHash instanceof Uint8Array) || s.rootHash.length !== HASH_SIZE) throw new RangeError(`${what} root hash must be ${HASH_SIZE} bytes`);
}

function toCheckpoint(row: postgres.Row): WitnessCheckpoint {
  const rootHash = bytes(row.root_hash);
  if (rootHash.length !== HASH_SIZE) throw new StorageError(`stored root hash of ${String(row.origin)} is not ${HASH_SIZE} bytes`);
  return {
    origin: row.origin as string,
    treeSize: toSize(row.tree_size, 'witness tree_size'),
    rootHash,
    note: row.note as string,
  };
}

function toFork(row: postgres.Row): ForkRecord {
  return {
    id: toSize(row.id, 'fork id'),
    origin: row.origin as string,
    evidence: row.evidence as string,
    detectedAt: row.detected_at as Date,
    resolvedAt: (row.resolved_at as Date | null) ?? null,
  };
}

export class PostgresWitnessStore implements WitnessStore {
  private readonly schema: string;
  private readonly advisoryLock: boolean;
  private lockConn: postgres.ReservedSql | undefined;
  private readonly afterCommit: () => Promise<void>;
  private readonly singleSession: boolean;

  constructor(
    private readonly sql: Sql,
    opts: PostgresWitnessStoreOptions
  ) {
    this.schema = opts.schema;
    schemaConnection(this.schema);
    this.advisoryLock = opts.advisoryLock ?? true;
    this.afterCommit = opts.afterCommit ?? (async () => undefined);
    this.singleSession = opts.singleSession ?? false;
  }

  async migrate(): Promise<void> {
    await migrateSchema(this.sql, this.schema, this.singleSession, async (sql) => {
      await sql.unsafe(WITNESS_SCHEMA);
    });
  }


  async lockWitness(): Promise<void> {
    if (!this.advisoryLock || this.lockConn) return;
    const conn = await this.sql.reserve();
    const key = 'glasslog-witness:' + this.schema;
    const [row] = await conn`SELECT pg_try_advisory_lock(hashtext(${key})) AS ok`;
    if (!row?.ok) {
      conn.release();
      throw new ConflictError(`another glasslog witness is already running on witness schema "${this.schema}" on this database`);
    }
    this.lockConn = conn;
  }

  async latest(origin: string): Promise<WitnessCheckpoint | null> {
    const [row] = await this.sql`SELECT origin, tree_size, root_hash, note FROM witness_checkpoints WHERE origin = ${origin}`;
    return row ? toCheckpoint(row) : null;
  }

  async all(): Promise<WitnessCheckpoint[]> {
    const rows = await this.sql`SELECT origin, tree_size, root_hash, note FROM witness_checkpoints ORDER BY origin COLLATE "C"`;
    return rows.map(toCheckpoint);
  }

  async compareAndSwap(expected: WitnessState | null, next: WitnessCheckpoint): Promise<CasResult> {
    checkText(next.origin, 'origin', true);
    checkText(next.note, 'note', false);
    checkState(next, 'next');
    if (expected !== null) {
      checkState(expected, 'expected');
      if (next.treeSize < expected.treeSize) {
        throw new RangeError(`${next.origin}: compare-and-swap would shrink the tree from ${expected.treeSize} to ${next.treeSize}`);
      }
    }
    // One statement each way, so the check and the write are one atomic step. Under READ
    // COMMITTED a concurrent UPDATE of the same row waits for the first to commit and then
    // re-checks its WHERE against the new row, which no longer matches: exactly one wins.
    const rows =
      expected === null
        ? await this.sql`INSERT INTO witness_checkpoints (origin, tree_size, root_hash, note)
                         VALUES (${next.origin}, ${next.treeSize}, ${next.rootHash}, ${next.note})
                         ON CONFLICT (origin) DO NOTHING
                         RETURNING origin`
        : await this.sql`UPDATE witness_checkpoints
                         SET tree_size = ${next.treeSize}, root_hash = ${next.rootHash}, note = ${next.note}, updated_at = now()
                         WHERE origin = ${next.origin} AND tree_size = ${expected.treeSize} AND root_hash = ${expected.rootHash}
                         RETURNING origin`;
    if (rows.length === 1) {
      await this.afterCommit();
      return { stored: true };
    }
    const current = await this.latest(next.origin);
    // The state found may have been committed by a concurrent writer whose hook has not
    // run yet: make it durable too before a caller acts on it.
    await this.afterCommit();
    return { stored: false, current };
  }

  async recordFork(origin: string, evidence: string): Promise<ForkRecord> {
    checkText(origin, 'origin', true);
    checkText(evidence, 'evidence', false);
    const digest = createHash('sha256').update(evidence, 'utf8').digest();
    // A concurrent identical insert waits for the first to commit, then does nothing.
    let [row] = await this.sql`INSERT INTO witness_forks (origin, evidence, evidence_sha256)
                               VALUES (${origin}, ${evidence}, ${digest})
                               ON CONFLICT (origin, evidence_sha256) DO NOTHING
                               RETURNING id, origin, evidence, detected_at, resolved_at`;
    row ??= (
      await this.sql`SELECT id, origin, evidence, detected_at, resolved_at FROM witness_forks
                     WHERE origin = ${origin} AND evidence_sha256 = ${digest}`
    )[0];
    if (!row) throw new StorageError(`fork record of ${origin} vanished after insert`);
    if (row.evidence !== evidence) throw new StorageError(`stored fork evidence of ${origin} does not match its SHA-256`);
    await this.afterCommit();
    return toFork(row);
  }

  async openForks(origin: string): Promise<ForkRecord[]> {
    const rows = await this.sql`SELECT id, origin, evidence, detected_at, resolved_at FROM witness_forks
                                WHERE origin = ${origin} AND resolved_at IS NULL ORDER BY id`;
    return rows.map(toFork);
  }

  async forks(origin: string): Promise<ForkRecord[]> {
    const rows = await this.sql`SELECT id, origin, evidence, detected_at, resolved_at FROM witness_forks
                                WHERE origin = ${origin} ORDER BY id DESC`;
    return rows.map(toFork);
  }

  async resolveForks(origin: string): Promise<number> {
    const res = await this.sql`UPDATE witness_forks SET resolved_at = now() WHERE origin = ${origin} AND resolved_at IS NULL`;
    await this.afterCommit();
    return res.count;
  }

  async close(): Promise<void> {
    if (this.lockConn) {
      await this.lockConn`SELECT pg_advisory_unlock_all()`.catch(() => undefined);
      this.lockConn.release();
      this.lockConn = undefined;
    }
    await this.sql.end({ timeout: 5 });
  }
}
