/**
 * @module
 * The agent-side client: builds and signs an agent's run entries (spec/agent-entries.md),
 * submits them to a Glasslog server, and verifies every receipt it gets back before
 * returning it. It uses only `fetch`, Web Crypto's random source and the pure modules
 * (core, note, entry, verify), so it runs in Node and in a browser.
 *
 *   const client = new AgentClient({ url, agent: 'planner-7', token, skey, trust: { logKey } });
 *   const run = client.run('run-2024-06-01T12:00:00Z');
 *   const r = await run.log('prompt', { payloads: { prompt: 'What is 2 + 2?' } });
 *   // r.index, r.checkpoint: the prompt's commitment is in the log, verifiably
 *   await client.submit([run.close()]);
 *
 * Server API assumed (the agent endpoint of the log server; written alongside this client):
 *
 * - `POST <url>/v1/agents/<agent>/entries?wait=published`, `Authorization: Bearer <token>`,
 *   `Content-Type: application/json`, body
 *   `{"entries":[{"envelope":"<base64 leaf>","payloads":{"<name>":{"salt":"<b64>","data":"<b64>"}}}]}`
 *   with `payloads` omitted when the entry has none. At most 1000 entries per request; a
 *   request is stored all or nothing. Agent ids are `[A-Za-z0-9._:@-]`, all legal in a URL
 *   path segment, so the agent goes into the path as is.
 * - `201`, or `200` when every entry was a duplicate (either is accepted), with
 *   `{"results":[{"index":n,"leafHash":"<b64>","duplicate":bool,"receipt":"<tlog-proof>"}]}`,
 *   one result per entry, in request order. `wait=published` (the default, sent explicitly
 *   here) makes the server answer once a signed checkpoint covers the entries, with a receipt.
 *   (spec/agent-api.md now documents this endpoint; this client was checked against it.)
 * - Errors are `{"error":{"status":n,"message":"…"}}`; 429 and 503 carry `Retry-After`
 *   (seconds; an HTTP date is accepted too).
 * - Resubmitting an entry (same agent, run and seq, identical bytes) returns its original
 *   index with `duplicate: true`, so a retry never logs an entry twice; the same (agent,
 *   run, seq) with different bytes is a 409. This is what makes every retry here safe: the
 *   client always resends the very bytes it first sent, never a re-built entry.
 */
import { MalformedError, TlogError, VerificationError, type TlogErrorCode } from '../core/errors.js';
import { decodeBase64, encodeBase64, equalBytes, quote, utf8 } from '../core/encoding.js';
import { HASH_SIZE } from '../core/hash.js';
import {
  isValidId,
  newPayloadSalt,
  payloadCommitment,
  signEntry,
  type Entry,
  type EventEntry,
  type ModelInfo,
  type RunCloseEntry,
  type SignedEntry,
} from '../entry/index.js';
import { ALG_ED25519, generateKey, parseSignerKey, webCryptoRandom, type RandomSource } from '../note/keys.js';
import { newVerifier } from '../note/note.js';
import type { Policy } from '../verify/policy.js';
import { verifyReceipt, type VerifiedReceipt } from '../verify/receipt.js';
import { errorText, isObject, serverMessage } from './errors.js';

export type { VerifiedReceipt } from '../verify/receipt.js';

/** Most entries sent in one request. */
export const MAX_ENTRIES_PER_REQUEST = 1000;

export interface AgentClientOptions {
  /** The log server's base URL, e.g. `https://log.example.com`. */
  readonly url: string;
  /** The agent id, `[A-Za-z0-9._:@-]{1,128}`. */
  readonly agent: string;
  /** The agent's bearer token. */
  readonly token: string;
  /** The agent's signing key, `PRIVATE+KEY+<agent>+…` (see {@link AgentClient.generateKey}). */
  readonly skey: string;
  /** What receipts are verified against: the log's verifier key, or a tlog-policy. */
  readonly trust: { readonly logKey: string } | { readonly policy: Policy };
  /** Default: the global fetch. */
  readonly fetch?: typeof fetch;
  /** Retries after a network error, a timeout, 429 or 5xx (default 5). */
  readonly retries?: number;
  /** Per-attempt timeout, 0 for none (default 60 000 ms: the server answers once a checkpoint is signed). */
  readonly timeoutMs?: number;
  /** Clock for entry times, milliseconds since the Unix epoch (default Date.now). */
  readonly now?: () => number;
  /** First back-off delay; doubled at each retry, with jitter (default 200 ms). */
  readonly backoffMs?: number;
  /** Longest wait between two attempts, Retry-After included (default 60 000 ms). */
  readonly maxDelayMs?: number;
  /** How to wait between attempts (default setTimeout); for tests. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Source of payload salts (default Web Crypto). */
  readonly random?: RandomSource;
}

/** A signed entry ready to submit, with the payloads its commitments open to. */
export interface PreparedEntry {
  readonly signed: SignedEntry;
  readonly payloads: Readonly<Record<string, { readonly salt: Uint8Array; readonly data: Uint8Array }>>;
}

/** The optional fields of an event. */
export interface EventFields {
  /** Milliseconds since the Unix epoch (default: the client's clock). */
  readonly time?: number;
  /** The seq of the event's causal parent in this run. */
  readonly parent?: number;
  readonly model?: ModelInfo;
  readonly attrs?: Readonly<Record<string, string | number | boolean>>;
  /** Payloads, as bytes or UTF-8 text; only salted commitments go into the entry. */
  readonly payloads?: Readonly<Record<string, Uint8Array | string>>;
}

/**
 * A submission failed: the server refused it (`status`, and the server's `serverMessage`),
 * or it could not be reached (`status` undefined) within the retries.
 */
export class AgentApiError extends TlogError {
  constructor(
    message: string,
    /** The HTTP status; undefined for a network error or timeout. */
    readonly status: number | undefined,
    /** The server's error message, when it sent one. */
    readonly serverMessage?: string,
    options?: { cause?: unknown }
  ) {
    super(codeOf(status), message, options);
  }
}

function codeOf(status: number | undefined): TlogErrorCode {
  switch (status) {
    case 400:
      return 'MALFORMED';
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 409:
      return 'CONFLICT';
    case 413:
      return 'TOO_LARGE';
    case 422:
      return 'VERIFICATION_FAILED';
    case 410:
      return 'GONE';
    case 429:
      return 'RATE_LIMITED';
    case 503:
      return 'PUSHBACK';
    default:
      return 'STORAGE';
  }
}

/** The agent's signing key, kept off the client object (so it never shows in a dump). */
const signingKeys = new WeakMap<AgentClient, string>();

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class AgentClient {
  readonly url: string;
  readonly agent: string;
  private readonly token: string;
  private readonly trust: { readonly logKey: string } | { readonly policy: Policy };
  private readonly fetchFn: typeof fetch;
  private readonly retries: number;
  private readonly timeoutMs: number;
  private readonly backoffMs: number;
  private readonly maxDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** @internal used by AgentRun */
  readonly now: () => number;
  /** @internal used by AgentRun */
  readonly random: RandomSource;

  /**
   * Generates a new agent key: `skey` for {@link AgentClientOptions.skey}, `vkey` to
   * register with the log. @throws {MalformedError} If `agent` is not a valid agent id.
   */
  static generateKey(agent: string): { skey: string; vkey: string } {
    if (!isValidId(agent)) throw new MalformedError(`agent id ${quote(String(agent))} is not 1 to 128 characters of [A-Za-z0-9._:@-]`);
    return generateKey(agent, ALG_ED25519, webCryptoRandom);
  }

  /**
   * @throws {MalformedError} If the agent id, the signing key (or its name) or the log key
   *   is not valid.
   * @throws {RangeError} If a numeric option is out of range.
   */
  constructor(opts: AgentClientOptions) {
    if (!isValidId(opts.agent)) {
      throw new MalformedError(`agent id ${quote(String(opts.agent))} is not 1 to 128 characters of [A-Za-z0-9._:@-]`);
    }
    const k = parseSignerKey(opts.skey);
    if (k.alg !== ALG_ED25519) throw new MalformedError('the agent signing key must be an Ed25519 (type 0x01) key');
    if (k.name !== opts.agent) {
      throw new MalformedError(`the signing key is named ${quote(k.name)}, not after the agent ${quote(opts.agent)}`);
    }
    if ('logKey' in opts.trust) newVerifier(opts.trust.logKey); // fail now, not at the first receipt
    else if (typeof opts.trust.policy !== 'object' || opts.trust.policy === null) throw new TypeError('trust.policy must be a Policy');
    const count = (v: number | undefined, d: number, what: string): number => {
      const n = v ?? d;
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative integer, got ${n}`);
      return n;
    };
    this.url = opts.url.replace(/\/+$/, '');
    this.agent = opts.agent;
    this.token = opts.token;
    this.trust = opts.trust;
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.retries = count(opts.retries, 5, 'retries');
    this.timeoutMs = count(opts.timeoutMs, 60_000, 'timeoutMs');
    this.backoffMs = count(opts.backoffMs, 200, 'backoffMs');
    this.maxDelayMs = count(opts.maxDelayMs, 60_000, 'maxDelayMs');
    this.sleep = opts.sleep ?? defaultSleep;
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? webCryptoRandom;
    signingKeys.set(this, opts.skey);
  }

  /**
   * Signs a run entry (event or run.close) of this agent with the agent's key. AgentRun
   * does this for you, keeping seq and prev.
   * @throws {RangeError} If the entry is not a run entry of this agent.
   * @throws {MalformedError} If a field is invalid.
   */
  signEntry(entry: EventEntry | RunCloseEntry): SignedEntry {
    if ((entry.type !== 'event' && entry.type !== 'run.close') || entry.agent !== this.agent) {
      throw new RangeError(`signEntry: not a run entry of agent ${quote(this.agent)}`);
    }
    return signEntry(entry, signingKeys.get(this)!);
  }

  /**
   * A run writer: keeps seq and prev. After a restart, resume with the next `seq` and the
   * leaf hash `prev` of the run's last entry (from its receipt).
   * @throws {MalformedError} If `run` is not a valid run id or `resume` is inconsistent.
   */
  run(run: string, resume?: { seq: number; prev?: Uint8Array }): AgentRun {
    return new AgentRun(this, run, resume);
  }

  /**
   * Submits prepared entries, in order, one request per ≤ 1000 entries. Network errors,
   * timeouts, 429 and 5xx are retried (up to `retries` times per request) with exponential
   * back-off that honours Retry-After, resending the same bytes, which the server
   * deduplicates. Every receipt is verified against the trust (leaf = the envelope bytes)
   * before anything is returned.
   *
   * A request is stored all or nothing, but when entries need several requests and a later
   * one fails, the earlier ones are logged: submitting the same PreparedEntries again is
   * always safe and returns the same indices.
   *
   * @returns One verified receipt per entry, in order.
   * @throws {AgentApiError} A 4xx other than 429 (at once), or the last failure once the
   *   retries are spent.
   * @throws {VerificationError} {@link MalformedError} If the server's answer or a receipt
   *   does not check out (not retried: the entries may well be logged; the answer is wrong).
   * @throws {RangeError} If an entry is not an event or run.close of this agent.
   */
  async submit(entries: readonly PreparedEntry[]): Promise<VerifiedReceipt[]> {
    for (const p of entries) {
      const e = p.signed.entry;
      if ((e.type !== 'event' && e.type !== 'run.close') || e.agent !== this.agent) {
        const whose = 'agent' in e ? ` of agent ${quote(e.agent)}` : '';
        throw new RangeError(`submit: a ${e.type} entry${whose} is not a run entry of agent ${quote(this.agent)}`);
      }
    }
    const out: VerifiedReceipt[] = [];
    for (let i = 0; i < entries.length; i += MAX_ENTRIES_PER_REQUEST) {
      out.push(...(await this.submitChunk(entries.slice(i, i + MAX_ENTRIES_PER_REQUEST))));
    }
    return out;
  }

  private endpoint(): string {
    return `${this.url}/v1/agents/${this.agent}/entries?wait=published`;
  }

  private async submitChunk(entries: readonly PreparedEntry[]): Promise<VerifiedReceipt[]> {
    // Built once: every attempt sends exactly these bytes.
    const body = JSON.stringify({
      entries: entries.map((p) => {
        const names = Object.keys(p.payloads);
        if (names.length === 0) return { envelope: encodeBase64(p.signed.bytes) };
        const payloads: Record<string, { salt: string; data: string }> = {};
        for (const n of names) {
          const v = p.payloads[n]!;
          payloads[n] = { salt: encodeBase64(v.salt), data: encodeBase64(v.data) };
        }
        return { envelope: encodeBase64(p.signed.bytes), payloads };
      }),
    });
    const answer = await this.post(this.endpoint(), body);
    return this.checkAnswer(answer, entries);
  }

  /** POSTs `body` until the server answers 200 or 201; returns the parsed JSON. */
  private async post(url: string, body: string): Promise<unknown> {
    const what = `POST ${url}`;
    for (let attempt = 0; ; attempt++) {
      let failure: AgentApiError | undefined;
      let retryAfterMs: number | undefined;
      let res: Response | undefined;
      try {
        res = await this.fetchFn(url, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${this.token}`,
            'content-type': 'application/json',
            accept: 'application/json',
          },
          body,
          ...(this.timeoutMs > 0 && { signal: AbortSignal.timeout(this.timeoutMs) }),
        });
      } catch (err) {
        failure = new AgentApiError(`${what}: ${errorText(err)}`, undefined, undefined, { cause: err });
      }
      if (res !== undefined) {
        let text: string | undefined;
        let readError: unknown;
        try {
          text = await res.text();
        } catch (err) {
          readError = err;
        }
        if (text === undefined) {
          // The connection broke while the answer arrived: the entries may be stored, which
          // a resubmission finds out without storing them twice.
          failure = new AgentApiError(`${what}: reading the answer: ${errorText(readError)}`, undefined, undefined, { cause: readError });
        } else if (res.status === 200 || res.status === 201) {
          try {
            return JSON.parse(text) as unknown;
          } catch (err) {
            throw new MalformedError(`${what}: the answer is not JSON: ${errorText(err)}`, { cause: err });
          }
        } else {
          const msg = serverMessage(text);
          failure = new AgentApiError(`${what}: status ${res.status}${msg === undefined ? '' : `: ${msg}`}`, res.status, msg);
          if (res.status !== 429 && res.status < 500) throw failure;
          retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
        }
      }
      if (attempt >= this.retries || failure === undefined) throw failure ?? new AgentApiError(`${what}: no answer`, undefined);
      await this.sleep(this.delay(attempt, retryAfterMs));
    }
  }

  /** Exponential back-off with jitter, at least Retry-After, at most maxDelayMs. */
  private delay(attempt: number, retryAfterMs: number | undefined): number {
    const exp = Math.min(this.maxDelayMs, this.backoffMs * 2 ** Math.min(attempt, 30));
    const jittered = exp / 2 + Math.random() * (exp / 2);
    return Math.min(this.maxDelayMs, Math.max(retryAfterMs ?? 0, jittered));
  }

  /** Checks the server's answer and verifies every receipt. */
  private checkAnswer(answer: unknown, entries: readonly PreparedEntry[]): VerifiedReceipt[] {
    const bad = (why: string) => new MalformedError(`agent API answer: ${why}`);
    const results = isObject(answer) ? answer['results'] : undefined;
    if (!Array.isArray(results)) throw bad('no "results" array');
    if (results.length !== entries.length) throw bad(`${results.length} results for ${entries.length} entries`);
    return entries.map((p, i) => {
      const r: unknown = results[i];
      if (!isObject(r)) throw bad(`result ${i} is not an object`);
      const index = r['index'];
      if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0) throw bad(`result ${i}: bad index`);
      const lh = r['leafHash'];
      if (typeof lh !== 'string') throw bad(`result ${i}: no leafHash`);
      const leafHash = decodeBase64(lh, `agent API answer: result ${i}: leafHash`);
      if (leafHash.length !== HASH_SIZE || !equalBytes(leafHash, p.signed.leafHash)) {
        throw new VerificationError(
          `agent API answer: result ${i} (index ${index}) has leaf hash ${lh}, but the entry's is ${encodeBase64(p.signed.leafHash)}`
        );
      }
      const receipt = r['receipt'];
      if (typeof receipt !== 'string') throw bad(`result ${i} (index ${index}): no receipt`);
      let v: VerifiedReceipt;
      try {
        v = verifyReceipt(receipt, p.signed.bytes, this.trust);
      } catch (err) {
        const e = err as Error;
        const msg = `receipt for entry ${i} (${describe(p.signed.entry)}, index ${index}): ${e.message}`;
        throw err instanceof MalformedError ? new MalformedError(msg, { cause: err }) : new VerificationError(msg, { cause: err });
      }
      if (v.index !== index) {
        throw new VerificationError(`receipt for entry ${i} (${describe(p.signed.entry)}) is for index ${v.index}, but the answer says ${index}`);
      }
      return v;
    });
  }
}

/**
 * Writes one agent run: numbers its entries (seq from 0), chains each to the previous one
 * (prev = the previous entry's leaf hash), salts and commits its payloads, and signs it.
 * Get one from {@link AgentClient.run}.
 */
export class AgentRun {
  readonly agent: string;
  readonly run: string;
  private nextSeq: number;
  private lastLeafHash: Uint8Array | undefined;
  private closed = false;
  /** Entries log()/logClose() prepared whose submission has not succeeded yet, in order. */
  private unconfirmed: PreparedEntry[] = [];
  private readonly confirmed = new WeakMap<PreparedEntry, VerifiedReceipt>();
  /** Submissions of this run, one after the other, so the log gets them in seq order. */
  private tail: Promise<unknown> = Promise.resolve();

  /** Use {@link AgentClient.run}. */
  constructor(
    private readonly client: AgentClient,
    run: string,
    resume?: { seq: number; prev?: Uint8Array }
  ) {
    if (!isValidId(run)) throw new MalformedError(`run id ${quote(String(run))} is not 1 to 128 characters of [A-Za-z0-9._:@-]`);
    const seq = resume?.seq ?? 0;
    if (!Number.isSafeInteger(seq) || seq < 0) throw new MalformedError(`resume.seq: ${seq} is not a non-negative integer`);
    const prev = resume?.prev;
    if (seq === 0 && prev !== undefined) throw new MalformedError('resume.prev: must be absent when seq is 0');
    if (seq > 0 && (!(prev instanceof Uint8Array) || prev.length !== HASH_SIZE)) {
      throw new MalformedError(`resume.prev: the ${HASH_SIZE}-byte leaf hash of entry ${seq - 1} is required when seq > 0`);
    }
    this.agent = client.agent;
    this.run = run;
    this.nextSeq = seq;
    this.lastLeafHash = prev === undefined ? undefined : Uint8Array.from(prev);
  }

  /** The seq the next entry gets (after close(): the number of entries, close included). */
  get seq(): number {
    return this.nextSeq;
  }

  /** The leaf hash of the last entry prepared, which the next one chains to. */
  get prev(): Uint8Array | undefined {
    return this.lastLeafHash === undefined ? undefined : Uint8Array.from(this.lastLeafHash);
  }

  /** Whether close() was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Entries that log()/logClose() prepared and whose submission has not succeeded yet. */
  get pending(): readonly PreparedEntry[] {
    return [...this.unconfirmed];
  }

  /**
   * Builds and signs the next event, advancing seq and prev. Payload values (bytes, or
   * text taken as UTF-8) are salted with fresh random salts; the entry carries only their
   * commitments, the PreparedEntry the salts and data for the server.
   * @throws {MalformedError} If a field is invalid (the message names it); nothing advances.
   * @throws {Error} If the run is closed.
   */
  event(kind: string, fields: EventFields = {}): PreparedEntry {
    this.checkOpen();
    const payloads: Record<string, { salt: Uint8Array; data: Uint8Array }> = {};
    const commitments: Record<string, Uint8Array> = {};
    for (const [name, v] of Object.entries(fields.payloads ?? {})) {
      if (v === undefined) continue;
      if (typeof v !== 'string' && !(v instanceof Uint8Array)) {
        throw new MalformedError(`entry.payloads.${name}: expected bytes or text`);
      }
      const data = typeof v === 'string' ? utf8(v) : Uint8Array.from(v);
      const salt = newPayloadSalt(this.client.random);
      payloads[name] = { salt, data };
      commitments[name] = payloadCommitment(salt, data);
    }
    const entry: EventEntry = {
      type: 'event',
      agent: this.agent,
      run: this.run,
      seq: this.nextSeq,
      ...(this.lastLeafHash !== undefined && { prev: this.lastLeafHash }),
      ...(fields.parent !== undefined && { parent: fields.parent }),
      kind,
      time: fields.time ?? this.client.now(),
      ...(fields.model !== undefined && { model: fields.model }),
      ...(fields.attrs !== undefined && { attrs: fields.attrs }),
      ...(Object.keys(commitments).length > 0 && { payloads: commitments }),
    };
    return this.advance(entry, payloads);
  }

  /**
   * Builds and signs the run.close entry (seq = the number of events), after which the
   * run takes no more entries.
   * @throws {Error} If the run is already closed.
   */
  close(fields: { time?: number } = {}): PreparedEntry {
    this.checkOpen();
    const entry: RunCloseEntry = {
      type: 'run.close',
      agent: this.agent,
      run: this.run,
      seq: this.nextSeq,
      ...(this.lastLeafHash !== undefined && { prev: this.lastLeafHash }),
      time: fields.time ?? this.client.now(),
    };
    const p = this.advance(entry, {});
    this.closed = true;
    return p;
  }

  /**
   * event() then submit(). Submissions of one run go out one after the other; an entry
   * whose submission failed is sent again, before the new one, by the next log(),
   * logClose() or flush(), so the run reaches the log without gaps.
   */
  async log(kind: string, fields?: EventFields): Promise<VerifiedReceipt> {
    // event() runs at the call, before any await, so seqs follow the order of the calls.
    return this.enqueue(this.event(kind, fields));
  }

  /** close() then submit(), in turn with log(). */
  async logClose(fields?: { time?: number }): Promise<VerifiedReceipt> {
    return this.enqueue(this.close(fields));
  }

  /** Submits the entries whose log() failed, if any. */
  flush(): Promise<VerifiedReceipt[]> {
    const task = this.tail.then(async () => {
      const batch = [...this.unconfirmed];
      if (batch.length === 0) return [];
      return this.send(batch);
    });
    this.tail = task.catch(() => undefined);
    return task;
  }

  private enqueue(p: PreparedEntry): Promise<VerifiedReceipt> {
    this.unconfirmed.push(p);
    const task = this.tail.then(async () => {
      const done = this.confirmed.get(p);
      if (done !== undefined) return done;
      const upTo = this.unconfirmed.indexOf(p);
      const receipts = await this.send(this.unconfirmed.slice(0, upTo + 1));
      return receipts[receipts.length - 1]!;
    });
    this.tail = task.catch(() => undefined);
    return task;
  }

  private async send(batch: PreparedEntry[]): Promise<VerifiedReceipt[]> {
    const receipts = await this.client.submit(batch);
    batch.forEach((p, i) => this.confirmed.set(p, receipts[i]!));
    const sent = new Set(batch);
    this.unconfirmed = this.unconfirmed.filter((p) => !sent.has(p));
    return receipts;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`run ${quote(this.run)} of agent ${quote(this.agent)} is closed`);
  }

  private advance(entry: EventEntry | RunCloseEntry, payloads: PreparedEntry['payloads']): PreparedEntry {
    const signed = this.client.signEntry(entry);
    this.nextSeq++;
    this.lastLeafHash = signed.leafHash;
    return { signed, payloads };
  }
}

/** Retry-After as milliseconds: delay-seconds or an HTTP date; undefined if absent or bad. */
export function parseRetryAfter(v: string | null): number | undefined {
  if (v === null) return undefined;
  const s = v.trim();
  if (/^[0-9]+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

function describe(e: Entry): string {
  return e.type === 'event' || e.type === 'run.close' ? `${e.type} ${e.run}#${e.seq}` : e.type;
}
