/**
 * The witness's HTTP API (spec/witness.md): C2SP tlog-witness add-checkpoint, the
 * monitoring endpoint, fork evidence, an operator endpoint to resolve a fork, health and
 * metrics. Errors go through the one status table in ./errors.ts; the bodies are plain
 * text here, as the protocol is text, except 409, whose body is the witness's size
 * (`text/x.tlog.size`) as the spec requires.
 */
import { Hono, type Context } from 'hono';
import { MAX_ADD_CHECKPOINT_SIZE, TLOG_SIZE_CONTENT_TYPE, formatTlogSize } from '../core/add-checkpoint.js';
import { concatBytes } from '../core/encoding.js';
import { SizeConflictError, TooLargeError, TlogError } from '../core/errors.js';
import { Counter, type Registry } from '../metrics.js';
import type { Witness } from '../witness/witness.js';
import { requireBearer } from './auth.js';
import { HttpError, statusOf } from './errors.js';

export interface WitnessAppOptions {
  readonly witness: Witness;
  readonly metrics: Registry;
  /** Bearer tokens of operators (resolving forks). */
  readonly adminTokens: readonly string[];
}

const TEXT = 'text/plain; charset=utf-8';
const ORIGIN_HASH = /^[0-9a-f]{64}$/;

function textError(err: unknown, c: Context): Response {
  if (err instanceof SizeConflictError) {
    return c.body(formatTlogSize(err.treeSize), 409, { 'Content-Type': TLOG_SIZE_CONTENT_TYPE, 'Cache-Control': 'no-store' });
  }
  const status = statusOf(err);
  const message = status === 500 && !(err instanceof TlogError) ? 'internal error' : (err as Error).message;
  if (status >= 500) console.error(`glasslog witness: ${c.req.method} ${c.req.path}: ${(err as Error)?.stack ?? String(err)}`);
  const headers: Record<string, string> = { 'Content-Type': TEXT, 'Cache-Control': 'no-store' };
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer realm="glasslog-witness"';
  return c.body(message + '\n', status, headers);
}

/** Reads at most `limit` bytes of the body, refusing more (whatever Content-Length says). */
async function readBody(c: Context, limit: number): Promise<Uint8Array> {
  const declared = Number(c.req.header('content-length') ?? NaN);
  if (declared > limit) throw new TooLargeError(`request body exceeds ${limit} bytes`);
  const reader = c.req.raw.body?.getReader();
  if (!reader) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      throw new TooLargeError(`request body exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  return concatBytes(...chunks);
}

function originHashParam(c: Context): string {
  const h = c.req.param('hash') ?? '';
  if (!ORIGIN_HASH.test(h)) throw new HttpError(404, `not an origin hash (64 lowercase hex digits): ${JSON.stringify(h.slice(0, 80))}`);
  return h;
}

export function createWitnessApp(opts: WitnessAppOptions): Hono {
  const { witness, metrics } = opts;
  const denials = metrics.register(new Counter('glasslog_witness_http_denied_total', 'Operator requests refused for missing or bad credentials'));
  const app = new Hono();
  app.onError(textError);
  app.notFound((c) => textError(new HttpError(404, `no route for ${c.req.method} ${c.req.path}`), c));

  app.post('/add-checkpoint', async (c) => {
    try {
      const lines = await witness.addCheckpoint(await readBody(c, MAX_ADD_CHECKPOINT_SIZE));
      witness.countRequest(200);
      return c.body(lines, 200, { 'Content-Type': TEXT, 'Cache-Control': 'no-store' });
    } catch (err) {
      const res = textError(err, c);
      witness.countRequest(res.status);
      return res;
    }
  });

  app.get('/:hash/checkpoint', async (c) => {
    const note = await witness.monitorCheckpoint(originHashParam(c));
    return c.body(note, 200, { 'Content-Type': TEXT, 'Cache-Control': 'no-cache' });
  });

  app.get('/:hash/fork-evidence', async (c) => {
    const f = await witness.forkEvidence(originHashParam(c));
    return c.body(f.evidence, 200, {
      'Content-Type': TEXT,
      'Cache-Control': 'no-cache',
      'Glasslog-Fork-Status': f.open ? 'open' : 'resolved',
      'Glasslog-Fork-Detected': f.detectedAt.toISOString(),
    });
  });

  app.post('/admin/forks/:hash/resolve', requireBearer(opts.adminTokens, denials, 'resolving a fork'), async (c) => {
    const n = await witness.resolveForks(originHashParam(c));
    return c.body(`resolved ${n} fork record(s); the log may be cosigned again\n`, 200, { 'Content-Type': TEXT, 'Cache-Control': 'no-store' });
  });

  app.get('/healthz', (c) =>
    c.json({ status: 'ok', name: witness.name, logs: witness.currentPolicy().logs.length }, 200, { 'Cache-Control': 'no-store' })
  );

  app.get('/metrics', (c) => c.body(metrics.render(), 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' }));

  return app;
}
