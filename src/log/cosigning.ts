/**
 * The log side of witnessing (c2sp.org/tlog-witness `add-checkpoint`): send each freshly
 * signed checkpoint to every configured witness in parallel, with a consistency proof from
 * the size that witness last cosigned, and collect the cosignatures that verify.
 *
 *   cosign({treeSize, note}) ──► witness A: POST <url>/add-checkpoint   old a, proof a→n
 *                            ├─► witness B: POST <url>/add-checkpoint   old b, proof b→n
 *                            └─► …                       (one proof per distinct old size)
 *                            ◄── note + every verified cosignature line
 *
 * Per witness the log keeps, in memory only, `oldSize`: the size it believes the witness
 * last cosigned, starting at 0. A witness that already holds a checkpoint of this log
 * answers the first `old 0` with 409 and its size (text/x.tlog.size); the request is then
 * retried from that size (at most {@link MAX_TRIES} requests per witness and call, with a
 * 10 ms back-off doubling up to 250 ms, as tessera's `internal/witness` does).
 *
 * Outcomes (specs.md §4.3, §4.4):
 *
 * | Answer                                    | Result                              |
 * |-------------------------------------------|-------------------------------------|
 * | 200 with a cosignature by the witness key | cosigned; oldSize = tree size       |
 * | 200 without a valid one (or timestamp 0)  | failure + alarm; oldSize = tree size |
 * | 409 text/x.tlog.size ≤ tree size          | oldSize = that size, retry          |
 * | 409 text/x.tlog.size > tree size          | failure + alarm (witness ahead)     |
 * | 409 without text/x.tlog.size              | failure + alarm (root mismatch)     |
 * | 403, 404, 422                             | failure + alarm                     |
 * | 400, 429, 5xx, other, network, timeout    | failure; tried again next cosign()  |
 *
 * The request carries no Content-Type: c2sp.org/tlog-witness defines none, and neither
 * tessera nor the transparency-dev/witness client sends one.
 */
import { formatAddCheckpoint, parseTlogSize, TLOG_SIZE_CONTENT_TYPE } from '../core/add-checkpoint.js';
import { parseCheckpoint } from '../core/checkpoint.js';
import { checkSize, concatBytes, utf8 } from '../core/encoding.js';
import type { CosignatureVerifier } from '../note/cosignature.js';
import { formatKeyId } from '../note/keys.js';
import { formatNote, InvalidSignatureError, openNote, parseNote, UnverifiedNoteError, type NoteSignature } from '../note/note.js';
import { Counter, Histogram, type Registry } from '../metrics.js';

/** A witness the log asks for cosignatures. */
export interface WitnessEndpoint {
  /** The witness's name in the policy. */
  readonly name: string;
  /** Verifies its cosignature/v1 lines (src/note/cosignature.ts). */
  readonly verifier: CosignatureVerifier;
  /** The submission prefix; the request goes to `${url}/add-checkpoint` (handle a trailing slash). */
  readonly url: string;
}

export interface CosigningOptions {
  /** The witnesses to ask, each with a distinct name. May be empty. */
  readonly witnesses: readonly WitnessEndpoint[];
  /**
   * Builds the consistency proof oldSize → newSize from the log's own tiles. Called only
   * with 0 < oldSize < newSize, at most once per distinct oldSize within one cosign() call.
   * A rejection fails the witnesses that needed that proof (no alarm).
   */
  readonly proof: (oldSize: number, newSize: number) => Promise<Uint8Array[]>;
  /** The fetch used for every request; default `globalThis.fetch`. */
  readonly fetch?: typeof fetch;
  /** Time limit per request, body included, in milliseconds; default 5000. */
  readonly timeoutMs?: number;
  /**
   * Where to register `glasslog_witness_requests_total{witness,outcome}`,
   * `glasslog_witness_alarms_total{witness}` and `glasslog_witness_request_seconds{witness}`.
   * A registry takes one Cosigning only (a second registration throws).
   */
  readonly metrics?: Registry;
  /**
   * Called for every alarm: a witness that answered 403/404/422, a 409 without
   * text/x.tlog.size (a root mismatch), a witness ahead of the log (409 with a size larger
   * than the checkpoint), a cosignature that fails to verify. An exception it throws is
   * ignored.
   */
  readonly onAlarm?: (witness: string, message: string) => void;
}

export interface CosignResult {
  /** The checkpoint note with every verified cosignature line appended (log signature(s) first, as given). */
  readonly note: string;
  /** Names of witnesses whose cosignature verified. */
  readonly cosigned: ReadonlySet<string>;
  /** Per witness that failed: a message. */
  readonly failures: ReadonlyMap<string, string>;
}

/** The response body cap (transparency-dev/witness client `maxResponseBodyBytes`). */
export const MAX_WITNESS_RESPONSE_SIZE = 16 * 1024;
/** Most add-checkpoint requests to one witness in one cosign() call (409 retries included). */
export const MAX_TRIES = 3;
const BACKOFF_START_MS = 10;
const BACKOFF_MAX_MS = 250;
const DEFAULT_TIMEOUT_MS = 5000;
/** How much of a witness's error body goes into a message. */
const MAX_QUOTED_BODY = 200;

/** Label values of glasslog_witness_requests_total; one per request. */
type Outcome =
  | 'cosigned'
  | 'bad_cosignature'
  | 'stale_old_size'
  | 'ahead'
  | 'root_mismatch'
  | 'forbidden'
  | 'unknown_origin'
  | 'invalid_proof'
  | 'bad_request'
  | 'pushback'
  | 'http_error'
  | 'network_error'
  | 'timeout';

/** An HTTP answer, its body read up to the cap. */
interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Uint8Array;
  /** The body was longer than {@link MAX_WITNESS_RESPONSE_SIZE}; `body` is its prefix. */
  readonly truncated: boolean;
}

/** A request that got no HTTP answer. */
interface NoAnswer {
  readonly error: string;
  readonly timeout: boolean;
}

type WitnessResult = { readonly sig: NoteSignature } | { readonly failure: string };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const lenientUtf8 = new TextDecoder('utf-8');
const encoder = new TextEncoder();
const errorMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** A witness's body for a message: decoded leniently, trimmed, cut to 200 characters, quoted. */
function quoteBody(body: Uint8Array): string {
  const s = lenientUtf8.decode(body.subarray(0, MAX_QUOTED_BODY * 4)).trim();
  return JSON.stringify(s.length > MAX_QUOTED_BODY ? s.slice(0, MAX_QUOTED_BODY) + '…' : s);
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
function mediaType(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

/** Reads a body up to `cap` bytes, then cancels the rest. */
async function readCapped(res: Response, cap: number): Promise<{ body: Uint8Array; truncated: boolean }> {
  if (res.body === null) return { body: new Uint8Array(0), truncated: false };
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { body: concatBytes(...chunks), truncated: false };
    if (n + value.length > cap) {
      chunks.push(value.subarray(0, cap - n));
      reader.cancel().catch(() => undefined);
      return { body: concatBytes(...chunks), truncated: true };
    }
    chunks.push(value);
    n += value.length;
  }
}

/**
 * Collects cosignatures from a fixed set of witnesses for the checkpoints a log signs.
 *
 * cosign() calls may overlap: they are serialized internally and run one after another in
 * call order, so each witness's oldSize always reflects the previous call's outcome. A
 * call given `enough` returns as soon as the witnesses that answered satisfy it (a quorum):
 * a slow witness then keeps its request running, and later calls skip it until it answers,
 * so one witness that is down costs no more than its own cosignature.
 * The oldSize state lives in memory only; after a restart the first request to each
 * witness says `old 0` and learns the witness's size from its 409.
 */
export class Cosigning {
  private readonly witnesses: readonly WitnessEndpoint[];
  private readonly proofFn: (oldSize: number, newSize: number) => Promise<Uint8Array[]>;
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;
  private readonly onAlarm: ((witness: string, message: string) => void) | undefined;
  /** witness name → the size the log believes it last cosigned. */
  private readonly sizes = new Map<string, number>();
  /** Witnesses with a request in flight (left running by a call that met its quorum). */
  private readonly busy = new Set<string>();
  /** The tail of the cosign() queue. */
  private queue: Promise<unknown> = Promise.resolve();

  private readonly requests: Counter;
  private readonly alarms: Counter;
  private readonly seconds: Histogram;

  /**
   * @throws {RangeError} If two witnesses share a name or a key (cosignature/v1 needs one key
   *   per cosigner), a URL is empty, or timeoutMs is not a positive finite number.
   */
  constructor(opts: CosigningOptions) {
    const keys = new Set<string>();
    for (const w of opts.witnesses) {
      const key = `${w.verifier.name}+${formatKeyId(w.verifier.keyId)}`;
      if (keys.has(key)) throw new RangeError(`witness key ${key} is configured twice`);
      keys.add(key);
      if (typeof w.name !== 'string' || w.name === '') throw new RangeError('a witness needs a name');
      if (this.sizes.has(w.name)) throw new RangeError(`witness ${JSON.stringify(w.name)} is configured twice`);
      if (typeof w.url !== 'string' || w.url === '') throw new RangeError(`witness ${JSON.stringify(w.name)} has no URL`);
      this.sizes.set(w.name, 0);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive number, got ${timeoutMs}`);
    this.witnesses = [...opts.witnesses];
    this.proofFn = opts.proof;
    // Bound lazily, so a fetch replaced on globalThis after construction is the one used.
    this.fetchFn = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.timeoutMs = timeoutMs;
    this.onAlarm = opts.onAlarm;
    const requests = new Counter('glasslog_witness_requests_total', 'add-checkpoint requests to witnesses, by witness and outcome');
    const alarms = new Counter('glasslog_witness_alarms_total', 'Witness answers that need an operator: refusals, conflicts, bad cosignatures');
    const seconds = new Histogram('glasslog_witness_request_seconds', 'Duration of add-checkpoint requests, by witness');
    this.requests = opts.metrics?.register(requests) ?? requests;
    this.alarms = opts.metrics?.register(alarms) ?? alarms;
    this.seconds = opts.metrics?.register(seconds) ?? seconds;
  }

  /**
   * Sends add-checkpoint for this signed checkpoint (treeSize, note) to every witness in parallel and waits for all answers (or timeouts).
   *
   * Never rejects because of a witness: each one ends up in `cosigned` or `failures`.
   * Overlapping calls are queued (see the class comment).
   *
   * @param checkpoint The checkpoint as the log signed it: `note` is a signed note whose text
   *   is a checkpoint of size `treeSize`.
   * @throws {RangeError} If treeSize is not a safe non-negative integer or differs from the
   *   note's size.
   * @throws {MalformedError} If `note` is not a well-formed checkpoint note, or it would have
   *   more than MAX_SIGNATURES lines with the cosignatures.
   */
  cosign(checkpoint: { treeSize: number; note: string }, enough?: (cosigned: ReadonlySet<string>) => boolean): Promise<CosignResult> {
    const run = this.queue.then(() => this.run(checkpoint.treeSize, checkpoint.note, enough));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** What the log believes each witness last cosigned (oldSize), for /metrics and tests. */
  witnessSizes(): ReadonlyMap<string, number> {
    return new Map(this.sizes);
  }

  private async run(treeSize: number, note: string, enough?: (cosigned: ReadonlySet<string>) => boolean): Promise<CosignResult> {
    checkSize(treeSize, 'treeSize');
    const { text, signatures } = parseNote(note);
    const size = parseCheckpoint(text).treeSize;
    if (size !== treeSize) throw new RangeError(`treeSize ${treeSize} differs from the checkpoint's size ${size}`);

    // One proof per distinct old size, shared by the witnesses at that size (tessera's
    // sharedConsistencyProofFetcher).
    const proofs = new Map<number, Promise<Uint8Array[]>>();
    const proofFrom = (oldSize: number): Promise<Uint8Array[]> => {
      if (oldSize === 0 || oldSize === treeSize) return Promise.resolve([]);
      let p = proofs.get(oldSize);
      if (p === undefined) {
        p = Promise.resolve().then(() => this.proofFn(oldSize, treeSize));
        proofs.set(oldSize, p);
      }
      return p;
    };

    const results: Array<WitnessResult | undefined> = this.witnesses.map(() => undefined);
    const cosigned = new Set<string>();
    await new Promise<void>((done) => {
      let pending = 0;
      this.witnesses.forEach((w, i) => {
        if (this.busy.has(w.name)) {
          results[i] = { failure: 'still answering an earlier checkpoint' };
          return;
        }
        pending++;
        this.busy.add(w.name);
        this.cosignOne(w, treeSize, note, text, proofFrom)
          .catch((e: unknown): WitnessResult => ({ failure: `unexpected error: ${errorMessage(e)}` }))
          .then((r) => {
            this.busy.delete(w.name);
            results[i] = r;
            if ('sig' in r) cosigned.add(w.name);
            if (--pending === 0 || (enough !== undefined && enough(cosigned))) done();
          });
      });
      if (pending === 0 || (enough !== undefined && enough(cosigned))) done();
    });

    const failures = new Map<string, string>();
    const cosignatures: NoteSignature[] = [];
    const answered = new Set<string>();
    results.forEach((r, i) => {
      const name = this.witnesses[i]!.name;
      if (r === undefined) {
        failures.set(name, 'no answer yet (the quorum was met without it)');
      } else if ('sig' in r) {
        answered.add(name);
        cosignatures.push(r.sig);
      } else {
        failures.set(name, r.failure);
      }
    });
    // A line by the same key as a new cosignature is an older cosignature of this very
    // checkpoint (a retried round, a restart): the new one replaces it, as signNote does.
    const fresh = new Set(cosignatures.map((c) => `${c.name}\n${c.keyId}`));
    const kept = signatures.filter((s) => !fresh.has(`${s.name}\n${s.keyId}`));
    const out = cosignatures.length === 0 ? note : formatNote(text, [...kept, ...cosignatures]);
    return { note: out, cosigned: answered, failures };
  }

  /** Asks one witness, following 409 size hints; never throws on a witness's behaviour. */
  private async cosignOne(
    w: WitnessEndpoint,
    treeSize: number,
    note: string,
    text: string,
    proofFrom: (oldSize: number) => Promise<Uint8Array[]>
  ): Promise<WitnessResult> {
    const fail = (failure: string): WitnessResult => ({ failure });
    const alarm = (message: string): WitnessResult => {
      this.alarms.inc({ witness: w.name });
      try {
        this.onAlarm?.(w.name, message);
      } catch {
        // The alarm sink's own failure must not cost the other witnesses their cosignatures.
      }
      return { failure: message };
    };
    const count = (outcome: Outcome) => this.requests.inc({ witness: w.name, outcome });

    let delay = BACKOFF_START_MS;
    for (let attempt = 1; ; attempt++) {
      const oldSize = this.sizes.get(w.name) ?? 0;
      if (oldSize > treeSize) {
        return fail(`the checkpoint (size ${treeSize}) is smaller than the one the witness last cosigned (size ${oldSize})`);
      }
      let proof: Uint8Array[];
      try {
        proof = await proofFrom(oldSize);
      } catch (e) {
        return fail(`cannot build the consistency proof ${oldSize} → ${treeSize}: ${errorMessage(e)}`);
      }
      const body = encoder.encode(formatAddCheckpoint({ oldSize, proof, checkpoint: note }));

      const answer = await this.post(w, body);
      if ('error' in answer) {
        count(answer.timeout ? 'timeout' : 'network_error');
        return fail(answer.error);
      }
      const { status } = answer;

      if (status === 200) {
        // The witness has persisted the checkpoint (tlog-witness), whatever its body holds.
        this.sizes.set(w.name, treeSize);
        const sig = this.checkCosignature(w, text, answer);
        if (typeof sig === 'string') {
          count('bad_cosignature');
          return alarm(sig);
        }
        count('cosigned');
        return { sig };
      }

      if (status === 409 && mediaType(answer.contentType) === TLOG_SIZE_CONTENT_TYPE) {
        let theirs: number;
        try {
          theirs = parseTlogSize(lenientUtf8.decode(answer.body));
        } catch (e) {
          count('http_error');
          return fail(`409 Conflict with a malformed ${TLOG_SIZE_CONTENT_TYPE} body ${quoteBody(answer.body)}: ${errorMessage(e)}`);
        }
        if (theirs > treeSize) {
          count('ahead');
          return alarm(`witness is ahead of the log: it cosigned size ${theirs}, the log is at ${treeSize}`);
        }
        count('stale_old_size');
        this.sizes.set(w.name, theirs);
        if (attempt >= MAX_TRIES) {
          return fail(`the witness still reports a different size (${theirs}, after sending old ${oldSize}) after ${MAX_TRIES} requests`);
        }
        await sleep(delay);
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
        continue;
      }

      const said = quoteBody(answer.body);
      switch (status) {
        case 409:
          count('root_mismatch');
          return alarm(`witness reports a root mismatch at size ${oldSize} (409 Conflict without ${TLOG_SIZE_CONTENT_TYPE}): ${said}`);
        case 403:
          count('forbidden');
          return alarm(`witness does not accept the log's signature (403 Forbidden): ${said}`);
        case 404:
          count('unknown_origin');
          return alarm(`witness does not know the log's origin (404 Not Found): ${said}`);
        case 422:
          count('invalid_proof');
          return alarm(`witness rejected the consistency proof from size ${oldSize} to ${treeSize} (422 Unprocessable Entity): ${said}`);
        case 400:
          count('bad_request');
          return fail(`witness rejected the request as malformed (400 Bad Request, old ${oldSize}): ${said}`);
        case 429:
        case 503:
          count('pushback');
          return fail(`witness pushed back (${status}): ${said}`);
        default:
          count('http_error');
          return fail(`unexpected status ${status}: ${said}`);
      }
    }
  }

  /**
   * Checks a 200 body: cosignature lines whose one by the witness's key (name and key ID)
   * must verify over `text` with a non-zero timestamp. Lines by other keys are ignored
   * (tlog-witness: the client MUST ignore unknown keys). Returns the verified signature or
   * why there is none.
   */
  private checkCosignature(w: WitnessEndpoint, text: string, a: Answer): NoteSignature | string {
    const key = `${w.verifier.name}+${formatKeyId(w.verifier.keyId)}`;
    if (a.truncated) return `200 with a body larger than ${MAX_WITNESS_RESPONSE_SIZE} bytes`;
    const b = a.body;
    if (b.length === 0) return '200 with an empty body, no cosignature';
    // The body must be signature lines only; a blank line would move where parseNote splits
    // the note from its signatures.
    let blank = b[0] === 0x0a;
    for (let i = 1; i < b.length && !blank; i++) blank = b[i] === 0x0a && b[i - 1] === 0x0a;
    if (blank || b[b.length - 1] !== 0x0a) return `200 with a body that is not signature lines: ${quoteBody(b)}`;
    let sig: NoteSignature;
    try {
      // tlog-witness: append the body to the checkpoint and open it with the witness's key.
      // The log's own signature lines are left out: they are not the witness's to vouch for.
      const opened = openNote(concatBytes(utf8(text + '\n'), b), [w.verifier]);
      sig = opened.verified[0]!;
    } catch (e) {
      if (e instanceof InvalidSignatureError) return `the cosignature by ${key} does not verify`;
      if (e instanceof UnverifiedNoteError) return `200 without a cosignature by the witness key ${key}`;
      return `200 with a malformed body (${errorMessage(e)}): ${quoteBody(b)}`;
    }
    // tlog-witness: the timestamp of a checkpoint cosignature MUST NOT be 0.
    if (w.verifier.timestampOf(sig.signature) === 0) return `the cosignature by ${key} has timestamp 0`;
    return sig;
  }

  /** POSTs one add-checkpoint request, reading at most 16 KiB of the answer, within the timeout. */
  private async post(w: WitnessEndpoint, body: Uint8Array<ArrayBuffer>): Promise<Answer | NoAnswer> {
    const url = `${w.url.replace(/\/+$/, '')}/add-checkpoint`;
    const ac = new AbortController();
    let timedOut = false;
    // The race makes the timeout hold even for a fetch that ignores its signal.
    const expired = new Promise<never>((_, reject) => {
      ac.signal.addEventListener('abort', () => reject(new Error('timeout')), { once: true });
    });
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, this.timeoutMs);
    const start = performance.now();
    try {
      const work = (async (): Promise<Answer> => {
        // No Content-Type, like tessera and the transparency-dev/witness client; a redirect
        // could turn the POST into a GET, so it is an error (as in the witness client).
        const res = await this.fetchFn(url, { method: 'POST', body, signal: ac.signal, redirect: 'error' });
        const { body: rb, truncated } = await readCapped(res, MAX_WITNESS_RESPONSE_SIZE);
        return { status: res.status, contentType: res.headers.get('content-type') ?? '', body: rb, truncated };
      })();
      work.catch(() => undefined); // If the timeout wins, the loser's rejection is expected.
      return await Promise.race([work, expired]);
    } catch (e) {
      if (timedOut) return { error: `no answer within ${this.timeoutMs} ms`, timeout: true };
      const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : '';
      return { error: `request to ${url} failed: ${errorMessage(e)}${cause}`, timeout: false };
    } finally {
      clearTimeout(timer);
      this.seconds.observe((performance.now() - start) / 1000, { witness: w.name });
    }
  }
}
