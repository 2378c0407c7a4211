import { existsSync, mkdirSync, readFileSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { getRequestListener } from '@hono/node-server';
import { createWitnessApp } from '../http/witness-app.js';
import { Registry } from '../metrics.js';
import { newCosigner } from '../note/cosignature.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { ALG_COSIGNATURE_V1, formatVerifierKey, generateKey, isValidKeyName, parseSignerKey } from '../note/keys.js';
import { schemaConnection } from '../storage/postgres.js';
import { PostgresWitnessStore } from '../storage/witness-store.js';
import { type Policy } from '../verify/policy.js';
import { Gossip } from '../witness/gossip.js';
import { Witness, type Alarm } from '../witness/witness.js';
import { listenHttp, loadOrCreateToken, onSignals, openDatabase, parseListen, positiveInt, readPolicyFile, useNodeSha256 } from './common.js';

const HELP = `Usage: glasslog witness --policy <file> [options]

Runs a C2SP tlog-witness: it cosigns checkpoints of the logs it trusts, only as
consistent extensions of what it cosigned before; serves what it cosigned to
monitors; gossips with peer witnesses and stores evidence of any fork it finds.

The policy file is in C2SP tlog-policy format: "log <vkey> [<url>]" lines name
the logs it trusts (with a URL it can also pull their checkpoints and read their
tiles), "witness <name> <vkey> <url>" lines name peer witnesses to gossip with
(this witness's own line, if present, is skipped). A quorum line is optional
here. The file is reloaded when it changes and on SIGHUP.

Options:
  --policy <file>           the trust policy (required)
  --data <dir>              data directory (default ./witness-data): the
                            cosigner key witness.key, its verifier key
                            witness.vkey, the operator token admin.token, and
                            the embedded database pglite/
  --listen <host:port>      address to serve HTTP on (default 127.0.0.1:8090)
  --database-url <url>      a Postgres URL (default: embedded PGlite in --data)
  --schema <name>           the Postgres schema (default glasslog_witness)
  --name <name>             the key name on first start (default
                            <hostname>/witness); later starts read it from the key
  --gossip-interval <s>     seconds between gossip rounds (default 60, 0 = off)
  --pull-interval <s>       seconds between pulls from logs with a URL
                            (default 60, 0 = off)
  --webhook <url>           POST a JSON alarm here on every fork found
  --admin-token <token>     operator token (default <data>/admin.token)
  -h, --help                this text
`;

function loadOrCreateCosigner(keyFile: string, vkeyFile: string, name: string | undefined): { skey: string; vkey: string } {
  if (existsSync(keyFile)) {
    const skey = readFileSync(keyFile, 'utf8').trim();
    const k = parseSignerKey(skey);
    if (k.alg !== ALG_COSIGNATURE_V1) throw new Error(`${keyFile} is not a cosignature/v1 (type 0x04) key`);
    if (name !== undefined && name !== k.name) throw new Error(`the witness key ${keyFile} is named "${k.name}", not "${name}"`);
    const vkey = formatVerifierKey(k.name, k.alg, k.publicKey);
    if (!existsSync(vkeyFile)) writeFileSync(vkeyFile, vkey + '\n');
    return { skey, vkey };
  }
  const n = name ?? `${hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-') || 'localhost'}/witness`;
  if (!isValidKeyName(n)) throw new Error(`--name ${JSON.stringify(n)} is not a valid key name (no spaces, no "+")`);
  const { skey, vkey } = generateKey(n, ALG_COSIGNATURE_V1);
  writeFileSync(keyFile, skey + '\n', { mode: 0o600, flag: 'wx' });
  writeFileSync(vkeyFile, vkey + '\n');
  return { skey, vkey };
}

/** A witness's policy: its logs and peers; it has no use for a quorum. */
function readPolicy(file: string): Policy {
  return readPolicyFile(file, { quorumOptional: true });
}

/** Runs `round` every `seconds`, never two at once. Returns a stopper. */
function every(seconds: number, round: () => Promise<void>): () => Promise<void> {
  if (seconds === 0) return async () => undefined;
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = round().finally(() => (running = undefined));
  }, seconds * 1000);
  return async () => {
    clearInterval(timer);
    await running;
  };
}

export async function witnessCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      policy: { type: 'string' },
      data: { type: 'string', default: './witness-data' },
      listen: { type: 'string', default: '127.0.0.1:8090' },
      'database-url': { type: 'string' },
      schema: { type: 'string', default: 'glasslog_witness' },
      name: { type: 'string' },
      'gossip-interval': { type: 'string' },
      'pull-interval': { type: 'string' },
      webhook: { type: 'string' },
      'admin-token': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.policy) throw new Error('--policy <file> is required (see glasslog witness --help)');
  useNodeSha256();
  const listen = parseListen(values.listen);
  const gossipEvery = positiveInt(values['gossip-interval'], 'gossip-interval', 60, 0);
  const pullEvery = positiveInt(values['pull-interval'], 'pull-interval', 60, 0);
  const webhook = values.webhook;
  if (webhook !== undefined && !/^https?:\/\//.test(webhook)) throw new Error(`--webhook must be an http(s) URL, got ${JSON.stringify(webhook)}`);
  schemaConnection(values.schema);
  const policyFile = resolve(values.policy);
  const policy = readPolicy(policyFile);

  const data = resolve(values.data);
  mkdirSync(data, { recursive: true });
  const { skey, vkey } = loadOrCreateCosigner(join(data, 'witness.key'), join(data, 'witness.vkey'), values.name);
  const adminToken = loadOrCreateToken(join(data, 'admin.token'), values['admin-token'], '--admin-token');

  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  const db = await openDatabase(data, databaseUrl, values.schema);
  const embedded = db.embedded;
  const store = new PostgresWitnessStore(db.sql, db.options);

  const metrics = new Registry();
  const sendAlarm = (a: Alarm) => {
    if (!webhook || a.kind !== 'fork') return;
    fetch(webhook, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ origin: a.origin, kind: a.kind, message: a.message, evidence: a.evidence, witness: vkey }),
      signal: AbortSignal.timeout(10_000),
    }).then(
      (r) => r.body?.cancel(),
      (err) => console.error(`glasslog witness: webhook ${webhook} failed: ${(err as Error).message}`)
    );
  };
  let gossip: Gossip | undefined;
  let witness: Witness;
  try {
    witness = await Witness.open({
      store,
      cosigner: newCosigner(skey, nodeEd25519),
      policy,
      metrics,
      onAlarm: sendAlarm,
      tiles: (log) => gossip?.tileClient(log),
    });
  } catch (err) {
    await store.close().catch(() => undefined);
    await embedded?.close().catch(() => undefined);
    throw err;
  }
  gossip = new Gossip(witness);
  const g = gossip;

  const reload = async (why: string) => {
    try {
      await witness.setPolicy(readPolicy(policyFile));
      console.log(`glasslog witness: policy reloaded (${why}): ${witness.currentPolicy().logs.length} log(s), ${witness.currentPolicy().witnesses.length} witness(es)`);
    } catch (err) {
      console.error(`glasslog witness: policy not reloaded, keeping the previous one: ${(err as Error).message}`);
    }
  };
  watchFile(policyFile, { interval: 1000 }, (cur, prev) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size) void reload('file changed');
  });
  process.on('SIGHUP', () => void reload('SIGHUP'));

  const stopGossip = every(gossipEvery, async () => {
    const r = await g.gossipRound();
    for (const e of r.errors) console.error(`glasslog witness: gossip: ${e}`);
  });
  const stopPull = every(pullEvery, async () => {
    for (const [origin, outcome] of await g.pullRound()) {
      if (outcome.startsWith('error')) console.error(`glasslog witness: pull ${origin}: ${outcome}`);
    }
  });

  const app = createWitnessApp({ witness, metrics, adminTokens: [adminToken] });
  const server = await listenHttp(getRequestListener(app.fetch), listen);
  console.log(`glasslog witness: name ${witness.name}`);
  console.log(`glasslog witness: verifier key ${vkey} (in ${join(data, 'witness.vkey')})`);
  console.log(`glasslog witness: policy ${policyFile}: ${policy.logs.length} log(s), ${policy.witnesses.length} witness(es)`);
  console.log(`glasslog witness: storage ${db.description}`);
  console.log(`glasslog witness: gossip every ${gossipEvery || '-'} s, pull every ${pullEvery || '-'} s`);
  console.log(`glasslog witness: listening on ${server.url}`);

  onSignals(async (signal) => {
    console.log(`glasslog witness: ${signal}: shutting down`);
    unwatchFile(policyFile);
    await server.stop(async () => {
      await stopGossip();
      await stopPull();
    });
    await witness.close();
    await embedded?.close();
  });
  return -1; // keep running
}
