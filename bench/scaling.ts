/**
 * How the cost of one append and one proof grows with the tree: measured at 10^4, 10^6 and
 * 10^7 entries on the local Postgres. The tree is grown through the store directly (sequence
 * and integrate in large batches of 32-byte entries), then a fresh Log is opened at each size:
 *  - append: one entry through Log.add(…, 'published') — sequence, integrate, publish;
 *  - proof: an inclusion proof for a random index with a cold tile cache (tiles read from
 *    Postgres) and with a warm one; a consistency proof from a random older size.
 * Beside it, the machine's SHA-256 rate on 65-byte nodes, timed in the same run.
 *
 *   npm run build && npx tsx bench/scaling.ts [--sizes 10000,1000000,10000000]
 */
import { parseArgs } from 'node:util';
import { EMPTY_EDGE, integrate, leafHash, nodeHash, type TreeEdge } from '../src/core/index.js';
import { Log } from '../src/log/log.js';
import { generateKey } from '../src/note/keys.js';
import { newSigner } from '../src/note/note.js';
import { nodeEd25519 } from '../src/note/ed25519-node.js';
import { openPostgresLogStore } from '../src/storage/postgres.js';
import postgres from 'postgres';
import { benchSchema, machine, median } from './lib.js';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '10000,1000000,10000000' } } });
const SIZES = values.sizes!.split(',').map(Number);
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = benchSchema('scaling');
const origin = 'bench.glasslog/scaling';
const { skey, vkey } = generateKey(origin);

function entry(i: number): Uint8Array {
  const e = Buffer.alloc(32, 0x2e);
  e.write(`scaling:${i}:`, 0, 'latin1');
  return e;
}

function sha256Rate(): number {
  const a = new Uint8Array(32).fill(1);
  let h: Uint8Array = new Uint8Array(32);
  const n = 200_000;
  const t = performance.now();
  for (let i = 0; i < n; i++) h = nodeHash(a, h);
  return n / ((performance.now() - t) / 1000);
}

async function grow(edge: TreeEdge, to: number): Promise<TreeEdge> {
  const store = openPostgresLogStore(url, { schema, max: 2 });
  await store.migrate();
  const CHUNK = 65536;
  const t0 = performance.now();
  while (edge.size < to) {
    const n = Math.min(CHUNK, to - edge.size);
    const entries = Array.from({ length: n }, (_, k) => entry(edge.size + k));
    await store.sequence(entries);
    const r = integrate(edge, entries.map(leafHash));
    await store.integrate(edge.size, r.edge.size, r.rootHash, r.tiles);
    edge = r.edge;
  }
  await store.close();
  console.log(`  grew the tree to ${to} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return edge;
}

async function openLog(): Promise<Log> {
  return Log.open({
    store: openPostgresLogStore(url, { schema, max: 4 }),
    origin,
    vkey,
    signer: newSigner(skey, nodeEd25519),
    dedupWindow: 0,
    maxBatchDelayMs: 0,
  });
}

async function measure(size: number): Promise<Record<string, number>> {
  // Proofs with a cold cache: a fresh Log per sample reads every tile from Postgres.
  const cold: number[] = [];
  for (let k = 0; k < 5; k++) {
    const log = await openLog();
    const i = Math.floor(Math.random() * size);
    const t = performance.now();
    await log.inclusionProof(i);
    cold.push(performance.now() - t);
    await log.close();
  }
  const log = await openLog();
  const warm: number[] = [];
  const consistency: number[] = [];
  for (let k = 0; k < 200; k++) {
    const i = Math.floor(Math.random() * size);
    await log.inclusionProof(i); // load its tiles
    const t = performance.now();
    await log.inclusionProof(i);
    warm.push(performance.now() - t);
    const old = 1 + Math.floor(Math.random() * (size - 1));
    await log.consistencyProof(old, log.checkpoint().treeSize);
    const t2 = performance.now();
    await log.consistencyProof(old, log.checkpoint().treeSize);
    consistency.push(performance.now() - t2);
  }
  const append: number[] = [];
  for (let k = 0; k < 30; k++) {
    const t = performance.now();
    await log.add([entry(1e12 + size + k)], 'published');
    append.push(performance.now() - t);
  }
  await log.close();
  return {
    appendMs: median(append),
    proofColdMs: median(cold),
    proofWarmMs: median(warm),
    consistencyWarmMs: median(consistency),
  };
}

async function main() {
  console.log(`machine: ${machine()}; Postgres schema ${schema}`);
  const rate = sha256Rate();
  console.log(`baseline: SHA-256 of a 65-byte node (@noble/hashes, as the core uses it): ${rate.toFixed(0)}/s`);
  let edge = EMPTY_EDGE;
  const rows: Array<Record<string, number>> = [];
  try {
    for (const size of SIZES) {
      edge = await grow(edge, size);
      const m = await measure(edge.size);
      // The Log appended 30 entries beyond `size`: continue from the stored tree.
      const st = await (async () => {
        const s = openPostgresLogStore(url, { schema, max: 1 });
        const r = await s.state();
        await s.close();
        return r;
      })();
      if (st.treeSize !== edge.size) edge = await reloadEdge(st.treeSize);
      rows.push({ size, ...m });
      console.log(
        `tree size ${size}: append (sequence + integrate + publish) median ${m.appendMs!.toFixed(2)} ms; ` +
          `inclusion proof cold ${m.proofColdMs!.toFixed(2)} ms, warm ${m.proofWarmMs!.toFixed(3)} ms; consistency proof warm ${m.consistencyWarmMs!.toFixed(3)} ms`
      );
    }
    console.log(JSON.stringify({ bench: 'scaling', machine: machine(), sha256PerSec: rate, rows }));
  } finally {
    const sql = postgres(url, { max: 1, onnotice: () => undefined });
    await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
    await sql.end();
  }
}

/** The edge of the stored tree, read back from its tiles. */
async function reloadEdge(size: number): Promise<TreeEdge> {
  const { edgeFromTiles, levelSpan, tileWidthAt } = await import('../src/core/index.js');
  const store = openPostgresLogStore(url, { schema, max: 1 });
  const tiles = new Map<string, Uint8Array>();
  for (let level = 0; Math.floor(size / levelSpan(level)) > 0; level++) {
    const index = Math.floor(size / levelSpan(level + 1));
    if (tileWidthAt(level, index, size) > 0) tiles.set(`${level}/${index}`, (await store.readTile(level, index))!);
  }
  await store.close();
  return edgeFromTiles(size, (l, i) => tiles.get(`${l}/${i}`)!);
}

await main();
