/**
 * The log: sequencing, integration and checkpoint publication as three separate steps
 * (spec/lifecycle.md), each a transaction of its own in the LogStore.
 *
 *   add() ──► pool ──► sequencer loop ──► store.sequence()     entries have indices, durably
 *                                   └──► integration queue
 *                      integrator loop ──► store.integrate()   tiles and root, durably
 *                                   └──► store.publish()       signed checkpoint, durably
 *
 * Crash safety rests on three facts: bundles, tiles and checkpoints are only ever appended
 * or extended (the store refuses anything else); integration is a pure function of the
 * sequenced entries; and open() finishes integrating whatever was sequenced before a crash.
 * So every checkpoint the log signs is of the one tree its sequenced entries define.
 */
import { decodeBundle, MAX_ENTRY_SIZE } from '../core/bundle.js';
import { formatCheckpoint } from '../core/checkpoint.js';
import { checkSize, encodeBase64, equalBytes } from '../core/encoding.js';
import { FatalError, MalformedError, NotFoundError, PushbackError, TooLargeError } from '../core/errors.js';
import { EMPTY_ROOT, HASH_SIZE, leafHash } from '../core/hash.js';
import { EMPTY_EDGE, edgeFromTiles, edgeRootHash, integrate, type TreeEdge } from '../core/integrate.js';
import { TILE_WIDTH, levelSpan, tilesNeeded, tileWidthAt } from '../core/tile.js';
import { formatTlogProof } from '../core/tlog-proof.js';
import { proveConsistency, proveInclusion, type NodeReader, type RangeMemo } from '../core/tree.js';
import { formatNote, parseNote, signNote, type NoteSigner } from '../note/note.js';
import type { LogStore, StoredCheckpoint } from '../storage/types.js';
import { Counter, Gauge, Histogram, Registry } from '../metrics.js';
import { TileCache, TileMissError } from './tile-cache.js';

export interface LogOptions {
  readonly store: LogStore;
  /** The checkpoint origin, also the signing key's name. */
  readonly origin: string;
  readonly signer: NoteSigner;
  /** The signer's verifier key, recorded with the log on first start. */
  readonly vkey: string;
  /** Most entries sequenced in one transaction. */
  readonly maxBatchSize?: number;
  /** How long the sequencer waits to fill a batch once an entry is waiting. */
  readonly maxBatchDelayMs?: number;
  /** Entries waiting to be sequenced or integrated before add() pushes back. */
  readonly maxPending?: number;
  /** How many of the most recent entries a duplicate submission is recognised against. */
  readonly dedupWindow?: number;
  readonly tileCacheSize?: number;
  readonly metrics?: Registry;
  /** Called once if the log hits a fatal error and stops accepting writes. */
  readonly onFatal?: (err: Error) => void;
  /** Witness cosigning (spec/witness.md); none by default. */
  readonly witnessing?: WitnessingOptions;
}

/**
 * How the log gets its checkpoints cosigned. `cosign` sends a signed checkpoint to the
 * witnesses (src/log/cosigning.ts) and returns it with the cosignatures collected.
 */
export interface WitnessingOptions {
  readonly cosign: (checkpoint: StoredCheckpoint) => Promise<{ note: string; cosigned: ReadonlySet<string> }>;
  readonly quorum: (cosigned: ReadonlySet<string>) => boolean;
  /**
   * Fail-closed: a checkpoint is published (served, and writes waiting for it answered)
   * only once its cosignatures meet the quorum. Fail-open: every checkpoint is published
   * at once and its cosignatures are added to it as they arrive.
   */
  readonly failClosed: boolean;
  /** Wait before a new round after one that missed the quorum (default 1000 ms). */
  readonly retryMs?: number;
}

export type WaitFor = 'sequenced' | 'published';

export interface AddResult {
  readonly index: number;
  readonly leafHash: Uint8Array;
  /** True when the bytes matched an entry already in the dedup window. */
  readonly duplicate: boolean;
}

interface Pending {
  readonly entry: Uint8Array;
  readonly leafHash: Uint8Array;
  readonly key: string;
  readonly submittedAt: number;
  readonly waiters: Waiter[];
}

/** One add() call: one promise for all its entries, not one per entry. */
interface AddGroup {
  readonly results: AddResult[];
  remaining: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** A place in an add() call's results waiting for an entry's index. */
interface Waiter {
  readonly group: AddGroup;
  readonly position: number;
  readonly duplicate: boolean;
}

function settle(w: Waiter, index: number, leafHash: Uint8Array): void {
  w.group.results[w.position] = { index, leafHash, duplicate: w.duplicate };
  if (--w.group.remaining === 0) w.group.resolve();
}

interface PublishWaiter {
  readonly index: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

const hashKey = (h: Uint8Array) => Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('latin1');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A deferred signal: wait() resolves at the next notify(). */
class Signal {
  private waiting: (() => void) | undefined;
  notify(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }
  wait(): Promise<void> {
    return new Promise((r) => {
      const prev = this.waiting;
      this.waiting = () => {
        prev?.();
        r();
      };
    });
  }
}

export class Log {
  readonly origin: string;
  readonly vkey: string;
  readonly metrics: Registry;

  private readonly store: LogStore;
  private readonly signer: NoteSigner;
  private readonly maxBatchSize: number;
  private readonly maxBatchDelayMs: number;
  private readonly maxPending: number;
  private readonly dedupWindow: number;
  private readonly onFatal: ((err: Error) => void) | undefined;

  private edge: TreeEdge = EMPTY_EDGE;
  /** The root of `edge`, kept from integration so publishing does not recompute it. */
  private rootHash: Uint8Array = EMPTY_ROOT;
  private nextIndex = 0;
  /** The latest published checkpoint: what /checkpoint serves and reads are bounded by. */
  private latest!: StoredCheckpoint;
  /** The latest signed checkpoint; ahead of `latest` while it waits for a quorum. */
  private signed!: StoredCheckpoint;
  private readonly witnessing: WitnessingOptions | undefined;

  /** Whether witnesses cosign this log's checkpoints (a stored checkpoint may then gain cosignatures). */
  get witnessed(): boolean {
    return this.witnessing !== undefined;
  }
  private readonly witnessSignal = new Signal();
  /** The size of the last checkpoint a witnessing round finished for. */
  private witnessedSize = -1;
  /** Submission times of integrated entries not yet published, oldest first. */
  private unpublished: Array<{ index: number; submittedAt: number }> = [];
  private readonly sequencedListeners: Array<() => void> = [];
  private readonly tiles: TileCache;
  private readonly bundles = new Map<number, { data: Uint8Array; width: number }>();

  private pool: Pending[] = [];
  /** Entries in the sequencing transaction in flight. */
  private sequencing = 0;
  private readonly inflight = new Map<string, Pending>();
  /** leaf hash → index for the last `dedupWindow` sequenced entries. */
  private readonly recent = new Map<string, number>();
  /** dedupRing[i % dedupWindow] is the key of entry i, for the window's entries. */
  private readonly dedupRing: Array<string | undefined>;
  private integrationQueue: Array<{ index: number; leafHash: Uint8Array; submittedAt: number }> = [];
  private publishWaiters: PublishWaiter[] = [];

  private readonly poolSignal = new Signal();
  private readonly queueSignal = new Signal();
  private closed = false;
  private fatal: Error | undefined;
  private loops: Promise<void>[] = [];

  private readonly mEntries: Counter;
  private readonly mDuplicates: Counter;
  private readonly mIntegrationSeconds: Histogram;
  private readonly mSequenceSeconds: Histogram;
  private readonly mSubmitToPublish: Histogram;

  private constructor(opts: LogOptions) {
    this.store = opts.store;
    this.origin = opts.origin;
    this.signer = opts.signer;
    this.vkey = opts.vkey;
    this.maxBatchSize = opts.maxBatchSize ?? 4096;
    this.maxBatchDelayMs = opts.maxBatchDelayMs ?? 5;
    this.maxPending = opts.maxPending ?? 200_000;
    this.dedupWindow = opts.dedupWindow ?? 100_000;
    this.dedupRing = new Array<string | undefined>(this.dedupWindow);
    this.onFatal = opts.onFatal;
    this.witnessing = opts.witnessing;
    this.tiles = new TileCache(opts.tileCacheSize ?? 16384);
    this.metrics = opts.metrics ?? new Registry();
    const m = this.metrics;
    m.register(new Gauge('glasslog_tree_size', 'Entries covered by the latest published checkpoint', () => this.latest?.treeSize ?? 0));
    m.register(new Gauge('glasslog_sequenced_entries', 'Entries sequenced (next index to assign)', () => this.nextIndex));
    m.register(new Gauge('glasslog_pending_entries', 'Entries submitted but not yet covered by a published checkpoint', () => this.pendingCount()));
    this.mEntries = m.register(new Counter('glasslog_entries_sequenced_total', 'Entries appended to the log'));
    this.mDuplicates = m.register(new Counter('glasslog_duplicate_submissions_total', 'Submissions answered with an existing index'));
    this.mSequenceSeconds = m.register(new Histogram('glasslog_sequence_seconds', 'Time of one sequencing transaction'));
    this.mIntegrationSeconds = m.register(new Histogram('glasslog_integration_seconds', 'Time to integrate and publish one batch'));
    this.mSubmitToPublish = m.register(new Histogram('glasslog_submit_to_publish_seconds', 'Time from submission to a published checkpoint covering the entry'));
  }

  /**
   * Opens the log on `store`: checks the stored identity, finishes integrating anything
   * sequenced before a crash, publishes a checkpoint for the integrated tree if none
   * covers it, rebuilds the dedup window, and starts the sequencer and integrator.
   */
  static async open(opts: LogOptions): Promise<Log> {
    const log = new Log(opts);
    await log.recover();
    log.loops = [log.sequencerLoop(), log.integratorLoop()];
    if (log.witnessing) log.loops.push(log.witnessLoop());
    return log;
  }

  private async recover(): Promise<void> {
    const store = this.store;
    await store.migrate();
    await store.lockWriter();
    const meta = await store.getMeta();
    if (meta === null) {
      await store.initMeta({ origin: this.origin, vkey: this.vkey });
    } else {
      if (meta.origin !== this.origin) {
        throw new FatalError(`this database holds the log "${meta.origin}", not "${this.origin}": refusing to start (check --origin)`);
      }
      if (meta.vkey !== this.vkey) {
        throw new FatalError(`this database's log "${meta.origin}" was created with key ${meta.vkey}, but the configured key is ${this.vkey}: refusing to start`);
      }
    }
    const st = await store.state();
    await this.prefetchEdge(st.treeSize);
    this.edge = edgeFromTiles(st.treeSize, (level, index) => this.tiles.get(level, index)!);
    this.rootHash = edgeRootHash(this.edge);
    if (!equalBytes(this.rootHash, st.rootHash)) {
      throw new FatalError(`stored tiles do not reproduce the stored root at tree size ${st.treeSize}`);
    }
    this.nextIndex = st.nextIndex;
    // Entries sequenced before a crash but not integrated: integrate them now.
    for (let from = st.treeSize; from < st.nextIndex; ) {
      const to = Math.min(st.nextIndex, from + 65536);
      const entries = await store.readEntries(from, to);
      await this.integrateAndStore(entries.map((e) => leafHash(e)));
      from = to;
    }
    const latest = await store.latestCheckpoint();
    if (latest !== null && latest.treeSize >= this.edge.size) {
      this.latest = latest;
      this.signed = this.logSigned(latest);
    } else if (this.witnessing?.failClosed && this.edge.size > 0) {
      // Fail-closed: the new checkpoint waits for its quorum in the witness loop. A log
      // that never published starts from the empty tree, which needs no witness.
      this.latest = latest ?? (await this.publishEmpty());
      this.signed = this.sign();
    } else {
      this.latest = this.signed = this.sign();
      await this.store.publish(this.latest);
    }
    await this.rebuildDedupWindow();
  }

  /** Loads the partial tile of every level for a tree of `size` into the cache. */
  private async prefetchEdge(size: number): Promise<void> {
    const need: Array<[number, number]> = [];
    for (let level = 0; Math.floor(size / levelSpan(level)) > 0; level++) {
      const index = Math.floor(size / levelSpan(level + 1));
      if (tileWidthAt(level, index, size) > 0) need.push([level, index]);
    }
    await this.ensureTiles(need.map(([level, index]) => ({ level, index, width: tileWidthAt(level, index, size) })));
  }

  private async ensureTiles(need: Array<{ level: number; index: number; width: number }>): Promise<void> {
    await Promise.all(
      need
        .filter((t) => !this.tiles.has(t.level, t.index, t.width))
        .map(async (t) => {
          const data = await this.store.readTile(t.level, t.index);
          if (!data || data.length < t.width * HASH_SIZE) {
            throw new FatalError(`tile ${t.level}/${t.index} of width ${t.width} is missing from storage`);
          }
          this.tiles.put(t.level, t.index, data);
        })
    );
  }

  private async rebuildDedupWindow(): Promise<void> {
    const size = this.edge.size;
    const from = Math.max(0, size - this.dedupWindow);
    const first = Math.floor(from / TILE_WIDTH);
    const last = Math.ceil(size / TILE_WIDTH);
    const need = [];
    for (let i = first; i < last; i++) need.push({ level: 0, index: i, width: tileWidthAt(0, i, size) });
    for (let i = 0; i < need.length; i += 64) await this.ensureTiles(need.slice(i, i + 64));
    for (let idx = from; idx < size; idx++) {
      const tile = this.tiles.get(0, Math.floor(idx / TILE_WIDTH))!;
      const off = (idx % TILE_WIDTH) * HASH_SIZE;
      this.remember(hashKey(tile.subarray(off, off + HASH_SIZE)), idx);
    }
  }

  /**
   * Adds entry `index` to the dedup window (indices arrive in increasing order). Eviction
   * goes through a ring of the window's keys: evicting from the front of the Map with
   * keys().next() is O(deleted entries) in V8 and halved the sustained ingest rate.
   */
  private remember(key: string, index: number): void {
    if (this.dedupWindow === 0) return;
    const slot = index % this.dedupWindow;
    const old = this.dedupRing[slot];
    if (old !== undefined && this.recent.get(old) === index - this.dedupWindow) this.recent.delete(old);
    this.dedupRing[slot] = key;
    this.recent.set(key, index);
  }

  private pendingCount(): number {
    return this.pool.length + this.sequencing + this.integrationQueue.length;
  }

  /** The latest published checkpoint. */
  checkpoint(): StoredCheckpoint {
    return this.latest;
  }

  /** Entries sequenced so far: the next index to assign. */
  sequencedSize(): number {
    return this.nextIndex;
  }

  /** Sequenced entries [from, to), published or not (for layers that index the log). */
  async sequencedEntries(from: number, to: number): Promise<Uint8Array[]> {
    if (from < 0 || to > this.nextIndex || from > to) throw new RangeError(`[${from}, ${to}) is not within the ${this.nextIndex} sequenced entries`);
    return from === to ? [] : this.store.readEntries(from, to);
  }

  /** Calls `fn` after every sequencing transaction (for layers that index the log). */
  onSequenced(fn: () => void): void {
    this.sequencedListeners.push(fn);
  }

  /** Resolves once entry `index` is covered by the published checkpoint. */
  async waitForPublished(index: number): Promise<void> {
    await this.waitPublished(index);
  }

  /** Whether the log is accepting writes (no fatal error, not closed). */
  healthy(): boolean {
    return !this.fatal && !this.closed;
  }

  /**
   * Appends entries. Resolves, in order, once each entry is durably sequenced (`wait:
   * 'sequenced'`) or also covered by a published checkpoint (`'published'`). Bytes equal
   * to an entry in the dedup window resolve to that entry's index without growing the log.
   * `leafHashes`, when the caller has them already, MUST be the entries' RFC 6962 leaf
   * hashes (the audit layer computes them to decode the entries).
   * @throws {MalformedError} for an empty or oversized entry (nothing is stored)
   * @throws {PushbackError} when too many entries are waiting
   */
  async add(entries: readonly Uint8Array[], wait: WaitFor = 'published', leafHashes?: readonly Uint8Array[]): Promise<AddResult[]> {
    if (leafHashes !== undefined && leafHashes.length !== entries.length) throw new RangeError('one leaf hash per entry');
    if (this.fatal) throw new FatalError(`the log stopped after a fatal error: ${this.fatal.message}`);
    if (this.closed) throw new PushbackError('the log is shutting down');
    for (let i = 0; i < entries.length; i++) {
      if (entries[i]!.length === 0) throw new MalformedError(`entry ${i} is empty`);
      if (entries[i]!.length > MAX_ENTRY_SIZE) throw new TooLargeError(`entry ${i} is ${entries[i]!.length} bytes, more than ${MAX_ENTRY_SIZE}`);
    }
    if (this.pendingCount() + entries.length > this.maxPending) {
      throw new PushbackError(`too many entries waiting to be sequenced (${this.pendingCount()})`, 1);
    }
    if (entries.length === 0) return [];
    const now = performance.now();
    const results: AddResult[] = new Array(entries.length);
    await new Promise<void>((resolve, reject) => {
      const group: AddGroup = { results, remaining: entries.length, resolve, reject };
      for (let i = 0; i < entries.length; i++) this.enqueue(entries[i]!, leafHashes?.[i] ?? leafHash(entries[i]!), now, { group, position: i, duplicate: false });
      if (group.remaining === 0) resolve();
      this.poolSignal.notify();
    });
    if (wait === 'published') {
      const max = results.reduce((m, r) => Math.max(m, r.index), -1);
      await this.waitPublished(max);
    }
    return results;
  }

  private enqueue(entry: Uint8Array, h: Uint8Array, now: number, waiter: Waiter): void {
    const key = hashKey(h);
    const known = this.recent.get(key);
    if (known !== undefined) {
      this.mDuplicates.inc();
      settle({ ...waiter, duplicate: true }, known, h);
      return;
    }
    // dedupWindow 0 turns deduplication off, including among entries still in the pool.
    const p = this.dedupWindow > 0 ? this.inflight.get(key) : undefined;
    if (p) {
      this.mDuplicates.inc();
      p.waiters.push({ ...waiter, duplicate: true });
      return;
    }
    const fresh: Pending = { entry, leafHash: h, key, submittedAt: now, waiters: [waiter] };
    if (this.dedupWindow > 0) this.inflight.set(key, fresh);
    this.pool.push(fresh);
  }

  private waitPublished(index: number): Promise<void> {
    if (index < this.latest.treeSize) return Promise.resolve();
    if (this.fatal) return Promise.reject(this.fatal);
    if (this.closed) return Promise.reject(new PushbackError('the log is shutting down'));
    return new Promise((resolve, reject) => this.publishWaiters.push({ index, resolve, reject }));
  }

  private async sequencerLoop(): Promise<void> {
    while (!this.fatal) {
      if (this.pool.length === 0) {
        if (this.closed) break;
        await this.poolSignal.wait();
        continue;
      }
      if (this.pool.length < this.maxBatchSize && this.maxBatchDelayMs > 0) await sleep(this.maxBatchDelayMs);
      const batch = this.pool.splice(0, this.maxBatchSize);
      const started = performance.now();
      let first: number;
      this.sequencing = batch.length;
      try {
        first = await this.store.sequence(batch.map((p) => p.entry));
      } catch (err) {
        this.sequencing = 0;
        // The transaction rolled back (or, if only its answer was lost, the next batch finds
        // a different next index and stops the log for a restart to recover): fail callers.
        console.error(`glasslog: sequencing ${batch.length} entries failed: ${(err as Error).message}`);
        for (const p of batch) {
          this.inflight.delete(p.key);
          for (const w of p.waiters) w.group.reject(err);
        }
        if (err instanceof FatalError) this.stop(err);
        else await sleep(50);
        continue;
      }
      this.sequencing = 0;
      this.mSequenceSeconds.observe((performance.now() - started) / 1000);
      if (first !== this.nextIndex) {
        this.stop(new FatalError(`sequenced at index ${first}, expected ${this.nextIndex}: another writer is using this log`));
      }
      this.nextIndex = first + batch.length;
      this.mEntries.inc({}, batch.length);
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!;
        const index = first + i;
        this.inflight.delete(p.key);
        this.remember(p.key, index);
        this.integrationQueue.push({ index, leafHash: p.leafHash, submittedAt: p.submittedAt });
        for (const w of p.waiters) settle(w, index, p.leafHash);
      }
      this.queueSignal.notify();
      for (const fn of this.sequencedListeners) fn();
    }
  }

  private async integratorLoop(): Promise<void> {
    while (!this.fatal) {
      if (this.integrationQueue.length === 0 && this.signed.treeSize === this.edge.size) {
        if (this.closed) break;
        await this.queueSignal.wait();
        continue;
      }
      const started = performance.now();
      try {
        if (this.integrationQueue.length > 0) {
          const items = this.integrationQueue.splice(0);
          try {
            if (items[0]!.index !== this.edge.size) {
              throw new FatalError(`integration queue starts at ${items[0]!.index}, tree size is ${this.edge.size}`);
            }
            await this.integrateAndStore(items.map((x) => x.leafHash));
          } catch (err) {
            this.integrationQueue = items.concat(this.integrationQueue);
            throw err;
          }
          for (const x of items) this.unpublished.push({ index: x.index, submittedAt: x.submittedAt });
        }
        const cp = this.sign();
        if (!this.witnessing?.failClosed) await this.store.publish(cp);
        this.signed = cp;
        if (!this.witnessing?.failClosed) this.markPublished(cp);
        this.witnessSignal.notify();
      } catch (err) {
        if (err instanceof FatalError) {
          this.stop(err);
          break;
        }
        console.error(`glasslog: integration or publication failed, retrying: ${(err as Error).message}`);
        // A transient storage failure: nothing is lost, try again shortly. (If a commit
        // succeeded but its answer was lost, the retry fails its compare-and-swap and
        // stops the log; a restart then recovers from the stored state.)
        await sleep(100);
        continue;
      }
      this.mIntegrationSeconds.observe((performance.now() - started) / 1000);
    }
  }

  /**
   * Sends each new checkpoint to the witnesses. Fail-closed, it publishes the checkpoint
   * once the quorum cosigned it; fail-open, it adds the cosignatures to the published one.
   * Rounds never overlap; a round always takes the newest checkpoint, so under load
   * intermediate sizes are skipped rather than queued.
   */
  private async witnessLoop(): Promise<void> {
    const w = this.witnessing!;
    while (!this.fatal) {
      // The checkpoint as the log signed it: a fail-open `latest` may already carry
      // cosignatures, which are not the log's to resend.
      const target = this.signed;
      if (target.treeSize === this.witnessedSize || (w.failClosed && target.treeSize === this.latest.treeSize)) {
        if (this.closed) break;
        await this.witnessSignal.wait();
        continue;
      }
      let ok = false;
      try {
        const r = await w.cosign(target);
        ok = w.quorum(r.cosigned);
        const cosigned = { treeSize: target.treeSize, note: r.note };
        if (w.failClosed) {
          if (ok) {
            await this.store.publish(cosigned);
            this.markPublished(cosigned);
          } else {
            console.error(`glasslog: checkpoint ${target.treeSize} is not published: witness quorum not met (cosigned by ${[...r.cosigned].join(', ') || 'none'})`);
          }
        } else if (r.cosigned.size > 0) {
          await this.store.addCosignatures(cosigned);
          if (this.latest.treeSize === cosigned.treeSize) this.latest = cosigned;
        }
      } catch (err) {
        if (err instanceof FatalError) {
          this.stop(err);
          break;
        }
        console.error(`glasslog: witnessing checkpoint ${target.treeSize} failed: ${(err as Error).message}`);
      }
      if (ok) {
        this.witnessedSize = target.treeSize;
      } else {
        if (this.closed) break;
        await Promise.race([sleep(w.retryMs ?? 1000), this.witnessSignal.wait()]);
      }
    }
  }

  /** Makes `cp` the served checkpoint and answers the writes it covers. */
  private markPublished(cp: StoredCheckpoint): void {
    this.latest = cp;
    const now = performance.now();
    let i = 0;
    for (; i < this.unpublished.length && this.unpublished[i]!.index < cp.treeSize; i++) {
      this.mSubmitToPublish.observe((now - this.unpublished[i]!.submittedAt) / 1000);
    }
    this.unpublished.splice(0, i);
    this.releasePublishWaiters();
  }

  private async integrateAndStore(leafHashes: Uint8Array[]): Promise<void> {
    const r = integrate(this.edge, leafHashes);
    await this.store.integrate(this.edge.size, r.edge.size, r.rootHash, r.tiles);
    for (const t of r.tiles) this.tiles.put(t.coord.level as number, t.coord.index, t.data);
    this.edge = r.edge;
    this.rootHash = r.rootHash;
  }

  /** The checkpoint with the log's own signature only (a stored one may carry cosignatures). */
  private logSigned(cp: StoredCheckpoint): StoredCheckpoint {
    const { text, signatures } = parseNote(cp.note);
    const own = signatures.filter((sig) => sig.name === this.signer.name && sig.keyId === this.signer.keyId);
    return own.length === signatures.length ? cp : { treeSize: cp.treeSize, note: formatNote(text, own) };
  }

  /** Signs a checkpoint for the integrated tree. */
  private sign(): StoredCheckpoint {
    const text = formatCheckpoint({ origin: this.origin, treeSize: this.edge.size, rootHash: this.rootHash, extensions: [] });
    return { treeSize: this.edge.size, note: signNote(text, [this.signer]) };
  }

  /** Publishes the empty tree's checkpoint (a new fail-closed log: nothing to witness). */
  private async publishEmpty(): Promise<StoredCheckpoint> {
    const text = formatCheckpoint({ origin: this.origin, treeSize: 0, rootHash: EMPTY_ROOT, extensions: [] });
    const cp = { treeSize: 0, note: signNote(text, [this.signer]) };
    await this.store.publish(cp);
    return cp;
  }

  private releasePublishWaiters(): void {
    const size = this.latest.treeSize;
    const keep: PublishWaiter[] = [];
    for (const w of this.publishWaiters) {
      if (w.index < size) w.resolve();
      else keep.push(w);
    }
    this.publishWaiters = keep;
  }

  private stop(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    for (const p of this.pool) for (const w of p.waiters) w.group.reject(err);
    this.pool = [];
    this.inflight.clear();
    for (const w of this.publishWaiters) w.reject(err);
    this.publishWaiters = [];
    this.poolSignal.notify();
    this.queueSignal.notify();
    this.witnessSignal.notify();
    this.onFatal?.(err);
  }

  // ---- Reads: everything below serves only what a published checkpoint covers. ----

  /** The published checkpoint of exactly `treeSize`. @throws {NotFoundError} */
  async checkpointAt(treeSize: number): Promise<StoredCheckpoint> {
    if (treeSize === this.latest.treeSize) return this.latest;
    if (treeSize > this.latest.treeSize) throw new NotFoundError(`tree size ${treeSize} is beyond the latest checkpoint (${this.latest.treeSize})`);
    const cp = await this.store.checkpointAt(treeSize);
    if (!cp) throw new NotFoundError(`the log published no checkpoint of tree size ${treeSize}`);
    return cp;
  }

  /**
   * Runs a computation over the tile cache. Recent entries' tiles are almost always cached,
   * so it runs once; only if a tile is missing does it find every tile the computation needs
   * (a dry run with dummy hashes), load them, and run again.
   */
  private async withTiles<T>(run: (node: NodeReader, memo: RangeMemo) => T): Promise<T> {
    try {
      return run(this.tiles.node, new Map());
    } catch (err) {
      if (!(err instanceof TileMissError)) throw err;
    }
    await this.ensureTiles(tilesNeeded(run));
    return run(this.tiles.node, new Map());
  }

  private checkPublishedSize(treeSize: number, what: string): void {
    if (treeSize > this.latest.treeSize) {
      throw new NotFoundError(`${what} ${treeSize} is beyond the latest checkpoint's tree size ${this.latest.treeSize}`);
    }
  }

  /**
   * The inclusion proof of entry `index` in the tree of `treeSize` (default: the latest
   * checkpoint). @throws {NotFoundError}
   */
  async inclusionProof(index: number, treeSize = this.latest.treeSize): Promise<{ leafHash: Uint8Array; proof: Uint8Array[] }> {
    checkSize(index, 'index');
    this.checkPublishedSize(treeSize, 'tree size');
    if (index >= treeSize) throw new NotFoundError(`index ${index} is not in the tree of size ${treeSize}`);
    const [h, proof] = await this.withTiles((node, memo) => [node(0, index), proveInclusion(index, treeSize, node, memo)] as const);
    return { leafHash: h, proof };
  }

  /** The consistency proof from `oldSize` to `newSize`. @throws {NotFoundError}, {MalformedError} */
  async consistencyProof(oldSize: number, newSize: number): Promise<Uint8Array[]> {
    if (oldSize > newSize) throw new MalformedError(`old size ${oldSize} is larger than new size ${newSize}`);
    this.checkPublishedSize(newSize, 'new size');
    return this.withTiles((node) => proveConsistency(oldSize, newSize, node));
  }

  /**
   * The consistency proof between two sizes of the integrated tree, published or not: what
   * the log sends witnesses along with a checkpoint that may still wait for their quorum.
   */
  async treeConsistencyProof(oldSize: number, newSize: number): Promise<Uint8Array[]> {
    if (oldSize > newSize) throw new MalformedError(`old size ${oldSize} is larger than new size ${newSize}`);
    if (newSize > this.edge.size) throw new NotFoundError(`size ${newSize} is beyond the integrated tree size ${this.edge.size}`);
    return this.withTiles((node) => proveConsistency(oldSize, newSize, node));
  }

  /** A c2sp.org/tlog-proof@v1 receipt for `index` against the checkpoint of `treeSize`. */
  async receipt(index: number, treeSize = this.latest.treeSize): Promise<string> {
    const cp = await this.checkpointAt(treeSize);
    const { proof } = await this.inclusionProof(index, cp.treeSize);
    return formatTlogProof({ index, proof, checkpoint: cp.note });
  }

  /** Receipts for many entries against one checkpoint, sharing the tile reads. */
  async receipts(indices: readonly number[], cp: StoredCheckpoint = this.latest): Promise<string[]> {
    const size = cp.treeSize;
    for (const i of indices) if (i >= size) throw new NotFoundError(`index ${i} is not in the tree of size ${size}`);
    const proofs = await this.withTiles((node, memo) => indices.map((i) => proveInclusion(i, size, node, memo)));
    // Proofs of one tree share most of their hashes (the same objects, from the tile cache
    // and the range memo), so their base64 is computed once.
    const b64 = new Map<Uint8Array, string>();
    const encode = (h: Uint8Array) => {
      let e = b64.get(h);
      if (e === undefined) b64.set(h, (e = encodeBase64(h)));
      return e;
    };
    return proofs.map((proof, k) => formatTlogProof({ index: indices[k]!, proof, checkpoint: cp.note }, encode));
  }

  /** The index of the first entry with this leaf hash in the published tree. @throws {NotFoundError} */
  async findLeaf(hash: Uint8Array): Promise<number> {
    if (hash.length !== HASH_SIZE) throw new MalformedError(`leaf hash must be ${HASH_SIZE} bytes`);
    const size = this.latest.treeSize;
    for (const idx of await this.store.findLeaf(hash)) {
      if (idx >= size) break;
      if (equalBytes(await this.withTiles((node) => node(0, idx)), hash)) return idx;
    }
    throw new NotFoundError('no entry with that leaf hash in the published tree');
  }

  /**
   * The hashes of tile (level, index) at `width` (256 = full), as served at
   * tile/<L>/<N>[.p/<W>]. Only tiles a published checkpoint covers are served.
   * @throws {NotFoundError}
   */
  async tile(level: number, index: number, width: number): Promise<Uint8Array> {
    const have = tileWidthAt(level, index, this.latest.treeSize);
    if (have < width) throw new NotFoundError(`tile ${level}/${index} of width ${width} is not in the published tree`);
    if (!this.tiles.has(level, index, width)) {
      // The data read is returned, not looked up again: other reads may evict it meanwhile.
      const data = await this.store.readTile(level, index);
      if (!data || data.length < width * HASH_SIZE) throw new FatalError(`tile ${level}/${index} of width ${width} is missing from storage`);
      this.tiles.put(level, index, data);
      return data.subarray(0, width * HASH_SIZE);
    }
    return this.tiles.get(level, index)!.subarray(0, width * HASH_SIZE);
  }

  /**
   * The tile's hashes if a published checkpoint covers the tile at `width` and the tile is
   * in memory; undefined otherwise (then tile() fetches it or names the error).
   */
  cachedTile(level: number, index: number, width: number): Uint8Array | undefined {
    if (tileWidthAt(level, index, this.latest.treeSize) < width) return undefined;
    return this.tiles.get(level, index)?.subarray(0, width * HASH_SIZE);
  }

  /** Entry bundle `index` at `width`, as served at tile/entries/<N>[.p/<W>]. @throws {NotFoundError} */
  async bundle(index: number, width: number): Promise<Uint8Array> {
    const have = tileWidthAt('entries', index, this.latest.treeSize);
    if (have < width) throw new NotFoundError(`entry bundle ${index} of width ${width} is not in the published tree`);
    let b = this.bundles.get(index);
    if (!b || b.width < width) {
      const data = await this.store.readBundle(index);
      if (!data) throw new FatalError(`entry bundle ${index} is missing from storage`);
      b = { data, width: decodeBundle(data).length };
      if (b.width === TILE_WIDTH) {
        this.bundles.set(index, b);
        if (this.bundles.size > 256) this.bundles.delete(this.bundles.keys().next().value!);
      }
    }
    if (width === b.width) return b.data;
    // A narrower view is a prefix of the stored bundle.
    let o = 0;
    for (let i = 0; i < width; i++) o += 2 + ((b.data[o]! << 8) | b.data[o + 1]!);
    return b.data.subarray(0, o);
  }

  /** Stops the loops after the work in hand and closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Drain: let the loops sequence, integrate and publish what callers are waiting for.
    for (let i = 0; i < 100 && !this.fatal && this.pendingCount() > 0; i++) await sleep(50);
    this.closed = true;
    this.poolSignal.notify();
    this.queueSignal.notify();
    this.witnessSignal.notify();
    await Promise.allSettled(this.loops);
    const err = new PushbackError('the log is shutting down');
    for (const p of this.pool) for (const w of p.waiters) w.group.reject(err);
    for (const w of this.publishWaiters) w.reject(err);
    await this.store.close();
  }
}

