/**
 * End to end: `glasslog audit` (the built CLI) against the real server process, on embedded
 * PGlite or, when DATABASE_URL is set, on Postgres. Agents registered, rotated, writing
 * runs with payloads, an erasure; a first full audit, an incremental one that reads only
 * what is new, one with nothing new; a proxy that flips a bit of one entry bundle on its
 * way to the auditor; usage errors. Needs `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTiles, tilePath, tileWidthAt, TILE_WIDTH } from '../../src/core/tile.js';
import { generateKey } from '../../src/note/keys.js';
import { entriesBody, TestAgent, type ClientEntry } from '../helpers/audit.js';
import { DATABASE_URL, MAIN_JS, ServerProcess, dropSchema, killAllServers, removeDataDir, tempDataDir, uniqueSchema } from './server.js';

let server: ServerProcess;
let dataDir: string;
let schema: string | undefined;
let work: string;

interface AuditRun {
  readonly child: ChildProcess;
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>;
}

/** Starts `glasslog audit …`. */
function startAudit(...args: string[]): AuditRun {
  const child = spawn(process.execPath, [MAIN_JS, 'audit', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { child, done: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out, err }))) };
}

/** Runs `glasslog audit …`; resolves with its exit code and output. */
function auditCli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return startAudit(...args).done;
}

/** Resolves once the state file records an unfinished pass past its first bundle. */
async function midPass(file: string, timeoutMs = 30_000): Promise<{ treeSize: number; target: string | null }> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (existsSync(file)) {
      const s = JSON.parse(readFileSync(file, 'utf8')) as { treeSize: number; target: string | null };
      if (s.target !== null && s.treeSize > 0) return s;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no mid-pass state in ${file} after ${timeoutMs} ms`);
}

async function call(method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: typeof body === 'string' ? body : body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function write(agent: TestAgent, entries: ClientEntry[]): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < entries.length; i += 1000) {
    const r = (await call('POST', `/v1/agents/${agent.id}/entries?wait=published`, entriesBody(entries.slice(i, i + 1000)))) as { results: Array<{ index: number }> };
    out.push(...r.results.map((x) => x.index));
  }
  return out;
}

function runOf(agent: TestAgent, run: string, n: number): ClientEntry[] {
  const out: ClientEntry[] = [];
  for (let i = 0; i < n; i++) out.push(agent.event(run, { kind: 'tool_call', attrs: { step: i }, payloads: { args: `step ${i} of ${run}` } }));
  out.push(agent.close(run));
  return out;
}

const vkeyFile = () => join(dataDir, 'log.vkey');

beforeAll(async () => {
  if (!existsSync(MAIN_JS)) throw new Error('build first: npm run build');
  dataDir = tempDataDir('audit');
  work = mkdtempSync(join(tmpdir(), 'glasslog-audit-cli-'));
  if (DATABASE_URL) schema = uniqueSchema('audit');
  server = await ServerProcess.start({ dataDir, databaseUrl: DATABASE_URL, schema });
}, 120_000);

afterAll(async () => {
  await killAllServers();
  if (DATABASE_URL && schema) await dropSchema(DATABASE_URL, schema);
  removeDataDir(dataDir);
  rmSync(work, { recursive: true, force: true });
});

describe('glasslog audit against the real server', () => {
  const a = new TestAgent('planner');
  const b = new TestAgent('executor');
  const state = () => join(work, 'state.json');

  it('audits a log with runs, a rotation and an erasure: exit 0, every entry counted', async () => {
    await call('POST', '/v1/agents', { agent: a.id, key: a.key.vkey });
    await call('POST', '/v1/agents', { agent: b.id, key: b.key.vkey });
    const [first] = await write(a, runOf(a, 'r1', 300));
    await write(b, runOf(b, 'r2', 200));
    a.key = a.newKey();
    await call('POST', `/v1/agents/${a.id}/keys`, { key: a.key.vkey });
    await write(a, runOf(a, 'r3', 100));
    await call('POST', `/v1/agent-entries/${first}/payloads/args/erase`, { reason: 'test' });

    const r = await auditCli(server.url, '--log-key', vkeyFile(), '--state', state(), '--json');
    expect(r.code, r.err + r.out).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({
      verified: true,
      previousSize: 0,
      treeSize: 607,
      entriesChecked: 607,
      counts: { 'agent.register': 2, 'agent.rotate': 1, event: 600, 'run.close': 3, 'payload.erase': 1 },
      findings: [],
    });
    expect(j.fetched.bundles).toBe(3);
    expect(r.err).toBe(''); // no progress bar when stderr is not a terminal
    const saved = JSON.parse(readFileSync(state(), 'utf8'));
    expect(saved).toMatchObject({ format: 'glasslog/audit-state@v1', treeSize: 607, erased: [{ index: first, name: 'args', by: 606 }] });
  }, 120_000);

  it('a second run reads only the new and wider bundles and tiles; a third reads only the checkpoint', async () => {
    await write(b, runOf(b, 'r4', 500));
    const from = 607;
    const to = from + 501;
    const r = await auditCli(server.url, '--log-key', vkeyFile(), '--state', state(), '--json');
    expect(r.code, r.err + r.out).toBe(0);
    const j = JSON.parse(r.out);
    const bundles = Math.ceil(to / TILE_WIDTH) - Math.floor(from / TILE_WIDTH);
    const tiles = newTiles(from, to).length;
    expect(j).toMatchObject({ verified: true, previousSize: from, treeSize: to, entriesChecked: 501 });
    expect(j.fetched).toMatchObject({ bundles, tiles, requests: 1 + bundles + tiles });
    const none = await auditCli(server.url, '--log-key', vkeyFile(), '--state', state());
    expect(none.code, none.err).toBe(0);
    expect(none.out).toContain(`nothing new since the last audit at tree size ${to}`);
    expect(none.out).toContain('fetched 0 bundles and 0 tiles in 1 requests');
    expect(none.out).toContain('verified: no findings');
  }, 120_000);

  it('a bundle tampered with on its way fails the audit, naming the entry, and leaves the state as it was', async () => {
    const before = readFileSync(state(), 'utf8');
    await write(a, runOf(a, 'r5', 20));
    const size = 1108 + 21;
    const n = Math.floor(1108 / TILE_WIDTH);
    const target = '/' + tilePath({ level: 'entries', index: n, width: tileWidthAt('entries', n, size) });
    const tamper = await proxy(server.url, { flip: target });
    try {
      const r = await auditCli(tamper.url, '--log-key', vkeyFile(), '--state', state(), '--json');
      expect(r.code).toBe(1);
      const j = JSON.parse(r.out);
      expect(j.verified).toBe(false);
      expect(j.error).toMatch(/^root: the entries rebuild tree size 1129 to root .*, but the log signed root .*a fork/);
      expect(j.error).toMatch(/tile 0\/4: hash \d+ \(entry \d+\) is/);
      expect(readFileSync(state(), 'utf8')).toBe(before);
    } finally {
      tamper.server.close();
    }
    const ok = await auditCli(server.url, '--log-key', vkeyFile(), '--state', state(), '--json');
    expect(JSON.parse(ok.out)).toMatchObject({ verified: true, previousSize: 1108, treeSize: 1129 });
  }, 120_000);

  for (const how of ['SIGINT', 'SIGKILL'] as const) {
    it(`an audit stopped by ${how} mid-pass resumes from its state file`, async () => {
      const file = join(work, `resume-${how}.json`);
      const slow = await proxy(server.url, { delayMs: 150 });
      try {
        const run = startAudit(slow.url, '--log-key', vkeyFile(), '--state', file, '--save-every', '0', '--json');
        const mid = await midPass(file);
        run.child.kill(how);
        const end = await run.done;
        if (how === 'SIGINT') {
          expect(end.code, end.err).toBe(130);
          expect(end.err).toContain('interrupted; the state is saved, run again to resume');
        } else {
          expect(end.signal).toBe('SIGKILL');
        }
        const saved = JSON.parse(readFileSync(file, 'utf8')) as { treeSize: number; target: string | null; checkpoint: string | null };
        expect(saved.target).not.toBeNull();
        expect(saved.checkpoint).toBeNull();
        expect(saved.treeSize % TILE_WIDTH).toBe(0);
        expect(saved.treeSize).toBeGreaterThanOrEqual(mid.treeSize);
        const again = await auditCli(server.url, '--log-key', vkeyFile(), '--state', file, '--json');
        expect(again.code, again.err).toBe(0);
        const j = JSON.parse(again.out);
        expect(j).toMatchObject({ verified: true, previousSize: saved.treeSize });
        expect(j.entriesChecked).toBe(j.treeSize - saved.treeSize);
        expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ target: null, treeSize: j.treeSize });
      } finally {
        slow.server.close();
      }
    }, 120_000);
  }

  it('usage errors exit 2; an unreachable log or a wrong key exits 1 naming why', async () => {
    expect((await auditCli(server.url, '--log-key', vkeyFile())).code).toBe(2);
    expect((await auditCli('not a url', '--log-key', vkeyFile(), '--state', state())).code).toBe(2);
    expect((await auditCli(server.url, '--state', state())).code).toBe(2);
    const junk = join(work, 'junk.json');
    writeFileSync(junk, '{"format":"something else"}');
    const bad = await auditCli(server.url, '--log-key', vkeyFile(), '--state', junk);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/is not an audit state: audit state: unknown field|format/);
    const down = await auditCli('http://127.0.0.1:9/', '--log-key', vkeyFile(), '--state', join(work, 'down.json'));
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/NOT VERIFIED: GET http:\/\/127\.0\.0\.1:9\/checkpoint/);
    const other = await auditCli(server.url, '--log-key', generateKey('other.example/log').vkey, '--state', join(work, 'other.json'));
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/NOT VERIFIED: checkpoint/);
  }, 60_000);
});

/**
 * An HTTP proxy to `upstream` that flips one bit of the body of `flip`, and delays every
 * entry bundle by `delayMs`.
 */
async function proxy(upstream: string, opts: { flip?: string; delayMs?: number }): Promise<{ server: Server; url: string }> {
  const up = new URL(upstream);
  const server = createServer((req, res) => {
    const fwd = httpRequest({ host: up.hostname, port: up.port, path: req.url, method: req.method, headers: { ...req.headers, 'accept-encoding': 'identity', host: up.host } }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const body = Buffer.concat(chunks);
        if (req.url === opts.flip && body.length > 100) body[body.length - 10]! ^= 0x01;
        const headers = { ...r.headers };
        delete headers['content-length'];
        const send = () => {
          res.writeHead(r.statusCode ?? 502, headers);
          res.end(body);
        };
        if (opts.delayMs && req.url?.startsWith('/tile/entries/')) setTimeout(send, opts.delayMs);
        else send();
      });
    });
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${addr.port}` };
}
