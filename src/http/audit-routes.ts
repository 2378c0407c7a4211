/**
 * The agent audit API (spec/agent-api.md): agents and their keys, signed agent entries,
 * queries with proofs, runs, payloads and their erasure, credentials.
 */
import type { Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { decodeBase64, encodeBase64, parseDecimal } from '../core/encoding.js';
import { MalformedError, TooLargeError, UnauthorizedError } from '../core/errors.js';
import { decodeCanonical, encodeEntry, entryFromCbor, entryFromJson, entryToJson, envelope, isValidEventKind, type CborValue } from '../entry/index.js';
import type { Access, Principal } from '../audit/access.js';
import { requireOperator, requireReader, requireWriter } from '../audit/access.js';
import type { AuditLog, QueryResult, Submission } from '../audit/audit.js';
import type { Counter } from '../metrics.js';
import { HttpError } from './errors.js';

export interface AuditRoutesOptions {
  readonly audit: AuditLog;
  readonly access: Access;
  readonly denials: Counter;
  /** Most entries in one request (default 1000). */
  readonly maxBatchEntries?: number;
}

const MAX_BODY = 32 * 1024 * 1024;
const NAME = /^[A-Za-z0-9._:@-]{1,128}$/;

function field<T>(o: Record<string, unknown>, k: string, check: (v: unknown) => v is T, what: string): T {
  const v = o[k];
  if (!check(v)) throw new MalformedError(`"${k}" must be ${what}`);
  return v;
}
const isString = (v: unknown): v is string => typeof v === 'string';
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

async function jsonBody(c: Context, allowed: readonly string[]): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new MalformedError('request body is not valid JSON');
  }
  if (!isObject(body)) throw new MalformedError('request body must be a JSON object');
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw new MalformedError(`unknown field ${JSON.stringify(extra[0])} in request body`);
  return body;
}

function pathName(c: Context, param: string): string {
  const v = c.req.param(param) ?? '';
  if (!NAME.test(v)) throw new MalformedError(`${param} ${JSON.stringify(v.slice(0, 140))} is not 1–128 characters of [A-Za-z0-9._:@-]`);
  return v;
}

function queryInt(c: Context, name: string): number | undefined {
  const v = c.req.query(name);
  return v === undefined ? undefined : parseDecimal(v, `query parameter ${name}`);
}

/** Bytes from a JSON string (base64) or a CBOR byte string. */
function bytesOf(v: unknown, what: string): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return decodeBase64(v, what);
  throw new MalformedError(`${what} must be ${'base64 (JSON) or a byte string (CBOR)'}`);
}

/** One submitted entry: {envelope} or {entry, sig}, with optional payloads {name: {salt, data}}. */
function submissionOf(v: unknown, i: number, cbor: boolean): Submission {
  const at = `entries[${i}]`;
  if (!isObject(v)) throw new MalformedError(`${at} must be an object`);
  for (const k of Object.keys(v)) if (!['envelope', 'entry', 'sig', 'payloads'].includes(k)) throw new MalformedError(`${at}: unknown field ${JSON.stringify(k)}`);
  let env: Uint8Array;
  if (v.envelope !== undefined) {
    if (v.entry !== undefined || v.sig !== undefined) throw new MalformedError(`${at}: give "envelope" or "entry" with "sig", not both`);
    env = bytesOf(v.envelope, `${at}.envelope`);
  } else {
    if (v.entry === undefined || v.sig === undefined) throw new MalformedError(`${at}: needs "envelope", or "entry" and "sig"`);
    let entryBytes: Uint8Array;
    try {
      entryBytes = isObject(v.entry) ? encodeEntry(cbor ? entryFromCbor(v.entry as CborValue) : entryFromJson(v.entry)) : bytesOf(v.entry, `${at}.entry`);
    } catch (err) {
      throw new MalformedError(`${at}.entry: ${(err as Error).message}`);
    }
    env = envelope(entryBytes, bytesOf(v.sig, `${at}.sig`)).bytes;
  }
  const payloads: Record<string, { salt: Uint8Array; data: Uint8Array }> = {};
  if (v.payloads !== undefined) {
    if (!isObject(v.payloads)) throw new MalformedError(`${at}.payloads must be an object`);
    for (const [name, p] of Object.entries(v.payloads)) {
      if (!isObject(p) || p.salt === undefined || p.data === undefined) throw new MalformedError(`${at}.payloads.${name} must be {"salt", "data"}`);
      payloads[name] = { salt: bytesOf(p.salt, `${at}.payloads.${name}.salt`), data: bytesOf(p.data, `${at}.payloads.${name}.data`) };
    }
  }
  return { envelope: env, payloads };
}

function resultJson(r: QueryResult) {
  const payloads: Record<string, { commitment: string; erasedBy?: number }> = {};
  for (const p of r.payloads) payloads[p.name] = p.erasedBy === null ? { commitment: encodeBase64(p.commitment) } : { commitment: encodeBase64(p.commitment), erasedBy: p.erasedBy };
  return {
    index: r.index,
    leafHash: encodeBase64(r.leafHash),
    logTime: r.logTime,
    entry: entryToJson(r.signed.entry),
    signature: encodeBase64(r.signed.signature),
    envelope: encodeBase64(r.signed.bytes),
    payloads,
    proof: r.proof.map(encodeBase64),
  };
}

function cursorOf(order: string, index: number): string {
  return Buffer.from(`${order}:${index}`).toString('base64url');
}

function parseCursor(s: string, order: string): number {
  const m = /^(asc|desc):(0|[1-9][0-9]{0,15})$/.exec(Buffer.from(s, 'base64url').toString('latin1'));
  if (!m || Buffer.from(`${m[1]}:${m[2]}`).toString('base64url') !== s) throw new MalformedError('query parameter cursor is not a cursor this API returned');
  if (m[1] !== order) throw new MalformedError(`the cursor was made for order=${m[1]}`);
  return Number(m[2]);
}

export function mountAuditRoutes(app: Hono, opts: AuditRoutesOptions): void {
  const { audit, access, denials } = opts;
  const log = audit.log;
  const maxBatch = opts.maxBatchEntries ?? 1000;

  /** The caller's principal. @throws {UnauthorizedError} */
  const principal = async (c: Context): Promise<Principal> => {
    const m = /^Bearer +([\x21-\x7e]+)$/i.exec(c.req.header('authorization') ?? '');
    if (!m) {
      denials.inc({ reason: 'missing' });
      throw new UnauthorizedError('this needs an "Authorization: Bearer <token>" header');
    }
    const p = await access.authenticate(m[1]!);
    if (!p) {
      denials.inc({ reason: 'invalid' });
      throw new UnauthorizedError('the bearer token is not valid (unknown or revoked)');
    }
    return p;
  };
  /** Runs an authorization check, counting a refusal. */
  const authorize = (check: () => void) => {
    try {
      check();
    } catch (err) {
      denials.inc({ reason: 'forbidden' });
      throw err;
    }
  };
  const limit = bodyLimit({ maxSize: MAX_BODY, onError: () => { throw new TooLargeError(`request body exceeds ${MAX_BODY} bytes`); } });
  const receiptsFor = async (indices: number[]) => {
    const max = Math.max(...indices);
    await log.waitForPublished(max);
    return log.receipts(indices, log.checkpoint());
  };
  const wantsReceipts = (c: Context) => {
    const w = c.req.query('wait');
    if (w === undefined || w === 'published') return true;
    if (w === 'sequenced') return false;
    throw new HttpError(400, `query parameter wait must be "published" or "sequenced", got ${JSON.stringify(w)}`);
  };
  const operatorEntry = async (c: Context, run: () => Promise<{ index: number; leafHash: Uint8Array }>) => {
    const receipts = wantsReceipts(c);
    const r = await run();
    const body: Record<string, unknown> = { index: r.index, leafHash: encodeBase64(r.leafHash) };
    if (receipts) body.receipt = (await receiptsFor([r.index]))[0];
    return c.json(body, 201);
  };

  // ---- agents and keys ----

  app.post('/v1/agents', limit, async (c) => {
    const p = await principal(c);
    authorize(() => requireOperator(p, 'registering an agent'));
    const b = await jsonBody(c, ['agent', 'key']);
    const agent = field(b, 'agent', isString, 'a string');
    if (!NAME.test(agent)) throw new MalformedError('"agent" must be 1–128 characters of [A-Za-z0-9._:@-]');
    const key = field(b, 'key', isString, 'a verifier key string');
    return operatorEntry(c, () => audit.register(agent, key));
  });

  app.get('/v1/agents/:agent', async (c) => {
    const agent = pathName(c, 'agent');
    const keys = await audit.agentKeys(agent);
    return c.json({ agent, keys: keys.map((k) => ({ key: k.vkey, from: k.from, until: k.until, endedBy: k.endedBy })) }, 200, { 'Cache-Control': 'no-cache' });
  });

  app.post('/v1/agents/:agent/keys', limit, async (c) => {
    const p = await principal(c);
    authorize(() => requireOperator(p, 'rotating a key'));
    const agent = pathName(c, 'agent');
    const b = await jsonBody(c, ['key']);
    const key = field(b, 'key', isString, 'a verifier key string');
    return operatorEntry(c, () => audit.rotate(agent, key));
  });

  app.post('/v1/agents/:agent/keys/revoke', limit, async (c) => {
    const p = await principal(c);
    authorize(() => requireOperator(p, 'revoking a key'));
    const agent = pathName(c, 'agent');
    const b = await jsonBody(c, ['key', 'reason']);
    const key = field(b, 'key', isString, 'a verifier key string');
    const reason = b.reason === undefined ? '' : field(b, 'reason', isString, 'a string');
    return operatorEntry(c, () => audit.revoke(agent, key, reason));
  });

  // ---- entries ----

  app.post('/v1/agents/:agent/entries', limit, async (c) => {
    const p = await principal(c);
    const agent = pathName(c, 'agent');
    authorize(() => requireWriter(p, agent));
    const receipts = wantsReceipts(c);
    const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    let body: unknown;
    if (type === 'application/json') {
      body = await jsonBody(c, ['entries']);
    } else if (type === 'application/cbor') {
      body = decodeCanonical(new Uint8Array(await c.req.arrayBuffer()), 'request body', MAX_BODY);
    } else {
      throw new HttpError(415, 'Content-Type must be application/json or application/cbor');
    }
    if (!isObject(body) || !Array.isArray((body as Record<string, CborValue>).entries)) throw new MalformedError('request body must be {"entries": [...]}');
    const list = (body as { entries: unknown[] }).entries;
    if (list.length === 0) throw new MalformedError('"entries" is empty');
    if (list.length > maxBatch) throw new TooLargeError(`at most ${maxBatch} entries per request, got ${list.length}`);
    const results = await audit.submit(agent, list.map((v, i) => submissionOf(v, i, type === 'application/cbor')));
    const out: Array<Record<string, unknown>> = results.map((r) => ({ index: r.index, leafHash: encodeBase64(r.leafHash), duplicate: r.duplicate }));
    if (receipts) (await receiptsFor(results.map((r) => r.index))).forEach((t, i) => (out[i]!.receipt = t));
    return c.json({ results: out }, results.every((r) => r.duplicate) ? 200 : 201);
  });

  app.get('/v1/agent-entries', async (c) => {
    const order = c.req.query('order') ?? 'asc';
    if (order !== 'asc' && order !== 'desc') throw new MalformedError('query parameter order must be asc or desc');
    const time = c.req.query('time') ?? 'client';
    if (time !== 'client' && time !== 'log') throw new MalformedError('query parameter time must be client or log');
    const agent = c.req.query('agent');
    const run = c.req.query('run');
    if (agent !== undefined && !NAME.test(agent)) throw new MalformedError('query parameter agent is not a valid agent id');
    if (run !== undefined && (!NAME.test(run) || agent === undefined)) throw new MalformedError('query parameter run needs agent and must be a valid run id');
    const kind = c.req.query('kind');
    if (kind !== undefined && !isValidEventKind(kind)) throw new MalformedError(`query parameter kind: ${JSON.stringify(String(kind).slice(0, 80))} is not an event kind`);
    const typesParam = c.req.query('type');
    const types = typesParam?.split(',');
    const allTypes = ['event', 'run.close', 'agent.register', 'agent.rotate', 'agent.revoke', 'payload.erase'];
    for (const t of types ?? []) if (!allTypes.includes(t)) throw new MalformedError(`query parameter type: unknown type ${JSON.stringify(t)}`);
    const limitN = queryInt(c, 'limit') ?? 100;
    if (limitN < 1 || limitN > 1000) throw new MalformedError('query parameter limit must be 1 to 1000');
    const cursor = c.req.query('cursor');
    const q = await audit.query({
      ...(agent !== undefined ? { agent } : {}),
      ...(run !== undefined ? { run } : {}),
      ...(kind !== undefined ? { kind } : {}),
      ...(types ? { types: types as never } : {}),
      ...(queryInt(c, 'since') !== undefined ? { since: queryInt(c, 'since')! } : {}),
      ...(queryInt(c, 'until') !== undefined ? { until: queryInt(c, 'until')! } : {}),
      timeField: time,
      order,
      ...(cursor !== undefined ? { after: parseCursor(cursor, order) } : {}),
      limit: limitN,
    });
    return c.json(
      { checkpoint: q.checkpoint, treeSize: q.treeSize, entries: q.entries.map(resultJson), next: q.next === null ? null : cursorOf(order, q.next) },
      200,
      { 'Cache-Control': 'no-cache' }
    );
  });

  app.get('/v1/agents/:agent/runs/:run', async (c) => {
    const r = await audit.run(pathName(c, 'agent'), pathName(c, 'run'));
    return c.json(
      { checkpoint: r.checkpoint, treeSize: r.treeSize, closed: r.closed, count: r.count, findings: r.findings, entries: r.entries.map(resultJson) },
      200,
      { 'Cache-Control': 'no-cache' }
    );
  });

  app.get('/v1/agent-entries/:index/payloads/:name', async (c) => {
    const p = await principal(c);
    const index = parseDecimal(c.req.param('index') ?? '', 'index');
    const name = pathName(c, 'name');
    // Which payloads exist, and which were erased, is public (query results list them);
    // the data is the reader's only.
    const r = await audit.payload(index, name);
    authorize(() => requireReader(p, r.agent, r.run));
    return c.json({ index, name, agent: r.agent, run: r.run, commitment: encodeBase64(r.commitment), salt: encodeBase64(r.salt), data: encodeBase64(r.data) }, 200, { 'Cache-Control': 'no-store' });
  });

  app.post('/v1/agent-entries/:index/payloads/:name/erase', limit, async (c) => {
    const p = await principal(c);
    authorize(() => requireOperator(p, 'erasing a payload'));
    const index = parseDecimal(c.req.param('index') ?? '', 'index');
    const name = pathName(c, 'name');
    const b = await jsonBody(c, ['reason']);
    const reason = field(b, 'reason', isString, 'a string (why the payload is erased)');
    return operatorEntry(c, () => audit.erase(index, name, reason));
  });

  // ---- credentials ----

  app.post('/v1/credentials', limit, async (c) => {
    const p = await principal(c);
    authorize(() => requireOperator(p, 'creating a credential'));
    const b = await jsonBody(c, ['kind', 'agent', 'agents', 'runs', 'label']);
    const kind = field(b, 'kind', (v): v is 'operator' | 'agent' | 'reader' => v === 'operator' || v === 'agent' || v === 'reader', '"operator", "agent" or "reader"');
    const strings = (k: string): string[] | undefined => {
      if (b[k] === undefined) return undefined;
      const v = b[k];
      if (!Array.isArray(v) || !v.every(isString)) throw new MalformedError(`"${k}" must be an array of strings`);
      return v;
    };
    const agent = b.agent === undefined ? undefined : field(b, 'agent', isString, 'a string');
    const label = b.label === undefined ? undefined : field(b, 'label', isString, 'a string');
    const r = await access.create({ kind, ...(agent !== undefined ? { agent } : {}), ...(strings('agents') ? { agents: strings('agents')! } : {}), ...(strings('runs') ? { runs: strings('runs')! } : {}), ...(label !== undefined ? { label } : {}) });
    return c.json({ id: r.id, token: r.token, kind, agent: r.credential.agent, agents: r.credential.agents, runs: r.credential.runs }, 201, { 'Cache-Control': 'no-store' });
  });

  app.get('/v1/credentials', async (c) => {
    const p = await principal(c);
    authorize(() => requireOperator(p, 'listing credentials'));
    const list = await access.list();
    return c.json(
      { credentials: list.map((r) => ({ id: r.id, kind: r.kind, agent: r.agent, agents: r.agents, runs: r.runs, label: r.label, createdAt: r.createdAt.toISOString(), revokedAt: r.revokedAt?.toISOString() ?? null })) },
      200,
      { 'Cache-Control': 'no-store' }
    );
  });

  app.delete('/v1/credentials/:id', async (c) => {
    const p = await principal(c);
    authorize(() => requireOperator(p, 'revoking a credential'));
    const ok = await access.revoke(c.req.param('id') ?? '');
    if (!ok) throw new HttpError(404, 'no such credential (or already revoked)');
    return c.json({ revoked: true });
  });
}
