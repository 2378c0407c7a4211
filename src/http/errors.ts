/**
 * The one table from error to HTTP status. Nothing below src/http knows about HTTP; every
 * route lets errors propagate to errorResponse(), installed with app.onError.
 */
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { PushbackError, RateLimitedError, TlogError, type TlogErrorCode } from '../core/errors.js';

const STATUS: Record<TlogErrorCode, ContentfulStatusCode> = {
  MALFORMED: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  TOO_LARGE: 413,
  VERIFICATION_FAILED: 422,
  PUSHBACK: 503,
  RATE_LIMITED: 429,
  GONE: 410,
  FATAL: 503,
  STORAGE: 500,
};

/** A request-level error raised inside src/http (bad query, wrong content type, …). */
export class HttpError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function statusOf(err: unknown): ContentfulStatusCode {
  if (err instanceof HttpError) return err.status;
  if (err instanceof TlogError) return STATUS[err.code];
  return 500;
}

export function errorResponse(err: unknown, c: Context): Response {
  const status = statusOf(err);
  const message = status === 500 && !(err instanceof TlogError) ? 'internal error' : (err as Error).message;
  if (status >= 500 && !(err instanceof PushbackError)) console.error(`glasslog: ${c.req.method} ${c.req.path}: ${(err as Error)?.stack ?? String(err)}`);
  const headers: Record<string, string> = { 'Cache-Control': 'no-store' };
  if (err instanceof PushbackError || err instanceof RateLimitedError) headers['Retry-After'] = String(err.retryAfterSeconds);
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer realm="glasslog"';
  return c.json({ error: { status, message } }, status, headers);
}
