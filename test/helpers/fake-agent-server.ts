/**
 * A fake of the server's agent API (`POST /v1/agents/<agent>/entries`) over a real
 * in-process Log, served through a `fetch` function, for the AgentClient tests:
 *
 *   const server = new FakeAgentServer(t.log, { tokens: { 'agent-1': 'tok' }, keys: { 'agent-1': vkey } });
 *   const client = new AgentClient({ url: 'http://log.test', fetch: server.fetch, … });
 *   server.faults.push({ kind: 'status', status: 503, retryAfter: '1' });   // the next request
 *
 * It implements the documented contract: bearer token per agent, JSON body
 * `{"entries":[{"envelope","payloads"?}]}`, envelopes decoded with decodeEnvelope and their
 * signature checked with the agent's key, payloads checked against their commitments, each
 * run's prev links checked once both ends are in, all-or-nothing per request, dedup by
 * (agent, run, seq) and identical bytes (duplicate: true, original index), 409 for the same
 * (agent, run, seq) with other bytes or after the run's close, 201 (200 when every entry was
 * a duplicate), and real receipts from the Log (spec/agent-api.md, minus registration,
 * rate limits and the JSON/CBOR entry forms). Faults are consumed one per request.
 */
import { decodeBase64, encodeBase64, equalBytes } from '../../src/core/encoding.js';
import { MalformedError, TlogError } from '../../src/core/errors.js';
import { parseTlogProof, formatTlogProof } from '../../src/core/tlog-proof.js';
import { decodeEnvelope, verifyEntrySignature, verifyPayloadCommitment, type SignedEntry } from '../../src/entry/index.js';
import type { Log } from '../../src/log/log.js';
import { parseVerifierKey } from '../../src/note/keys.js';

export type Fault =
  /** Answer with this status (and Retry-After) without looking at the request. */
  | { readonly kind: 'status'; readonly status: number; readonly retryAfter?: string; readonly message?: string }
  /** Handle the request fully (the entries are stored), then fail the fetch as a network error. */
  | { readonly kind: 'drop' }
  /** Fail the fetch as a network error before the request reaches the server. */
  | { readonly kind: 'unreachable' }
  /** Never answer; reject only when the request's signal aborts. */
  | { readonly kind: 'hang' }
  /** Handle the request fully, but answer with receipts whose first proof hash is flipped. */
  | { readonly kind: 'forge' };

export interface StoredRunEntry {
  readonly index: number;
  readonly signed: SignedEntry;
  readonly payloads: Readonly<Record<string, { salt: Uint8Array; data: Uint8Array }>>;
}

export interface SeenRequest {
  readonly url: string;
  readonly method: string;
  readonly authorization: string | null;
  readonly contentType: string | null;
  readonly body: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

const runKey = (agent: string, run: string, seq: number) => `${agent}\n${run}\n${seq}`;

export class FakeAgentServer {
  /** Every request received, faulted ones included, in order. */
  readonly requests: SeenRequest[] = [];
  /** Consumed one per request, first to last. */
  readonly faults: Fault[] = [];
  /** Stored run entries by (agent, run, seq). */
  readonly stored = new Map<string, StoredRunEntry>();
  /** (agent, run) pairs with a logged run.close. */
  private readonly closedRuns = new Set<string>();
  private readonly keys: Map<string, Uint8Array>;

  constructor(
    readonly log: Log,
    readonly opts: {
      /** Bearer token per agent. */
      readonly tokens: Readonly<Record<string, string>>;
      /** Verifier key per agent. */
      readonly keys: Readonly<Record<string, string>>;
    }
  ) {
    this.keys = new Map(Object.entries(opts.keys).map(([a, vkey]) => [a, parseVerifierKey(vkey).publicKey]));
  }

  /** The stored entry of (agent, run, seq), if any. */
  entry(agent: string, run: string, seq: number): StoredRunEntry | undefined {
    return this.stored.get(runKey(agent, run, seq));
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const headers = new Headers(init?.headers);
    const body = typeof init?.body === 'string' ? init.body : '';
    this.requests.push({
      url,
      method: init?.method ?? 'GET',
      authorization: headers.get('authorization'),
      contentType: headers.get('content-type'),
      body,
    });
    const fault = this.faults.shift();
    if (fault?.kind === 'unreachable') throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') });
    if (fault?.kind === 'hang') {
      return new Promise<Response>((_, reject) => {
        const signal = init?.signal;
        if (!signal) return;
        const abort = () => reject(signal.reason ?? new DOMException('aborted', 'AbortError'));
        if (signal.aborted) abort();
        else signal.addEventListener('abort', abort, { once: true });
      });
    }
    if (fault?.kind === 'status') {
      const h: Record<string, string> = { 'content-type': 'application/json' };
      if (fault.retryAfter !== undefined) h['retry-after'] = fault.retryAfter;
      return json(fault.status, { error: { status: fault.status, message: fault.message ?? `injected ${fault.status}` } }, h);
    }
    let res: Response;
    try {
      res = await this.handle(url, init?.method ?? 'GET', headers, body, fault?.kind === 'forge');
    } catch (err) {
      if (err instanceof HttpError) res = json(err.status, { error: { status: err.status, message: err.message } });
      else throw err;
    }
    if (fault?.kind === 'drop') throw new TypeError('fetch failed', { cause: new Error('socket hang up') });
    return res;
  };

  private async handle(url: string, method: string, headers: Headers, body: string, forge: boolean): Promise<Response> {
    const u = new URL(url);
    const m = /^\/v1\/agents\/([^/]+)\/entries$/.exec(u.pathname);
    if (!m) throw new HttpError(404, `no route ${u.pathname}`);
    if (method !== 'POST') throw new HttpError(405, 'method not allowed');
    const agent = decodeURIComponent(m[1]!);
    const token = this.opts.tokens[agent];
    if (token === undefined || headers.get('authorization') !== `Bearer ${token}`) throw new HttpError(401, 'missing or wrong bearer token');
    if (headers.get('content-type') !== 'application/json') throw new HttpError(415, 'content type must be application/json');
    const wait = u.searchParams.get('wait') ?? 'published';
    if (wait !== 'published' && wait !== 'sequenced') throw new HttpError(400, `wait: ${wait}`);

    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new HttpError(400, 'body is not JSON');
    }
    const list = (parsed as { entries?: unknown }).entries;
    if (!Array.isArray(list) || list.length === 0 || list.length > 1000) throw new HttpError(400, 'entries: 1 to 1000 required');

    // Validate the whole request first: all or nothing.
    const key = this.keys.get(agent)!;
    const fresh: StoredRunEntry[] = [];
    const freshByKey = new Map<string, SignedEntry>();
    const plan: Array<{ dup: StoredRunEntry } | { fresh: number }> = [];
    for (let i = 0; i < list.length; i++) {
      const item = list[i] as { envelope?: unknown; payloads?: unknown };
      let signed: SignedEntry;
      try {
        if (typeof item.envelope !== 'string') throw new MalformedError('envelope: missing');
        signed = decodeEnvelope(decodeBase64(item.envelope, `entries[${i}].envelope`));
      } catch (err) {
        if (err instanceof TlogError) throw new HttpError(400, `entries[${i}]: ${err.message}`);
        throw err;
      }
      const e = signed.entry;
      if (e.type !== 'event' && e.type !== 'run.close') throw new HttpError(400, `entries[${i}]: not a run entry`);
      if (e.agent !== agent) throw new HttpError(403, `entries[${i}]: entry of agent ${e.agent} sent as ${agent}`);
      if (!verifyEntrySignature(signed, key)) throw new HttpError(422, `entries[${i}]: invalid signature by agent ${agent}`);

      const payloads: Record<string, { salt: Uint8Array; data: Uint8Array }> = {};
      const given = (item.payloads ?? {}) as Record<string, { salt: string; data: string }>;
      const committed = e.type === 'event' ? (e.payloads ?? {}) : {};
      for (const name of new Set([...Object.keys(given), ...Object.keys(committed)])) {
        const g = given[name];
        const c = committed[name];
        if (g === undefined || c === undefined) throw new HttpError(400, `entries[${i}].payloads.${name}: payload and commitment must both be present`);
        const salt = decodeBase64(g.salt, 'salt');
        const data = decodeBase64(g.data, 'data');
        if (!verifyPayloadCommitment(c, salt, data)) throw new HttpError(422, `entries[${i}].payloads.${name}: does not open the commitment`);
        payloads[name] = { salt, data };
      }

      const k = runKey(agent, e.run, e.seq);
      const old = this.stored.get(k);
      if (old !== undefined) {
        if (!equalBytes(old.signed.bytes, signed.bytes)) throw new HttpError(409, `entries[${i}]: run ${e.run} seq ${e.seq} is already logged with other bytes`);
        plan.push({ dup: old });
        continue;
      }
      if (freshByKey.has(k)) throw new HttpError(409, `entries[${i}]: run ${e.run} seq ${e.seq} twice in one request`);
      if (this.closedRuns.has(`${agent}\n${e.run}`)) throw new HttpError(409, `entries[${i}]: run ${e.run} is closed`);
      // Entries of a run may arrive out of order: the link is checked once both ends are in.
      const before = e.seq > 0 ? (freshByKey.get(runKey(agent, e.run, e.seq - 1)) ?? this.stored.get(runKey(agent, e.run, e.seq - 1))?.signed) : undefined;
      if (before !== undefined && !equalBytes(before.leafHash, e.prev!)) throw new HttpError(422, `entries[${i}]: prev is not the leaf hash of seq ${e.seq - 1}`);
      const after = freshByKey.get(runKey(agent, e.run, e.seq + 1)) ?? this.stored.get(runKey(agent, e.run, e.seq + 1))?.signed;
      const afterPrev = (after?.entry as { prev?: Uint8Array } | undefined)?.prev;
      if (afterPrev !== undefined && !equalBytes(afterPrev, signed.leafHash)) throw new HttpError(422, `entries[${i}]: seq ${e.seq + 1} does not chain to this entry`);
      freshByKey.set(k, signed);
      plan.push({ fresh: fresh.length });
      fresh.push({ index: -1, signed, payloads });
    }

    const added = await this.log.add(fresh.map((f) => f.signed.bytes), wait);
    const storedNow = fresh.map((f, j) => ({ ...f, index: added[j]!.index }));
    for (const s of storedNow) {
      const e = s.signed.entry as { agent: string; run: string; seq: number; type: string };
      this.stored.set(runKey(e.agent, e.run, e.seq), s);
      if (e.type === 'run.close') this.closedRuns.add(`${e.agent}\n${e.run}`);
    }
    const rows = plan.map((p) => ('dup' in p ? { s: p.dup, duplicate: true } : { s: storedNow[p.fresh]!, duplicate: false }));
    let receipts: string[] | undefined;
    if (wait === 'published') {
      receipts = await this.log.receipts(rows.map((r) => r.s.index));
      if (forge) receipts = receipts.map(forgeReceipt);
    }
    const results = rows.map((r, i) => ({
      index: r.s.index,
      leafHash: encodeBase64(r.s.signed.leafHash),
      duplicate: r.duplicate,
      ...(receipts !== undefined && { receipt: receipts[i]! }),
    }));
    return json(rows.every((r) => r.duplicate) ? 200 : 201, { results });
  }
}

/** The receipt with one bit of its first proof hash flipped (or its index moved, if it has none). */
export function forgeReceipt(receipt: string): string {
  const p = parseTlogProof(receipt);
  if (p.proof.length === 0) return formatTlogProof({ ...p, index: p.index + 1 });
  const proof = p.proof.map((h) => Uint8Array.from(h));
  proof[0]![0]! ^= 1;
  return formatTlogProof({ ...p, proof });
}

function json(status: number, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Response {
  return new Response(JSON.stringify(body), { status, headers });
}
