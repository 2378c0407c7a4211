/**
 * End to end with real processes: `glasslog serve --policy … --witness-mode fail-closed` and
 * `glasslog witness` processes, checked with the independent witness client and cosignature
 * verifier (test/e2e/witness-client.ts, which imports nothing from src/), and a malicious log
 * double (test/e2e/evil-log.ts) that signs two histories with a real log key.
 *
 * 1. A log with three witnesses and a 2-of-3 quorum: receipts carry ≥ 2 valid
 *    cosignatures; a SIGKILLed witness keeps its state across a restart and cosigns again
 *    after the log's 409-driven catch-up; with two witnesses down no receipt is given until
 *    one is back.
 * 2. The witness protocol (c2sp.org/tlog-witness) driven by the independent client.
 * 3. A forking log: two witnesses shown different histories find the fork through gossip,
 *    serve evidence that verifies offline with the log's key alone, refuse the log from
 *    then on, and raise a webhook alarm.
 *
 * Storage: the Postgres at $DATABASE_URL (a schema per process) when set, else embedded
 * PGlite. Needs `npm run build` first (it runs dist/cli/main.js).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DATABASE_URL,
  ServerProcess,
  WitnessProcess,
  dropSchema,
  freePort,
  killAllServers,
  removeDataDir,
  runKeygen,
  tempDataDir,
  uniqueSchema,
  type ServerOptions,
  type WitnessOptions,
} from './server.js';
import * as tlog from './tlog-client.js';
import { postEntry } from './writes.js';
import {
  TLOG_SIZE_TYPE,
  TYPE_COSIGNATURE_V1,
  TYPE_ED25519,
  addCheckpoint,
  consistencyProof,
  fetchForkEvidence,
  fetchMonitoringCheckpoint,
  formatAddCheckpoint,
  generateLogSigner,
  leafHash,
  parseNote,
  parseVerifierKey,
  postAddCheckpoint,
  request,
  signNote,
  signatureLine,
  signedCheckpoint,
  treeHash,
  validCosigners,
  verifyConsistency,
  verifyForkEvidenceOffline,
  verifyLogCheckpoint,
  checkpointText,
  type VerifierKey,
} from './witness-client.js';
import { EvilLog, forkedHistories, type Branch } from './evil-log.js';

const STORE = DATABASE_URL ? 'postgres' : 'pglite';
const timings: string[] = [];
const schemas: string[] = [];
const dirs: string[] = [];

afterAll(async () => {
  await killAllServers();
  if (DATABASE_URL) for (const s of schemas) await dropSchema(DATABASE_URL, s).catch(() => undefined);
  for (const d of dirs) removeDataDir(d);
  if (timings.length) console.log(`witness.test timings (${STORE}):\n  ${timings.join('\n  ')}`);
}, 60_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something other than undefined, or fails after `timeoutMs`. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

function storage(tag: string): { databaseUrl?: string; schema?: string } {
  if (!DATABASE_URL) return {};
  const schema = uniqueSchema(tag);
  schemas.push(schema);
  return { databaseUrl: DATABASE_URL, schema };
}

function readVkey(file: string): string {
  return readFileSync(file, 'utf8').trim();
}

// ---------------------------------------------------------------------------------------
// 1. A log with three witnesses, fail-closed, quorum 2 of 3

describe(`a fail-closed log with three witnesses, quorum 2 of 3 (${STORE})`, { timeout: 180_000 }, () => {
  const ORIGIN = 'e2e.test/witnessed-log';
  const NAMES = ['w1', 'w2', 'w3'] as const;
  let logOpts: ServerOptions;
  let log: ServerProcess;
  let logVerifier: VerifierKey;
  let tlogVerifier: tlog.Verifier;
  const wOpts: WitnessOptions[] = [];
  const w: WitnessProcess[] = [];
  const wKeys: VerifierKey[] = [];
  /** Leaf hashes of the log's entries, by index (every write is sequential). */
  const leaves: Buffer[] = [];

  beforeAll(async () => {
    const root = tempDataDir('witness-quorum');
    dirs.push(root);
    const [logPort, ...wPorts] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const logData = join(root, 'log');
    mkdirSync(logData);
    await runKeygen(['--name', ORIGIN, '--out', join(logData, 'log.key')]);
    const logVkey = readVkey(join(logData, 'log.key.vkey'));
    const wVkeys: string[] = [];
    for (const [i, name] of NAMES.entries()) {
      const dir = join(root, name);
      mkdirSync(dir);
      await runKeygen(['--cosigner', '--name', `e2e.test/${name}`, '--out', join(dir, 'witness.key')]);
      wVkeys.push(readVkey(join(dir, 'witness.key.vkey')));
      wKeys.push(parseVerifierKey(wVkeys[i]!, TYPE_COSIGNATURE_V1));
    }
    logVerifier = parseVerifierKey(logVkey, TYPE_ED25519);
    tlogVerifier = tlog.parseVerifierKey(logVkey);
    const policyFile = join(root, 'policy');
    writeFileSync(
      policyFile,
      [
        '# the log, its witnesses (each other\'s gossip peers), and the quorum',
        `log ${logVkey} http://127.0.0.1:${logPort}`,
        ...NAMES.map((n, i) => `witness ${n} ${wVkeys[i]} http://127.0.0.1:${wPorts[i]}`),
        'group g 2 w1 w2 w3',
        'quorum g',
        '',
      ].join('\n')
    );
    logOpts = {
      dataDir: logData,
      ...storage('wq_log'),
      args: ['--listen', `127.0.0.1:${logPort}`, '--policy', policyFile, '--witness-mode', 'fail-closed', '--witness-timeout-ms', '3000'],
    };
    NAMES.forEach((name, i) => {
      wOpts.push({
        dataDir: join(root, name),
        policyFile,
        listen: `127.0.0.1:${wPorts[i]}`,
        ...storage(`wq_${name}`),
        args: ['--gossip-interval', '1', '--pull-interval', '0'],
      });
    });
    const t0 = performance.now();
    const [l, ...ws] = await Promise.all([ServerProcess.start(logOpts), ...wOpts.map((o) => WitnessProcess.start(o))]);
    log = l!;
    w.push(...ws);
    timings.push(`quorum: log + 3 witnesses first start ${(performance.now() - t0).toFixed(0)} ms (log ${log.startMs.toFixed(0)}, witnesses ${ws.map((x) => x.startMs.toFixed(0)).join('/')})`);
    expect(log.output()).toContain('witnesses w1, w2, w3');
    expect(log.output()).toContain('fail-closed');
    ws.forEach((x, i) => expect(x.vkey).toBe(wVkeys[i]));
  }, 180_000);

  /** Writes one entry and checks its receipt: inclusion, log signature, ≥ 2 valid cosignatures. */
  async function write(allowed: readonly number[] = [0, 1, 2]): Promise<{ index: number; size: number; cosigners: string[] }> {
    const entry = randomBytes(40);
    const r = await postEntry(log.url, log.token, entry);
    expect(r.index).toBe(leaves.length);
    leaves.push(leafHash(entry));
    const { checkpoint } = tlog.verifyTlogProof(r.receipt!, tlogVerifier, leafHash(entry), r.index);
    const cos = validCosigners(checkpoint.note, wKeys);
    expect(cos.size, `receipt for ${r.index}: cosigned by ${[...cos.keys()].join(', ')}`).toBeGreaterThanOrEqual(2);
    for (const vkey of cos.keys()) expect(allowed.map((i) => wKeys[i]!.vkey)).toContain(vkey);
    expect(checkpoint.root.equals(treeHash(leaves, 0, checkpoint.size))).toBe(true);
    return { index: r.index, size: checkpoint.size, cosigners: [...cos.values()].map((c) => c.witness) };
  }

  /** The log's /checkpoint, verified, with its valid cosigners. */
  async function logCheckpoint(): Promise<{ size: number; cosigners: number }> {
    const r = await request(`${log.url}/checkpoint`);
    expect(r.status).toBe(200);
    const cp = verifyLogCheckpoint(r.body, logVerifier);
    return { size: cp.size, cosigners: validCosigners(r.body, wKeys).size };
  }

  /** Witness i's monitoring checkpoint: log-signed, cosigned by witness i, on the log's tree. Null if none. */
  async function monitored(i: number): Promise<{ size: number; timestamp: bigint } | null> {
    const note = await fetchMonitoringCheckpoint(w[i]!.url, ORIGIN);
    if (note === null) return null;
    const cp = verifyLogCheckpoint(note, logVerifier);
    const own = validCosigners(note, [wKeys[i]!]).get(wKeys[i]!.vkey);
    expect(own, `witness ${NAMES[i]} serves a checkpoint without its own cosignature`).toBeDefined();
    expect(cp.size).toBeLessThanOrEqual(leaves.length);
    expect(cp.root.equals(treeHash(leaves, 0, cp.size)), `witness ${NAMES[i]} at size ${cp.size}: not the log's tree`).toBe(true);
    return { size: cp.size, timestamp: own!.timestamp };
  }

  async function metric(name: string, labels: string): Promise<number> {
    const r = await request(`${log.url}/metrics`);
    const line = r.body.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  it('every receipt carries ≥ 2 valid cosignatures; the witnesses serve what they cosigned', async () => {
    for (let k = 0; k < 6; k++) await write();
    const cp = await logCheckpoint();
    expect(cp.size).toBe(6);
    expect(cp.cosigners).toBeGreaterThanOrEqual(2);
    // Each witness cosigned (even the one left behind by an early quorum finishes its request).
    for (const i of [0, 1, 2]) {
      const m = await waitFor(`${NAMES[i]} to cosign`, async () => (await monitored(i)) ?? undefined);
      expect(m.size).toBeGreaterThanOrEqual(1);
      const now = BigInt(Math.floor(Date.now() / 1000));
      expect(m.timestamp > now - 300n && m.timestamp < now + 300n).toBe(true);
    }
    // An unknown origin hash is 404 on the monitoring prefix.
    expect((await request(`${w[0]!.url}/${'0'.repeat(64)}/checkpoint`)).status).toBe(404);
  });

  let s3 = 0;
  it('with one witness SIGKILLed, writes still succeed with 2 of 3', async () => {
    s3 = (await monitored(2))!.size;
    const exit = await w[2]!.kill();
    expect(exit.signal).toBe('SIGKILL');
    const t = performance.now();
    for (let k = 0; k < 4; k++) {
      const r = await write([0, 1]);
      expect(r.cosigners.sort()).toEqual(['e2e.test/w1', 'e2e.test/w2']);
    }
    timings.push(`quorum: 4 writes with w3 down ${(performance.now() - t).toFixed(0)} ms`);
    const cp = await logCheckpoint();
    expect(cp.size).toBe(leaves.length);
    expect(cp.cosigners).toBe(2);
  });

  it('the restarted witness keeps its checkpoint and cosigns again after the log\'s 409-driven catch-up', async () => {
    // Restart the log too (SIGTERM): it forgets what each witness cosigned, so its first
    // request to each one says "old 0" and learns the witness's size from the 409.
    const stop = await log.stop();
    expect(stop.code).toBe(0);
    const t0 = performance.now();
    log = (await ServerProcess.startRetrying(logOpts)).server;
    const cp = await logCheckpoint();
    expect(cp.size).toBe(leaves.length);
    expect(cp.cosigners).toBe(2);

    w[2] = await WitnessProcess.startRetrying(wOpts[2]!);
    timings.push(`quorum: log + w3 restart ${(performance.now() - t0).toFixed(0)} ms (w3 ${w[2].startMs.toFixed(0)} ms)`);
    const kept = await monitored(2);
    expect(kept, 'the restarted witness lost its checkpoint').not.toBeNull();
    expect(kept!.size).toBeGreaterThanOrEqual(s3);
    expect(await metric('glasslog_witness_requests_total', 'outcome="stale_old_size",witness="w3"')).toBe(0);

    // Write until w3 holds the log's latest checkpoint again.
    await waitFor(
      'w3 to cosign the latest checkpoint',
      async () => {
        await write();
        const m = await monitored(2);
        return m && m.size === leaves.length ? m : undefined;
      },
      20_000,
      200
    );
    expect(await metric('glasslog_witness_requests_total', 'outcome="stale_old_size",witness="w3"')).toBeGreaterThanOrEqual(1);
    expect(await metric('glasslog_witness_requests_total', 'outcome="cosigned",witness="w3"')).toBeGreaterThanOrEqual(1);
    // The monitoring endpoints never went backwards and all agree with the log's tree.
    for (const i of [0, 1, 2]) expect((await monitored(i))!.size).toBeGreaterThanOrEqual(1);
  });

  it('with two witnesses down a write gets no receipt until one is back', async () => {
    const before = await logCheckpoint();
    const quorumSize = before.size;
    expect(quorumSize).toBe(leaves.length);
    await Promise.all([w[1]!.kill(), w[2]!.kill()]);

    // A write with a short client timeout: no answer, because no quorum.
    const x = randomBytes(40);
    const t = performance.now();
    const xr = request(`${log.url}/v1/entries`, {
      method: 'POST',
      headers: { authorization: `Bearer ${log.token}`, 'content-type': 'application/octet-stream' },
      body: x,
      timeoutMs: 4000,
    });
    // Meanwhile the served checkpoint does not move past the last quorum.
    const sizes: number[] = [];
    const watch = (async () => {
      while (performance.now() - t < 3800) {
        sizes.push((await logCheckpoint()).size);
        await sleep(200);
      }
    })();
    await expect(xr).rejects.toThrow(/timed out/);
    await watch;
    expect(performance.now() - t).toBeGreaterThanOrEqual(3900);
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    expect(new Set(sizes)).toEqual(new Set([quorumSize]));
    expect(log.output()).toMatch(/not published: witness quorum not met/);
    leaves.push(leafHash(x)); // sequenced at quorumSize (checked below)

    // A second write waits; bring one witness back and it completes.
    const y = randomBytes(40);
    let yDone = false;
    const yr = request(`${log.url}/v1/entries`, {
      method: 'POST',
      headers: { authorization: `Bearer ${log.token}`, 'content-type': 'application/octet-stream' },
      body: y,
      timeoutMs: 90_000,
    }).finally(() => (yDone = true));
    await sleep(1500);
    expect(yDone).toBe(false);
    expect((await logCheckpoint()).size).toBe(quorumSize);
    const t1 = performance.now();
    w[1] = await WitnessProcess.startRetrying(wOpts[1]!);
    const ans = await yr;
    timings.push(`quorum: w2 restart to receipt ${(performance.now() - t1).toFixed(0)} ms`);
    expect(ans.status).toBe(201);
    const res = JSON.parse(ans.body) as { index: number; receipt: string };
    expect(res.index).toBe(quorumSize + 1);
    leaves.push(leafHash(y));
    const { checkpoint } = tlog.verifyTlogProof(res.receipt, tlogVerifier, leafHash(y), res.index);
    const cos = validCosigners(checkpoint.note, wKeys);
    expect([...cos.values()].map((c) => c.witness).sort()).toEqual(['e2e.test/w1', 'e2e.test/w2']);
    expect(checkpoint.root.equals(treeHash(leaves, 0, checkpoint.size))).toBe(true);
    // The timed-out write was sequenced too, and is in the cosigned tree.
    const xReceipt = await request(`${log.url}/v1/receipts/${quorumSize}`);
    expect(xReceipt.status).toBe(200);
    tlog.verifyTlogProof(xReceipt.body, tlogVerifier, leafHash(x), quorumSize);
    const after = await logCheckpoint();
    expect(after.size).toBe(leaves.length);
    expect(after.cosigners).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------
// 2 and 3. Witnesses A and B: the protocol, then a forking log

describe(`witness protocol and fork detection (${STORE})`, { timeout: 180_000 }, () => {
  const T = generateLogSigner('e2e.test/client-log');
  const Tkey = parseVerifierKey(T.vkey, TYPE_ED25519);
  let evil: EvilLog;
  let A: WitnessProcess;
  let B: WitnessProcess;
  let Akey: VerifierKey;
  let Bkey: VerifierKey;
  let hook: http.Server;
  const alarms: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    const root = tempDataDir('witness-fork');
    dirs.push(root);
    await runKeygen(['--name', 'e2e.test/forking-log', '--out', join(root, 'evil.key')]);
    evil = await EvilLog.start({ skey: readFileSync(join(root, 'evil.key'), 'utf8'), histories: forkedHistories(5, 8, 13) });
    expect(evil.vkey).toBe(readVkey(join(root, 'evil.key.vkey')));
    hook = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          alarms.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
        } catch {
          alarms.push({ unparsable: Buffer.concat(chunks).toString('utf8') });
        }
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    const hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/alarm`;

    const [pA, pB] = await Promise.all([freePort(), freePort()]);
    const vk: Record<string, string> = {};
    for (const n of ['A', 'B']) {
      mkdirSync(join(root, n));
      await runKeygen(['--cosigner', '--name', `e2e.test/witness-${n}`, '--out', join(root, n, 'witness.key')]);
      vk[n] = readVkey(join(root, n, 'witness.key.vkey'));
    }
    const peers = [`witness A ${vk.A} http://127.0.0.1:${pA}`, `witness B ${vk.B} http://127.0.0.1:${pB}`];
    writeFileSync(join(root, 'policy-A'), [`log ${T.vkey}`, `log ${evil.vkey} ${evil.prefix('a')}`, ...peers, ''].join('\n'));
    writeFileSync(join(root, 'policy-B'), [`log ${evil.vkey} ${evil.prefix('b')}`, ...peers, ''].join('\n'));
    const opts = (n: 'A' | 'B', port: number): WitnessOptions => ({
      dataDir: join(root, n),
      policyFile: join(root, `policy-${n}`),
      listen: `127.0.0.1:${port}`,
      ...storage(`wf_${n}`),
      args: ['--gossip-interval', '1', '--pull-interval', '0', '--webhook', hookUrl],
    });
    const t0 = performance.now();
    [A, B] = await Promise.all([WitnessProcess.start(opts('A', pA)), WitnessProcess.start(opts('B', pB))]);
    timings.push(`fork: 2 witnesses first start ${(performance.now() - t0).toFixed(0)} ms`);
    Akey = parseVerifierKey(A.vkey, TYPE_COSIGNATURE_V1);
    Bkey = parseVerifierKey(B.vkey, TYPE_COSIGNATURE_V1);
    expect(A.vkey).toBe(vk.A);
  }, 180_000);

  afterAll(async () => {
    await evil?.close();
    await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
  });

  it('speaks c2sp.org/tlog-witness to an independent client: TOFU, 409, proofs, 422, 404, 403, 400', async () => {
    const leaves = Array.from({ length: 12 }, () => leafHash(randomBytes(24)));
    const cp = (n: number) => signedCheckpoint(T, leaves, n);
    const now = () => BigInt(Math.floor(Date.now() / 1000));

    // Nothing cosigned yet: the monitoring endpoint says 404.
    expect(await fetchMonitoringCheckpoint(A.url, T.name)).toBeNull();

    // Before any state: a non-zero old size is 409 with size 0; a size 0 checkpoint needs
    // the empty root (422); from size 0 the proof must be empty (422). None of them stores.
    const noState = await addCheckpoint(A.url, Akey, 3, consistencyProof(3, 4, leaves), cp(4).note);
    expect([noState.status, noState.body]).toEqual([409, '0\n']);
    const badEmpty = signNote(checkpointText(T.name, 0, Buffer.alloc(32, 1)), [T]);
    expect((await addCheckpoint(A.url, Akey, 0, [], badEmpty)).status).toBe(422);
    expect((await addCheckpoint(A.url, Akey, 0, [leaves[0]!], cp(4).note)).status).toBe(422);
    expect(await fetchMonitoringCheckpoint(A.url, T.name)).toBeNull();

    // Trust on first use: old 0, no proof.
    const r4 = await addCheckpoint(A.url, Akey, 0, [], cp(4).note);
    expect(r4.status, r4.body).toBe(200);
    expect(r4.contentType).toMatch(/^text\/plain/);
    expect(r4.cosignature!.timestamp > now() - 300n && r4.cosignature!.timestamp < now() + 300n).toBe(true);
    // The cosignature line decodes to 76 bytes: key ID, timestamp, Ed25519 signature.
    const line = parseNote(r4.cosignedNote!).signatures.find((s) => s.name === Akey.name)!;
    expect(4 + line.body.length).toBe(76);
    expect(line.keyId.equals(Akey.keyId)).toBe(true);

    // old 0 again, now that it holds size 4: 409 with its size as text/x.tlog.size.
    const c409 = await addCheckpoint(A.url, Akey, 0, [], cp(7).note);
    expect(c409.status).toBe(409);
    expect(c409.contentType.split(';')[0]).toBe(TLOG_SIZE_TYPE);
    expect(c409.body).toBe('4\n');
    expect(c409.witnessSize).toBe(4);
    // A wrong non-zero old size is a 409 too (with a proof that would be valid from it).
    const c409b = await addCheckpoint(A.url, Akey, 2, consistencyProof(2, 7, leaves), cp(7).note);
    expect(c409b.status).toBe(409);
    expect(c409b.witnessSize).toBe(4);

    // A consistency proof computed here, from the leaves.
    const p47 = consistencyProof(4, 7, leaves);
    verifyConsistency(4, 7, p47, cp(4).root, cp(7).root);
    const r7 = await addCheckpoint(A.url, Akey, 4, p47, cp(7).note);
    expect(r7.status, r7.body).toBe(200);
    // old == size with the same root: cosigned again.
    expect((await addCheckpoint(A.url, Akey, 7, [], cp(7).note)).status).toBe(200);

    // A bad proof: one bit flipped, one hash missing, one too many, the proof for other sizes.
    const p712 = consistencyProof(7, 12, leaves);
    verifyConsistency(7, 12, p712, cp(7).root, cp(12).root);
    const flipped = p712.map((h) => Buffer.from(h));
    flipped[1]![5]! ^= 0x01;
    for (const bad of [flipped, p712.slice(0, -1), [...p712, p712[0]!], consistencyProof(6, 12, leaves)]) {
      const r = await addCheckpoint(A.url, Akey, 7, bad, cp(12).note);
      expect(r.status, r.body).toBe(422);
    }
    // old 7 with an empty proof for a larger tree.
    expect((await addCheckpoint(A.url, Akey, 7, [], cp(12).note)).status).toBe(422);
    // Nothing moved.
    const still = verifyLogCheckpoint((await fetchMonitoringCheckpoint(A.url, T.name))!, Tkey);
    expect(still.size).toBe(7);
    // The right proof.
    const r12 = await addCheckpoint(A.url, Akey, 7, p712, cp(12).note);
    expect(r12.status, r12.body).toBe(200);

    // Unknown origin: 404.
    const U = generateLogSigner('e2e.test/unknown-log');
    expect((await addCheckpoint(A.url, Akey, 0, [], signedCheckpoint(U, leaves, 3).note)).status).toBe(404);

    // Untrusted key (same name, another key, so another key ID): 403.
    const T2 = generateLogSigner(T.name);
    expect(T2.keyId.equals(T.keyId)).toBe(false);
    const byT2 = signedCheckpoint(T2, leaves, 12);
    expect((await addCheckpoint(A.url, Akey, 12, [], byT2.note)).status).toBe(403);
    // The trusted key's name and ID on a signature that does not verify: 403.
    const text12 = cp(12).text;
    const forged = text12 + '\n' + signatureLine(T.name, Buffer.concat([T.keyId, T2.sign(text12).subarray(4)]));
    expect((await addCheckpoint(A.url, Akey, 12, [], forged)).status).toBe(403);
    // …even before a valid one (c2sp.org/tlog-witness HEAD: a failing trusted line is 403;
    // a repeated line by the same key after the first is dropped unverified, as go-note does).
    const forgedThenValid = text12 + '\n' + signatureLine(T.name, Buffer.concat([T.keyId, T2.sign(text12).subarray(4)])) + signatureLine(T.name, T.sign(text12));
    expect((await addCheckpoint(A.url, Akey, 12, [], forgedThenValid)).status).toBe(403);
    // An unknown key's signature next to the trusted one is ignored: 200.
    const withUnknown = signNote(text12, [T2, T]);
    const ru = await addCheckpoint(A.url, Akey, 12, [], withUnknown);
    expect(ru.status, ru.body).toBe(200);

    // Malformed requests: 400.
    const note12 = cp(12).note;
    const malformed: Array<string | Buffer> = [
      'hello\n',
      `old 12\n${note12}`, // no blank line before the checkpoint
      `old 012\n\n${note12}`,
      `old -1\n\n${note12}`,
      `old 12\nnot a hash!\n\n${note12}`,
      `old 12\n${Buffer.alloc(31).toString('base64')}\n\n${note12}`,
      `old 12\n\n${text12}`, // a checkpoint without signatures
      `old 12\n\n${'e2e.test/client-log\nlots\n' + Buffer.alloc(32).toString('base64') + '\n'}\n${signatureLine(T.name, T.sign('x\n'))}`,
      formatAddCheckpoint(13, [], note12), // old larger than the checkpoint
    ];
    for (const body of malformed) {
      const r = await postAddCheckpoint(A.url, body);
      expect(r.status, `${JSON.stringify(String(body).slice(0, 40))}: ${r.body}`).toBe(400);
    }

    // The monitoring endpoint: the latest cosigned checkpoint, with the log's signature and the witness's.
    const mon = (await fetchMonitoringCheckpoint(A.url, T.name))!;
    const mcp = verifyLogCheckpoint(mon, Tkey);
    expect(mcp.size).toBe(12);
    expect(mcp.root.equals(cp(12).root)).toBe(true);
    expect(validCosigners(mon, [Akey]).has(Akey.vkey)).toBe(true);

    // old == size with a different root (check 7): 422, and a fork in the log's own hand.
    const other = [...leaves.slice(0, 11), leafHash(Buffer.from('the other entry 11'))];
    const conflicting = signedCheckpoint(T, other, 12);
    expect((await addCheckpoint(A.url, Akey, 12, [], conflicting.note)).status).toBe(422);
    const ev = await waitFor('evidence of the equal-size fork', () => fetchForkEvidence(A.url, T.name).then((e) => e ?? undefined), 10_000);
    const v = verifyForkEvidenceOffline(ev, Tkey);
    expect(v.smaller.size).toBe(12);
    expect(v.larger.size).toBe(12);
    expect(new Set([v.smaller.root.toString('hex'), v.larger.root.toString('hex')])).toEqual(new Set([cp(12).root.toString('hex'), conflicting.root.toString('hex')]));
    // From then on the log is refused, even with a request that was fine before.
    expect((await addCheckpoint(A.url, Akey, 12, [], note12)).status).toBe(403);
    expect(verifyLogCheckpoint((await fetchMonitoringCheckpoint(A.url, T.name))!, Tkey).root.equals(cp(12).root)).toBe(true);
  });

  it('catches a log that shows two histories to two witnesses, with evidence anyone can check offline', async () => {
    const E = evil.verifier;
    const origin = evil.origin;
    const branchOf: Record<'A' | 'B', Branch> = { A: 'a', B: 'b' };
    const keyOf = { A: Akey, B: Bkey };
    const urlOf = { A: A.url, B: B.url };

    // Watch both monitoring endpoints throughout.
    const seen: Array<{ who: 'A' | 'B'; size: number; root: Buffer; cosigned: boolean }> = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const who of ['A', 'B'] as const) {
          const note = await fetchMonitoringCheckpoint(urlOf[who], origin).catch(() => null);
          if (note === null) continue;
          const cp = verifyLogCheckpoint(note, E);
          seen.push({ who, size: cp.size, root: cp.root, cosigned: validCosigners(note, [keyOf[who]]).has(keyOf[who].vkey) });
        }
        await sleep(100);
      }
    })();

    try {
      // Each witness accepts its own branch: consistent extensions of what it cosigned.
      const pushes: Array<[who: 'A' | 'B', old: number, size: number]> = [
        ['A', 0, 3],
        ['B', 0, 3],
        ['A', 3, 8],
        ['B', 3, 13],
      ];
      for (const [who, old, size] of pushes) {
        const r = await evil.push(urlOf[who], keyOf[who], branchOf[who], old, size);
        expect(r.status, `${who} ${old}→${size}: ${r.body}`).toBe(200);
      }
      const t0 = performance.now();

      // Within a gossip round, one of them proves the fork (B can: it reads the larger tree
      // from its branch's tiles); the other adopts the evidence in a following round.
      const first = await waitFor(
        'fork evidence at either witness',
        async () => {
          for (const who of ['A', 'B'] as const) {
            const e = await fetchForkEvidence(urlOf[who], origin);
            if (e !== null) return { who, evidence: e };
          }
          return undefined;
        },
        10_000
      );
      timings.push(`fork: first evidence (at ${first.who}) ${(performance.now() - t0).toFixed(0)} ms after the last push`);
      const check = (evidence: string) => {
        const v = verifyForkEvidenceOffline(evidence, E);
        expect(v.smaller.size).toBe(8);
        expect(v.larger.size).toBe(13);
        expect(v.smaller.root.equals(evil.root('a', 8))).toBe(true);
        expect(v.larger.root.equals(evil.root('b', 13))).toBe(true);
        expect(v.prefixRoot!.equals(evil.root('b', 8))).toBe(true);
        expect(v.prefixRoot!.equals(v.smaller.root)).toBe(false);
        // Only the log's key is needed: a tampered copy fails.
        const lines = evidence.split('\n');
        lines[1] = Buffer.alloc(32, 7).toString('base64');
        expect(() => verifyForkEvidenceOffline(lines.join('\n'), E)).toThrow();
        expect(() => verifyForkEvidenceOffline(evidence, parseVerifierKey(generateLogSigner(origin).vkey))).toThrow();
      };
      check(first.evidence);
      const otherWho = first.who === 'A' ? 'B' : 'A';
      const second = await waitFor('fork evidence at the other witness', () => fetchForkEvidence(urlOf[otherWho], origin).then((e) => e ?? undefined), 10_000);
      timings.push(`fork: evidence at both ${(performance.now() - t0).toFixed(0)} ms after the last push`);
      check(second);

      // Both now refuse the log, whichever history it offers, with any old size.
      for (const who of ['A', 'B'] as const) {
        for (const [branch, old, size] of [
          ['a', 8, 8],
          ['b', 13, 13],
          ['b', 8, 13],
          ['a', 0, 8],
        ] as Array<[Branch, number, number]>) {
          const r = await evil.push(urlOf[who], keyOf[who], branch, old, size);
          expect(r.status, `${who} ← history ${branch} ${old}→${size}: ${r.body}`).toBe(403);
        }
      }

      // The webhook heard of the fork from both witnesses.
      const forkAlarms = await waitFor(
        'fork alarms from both witnesses',
        async () => {
          const mine = alarms.filter((a) => a.kind === 'fork' && a.origin === origin);
          const from = new Set(mine.map((a) => a.witness));
          return from.has(A.vkey) && from.has(B.vkey) ? mine : undefined;
        },
        10_000
      );
      for (const a of forkAlarms) {
        expect(typeof a.message).toBe('string');
        verifyForkEvidenceOffline(String(a.evidence), E);
      }
    } finally {
      watching = false;
      await watcher;
    }

    // No honest witness cosigned both branches: every checkpoint either served was of its own
    // history, carrying its own cosignature, and the last ones are where the pushes left them.
    expect(seen.filter((s) => s.who === 'A').length).toBeGreaterThan(0);
    expect(seen.filter((s) => s.who === 'B').length).toBeGreaterThan(0);
    for (const s of seen) {
      expect(s.cosigned).toBe(true);
      expect(s.root.equals(evil.root(branchOf[s.who], s.size)), `${s.who} served size ${s.size} of the other branch`).toBe(true);
    }
    const lastA = verifyLogCheckpoint((await fetchMonitoringCheckpoint(A.url, origin))!, E);
    const lastB = verifyLogCheckpoint((await fetchMonitoringCheckpoint(B.url, origin))!, E);
    expect([lastA.size, lastA.root.equals(evil.root('a', 8))]).toEqual([8, true]);
    expect([lastB.size, lastB.root.equals(evil.root('b', 13))]).toEqual([13, true]);
    expect(evil.root('a', 8).equals(evil.root('b', 8))).toBe(false);
    // B read its branch's tiles to build the proof.
    expect(evil.served.some((p) => p.startsWith('/b/tile/0/'))).toBe(true);
    // Nothing in the checkpoint text beyond the three lines (sanity of the double).
    expect(evil.checkpoint('a', 8).text).toBe(checkpointText(origin, 8, evil.root('a', 8)));
  });
});
