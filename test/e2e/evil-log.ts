/**
 * A malicious log, as a test double: it signs with a REAL log key (a signed-note private
 * key, as `glasslog keygen` writes it) two different histories of one origin, serves one
 * at the path prefix /a/ and the other at /b/ (checkpoint, hash tiles and entry bundles, as
 * c2sp.org/tlog-tiles), and pushes add-checkpoint requests for either to witnesses.
 *
 * Used in-process by the e2e tests (EvilLog.start), or on its own as a child process:
 *
 *   npx tsx test/e2e/evil-log.ts --key <file> [--listen 127.0.0.1:0] [--shared 5] [--a 8] [--b 13]
 *        [--push-a <witness url>] [--push-b <witness url>]
 *
 * which prints "evil-log: listening on <url>" and, with --push-*, pushes every checkpoint of
 * that history in turn (old 0 first, following 409 sizes).
 *
 * Imports nothing from src/: only ./witness-client.ts, the independent implementation.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  addCheckpoint,
  consistencyProof,
  leafHash,
  parseLogSignerKey,
  parseVerifierKey,
  signedCheckpoint,
  treeHash,
  type AddCheckpointResult,
  type Checkpoint,
  type LogSigner,
  type VerifierKey,
} from './witness-client.js';

export type Branch = 'a' | 'b';

/**
 * Two histories sharing their first `shared` entries, then diverging: history a has `aLen`
 * entries, history b `bLen`. Deterministic, so a child process and a test agree.
 */
export function forkedHistories(shared: number, aLen: number, bLen: number): Record<Branch, Buffer[]> {
  if (shared > aLen || shared > bLen) throw new RangeError('the shared prefix is longer than a history');
  const make = (branch: Branch, n: number) =>
    Array.from({ length: n }, (_, i) => Buffer.from(i < shared ? `evil-log shared entry ${i}` : `evil-log history ${branch} entry ${i}`, 'utf8'));
  return { a: make('a', aLen), b: make('b', bLen) };
}

const TILE_HEIGHT = 8;
const TILE_WIDTH = 256;

/** Parses `x001/x234/067` (the tile index path). */
function parseTileIndex(parts: readonly string[]): number | undefined {
  if (parts.length === 0) return undefined;
  let n = 0;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const last = i === parts.length - 1;
    const m = last ? /^([0-9]{3})$/.exec(p) : /^x([0-9]{3})$/.exec(p);
    if (!m) return undefined;
    n = n * 1000 + Number(m[1]);
  }
  return n;
}

export interface EvilLogOptions {
  /** The log's signed-note private key, `PRIVATE+KEY+<origin>+<id>+<base64>`. */
  readonly skey: string;
  readonly histories: Record<Branch, readonly Uint8Array[]>;
  readonly host?: string;
  readonly port?: number;
}

export class EvilLog {
  readonly signer: LogSigner;
  readonly verifier: VerifierKey;
  /** Every request path served, in order. */
  readonly served: string[] = [];
  private readonly entries: Record<Branch, readonly Uint8Array[]>;
  private readonly hashes: Record<Branch, Buffer[]>;
  /** The size /<branch>/checkpoint serves. */
  private readonly sizes: Record<Branch, number>;

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    opts: EvilLogOptions,
  ) {
    this.signer = parseLogSignerKey(opts.skey);
    this.verifier = parseVerifierKey(this.signer.vkey);
    this.entries = opts.histories;
    this.hashes = { a: opts.histories.a.map(leafHash), b: opts.histories.b.map(leafHash) };
    this.sizes = { a: opts.histories.a.length, b: opts.histories.b.length };
  }

  static async start(opts: EvilLogOptions): Promise<EvilLog> {
    let self: EvilLog | undefined;
    const server = http.createServer((req, res) => {
      if (!self) {
        res.writeHead(503).end();
        return;
      }
      self.handle(req, res);
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((ok, bad) => {
      server.once('error', bad);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => ok());
    });
    const addr = server.address();
    if (typeof addr !== 'object' || !addr) throw new Error('evil log: no address');
    self = new EvilLog(server, `http://${opts.host ?? '127.0.0.1'}:${addr.port}`, opts);
    return self;
  }

  get origin(): string {
    return this.signer.name;
  }

  get vkey(): string {
    return this.signer.vkey;
  }

  /** The URL prefix of a history: what a witness's `log <vkey> <url>` line names. */
  prefix(branch: Branch): string {
    return `${this.url}/${branch}`;
  }

  leafHashes(branch: Branch): readonly Buffer[] {
    return this.hashes[branch];
  }

  root(branch: Branch, size: number): Buffer {
    return treeHash(this.hashes[branch], 0, size);
  }

  /** The checkpoint of the first `size` entries of a history, signed with the real key. */
  checkpoint(branch: Branch, size: number): Checkpoint {
    return signedCheckpoint(this.signer, this.hashes[branch], size);
  }

  /** What /<branch>/checkpoint serves from now on (default: the whole history). */
  setServedSize(branch: Branch, size: number): void {
    if (size < 0 || size > this.hashes[branch].length) throw new RangeError(`history ${branch} has ${this.hashes[branch].length} entries`);
    this.sizes[branch] = size;
  }

  /** Pushes the size `size` checkpoint of a history with a proof from `oldSize` (computed from that history). */
  push(witnessUrl: string, witness: VerifierKey, branch: Branch, oldSize: number, size: number): Promise<AddCheckpointResult> {
    const proof = oldSize === 0 || oldSize === size ? [] : consistencyProof(oldSize, size, this.hashes[branch]);
    return addCheckpoint(witnessUrl, witness, oldSize, proof, this.checkpoint(branch, size).note);
  }

  /** Pushes `size` like a log does: old 0 first, then the size a 409 names (at most 3 tries). */
  async pushFollowing(witnessUrl: string, witness: VerifierKey, branch: Branch, size: number): Promise<AddCheckpointResult> {
    let old = 0;
    for (let i = 0; ; i++) {
      const r = await this.push(witnessUrl, witness, branch, old, size);
      if (r.witnessSize === undefined || i === 2 || r.witnessSize > size) return r;
      old = r.witnessSize;
    }
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    this.served.push(path);
    const send = (status: number, body: string | Uint8Array, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': status === 200 && type === 'application/octet-stream' ? 'max-age=3600, immutable' : 'no-cache' });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'GET only\n');
    const m = /^\/(a|b)\/(.*)$/.exec(path);
    if (!m) return send(404, 'not found\n');
    const branch = m[1] as Branch;
    const rest = m[2]!;
    const size = this.sizes[branch];
    if (rest === 'checkpoint') return send(200, this.checkpoint(branch, size).note);
    const t = /^tile\/(entries|[0-9]+)\/(.+?)(?:\.p\/([0-9]+))?$/.exec(rest);
    if (!t) return send(404, 'not found\n');
    const index = parseTileIndex(t[2]!.split('/'));
    const width = t[3] === undefined ? TILE_WIDTH : Number(t[3]);
    if (index === undefined || !(width >= 1 && width <= TILE_WIDTH) || (t[3] !== undefined && width === TILE_WIDTH)) return send(404, 'bad tile path\n');
    const hashes = this.hashes[branch];
    if (t[1] === 'entries') {
      if (index * TILE_WIDTH + width > size) return send(404, 'beyond the tree\n');
      const parts: Buffer[] = [];
      for (let i = index * TILE_WIDTH; i < index * TILE_WIDTH + width; i++) {
        const e = this.entries[branch][i]!;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(e.length);
        parts.push(len, Buffer.from(e));
      }
      return send(200, Buffer.concat(parts), 'application/octet-stream');
    }
    const level = Number(t[1]);
    const h = level * TILE_HEIGHT;
    if (h > 40) return send(404, 'no such level\n');
    const span = 2 ** h;
    const available = Math.floor(size / span);
    if (index * TILE_WIDTH + width > available) return send(404, 'beyond the tree\n');
    const out: Buffer[] = [];
    for (let i = index * TILE_WIDTH; i < index * TILE_WIDTH + width; i++) out.push(treeHash(hashes, i * span, (i + 1) * span));
    return send(200, Buffer.concat(out), 'application/octet-stream');
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => {
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      key: { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:0' },
      shared: { type: 'string', default: '5' },
      a: { type: 'string', default: '8' },
      b: { type: 'string', default: '13' },
      'push-a': { type: 'string' },
      'push-b': { type: 'string' },
      'witness-vkey': { type: 'string' },
    },
  });
  if (!values.key) throw new Error('--key <file> is required');
  const [host, port] = values.listen.split(/:(?=[0-9]+$)/) as [string, string];
  const log = await EvilLog.start({
    skey: readFileSync(values.key, 'utf8'),
    histories: forkedHistories(Number(values.shared), Number(values.a), Number(values.b)),
    host,
    port: Number(port),
  });
  console.log(`evil-log: origin ${log.origin}`);
  console.log(`evil-log: verifier key ${log.vkey}`);
  console.log(`evil-log: listening on ${log.url}`);
  for (const branch of ['a', 'b'] as const) {
    const url = values[`push-${branch}`];
    if (!url) continue;
    if (!values['witness-vkey']) throw new Error('--witness-vkey is needed to push');
    const w = parseVerifierKey(values['witness-vkey']);
    const n = log.leafHashes(branch).length;
    for (let size = 1; size <= n; size++) {
      const r = await log.pushFollowing(url, w, branch, size);
      console.log(`evil-log: pushed history ${branch} size ${size} to ${url}: HTTP ${r.status}`);
    }
  }
  const stop = () => void log.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && resolvePath(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(`evil-log: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
