/**
 * A node:http fast path for the hottest reads: hash tiles and entry bundles. It answers a
 * canonical tile path (no query string; for a bundle, a request that does not ask for
 * gzip) whose tile the published checkpoint covers, from memory when the tile is cached
 * and otherwise with one read from the store. Everything else, and any read that fails,
 * goes to the Hono app, which answers it or names the error, so the one error table still
 * decides every error. It skips the Request/Response conversion and the middleware, which
 * halve Hono's throughput on node:http for these immutable bodies (bench/tiles.ts) and cost
 * a full audit a tenth of the server's CPU (bench/audit.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseTilePath, type TileCoord } from '../core/tile.js';
import type { Log } from '../log/log.js';
import { Counter } from '../metrics.js';
import { IMMUTABLE } from './log-app.js';

export type NodeListener = (req: IncomingMessage, res: ServerResponse) => void;

const TILE_HEADERS = { 'Content-Type': 'application/octet-stream', 'Cache-Control': IMMUTABLE };
const BUNDLE_HEADERS = { ...TILE_HEADERS, Vary: 'Accept-Encoding' };

export function withFastTiles(log: Log, next: NodeListener): NodeListener {
  const served = log.metrics.register(
    new Counter('glasslog_http_fast_tiles_total', 'Tile and entry bundle requests answered by the node:http fast path, by source (not in glasslog_http_requests_total)')
  );
  const send = (res: ServerResponse, data: Uint8Array, headers: Record<string, string>, source: string) => {
    served.inc({ source });
    res.writeHead(200, { ...headers, 'Content-Length': String(data.length) });
    res.end(data);
  };
  return (req, res) => {
    const t = fastTile(req);
    if (t === undefined) return next(req, res);
    // A read that fails goes to the app, which reads again and names the error; a failure
    // while sending (the client went away) ends the response, never the process.
    const answer = (read: Promise<Uint8Array>, headers: Record<string, string>) =>
      read.then((data) => send(res, data, headers, 'store'), () => next(req, res)).catch((err: unknown) => res.destroy(err as Error));
    if (t.level === 'entries') return void answer(log.bundle(t.index, t.width), BUNDLE_HEADERS);
    const cached = log.cachedTile(t.level, t.index, t.width);
    if (cached) return send(res, cached, TILE_HEADERS, 'memory');
    return void answer(log.tile(t.level, t.index, t.width), TILE_HEADERS);
  };
}

/** The tile a request asks for, if the fast path may answer it; undefined hands it on. */
function fastTile(req: IncomingMessage): TileCoord | undefined {
  const url = req.url;
  if (req.method !== 'GET' || url === undefined || !url.startsWith('/tile/') || url.includes('?')) return undefined;
  let t: TileCoord;
  try {
    t = parseTilePath(url.slice(1));
  } catch {
    return undefined; // malformed: the app answers with the error
  }
  // Compressed bundles are the app's (one place negotiates the encoding).
  if (t.level === 'entries' && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) return undefined;
  return t;
}
