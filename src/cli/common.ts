/** What the log's and the witness's commands share: flags, secrets in the data dir, HTTP. */
import { createHash, hash as nodeHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import postgres from 'postgres';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../storage/embedded.js';
import { schemaConnection } from '../storage/postgres.js';
import { useSha256 } from '../core/hash.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { parsePolicy, type ParsePolicyOptions, type Policy } from '../verify/policy.js';
import type { ReceiptTrust } from '../verify/receipt.js';
import { TlogError } from '../core/errors.js';
import { parseVerifierKey } from '../note/keys.js';

export function positiveInt(v: string | undefined, name: string, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!/^(0|[1-9][0-9]*)$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
    throw new Error(`--${name} must be a whole number ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(0|[1-9][0-9]{0,4})$/.exec(s);
  if (!m || Number(m[2]) > 65535) throw new Error(`--listen must be <host>:<port>, got ${JSON.stringify(s)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** A bearer token: the given one, else the one in `file`, else a new one written there. */
export function loadOrCreateToken(file: string, given: string | undefined, flag = '--token'): string {
  if (given !== undefined) {
    if (!/^[\x21-\x7e]{16,}$/.test(given)) throw new Error(`${flag} must be at least 16 printable ASCII characters without spaces`);
    return given;
  }
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  return token;
}

export interface HttpServer {
  /** The URL it listens on. */
  readonly url: string;
  /**
   * Stops taking connections: from now on every response closes its connection, so
   * keep-alive clients cannot hold the server open; `drain` runs while in-flight requests
   * finish (at most 5 s more).
   */
  stop(drain: () => Promise<void>): Promise<void>;
}

export async function listenHttp(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  listen: { host: string; port: number }
): Promise<HttpServer> {
  let stopping = false;
  const server = createServer((req, res) => {
    if (stopping) res.setHeader('Connection', 'close');
    listener(req, res);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(listen.port, listen.host);
  await new Promise<void>((ok, fail) => {
    server.once('listening', ok);
    server.once('error', fail);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : listen.port;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}`,
    async stop(drain) {
      stopping = true;
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      await drain();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
      server.closeAllConnections();
    },
  };
}

/** Runs `shutdown` once on SIGINT or SIGTERM, then exits 0. */
export function onSignals(shutdown: (signal: string) => Promise<void>): void {
  let once = false;
  const run = (signal: string) => {
    if (once) return;
    once = true;
    shutdown(signal).then(
      () => process.exit(0),
      (err) => {
        console.error(`glasslog: shutdown failed: ${(err as Error).message}`);
        process.exit(1);
      }
    );
  };
  process.on('SIGINT', () => run('SIGINT'));
  process.on('SIGTERM', () => run('SIGTERM'));
}

export interface Database {
  readonly sql: postgres.Sql;
  /** Options for every store on this connection (PostgresLogStore, audit, witness). */
  readonly options: { schema: string; singleSession: boolean; advisoryLock: boolean; afterCommit?: () => Promise<void> };
  /** The embedded engine, when there is no database URL. */
  readonly embedded: EmbeddedPostgres | undefined;
  readonly description: string;
  close(): Promise<void>;
}

/**
 * The Postgres at `databaseUrl`, or else the embedded PGlite in `<dataDir>/pglite` (one
 * session: stores share it, set their search_path with SET, and fsync after each commit).
 */
export async function openDatabase(dataDir: string, databaseUrl: string | undefined, schema: string): Promise<Database> {
  if (databaseUrl) {
    const sql = postgres(databaseUrl, { max: 4, onnotice: () => undefined, connection: schemaConnection(schema) });
    return { sql, options: { schema, singleSession: false, advisoryLock: true }, embedded: undefined, description: `postgres, schema ${schema}`, close: () => sql.end({ timeout: 5 }) };
  }
  const embedded = await startEmbeddedPostgres(join(dataDir, 'pglite'));
  const sql = postgres({ ...embedded.connectionOptions, max: 1, onnotice: () => undefined, connection: schemaConnection(schema) });
  return {
    sql,
    options: { schema, singleSession: true, advisoryLock: false, afterCommit: () => embedded.sync() },
    embedded,
    description: `embedded PGlite in ${join(dataDir, 'pglite')}`,
    async close() {
      await sql.end({ timeout: 5 }).catch(() => undefined);
      await embedded.close();
    },
  };
}

/**
 * Makes the core hash with node:crypto's SHA-256 (OpenSSL) instead of @noble/hashes: the
 * same bytes, faster on the server's hot paths (leaf and node hashes of every entry).
 */
export function useNodeSha256(): void {
  // crypto.hash (Node ≥ 20.12) is one call with no Hash object: cheaper for 65-byte nodes.
  const oneShot = typeof nodeHash === 'function' ? (data: Uint8Array) => nodeHash('sha256', data, 'buffer') : (data: Uint8Array) => createHash('sha256').update(data).digest();
  useSha256((data) => {
    const d = oneShot(data);
    return new Uint8Array(d.buffer, d.byteOffset, d.length);
  });
}

/** Reads a C2SP tlog-policy file, verifying with node:crypto. @throws naming the file */
export function readPolicyFile(file: string, opts: Omit<ParsePolicyOptions, 'ed25519'> = {}): Policy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the policy ${file}: ${(err as Error).message}`);
  }
  return parsePolicy(text, { ...opts, ed25519: nodeEd25519 });
}

/** A command line that cannot be acted on: the command prints it and exits 2. */
export class UsageError extends Error {}

/** The text of a file the command line names. @throws {UsageError} naming `what` */
export function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/**
 * The trust an offline check uses, from `--log-key <vkey|file>` or `--policy <file>`
 * (exactly one). A policy may omit its quorum line (then no cosignature is required).
 * @throws {UsageError} For a missing, doubled or unreadable option.
 */
export function trustFromFlags(values: { 'log-key'?: string; policy?: string }): ReceiptTrust {
  if ((values['log-key'] === undefined) === (values.policy === undefined)) throw new UsageError('give exactly one of --log-key and --policy');
  if (values.policy !== undefined) {
    try {
      return { policy: readPolicyFile(values.policy, { quorumOptional: true }) };
    } catch (err) {
      if (err instanceof TlogError) throw err;
      throw new UsageError((err as Error).message);
    }
  }
  const k = values['log-key']!;
  // A verifier key has no "/" before its first "+", a path usually does; try the key first.
  try {
    parseVerifierKey(k);
    return { logKey: k };
  } catch {
    return { logKey: readText(k, 'the log key').trim() };
  }
}
