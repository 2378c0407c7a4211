/** Shared helpers for the benchmarks: machine description, the server process, data. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { SERVE_NODE_OPTIONS } from '../src/cli/serve.js';

export function machine(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

export function median(xs: number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 0.5);
}

let seq = 0;
export function benchSchema(tag: string): string {
  return `bench_${tag}_${process.pid}_${seq++}`;
}

/** `n` distinct entries of `size` bytes, tagged so that no two runs collide. */
export function uniqueEntries(n: number, size: number, tag: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const e = Buffer.alloc(size, 0x2e);
    e.write(`${tag}:${process.pid}:${i}:`, 0, 'latin1');
    out.push(e);
  }
  return out;
}

export interface Server {
  readonly url: string;
  /** The write token (log servers only). */
  readonly token: string;
  readonly dataDir: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts a built `glasslog <command>` (dist/) on a free port; on Postgres when
 * `databaseUrl` is given (its own schema, dropped on stop).
 */
export async function startProcess(
  command: 'serve' | 'witness',
  opts: { databaseUrl?: string; dataDir?: string; args?: string[] } = {}
): Promise<Server> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), `glasslog-bench-${command}-`));
  const schema = benchSchema(command === 'serve' ? 'log' : 'witness');
  // The server runs with the Node options npm start gives it (SERVE_NODE_OPTIONS);
  // GLASSLOG_BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", adds more.
  const nodeArgs = [...(command === 'serve' ? SERVE_NODE_OPTIONS : []), ...(process.env.GLASSLOG_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)];
  const args = [...nodeArgs, 'dist/cli/main.js', command, '--data', dataDir, '--listen', '127.0.0.1:0', ...(opts.args ?? [])];
  if (opts.databaseUrl) args.push('--database-url', opts.databaseUrl, '--schema', schema);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DATABASE_URL: '' } });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${command} exited ${code}: ${out}`)));
  });
  const token = command === 'serve' ? readFileSync(join(dataDir, 'write.token'), 'utf8').trim() : '';
  return {
    url,
    token,
    dataDir,
    process: child,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      if (opts.databaseUrl) {
        const sql = postgres(opts.databaseUrl, { max: 1, onnotice: () => undefined });
        await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
        await sql.end();
      }
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Starts the built log server (dist/) on a free port; on Postgres when `databaseUrl` is given. */
export function startServer(opts: { databaseUrl?: string; dataDir?: string; args?: string[] } = {}): Promise<Server> {
  return startProcess('serve', opts);
}
