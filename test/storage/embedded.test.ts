/**
 * The embedded Postgres (PGlite + pglite-socket + postgres.js over a Unix socket):
 * persistence across close/reopen, the data-directory lock, recovery from kill -9
 * (stale lock and socket, every committed row present), long data-dir paths.
 *
 * initdb is slow (5-15 s), so one data directory is initialised once and copied.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataDirectoryInUseError, startEmbeddedPostgres } from '../../src/storage/embedded.js';

const repo = resolve(import.meta.dirname, '../..');
const moduleUrl = pathToFileURL(join(repo, 'src/storage/embedded.ts')).href;

let root: string;
let template: string;
let n = 0;

/** A fresh copy of the initialised template data directory. */
function freshDir(parent = root): string {
  const dir = join(parent, `db${n++}`);
  cpSync(template, dir, { recursive: true });
  return dir;
}

function client(options: postgres.Options<{}>) {
  return postgres({ ...options, onnotice: () => undefined });
}

/** Child process running TS through tsx; the code is an ES module body. */
function spawnChild(code: string): { child: ChildProcess; output: () => string; waitFor: (re: RegExp) => Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const waitFor = (re: RegExp) =>
    new Promise<void>((res, rej) => {
      const check = () => {
        if (re.test(out)) {
          clearInterval(iv);
          child.off('exit', onExit);
          res();
        }
      };
      const onExit = (code: number | null) => {
        clearInterval(iv);
        rej(new Error(`child exited (${code}) before ${re}: ${err.slice(-2000)}`));
      };
      const iv = setInterval(check, 5);
      child.once('exit', onExit);
    });
  return { child, output: () => out, waitFor };
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res();
    child.once('exit', () => res());
    child.kill('SIGKILL');
  });
}

/** Child: opens dataDir, then commits one row per transaction forever, printing "C <id>" after each COMMIT returned. */
const writerCode = (dataDir: string) => `
import postgres from 'postgres';
const { startEmbeddedPostgres } = await import(${JSON.stringify(moduleUrl)});
const emb = await startEmbeddedPostgres(${JSON.stringify(dataDir)});
const sql = postgres({ ...emb.connectionOptions, onnotice: () => undefined });
await sql\`create table if not exists k (id bigint primary key, pad text not null)\`;
const [m] = await sql\`select coalesce(max(id), 0)::int as m from k\`;
let id = m.m;
process.stdout.write('READY\\n');
for (;;) {
  id++;
  await sql.begin(async (s) => { await s\`insert into k (id, pad) values (\${id}, \${'p'.repeat(300)})\`; });
  process.stdout.write('C ' + id + '\\n');
}
`;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'glasslog-emb-'));
  template = join(root, 'template');
  const emb = await startEmbeddedPostgres(template);
  await emb.close();
}, 120_000);

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('embedded Postgres', () => {
  it('keeps committed data across close and reopen, over postgres.js on a Unix socket', async () => {
    const dir = freshDir();
    let emb = await startEmbeddedPostgres(dir);
    expect(emb.socketPath).toBe(join(dir, '.s.PGSQL.5432'));
    expect(lstatSync(emb.socketPath).isSocket()).toBe(true);
    expect(emb.connectionOptions.max).toBe(1);
    let sql = client(emb.connectionOptions);
    await sql`create table t (id int primary key, v text)`;
    await sql.begin(async (s) => {
      for (let i = 0; i < 20; i++) await s`insert into t values (${i}, ${'v' + i})`;
    });
    await expect(sql.begin(async (s) => {
      await s`insert into t values (100, 'rolled back')`;
      await s`select 1/0`;
    })).rejects.toThrow(/division by zero/);
    await emb.sync();
    await sql.end();
    await emb.close();
    await emb.close(); // idempotent
    expect(existsSync(join(dir, '.s.PGSQL.5432'))).toBe(false);
    expect(existsSync(join(dir, 'glasslog.lock'))).toBe(false);
    await expect(emb.sync()).rejects.toThrow(/closed/);

    emb = await startEmbeddedPostgres(dir);
    sql = client(emb.connectionOptions);
    const rows = await sql<{ id: number; v: string }[]>`select id, v from t order by id`;
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(rows[7]?.v).toBe('v7');
    const [s] = await sql<{ fsync: string; wsm: string }[]>`
      select current_setting('fsync') as fsync, current_setting('wal_sync_method') as wsm`;
    expect(s).toEqual({ fsync: 'on', wsm: 'fsync' });
    await sql.end();
    await emb.close();
  });

  it('refuses a second open of the same data directory, and maxConnections other than 1', async () => {
    const dir = freshDir();
    const emb = await startEmbeddedPostgres(dir);
    try {
      const err = await startEmbeddedPostgres(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DataDirectoryInUseError);
      expect((err as Error).message).toBe(`data directory ${dir} is in use by process ${process.pid}`);
      const lock = JSON.parse(readFileSync(join(dir, 'glasslog.lock'), 'utf8')) as { pid: number };
      expect(lock.pid).toBe(process.pid);
      // The running instance is unaffected.
      const sql = client(emb.connectionOptions);
      expect((await sql`select 1 as one`)[0]?.one).toBe(1);
      await sql.end();
    } finally {
      await emb.close();
    }
    await expect(startEmbeddedPostgres(freshDir(), { maxConnections: 4 })).rejects.toThrow(/exactly 1 connection/);
  });

  it('refuses a data directory locked by another live process', async () => {
    const dir = freshDir();
    const holder = spawnChild(`
      const { startEmbeddedPostgres } = await import(${JSON.stringify(moduleUrl)});
      await startEmbeddedPostgres(${JSON.stringify(dir)});
      process.stdout.write('READY\\n');
      setInterval(() => {}, 1000);
    `);
    try {
      await holder.waitFor(/READY/);
      await expect(startEmbeddedPostgres(dir)).rejects.toThrow(
        `data directory ${dir} is in use by process ${holder.child.pid}`,
      );
    } finally {
      await killed(holder.child);
    }
    // Killed: its lock and socket are stale and get recovered.
    expect(existsSync(join(dir, 'glasslog.lock'))).toBe(true);
    expect(lstatSync(join(dir, '.s.PGSQL.5432')).isSocket()).toBe(true);
    const emb = await startEmbeddedPostgres(dir);
    const sql = client(emb.connectionOptions);
    expect((await sql`select 1 as one`)[0]?.one).toBe(1);
    await sql.end();
    await emb.close();
  });

  it('keeps every committed row through kill -9 at a random moment', async () => {
    const dir = freshDir();
    let total = 0;
    for (let iter = 0; iter < 3; iter++) {
      const w = spawnChild(writerCode(dir));
      try {
        await w.waitFor(/READY/);
        await w.waitFor(/^C \d+$/m);
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 600));
      } finally {
        await killed(w.child);
      }
      const printed = [...w.output().matchAll(/^C (\d+)$/gm)].map((m) => Number(m[1]));
      expect(printed.length).toBeGreaterThan(0);

      // Stale lock and socket left behind by the killed writer are recovered.
      const emb = await startEmbeddedPostgres(dir);
      const sql = client(emb.connectionOptions);
      const rows = await sql<{ id: number }[]>`select id::int as id from k order by id`;
      const have = new Set(rows.map((r) => r.id));
      const missing = printed.filter((id) => !have.has(id));
      expect(missing).toEqual([]);
      // Ids are dense: nothing committed out of order, at most one unprinted commit at the end.
      expect(rows.at(-1)?.id).toBe(rows.length);
      expect(rows.length - printed.at(-1)!).toBeLessThanOrEqual(1);
      expect(rows.length).toBeGreaterThan(total);
      total = rows.length;
      await sql.end();
      await emb.close();
    }
  });

  it('puts the socket in the temp dir when the data dir path is too long, and cleans it up', async () => {
    const deep = join(root, 'x'.repeat(60), 'y'.repeat(60));
    mkdirSync(deep, { recursive: true });
    const dir = freshDir(deep);
    const emb = await startEmbeddedPostgres(dir);
    const socketPath = emb.socketPath;
    expect(Buffer.byteLength(socketPath)).toBeLessThanOrEqual(107);
    expect(socketPath.startsWith(tmpdir()) || socketPath.startsWith('/tmp/')).toBe(true);
    expect(existsSync(join(dir, '.s.PGSQL.5432'))).toBe(false);
    const sql = client(emb.connectionOptions);
    expect((await sql`select 2 as two`)[0]?.two).toBe(2);
    await sql.end();
    await emb.close();
    expect(existsSync(socketPath)).toBe(false);
  });

  it('checkpoints from sync() once enough WAL was written, without disturbing the client', async () => {
    const dir = freshDir();
    const emb = await startEmbeddedPostgres(dir, { checkpointWalBytes: 1024 * 1024 });
    const sql = client(emb.connectionOptions);
    try {
      await sql`create table b (id serial primary key, v bytea not null)`;
      const redo = async () => (await sql<{ r: string }[]>`select redo_lsn::text as r from pg_control_checkpoint()`)[0]?.r;
      const before = await redo();
      for (let i = 0; i < 40; i++) {
        await sql`insert into b (v) select decode(repeat(md5(${String(i)} || g::text), 20), 'hex') from generate_series(1, 200) g`;
        await emb.sync();
        const [a, b] = await Promise.all([sql`select ${i}::int as i`, sql`select count(*)::int as n from b`]);
        expect(a[0]?.i).toBe(i);
        expect(b[0]?.n).toBe((i + 1) * 200);
      }
      expect(await redo()).not.toBe(before);
    } finally {
      await sql.end();
      await emb.close();
    }
  });
});
