/**
 * `glasslog export` and `glasslog verify bundle`, run as the built CLI (`npm run build`
 * first) against a real log with the audit layer served over HTTP from this process: exit
 * 0 only when the bundle was written (and verified) or verified, 1 naming what failed, 2
 * for a usage error; prose by default, one JSON object with --json.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenHttp, type HttpServer } from '../../src/cli/common.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { createAuditFixture, entriesBody, TestAgent, type AuditFixture } from '../helpers/audit.js';
import { auditStoreFactories } from '../helpers/audit-stores.js';

const MAIN = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const EXPORT_JS = new URL('../../dist/cli/export.js', import.meta.url).pathname;
const T0 = 1_750_000_000_000;

const [factory] = auditStoreFactories();
let fx: AuditFixture;
let server: HttpServer;
let dir: string;
let reader: string;

const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

/** Runs the CLI without blocking this process, which serves the log it talks to. */
function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, err }));
  });
}

/** `glasslog export …`: through main.js once it routes `export`, else straight to exportCommand. */
function exportCli(...args: string[]) {
  if (readFileSync(MAIN, 'utf8').includes('exportCommand')) return cli([MAIN, 'export', ...args]);
  const runner = `const m = await import(${JSON.stringify(EXPORT_JS)}); process.exitCode = await m.exportCommand(process.argv.slice(1));`;
  return cli(['--input-type=module', '-e', runner, '--', ...args]);
}
const verifyCli = (...args: string[]) => cli([MAIN, 'verify', ...args]);

async function post(path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fx.request(path, { method: 'POST', headers: { ...fx.auth(), 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  expect([200, 201], text).toContain(res.status);
  return JSON.parse(text) as Record<string, unknown>;
}

beforeAll(async () => {
  if (!existsSync(MAIN) || !existsSync(EXPORT_JS)) throw new Error('build first: npm run build');
  dir = mkdtempSync(join(tmpdir(), 'glasslog-export-'));
  fx = await createAuditFixture(factory!);
  server = await listenHttp(getRequestListener(fx.app.fetch), { host: '127.0.0.1', port: 0 });
  // 0 register a1, 1–4 a1/r1 (#0 {prompt, output}, #1, #2, close), 5 rotate a1, 6–7 a1/r2, 8 erase 1 prompt.
  const a1 = new TestAgent('a1');
  await post('/v1/agents', { agent: 'a1', key: a1.key.vkey });
  await post('/v1/agents/a1/entries', entriesBody([a1.event('r1', { time: T0, payloads: { prompt: 'hello', output: 'world' } }), a1.event('r1', { time: T0 + 1 }), a1.event('r1', { time: T0 + 2 }), a1.close('r1', { time: T0 + 3 })]));
  a1.key = a1.newKey();
  await post('/v1/agents/a1/keys', { key: a1.key.vkey });
  await post('/v1/agents/a1/entries', entriesBody([a1.event('r2', { time: T0 + 4, payloads: { q: 'after the rotation' } }), a1.event('r2', { time: T0 + 5 })]));
  await post('/v1/agent-entries/1/payloads/prompt/erase', { reason: 'GDPR request' });
  reader = (await post('/v1/credentials', { kind: 'reader', agents: ['a1'] }))['token'] as string;
});

afterAll(async () => {
  await server?.stop(async () => undefined);
  await fx?.cleanup();
  await factory?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('glasslog export, then glasslog verify bundle', () => {
  it('exports (verifying first), and the bundle verifies offline, in prose and in JSON', async () => {
    const key = file('log.vkey', fx.vkey + '\n');
    const token = file('reader.token', reader + '\n');
    const out = join(dir, 'a1.bundle.json');
    const ex = await exportCli(server.url, '--agent', 'a1', '--token-file', token, '--out', out, '--log-key', key);
    expect(ex.code, ex.err).toBe(0);
    expect(ex.out).toMatch(/^wrote .*a1\.bundle\.json: 6 entries, 2 registry entries, 1 erasure, 2 payloads opened, from "glasslog\.test\/audit-/);
    expect(ex.out).toMatch(/verified: evidence bundle of ".*" at tree size 9\n {2}filter: agent "a1"\n {2}6 entries in 2 runs; payloads: 2 opened, 0 withheld, 1 erased\n/);
    expect(ex.out).toContain('entry 1 payload "prompt": erased at index 8');

    const v = await verifyCli('bundle', out, '--log-key', key);
    expect(v.code, v.err).toBe(0);
    expect(v.out).toMatch(/^verified: evidence bundle of ".*" at tree size 9/);
    expect(v.out).toMatch(/run "r1" of "a1": seqs 0–3, closed after 3 events/);
    expect(v.out).toMatch(/agent "a1" key [0-9a-f]{8}: installed at index 0, rotated out at index 5/);
    const j = await verifyCli('bundle', out, '--log-key', fx.vkey, '--json');
    expect(j.code).toBe(0);
    const summary = JSON.parse(j.out) as Record<string, any>;
    expect(summary).toMatchObject({ verified: true, origin: fx.origin, treeSize: 9, cosignedBy: [], filter: { agent: 'a1' }, payloads: { opened: 2, withheld: 0, erased: 1 } });
    expect(summary['entries'].map((e: { index: number }) => e.index)).toEqual([1, 2, 3, 4, 6, 7]);
    expect(summary['entries'][0].payloads).toEqual({ prompt: { status: 'erased', erasedAt: 8 }, output: { status: 'opened', size: 5 } });
    expect(summary['erasures']).toEqual([{ index: 8, entry: 1, name: 'prompt', reason: 'GDPR request', time: expect.any(Number) }]);

    // A policy without witnesses (quorum none) works too.
    const policy = file('none.policy', `log ${fx.vkey}\nquorum none\n`);
    expect((await verifyCli('bundle', out, '--policy', policy)).code).toBe(0);
  });

  it('writes to standard output without --out (the summary goes to standard error), and --json', async () => {
    const r = await exportCli(server.url, '--agent', 'a1', '--run', 'r2', '--json');
    expect(r.code, r.err).toBe(0);
    expect(r.out.startsWith('{"format":"glasslog/evidence-bundle@v1",\n')).toBe(true);
    expect(JSON.parse(r.err)).toMatchObject({ written: '(standard output)', entries: 2, registry: 2, erasures: 0, openedPayloads: 0, verified: false, origin: fx.origin });
    const f = file('r2.bundle.json', r.out);
    const v = await verifyCli('bundle', f, '--log-key', fx.vkey, '--json');
    expect(JSON.parse(v.out)).toMatchObject({ verified: true, payloads: { opened: 0, withheld: 1, erased: 0 }, runs: [{ agent: 'a1', run: 'r2', first: 0, last: 1 }] });
  });

  it('a tampered bundle fails (exit 1) naming what failed', async () => {
    const r = await exportCli(server.url, '--agent', 'a1', '--token', reader);
    expect(r.code, r.err).toBe(0);
    // Another root hash in the checkpoint: the log's signature no longer verifies.
    const lines = r.out.split('\n');
    lines[2] = lines[2]!.replace(/\\n9\\n(.)/, (_m, c: string) => `\\n9\\n${c === 'A' ? 'B' : 'A'}`);
    const bad = file('tampered.json', lines.join('\n'));
    const v = await verifyCli('bundle', bad, '--log-key', fx.vkey);
    expect(v.code).toBe(1);
    expect(v.err).toMatch(/^NOT VERIFIED: evidence bundle: checkpoint: the checkpoint's signature by the log key "glasslog\.test\/audit-.*" is invalid\n$/);
    // An entry removed from the middle of run r1.
    const removed = file('removed.json', r.out.split('\n').filter((l) => !l.startsWith('{"index":2,')).join('\n'));
    const j = await verifyCli('bundle', removed, '--log-key', fx.vkey, '--json');
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toEqual({ verified: false, error: expect.stringMatching(/run "r1" of agent "a1": seq 1 is missing between entries\[0\] \(index 1, event "a1"\/"r1" seq 0\) and entries\[1\] \(index 3, event "a1"\/"r1" seq 2\)/) });
    // Not a bundle at all.
    expect((await verifyCli('bundle', file('junk.json', '{}'), '--log-key', fx.vkey)).err).toMatch(/NOT VERIFIED: evidence bundle: unknown field|missing field "format"/);
    // A policy whose witness did not cosign.
    const w = generateKey('w1.cli.test/w', ALG_COSIGNATURE_V1);
    const policy = file('w1.policy', `log ${fx.vkey}\nwitness w1 ${w.vkey}\nquorum w1\n`);
    const good = file('good.json', r.out);
    const q = await verifyCli('bundle', good, '--policy', policy);
    expect(q.code).toBe(1);
    expect(q.err).toMatch(/witness quorum not met: cosigned by no witness; policy needs a cosignature by w1/);
  });

  it('refuses to write a bundle that does not verify under the given key (exit 1, nothing written)', async () => {
    const other = generateKey(fx.origin);
    const out = join(dir, 'never.json');
    const r = await exportCli(server.url, '--agent', 'a1', '--out', out, '--log-key', other.vkey);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^glasslog export: NOT VERIFIED, nothing written: evidence bundle: checkpoint: the checkpoint is not signed by the log key/);
    expect(existsSync(out)).toBe(false);
    const j = await exportCli(server.url, '--out', out, '--log-key', other.vkey, '--json');
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toMatchObject({ written: null, verified: false, error: expect.stringMatching(/^NOT VERIFIED, nothing written: /) });
  });

  it('an unreachable log is exit 1 with the request named', async () => {
    const r = await exportCli('http://127.0.0.1:1', '--agent', 'a1');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^glasslog export: export failed: GET http:\/\/127\.0\.0\.1:1\/v1\/agent-entries\?.*fetch failed/);
  });

  it('usage errors are exit 2', async () => {
    expect((await exportCli()).code).toBe(2);
    expect((await exportCli('not-a-url')).err).toMatch(/<log-url> must be an http:\/\/ or https:\/\/ URL/);
    expect((await exportCli(server.url, '--run', 'r1')).err).toMatch(/--run needs --agent/);
    expect((await exportCli(server.url, '--since', '1.5')).code).toBe(2);
    expect((await exportCli(server.url, '--agent', 'a 1')).code).toBe(2);
    expect((await exportCli(server.url, '--token', 'x', '--token-file', 'y')).code).toBe(2);
    expect((await exportCli(server.url, '--token-file', join(dir, 'missing'))).code).toBe(2);
    expect((await exportCli(server.url, '--bogus')).code).toBe(2);
    const help = await exportCli('--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage:\n {2}glasslog export <log-url>/);
    const f = file('any.json', '{}');
    expect((await verifyCli('bundle', f)).code).toBe(2);
    expect((await verifyCli('bundle', '--log-key', fx.vkey)).code).toBe(2);
    expect((await verifyCli('bundle', join(dir, 'missing.json'), '--log-key', fx.vkey)).code).toBe(2);
    expect((await verifyCli('--help')).out).toMatch(/glasslog verify bundle <file>/);
  });
});
