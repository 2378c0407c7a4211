/** Bearer-token checks shared by the log's and the witness's HTTP apps. */
import type { Context } from 'hono';
import { createHash, timingSafeEqual } from 'node:crypto';
import { UnauthorizedError } from '../core/errors.js';
import type { Counter } from '../metrics.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Middleware that admits a request only with `Authorization: Bearer <one of tokens>`.
 * Tokens are compared as SHA-256 digests in constant time; refusals are counted in
 * `denials` by reason.
 */
export function requireBearer(tokens: readonly string[], denials: Counter, what: string) {
  const digests = tokens.map(digest);
  if (digests.length === 0) throw new RangeError('at least one token is required');
  return async (c: Context, next: () => Promise<void>): Promise<void> => {
    const auth = c.req.header('authorization') ?? '';
    const m = /^Bearer +([\x21-\x7e]+)$/i.exec(auth); // the scheme is case-insensitive (RFC 9110 §11.1)
    if (!m) {
      denials.inc({ reason: 'missing' });
      throw new UnauthorizedError(`${what} needs an "Authorization: Bearer <token>" header`);
    }
    const got = digest(m[1]!);
    if (!digests.some((t) => timingSafeEqual(t, got))) {
      denials.inc({ reason: 'invalid' });
      throw new UnauthorizedError(`the bearer token is not valid for ${what}`);
    }
    await next();
  };
}
