/**
 * `glasslog audit` of a large log served locally, against the raw work it implies.
 *
 *   npm run build && npx tsx bench/audit.ts [--entries 1000000] [--postgres] [--agents 100] [--incremental 1000] [--rounds 3]
 *
 * 1. Builds a log of N real glasslog agent entries straight into the log's store (embedded
 *    PGlite in a temp data dir, or with --postgres its own schema on DATABASE_URL, default
 *    postgres://postgres@127.0.0.1:5432/test): the log's key registers the agents
 *    (`agent.register`, signed by the log), rotates two of them midway (`agent.rotate`, with
 *    runs of those agents in flight across the rotation), and the agents write chained runs
 *    (seq, prev = leaf hash of seq − 1, a run.close at the end) of 200–300-byte events with
 *    kinds, times, attrs, model info and real payload commitments, 64 runs interleaved at a
 *    time. Entries are signed on worker threads (node:crypto); the main thread sequences and
 *    integrates them in batches of 65,536 through the LogStore (as bench/scaling.ts does),
 *    signing the next batch while the last one is written.
 * 2. Starts the real server (`glasslog serve`) on that data: its agent index catches up over
 *    all N entries before it listens; the bench then waits until the server is idle (index
 *    lag 0, the last entry queryable, no CPU used).
 * 3. Baseline, in the same run, on all cores: the raw work an audit implies — N leaf hashes
 *    (SHA-256 of 0x00 ‖ envelope, the real envelopes), N − 1 interior node hashes (65 bytes
 *    each) and N Ed25519 verifications, node:crypto, split across one worker per core; the
 *    root it computes must equal the checkpoint's. Timed before and after each audit.
 * 4. `node dist/cli/main.js audit <url> --log-key <vkey> --state <file> --json`: wall time,
 *    ratio to the faster of the baselines around it (goal ≤ 1.5), what it fetched against
 *    what a full audit needs. With --rounds R (default 1) the full audit runs R times, each
 *    between two baselines, and the medians of the rounds' ratios are the result: this
 *    shared machine's speed drifts by up to a quarter between runs of the same work. Beside it, CPU seconds from /proc: the audit process, the server (with --postgres
 *    also its database backends) and the baseline's workers, whose ratio moves much less than
 *    the wall ratio when other processes load the machine (their load is reported too).
 *    GLASSLOG_BENCH_AUDIT_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the
 *    audit, GLASSLOG_BENCH_NODE_ARGS the server. GLASSLOG_BENCH_KEEP=1 keeps the data directory
 *    (the log, its keys and the audit's state file) for runs of `glasslog serve`/`audit` by hand.
 * 5. Appends --incremental entries (default 1,000) through the server's agent API (operator
 *    token; continuing the open runs, closing some, starting new ones), then audits again with
 *    the same state file and checks it fetched exactly the entry bundles covering
 *    [oldSize, newSize) and the tiles of newTiles(oldSize, newSize), plus the checkpoint.
 *
 */
import { spawn, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, hash as cryptoHash, randomFillSync, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import postgres from 'postgres';
import { encodeBundle } from '../src/core/bundle.js';
import { parseCheckpoint } from '../src/core/checkpoint.js';
import { decodeBase64, encodeBase64, equalBytes, toHex } from '../src/core/encoding.js';
import { EMPTY_EDGE, integrate, type TreeEdge } from '../src/core/integrate.js';
import { newTiles, TILE_WIDTH, tilesForSize, tileWidthAt, type TileCoord } from '../src/core/tile.js';
import { decodeEnvelope, encodeEntry, envelope, signEntry, type Entry, type SignedEntry } from '../src/entry/index.js';
import { nodeEd25519 } from '../src/note/ed25519-node.js';
import { generateKey, parseSignerKey, parseVerifierKey } from '../src/note/keys.js';
import { openDatabase, useNodeSha256, type Database } from '../src/cli/common.js';
import { PostgresLogStore } from '../src/storage/postgres.js';
import { benchSchema, machine, median, startServer, type Server } from './lib.js';

// ---------------------------------------------------------------------------------------
// Shared: the workload (what each entry says) and fast signing
// ---------------------------------------------------------------------------------------

/** Event kinds by code; CLOSE and REGISTRY mark the other entry types in a plan. */
const KINDS = ['prompt', 'decision', 'model_call', 'tool_call', 'observation', 'policy_check', 'outcome'] as const;
const K_PROMPT = 0;
const K_DECISION = 1;
const K_MODEL = 2;
const K_TOOL = 3;
const K_OBSERVATION = 4;
const K_POLICY = 5;
const K_OUTCOME = 6;
const CLOSE = 7;
const REGISTRY = 255;
/** Client times start here and grow ~40 ms per log index. */
const T0 = 1_790_000_000_000;
const ORIGIN = 'bench.glasslog/audit';
const CONTEXT = Buffer.from('glasslog/entry/v1\n');
const PAYLOAD_CONTEXT = Buffer.from('glasslog/payload/v1\n');
const TOOLS = ['refunds.create', 'orders.lookup', 'kb.search', 'email.send', 'tickets.update', 'crm.contact'];
const CHOICES = ['answer', 'lookup', 'refund', 'escalate', 'ask_clarification'];
const MODELS = [
  { provider: 'anthropic', name: 'claude-sonnet-4' },
  { provider: 'anthropic', name: 'claude-haiku-4' },
  { provider: 'openai', name: 'gpt-4.1-mini' },
];

/** Payload text (only its commitment is logged). */
const LOREM = 'lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor '.repeat(5);

const agentId = (a: number) => `agent-${String(a).padStart(3, '0')}`;
const runId = (r: number) => `run-${String(r).padStart(7, '0')}`;

function sha256(...parts: Uint8Array[]): Uint8Array {
  const d = cryptoHash('sha256', parts.length === 1 ? parts[0]! : Buffer.concat(parts), 'buffer');
  return new Uint8Array(d.buffer, d.byteOffset, d.length);
}

/** mulberry32: a small deterministic PRNG. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const privateKeyOf = (seed: Uint8Array) => createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
const publicKeyOf = (pub: Uint8Array) => createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });

/**
 * The envelope of `entryBytes` (canonical CBOR {"sig", "entry"}, spec/agent-entries.md §4)
 * behind one 0x00 byte, so the leaf hash is one SHA-256 of the whole buffer.
 */
function prefixedEnvelope(entryBytes: Uint8Array, sig: Uint8Array): Uint8Array {
  const n = entryBytes.length;
  const head = n < 24 ? 1 : n < 256 ? 2 : 3;
  const out = new Uint8Array(1 + 1 + 4 + 2 + 64 + 6 + head + n);
  let o = 0;
  out[o++] = 0x00; // RFC 6962 leaf prefix, not part of the envelope
  out[o++] = 0xa2;
  out.set([0x63, 0x73, 0x69, 0x67, 0x58, 0x40], o); // "sig", bytes(64)
  o += 6;
  out.set(sig, o);
  o += 64;
  out.set([0x65, 0x65, 0x6e, 0x74, 0x72, 0x79], o); // "entry"
  o += 6;
  if (head === 1) out[o++] = 0x40 | n;
  else if (head === 2) {
    out[o++] = 0x58;
    out[o++] = n;
  } else {
    out[o++] = 0x59;
    out[o++] = n >>> 8;
    out[o++] = n & 0xff;
  }
  out.set(entryBytes, o);
  return out;
}

/** Where the entry and the signature sit in an envelope built as above. */
function envelopeParts(env: Uint8Array): { sigAt: number; entryAt: number } {
  const h = env[77]!;
  const entryAt = h < 0x58 ? 78 : h === 0x58 ? 79 : 80;
  return { sigAt: 7, entryAt };
}

// ---------------------------------------------------------------------------------------
// Workers: signing (load) and the baseline
// ---------------------------------------------------------------------------------------

interface AgentKeys {
  /** skeys in the order the agent holds them, and their vkeys. */
  readonly skeys: string[];
  readonly vkeys: string[];
  /** The log index of the rotate entry that installs skeys[k + 1]. */
  readonly rotations: number[];
}

interface SignRequest {
  readonly id: number;
  readonly idx: Float64Array;
  readonly run: Int32Array;
  readonly seq: Int32Array;
  readonly agent: Int32Array;
  readonly kind: Uint8Array;
  /** Return the payloads (salt and data) with the envelopes: for the API. */
  readonly withPayloads: boolean;
}

interface SignResponse {
  readonly id: number;
  /** Envelopes, each behind a big-endian uint16 length (entry-bundle framing). */
  readonly data: Uint8Array;
  readonly hashes: Uint8Array;
  readonly payloads?: Array<Record<string, { salt: Uint8Array; data: Uint8Array }> | null>;
  readonly error?: string;
}

/** The state of a run a signing worker continues: its next seq's prev. */
interface OpenRun {
  prev: Uint8Array | undefined;
  next: number;
}

function signWorker(): void {
  const { agents } = workerData as { agents: AgentKeys[] };
  const keys = agents.map((a) => ({ objects: a.skeys.map((s) => privateKeyOf(parseSignerKey(s, nodeEd25519).seed)), rotations: a.rotations }));
  const runs = new Map<number, OpenRun>();
  const salts = Buffer.alloc(32 * 4096);
  let saltAt = salts.length;
  const salt = () => {
    if (saltAt === salts.length) {
      randomFillSync(salts);
      saltAt = 0;
    }
    saltAt += 32;
    return salts.subarray(saltAt - 32, saltAt);
  };

  parentPort!.on('message', (req: SignRequest) => {
    try {
      const n = req.idx.length;
      const envs: Uint8Array[] = new Array(n);
      const hashes = new Uint8Array(32 * n);
      const payloadsOut: SignResponse['payloads'] = req.withPayloads ? [] : undefined;
      let total = 0;
      for (let i = 0; i < n; i++) {
        const idx = req.idx[i]!;
        const r = req.run[i]!;
        const seq = req.seq[i]!;
        const a = req.agent[i]!;
        const kind = req.kind[i]!;
        let st = runs.get(r);
        if (!st) {
          if (seq !== 0) throw new Error(`run ${r} starts at seq ${seq}`);
          st = { prev: undefined, next: 0 };
          runs.set(r, st);
        }
        if (st.next !== seq) throw new Error(`run ${r}: seq ${seq}, expected ${st.next}`);
        const payloads: Record<string, { salt: Uint8Array; data: Uint8Array }> = {};
        const entry = buildEntry(idx, r, seq, a, kind, st.prev, (name, data) => {
          const s = Buffer.from(salt());
          payloads[name] = { salt: s, data };
          return sha256(PAYLOAD_CONTEXT, s, data);
        });
        const k = keys[a]!;
        let key = 0;
        while (key < k.rotations.length && k.rotations[key]! < idx) key++;
        const eb = encodeEntry(entry);
        const sig = edSign(null, Buffer.concat([CONTEXT, eb]), k.objects[key]!);
        const pre = prefixedEnvelope(eb, sig);
        const h = sha256(pre);
        if (i === 0) {
          // The hand-built envelope is the canonical one (checked once per request).
          const ref = envelope(eb, sig);
          if (!equalBytes(ref.bytes, pre.subarray(1)) || !equalBytes(ref.leafHash, h)) throw new Error('hand-built envelope differs from envelope()');
        }
        hashes.set(h, 32 * i);
        envs[i] = pre;
        total += 2 + pre.length - 1;
        payloadsOut?.push(Object.keys(payloads).length > 0 ? payloads : null);
        if (kind === CLOSE) runs.delete(r);
        else {
          st.prev = h;
          st.next = seq + 1;
        }
      }
      const data = new Uint8Array(total);
      let o = 0;
      for (const pre of envs) {
        const len = pre.length - 1;
        data[o] = len >>> 8;
        data[o + 1] = len & 0xff;
        data.set(pre.subarray(1), o + 2);
        o += 2 + len;
      }
      const res: SignResponse = { id: req.id, data, hashes, ...(payloadsOut ? { payloads: payloadsOut } : {}) };
      parentPort!.postMessage(res, [data.buffer, hashes.buffer]);
    } catch (err) {
      parentPort!.postMessage({ id: req.id, data: new Uint8Array(0), hashes: new Uint8Array(0), error: (err as Error).stack ?? String(err) });
    }
  });
}

/** What an entry at log index `idx` says. Content is a function of the index alone. */
function buildEntry(
  idx: number,
  run: number,
  seq: number,
  a: number,
  kind: number,
  prev: Uint8Array | undefined,
  commit: (name: string, data: Uint8Array) => Uint8Array
): Entry {
  const rand = rng(idx * 2654435761);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const int = (n: number) => Math.floor(rand() * n);
  const text = (min: number, spread: number) => Buffer.from(`${LOREM.slice(0, min + int(spread))}#${idx}`);
  const time = T0 + idx * 40 + int(40);
  const base = { agent: agentId(a), run: runId(run), ...(prev ? { prev } : {}), time };
  if (kind === CLOSE) return { type: 'run.close', ...base, seq };
  const ev = { type: 'event' as const, ...base, seq, kind: KINDS[kind]! };
  switch (kind) {
    case K_PROMPT:
      return { ...ev, attrs: { channel: pick(['chat', 'email', 'api']), 'gen_ai.request.id': `req-${(idx * 7919).toString(36)}` }, payloads: { text: commit('text', text(40, 200)) } };
    case K_DECISION:
      return { ...ev, parent: seq - 1, attrs: { choice: pick(CHOICES), confidence_pct: int(101) } };
    case K_MODEL:
      return {
        ...ev,
        parent: seq - 1,
        model: pick(MODELS),
        attrs: { 'gen_ai.usage.input_tokens': 200 + int(4000), 'gen_ai.usage.output_tokens': 20 + int(800) },
        payloads: { output: commit('output', text(60, 300)) },
      };
    case K_TOOL:
      return { ...ev, parent: seq - 1, attrs: { 'gen_ai.tool.name': pick(TOOLS), status: rand() < 0.97 ? 'ok' : 'error' }, payloads: { arguments: commit('arguments', text(20, 80)) } };
    case K_OBSERVATION:
      return { ...ev, parent: seq - 1, attrs: { source: 'tool', bytes: 100 + int(20000) }, payloads: { result: commit('result', text(40, 300)) } };
    case K_POLICY:
      return { ...ev, attrs: { policy: `R-${1 + int(12)}`, allowed: rand() < 0.9 } };
    case K_OUTCOME:
      return { ...ev, attrs: { status: pick(['resolved', 'refunded', 'escalated', 'abandoned']), duration_ms: 500 + int(120_000) } };
    default:
      throw new Error(`kind ${kind}`);
  }
}

interface BaselineSetup {
  readonly chunks: Array<{ start: number; count: number; data: SharedArrayBuffer }>;
  /** The range whose leaves this worker hashes and whose signatures it verifies. */
  readonly lo: number;
  readonly hi: number;
  /** Public key number of every entry (0: the log's key). */
  readonly keyNo: SharedArrayBuffer;
  readonly publicKeys: Uint8Array[];
  /** Leaf hashes of the whole log, 32 bytes each, shared by the workers. */
  readonly hashes: SharedArrayBuffer;
}

type BaselineRequest =
  | { readonly phase: 'leaf' }
  | { readonly phase: 'node'; readonly pieces: Array<{ from: number; to: number }> }
  | { readonly phase: 'verify' };

function baselineWorker(): void {
  const s = workerData as BaselineSetup;
  const t0 = performance.now();
  const n = s.hi - s.lo;
  // Untimed preparation: 0x00 ‖ envelope and "glasslog/entry/v1\n" ‖ entry, contiguous.
  const views: Uint8Array[] = [];
  for (const c of s.chunks) {
    const d = new Uint8Array(c.data);
    let o = 0;
    for (let i = 0; i < c.count; i++) {
      const len = (d[o]! << 8) | d[o + 1]!;
      const idx = c.start + i;
      if (idx >= s.lo && idx < s.hi) views.push(d.subarray(o + 2, o + 2 + len));
      o += 2 + len;
    }
  }
  if (views.length !== n) throw new Error(`baseline worker: ${views.length} entries for [${s.lo}, ${s.hi})`);
  let leafBytes = 0;
  let msgBytes = 0;
  for (const v of views) {
    leafBytes += 1 + v.length;
    msgBytes += CONTEXT.length + v.length - envelopeParts(v).entryAt;
  }
  const leafBuf = Buffer.alloc(leafBytes);
  const msgBuf = Buffer.alloc(msgBytes);
  const leafAt = new Float64Array(n + 1);
  const msgAt = new Float64Array(n + 1);
  let lo = 0;
  let mo = 0;
  for (let i = 0; i < n; i++) {
    const v = views[i]!;
    leafAt[i] = lo;
    leafBuf[lo] = 0;
    leafBuf.set(v, lo + 1);
    lo += 1 + v.length;
    msgAt[i] = mo;
    CONTEXT.copy(msgBuf, mo);
    msgBuf.set(v.subarray(envelopeParts(v).entryAt), mo + CONTEXT.length);
    mo += CONTEXT.length + v.length - envelopeParts(v).entryAt;
  }
  leafAt[n] = lo;
  msgAt[n] = mo;
  views.length = 0;
  const keys: KeyObject[] = s.publicKeys.map(publicKeyOf);
  const keyNo = new Uint16Array(s.keyNo);
  const hashes = new Uint8Array(s.hashes);
  parentPort!.postMessage({ ready: true, prepMs: performance.now() - t0 });

  parentPort!.on('message', (req: BaselineRequest) => {
    const t = performance.now();
    if (req.phase === 'leaf') {
      for (let i = 0; i < n; i++) hashes.set(cryptoHash('sha256', leafBuf.subarray(leafAt[i]!, leafAt[i + 1]!), 'buffer'), 32 * (s.lo + i));
      parentPort!.postMessage({ ms: performance.now() - t, count: n });
    } else if (req.phase === 'node') {
      // Each piece [from, to): its perfect subtrees (the binary-counter stack), unfolded.
      const buf = Buffer.alloc(65);
      buf[0] = 1;
      const node = (l: Uint8Array, r: Uint8Array) => {
        buf.set(l, 1);
        buf.set(r, 33);
        return cryptoHash('sha256', buf, 'buffer');
      };
      let count = 0;
      const out: Array<Array<{ height: number; hash: Uint8Array }>> = [];
      for (const p of req.pieces) {
        const stack: Array<{ height: number; hash: Uint8Array }> = [];
        for (let i = p.from; i < p.to; i++) {
          let h: Uint8Array = hashes.subarray(32 * i, 32 * i + 32);
          let height = 0;
          for (let x = i - p.from; x % 2 === 1; x = Math.floor(x / 2)) {
            h = node(stack.pop()!.hash, h);
            height++;
            count++;
          }
          stack.push({ height, hash: new Uint8Array(h) });
        }
        out.push(stack);
      }
      parentPort!.postMessage({ ms: performance.now() - t, count, stacks: out });
    } else {
      let bad = 0;
      for (let i = 0; i < n; i++) {
        const la = leafAt[i]!;
        const ok = edVerify(null, msgBuf.subarray(msgAt[i]!, msgAt[i + 1]!), keys[keyNo[s.lo + i]!]!, leafBuf.subarray(la + 1 + 7, la + 1 + 7 + 64));
        if (!ok) bad++;
      }
      parentPort!.postMessage({ ms: performance.now() - t, count: n, bad });
    }
  });
}

/** Starts a worker running this file (through tsx) in `role`. */
function startWorker(role: 'sign' | 'baseline', data: object): Worker {
  const api = import.meta.resolve('tsx/esm/api');
  const code = `
    const { workerData } = require('node:worker_threads');
    import(${JSON.stringify(api)})
      .then(({ tsImport }) => tsImport(workerData.file, workerData.file))
      .catch((err) => { console.error(err); process.exit(1); });`;
  const w = new Worker(code, { eval: true, workerData: { ...data, role, file: import.meta.url } });
  w.on('error', (err) => console.error(`bench worker (${role}) failed:`, err));
  return w;
}

// ---------------------------------------------------------------------------------------
// Main thread
// ---------------------------------------------------------------------------------------

/** Decides what each log index holds: registry entries, and 64 interleaved runs. */
class Planner {
  private readonly slots: Array<{ run: number; agent: number; len: number; next: number } | null>;
  private readonly rand: () => number;
  private nextRun = 0;

  constructor(
    private readonly agents: number,
    private readonly registry: ReadonlyMap<number, unknown>,
    private readonly rotationsOf: (agent: number) => readonly number[],
    private readonly keyBase: readonly number[],
    concurrent = 64,
    seed = 42
  ) {
    this.slots = new Array(concurrent).fill(null);
    this.rand = rng(seed);
  }

  /** Plans [from, to): per index the run, seq, agent, kind code and public-key number. */
  plan(from: number, to: number, keyNo: Uint16Array | undefined) {
    const n = to - from;
    const p = { idx: new Float64Array(n), run: new Int32Array(n), seq: new Int32Array(n), agent: new Int32Array(n), kind: new Uint8Array(n) };
    for (let i = 0; i < n; i++) {
      const idx = from + i;
      p.idx[i] = idx;
      if (this.registry.has(idx)) {
        p.kind[i] = REGISTRY;
        if (keyNo) keyNo[idx] = 0;
        continue;
      }
      const s = Math.floor(this.rand() * this.slots.length);
      let r = this.slots[s];
      if (!r) {
        // Slots 0 and 1 always run agents 0 and 1, the two that are rotated midway, so one
        // of their runs is in flight across each rotation.
        const agent = s < 2 ? s : 2 + Math.floor(this.rand() * (this.agents - 2));
        r = this.slots[s] = { run: this.nextRun++, agent, len: 6 + Math.floor(this.rand() * 30), next: 0 };
      }
      p.run[i] = r.run;
      p.agent[i] = r.agent;
      p.seq[i] = r.next;
      if (r.next === r.len) {
        p.kind[i] = CLOSE;
        this.slots[s] = null;
      } else {
        p.kind[i] = r.next === 0 ? K_PROMPT : r.next === r.len - 1 ? K_OUTCOME : this.rand() < 0.08 ? K_POLICY : [K_DECISION, K_MODEL, K_TOOL, K_OBSERVATION][(r.next - 1) % 4]!;
        r.next++;
      }
      if (keyNo) {
        let k = 0;
        for (const rot of this.rotationsOf(r.agent)) if (rot < idx) k++;
        keyNo[idx] = this.keyBase[r.agent]! + k;
      }
    }
    return p;
  }
}

/** Signing on one worker per core: runs are owned by worker run % W, which keeps their chain. */
class Signers {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (r: SignResponse) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(threads: number, agents: AgentKeys[]) {
    this.workers = Array.from({ length: threads }, () => {
      const w = startWorker('sign', { agents });
      w.on('message', (r: SignResponse) => {
        const wt = this.waiting.get(r.id);
        this.waiting.delete(r.id);
        if (r.error) wt?.reject(new Error(`signing worker: ${r.error}`));
        else wt?.resolve(r);
      });
      return w;
    });
  }

  /**
   * Signs the run entries of a plan (REGISTRY slots are left to the caller). Returns, per
   * index, the envelope (or undefined), its leaf hash, and the payloads when asked.
   */
  async sign(plan: ReturnType<Planner['plan']>, withPayloads: boolean) {
    const W = this.workers.length;
    const n = plan.idx.length;
    const owner = new Int8Array(n);
    const pos = new Int32Array(n);
    const counts = new Array<number>(W).fill(0);
    for (let i = 0; i < n; i++) {
      if (plan.kind[i] === REGISTRY) {
        owner[i] = -1;
        continue;
      }
      const w = plan.run[i]! % W;
      owner[i] = w;
      pos[i] = counts[w]!++;
    }
    const reqs = counts.map((c) => ({ idx: new Float64Array(c), run: new Int32Array(c), seq: new Int32Array(c), agent: new Int32Array(c), kind: new Uint8Array(c) }));
    for (let i = 0; i < n; i++) {
      const w = owner[i]!;
      if (w < 0) continue;
      const q = reqs[w]!;
      const j = pos[i]!;
      q.idx[j] = plan.idx[i]!;
      q.run[j] = plan.run[i]!;
      q.seq[j] = plan.seq[i]!;
      q.agent[j] = plan.agent[i]!;
      q.kind[j] = plan.kind[i]!;
    }
    const answers = await Promise.all(
      reqs.map(
        (q, w) =>
          new Promise<SignResponse>((resolve, reject) => {
            const id = this.nextId++;
            this.waiting.set(id, { resolve, reject });
            this.workers[w]!.postMessage({ id, ...q, withPayloads } satisfies SignRequest, [q.idx.buffer, q.run.buffer, q.seq.buffer, q.agent.buffer, q.kind.buffer]);
          })
      )
    );
    const split = answers.map((a) => {
      const out: Uint8Array[] = [];
      for (let o = 0; o < a.data.length; ) {
        const len = (a.data[o]! << 8) | a.data[o + 1]!;
        out.push(a.data.subarray(o + 2, o + 2 + len));
        o += 2 + len;
      }
      return out;
    });
    const envs: Array<Uint8Array | undefined> = new Array(n);
    const hashes: Array<Uint8Array | undefined> = new Array(n);
    const payloads: Array<Record<string, { salt: Uint8Array; data: Uint8Array }> | null> = [];
    for (let i = 0; i < n; i++) {
      const w = owner[i]!;
      if (w < 0) continue;
      envs[i] = split[w]![pos[i]!]!;
      hashes[i] = answers[w]!.hashes.subarray(32 * pos[i]!, 32 * pos[i]! + 32);
      if (withPayloads) payloads[i] = answers[w]!.payloads![pos[i]!] ?? null;
    }
    return { envs, hashes, payloads };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** The baseline workers, holding their share of the envelopes between runs. */
class Baseline {
  private readonly workers: Worker[] = [];
  private constructor(
    private readonly n: number,
    private readonly pieces: Array<Array<{ from: number; to: number }>>
  ) {}

  static async start(n: number, chunks: BaselineSetup['chunks'], keyNo: Uint16Array, publicKeys: Uint8Array[]): Promise<{ baseline: Baseline; prepMs: number }> {
    const W = Math.max(1, availableParallelism());
    // Node hashing: the tree split into aligned pieces of 4096 leaves (and the tail), dealt
    // out to balance the workers; the main thread joins the pieces' subtrees.
    const P = 4096;
    const pieces: Array<Array<{ from: number; to: number }>> = Array.from({ length: W }, () => []);
    const load = new Array<number>(W).fill(0);
    for (let from = 0; from < n; from += P) {
      const to = Math.min(n, from + P);
      const w = load.indexOf(Math.min(...load));
      pieces[w]!.push({ from, to });
      load[w]! += to - from;
    }
    const b = new Baseline(n, pieces);
    const keyShared = new SharedArrayBuffer(keyNo.length * 2);
    new Uint16Array(keyShared).set(keyNo);
    const hashes = new SharedArrayBuffer(32 * n);
    const readies: Array<Promise<number>> = [];
    for (let w = 0; w < W; w++) {
      const lo = Math.floor((n * w) / W);
      const hi = Math.floor((n * (w + 1)) / W);
      const worker = startWorker('baseline', { chunks: chunks.filter((c) => c.start < hi && c.start + c.count > lo), lo, hi, keyNo: keyShared, publicKeys, hashes } satisfies BaselineSetup);
      b.workers.push(worker);
      readies.push(new Promise((resolve) => worker.once('message', (m: { prepMs: number }) => resolve(m.prepMs))));
    }
    const prep = await Promise.all(readies);
    return { baseline: b, prepMs: Math.max(...prep) };
  }

  private phase<T>(req: (w: number) => BaselineRequest): Promise<{ wallMs: number; answers: T[] }> {
    const t = performance.now();
    return Promise.all(
      this.workers.map(
        (w, i) =>
          new Promise<T>((resolve) => {
            w.once('message', resolve);
            w.postMessage(req(i));
          })
      )
    ).then((answers) => ({ wallMs: performance.now() - t, answers }));
  }

  /** One timed run: leaf hashes, node hashes, verifications; each phase on all workers. */
  async run(): Promise<BaselineResult> {
    const cpu0 = process.cpuUsage();
    const busy0 = machineBusySeconds();
    const t0 = performance.now();
    const leaf = await this.phase<{ count: number }>(() => ({ phase: 'leaf' }));
    const node = await this.phase<{ count: number; stacks: Array<Array<{ height: number; hash: Uint8Array }>> }>((w) => ({ phase: 'node', pieces: this.pieces[w]! }));
    // Join the pieces' subtrees in log order: the binary counter across pieces, then fold.
    const t = performance.now();
    const byFrom = new Map<number, Array<{ height: number; hash: Uint8Array }>>();
    node.answers.forEach((a, w) => a.stacks.forEach((s, j) => byFrom.set(this.pieces[w]![j]!.from, s)));
    const buf = Buffer.alloc(65);
    buf[0] = 1;
    const nodeHash = (l: Uint8Array, r: Uint8Array) => {
      buf.set(l, 1);
      buf.set(r, 33);
      return new Uint8Array(cryptoHash('sha256', buf, 'buffer'));
    };
    let joins = 0;
    const stack: Array<{ height: number; hash: Uint8Array }> = [];
    for (const from of [...byFrom.keys()].sort((a, b) => a - b)) {
      for (const sub of byFrom.get(from)!) {
        let cur = sub;
        while (stack.length > 0 && stack[stack.length - 1]!.height === cur.height) {
          cur = { height: cur.height + 1, hash: nodeHash(stack.pop()!.hash, cur.hash) };
          joins++;
        }
        stack.push(cur);
      }
    }
    let root = stack.pop()!.hash;
    while (stack.length > 0) {
      root = nodeHash(stack.pop()!.hash, root);
      joins++;
    }
    const joinMs = performance.now() - t;
    const nodeCount = node.answers.reduce((s, a) => s + a.count, 0) + joins;
    if (nodeCount !== this.n - 1) throw new Error(`baseline computed ${nodeCount} node hashes, expected ${this.n - 1}`);
    const verify = await this.phase<{ count: number; bad: number }>(() => ({ phase: 'verify' }));
    const bad = verify.answers.reduce((s, a) => s + a.bad, 0);
    const nodeMs = node.wallMs + joinMs;
    const cpu = process.cpuUsage(cpu0);
    const cpuS = (cpu.user + cpu.system) / 1e6;
    return {
      cpuS,
      otherCores: otherCores(busy0, cpuS, performance.now() - t0),
      leaf: { count: this.n, ms: leaf.wallMs, perSec: this.n / (leaf.wallMs / 1000) },
      node: { count: nodeCount, ms: nodeMs, perSec: nodeCount / (nodeMs / 1000) },
      verify: { count: this.n, ms: verify.wallMs, perSec: this.n / (verify.wallMs / 1000), bad },
      totalMs: leaf.wallMs + nodeMs + verify.wallMs,
      root,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

interface BaselineResult {
  readonly leaf: { count: number; ms: number; perSec: number };
  readonly node: { count: number; ms: number; perSec: number };
  readonly verify: { count: number; ms: number; perSec: number; bad: number };
  readonly totalMs: number;
  /** CPU seconds of this process (its workers) during the run: the main thread only waits. */
  readonly cpuS: number;
  /** Cores other processes on the machine kept busy meanwhile, on average. */
  readonly otherCores: number | undefined;
  readonly root: Uint8Array;
}

interface AuditJson {
  verified: boolean;
  origin?: string;
  treeSize?: number;
  previousSize?: number;
  entriesChecked?: number;
  fetched?: { requests?: number; bytes?: number; bundles?: number; tiles?: number };
  findings?: unknown[];
  elapsedMs?: number;
}

interface AuditRun {
  readonly wallMs: number;
  readonly code: number | null;
  readonly json: AuditJson | undefined;
  readonly stderr: string;
  readonly stdout: string;
  /** CPU seconds (user + system) of the audit process and of the server meanwhile. */
  readonly auditCpuS: number | undefined;
  readonly serverCpuS: number | undefined;
  /** Cores other processes on the machine kept busy meanwhile, on average. */
  readonly otherCores: number | undefined;
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  return Number(r.stdout) > 0 ? Number(r.stdout) : 100;
})();

/** CPU seconds (user + system) a process used so far, from /proc; undefined elsewhere. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/**
 * The processes serving the log: the server, and with --postgres the database backends its
 * connections talk to (found through its sockets and pg_stat_activity.client_port), so their
 * CPU counts as the server's rather than as other load.
 */
class ServerProcesses {
  constructor(
    private readonly pid: number | undefined,
    private readonly databaseUrl: string | undefined
  ) {}

  async pids(): Promise<number[]> {
    if (this.pid === undefined) return [];
    if (!this.databaseUrl) return [this.pid];
    const port = Number(new URL(this.databaseUrl).port || 5432);
    const ports: number[] = [];
    try {
      const inodes = new Set<string>();
      for (const fd of readdirSync(`/proc/${this.pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSafe(`/proc/${this.pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      }
      for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
        for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
          const f = line.trim().split(/\s+/);
          if (f.length < 10 || !inodes.has(f[9]!)) continue;
          if (parseInt(f[2]!.split(':')[1]!, 16) === port) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
        }
      }
    } catch {
      return [this.pid];
    }
    if (ports.length === 0) return [this.pid];
    const sql = postgres(this.databaseUrl, { max: 1, onnotice: () => undefined });
    try {
      const rows = await sql`SELECT pid FROM pg_stat_activity WHERE client_port IN ${sql(ports)}`;
      return [this.pid, ...rows.map((r) => Number(r.pid))];
    } finally {
      await sql.end();
    }
  }

  /** CPU seconds per process, now. */
  async sample(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    for (const pid of await this.pids()) {
      const c = cpuSeconds(pid);
      if (c !== undefined) out.set(pid, c);
    }
    return out;
  }

  /** CPU seconds used between two samples (a process new in `b` counts whole). */
  static used(a: Map<number, number>, b: Map<number, number>): number {
    let t = 0;
    for (const [pid, c] of b) t += c - (a.get(pid) ?? 0);
    return t;
  }
}

function readlinkSafe(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

/** CPU seconds the whole machine spent busy so far (/proc/stat), to see other load; undefined elsewhere. */
function machineBusySeconds(): number | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** Cores other processes kept busy over an interval, given the busy seconds that were ours. */
function otherCores(busy0: number | undefined, ownS: number, wallMs: number): number | undefined {
  const busy1 = machineBusySeconds();
  if (busy0 === undefined || busy1 === undefined) return undefined;
  return Math.max(0, busy1 - busy0 - ownS) / (wallMs / 1000);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const rate = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M/s` : `${(n / 1e3).toFixed(1)} k/s`);
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      entries: { type: 'string', default: '1000000' },
      postgres: { type: 'boolean', default: false },
      agents: { type: 'string', default: '100' },
      incremental: { type: 'string', default: '1000' },
      chunk: { type: 'string', default: '65536' },
      rounds: { type: 'string', default: '1' },
    },
  });
  const N = Number(values.entries);
  const A = Number(values.agents);
  const INC = Number(values.incremental);
  const CHUNK = Number(values.chunk);
  const ROUNDS = Number(values.rounds);
  if (!Number.isSafeInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 9) throw new Error('--rounds must be 1–9');
  if (!Number.isSafeInteger(N) || N < 1000) throw new Error('--entries must be at least 1000');
  if (!Number.isSafeInteger(A) || A < 3 || A > 5000) throw new Error('--agents must be 3–5000');
  if (N < 10 * A) throw new Error('--entries must be at least 10 × --agents');
  if (!Number.isSafeInteger(INC) || INC < 1) throw new Error('--incremental must be at least 1');
  const databaseUrl = values.postgres ? (process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test') : undefined;
  const schema = values.postgres ? benchSchema('audit') : 'glasslog';
  const cores = availableParallelism();
  console.log(`machine: ${machine()}`);
  console.log(`log: ${N} entries, ${A} agents, 2 rotations; store ${databaseUrl ? `Postgres schema ${schema}` : 'embedded PGlite'}`);
  useNodeSha256();

  if (spawnSync(process.execPath, ['dist/cli/main.js', 'audit', '--help']).status !== 0) throw new Error('build first: npm run build');

  const dataDir = mkdtempSync(join(tmpdir(), 'glasslog-bench-audit-'));
  const stateFile = join(dataDir, 'audit.state');
  let server: Server | undefined;
  let signers: Signers | undefined;
  let baseline: Baseline | undefined;
  let db: Database | undefined;
  try {
    // ---- keys: the log's, the agents', two rotations ----
    const log = generateKey(ORIGIN);
    writeFileSync(join(dataDir, 'log.key'), log.skey + '\n', { mode: 0o600 });
    writeFileSync(join(dataDir, 'log.vkey'), log.vkey + '\n');
    const logPub = parseVerifierKey(log.vkey).publicKey;
    const agents: AgentKeys[] = [];
    const publicKeys: Uint8Array[] = [logPub];
    const keyBase: number[] = [];
    const rotations = [Math.floor(N / 3), Math.floor((2 * N) / 3)];
    for (let a = 0; a < A; a++) {
      const ks = [generateKey(agentId(a))];
      if (a < rotations.length) ks.push(generateKey(agentId(a)));
      keyBase.push(publicKeys.length);
      for (const k of ks) publicKeys.push(parseVerifierKey(k.vkey).publicKey);
      agents.push({ skeys: ks.map((k) => k.skey), vkeys: ks.map((k) => k.vkey), rotations: a < rotations.length ? [rotations[a]!] : [] });
    }
    const registry = new Map<number, SignedEntry>();
    const regTime = (idx: number) => T0 + idx * 40;
    for (let a = 0; a < A; a++) {
      registry.set(a, signEntry({ type: 'agent.register', agent: agentId(a), key: agents[a]!.vkeys[0]!, time: regTime(a) }, log.skey, nodeEd25519));
    }
    rotations.forEach((idx, a) => registry.set(idx, signEntry({ type: 'agent.rotate', agent: agentId(a), key: agents[a]!.vkeys[1]!, time: regTime(idx) }, log.skey, nodeEd25519)));

    // ---- load ----
    const planner = new Planner(A, registry, (a) => agents[a]!.rotations, keyBase);
    const keyNo = new Uint16Array(N);
    /** Envelope length of every entry (the N loaded, then the appended ones). */
    const lens = new Uint16Array(N + INC);
    const chunks: BaselineSetup['chunks'] = [];
    signers = new Signers(cores, agents);
    db = await openDatabase(dataDir, databaseUrl, schema);
    const store = new PostgresLogStore(db.sql, db.options);
    await store.migrate();
    let edge: TreeEdge = EMPTY_EDGE;
    let envBytes = 0;
    let writeMs = 0;
    const tLoad = performance.now();
    const dispatch = (from: number) => {
      const to = Math.min(N, from + CHUNK);
      const plan = planner.plan(from, to, keyNo);
      return signers!.sign(plan, false).then((r) => ({ from, to, ...r }));
    };
    let next = dispatch(0);
    let lastReport = 0;
    for (let from = 0; from < N; from += CHUNK) {
      const { to, envs, hashes } = await next;
      if (to < N) next = dispatch(to);
      const entries: Uint8Array[] = new Array(to - from);
      const leafHashes: Uint8Array[] = new Array(to - from);
      let bytes = 0;
      for (let i = 0; i < to - from; i++) {
        const reg = registry.get(from + i);
        entries[i] = reg ? reg.bytes : envs[i]!;
        leafHashes[i] = reg ? reg.leafHash : hashes[i]!;
        lens[from + i] = entries[i]!.length;
        bytes += 2 + entries[i]!.length;
      }
      envBytes += bytes - 2 * (to - from);
      // Kept for the baseline, in entry-bundle framing, shared with its workers.
      const shared = new SharedArrayBuffer(bytes);
      new Uint8Array(shared).set(encodeBundle(entries));
      chunks.push({ start: from, count: to - from, data: shared });
      const tw = performance.now();
      await store.sequence(entries);
      const r = integrate(edge, leafHashes);
      await store.integrate(edge.size, r.edge.size, r.rootHash, r.tiles);
      edge = r.edge;
      writeMs += performance.now() - tw;
      if (to === N || to - lastReport >= N / 10) {
        lastReport = to;
        const el = performance.now() - tLoad;
        console.log(`  loaded ${to} entries in ${s(el)} (${rate(to / (el / 1000))})`);
      }
    }
    await store.close();
    await db.close();
    db = undefined;
    const loadMs = performance.now() - tLoad;
    console.log(
      `load: ${N} entries (${mb(envBytes)} of envelopes, ${(envBytes / N).toFixed(0)} bytes on average) signed on ${cores} workers and written in ${s(loadMs)} = ${rate(N / (loadMs / 1000))}; ` +
        `the store's sequence + integrate took ${s(writeMs)} of it`
    );

    // ---- the server on that data, idle ----
    const tStart = performance.now();
    const args = ['--agent-rate', '100000', '--max-pending', '1000000'];
    if (databaseUrl) args.push('--database-url', databaseUrl, '--schema', schema);
    server = await startServer({ dataDir, args });
    const startMs = performance.now() - tStart;
    const serving = new ServerProcesses(server.process.pid, databaseUrl);
    if (databaseUrl) console.log(`server: its CPU is counted with its ${(await serving.pids()).length - 1} Postgres backends`);
    console.log(`server: listening after ${s(startMs)} (its agent index caught up over all ${N} entries before it listens)`);
    await waitIdle(server, N, serving);
    if (databaseUrl) {
      // After a million inserts autovacuum would wake up during the audit: do its work now.
      const sql = postgres(databaseUrl, { max: 1, onnotice: () => undefined });
      const t = performance.now();
      const tables = await sql`SELECT tablename FROM pg_tables WHERE schemaname = ${schema}`;
      for (const { tablename } of tables) await sql.unsafe(`VACUUM ANALYZE ${schema}.${tablename as string}`);
      await sql.end();
      console.log(`postgres: VACUUM ANALYZE of the ${tables.length} tables in ${s(performance.now() - t)}`);
    }
    const cpNote = await (await fetch(`${server.url}/checkpoint`)).text();
    const cp = parseCheckpoint(cpNote.slice(0, cpNote.indexOf('\n\n') + 1));
    if (cp.treeSize !== N) throw new Error(`the server's checkpoint is at ${cp.treeSize}, not ${N}`);

    // ---- baseline ----
    const started = await Baseline.start(N, chunks, keyNo, publicKeys);
    baseline = started.baseline;
    console.log(`baseline: ${cores} workers hold the envelopes (prepared in ${s(started.prepMs)}, untimed)`);
    const base1 = await baseline.run();
    printBaseline('baseline', base1);
    if (!equalBytes(base1.root, cp.rootHash)) throw new Error(`the baseline's root ${toHex(base1.root)} is not the checkpoint's ${toHex(cp.rootHash)}`);
    if (base1.verify.bad > 0) throw new Error(`${base1.verify.bad} signatures failed in the baseline`);

    // ---- full audits, each between two baselines ----
    // This machine's speed drifts by a quarter between runs of the same work, so with
    // --rounds R the full audit runs R times, each timed between two baselines, and the
    // figures are the medians of the rounds' ratios. A round's ratio is against the faster
    // of the baselines around it: the machine's raw work with the least interference.
    const vkeyFile = join(dataDir, 'log.vkey');
    const fullExpect = expectFull(N, lens, cpNote);
    const bases: BaselineResult[] = [base1];
    const fulls: AuditRun[] = [];
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const round = ROUNDS > 1 ? ` ${r + 1}/${ROUNDS}` : '';
      rmSync(stateFile, { force: true });
      const full = await runAudit(server, serving, vkeyFile, stateFile);
      reportAudit(`full audit${round}`, full, N, 0);
      printFetched(`full audit${round}`, fullExpect, full.json, false);
      fulls.push(full);
      const after = await baseline.run();
      printBaseline(`baseline ${r + 2}, after full audit${round}`, after);
      bases.push(after);
      const before = bases[r]!;
      const ratio = full.wallMs / Math.min(before.totalMs, after.totalMs);
      const cpuRatio = (full.auditCpuS! + (full.serverCpuS ?? 0)) / ((before.cpuS + after.cpuS) / 2);
      ratios.push(ratio);
      cpuRatios.push(cpuRatio);
      console.log(
        `RATIO${round} audit / baseline: ${ratio.toFixed(2)} (${s(full.wallMs)} / ${s(Math.min(before.totalMs, after.totalMs))}, the faster of the baselines before and after; ` +
          `${(full.wallMs / before.totalMs).toFixed(2)} against the one before, ${(full.wallMs / after.totalMs).toFixed(2)} after); ` +
          `CPU: audit ${full.auditCpuS!.toFixed(1)} s + server ${(full.serverCpuS ?? 0).toFixed(1)} s = ${cpuRatio.toFixed(2)} × the baselines' ${((before.cpuS + after.cpuS) / 2).toFixed(1)} CPU s`
      );
      const busy = [
        ['the baseline before', before.otherCores],
        ['the audit', full.otherCores],
        ['the baseline after', after.otherCores],
      ].filter(([, c]) => typeof c === 'number' && c > 0.25);
      if (busy.length > 0) {
        console.log(`  NOTE: other processes kept ${busy.map(([w, c]) => `${(c as number).toFixed(2)} cores busy during ${w}`).join(', ')}: the wall figures are unreliable on this shared machine; the CPU ratio much less so`);
      }
    }
    const ratio = median(ratios);
    const cpuRatio = median(cpuRatios);
    console.log(
      `RATIO audit / baseline${ROUNDS > 1 ? `, median of ${ROUNDS} rounds` : ''}: ${ratio.toFixed(2)} (goal ≤ 1.5${ROUNDS > 1 ? `; rounds ${ratios.map((x) => x.toFixed(2)).join(', ')}` : ''})${ratio > 1.5 ? '  <-- OVER THE GOAL' : ''}; ` +
        `CPU ratio ${cpuRatio.toFixed(2)}${ROUNDS > 1 ? ` (rounds ${cpuRatios.map((x) => x.toFixed(2)).join(', ')})` : ''}`
    );
    await baseline.close();
    baseline = undefined;

    // ---- incremental: INC entries through the API, then audit again ----
    const tApp = performance.now();
    const appended = await appendThroughApi(server, planner, signers, N, INC, lens);
    const appendMs = performance.now() - tApp;
    const cp2Note = await (await fetch(`${server.url}/checkpoint`)).text();
    const newSize = parseCheckpoint(cp2Note.slice(0, cp2Note.indexOf('\n\n') + 1)).treeSize;
    console.log(`appended ${appended.count} entries through POST /v1/agents/<agent>/entries (${appended.requests} requests, ${appended.runsContinued} open runs continued, ${appended.closed} closed, ${appended.started} started) in ${s(appendMs)}; checkpoint now ${newSize}`);
    if (newSize !== N + INC) throw new Error(`the checkpoint is at ${newSize}, expected ${N + INC}`);
    await waitIdle(server, N + INC, serving);
    const incExpect = expectIncremental(N, N + INC, lens, cp2Note);
    let inc: AuditRun | undefined;
    let noop: AuditRun | undefined;
    let incMismatch = false;
    inc = await runAudit(server, serving, vkeyFile, stateFile);
    reportAudit('incremental audit', inc, N + INC, N);
    incMismatch = printFetched('incremental audit', incExpect, inc.json, true);
    noop = await runAudit(server, serving, vkeyFile, stateFile);
    reportAudit('audit with nothing new', noop, N + INC, N + INC);
    const nf = noop.json?.fetched;
    console.log(`  fetched ${nf?.requests} requests, ${nf?.bytes} bytes (expected: the checkpoint only, 1 request, ${Buffer.byteLength(cp2Note)} bytes)`);

    // ---- summary ----
    const line = '='.repeat(100);
    console.log(`\n${line}\nSUMMARY  bench/audit.ts\n${line}`);
    console.log(`machine            ${machine()}`);
    console.log(`log                ${N} entries, ${A} agents (2 rotated midway), ${(envBytes / N).toFixed(0)}-byte envelopes on average, ${databaseUrl ? 'Postgres' : 'embedded PGlite'}`);
    console.log(`load               ${s(loadMs)} (${rate(N / (loadMs / 1000))}); server start with agent index catch-up ${s(startMs)}`);
    bases.forEach((b, k) => {
      console.log(
        `${`baseline ${k + 1}`.padEnd(19)}${s(b.totalMs)} (${b.cpuS.toFixed(1)} CPU s, other load ${b.otherCores?.toFixed(2)} cores): ${b.leaf.count} leaf hashes ${rate(b.leaf.perSec)} (${s(b.leaf.ms)}), ${b.node.count} node hashes ${rate(b.node.perSec)} (${s(b.node.ms)}), ${b.verify.count} Ed25519 verifications ${rate(b.verify.perSec)} (${s(b.verify.ms)}), on ${cores} cores`
      );
    });
    fulls.forEach((full, k) => {
      const f = full.json?.fetched;
      console.log(`${`full audit ${k + 1}`.padEnd(19)}${s(full.wallMs)} wall, exit ${full.code}, verified ${full.json?.verified}; ratio ${ratios[k]!.toFixed(2)}, CPU ratio ${cpuRatios[k]!.toFixed(2)}; fetched ${f?.requests} requests (${f?.bundles} bundles, ${f?.tiles} tiles), ${f?.bytes} bytes; CPU audit ${full.auditCpuS?.toFixed(1)} s, server ${full.serverCpuS?.toFixed(1)} s; other load ${full.otherCores?.toFixed(2)} cores`);
    });
    console.log(`${'ratio'.padEnd(19)}${ratio.toFixed(2)}${ROUNDS > 1 ? ` (median of ${ROUNDS})` : ''} (goal ≤ 1.5), CPU ratio ${cpuRatio.toFixed(2)}`);
    if (inc) {
      const f = inc.json?.fetched;
      console.log(
        `incremental        +${INC} entries: ${s(inc.wallMs)} wall, exit ${inc.code}, verified ${inc.json?.verified}; fetched ${f?.requests} requests (${f?.bundles} bundles, ${f?.tiles} tiles), ${f?.bytes} bytes; expected ${incExpect.requests} requests (${incExpect.bundles} bundles, ${incExpect.tiles} tiles, 1 checkpoint), ${incExpect.bytes} bytes${incMismatch ? '  <-- MISMATCH' : ''}`
      );
    } else console.log(`incremental        +${INC} entries appended in ${s(appendMs)}; an audit should fetch ${incExpect.requests} requests (${incExpect.bundles} bundles, ${incExpect.tiles} tiles, 1 checkpoint), ${incExpect.bytes} bytes`);
    if (noop) console.log(`nothing new        ${s(noop.wallMs)} wall, fetched ${noop.json?.fetched?.requests} requests`);
    console.log(line);
    const strip = (b: BaselineResult | undefined) => (b ? { leaf: b.leaf, node: b.node, verify: b.verify, totalMs: b.totalMs, cpuS: b.cpuS, otherCores: b.otherCores } : undefined);
    const figures = (a: AuditRun | undefined) => (a ? { wallMs: a.wallMs, code: a.code, json: a.json, auditCpuS: a.auditCpuS, serverCpuS: a.serverCpuS, otherCores: a.otherCores } : undefined);
    console.log(
      JSON.stringify({
        bench: 'audit',
        machine: machine(),
        entries: N,
        store: databaseUrl ? 'postgres' : 'pglite',
        loadMs,
        serverStartMs: startMs,
        baseline: bases.map(strip),
        full: fulls.map(figures),
        ratios,
        cpuRatios,
        ratio,
        cpuRatio,
        incremental: { entries: INC, appendMs, audit: figures(inc), expected: incExpect, mismatch: incMismatch },
        nothingNew: figures(noop),
      })
    );
    if (incMismatch) process.exitCode = 1;
  } finally {
    await db?.close().catch(() => undefined);
    await baseline?.close().catch(() => undefined);
    await signers?.close().catch(() => undefined);
    await server?.stop().catch((e: unknown) => console.error(`stopping the server: ${(e as Error).message}`));
    if (databaseUrl) {
      const sql = postgres(databaseUrl, { max: 1, onnotice: () => undefined });
      await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.catch((e: unknown) => console.error(`dropping schema ${schema}: ${(e as Error).message}`));
      await sql.end();
    }
    if (process.env.GLASSLOG_BENCH_KEEP) console.log(`kept the log's data directory (GLASSLOG_BENCH_KEEP): ${dataDir}`);
    else rmSync(dataDir, { recursive: true, force: true });
  }
}

function printBaseline(name: string, b: BaselineResult): void {
  console.log(
    `${name}: ${s(b.totalMs)} wall on all cores = ${b.leaf.count} leaf hashes in ${s(b.leaf.ms)} (${rate(b.leaf.perSec)}) + ${b.node.count} node hashes in ${s(b.node.ms)} (${rate(b.node.perSec)}) + ${b.verify.count} Ed25519 verifications in ${s(b.verify.ms)} (${rate(b.verify.perSec)}); ${b.cpuS.toFixed(1)} CPU s; other processes kept ${b.otherCores?.toFixed(2) ?? '?'} cores busy`
  );
}

/** Waits until the server's agent index holds `size` entries and its process uses no CPU. */
async function waitIdle(server: Server, size: number, serving: ServerProcesses): Promise<void> {
  const t = performance.now();
  for (;;) {
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as { treeSize: number };
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const lag = Number(/^glasslog_agent_index_lag\s+(\d+)/m.exec(metrics)?.[1] ?? NaN);
    const pending = Number(/^glasslog_pending_entries\s+(\d+)/m.exec(metrics)?.[1] ?? NaN);
    const q = (await (await fetch(`${server.url}/v1/agent-entries?order=desc&limit=1`)).json()) as { entries?: Array<{ index: number }> };
    const last = q.entries?.[0]?.index;
    if (health.treeSize === size && lag === 0 && pending === 0 && last === size - 1) break;
    if (performance.now() - t > 15 * 60_000) throw new Error(`the server is not caught up after 15 min: tree ${health.treeSize}, index lag ${lag}, last indexed ${last}`);
    await sleep(500);
  }
  // Idle: under 3% of a core over one second, three times in a row (at most a minute).
  let quiet = 0;
  for (let i = 0; i < 60 && quiet < 3; i++) {
    const a = await serving.sample();
    await sleep(1000);
    const b = await serving.sample();
    if (b.size === 0) return;
    quiet = ServerProcesses.used(a, b) < 0.03 ? quiet + 1 : 0;
  }
  console.log(`server idle: index caught up to ${size}, last entry queryable, no CPU (waited ${s(performance.now() - t)})`);
}

async function runAudit(server: Server, serving: ServerProcesses, vkeyFile: string, stateFile: string): Promise<AuditRun> {
  const serverCpu0 = await serving.sample();
  const own0 = process.cpuUsage();
  const busy0 = machineBusySeconds();
  const t = performance.now();
  // GLASSLOG_BENCH_AUDIT_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the audit
  // (GLASSLOG_BENCH_NODE_ARGS profiles the server, see bench/lib.ts).
  const nodeArgs = (process.env.GLASSLOG_BENCH_AUDIT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, 'dist/cli/main.js', 'audit', server.url, '--log-key', vkeyFile, '--state', stateFile, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let cpu: number | undefined;
  const poll = setInterval(() => (cpu = cpuSeconds(child.pid) ?? cpu), 100);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const wallMs = performance.now() - t;
  clearInterval(poll);
  const serverCpu1 = await serving.sample();
  const own = process.cpuUsage(own0);
  const serverCpuS = serverCpu1.size > 0 ? ServerProcesses.used(serverCpu0, serverCpu1) : undefined;
  const others = otherCores(busy0, (cpu ?? 0) + (serverCpuS ?? 0) + (own.user + own.system) / 1e6, wallMs);
  let json: AuditJson | undefined;
  try {
    json = JSON.parse(stdout) as AuditJson;
  } catch {
    const lastLine = stdout.trim().split('\n').pop() ?? '';
    try {
      json = JSON.parse(lastLine) as AuditJson;
    } catch {
      json = undefined;
    }
  }
  return {
    wallMs,
    code,
    json,
    stdout,
    stderr,
    auditCpuS: cpu,
    serverCpuS,
    otherCores: others,
  };
}

function reportAudit(name: string, r: AuditRun, size: number, previous: number): void {
  const j = r.json;
  console.log(
    `${name}: ${s(r.wallMs)} wall (its own elapsedMs ${j?.elapsedMs ?? '?'}), exit ${r.code}, verified ${j?.verified}, treeSize ${j?.treeSize}, previousSize ${j?.previousSize}, entriesChecked ${j?.entriesChecked}, findings ${j?.findings?.length ?? '?'}; ` +
      `CPU: audit ≈ ${r.auditCpuS?.toFixed(1) ?? '?'} s, server ${r.serverCpuS?.toFixed(1) ?? '?'} s; other processes kept ${r.otherCores?.toFixed(2) ?? '?'} cores busy`
  );
  const problems: string[] = [];
  if (r.code !== 0) problems.push(`exit code ${r.code}`);
  if (!j) problems.push('no JSON on stdout');
  else {
    if (j.verified !== true) problems.push('not verified');
    if (j.treeSize !== size) problems.push(`treeSize ${j.treeSize}, expected ${size}`);
    if (j.previousSize !== previous) problems.push(`previousSize ${j.previousSize}, expected ${previous}`);
    if (j.entriesChecked !== size - previous) problems.push(`entriesChecked ${j.entriesChecked}, expected ${size - previous}`);
    if ((j.findings?.length ?? 0) > 0) problems.push(`findings: ${JSON.stringify(j.findings).slice(0, 1000)}`);
  }
  if (problems.length > 0) {
    console.log(`  !!! ${name}: ${problems.join('; ')}`);
    if (r.stderr.trim()) console.log(`  stderr: ${r.stderr.trim().slice(0, 2000)}`);
    if (!j && r.stdout.trim()) console.log(`  stdout: ${r.stdout.trim().slice(0, 2000)}`);
  }
}

interface Expected {
  readonly requests: number;
  readonly bundles: number;
  readonly tiles: number;
  /** Uncompressed body bytes: bundles, tiles and the checkpoint. */
  readonly bytes: number;
  readonly bundleBytes: number;
  readonly tileBytes: number;
  readonly checkpointBytes: number;
}

/** Bytes of entry bundle `b` at `width` (uint16 length + envelope per entry). */
function bundleBytes(lens: Uint16Array, b: number, width: number): number {
  let n = 0;
  for (let i = b * TILE_WIDTH; i < b * TILE_WIDTH + width; i++) n += 2 + lens[i]!;
  return n;
}

function expectation(bundles: TileCoord[], tiles: TileCoord[], lens: Uint16Array, checkpoint: string): Expected {
  const bb = bundles.reduce((n, t) => n + bundleBytes(lens, t.index, t.width), 0);
  const tb = tiles.reduce((n, t) => n + 32 * t.width, 0);
  const cb = Buffer.byteLength(checkpoint);
  return { requests: bundles.length + tiles.length + 1, bundles: bundles.length, tiles: tiles.length, bytes: bb + tb + cb, bundleBytes: bb, tileBytes: tb, checkpointBytes: cb };
}

/** Everything a first audit of a tree of `size` needs: every bundle, every tile, the checkpoint. */
function expectFull(size: number, lens: Uint16Array, checkpoint: string): Expected {
  const bundles: TileCoord[] = [];
  for (let b = 0; b * TILE_WIDTH < size; b++) bundles.push({ level: 'entries', index: b, width: tileWidthAt('entries', b, size) });
  return expectation(bundles, tilesForSize(size), lens, checkpoint);
}

/** What changed from `oldSize` to `newSize`: the bundles covering [old, new), newTiles, the checkpoint. */
function expectIncremental(oldSize: number, newSize: number, lens: Uint16Array, checkpoint: string): Expected {
  const bundles: TileCoord[] = [];
  for (let b = Math.floor(oldSize / TILE_WIDTH); b * TILE_WIDTH < newSize; b++) bundles.push({ level: 'entries', index: b, width: tileWidthAt('entries', b, newSize) });
  return expectation(bundles, newTiles(oldSize, newSize), lens, checkpoint);
}

/** Prints expected against fetched; returns whether they differ (only judged when `strict`). */
function printFetched(name: string, e: Expected, j: AuditJson | undefined, strict: boolean): boolean {
  const f = j?.fetched;
  console.log(
    `  ${name} needs ${e.requests} requests (${e.bundles} bundles, ${e.tiles} tiles, 1 checkpoint), ${e.bytes} bytes uncompressed (bundles ${e.bundleBytes}, tiles ${e.tileBytes}, checkpoint ${e.checkpointBytes})` +
      (f ? `; fetched ${f.requests} requests (${f.bundles} bundles, ${f.tiles} tiles), ${f.bytes} bytes` : '')
  );
  if (!f) return strict && j !== undefined;
  const diffs: string[] = [];
  if (f.bundles !== e.bundles) diffs.push(`bundles ${f.bundles} ≠ ${e.bundles}`);
  if (f.tiles !== e.tiles) diffs.push(`tiles ${f.tiles} ≠ ${e.tiles}`);
  if (f.requests !== e.requests) diffs.push(`requests ${f.requests} ≠ ${e.requests}`);
  if (f.bytes !== e.bytes) {
    const gz = f.bytes !== undefined && f.bytes < e.bytes && f.bytes >= e.tileBytes ? ' (smaller: compressed bundles counted as received?)' : '';
    diffs.push(`bytes ${f.bytes} ≠ ${e.bytes}${gz}`);
  }
  if (diffs.length === 0) {
    console.log(`  ${name}: fetched exactly what it needs`);
    return false;
  }
  console.log(`  ${strict ? '!!! MISMATCH' : 'differs'} (${name}): ${diffs.join('; ')}`);
  return strict;
}

/** Continues the planner for `count` entries, signs them, submits them per agent through the API. */
async function appendThroughApi(server: Server, planner: Planner, signers: Signers, from: number, count: number, lens: Uint16Array) {
  const plan = planner.plan(from, from + count, undefined);
  const signed = await signers.sign(plan, true);
  const byAgent = new Map<number, Array<{ i: number; body: { envelope: string; payloads?: Record<string, { salt: string; data: string }> } }>>();
  let runsContinued = 0;
  let closed = 0;
  let started = 0;
  const seen = new Set<number>();
  for (let i = 0; i < count; i++) {
    const env = signed.envs[i]!;
    const p = signed.payloads[i];
    const a = plan.agent[i]!;
    if (!seen.has(plan.run[i]!)) {
      seen.add(plan.run[i]!);
      if (plan.seq[i]! > 0) runsContinued++;
      else started++;
    }
    if (plan.kind[i] === CLOSE) closed++;
    const body = {
      envelope: encodeBase64(env),
      ...(p ? { payloads: Object.fromEntries(Object.entries(p).map(([name, v]) => [name, { salt: encodeBase64(v.salt), data: encodeBase64(v.data) }])) } : {}),
    };
    if (!byAgent.has(a)) byAgent.set(a, []);
    byAgent.get(a)!.push({ i, body });
  }
  const headers = { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' };
  const queue = [...byAgent.entries()];
  let requests = 0;
  const results = new Map<number, number>();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let job = queue.shift(); job; job = queue.shift()) {
        const [a, items] = job;
        const res = await fetch(`${server.url}/v1/agents/${agentId(a)}/entries`, { method: 'POST', headers, body: JSON.stringify({ entries: items.map((x) => x.body) }) });
        requests++;
        const text = await res.text();
        if (res.status !== 201) throw new Error(`POST entries of ${agentId(a)}: ${res.status} ${text.slice(0, 500)}`);
        const r = JSON.parse(text) as { results: Array<{ index: number; leafHash: string; duplicate: boolean }> };
        r.results.forEach((x, k) => {
          const item = items[k]!;
          if (x.duplicate) throw new Error(`entry ${item.i} of the append was taken as a duplicate`);
          if (!equalBytes(decodeBase64(x.leafHash, 'leafHash'), decodeEnvelope(signed.envs[item.i]!).leafHash)) throw new Error('leaf hash differs');
          results.set(x.index, item.i);
        });
      }
    })
  );
  // Envelope lengths at the indices the log gave them, for the expected bundle bytes.
  for (const [index, i] of results) {
    if (index < from || index >= from + count) throw new Error(`appended entry got index ${index}, outside [${from}, ${from + count})`);
    lens[index] = signed.envs[i]!.length;
  }
  if (results.size !== count) throw new Error(`${results.size} distinct indices for ${count} entries`);
  return { count, requests, runsContinued, closed, started };
}

if (isMainThread) {
  await main();
} else if ((workerData as { role: string }).role === 'sign') {
  signWorker();
} else {
  baselineWorker();
}

