/**
 * Embedded Postgres: PGlite (Postgres compiled to WASM) on a local data
 * directory, served over a Unix socket by pglite-socket so that the server
 * talks to it with the same driver (postgres.js) it uses for a real Postgres.
 *
 * Facts this module relies on (measured with PGlite 0.5.14, pglite-socket
 * 0.2.17, postgres.js 3.4; see spec/embedded-durability.md):
 *
 *  - PGlite's NodeFS mounts a real Postgres 18 data directory (pg_wal with
 *    16 MB segments, base/, global/pg_control, ...) with Emscripten's NODEFS,
 *    which writes through to the host files with fs.writeSync. Committed
 *    transactions are therefore in the OS page cache and survive kill -9.
 *  - PGlite starts Postgres with `-F` (fsync=off), and NODEFS has no fsync
 *    stream op, so nothing is ever fsynced: not power-loss durable. We start
 *    Postgres with fsync=on and wal_sync_method=fsync (fdatasync is a no-op
 *    syscall stub in the Emscripten build; fsync reaches the NODEFS stream op)
 *    and install a real fsync in NODEFS (see {@link WalTracker}).
 *  - pglite-socket's multiplexer (maxConnections > 1) schedules individual
 *    protocol messages, not Sync-terminated batches, over ONE backend: two
 *    connections share the unnamed statement/portal, the implicit
 *    transaction and the error "skip until Sync" state. With max > 1 we saw
 *    `portal "" does not exist`, empty results and hangs. Hence exactly one
 *    connection: the socket server accepts one client and postgres.js must
 *    use max: 1 (a second concurrent client is refused, it fails with EPIPE).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import type { Options } from 'postgres';

export interface EmbeddedPostgres {
  /**
   * postgres.js options to reach it. Spread them into `postgres({...})`;
   * do not raise `max` (the embedded engine is single-connection) and use a
   * single postgres.js instance per embedded database.
   */
  readonly connectionOptions: Options<{}>;
  /** Absolute path of the Unix socket (inside the data dir, or in the temp dir if that path is too long). */
  readonly socketPath: string;
  /**
   * Make everything committed so far survive power loss: fdatasync the WAL
   * written since the last sync. Every transaction whose COMMIT had returned
   * before sync() was called is durable once the promise resolves.
   */
  sync(): Promise<void>;
  /** Stop the socket server, shut Postgres down (checkpoint), release the lock. Idempotent. */
  close(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /**
   * Number of client connections. Only 1 is supported: pglite-socket 0.2.17
   * interleaves the protocol messages of concurrent connections on its single
   * backend (see the module comment). Anything else throws.
   */
  maxConnections?: number;
  /**
   * 'sync' (default): commits are written to the OS (survive kill -9) and
   * made power-loss durable by sync(). 'commit': every commit is fsynced by
   * Postgres itself, like a normal Postgres with fsync=on; sync() is then
   * nearly free. Both keep Postgres' write-ahead ordering on disk.
   */
  durability?: 'sync' | 'commit';
  /**
   * Run a CHECKPOINT (from sync(), in the background) once this many bytes of
   * WAL were written since the last one. PGlite runs Postgres in single-user
   * mode, which has no checkpointer: without this pg_wal grows until the next
   * restart and crash recovery replays all of it. Default 64 MiB; 0 disables.
   */
  checkpointWalBytes?: number;
}

export class DataDirectoryInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
    readonly hostname: string,
  ) {
    super(
      `data directory ${dataDir} is in use by process ${pid}` +
        (hostname === os.hostname() ? '' : ` on host ${hostname}`),
    );
    this.name = 'DataDirectoryInUseError';
  }
}

const PGDATA_DIR = 'pgdata';
const LOCK_FILE = 'glasslog.lock';
const SOCKET_PORT = 5432;
const SOCKET_NAME = `.s.PGSQL.${SOCKET_PORT}`;
/** sun_path is 108 bytes on Linux (104 on macOS/BSD), including the NUL. Node silently truncates longer paths. */
const MAX_SOCKET_PATH = process.platform === 'linux' ? 107 : 103;
/** Emscripten errno for EIO, reported to Postgres when a real fsync fails. */
const EM_EIO = 29;
const DEFAULT_CHECKPOINT_WAL_BYTES = 64 * 1024 * 1024;

export async function startEmbeddedPostgres(
  dataDir: string,
  opts: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const maxConnections = opts.maxConnections ?? 1;
  if (maxConnections !== 1) {
    throw new RangeError(
      `embedded Postgres supports exactly 1 connection (got maxConnections=${maxConnections}): ` +
        'pglite-socket interleaves the protocol messages of concurrent connections on its single backend',
    );
  }
  const durability = opts.durability ?? 'sync';
  const dir = path.resolve(dataDir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });

  const lock = acquireLock(dir);
  let socket: SocketLocation | undefined;
  let db: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  try {
    const pgdata = path.join(dir, PGDATA_DIR);
    await ensureInitialized(dir, pgdata);

    socket = prepareSocket(dir);
    const wal = new WalTracker(durability);
    db = await openPglite(pgdata, wal);
    lock.verify();

    server = new PGLiteSocketServer({ db, path: socket.path, maxConnections: 1 });
    await server.start();
    return new Embedded(db, server, socket, lock, wal, opts.checkpointWalBytes ?? DEFAULT_CHECKPOINT_WAL_BYTES);
  } catch (err) {
    if (server) await server.stop().catch(() => {});
    if (db) await db.close().catch(() => {});
    if (socket) socket.remove();
    lock.release();
    throw err;
  }
}

class Embedded implements EmbeddedPostgres {
  readonly connectionOptions: Options<{}>;
  #closing: Promise<void> | undefined;
  #checkpointing: Promise<void> | undefined;
  #checkpointError: Error | undefined;
  /** Type byte of the last protocol message the socket client sent (0: startup packet / none yet). */
  #lastClientMessage = 0;

  constructor(
    private readonly db: PGlite,
    private readonly server: PGLiteSocketServer,
    private readonly socket: SocketLocation,
    private readonly lock: Lock,
    private readonly wal: WalTracker,
    private readonly checkpointWalBytes: number,
  ) {
    // pglite-socket feeds the client's messages one by one through this method (under runExclusive).
    const exec = db.execProtocolRawStream.bind(db);
    db.execProtocolRawStream = (message, options) => {
      this.#lastClientMessage = message[0] ?? 0;
      return exec(message, options);
    };
    this.connectionOptions = Object.freeze({
      path: socket.path,
      host: path.dirname(socket.path),
      port: SOCKET_PORT,
      user: 'postgres',
      pass: '',
      database: 'postgres',
      ssl: false,
      max: 1,
      // Never replace the connection behind the caller's back: the server accepts one client.
      idle_timeout: 0,
      max_lifetime: 0,
      connect_timeout: 10,
    });
  }

  get socketPath(): string {
    return this.socket.path;
  }

  async sync(): Promise<void> {
    if (this.#closing) throw new Error('embedded Postgres is closed');
    if (this.#checkpointError) throw this.#checkpointError;
    await this.wal.sync();
    if (this.checkpointWalBytes > 0 && this.wal.bytesSinceCheckpoint >= this.checkpointWalBytes) {
      this.#checkpointing ??= this.#checkpoint().finally(() => (this.#checkpointing = undefined));
    }
  }

  /**
   * CHECKPOINT on the backend the client shares, only where the client's
   * session is idle (after a Sync or a simple Query, outside a transaction
   * block); otherwise skipped until the next sync(). The response is not sent
   * to the client.
   */
  async #checkpoint(): Promise<void> {
    try {
      await this.db.runExclusive(async () => {
        const last = this.#lastClientMessage;
        const idle = last === 0 || last === 0x53 /* S */ || last === 0x51; /* Q */
        if (!idle || this.db.isInTransaction() || this.db.closed) return;
        const chunks: Uint8Array[] = [];
        await this.db.execProtocolRawStream(simpleQuery('CHECKPOINT'), {
          onRawData: (d) => chunks.push(d.slice()),
        });
        const err = firstErrorMessage(Buffer.concat(chunks));
        if (err) throw new Error(`embedded Postgres CHECKPOINT failed: ${err}`);
      });
    } catch (err) {
      this.#checkpointError ??= err as Error;
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    try {
      await this.#checkpointing;
      await this.server.stop();
      // stop() detaches handlers without awaiting their ROLLBACK; let them run first.
      await new Promise((r) => setImmediate(r));
      await this.db.runExclusive(async () => {});
      // Shutdown checkpoint; with fsync on it makes everything durable.
      await this.db.close();
      await this.wal.sync();
    } finally {
      this.socket.remove();
      this.lock.release();
    }
  }
}

// ---------------------------------------------------------------------------
// PGlite with real fsync

async function openPglite(pgdata: string, wal: WalTracker): Promise<PGlite> {
  const startParams = [
    ...PGlite.defaultStartParams.filter((p) => p !== '-F'),
    '-c',
    'fsync=on',
    '-c',
    'wal_sync_method=fsync',
    '-c',
    'full_page_writes=on',
  ];
  const db = await PGlite.create({ fs: new DurableNodeFS(pgdata, wal), startParams });
  try {
    if (!wal.installed) throw new Error('PGlite NODEFS fsync hook was not installed');
    const res = await db.query<{ fsync: string; wsm: string; fpw: string }>(
      `select current_setting('fsync') as fsync, current_setting('wal_sync_method') as wsm,
              current_setting('full_page_writes') as fpw`,
    );
    const s = res.rows[0];
    if (!s || s.fsync !== 'on' || s.wsm !== 'fsync' || s.fpw !== 'on') {
      throw new Error(`unexpected PGlite durability settings: ${JSON.stringify(s)}`);
    }
    return db;
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

type FsInit = NodeFS['init'];
type EmscriptenOpts = Parameters<FsInit>[1];
type PreRunFn = NonNullable<EmscriptenOpts['preRun']>[number];
type PostgresModule = Parameters<PreRunFn>[0];

class DurableNodeFS extends NodeFS {
  constructor(
    dataDir: string,
    private readonly wal: WalTracker,
  ) {
    super(dataDir);
  }

  override async init(pg: Parameters<FsInit>[0], opts: EmscriptenOpts): ReturnType<FsInit> {
    const result = await super.init(pg, opts);
    const root = this.rootDir;
    const install: PreRunFn = (mod) => this.wal.install(mod, root);
    result.emscriptenOpts.preRun = [...(result.emscriptenOpts.preRun ?? []), install];
    return result;
  }
}

/** The parts of Emscripten's FS / NODEFS that we hook (emscripten 4/6, as shipped in PGlite 0.5.x). */
interface EmStream {
  node: { mode: number };
  nfd?: number;
}
type StreamWrite = (s: EmStream, buf: Uint8Array, off: number, len: number, pos?: number) => number;
interface EmStreamOps {
  write?: StreamWrite;
  close?: (s: EmStream) => void;
  fsync?: (s: EmStream) => number | undefined;
}
interface EmNodeFs {
  stream_ops?: EmStreamOps;
  realPath?: (node: EmStream['node']) => string;
}
interface EmFs {
  filesystems?: { NODEFS?: EmNodeFs };
  ErrnoError: new (errno: number) => Error;
  isFile: (mode: number) => boolean;
}

interface StreamInfo {
  readonly wal: boolean;
  readonly control: boolean;
  readonly nfd: number;
  /** Sequence number of the last write through this stream. */
  lastWrite: number;
  /** All writes with sequence <= durable have been fdatasynced. */
  durable: number;
  closed: boolean;
}

/**
 * Emulates Postgres' fsync protocol on NODEFS, with WAL fsyncs deferred to
 * sync() in 'sync' durability mode:
 *
 *  - WAL (pg_wal/*) fsync requests: deferred ('sync') or done ('commit').
 *  - Any other fsync request (data files at checkpoint, pg_control,
 *    directories): first fdatasync all dirty WAL, then a real fsync. This
 *    keeps the checkpoint protocol intact: the new checkpoint record is
 *    durable before pg_control points at it, data files before that.
 *  - Any write to a non-WAL file that is not all zeros (a dirty page evicted
 *    from shared buffers, SLRU pages, pg_control): first fdatasync all dirty
 *    WAL. This restores the write-ahead rule on disk (Postgres flushed the
 *    WAL before the write, but its flush was deferred). Relation extension
 *    writes zero pages, which need no WAL.
 *  - Closing a WAL file with unsynced writes fdatasyncs it first (segment
 *    switch, new segment creation), so dirty WAL is always an open fd.
 */
class WalTracker {
  installed = false;
  failed: Error | undefined;
  /** WAL bytes written since pg_control was last written (i.e. since the last checkpoint). */
  bytesSinceCheckpoint = 0;
  private seq = 0;
  private readonly dirty = new Set<StreamInfo>();
  private readonly infos = new WeakMap<EmStream, StreamInfo>();
  private realPath: (node: EmStream['node']) => string = () => '';
  private isFile: (mode: number) => boolean = () => false;
  private walPrefix = '';
  private controlFile = '';
  private errnoError: new (errno: number) => Error = Error as unknown as new (errno: number) => Error;

  constructor(private readonly durability: 'sync' | 'commit') {}

  install(mod: PostgresModule, root: string): void {
    const FS = mod.FS as unknown as EmFs;
    const nodefs = FS.filesystems?.NODEFS;
    const ops = nodefs?.stream_ops;
    const origWrite = ops?.write;
    const origClose = ops?.close;
    const realPath = nodefs?.realPath;
    if (!ops || !origWrite || !origClose || !realPath || typeof FS.ErrnoError !== 'function' || typeof FS.isFile !== 'function') {
      throw new Error('unsupported PGlite build: Emscripten NODEFS internals not found');
    }
    const origFsync = ops.fsync;
    this.realPath = realPath;
    this.walPrefix = path.join(root, 'pg_wal') + path.sep;
    this.controlFile = path.join(root, 'global', 'pg_control');
    this.errnoError = FS.ErrnoError;
    this.isFile = (mode) => FS.isFile(mode);

    ops.write = (stream, buf, off, len, pos) => {
      const info = this.info(stream);
      if (!info.wal && this.dirty.size > 0 && !allZero(buf, off, len)) this.guard(() => this.flushAllSync());
      const n = origWrite(stream, buf, off, len, pos);
      if (info.wal && n > 0) {
        info.lastWrite = ++this.seq;
        this.dirty.add(info);
        this.bytesSinceCheckpoint += n;
      } else if (info.control) {
        this.bytesSinceCheckpoint = 0;
      }
      return n;
    };
    ops.fsync = (stream) => {
      const info = this.info(stream);
      this.guard(() => {
        if (info.wal) {
          if (this.durability === 'commit') this.flushSync(info, true);
        } else {
          this.flushAllSync();
          fs.fsyncSync(info.nfd);
        }
      });
      origFsync?.(stream);
      return 0;
    };
    ops.close = (stream) => {
      const info = this.infos.get(stream);
      if (info?.wal && info.lastWrite > info.durable) this.guard(() => this.flushSync(info));
      if (info) {
        info.closed = true;
        this.dirty.delete(info);
      }
      origClose(stream);
    };
    this.installed = true;
  }

  /** fdatasync the WAL written before this call. Runs off the main thread; queries keep going. */
  async sync(): Promise<void> {
    if (this.failed) throw this.failed;
    const pending = [...this.dirty].map((info) => ({ info, target: info.lastWrite }));
    await Promise.all(
      pending.map(async ({ info, target }) => {
        if (info.durable >= target || info.closed) return;
        try {
          await fdatasync(info.nfd);
        } catch (err) {
          // Closed meanwhile: close() synced it first (and the fd number may be reused).
          if (info.closed) return;
          this.failed ??= err as Error;
          throw err;
        }
        if (info.closed) return;
        if (target > info.durable) info.durable = target;
        if (info.durable >= info.lastWrite) this.dirty.delete(info);
      }),
    );
    if (this.failed) throw this.failed;
  }

  private info(stream: EmStream): StreamInfo {
    let info = this.infos.get(stream);
    if (!info) {
      const p = this.realPath(stream.node);
      info = {
        wal: p.startsWith(this.walPrefix) && this.isFile(stream.node.mode),
        control: p === this.controlFile,
        nfd: stream.nfd ?? -1,
        lastWrite: 0,
        durable: 0,
        closed: false,
      };
      this.infos.set(stream, info);
    }
    return info;
  }

  private flushAllSync(): void {
    for (const info of [...this.dirty]) this.flushSync(info);
  }

  private flushSync(info: StreamInfo, always = false): void {
    const target = info.lastWrite;
    if (!always && info.durable >= target) return;
    fs.fdatasyncSync(info.nfd);
    if (target > info.durable) info.durable = target;
    if (info.durable >= info.lastWrite) this.dirty.delete(info);
  }

  /** Run a real fsync for Postgres; a failure becomes EIO (Postgres PANICs, like on a real fsync failure). */
  private guard(fn: () => void): void {
    if (this.failed) throw new this.errnoError(EM_EIO);
    try {
      fn();
    } catch (err) {
      this.failed = err as Error;
      throw new this.errnoError(EM_EIO);
    }
  }
}

function allZero(buf: Uint8Array, off: number, len: number): boolean {
  const end = off + len;
  let i = off;
  // Compare 4 bytes at a time where aligned (buf is the WASM heap, pages are aligned).
  while (i < end && (buf.byteOffset + i) % 4 !== 0) if (buf[i++] !== 0) return false;
  if (end - i >= 4) {
    const words = new Uint32Array(buf.buffer, buf.byteOffset + i, (end - i) >>> 2);
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
    i += words.length * 4;
  }
  while (i < end) if (buf[i++] !== 0) return false;
  return true;
}

/** A simple-protocol Query message. */
function simpleQuery(text: string): Uint8Array {
  const body = Buffer.from(text + '\0', 'utf8');
  const msg = Buffer.alloc(5 + body.length);
  msg.write('Q', 0, 'latin1');
  msg.writeInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  return msg;
}

/** The 'M' (message) field of the first ErrorResponse in a backend byte stream, if any. */
function firstErrorMessage(buf: Buffer): string | undefined {
  for (let i = 0; i + 5 <= buf.length; ) {
    const type = buf[i];
    const len = buf.readInt32BE(i + 1);
    if (type === 0x45 /* E */) {
      for (let j = i + 5; j < i + 1 + len && buf[j] !== 0; ) {
        const field = buf[j];
        const end = buf.indexOf(0, j + 1);
        if (field === 0x4d /* M */) return buf.toString('utf8', j + 1, end);
        j = end + 1;
      }
      return 'unknown error';
    }
    i += 1 + len;
  }
  return undefined;
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

// ---------------------------------------------------------------------------
// First start: initdb into a scratch dir, make it durable, rename into place.

async function ensureInitialized(dir: string, pgdata: string): Promise<void> {
  // We hold the lock: leftovers of an interrupted first start are garbage.
  for (const name of fs.readdirSync(dir)) {
    if (name.startsWith(`${PGDATA_DIR}.init-`)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  if (fs.existsSync(path.join(pgdata, 'PG_VERSION'))) return;
  if (fs.existsSync(pgdata)) {
    throw new Error(`${pgdata} exists but is not a Postgres data directory (no PG_VERSION); refusing to touch it`);
  }
  const scratch = path.join(dir, `${PGDATA_DIR}.init-${process.pid}`);
  const db = await openPglite(scratch, new WalTracker('commit'));
  await db.close();
  // initdb's output is copied in by PGlite without fsync: sync the whole tree.
  fsyncTree(scratch);
  fs.renameSync(scratch, pgdata);
  fsyncPath(dir);
}

function fsyncTree(p: string): void {
  const st = fs.lstatSync(p);
  if (st.isDirectory()) {
    for (const name of fs.readdirSync(p)) fsyncTree(path.join(p, name));
  }
  if (st.isDirectory() || st.isFile()) fsyncPath(p);
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// Unix socket location

interface SocketLocation {
  readonly path: string;
  remove(): void;
}

function prepareSocket(dir: string): SocketLocation {
  let socketPath = path.join(dir, SOCKET_NAME);
  let privateDir: string | undefined;
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    // Deterministic per data dir and user, so a kill -9 leftover is found and reused next time.
    const id = createHash('sha256')
      .update(`${process.getuid?.() ?? ''}\0${fs.realpathSync(dir)}`)
      .digest('hex')
      .slice(0, 16);
    const candidates = [os.tmpdir(), '/tmp'].map((root) => path.join(root, `glasslog-${id}`));
    privateDir = candidates.find((d) => Buffer.byteLength(path.join(d, SOCKET_NAME)) <= MAX_SOCKET_PATH);
    if (!privateDir) throw new Error(`no Unix socket path short enough for data directory ${dir}`);
    ensurePrivateDir(privateDir);
    socketPath = path.join(privateDir, SOCKET_NAME);
  }
  // We hold the data dir lock, so an existing socket is a leftover of a killed process.
  removeStaleSocket(socketPath);
  const finalPath = socketPath;
  const finalDir = privateDir;
  return {
    path: finalPath,
    remove() {
      removeStaleSocket(finalPath, true);
      if (finalDir) {
        try {
          fs.rmdirSync(finalDir);
        } catch {
          /* not empty or already gone */
        }
      }
    },
  };
}

function ensurePrivateDir(d: string): void {
  try {
    fs.mkdirSync(d, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = fs.lstatSync(d);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new Error(`socket directory ${d} is not a private directory owned by this user`);
  }
}

function removeStaleSocket(p: string, quiet = false): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    if (quiet) return;
    throw new Error(`${p} exists and is not a socket; refusing to remove it`);
  }
  try {
    fs.unlinkSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

// ---------------------------------------------------------------------------
// Exclusive lock on the data directory

interface LockInfo {
  pid: number;
  hostname: string;
  bootId?: string;
  startTime?: string;
  createdAt: string;
}

interface Lock {
  verify(): void;
  release(): void;
}

/**
 * A lock file created atomically (link(2) of a complete temp file, fails if
 * it exists) holding the owner's pid. A lock whose owner is gone (no such
 * pid, pid reused by a younger process, or written before the last reboot)
 * is stale and is stolen by renaming it aside and checking that the inode
 * moved is the one judged stale.
 */
function acquireLock(dir: string): Lock {
  const lockPath = path.join(dir, LOCK_FILE);
  const token = `${process.pid}.${randomBytes(6).toString('hex')}`;
  const me: LockInfo = {
    pid: process.pid,
    hostname: os.hostname(),
    bootId: bootId(),
    startTime: procStartTime(process.pid),
    createdAt: new Date().toISOString(),
  };
  const tmp = `${lockPath}.${token}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(me) + '\n', { mode: 0o600, flag: 'wx' });
  let ino: number | undefined;
  try {
    for (let attempt = 0; attempt < 10 && ino === undefined; attempt++) {
      try {
        fs.linkSync(tmp, lockPath);
        ino = fs.statSync(tmp).ino;
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let held: { info: LockInfo | undefined; ino: number };
      try {
        held = readLock(lockPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      if (!held.info) {
        throw new Error(
          `data directory ${dir} has an unreadable lock file ${lockPath}; remove it if no process uses the directory`,
        );
      }
      if (ownerAlive(held.info)) throw new DataDirectoryInUseError(dir, held.info.pid, held.info.hostname);
      // Stale: move it aside, then make sure what we moved is what we judged.
      const aside = `${lockPath}.${token}.stale`;
      try {
        fs.renameSync(lockPath, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      if (fs.statSync(aside).ino !== held.ino) {
        // Someone replaced the stale lock meanwhile: put theirs back.
        try {
          fs.linkSync(aside, lockPath);
        } catch {
          /* a third process got in; verify() catches a lost lock */
        }
      }
      fs.unlinkSync(aside);
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  if (ino === undefined) throw new Error(`could not acquire the lock on data directory ${dir}`);
  const ownIno = ino;
  cleanupLockDebris(dir);
  let released = false;
  return {
    verify() {
      const st = fs.statSync(lockPath, { throwIfNoEntry: false });
      if (!st || st.ino !== ownIno) throw new Error(`lost the lock on data directory ${dir}`);
    },
    release() {
      if (released) return;
      released = true;
      const st = fs.statSync(lockPath, { throwIfNoEntry: false });
      if (st && st.ino === ownIno) fs.rmSync(lockPath, { force: true });
    },
  };
}

function readLock(lockPath: string): { info: LockInfo | undefined; ino: number } {
  const fd = fs.openSync(lockPath, 'r');
  try {
    const ino = fs.fstatSync(fd).ino;
    const text = fs.readFileSync(fd, 'utf8');
    try {
      const v = JSON.parse(text) as Partial<LockInfo>;
      if (typeof v.pid === 'number' && Number.isInteger(v.pid) && v.pid > 0 && typeof v.hostname === 'string') {
        return { info: v as LockInfo, ino };
      }
    } catch {
      /* unreadable */
    }
    return { info: undefined, ino };
  } finally {
    fs.closeSync(fd);
  }
}

function ownerAlive(info: LockInfo): boolean {
  if (info.hostname !== os.hostname()) return true; // cannot check another host: assume alive
  const boot = bootId();
  if (info.bootId && boot && info.bootId !== boot) return false; // written before a reboot
  try {
    process.kill(info.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  if (info.startTime) {
    const now = procStartTime(info.pid);
    if (now !== undefined && now !== info.startTime) return false; // pid reused
  }
  return true;
}

/** Remove temp/aside files left by lockers that were killed mid-way (we hold the lock now). */
function cleanupLockDebris(dir: string): void {
  for (const name of fs.readdirSync(dir)) {
    const m = /^glasslog\.lock\.(\d+)\.[0-9a-f]+\.(tmp|stale)$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code !== 'ESRCH';
    }
    if (!alive) fs.rmSync(path.join(dir, name), { force: true });
  }
}

function bootId(): string | undefined {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Process start time in clock ticks since boot (Linux /proc/<pid>/stat field 22). */
function procStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}
