/**
 * Witness benchmark, two figures, each beside its baseline from the same run:
 *
 * 1. add-checkpoint latency of a real `glasslog witness` process, for a log pushing
 *    checkpoints one after another, each with a 30-hash consistency proof (a tree of about
 *    2^30 entries, built lazily: see VirtualTree). Baseline: the work each request implies
 *    on this machine (an Ed25519 verification and signature, 31 SHA-256 node hashes) and
 *    one durable single-row upsert in the same store.
 * 2. Time to receipt of a log without witnesses vs the same log with three local witnesses
 *    and a 2-of-3 quorum, fail-closed (every receipt carries ≥ 2 cosignatures).
 *
 *   npm run build && npx tsx bench/witness.ts [--requests 1000] [--writes 300] [--postgres]
 *
 * With --postgres the processes use $DATABASE_URL (default the local server), else the
 * embedded PGlite default. Prints one line per figure and a JSON summary.
 */
import { createHash, createPrivateKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { formatAddCheckpoint } from '../src/core/add-checkpoint.js';
import { formatCheckpoint } from '../src/core/checkpoint.js';
import { nodeHash } from '../src/core/hash.js';
import { proveConsistency, rootHash, type NodeReader } from '../src/core/tree.js';
import { nodeEd25519 } from '../src/note/ed25519-node.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../src/note/keys.js';
import { newSigner, signNote } from '../src/note/note.js';
import { startEmbeddedPostgres } from '../src/storage/embedded.js';
import { benchSchema, machine, percentile, startProcess, type Server } from './lib.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '1000' },
    writes: { type: 'string', default: '300' },
    postgres: { type: 'boolean', default: false },
  },
});
const REQUESTS = Number(values.requests);
const WRITES = Number(values.writes);
const databaseUrl = values.postgres ? (process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test') : undefined;
const PROOF_HASHES = 30;

const ms = (x: number) => `${x.toFixed(2)} ms`;
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), max: s[s.length - 1]! };
};

/**
 * A Merkle tree of up to 2^53 leaves whose hashes exist only where a proof can look: a node
 * whose range contains the last leaf of one of the chosen tree sizes is computed from its
 * children (so every root and proof the witness checks is consistent), and any other node is
 * an arbitrary hash of its coordinates. Proofs and roots only ever combine nodes along
 * those right edges, so the witness sees a real, consistent sequence of trees.
 */
class VirtualTree {
  private readonly memo = new Map<string, Uint8Array>();
  constructor(private readonly edges: readonly number[]) {}
  readonly node: NodeReader = (level, index) => {
    const key = `${level}/${index}`;
    let h = this.memo.get(key);
    if (h) return h;
    const lo = index * 2 ** level;
    const hi = lo + 2 ** level;
    if (level > 0 && this.edges.some((e) => e - 1 >= lo && e - 1 < hi)) {
      h = nodeHash(this.node(level - 1, 2 * index), this.node(level - 1, 2 * index + 1));
    } else {
      h = createHash('sha256').update(`virtual ${level} ${index}`).digest();
    }
    this.memo.set(key, h);
    return h;
  };
}

/**
 * Sizes s0 < s1 < … from about 2^39 whose successive consistency proofs have exactly
 * `hashes` hashes. The proof length is a function of the two sizes alone (a dry run with
 * dummy hashes measures it), so random steps are tried until one has the right length. A
 * chain is kept short (the bench spreads its requests over many logs): as the size grows
 * its bit pattern can rule a given length out.
 */
function sizesWithProofLength(count: number, hashes: number, seed: number): number[] {
  const zero = new Uint8Array(32);
  const dry: NodeReader = () => zero;
  let x = seed;
  const rand = () => (x = (x * 48271) % 2147483647) / 2147483647;
  let sizes = [2 ** 39 + Math.floor(rand() * 2 ** 38)];
  let misses = 0;
  while (sizes.length < count + 1) {
    const m = sizes[sizes.length - 1]!;
    // A random step of 1 to 2^38: short steps give short proofs when m has few high bits
    // set, long ones when it has many. A size whose bits rule the length out: start over.
    const n = m + 1 + Math.floor(rand() * 2 ** (1 + Math.floor(rand() * 38)));
    if (proveConsistency(m, n, dry).length === hashes) {
      sizes.push(n);
      misses = 0;
    } else if (++misses > 5000) {
      sizes = [2 ** 39 + Math.floor(rand() * 2 ** 38)];
      misses = 0;
    }
  }
  return sizes;
}

/** Baselines for one add-checkpoint: the crypto it implies, and one durable upsert. */
async function baselines(): Promise<{ ed25519VerifyUs: number; ed25519SignUs: number; sha256Us: number; upsertMs: number }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const msg = Buffer.alloc(200, 7);
  const sig = sign(null, msg, privateKey);
  const N = 5000;
  let t = performance.now();
  for (let i = 0; i < N; i++) verify(null, msg, publicKey, sig);
  const ed25519VerifyUs = ((performance.now() - t) * 1000) / N;
  const pk = createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' }));
  t = performance.now();
  for (let i = 0; i < N; i++) sign(null, msg, pk);
  const ed25519SignUs = ((performance.now() - t) * 1000) / N;
  const node = Buffer.alloc(65, 1);
  t = performance.now();
  for (let i = 0; i < 200_000; i++) createHash('sha256').update(node).digest();
  const sha256Us = ((performance.now() - t) * 1000) / 200_000;

  // One durable single-row upsert (the witness's compare-and-swap), in the same store.
  let sql: postgres.Sql;
  let cleanup: () => Promise<void>;
  let sync: () => Promise<void> = async () => undefined;
  const schema = benchSchema('cas');
  if (databaseUrl) {
    sql = postgres(databaseUrl, { max: 1, onnotice: () => undefined });
    cleanup = async () => {
      await sql`DROP SCHEMA ${sql(schema)} CASCADE`;
      await sql.end();
    };
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'glasslog-bench-cas-'));
    const emb = await startEmbeddedPostgres(join(dir, 'pglite'));
    sql = postgres({ ...emb.connectionOptions, max: 1, onnotice: () => undefined });
    sync = () => emb.sync();
    cleanup = async () => {
      await sql.end();
      await emb.close();
      rmSync(dir, { recursive: true, force: true });
    };
  }
  await sql`CREATE SCHEMA ${sql(schema)}`;
  await sql`CREATE TABLE ${sql(schema)}.cas (origin text PRIMARY KEY, tree_size bigint, root_hash bytea, note text)`;
  await sql`INSERT INTO ${sql(schema)}.cas VALUES ('o', 0, ${Buffer.alloc(32)}, '')`;
  const times: number[] = [];
  for (let i = 1; i <= 300; i++) {
    const t0 = performance.now();
    await sql`UPDATE ${sql(schema)}.cas SET tree_size = ${i}, root_hash = ${Buffer.alloc(32, i)}, note = ${'x'.repeat(300)}
              WHERE origin = 'o' AND tree_size = ${i - 1}`;
    await sync();
    times.push(performance.now() - t0);
  }
  await cleanup();
  return { ed25519VerifyUs, ed25519SignUs, sha256Us, upsertMs: stats(times).p50 };
}

async function addCheckpointLatency(): Promise<{ p50: number; p99: number; max: number; proofHashes: number; logs: number }> {
  // The requests are spread over many logs, as a witness serves many; each log pushes its
  // checkpoints in order, as tlog-witness expects.
  const PER_LOG = 20;
  const logs = Math.ceil(REQUESTS / PER_LOG);
  const witnessDir = mkdtempSync(join(tmpdir(), 'glasslog-bench-w-'));
  const plans = Array.from({ length: logs }, (_, i) => {
    const origin = `bench${i}.example/log`;
    const key = generateKey(origin);
    const sizes = sizesWithProofLength(PER_LOG, PROOF_HASHES, 1 + i * 7919);
    return { origin, key, signer: newSigner(key.skey, nodeEd25519), sizes, tree: new VirtualTree(sizes) };
  });
  const policy = join(witnessDir, 'policy');
  writeFileSync(policy, plans.map((p) => `log ${p.key.vkey}\n`).join(''));
  const w = await startProcess('witness', { databaseUrl, dataDir: witnessDir, args: ['--policy', policy, '--gossip-interval', '0', '--pull-interval', '0'] });
  try {
    const post = async (body: string) => {
      const res = await fetch(`${w.url}/add-checkpoint`, { method: 'POST', body });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`add-checkpoint: ${res.status} ${text}`);
    };
    const note = (p: (typeof plans)[number], size: number) =>
      signNote(formatCheckpoint({ origin: p.origin, treeSize: size, rootHash: rootHash(size, p.tree.node), extensions: [] }), [p.signer]);
    // First contact (no proof) is not timed; requests are prepared first so only the
    // witness is timed.
    for (const p of plans) await post(formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: note(p, p.sizes[0]!) }));
    const bodies: string[] = [];
    for (let k = 1; k <= PER_LOG; k++) {
      for (const p of plans) {
        const proof = proveConsistency(p.sizes[k - 1]!, p.sizes[k]!, p.tree.node);
        if (proof.length !== PROOF_HASHES) throw new Error(`proof of ${proof.length} hashes`);
        bodies.push(formatAddCheckpoint({ oldSize: p.sizes[k - 1]!, proof, checkpoint: note(p, p.sizes[k]!) }));
      }
    }
    const times: number[] = [];
    for (const body of bodies) {
      const t0 = performance.now();
      await post(body);
      times.push(performance.now() - t0);
    }
    return { ...stats(times), proofHashes: PROOF_HASHES, logs };
  } finally {
    await w.stop();
    rmSync(witnessDir, { recursive: true, force: true });
  }
}

async function timeToReceipt(withWitnesses: boolean): Promise<{ p50: number; p99: number; max: number; cosignatures: number }> {
  const base = mkdtempSync(join(tmpdir(), 'glasslog-bench-ttr-'));
  const started: Server[] = [];
  try {
    const origin = 'bench.example/ttr';
    const logKey = generateKey(origin);
    const logDir = join(base, 'log');
    mkdirSync(logDir);
    writeFileSync(join(logDir, 'log.key'), logKey.skey + '\n');
    const args: string[] = [];
    if (withWitnesses) {
      const lines: string[] = [];
      for (const name of ['w1', 'w2', 'w3']) {
        const k = generateKey(`${name}.bench`, ALG_COSIGNATURE_V1);
        const dir = join(base, name);
        mkdirSync(dir);
        writeFileSync(join(dir, 'witness.key'), k.skey + '\n');
        writeFileSync(join(dir, 'policy'), `log ${logKey.vkey}\n`);
        const w = await startProcess('witness', { databaseUrl, dataDir: dir, args: ['--policy', join(dir, 'policy'), '--gossip-interval', '0', '--pull-interval', '0'] });
        started.push(w);
        lines.push(`witness ${name} ${k.vkey} ${w.url}`);
      }
      lines.push('group q 2 w1 w2 w3', 'quorum q');
      writeFileSync(join(logDir, 'policy'), lines.join('\n') + '\n');
      args.push('--policy', join(logDir, 'policy'), '--witness-mode', 'fail-closed');
    }
    const log = await startProcess('serve', { databaseUrl, dataDir: logDir, args });
    started.push(log);
    const times: number[] = [];
    let cosignatures = Infinity;
    for (let i = 0; i < WRITES; i++) {
      const t0 = performance.now();
      const res = await fetch(`${log.url}/v1/entries`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${log.token}`, 'Content-Type': 'application/octet-stream' },
        body: `entry ${i} ${process.pid} ${Date.now()}`,
      });
      const body = (await res.json()) as { receipt?: string };
      if (res.status !== 201 || !body.receipt) throw new Error(`write: ${res.status} ${JSON.stringify(body)}`);
      times.push(performance.now() - t0);
      const sigs = body.receipt.split('\n').filter((l) => l.startsWith('— ')).length - 1;
      cosignatures = Math.min(cosignatures, sigs);
    }
    return { ...stats(times.slice(20)), cosignatures };
  } finally {
    for (const s of started.reverse()) await s.stop();
    rmSync(base, { recursive: true, force: true });
  }
}

const store = databaseUrl ? 'Postgres' : 'PGlite (embedded, WAL fsync per commit)';
console.log(`machine: ${machine()}; store: ${store}`);
const base = await baselines();
const implied = base.ed25519VerifyUs / 1000 + base.ed25519SignUs / 1000 + ((PROOF_HASHES + 1) * base.sha256Us) / 1000;
console.log(`baseline: Ed25519 verify ${base.ed25519VerifyUs.toFixed(1)} µs, sign ${base.ed25519SignUs.toFixed(1)} µs, SHA-256 node ${base.sha256Us.toFixed(2)} µs (node:crypto)`);
console.log(`baseline: crypto implied by one add-checkpoint ${ms(implied)}; one durable upsert p50 ${ms(base.upsertMs)}`);
const add = await addCheckpointLatency();
console.log(`add-checkpoint, ${add.proofHashes}-hash proofs, ${REQUESTS} sequential requests over ${add.logs} logs: p50 ${ms(add.p50)}, p99 ${ms(add.p99)}, max ${ms(add.max)}`);
const plain = await timeToReceipt(false);
console.log(`time to receipt, no witnesses, ${WRITES} sequential writes: p50 ${ms(plain.p50)}, p99 ${ms(plain.p99)}`);
const witnessed = await timeToReceipt(true);
console.log(
  `time to receipt, 3 local witnesses, 2-of-3 fail-closed: p50 ${ms(witnessed.p50)}, p99 ${ms(witnessed.p99)}; every receipt had ≥ ${witnessed.cosignatures} cosignatures`
);
console.log(`cosigning adds: p50 ${ms(witnessed.p50 - plain.p50)}, p99 ${ms(witnessed.p99 - plain.p99)}`);
console.log(JSON.stringify({ machine: machine(), store, baseline: { ...base, impliedMs: implied }, addCheckpoint: add, timeToReceipt: { plain, witnessed } }));
