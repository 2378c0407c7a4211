/**
 * The witness's HTTP API (src/http/witness-app.ts) through app.request(), on every witness
 * store (PGlite always, Postgres when DATABASE_URL is set): c2sp.org/tlog-witness
 * add-checkpoint with every status in the spec's check order, the 409 `text/x.tlog.size`
 * answer, the monitoring endpoint, concurrency, fork evidence with quarantine and the
 * operator's resolve endpoint, policy reloads, health and metrics.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ADD_CHECKPOINT_SIZE, TLOG_SIZE_CONTENT_TYPE } from '../../src/core/add-checkpoint.js';
import { utf8 } from '../../src/core/encoding.js';
import { generateKey, newSigner } from '../../src/note/index.js';
import { openNote, parseNote, signNote } from '../../src/note/note.js';
import { verifyForkEvidence } from '../../src/verify/evidence.js';
import { originHash } from '../../src/witness/witness.js';
import {
  ADMIN_TOKEN,
  TestLog,
  WITNESS_NAME,
  corruptFirstSignature,
  eventually,
  junkHash,
  policyOf,
  rawRequest,
  startWitness,
  witnessKey,
  type WitnessFixture,
} from '../helpers/witness.js';
import { witnessStoreFactories } from '../helpers/witness-stores.js';

const A = new TestLog('log-a.test/glasslog', 512);
const B = new TestLog('log-b.test/glasslog', 64);
const C = new TestLog('log-c.test/glasslog', 64);
const KEY = witnessKey();
const T0 = 1_700_000_000_000;
const TEXT = 'text/plain; charset=utf-8';
const HA = originHash(A.origin);

describe.each(witnessStoreFactories())('witness HTTP API on $name', (factory) => {
  let f: WitnessFixture;

  beforeAll(async () => {
    const warm = await startWitness(factory, [A], KEY);
    await warm.destroy();
  });
  afterEach(async () => {
    await f?.destroy();
  });
  afterAll(() => factory.dispose());

  async function witness(logs: TestLog[] = [A, B]): Promise<WitnessFixture> {
    f = await startWitness(factory, logs, KEY, T0);
    return f;
  }

  const post = (body: string | Uint8Array, headers: Record<string, string> = {}) =>
    f.app.request('/add-checkpoint', { method: 'POST', body: typeof body === 'string' ? body : new Uint8Array(body), headers });
  const get = (path: string) => f.app.request(path);
  const resolve = (hash: string, token?: string) =>
    f.app.request(`/admin/forks/${hash}/resolve`, { method: 'POST', headers: token === undefined ? {} : { Authorization: `Bearer ${token}` } });

  /** POSTs and returns the status and body. */
  async function add(body: string | Uint8Array): Promise<{ status: number; body: string; type: string | null; res: Response }> {
    const res = await post(body);
    return { status: res.status, body: await res.clone().text(), type: res.headers.get('content-type'), res };
  }

  /** POSTs, requiring 200; returns the cosignature line. */
  async function cosign(body: string): Promise<string> {
    const r = await add(body);
    expect([r.status, r.body]).toEqual([200, expect.any(String)]);
    return r.body;
  }

  /** The 200 body is one cosignature/v1 line by the witness over `text`; returns its timestamp. */
  function checkLine(text: string, line: string): number {
    expect(line.split('\n')).toHaveLength(2);
    expect(line.startsWith(`— ${WITNESS_NAME} `)).toBe(true);
    expect(line.endsWith('\n')).toBe(true);
    const opened = openNote(text + '\n' + line, [KEY.verifier]);
    expect(opened.verified).toHaveLength(1);
    expect(opened.verified[0]!.keyId).toBe(KEY.verifier.keyId);
    return KEY.verifier.timestampOf(opened.verified[0]!.signature);
  }

  async function expectStatus(body: string | Uint8Array, status: number, what = ''): Promise<string> {
    const r = await add(body);
    expect([what, r.status]).toEqual([what, status]);
    if (status !== 409) expect(r.type).toBe(TEXT);
    expect(r.res.headers.get('cache-control')).toBe('no-store');
    return r.body;
  }

  async function expect409(body: string, size: number): Promise<void> {
    const r = await add(body);
    expect(r.status).toBe(409);
    expect(r.type).toBe(TLOG_SIZE_CONTENT_TYPE);
    expect(r.body).toBe(`${size}\n`);
  }

  const monitorSize = async (log: TestLog = A): Promise<number | null> => {
    const res = await get(`/${originHash(log.origin)}/checkpoint`);
    if (res.status === 404) return null;
    expect(res.status).toBe(200);
    return Number(parseNote(await res.text()).text.split('\n')[1]);
  };

  describe('POST /add-checkpoint', () => {
    it('200: first checkpoint on trust; the body is exactly one cosignature/v1 line with the pinned time', async () => {
      await witness();
      const r = await add(A.request(0, 10));
      expect(r.status).toBe(200);
      expect(r.type).toBe(TEXT);
      expect(r.res.headers.get('cache-control')).toBe('no-store');
      expect(r.body).toMatch(/^— witness\.test\/w1 [A-Za-z0-9+/]{102}==\n$/);
      expect(checkLine(A.text(10), r.body)).toBe(T0 / 1000);
      // The line also verifies when appended to the log's note (how a log uses it).
      const opened = openNote(A.note(10) + r.body, [A.verifier, KEY.verifier]);
      expect(opened.verified.map((s) => s.name)).toEqual([A.origin, WITNESS_NAME]);
    });

    it('200: consistent extensions, then the same checkpoint again with a fresh timestamp', async () => {
      await witness();
      await cosign(A.request(0, 10));
      f.clock.ms = T0 + 5_000;
      expect(checkLine(A.text(64), await cosign(A.request(10, 64)))).toBe(T0 / 1000 + 5);
      f.clock.ms = T0 + 7_000;
      expect(checkLine(A.text(100), await cosign(A.request(64, 100)))).toBe(T0 / 1000 + 7);
      f.clock.ms = T0 + 3_600_000;
      const again = await cosign(A.request(100, 100));
      expect(checkLine(A.text(100), again)).toBe(T0 / 1000 + 3600);
      // The monitoring endpoint serves the fresh cosignature.
      const note = await (await get(`/${HA}/checkpoint`)).text();
      expect(note.endsWith(again)).toBe(true);
    });

    it('400: malformed bodies', async () => {
      await witness();
      await cosign(A.request(0, 10));
      const good = A.note(20);
      const proof = A.proof(10, 20);
      const b64 = (n: number) => Buffer.alloc(n, 9).toString('base64');
      const cases: Array<[string, string]> = [
        ['empty', ''],
        ['no blank line', 'old 10\n'],
        ['no blank line, only a checkpoint', `old 10\n${A.text(20)}`],
        ['no checkpoint', 'old 10\n\n'],
        ['bad old keyword', rawRequest(10, proof, good).replace('old 10', 'new 10')],
        ['old without size', rawRequest(10, proof, good).replace('old 10', 'old')],
        ['old with two spaces', rawRequest(10, proof, good).replace('old 10', 'old  10')],
        ['old negative', rawRequest('-1', proof, good)],
        ['old not decimal', rawRequest('ten', proof, good)],
        ['old with leading zeros', rawRequest('0010', proof, good)],
        ['old 00', rawRequest('00', [], A.note(5))],
        ['proof line of 31 bytes', `old 10\n${b64(31)}\n\n${good}`],
        ['proof line of 33 bytes', `old 10\n${b64(33)}\n\n${good}`],
        ['proof line of 64 bytes', `old 10\n${b64(64)}\n\n${good}`],
        ['proof line not base64', `old 10\n${'*'.repeat(44)}\n\n${good}`],
        ['64 proof lines', rawRequest(10, Array.from({ length: 64 }, (_, i) => junkHash(String(i))), good)],
        ['a note without signature lines', `old 10\n\n${A.text(20)}`],
        ['a note with a bad signature line', `old 10\n\n${A.text(20)}\n- ${A.origin} AAAA\n`],
        ['a note with a signature too short', `old 10\n\n${A.text(20)}\n— ${A.origin} AAAA\n`],
        ['a note with trailing text', rawRequest(10, proof, good + 'x')],
        ['a checkpoint without root', rawRequest(10, proof, signNote(`${A.origin}\n20\n`, [A.signer]))],
        ['a checkpoint with a size "20.0"', rawRequest(10, proof, signNote(A.text(20).replace('\n20\n', '\n20.0\n'), [A.signer]))],
        ['a checkpoint with a root of 33 bytes', rawRequest(10, proof, signNote(`${A.origin}\n20\n${b64(33)}\n`, [A.signer]))],
        ['a checkpoint with an empty extension line', rawRequest(10, proof, signNote(A.text(20) + '\n', [A.signer]))],
      ];
      for (const [what, body] of cases) await expectStatus(body, 400, what);
      expect(await monitorSize()).toBe(10);
    });

    it('400 and 422 boundaries: 63 proof lines parse', async () => {
      await witness();
      await expectStatus(rawRequest(0, Array.from({ length: 63 }, (_, i) => junkHash(String(i))), A.note(20)), 422);
      expect(await monitorSize()).toBeNull();
    });

    it('413: a body over 16 KiB, streamed or declared', async () => {
      await witness();
      const base = A.request(0, 10);
      const sized = (n: number) => base + 'x'.repeat(n - utf8(base).length);
      await expectStatus(sized(MAX_ADD_CHECKPOINT_SIZE + 1), 413);
      await expectStatus(utf8(sized(MAX_ADD_CHECKPOINT_SIZE + 1)), 413);
      await expectStatus(sized(1 << 20), 413);
      // Multi-byte characters count as bytes: fewer than 16 Ki characters, more than 16 KiB.
      const wide = base + '—'.repeat(6000);
      expect(wide.length).toBeLessThan(MAX_ADD_CHECKPOINT_SIZE);
      await expectStatus(wide, 413);
      // A Content-Length over the limit is refused whatever follows.
      const r = await post(A.request(0, 10), { 'Content-Length': String(MAX_ADD_CHECKPOINT_SIZE + 1) });
      expect(r.status).toBe(413);
      // Size comes before everything: an unknown origin, over the limit.
      await expectStatus(sized(MAX_ADD_CHECKPOINT_SIZE + 1).replace(A.origin, C.origin), 413);
      // Exactly at the limit it is read and parsed (and malformed: text after the signatures).
      await expectStatus(sized(MAX_ADD_CHECKPOINT_SIZE), 400);
      expect(await monitorSize()).toBeNull();
      // The 413s are counted.
      expect(await (await get('/metrics')).text()).toContain('glasslog_witness_add_checkpoint_total{status="413"} 6');
    });

    it('400: a body that is not valid UTF-8', async () => {
      await witness();
      const bytes = utf8(A.request(0, 10));
      const bad = new Uint8Array([...bytes.slice(0, 8), 0xff, 0xfe, ...bytes.slice(8)]);
      await expectStatus(bad, 400);
    });

    it('404: an origin not in the policy', async () => {
      await witness();
      const body = await expectStatus(C.request(0, 10), 404);
      expect(body).toContain(C.origin);
      expect(await monitorSize(C)).toBeNull();
    });

    it('403: signed by another key, or a bad signature by the trusted key', async () => {
      await witness();
      await cosign(A.request(0, 10));
      const impostor = newSigner(generateKey(A.origin).skey);
      await expectStatus(A.request(10, 20, { note: signNote(A.text(20), [impostor]) }), 403, 'same name, other key');
      await expectStatus(A.request(10, 20, { note: signNote(A.text(20), [newSigner(generateKey('x.test').skey)]) }), 403, 'other name');
      await expectStatus(A.request(10, 20, { note: signNote(A.text(20), [B.signer]) }), 403, 'another trusted log');
      await expectStatus(A.request(10, 20, { note: corruptFirstSignature(A.note(20)) }), 403, 'bad trusted signature');
      await expectStatus(A.request(10, 20, { note: corruptFirstSignature(A.note(20, { extra: [impostor] })) }), 403, 'bad trusted, unknown valid');
      // A trusted line that does not verify, followed by one that does.
      const good = A.note(20);
      const twoLines = corruptFirstSignature(good) + good.slice(A.text(20).length + 1);
      await expectStatus(A.request(10, 20, { note: twoLines }), 403, 'bad then good');
      expect(await monitorSize()).toBe(10);
    });

    it('400: old larger than the checkpoint size', async () => {
      await witness();
      await expectStatus(rawRequest(11, [], A.note(10)), 400);
      await cosign(A.request(0, 10));
      const body = await expectStatus(rawRequest(12, [], A.note(11)), 400);
      expect(body).toMatch(/larger than/);
      expect(await monitorSize()).toBe(10);
    });

    it('409: Content-Type text/x.tlog.size and the size, also with no state (0)', async () => {
      await witness();
      await expect409(A.request(5, 10), 0);
      await expect409(A.request(10, 10), 0);
      expect(await monitorSize()).toBeNull();
      await cosign(A.request(0, 10));
      await expect409(A.request(0, 20), 10); // old 0 to learn the size
      await expect409(A.request(5, 20), 10);
      await expect409(A.request(11, 20), 10);
      const r = await add(A.request(0, 20));
      expect(r.res.headers.get('cache-control')).toBe('no-store');
      expect(await monitorSize()).toBe(10);
    });

    it('422: a size-0 checkpoint with a non-empty root', async () => {
      await witness();
      await expectStatus(A.request(0, 0, { note: A.note(0, { root: A.rootAt(1) }) }), 422);
      expect(await monitorSize()).toBeNull();
      // With the empty root it is trusted.
      checkLine(A.text(0), await cosign(A.request(0, 0)));
      expect(await monitorSize()).toBe(0);
    });

    it('422: old 0 with a non-empty proof when there is no state', async () => {
      await witness();
      await expectStatus(rawRequest(0, [junkHash('a')], A.note(10)), 422);
      expect(await monitorSize()).toBeNull();
    });

    it('422: a bad consistency proof', async () => {
      await witness();
      await cosign(A.request(0, 13));
      const good = A.proof(13, 77);
      const flip = (h: Uint8Array) => Uint8Array.from(h, (b, i) => (i === 31 ? b ^ 0x80 : b));
      await expectStatus(rawRequest(13, [flip(good[0]!), ...good.slice(1)], A.note(77)), 422, 'flipped');
      await expectStatus(rawRequest(13, good.slice(1), A.note(77)), 422, 'short');
      await expectStatus(rawRequest(13, [...good, junkHash('x')], A.note(77)), 422, 'long');
      await expectStatus(rawRequest(13, [], A.note(77)), 422, 'empty');
      await expectStatus(rawRequest(13, A.proof(13, 76), A.note(77)), 422, 'for another size');
      await expectStatus(rawRequest(13, [junkHash('x')], A.note(13)), 422, 'a proof between equal sizes');
      expect(await monitorSize()).toBe(13);
      // And the right one still works.
      await cosign(rawRequest(13, good, A.note(77)));
    });

    it('check order: 404 before 403/400/409/422, 403 before 400, 400 before 409, 409 before 422', async () => {
      await witness();
      await cosign(A.request(0, 10));
      const bad = [junkHash('bad')];
      await expectStatus(rawRequest('01', bad, C.note(20)), 400, 'malformed beats unknown origin');
      await expectStatus(rawRequest(10, bad, C.note(20)), 404, 'unknown origin + bad proof');
      await expectStatus(rawRequest(30, bad, corruptFirstSignature(C.note(20))), 404, 'unknown origin + bad signature + old > size');
      await expectStatus(rawRequest(3, bad, C.note(20)), 404, 'unknown origin + wrong old');
      await expectStatus(rawRequest(30, [], corruptFirstSignature(A.note(20))), 403, 'bad signature + old > size');
      await expectStatus(rawRequest(3, bad, signNote(A.text(20), [B.signer])), 403, 'untrusted signature + wrong old + bad proof');
      await expectStatus(rawRequest(30, [], A.note(20)), 400, 'old > size + wrong old');
      await expect409(rawRequest(3, bad, A.note(20)), 10); // wrong old + bad proof
      await expect409(rawRequest(0, [], A.note(0, { root: A.rootAt(2) })), 10); // wrong old + bad size-0 root
      await expect409(rawRequest(5, [], A.note(10, { root: A.rootAt(9) })), 10); // wrong old + same size, other root
      expect(await monitorSize()).toBe(10);
      expect(f.alarms).toEqual([]);
    });
  });

  describe('GET /<origin hash>/checkpoint', () => {
    it('404 before any cosignature, and for anything that is not a configured origin hash', async () => {
      await witness();
      expect((await get(`/${HA}/checkpoint`)).status).toBe(404);
      await cosign(A.request(0, 10));
      for (const path of [
        `/${originHash(C.origin)}/checkpoint`, // not configured
        `/${originHash(B.origin)}/checkpoint`, // configured, nothing cosigned
        `/${HA.toUpperCase()}/checkpoint`,
        `/${HA.slice(0, 63)}/checkpoint`,
        `/${HA}0/checkpoint`,
        `/${'g'.repeat(64)}/checkpoint`,
        `/${encodeURIComponent(A.origin)}/checkpoint`,
        '/not-a-hash/checkpoint',
      ]) {
        const res = await get(path);
        expect([path, res.status]).toEqual([path, 404]);
        expect(res.headers.get('content-type')).toBe(TEXT);
      }
    });

    it('serves the checkpoint with the verified log signature(s) and the cosignature, unknown lines dropped', async () => {
      await witness();
      const impostor = newSigner(generateKey(A.origin).skey);
      const grease = newSigner(generateKey('grease.invalid').skey);
      const note = A.note(42, { extra: [impostor, grease] });
      f.clock.ms = T0 + 42_000;
      const line = await cosign(A.request(0, 42, { note }));
      const res = await get(`/${HA}/checkpoint`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(TEXT);
      const served = await res.text();
      // Exactly: the text, the log's line from the request, the cosignature line.
      const logLine = note.slice(A.text(42).length + 1).split('\n')[0] + '\n';
      expect(served).toBe(A.text(42) + '\n' + logLine + line);
      const opened = openNote(served, [A.verifier, KEY.verifier]);
      expect(opened.verified.map((s) => s.name)).toEqual([A.origin, WITNESS_NAME]);
      expect(opened.unverified).toEqual([]);
      expect(KEY.verifier.timestampOf(opened.verified[1]!.signature)).toBe(T0 / 1000 + 42);
    });
  });

  describe('concurrency', () => {
    it('20 concurrent requests from one old size: exactly one 200, the rest 409 with its size', async () => {
      await witness();
      await cosign(A.request(0, 100));
      const sizes = Array.from({ length: 20 }, (_, i) => 101 + ((i * 9) % 20) * 5);
      const results = await Promise.all(sizes.map((n) => add(A.request(100, n))));
      const winners = sizes.filter((_, i) => results[i]!.status === 200);
      expect(winners).toHaveLength(1);
      const w = winners[0]!;
      for (const r of results) {
        if (r.status === 200) continue;
        expect([r.status, r.type, r.body]).toEqual([409, TLOG_SIZE_CONTENT_TYPE, `${w}\n`]);
      }
      expect(await monitorSize()).toBe(w);
      checkLine(A.text(w), results[sizes.indexOf(w)]!.body);
      // No rollback: the winner's size is the one to extend from.
      await expect409(A.request(100, 300), w);
      await cosign(A.request(w, 300));
      expect(await monitorSize()).toBe(300);
    });

    it('interleaved clients following 409s: the stored size is the largest success, reached by one chain', async () => {
      await witness();
      const ok: Array<[number, number]> = [];
      const client = async (c: number) => {
        let known = 0;
        for (let i = 0; i < 5; i++) {
          const n = known + 1 + ((c * 5 + i * 3) % 7);
          const r = await add(A.request(known, n));
          if (r.status === 200) {
            ok.push([known, n]);
            known = n;
          } else {
            expect([r.status, r.type]).toEqual([409, TLOG_SIZE_CONTENT_TYPE]);
            const size = Number(r.body.trim());
            expect(size).toBeGreaterThan(known);
            known = size;
          }
        }
      };
      await Promise.all([0, 1, 2, 3, 4, 5, 6].map(client));
      const chain = [...ok].sort((a, b) => a[1] - b[1]);
      let prev = 0;
      for (const [old, n] of chain) {
        expect(old).toBe(prev);
        prev = n;
      }
      expect(await monitorSize()).toBe(Math.max(...ok.map((x) => x[1])));
    });
  });

  describe('forks', () => {
    const F = A.fork(9);

    it('422, evidence served and verifiable, alarm, metric, quarantine, admin resolve, then cosigning again', async () => {
      await witness();
      await cosign(A.request(0, 30));
      expect((await get(`/${HA}/fork-evidence`)).status).toBe(404);

      await expectStatus(A.request(30, 30, { note: F.note(30) }), 422);
      // The evidence is stored (in the background of the 422).
      let res = await get(`/${HA}/fork-evidence`);
      await eventually(async () => {
        res = await get(`/${HA}/fork-evidence`);
        return res.status === 200;
      }, 'the fork evidence');
      expect(res.headers.get('glasslog-fork-status')).toBe('open');
      expect(res.headers.get('content-type')).toBe(TEXT);
      expect(new Date(res.headers.get('glasslog-fork-detected')!).getTime()).not.toBeNaN();
      const evidence = await res.text();
      const v = verifyForkEvidence(evidence, [A.verifier]);
      expect([v.origin, v.smaller.treeSize, v.larger.treeSize]).toEqual([A.origin, 30, 30]);
      // Evidence needs the log's key: with another key it does not verify.
      expect(() => verifyForkEvidence(evidence, [B.verifier])).toThrow();

      await eventually(() => f.alarms.some((a) => a.kind === 'fork'), 'the fork alarm');
      const alarm = f.alarms.find((a) => a.kind === 'fork')!;
      expect(alarm.origin).toBe(A.origin);
      expect(alarm.evidence).toBe(evidence);
      const metrics = await (await get('/metrics')).text();
      expect(metrics).toContain(`glasslog_witness_forks_total{origin="${A.origin}"} 1`);
      expect(metrics).toContain('glasslog_witness_quarantined_logs 1');
      expect(metrics).toContain('glasslog_witness_add_checkpoint_total{status="422"} 1');

      // Quarantined: a valid extension of the held checkpoint is refused.
      await eventually(() => f.witness.isQuarantined(A.origin), 'the quarantine');
      const why = await expectStatus(A.request(30, 40), 403);
      expect(why).toMatch(/fork evidence/);
      await expectStatus(A.request(0, 40), 403, 'quarantine before 409');
      await expectStatus(A.request(30, 30), 403, 'even the same checkpoint');
      expect(await monitorSize()).toBe(30);
      // Other logs are not affected.
      await cosign(B.request(0, 3));

      // Resolving needs the admin token.
      const none = await resolve(HA);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect((await resolve(HA, 'wrong-token')).status).toBe(401);
      expect((await f.app.request(`/admin/forks/${HA}/resolve`, { method: 'POST', headers: { Authorization: ADMIN_TOKEN } })).status).toBe(401);
      expect((await f.app.request(`/admin/forks/${HA}/resolve`, { method: 'POST', headers: { Authorization: `Basic ${ADMIN_TOKEN}` } })).status).toBe(401);
      await expectStatus(A.request(30, 40), 403, 'still quarantined after refused resolves');
      const m2 = await (await get('/metrics')).text();
      expect(m2).toContain('glasslog_witness_http_denied_total{reason="missing"} 3');
      expect(m2).toContain('glasslog_witness_http_denied_total{reason="invalid"} 1');
      // Unknown or malformed hash with the token: 404.
      expect((await resolve(originHash(C.origin), ADMIN_TOKEN)).status).toBe(404);
      expect((await resolve('nothex', ADMIN_TOKEN)).status).toBe(404);

      const ok = await resolve(HA, ADMIN_TOKEN);
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/^resolved 1 fork record/);
      expect(f.witness.isQuarantined(A.origin)).toBe(false);
      res = await get(`/${HA}/fork-evidence`);
      expect(res.status).toBe(200);
      expect(res.headers.get('glasslog-fork-status')).toBe('resolved');
      expect(await res.text()).toBe(evidence);
      expect(await (await get('/metrics')).text()).toContain('glasslog_witness_quarantined_logs 0');

      // Cosigning resumes from the held checkpoint.
      f.clock.ms = T0 + 120_000;
      expect(checkLine(A.text(40), await cosign(A.request(30, 40)))).toBe(T0 / 1000 + 120);
      expect(await monitorSize()).toBe(40);
      const again = await resolve(HA, ADMIN_TOKEN);
      expect(await again.text()).toMatch(/^resolved 0 fork record/);
    });

    it('a restart keeps the quarantine (Witness.open reloads it from the store)', async () => {
      await witness();
      await cosign(A.request(0, 30));
      await expectStatus(A.request(30, 30, { note: F.note(30) }), 422);
      await eventually(async () => (await f.store.openForks(A.origin)).length === 1 && f.witness.isQuarantined(A.origin), 'the evidence');
      await f.reopen({ restartEngine: true });
      expect(f.alarms.filter((a) => a.kind === 'fork')).toHaveLength(1);
      await expectStatus(A.request(30, 40), 403);
      const res = await get(`/${HA}/fork-evidence`);
      expect([res.status, res.headers.get('glasslog-fork-status')]).toEqual([200, 'open']);
      expect(await (await get('/metrics')).text()).toContain('glasslog_witness_quarantined_logs 1');
      expect((await resolve(HA, ADMIN_TOKEN)).status).toBe(200);
      await cosign(A.request(30, 40));
      await f.reopen();
      await cosign(A.request(40, 41));
    });
  });

  describe('policy reload', () => {
    it('removing a log gives 404 afterwards; adding one makes it accepted', async () => {
      await witness([A, B]);
      await cosign(A.request(0, 10));
      await expectStatus(C.request(0, 10), 404);
      await f.witness.setPolicy(policyOf([B, C]));
      await expectStatus(A.request(10, 20), 404);
      expect((await get(`/${HA}/checkpoint`)).status).toBe(404);
      expect((await get(`/${HA}/fork-evidence`)).status).toBe(404);
      checkLine(C.text(10), await cosign(C.request(0, 10)));
      expect(await monitorSize(C)).toBe(10);
      const health = (await (await get('/healthz')).json()) as { logs: number };
      expect(health.logs).toBe(2);
    });
  });

  describe('health, metrics, routes', () => {
    it('/healthz and /metrics answer', async () => {
      await witness();
      const h = await get('/healthz');
      expect(h.status).toBe(200);
      expect(h.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await h.json()).toEqual({ status: 'ok', name: WITNESS_NAME, logs: 2 });

      await cosign(A.request(0, 10));
      await expect409(A.request(3, 10), 10);
      await expectStatus(C.request(0, 10), 404);
      const m = await get('/metrics');
      expect(m.status).toBe(200);
      expect(m.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const text = await m.text();
      expect(text).toContain('# TYPE glasslog_witness_add_checkpoint_total counter');
      expect(text).toContain('glasslog_witness_add_checkpoint_total{status="200"} 1');
      expect(text).toContain('glasslog_witness_add_checkpoint_total{status="409"} 1');
      expect(text).toContain('glasslog_witness_add_checkpoint_total{status="404"} 1');
      expect(text).toContain('glasslog_witness_forks_total 0');
      expect(text).toContain('glasslog_witness_quarantined_logs 0');
    });

    it('unknown routes and methods are 404', async () => {
      await witness();
      for (const [method, path] of [
        ['GET', '/add-checkpoint'],
        ['POST', '/checkpoint'],
        ['GET', '/nope'],
        ['POST', `/${HA}/checkpoint`],
        ['GET', `/admin/forks/${HA}/resolve`],
      ] as const) {
        const res = await f.app.request(path, { method });
        expect([method, path, res.status]).toEqual([method, path, 404]);
      }
    });
  });
});
