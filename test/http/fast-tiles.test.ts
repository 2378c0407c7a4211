/**
 * The node:http fast path for tiles and entry bundles must answer exactly what the Hono app
 * answers, and hand everything else (and every error) to the app.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRequestListener } from '@hono/node-server';
import { utf8 } from '../../src/core/index.js';
import { withFastTiles } from '../../src/http/fast-tiles.js';
import { pgliteFactory } from '../helpers/stores.js';
import { createTestLog, type TestLog } from '../helpers/log.js';

describe('withFastTiles', () => {
  let t: TestLog;
  let server: Server;
  let base: string;
  let appCalls = 0;

  beforeAll(async () => {
    t = await createTestLog(pgliteFactory);
    await t.log.add(Array.from({ length: 2000 }, (_, i) => utf8(`fast ${i}`)));
    // A cache of four tiles (the right edge's two when it opens): most tiles asked for below
    // are read from the store, and concurrent reads evict each other's.
    await t.reopen({ log: { tileCacheSize: 4, dedupWindow: 0 } });
    const log = t.log;
    const app = getRequestListener(t.app.fetch);
    server = createServer(withFastTiles(log, (req, res) => {
      appCalls++;
      app(req, res);
    }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await t.cleanup();
  });

  const metric = async (source: string) => {
    const m = new RegExp(`glasslog_http_fast_tiles_total\\{source="${source}"\\} (\\d+)`).exec(await (await fetch(`${base}/metrics`)).text());
    return m ? Number(m[1]) : 0;
  };

  it('serves tiles and bundles with the same bytes and headers as the app, without calling it', async () => {
    const paths = ['/tile/0/000', '/tile/0/001', '/tile/0/007.p/208', '/tile/0/007.p/3', '/tile/1/000.p/7', '/tile/entries/000', '/tile/entries/007.p/208', '/tile/entries/007.p/1'];
    const fromStore = await metric('store');
    const before = appCalls;
    for (const path of paths) {
      const fast = await fetch(base + path, { headers: { 'accept-encoding': 'identity' } });
      expect(appCalls, path).toBe(before);
      const slow = await t.app.request(path);
      expect(fast.status, path).toBe(200);
      for (const h of ['content-type', 'cache-control', 'vary']) expect(fast.headers.get(h), `${path} ${h}`).toBe(slow.headers.get(h));
      expect(fast.headers.get('content-length'), path).toBe(String((await slow.clone().arrayBuffer()).byteLength));
      expect(new Uint8Array(await fast.arrayBuffer()), path).toEqual(new Uint8Array(await slow.arrayBuffer()));
    }
    // The first two tiles and every bundle came from the store, not from memory.
    expect(await metric('store')).toBeGreaterThanOrEqual(fromStore + 2 + 3);
  });

  it('answers many concurrent reads through a cache they overflow', async () => {
    const paths = Array.from({ length: 48 }, (_, i) => `/tile/0/00${i % 7}`);
    const bodies = await Promise.all(paths.map(async (p) => {
      const r = await fetch(base + p);
      expect(r.status).toBe(200);
      return new Uint8Array(await r.arrayBuffer());
    }));
    for (const [i, p] of paths.entries()) expect(bodies[i], p).toEqual(new Uint8Array(await (await t.app.request(p)).arrayBuffer()));
  });

  it('hands malformed paths, tiles beyond the tree, gzip bundles, query strings and other routes to the app', async () => {
    for (const [path, status, headers] of [
      ['/tile/0/01', 400, {}],
      ['/tile/0/007.p/209', 404, {}],
      ['/tile/0/008', 404, {}],
      ['/tile/entries/008', 404, {}],
      ['/tile/entries/007.p/209', 404, {}],
      ['/tile/entries/000', 200, { 'accept-encoding': 'gzip' }],
      ['/checkpoint', 200, {}],
      ['/tile/0/000?x=1', 200, {}],
    ] as const) {
      const before = appCalls;
      const r = await fetch(base + path, { headers });
      expect(r.status, path).toBe(status);
      expect(appCalls, path).toBe(before + 1);
      if (status >= 400) expect(await r.text(), path).toMatch(/tile|bundle/);
    }
  });
});
