import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { getRequestListener } from '@hono/node-server';
import { withFastTiles } from '../http/fast-tiles.js';
import { createLogApp } from '../http/log-app.js';
import { Cosigning } from '../log/cosigning.js';
import { Log, type WitnessingOptions } from '../log/log.js';
import { Registry } from '../metrics.js';
import { describeQuorum, quorumMet, type Policy } from '../verify/policy.js';
import { formatVerifierKey, generateKey, isValidKeyName, parseSignerKey } from '../note/keys.js';
import { newSigner } from '../note/note.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { listenHttp, loadOrCreateToken, onSignals, openDatabase, parseListen, positiveInt, readPolicyFile, useNodeSha256 } from './common.js';
import { PostgresLogStore, schemaConnection } from '../storage/postgres.js';
import { PostgresAuditStore } from '../storage/audit-store.js';
import { Access } from '../audit/access.js';
import { AuditLog } from '../audit/audit.js';
import { VerifyPool } from '../audit/verify-pool.js';

/**
 * The Node.js options `glasslog serve` should run with (npm start and the Docker image pass
 * them; the server says so at startup when they are missing). Its live V8 heap is small
 * (about 30 MB), but serving entry bundles allocates about half a megabyte of buffers per
 * bundle (the database's hex output, socket reads, the decoded bytes). V8 sets the next
 * full collection from the live heap, so a full audit set off a mark-compact every quarter
 * of a second: with this floor under the old generation the server ran 11 instead of 55,
 * and served a 300,000-entry audit with 2.7 instead of 4.8 CPU seconds (bench/audit.ts,
 * spec/storage.md). The limit reserves no memory: it is how much garbage may gather before
 * a collection.
 */
export const SERVE_NODE_OPTIONS = ['--initial-heap-size=256'] as const;

/**
 * The SERVE_NODE_OPTIONS whose option neither the command line nor NODE_OPTIONS gave Node,
 * with any value (V8 spells its options with - or _).
 */
export function missingNodeOptions(execArgv: readonly string[], nodeOptions = ''): string[] {
  const name = (o: string) => o.split('=')[0]!.replace(/_/g, '-');
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map(name));
  return SERVE_NODE_OPTIONS.filter((o) => !given.has(name(o)));
}

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
  --policy <file>         witnesses to collect cosignatures from, in C2SP
                          tlog-policy format: "witness <name> <vkey> <url>"
                          lines (the URL is the submission prefix), groups,
                          and "quorum <name>" (log lines are ignored)
  --witness-mode <mode>   fail-open (default): publish every checkpoint at once
                          and add cosignatures as they arrive; fail-closed:
                          publish (and answer writes) only once the quorum
                          cosigned
  --witness-timeout-ms <ms>  per add-checkpoint request (default 5000)
  --agent-rate <n>        agent entries per second each agent may write (default
                          2000); beyond it writes get 429 with Retry-After
  --agent-burst <n>       the burst above that rate (default twice the rate)
  -h, --help              this text
`;

/** The log's witness policy: witnesses with URLs, and a quorum. */
function readWitnessPolicy(file: string): Policy {
  const policy = readPolicyFile(file);
  if (policy.witnesses.length === 0) throw new Error(`the policy ${file} names no witness`);
  const noUrl = policy.witnesses.filter((w) => !w.url).map((w) => w.name);
  if (noUrl.length > 0) throw new Error(`the policy ${file} gives no URL for witness(es) ${noUrl.join(', ')}: the log needs their submission prefix`);
  return policy;
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
      policy: { type: 'string' },
      'witness-mode': { type: 'string', default: 'fail-open' },
      'witness-timeout-ms': { type: 'string' },
      'agent-rate': { type: 'string' },
      'agent-burst': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  useNodeSha256();
  const listen = parseListen(values.listen);
  const batchSize = positiveInt(values['batch-size'], 'batch-size', 4096);
  const batchDelayMs = positiveInt(values['batch-delay-ms'], 'batch-delay-ms', 5, 0);
  const maxPending = positiveInt(values['max-pending'], 'max-pending', 200_000);
  const dedupWindow = positiveInt(values['dedup-window'], 'dedup-window', 100_000, 0);
  schemaConnection(values.schema);
  const witnessMode = values['witness-mode'];
  if (witnessMode !== 'fail-open' && witnessMode !== 'fail-closed') throw new Error(`--witness-mode must be fail-open or fail-closed, got ${JSON.stringify(witnessMode)}`);
  const witnessTimeoutMs = positiveInt(values['witness-timeout-ms'], 'witness-timeout-ms', 5000);
  const agentRate = positiveInt(values['agent-rate'], 'agent-rate', 2000);
  const agentBurst = positiveInt(values['agent-burst'], 'agent-burst', 2 * agentRate);
  const policy = values.policy ? readWitnessPolicy(resolve(values.policy)) : undefined;

  const data = resolve(values.data);
  mkdirSync(data, { recursive: true });
  const keyFile = values.key ? resolve(values.key) : join(data, 'log.key');
  const { skey, vkey, origin } = loadOrCreateKey(keyFile, join(data, 'log.vkey'), values.origin);
  const token = loadOrCreateToken(join(data, 'write.token'), values.token ?? process.env.GLASSLOG_TOKEN);

  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  const db = await openDatabase(data, databaseUrl, values.schema);
  const embedded = db.embedded;
  const store = new PostgresLogStore(db.sql, db.options);
  const auditStore = new PostgresAuditStore(db.sql, db.options);

  const metrics = new Registry();
  let logRef: Log | undefined;
  let witnessing: WitnessingOptions | undefined;
  if (policy) {
    const p = policy;
    const cosigning = new Cosigning({
      witnesses: p.witnesses.map((w) => ({ name: w.name, verifier: w.verifier, url: w.url! })),
      proof: (oldSize, newSize) => logRef!.treeConsistencyProof(oldSize, newSize),
      timeoutMs: witnessTimeoutMs,
      metrics,
      onAlarm: (witness, message) => console.error(`glasslog: ALARM witness ${witness}: ${message}`),
    });
    const quorum = (cosigned: ReadonlySet<string>) => quorumMet(p, cosigned);
    witnessing = { cosign: (cp) => cosigning.cosign(cp, quorum), quorum, failClosed: witnessMode === 'fail-closed' };
  }

  let log: Log;
  try {
    log = logRef = await Log.open({
      metrics,
      witnessing,
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

  const pool = new VerifyPool();
  let audit: AuditLog;
  try {
    audit = await AuditLog.open({ log, store: auditStore, logSkey: skey, pool, rate: { perSecond: agentRate, burst: agentBurst } });
  } catch (err) {
    await log.close().catch(() => undefined);
    await embedded?.close().catch(() => undefined);
    throw err;
  }
  const access = new Access(auditStore, [token]);
  const app = createLogApp({ log, writeTokens: [token], maxBatchEntries: batchSize, audit: { audit, access } });
  const listener = withFastTiles(log, getRequestListener(app.fetch));
  const server = await listenHttp(listener, listen);
  console.log(`glasslog: origin ${origin}`);
  console.log(`glasslog: verifier key ${vkey} (in ${join(data, 'log.vkey')})`);
  console.log(`glasslog: storage ${db.description}`);
  console.log(`glasslog: write token in ${values.token || process.env.GLASSLOG_TOKEN ? '--token / $GLASSLOG_TOKEN' : join(data, 'write.token')}`);
  console.log(`glasslog: tree size ${log.checkpoint().treeSize}`);
  if (policy) {
    console.log(`glasslog: witnesses ${policy.witnesses.map((w) => w.name).join(', ')}; quorum ${describeQuorum(policy)}; ${witnessMode}`);
  }
  const missing = missingNodeOptions(process.execArgv, process.env.NODE_OPTIONS);
  if (missing.length > 0) console.log(`glasslog: hint: start node with ${missing.join(' ')} (as npm start does): without it serving entry bundles costs nearly twice the CPU`);
  console.log(`glasslog: listening on ${server.url}`);

  onSignals(async (signal) => {
    console.log(`glasslog: ${signal}: shutting down`);
    // Drain: what is already submitted is sequenced, integrated and published; writes
    // arriving from now on get 503 "shutting down".
    await server.stop(async () => {
      // Writers still waiting for the index are told to retry (503); their entries are
      // sequenced, and a retry is answered as a duplicate once the index catches up.
      await audit.close();
      await log.close();
      await pool.close();
    });
    await embedded?.close();
  });
  return -1; // keep running
}
