import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createServer } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { withCachedTiles } from '../http/fast-tiles.js';
import postgres from 'postgres';
import { createLogApp } from '../http/log-app.js';
import { Log } from '../log/log.js';
import { formatVerifierKey, generateKey, isValidKeyName, parseSignerKey } from '../note/keys.js';
import { newSigner } from '../note/note.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../storage/embedded.js';
import { openPostgresLogStore, PostgresLogStore, schemaConnection } from '../storage/postgres.js';

const HELP = `Usage: glasslog serve [options]

Runs the log: the C2SP tlog-tiles read path, the write API, proofs and receipts.
With no database URL it stores everything in an embedded Postgres (PGlite) under
--data; with one, in that Postgres. Keys and the write token live in --data.

Options:
  --data <dir>            data directory (default ./data): the signing key
                          log.key, its verifier key log.vkey, the write token
                          write.token, and the embedded database pglite/
  --listen <host:port>    address to serve HTTP on (default 127.0.0.1:8080;
                          port 0 picks a free port)
  --database-url <url>    a Postgres URL (default: $DATABASE_URL, else embedded)
  --schema <name>         the Postgres schema holding the log (default glasslog)
  --origin <name>         the log's origin, fixed when the log is created
                          (default <hostname>/glasslog; later starts read it
                          from the key and refuse a different one)
  --key <file>            the signing key (default <data>/log.key, generated on
                          first start with the origin as its name)
  --token <token>         the bearer token that may write (default:
                          $GLASSLOG_TOKEN, else <data>/write.token, generated
                          on first start)
  --batch-size <n>        most entries sequenced in one transaction (default 4096)
  --batch-delay-ms <ms>   how long a batch may wait to fill (default 5)
  --max-pending <n>       entries waiting before writes get 503 (default 200000)
  --dedup-window <n>      resubmitting the bytes of one of the last n entries
                          returns its index instead of appending (default 100000)
  -h, --help              this text
`;

function positiveInt(v: string | undefined, name: string, dflt: number, min = 1): number {
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

function defaultOrigin(): string {
  const host = hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-') || 'localhost';
  return `${host}/glasslog`;
}

/** Loads the signing key, or creates it (and log.vkey) on first start. */
function loadOrCreateKey(keyFile: string, vkeyFile: string, origin: string | undefined): { skey: string; vkey: string; origin: string } {
  if (existsSync(keyFile)) {
    const skey = readFileSync(keyFile, 'utf8').trim();
    const key = parseSignerKey(skey);
    if (origin !== undefined && origin !== key.name) {
      throw new Error(`the log's key ${keyFile} is for origin "${key.name}", not "${origin}": the origin is fixed once the log exists`);
    }
    const vkey = generateVkey(skey);
    if (!existsSync(vkeyFile)) writeFileSync(vkeyFile, vkey + '\n');
    return { skey, vkey, origin: key.name };
  }
  const name = origin ?? defaultOrigin();
  if (!isValidKeyName(name)) throw new Error(`--origin ${JSON.stringify(name)} is not a valid key name (no spaces, no "+")`);
  const { skey, vkey } = generateKey(name);
  writeFileSync(keyFile, skey + '\n', { mode: 0o600, flag: 'wx' });
  writeFileSync(vkeyFile, vkey + '\n');
  return { skey, vkey, origin: name };
}

/** The verifier key is derived from the private key, so log.vkey can always be rebuilt. */
function generateVkey(skey: string): string {
  const k = parseSignerKey(skey);
  return formatVerifierKey(k.name, k.alg, k.publicKey);
}

function loadOrCreateToken(file: string, given: string | undefined): string {
  if (given !== undefined) {
    if (!/^[\x21-\x7e]{16,}$/.test(given)) throw new Error('--token must be at least 16 printable ASCII characters without spaces');
    return given;
  }
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  return token;
}

export async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: 'string', default: './data' },
      listen: { type: 'string', default: '127.0.0.1:8080' },
      'database-url': { type: 'string' },
      schema: { type: 'string', default: 'glasslog' },
      origin: { type: 'string' },
      key: { type: 'string' },
      token: { type: 'string' },
      'batch-size': { type: 'string' },
      'batch-delay-ms': { type: 'string' },
      'max-pending': { type: 'string' },
      'dedup-window': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const listen = parseListen(values.listen);
  const batchSize = positiveInt(values['batch-size'], 'batch-size', 4096);
  const batchDelayMs = positiveInt(values['batch-delay-ms'], 'batch-delay-ms', 5, 0);
  const maxPending = positiveInt(values['max-pending'], 'max-pending', 200_000);
  const dedupWindow = positiveInt(values['dedup-window'], 'dedup-window', 100_000, 0);
  schemaConnection(values.schema);

  const data = resolve(values.data);
  mkdirSync(data, { recursive: true });
  const keyFile = values.key ? resolve(values.key) : join(data, 'log.key');
  const { skey, vkey, origin } = loadOrCreateKey(keyFile, join(data, 'log.vkey'), values.origin);
  const token = loadOrCreateToken(join(data, 'write.token'), values.token ?? process.env.GLASSLOG_TOKEN);

  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  let embedded: EmbeddedPostgres | undefined;
  let store: PostgresLogStore;
  if (databaseUrl) {
    store = openPostgresLogStore(databaseUrl, { schema: values.schema, max: 4 });
  } else {
    embedded = await startEmbeddedPostgres(join(data, 'pglite'));
    const sql = postgres({ ...embedded.connectionOptions, max: 1, onnotice: () => undefined, connection: schemaConnection(values.schema) });
    const emb = embedded;
    store = new PostgresLogStore(sql, { schema: values.schema, advisoryLock: false, singleSession: true, afterCommit: () => emb.sync() });
  }

  let log: Log;
  try {
    log = await Log.open({
      store,
      origin,
      vkey,
      signer: newSigner(skey, nodeEd25519),
      maxBatchSize: batchSize,
      maxBatchDelayMs: batchDelayMs,
      maxPending,
      dedupWindow,
      onFatal: (err) => console.error(`glasslog: the log stopped accepting writes: ${err.message}`),
    });
  } catch (err) {
    await store.close().catch(() => undefined);
    await embedded?.close().catch(() => undefined);
    throw err;
  }

  const app = createLogApp({ log, writeTokens: [token], maxBatchEntries: batchSize });
  let stopping = false;
  const listener = withCachedTiles(log, getRequestListener(app.fetch));
  // While shutting down, every response closes its connection, so keep-alive clients
  // cannot hold the server open (server.close() only stops new connections).
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
  console.log(`glasslog: origin ${origin}`);
  console.log(`glasslog: verifier key ${vkey} (in ${join(data, 'log.vkey')})`);
  console.log(`glasslog: storage ${databaseUrl ? `postgres, schema ${values.schema}` : `embedded PGlite in ${join(data, 'pglite')}`}`);
  console.log(`glasslog: write token in ${values.token || process.env.GLASSLOG_TOKEN ? '--token / $GLASSLOG_TOKEN' : join(data, 'write.token')}`);
  console.log(`glasslog: tree size ${log.checkpoint().treeSize}`);
  console.log(`glasslog: listening on http://${host}:${port}`);

  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`glasslog: ${signal}: shutting down`);
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    // Drain: what is already submitted is sequenced, integrated and published; writes
    // arriving from now on get 503 "shutting down".
    await log.close();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
    server.closeAllConnections();
    await embedded?.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  return -1; // keep running
}
