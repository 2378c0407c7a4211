/**
 * The log's witnessing modes (LogOptions.witnessing), on every store, with a fake `cosign`
 * (no network): it appends real cosignature/v1 lines by three witness keys, keeps the
 * signature lines of the note it is given (as src/log/cosigning.ts does), and can be
 * scripted to withhold cosigners, to delay its answer, or to hold it until released.
 *
 * Fail-open: every checkpoint is published at once and gains its cosignatures later.
 * Fail-closed: a checkpoint is published (served, and 'published' writes answered) only
 * once a quorum of witnesses cosigned it; the integrated tree runs ahead of it meanwhile.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Hono } from 'hono';
import postgres from 'postgres';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { utf8 } from '../../src/core/encoding.js';
import { MalformedError, NotFoundError, PushbackError } from '../../src/core/errors.js';
import { EMPTY_ROOT } from '../../src/core/hash.js';
import { parseTlogProof } from '../../src/core/tlog-proof.js';
import { verifyConsistency } from '../../src/core/tree.js';
import { createLogApp } from '../../src/http/log-app.js';
import { Log, type AddResult, type LogOptions, type WitnessingOptions } from '../../src/log/log.js';
import { newCosignatureVerifier, newCosigner, type CosignatureVerifier, type Cosigner } from '../../src/note/cosignature.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { formatNote, newSigner, newVerifier, openNote, parseNote, type NoteSigner, type NoteVerifier } from '../../src/note/note.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/storage/embedded.js';
import { PostgresLogStore, schemaConnection } from '../../src/storage/postgres.js';
import type { StoredCheckpoint } from '../../src/storage/types.js';
import { openCheckpoint, refLeafHash, refRoot, verifyReceipt } from '../helpers/log.js';
import { postgresFactory, type StoreFactory, type StoreHandle } from '../helpers/stores.js';

let unique = 0;
const fresh = (label = 'entry') => utf8(`${label} ${unique++} ${Math.random()}`);
const many = (n: number, label = 'entry') => Array.from({ length: n }, () => fresh(label));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const TOKEN = 'witnessing-test-token';

/** Waits (polling) until `check` stops throwing. */
const eventually = (check: () => void | Promise<void>, timeout = 10_000) => vi.waitFor(check, { timeout, interval: 10 });

/** A promise whose outcome can be inspected without awaiting it. */
function track<T>(p: Promise<T>) {
  const t = { promise: p, settled: false, value: undefined as T | undefined, error: undefined as unknown };
  p.then(
    (v) => {
      t.settled = true;
      t.value = v;
    },
    (e: unknown) => {
      t.settled = true;
      t.error = e;
    }
  );
  return t;
}

/** Rejects if `p` takes longer than `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------
// The fake witnesses.

const NAMES = ['a', 'b', 'c'] as const;
/** Two of the three witnesses. */
const quorum = (cosigned: ReadonlySet<string>) => cosigned.size >= 2;

class FakeWitnesses {
  readonly cosigners = new Map<string, Cosigner>();
  readonly verifiers: CosignatureVerifier[] = [];
  /** Witnesses that do not answer (their cosignature is missing from the answer). */
  readonly withheld = new Set<string>();
  /** How long each cosign() call takes before answering. */
  delayMs = 0;
  /** Every checkpoint cosign() was called with, in call order. */
  readonly calls: StoredCheckpoint[] = [];
  /** cosign() calls that returned. */
  answered = 0;
  inFlight = 0;
  maxInFlight = 0;
  private gate: { promise: Promise<void>; open: () => void } | undefined;

  constructor() {
    for (const name of NAMES) {
      const k = generateKey(`${name}.witness.test`, ALG_COSIGNATURE_V1);
      this.cosigners.set(name, newCosigner(k.skey));
      this.verifiers.push(newCosignatureVerifier(k.vkey));
    }
  }

  /** Makes cosign() calls wait, from now on, until release(). */
  hold(): void {
    if (this.gate) return;
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    this.gate = { promise, open };
  }

  release(): void {
    const g = this.gate;
    this.gate = undefined;
    g?.open();
  }

  /** The WitnessingOptions.cosign function. */
  readonly cosign = async (cp: StoredCheckpoint): Promise<{ note: string; cosigned: ReadonlySet<string> }> => {
    this.calls.push(cp);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await sleep(this.delayMs);
      while (this.gate) await this.gate.promise;
      const { text, signatures } = parseNote(cp.note);
      const now = Math.floor(Date.now() / 1000);
      const names = NAMES.filter((n) => !this.withheld.has(n));
      const lines = names.map((n) => this.cosigners.get(n)!.cosign(text, now));
      // Like Cosigning.cosign: the note as given, then every cosignature collected.
      const note = lines.length === 0 ? cp.note : formatNote(text, [...signatures, ...lines]);
      return { note, cosigned: new Set(names) };
    } finally {
      this.inFlight--;
      this.answered++;
    }
  };

  withholdAll(): void {
    for (const n of NAMES) this.withheld.add(n);
  }

  /** The witnesses whose cosignature on `note` verifies; the log signature must verify too. */
  cosignersOf(note: string, log: NoteVerifier): string[] {
    const opened = openNote(note, [log, ...this.verifiers]);
    expect(opened.verified[0]?.name).toBe(log.name);
    return opened.verified.slice(1).map((s) => s.name.replace(/\.witness\.test$/, ''));
  }
}

/** The key names of a note's signature lines, in order, repeats included. */
const signatureLines = (note: string) => parseNote(note).signatures.map((s) => s.name);

// ---------------------------------------------------------------------------------------
// Stores: PGlite always, Postgres too when DATABASE_URL is set. Starting PGlite takes
// seconds, so this file starts one and gives each log a schema of its own in it (one log
// open at a time: the embedded engine admits a single connection).

const embedded = (() => {
  let dir: string | undefined;
  let started: Promise<EmbeddedPostgres> | undefined;
  let n = 0;
  const factory: StoreFactory = {
    name: 'pglite',
    async create() {
      dir ??= mkdtempSync(join(tmpdir(), 'glasslog-witnessing-'));
      started ??= startEmbeddedPostgres(join(dir, 'pglite'));
      const schema = `witnessing_${n++}`;
      return {
        async open() {
          const e = await started!;
          const sql = postgres({ ...e.connectionOptions, max: 1, onnotice: () => undefined, connection: schemaConnection(schema) });
          return new PostgresLogStore(sql, { schema, advisoryLock: false, singleSession: true, afterCommit: () => e.sync() });
        },
        async destroy() {
          // The whole database goes in stop().
        },
      };
    },
  };
  return {
    factory,
    async stop() {
      const s = started;
      started = undefined;
      await (await s)?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    },
  };
})();

function factories(): StoreFactory[] {
  const url = process.env.DATABASE_URL;
  return url ? [embedded.factory, postgresFactory(url)] : [embedded.factory];
}

afterAll(async () => {
  await embedded.stop();
});

// ---------------------------------------------------------------------------------------
// A log on a fresh store, with a signer that counts the checkpoints it signs.

interface Opened {
  readonly log: Log;
  readonly store: PostgresLogStore;
  readonly app: Hono;
}

type Tuning = Partial<Omit<LogOptions, 'store' | 'origin' | 'signer' | 'vkey' | 'witnessing'>>;

async function createWitnessedLog(factory: StoreFactory, witnessing: WitnessingOptions | undefined, tuning: Tuning = {}) {
  const origin = `glasslog.test/witnessing-${process.pid}-${unique++}`;
  const key = generateKey(origin);
  const base = newSigner(key.skey);
  let signed = 0;
  const signer: NoteSigner = {
    name: base.name,
    keyId: base.keyId,
    sign: (text) => {
      signed++;
      return base.sign(text);
    },
  };
  const handle: StoreHandle = await factory.create();
  let current: Opened | undefined;
  const opened = () => {
    if (!current) throw new Error('the test log is closed');
    return current;
  };
  const t = {
    origin,
    vkey: key.vkey,
    verifier: newVerifier(key.vkey),
    handle,
    /** Checkpoints the log signed so far (sign() calls on its key). */
    get signed() {
      return signed;
    },
    get log() {
      return opened().log;
    },
    /** The very store object the log writes to. */
    get store() {
      return opened().store;
    },
    get app() {
      return opened().app;
    },
    async open(w: WitnessingOptions | undefined = witnessing, tn: Tuning = tuning) {
      const store = await handle.open();
      let log: Log;
      try {
        log = await Log.open({ maxBatchDelayMs: 1, ...tn, store, origin, signer, vkey: key.vkey, witnessing: w });
      } catch (err) {
        await store.close().catch(() => undefined);
        throw err;
      }
      current = { log, store, app: createLogApp({ log, writeTokens: [TOKEN] }) };
    },
    async close() {
      const c = current;
      current = undefined;
      await c?.log.close();
    },
    /** A bare store on the same data, for a log that is closed. */
    async withStore<T>(fn: (s: PostgresLogStore) => Promise<T>): Promise<T> {
      const s = await handle.open();
      try {
        await s.migrate();
        return await fn(s);
      } finally {
        await s.close();
      }
    },
  };
  await t.open();
  return t;
}

type WitnessedLog = Awaited<ReturnType<typeof createWitnessedLog>>;

describe.each(factories())('Log witnessing on $name', (factory) => {
  const logs: WitnessedLog[] = [];
  const fakes: FakeWitnesses[] = [];
  async function newLog(witnessing: WitnessingOptions | undefined, tuning: Tuning = {}) {
    const t = await createWitnessedLog(factory, witnessing, tuning);
    logs.push(t);
    return t;
  }
  function newFake() {
    const f = new FakeWitnesses();
    fakes.push(f);
    return f;
  }
  afterEach(async () => {
    // Let held or withheld rounds finish, so close() does not wait for them.
    for (const f of fakes.splice(0)) {
      f.withheld.clear();
      f.delayMs = 0;
      f.release();
    }
    for (const t of logs.splice(0)) {
      await t.close().catch(() => undefined);
      await t.handle.destroy();
    }
  });

  describe('fail-open', () => {
    it('publishes at once, then serves and stores the cosignatures as they arrive', async () => {
      const fake = newFake();
      fake.hold(); // no witness answers until released
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: false, retryMs: 20 });
      const e = fresh();
      const [r] = await within(t.log.add([e], 'published'), 3000, "add(..., 'published') waited for the witnesses");
      expect(r!.index).toBe(0);
      expect(fake.answered).toBe(0);
      expect(fake.calls.length).toBeGreaterThanOrEqual(1); // a round is in flight, unanswered
      const bare = t.log.checkpoint();
      expect(bare.treeSize).toBe(1);
      expect(fake.cosignersOf(bare.note, t.verifier)).toEqual([]);
      expect(fake.cosignersOf(parseTlogProof(await t.log.receipt(0)).checkpoint, t.verifier)).toEqual([]);

      fake.release();
      await eventually(() => expect(fake.cosignersOf(t.log.checkpoint().note, t.verifier)).toEqual(['a', 'b', 'c']));
      const cp = t.log.checkpoint();
      expect(cp.treeSize).toBe(1);
      expect(parseNote(cp.note).text).toBe(parseNote(bare.note).text);
      expect(cp.note.startsWith(bare.note)).toBe(true);
      // Stored, and served over HTTP.
      expect(await t.store.checkpointAt(1)).toEqual(cp);
      expect(await t.store.latestCheckpoint()).toEqual(cp);
      expect(await (await t.app.request('/checkpoint')).text()).toBe(cp.note);
      // The earlier size-0 checkpoint got its cosignatures too, though no longer the latest.
      const cp0 = await t.store.checkpointAt(0);
      expect(fake.cosignersOf(cp0!.note, t.verifier)).toEqual(['a', 'b', 'c']);
      expect(await t.log.checkpointAt(0)).toEqual(cp0);
      // Receipts requested now carry them.
      const receipt = await t.log.receipt(0);
      const p = verifyReceipt(receipt, t.vkey, e);
      expect(p.cp.treeSize).toBe(1);
      expect(p.checkpoint).toBe(cp.note);
      expect(fake.cosignersOf(p.checkpoint, t.verifier)).toEqual(['a', 'b', 'c']);
      const [batch] = await t.log.receipts([0]);
      expect(batch).toBe(receipt);
      // A receipt of a fixed size may still gain cosignatures, so it is never cached as immutable.
      const res = await t.app.request('/v1/receipts/0?treeSize=1');
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-cache');
    });

    it('retries a round below the quorum without repeating cosignature lines', async () => {
      const fake = newFake();
      fake.withheld.add('b').add('c'); // only a answers: below the quorum of 2
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: false, retryMs: 10 });
      await t.log.add([fresh()], 'published');
      // Several rounds for size 1, each answered by a alone.
      await eventually(() => expect(fake.calls.filter((c) => c.treeSize === 1).length).toBeGreaterThanOrEqual(4));
      await eventually(() => expect(fake.answered).toBe(fake.calls.length));
      const cp = t.log.checkpoint();
      expect(cp.treeSize).toBe(1);
      expect(fake.cosignersOf(cp.note, t.verifier)).toEqual(['a']);
      // One line per key: a's cosignature is not appended again by every retry.
      expect(signatureLines(cp.note)).toEqual([t.origin, 'a.witness.test']);
      expect(signatureLines((await t.store.checkpointAt(1))!.note)).toEqual([t.origin, 'a.witness.test']);
    });

    it('after a restart keeps one line per cosigner on the latest checkpoint', async () => {
      const fake = newFake();
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: false, retryMs: 20 });
      await t.log.add([fresh()], 'published');
      await eventually(() => expect(fake.cosignersOf(t.log.checkpoint().note, t.verifier)).toEqual(['a', 'b', 'c']));
      const before = t.log.checkpoint();
      expect(signatureLines(before.note)).toEqual([t.origin, 'a.witness.test', 'b.witness.test', 'c.witness.test']);
      await t.close();
      const calls = fake.calls.length;
      await t.open();
      expect(t.log.checkpoint()).toEqual(before); // recovered as stored, cosignatures included
      // Whether or not the log asks the witnesses again, the checkpoint must not grow
      // repeated lines.
      await sleep(200);
      await eventually(() => expect(fake.answered).toBe(fake.calls.length));
      const after = t.log.checkpoint();
      expect(after.treeSize).toBe(1);
      expect(signatureLines(after.note), `${fake.calls.length - calls} round(s) after the restart`).toEqual([
        t.origin,
        'a.witness.test',
        'b.witness.test',
        'c.witness.test',
      ]);
      expect(signatureLines((await t.store.checkpointAt(1))!.note)).toEqual(signatureLines(after.note));
    });
  });

  describe('fail-closed', () => {
    it('a new log publishes the empty tree at once, without witnesses', async () => {
      const fake = newFake();
      fake.withholdAll();
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: true, retryMs: 20 });
      const cp = t.log.checkpoint();
      expect(cp.treeSize).toBe(0);
      const parsed = openCheckpoint(cp.note, t.vkey);
      expect(parsed.origin).toBe(t.origin);
      expect(parsed.rootHash).toEqual(EMPTY_ROOT);
      expect(await t.store.latestCheckpoint()).toEqual(cp);
      expect(await (await t.app.request('/checkpoint')).text()).toBe(cp.note);
      await sleep(100);
      expect(fake.calls).toEqual([]); // the empty tree needs no witness
      expect(t.log.checkpoint()).toEqual(cp);
    });

    it("answers 'published' writes only once the quorum cosigned, serving the previous checkpoint until then", async () => {
      const fake = newFake();
      fake.withheld.add('b').add('c'); // a alone: below the quorum
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: true, retryMs: 20 });
      const cp0 = t.log.checkpoint();
      expect(cp0.treeSize).toBe(0);
      const es = many(2);
      const pending = track(t.log.add(es, 'published'));
      await sleep(300);
      expect(pending.settled).toBe(false);
      expect(pending.error).toBeUndefined();
      // The log asked, and is still asking, for the checkpoint of size 2.
      expect(fake.calls.some((c) => c.treeSize === 2)).toBe(true);
      expect(openCheckpoint(fake.calls.find((c) => c.treeSize === 2)!.note, t.vkey).rootHash).toEqual(refRoot(es.map(refLeafHash)));
      // Nothing beyond size 0 is served or stored as published.
      expect(t.log.checkpoint()).toEqual(cp0);
      expect(await (await t.app.request('/checkpoint')).text()).toBe(cp0.note);
      await expect(t.log.tile(0, 0, 1)).rejects.toBeInstanceOf(NotFoundError);
      await expect(t.log.tile(0, 0, 2)).rejects.toBeInstanceOf(NotFoundError);
      await expect(t.log.bundle(0, 1)).rejects.toBeInstanceOf(NotFoundError);
      await expect(t.log.checkpointAt(2)).rejects.toBeInstanceOf(NotFoundError);
      await expect(t.log.receipt(0)).rejects.toBeInstanceOf(NotFoundError);
      await expect(t.log.consistencyProof(0, 2)).rejects.toBeInstanceOf(NotFoundError);
      await expect(t.log.findLeaf(refLeafHash(es[0]!))).rejects.toBeInstanceOf(NotFoundError);
      expect((await t.app.request('/tile/0/000.p/1')).status).toBe(404);
      expect((await t.app.request('/tile/entries/000.p/2')).status).toBe(404);
      expect(await t.store.latestCheckpoint()).toEqual(cp0);
      expect(await t.store.checkpointAt(2)).toBeNull();

      // 'sequenced' still answers at once.
      const [seq] = await within(t.log.add([fresh()], 'sequenced'), 1000, "add(..., 'sequenced')");
      expect(seq!.index).toBe(2);
      await sleep(50);
      expect(pending.settled).toBe(false);
      expect(t.log.checkpoint()).toEqual(cp0);

      // b answers again: the quorum is met and the waiting write is answered.
      fake.withheld.delete('b');
      const rs = await within(pending.promise, 5000, "add(..., 'published') once the quorum is met");
      expect(rs.map((r) => r.index)).toEqual([0, 1]);
      const cp = t.log.checkpoint();
      expect(cp.treeSize).toBeGreaterThanOrEqual(2);
      expect(fake.cosignersOf(cp.note, t.verifier)).toEqual(['a', 'b']);
      expect(await t.store.latestCheckpoint()).toEqual(cp);
      // Every checkpoint the store published beyond the empty tree carries the quorum.
      for (let s = 1; s <= cp.treeSize; s++) {
        const stored = await t.store.checkpointAt(s);
        if (stored) expect(fake.cosignersOf(stored.note, t.verifier).length).toBeGreaterThanOrEqual(2);
      }
      // Receipts carry the cosignatures.
      const receipts = await t.log.receipts([0, 1]);
      receipts.forEach((text, i) => {
        const p = verifyReceipt(text, t.vkey, es[i]!);
        expect(p.checkpoint).toBe(cp.note);
        expect(fake.cosignersOf(p.checkpoint, t.verifier)).toEqual(['a', 'b']);
      });
      expect(await t.log.tile(0, 0, 2)).toHaveLength(64);
      // And over HTTP: a write waiting for publication gets a cosigned receipt.
      const e = fresh();
      const res = await t.app.request('/v1/entries?wait=published', {
        method: 'POST',
        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/octet-stream' },
        body: new Uint8Array(e),
      });
      expect(res.status).toBe(201);
      const body = (await res.json()) as { index: number; receipt: string };
      const p = verifyReceipt(body.receipt, t.vkey, e);
      expect(p.cp.treeSize).toBeGreaterThan(body.index);
      expect(fake.cosignersOf(p.checkpoint, t.verifier).length).toBeGreaterThanOrEqual(2);
    });

    it('treeConsistencyProof covers the integrated tree beyond the published size, and no further', async () => {
      const fake = newFake();
      fake.withholdAll();
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: true, retryMs: 20 });
      const es = many(7);
      await t.log.add(es.slice(0, 3), 'sequenced');
      await eventually(() => expect(fake.calls.some((c) => c.treeSize === 3)).toBe(true));
      await t.log.add(es.slice(3), 'sequenced');
      await eventually(() => expect(fake.calls.some((c) => c.treeSize === 7)).toBe(true));
      expect(t.log.checkpoint().treeSize).toBe(0);
      const leaves = es.map(refLeafHash);
      const root = (n: number) => refRoot(leaves.slice(0, n));
      // The roots the log signed for the witnesses are the tree's.
      for (const c of fake.calls) expect(openCheckpoint(c.note, t.vkey).rootHash).toEqual(root(c.treeSize));
      for (const [o, n] of [[0, 7], [1, 7], [3, 7], [4, 7], [6, 7], [7, 7], [3, 5], [2, 3], [1, 2]] as const) {
        const proof = await t.log.treeConsistencyProof(o, n);
        verifyConsistency(o, n, proof, root(o), root(n));
      }
      // The published-tree API still stops at the published size.
      await expect(t.log.consistencyProof(3, 7)).rejects.toBeInstanceOf(NotFoundError);
      // Beyond the integrated tree, or backwards: refused.
      await expect(t.log.treeConsistencyProof(3, 8)).rejects.toBeInstanceOf(NotFoundError);
      await expect(t.log.treeConsistencyProof(0, 8)).rejects.toThrow(/beyond the integrated tree size 7/);
      await expect(t.log.treeConsistencyProof(5, 3)).rejects.toBeInstanceOf(MalformedError);
    });

    it('entries integrated but not yet cosigned survive a restart and are published after it', async () => {
      const fake = newFake();
      fake.withholdAll();
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: true, retryMs: 20 });
      const es = many(3);
      await t.log.add(es, 'sequenced');
      await eventually(() => expect(fake.calls.some((c) => c.treeSize === 3)).toBe(true));
      expect(t.log.checkpoint().treeSize).toBe(0);
      await t.close();
      // Stored: the tree of 3, the published checkpoint of 0. Two more entries are
      // sequenced behind the log's back, so the restart has to integrate them too.
      const more = many(2, 'behind');
      await t.withStore(async (s) => {
        expect(await s.state()).toMatchObject({ nextIndex: 3, treeSize: 3 });
        expect((await s.latestCheckpoint())?.treeSize).toBe(0);
        expect(await s.sequence(more)).toBe(3);
      });
      const all = [...es, ...more];

      // Restart with the witnesses still down: nothing new is published.
      let first = fake.calls.length;
      await t.open();
      expect(t.log.checkpoint().treeSize).toBe(0);
      await eventually(() => expect(fake.calls.slice(first).some((c) => c.treeSize === 5)).toBe(true));
      await sleep(100);
      expect(t.log.checkpoint().treeSize).toBe(0);
      expect((await t.store.latestCheckpoint())?.treeSize).toBe(0);
      expect((await t.store.state()).treeSize).toBe(5);
      const waiting = track(t.log.add([es[0]!], 'published')); // a duplicate, unpublished
      await sleep(100);
      expect(waiting.settled).toBe(false);
      await t.close();
      expect(waiting.error).toBeInstanceOf(PushbackError);

      // Restart with working witnesses: a cosigned checkpoint covering all five.
      fake.withheld.clear();
      first = fake.calls.length;
      await t.open();
      await eventually(() => expect(t.log.checkpoint().treeSize).toBe(5));
      expect(fake.calls[first]?.treeSize).toBe(5);
      const cp = t.log.checkpoint();
      expect(fake.cosignersOf(cp.note, t.verifier)).toEqual(['a', 'b', 'c']);
      expect(openCheckpoint(cp.note, t.vkey).rootHash).toEqual(refRoot(all.map(refLeafHash)));
      expect(await t.store.latestCheckpoint()).toEqual(cp);
      for (let i = 0; i < all.length; i++) {
        const p = verifyReceipt(await t.log.receipt(i), t.vkey, all[i]!);
        expect(p.checkpoint).toBe(cp.note);
      }
      // The dedup window knows them, and 'published' is answered at once.
      const [dup] = await within(t.log.add([es[1]!], 'published'), 1000, 'a published duplicate');
      expect(dup).toMatchObject({ index: 1, duplicate: true });
    });

    it('close() while waiting for the quorum returns promptly and answers waiting writes with 503', async () => {
      const fake = newFake();
      fake.withholdAll();
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: true }); // default retryMs
      const pending = track(t.log.add([fresh()], 'published'));
      const http = Promise.resolve(t.app.request('/v1/entries', {
        method: 'POST',
        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/octet-stream' },
        body: new Uint8Array(fresh()),
      }));
      await eventually(() => expect(fake.calls.some((c) => c.treeSize >= 1)).toBe(true));
      await sleep(50);
      expect(pending.settled).toBe(false);
      const t0 = performance.now();
      await within(t.close(), 10_000, 'close()');
      expect(performance.now() - t0).toBeLessThan(6000);
      await expect(within(pending.promise, 1000, 'the waiting add()')).rejects.toBeInstanceOf(PushbackError);
      const res = await within(http, 1000, 'the waiting HTTP write');
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      await t.withStore(async (s) => expect((await s.latestCheckpoint())?.treeSize).toBe(0));
    });

    it('close() during a slow witness round returns within about 6 s', async () => {
      const fake = newFake();
      fake.withholdAll();
      fake.delayMs = 2000; // like witnesses that only time out
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed: true, retryMs: 20 });
      const pending = track(t.log.add([fresh()], 'published'));
      await eventually(() => expect(fake.calls.some((c) => c.treeSize >= 1)).toBe(true));
      const t0 = performance.now();
      await within(t.close(), 15_000, 'close()');
      expect(performance.now() - t0).toBeLessThan(6000);
      await expect(within(pending.promise, 1000, 'the waiting add()')).rejects.toBeInstanceOf(PushbackError);
    });
  });

  describe.each([
    ['fail-closed', true],
    ['fail-open', false],
  ] as const)('rounds, %s', (_, failClosed) => {
    it('coalesce under 20 concurrent adds: never overlapping, no more rounds than checkpoints, sizes increasing', async () => {
      const fake = newFake();
      fake.delayMs = 15;
      // One entry per sequencing batch, so the log signs many checkpoints quickly.
      const t = await newLog({ cosign: fake.cosign, quorum, failClosed, retryMs: 20 }, { maxBatchSize: 1, maxBatchDelayMs: 0 });
      const es = many(20, 'concurrent');
      const rs: AddResult[][] = await within(
        Promise.all(es.map((e) => t.log.add([e], 'published'))),
        20_000,
        '20 concurrent adds'
      );
      expect(rs.map((r) => r[0]!.index).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      await eventually(() => {
        expect(t.log.checkpoint().treeSize).toBe(20);
        expect(fake.cosignersOf(t.log.checkpoint().note, t.verifier)).toEqual(['a', 'b', 'c']);
        expect(fake.answered).toBe(fake.calls.length);
      });
      const sizes = fake.calls.map((c) => c.treeSize);
      expect(fake.maxInFlight).toBe(1);
      for (let i = 1; i < sizes.length; i++) expect(sizes[i], `sizes sent: ${sizes.join(' ')}`).toBeGreaterThan(sizes[i - 1]!);
      expect(sizes.at(-1)).toBe(20);
      expect(fake.calls.length, `${sizes.length} rounds for ${t.signed} checkpoints signed`).toBeLessThanOrEqual(t.signed);
      // Each round was for a checkpoint the log signed over its tree.
      const leaves = new Map(rs.map((r, i) => [r[0]!.index, refLeafHash(es[i]!)]));
      const ordered = Array.from({ length: 20 }, (_, i) => leaves.get(i)!);
      for (const c of fake.calls) expect(openCheckpoint(c.note, t.vkey).rootHash).toEqual(refRoot(ordered.slice(0, c.treeSize)));
      if (failClosed) {
        // Every checkpoint published beyond the empty tree was cosigned by a quorum.
        for (let s = 1; s <= 20; s++) {
          const stored = await t.store.checkpointAt(s);
          if (stored) expect(fake.cosignersOf(stored.note, t.verifier).length).toBeGreaterThanOrEqual(2);
        }
      }
    });
  });
});
