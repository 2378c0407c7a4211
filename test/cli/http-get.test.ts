/**
 * The two HttpGets, fetchGet (src/client/tile-client.ts) and nodeHttpGet (src/cli/http-get.ts),
 * against one real node:http server: the same answers, the same failures.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeHttpGet } from '../../src/cli/http-get.js';
import { FetchError, fetchGet, TileClient, type HttpGet } from '../../src/client/tile-client.js';

const BODY = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7919) >>> 3);
const seen: Array<{ url: string; headers: IncomingMessage['headers'] }> = [];
const sockets = new Set<Socket>();
let server: Server;
let base: string;

const routes: Record<string, (res: ServerResponse) => void> = {
  '/ok': (res) => res.writeHead(200, { 'Content-Length': BODY.length }).end(BODY),
  '/chunked': (res) => {
    res.writeHead(200);
    res.write(BODY.subarray(0, 50_000));
    res.end(BODY.subarray(50_000));
  },
  '/missing': (res) => res.writeHead(404, { 'Content-Type': 'text/plain' }).end('no such tile'),
  '/gzip': (res) => res.writeHead(200, { 'Content-Encoding': 'gzip' }).end(gzipSync(BODY)),
  '/deflate': (res) => res.writeHead(200, { 'Content-Encoding': 'deflate' }).end(deflateSync(BODY)),
  '/br': (res) => res.writeHead(200, { 'Content-Encoding': 'br' }).end(brotliCompressSync(BODY)),
  // 1 MB of zeros in about a kilobyte.
  '/bomb': (res) => res.writeHead(200, { 'Content-Encoding': 'gzip' }).end(gzipSync(new Uint8Array(1 << 20))),
  '/silent': () => undefined,
  '/cut': (res) => {
    res.writeHead(200, { 'Content-Length': BODY.length });
    res.write(BODY.subarray(0, 1000), () => res.socket?.destroy());
  },
  '/empty': (res) => res.writeHead(200, { 'Content-Length': 0 }).end(),
};

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url!, headers: req.headers });
    (routes[req.url!] ?? ((r: ServerResponse) => r.writeHead(500).end()))(res);
  });
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const node = nodeHttpGet();
afterAll(() => node.close());
const transports: Array<[string, HttpGet]> = [
  ['fetchGet', fetchGet()],
  ['nodeHttpGet', node.get],
];
const opts = { timeoutMs: 2000, maxBodyBytes: 1 << 19 };

describe.each(transports)('%s', (_, get) => {
  it('resolves a 200 with its whole body, with or without a Content-Length', async () => {
    for (const path of ['/ok', '/chunked']) {
      const r = await get(base + path, opts);
      expect(r.status).toBe(200);
      expect(r.body).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(r.body!).equals(Buffer.from(BODY))).toBe(true);
    }
    expect(await get(base + '/empty', opts)).toEqual({ status: 200, body: new Uint8Array(0) });
  });

  it('resolves any other status without a body', async () => {
    expect(await get(base + '/missing', opts)).toEqual({ status: 404 });
  });

  it('undoes gzip, deflate and br', async () => {
    for (const path of ['/gzip', '/deflate', '/br']) {
      const r = await get(base + path, opts);
      expect(Buffer.from(r.body!).equals(Buffer.from(BODY)), path).toBe(true);
    }
  });

  it('sends the headers it is given', async () => {
    seen.length = 0;
    await get(base + '/ok', { ...opts, headers: { 'accept-encoding': 'identity', 'x-probe': 'yes' } });
    expect(seen[0]!.headers['accept-encoding']).toBe('identity');
    expect(seen[0]!.headers['x-probe']).toBe('yes');
  });

  it('rejects a body over the limit: declared, streamed, or once decoded', async () => {
    const small = { ...opts, maxBodyBytes: 99_999 };
    await expect(get(base + '/ok', small)).rejects.toThrow('body of 100000 bytes exceeds 99999');
    await expect(get(base + '/chunked', small)).rejects.toThrow(/body of \d+ bytes exceeds 99999/);
    await expect(get(base + '/bomb', opts)).rejects.toThrow(/exceeds 524288/);
  });

  it('rejects when no answer comes before the deadline', async () => {
    const t = performance.now();
    await expect(get(base + '/silent', { ...opts, timeoutMs: 200 })).rejects.toThrow();
    expect(performance.now() - t).toBeLessThan(1500);
  });

  it('rejects a body cut off by the connection closing', async () => {
    await expect(get(base + '/cut', opts)).rejects.toThrow();
  });

  it('rejects when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(get(`http://127.0.0.1:${port}/ok`, opts)).rejects.toThrow();
  });

  it('serves TileClient: statuses and failures become FetchErrors naming the URL', async () => {
    const c = new TileClient(base, { get });
    await expect(c.checkpoint()).rejects.toThrow(new FetchError(`GET ${base}/checkpoint: status 500`, 500));
    routes['/checkpoint'] = (res) => res.writeHead(200).end('origin\n1\nroot\n');
    try {
      expect(await c.checkpoint()).toBe('origin\n1\nroot\n');
      expect(c.stats).toEqual({ requests: 1, bytes: 14 });
    } finally {
      delete routes['/checkpoint'];
    }
  });
});

describe('nodeHttpGet', () => {
  it('keeps one connection alive across sequential requests', async () => {
    const own = nodeHttpGet();
    try {
      await own.get(base + '/ok', opts);
      const before = sockets.size;
      for (let i = 0; i < 5; i++) await own.get(base + (i % 2 ? '/missing' : '/ok'), opts);
      expect(sockets.size).toBe(before);
    } finally {
      own.close();
    }
  });

  it('names an unsupported Content-Encoding and an unsupported protocol', async () => {
    routes['/zstd'] = (res) => res.writeHead(200, { 'Content-Encoding': 'zstd' }).end(BODY);
    try {
      await expect(node.get(base + '/zstd', opts)).rejects.toThrow('unsupported content-encoding "zstd"');
    } finally {
      delete routes['/zstd'];
    }
    await expect(node.get('ftp://127.0.0.1/ok', opts)).rejects.toThrow('unsupported protocol ftp:');
    await expect(node.get('not a url', opts)).rejects.toThrow('not a valid URL');
  });

  it('asks for gzip unless told otherwise', async () => {
    seen.length = 0;
    await node.get(base + '/ok', opts);
    expect(seen[0]!.headers['accept-encoding']).toBe('gzip');
  });
});

describe('TileClient options', () => {
  it('refuses both fetch and get', () => {
    expect(() => new TileClient(base, { fetch: globalThis.fetch, get: node.get })).toThrow('give fetch or get, not both');
  });
});
