/**
 * AgentClient and AgentRun (src/client/agent.ts) against FakeAgentServer, the documented
 * agent endpoint over a real in-process Log: runs with payloads and a close, seq/prev
 * chaining, retries (503/429 with Retry-After, dropped answers, timeouts) that never log an
 * entry twice, forged receipts, 4xx errors, chunking, and the browser-safe import graph.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AgentApiError, AgentClient, MAX_ENTRIES_PER_REQUEST, parseRetryAfter, type AgentClientOptions, type PreparedEntry } from '../../src/client/agent.js';
import { decodeBase64, encodeBase64, equalBytes, utf8 } from '../../src/core/encoding.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { auditRun, decodeEnvelope, verifyEntrySignature, verifyPayloadCommitment, type LoggedRunEntry, type RunEntry } from '../../src/entry/index.js';
import { ALG_COSIGNATURE_V1, generateKey, parseVerifierKey } from '../../src/note/keys.js';
import { parsePolicy } from '../../src/verify/policy.js';
import { verifyReceipt } from '../../src/verify/receipt.js';
import { FakeAgentServer } from '../helpers/fake-agent-server.js';
import { createTestLog, type TestLog } from '../helpers/log.js';
import { pgliteFactory } from '../helpers/stores.js';

const AGENT = 'planner-7';
const TOKEN = 'agent-token-7';
const KEY = AgentClient.generateKey(AGENT);
const OTHER = 'helper-2';
const OTHER_KEY = AgentClient.generateKey(OTHER);
const URL_BASE = 'http://log.test/';

let t: TestLog;
let server: FakeAgentServer;
/** Delays the client asked to sleep, in order (tests never really wait). */
let sleeps: number[];
let clock: number;

function client(opts: Partial<AgentClientOptions> = {}): AgentClient {
  return new AgentClient({
    url: URL_BASE,
    agent: AGENT,
    token: TOKEN,
    skey: KEY.skey,
    trust: { logKey: t.vkey },
    fetch: server.fetch,
    sleep: async (ms) => void sleeps.push(ms),
    now: () => clock++,
    ...opts,
  });
}

/** Every leaf in the log, decoded. */
async function logged(): Promise<Array<LoggedRunEntry & { bytes: Uint8Array }>> {
  const leaves = await t.log.sequencedEntries(0, t.log.sequencedSize());
  return leaves.map((bytes, index) => {
    const se = decodeEnvelope(bytes);
    return { index, leafHash: se.leafHash, entry: se.entry as RunEntry, bytes };
  });
}

/** The log entries of one run. */
async function runEntries(run: string, agent = AGENT): Promise<Array<LoggedRunEntry & { bytes: Uint8Array }>> {
  return (await logged()).filter((e) => e.entry.agent === agent && e.entry.run === run);
}

/** How many times each of these envelopes is in the log. */
async function counts(entries: readonly PreparedEntry[]): Promise<number[]> {
  const all = await logged();
  return entries.map((p) => all.filter((e) => equalBytes(e.bytes, p.signed.bytes)).length);
}

async function rejection(f: () => Promise<unknown>): Promise<Error> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

beforeAll(async () => {
  t = await createTestLog(pgliteFactory);
  server = new FakeAgentServer(t.log, {
    tokens: { [AGENT]: TOKEN, [OTHER]: 'other-token' },
    keys: { [AGENT]: KEY.vkey, [OTHER]: OTHER_KEY.vkey },
  });
});

afterAll(async () => {
  await t?.cleanup();
});

beforeEach(() => {
  sleeps = [];
  clock = 1_750_000_000_000;
  server.faults.length = 0;
  server.requests.length = 0;
});

describe('AgentClient: runs', () => {
  it('logs a run of several steps with payloads, then closes it; every receipt verifies', async () => {
    const c = client();
    const run = c.run('run-steps');
    expect(run.seq).toBe(0);
    expect(run.prev).toBeUndefined();
    const r0 = await run.log('prompt', { payloads: { prompt: 'What is 2 + 2?', system: utf8('be brief') }, attrs: { user: 'u1', turn: 1, cached: false } });
    const r1 = await run.log('model_call', { parent: 0, model: { provider: 'acme', name: 'm-1', version: '2025-01' }, payloads: { response: '4' } });
    const r2 = await run.log('tool_call', { parent: 1, attrs: { tool: 'calculator' } });
    const r3 = await run.log('outcome', { time: 42, payloads: { answer: new Uint8Array([0, 1, 2, 255]) } });
    expect(run.seq).toBe(4);
    const close = run.close();
    expect(close.signed.entry).toMatchObject({ type: 'run.close', agent: AGENT, run: 'run-steps', seq: 4 });
    const [rc] = await c.submit([close]);
    expect(run.isClosed).toBe(true);
    expect(() => run.event('decision')).toThrow(/closed/);
    expect(() => run.close()).toThrow(/closed/);

    const receipts = [r0, r1, r2, r3, rc!];
    const indices = receipts.map((r) => r.index);
    expect([...indices].sort((a, b) => a - b)).toEqual(indices);
    expect(new Set(indices).size).toBe(5);

    // What the log holds: the run, chained, signed by the agent, with every commitment opened by the stored payloads.
    const entries = await runEntries('run-steps');
    expect(entries.map((e) => e.index)).toEqual(indices);
    expect(entries.map((e) => e.entry.seq)).toEqual([0, 1, 2, 3, 4]);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      expect(e.leafHash).toEqual(receipts[i]!.leafHash);
      expect(verifyEntrySignature(decodeEnvelope(e.bytes), parseVerifierKey(KEY.vkey).publicKey)).toBe(true);
      if (i === 0) expect(e.entry.prev).toBeUndefined();
      else expect(e.entry.prev).toEqual(receipts[i - 1]!.leafHash);
      // Each receipt verifies independently, too.
      expect(verifyReceipt(await t.log.receipt(e.index), e.bytes, { logKey: t.vkey }).index).toBe(e.index);
    }
    expect(auditRun(entries)).toEqual({ findings: [], closed: true, count: 4 });

    const e0 = entries[0]!.entry;
    expect(e0).toMatchObject({ type: 'event', kind: 'prompt', attrs: { user: 'u1', turn: 1, cached: false }, time: 1_750_000_000_000 });
    expect(entries[1]!.entry).toMatchObject({ parent: 0, model: { provider: 'acme', name: 'm-1', version: '2025-01' } });
    expect(entries[3]!.entry).toMatchObject({ time: 42 });
    expect(entries[2]!.entry).not.toHaveProperty('payloads');
    const stored = server.entry(AGENT, 'run-steps', 0)!;
    expect(new TextDecoder().decode(stored.payloads['prompt']!.data)).toBe('What is 2 + 2?');
    expect(stored.payloads['system']!.data).toEqual(utf8('be brief'));
    const commitments = (e0 as { payloads: Record<string, Uint8Array> }).payloads;
    for (const name of ['prompt', 'system']) {
      const p = stored.payloads[name]!;
      expect(p.salt).toHaveLength(32);
      expect(verifyPayloadCommitment(commitments[name]!, p.salt, p.data)).toBe(true);
    }
    expect(server.entry(AGENT, 'run-steps', 3)!.payloads['answer']!.data).toEqual(new Uint8Array([0, 1, 2, 255]));
  });

  it('sends the documented request: URL, bearer token, JSON body with base64 envelope and payloads', async () => {
    const run = client().run('run-wire');
    const p = run.event('decision', { payloads: { why: 'because' } });
    const q = run.event('decision');
    await client().submit([p, q]);
    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect(req.url).toBe(`http://log.test/v1/agents/${AGENT}/entries?wait=published`);
    expect(req.method).toBe('POST');
    expect(req.authorization).toBe(`Bearer ${TOKEN}`);
    expect(req.contentType).toBe('application/json');
    const body = JSON.parse(req.body) as { entries: Array<{ envelope: string; payloads?: Record<string, { salt: string; data: string }> }> };
    expect(body.entries).toHaveLength(2);
    expect(body.entries[0]!.envelope).toBe(encodeBase64(p.signed.bytes));
    expect(Object.keys(body.entries[0]!)).toEqual(['envelope', 'payloads']);
    expect(body.entries[0]!.payloads!['why']!.salt).toBe(encodeBase64(p.payloads['why']!.salt));
    expect(decodeBase64(body.entries[0]!.payloads!['why']!.data, 'data')).toEqual(utf8('because'));
    expect(Object.keys(body.entries[1]!)).toEqual(['envelope']);
  });

  it('chains seq and prev through event() and close(), and fresh salts for every payload', () => {
    const run = client().run('run-chain');
    const a = run.event('decision', { payloads: { x: 'same' } });
    expect(run.seq).toBe(1);
    expect(run.prev).toEqual(a.signed.leafHash);
    const b = run.event('decision', { payloads: { x: 'same' } });
    const c = run.close({ time: 7 });
    expect(a.signed.entry).toMatchObject({ seq: 0 });
    expect(a.signed.entry).not.toHaveProperty('prev');
    expect(b.signed.entry).toMatchObject({ seq: 1, prev: a.signed.leafHash });
    expect(c.signed.entry).toEqual({ type: 'run.close', agent: AGENT, run: 'run-chain', seq: 2, prev: b.signed.leafHash, time: 7 });
    expect(run.seq).toBe(3);
    expect(equalBytes(a.payloads['x']!.salt, b.payloads['x']!.salt)).toBe(false);
    const ca = (a.signed.entry as { payloads: Record<string, Uint8Array> }).payloads['x']!;
    const cb = (b.signed.entry as { payloads: Record<string, Uint8Array> }).payloads['x']!;
    expect(equalBytes(ca, cb)).toBe(false);
  });

  it('an invalid field throws MalformedError naming it and does not advance the run', () => {
    const run = client().run('run-bad');
    expect(() => run.event('not a kind')).toThrow(MalformedError);
    expect(() => run.event('decision', { parent: 0 })).toThrow(/entry\.parent/);
    expect(() => run.event('decision', { payloads: { 'bad name': 'x' } })).toThrow(/entry\.payloads/);
    expect(run.seq).toBe(0);
    expect(run.event('x-custom.kind').signed.entry).toMatchObject({ seq: 0, kind: 'x-custom.kind' });
  });

  it('log() with an invalid field rejects (it does not throw synchronously) and sends nothing', async () => {
    const run = client().run('run-bad-log');
    const pending = run.log('not a kind');
    await expect(pending).rejects.toThrow(MalformedError);
    expect(run.seq).toBe(0);
    expect(server.requests).toHaveLength(0);
  });

  it('resumes a run after a restart with { seq, prev }', async () => {
    const first = client().run('run-resume');
    const r0 = await first.log('decision');
    const r1 = await first.log('decision');
    // "Restart": a new client and run writer from what the receipts say.
    const again = client().run('run-resume', { seq: 2, prev: r1.leafHash });
    const r2 = await again.log('outcome');
    await again.logClose();
    const entries = await runEntries('run-resume');
    expect(entries.map((e) => e.entry.seq)).toEqual([0, 1, 2, 3]);
    expect(entries[2]!.entry.prev).toEqual(r1.leafHash);
    expect(entries[3]!.entry.prev).toEqual(r2.leafHash);
    expect(r0.index).toBeLessThan(r2.index);
    expect(auditRun(entries).findings).toEqual([]);
    expect(() => client().run('run-x', { seq: 1 })).toThrow(MalformedError);
    expect(() => client().run('run-x', { seq: 0, prev: r0.leafHash })).toThrow(MalformedError);
    expect(() => client().run('bad run id')).toThrow(MalformedError);
  });

  it('concurrent log() calls reach the log in seq order', async () => {
    const run = client().run('run-concurrent');
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => run.log('observation', { attrs: { i } })));
    expect(rs.map((r) => r.index)).toEqual([...rs.map((r) => r.index)].sort((a, b) => a - b));
    const entries = await runEntries('run-concurrent');
    expect(entries.map((e) => e.entry.seq)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(auditRun(entries).findings.filter((f) => f.kind !== 'not-closed')).toEqual([]);
  });

  it('verifies receipts under a tlog-policy (quorum none) as well', async () => {
    const policy = parsePolicy(`log ${t.vkey}\nquorum none\n`);
    const r = await client({ trust: { policy } }).run('run-policy').log('decision');
    expect(r.checkpoint.origin).toBe(t.origin);
    // A policy needing a witness the log never asks: every receipt fails.
    const w = generateKey('witness.test/w', ALG_COSIGNATURE_V1);
    const strict = parsePolicy(`log ${t.vkey}\nwitness W ${w.vkey}\nquorum W\n`);
    const e = await rejection(() => client({ trust: { policy: strict } }).run('run-policy-2').log('decision'));
    expect(e).toBeInstanceOf(VerificationError);
    expect(e.message).toContain('quorum not met');
  });
});

describe('AgentClient: retries never log twice', () => {
  it('retries after 503 and 429, honouring Retry-After', async () => {
    server.faults.push({ kind: 'status', status: 503, retryAfter: '3' }, { kind: 'status', status: 429, retryAfter: '1' });
    const run = client().run('run-503');
    const p = run.event('decision');
    const [r] = await client().submit([p]);
    expect(server.requests).toHaveLength(3);
    expect(new Set(server.requests.map((q) => q.body)).size).toBe(1); // the same bytes every time
    expect(sleeps).toHaveLength(2);
    expect(sleeps[0]).toBeGreaterThanOrEqual(3000);
    expect(sleeps[1]).toBeGreaterThanOrEqual(1000);
    expect(r!.leafHash).toEqual(p.signed.leafHash);
    expect(await counts([p])).toEqual([1]);
  });

  it('backs off exponentially (with jitter, capped) when there is no Retry-After', async () => {
    server.faults.push(...[500, 502, 503, 504].map((status) => ({ kind: 'status' as const, status })));
    const p = client().run('run-backoff').event('decision');
    await client({ backoffMs: 100, maxDelayMs: 600 }).submit([p]);
    expect(sleeps).toHaveLength(4);
    const bounds = [[50, 100], [100, 200], [200, 400], [300, 600]];
    sleeps.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(bounds[i]![0]!);
      expect(ms).toBeLessThanOrEqual(bounds[i]![1]!);
    });
    // Retry-After is capped by maxDelayMs too.
    server.faults.push({ kind: 'status', status: 503, retryAfter: '3600' });
    sleeps = [];
    await client({ maxDelayMs: 5000 }).submit([client().run('run-backoff-2').event('decision')]);
    expect(sleeps).toEqual([5000]);
  });

  it('a dropped answer (stored, but the client saw a network error): the retry is a duplicate, the log has the entries once', async () => {
    const run = client().run('run-drop');
    const batch = [run.event('decision', { payloads: { p: 'payload' } }), run.event('tool_call'), run.event('outcome')];
    server.faults.push({ kind: 'drop' });
    const before = t.log.sequencedSize();
    const receipts = await client().submit(batch);
    expect(server.requests).toHaveLength(2);
    expect(sleeps).toHaveLength(1);
    expect(t.log.sequencedSize()).toBe(before + 3);
    expect(await counts(batch)).toEqual([1, 1, 1]);
    expect(receipts.map((r) => r.index)).toEqual([before, before + 1, before + 2]);

    // Submitting the same prepared entries again, any number of times, changes nothing.
    const again = await client().submit(batch);
    expect(again.map((r) => r.index)).toEqual(receipts.map((r) => r.index));
    expect(t.log.sequencedSize()).toBe(before + 3);
    expect(await counts(batch)).toEqual([1, 1, 1]);
  });

  it('unreachable server and timeouts are retried', async () => {
    server.faults.push({ kind: 'unreachable' }, { kind: 'hang' });
    const p = client().run('run-net').event('decision');
    const [r] = await client({ timeoutMs: 50 }).submit([p]);
    expect(server.requests).toHaveLength(3);
    expect(r!.leafHash).toEqual(p.signed.leafHash);
    expect(await counts([p])).toEqual([1]);
  });

  it('gives up after `retries` retries with the last failure', async () => {
    server.faults.push(...Array.from({ length: 3 }, () => ({ kind: 'status' as const, status: 503, retryAfter: '1', message: 'the log is shutting down' })));
    const p = client().run('run-giveup').event('decision');
    const e = await rejection(() => client({ retries: 2 }).submit([p]));
    expect(e).toBeInstanceOf(AgentApiError);
    expect((e as AgentApiError).status).toBe(503);
    expect((e as AgentApiError).code).toBe('PUSHBACK');
    expect(e.message).toContain('the log is shutting down');
    expect(server.requests).toHaveLength(3);
    expect(await counts([p])).toEqual([0]);

    server.faults.push({ kind: 'status', status: 429, retryAfter: '2', message: 'agent planner-7 is over its rate' });
    const l = await rejection(() => client({ retries: 0 }).submit([p]));
    expect((l as AgentApiError).status).toBe(429);
    expect((l as AgentApiError).code).toBe('RATE_LIMITED');
    expect(l.message).toContain('over its rate');

    server.faults.push({ kind: 'unreachable' }, { kind: 'unreachable' });
    const n = await rejection(() => client({ retries: 1 }).submit([p]));
    expect(n).toBeInstanceOf(AgentApiError);
    expect((n as AgentApiError).status).toBeUndefined();
    expect(n.message).toContain('fetch failed');
  });

  it('log() after a failed log() sends the missing entry first, so the run has no gap', async () => {
    const run = client({ retries: 0 }).run('run-gap');
    await run.log('decision');
    server.faults.push({ kind: 'status', status: 503 });
    const e = await rejection(() => run.log('tool_call'));
    expect((e as AgentApiError).status).toBe(503);
    expect(run.pending.map((p) => (p.signed.entry as RunEntry).seq)).toEqual([1]);
    const r2 = await run.log('outcome');
    expect(run.pending).toEqual([]);
    const entries = await runEntries('run-gap');
    expect(entries.map((x) => x.entry.seq)).toEqual([0, 1, 2]);
    expect(entries[2]!.index).toBe(r2.index);
    expect(auditRun(entries).findings.map((f) => f.kind)).toEqual(['not-closed']);
    // flush() with nothing pending does nothing; after a failure it sends what is pending.
    expect(await run.flush()).toEqual([]);
    server.faults.push({ kind: 'drop' });
    await rejection(() => run.logClose());
    expect(run.pending).toHaveLength(1);
    const flushed = await run.flush();
    expect(flushed).toHaveLength(1);
    expect(auditRun(await runEntries('run-gap'))).toEqual({ findings: [], closed: true, count: 3 });
  });
});

describe('AgentClient: failures', () => {
  it('a receipt the server forged (wrong proof) makes submit throw', async () => {
    // Enough entries in the log that every receipt has proof hashes.
    expect(t.log.checkpoint().treeSize).toBeGreaterThan(2);
    server.faults.push({ kind: 'forge' });
    const p = client().run('run-forged').event('decision');
    const e = await rejection(() => client().submit([p]));
    expect(e).toBeInstanceOf(VerificationError);
    expect(e.message).toContain('run-forged#0');
    expect(e.message).toContain('inclusion proof');
    expect(server.requests).toHaveLength(1); // not retried
  });

  it('an answer whose leaf hash or result count is wrong is refused', async () => {
    const c = client({
      fetch: async (u, init) => {
        const res = await server.fetch(u, init);
        const j = (await res.json()) as { results: Array<{ leafHash: string }> };
        j.results[0]!.leafHash = encodeBase64(new Uint8Array(32));
        return new Response(JSON.stringify(j), { status: res.status });
      },
    });
    const e = await rejection(() => c.submit([client().run('run-lh').event('decision')]));
    expect(e).toBeInstanceOf(VerificationError);
    expect(e.message).toContain('leaf hash');
    const short = client({ fetch: async () => new Response('{"results":[]}', { status: 201 }) });
    const f = await rejection(() => short.submit([client().run('run-lh2').event('decision')]));
    expect(f).toBeInstanceOf(MalformedError);
    expect(f.message).toContain('0 results for 1 entries');
    const notJson = client({ fetch: async () => new Response('<html>', { status: 200 }) });
    expect(await rejection(() => notJson.submit([client().run('run-lh3').event('decision')]))).toBeInstanceOf(MalformedError);
  });

  it('a 4xx surfaces the status and the server message, without retrying', async () => {
    const p = client().run('run-401').event('decision');
    const e = await rejection(() => client({ token: 'wrong' }).submit([p]));
    expect(e).toBeInstanceOf(AgentApiError);
    expect((e as AgentApiError).status).toBe(401);
    expect((e as AgentApiError).serverMessage).toBe('missing or wrong bearer token');
    expect(e.message).toContain('status 401: missing or wrong bearer token');
    expect(server.requests).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('409: the same (agent, run, seq) with other bytes', async () => {
    await client().run('run-409').log('decision');
    const rival = client().run('run-409').event('decision'); // seq 0 again, another time
    const e = await rejection(() => client().submit([rival]));
    expect((e as AgentApiError).status).toBe(409);
    expect((e as AgentApiError).code).toBe('CONFLICT');
    expect(e.message).toContain('already logged with other bytes');
    expect(server.requests).toHaveLength(2);
  });

  it('a request is all or nothing: one bad entry stores none', async () => {
    const run = client().run('run-all-or-nothing');
    const good = run.event('decision');
    const forged = { ...run.event('decision'), payloads: { secret: { salt: new Uint8Array(32), data: utf8('x') } } };
    const before = t.log.sequencedSize();
    const e = await rejection(() => client().submit([good, forged]));
    expect((e as AgentApiError).status).toBe(400);
    expect(t.log.sequencedSize()).toBe(before);
    expect(await counts([good])).toEqual([0]);
  });

  it('refuses entries of another agent and a key not named after the agent', async () => {
    const other = new AgentClient({ url: URL_BASE, agent: OTHER, token: 'other-token', skey: OTHER_KEY.skey, trust: { logKey: t.vkey }, fetch: server.fetch });
    const p = other.run('run-o').event('decision');
    await expect(client().submit([p])).rejects.toThrow(RangeError);
    expect(server.requests).toHaveLength(0);
    expect((await other.submit([p]))[0]!.leafHash).toEqual(p.signed.leafHash);
    expect(() => client({ skey: OTHER_KEY.skey })).toThrow(/not after the agent/);
    expect(() => client({ agent: 'bad agent' })).toThrow(MalformedError);
    expect(() => client({ trust: { logKey: 'nope' } })).toThrow(MalformedError);
    expect(() => AgentClient.generateKey('no spaces')).toThrow(MalformedError);
    expect(await client().submit([])).toEqual([]);
  });

  it('the signing key is not an enumerable property of the client', () => {
    const c = client();
    expect(JSON.stringify(Object.entries(c))).not.toContain('PRIVATE+KEY');
  });
});

describe('AgentClient: chunking', () => {
  it(`sends at most ${MAX_ENTRIES_PER_REQUEST} entries per request, in order`, async () => {
    const run = client().run('run-big');
    const batch = Array.from({ length: MAX_ENTRIES_PER_REQUEST + 3 }, (_, i) => run.event('observation', { attrs: { i } }));
    const receipts = await client().submit(batch);
    expect(server.requests.map((r) => (JSON.parse(r.body) as { entries: unknown[] }).entries.length)).toEqual([MAX_ENTRIES_PER_REQUEST, 3]);
    expect(receipts).toHaveLength(batch.length);
    receipts.forEach((r, i) => expect(r.leafHash).toEqual(batch[i]!.signed.leafHash));
    expect(receipts.map((r) => r.index)).toEqual(receipts.map((_, i) => receipts[0]!.index + i));
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('0')).toBe(0);
    expect(parseRetryAfter(' 12 ')).toBe(12_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    const d = parseRetryAfter(new Date(Date.now() + 10_000).toUTCString())!;
    expect(d).toBeGreaterThan(8_000);
    expect(d).toBeLessThanOrEqual(10_000);
    expect(parseRetryAfter(new Date(0).toUTCString())).toBe(0);
  });
});

describe('browser safety', () => {
  it('src/client/agent.ts imports nothing from node: (nor any package but @noble and cbor-x), directly or transitively', () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '../../src');
    const seen = new Set<string>();
    const bad: string[] = [];
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('node:')) bad.push(`${file.slice(root.length)} → ${spec}`);
        else if (spec.startsWith('.')) visit(join(dirname(file), spec).replace(/\.js$/, '.ts'));
        // @noble and cbor-x (used by src/entry/cbor.ts; its package has a browser build) run in browsers.
        else if (!spec.startsWith('@noble/') && spec !== 'cbor-x') bad.push(`${file.slice(root.length)} → ${spec}`);
      }
    };
    visit(join(root, 'client/agent.ts'));
    expect(seen.size).toBeGreaterThan(5);
    expect(bad).toEqual([]);
  });
});
