/**
 * Ed25519 signature checks on every core: a pool of worker threads running node:crypto's
 * verify (about 10× @noble/ed25519 on the server). A batch is split across the workers and
 * the calling thread; each worker answers one byte per signature.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { nodeEd25519 } from '../note/ed25519-node.js';

export interface VerifyItem {
  readonly publicKey: Uint8Array;
  readonly message: Uint8Array;
  readonly signature: Uint8Array;
}

// The worker's code, inline so the pool works from src/ (tsx) and from dist/ alike. It
// checks strictly as nodeEd25519 does: 32-byte key, 64-byte signature, S < L (OpenSSL).
const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createPublicKey, verify } = require('node:crypto');
const PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const keys = new Map();
parentPort.on('message', ({ id, items }) => {
  const out = new Uint8Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const [pub, msg, sig] = items[i];
    try {
      if (pub.length !== 32 || sig.length !== 64) continue;
      const k = Buffer.from(pub).toString('latin1');
      let key = keys.get(k);
      if (!key) {
        key = createPublicKey({ key: Buffer.concat([PREFIX, pub]), format: 'der', type: 'spki' });
        if (keys.size > 10000) keys.clear();
        keys.set(k, key);
      }
      out[i] = verify(null, msg, key, sig) ? 1 : 0;
    } catch { out[i] = 0; }
  }
  parentPort.postMessage({ id, out });
});
`;

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

  private run(worker: Worker, items: readonly VerifyItem[]): Promise<Uint8Array> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      worker.postMessage({ id, items: items.map((x) => [x.publicKey, x.message, x.signature]) });
    });
  }

  /** Verifies every item; never throws for a bad signature or key (that is `false`). */
  async verify(items: readonly VerifyItem[]): Promise<boolean[]> {
    if (this.workers.length === 0 || items.length < this.minParallel) {
      return items.map((x) => nodeEd25519.verify(x.publicKey, x.message, x.signature));
    }
    // One share per worker; the calling thread is busy with I/O and parsing, so it does
    // none of the signature work for large batches.
    const n = this.workers.length;
    const size = Math.ceil(items.length / n);
    const parts: Array<Promise<Uint8Array>> = [];
    for (let i = 0; i < n; i++) {
      const slice = items.slice(i * size, (i + 1) * size);
      if (slice.length > 0) parts.push(this.run(this.workers[(this.rr + i) % n]!, slice));
    }
    this.rr = (this.rr + 1) % n;
    const out: boolean[] = [];
    for (const p of await Promise.all(parts)) for (const b of p) out.push(b === 1);
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
