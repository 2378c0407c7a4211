/**
 * Ingest benchmark: sustained appends of 256-byte entries through the HTTP batch API into
 * the local Postgres, beside the raw rate of inserting the same bytes into Postgres in the
 * same run; then time-to-receipt at half the sustained rate.
 *
 *   npm run build && npx tsx bench/ingest.ts [--seconds 20] [--clients 8] [--batch 1000]
 *
 * Needs DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test). Creates and drops
 * its own schemas. Prints one line per figure and a JSON summary.
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { benchSchema, machine, percentile, startServer, uniqueEntries } from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    clients: { type: 'string', default: '8' },
    batch: { type: 'string', default: '1000' },
    'entry-size': { type: 'string', default: '256' },
    'raw-rows': { type: 'string', default: '300000' },
    'receipt-rate': { type: 'string', default: '10000' },
  },
});
const SECONDS = Number(values.seconds);
const CLIENTS = Number(values.clients);
const BATCH = Number(values.batch);
const SIZE = Number(values['entry-size']);
const RAW_ROWS = Number(values['raw-rows']);
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Baseline: the same kind of bytes, inserted as one row each, 1000-row statements in 500-row-batched durable commits. */
async function rawInsertRate(): Promise<number> {
  const schema = benchSchema('raw');
  const sql = postgres(url, { max: 2, onnotice: () => undefined });
  await sql`CREATE SCHEMA ${sql(schema)}`;
  await sql`CREATE TABLE ${sql(schema)}.raw (idx bigint PRIMARY KEY, data bytea NOT NULL)`;
  const entries = uniqueEntries(RAW_ROWS, SIZE, 'raw');
  const t0 = performance.now();
  for (let i = 0; i < RAW_ROWS; i += 1000) {
    const rows = entries.slice(i, i + 1000).map((data, k) => ({ idx: i + k, data }));
    await sql`INSERT INTO ${sql(schema)}.raw ${sql(rows, 'idx', 'data')}`;
  }
  const rate = RAW_ROWS / ((performance.now() - t0) / 1000);
  await sql`DROP SCHEMA ${sql(schema)} CASCADE`;
  await sql.end();
  return rate;
}

/** `n` distinct entries of `size` bytes, framed for the batch API, written in one buffer. */
function frameUnique(n: number, size: number, tag: string): Uint8Array {
  const out = Buffer.alloc(n * (2 + size), 0x2e);
  for (let i = 0; i < n; i++) {
    const o = i * (2 + size);
    out.writeUInt16BE(size, o);
    out.write(`${tag}:${process.pid}:${i}:`, o + 2, 'latin1');
  }
  return out;
}

async function post(base: string, token: string, body: Uint8Array, wait: string): Promise<number> {
  const r = await fetch(`${base}/v1/entries/batch?wait=${wait}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: body as unknown as BodyInit,
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`batch failed: ${r.status} ${text.slice(0, 200)}`);
  return text.length;
}

async function publishedSize(base: string): Promise<number> {
  return Number((await (await fetch(`${base}/checkpoint`)).text()).split('\n')[1]);
}

/**
 * Closed loop: CLIENTS clients each keep one batch in flight for SECONDS. `rate` counts
 * acknowledged entries; `publishedRate` the growth of the published checkpoint's tree size
 * over the same window, i.e. what integration and publication kept up with.
 */
async function sustained(base: string, token: string, wait: 'published' | 'sequenced', tag: string): Promise<{ rate: number; publishedRate: number; p50: number; p99: number }> {
  const lat: number[] = [];
  let done = 0;
  const size0 = await publishedSize(base);
  const end = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      // Bodies are made as they are sent: holding them all up front made the load
      // generator, on the same two cores, spend its time collecting garbage.
      for (let k = 0; performance.now() < end; k++) {
        const body = frameUnique(BATCH, SIZE, `${tag}${c}-${k}`);
        const t = performance.now();
        await post(base, token, body, wait);
        lat.push(performance.now() - t);
        done += BATCH;
      }
    })
  );
  const secs = (performance.now() - t0) / 1000;
  const published = (await publishedSize(base)) - size0;
  lat.sort((a, b) => a - b);
  // Let integration catch up before the next phase.
  while ((await publishedSize(base)) < size0 + done) await new Promise((r) => setTimeout(r, 100));
  return { rate: done / secs, publishedRate: published / secs, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

/** Open loop at `rate` entries/s in batches of `batch`: time from submission to receipt. */
async function atRate(base: string, token: string, rate: number, batch: number): Promise<{ p50: number; p99: number; achieved: number }> {
  const n = Math.ceil((rate * SECONDS) / batch);
  const bodies = Array.from({ length: n }, (_, k) => frameUnique(batch, SIZE, `r${k}`));
  const interval = (batch / rate) * 1000;
  const lat: number[] = [];
  const t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (let k = 0; k < n; k++) {
    const due = t0 + k * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const sent = performance.now();
    inflight.push(post(base, token, bodies[k]!, 'published').then(() => void lat.push(performance.now() - sent)));
  }
  await Promise.all(inflight);
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), achieved: (n * batch) / secs };
}

async function main() {
  console.log(`machine: ${machine()}`);
  console.log(`entries: ${SIZE} bytes; ${CLIENTS} clients × ${BATCH}-entry batches for ${SECONDS} s; Postgres at ${url.replace(/\/\/[^@]*@/, '//')}`);
  const raw = await rawInsertRate();
  console.log(`baseline: raw Postgres INSERT of ${RAW_ROWS} ${SIZE}-byte rows (1000-row statements, durable commits): ${raw.toFixed(0)} rows/s`);

  const server = await startServer({ databaseUrl: url, args: ['--batch-size', '16384', '--max-pending', '1000000'] });
  try {
    const q = await sustained(server.url, server.token, 'sequenced', 'q');
    console.log(`sustained ingest, wait=sequenced (index only): ${q.rate.toFixed(0)} entries/s acknowledged = ${(q.rate / raw).toFixed(2)} × raw insert; published tree grew ${q.publishedRate.toFixed(0)} entries/s; batch request p50 ${q.p50.toFixed(0)} ms p99 ${q.p99.toFixed(0)} ms`);
    const s = await sustained(server.url, server.token, 'published', 's');
    console.log(`sustained ingest, wait=published (receipt per entry): ${s.rate.toFixed(0)} entries/s = ${(s.rate / raw).toFixed(2)} × raw insert; batch request p50 ${s.p50.toFixed(0)} ms p99 ${s.p99.toFixed(0)} ms`);
    // Half of what the receipt path sustained (the target is half of 20,000/s).
    const half = s.rate / 2;
    const l = await atRate(server.url, server.token, half, 50);
    console.log(`time to receipt at half load (${half.toFixed(0)} entries/s offered, ${l.achieved.toFixed(0)} achieved, 50-entry batches): p50 ${l.p50.toFixed(0)} ms p99 ${l.p99.toFixed(0)} ms`);
    const target = Number(values['receipt-rate']);
    const t = await atRate(server.url, server.token, target, 50);
    console.log(`time to receipt at ${target} entries/s offered (half of the 20,000/s goal; ${t.achieved.toFixed(0)} achieved, 50-entry batches): p50 ${t.p50.toFixed(0)} ms p99 ${t.p99.toFixed(0)} ms`);
    console.log(JSON.stringify({ atTarget: { offered: target, ...t }, bench: 'ingest', machine: machine(), rawInsertRowsPerSec: raw, sequenced: q, published: s, halfLoad: { offered: half, ...l } }));
  } finally {
    await server.stop();
  }
}

await main();
