/**
 * Ed25519 signature checks on every core: a pool of worker threads running node:crypto's
 * verify (about 10× @noble/ed25519 on the server). A batch is split across the workers and
 * the calling thread; each worker answers one byte per signature.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { concatBytes, equalBytes } from '../core/encoding.js';
import { isWeakPublicKey } from '../note/ed25519.js';

export interface VerifyItem {
  readonly publicKey: Uint8Array;
  /** The message, or its parts in order (saves the caller concatenating them). */
  readonly message: Uint8Array | readonly Uint8Array[];
  readonly signature: Uint8Array;
}

function messageLength(m: Uint8Array | readonly Uint8Array[]): number {
  if (m instanceof Uint8Array) return m.length;
  let n = 0;
  for (const p of m) n += p.length;
  return n;
}

/** The message as one array (copied only when it comes in parts). */
export function wholeMessage(m: Uint8Array | readonly Uint8Array[]): Uint8Array {
  return m instanceof Uint8Array ? m : concatBytes(...m);
}

// The worker's code, inline so the pool works from src/ (tsx) and from dist/ alike. It
// checks strictly as nodeEd25519 does: 32-byte key, 64-byte signature, S < L (OpenSSL).
// A share arrives as one transferred buffer (see pack), which costs far less to post and
// receive than hundreds of small typed arrays: per item, a 32-byte public key, a 64-byte
// signature, a 4-byte big-endian message length and the message. Consecutive items by
// one key (an agent's entries) reuse its KeyObject without a lookup.
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
const PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const keys = new Map();
parentPort.on('message', ({ id, n, buf }) => {
  const b = Buffer.from(buf);
  const out = new Uint8Array(n);
  let o = 0;
  let lastPub = null;
  let lastKey = null;
  for (let i = 0; i < n; i++) {
    const pub = b.subarray(o, o + 32);
    const sig = b.subarray(o + 32, o + 96);
    const len = b.readUInt32BE(o + 96);
    if (len === 0xffffffff) { o += 100; continue; } // malformed key or signature: false
    const msg = b.subarray(o + 100, o + 100 + len);
    o += 100 + len;
    try {
      let key = lastPub !== null && lastPub.equals(pub) ? lastKey : undefined;
      if (key === undefined) {
        const k = pub.toString('latin1');
        key = keys.get(k);
        if (!key) {
          key = createPublicKey({ key: Buffer.concat([PREFIX, pub]), format: 'der', type: 'spki' });
          if (keys.size > 10000) keys.clear();
          keys.set(k, key);
        }
        lastPub = pub;
        lastKey = key;
      }
      out[i] = verify(null, msg, key, sig) ? 1 : 0;
    } catch { out[i] = 0; }
  }
  parentPort.postMessage({ id, out }, [out.buffer]);
});
`;

// nodeEd25519 refuses small-order public keys before OpenSSL sees them (OpenSSL accepts,
// for one, the all-zero key with the all-zero signature); the pool must answer the same.
// The check decodes a point, so it is remembered per key: first by the array object (an
// audit passes each key period's one array for all its entries), confirmed by comparing
// the bytes in case the caller changed them, then by the key's bytes.
const weakByArray = new WeakMap<Uint8Array, { readonly key: Uint8Array; readonly weak: boolean }>();
const weakKeys = new Map<string, boolean>();

function isWeak(pub: Uint8Array): boolean {
  const seen = weakByArray.get(pub);
  if (seen !== undefined && equalBytes(seen.key, pub)) return seen.weak;
  const k = Buffer.from(pub.buffer, pub.byteOffset, pub.length).toString('latin1');
  let weak = weakKeys.get(k);
  if (weak === undefined) {
    weak = isWeakPublicKey(pub);
    if (weakKeys.size >= 10_000) weakKeys.clear();
    weakKeys.set(k, weak);
  }
  weakByArray.set(pub, { key: pub.slice(), weak });
  return weak;
}

/**
 * Packs items for a worker. An item whose key or signature has the wrong length, or whose
 * key is of small order, is sent as a length of 0xffffffff and no message, and answered
 * false (as nodeEd25519 would).
 */
function pack(items: readonly VerifyItem[], from: number, to: number): ArrayBuffer {
  const ok = (x: VerifyItem) => x.publicKey.length === 32 && x.signature.length === 64 && !isWeak(x.publicKey);
  let size = 0;
  for (let i = from; i < to; i++) size += 100 + (ok(items[i]!) ? messageLength(items[i]!.message) : 0);
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  let o = 0;
  for (let i = from; i < to; i++) {
    const x = items[i]!;
    if (!ok(x)) {
      view.setUint32(o + 96, 0xffffffff, false);
      o += 100;
      continue;
    }
    buf.set(x.publicKey, o);
    buf.set(x.signature, o + 32);
    let m = o + 100;
    if (x.message instanceof Uint8Array) {
      buf.set(x.message, m);
      m += x.message.length;
    } else {
      for (const part of x.message) {
        buf.set(part, m);
        m += part.length;
      }
    }
    view.setUint32(o + 96, m - o - 100, false);
    o = m;
  }
  return buf.buffer;
}

interface Job {
  readonly resolve: (out: Uint8Array) => void;
  readonly reject: (err: Error) => void;
}

export class VerifyPool {
  private readonly workers: Worker[] = [];
  private readonly jobs = new Map<number, Job>();
  private next = 0;
  private rr = 0;

  /**
   * `threads` workers (default: one per core). Batches smaller than `minParallel` are
   * checked on the calling thread, where a round trip to a worker would cost more.
   */
  constructor(
    threads = availableParallelism(),
    private readonly minParallel = 16
  ) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(WORKER, { eval: true });
      w.unref();
      w.on('message', ({ id, out }: { id: number; out: Uint8Array }) => {
        const job = this.jobs.get(id);
        this.jobs.delete(id);
        job?.resolve(out);
      });
      w.on('error', (err) => {
        for (const job of this.jobs.values()) job.reject(err);
        this.jobs.clear();
      });
      this.workers.push(w);
    }
  }

  get threads(): number {
    return this.workers.length;
  }

  /** Sends items[from, to) to `worker`, packed. */
  private run(worker: Worker, items: readonly VerifyItem[], from: number, to: number): Promise<Uint8Array> {
    const id = this.next++;
    const buf = pack(items, from, to);
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      worker.postMessage({ id, n: to - from, buf }, [buf]);
    });
  }

  /**
   * Verifies every item; never throws for a bad signature or key (that is `false`). The
   * items are packed for the workers before it returns and not referenced after, so the
   * caller's objects can die young while the workers verify.
   */
  verify(items: readonly VerifyItem[]): Promise<boolean[]> {
    if (this.workers.length === 0 || items.length < this.minParallel) {
      return Promise.resolve(items.map((x) => nodeEd25519.verify(x.publicKey, wholeMessage(x.message), x.signature)));
    }
    // One share per worker; the calling thread is busy with I/O and parsing, so it does
    // none of the signature work for large batches.
    const n = this.workers.length;
    const size = Math.ceil(items.length / n);
    const parts: Array<Promise<Uint8Array>> = [];
    for (let i = 0; i < n && i * size < items.length; i++) {
      parts.push(this.run(this.workers[(this.rr + i) % n]!, items, i * size, Math.min(items.length, (i + 1) * size)));
    }
    this.rr = (this.rr + 1) % n;
    return Promise.all(parts).then((outs) => {
      const out: boolean[] = [];
      for (const p of outs) for (const b of p) out.push(b === 1);
      return out;
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
