/**
 * exportEvidenceBundle (src/client/export.ts) against a real in-process log with the audit
 * layer (PGlite always, Postgres when DATABASE_URL is set), through its HTTP API: agents
 * registered, runs with payloads written, a key rotated, a payload erased; the bundles it
 * builds verify (verifyEvidenceBundle) with the payloads the token may read, proofs
 * recomputed when the log grows between pages, the most cosigned copy of the checkpoint,
 * and clear errors for bad input and misbehaving servers.
 */
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { encodeBase64, utf8 } from '../../src/core/encoding.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { formatTlogProof, parseTlogProof } from '../../src/core/tlog-proof.js';
import { exportEvidenceBundle, type ExportOptions } from '../../src/client/export.js';
import { FetchError } from '../../src/client/tile-client.js';
import { newCosigner } from '../../src/note/cosignature.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { formatNote, parseNote } from '../../src/note/note.js';
import { formatEvidenceBundle, parseEvidenceBundle, verifyEvidenceBundle, type EvidenceBundle, type VerifiedEvidenceBundle } from '../../src/verify/bundle.js';
import { parsePolicy } from '../../src/verify/policy.js';
import { createAuditFixture, entriesBody, TestAgent, type AuditFixture, type ClientEntry } from '../helpers/audit.js';
import { auditStoreFactories } from '../helpers/audit-stores.js';

const T0 = 1_750_000_000_000;
const URL_ = 'http://log.test';

const factories = auditStoreFactories();
afterAll(async () => {
  for (const f of factories) await f.dispose();
});

/** The statuses of a verified bundle's payloads, `{ index: { name: status } }`. */
const statuses = (v: VerifiedEvidenceBundle) =>
  Object.fromEntries(v.entries.map((e) => [e.index, Object.fromEntries(Object.entries(e.payloads).map(([n, p]) => [n, p.status === 'erased' ? `erased@${p.erasedAt}` : p.status]))]));

describe.each(factories)('exportEvidenceBundle on $name', (factory) => {
  let fx: AuditFixture;

  /** fetch into the fixture's app, optionally through `wrap` (to see or change answers). */
  const fetchVia = (wrap?: (url: string, res: Response) => Promise<Response>): typeof fetch =>
    (async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = input instanceof Request ? input.url : String(input);
      const res = await fx.app.request(url, init);
      return wrap ? wrap(url, res) : res;
    }) as typeof fetch;

  const exportWith = (filter: Parameters<typeof exportEvidenceBundle>[1], o: ExportOptions = {}) => exportEvidenceBundle(URL_, filter, { fetch: fetchVia(), ...o });
  const verify = (b: EvidenceBundle, trust: Parameters<typeof verifyEvidenceBundle>[1] = { logKey: fx.vkey }) => {
    const text = formatEvidenceBundle(b);
    expect(formatEvidenceBundle(parseEvidenceBundle(text))).toBe(text);
    return verifyEvidenceBundle(text, trust);
  };

  async function post(path: string, body: unknown, token = fx.token): Promise<Record<string, unknown>> {
    const res = await fx.request(path, { method: 'POST', headers: { ...fx.auth(token), 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await res.text();
    expect([200, 201], text).toContain(res.status);
    return JSON.parse(text) as Record<string, unknown>;
  }
  const submit = async (a: TestAgent, entries: ClientEntry[]) =>
    ((await post(`/v1/agents/${a.id}/entries`, entriesBody(entries))) as { results: Array<{ index: number }> }).results.map((r) => r.index);

  /**
   * A fresh log:
   *   0 register a1, 1 register a2, 2–5 a1/r1 #0 {prompt, output}, #1 {args}, #2, close 3,
   *   6–7 a2/r1 #0 {p}, #1, 8 rotate a1, 9–10 a1/r2 #0 {q}, #1, 11 erase 2 prompt;
   * and a reader token for a1.
   */
  async function scenario(): Promise<{ a1: TestAgent; a2: TestAgent; reader: string }> {
    fx = await createAuditFixture(factory);
    onTestFinished(() => fx.cleanup());
    const a1 = new TestAgent('a1');
    const a2 = new TestAgent('a2');
    await post('/v1/agents', { agent: 'a1', key: a1.key.vkey });
    await post('/v1/agents', { agent: 'a2', key: a2.key.vkey });
    expect(
      await submit(a1, [
        a1.event('r1', { time: T0, payloads: { prompt: 'Refund order 1234?', output: 'Policy R-7 allows it' } }),
        a1.event('r1', { time: T0 + 1, payloads: { args: '{"order":1234}' } }),
        a1.event('r1', { time: T0 + 2 }),
        a1.close('r1', { time: T0 + 3 }),
      ])
    ).toEqual([2, 3, 4, 5]);
    expect(await submit(a2, [a2.event('r1', { time: T0 + 4, payloads: { p: 'a2 only' } }), a2.event('r1', { time: T0 + 5 })])).toEqual([6, 7]);
    const k2 = a1.newKey();
    await post('/v1/agents/a1/keys', { key: k2.vkey });
    a1.key = k2;
    expect(await submit(a1, [a1.event('r2', { time: T0 + 6, payloads: { q: 'after the rotation' } }), a1.event('r2', { time: T0 + 7 })])).toEqual([9, 10]);
    expect((await post('/v1/agent-entries/2/payloads/prompt/erase', { reason: 'GDPR request' }))['index']).toBe(11);
    const reader = (await post('/v1/credentials', { kind: 'reader', agents: ['a1'] }))['token'] as string;
    return { a1, a2, reader };
  }

  it('round trip: everything, with a reader token of a1: payloads opened, withheld and erased; key periods; erasures', async () => {
    const { reader } = await scenario();
    const b = await exportWith({}, { token: reader });
    expect(b.origin).toBe(fx.origin);
    expect(b.entries.map((e) => e.index)).toEqual([2, 3, 4, 5, 6, 7, 9, 10]);
    expect(b.registry.map((e) => e.index)).toEqual([0, 1, 8]);
    expect(b.erasures.map((e) => e.index)).toEqual([11]);
    const v = verify(b);
    expect(v.checkpoint.treeSize).toBe(12);
    expect(statuses(v)).toEqual({
      2: { prompt: 'erased@11', output: 'opened' },
      3: { args: 'opened' },
      4: {},
      5: {},
      6: { p: 'withheld' },
      7: {},
      9: { q: 'opened' },
      10: {},
    });
    const out = v.entries[0]!.payloads['output']!;
    expect(out.status === 'opened' && new TextDecoder().decode(out.data)).toBe('Policy R-7 allows it');
    expect(v.agents.map((a) => [a.agent, a.periods.map((p) => [p.from, p.until, p.endedBy])])).toEqual([
      ['a1', [[0, 8, 'rotated'], [8, null, null]]],
      ['a2', [[1, null, null]]],
    ]);
    expect(v.runs).toEqual([
      { agent: 'a1', run: 'r1', first: 0, last: 3, closedWith: 3 },
      { agent: 'a2', run: 'r1', first: 0, last: 1 },
      { agent: 'a1', run: 'r2', first: 0, last: 1 },
    ]);
    // The operator token reads every payload that is not erased.
    expect(statuses(verify(await exportWith({}, { token: fx.token })))[6]).toEqual({ p: 'opened' });
  });

  it('filters: an agent, a run, no token, an agent with no entries', async () => {
    await scenario();
    const a2 = verify(await exportWith({ agent: 'a2' }));
    expect(a2.entries.map((e) => e.index)).toEqual([6, 7]);
    expect(a2.agents.map((a) => a.agent)).toEqual(['a2']);
    expect(statuses(a2)[6]).toEqual({ p: 'withheld' });
    const r1 = await exportWith({ agent: 'a1', run: 'r1' });
    expect(r1.registry.map((e) => e.index)).toEqual([0, 8]);
    const v = verify(r1);
    expect(v.filter).toEqual({ agent: 'a1', run: 'r1' });
    expect(statuses(v)[2]).toEqual({ prompt: 'erased@11', output: 'withheld' });
    const nobody = verify(await exportWith({ agent: 'nobody' }));
    expect(nobody.entries).toEqual([]);
    expect((await exportWith({ agent: 'a1', since: T0 + 1, until: T0 + 3 })).entries.map((e) => e.index)).toEqual([3, 4]);
  });

  it('a time window over a run whose client clock went back: the entries between are filled in', async () => {
    fx = await createAuditFixture(factory);
    onTestFinished(() => fx.cleanup());
    const a = new TestAgent('a1');
    await post('/v1/agents', { agent: 'a1', key: a.key.vkey });
    await submit(a, [a.event('w', { time: T0 + 10 }), a.event('w', { time: T0 + 5 }), a.event('w', { time: T0 + 11 }), a.event('w', { time: T0 + 30 })]);
    const b = await exportWith({ agent: 'a1', since: T0 + 8, until: T0 + 20 });
    expect(b.entries.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(verify(b).runs).toEqual([{ agent: 'a1', run: 'w', first: 0, last: 2 }]);
  });

  it('the log grows between pages: every proof is against the first page\'s checkpoint', async () => {
    const { a1 } = await scenario();
    let pages = 0;
    let tiles = 0;
    let grown = false;
    const fetch = fetchVia(async (url, res) => {
      if (url.includes('/tile/')) tiles++;
      if (url.includes('/v1/agent-entries?') && ++pages === 2 && !grown) {
        grown = true;
        await submit(a1, [a1.event('r2', { time: T0 + 8 }), a1.event('r3', { time: T0 + 9 })]);
      }
      return res;
    });
    const b = await exportEvidenceBundle(URL_, { agent: 'a1' }, { fetch, pageSize: 2 });
    expect(grown).toBe(true);
    expect(tiles).toBeGreaterThan(0); // the later pages' proofs, recomputed from the tiles
    const v = verify(b);
    expect(v.checkpoint.treeSize).toBe(12);
    expect(v.entries.map((e) => e.index)).toEqual([2, 3, 4, 5, 9, 10]);
    // The next export sees the new entries.
    expect(verify(await exportWith({ agent: 'a1' })).entries.map((e) => e.index)).toEqual([2, 3, 4, 5, 9, 10, 12, 13]);
  });

  it('takes the copy of the checkpoint with the most cosignatures, which a policy quorum needs', async () => {
    await scenario();
    const w = generateKey('w1.export.test/w', ALG_COSIGNATURE_V1);
    const policy = parsePolicy(`log ${fx.vkey}\nwitness w1 ${w.vkey}\nquorum w1\n`);
    // The log adds cosignatures to its stored checkpoint as they arrive (fail-open): the
    // receipt route serves the stored copy, with the cosignature the query pages lack.
    const fetch = fetchVia(async (url, res) => {
      if (!url.includes('/v1/receipts/0?treeSize=')) return res;
      const p = parseTlogProof(await res.text());
      const { text, signatures } = parseNote(p.checkpoint);
      const cosigned = formatNote(text, [...signatures, newCosigner(w.skey).cosign(text, 1_800_000_000)]);
      return new Response(formatTlogProof({ ...p, checkpoint: cosigned }), { status: 200 });
    });
    const b = await exportEvidenceBundle(URL_, { agent: 'a1' }, { fetch });
    expect([...verify(b, { policy }).cosigned]).toEqual(['w1']);
    const plain = await exportWith({ agent: 'a1' });
    expect(() => verify(plain, { policy })).toThrow(/witness quorum not met/);
  });

  it('a 410 for a payload the query did not show erased names the erasure, which is included', async () => {
    const { reader } = await scenario();
    const fetch = fetchVia(async (url, res) => {
      if (!url.includes('/v1/agent-entries?')) return res;
      // Hide erasedBy, as a page read before the erasure was indexed would.
      const j = (await res.json()) as { entries: Array<{ payloads: Record<string, { erasedBy?: number }> }> };
      for (const e of j.entries) for (const p of Object.values(e.payloads)) delete p.erasedBy;
      return new Response(JSON.stringify(j), { status: 200, headers: { 'content-type': 'application/json' } });
    });
    const b = await exportEvidenceBundle(URL_, { agent: 'a1', run: 'r1' }, { fetch, token: reader });
    expect(b.erasures.map((e) => e.index)).toEqual([11]);
    expect(statuses(verify(b))[2]).toEqual({ prompt: 'erased@11', output: 'opened' });
  });

  it('bad input and misbehaving servers give clear errors', async () => {
    await scenario();
    await expect(exportWith({ run: 'r1' })).rejects.toThrow(new MalformedError('filter: a run needs its agent'));
    await expect(exportWith({ agent: 'a 1' })).rejects.toThrow(/filter: agent "a 1" is not an agent id/);
    await expect(exportWith({ since: -1 })).rejects.toThrow(/filter: since must be a safe non-negative integer/);
    await expect(exportEvidenceBundle('not a url', {})).rejects.toThrow(/log URL "not a url" is not a URL/);
    await expect(exportEvidenceBundle('ftp://x/', {})).rejects.toThrow(/is not http or https/);
    const down = exportEvidenceBundle('http://127.0.0.1:1', {}, { timeoutMs: 5000 });
    await expect(down).rejects.toBeInstanceOf(FetchError);
    await expect(down).rejects.toThrow(/^GET http:\/\/127\.0\.0\.1:1\/v1\/agent-entries\?type=event%2Crun\.close&order=asc&limit=1000: fetch failed/);
    const notFound = (async () => new Response('<html>no</html>', { status: 404 })) as unknown as typeof fetch;
    await expect(exportEvidenceBundle(URL_, {}, { fetch: notFound })).rejects.toThrow(/GET http:\/\/log\.test\/v1\/agent-entries\?.*: status 404: <html>no<\/html>/);
    const notJson = (async () => new Response('hello', { status: 200 })) as unknown as typeof fetch;
    await expect(exportEvidenceBundle(URL_, {}, { fetch: notJson })).rejects.toThrow(/the answer is not JSON/);
    // The server's own error message is passed on.
    await expect(exportEvidenceBundle(URL_, { agent: 'a1' }, { fetch: fetchVia(async (url, res) => (url.includes('/v1/agent-entries?') ? new Response(JSON.stringify({ error: { status: 503, message: 'shutting down' } }), { status: 503 }) : res)) })).rejects.toThrow(/status 503: shutting down/);
  });

  it('a payload that does not open its commitment, an erasure that is not one: named at export time', async () => {
    const { reader } = await scenario();
    const lying = fetchVia(async (url, res) => {
      if (!url.includes('/payloads/output')) return res;
      const j = (await res.json()) as Record<string, unknown>;
      return new Response(JSON.stringify({ ...j, data: encodeBase64(utf8('Policy R-7 forbids it')) }), { status: 200 });
    });
    await expect(exportEvidenceBundle(URL_, { agent: 'a1' }, { fetch: lying, token: reader })).rejects.toThrow(new VerificationError('payload "output" of entry 2 as served does not open the entry\'s commitment'));
    const wrongErasure = fetchVia(async (url, res) => {
      if (!url.includes('/v1/agent-entries?')) return res;
      const j = (await res.json()) as { entries: Array<{ payloads: Record<string, { erasedBy?: number }> }> };
      for (const e of j.entries) for (const p of Object.values(e.payloads)) if (p.erasedBy !== undefined) p.erasedBy = 8;
      return new Response(JSON.stringify(j), { status: 200 });
    });
    await expect(exportEvidenceBundle(URL_, { agent: 'a1' }, { fetch: wrongErasure })).rejects.toThrow(/the log names entry 8 as the erasure of payload "prompt" of entry 2, but it is not that erasure/);
  });
});
