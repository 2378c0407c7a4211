/**
 * WitnessStore factories for tests, mirroring test/helpers/stores.ts: every witness-store
 * test runs against the embedded PGlite always, and against the real Postgres at
 * $DATABASE_URL when it is set. Each store gets its own schema. A PGlite start costs
 * seconds, so a factory starts one embedded database lazily and shares it between the
 * stores it creates (each in a schema of its own); dispose() it in afterAll.
 *
 * The embedded engine admits one client at a time: on PGlite, close every store of a handle
 * before opening another, restarting, or destroying.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/storage/embedded.js';
import { schemaConnection } from '../../src/storage/postgres.js';
import { PostgresWitnessStore, openPostgresWitnessStore } from '../../src/storage/witness-store.js';

export interface WitnessStoreFactory {
  readonly name: 'pglite' | 'postgres';
  /** A fresh, empty store in a schema of its own. */
  create(): Promise<WitnessStoreHandle>;
  /** Releases what the factory's stores share (the embedded database). Idempotent. */
  dispose(): Promise<void>;
}

export interface WitnessStoreHandle {
  readonly schema: string;
  /** A store on the handle's schema; calling it again opens the same data. Not migrated. */
  open(): Promise<PostgresWitnessStore>;
  /**
   * Restarts the engine under the store (PGlite: shuts the embedded database down and starts
   * it again on the same data directory; Postgres: nothing). Close the handle's stores first.
   */
  restart(): Promise<void>;
  /** Removes the data (drops the schema). */
  destroy(): Promise<void>;
}

let counter = 0;
const uniqueSchema = () => `w_${process.pid}_${Date.now().toString(36)}_${counter++}`;

/** A PGlite factory: one embedded database for all its stores, started on first use. */
export function pgliteWitnessFactory(): WitnessStoreFactory {
  let dir: string | undefined;
  let emb: EmbeddedPostgres | undefined;
  const engine = async (): Promise<EmbeddedPostgres> => {
    dir ??= mkdtempSync(join(tmpdir(), 'glasslog-witness-test-'));
    emb ??= await startEmbeddedPostgres(join(dir, 'pglite'));
    return emb;
  };
  return {
    name: 'pglite',
    async create() {
      const schema = uniqueSchema();
      return {
        schema,
        async open() {
          const e = await engine();
          const sql = postgres({ ...e.connectionOptions, max: 1, onnotice: () => undefined, connection: schemaConnection(schema) });
          return new PostgresWitnessStore(sql, { schema, advisoryLock: false, singleSession: true, afterCommit: () => e.sync() });
        },
        async restart() {
          await emb?.close();
          emb = undefined;
          await engine();
        },
        async destroy() {
          if (!emb) return;
          const sql = postgres({ ...emb.connectionOptions, max: 1, onnotice: () => undefined });
          try {
            await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
          } finally {
            await sql.end();
          }
        },
      };
    },
    async dispose() {
      await emb?.close();
      emb = undefined;
      if (dir) rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    },
  };
}

export function postgresWitnessFactory(url: string): WitnessStoreFactory {
  return {
    name: 'postgres',
    async create() {
      const schema = uniqueSchema();
      return {
        schema,
        async open() {
          return openPostgresWitnessStore(url, { schema, max: 4 });
        },
        async restart() {},
        async destroy() {
          const sql = postgres(url, { max: 1, onnotice: () => undefined });
          try {
            await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
          } finally {
            await sql.end();
          }
        },
      };
    },
    async dispose() {},
  };
}

/** PGlite always; Postgres too when DATABASE_URL is set. Fresh factories on every call. */
export function witnessStoreFactories(): WitnessStoreFactory[] {
  const url = process.env.DATABASE_URL;
  return url ? [pgliteWitnessFactory(), postgresWitnessFactory(url)] : [pgliteWitnessFactory()];
}
