/**
 * The agent audit layer, composed as `glasslog serve` composes it, for tests: a Log
 * (PostgresLogStore) and a PostgresAuditStore sharing ONE postgres.js connection in ONE
 * schema, an AuditLog over them with a one-thread VerifyPool, an Access whose operator token
 * is also the log's write token, and the Hono app with the audit routes mounted.
 *
 *   const audits = auditStoreFactories();            // once per file: one PGlite per file
 *   afterAll(() => Promise.all(audits.map((f) => f.dispose())));
 *   const fx = await createAuditFixture(factory, { rate: { perSecond: 1, burst: 3 } });
 *   await fx.request('/v1/agents', { method: 'POST', ... });
 *   await fx.cleanup();                               // closes everything, drops the schema
 *
 * Each fixture gets a schema of its own (on PGlite the schemas share the factory's one
 * embedded database, which admits one client at a time: clean a fixture up before the next).
 *
 * The client side lives here too: TestAgent signs chained entries of runs with payload
 * commitments, and builds the JSON request bodies of POST /v1/agents/<agent>/entries.
 */
import type { Hono } from 'hono';
import { encodeBase64, utf8 } from '../../src/core/encoding.js';
import { AuditLog } from '../../src/audit/audit.js';
import { Access } from '../../src/audit/access.js';
import { VerifyPool } from '../../src/audit/verify-pool.js';
import {
  newPayloadSalt,
  payloadCommitment,
  signEntry,
  type EventEntry,
  type ModelInfo,
  type RunCloseEntry,
  type SignedEntry,
} from '../../src/entry/index.js';
import { createLogApp } from '../../src/http/log-app.js';
import { Log, type LogOptions } from '../../src/log/log.js';
import { Registry } from '../../src/metrics.js';
import { generateKey, newSigner } from '../../src/note/index.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import { PostgresAuditStore } from '../../src/storage/audit-store.js';
import { PostgresLogStore } from '../../src/storage/postgres.js';
import type { AuditConnection, AuditStoreFactory, AuditStoreHandle } from './audit-stores.js';

export interface AuditFixtureOptions {
  /** AuditLog's per-agent rate (default: AuditLog's own default). */
  readonly rate?: { readonly perSecond: number; readonly burst: number };
  /** AuditLog's clock (registry entry times, log times, the rate limiter). Default Date.now. */
  readonly now?: () => number;
  /** Log tuning (maxBatchDelayMs defaults to 1). */
  readonly log?: Partial<Omit<LogOptions, 'store' | 'origin' | 'signer' | 'vkey'>>;
}

/** Row counts of the audit tables and the log's sizes: all must stay put across a refused request. */
export interface AuditSnapshot {
  readonly sequenced: number;
  readonly indexed: number;
  readonly entries: number;
  readonly payloads: number;
  readonly keys: number;
  readonly erasures: number;
}

export interface AuditFixture {
  readonly factory: string;
  readonly schema: string;
  readonly origin: string;
  /** The log's signing key (it signs registry and erasure entries). */
  readonly skey: string;
  readonly vkey: string;
  /** The operator token; also the log's write token. */
  readonly token: string;
  readonly handle: AuditStoreHandle;
  /** The shared connection (search_path = the fixture's schema). Replaced by restart(). */
  readonly conn: AuditConnection;
  readonly log: Log;
  readonly logStore: PostgresLogStore;
  readonly store: PostgresAuditStore;
  /** The current AuditLog (replaced by openAudit() and restart()). */
  readonly audit: AuditLog;
  readonly access: Access;
  /**
   * The app, bound to the AuditLog it was built with: after closeAudit()/openAudit() it still
   * serves the closed one (use `audit` directly then); restart() builds a new one.
   */
  readonly app: Hono;
  /** app.request(). */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** Authorization header with the operator token (or `token`). */
  auth(token?: string): Record<string, string>;
  /** Row counts and sizes, for "nothing stored" checks. */
  snapshot(): Promise<AuditSnapshot>;
  /** Closes the AuditLog only (the log keeps running): what is appended now is not indexed. */
  closeAudit(): Promise<void>;
  /** Opens a new AuditLog on the same log and store (with a fresh metrics registry). */
  openAudit(opts?: Pick<AuditFixtureOptions, 'rate' | 'now'>): Promise<AuditLog>;
  /** Closes everything and opens Log, AuditLog, Access and app again on the same schema. */
  restart(opts?: AuditFixtureOptions): Promise<void>;
  /** Closes everything and drops the schema. Idempotent. */
  cleanup(): Promise<void>;
}

let counter = 0;

interface Stack {
  conn: AuditConnection;
  logStore: PostgresLogStore;
  store: PostgresAuditStore;
  log: Log;
  audit: AuditLog | undefined;
  access: Access;
  app: Hono;
}

export async function createAuditFixture(factory: AuditStoreFactory, opts: AuditFixtureOptions = {}): Promise<AuditFixture> {
  const origin = `glasslog.test/audit-${process.pid}-${Date.now().toString(36)}-${counter++}`;
  const { skey, vkey } = generateKey(origin);
  const token = `operator-${Math.random().toString(36).slice(2)}-${counter}`;
  const handle = await factory.create();
  const pool = new VerifyPool(1);
  let current: Stack | undefined;
  let destroyed = false;
  let options = opts;

  const openAuditLog = (log: Log, store: PostgresAuditStore, o: Pick<AuditFixtureOptions, 'rate' | 'now'>, metrics?: Registry) =>
    AuditLog.open({
      log,
      store,
      logSkey: skey,
      pool,
      ...(o.rate ? { rate: o.rate } : {}),
      ...(o.now ? { now: o.now } : {}),
      ...(metrics ? { metrics } : {}),
    });

  async function open(o: AuditFixtureOptions): Promise<void> {
    const conn = await handle.connect();
    const { schema, singleSession, afterCommit } = conn.options;
    const logStore = new PostgresLogStore(conn.sql, {
      schema,
      singleSession,
      advisoryLock: !singleSession,
      ...(afterCommit ? { afterCommit } : {}),
    });
    const store = new PostgresAuditStore(conn.sql, { ...conn.options, ownsConnection: false });
    let log: Log;
    try {
      log = await Log.open({ maxBatchDelayMs: 1, ...o.log, store: logStore, origin, signer: newSigner(skey), vkey });
    } catch (err) {
      await logStore.close().catch(() => undefined);
      throw err;
    }
    let audit: AuditLog;
    try {
      audit = await openAuditLog(log, store, o);
    } catch (err) {
      await log.close().catch(() => undefined);
      throw err;
    }
    const access = new Access(store, [token]);
    const app = createLogApp({ log, writeTokens: [token], audit: { audit, access } });
    current = { conn, logStore, store, log, audit, access, app };
  }

  async function close(): Promise<void> {
    const c = current;
    current = undefined;
    if (!c) return;
    await c.audit?.close().catch(() => undefined);
    await c.log.close(); // ends the shared connection (the audit store does not own it)
  }

  const cur = (): Stack => {
    if (!current) throw new Error('audit fixture is closed');
    return current;
  };

  const fx: AuditFixture = {
    factory: factory.name,
    schema: handle.schema,
    origin,
    skey,
    vkey,
    token,
    handle,
    get conn() {
      return cur().conn;
    },
    get log() {
      return cur().log;
    },
    get logStore() {
      return cur().logStore;
    },
    get store() {
      return cur().store;
    },
    get audit() {
      const a = cur().audit;
      if (!a) throw new Error('the AuditLog is closed');
      return a;
    },
    get access() {
      return cur().access;
    },
    get app() {
      return cur().app;
    },
    request(path, init) {
      return Promise.resolve(cur().app.request(path, init));
    },
    auth(t = token) {
      return { Authorization: `Bearer ${t}` };
    },
    async snapshot() {
      const c = cur();
      const [row] = await c.conn.sql`SELECT
          (SELECT count(*) FROM audit_entries)::int AS entries,
          (SELECT count(*) FROM audit_payloads)::int AS payloads,
          (SELECT count(*) FROM audit_keys)::int AS keys,
          (SELECT count(*) FROM audit_erasures)::int AS erasures`;
      return {
        sequenced: c.log.sequencedSize(),
        indexed: await c.store.indexedSize(),
        entries: Number(row!.entries),
        payloads: Number(row!.payloads),
        keys: Number(row!.keys),
        erasures: Number(row!.erasures),
      };
    },
    async closeAudit() {
      const c = cur();
      const a = c.audit;
      c.audit = undefined;
      await a?.close();
    },
    async openAudit(o = options) {
      const c = cur();
      if (c.audit) throw new Error('close the AuditLog first');
      c.audit = await openAuditLog(c.log, c.store, o, new Registry());
      return c.audit;
    },
    async restart(o = options) {
      options = o;
      await close();
      await open(o);
    },
    async cleanup() {
      if (destroyed) return;
      destroyed = true;
      await close().catch(() => undefined);
      await pool.close();
      await handle.destroy();
    },
  };

  try {
    await open(opts);
  } catch (err) {
    await pool.close().catch(() => undefined);
    await handle.destroy().catch(() => undefined);
    throw err;
  }
  return fx;
}

// ---- the client side ----

/** A payload as the client keeps it: salt, data, and the commitment the entry carries. */
export interface ClientPayload {
  readonly salt: Uint8Array;
  readonly data: Uint8Array;
  readonly commitment: Uint8Array;
}

/** One signed entry and what travels beside it. */
export interface ClientEntry {
  readonly signed: SignedEntry;
  readonly payloads: Readonly<Record<string, ClientPayload>>;
}

export interface EventFields {
  readonly kind?: string;
  readonly time?: number;
  readonly parent?: number;
  readonly model?: ModelInfo;
  readonly attrs?: Record<string, string | number | boolean>;
  /** Payload data by name; each gets a fresh salt and its commitment in the entry. */
  readonly payloads?: Record<string, string | Uint8Array>;
  /** Override the seq (default: the run's next). */
  readonly seq?: number;
  /** Override prev (default: the leaf hash of the run's previous entry). */
  readonly prev?: Uint8Array;
}

export function clientPayload(data: string | Uint8Array): ClientPayload {
  const bytes = typeof data === 'string' ? utf8(data) : data;
  const salt = newPayloadSalt();
  return { salt, data: bytes, commitment: payloadCommitment(salt, bytes) };
}

/**
 * An agent as a client: its id, its current signing key, and per run the next seq and the
 * leaf hash of the last entry made (entries are made in order; submitting is separate).
 */
export class TestAgent {
  key: { skey: string; vkey: string };
  private readonly runs = new Map<string, { seq: number; prev: Uint8Array | undefined }>();

  constructor(
    readonly id: string,
    key?: { skey: string; vkey: string }
  ) {
    this.key = key ?? generateKey(id);
  }

  /** A new key for this agent (not installed until an operator rotates to it). */
  newKey(): { skey: string; vkey: string } {
    return generateKey(this.id);
  }

  /** The next event of `run`, signed with the current key (or `skey`); advances the run. */
  event(run: string, f: EventFields = {}, skey = this.key.skey): ClientEntry {
    const r = this.runs.get(run) ?? { seq: 0, prev: undefined };
    const seq = f.seq ?? r.seq;
    const payloads: Record<string, ClientPayload> = {};
    for (const [name, data] of Object.entries(f.payloads ?? {})) payloads[name] = clientPayload(data);
    const prev = f.prev ?? (seq > 0 ? r.prev ?? new Uint8Array(32) : undefined);
    const entry: EventEntry = {
      type: 'event',
      agent: this.id,
      run,
      seq,
      ...(prev ? { prev } : {}),
      ...(f.parent !== undefined ? { parent: f.parent } : {}),
      kind: f.kind ?? 'tool_call',
      time: f.time ?? Date.now(),
      ...(f.model ? { model: f.model } : {}),
      ...(f.attrs ? { attrs: f.attrs } : {}),
      ...(f.payloads ? { payloads: Object.fromEntries(Object.entries(payloads).map(([n, p]) => [n, p.commitment])) } : {}),
    };
    const signed = signEntry(entry, skey, nodeEd25519);
    this.runs.set(run, { seq: seq + 1, prev: signed.leafHash });
    return { signed, payloads };
  }

  /** The run.close of `run` after the entries made so far (or as overridden). */
  close(run: string, f: { time?: number; seq?: number; prev?: Uint8Array } = {}, skey = this.key.skey): ClientEntry {
    const r = this.runs.get(run) ?? { seq: 0, prev: undefined };
    const seq = f.seq ?? r.seq;
    const prev = f.prev ?? (seq > 0 ? r.prev ?? new Uint8Array(32) : undefined);
    const entry: RunCloseEntry = { type: 'run.close', agent: this.id, run, seq, ...(prev ? { prev } : {}), time: f.time ?? Date.now() };
    const signed = signEntry(entry, skey, nodeEd25519);
    this.runs.set(run, { seq: seq + 1, prev: signed.leafHash });
    return { signed, payloads: {} };
  }

  /** Forgets a run's position so its next entry is seq `seq` with `prev` (for gaps and forks). */
  seek(run: string, seq: number, prev?: Uint8Array): void {
    this.runs.set(run, { seq, prev });
  }
}

/** The Submission AuditLog.submit takes. */
export function submission(e: ClientEntry): { envelope: Uint8Array; payloads: Record<string, { salt: Uint8Array; data: Uint8Array }> } {
  return {
    envelope: e.signed.bytes,
    payloads: Object.fromEntries(Object.entries(e.payloads).map(([n, p]) => [n, { salt: p.salt, data: p.data }])),
  };
}

/** One entry of the JSON request body, in its envelope form. */
export function entryJson(e: ClientEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { envelope: encodeBase64(e.signed.bytes) };
  if (Object.keys(e.payloads).length > 0) {
    out.payloads = Object.fromEntries(
      Object.entries(e.payloads).map(([n, p]) => [n, { salt: encodeBase64(p.salt), data: encodeBase64(p.data) }])
    );
  }
  return out;
}

/** The JSON body of POST /v1/agents/<agent>/entries. */
export function entriesBody(entries: readonly ClientEntry[]): string {
  return JSON.stringify({ entries: entries.map(entryJson) });
}
