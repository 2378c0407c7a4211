/**
 * A client for a tlog-tiles log over HTTP: the checkpoint and tiles. It uses only `fetch`,
 * so it runs in Node and in a browser. Nothing it returns is trusted by itself: callers
 * check the hashes they compute from tiles against a signed checkpoint's root.
 */
import { TlogError, VerificationError } from '../core/errors.js';
import { MAX_ENTRY_SIZE } from '../core/bundle.js';
import { HASH_SIZE } from '../core/hash.js';
import { tileNodeReader, tilePath, tilesNeeded, tileWidthAt } from '../core/tile.js';
import type { NodeReader, RangeMemo } from '../core/tree.js';

/** A tile or checkpoint could not be fetched (network error, timeout, unexpected status). */
export class FetchError extends TlogError {
  constructor(
    message: string,
    readonly status?: number
  ) {
    super('STORAGE', message);
  }
}

/** What one GET asks for: headers, a deadline for the whole exchange, the largest body. */
export interface HttpGetOptions {
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly maxBodyBytes: number;
}

/** A GET's outcome: its status and, for a 200, the whole body (any Content-Encoding undone). */
export interface HttpGetResult {
  readonly status: number;
  readonly body?: Uint8Array;
}

/**
 * How TileClient GETs. It resolves with any status; it rejects with an Error naming the
 * problem when the request fails, the deadline passes or a 200's body exceeds
 * `maxBodyBytes` (encoded or decoded). {@link fetchGet} is the default; the CLI brings a
 * node:http one (src/cli/http-get.ts), which costs a full audit less CPU than undici's fetch.
 */
export type HttpGet = (url: string, opts: HttpGetOptions) => Promise<HttpGetResult>;

/** {@link HttpGet} over WHATWG fetch (Node and browsers). */
export function fetchGet(fetchFn: typeof fetch = globalThis.fetch.bind(globalThis)): HttpGet {
  return async (url, { headers, timeoutMs, maxBodyBytes }) => {
    const res = await fetchFn(url, { signal: AbortSignal.timeout(timeoutMs), ...(headers ? { headers: { ...headers } } : {}) });
    if (res.status !== 200) {
      await res.body?.cancel();
      return { status: res.status };
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > maxBodyBytes) {
      await res.body?.cancel();
      throw new Error(`body of ${declared} bytes exceeds ${maxBodyBytes}`);
    }
    let body: Uint8Array;
    try {
      body = new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      throw new Error(`reading the body: ${(err as Error).message}`);
    }
    if (body.length > maxBodyBytes) throw new Error(`body of ${body.length} bytes exceeds ${maxBodyBytes}`);
    return { status: 200, body };
  };
}

export interface TileClientOptions {
  /** The fetch that the default {@link HttpGet} uses (default: the global fetch). */
  readonly fetch?: typeof fetch;
  /** How to GET (default: {@link fetchGet} over `fetch`); give `fetch` or `get`, not both. */
  readonly get?: HttpGet;
  readonly timeoutMs?: number;
  /** Largest response body accepted, in bytes (default 1 MiB). */
  readonly maxBodyBytes?: number;
  /**
   * Ask for gzip-compressed entry bundles (default true, as tlog-tiles suggests). A reader
   * bound by CPU rather than bandwidth, such as an audit, turns it off: compressing and
   * decompressing costs both sides more than it saves.
   */
  readonly compressBundles?: boolean;
}

/** The largest entry bundle: 256 entries of the largest size, each with its length. */
const MAX_BUNDLE_BYTES = 256 * (2 + MAX_ENTRY_SIZE);

export class TileClient {
  /** Requests answered 200 and the body bytes they carried (after any decompression). */
  readonly stats = { requests: 0, bytes: 0 };
  private readonly prefix: string;
  private readonly http: HttpGet;
  private readonly timeoutMs: number;
  private readonly maxBodyBytes: number;
  private readonly compressBundles: boolean;

  /** `prefix` is the log's URL prefix; `<prefix>/checkpoint` and `<prefix>/tile/…` are fetched. */
  constructor(prefix: string, opts: TileClientOptions = {}) {
    this.prefix = prefix.replace(/\/+$/, '');
    if (opts.fetch && opts.get) throw new RangeError('TileClient: give fetch or get, not both');
    this.http = opts.get ?? fetchGet(opts.fetch);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxBodyBytes = opts.maxBodyBytes ?? 1 << 20;
    this.compressBundles = opts.compressBundles ?? true;
  }

  private async get(path: string, maxBodyBytes = this.maxBodyBytes, headers?: Record<string, string>): Promise<Uint8Array> {
    const url = `${this.prefix}/${path}`;
    let res: HttpGetResult;
    try {
      res = await this.http(url, { timeoutMs: this.timeoutMs, maxBodyBytes, ...(headers ? { headers } : {}) });
    } catch (err) {
      throw new FetchError(`GET ${url}: ${(err as Error).message}`);
    }
    if (res.status !== 200 || res.body === undefined) throw new FetchError(`GET ${url}: status ${res.status}`, res.status);
    this.stats.requests++;
    this.stats.bytes += res.body.length;
    return res.body;
  }

  /** The log's current checkpoint note, unverified. */
  async checkpoint(): Promise<string> {
    return new TextDecoder('utf-8', { fatal: false }).decode(await this.get('checkpoint'));
  }

  /** The hashes of tile (level, index) at `width` (256 for a full tile). */
  async tile(level: number, index: number, width: number): Promise<Uint8Array> {
    const data = await this.get(tilePath({ level, index, width }));
    if (data.length !== width * HASH_SIZE) {
      throw new VerificationError(`tile ${level}/${index} of width ${width}: got ${data.length} bytes, want ${width * HASH_SIZE}`);
    }
    return data;
  }

  /** Entry bundle `index` at `width` (256 for a full bundle), unparsed. */
  async entryBundle(index: number, width: number): Promise<Uint8Array> {
    return this.get(tilePath({ level: 'entries', index, width }), MAX_BUNDLE_BYTES, this.compressBundles ? undefined : { 'accept-encoding': 'identity' });
  }

  /**
   * Runs a computation over the nodes of the tree of `treeSize`, fetching the tiles it
   * reads (each at its width for that tree size) first. The computation must read only
   * nodes inside that tree.
   */
  async withTree<T>(treeSize: number, run: (node: NodeReader, memo: RangeMemo) => T): Promise<T> {
    const tiles = new Map<string, Uint8Array>();
    await Promise.all(
      tilesNeeded(run).map(async (t) => {
        const width = tileWidthAt(t.level, t.index, treeSize);
        if (width < t.width) throw new RangeError(`node outside the tree of size ${treeSize}: tile ${t.level}/${t.index} needs width ${t.width}`);
        tiles.set(`${t.level}/${t.index}`, await this.tile(t.level, t.index, width));
      })
    );
    const node = tileNodeReader((level, index) => {
      const t = tiles.get(`${level}/${index}`);
      if (!t) throw new RangeError(`tile ${level}/${index} was not fetched`);
      return t;
    });
    return run(node, new Map());
  }
}
