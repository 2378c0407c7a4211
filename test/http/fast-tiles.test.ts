/**
 * The node:http fast path for cached tiles must answer exactly what the Hono app answers,
 * and hand everything else to the app.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getRequestListener } from '@hono/node-server';
import { utf8 } from '../../src/core/index.js';
import { withCachedTiles } from '../../src/http/fast-tiles.js';
import { pgliteFactory } from '../helpers/stores.js';
import { createTestLog, type TestLog } from '../helpers/log.js';

describe('withCachedTiles', () => {
  let t: TestLog;
  let server: Server;
  let base: string;
  let appCalls = 0;

  beforeAll(async () => {
    t = await createTestLog(pgliteFactory);
    await t.log.add(Array.from({ length: 300 }, (_, i) => utf8(`fast ${i}`)));
    const app = getRequestListener(t.app.fetch);
    server = createServer(withCachedTiles(t.log, (req, res) => {
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

  it('serves a cached tile with the same bytes and headers as the app, without calling it', async () => {
    const before = appCalls;
    for (const path of ['/tile/0/000', '/tile/0/001.p/44', '/tile/0/001.p/3', '/tile/1/000.p/1']) {
      const fast = await fetch(base + path);
      expect(appCalls).toBe(before);
      const slow = await t.app.request(path);
      expect(fast.status).toBe(200);
      expect(fast.headers.get('content-type')).toBe(slow.headers.get('content-type'));
      expect(fast.headers.get('cache-control')).toBe(slow.headers.get('cache-control'));
      expect(new Uint8Array(await fast.arrayBuffer())).toEqual(new Uint8Array(await slow.arrayBuffer()));
    }
    expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/glasslog_http_fast_tiles_total 4/);
  });

  it('hands malformed paths, tiles beyond the tree, bundles and other routes to the app', async () => {
    for (const [path, status] of [
      ['/tile/0/01', 400],
      ['/tile/0/001.p/45', 404],
      ['/tile/0/002', 404],
      ['/tile/entries/000', 200],
      ['/checkpoint', 200],
      ['/tile/0/000?x=1', 200],
    ] as const) {
      const before = appCalls;
      const r = await fetch(base + path);
      expect(r.status, path).toBe(status);
      expect(appCalls, path).toBe(before + 1);
    }
  });
});
