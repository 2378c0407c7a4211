/**
 * TileClient (src/client/tile-client.ts) against an in-memory tlog-tiles log whose tiles
 * were built by the log's own integrate(): exact request paths, body checks, errors and
 * timeouts, and computations over a tree of any size through withTree.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FetchError, TileClient } from '../../src/client/tile-client.js';
import { concatBytes, toHex } from '../../src/core/encoding.js';
import { VerificationError } from '../../src/core/errors.js';
import { HASH_SIZE } from '../../src/core/hash.js';
import { proveConsistency, proveInclusion, rootHash, verifyConsistency, verifyInclusion } from '../../src/core/tree.js';
import { ReferenceTree } from '../core/helpers.js';
import { FakeLog, hostRouter, leaves } from '../helpers/fake-log.js';

const ORIGIN = 'tiles.test/log';
const SIZES = [1, 2, 255, 256, 257, 511, 512, 1000, 65535, 65536, 65537, 65536 + 3];
const N = SIZES[SIZES.length - 1]!;

const log = new FakeLog(ORIGIN);
const view = log.view('http://log-a/');
const all = leaves(0, N);
let ref: ReferenceTree;

beforeAll(() => {
  view.grow(all, SIZES);
  ref = new ReferenceTree(all);
});

beforeEach(() => {
  view.requests.length = 0;
  view.override = undefined;
});

const fetchFn = hostRouter({ 'log-a': log.fetch });
const client = (opts: ConstructorParameters<typeof TileClient>[1] = {}) => new TileClient('http://log-a/', { fetch: fetchFn, ...opts });

/** Catches what f rejects with. */
async function rejection(f: () => Promise<unknown>): Promise<Error> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

/** The width of tile (level, index) at tree size s, per c2sp.org/tlog-tiles (0: none). */
function widthAt(level: number, index: number, s: number): number {
  const n = Math.floor(s / 256 ** level);
  const full = Math.floor(n / 256);
  return index < full ? 256 : index === full ? n % 256 : 0;
}

describe('checkpoint()', () => {
  it('GETs <prefix>/checkpoint and returns the note verbatim, with or without a trailing slash on the prefix', async () => {
    expect(await client().checkpoint()).toBe(view.checkpoint(N));
    expect(view.requests).toEqual(['checkpoint']);
    const seen: string[] = [];
    const spy = (async (u: string | URL | Request, init?: RequestInit) => {
      seen.push(String(u));
      return log.fetch(u, init);
    }) as typeof fetch;
    await new TileClient('http://log-a', { fetch: spy }).checkpoint();
    await new TileClient('http://log-a///', { fetch: spy }).checkpoint();
    expect(seen).toEqual(['http://log-a/checkpoint', 'http://log-a/checkpoint']);
  });

  it('404 → FetchError carrying the status', async () => {
    const empty = new FakeLog('tiles.test/empty').view('http://log-e/');
    const e = await rejection(() => new TileClient('http://log-e/', { fetch: empty.log.fetch }).checkpoint());
    expect(e).toBeInstanceOf(FetchError);
    expect((e as FetchError).status).toBe(404);
    expect(e.message).toBe('GET http://log-e/checkpoint: status 404');
  });
});

describe('tile()', () => {
  it('fetches full tiles at tile/<L>/<N> and returns their 256 hashes', async () => {
    const t = await client().tile(0, 0, 256);
    expect(toHex(t)).toBe(toHex(concatBytes(...all.slice(0, 256))));
    const t1 = await client().tile(0, 255, 256);
    expect(toHex(t1)).toBe(toHex(concatBytes(...all.slice(255 * 256, 256 * 256))));
    const l1 = await client().tile(1, 0, 256);
    // Level 1, hash i: the root of leaves [256 i, 256 (i + 1)).
    expect(toHex(l1.subarray(5 * 32, 6 * 32))).toBe(toHex(ref.mth(5 * 256, 6 * 256)));
    expect(view.requests).toEqual(['tile/0/000', 'tile/0/255', 'tile/1/000']);
  });

  it('fetches partial tiles at tile/<L>/<N>.p/<W>, for every width the log published', async () => {
    const c = client();
    expect(toHex(await c.tile(0, 0, 255))).toBe(toHex(concatBytes(...all.slice(0, 255))));
    expect(toHex(await c.tile(0, 0, 1))).toBe(toHex(all[0]!));
    expect(toHex(await c.tile(0, 1, 1))).toBe(toHex(all[256]!));
    expect(toHex(await c.tile(0, 3, 232))).toBe(toHex(concatBytes(...all.slice(768, 1000))));
    expect(toHex(await c.tile(0, 256, 3))).toBe(toHex(concatBytes(...all.slice(65536, 65539))));
    expect(toHex(await c.tile(2, 0, 1))).toBe(toHex(ref.mth(0, 65536)));
    expect(view.requests).toEqual(['tile/0/000.p/255', 'tile/0/000.p/1', 'tile/0/001.p/1', 'tile/0/003.p/232', 'tile/0/256.p/3', 'tile/2/000.p/1']);
  });

  it('splits large indices into x-prefixed groups of three digits', async () => {
    const seen: string[] = [];
    const f = (async (u: string | URL | Request) => {
      seen.push(String(u));
      const w = /\.p\/(\d+)$/.exec(String(u));
      return new Response(new Uint8Array((w ? Number(w[1]) : 256) * HASH_SIZE));
    }) as typeof fetch;
    const c = new TileClient('https://example.com/log/', { fetch: f });
    await c.tile(0, 1234067, 256);
    await c.tile(1, 1000, 256);
    await c.tile(3, 1000, 7);
    await c.tile(0, 999, 255);
    await c.tile(63, 2 ** 40, 1);
    expect(seen).toEqual([
      'https://example.com/log/tile/0/x001/x234/067',
      'https://example.com/log/tile/1/x001/000',
      'https://example.com/log/tile/3/x001/000.p/7',
      'https://example.com/log/tile/0/999.p/255',
      'https://example.com/log/tile/63/x001/x099/x511/x627/776.p/1',
    ]);
  });

  it('a body of the wrong length → VerificationError naming the tile and both lengths', async () => {
    const cases: Array<[number, number, number, Uint8Array, RegExp]> = [
      [0, 0, 256, new Uint8Array(256 * 32 - 1), /tile 0\/0 of width 256: got 8191 bytes, want 8192/],
      [0, 3, 3, new Uint8Array(4 * 32), /tile 0\/3 of width 3: got 128 bytes, want 96/],
      [1, 7, 7, new Uint8Array(0), /tile 1\/7 of width 7: got 0 bytes, want 224/],
    ];
    for (const [level, index, width, body, msg] of cases) {
      view.override = () => new Response(body.slice());
      const e = await rejection(() => client().tile(level, index, width));
      expect(e).toBeInstanceOf(VerificationError);
      expect(e.message).toMatch(msg);
    }
    // The partial tile served where the full one was asked for (a truncated response).
    view.override = (p) => (p === 'tile/0/000' ? new Response(view.tiles.get('tile/0/000.p/255')!.slice()) : undefined);
    expect(await rejection(() => client().tile(0, 0, 256))).toBeInstanceOf(VerificationError);
  });

  it('404, 500 and 3xx → FetchError with the status; a network error → FetchError without one', async () => {
    let e = await rejection(() => client().tile(0, 300, 256));
    expect(e).toBeInstanceOf(FetchError);
    expect((e as FetchError).status).toBe(404);
    expect(e.message).toBe('GET http://log-a/tile/0/300: status 404');
    // A partial tile of a size the log never published.
    e = await rejection(() => client().tile(0, 0, 17));
    expect((e as FetchError).status).toBe(404);
    expect(view.requests).toEqual(['tile/0/300', 'tile/0/000.p/17']);
    for (const status of [500, 503, 304, 204]) {
      view.override = () => new Response(status === 304 || status === 204 ? null : 'oops', { status });
      e = await rejection(() => client().tile(0, 0, 256));
      expect(e).toBeInstanceOf(FetchError);
      expect((e as FetchError).status).toBe(status);
    }
    e = await rejection(() => new TileClient('http://nowhere/', { fetch: fetchFn }).tile(0, 0, 256));
    expect(e).toBeInstanceOf(FetchError);
    expect((e as FetchError).status).toBeUndefined();
    expect(e.message).toMatch(/^GET http:\/\/nowhere\/tile\/0\/000: .*ENOTFOUND nowhere/);
  });

  it('a body above maxBodyBytes → FetchError', async () => {
    const e = await rejection(() => client({ maxBodyBytes: 8191 }).tile(0, 0, 256));
    expect(e).toBeInstanceOf(FetchError);
    expect(e.message).toMatch(/body of 8192 bytes exceeds 8191/);
    expect((await client({ maxBodyBytes: 8192 }).tile(0, 0, 256)).length).toBe(8192);
  });

  it('a server that does not answer → FetchError after timeoutMs', async () => {
    const hang = (async (_u: string | URL | Request, init?: RequestInit) =>
      new Promise<Response>((_, reject) => {
        const s = init?.signal;
        if (!s) return; // would hang forever: the test times out
        s.addEventListener('abort', () => reject(s.reason));
      })) as typeof fetch;
    const t0 = Date.now();
    const e = await rejection(() => new TileClient('http://log-a/', { fetch: hang, timeoutMs: 150 }).tile(0, 0, 256));
    const took = Date.now() - t0;
    expect(e).toBeInstanceOf(FetchError);
    expect(e.message).toMatch(/^GET http:\/\/log-a\/tile\/0\/000: .*timeout/i);
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(5000);
  });
});

describe('against a real HTTP server (the real fetch)', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/stall/tile/0/000') {
        // Headers and half the body, then nothing.
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': '8192' });
        res.write(Buffer.alloc(4096));
        return;
      }
      if (req.url === '/silent/tile/0/000') return; // never answers
      if (req.url === '/cut/tile/0/000') {
        // Half the body, then the connection is reset.
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': '8192' });
        res.write(Buffer.alloc(4096), () => setTimeout(() => res.destroy(), 20));
        return;
      }
      const path = req.url!.replace(/^\/ok\//, '');
      const data = view.tiles.get(path);
      if (!data) {
        res.writeHead(404).end('not found\n');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' }).end(Buffer.from(data));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('serves the same tiles through the real fetch', async () => {
    const c = new TileClient(`${base}/ok/`);
    expect(toHex(await c.tile(0, 256, 3))).toBe(toHex(concatBytes(...all.slice(65536, 65539))));
    expect(toHex(await c.withTree(65539, (node) => rootHash(65539, node)))).toBe(toHex(ref.mth(0, 65539)));
  });

  it('a server that never answers → FetchError after timeoutMs', async () => {
    const e = await rejection(() => new TileClient(`${base}/silent/`, { timeoutMs: 200 }).tile(0, 0, 256));
    expect(e).toBeInstanceOf(FetchError);
    expect(e.message).toMatch(/timeout/i);
  });

  it('a body that stalls after the headers → FetchError after timeoutMs (the documented contract: timeouts are FetchErrors)', async () => {
    const t0 = Date.now();
    const e = await rejection(() => new TileClient(`${base}/stall/`, { timeoutMs: 200 }).tile(0, 0, 256));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(e, `${e.name}: ${e.message}`).toBeInstanceOf(FetchError);
  });

  it('a connection cut in the middle of the body → FetchError (a network error)', async () => {
    const e = await rejection(() => new TileClient(`${base}/cut/`, { timeoutMs: 2000 }).tile(0, 0, 256));
    expect(e, `${e.name}: ${e.message}`).toBeInstanceOf(FetchError);
  });
});

describe('withTree()', () => {
  const treeSizes = [1, 2, 255, 256, 257, 511, 512, 1000, 65535, 65536, 65537, 65539];

  it.each(treeSizes)('computes the real root of size %i, fetching only tiles of that size at their widths', async (size) => {
    view.requests.length = 0;
    const got = await client().withTree(size, (node) => rootHash(size, node));
    expect(toHex(got)).toBe(toHex(ref.mth(0, size)));
    expect(toHex(got)).toBe(toHex(view.roots.get(size)!));
    expect(view.requests.length).toBeGreaterThan(0);
    expect(new Set(view.requests).size).toBe(view.requests.length); // each tile once
    for (const p of view.requests) {
      const m = /^tile\/(\d+)\/(\d{3})(?:\.p\/(\d+))?$/.exec(p);
      expect(m, p).not.toBeNull();
      const [level, index, width] = [Number(m![1]), Number(m![2]), m![3] ? Number(m![3]) : 256];
      expect(width, p).toBe(widthAt(level, index, size));
    }
  });

  it('requests exactly the tiles a root needs, across tile boundaries', async () => {
    const expected: Record<number, string[]> = {
      255: ['tile/0/000.p/255'],
      256: ['tile/1/000.p/1'],
      257: ['tile/0/001.p/1', 'tile/1/000.p/1'],
      65539: ['tile/0/256.p/3', 'tile/2/000.p/1'],
    };
    for (const [size, paths] of Object.entries(expected)) {
      view.requests.length = 0;
      await client().withTree(Number(size), (node) => rootHash(Number(size), node));
      expect([...view.requests].sort(), size).toEqual(paths);
    }
  });

  it('builds inclusion and consistency proofs across tile boundaries that verify against the signed roots', async () => {
    const c = client();
    for (const [m, n] of [
      [255, 256],
      [256, 257],
      [255, 65539],
      [257, 65536],
      [1000, 65537],
      [65536, 65539],
    ] as const) {
      const proof = await c.withTree(n, (node) => proveConsistency(m, n, node));
      expect(proof.map(toHex), `${m}→${n}`).toEqual(ref.proof(m, n).map(toHex));
      verifyConsistency(m, n, proof, view.roots.get(m)!, view.roots.get(n)!);
    }
    for (const [i, n] of [
      [0, 65539],
      [255, 256],
      [256, 257],
      [65538, 65539],
      [40000, 65537],
    ] as const) {
      const proof = await c.withTree(n, (node, memo) => proveInclusion(i, n, node, memo));
      expect(proof.map(toHex)).toEqual(ref.path(i, 0, n).map(toHex));
      verifyInclusion(all[i]!, i, n, proof, view.roots.get(n)!);
    }
  });

  it('returns what the tiles say: tampered tiles give a different root (nothing is trusted)', async () => {
    view.override = (p) => {
      if (p !== 'tile/0/256.p/3') return undefined;
      const d = view.tiles.get(p)!.slice();
      d[0]! ^= 1;
      return new Response(d);
    };
    const got = await client().withTree(65539, (node) => rootHash(65539, node));
    expect(toHex(got)).not.toBe(toHex(ref.mth(0, 65539)));
  });

  it('fails with the FetchError of a missing tile, and with RangeError for a node outside the tree', async () => {
    view.override = (p) => (p === 'tile/2/000.p/1' ? new Response('gone', { status: 404 }) : undefined);
    const e = await rejection(() => client().withTree(65539, (node) => rootHash(65539, node)));
    expect(e).toBeInstanceOf(FetchError);
    expect((e as FetchError).status).toBe(404);
    view.override = undefined;
    await expect(client().withTree(300, (node) => rootHash(301, node))).rejects.toThrow(RangeError);
    await expect(client().withTree(0, (node) => rootHash(0, node))).resolves.toBeDefined();
  });
});
