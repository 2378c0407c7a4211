/**
 * Store factories for tests: every storage-backed test runs against the embedded PGlite
 * always, and against the real Postgres at $DATABASE_URL when it is set. Each store gets
 * its own schema (Postgres) or its own data directory (PGlite), so runs never share data.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/storage/embedded.js';
import { PostgresLogStore, openPostgresLogStore, schemaConnection } from '../../src/storage/postgres.js';

export interface StoreFactory {
  readonly name: string;
  /** A fresh, empty store. Calling open() again with the same handle reopens the same data. */
  create(): Promise<StoreHandle>;
}

export interface StoreHandle {
  open(): Promise<PostgresLogStore>;
  /** Removes the data (drops the schema / deletes the directory). */
  destroy(): Promise<void>;
}

let counter = 0;
const uniqueSchema = () => `t_${process.pid}_${Date.now().toString(36)}_${counter++}`;

export const pgliteFactory: StoreFactory = {
  name: 'pglite',
  async create() {
    const dir = mkdtempSync(join(tmpdir(), 'glasslog-test-'));
    let emb: EmbeddedPostgres | undefined;
    return {
      async open() {
        if (!emb) emb = await startEmbeddedPostgres(join(dir, 'pglite'));
        const e = emb;
        const sql = postgres({ ...e.connectionOptions, max: 1, onnotice: () => undefined, connection: schemaConnection('glasslog') });
        return new PostgresLogStore(sql, { schema: 'glasslog', advisoryLock: false, singleSession: true, afterCommit: () => e.sync() });
      },
      async destroy() {
        await emb?.close();
        emb = undefined;
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

export function postgresFactory(url: string): StoreFactory {
  return {
    name: 'postgres',
    async create() {
      const schema = uniqueSchema();
      return {
        async open() {
          return openPostgresLogStore(url, { schema, max: 4 });
        },
        async destroy() {
          const sql = postgres(url, { max: 1, onnotice: () => undefined });
          await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
          await sql.end();
        },
      };
    },
  };
}

/** PGlite always; Postgres too when DATABASE_URL is set. */
export function storeFactories(): StoreFactory[] {
  const url = process.env.DATABASE_URL;
  return url ? [pgliteFactory, postgresFactory(url)] : [pgliteFactory];
}
