/**
 * An in-memory tlog-tiles log for tests: trees built with the log's own integrate() (so the
 * tiles are exactly the ones a real log stores), served as `checkpoint` and `tile/…` through
 * a `fetch` function. One FakeLog holds ONE signing key and any number of views, each a
 * history served under its own URL prefix: an honest log has one view; a malicious log
 * serves different histories to different clients under the same key.
 *
 *   const log = new FakeLog('fake.example/log');
 *   const a = log.view('http://log-a/');
 *   a.append(leaves(0, 300));              // integrate, sign a checkpoint of size 300
 *   const fetch = hostRouter({ 'log-a': log.fetch });
 *
 * Partial tiles of every published size are kept (c2sp.org/tlog-tiles: a log MUST serve the
 * partial tiles of every size it produced a checkpoint for).
 */
import { formatCheckpoint } from '../../src/core/checkpoint.js';
import { utf8 } from '../../src/core/encoding.js';
import { EMPTY_ROOT, leafHash } from '../../src/core/hash.js';
import { EMPTY_EDGE, integrate, type TreeEdge } from '../../src/core/integrate.js';
import { tilePath } from '../../src/core/tile.js';
import { generateKey } from '../../src/note/keys.js';
import { newSigner, newVerifier, signNote, type NoteSigner, type NoteVerifier } from '../../src/note/note.js';

/** Leaf hashes of the entries `<tag> <i>` for i in [from, to). */
export function leaves(from: number, to: number, tag = 'entry'): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = from; i < to; i++) out.push(leafHash(utf8(`${tag} ${i}`)));
  return out;
}

/** Answers for a request path (below the prefix, no leading slash) instead of the view. */
export type Override = (path: string, init: RequestInit | undefined) => Response | Promise<Response> | undefined;

export class FakeLogView {
  /** Every leaf hash appended, in order. */
  readonly leafHashes: Uint8Array[] = [];
  /** Tile data by path ("tile/0/000.p/5"). */
  readonly tiles = new Map<string, Uint8Array>();
  /** Signed checkpoint notes by tree size, for every size published. */
  readonly checkpoints = new Map<number, string>();
  /** Root hashes by published size. */
  readonly roots = new Map<number, Uint8Array>([[0, EMPTY_ROOT]]);
  /** Paths requested (below the prefix), in order. */
  readonly requests: string[] = [];
  /** The note served at `checkpoint` (undefined: 404). */
  served: string | undefined;
  /** Consulted first for every request. */
  override: Override | undefined;
  private edge: TreeEdge = EMPTY_EDGE;

  constructor(
    readonly log: FakeLog,
    readonly prefix: string
  ) {}

  get size(): number {
    return this.edge.size;
  }

  /**
   * Appends leaf hashes (one integration batch), stores the tiles integrate() returns,
   * signs a checkpoint of the new size and serves it. Returns the note.
   */
  append(hashes: readonly Uint8Array[]): string {
    const r = integrate(this.edge, hashes);
    for (const t of r.tiles) this.tiles.set(tilePath(t.coord), t.data);
    this.edge = r.edge;
    this.leafHashes.push(...hashes);
    this.roots.set(r.edge.size, r.rootHash);
    const note = this.log.sign(r.edge.size, r.rootHash);
    this.checkpoints.set(r.edge.size, note);
    this.served = note;
    return note;
  }

  /** Appends in batches ending at each of `sizes` (increasing), publishing each. */
  grow(hashes: readonly Uint8Array[], sizes: readonly number[]): void {
    for (const s of sizes) {
      if (s <= this.size) throw new RangeError(`size ${s} is not above ${this.size}`);
      this.append(hashes.slice(this.size, s));
    }
  }

  /** The published checkpoint of `size`. */
  checkpoint(size: number): string {
    const note = this.checkpoints.get(size);
    if (note === undefined) throw new RangeError(`${this.prefix}: no checkpoint of size ${size} published`);
    return note;
  }

  /** Serves an earlier published checkpoint (a rollback), or any note. */
  serve(sizeOrNote: number | string): void {
    this.served = typeof sizeOrNote === 'number' ? this.checkpoint(sizeOrNote) : sizeOrNote;
  }

  async handle(path: string, init: RequestInit | undefined): Promise<Response> {
    this.requests.push(path);
    const o = await this.override?.(path, init);
    if (o !== undefined) return o;
    if (path === 'checkpoint') {
      if (this.served === undefined) return new Response('no checkpoint yet\n', { status: 404 });
      return new Response(this.served, { status: 200, headers: { 'Content-Type': 'text/plain; charset=utf-8' } });
    }
    const tile = this.tiles.get(path);
    if (tile === undefined) return new Response('not found\n', { status: 404 });
    return new Response(tile.slice(), { status: 200, headers: { 'Content-Type': 'application/octet-stream' } });
  }
}

export class FakeLog {
  readonly skey: string;
  readonly vkey: string;
  readonly signer: NoteSigner;
  readonly verifier: NoteVerifier;
  private readonly views: FakeLogView[] = [];

  constructor(
    readonly origin: string,
    key: { skey: string; vkey: string } = generateKey(origin)
  ) {
    this.skey = key.skey;
    this.vkey = key.vkey;
    this.signer = newSigner(key.skey);
    this.verifier = newVerifier(key.vkey);
  }

  /** Signs a checkpoint of this origin (or another one) with the log's key. */
  sign(treeSize: number, rootHash: Uint8Array, origin = this.origin, extensions: string[] = []): string {
    return signNote(formatCheckpoint({ origin, treeSize, rootHash, extensions }), [this.signer]);
  }

  /** The view served under `prefix` ("http://host/path/"), created empty on first use. */
  view(prefix: string): FakeLogView {
    const p = prefix.endsWith('/') ? prefix : prefix + '/';
    let v = this.views.find((x) => x.prefix === p);
    if (!v) {
      v = new FakeLogView(this, p);
      this.views.push(v);
    }
    return v;
  }

  /** GET of `<prefix>checkpoint` and `<prefix>tile/…` of every view; 404 elsewhere. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
    init?.signal?.throwIfAborted();
    const v = this.views
      .filter((x) => url.startsWith(x.prefix))
      .sort((a, b) => b.prefix.length - a.prefix.length)[0];
    if (!v) return new Response('no such log\n', { status: 404 });
    if (method !== 'GET') return new Response('method not allowed\n', { status: 405 });
    return v.handle(url.slice(v.prefix.length), init);
  };
}

export type FetchHandler = (input: string | URL | Request, init?: RequestInit) => Response | Promise<Response>;

/**
 * A `fetch` that routes by URL host to handlers (Hono apps' `fetch`, FakeLog.fetch, …).
 * Unknown hosts fail like an unreachable server. Honors an already-aborted signal.
 */
export function hostRouter(routes: Record<string, FetchHandler | { fetch: (req: Request) => Response | Promise<Response> }>): typeof fetch {
  const f = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    req.signal.throwIfAborted();
    const host = new URL(req.url).host;
    const route = routes[host];
    if (route === undefined) throw new TypeError(`fetch failed: getaddrinfo ENOTFOUND ${host}`);
    if (typeof route === 'function') return route(input, init);
    return route.fetch(req);
  };
  return f as typeof fetch;
}
