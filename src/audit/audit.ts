/**
 * The agent audit layer over the log (spec/agent-entries.md): what an entry may say, who
 * may write it, and how it is found.
 *
 *   submit() ── decode, payload commitments, agent key, signatures (all cores),
 *               replay / chain / closed-run checks ──► log.add()      sequenced, durably
 *   indexer  ── in index order, from the log's own bytes ──► store.index()   rows, key
 *               periods, payloads, erasures, one transaction with the watermark
 *   a write is answered once its entries are indexed (and, by default, published).
 *
 * The index is derived from the log: after a crash the indexer resumes at its watermark
 * and re-reads, re-checks and records whatever was sequenced since. Only a payload can be
 * lost that way (it travels beside the entry, not in it); resubmitting the entry, which is
 * then a duplicate, stores it.
 */
import { decodeBundle } from '../core/bundle.js';
import { encodeBase64, equalBytes, quote } from '../core/encoding.js';
import {
  ConflictError,
  FatalError,
  ForbiddenError,
  GoneError,
  MalformedError,
  NotFoundError,
  PushbackError,
  RateLimitedError,
  TlogError,
  TooLargeError,
  VerificationError,
} from '../core/errors.js';
import { TILE_WIDTH, tileWidthAt } from '../core/tile.js';
import { ALG_ED25519, parseVerifierKey } from '../note/keys.js';
import {
  auditRun,
  decodeEnvelope,
  entrySigningMessage,
  entryToJson,
  isRunEntry,
  KeyHistory,
  payloadCommitment,
  PAYLOAD_SALT_SIZE,
  signEntry,
  type Entry,
  type KeyPeriod,
  type RunEntry,
  type RunFinding,
  type SignedEntry,
} from '../entry/index.js';
import type { Log } from '../log/log.js';
import { Counter, Gauge, Registry } from '../metrics.js';
import { IndexConflictError, type AuditRow, type AuditStore, type EntryQuery, type EntryType, type KeyRow, type PayloadRow } from '../storage/audit-store.js';
import { KeyedGate, Mutex, RateLimiter } from './gate.js';
import type { VerifyPool } from './verify-pool.js';

export interface PayloadInput {
  readonly salt: Uint8Array;
  readonly data: Uint8Array;
}

export interface Submission {
  /** The signed envelope: the bytes that become the leaf. */
  readonly envelope: Uint8Array;
  readonly payloads?: Readonly<Record<string, PayloadInput>>;
}

export interface SubmitResult {
  readonly index: number;
  readonly leafHash: Uint8Array;
  /** The entry was already logged (same agent, run, seq and bytes): nothing was appended. */
  readonly duplicate: boolean;
}

export interface AuditOptions {
  readonly log: Log;
  readonly store: AuditStore;
  /** The log's signing key (PRIVATE+KEY+…): it signs registry and erasure entries. */
  readonly logSkey: string;
  readonly pool: VerifyPool;
  /** Entries per second per agent, and the burst (default 2000/s, burst 4000). */
  readonly rate?: { readonly perSecond: number; readonly burst: number };
  readonly now?: () => number;
  readonly metrics?: Registry;
}

/** What the indexer needs to know of an entry it did not read back from the log. */
interface Pending {
  readonly signed: SignedEntry;
  readonly payloads: readonly PayloadRow[];
}

const runKey = (agent: string, run: string) => `${agent}\n${run}`;
const seqKey = (agent: string, run: string, seq: number) => `${agent}\n${run}\n${seq}`;
const INDEX_BATCH = 4096;

export class AuditLog {
  readonly log: Log;
  private readonly store: AuditStore;
  private readonly logSkey: string;
  private readonly logPublicKey: Uint8Array;
  private readonly pool: VerifyPool;
  private readonly now: () => number;
  private readonly keys = new KeyHistory();
  /** The highest index of a registry entry applied to `keys`. */
  private keysApplied = -1;
  private readonly gate = new KeyedGate();
  private readonly registry = new Mutex();
  private readonly limiter: RateLimiter;
  private readonly burst: number;
  /** Run entries checked and being sequenced or indexed, by (agent, run, seq). */
  private readonly inflight = new Map<string, { leafHash: Uint8Array; index: Promise<number> }>();
  /** Closes in flight, by (agent, run). */
  private readonly inflightClose = new Map<string, number>();
  private readonly pending = new Map<number, Pending>();
  private watermark = 0;
  /** Counts indexing steps (see sequence()). */
  private indexEpoch = 0;
  private indexWaiters: Array<{ size: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private wakeIndexer: (() => void) | undefined;
  private closed = false;
  private failed: Error | undefined;
  private loop: Promise<void> | undefined;
  private readonly mEntries: Counter;
  private readonly mRejected: Counter;

  private constructor(opts: AuditOptions) {
    this.log = opts.log;
    this.store = opts.store;
    this.logSkey = opts.logSkey;
    const vk = parseVerifierKey(opts.log.vkey);
    this.logPublicKey = vk.publicKey;
    this.pool = opts.pool;
    this.now = opts.now ?? Date.now;
    this.burst = opts.rate?.burst ?? 4000;
    this.limiter = new RateLimiter(opts.rate?.perSecond ?? 2000, this.burst, this.now);
    const m = opts.metrics ?? opts.log.metrics;
    this.mEntries = m.register(new Counter('glasslog_agent_entries_total', 'Agent entries appended, by type'));
    this.mRejected = m.register(new Counter('glasslog_agent_entries_rejected_total', 'Agent entry submissions refused, by reason'));
    m.register(new Gauge('glasslog_agent_index_lag', 'Sequenced entries not yet indexed', () => this.log.sequencedSize() - this.watermark));
  }

  /** Opens the layer: migrates, rebuilds the key history, catches the index up with the log. */
  static async open(opts: AuditOptions): Promise<AuditLog> {
    const a = new AuditLog(opts);
    await opts.store.migrate();
    a.watermark = await opts.store.indexedSize();
    a.rebuildKeys(await opts.store.allKeys());
    opts.log.onSequenced(() => a.wakeIndexer?.());
    a.loop = a.indexerLoop();
    await a.waitIndexed(opts.log.sequencedSize());
    return a;
  }

  /** The key history as recorded, replayed through KeyHistory's own transition rules. */
  private rebuildKeys(rows: readonly KeyRow[]): void {
    const events: Array<{ index: number; entry: Entry }> = [];
    const seen = new Set<string>();
    for (const r of rows) {
      events.push({ index: r.from, entry: { type: seen.has(r.agent) ? 'agent.rotate' : 'agent.register', agent: r.agent, key: r.vkey, time: 0 } });
      seen.add(r.agent);
      if (r.endedBy === 'revoked' && r.until !== null) events.push({ index: r.until, entry: { type: 'agent.revoke', agent: r.agent, key: r.vkey, reason: '', time: 0 } });
    }
    events.sort((x, y) => x.index - y.index);
    for (const e of events) {
      this.keys.apply(e.index, e.entry);
      this.keysApplied = Math.max(this.keysApplied, e.index);
    }
  }

  // ---- writes by agents ----

  /**
   * Checks and appends a batch of an agent's entries, all or nothing: any refusal stores
   * nothing. Resolves once every entry is indexed (with its payloads); a duplicate resolves
   * to the original's index.
   */
  async submit(agent: string, subs: readonly Submission[]): Promise<SubmitResult[]> {
    this.checkOpen();
    if (subs.length === 0) throw new MalformedError('no entries');
    const items = subs.map((s, i) => this.decodeSubmission(agent, s, i));
    const results = await this.gate.shared(agent, async () => {
      const key = this.keys.current(agent);
      const positions = items.map((x, position) => ({ ...x, position }));
      const ok = key ? await this.signaturesOk(key, positions) : positions.map(() => false);
      const failing = positions.filter((_, j) => !ok[j]);
      if (failing.length > 0) {
        // Entries already logged with these very bytes are answered as duplicates whatever
        // happened to the agent's key since (their signature was checked at their index),
        // so a retry of a write whose answer was lost never turns into a refusal. Only a
        // refusal pays for this lookup.
        const logged = await this.loggedAlready(agent, failing);
        const refused = failing.filter(({ entry }) => !logged.has(seqKey(agent, entry.run, entry.seq)));
        if (refused.length > 0) {
          if (!key) throw this.noKey(agent);
          throw await this.explainSignature(agent, key, refused[0]!);
        }
      }
      return this.sequence(agent, items);
    });
    const max = results.reduce((m, r) => Math.max(m, r.index), -1);
    await this.waitIndexed(max + 1);
    await this.repairPayloads(results, items);
    return results;
  }

  private decodeSubmission(agent: string, s: Submission, i: number): { signed: SignedEntry; entry: RunEntry; payloads: PayloadRow[] } {
    const at = `entries[${i}]`;
    let signed: SignedEntry;
    try {
      signed = decodeEnvelope(s.envelope);
    } catch (err) {
      throw this.reject('malformed', new MalformedError(`${at}: ${(err as Error).message}`));
    }
    const entry = signed.entry;
    if (!isRunEntry(entry)) throw this.reject('malformed', new MalformedError(`${at}: an agent cannot submit a ${quote(entry.type)} entry (only event and run.close)`));
    if (entry.agent !== agent) throw this.reject('wrong_agent', new ForbiddenError(`${at} is an entry of agent ${quote(entry.agent)}, not of ${quote(agent)}`));
    const committed = new Map(Object.entries(entry.type === 'event' ? (entry.payloads ?? {}) : {}));
    const given = new Map(Object.entries(s.payloads ?? {}));
    for (const name of given.keys()) {
      if (!committed.has(name)) throw this.reject('payload', new MalformedError(`${at}: payload ${quote(name)} is not committed to by the entry`));
    }
    const payloads: PayloadRow[] = [];
    for (const [name, commitment] of committed) {
      const p = given.get(name);
      if (!p) throw this.reject('payload', new MalformedError(`${at}: the entry commits to payload ${quote(name)}, which the request does not carry`));
      if (p.salt.length !== PAYLOAD_SALT_SIZE) throw this.reject('payload', new MalformedError(`${at}: the salt of payload ${quote(name)} must be ${PAYLOAD_SALT_SIZE} bytes, got ${p.salt.length}`));
      if (!equalBytes(payloadCommitment(p.salt, p.data), commitment)) {
        throw this.reject('payload', new VerificationError(`${at}: payload ${quote(name)} and its salt do not match the entry's commitment`));
      }
      payloads.push({ index: -1, name, commitment, salt: p.salt, data: p.data, erasedBy: null });
    }
    return { signed, entry, payloads };
  }

  /** Signatures on all cores; a signature by an ended key is told apart from a bad one. */
  /** Signatures on all cores, one boolean per entry. */
  private signaturesOk(key: KeyPeriod, items: ReadonlyArray<{ signed: SignedEntry }>): Promise<boolean[]> {
    return this.pool.verify(items.map((x) => ({ publicKey: key.publicKey, message: entrySigningMessage(x.signed.entryBytes), signature: x.signed.signature })));
  }

  /** The (agent, run, seq) keys of `items` the index holds with these very bytes. */
  private async loggedAlready(agent: string, items: ReadonlyArray<{ signed: SignedEntry; entry: RunEntry }>): Promise<Set<string>> {
    const want = new Map(items.map(({ entry, signed }) => [seqKey(agent, entry.run, entry.seq), signed.leafHash]));
    const logged = new Set<string>();
    for (const r of await this.store.findRunEntries(items.map(({ entry }) => ({ agent, run: entry.run, seq: entry.seq })))) {
      const k = seqKey(agent, r.run!, r.seq!);
      if (equalBytes(want.get(k)!, r.leafHash)) logged.add(k);
    }
    return logged;
  }

  /** The refusal for an agent without a current key: never registered, or revoked. */
  private noKey(agent: string): TlogError {
    const periods = this.keys.periods(agent);
    if (periods.length === 0) return this.reject('unknown_agent', new NotFoundError(`unknown agent ${quote(agent)}: an operator registers it first`));
    const last = periods[periods.length - 1]!;
    return this.reject('revoked', new ForbiddenError(`agent ${quote(agent)} has no valid key: ${last.vkey.split('+')[1]} was revoked at index ${last.until}`));
  }

  /** Why an entry's signature failed: a key that was rotated out or revoked, or a bad signature. */
  private async explainSignature(agent: string, key: KeyPeriod, item: { signed: SignedEntry; position: number }): Promise<TlogError> {
    const { signed: s, position: bad } = item;
    for (const p of this.keys.periods(agent)) {
      if (p === key || p.until === null) continue;
      if ((await this.pool.verify([{ publicKey: p.publicKey, message: entrySigningMessage(s.entryBytes), signature: s.signature }]))[0]) {
        return this.reject(
          'ended_key',
          new ForbiddenError(`entries[${bad}] is signed with ${quote(p.vkey)}, ${p.endedBy === 'revoked' ? 'revoked' : 'rotated out'} at index ${p.until}; agent ${quote(agent)} now signs with key ID ${key.keyId.toString(16).padStart(8, '0')}`)
        );
      }
    }
    return this.reject('signature', new VerificationError(`entries[${bad}]: the signature does not verify with agent ${quote(agent)}'s current key ${quote(key.vkey)}`));
  }

  /** Replay, chain and closed-run checks against the batch, the entries in flight and the index; then appends. */
  private async sequence(agent: string, items: ReadonlyArray<{ signed: SignedEntry; entry: RunEntry; payloads: PayloadRow[] }>): Promise<SubmitResult[]> {
    // Each entry's (agent, run, seq), and its predecessor's unless the request carries it.
    const lookups: Array<{ agent: string; run: string; seq: number }> = [];
    const inRequest = new Set(items.map(({ entry }) => seqKey(agent, entry.run, entry.seq)));
    for (const { entry } of items) {
      lookups.push({ agent, run: entry.run, seq: entry.seq });
      if (entry.seq > 0 && !inRequest.has(seqKey(agent, entry.run, entry.seq - 1))) lookups.push({ agent, run: entry.run, seq: entry.seq - 1 });
    }
    // An entry leaves `inflight` only after the index holds it. A read of the index that
    // overlapped an indexing step may have missed an entry that has since left `inflight`,
    // so such a read is repeated: what it returns plus `inflight` is then complete.
    const stored = new Map<string, AuditRow>();
    const closes = new Map<string, number | null>();
    for (;;) {
      const epoch = this.indexEpoch;
      stored.clear();
      closes.clear();
      for (const r of await this.store.findRunEntries(lookups)) stored.set(seqKey(r.agent!, r.run!, r.seq!), r);
      for (const { entry } of items) {
        const k = runKey(agent, entry.run);
        if (!closes.has(k)) closes.set(k, await this.store.runClose(agent, entry.run));
      }
      if (epoch === this.indexEpoch) break;
    }
    for (const k of closes.keys()) if (closes.get(k) === null && this.inflightClose.has(k)) closes.set(k, this.inflightClose.get(k)!);

    const batch = new Map<string, Uint8Array>();
    const out: Array<SubmitResult | { position: number }> = [];
    const fresh: Array<{ signed: SignedEntry; entry: RunEntry; payloads: PayloadRow[] }> = [];
    const dupWaits: Array<Promise<void>> = [];
    for (let i = 0; i < items.length; i++) {
      const { signed, entry } = items[i]!;
      const at = `entries[${i}]`;
      const k = seqKey(agent, entry.run, entry.seq);
      const known = stored.get(k);
      const flying = this.inflight.get(k);
      const inBatch = batch.get(k);
      const existing = known?.leafHash ?? flying?.leafHash ?? inBatch;
      if (existing) {
        if (!equalBytes(existing, signed.leafHash)) {
          throw this.reject('replay', new ConflictError(`${at}: seq ${entry.seq} of run ${quote(entry.run)} is already logged${known ? ` at index ${known.index}` : ''} with different content (a replay or a fork of the run)`));
        }
        if (known) out.push({ index: known.index, leafHash: known.leafHash, duplicate: true });
        else if (flying) {
          const slot = out.length;
          out.push({ position: i });
          dupWaits.push(flying.index.then((index) => void (out[slot] = { index, leafHash: signed.leafHash, duplicate: true })));
        } else throw this.reject('replay', new ConflictError(`${at}: seq ${entry.seq} of run ${quote(entry.run)} appears twice in the request`));
        continue;
      }
      const close = closes.get(runKey(agent, entry.run));
      if (close !== null && close !== undefined) {
        throw this.reject('closed', new ConflictError(`${at}: run ${quote(entry.run)} was closed${close >= 0 ? ` at index ${close}` : ''}; it takes no more entries`));
      }
      if (entry.seq > 0) {
        const pk = seqKey(agent, entry.run, entry.seq - 1);
        const prev = stored.get(pk)?.leafHash ?? this.inflight.get(pk)?.leafHash ?? batch.get(pk);
        if (prev && !equalBytes(prev, entry.prev!)) {
          throw this.reject('chain', new VerificationError(`${at}: prev is not the leaf hash of seq ${entry.seq - 1} of run ${quote(entry.run)} (${encodeBase64(prev)})`));
        }
      }
      if (entry.type === 'run.close') closes.set(runKey(agent, entry.run), -1);
      batch.set(k, signed.leafHash);
      out.push({ position: i });
      fresh.push(items[i]!);
    }
    if (fresh.length > this.burst) {
      throw this.reject('rate', new TooLargeError(`${fresh.length} new entries in one request exceed agent ${quote(agent)}'s burst of ${this.burst}; send smaller batches`));
    }
    if (fresh.length > 0) {
      const wait = this.limiter.take(agent, fresh.length);
      if (wait > 0) throw this.reject('rate', new RateLimitedError(`agent ${quote(agent)} exceeds its rate limit of entries per second; retry in ${wait} s`, wait));
    }

    // Claim the fresh entries so concurrent requests see them, then append.
    let settle!: (indices: number[]) => void;
    let fail!: (err: unknown) => void;
    const indices = new Promise<number[]>((res, rej) => ((settle = res), (fail = rej)));
    indices.catch(() => undefined);
    fresh.forEach(({ signed, entry }, j) => {
      this.inflight.set(seqKey(agent, entry.run, entry.seq), { leafHash: signed.leafHash, index: indices.then((ix) => ix[j]!) });
      if (entry.type === 'run.close') this.inflightClose.set(runKey(agent, entry.run), -1);
    });
    try {
      const added = fresh.length > 0 ? await this.log.add(fresh.map((f) => f.signed.bytes), 'sequenced', fresh.map((f) => f.signed.leafHash)) : [];
      const ix = added.map((a) => a.index);
      fresh.forEach((f, j) => {
        if (!added[j]!.duplicate) this.pending.set(ix[j]!, { signed: f.signed, payloads: f.payloads.map((p) => ({ ...p, index: ix[j]! })) });
        if (f.entry.type === 'run.close') this.inflightClose.set(runKey(agent, f.entry.run), ix[j]!);
      });
      settle(ix);
      await Promise.all(dupWaits);
      let j = 0;
      const results = out.map((r) => ('position' in r ? { index: ix[j]!, leafHash: fresh[j]!.signed.leafHash, duplicate: added[j++]!.duplicate } : r));
      for (const f of fresh) this.mEntries.inc({ type: f.entry.type });
      this.forgetWhenIndexed(agent, fresh, Math.max(-1, ...ix) + 1);
      return results;
    } catch (err) {
      fail(err);
      for (const { entry } of fresh) {
        this.inflight.delete(seqKey(agent, entry.run, entry.seq));
        if (entry.type === 'run.close') this.inflightClose.delete(runKey(agent, entry.run));
      }
      throw err;
    }
  }

  /** Drops the in-flight claims once the index holds the entries. */
  private forgetWhenIndexed(agent: string, fresh: ReadonlyArray<{ entry: RunEntry }>, size: number): void {
    void this.waitIndexed(size)
      .catch(() => undefined)
      .then(() => {
        for (const { entry } of fresh) {
          this.inflight.delete(seqKey(agent, entry.run, entry.seq));
          if (entry.type === 'run.close') this.inflightClose.delete(runKey(agent, entry.run));
        }
      });
  }

  /** A resubmitted entry whose payloads a crash lost gets them back (never after erasure). */
  private async repairPayloads(results: readonly SubmitResult[], items: ReadonlyArray<{ payloads: PayloadRow[] }>): Promise<void> {
    const rows: PayloadRow[] = [];
    results.forEach((r, i) => {
      if (r.duplicate) for (const p of items[i]!.payloads) rows.push({ ...p, index: r.index });
    });
    if (rows.length > 0) await this.store.putPayloads(rows);
  }

  // ---- writes by the operator ----

  private async appendSigned(entry: Entry): Promise<{ index: number; leafHash: Uint8Array }> {
    const signed = signEntry(entry, this.logSkey);
    const [r] = await this.log.add([signed.bytes], 'sequenced');
    this.pending.set(r!.index, { signed, payloads: [] });
    this.wakeIndexer?.();
    return { index: r!.index, leafHash: signed.leafHash };
  }

  private checkAgentKey(agent: string, vkey: string): void {
    let k;
    try {
      k = parseVerifierKey(vkey);
    } catch (err) {
      throw new MalformedError(`key: ${(err as Error).message}`);
    }
    if (k.alg !== ALG_ED25519) throw new MalformedError('key: an agent key must be an Ed25519 note key (type 0x01)');
    if (k.name !== agent) throw new MalformedError(`key: its name ${quote(k.name)} must be the agent id ${quote(agent)}`);
  }

  /** Registers an agent with its first key: an `agent.register` entry signed by the log. */
  register(agent: string, vkey: string): Promise<{ index: number; leafHash: Uint8Array }> {
    return this.registryChange(agent, () => {
      if (this.keys.periods(agent).length > 0) throw new ConflictError(`agent ${quote(agent)} is already registered`);
      this.checkAgentKey(agent, vkey);
      return { type: 'agent.register', agent, key: vkey, time: this.now() };
    });
  }

  /** Rotates an agent to a new key: later entries must be signed with it. */
  rotate(agent: string, vkey: string): Promise<{ index: number; leafHash: Uint8Array }> {
    return this.registryChange(agent, () => {
      if (this.keys.periods(agent).length === 0) throw new NotFoundError(`unknown agent ${quote(agent)}`);
      this.checkAgentKey(agent, vkey);
      if (this.keys.periods(agent).some((p) => p.vkey === vkey)) throw new ConflictError(`agent ${quote(agent)} has used this key before; rotate to a new one`);
      return { type: 'agent.rotate', agent, key: vkey, time: this.now() };
    });
  }

  /** Revokes the agent's current key: it can write nothing until rotated to a new key. */
  revoke(agent: string, vkey: string, reason: string): Promise<{ index: number; leafHash: Uint8Array }> {
    return this.registryChange(agent, () => {
      const cur = this.keys.current(agent);
      if (this.keys.periods(agent).length === 0) throw new NotFoundError(`unknown agent ${quote(agent)}`);
      if (!cur || cur.vkey !== vkey) throw new ConflictError(`${quote(vkey)} is not agent ${quote(agent)}'s current key`);
      return { type: 'agent.revoke', agent, key: vkey, reason, time: this.now() };
    });
  }

  private async registryChange(agent: string, build: () => Entry): Promise<{ index: number; leafHash: Uint8Array }> {
    this.checkOpen();
    return this.registry.run(() =>
      this.gate.exclusive(agent, async () => {
        const entry = build();
        const r = await this.appendSigned(entry);
        this.keys.apply(r.index, entry);
        this.keysApplied = r.index;
        await this.waitIndexed(r.index + 1);
        return r;
      })
    );
  }

  /**
   * Erases a payload (GDPR, a leaked secret): appends a `payload.erase` entry signed by the
   * log; the indexer deletes the payload and its salt in the transaction that records it.
   * Every proof stays valid; the commitment can no longer be opened.
   */
  async erase(index: number, name: string, reason: string): Promise<{ index: number; leafHash: Uint8Array }> {
    this.checkOpen();
    return this.registry.run(async () => {
      const p = (await this.store.payloads([index])).find((x) => x.name === name);
      if (!p) throw new NotFoundError(`entry ${index} has no payload ${quote(name)}`);
      if (p.erasedBy !== null) throw new GoneError(`payload ${quote(name)} of entry ${index} was erased at index ${p.erasedBy}`);
      const r = await this.appendSigned({ type: 'payload.erase', index, name, reason, time: this.now() });
      await this.waitIndexed(r.index + 1);
      return r;
    });
  }

  // ---- the indexer ----

  private waitIndexed(size: number): Promise<void> {
    if (this.watermark >= size) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.indexWaiters.push({ size, resolve, reject });
      this.wakeIndexer?.();
    });
  }

  private async indexerLoop(): Promise<void> {
    while (!this.closed) {
      const target = this.log.sequencedSize();
      if (this.watermark >= target) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 250);
          this.wakeIndexer = () => {
            clearTimeout(t);
            r();
          };
        });
        continue;
      }
      const from = this.watermark;
      const to = Math.min(target, from + INDEX_BATCH);
      try {
        await this.indexRange(from, to);
      } catch (err) {
        if (err instanceof IndexConflictError && err.indexedSize >= to) {
          // A commit whose answer was lost: the range is recorded; carry on from there.
          this.advance(from, err.indexedSize);
          continue;
        }
        if (err instanceof ConflictError || err instanceof FatalError) {
          // The stored index disagrees with the log (a duplicate run entry, a key end with
          // no open period): retrying cannot help, and writing past it would be wrong.
          const fatal = err instanceof FatalError ? err : new FatalError(`indexing [${from}, ${to}): ${err.message}`, { cause: err });
          this.failed = fatal;
          for (const w of this.indexWaiters) w.reject(fatal);
          this.indexWaiters = [];
          console.error(`glasslog: the agent index stopped: ${fatal.message}`);
          return;
        }
        console.error(`glasslog: indexing [${from}, ${to}) failed, retrying: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      this.advance(from, to);
    }
  }

  private advance(from: number, to: number): void {
    this.watermark = to;
    this.indexEpoch++;
    for (let i = from; i < to; i++) this.pending.delete(i);
    const keep: typeof this.indexWaiters = [];
    for (const w of this.indexWaiters) (w.size <= to ? w.resolve() : keep.push(w));
    this.indexWaiters = keep;
  }

  /** Records [from, to): rows, key periods, payloads and erasures, from the log's bytes. */
  private async indexRange(from: number, to: number): Promise<void> {
    let bytes: Uint8Array[] | undefined;
    for (let i = from; i < to && !bytes; i++) if (!this.pending.has(i)) bytes = await this.log.sequencedEntries(from, to);
    const logTime = this.now();
    const rows: AuditRow[] = [];
    const keyRows: KeyRow[] = [];
    const keyEnds: Array<{ agent: string; vkey: string; until: number; endedBy: 'rotated' | 'revoked' }> = [];
    const payloads: PayloadRow[] = [];
    const erasures: Array<{ index: number; name: string; erasedBy: number }> = [];
    // Entries read back (after a crash, or appended raw) are checked again before they
    // count, in index order: a registry entry decides which key the entries after it must be
    // signed with, so registry entries are checked and applied first, then run entries
    // against the key history as of their own index.
    const unchecked: Array<{ index: number; signed: SignedEntry }> = [];
    const checked = new Map<number, SignedEntry>();
    for (let i = from; i < to; i++) {
      const p = this.pending.get(i);
      if (p) {
        checked.set(i, p.signed);
        payloads.push(...p.payloads);
        continue;
      }
      try {
        unchecked.push({ index: i, signed: decodeEnvelope(bytes![i - from]!) });
      } catch {
        // Not an agent entry (an opaque entry appended through /v1/entries): no row.
      }
    }
    for (const { index, signed } of unchecked) {
      const e = signed.entry;
      if (isRunEntry(e)) continue;
      if (!(await this.verifyWith(this.logPublicKey, signed))) continue;
      if (e.type !== 'payload.erase' && index > this.keysApplied) {
        try {
          this.keys.apply(index, e);
        } catch (err) {
          console.error(`glasslog: entry ${index} is a registry entry the key history refuses (${(err as Error).message}); not indexed`);
          continue;
        }
        this.keysApplied = index;
      }
      checked.set(index, signed);
    }
    const runs = unchecked.filter(({ signed }) => isRunEntry(signed.entry));
    const keyOf = (index: number, e: RunEntry) => this.keys.keyAt(e.agent, index);
    const withKey = runs.filter(({ index, signed }) => keyOf(index, signed.entry as RunEntry) !== null);
    const ok = await this.pool.verify(
      withKey.map(({ index, signed }) => ({ publicKey: keyOf(index, signed.entry as RunEntry)!.publicKey, message: entrySigningMessage(signed.entryBytes), signature: signed.signature }))
    );
    // A run entry read back whose (agent, run, seq) the index or an earlier entry of the
    // range already holds is a second version (appended raw): the first one stands.
    const valid = withKey.filter((_, j) => ok[j]);
    const taken = new Set<string>();
    for (const r of await this.store.findRunEntries(valid.map(({ signed }) => signed.entry as RunEntry).map((e) => ({ agent: e.agent, run: e.run, seq: e.seq })))) {
      taken.add(seqKey(r.agent!, r.run!, r.seq!));
    }
    const readBack = new Map(valid.map((v) => [v.index, v.signed]));
    for (let i = from; i < to; i++) {
      const e = (this.pending.get(i)?.signed ?? readBack.get(i))?.entry;
      if (!e || !isRunEntry(e)) continue;
      const k = seqKey(e.agent, e.run, e.seq);
      if (taken.has(k) && readBack.has(i)) {
        console.error(`glasslog: entry ${i} repeats seq ${e.seq} of run ${quote(e.run)} of agent ${quote(e.agent)}; not indexed`);
        continue;
      }
      taken.add(k);
      const back = readBack.get(i);
      if (back) checked.set(i, back);
    }
    for (let i = from; i < to; i++) {
      const s = checked.get(i);
      if (!s) continue;
      const e = s.entry;
      if (e.type === 'agent.register' || e.type === 'agent.rotate' || e.type === 'agent.revoke') {
        for (const period of this.keys.periods(e.agent)) {
          if (period.from === i) keyRows.push({ agent: e.agent, vkey: period.vkey, from: i, until: null, endedBy: null });
          if (period.until === i) keyEnds.push({ agent: e.agent, vkey: period.vkey, until: i, endedBy: period.endedBy! });
        }
      }
      if (e.type === 'payload.erase') erasures.push({ index: e.index, name: e.name, erasedBy: i });
      rows.push(auditRowOf(i, s, logTime));
    }
    await this.store.index({ from, to, rows, keys: keyRows, keyEnds, payloads, erasures });
  }

  private async verifyWith(publicKey: Uint8Array, s: SignedEntry): Promise<boolean> {
    const [ok] = await this.pool.verify([{ publicKey, message: entrySigningMessage(s.entryBytes), signature: s.signature }]);
    return ok === true;
  }

  // ---- reads ----

  /** The key history of an agent, as the log recorded it. */
  async agentKeys(agent: string): Promise<KeyRow[]> {
    const rows = await this.store.keys(agent);
    if (rows.length === 0) throw new NotFoundError(`unknown agent ${quote(agent)}`);
    return rows;
  }

  /** Entry bytes of published indices, from the entry bundles. */
  async entriesAt(indices: readonly number[], treeSize: number): Promise<Map<number, Uint8Array>> {
    const out = new Map<number, Uint8Array>();
    const byBundle = new Map<number, number[]>();
    for (const i of indices) {
      const b = Math.floor(i / TILE_WIDTH);
      byBundle.set(b, [...(byBundle.get(b) ?? []), i]);
    }
    for (const [b, ix] of byBundle) {
      const width = tileWidthAt('entries', b, treeSize);
      const entries = decodeBundle(await this.log.bundle(b, width));
      for (const i of ix) out.set(i, entries[i - b * TILE_WIDTH]!);
    }
    return out;
  }

  /**
   * Entries matching a query, each with its leaf hash and an inclusion proof against the
   * stated checkpoint (the latest published one), newest or oldest first, by cursor.
   */
  async query(q: Omit<EntryQuery, 'below'>): Promise<{ checkpoint: string; treeSize: number; entries: QueryResult[]; next: number | null }> {
    const cp = this.log.checkpoint();
    const rows = await this.store.query({ ...q, below: cp.treeSize });
    const entries = await this.describe(rows, cp.treeSize);
    const next = rows.length === q.limit ? rows[rows.length - 1]!.index : null;
    return { checkpoint: cp.note, treeSize: cp.treeSize, entries, next };
  }

  /** A run as its ordered causal chain, with what an audit of it finds. */
  async run(agent: string, run: string): Promise<{ checkpoint: string; treeSize: number; entries: QueryResult[]; findings: RunFinding[]; closed: boolean; count: number }> {
    const cp = this.log.checkpoint();
    const rows = (await this.store.run(agent, run)).filter((r) => r.index < cp.treeSize);
    if (rows.length === 0) throw new NotFoundError(`no entries of run ${quote(run)} of agent ${quote(agent)} in the published tree`);
    const entries = await this.describe(rows, cp.treeSize);
    const audit = auditRun(entries.map((e) => ({ index: e.index, leafHash: e.leafHash, entry: e.signed.entry as RunEntry })));
    return { checkpoint: cp.note, treeSize: cp.treeSize, entries, ...audit };
  }

  private async describe(rows: readonly AuditRow[], treeSize: number): Promise<QueryResult[]> {
    const bytes = await this.entriesAt(rows.map((r) => r.index), treeSize);
    const payloads = await this.store.payloads(rows.map((r) => r.index));
    const out: QueryResult[] = [];
    for (const r of rows) {
      const signed = decodeEnvelope(bytes.get(r.index)!);
      const { proof } = await this.log.inclusionProof(r.index, treeSize);
      out.push({ index: r.index, leafHash: r.leafHash, logTime: r.logTime, signed, proof, payloads: payloads.filter((p) => p.index === r.index) });
    }
    return out;
  }

  /** A payload and its salt, for a reader allowed to see it. @throws NotFoundError, GoneError */
  async payload(index: number, name: string): Promise<{ agent: string; run: string; salt: Uint8Array; data: Uint8Array; commitment: Uint8Array }> {
    const cp = this.log.checkpoint();
    if (index >= cp.treeSize) throw new NotFoundError(`entry ${index} is not in the published tree`);
    const row = (await this.store.query({ below: index + 1, after: index - 1, limit: 1, order: 'asc' }))[0];
    const p = (await this.store.payloads([index])).find((x) => x.name === name);
    if (!row || row.agent === null || row.run === null || !p) throw new NotFoundError(`entry ${index} has no payload ${quote(name)}`);
    if (p.erasedBy !== null || !p.data || !p.salt) throw new GoneError(`payload ${quote(name)} of entry ${index} was erased at index ${p.erasedBy}`);
    return { agent: row.agent, run: row.run, salt: p.salt, data: p.data, commitment: p.commitment };
  }

  private reject(reason: string, err: TlogError): TlogError {
    this.mRejected.inc({ reason });
    return err;
  }

  private checkOpen(): void {
    if (this.failed) throw new FatalError(`the agent index stopped: ${this.failed.message}`);
    if (this.closed) throw new PushbackError('the log is shutting down');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeIndexer?.();
    await this.loop;
    for (const w of this.indexWaiters) w.reject(new PushbackError('the log is shutting down'));
    this.indexWaiters = [];
  }
}

export interface QueryResult {
  readonly index: number;
  readonly leafHash: Uint8Array;
  readonly logTime: number;
  readonly signed: SignedEntry;
  readonly proof: readonly Uint8Array[];
  readonly payloads: readonly PayloadRow[];
}

function auditRowOf(index: number, s: SignedEntry, logTime: number): AuditRow {
  const e = s.entry;
  const type = e.type as EntryType;
  switch (e.type) {
    case 'event':
      return { index, type, agent: e.agent, run: e.run, seq: e.seq, kind: e.kind, clientTime: e.time, logTime, leafHash: s.leafHash };
    case 'run.close':
      return { index, type, agent: e.agent, run: e.run, seq: e.seq, kind: null, clientTime: e.time, logTime, leafHash: s.leafHash };
    case 'agent.register':
    case 'agent.rotate':
    case 'agent.revoke':
      return { index, type, agent: e.agent, run: null, seq: null, kind: null, clientTime: e.time, logTime, leafHash: s.leafHash };
    case 'payload.erase':
      return { index, type, agent: null, run: null, seq: null, kind: null, clientTime: e.time, logTime, leafHash: s.leafHash };
  }
}

export { entryToJson };
