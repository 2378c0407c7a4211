/**
 * Signed agent-entry ingest: sustained appends of agent-signed entries through the agent
 * API (every signature checked, replay and chain checks, indexed in Postgres), beside the
 * machine's own Ed25519 verification rate (node:crypto) on one core and on all cores (the
 * server's worker pool) in the same run.
 *
 *   npm run build && npx tsx bench/agent-ingest.ts [--seconds 15] [--clients 8] [--batch 1000]
 *
 * Needs DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test). Entries are signed
 * before the clock starts, so the load generator spends its CPU on HTTP only.
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { parseArgs } from 'node:util';
import { encodeBase64 } from '../src/core/encoding.js';
import { VerifyPool } from '../src/audit/verify-pool.js';
import { signEntry, type SignedEntry } from '../src/entry/index.js';
import { nodeEd25519 } from '../src/note/ed25519-node.js';
import { generateKey } from '../src/note/keys.js';
import { machine, startServer } from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    clients: { type: 'string', default: '8' },
    batch: { type: 'string', default: '1000' },
  },
});
const SECONDS = Number(values.seconds);
const CLIENTS = Number(values.clients);
const BATCH = Number(values.batch);
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function verifyRates(): Promise<{ oneCore: number; pool: number; threads: number }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(12);
  const msgs = Array.from({ length: 4000 }, (_, i) => Buffer.from(`glasslog/entry/v1\n${'x'.repeat(150)}${i}`));
  const sigs = msgs.map((m) => sign(null, m, privateKey));
  let t = performance.now();
  for (let i = 0; i < msgs.length; i++) verify(null, msgs[i]!, publicKey, sigs[i]!);
  const oneCore = msgs.length / ((performance.now() - t) / 1000);
  const pool = new VerifyPool();
  const items = msgs.map((m, i) => ({ publicKey: new Uint8Array(raw), message: m, signature: sigs[i]! }));
  await pool.verify(items.slice(0, 500));
  t = performance.now();
  let n = 0;
  for (let r = 0; r < 5; r++) n += (await pool.verify(items)).length;
  const rate = n / ((performance.now() - t) / 1000);
  const threads = pool.threads;
  await pool.close();
  return { oneCore, pool: rate, threads };
}

const base = await verifyRates();
console.log(`machine: ${machine()}`);
console.log(`baseline: Ed25519 verify (node:crypto) ${base.oneCore.toFixed(0)}/s on one core, ${base.pool.toFixed(0)}/s through the ${base.threads}-thread pool`);

const server = await startServer({ databaseUrl: url, args: ['--agent-rate', '10000000', '--batch-size', '16384', '--max-pending', '1000000'] });
try {
  const op = { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' };
  const perClient = Math.ceil((SECONDS * 20000) / CLIENTS);
  const clients: Array<{ token: string; agent: string; bodies: string[] }> = [];
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  for (let c = 0; c < CLIENTS; c++) {
    const agent = `bench-${tag}-${c}`;
    const k = generateKey(agent);
    let res = await fetch(`${server.url}/v1/agents?wait=sequenced`, { method: 'POST', headers: op, body: JSON.stringify({ agent, key: k.vkey }) });
    if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
    res = await fetch(`${server.url}/v1/credentials`, { method: 'POST', headers: op, body: JSON.stringify({ kind: 'agent', agent }) });
    const { token } = (await res.json()) as { token: string };
    // One run per batch, chained entries, 200-byte attrs.
    const bodies: string[] = [];
    for (let b = 0; b * BATCH < perClient; b++) {
      let prev: SignedEntry | undefined;
      const entries: Array<{ envelope: string }> = [];
      for (let seq = 0; seq < BATCH; seq++) {
        const e = signEntry(
          {
            type: 'event',
            agent,
            run: `run-${b}`,
            seq,
            ...(prev ? { prev: prev.leafHash } : {}),
            kind: seq % 3 === 0 ? 'model_call' : 'tool_call',
            time: Date.now(),
            model: { provider: 'bench', name: 'model' },
            attrs: { note: 'x'.repeat(120) },
          },
          k.skey,
          nodeEd25519
        );
        entries.push({ envelope: encodeBase64(e.bytes) });
        prev = e;
      }
      bodies.push(JSON.stringify({ entries }));
    }
    clients.push({ token, agent, bodies });
  }
  console.log(`prepared ${clients.reduce((n, c) => n + c.bodies.length * BATCH, 0)} signed entries (${CLIENTS} agents, ${BATCH} per request)`);

  const sizeAt = async () => Number(((await (await fetch(`${server.url}/healthz`)).json()) as { treeSize: number }).treeSize);
  const published0 = await sizeAt();
  let acked = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  const latencies: number[] = [];
  await Promise.all(
    clients.map(async (c) => {
      for (const body of c.bodies) {
        if (performance.now() > deadline) break;
        const s = performance.now();
        const res = await fetch(`${server.url}/v1/agents/${c.agent}/entries?wait=sequenced`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${c.token}`, 'Content-Type': 'application/json' },
          body,
        });
        if (res.status !== 201) throw new Error(`write: ${res.status} ${(await res.text()).slice(0, 300)}`);
        await res.arrayBuffer();
        latencies.push(performance.now() - s);
        acked += BATCH;
      }
    })
  );
  const elapsed = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 1000));
  const published = (await sizeAt()) - published0;
  const rate = acked / elapsed;
  latencies.sort((a, b) => a - b);
  console.log(`signed-entry ingest: ${acked} entries in ${elapsed.toFixed(1)} s = ${rate.toFixed(0)} entries/s acknowledged (sequenced and indexed)`);
  console.log(`  published within 1 s after: ${published} (${(published / (elapsed + 1)).toFixed(0)}/s); request p50 ${latencies[latencies.length >> 1]!.toFixed(0)} ms`);
  console.log(`  = ${(rate / base.oneCore).toFixed(2)} × one core's Ed25519 verification rate, ${(rate / base.pool).toFixed(2)} × the pool's`);
  console.log(JSON.stringify({ machine: machine(), baseline: base, ingest: { entries: acked, seconds: elapsed, rate, published } }));
} finally {
  await server.stop();
}
