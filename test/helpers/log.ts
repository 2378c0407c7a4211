/**
 * A Log and its HTTP app on a fresh store with a freshly generated key, for tests.
 *
 *   const t = await createTestLog(factory);
 *   await t.app.request('/checkpoint');
 *   await t.reopen();   // close the log and open it again on the same data
 *   await t.cleanup();  // close and delete the data
 *
 * `log` and `app` change on reopen(); always read them through the returned object.
 */
import { createHash } from 'node:crypto';
import { parseCheckpoint, type Checkpoint } from '../../src/core/checkpoint.js';
import { leafHash } from '../../src/core/hash.js';
import { parseTlogProof, type TlogProof } from '../../src/core/tlog-proof.js';
import { verifyInclusion } from '../../src/core/tree.js';
import type { Hono } from 'hono';
import { createLogApp, type LogAppOptions } from '../../src/http/log-app.js';
import { Log, type LogOptions } from '../../src/log/log.js';
import { generateKey, newSigner, newVerifier, openNote } from '../../src/note/index.js';
import type { PostgresLogStore } from '../../src/storage/postgres.js';
import type { StoreFactory, StoreHandle } from './stores.js';

export type TestLogTuning = Partial<Omit<LogOptions, 'store' | 'origin' | 'signer' | 'vkey'>>;
export type TestAppTuning = Partial<Omit<LogAppOptions, 'log'>>;

export interface TestLogOptions {
  /** Checkpoint origin and key name; default a unique "glasslog.test/…". */
  readonly origin?: string;
  readonly log?: TestLogTuning;
  readonly app?: TestAppTuning;
}

export interface TestLog {
  readonly origin: string;
  readonly vkey: string;
  readonly skey: string;
  /** A bearer token accepted by the app. */
  readonly token: string;
  readonly handle: StoreHandle;
  /** The current log (replaced by reopen()). Throws while closed. */
  readonly log: Log;
  /** The current app (replaced by reopen()). Throws while closed. */
  readonly app: Hono;
  /** Closes the log (and its store) without deleting the data. Idempotent. */
  close(): Promise<void>;
  /** Closes the log if open, then opens a new Log and app on the same data. */
  reopen(tuning?: { log?: TestLogTuning; app?: TestAppTuning }): Promise<TestLog>;
  /** Opens a bare store on the same data (migrated), e.g. to sequence behind the log's back. */
  openStore(): Promise<PostgresLogStore>;
  /** Closes everything and deletes the data. Idempotent. */
  cleanup(): Promise<void>;
}

let counter = 0;

export async function createTestLog(factory: StoreFactory, opts: TestLogOptions = {}): Promise<TestLog> {
  const origin = opts.origin ?? `glasslog.test/${process.pid}-${Date.now().toString(36)}-${counter++}`;
  const { skey, vkey } = generateKey(origin);
  const signer = newSigner(skey);
  const token = `test-token-${Math.random().toString(36).slice(2)}`;
  const handle = await factory.create();

  let current: { log: Log; app: Hono } | undefined;
  let destroyed = false;

  async function open(tuning: { log?: TestLogTuning; app?: TestAppTuning }): Promise<void> {
    const store = await handle.open();
    let log: Log;
    try {
      log = await Log.open({ maxBatchDelayMs: 1, ...tuning.log, store, origin, signer, vkey });
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
    const app = createLogApp({ ...tuning.app, log, writeTokens: [token, ...(tuning.app?.writeTokens ?? [])] });
    current = { log, app };
  }

  const t: TestLog = {
    origin,
    vkey,
    skey,
    token,
    handle,
    get log() {
      if (!current) throw new Error('test log is closed');
      return current.log;
    },
    get app() {
      if (!current) throw new Error('test log is closed');
      return current.app;
    },
    async close() {
      const c = current;
      current = undefined;
      await c?.log.close();
    },
    async reopen(tuning = { log: opts.log, app: opts.app }) {
      await t.close();
      await open(tuning);
      return t;
    },
    async openStore() {
      const store = await handle.open();
      await store.migrate();
      return store;
    },
    async cleanup() {
      if (destroyed) return;
      destroyed = true;
      await t.close().catch(() => undefined);
      await handle.destroy();
    },
  };

  try {
    await open({ log: opts.log, app: opts.app });
  } catch (err) {
    await handle.destroy().catch(() => undefined);
    throw err;
  }
  return t;
}

// ---- Independent reference computations and client-side verification ----

const sha256 = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

/** RFC 6962 leaf hash, computed without src/core. */
export function refLeafHash(entry: Uint8Array): Uint8Array {
  return sha256(Uint8Array.of(0), entry);
}

/** RFC 6962 MTH(D[lo:hi]) over leaf hashes, by the definition (no src/core). */
export function refRoot(leaves: readonly Uint8Array[], lo = 0, hi = leaves.length): Uint8Array {
  const n = hi - lo;
  if (n === 0) return sha256();
  if (n === 1) return leaves[lo]!;
  let k = 1;
  while (k * 2 < n) k *= 2;
  return sha256(Uint8Array.of(1), refRoot(leaves, lo, lo + k), refRoot(leaves, lo + k, hi));
}

/** Hash tile (level, index) of `width` hashes for the given leaves (c2sp.org/tlog-tiles), brute force. */
export function refTile(leaves: readonly Uint8Array[], level: number, index: number, width: number): Uint8Array {
  const span = 256 ** level;
  const out = new Uint8Array(width * 32);
  for (let i = 0; i < width; i++) {
    const start = (index * 256 + i) * span;
    if (start + span > leaves.length) throw new RangeError(`tile ${level}/${index} has no hash ${i} for ${leaves.length} leaves`);
    out.set(refRoot(leaves, start, start + span), i * 32);
  }
  return out;
}

/** Entry bundle framing: big-endian uint16 length, then the bytes, repeated. */
export function refBundle(entries: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(entries.reduce((n, e) => n + 2 + e.length, 0));
  let o = 0;
  for (const e of entries) {
    out[o] = e.length >> 8;
    out[o + 1] = e.length & 0xff;
    out.set(e, o + 2);
    o += 2 + e.length;
  }
  return out;
}

/** Opens a signed checkpoint with the log's key and parses it. Throws on any failure. */
export function openCheckpoint(note: string, vkey: string): Checkpoint {
  return parseCheckpoint(openNote(note, [newVerifier(vkey)]).text);
}

/**
 * Verifies a c2sp.org/tlog-proof@v1 receipt the way a relying party would: parse it, open
 * the checkpoint with the log's key, and check the inclusion proof of `entry`'s leaf hash.
 */
export function verifyReceipt(text: string, vkey: string, entry: Uint8Array): TlogProof & { cp: Checkpoint } {
  const p = parseTlogProof(text);
  const cp = openCheckpoint(p.checkpoint, vkey);
  verifyInclusion(leafHash(entry), p.index, cp.treeSize, [...p.proof], cp.rootHash);
  return { ...p, cp };
}
