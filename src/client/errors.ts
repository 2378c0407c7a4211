/**
 * What the fetch-only clients say about a failed request: the error's message with its
 * cause, and the server's own message from a glasslog JSON error body.
 */

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An error's message, with its cause's when that says more (fetch puts the reason there). */
export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message !== err.message ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}

/**
 * The `error.message` of a JSON error body (spec/http-api.md), at most `max` characters,
 * or else the body's first line, shortened; undefined for an empty body.
 */
export function serverMessage(text: string, max = 1000): string | undefined {
  try {
    const j = JSON.parse(text) as unknown;
    const e = isObject(j) ? j['error'] : undefined;
    const m = isObject(e) ? e['message'] : undefined;
    if (typeof m === 'string') return m.length > max ? m.slice(0, max) + '…' : m;
  } catch {
    // not JSON: fall through
  }
  const line = text.trim().split('\n')[0] ?? '';
  if (line === '') return undefined;
  return line.length > 200 ? line.slice(0, 200) + '…' : line;
}
