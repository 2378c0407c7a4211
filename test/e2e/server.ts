/**
 * Spawns, kills and restarts the real glasslog server (node dist/cli/main.js serve) for
 * end-to-end tests. Run `npm run build` first. Every child is tracked and killed by
 * killAllServers() (call it from afterAll) and, as a last resort, on process exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MAIN_JS = join(REPO_ROOT, 'dist/cli/main.js');

export interface ServerOptions {
  /** The data directory (keys, token, and the embedded database unless databaseUrl is set). */
  readonly dataDir: string;
  /** A Postgres URL; without it the server uses embedded PGlite under dataDir. */
  readonly databaseUrl?: string;
  readonly schema?: string;
  /** Further command-line flags. */
  readonly args?: readonly string[];
  /** How long to wait for the "listening" line (default 90 s: a first PGlite start runs initdb). */
  readonly startTimeoutMs?: number;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

const live = new Set<ChildProcess>();
const MAX_OUTPUT = 256 * 1024;

/** A spawned `glasslog <command>` process: its exit, output, crash and graceful stop. */
abstract class CliProcess<O extends { readonly dataDir: string }> {
  /** Wall-clock milliseconds from spawn to the "listening" line. */
  startMs = 0;
  private exitInfo: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;

  protected constructor(
    readonly child: ChildProcess,
    readonly opts: O,
    private readonly out: { text: string },
    readonly url: string,
  ) {
    this.exited = new Promise<ExitInfo>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r({ code: child.exitCode, signal: child.signalCode });
      else child.once('exit', (code, signal) => r({ code, signal }));
    }).then((e) => (this.exitInfo = e));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitInfo === undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything the process wrote to stdout and stderr (the last 256 KiB). */
  output(): string {
    return this.out.text;
  }

  /** SIGKILL, as a crash: no shutdown code runs. Resolves once the process is gone. */
  async kill(): Promise<ExitInfo> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }

  /** SIGTERM (graceful shutdown); SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 20_000): Promise<ExitInfo & { forced: boolean }> {
    if (!this.running) return { ...(await this.exited), forced: false };
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const forced = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (forced) this.child.kill('SIGKILL');
    return { ...(await this.exited), forced };
  }
}

export class ServerProcess extends CliProcess<ServerOptions> {
  get vkey(): string {
    return readFileSync(join(this.opts.dataDir, 'log.vkey'), 'utf8').trim();
  }

  get token(): string {
    return readFileSync(join(this.opts.dataDir, 'write.token'), 'utf8').trim();
  }

  /** Starts a server and resolves once it prints its listening line. */
  static async start(opts: ServerOptions): Promise<ServerProcess> {
    const started = performance.now();
    const { child, out, listening } = spawnServer(opts);
    const url = await listening;
    const sp = new ServerProcess(child, opts, out, url);
    sp.startMs = performance.now() - started;
    return sp;
  }

  /**
   * Spawns a server and SIGKILLs it `afterMs` later, or as soon as it is listening if that
   * comes first: a crash during start-up (recovery, migration, first publish).
   * Resolves with whether it had started listening, and its output.
   */
  static async killDuringStart(opts: ServerOptions, afterMs: number): Promise<{ listened: boolean; exit: ExitInfo; output: string }> {
    const { child, out, listening } = spawnServer(opts);
    const exited = new Promise<ExitInfo>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    let listened = false;
    await Promise.race([
      listening.then(
        () => (listened = true),
        () => undefined,
      ),
      new Promise((r) => setTimeout(r, afterMs)),
    ]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return { listened, exit: await exited, output: out.text };
  }

  /**
   * Starts a server, retrying while the previous process's Postgres advisory lock is still
   * held (Postgres notices a killed client's closed connection only after a moment).
   */
  static async startRetrying(opts: ServerOptions, retryForMs = 20_000): Promise<{ server: ServerProcess; retries: number }> {
    const deadline = Date.now() + retryForMs;
    for (let retries = 0; ; retries++) {
      try {
        return { server: await ServerProcess.start(opts), retries };
      } catch (err) {
        const lockBusy = err instanceof StartError && /already writing|in use by process/.test(err.output);
        if (!lockBusy || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
}

/** Spawns `node dist/cli/main.js serve …`; `listening` resolves with the URL it prints. */
function spawnServer(opts: ServerOptions): { child: ChildProcess; out: { text: string }; listening: Promise<string> } {
  const args = ['serve', '--data', opts.dataDir, '--listen', '127.0.0.1:0'];
  if (opts.databaseUrl) args.push('--database-url', opts.databaseUrl);
  if (opts.schema) args.push('--schema', opts.schema);
  args.push(...(opts.args ?? []));
  return spawnCli('server', args, /glasslog: listening on (http:\/\/\S+)\n/, opts.startTimeoutMs ?? 90_000);
}

/**
 * Spawns `node dist/cli/main.js <args>` with no storage or token from the environment (the
 * tests choose them explicitly); `listening` resolves with the URL its `listening` line
 * (matched by `listeningLine`) prints.
 */
function spawnCli(what: string, cliArgs: string[], listeningLine: RegExp, timeoutMs: number): { child: ChildProcess; out: { text: string }; listening: Promise<string> } {
  if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run npm run build first`);
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.GLASSLOG_TOKEN;
  const child = spawn(process.execPath, [MAIN_JS, ...cliArgs], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const out = { text: '' };
  const append = (chunk: Buffer) => {
    out.text += chunk.toString('utf8');
    if (out.text.length > MAX_OUTPUT) out.text = out.text.slice(-MAX_OUTPUT);
  };
  child.stderr!.on('data', append);
  let lineBuf = '';
  const listening = new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not start within ${timeoutMs} ms; output:\n${out.text}`));
    }, timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      append(chunk);
      lineBuf += chunk.toString('utf8');
      const m = listeningLine.exec(lineBuf);
      if (m) {
        clearTimeout(timer);
        lineBuf = '';
        resolveUrl(m[1]!);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new StartError(`${what} exited before listening (code ${code}, signal ${signal}); output:\n${out.text}`, out.text));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  listening.catch(() => undefined); // handled by the caller; avoid an unhandled rejection after a kill
  return { child, out, listening };
}

export class StartError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
    this.name = 'StartError';
  }
}

/** SIGKILLs every server this process started that is still running, and waits for them. */
export async function killAllServers(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) {
      waits.push(new Promise((r) => child.once('exit', r)));
      child.kill('SIGKILL');
    }
  }
  await Promise.all(waits);
}

process.once('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** A fresh temporary directory for a server's data. */
export function tempDataDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `glasslog-e2e-${tag}-`));
}

export function removeDataDir(dir: string): void {
  if (process.env.KEEP_E2E_DATA) return;
  rmSync(dir, { recursive: true, force: true });
}

/** The Postgres URL to test against, if the environment provides one. */
export const DATABASE_URL = process.env.DATABASE_URL || undefined;

let schemaCounter = 0;
/** A schema name no other test run uses. */
export function uniqueSchema(tag: string): string {
  return `e2e_${tag}_${process.pid}_${Date.now().toString(36)}_${schemaCounter++}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
}

export async function dropSchema(url: string, schema: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`refusing to drop odd schema name ${schema}`);
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  try {
    await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

// ---------------------------------------------------------------------------------------
// Witnesses, keys and ports (appended for test/e2e/witness.test.ts)

/** A port that was free a moment ago on 127.0.0.1 (for URLs that must be known before a start). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise<number>((ok, bad) => {
    const s = createServer();
    s.once('error', bad);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => ok(port));
    });
  });
}

/** Runs `node dist/cli/main.js keygen <args>` and returns its stdout. */
export async function runKeygen(args: readonly string[]): Promise<string> {
  if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run npm run build first`);
  const { execFile } = await import('node:child_process');
  return new Promise<string>((ok, bad) => {
    execFile(process.execPath, [MAIN_JS, 'keygen', ...args], { cwd: REPO_ROOT }, (err, stdout, stderr) => {
      if (err) bad(new Error(`glasslog keygen ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else ok(stdout);
    });
  });
}

export interface WitnessOptions {
  /** --data: witness.key, witness.vkey, admin.token and the embedded database. */
  readonly dataDir: string;
  readonly policyFile: string;
  /** host:port, default 127.0.0.1:0. */
  readonly listen?: string;
  readonly databaseUrl?: string;
  readonly schema?: string;
  /** Further flags (--gossip-interval, --pull-interval, --webhook, …). */
  readonly args?: readonly string[];
  readonly startTimeoutMs?: number;
}

/** A running `glasslog witness` process. Tracked like the servers: killAllServers() ends it. */
export class WitnessProcess extends CliProcess<WitnessOptions> {
  /** The witness's verifier key (<data>/witness.vkey). */
  get vkey(): string {
    return readFileSync(join(this.opts.dataDir, 'witness.vkey'), 'utf8').trim();
  }

  static async start(opts: WitnessOptions): Promise<WitnessProcess> {
    const started = performance.now();
    const args = ['witness', '--policy', opts.policyFile, '--data', opts.dataDir, '--listen', opts.listen ?? '127.0.0.1:0'];
    if (opts.databaseUrl) args.push('--database-url', opts.databaseUrl);
    if (opts.schema) args.push('--schema', opts.schema);
    args.push(...(opts.args ?? []));
    const { child, out, listening } = spawnCli('witness', args, /glasslog witness: listening on (http:\/\/\S+)\n/, opts.startTimeoutMs ?? 90_000);
    const url = await listening;
    const wp = new WitnessProcess(child, opts, out, url);
    wp.startMs = performance.now() - started;
    return wp;
  }

  /** Starts a witness, retrying while a killed predecessor's lock (Postgres advisory lock, data dir) is still held. */
  static async startRetrying(opts: WitnessOptions, retryForMs = 20_000): Promise<WitnessProcess> {
    const deadline = Date.now() + retryForMs;
    for (;;) {
      try {
        return await WitnessProcess.start(opts);
      } catch (err) {
        const busy = err instanceof StartError && /already running|in use by process|EADDRINUSE/.test(err.output);
        if (!busy || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
}
