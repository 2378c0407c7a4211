/**
 * The crash test (spec/lifecycle.md "Guarantees"): kill the real server with SIGKILL at a
 * random moment under concurrent load, many times, restart it on the same data, and check:
 *
 *  - every acknowledged entry (wait=sequenced: an index; wait=published: an index and a
 *    receipt) is in the tree at its index, byte for byte;
 *  - nothing is in the tree that no client submitted;
 *  - every tile and bundle served before the crash (full or partial) is byte-identical after;
 *  - the new checkpoint is consistent with every checkpoint observed before (from
 *    /checkpoint and from receipts), by the server's consistency proof verified with the
 *    independent client and by the root of that prefix of the audited leaves; equal sizes
 *    have equal roots; published sizes never shrink;
 *  - the independent audit passes;
 *  - retried writes (the ones the kill cut off) and resubmitted acknowledged entries get
 *    their stored index back as duplicates (the dedup window is rebuilt on start).
 *
 * Some restarts are themselves killed during start-up (recovery) before the real restart.
 * At least 8 kill cycles on embedded PGlite (one data directory throughout), and 8 on the
 * Postgres at $DATABASE_URL when it is set ($E2E_CRASH_CYCLES overrides the count for a
 * longer soak). Needs `npm run build` first.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, ServerProcess, dropSchema, killAllServers, removeDataDir, tempDataDir, uniqueSchema, type ServerOptions } from './server.js';
import {
  HASH_SIZE,
  TILE_WIDTH,
  audit,
  fetchBundle,
  fetchTile,
  fetchVerifiedCheckpoint,
  hex,
  httpRequest,
  leafHash,
  parseTlogProof,
  parseVerifierKey,
  rootsAtSizes,
  tilePath,
  verifyConsistencyWithServer,
  verifyInclusion,
  verifyTlogProof,
  type Verifier,
} from './tlog-client.js';
import { postBatch, postEntry, WriteError, type Wait, type WriteResult } from './writes.js';

const KILL_CYCLES = Number(process.env.E2E_CRASH_CYCLES ?? 8);
const WRITERS = 4;
const MAX_VIOLATIONS_SHOWN = 20;
/** Per cycle, the chance of also killing the restarted server during its start-up. */
const STARTUP_KILL_PROBABILITY = 0.3;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const randInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

interface Observed {
  readonly size: number;
  readonly root: Buffer;
  readonly cycle: number;
  readonly source: 'checkpoint' | 'receipt' | 'restart';
}

interface CycleStats {
  cycle: number;
  killAfterMs: number;
  startMs: number;
  startRetries: number;
  batches: number;
  acked: number;
  ackedSequenced: number;
  ackedPublished: number;
  failedByKill: number;
  sizeBefore: number;
  sizeAfter: number;
  verifyMs: number;
  /** After the restart: resubmitted entries already in the tree, and not. */
  resubmittedStored: number;
  resubmittedNew: number;
  /** Entries in the restarted tree that no answer had acknowledged (cut off by the kill, yet stored). */
  storedUnanswered: number;
  /** Restarts killed during start-up before this cycle's real restart (when, in ms after spawn). */
  startupKills: string[];
}

class CrashHarness {
  /** index → the bytes acknowledged at that index. */
  readonly acked = new Map<number, Buffer>();
  /** Leaf hashes (hex) of every entry ever submitted, acknowledged or not. */
  readonly submitted = new Set<string>();
  /** Every checkpoint observed, by size. */
  readonly observed = new Map<number, Observed>();
  /** Every tile and bundle fetched (bundles decompressed), by path. */
  readonly served = new Map<string, Buffer>();
  readonly violations: string[] = [];
  readonly stats: CycleStats[] = [];
  private readonly verifiedNotes = new Map<string, { size: number; root: Buffer }>();
  /** The largest size /checkpoint ever answered: published sizes only grow. */
  latestPublished = 0;
  cycle = 0;
  /** Writes the kill cut off, unanswered: a client would retry them. */
  readonly cut: Buffer[][] = [];

  constructor(readonly verifier: Verifier) {}

  violation(msg: string): void {
    this.violations.push(`cycle ${this.cycle}: ${msg}`);
  }

  observe(size: number, root: Buffer, source: Observed['source']): void {
    const prev = this.observed.get(size);
    if (prev) {
      if (!prev.root.equals(root)) this.violation(`two roots for tree size ${size}: ${hex(prev.root)} (cycle ${prev.cycle}, ${prev.source}) and ${hex(root)} (${source})`);
      return;
    }
    this.observed.set(size, { size, root, cycle: this.cycle, source });
  }

  observeLatest(size: number, root: Buffer, source: Observed['source']): void {
    if (size < this.latestPublished) this.violation(`/checkpoint went back from size ${this.latestPublished} to ${size} (${source})`);
    this.latestPublished = Math.max(this.latestPublished, size);
    this.observe(size, root, source);
  }

  /** Records a resource; if it was seen before, it must be byte-identical. */
  serve(path: string, bytes: Buffer, when: string): void {
    const prev = this.served.get(path);
    if (prev) {
      if (!prev.equals(bytes)) this.violation(`${path} changed (${when}): ${prev.length} bytes → ${bytes.length} bytes, first difference at ${firstDiff(prev, bytes)}`);
      return;
    }
    this.served.set(path, bytes);
  }

  /** Records the acknowledgements of one write; checks what can be checked right away. */
  ack(entries: readonly Buffer[], results: readonly WriteResult[], wait: Wait, stats: CycleStats, resubmitted = false): void {
    results.forEach((r, i) => {
      const e = entries[i]!;
      if (r.leafHash !== leafHash(e).toString('base64')) this.violation(`index ${r.index}: answer's leaf hash is not the entry's`);
      if (r.duplicate && !resubmitted) this.violation(`index ${r.index}: a fresh random entry was answered as a duplicate`);
      const had = this.acked.get(r.index);
      if (had && !had.equals(e)) this.violation(`index ${r.index} acknowledged for two different entries`);
      this.acked.set(r.index, e);
      stats.acked++;
      if (wait === 'sequenced') stats.ackedSequenced++;
      else stats.ackedPublished++;
      if (r.receipt !== undefined) {
        try {
          // Every receipt: parse, verify the (cached) checkpoint signature and the inclusion proof.
          const cpKey = r.receipt.slice(r.receipt.indexOf('\n\n') + 2);
          let cp = this.verifiedNotes.get(cpKey);
          if (!cp) {
            const { checkpoint } = verifyTlogProof(r.receipt, this.verifier, leafHash(e), r.index);
            cp = { size: checkpoint.size, root: checkpoint.root };
            this.verifiedNotes.set(cpKey, cp);
            this.observe(cp.size, cp.root, 'receipt');
          } else {
            // Same signed checkpoint, already verified: only the inclusion proof is new.
            const receipt = parseTlogProof(r.receipt);
            if (receipt.index !== r.index) throw new Error(`receipt index ${receipt.index}`);
            verifyInclusion(r.index, cp.size, leafHash(e), receipt.proof, cp.root);
          }
        } catch (err) {
          this.violation(`receipt for index ${r.index} does not verify: ${String(err)}`);
        }
      }
    });
  }

  /** One load phase: concurrent writers and a checkpoint/tile poller, then SIGKILL. */
  async loadAndKill(server: ServerProcess, token: string, stats: CycleStats): Promise<void> {
    const url = server.url;
    let killed = false;
    const writer = async () => {
      while (!killed) {
        const n = Math.random() < 0.1 ? 1 : randInt(1, 300);
        const entries = Array.from({ length: n }, () => randomBytes(randInt(200, 312)));
        for (const e of entries) this.submitted.add(hex(leafHash(e)));
        const wait: Wait = Math.random() < 0.5 ? 'published' : 'sequenced';
        const format = Math.random() < 0.5 ? 'json' : 'binary';
        try {
          let results: WriteResult[];
          if (n === 1 && Math.random() < 0.5) results = [await postEntry(url, token, entries[0]!, { wait, format })];
          else results = await postBatch(url, token, entries, { wait, format });
          stats.batches++;
          this.ack(entries, results, wait, stats); // even if the kill was already decided: this answer arrived
        } catch (err) {
          if (killed) {
            stats.failedByKill++;
            this.cut.push(entries);
            return;
          }
          this.violation(`write failed while the server was up: ${err instanceof WriteError ? err.message : String(err)}`);
          await sleep(50);
        }
      }
    };
    let latest = { size: 0 };
    // Polls /checkpoint as fast as it can: every checkpoint seen must stay consistent.
    const checkpointPoller = async () => {
      while (!killed) {
        try {
          const cp = await fetchVerifiedCheckpoint(url, this.verifier);
          this.observeLatest(cp.size, cp.root, 'checkpoint');
          if (cp.size > latest.size) latest = cp;
        } catch (err) {
          if (killed) return;
          this.violation(`GET /checkpoint failed while the server was up: ${String(err)}`);
        }
        await sleep(randInt(2, 10));
      }
    };
    // Fetches tiles and bundles as they become full, and the partial ones of the latest checkpoint.
    const nextFull = { tile0: 0, tile1: 0 };
    let lastPartial = -1;
    const tileFetcher = async () => {
      while (!killed) {
        const size = latest.size;
        try {
          const full0 = Math.floor(size / TILE_WIDTH);
          for (; nextFull.tile0 < full0 && !killed; nextFull.tile0++) {
            const i = nextFull.tile0;
            const [tile, bundle] = await Promise.all([fetchTile(url, 0, i, TILE_WIDTH), fetchBundle(url, i, TILE_WIDTH, i % 2 === 0)]);
            this.serve(tilePath(0, i, TILE_WIDTH), tile, 'while polling');
            this.serve(tilePath('entries', i, TILE_WIDTH), bundle.raw, 'while polling');
            bundle.entries.forEach((e, j) => {
              if (!leafHash(e).equals(tile.subarray(j * HASH_SIZE, (j + 1) * HASH_SIZE))) this.violation(`bundle ${i} entry ${j} does not match tile/0/${i}`);
            });
          }
          const full1 = Math.floor(size / TILE_WIDTH ** 2);
          for (; nextFull.tile1 < full1 && !killed; nextFull.tile1++) {
            this.serve(tilePath(1, nextFull.tile1, TILE_WIDTH), await fetchTile(url, 1, nextFull.tile1, TILE_WIDTH), 'while polling');
          }
          const w = size % TILE_WIDTH;
          if (w > 0 && size !== lastPartial && !killed) {
            lastPartial = size;
            const [tile, bundle] = await Promise.all([fetchTile(url, 0, full0, w), fetchBundle(url, full0, w)]);
            this.serve(tilePath(0, full0, w), tile, 'while polling');
            this.serve(tilePath('entries', full0, w), bundle.raw, 'while polling');
            bundle.entries.forEach((e, j) => {
              if (!leafHash(e).equals(tile.subarray(j * HASH_SIZE, (j + 1) * HASH_SIZE))) this.violation(`partial bundle ${full0}.p/${w} entry ${j} does not match its tile`);
            });
          }
        } catch (err) {
          if (killed) return;
          this.violation(`tile read failed while the server was up: ${String(err)}`);
        }
        await sleep(randInt(5, 20));
      }
    };
    const killer = async () => {
      await sleep(stats.killAfterMs);
      killed = true;
      await server.kill();
    };
    await Promise.all([killer(), checkpointPoller(), tileFetcher(), ...Array.from({ length: WRITERS }, writer)]);
    if (/stopped accepting writes/.test(server.output())) this.violation(`the server hit a fatal error before the kill:\n${server.output().slice(-2000)}`);
  }

  /** Every acknowledged entry is at its index in `entries` (the audited tree). */
  checkAcked(entries: readonly Buffer[], when: string): void {
    let missing = 0;
    for (const [i, bytes] of this.acked) {
      const got = entries[i];
      if (!got || !got.equals(bytes)) {
        if (missing++ < 5) this.violation(`acknowledged entry ${i} ${got ? 'has different bytes' : 'is missing'} ${when} (tree size ${entries.length})`);
      }
    }
    if (missing > 5) this.violation(`… ${missing} acknowledged entries missing or different in all`);
  }

  /** After a restart: everything the guarantees promise. */
  async verifyRestart(server: ServerProcess, token: string, stats: CycleStats): Promise<void> {
    const url = server.url;
    const health = await httpRequest(`${url}/healthz`);
    if (health.status !== 200) this.violation(`/healthz ${health.status} after restart: ${health.body.toString('utf8')}`);
    const cp = await fetchVerifiedCheckpoint(url, this.verifier);
    stats.sizeAfter = cp.size;
    if (cp.size < this.latestPublished) this.violation(`after restart the checkpoint has size ${cp.size}, below the ${this.latestPublished} published before`);
    let maxAcked = -1;
    for (const i of this.acked.keys()) maxAcked = Math.max(maxAcked, i);
    if (maxAcked >= cp.size) this.violation(`entry ${maxAcked} was acknowledged but the restarted log's checkpoint has size ${cp.size}`);

    // The full independent audit, with the consistency proof from the largest checkpoint seen.
    let previous: Observed | undefined;
    for (const o of this.observed.values()) if (o.size <= cp.size && (!previous || o.size > previous.size)) previous = o;
    const a = await audit(url, this.verifier, previous);
    if (a.checkpoint.size < cp.size) this.violation(`audit saw size ${a.checkpoint.size} after ${cp.size}`);
    this.observeLatest(cp.size, cp.root, 'restart');
    this.observeLatest(a.checkpoint.size, a.checkpoint.root, 'restart');

    // Every acknowledged entry at its index.
    this.checkAcked(a.entries, 'after restart');
    stats.storedUnanswered = a.entries.length - [...this.acked.keys()].filter((i) => i < a.entries.length).length;
    // Nothing nobody submitted.
    let foreign = 0;
    a.leafHashes.forEach((h, i) => {
      if (!this.submitted.has(hex(h)) && foreign++ < 5) this.violation(`entry ${i} in the tree was never submitted`);
    });

    // Every resource served before is byte-identical (full ones are all in the audit; partial
    // paths of older sizes are fetched again).
    for (const path of [...this.served.keys()]) {
      let now = a.resources.get(path);
      if (!now) {
        const r = await httpRequest(`${url}/${path}`, { headers: { 'accept-encoding': 'identity' } });
        if (r.status !== 200) {
          this.violation(`${path}, served before the crash, is now HTTP ${r.status}`);
          continue;
        }
        now = r.body;
      }
      this.serve(path, now, 'after restart');
    }
    for (const [path, bytes] of a.resources) this.serve(path, bytes, 'audit after restart');

    // Consistency with every checkpoint ever observed: by the leaves, and by the server's proof.
    const sizes = [...this.observed.keys()].filter((s) => s <= a.checkpoint.size);
    for (const s of this.observed.keys()) if (s > a.checkpoint.size) this.violation(`a checkpoint of size ${s} was observed, the restarted log is at ${a.checkpoint.size}: rewound`);
    const roots = rootsAtSizes(a.leafHashes, sizes);
    for (const s of sizes) {
      const o = this.observed.get(s)!;
      if (!roots.get(s)!.equals(o.root)) this.violation(`checkpoint of size ${s} (cycle ${o.cycle}, ${o.source}) is not a prefix of the restarted tree`);
    }
    // Proofs from every size seen in the cycle just ended, and a sample of older ones.
    const older = sizes.filter((s) => this.observed.get(s)!.cycle < this.cycle);
    const sample = new Set([...sizes.filter((s) => this.observed.get(s)!.cycle === this.cycle), ...older.sort(() => Math.random() - 0.5).slice(0, 25)]);
    for (const s of sample) {
      try {
        await verifyConsistencyWithServer(url, this.observed.get(s)!, a.checkpoint);
      } catch (err) {
        this.violation(`consistency ${s} → ${a.checkpoint.size}: ${String(err)}`);
      }
    }

    // Clients retry the writes the crash cut off, and some resubmit acknowledged entries. The
    // dedup window is rebuilt on start (spec/lifecycle.md "Deduplication"), so bytes already in
    // the tree get their index back (duplicate: true), and only the rest is appended.
    const inTree = new Map<string, number>();
    a.leafHashes.forEach((lh, i) => inTree.set(hex(lh), i));
    const ackedIdx = [...this.acked.keys()].sort(() => Math.random() - 0.5).slice(0, 20);
    const resubmit = [...this.cut.splice(0), ...(ackedIdx.length ? [ackedIdx.map((i) => this.acked.get(i)!)] : [])];
    for (const entries of resubmit) {
      const results = await postBatch(url, token, entries, { wait: 'sequenced', format: 'binary' });
      results.forEach((r, k) => {
        const at = inTree.get(hex(leafHash(entries[k]!)));
        if (at !== undefined) {
          stats.resubmittedStored++;
          if (!r.duplicate || r.index !== at) this.violation(`resubmitting the bytes stored at index ${at} after the restart gave index ${r.index}, duplicate ${r.duplicate}`);
        } else {
          stats.resubmittedNew++;
          if (r.duplicate) this.violation(`resubmitting bytes not in the tree after the restart gave duplicate index ${r.index}`);
        }
      });
      this.ack(entries, results, 'sequenced', stats, true);
    }
  }
}

function firstDiff(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

afterAll(async () => {
  await killAllServers();
});

function crashScenario(name: 'pglite' | 'postgres', dbUrl: string | undefined) {
  describe.skipIf(name === 'postgres' && !dbUrl)(`crash test on ${name}: SIGKILL under load, ${KILL_CYCLES} times`, { timeout: Math.max(150_000, 30_000 + KILL_CYCLES * 15_000) }, () => {
    // Created when the test runs (not when a skipped or filtered suite is collected).
    let dataDir: string | undefined;
    let schema: string | undefined;
    const setup = (): ServerOptions => {
      dataDir = tempDataDir(`crash-${name}`);
      schema = dbUrl ? uniqueSchema('crash') : undefined;
      return { dataDir, ...(dbUrl ? { databaseUrl: dbUrl, schema } : {}) };
    };

    afterAll(async () => {
      await killAllServers();
      if (dbUrl && schema) await dropSchema(dbUrl, schema);
      if (dataDir) removeDataDir(dataDir);
    });

    it('keeps every acknowledged entry, never changes a served tile, and stays consistent', async () => {
      const opts = setup();
      const t0 = performance.now();
      let { server, retries } = await ServerProcess.startRetrying(opts);
      const verifier = parseVerifierKey(server.vkey);
      const token = server.token;
      const h = new CrashHarness(verifier);
      const firstStart = server.startMs;
      let lastStartMs = 2000;
      let log = '';
      try {
        for (let cycle = 1; cycle <= KILL_CYCLES; cycle++) {
          h.cycle = cycle;
          const stats: CycleStats = {
            cycle, killAfterMs: randInt(50, 800), startMs: 0, startRetries: 0, batches: 0, acked: 0, ackedSequenced: 0,
            ackedPublished: 0, failedByKill: 0, sizeBefore: h.latestPublished, sizeAfter: 0, verifyMs: 0, startupKills: [], resubmittedStored: 0, resubmittedNew: 0, storedUnanswered: 0,
          };
          h.stats.push(stats);
          await h.loadAndKill(server, token, stats);
          log = server.output();
          // Sometimes also crash the restart itself (during recovery), once or twice.
          stats.startupKills = [];
          while (stats.startupKills.length < 2 && Math.random() < STARTUP_KILL_PROBABILITY) {
            const at = randInt(50, Math.max(200, Math.round(lastStartMs)));
            const k = await ServerProcess.killDuringStart(opts, at);
            stats.startupKills.push(`${at} ms${k.listened ? ' (was listening)' : ''}`);
            log = k.output;
          }
          ({ server, retries } = await ServerProcess.startRetrying(opts));
          lastStartMs = server.startMs;
          stats.startMs = server.startMs;
          stats.startRetries = retries;
          const tv = performance.now();
          await h.verifyRestart(server, token, stats);
          stats.verifyMs = performance.now() - tv;
          if (h.violations.length > 0) break; // report what we have, with the logs
        }
        // The entries resubmitted after the last restart: published, audited, in place.
        let maxAcked = -1;
        for (const i of h.acked.keys()) maxAcked = Math.max(maxAcked, i);
        for (let t = Date.now(); (await fetchVerifiedCheckpoint(server.url, verifier)).size <= maxAcked; ) {
          if (Date.now() - t > 15_000) throw new Error(`entry ${maxAcked} was acknowledged but is still not published after 15 s`);
          await sleep(20);
        }
        const last = await audit(server.url, verifier, [...h.observed.values()].reduce((m, o) => (o.size > m.size ? o : m)));
        h.checkAcked(last.entries, 'at the end');
        const stopped = await server.stop();
        if (stopped.code !== 0 || stopped.forced) h.violation(`graceful stop after the last cycle: ${JSON.stringify(stopped)}`);
      } catch (err) {
        throw new Error(`${String(err)}\n--- current server output ---\n${server.output().slice(-4000)}\n--- previous server output ---\n${log.slice(-4000)}`);
      }

      const lines = h.stats.map(
        (s) =>
          `cycle ${s.cycle}: kill at ${s.killAfterMs} ms, ${s.batches} writes answered (${s.acked} entries: ${s.ackedSequenced} sequenced, ${s.ackedPublished} published), ` +
          `${s.failedByKill} cut by the kill; size ${s.sizeBefore} → ${s.sizeAfter}; ${s.storedUnanswered} stored unanswered; restart ${s.startMs.toFixed(0)} ms${s.startRetries ? ` (${s.startRetries} lock retries)` : ''}${s.startupKills.length ? ` after killing start-up at ${s.startupKills.join(', ')}` : ''}; verify ${s.verifyMs.toFixed(0)} ms; resubmitted ${s.resubmittedStored} stored + ${s.resubmittedNew} new`,
      );
      const unacked = h.stats.reduce((n, s) => n + s.storedUnanswered, 0);
      console.log(
        `crash test on ${name}: first start ${firstStart.toFixed(0)} ms, total ${((performance.now() - t0) / 1000).toFixed(1)} s, ` +
          `${h.acked.size} acknowledged entries, ${unacked} stored without an answer, ${h.observed.size} checkpoints observed, ${h.served.size} resources compared\n  ${lines.join('\n  ')}`,
      );
      expect(h.violations.slice(0, MAX_VIOLATIONS_SHOWN), `${h.violations.length} violations; last server output:\n${log.slice(-3000)}`).toEqual([]);
      expect(h.stats.length).toBe(KILL_CYCLES);
    });
  });
}

crashScenario('pglite', undefined);
crashScenario('postgres', DATABASE_URL);
