/**
 * The glasslog write API (spec/http-api.md "Writes") as seen by a client, for e2e tests.
 * Like tlog-client.ts it imports nothing from src/.
 */
import { formatBundle, httpRequest, type HttpResponse } from './tlog-client.js';

export type Wait = 'published' | 'sequenced';

export interface WriteResult {
  readonly index: number;
  readonly leafHash: string;
  readonly duplicate: boolean;
  readonly receipt?: string;
}

export class WriteError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(message);
    this.name = 'WriteError';
  }
}

function parseJson(r: HttpResponse, what: string): unknown {
  const type = String(r.headers['content-type'] ?? '');
  if (!/^application\/json\b/.test(type)) throw new WriteError(`${what}: content type ${type}`, r.status, r.body.toString('utf8'));
  return JSON.parse(r.body.toString('utf8'));
}

function checkResult(x: unknown, wait: Wait, what: string): WriteResult {
  const r = x as Partial<WriteResult>;
  if (typeof r !== 'object' || r === null || !Number.isSafeInteger(r.index) || (r.index as number) < 0 || typeof r.leafHash !== 'string' || typeof r.duplicate !== 'boolean') {
    throw new Error(`${what}: malformed result ${JSON.stringify(x)}`);
  }
  if (wait === 'published' && typeof r.receipt !== 'string') throw new Error(`${what}: wait=published answer without a receipt`);
  if (wait === 'sequenced' && r.receipt !== undefined) throw new Error(`${what}: wait=sequenced answer with a receipt`);
  return r as WriteResult;
}

/** POST /v1/entries/batch, as JSON (base64) or in the entry-bundle framing. */
export async function postBatch(baseUrl: string, token: string, entries: readonly Uint8Array[], opts: { wait?: Wait; format?: 'json' | 'binary' } = {}): Promise<WriteResult[]> {
  const wait = opts.wait ?? 'published';
  const json = (opts.format ?? 'json') === 'json';
  const body = json ? JSON.stringify({ entries: entries.map((e) => Buffer.from(e).toString('base64')) }) : formatBundle(entries);
  const what = `POST /v1/entries/batch?wait=${wait} (${entries.length} entries, ${json ? 'json' : 'binary'})`;
  const r = await httpRequest(`${baseUrl}/v1/entries/batch?wait=${wait}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': json ? 'application/json' : 'application/octet-stream' },
    body,
  });
  if (r.status !== 200) throw new WriteError(`${what}: HTTP ${r.status}: ${r.body.toString('utf8').slice(0, 300)}`, r.status, r.body.toString('utf8'));
  const parsed = parseJson(r, what) as { entries?: unknown };
  if (!Array.isArray(parsed.entries) || parsed.entries.length !== entries.length) throw new Error(`${what}: ${JSON.stringify(parsed).slice(0, 200)}`);
  return parsed.entries.map((x, i) => checkResult(x, wait, `${what} [${i}]`));
}

/** POST /v1/entries, raw or as JSON. Returns the result and the HTTP status (201 new, 200 duplicate). */
export async function postEntry(baseUrl: string, token: string, entry: Uint8Array, opts: { wait?: Wait; format?: 'json' | 'binary' } = {}): Promise<WriteResult & { status: number }> {
  const wait = opts.wait ?? 'published';
  const json = (opts.format ?? 'binary') === 'json';
  const what = `POST /v1/entries?wait=${wait} (${json ? 'json' : 'binary'})`;
  const r = await httpRequest(`${baseUrl}/v1/entries?wait=${wait}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': json ? 'application/json' : 'application/octet-stream' },
    body: json ? JSON.stringify({ entry: Buffer.from(entry).toString('base64') }) : entry,
  });
  if (r.status !== 200 && r.status !== 201) throw new WriteError(`${what}: HTTP ${r.status}: ${r.body.toString('utf8').slice(0, 300)}`, r.status, r.body.toString('utf8'));
  const res = checkResult(parseJson(r, what), wait, what);
  if ((r.status === 200) !== res.duplicate) throw new Error(`${what}: HTTP ${r.status} with duplicate=${res.duplicate}`);
  return { ...res, status: r.status };
}
