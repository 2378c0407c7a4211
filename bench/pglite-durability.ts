/**
 * Cost of durability for the embedded Postgres (PGlite behind pglite-socket,
 * reached with postgres.js over a Unix socket).
 *
 *   npx tsx bench/pglite-durability.ts [iterations] [dir]
 *
 * For each durability mode it repeats: one transaction inserting 500 rows
 * (a multi-row INSERT of 32-byte hash + 128-byte payload), then sync().
 * It prints median / p99 of the insert (COMMIT included) and of sync(),
 * plus startup time and memory.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { startEmbeddedPostgres } from '../src/storage/embedded.js';

const iterations = Number(process.argv[2] ?? 200);
const root = process.argv[3] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'glasslog-bench-'));
const ROWS = 500;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}
const f = (x: number) => x.toFixed(2).padStart(8);
const mb = (x: number) => `${(x / 1e6).toFixed(0)} MB`;

async function run(mode: 'sync' | 'commit', dir: string): Promise<void> {
  let t = performance.now();
  const emb = await startEmbeddedPostgres(dir, { durability: mode });
  const startMs = performance.now() - t;
  const mem = process.memoryUsage();
  const sql = postgres({ ...emb.connectionOptions, onnotice: () => {} });
  await sql`create table if not exists entries (idx bigint primary key, hash bytea not null, body bytea not null)`;
  const [m] = await sql<{ n: string }[]>`select coalesce(max(idx), -1)::bigint + 1 as n from entries`;
  let next = BigInt(m?.n ?? 0);
  const ins: number[] = [];
  const syn: number[] = [];
  for (let i = 0; i < iterations + 5; i++) {
    const rows = Array.from({ length: ROWS }, () => ({
      idx: (next++).toString(),
      hash: randomBytes(32),
      body: randomBytes(128),
    }));
    t = performance.now();
    await sql.begin((s) => s`insert into entries ${s(rows)}`);
    const t1 = performance.now();
    await emb.sync();
    const t2 = performance.now();
    if (i >= 5) {
      ins.push(t1 - t);
      syn.push(t2 - t1);
    }
  }
  const [c] = await sql<{ n: number }[]>`select count(*)::int as n from entries`;
  await sql.end();
  t = performance.now();
  await emb.close();
  const closeMs = performance.now() - t;
  console.log(
    `mode=${mode.padEnd(6)} insert ${ROWS} rows: median ${f(pct(ins, 50))} ms  p99 ${f(pct(ins, 99))} ms | ` +
      `sync(): median ${f(pct(syn, 50))} ms  p99 ${f(pct(syn, 99))} ms | rows ${c?.n}`,
  );
  console.log(
    `            start ${startMs.toFixed(0)} ms, close ${closeMs.toFixed(0)} ms, after start: rss ${mb(mem.rss)}, ` +
      `external ${mb(mem.external)}, heap ${mb(mem.heapUsed)}`,
  );
}

console.log(`node ${process.version}, ${os.platform()} ${os.release()}, data under ${root}, ${iterations} iterations`);
for (const mode of ['sync', 'commit'] as const) {
  const dir = path.join(root, mode);
  if (!fs.existsSync(dir)) {
    const t = performance.now();
    const emb = await startEmbeddedPostgres(dir);
    console.log(`first start (initdb) of ${dir}: ${(performance.now() - t).toFixed(0)} ms`);
    await emb.close();
  }
  await run(mode, dir);
}
