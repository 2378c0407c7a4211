/**
 * @module
 * Exporting an evidence bundle (spec/evidence-bundle.md) from a Glasslog server over its
 * public HTTP API: the agent entries a filter selects, with every payload the caller's
 * token may read, the agents' key history and the payloads' erasures, each with an
 * inclusion proof against one checkpoint. Uses only `fetch`, so it runs in a browser.
 *
 * The exporter trusts nothing it is served: it assembles, and {@link verifyEvidenceBundle}
 * judges. It does check what would make a bundle useless (a payload that does not open its
 * commitment, an "erasure" that is not one) so that such a server is named at export time.
 */
import { parseCheckpoint } from '../core/checkpoint.js';
import { decodeBase64, equalBytes, quote } from '../core/encoding.js';
import { MalformedError, VerificationError } from '../core/errors.js';
import { HASH_SIZE } from '../core/hash.js';
import { decodeBundle } from '../core/bundle.js';
import { TILE_WIDTH, tilePath, tileWidthAt } from '../core/tile.js';
import { parseTlogProof } from '../core/tlog-proof.js';
import { proveInclusion } from '../core/tree.js';
import { isValidId, type EntryType, type RunEntry } from '../entry/entry.js';
import { decodeEnvelope, type SignedEntry } from '../entry/envelope.js';
import { PAYLOAD_SALT_SIZE, verifyPayloadCommitment } from '../entry/payload.js';
import { parseNote } from '../note/note.js';
import type { BundleEntry, BundleItem, EvidenceBundle, EvidenceFilter, OpenedPayload } from '../verify/bundle.js';
import { FetchError, TileClient } from './tile-client.js';
import { errorText, isObject, serverMessage } from './errors.js';

export interface ExportOptions {
  /** A reader (or operator) bearer token: payloads in its scope are included. */
  readonly token?: string;
  readonly fetch?: typeof fetch;
  /** Per request (default 30 s). */
  readonly timeoutMs?: number;
  /** Entries per query page, 1–1000 (default 1000). */
  readonly pageSize?: number;
  /** Payload requests in flight at once (default 8). */
  readonly concurrency?: number;
}

/** The largest JSON answer or entry bundle read (an entry bundle holds up to 256 × 16 KiB). */
const MAX_BODY = 8 << 20;
const RUN_TYPES: readonly EntryType[] = ['event', 'run.close'];
const REGISTRY_TYPES: readonly EntryType[] = ['agent.register', 'agent.rotate', 'agent.revoke'];

/** One entry as a query answer shows it, decoded. */
interface Row {
  readonly index: number;
  readonly signed: SignedEntry;
  readonly proof: readonly Uint8Array[];
  /** The tree size the proof is against. */
  readonly proofSize: number;
  /** Erasure index by payload name, as the server reported it. */
  readonly erasedBy: ReadonlyMap<string, number>;
}

/**
 * Builds an evidence bundle from the log at `logUrl`: the events and run.close entries
 * matching `filter` (agent, run, client-time window `[since, until)`), against the log's
 * checkpoint at the time of the first query (the copy with the most cosignatures), with:
 *
 * - for a time window, the entries of a run that fall outside it between two that fall
 *   inside (a client clock that went back), so every run's chain stays whole;
 * - the payloads `opts.token` may read (GET /v1/agent-entries/<i>/payloads/<name>; 401 or
 *   403: withheld; 410: erased);
 * - every agent.* entry of each agent of the entries (and of the filter's agent) up to the
 *   checkpoint;
 * - the payload.erase entry of each erased payload, when the checkpoint covers it.
 *
 * Proofs served against another tree size (the log grew between pages) are recomputed
 * from the tiles at the checkpoint's size.
 *
 * @throws {MalformedError} For a bad URL or filter, or an answer that is not the API's.
 * @throws {FetchError} If the server cannot be reached or answers an unexpected status.
 * @throws {VerificationError} If the server serves something that cannot be right (a
 *   payload that does not open its commitment, an erasure that is not one).
 */
export async function exportEvidenceBundle(logUrl: string, filter: EvidenceFilter, opts: ExportOptions = {}): Promise<EvidenceBundle> {
  const f = checkFilter(filter);
  const api = new ExportApi(logUrl, opts);

  const first = await api.queryPage(entriesQuery(f), undefined);
  const size = first.treeSize;
  let note = first.checkpoint;
  const origin = parseCheckpoint(parseNote(note).text).origin;

  const entries = await api.queryAll(entriesQuery(f), size, first);
  if (f.since !== undefined || f.until !== undefined) entries.push(...(await fillRunHoles(api, entries, size)));
  entries.sort((a, b) => a.index - b.index);

  const agents = new Set(entries.map((r) => (r.signed.entry as RunEntry).agent));
  if (f.agent !== undefined) agents.add(f.agent);
  const registry: Row[] = [];
  for (const agent of [...agents].sort()) registry.push(...(await api.queryAll({ agent, type: REGISTRY_TYPES.join(',') }, size)));
  registry.sort((a, b) => a.index - b.index);

  const { payloads, erasures } = await collectPayloads(api, entries, size, opts.concurrency ?? 8);
  const proofs = await api.proofsAt([...entries, ...registry, ...erasures].filter((r) => r.proofSize !== size).map((r) => r.index), size);
  const item = (r: Row): BundleItem => ({ index: r.index, envelope: r.signed.bytes, proof: proofs.get(r.index) ?? r.proof });

  if (size > 0) note = await api.mostCosigned(note, size);
  return {
    origin,
    checkpoint: note,
    filter: f,
    entries: entries.map((r): BundleEntry => {
      const p = payloads.get(r.index);
      return p === undefined ? item(r) : { ...item(r), payloads: p };
    }),
    registry: registry.map(item),
    erasures: erasures.sort((a, b) => a.index - b.index).map(item),
  };
}

/** Validates the filter; returns a copy without undefined fields. @throws {MalformedError} */
function checkFilter(filter: EvidenceFilter): EvidenceFilter {
  const f = (typeof filter === 'object' && filter !== null ? filter : {}) as Record<string, unknown>;
  const out: { agent?: string; run?: string; since?: number; until?: number } = {};
  if (f['agent'] !== undefined) {
    if (!isValidId(f['agent'])) throw new MalformedError(`filter: agent ${quote(String(f['agent']))} is not an agent id (1–128 of [A-Za-z0-9._:@-])`);
    out.agent = f['agent'];
  }
  if (f['run'] !== undefined) {
    if (!isValidId(f['run'])) throw new MalformedError(`filter: run ${quote(String(f['run']))} is not a run id (1–128 of [A-Za-z0-9._:@-])`);
    if (out.agent === undefined) throw new MalformedError('filter: a run needs its agent');
    out.run = f['run'];
  }
  for (const k of ['since', 'until'] as const) {
    const v = f[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new MalformedError(`filter: ${k} must be a safe non-negative integer (ms since the Unix epoch)`);
    out[k] = v;
  }
  return out;
}

/** The query parameters of the entries a filter selects (client time). */
function entriesQuery(f: EvidenceFilter): Record<string, string> {
  const q: Record<string, string> = { type: RUN_TYPES.join(',') };
  if (f.agent !== undefined) q['agent'] = f.agent;
  if (f.run !== undefined) q['run'] = f.run;
  if (f.since !== undefined) q['since'] = String(f.since);
  if (f.until !== undefined) q['until'] = String(f.until);
  if (f.since !== undefined || f.until !== undefined) q['time'] = 'client';
  return q;
}

/**
 * The entries of each selected run between its first and last selected position that the
 * time window left out, so that the run's chain is whole.
 */
async function fillRunHoles(api: ExportApi, rows: readonly Row[], size: number): Promise<Row[]> {
  const runs = new Map<string, { agent: string; run: string; held: Set<number>; lo: number; hi: number }>();
  for (const r of rows) {
    const e = r.signed.entry as RunEntry;
    const key = JSON.stringify([e.agent, e.run]);
    const cur = runs.get(key) ?? { agent: e.agent, run: e.run, held: new Set<number>(), lo: e.seq, hi: e.seq };
    cur.held.add(e.seq);
    cur.lo = Math.min(cur.lo, e.seq);
    cur.hi = Math.max(cur.hi, e.seq);
    runs.set(key, cur);
  }
  const out: Row[] = [];
  for (const r of runs.values()) {
    if (r.held.size === r.hi - r.lo + 1) continue;
    const all = await api.queryAll({ agent: r.agent, run: r.run, type: RUN_TYPES.join(',') }, size);
    for (const row of all) {
      const seq = (row.signed.entry as RunEntry).seq;
      if (seq > r.lo && seq < r.hi && !r.held.has(seq)) {
        out.push(row);
        r.held.add(seq);
      }
    }
  }
  return out;
}

/**
 * Reads every committed payload the token may read, and the erasure entry of every erased
 * one the checkpoint covers.
 */
async function collectPayloads(
  api: ExportApi,
  rows: readonly Row[],
  size: number,
  concurrency: number
): Promise<{ payloads: Map<number, Record<string, OpenedPayload>>; erasures: Row[] }> {
  const jobs: Array<{ row: Row; name: string; commitment: Uint8Array }> = [];
  for (const row of rows) {
    const e = row.signed.entry;
    if (e.type !== 'event' || e.payloads === undefined) continue;
    for (const [name, commitment] of Object.entries(e.payloads)) jobs.push({ row, name, commitment });
  }
  const payloads = new Map<number, Record<string, OpenedPayload>>();
  const erasedAt: Array<{ row: Row; name: string; at: number }> = [];
  await inParallel(jobs, concurrency, async ({ row, name, commitment }) => {
    const known = row.erasedBy.get(name);
    const got = known === undefined ? await api.payload(row.index, name) : { erasedAt: known };
    if (got === 'withheld') return;
    if ('erasedAt' in got) {
      // Erased after the checkpoint (or at an index the server did not name): the bundle
      // cannot prove the erasure, so the payload is just withheld.
      if (got.erasedAt !== undefined && got.erasedAt < size) erasedAt.push({ row, name, at: got.erasedAt });
      return;
    }
    if (!verifyPayloadCommitment(commitment, got.salt, got.data)) {
      throw new VerificationError(`payload ${quote(name)} of entry ${row.index} as served does not open the entry's commitment`);
    }
    const p = payloads.get(row.index) ?? (Object.create(null) as Record<string, OpenedPayload>);
    p[name] = got;
    payloads.set(row.index, p);
  });
  const erasures: Row[] = [];
  const leaves = await api.leavesAt(erasedAt.map((x) => x.at), size);
  for (const { row, name, at } of erasedAt) {
    const signed = decodeEnvelope(leaves.get(at)!);
    const e = signed.entry;
    if (e.type !== 'payload.erase' || e.index !== row.index || e.name !== name) {
      throw new VerificationError(`the log names entry ${at} as the erasure of payload ${quote(name)} of entry ${row.index}, but it is not that erasure`);
    }
    erasures.push({ index: at, signed, proof: [], proofSize: -1, erasedBy: new Map() });
  }
  return { payloads, erasures };
}

/** Runs `work` over `items`, at most `limit` at a time; the first failure rejects. */
async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

// ---------------------------------------------------------------------------------------
// The HTTP API.

interface QueryPage {
  readonly checkpoint: string;
  readonly treeSize: number;
  readonly rows: Row[];
  readonly next: string | null;
}

type PayloadAnswer = OpenedPayload | 'withheld' | { readonly erasedAt: number | undefined };

/** The few routes the exporter reads, with their answers checked for shape. */
class ExportApi {
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;
  private readonly pageSize: number;
  private readonly tiles: TileClient;

  constructor(
    logUrl: string,
    private readonly opts: ExportOptions
  ) {
    let u: URL;
    try {
      u = new URL(logUrl);
    } catch {
      throw new MalformedError(`log URL ${quote(String(logUrl))} is not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new MalformedError(`log URL ${quote(logUrl)} is not http or https`);
    if (u.search !== '' || u.hash !== '') throw new MalformedError(`log URL ${quote(logUrl)} must not have a query or fragment`);
    this.base = u.href.replace(/\/+$/, '');
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.pageSize = opts.pageSize ?? 1000;
    if (!Number.isInteger(this.pageSize) || this.pageSize < 1 || this.pageSize > 1000) throw new RangeError('pageSize must be 1 to 1000');
    this.tiles = new TileClient(this.base, { fetch: this.fetchFn, timeoutMs: this.timeoutMs });
  }

  /** GET `path`; returns the status and body (bytes), or throws FetchError for a network failure. */
  private async get(path: string, auth: boolean): Promise<{ status: number; body: Uint8Array; url: string }> {
    const url = `${this.base}${path}`;
    const headers: Record<string, string> = {};
    if (auth && this.opts.token !== undefined) headers['authorization'] = `Bearer ${this.opts.token}`;
    let res: Response;
    try {
      res = await this.fetchFn(url, { headers, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new FetchError(`GET ${url}: ${errorText(err)}`);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > MAX_BODY) {
      await res.body?.cancel();
      throw new FetchError(`GET ${url}: body of ${declared} bytes exceeds ${MAX_BODY}`);
    }
    let body: Uint8Array;
    try {
      body = new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      throw new FetchError(`GET ${url}: reading the body: ${errorText(err)}`);
    }
    if (body.length > MAX_BODY) throw new FetchError(`GET ${url}: body of ${body.length} bytes exceeds ${MAX_BODY}`);
    return { status: res.status, body, url };
  }

  /** GET a JSON answer that must have status 200. */
  private async getJson(path: string, auth = false): Promise<Record<string, unknown>> {
    const r = await this.get(path, auth);
    if (r.status !== 200) throw statusError(r);
    return jsonObject(r);
  }

  /** One page of GET /v1/agent-entries. */
  async queryPage(query: Record<string, string>, cursor: string | undefined): Promise<QueryPage> {
    const params = new URLSearchParams({ ...query, order: 'asc', limit: String(this.pageSize), ...(cursor !== undefined ? { cursor } : {}) });
    const path = `/v1/agent-entries?${params.toString()}`;
    const j = await this.getJson(path);
    const what = `GET ${this.base}${path}`;
    const checkpoint = j['checkpoint'];
    const treeSize = j['treeSize'];
    const next = j['next'];
    const list = j['entries'];
    if (typeof checkpoint !== 'string') throw new MalformedError(`${what}: the answer has no checkpoint`);
    if (!isUint(treeSize)) throw new MalformedError(`${what}: the answer has no tree size`);
    if (next !== null && typeof next !== 'string') throw new MalformedError(`${what}: "next" is not a cursor`);
    if (!Array.isArray(list)) throw new MalformedError(`${what}: the answer has no entries`);
    return { checkpoint, treeSize, next, rows: list.map((x, k) => rowOf(x, treeSize, `${what}: entries[${k}]`)) };
  }

  /**
   * Every entry a query matches below `size`, page by page (`first`: an already fetched
   * first page). Pages may be against larger trees as the log grows; entries at or past
   * `size` are dropped, and as pages are by increasing index the paging stops there.
   */
  async queryAll(query: Record<string, string>, size: number, first?: QueryPage): Promise<Row[]> {
    const out: Row[] = [];
    let page = first ?? (await this.queryPage(query, undefined));
    for (;;) {
      for (const r of page.rows) {
        if (r.index >= size) return out;
        out.push(r);
      }
      if (page.next === null) return out;
      page = await this.queryPage(query, page.next);
    }
  }

  /** GET /v1/agent-entries/<index>/payloads/<name>, with the token. */
  async payload(index: number, name: string): Promise<PayloadAnswer> {
    if (this.opts.token === undefined) return 'withheld';
    const r = await this.get(`/v1/agent-entries/${index}/payloads/${encodeURIComponent(name)}`, true);
    if (r.status === 401 || r.status === 403 || r.status === 404) return 'withheld';
    // spec/agent-api.md: 410 once erased, naming the erasure's index.
    if (r.status === 410) {
      const m = /erased at index (0|[1-9][0-9]*)/.exec(errorMessage(r.body) ?? '');
      return { erasedAt: m === null ? undefined : Number(m[1]) };
    }
    if (r.status !== 200) throw statusError(r);
    const j = jsonObject(r);
    const what = `GET ${r.url}`;
    if (j['index'] !== index || j['name'] !== name) throw new MalformedError(`${what}: the answer is for another payload`);
    const salt = typeof j['salt'] === 'string' ? decodeBase64(j['salt'], `${what}: salt`) : undefined;
    const data = typeof j['data'] === 'string' ? decodeBase64(j['data'], `${what}: data`) : undefined;
    if (salt === undefined || salt.length !== PAYLOAD_SALT_SIZE || data === undefined) throw new MalformedError(`${what}: the answer has no salt of ${PAYLOAD_SALT_SIZE} bytes and data`);
    return { salt, data };
  }

  /** Inclusion proofs at tree size `size`, computed from the log's tiles. */
  async proofsAt(indices: readonly number[], size: number): Promise<Map<number, Uint8Array[]>> {
    const out = new Map<number, Uint8Array[]>();
    if (indices.length === 0) return out;
    const proofs = await this.tiles.withTree(size, (node, memo) => indices.map((i) => proveInclusion(i, size, node, memo)));
    indices.forEach((i, k) => out.set(i, proofs[k]!));
    return out;
  }

  /** The leaves at `indices` of the tree of `size`, from the entry bundles. */
  async leavesAt(indices: readonly number[], size: number): Promise<Map<number, Uint8Array>> {
    const out = new Map<number, Uint8Array>();
    for (const b of new Set(indices.map((i) => Math.floor(i / TILE_WIDTH)))) {
      const width = tileWidthAt('entries', b, size);
      const r = await this.get(`/${tilePath({ level: 'entries', index: b, width })}`, false);
      if (r.status !== 200) throw statusError(r);
      const leaves = decodeBundle(r.body, width);
      for (const i of indices) if (Math.floor(i / TILE_WIDTH) === b) out.set(i, leaves[i % TILE_WIDTH]!);
    }
    return out;
  }

  /**
   * The copy of the checkpoint of `size` with the most signature lines: the log adds
   * witness cosignatures to a published checkpoint as they arrive (GET
   * /v1/receipts/0?treeSize=<size> serves the stored copy). Falls back to `note`.
   */
  async mostCosigned(note: string, size: number): Promise<string> {
    try {
      const r = await this.get(`/v1/receipts/0?treeSize=${size}`, false);
      if (r.status !== 200) return note;
      const stored = parseTlogProof(new TextDecoder('utf-8', { fatal: true }).decode(r.body)).checkpoint;
      const a = parseNote(note);
      const b = parseNote(stored);
      return b.text === a.text && b.signatures.length > a.signatures.length ? stored : note;
    } catch {
      return note;
    }
  }
}

/** One entry of a query answer: its envelope decoded, its leaf hash and proof shape checked. */
function rowOf(x: unknown, treeSize: number, what: string): Row {
  if (!isObject(x)) throw new MalformedError(`${what}: not an object`);
  const index = x['index'];
  if (!isUint(index)) throw new MalformedError(`${what}: no index`);
  if (typeof x['envelope'] !== 'string') throw new MalformedError(`${what}: no envelope`);
  let signed: SignedEntry;
  try {
    signed = decodeEnvelope(decodeBase64(x['envelope'], 'envelope'));
  } catch (err) {
    throw new MalformedError(`${what} (index ${index}): ${(err as Error).message}`, { cause: err });
  }
  const lh = x['leafHash'];
  if (typeof lh === 'string' && !equalBytes(decodeBase64(lh, `${what}: leafHash`), signed.leafHash)) {
    throw new VerificationError(`${what} (index ${index}): the leaf hash served is not the envelope's`);
  }
  const p = x['proof'];
  if (!Array.isArray(p) || !p.every((h) => typeof h === 'string')) throw new MalformedError(`${what} (index ${index}): no proof`);
  const proof = p.map((h: string, k) => {
    const b = decodeBase64(h, `${what}: proof[${k}]`);
    if (b.length !== HASH_SIZE) throw new MalformedError(`${what}: proof[${k}] is not a ${HASH_SIZE}-byte hash`);
    return b;
  });
  const erasedBy = new Map<string, number>();
  const payloads = x['payloads'];
  if (isObject(payloads)) {
    for (const [name, v] of Object.entries(payloads)) {
      if (isObject(v) && isUint(v['erasedBy'])) erasedBy.set(name, v['erasedBy']);
    }
  }
  return { index, signed, proof, proofSize: treeSize, erasedBy };
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function jsonObject(r: { body: Uint8Array; url: string }): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(r.body));
  } catch (err) {
    throw new MalformedError(`GET ${r.url}: the answer is not JSON: ${errorText(err)}`, { cause: err });
  }
  if (!isObject(j)) throw new MalformedError(`GET ${r.url}: the answer is not a JSON object`);
  return j;
}

function statusError(r: { status: number; body: Uint8Array; url: string }): FetchError {
  const msg = errorMessage(r.body);
  return new FetchError(`GET ${r.url}: status ${r.status}${msg === undefined ? '' : `: ${msg}`}`, r.status);
}

/** The server's message in an error body. */
function errorMessage(body: Uint8Array): string | undefined {
  return serverMessage(new TextDecoder('utf-8', { fatal: false }).decode(body), 500);
}
