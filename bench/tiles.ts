/**
 * Tile-serving benchmark: full tiles requested at random by wrk (a C load generator, Debian
 * package "wrk"), beside a plain node:http server answering the same 8 KiB body on this
 * machine in the same run. Also checks that the database did no work per request: the
 * tiles table's scan counters in pg_stat_user_tables must not move during the run.
 *
 *   npm run build && npx tsx bench/tiles.ts [--seconds 10] [--connections 64] [--tiles 200]
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { machine, startServer, uniqueEntries } from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    tiles: { type: 'string', default: '200' },
  },
});
const SECONDS = Number(values.seconds);
const CONNS = Number(values.connections);
const TILES = Math.min(999, Number(values.tiles));
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const PLAIN_SERVER = `
const body = Buffer.alloc(8192, 7);
const s = require('node:http').createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
});
s.listen(0, '127.0.0.1', () => console.log(s.address().port));
`;

function wrk(base: string, script: string): number {
  const out = execFileSync('wrk', ['-t', '2', '-c', String(CONNS), '-d', `${SECONDS}s`, '-s', script, base], { encoding: 'utf8' });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (!m) throw new Error(`could not read wrk output:\n${out}`);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} error responses:\n${out}`);
  return Number(m[1]);
}

async function tileScans(schema: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  const [row] = await sql`SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS n FROM pg_stat_user_tables
                          WHERE schemaname = ${schema} AND relname = 'tiles'`;
  await sql.end();
  return Number(row?.n ?? 0);
}

async function main() {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('this benchmark needs wrk (apt-get install wrk)');
  }
  console.log(`machine: ${machine()}`);
  const script = join(tmpdir(), `glasslog-tiles-${process.pid}.lua`);
  writeFileSync(
    script,
    `math.randomseed(os.time())\nrequest = function()\n  return wrk.format("GET", string.format("/tile/0/%03d", math.random(0, ${TILES - 1})))\nend\n`
  );

  // Baseline: the fastest this machine answers the same body over node:http, in a process
  // of its own (wrk runs synchronously here and would starve an in-process server).
  const plain = spawn(process.execPath, ['-e', PLAIN_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((r) => plain.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
  const baseline = wrk(`http://127.0.0.1:${port}`, script);
  plain.kill();
  console.log(`baseline: plain node:http serving an 8 KiB buffer: ${baseline.toFixed(0)} req/s`);

  const server = await startServer({ databaseUrl: url });
  try {
    const entries = uniqueEntries(TILES * 256, 64, 'tiles');
    for (let i = 0; i < entries.length; i += 4096) {
      const r = await fetch(`${server.url}/v1/entries/batch?wait=sequenced`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ entries: entries.slice(i, i + 4096).map((e) => Buffer.from(e).toString('base64')) }),
      });
      if (!r.ok) throw new Error(`append failed: ${r.status} ${await r.text()}`);
    }
    // Wait until the checkpoint covers every tile, then warm the cache once per tile.
    for (;;) {
      const cp = await (await fetch(`${server.url}/checkpoint`)).text();
      if (Number(cp.split('\n')[1]) >= entries.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (let i = 0; i < TILES; i++) await (await fetch(`${server.url}/tile/0/${String(i).padStart(3, '0')}`)).arrayBuffer();
    const schema = /--schema (\S+)/.exec(server.process.spawnargs.join(' '))?.[1] ?? '';
    // Postgres flushes an idle backend's statistics within 10 s: wait for the warm-up's.
    await new Promise((r) => setTimeout(r, 11_000));
    const before = await tileScans(schema);
    const rate = wrk(server.url, script);
    await new Promise((r) => setTimeout(r, 11_000));
    const after = await tileScans(schema);
    console.log(`glasslog: random full tiles (of ${TILES}) with ${CONNS} connections: ${rate.toFixed(0)} req/s = ${(rate / baseline).toFixed(2)} × baseline`);
    console.log(`database scans of the tiles table during the run: ${after - before}`);
    console.log(JSON.stringify({ bench: 'tiles', machine: machine(), baselineReqPerSec: baseline, tileReqPerSec: rate, ratio: rate / baseline, dbTileScans: after - before }));
  } finally {
    await server.stop();
  }
}

await main();
