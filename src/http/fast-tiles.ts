/**
 * A node:http fast path for the hottest read: hash tiles already in memory. It answers
 * only a canonical tile path whose tile is cached and covered by the published checkpoint;
 * everything else (misses, errors, every other route) goes to the Hono app, so the one
 * error table still decides every error. It skips the Request/Response conversion that
 * halves Hono's throughput on node:http for small immutable bodies (bench/tiles.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseTilePath } from '../core/tile.js';
import type { Log } from '../log/log.js';
import { Counter } from '../metrics.js';
import { IMMUTABLE } from './log-app.js';

export type NodeListener = (req: IncomingMessage, res: ServerResponse) => void;

export function withCachedTiles(log: Log, next: NodeListener): NodeListener {
  const served = log.metrics.register(new Counter('glasslog_http_fast_tiles_total', 'Tile requests answered from memory by the fast path (not in glasslog_http_requests_total)'));
  return (req, res) => {
    const url = req.url;
    if (req.method === 'GET' && url !== undefined && url.startsWith('/tile/') && !url.startsWith('/tile/entries/') && !url.includes('?')) {
      let data: Uint8Array | undefined;
      try {
        const t = parseTilePath(url.slice(1));
        if (t.level !== 'entries') data = log.cachedTile(t.level, t.index, t.width);
      } catch {
        data = undefined; // malformed: the app answers with the error
      }
      if (data) {
        served.inc();
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length, 'Cache-Control': IMMUTABLE });
        res.end(data);
        return;
      }
    }
    next(req, res);
  };
}
