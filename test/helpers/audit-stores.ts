/**
 * AuditStore factories for tests, mirroring test/helpers/witness-stores.ts: every audit-store
 * test runs against the embedded PGlite always, and against the real Postgres at
 * $DATABASE_URL when it is set. Each store gets its own schema. A PGlite start costs
 * seconds, so a factory starts one embedded database lazily and shares it between the
 * stores it creates (each in a schema of its own); dispose() it in afterAll.
 *
 * The embedded engine admits one client at a time: on PGlite, close every connection of a
 * handle before opening another, restarting, or destroying.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { PostgresAuditStore, type PostgresAuditStoreOptions } from '../../src/storage/audit-store.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/storage/embedded.js';
import { schemaConnection } from '../../src/storage/postgres.js';

export interface AuditStoreFactory {
  readonly name: 'pglite' | 'postgres';
  /** A fresh, empty store in a schema of its own. */
  create(): Promise<AuditStoreHandle>;
  /** Releases what the factory's stores share (the embedded database). Idempotent. */
  dispose(): Promise<void>;
}

/** A connection to a handle's schema, and the store options that go with it (schema, engine flags, fsync hook). */
export interface AuditConnection {
  readonly sql: postgres.Sql<{}>;
  readonly options: PostgresAuditStoreOptions & { schema: string; singleSession: boolean };
}

export interface AuditStoreHandle {
  readonly schema: string;
  /** A new connection to the handle's schema (PGlite: the engine's only one; end it before the next). */
  connect(): Promise<AuditConnection>;
  /** A store owning a new connection to the handle's schema; calling it again opens the same data. Not migrated. */
  open(): Promise<PostgresAuditStore>;
  /**
   * Restarts the engine under the store (PGlite: shuts the embedded database down and starts
   * it again on the same data directory; Postgres: nothing). Close the handle's stores first.
   */
  restart(): Promise<void>;
  /** Removes the data (drops the schema). */
  destroy(): Promise<void>;
}

let counter = 0;
const uniqueSchema = () => `a_${process.pid}_${Date.now().toString(36)}_${counter++}`;

function handleOn(schema: string, connect: () => Promise<AuditConnection>, restart: () => Promise<void>, admin: () => Promise<postgres.Sql<{}> | undefined>): AuditStoreHandle {
  return {
    schema,
    connect,
    async open() {
      const c = await connect();
      return new PostgresAuditStore(c.sql, { ...c.options, ownsConnection: true });
    },
    restart,
    async destroy() {
      const sql = await admin();
      if (!sql) return;
      try {
        await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
      } finally {
        await sql.end();
      }
    },
  };
}

/** A PGlite factory: one embedded database for all its stores, started on first use. */
export function pgliteAuditFactory(): AuditStoreFactory {
  let dir: string | undefined;
  let emb: EmbeddedPostgres | undefined;
  const engine = async (): Promise<EmbeddedPostgres> => {
    dir ??= mkdtempSync(join(tmpdir(), 'glasslog-audit-test-'));
    emb ??= await startEmbeddedPostgres(join(dir, 'pglite'));
    return emb;
  };
  return {
    name: 'pglite',
    async create() {
      const schema = uniqueSchema();
      return handleOn(
        schema,
        async () => {
          const e = await engine();
          const sql = postgres({ ...e.connectionOptions, max: 1, onnotice: () => undefined, connection: schemaConnection(schema) });
          return { sql, options: { schema, singleSession: true, afterCommit: () => e.sync() } };
        },
        async () => {
          await emb?.close();
          emb = undefined;
          await engine();
        },
        async () => (emb ? postgres({ ...emb.connectionOptions, max: 1, onnotice: () => undefined }) : undefined)
      );
    },
    async dispose() {
      await emb?.close();
      emb = undefined;
      if (dir) rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    },
  };
}

export function postgresAuditFactory(url: string): AuditStoreFactory {
  return {
    name: 'postgres',
    async create() {
      const schema = uniqueSchema();
      return handleOn(
        schema,
        async () => {
          const sql = postgres(url, { max: 4, onnotice: () => undefined, connection: schemaConnection(schema) });
          return { sql, options: { schema, singleSession: false } };
        },
        async () => {},
        async () => postgres(url, { max: 1, onnotice: () => undefined })
      );
    },
    async dispose() {},
  };
}

/** PGlite always; Postgres too when DATABASE_URL is set. Fresh factories on every call. */
export function auditStoreFactories(): AuditStoreFactory[] {
  const url = process.env.DATABASE_URL;
  return url ? [pgliteAuditFactory(), postgresAuditFactory(url)] : [pgliteAuditFactory()];
}
