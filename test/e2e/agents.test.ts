/**
 * End to end: the agent layer (spec/agent-api.md, spec/agent-entries.md) on the real
 * server process (node dist/cli/main.js serve), on embedded PGlite, or on the Postgres at
 * $DATABASE_URL (each test in its own schema) when it is set.
 *
 *  1. The README's "Agents" example, as written: its ```sh block (keygen, register, agent
 *     credential) run with bash, its ```js block written to agent-run.mjs and run with node;
 *     then the run is read back publicly (closed, audited clean, proofs verify) and its
 *     payloads need a reader credential.
 *  2. Crash safety: four AgentClient writers on four runs of one agent, the server SIGKILLed
 *     at random moments three times; the writers resubmit what was cut off (AgentRun keeps
 *     it) and close their runs. Every receipt stays valid, every run audits clean, no
 *     (agent, run, seq) is logged twice, every payload is readable (a resubmission repairs a
 *     payload the crash lost between sequencing and indexing).
 *  3. Key rotation across a restart: old-key entries refused (403 naming the rotation
 *     index), new-key entries accepted, both key periods in the agent's history.
 *
 * The three servers' first starts (PGlite initdb, 5–17 s each) run in parallel in
 * beforeAll. Needs `npm run build` first.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentApiError, AgentClient, type AgentRun, type PreparedEntry, type VerifiedReceipt } from '../../src/client/agent.js';
import { decodeBase64, encodeBase64, equalBytes } from '../../src/core/encoding.js';
import { leafHash } from '../../src/core/hash.js';
import { verifyInclusion } from '../../src/core/tree.js';
import { payloadCommitment } from '../../src/entry/payload.js';
import {
  DATABASE_URL,
  MAIN_JS,
  REPO_ROOT,
  ServerProcess,
  dropSchema,
  killAllServers,
  removeDataDir,
  tempDataDir,
  uniqueSchema,
  type ServerOptions,
} from './server.js';
import { audit, fetchVerifiedCheckpoint, fetchVerifiedReceipt, httpRequest, parseVerifierKey, verifyCheckpoint, verifyConsistencyWithServer, type Checkpoint } from './tlog-client.js';

const STORE = DATABASE_URL ? 'postgres' : 'pglite';
const KILLS = 3;
const WRITERS = 4;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const randInt = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));
const b64 = (s: string) => decodeBase64(s, 'test');

// ---------------------------------------------------------------------------------------
// Servers: one per test, their first starts in parallel.

const timings: string[] = [];
const dataDirs: string[] = [];
const schemas: string[] = [];
const workDirs: string[] = [];
const starts = new Map<string, { opts: ServerOptions; server: Promise<ServerProcess> }>();

function serverOptions(tag: string): ServerOptions {
  const dataDir = tempDataDir(`agents-${tag}`);
  dataDirs.push(dataDir);
  if (!DATABASE_URL) return { dataDir };
  const schema = uniqueSchema(`agents_${tag}`);
  schemas.push(schema);
  return { dataDir, databaseUrl: DATABASE_URL, schema };
}

function prestart(tag: string): void {
  const opts = serverOptions(tag);
  const server = ServerProcess.start(opts);
  server.catch(() => undefined); // reported by the test that awaits it
  starts.set(tag, { opts, server });
}

async function firstServer(tag: string): Promise<{ opts: ServerOptions; server: ServerProcess }> {
  const s = starts.get(tag)!;
  const server = await s.server;
  timings.push(`${tag}: first start ${server.startMs.toFixed(0)} ms (started in parallel with the others)`);
  return { opts: s.opts, server };
}

beforeAll(() => {
  for (const tag of ['readme', 'crash', 'rotate']) prestart(tag);
});

afterAll(async () => {
  await killAllServers();
  for (const s of schemas) await dropSchema(DATABASE_URL!, s).catch(() => undefined);
  for (const d of dataDirs) removeDataDir(d);
  if (!process.env.KEEP_E2E_DATA) for (const d of workDirs) rmSync(d, { recursive: true, force: true });
  if (timings.length) console.log(`agents.test on ${STORE}:\n  ${timings.join('\n  ')}`);
}, 60_000);

// ---------------------------------------------------------------------------------------
// HTTP helpers

interface JsonResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function api(base: string, method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<JsonResponse> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const r = await httpRequest(base.replace(/\/+$/, '') + path, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = r.body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json };
}

function expectStatus(r: JsonResponse, status: number, what: string): void {
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status}, expected ${status}: ${r.text.slice(0, 500)}`);
}

async function createCredential(base: string, operatorToken: string, body: Record<string, unknown>): Promise<string> {
  const r = await api(base, 'POST', '/v1/credentials', { token: operatorToken, body });
  expectStatus(r, 201, `POST /v1/credentials ${JSON.stringify(body)}`);
  expect(typeof r.json.token).toBe('string');
  return r.json.token as string;
}

async function registerAgent(base: string, operatorToken: string, agent: string, vkey: string): Promise<number> {
  const r = await api(base, 'POST', '/v1/agents', { token: operatorToken, body: { agent, key: vkey } });
  expectStatus(r, 201, `POST /v1/agents ${agent}`);
  return r.json.index as number;
}

/** An entry of a run or query answer, checked: envelope → leaf hash, inclusion proof → the answer's checkpoint. */
function checkAnswerEntry(e: any, cp: Checkpoint, what: string): Uint8Array {
  const envelope = b64(e.envelope);
  const lh = leafHash(envelope);
  expect(encodeBase64(lh), `${what}: leafHash is the RFC 6962 leaf hash of the envelope`).toBe(e.leafHash);
  verifyInclusion(lh, e.index, cp.size, e.proof.map(b64), cp.root);
  return envelope;
}

// ---------------------------------------------------------------------------------------
// 1. The README example

/** The ```sh and ```js blocks of README.md's "## Agents" section, as written. */
function readmeAgentBlocks(): { sh: string; js: string } {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.search(/^## Agents[ \t]*$/m);
  if (start < 0) throw new Error('README.md has no "## Agents" section');
  const rest = readme.slice(start + 1);
  const end = rest.search(/^## /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  const blocks = (lang: string) => [...section.matchAll(new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```[ \\t]*$', 'gm'))].map((m) => m[1]!);
  const sh = blocks('sh');
  const js = blocks('js');
  if (sh.length !== 1 || js.length !== 1) throw new Error(`README.md "Agents": expected one \`\`\`sh and one \`\`\`js block, found ${sh.length} and ${js.length}`);
  return { sh: sh[0]!, js: js[0]! };
}

/** Replaces every occurrence of `from` (a string or a global regex), requiring at least one. */
function substitute(text: string, from: string | RegExp, to: string, where: string): string {
  const re = typeof from === 'string' ? new RegExp(from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g') : from;
  const n = [...text.matchAll(re)].length;
  if (n === 0) throw new Error(`the README's ${where} block no longer contains ${String(from)}: update the substitutions in test/e2e/agents.test.ts`);
  return text.replace(re, () => to);
}

function execCommand(cmd: string, args: readonly string[], cwd: string, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.DATABASE_URL;
    delete env.GLASSLOG_TOKEN;
    execFile(cmd, args as string[], { cwd, env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe(`agents e2e on ${STORE}`, { timeout: 170_000 }, () => {
  it("runs the README's Agents example as written, and the run reads back audited, proven and private", async () => {
    const { opts, server } = await firstServer('readme');
    const t0 = performance.now();
    const url = server.url;
    const dataDir = opts.dataDir;
    const vkey = server.vkey;
    const verifier = parseVerifierKey(vkey);
    const { sh: shBlock, js: jsBlock } = readmeAgentBlocks();

    // The only substitutions: the README's server URL (http://127.0.0.1:8080) becomes this
    // test's server (a free port), its data directory (data/, relative to the repo root
    // where `npm start` runs) becomes this server's temporary one, and the repo-relative
    // paths of the CLI (node dist/cli/main.js) and of the client module
    // (./dist/client/index.js) become absolute paths of this repository, since the
    // commands run in a temporary working directory. Nothing else is changed; each
    // substitution must apply at least once. The sh block runs with `bash -e -o pipefail`
    // (so a failing step stops it), the js block as agent-run.mjs with node.
    const DATA_REF = /(?<![\w./-])data\//g;
    let sh = substitute(shBlock, 'http://127.0.0.1:8080', url, 'sh');
    sh = substitute(sh, DATA_REF, `${dataDir}/`, 'sh');
    sh = substitute(sh, /(?<![\w./-])node dist\/cli\/main\.js/g, `node ${MAIN_JS}`, 'sh');
    let js = substitute(jsBlock, 'http://127.0.0.1:8080', url, 'js');
    js = substitute(js, DATA_REF, `${dataDir}/`, 'js');
    js = substitute(js, "'./dist/client/index.js'", `'${join(REPO_ROOT, 'dist/client/index.js')}'`, 'js');
    for (const [what, text] of [['sh', sh], ['js', js]] as const) {
      expect(text, `${what} block still names port 8080`).not.toMatch(/:8080\b/);
      expect(text, `${what} block still has a repo-relative dist/ path`).not.toMatch(/(?<![\w/])\.?\/?dist\//);
    }

    const work = mkdtempSync(join(tmpdir(), 'glasslog-e2e-agents-readme-work-'));
    workDirs.push(work);
    writeFileSync(join(work, 'readme-agents.sh'), sh);
    const shRun = await execCommand('bash', ['-e', '-o', 'pipefail', 'readme-agents.sh'], work);
    expect(shRun.code, `the README's sh block failed:\n--- script ---\n${sh}\n--- stdout ---\n${shRun.stdout}\n--- stderr ---\n${shRun.stderr}`).toBe(0);
    expect(shRun.stdout, 'no API call of the sh block answered an error').not.toMatch(/"error"/);
    // keygen printed the verifier key (the one it wrote), the registration its index and receipt.
    const shLines = shRun.stdout.trim().split('\n');
    expect(shLines, `stdout of the sh block:\n${shRun.stdout}`).toHaveLength(2);
    expect(shLines[0]).toBe(readFileSync(join(work, 'support-bot.key.vkey'), 'utf8').trim());
    expect(shLines[0]).toMatch(/^support-bot\+[0-9a-f]{8}\+\S+$/);
    const registered = JSON.parse(shLines[1]!) as { index: unknown; receipt: unknown };
    expect(registered.index).toEqual(expect.any(Number));
    expect(registered.receipt).toMatch(/^c2sp\.org\/tlog-proof@v1\n/);
    expect(readFileSync(join(work, 'support-bot.token'), 'utf8').trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const agentToken = readFileSync(join(work, 'support-bot.token'), 'utf8').trim();

    writeFileSync(join(work, 'agent-run.mjs'), js);
    const jsRun = await execCommand(process.execPath, ['agent-run.mjs'], work);
    expect(jsRun.code, `node agent-run.mjs failed:\n--- agent-run.mjs ---\n${js}\n--- stdout ---\n${jsRun.stdout}\n--- stderr ---\n${jsRun.stderr}`).toBe(0);
    const m = /^run (\S+): entries (\d+)–(\d+), every receipt verified against (\S+)$/m.exec(jsRun.stdout);
    expect(m, `the "every receipt verified" line, in:\n${jsRun.stdout}`).not.toBeNull();
    const runId = m![1]!;
    const first = Number(m![2]);
    const last = Number(m![3]);
    expect(m![4]).toBe(verifier.name);
    expect(last - first).toBe(4);

    // Public read of the run: closed, four events, no findings, five entries in seq order,
    // each proven against the returned (signed) checkpoint.
    const r = await api(url, 'GET', `/v1/agents/support-bot/runs/${runId}`);
    expectStatus(r, 200, 'GET the run');
    const cp = verifyCheckpoint(r.json.checkpoint, verifier);
    expect(r.json.treeSize).toBe(cp.size);
    expect(r.json.closed).toBe(true);
    expect(r.json.count).toBe(4);
    expect(r.json.findings).toEqual([]);
    const entries: any[] = r.json.entries;
    expect(entries.map((e) => e.entry.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(entries.map((e) => e.entry.type)).toEqual(['event', 'event', 'event', 'event', 'run.close']);
    expect(entries.map((e) => e.entry.kind)).toEqual(['prompt', 'model_call', 'tool_call', 'outcome', undefined]);
    expect(entries.map((e) => e.index)).toEqual([first, first + 1, first + 2, first + 3, last]);
    entries.forEach((e, i) => {
      checkAnswerEntry(e, cp, `entry seq ${i}`);
      if (i > 0) expect(e.entry.prev, `seq ${i} links to seq ${i - 1}`).toBe(entries[i - 1].leafHash);
    });

    // Payloads: committed in the entries, readable only with a reader credential.
    const withPayloads = entries.flatMap((e) => Object.keys(e.entry.payloads ?? {}).map((name) => ({ e, name })));
    expect(withPayloads.map((p) => p.name)).toEqual(['text', 'output', 'arguments']);
    const readerToken = await createCredential(url, server.token, { kind: 'reader', agents: ['support-bot'] });
    for (const { e, name } of withPayloads) {
      const path = `/v1/agent-entries/${e.index}/payloads/${name}`;
      const anon = await api(url, 'GET', path);
      expectStatus(anon, 401, `GET ${path} without a credential`);
      expect(anon.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(anon.text).not.toContain('Customer');
      const bogus = await api(url, 'GET', path, { token: 'not-a-token' });
      expectStatus(bogus, 401, `GET ${path} with an unknown token`);
      const asAgent = await api(url, 'GET', path, { token: agentToken });
      expectStatus(asAgent, 403, `GET ${path} with the agent's (write) credential`);
      const ok = await api(url, 'GET', path, { token: readerToken });
      expectStatus(ok, 200, `GET ${path} with a reader credential`);
      expect(ok.json).toMatchObject({ index: e.index, name, agent: 'support-bot', run: runId, commitment: e.entry.payloads[name] });
      const data = b64(ok.json.data);
      expect(encodeBase64(payloadCommitment(b64(ok.json.salt), data)), `${path}: salt + data open the commitment`).toBe(e.entry.payloads[name]);
      const text = Buffer.from(data).toString('utf8');
      expect(jsBlock, `${path}: the payload is the README's text`).toContain(`'${text}'`);
    }
    timings.push(`readme: sh block ${shRun.code === 0 ? 'ok' : 'failed'}, agent-run.mjs ok, whole test ${((performance.now() - t0) / 1000).toFixed(1)} s after the start`);
  });

  // -------------------------------------------------------------------------------------
  // 2. Crash safety

  it(`keeps agent runs whole across ${KILLS} SIGKILLs under concurrent AgentClient writers`, async () => {
    const { opts, server: first } = await firstServer('crash');
    const t0 = performance.now();
    const vkey = first.vkey;
    const verifier = parseVerifierKey(vkey);
    const opToken = first.token;
    const agent = 'crash-bot';
    const keys = AgentClient.generateKey(agent);
    await registerAgent(first.url, opToken, agent, keys.vkey);
    const agentToken = await createCredential(first.url, opToken, { kind: 'agent', agent });
    const readerToken = await createCredential(first.url, opToken, { kind: 'reader', agents: [agent] });

    // The server of the moment; the clients reach whichever is up (a restart gets a new port).
    const ctl = {
      server: first,
      generation: 0,
      down: false,
      upWaiters: [] as Array<() => void>,
      stopWriting: false,
    };
    const PLACEHOLDER = 'http://glasslog.invalid';
    const routed: typeof fetch = (input, init) => {
      const u = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      return fetch(u.replace(PLACEHOLDER, ctl.server.url), init);
    };
    const whenUp = () => (ctl.down ? new Promise<void>((r) => ctl.upWaiters.push(r)) : Promise.resolve());

    interface Prepared {
      readonly writer: number;
      readonly run: string;
      readonly seq: number;
      readonly p: PreparedEntry;
      readonly payload: string | undefined;
      receipts: VerifiedReceipt[];
    }
    const prepared = new Map<string, Prepared>(); // by `${run}#${seq}`
    const violations: string[] = [];
    const stats = {
      perCycle: [] as string[],
      failedCalls: 0,
      flushes: 0,
      resubmitted: 0,
      storedUnanswered: 0,
      payloadLost: 0,
      lostKeys: [] as string[],
    };

    const ack = (pr: Prepared, r: VerifiedReceipt) => {
      if (!equalBytes(r.leafHash, pr.p.signed.leafHash)) violations.push(`${pr.run}#${pr.seq}: receipt for another leaf`);
      if (pr.receipts.some((x) => x.index !== r.index)) violations.push(`${pr.run}#${pr.seq}: receipts at indices ${pr.receipts[0]!.index} and ${r.index}`);
      pr.receipts.push(r);
    };
    /** A failure is expected only if the server was killed since the attempt began. */
    const failure = (err: unknown, gen: number, what: string) => {
      stats.failedCalls++;
      const refused = err instanceof AgentApiError && err.status !== undefined && err.status < 500;
      if (refused || (!ctl.down && ctl.generation === gen)) violations.push(`${what} failed while the server was up: ${String(err)}`);
    };
    const kinds = ['decision', 'model_call', 'tool_call', 'observation'];
    const runs: Array<{ writer: number; run: AgentRun }> = [];

    const writer = async (w: number) => {
      const client = new AgentClient({ url: PLACEHOLDER, agent, token: agentToken, skey: keys.skey, trust: { logKey: vkey }, fetch: routed, retries: 1, backoffMs: 20, timeoutMs: 30_000 });
      const run = client.run(`run-${w}-${Date.now().toString(36)}`);
      runs.push({ writer: w, run });
      const prepare = (seq: number, payload: string | undefined): Prepared => {
        const p = run.pending.find((x) => (x.signed.entry as { seq: number }).seq === seq);
        if (!p) throw new Error(`AgentRun.pending lacks seq ${seq} just after log()`);
        const pr: Prepared = { writer: w, run: run.run, seq, p, payload, receipts: [] };
        prepared.set(`${run.run}#${seq}`, pr);
        return pr;
      };
      /** After a failure: wait for the server, resubmit everything pending (flush). */
      const recover = async () => {
        for (;;) {
          await whenUp();
          const gen = ctl.generation;
          const batch = run.pending;
          try {
            stats.flushes++;
            const receipts = await run.flush();
            if (receipts.length !== batch.length) violations.push(`flush returned ${receipts.length} receipts for ${batch.length} entries`);
            batch.forEach((p, i) => ack(prepared.get(`${run.run}#${(p.signed.entry as { seq: number }).seq}`)!, receipts[i]!));
            stats.resubmitted += batch.length;
            return;
          } catch (err) {
            failure(err, gen, `writer ${w}: flush of ${batch.length}`);
            if (violations.length > 20) return;
          }
        }
      };
      while (!ctl.stopWriting && violations.length === 0) {
        const gen = ctl.generation;
        const calls: Promise<unknown>[] = [];
        for (let k = randInt(1, 3); k > 0; k--) {
          const seq = run.seq;
          const payload = `writer ${w} seq ${seq}: ${randomBytes(randInt(8, 64)).toString('base64')}`;
          const res = run.log(kinds[seq % kinds.length]!, { attrs: { writer: w, step: seq }, payloads: { args: payload } });
          const pr = prepare(seq, payload);
          calls.push(res.then((r) => ack(pr, r)));
        }
        const settled = await Promise.allSettled(calls);
        const bad = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
        if (bad.length > 0) {
          failure(bad[0]!.reason, gen, `writer ${w}: log()`);
          await recover();
        }
      }
      // Finish: anything still pending, then the close.
      if (run.pending.length > 0) await recover();
      const seq = run.seq;
      const gen = ctl.generation;
      const res = run.logClose();
      const pr = prepare(seq, undefined);
      try {
        ack(pr, await res);
      } catch (err) {
        failure(err, gen, `writer ${w}: logClose()`);
        await recover();
      }
      if (run.pending.length !== 0) violations.push(`writer ${w}: ${run.pending.length} entries still pending at the end`);
    };

    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    const writersDone = Promise.allSettled(writers);
    let server = first;
    try {
      for (let cycle = 1; cycle <= KILLS; cycle++) {
        const killAfter = randInt(300, 1500);
        await sleep(killAfter);
        const ackedBefore = [...prepared.values()].filter((p) => p.receipts.length > 0).length;
        ctl.down = true;
        await server.kill();
        const pendingAtKill = runs.reduce((n, r) => n + r.run.pending.length, 0);
        const { server: next, retries } = await ServerProcess.startRetrying(opts);
        server = next;
        // Before the clients resubmit: which of the unanswered entries did the log keep, and
        // did their payloads survive? (Stats; the final checks require every payload.)
        let stored = 0;
        let lost = 0;
        for (const { run } of runs) {
          const q = await api(server.url, 'GET', `/v1/agent-entries?agent=${agent}&run=${run.run}&limit=1000`);
          expectStatus(q, 200, 'query a run after the restart');
          const bySeq = new Map<number, any>(q.json.entries.map((e: any) => [e.entry.seq, e]));
          for (const p of run.pending) {
            const e = bySeq.get((p.signed.entry as { seq: number }).seq);
            if (!e) continue;
            if (e.leafHash !== encodeBase64(p.signed.leafHash)) violations.push(`after restart ${cycle}: ${run.run} seq ${e.entry.seq} holds another entry`);
            stored++;
            for (const name of Object.keys(e.entry.payloads ?? {})) {
              const g = await api(server.url, 'GET', `/v1/agent-entries/${e.index}/payloads/${name}`, { token: readerToken });
              if (g.status === 404) {
                lost++;
                stats.lostKeys.push(`${run.run}#${e.entry.seq}`);
              } else if (g.status !== 200) violations.push(`after restart ${cycle}: payload of index ${e.index}: HTTP ${g.status} ${g.text}`);
            }
          }
        }
        stats.storedUnanswered += stored;
        stats.payloadLost += lost;
        stats.perCycle.push(
          `cycle ${cycle}: kill after ${killAfter} ms, ${ackedBefore} entries acknowledged before it, ${pendingAtKill} pending at the kill, ` +
            `${stored} of them stored (${lost} payloads lost), restart ${server.startMs.toFixed(0)} ms${retries ? ` (${retries} lock retries)` : ''}`,
        );
        ctl.server = server;
        ctl.generation++;
        ctl.down = false;
        for (const r of ctl.upWaiters.splice(0)) r();
      }
      await sleep(randInt(300, 800));
      ctl.stopWriting = true;
      const outcomes = await writersDone;
      outcomes.forEach((o, w) => {
        if (o.status === 'rejected') violations.push(`writer ${w} threw: ${String(o.reason)}`);
      });
      expect(violations, `server output:\n${server.output().slice(-3000)}`).toEqual([]);

      // ---- Final checks, all through public reads (payloads: reader credential) ----
      const url = server.url;
      const all = [...prepared.values()];
      const maxIndex = Math.max(...all.flatMap((p) => p.receipts.map((r) => r.index)));
      const final = await fetchVerifiedCheckpoint(url, verifier);
      expect(final.size).toBeGreaterThan(maxIndex);

      // Every receipt a client was given: its checkpoint is consistent with the final one
      // (so its inclusion proof still holds), and the entry is at the same index now.
      expect(all.every((p) => p.receipts.length > 0), 'every prepared entry got a receipt').toBe(true);
      const roots = new Map<number, Uint8Array>();
      for (const p of all) {
        for (const r of p.receipts) {
          const s = r.checkpoint.treeSize;
          const prev = roots.get(s);
          if (prev && !equalBytes(prev, r.checkpoint.rootHash)) throw new Error(`two roots for tree size ${s} in receipts`);
          roots.set(s, r.checkpoint.rootHash);
        }
      }
      for (const [size, root] of [...roots].sort((a, b) => a[0] - b[0])) {
        await verifyConsistencyWithServer(url, { size, root }, { size: final.size, root: final.root });
      }
      const tree = await audit(url, verifier, undefined, { receiptIndex: maxIndex });
      expect(tree.checkpoint.size).toBeGreaterThanOrEqual(final.size);
      for (const p of all) {
        const index = p.receipts[0]!.index;
        expect(Buffer.from(p.p.signed.bytes).equals(tree.entries[index]!), `${p.run}#${p.seq} at index ${index} in the audited tree`).toBe(true);
        await fetchVerifiedReceipt(url, verifier, index, p.p.signed.leafHash); // the entry at its index in the latest tree
      }

      // Every run: closed, no findings, exactly the entries the writer prepared, in seq order.
      for (const { writer: w, run } of runs) {
        const r = await api(url, 'GET', `/v1/agents/${agent}/runs/${run.run}`);
        expectStatus(r, 200, `GET run ${run.run}`);
        const cp = verifyCheckpoint(r.json.checkpoint, verifier);
        const mine = all.filter((p) => p.writer === w).sort((a, b) => a.seq - b.seq);
        expect(r.json.findings, `run ${run.run}`).toEqual([]);
        expect(r.json.closed).toBe(true);
        expect(r.json.count).toBe(mine.length - 1);
        expect(r.json.entries.map((e: any) => e.entry.seq)).toEqual(mine.map((p) => p.seq));
        r.json.entries.forEach((e: any, i: number) => {
          checkAnswerEntry(e, cp, `${run.run}#${e.entry.seq}`);
          expect(e.leafHash).toBe(encodeBase64(mine[i]!.p.signed.leafHash));
          expect(e.index).toBe(mine[i]!.receipts[0]!.index);
        });
      }

      // No (agent, run, seq) twice: page through every entry of the agent.
      const seen = new Map<string, number>();
      let registrations = 0;
      let pages = 0;
      for (let cursor: string | null = null; ; ) {
        const q = await api(url, 'GET', `/v1/agent-entries?agent=${agent}&limit=37${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expectStatus(q, 200, 'GET /v1/agent-entries page');
        pages++;
        const cp = verifyCheckpoint(q.json.checkpoint, verifier);
        for (const e of q.json.entries) {
          checkAnswerEntry(e, cp, `query entry ${e.index}`);
          if (e.entry.type === 'agent.register') {
            registrations++;
            continue;
          }
          const key = `${e.entry.run}#${e.entry.seq}`;
          if (seen.has(key)) throw new Error(`(${agent}, ${key}) is logged twice: indices ${seen.get(key)} and ${e.index}`);
          seen.set(key, e.index);
        }
        cursor = q.json.next;
        if (cursor === null) break;
        if (pages > 1000) throw new Error('paging does not end');
      }
      expect(registrations).toBe(1);
      expect([...seen.keys()].sort()).toEqual(all.map((p) => `${p.run}#${p.seq}`).sort());

      // Every payload readable with the reader credential, and it opens its commitment.
      const events = all.filter((p) => p.payload !== undefined);
      for (let i = 0; i < events.length; i += 16) {
        await Promise.all(
          events.slice(i, i + 16).map(async (p) => {
            const index = p.receipts[0]!.index;
            const g = await api(url, 'GET', `/v1/agent-entries/${index}/payloads/args`, { token: readerToken });
            expectStatus(g, 200, `payload of ${p.run}#${p.seq} (index ${index})${stats.lostKeys.includes(`${p.run}#${p.seq}`) ? ', lost by a crash and resubmitted' : ''}`);
            expect(Buffer.from(b64(g.json.data)).toString('utf8')).toBe(p.payload);
            const entry = p.p.signed.entry as { payloads: Record<string, Uint8Array> };
            expect(equalBytes(payloadCommitment(b64(g.json.salt), b64(g.json.data)), entry.payloads.args!)).toBe(true);
          }),
        );
      }

      timings.push(
        `crash: ${all.length} entries in ${runs.length} runs (${all.length - runs.length} events), ${stats.failedCalls} calls cut by kills, ${stats.flushes} flushes resubmitting ${stats.resubmitted} entries, ` +
          `${stats.storedUnanswered} stored unanswered, ${stats.payloadLost} payloads lost by a crash and repaired; ${roots.size} receipt checkpoints proven consistent with size ${final.size}; ` +
          `${pages} query pages; whole test ${((performance.now() - t0) / 1000).toFixed(1)} s after the start\n    ${stats.perCycle.join('\n    ')}`,
      );
    } catch (err) {
      ctl.stopWriting = true;
      throw new Error(`${String(err instanceof Error ? err.stack : err)}\nviolations: ${violations.slice(0, 10).join('\n')}\n--- server output ---\n${server.output().slice(-3000)}`);
    }
  });

  // -------------------------------------------------------------------------------------
  // 3. Key rotation across a restart

  it('rotates an agent key across a restart: old-key entries refused naming the rotation, new-key entries accepted', async () => {
    const { opts, server: s1 } = await firstServer('rotate');
    const t0 = performance.now();
    const vkey = s1.vkey;
    const verifier = parseVerifierKey(vkey);
    const opToken = s1.token;
    const agent = 'rot-bot';
    const k1 = AgentClient.generateKey(agent);
    const k2 = AgentClient.generateKey(agent);
    const regIndex = await registerAgent(s1.url, opToken, agent, k1.vkey);
    const agentToken = await createCredential(s1.url, opToken, { kind: 'agent', agent });
    let url = s1.url;
    const clientWith = (skey: string) => new AgentClient({ url: 'http://glasslog.invalid', agent, token: agentToken, skey, trust: { logKey: vkey }, fetch: (i, init) => fetch(String(i).replace('http://glasslog.invalid', url), init), retries: 0 });
    const c1 = clientWith(k1.skey);
    const r1 = c1.run('r1');
    const e0 = await r1.log('prompt', { payloads: { text: 'before the rotation' } });
    const e1 = await r1.log('decision', { attrs: { choice: 'rotate' } });
    expect(e1.index).toBeGreaterThan(regIndex);

    // Rotation: 201 with its index and a receipt; the refused key is named by it.
    const rot = await api(url, 'POST', `/v1/agents/${agent}/keys`, { token: opToken, body: { key: k2.vkey } });
    expectStatus(rot, 201, 'rotate');
    const rotIndex = rot.json.index as number;
    expect(rotIndex).toBeGreaterThan(e1.index);
    expect(rot.json.receipt).toMatch(/^c2sp\.org\/tlog-proof@v1\nindex \d+\n/);
    const again = await api(url, 'POST', `/v1/agents/${agent}/keys`, { token: opToken, body: { key: k1.vkey } });
    expectStatus(again, 409, 'rotating back to a key used before');

    // Restart (graceful), on the same data.
    const stopped = await s1.stop();
    expect(stopped, `graceful stop:\n${s1.output().slice(-2000)}`).toMatchObject({ code: 0, forced: false });
    const { server: s2 } = await ServerProcess.startRetrying(opts);
    url = s2.url;
    expect(s2.vkey).toBe(vkey);

    // Old key: refused, continuing the run and starting a new one, naming the rotation index.
    const outcome = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);
    const refusals: Array<[string, Promise<unknown>]> = [
      ['continuing r1', outcome(r1.log('tool_call', { attrs: { tool: 'x' } }))],
      ['a new run', outcome(c1.run('r-old').log('prompt', { payloads: { text: 'after the rotation, old key' } }))],
    ];
    for (const [what, p] of refusals) {
      const err = await p;
      expect(err, `old-key entry (${what}) must be refused`).toBeInstanceOf(AgentApiError);
      const e = err as AgentApiError;
      expect(e.status, `${what}: ${e.message}`).toBe(403);
      expect(e.serverMessage, `${what}: the refusal names the rotation index ${rotIndex}`).toMatch(new RegExp(`rotated out at index ${rotIndex}\\b`));
      expect(e.serverMessage, `${what}: the refusal names the old key`).toContain(k1.vkey.split('+').slice(0, 2).join('+'));
    }
    const oldNow = await api(url, 'GET', `/v1/agent-entries?agent=${agent}&run=r-old`);
    expectStatus(oldNow, 200, 'query r-old');
    expect(oldNow.json.entries).toEqual([]);

    // New key: continues r1 where the old key left it (seq 2, chained to seq 1), and closes it.
    const c2 = clientWith(k2.skey);
    const r1b = c2.run('r1', { seq: 2, prev: e1.leafHash });
    const e2 = await r1b.log('tool_call', { attrs: { tool: 'x' }, payloads: { arguments: '{"after":"rotation"}' } });
    const close = await r1b.logClose();
    expect(e2.index).toBeGreaterThan(rotIndex);
    const fresh = await c2.run('r-new').log('prompt', { payloads: { text: 'new key, new run' } });
    expect(fresh.index).toBeGreaterThan(close.index);

    // The key history: both periods, with the right indices.
    const hist = await api(url, 'GET', `/v1/agents/${agent}`);
    expectStatus(hist, 200, 'GET the agent');
    expect(hist.json).toEqual({
      agent,
      keys: [
        { key: k1.vkey, from: regIndex, until: rotIndex, endedBy: 'rotated' },
        { key: k2.vkey, from: rotIndex, until: null, endedBy: null },
      ],
    });
    const reg = await api(url, 'GET', `/v1/agent-entries?agent=${agent}&type=agent.register,agent.rotate`);
    expectStatus(reg, 200, 'query the registry entries');
    const regCp = verifyCheckpoint(reg.json.checkpoint, verifier);
    expect(reg.json.entries.map((e: any) => [e.index, e.entry.type, e.entry.key])).toEqual([
      [regIndex, 'agent.register', k1.vkey],
      [rotIndex, 'agent.rotate', k2.vkey],
    ]);
    reg.json.entries.forEach((e: any) => checkAnswerEntry(e, regCp, `registry entry ${e.index}`));

    // The run spans both keys and audits clean.
    const r1Answer = await api(url, 'GET', `/v1/agents/${agent}/runs/r1`);
    expectStatus(r1Answer, 200, 'GET run r1');
    const cp = verifyCheckpoint(r1Answer.json.checkpoint, verifier);
    expect(r1Answer.json).toMatchObject({ closed: true, count: 3, findings: [] });
    expect(r1Answer.json.entries.map((e: any) => e.index)).toEqual([e0.index, e1.index, e2.index, close.index]);
    r1Answer.json.entries.forEach((e: any) => checkAnswerEntry(e, cp, `r1#${e.entry.seq}`));
    timings.push(`rotate: restart ${s2.startMs.toFixed(0)} ms; whole test ${((performance.now() - t0) / 1000).toFixed(1)} s after the start`);
  });
});
