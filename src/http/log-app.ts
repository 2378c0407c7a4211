/**
 * The log's HTTP API (spec/http-api.md): the C2SP tlog-tiles read path, the write API,
 * proofs, receipts, health and metrics. Every Hono import of the log lives in src/http.
 */
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { gzipSync } from 'node:zlib';
import { MAX_ENTRY_SIZE } from '../core/bundle.js';
import { decodeBase64, encodeBase64, parseDecimal } from '../core/encoding.js';
import { MalformedError, TooLargeError } from '../core/errors.js';
import { HASH_SIZE } from '../core/hash.js';
import { parseTilePath } from '../core/tile.js';
import type { AddResult, Log, WaitFor } from '../log/log.js';
import { Counter, Histogram } from '../metrics.js';
import type { Access } from '../audit/access.js';
import type { AuditLog } from '../audit/audit.js';
import { mountAuditRoutes } from './audit-routes.js';
import { requireBearer } from './auth.js';
import { errorResponse, HttpError } from './errors.js';

export interface LogAppOptions {
  readonly log: Log;
  /** Bearer tokens allowed to write. */
  readonly writeTokens: readonly string[];
  /** Most entries in one batch request. */
  readonly maxBatchEntries?: number;
  /** The agent audit layer (spec/agent-api.md); without it only raw entries are served. */
  readonly audit?: { readonly audit: AuditLog; readonly access: Access };
}

export const IMMUTABLE = 'public, max-age=31536000, immutable';
export const SHORT_LIVED = 'no-cache';
const TEXT = 'text/plain; charset=utf-8';
const OCTETS = 'application/octet-stream';
/** One entry, JSON-wrapped in base64 at worst. */
const MAX_SINGLE_BODY = 128 * 1024;
const MAX_BATCH_BODY = 32 * 1024 * 1024;


function parseQueryNumber(c: Context, name: string): number | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  return parseDecimal(v, `query parameter ${name}`);
}

function parseWait(c: Context): WaitFor {
  const w = c.req.query('wait');
  if (w === undefined || w === 'published') return 'published';
  if (w === 'sequenced') return 'sequenced';
  throw new HttpError(400, `query parameter wait must be "published" or "sequenced", got ${JSON.stringify(w)}`);
}

function mediaType(c: Context): string {
  return (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Reads the request body as entries, in one of the documented encodings. */
async function readEntries(c: Context, batch: boolean): Promise<Uint8Array[]> {
  const type = mediaType(c);
  if (type === 'application/json') {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw new MalformedError('request body is not valid JSON');
    }
    const field = batch ? 'entries' : 'entry';
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new MalformedError('request body must be a JSON object');
    const extra = Object.keys(body).filter((k) => k !== field);
    if (extra.length > 0) throw new MalformedError(`unknown field ${JSON.stringify(extra[0])} in request body`);
    const v = (body as Record<string, unknown>)[field];
    if (batch) {
      if (!Array.isArray(v)) throw new MalformedError('"entries" must be an array of base64 strings');
      return v.map((e, i) => {
        if (typeof e !== 'string') throw new MalformedError(`entries[${i}] must be a base64 string`);
        return decodeBase64(e, `entries[${i}]`);
      });
    }
    if (typeof v !== 'string') throw new MalformedError('"entry" must be a base64 string');
    return [decodeBase64(v, 'entry')];
  }
  if (type === OCTETS) {
    const raw = new Uint8Array(await c.req.arrayBuffer());
    if (!batch) return [raw];
    // The batch binary form is the entry-bundle framing: uint16 length, bytes, repeated.
    const entries: Uint8Array[] = [];
    let o = 0;
    while (o < raw.length) {
      if (o + 2 > raw.length) throw new MalformedError(`batch body: truncated length prefix of entry ${entries.length}`);
      const n = (raw[o]! << 8) | raw[o + 1]!;
      if (o + 2 + n > raw.length) throw new MalformedError(`batch body: entry ${entries.length} is truncated`);
      entries.push(raw.subarray(o + 2, o + 2 + n));
      o += 2 + n;
    }
    return entries;
  }
  throw new HttpError(415, `content type must be application/octet-stream or application/json, got ${JSON.stringify(type || 'none')}`);
}

export function createLogApp(opts: LogAppOptions): Hono {
  const { log } = opts;
  const maxBatch = opts.maxBatchEntries ?? 4096;

  const requests = log.metrics.register(new Counter('glasslog_http_requests_total', 'HTTP requests by route and status'));
  const latency = log.metrics.register(new Histogram('glasslog_http_request_seconds', 'HTTP request latency by route'));
  const denials = log.metrics.register(new Counter('glasslog_http_denied_total', 'Requests refused for missing or bad credentials'));

  const app = new Hono();
  app.onError(errorResponse);
  app.notFound((c) => errorResponse(new HttpError(404, `no route for ${c.req.method} ${c.req.path}`), c));

  app.use('*', async (c, next) => {
    const t0 = performance.now();
    await next();
    const route = c.req.routePath === '/*' ? 'unmatched' : c.req.routePath;
    requests.inc({ route, method: c.req.method, status: String(c.res.status) });
    latency.observe((performance.now() - t0) / 1000, { route });
  });

  const requireWriter = requireBearer(opts.writeTokens, denials, 'writing to this log');

  const tooLarge = (limit: number) =>
    bodyLimit({ maxSize: limit, onError: () => { throw new TooLargeError(`request body exceeds ${limit} bytes`); } });

  // ---- c2sp.org/tlog-tiles read path ----

  app.get('/checkpoint', (c) => {
    return c.body(log.checkpoint().note, 200, { 'Content-Type': TEXT, 'Cache-Control': SHORT_LIVED });
  });

  app.get('/tile/*', async (c) => {
    const t = parseTilePath(c.req.path.slice(1));
    const headers: Record<string, string> = { 'Content-Type': OCTETS, 'Cache-Control': IMMUTABLE };
    if (t.level === 'entries') {
      let data = await log.bundle(t.index, t.width);
      // Entry bundles SHOULD be compressed (c2sp.org/tlog-tiles).
      if (/\bgzip\b/.test(c.req.header('accept-encoding') ?? '')) {
        data = gzipSync(data, { level: 1 });
        headers['Content-Encoding'] = 'gzip';
      }
      headers['Vary'] = 'Accept-Encoding';
      return c.body(data as Uint8Array<ArrayBuffer>, 200, headers);
    }
    return c.body((await log.tile(t.level, t.index, t.width)) as Uint8Array<ArrayBuffer>, 200, headers);
  });

  // ---- writes ----

  const respond = async (results: AddResult[], wait: WaitFor) => {
    const receipts = wait === 'published' ? await log.receipts(results.map((r) => r.index)) : undefined;
    return results.map((r, i) => ({
      index: r.index,
      leafHash: encodeBase64(r.leafHash),
      duplicate: r.duplicate,
      ...(receipts ? { receipt: receipts[i] } : {}),
    }));
  };

  app.post('/v1/entries', requireWriter, tooLarge(MAX_SINGLE_BODY), async (c) => {
    const wait = parseWait(c);
    const entries = await readEntries(c, false);
    checkEntries(entries);
    const results = await log.add(entries, wait);
    const [body] = await respond(results, wait);
    return c.json(body, body!.duplicate ? 200 : 201);
  });

  app.post('/v1/entries/batch', requireWriter, tooLarge(MAX_BATCH_BODY), async (c) => {
    const wait = parseWait(c);
    const entries = await readEntries(c, true);
    if (entries.length === 0) throw new MalformedError('a batch needs at least one entry');
    if (entries.length > maxBatch) throw new TooLargeError(`a batch holds at most ${maxBatch} entries, got ${entries.length}`);
    checkEntries(entries);
    const results = await log.add(entries, wait);
    return c.json({ entries: await respond(results, wait) });
  });

  // ---- proofs and receipts ----

  app.get('/v1/receipts/:index', async (c) => {
    const index = parseDecimal(c.req.param('index'), 'index');
    const treeSize = parseQueryNumber(c, 'treeSize');
    const text = await log.receipt(index, treeSize);
    // A receipt for a fixed size never changes, except that a witnessed log's checkpoint of
    // that size can still gain cosignatures (fail-open, or witnesses beyond the quorum).
    const fixed = treeSize !== undefined && !log.witnessed;
    return c.body(text, 200, { 'Content-Type': TEXT, 'Cache-Control': fixed ? IMMUTABLE : SHORT_LIVED });
  });

  app.get('/v1/proofs/inclusion', async (c) => {
    const treeSize = parseQueryNumber(c, 'treeSize') ?? log.checkpoint().treeSize;
    let index = parseQueryNumber(c, 'index');
    const hash = c.req.query('leafHash');
    if ((index === undefined) === (hash === undefined)) throw new HttpError(400, 'give exactly one of the query parameters index and leafHash');
    if (hash !== undefined) {
      const h = decodeBase64(hash, 'query parameter leafHash');
      if (h.length !== HASH_SIZE) throw new MalformedError(`query parameter leafHash must be ${HASH_SIZE} bytes`);
      index = await log.findLeaf(h);
    }
    const p = await log.inclusionProof(index!, treeSize);
    return c.json({ index, treeSize, leafHash: encodeBase64(p.leafHash), proof: p.proof.map(encodeBase64) });
  });

  app.get('/v1/proofs/consistency', async (c) => {
    const oldSize = parseQueryNumber(c, 'old');
    const newSize = parseQueryNumber(c, 'new') ?? log.checkpoint().treeSize;
    if (oldSize === undefined) throw new HttpError(400, 'query parameter old is required');
    const proof = await log.consistencyProof(oldSize, newSize);
    return c.json({ oldSize, newSize, proof: proof.map(encodeBase64) });
  });

  if (opts.audit) mountAuditRoutes(app, { ...opts.audit, denials, maxBatchEntries: Math.min(maxBatch, 1000) });

  // ---- operations ----

  app.get('/healthz', (c) => {
    const ok = log.healthy();
    return c.json({ status: ok ? 'ok' : 'failed', origin: log.origin, treeSize: log.checkpoint().treeSize }, ok ? 200 : 503, {
      'Cache-Control': 'no-store',
    });
  });

  app.get('/metrics', (c) =>
    c.body(log.metrics.render(), 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' })
  );

  return app;
}

/** Entries are 1 to 65,535 bytes: the entry-bundle framing holds a uint16 length. */
function checkEntries(entries: Uint8Array[]): void {
  for (let i = 0; i < entries.length; i++) {
    if (entries[i]!.length === 0) throw new MalformedError(`entry ${i} is empty`);
    if (entries[i]!.length > MAX_ENTRY_SIZE) {
      throw new TooLargeError(`entry ${i} is ${entries[i]!.length} bytes; the limit is ${MAX_ENTRY_SIZE}`);
    }
  }
}

