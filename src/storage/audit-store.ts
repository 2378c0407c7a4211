/**
 * The storage of the agent audit layer: a queryable index of the signed agent entries the
 * log holds, plus the agents' key history, the entries' payloads (erasable) and the API
 * credentials. The log stays the source of truth; these tables are derived from it by a
 * single indexer that records entries in index order behind a watermark. One
 * implementation, PostgresAuditStore, serves a real Postgres and the embedded PGlite
 * through the same driver (postgres.js), exactly like PostgresLogStore
 * (src/storage/postgres.ts); the shared suite test/storage/audit-store.test.ts holds both
 * to the AuditStore contract.
 *
 * Tables (unqualified, in the SAME schema as the log's tables, picked by the connection's
 * search_path; hence the audit_ prefix on every table and index). Text key columns are
 * COLLATE "C" (byte order, the same on every engine and locale). Times are integers of
 * milliseconds since the Unix epoch.
 *
 *   audit_state  one row: the indexer's watermark.
 *     id            smallint  PRIMARY KEY, = 1
 *     indexed_size  bigint    NOT NULL, >= 0: every log index below it is recorded here
 *     Invariant: changes only by index()'s compare-and-swap from its exact value to a larger
 *     one, in the transaction that records the range; never decreases. Its row lock
 *     serialises index() with itself and with putPayloads() (which takes it FOR SHARE).
 *
 *   audit_entries  one row per recorded log entry; rows are never updated or deleted.
 *     idx          bigint   PRIMARY KEY, the entry's log index, >= 0, < indexed_size
 *     type         text     NOT NULL, one of the EntryType values
 *     agent        text     NULL, non-empty
 *     run          text     NULL, non-empty; only with an agent
 *     seq          bigint   NULL, >= 0, the entry's sequence number in its run
 *     run_seq      bigint   GENERATED ALWAYS AS (seq for 'event' and 'run.close' rows, else
 *                           NULL) STORED: the run-entry key. UNIQUE (agent, run, run_seq) is
 *                           the "a seq appears at most once per run" rule for event and
 *                           run.close rows (NULLs are distinct, so other rows never collide),
 *                           and the same index serves every per-run lookup, of any type.
 *     kind         text     NULL, non-empty (the event kind)
 *     client_time  bigint   NULL, the agent's clock
 *     log_time     bigint   NOT NULL, the server's clock when indexed
 *     leaf_hash    bytea    NOT NULL, 32 bytes, RFC 6962 leaf hash of the log entry
 *     Checks: run IS NULL OR agent IS NOT NULL; a run.close row has an agent and a run.
 *     Indexes (the query shapes they serve, all at 10^7 rows):
 *       audit_entries_pkey              (idx)                  index order, keyset paging, ranges
 *       audit_entries_run_seq  UNIQUE   (agent, run, run_seq)  run(), findRunEntries(), runClose(),
 *                                                               query() with a run
 *       audit_entries_agent_idx         (agent, idx)           query() by agent, in index order
 *       audit_entries_kind_idx          (kind, idx)            query() by kind, in index order
 *       audit_entries_agent_client_time (agent, client_time)   query() by agent and client time
 *       audit_entries_client_time       (client_time)          query() by client time
 *       audit_entries_log_time          (log_time)             query() by log time
 *       audit_entries_type_idx          (type, idx) WHERE type <> 'event'
 *                                                               query() by the rare types (small)
 *     With since/until, query() also bounds idx through audit_time_blocks (below). Not
 *     indexed, by choice: agent + kind (an (agent, idx) scan filtering kind, bounded by the
 *     agent's entry count) and a run in index order (the run's rows, sorted: bounded by the
 *     run's size).
 *
 *   audit_keys  key periods: an agent's verifier key is valid for entries from from_idx on,
 *   until until_idx (exclusive), or open-ended while until_idx is NULL.
 *     agent      text    NOT NULL
 *     vkey       text    NOT NULL, the verifier key as registered
 *     from_idx   bigint  NOT NULL, index of the entry that registered it (an audit_entries row)
 *     until_idx  bigint  NULL, index of the entry that ended it (an audit_entries row), > from_idx
 *     ended_by   text    NULL, 'rotated' | 'revoked'; NULL exactly when until_idx is NULL
 *     PRIMARY KEY (agent, from_idx, vkey); UNIQUE (agent, vkey) WHERE until_idx IS NULL
 *     (audit_keys_open): at most one open period per agent and key.
 *     Invariant: a period is inserted once, and changes once, from open to ended.
 *
 *   audit_payloads  the named payloads of entries: a commitment (in the signed entry), and
 *   the salt and data that open it, until erased.
 *     idx         bigint  NOT NULL, REFERENCES audit_entries
 *     name        text    NOT NULL
 *     commitment  bytea   NOT NULL, non-empty; kept forever
 *     salt        bytea   NULL
 *     data        bytea   NULL
 *     erased_by   bigint  NULL, index of the payload.erase entry that erased it
 *     PRIMARY KEY (idx, name). Check: erased_by IS NULL OR (salt IS NULL AND data IS NULL).
 *     Invariant: salt and data are only ever removed (by an erasure), never rewritten.
 *
 *   audit_erasures  tombstones: every (idx, name) an indexed payload.erase entry erased,
 *   whether or not its payload row exists yet, so a late putPayloads() cannot resurrect it.
 *     idx        bigint  NOT NULL, REFERENCES audit_entries
 *     name       text    NOT NULL
 *     erased_by  bigint  NOT NULL, REFERENCES audit_entries, > idx
 *     PRIMARY KEY (idx, name): the first erasure wins; rows are never changed or deleted.
 *     Invariant: a payload row with a tombstone has erased_by = its erased_by and no salt/data.
 *
 *   audit_time_blocks  exact index bounds for time ranges. Times correlate with the index
 *   (entries arrive roughly in time order), which the planner cannot see: "since T, in index
 *   order" would scan every older entry before the first match. One row per block of 256
 *   indices that holds at least one entry row (block = floor(idx / 256)):
 *     block        bigint  PRIMARY KEY
 *     client_pmax  bigint  NULL, max client_time of all rows in blocks <= block (prefix max)
 *     client_smin  bigint  NULL, min client_time of all rows in blocks >= block (suffix min)
 *     log_pmax     bigint  NULL, the same for log_time
 *     log_smin     bigint  NULL
 *     (NULL: no such time in that prefix or suffix.) Indexes (client_pmax, block),
 *     (client_smin, block), (log_pmax, block), (log_smin, block).
 *     Invariant: maintained by index() in the same transaction as the rows, so pmax and smin
 *     are non-decreasing in block, and a row with time >= T lies in a block at or after the
 *     first block with pmax >= T, a row with time < T at or before the last block with
 *     smin < T. query() turns since/until into such idx bounds (one index probe each).
 *     Writes touch the batch's blocks plus the earlier blocks whose smin the batch lowers
 *     (none while clocks move forward; each block at most once per new minimum).
 *
 *   audit_credentials  API credentials; only SHA-256 hashes of the bearer tokens are stored.
 *     id          text         PRIMARY KEY, the public id
 *     token_hash  bytea        NOT NULL UNIQUE, 32 bytes
 *     kind        text         NOT NULL, 'operator' | 'agent' | 'reader'
 *     agent       text         NULL; set exactly for kind 'agent'
 *     agents      text[]       NOT NULL, reader scope (empty unless kind 'reader')
 *     runs        text[]       NOT NULL, reader scope "agent/run" (empty unless kind 'reader')
 *     label       text         NOT NULL
 *     created_at  timestamptz  NOT NULL
 *     revoked_at  timestamptz  NULL; set once, never cleared
 *     Rows are never deleted.
 *
 * Conventions (as in postgres.ts and witness-store.ts): every write is one transaction and
 * resolves only after its commit and the afterCommit hook (the embedded store's WAL fsync);
 * bigint columns are converted to safe integers at the row boundary; bytea leaves as a
 * plain Uint8Array; misuse by the caller (a malformed argument) is a RangeError and touches
 * nothing; a write that conflicts with the stored state (watermark, unique keys, a key end
 * without an open period, an index with no recorded entry) is a ConflictError and rolls back
 * the whole transaction; stored data breaking an invariant raises StorageError. Queries are
 * single parameterised statements comparing indexed columns directly (no functions on
 * them), paged by keyset on idx, never OFFSET.
 */
import postgres from 'postgres';
import { ConflictError, StorageError } from '../core/errors.js';
import { HASH_SIZE } from '../core/hash.js';
import { migrateSchema, schemaConnection, toSize } from './postgres.js';

type Sql = postgres.Sql<{}>;

/** The DDL of the audit tables (see the module comment). Idempotent. */
export const AUDIT_SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_state (
  id           smallint PRIMARY KEY CHECK (id = 1),
  indexed_size bigint   NOT NULL CHECK (indexed_size >= 0)
);

CREATE TABLE IF NOT EXISTS audit_entries (
  idx         bigint PRIMARY KEY CHECK (idx >= 0),
  type        text COLLATE "C" NOT NULL
              CHECK (type IN ('event', 'run.close', 'agent.register', 'agent.rotate', 'agent.revoke', 'payload.erase')),
  agent       text COLLATE "C" CHECK (agent <> ''),
  run         text COLLATE "C" CHECK (run <> ''),
  seq         bigint CHECK (seq >= 0),
  run_seq     bigint GENERATED ALWAYS AS (CASE WHEN type IN ('event', 'run.close') THEN seq END) STORED,
  kind        text COLLATE "C" CHECK (kind <> ''),
  client_time bigint,
  log_time    bigint NOT NULL,
  leaf_hash   bytea  NOT NULL CHECK (length(leaf_hash) = 32),
  CHECK (run IS NULL OR agent IS NOT NULL),
  CHECK (type <> 'run.close' OR run IS NOT NULL)
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_entries_run_seq ON audit_entries (agent, run, run_seq);
CREATE INDEX IF NOT EXISTS audit_entries_agent_idx ON audit_entries (agent, idx);
CREATE INDEX IF NOT EXISTS audit_entries_kind_idx ON audit_entries (kind, idx);
CREATE INDEX IF NOT EXISTS audit_entries_agent_client_time ON audit_entries (agent, client_time);
CREATE INDEX IF NOT EXISTS audit_entries_client_time ON audit_entries (client_time);
CREATE INDEX IF NOT EXISTS audit_entries_log_time ON audit_entries (log_time);
CREATE INDEX IF NOT EXISTS audit_entries_type_idx ON audit_entries (type, idx) WHERE type <> 'event';

CREATE TABLE IF NOT EXISTS audit_keys (
  agent     text COLLATE "C" NOT NULL CHECK (agent <> ''),
  vkey      text COLLATE "C" NOT NULL CHECK (vkey <> ''),
  from_idx  bigint NOT NULL REFERENCES audit_entries (idx),
  until_idx bigint REFERENCES audit_entries (idx),
  ended_by  text COLLATE "C" CHECK (ended_by IN ('rotated', 'revoked')),
  PRIMARY KEY (agent, from_idx, vkey),
  CHECK ((until_idx IS NULL) = (ended_by IS NULL)),
  CHECK (until_idx > from_idx)
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_keys_open ON audit_keys (agent, vkey) WHERE until_idx IS NULL;

CREATE TABLE IF NOT EXISTS audit_payloads (
  idx        bigint NOT NULL REFERENCES audit_entries (idx),
  name       text COLLATE "C" NOT NULL CHECK (name <> ''),
  commitment bytea  NOT NULL CHECK (length(commitment) > 0),
  salt       bytea,
  data       bytea,
  erased_by  bigint REFERENCES audit_entries (idx),
  PRIMARY KEY (idx, name),
  CHECK (erased_by IS NULL OR (salt IS NULL AND data IS NULL))
);

CREATE TABLE IF NOT EXISTS audit_erasures (
  idx       bigint NOT NULL REFERENCES audit_entries (idx),
  name      text COLLATE "C" NOT NULL CHECK (name <> ''),
  erased_by bigint NOT NULL REFERENCES audit_entries (idx),
  PRIMARY KEY (idx, name),
  CHECK (erased_by > idx)
);

CREATE TABLE IF NOT EXISTS audit_time_blocks (
  block       bigint PRIMARY KEY CHECK (block >= 0),
  client_pmax bigint,
  client_smin bigint,
  log_pmax    bigint,
  log_smin    bigint
);
CREATE INDEX IF NOT EXISTS audit_time_blocks_client_pmax ON audit_time_blocks (client_pmax, block);
CREATE INDEX IF NOT EXISTS audit_time_blocks_client_smin ON audit_time_blocks (client_smin, block);
CREATE INDEX IF NOT EXISTS audit_time_blocks_log_pmax ON audit_time_blocks (log_pmax, block);
CREATE INDEX IF NOT EXISTS audit_time_blocks_log_smin ON audit_time_blocks (log_smin, block);

CREATE TABLE IF NOT EXISTS audit_credentials (
  id         text COLLATE "C" PRIMARY KEY CHECK (id <> ''),
  token_hash bytea  NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  kind       text COLLATE "C" NOT NULL CHECK (kind IN ('operator', 'agent', 'reader')),
  agent      text COLLATE "C" CHECK (agent <> ''),
  agents     text[] NOT NULL DEFAULT '{}',
  runs       text[] NOT NULL DEFAULT '{}',
  label      text   NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  CHECK ((kind = 'agent') = (agent IS NOT NULL)),
  CHECK (kind = 'reader' OR (cardinality(agents) = 0 AND cardinality(runs) = 0))
);
`;

/**
 * The type of a signed agent entry: an event of a run, the close of a run, the
 * registration, rotation or revocation of an agent's key, or the erasure of a payload.
 */
export type EntryType = 'event' | 'run.close' | 'agent.register' | 'agent.rotate' | 'agent.revoke' | 'payload.erase';

/** Every EntryType, in declaration order. */
export const ENTRY_TYPES: readonly EntryType[] = ['event', 'run.close', 'agent.register', 'agent.rotate', 'agent.revoke', 'payload.erase'];

/** One recorded log entry: the indexed fields of a signed agent entry. */
export interface AuditRow {
  /** The entry's index in the log. */
  readonly index: number;
  /** The entry's type. */
  readonly type: EntryType;
  /** The agent the entry is by or about, or null. */
  readonly agent: string | null;
  /** The run the entry belongs to (only with an agent; a run.close has one), or null. */
  readonly run: string | null;
  /** The entry's sequence number in its run, or null. Unique per (agent, run) among event and run.close rows. */
  readonly seq: number | null;
  /** The event kind, or null. */
  readonly kind: string | null;
  /** The agent's clock when it made the entry, in ms since the Unix epoch, or null. */
  readonly clientTime: number | null;
  /** The server's clock when the entry was indexed, in ms since the Unix epoch. */
  readonly logTime: number;
  /** The RFC 6962 leaf hash of the log entry, 32 bytes. */
  readonly leafHash: Uint8Array;
}

/** A named payload of an entry: the commitment in the signed entry and what opens it. */
export interface PayloadRow {
  /** Index of the entry carrying the payload. */
  readonly index: number;
  /** The payload's name within its entry. */
  readonly name: string;
  /** The commitment the signed entry carries (non-empty); kept after erasure. */
  readonly commitment: Uint8Array;
  /** The salt of the commitment, or null (never stored, or erased). */
  readonly salt: Uint8Array | null;
  /** The payload bytes, or null (never stored, or erased). */
  readonly data: Uint8Array | null;
  /** Index of the payload.erase entry that erased it, or null. Must be null when writing. */
  readonly erasedBy: number | null;
}

/** A period during which an agent's verifier key is valid: entries [from, until). */
export interface KeyRow {
  /** The agent. */
  readonly agent: string;
  /** The verifier key, as registered. */
  readonly vkey: string;
  /** Index of the entry that registered the key (register or rotate). */
  readonly from: number;
  /** Index of the entry that ended the period (exclusive bound), or null while open. */
  readonly until: number | null;
  /** How the period ended, or null while open (null exactly when until is null). */
  readonly endedBy: 'rotated' | 'revoked' | null;
}

/** What a credential may do: administer, append as one agent, or read within a scope. */
export type CredentialKind = 'operator' | 'agent' | 'reader';

/** An API credential. Only the SHA-256 of its bearer token is stored. */
export interface CredentialRow {
  /** The public id (e.g. 16 hex characters). */
  readonly id: string;
  /** SHA-256 of the bearer token, 32 bytes. */
  readonly tokenHash: Uint8Array;
  /** What the credential may do. */
  readonly kind: CredentialKind;
  /** The agent an 'agent' credential appends as; null for the other kinds. */
  readonly agent: string | null;
  /** Reader scope: agents whose entries it may read (empty unless kind 'reader'). */
  readonly agents: readonly string[];
  /** Reader scope: runs it may read, as "agent/run" (empty unless kind 'reader'). */
  readonly runs: readonly string[];
  /** A free-text label for operators. */
  readonly label: string;
  /** When it was created (server clock). */
  readonly createdAt: Date;
  /** When it was revoked, or null while valid. */
  readonly revokedAt: Date | null;
}

/** A page of recorded entries matching every given filter, ordered by index. */
export interface EntryQuery {
  /** Only entries of this agent. */
  readonly agent?: string;
  /** Only entries of this run (needs agent). */
  readonly run?: string;
  /** Only entries of this kind. */
  readonly kind?: string;
  /** Only entries of these types (an empty list matches nothing). */
  readonly types?: readonly EntryType[];
  /** Only entries whose time field is >= since (ms). Entries without that time never match a bound. */
  readonly since?: number;
  /** Only entries whose time field is < until (ms). */
  readonly until?: number;
  /** The time field since/until apply to: the agent's clock (default) or the log's. */
  readonly timeField?: 'client' | 'log';
  /** By index, ascending (default) or descending. */
  readonly order?: 'asc' | 'desc';
  /** Keyset cursor: only indices > after (asc) or < after (desc); the last index of the previous page. */
  readonly after?: number;
  /** Only indices < below (the published tree size). */
  readonly below: number;
  /** Page size, 1..1000. */
  readonly limit: number;
}

/** The end of a key period, recorded by a rotate or revoke entry. */
export interface KeyEnd {
  /** The agent. */
  readonly agent: string;
  /** The key whose open period ends. */
  readonly vkey: string;
  /** Index of the entry that ends it (in the batch's range). */
  readonly until: number;
  /** Why it ends. */
  readonly endedBy: 'rotated' | 'revoked';
}

/** An erasure of one payload, recorded by a payload.erase entry. */
export interface Erasure {
  /** Index of the entry carrying the payload (< erasedBy). */
  readonly index: number;
  /** The payload's name. */
  readonly name: string;
  /** Index of the payload.erase entry (in the batch's range). */
  readonly erasedBy: number;
}

/** Everything the entries [from, to) of the log add to the audit tables. */
export interface IndexBatch {
  /** First index of the range: must be the stored watermark. */
  readonly from: number;
  /** End of the range (exclusive): the new watermark, >= from. */
  readonly to: number;
  /** The rows of the range, at distinct indices in [from, to); indices without a row are allowed. */
  readonly rows: readonly AuditRow[];
  /** New key periods, each starting at a row of the batch. */
  readonly keys: readonly KeyRow[];
  /** Ends of open key periods, each at a row of the batch; applied in index order with the new periods (an end before a start at the same index). */
  readonly keyEnds: ReadonlyArray<KeyEnd>;
  /** Payloads of rows of the batch (erasedBy null). */
  readonly payloads: readonly PayloadRow[];
  /** Erasures by payload.erase rows of the batch. */
  readonly erasures: ReadonlyArray<Erasure>;
}

export interface AuditStore {
  /** Creates the audit tables in the store's schema if they do not exist. Idempotent, safe to run concurrently. */
  migrate(): Promise<void>;

  /** The watermark: every index < it is recorded. 0 for a new log. */
  indexedSize(): Promise<number>;

  /**
   * Records [from, to) in one transaction, moving the watermark from `from` to `to`
   * (compare-and-swap). Durable (committed, afterCommit awaited) before resolving.
   * Erasures delete salt and data (keeping the commitment), set erased_by, and leave a
   * tombstone even for a payload not stored. Key ends set until/ended_by on the matching
   * open period. A retry of a committed batch is refused by the compare-and-swap.
   * @throws {IndexConflictError} if the watermark is not `from` (nothing is stored)
   * @throws {ConflictError} if the batch conflicts with stored rows: a (agent, run, seq) of an
   *   event/run.close already recorded, a key end without an open period, a second open period
   *   of one key, an erasure of an index without a recorded entry (nothing is stored)
   * @throws {RangeError} on rows (or keys, payloads, erasures) of indices outside [from, to),
   *   duplicate indices, or malformed fields (nothing is stored)
   */
  index(batch: IndexBatch): Promise<void>;

  /**
   * Run entries (event and run.close rows) by (agent, run, seq), ordered by index. Returns
   * every row found (a seq appears at most once per run, so at most one row per key).
   */
  findRunEntries(keys: ReadonlyArray<{ agent: string; run: string; seq: number }>): Promise<AuditRow[]>;

  /** The index of the run's close entry (the first, if several), or null. */
  runClose(agent: string, run: string): Promise<number | null>;

  /** All rows of one run, of any type, ordered by seq (null last) then index. */
  run(agent: string, run: string): Promise<AuditRow[]>;

  /**
   * One page of the recorded entries matching `q`, ordered by index (see EntryQuery).
   * Page on by passing the last index returned as `after`; a page shorter than `limit` is the last.
   * @throws {RangeError} on a malformed query (run without agent, limit outside 1..1000, …)
   */
  query(q: EntryQuery): Promise<AuditRow[]>;

  /** The key periods of one agent, ordered by from (then vkey). */
  keys(agent: string): Promise<KeyRow[]>;

  /** Every key period, for rebuilding the in-memory key history, ordered by from (then agent, vkey). */
  allKeys(): Promise<KeyRow[]>;

  /** The payloads of the entries at `indices`, ordered by index, name. */
  payloads(indices: readonly number[]): Promise<PayloadRow[]>;

  /**
   * Stores payloads for already-indexed entries (a retry after a crash lost them): ON
   * CONFLICT DO NOTHING, so a stored payload is never changed; a payload erased before it
   * arrives is stored as its commitment only, with erasedBy set (never resurrected).
   * Returns how many rows were stored. Durable before resolving.
   * @throws {RangeError} on an index not below the watermark, a duplicate (index, name),
   *   erasedBy not null, or malformed fields
   * @throws {ConflictError} on an index below the watermark without a recorded entry
   */
  putPayloads(rows: readonly PayloadRow[]): Promise<number>;

  /**
   * Stores a new credential, created now. Durable before resolving.
   * @throws {ConflictError} if the id or token hash is taken
   * @throws {RangeError} on malformed fields (agent set exactly for kind 'agent'; scopes only for 'reader')
   */
  createCredential(row: Omit<CredentialRow, 'createdAt' | 'revokedAt'>): Promise<CredentialRow>;

  /**
   * The credential whose token hashes to `tokenHash`, or null. Revoked credentials are
   * returned too, with revokedAt set: the caller MUST refuse them.
   */
  credentialByHash(tokenHash: Uint8Array): Promise<CredentialRow | null>;

  /** Revokes a credential; false if unknown or already revoked. Durable before resolving. */
  revokeCredential(id: string): Promise<boolean>;

  /** Every credential, revoked ones too, ordered by creation time then id. */
  credentials(): Promise<CredentialRow[]>;

  /** Ends the connection if the store owns it (see ownsConnection). */
  close(): Promise<void>;
}

/** The watermark is not where an index() call expected it. Carries the stored watermark. */
export class IndexConflictError extends ConflictError {
  constructor(
    message: string,
    /** The stored watermark. */
    readonly indexedSize: number
  ) {
    super(message);
  }
}

export interface PostgresAuditStoreOptions {
  /** The schema holding the audit tables (the log's schema; created if missing). */
  schema: string;
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
  /** close() ends `sql` only if true. Default false: the store shares the log's connection. */
  ownsConnection?: boolean;
}

const MAX_LIMIT = 1000;
/** Indices per audit_time_blocks row. */
const TIME_BLOCK = 256;

/** The smaller of two optional numbers (null: none). */
const least = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
/** The larger of two optional numbers (null: none). */
const greatest = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

/** Per block of the batch: its rows' time extremes, then the prefix max and suffix min stored. */
interface TimeBlock {
  block: number;
  cmin: number | null;
  cmax: number | null;
  lmin: number | null;
  lmax: number | null;
  cpmax: number | null;
  csmin: number | null;
  lpmax: number | null;
  lsmin: number | null;
}

function timeBlocks(rows: readonly AuditRow[]): TimeBlock[] {
  const byBlock = new Map<number, TimeBlock>();
  for (const r of rows) {
    const block = Math.floor(r.index / TIME_BLOCK);
    let b = byBlock.get(block);
    if (!b) byBlock.set(block, (b = { block, cmin: null, cmax: null, lmin: null, lmax: null, cpmax: null, csmin: null, lpmax: null, lsmin: null }));
    b.cmin = least(b.cmin, r.clientTime);
    b.cmax = greatest(b.cmax, r.clientTime);
    b.lmin = least(b.lmin, r.logTime);
    b.lmax = greatest(b.lmax, r.logTime);
  }
  return [...byBlock.values()].sort((x, y) => x.block - y.block);
}
const CREDENTIAL_KINDS: readonly CredentialKind[] = ['operator', 'agent', 'reader'];

// ---- argument checks (RangeError: misuse by the caller) -------------------------------

function checkIndex(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what} ${String(v)} is not a safe non-negative integer`);
  return v;
}

function checkTime(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new RangeError(`${what} ${String(v)} is not a safe integer of milliseconds`);
  return v;
}

function checkText(v: unknown, what: string, nonEmpty = true): string {
  if (typeof v !== 'string') throw new RangeError(`${what} must be a string`);
  if (nonEmpty && v === '') throw new RangeError(`${what} must not be empty`);
  if (v.includes('\0')) throw new RangeError(`${what} must not contain NUL (Postgres text cannot hold it)`);
  return v;
}

function checkOptText(v: unknown, what: string): string | null {
  return v === null ? null : checkText(v, what);
}

function checkBytes(v: unknown, what: string, length?: number): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new RangeError(`${what} must be a Uint8Array`);
  if (length !== undefined && v.length !== length) throw new RangeError(`${what} must be ${length} bytes`);
  return v;
}

function checkInRange(index: number, from: number, to: number, what: string): void {
  if (index < from || index >= to) throw new RangeError(`${what} at index ${index} is outside the batch [${from}, ${to})`);
}

function checkEndedBy(v: unknown, what: string): 'rotated' | 'revoked' {
  if (v !== 'rotated' && v !== 'revoked') throw new RangeError(`${what} must be 'rotated' or 'revoked'`);
  return v;
}

function checkRow(r: AuditRow): void {
  checkIndex(r.index, 'row index');
  if (!ENTRY_TYPES.includes(r.type)) throw new RangeError(`row ${r.index}: unknown entry type ${JSON.stringify(r.type)}`);
  checkOptText(r.agent, `row ${r.index}: agent`);
  checkOptText(r.run, `row ${r.index}: run`);
  checkOptText(r.kind, `row ${r.index}: kind`);
  if (r.run !== null && r.agent === null) throw new RangeError(`row ${r.index}: a run needs an agent`);
  if (r.type === 'run.close' && r.run === null) throw new RangeError(`row ${r.index}: a run.close needs a run`);
  if (r.seq !== null) checkIndex(r.seq, `row ${r.index}: seq`);
  if (r.clientTime !== null) checkTime(r.clientTime, `row ${r.index}: client time`);
  checkTime(r.logTime, `row ${r.index}: log time`);
  checkBytes(r.leafHash, `row ${r.index}: leaf hash`, HASH_SIZE);
}

function checkPayload(p: PayloadRow): void {
  checkIndex(p.index, 'payload index');
  checkText(p.name, `payload ${p.index}: name`);
  if (checkBytes(p.commitment, `payload ${p.index}/${p.name}: commitment`).length === 0) {
    throw new RangeError(`payload ${p.index}/${p.name}: commitment must not be empty`);
  }
  if (p.salt !== null) checkBytes(p.salt, `payload ${p.index}/${p.name}: salt`);
  if (p.data !== null) checkBytes(p.data, `payload ${p.index}/${p.name}: data`);
  if (p.erasedBy !== null) throw new RangeError(`payload ${p.index}/${p.name}: erasedBy must be null (erasures are recorded by index())`);
}

function checkKey(k: KeyRow): void {
  checkText(k.agent, 'key agent');
  checkText(k.vkey, `key of ${k.agent}: vkey`);
  checkIndex(k.from, `key of ${k.agent}: from`);
  if ((k.until === null) !== (k.endedBy === null)) throw new RangeError(`key of ${k.agent} from ${k.from}: until and endedBy must both be set or both null`);
  if (k.until !== null) {
    checkIndex(k.until, `key of ${k.agent}: until`);
    if (k.until <= k.from) throw new RangeError(`key of ${k.agent} from ${k.from}: until ${k.until} must be after from`);
    checkEndedBy(k.endedBy, `key of ${k.agent}: endedBy`);
  }
}

/** The (index, name) key of a payload, for duplicate checks. */
const payloadKey = (index: number, name: string) => `${index}\0${name}`;

// ---- row conversion (StorageError: stored data breaking an invariant) ----------------------

function toTime(v: unknown, what: string): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isSafeInteger(n)) throw new StorageError(`stored ${what} ${String(v)} is not a safe integer`);
  return n;
}

function toBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new StorageError(`stored ${what} is not bytes`);
  // A plain Uint8Array (not the driver's Buffer), detached from the driver's buffer pool.
  return new Uint8Array(v);
}

function toAuditRow(r: postgres.Row): AuditRow {
  const type = r.type as EntryType;
  if (!ENTRY_TYPES.includes(type)) throw new StorageError(`stored entry type ${String(r.type)} is unknown`);
  const leafHash = toBytes(r.leaf_hash, 'leaf hash');
  if (leafHash.length !== HASH_SIZE) throw new StorageError(`stored leaf hash of entry ${String(r.idx)} is not ${HASH_SIZE} bytes`);
  return {
    index: toSize(r.idx, 'entry index'),
    type,
    agent: (r.agent as string | null) ?? null,
    run: (r.run as string | null) ?? null,
    seq: r.seq === null ? null : toSize(r.seq, 'seq'),
    kind: (r.kind as string | null) ?? null,
    clientTime: r.client_time === null ? null : toTime(r.client_time, 'client time'),
    logTime: toTime(r.log_time, 'log time'),
    leafHash,
  };
}

function toKeyRow(r: postgres.Row): KeyRow {
  const endedBy = (r.ended_by as 'rotated' | 'revoked' | null) ?? null;
  if (endedBy !== null && endedBy !== 'rotated' && endedBy !== 'revoked') throw new StorageError(`stored ended_by ${String(endedBy)} is unknown`);
  return {
    agent: r.agent as string,
    vkey: r.vkey as string,
    from: toSize(r.from_idx, 'key from'),
    until: r.until_idx === null ? null : toSize(r.until_idx, 'key until'),
    endedBy,
  };
}

function toPayloadRow(r: postgres.Row): PayloadRow {
  return {
    index: toSize(r.idx, 'payload index'),
    name: r.name as string,
    commitment: toBytes(r.commitment, 'commitment'),
    salt: r.salt === null ? null : toBytes(r.salt, 'salt'),
    data: r.data === null ? null : toBytes(r.data, 'payload data'),
    erasedBy: r.erased_by === null ? null : toSize(r.erased_by, 'erased_by'),
  };
}

function toCredential(r: postgres.Row): CredentialRow {
  const kind = r.kind as CredentialKind;
  if (!CREDENTIAL_KINDS.includes(kind)) throw new StorageError(`stored credential kind ${String(r.kind)} is unknown`);
  const list = (v: unknown, what: string): string[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new StorageError(`stored credential ${what} is not a text array`);
    return v as string[];
  };
  return {
    id: r.id as string,
    tokenHash: toBytes(r.token_hash, 'token hash'),
    kind,
    agent: (r.agent as string | null) ?? null,
    agents: list(r.agents, 'agents'),
    runs: list(r.runs, 'runs'),
    label: r.label as string,
    createdAt: r.created_at as Date,
    revokedAt: (r.revoked_at as Date | null) ?? null,
  };
}

/** A unique or foreign-key violation (SQLSTATE 23505 / 23503) becomes a ConflictError; anything else is rethrown. */
function conflict(err: unknown, what: string): never {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === '23505' || code === '23503') {
    const e = err as { message: string; detail?: string };
    const c = new ConflictError(`${what}: ${e.message}${e.detail ? ` (${e.detail})` : ''}`);
    (c as { cause?: unknown }).cause = err;
    throw c;
  }
  throw err;
}

export class PostgresAuditStore implements AuditStore {
  private readonly schema: string;
  private readonly afterCommit: () => Promise<void>;
  private readonly singleSession: boolean;
  private readonly ownsConnection: boolean;

  constructor(
    private readonly sql: Sql,
    opts: PostgresAuditStoreOptions
  ) {
    this.schema = opts.schema;
    schemaConnection(this.schema);
    this.afterCommit = opts.afterCommit ?? (async () => undefined);
    this.singleSession = opts.singleSession ?? false;
    this.ownsConnection = opts.ownsConnection ?? false;
  }

  async migrate(): Promise<void> {
    await migrateSchema(this.sql, this.schema, this.singleSession, async (sql) => {
      await sql.unsafe(AUDIT_SCHEMA);
      await sql`INSERT INTO audit_state (id, indexed_size) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`;
    });
    await this.afterCommit();
  }


  async indexedSize(): Promise<number> {
    const [row] = await this.sql`SELECT indexed_size FROM audit_state WHERE id = 1`;
    if (!row) throw new StorageError('audit state row missing: migrate() has not run');
    return toSize(row.indexed_size, 'indexed_size');
  }

  async index(batch: IndexBatch): Promise<void> {
    const { from, to } = batch;
    checkIndex(from, 'batch from');
    checkIndex(to, 'batch to');
    if (to < from) throw new RangeError(`batch [${from}, ${to}) ends before it starts`);

    const rowIndices = new Set<number>();
    for (const r of batch.rows) {
      checkRow(r);
      checkInRange(r.index, from, to, 'row');
      if (rowIndices.has(r.index)) throw new RangeError(`two rows at index ${r.index}`);
      rowIndices.add(r.index);
    }
    const needRow = (index: number, what: string) => {
      checkInRange(index, from, to, what);
      if (!rowIndices.has(index)) throw new RangeError(`${what} at index ${index} has no row in the batch`);
    };
    for (const k of batch.keys) {
      checkKey(k);
      needRow(k.from, `key of ${k.agent}`);
      if (k.until !== null) needRow(k.until, `end of key of ${k.agent}`);
    }
    for (const e of batch.keyEnds) {
      checkText(e.agent, 'key end agent');
      checkText(e.vkey, `key end of ${e.agent}: vkey`);
      checkIndex(e.until, `key end of ${e.agent}: until`);
      checkEndedBy(e.endedBy, `key end of ${e.agent}: endedBy`);
      needRow(e.until, `key end of ${e.agent}`);
    }
    const payloadKeys = new Set<string>();
    for (const p of batch.payloads) {
      checkPayload(p);
      needRow(p.index, `payload ${p.name}`);
      const k = payloadKey(p.index, p.name);
      if (payloadKeys.has(k)) throw new RangeError(`two payloads ${p.name} at index ${p.index}`);
      payloadKeys.add(k);
    }
    // One erasure per (index, name): the earliest erasing entry wins, as in audit_erasures.
    const erasures = new Map<string, Erasure>();
    for (const e of batch.erasures) {
      checkIndex(e.index, 'erased index');
      checkText(e.name, `erasure at ${e.index}: name`);
      checkIndex(e.erasedBy, `erasure at ${e.index}: erasedBy`);
      needRow(e.erasedBy, `erasure of ${e.index}/${e.name}`);
      if (e.index >= e.erasedBy) throw new RangeError(`erasure of ${e.index}/${e.name} by ${e.erasedBy}: an entry can only erase earlier entries`);
      const k = payloadKey(e.index, e.name);
      const prev = erasures.get(k);
      if (!prev || e.erasedBy < prev.erasedBy) erasures.set(k, e);
    }

    // Key periods change in index order; at one index an end comes before a start, so a
    // rotation ends the old period before the new one opens.
    type KeyOp = { at: number; end: true; op: KeyEnd } | { at: number; end: false; op: KeyRow };
    const keyOps: KeyOp[] = [
      ...batch.keyEnds.map((op): KeyOp => ({ at: op.until, end: true, op })),
      ...batch.keys.map((op): KeyOp => ({ at: op.from, end: false, op })),
    ].sort((a, b) => a.at - b.at || Number(b.end) - Number(a.end));

    const rows = batch.rows;
    const ers = [...erasures.values()];
    const blocks = timeBlocks(rows);
    try {
      await this.sql.begin(async (sql) => {
        // The compare-and-swap, first: its row lock serialises indexers (a concurrent one
        // waits here, then finds the moved watermark and fails) and putPayloads.
        const moved = await sql`UPDATE audit_state SET indexed_size = ${to} WHERE id = 1 AND indexed_size = ${from}`;
        if (moved.count !== 1) {
          const [row] = await sql`SELECT indexed_size FROM audit_state WHERE id = 1`;
          if (!row) throw new StorageError('audit state row missing: migrate() has not run');
          const size = toSize(row.indexed_size, 'indexed_size');
          throw new IndexConflictError(`indexing [${from}, ${to}): the audit watermark is at ${size}, not ${from}`, size);
        }
        // Pipelined in order on the transaction's connection.
        const writes: Array<postgres.PendingQuery<postgres.Row[]>> = [];
        if (rows.length > 0) {
          writes.push(sql`INSERT INTO audit_entries (idx, type, agent, run, seq, kind, client_time, log_time, leaf_hash)
            SELECT * FROM unnest(
              ${sql.array(rows.map((r) => r.index), 20)}::int8[],
              ${sql.array(rows.map((r) => r.type), 25)}::text[],
              ${sql.array(rows.map((r) => r.agent), 25)}::text[],
              ${sql.array(rows.map((r) => r.run), 25)}::text[],
              ${sql.array(rows.map((r) => r.seq), 20)}::int8[],
              ${sql.array(rows.map((r) => r.kind), 25)}::text[],
              ${sql.array(rows.map((r) => r.clientTime), 20)}::int8[],
              ${sql.array(rows.map((r) => r.logTime), 20)}::int8[],
              ${sql.array(rows.map((r) => r.leafHash), 17)}::bytea[])`);
        }
        const ends: Array<{ at: number; end: KeyEnd }> = [];
        for (const k of keyOps) {
          if (k.end) {
            const e = k.op;
            ends.push({ at: writes.length, end: e });
            writes.push(sql`UPDATE audit_keys SET until_idx = ${e.until}, ended_by = ${e.endedBy}
                            WHERE agent = ${e.agent} AND vkey = ${e.vkey} AND until_idx IS NULL AND from_idx < ${e.until}`);
          } else {
            const p = k.op;
            writes.push(sql`INSERT INTO audit_keys (agent, vkey, from_idx, until_idx, ended_by)
                            VALUES (${p.agent}, ${p.vkey}, ${p.from}, ${p.until}, ${p.endedBy})`);
          }
        }
        const ps = batch.payloads;
        if (ps.length > 0) {
          writes.push(sql`INSERT INTO audit_payloads (idx, name, commitment, salt, data)
            SELECT * FROM unnest(
              ${sql.array(ps.map((p) => p.index), 20)}::int8[],
              ${sql.array(ps.map((p) => p.name), 25)}::text[],
              ${sql.array(ps.map((p) => p.commitment), 17)}::bytea[],
              ${sql.array(ps.map((p) => p.salt), 17)}::bytea[],
              ${sql.array(ps.map((p) => p.data), 17)}::bytea[])`);
        }
        if (ers.length > 0) {
          const idx = sql.array(ers.map((e) => e.index), 20);
          const names = sql.array(ers.map((e) => e.name), 25);
          const by = sql.array(ers.map((e) => e.erasedBy), 20);
          writes.push(sql`INSERT INTO audit_erasures (idx, name, erased_by)
                          SELECT * FROM unnest(${idx}::int8[], ${names}::text[], ${by}::int8[])
                          ON CONFLICT (idx, name) DO NOTHING`);
          writes.push(sql`UPDATE audit_payloads AS p SET salt = NULL, data = NULL, erased_by = e.erased_by
                          FROM unnest(${idx}::int8[], ${names}::text[], ${by}::int8[]) AS e (idx, name, erased_by)
                          WHERE p.idx = e.idx AND p.name = e.name AND p.erased_by IS NULL`);
        }
        if (blocks.length > 0) {
          // Prefix maxima continue from the last stored block; suffix minima are the batch's
          // own (merged with a stored block it shares), and lower every earlier block's.
          const [last] = await sql`SELECT client_pmax, log_pmax FROM audit_time_blocks ORDER BY block DESC LIMIT 1`;
          let cp = last?.client_pmax == null ? null : toTime(last.client_pmax, 'client_pmax');
          let lp = last?.log_pmax == null ? null : toTime(last.log_pmax, 'log_pmax');
          for (const b of blocks) {
            b.cpmax = cp = greatest(cp, b.cmax);
            b.lpmax = lp = greatest(lp, b.lmax);
          }
          let cs: number | null = null;
          let ls: number | null = null;
          for (let i = blocks.length - 1; i >= 0; i--) {
            const b = blocks[i]!;
            b.csmin = cs = least(cs, b.cmin);
            b.lsmin = ls = least(ls, b.lmin);
          }
          const first = blocks[0]!;
          writes.push(sql`INSERT INTO audit_time_blocks AS t (block, client_pmax, client_smin, log_pmax, log_smin)
            SELECT * FROM unnest(
              ${sql.array(blocks.map((b) => b.block), 20)}::int8[],
              ${sql.array(blocks.map((b) => b.cpmax), 20)}::int8[],
              ${sql.array(blocks.map((b) => b.csmin), 20)}::int8[],
              ${sql.array(blocks.map((b) => b.lpmax), 20)}::int8[],
              ${sql.array(blocks.map((b) => b.lsmin), 20)}::int8[])
            ON CONFLICT (block) DO UPDATE SET
              client_pmax = GREATEST(t.client_pmax, excluded.client_pmax), client_smin = LEAST(t.client_smin, excluded.client_smin),
              log_pmax = GREATEST(t.log_pmax, excluded.log_pmax), log_smin = LEAST(t.log_smin, excluded.log_smin)`);
          if (first.csmin !== null) {
            writes.push(sql`UPDATE audit_time_blocks SET client_smin = ${first.csmin}
                            WHERE (client_smin > ${first.csmin} OR client_smin IS NULL) AND block < ${first.block}`);
          }
          if (first.lsmin !== null) {
            writes.push(sql`UPDATE audit_time_blocks SET log_smin = ${first.lsmin}
                            WHERE (log_smin > ${first.lsmin} OR log_smin IS NULL) AND block < ${first.block}`);
          }
        }
        const results = await Promise.all(writes);
        for (const { at, end: e } of ends) {
          if (results[at]!.count !== 1) {
            throw new ConflictError(`indexing [${from}, ${to}): ${e.agent} has no open period of key ${e.vkey} for the ${e.endedBy === 'rotated' ? 'rotation' : 'revocation'} at ${e.until}`);
          }
        }
      });
    } catch (err) {
      conflict(err, `indexing [${from}, ${to})`);
    }
    await this.afterCommit();
  }

  async findRunEntries(keys: ReadonlyArray<{ agent: string; run: string; seq: number }>): Promise<AuditRow[]> {
    const seen = new Set<string>();
    const agents: string[] = [];
    const runs: string[] = [];
    const seqs: number[] = [];
    for (const k of keys) {
      checkText(k.agent, 'agent');
      checkText(k.run, 'run');
      checkIndex(k.seq, 'seq');
      const id = `${k.agent}\0${k.run}\0${k.seq}`;
      if (seen.has(id)) continue;
      seen.add(id);
      agents.push(k.agent);
      runs.push(k.run);
      seqs.push(k.seq);
    }
    if (agents.length === 0) return [];
    // A nested loop of lookups on audit_entries_run_seq, one per key.
    const rows = await this.sql`SELECT e.idx, e.type, e.agent, e.run, e.seq, e.kind, e.client_time, e.log_time, e.leaf_hash
      FROM unnest(${this.sql.array(agents, 25)}::text[], ${this.sql.array(runs, 25)}::text[], ${this.sql.array(seqs, 20)}::int8[]) AS k (agent, run, seq)
      JOIN audit_entries AS e ON e.agent = k.agent AND e.run = k.run AND e.run_seq = k.seq
      ORDER BY e.idx`;
    return rows.map(toAuditRow);
  }

  async runClose(agent: string, run: string): Promise<number | null> {
    checkText(agent, 'agent');
    checkText(run, 'run');
    const [row] = await this.sql`SELECT idx FROM audit_entries
                                 WHERE agent = ${agent} AND run = ${run} AND type = 'run.close'
                                 ORDER BY idx LIMIT 1`;
    return row ? toSize(row.idx, 'entry index') : null;
  }

  async run(agent: string, run: string): Promise<AuditRow[]> {
    checkText(agent, 'agent');
    checkText(run, 'run');
    const rows = await this.sql`SELECT idx, type, agent, run, seq, kind, client_time, log_time, leaf_hash
                                FROM audit_entries WHERE agent = ${agent} AND run = ${run}
                                ORDER BY seq, idx`;
    return rows.map(toAuditRow);
  }

  async query(q: EntryQuery): Promise<AuditRow[]> {
    const below = checkIndex(q.below, 'below');
    const limit = q.limit;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new RangeError(`limit ${String(limit)} is not an integer in 1..${MAX_LIMIT}`);
    }
    const order = q.order ?? 'asc';
    if (order !== 'asc' && order !== 'desc') throw new RangeError(`order must be 'asc' or 'desc'`);
    const timeField = q.timeField ?? 'client';
    if (timeField !== 'client' && timeField !== 'log') throw new RangeError(`timeField must be 'client' or 'log'`);
    if (q.agent !== undefined) checkText(q.agent, 'agent');
    if (q.run !== undefined) {
      checkText(q.run, 'run');
      if (q.agent === undefined) throw new RangeError('a run query needs an agent');
    }
    if (q.kind !== undefined) checkText(q.kind, 'kind');
    if (q.types !== undefined) {
      if (!Array.isArray(q.types)) throw new RangeError('types must be an array');
      for (const t of q.types) if (!ENTRY_TYPES.includes(t)) throw new RangeError(`unknown entry type ${JSON.stringify(t)}`);
      if (q.types.length === 0) return [];
    }
    if (q.since !== undefined) checkTime(q.since, 'since');
    if (q.until !== undefined) checkTime(q.until, 'until');
    if (q.after !== undefined) checkTime(q.after, 'after');

    // The keyset bounds on idx: asc (after, below), desc [0, min(after, below)).
    let lower: number | undefined;
    let upper = below;
    if (q.after !== undefined) {
      if (order === 'asc') lower = q.after;
      else upper = Math.min(upper, q.after);
    }
    if (upper <= 0 || (lower !== undefined && lower >= upper - 1)) return [];

    // One statement with only the conditions given (each a plain comparison of an indexed
    // column with a parameter), so the planner sees exactly the shape and its indexes.
    const sql = this.sql;
    const conds: postgres.PendingQuery<postgres.Row[]>[] = [sql`idx < ${upper}`];
    if (lower !== undefined) conds.push(sql`idx > ${lower}`);
    if (q.agent !== undefined) conds.push(sql`agent = ${q.agent}`);
    if (q.run !== undefined) conds.push(sql`run = ${q.run}`);
    if (q.kind !== undefined) conds.push(sql`kind = ${q.kind}`);
    if (q.types !== undefined) {
      conds.push(q.types.length === 1 ? sql`type = ${q.types[0]!}` : sql`type = ANY(${sql.array([...q.types], 25)}::text[])`);
    }
    // A time bound also bounds idx, through audit_time_blocks: one index probe each, an
    // InitPlan the index scans on idx start (or stop) at. NULL (no such block) matches nothing,
    // rightly: then no row has such a time.
    if (q.since !== undefined) {
      if (timeField === 'client') {
        conds.push(sql`client_time >= ${q.since}`);
        conds.push(sql`idx >= (SELECT block * ${TIME_BLOCK} FROM audit_time_blocks WHERE client_pmax >= ${q.since} ORDER BY client_pmax, block LIMIT 1)`);
      } else {
        conds.push(sql`log_time >= ${q.since}`);
        conds.push(sql`idx >= (SELECT block * ${TIME_BLOCK} FROM audit_time_blocks WHERE log_pmax >= ${q.since} ORDER BY log_pmax, block LIMIT 1)`);
      }
    }
    if (q.until !== undefined) {
      if (timeField === 'client') {
        conds.push(sql`client_time < ${q.until}`);
        conds.push(sql`idx < (SELECT (block + 1) * ${TIME_BLOCK} FROM audit_time_blocks WHERE client_smin < ${q.until} ORDER BY client_smin DESC, block DESC LIMIT 1)`);
      } else {
        conds.push(sql`log_time < ${q.until}`);
        conds.push(sql`idx < (SELECT (block + 1) * ${TIME_BLOCK} FROM audit_time_blocks WHERE log_smin < ${q.until} ORDER BY log_smin DESC, block DESC LIMIT 1)`);
      }
    }
    const where = conds.reduce((a, c) => sql`${a} AND ${c}`);
    const rows =
      order === 'asc'
        ? await sql`SELECT idx, type, agent, run, seq, kind, client_time, log_time, leaf_hash
                    FROM audit_entries WHERE ${where} ORDER BY idx LIMIT ${limit}`
        : await sql`SELECT idx, type, agent, run, seq, kind, client_time, log_time, leaf_hash
                    FROM audit_entries WHERE ${where} ORDER BY idx DESC LIMIT ${limit}`;
    return rows.map(toAuditRow);
  }

  async keys(agent: string): Promise<KeyRow[]> {
    checkText(agent, 'agent');
    const rows = await this.sql`SELECT agent, vkey, from_idx, until_idx, ended_by FROM audit_keys
                                WHERE agent = ${agent} ORDER BY from_idx, vkey`;
    return rows.map(toKeyRow);
  }

  async allKeys(): Promise<KeyRow[]> {
    const rows = await this.sql`SELECT agent, vkey, from_idx, until_idx, ended_by FROM audit_keys
                                ORDER BY from_idx, agent, vkey`;
    return rows.map(toKeyRow);
  }

  async payloads(indices: readonly number[]): Promise<PayloadRow[]> {
    for (const i of indices) checkIndex(i, 'payload index');
    if (indices.length === 0) return [];
    const unique = [...new Set(indices)];
    const rows = await this.sql`SELECT idx, name, commitment, salt, data, erased_by FROM audit_payloads
                                WHERE idx = ANY(${this.sql.array(unique, 20)}::int8[]) ORDER BY idx, name`;
    return rows.map(toPayloadRow);
  }

  async putPayloads(rows: readonly PayloadRow[]): Promise<number> {
    const keys = new Set<string>();
    for (const p of rows) {
      checkPayload(p);
      const k = payloadKey(p.index, p.name);
      if (keys.has(k)) throw new RangeError(`two payloads ${p.name} at index ${p.index}`);
      keys.add(k);
    }
    if (rows.length === 0) return 0;
    const max = Math.max(...rows.map((p) => p.index));
    let stored: number;
    try {
      stored = await this.sql.begin(async (sql) => {
        // FOR SHARE waits for an index() in flight (it holds the row's lock until commit), so
        // the tombstones read below include every erasure committed before this insert, and
        // an erasure indexed after it finds the inserted rows.
        const [st] = await sql`SELECT indexed_size FROM audit_state WHERE id = 1 FOR SHARE`;
        if (!st) throw new StorageError('audit state row missing: migrate() has not run');
        const size = toSize(st.indexed_size, 'indexed_size');
        if (max >= size) throw new RangeError(`payload at index ${max} is not indexed yet (the watermark is ${size})`);
        const res = await sql`INSERT INTO audit_payloads (idx, name, commitment, salt, data, erased_by)
          SELECT p.idx, p.name, p.commitment,
                 CASE WHEN t.erased_by IS NULL THEN p.salt END,
                 CASE WHEN t.erased_by IS NULL THEN p.data END,
                 t.erased_by
          FROM unnest(
            ${sql.array(rows.map((p) => p.index), 20)}::int8[],
            ${sql.array(rows.map((p) => p.name), 25)}::text[],
            ${sql.array(rows.map((p) => p.commitment), 17)}::bytea[],
            ${sql.array(rows.map((p) => p.salt), 17)}::bytea[],
            ${sql.array(rows.map((p) => p.data), 17)}::bytea[]) AS p (idx, name, commitment, salt, data)
          LEFT JOIN audit_erasures AS t ON t.idx = p.idx AND t.name = p.name
          ON CONFLICT (idx, name) DO NOTHING`;
        return res.count;
      });
    } catch (err) {
      conflict(err, 'storing payloads');
    }
    await this.afterCommit();
    return stored;
  }

  async createCredential(row: Omit<CredentialRow, 'createdAt' | 'revokedAt'>): Promise<CredentialRow> {
    checkText(row.id, 'credential id');
    if (row.id.length > 128) throw new RangeError('credential id must be at most 128 characters');
    checkBytes(row.tokenHash, 'token hash', 32);
    if (!CREDENTIAL_KINDS.includes(row.kind)) throw new RangeError(`unknown credential kind ${JSON.stringify(row.kind)}`);
    if (row.kind === 'agent') checkText(row.agent, 'credential agent');
    else if (row.agent !== null) throw new RangeError(`a ${row.kind} credential has no agent`);
    if (!Array.isArray(row.agents) || !Array.isArray(row.runs)) throw new RangeError('agents and runs must be arrays');
    for (const a of row.agents) checkText(a, 'scope agent');
    for (const r of row.runs) checkText(r, 'scope run');
    if (row.kind !== 'reader' && (row.agents.length > 0 || row.runs.length > 0)) throw new RangeError(`a ${row.kind} credential has no reader scope`);
    checkText(row.label, 'label', false);
    let created: postgres.Row | undefined;
    try {
      [created] = await this.sql`INSERT INTO audit_credentials (id, token_hash, kind, agent, agents, runs, label)
        VALUES (${row.id}, ${row.tokenHash}, ${row.kind}, ${row.agent}, ${this.sql.array([...row.agents], 25)}::text[],
                ${this.sql.array([...row.runs], 25)}::text[], ${row.label})
        RETURNING id, token_hash, kind, agent, agents, runs, label, created_at, revoked_at`;
    } catch (err) {
      conflict(err, `creating credential ${row.id}`);
    }
    if (!created) throw new StorageError(`credential ${row.id} vanished after insert`);
    await this.afterCommit();
    return toCredential(created);
  }

  async credentialByHash(tokenHash: Uint8Array): Promise<CredentialRow | null> {
    checkBytes(tokenHash, 'token hash', 32);
    const [row] = await this.sql`SELECT id, token_hash, kind, agent, agents, runs, label, created_at, revoked_at
                                 FROM audit_credentials WHERE token_hash = ${tokenHash}`;
    return row ? toCredential(row) : null;
  }

  async revokeCredential(id: string): Promise<boolean> {
    checkText(id, 'credential id');
    const res = await this.sql`UPDATE audit_credentials SET revoked_at = now() WHERE id = ${id} AND revoked_at IS NULL`;
    if (res.count > 0) await this.afterCommit();
    return res.count > 0;
  }

  async credentials(): Promise<CredentialRow[]> {
    const rows = await this.sql`SELECT id, token_hash, kind, agent, agents, runs, label, created_at, revoked_at
                                FROM audit_credentials ORDER BY created_at, id`;
    return rows.map(toCredential);
  }

  async close(): Promise<void> {
    if (this.ownsConnection) await this.sql.end({ timeout: 5 });
  }
}
