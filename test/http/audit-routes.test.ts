/**
 * The agent audit HTTP API (src/http/audit-routes.ts, spec/agent-api.md) through
 * app.request(), on every store (PGlite always, Postgres when DATABASE_URL is set), each test
 * on a fresh log + audit index in a schema of its own:
 *
 * - every refusal: its status, a message naming the problem, and nothing stored (log size,
 *   watermark and every audit table unchanged);
 * - all-or-nothing batches, idempotent resubmission, concurrent identical submissions;
 * - key rotation and revocation across log indices, the registry's own refusals;
 * - erasure: 410 afterwards, proofs of the erased entry still verify;
 * - access control per credential kind, revocation, public reads;
 * - queries end to end against a brute-force filter of a random log, every proof verified;
 * - runs and their audit findings.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { concatBytes, decodeBase64, encodeBase64, equalBytes, utf8 } from '../../src/core/encoding.js';
import { leafHash } from '../../src/core/hash.js';
import { parseTlogProof } from '../../src/core/tlog-proof.js';
import { verifyInclusion } from '../../src/core/tree.js';
import {
  decodeEnvelope,
  encodeCanonical,
  entrySigningMessage,
  entryToJson,
  envelope,
  signEntry,
  verifyEntrySignature,
  type CborValue,
  type Entry,
} from '../../src/entry/index.js';
import { generateKey, nobleEd25519, parseSignerKey, parseVerifierKey } from '../../src/note/index.js';
import { ENTRY_TYPES, type EntryType } from '../../src/storage/audit-store.js';
import {
  clientPayload,
  createAuditFixture,
  entriesBody,
  entryJson,
  TestAgent,
  type AuditFixture,
  type AuditFixtureOptions,
  type ClientEntry,
} from '../helpers/audit.js';
import { auditStoreFactories } from '../helpers/audit-stores.js';
import { openCheckpoint, verifyReceipt } from '../helpers/log.js';

const JSON_TYPE = 'application/json';
const CBOR_TYPE = 'application/cbor';
const T0 = 1_750_000_000_000;

const factories = auditStoreFactories();
afterAll(async () => {
  for (const f of factories) await f.dispose();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const body = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);

interface Result {
  index: number;
  leafHash: string;
  duplicate: boolean;
  receipt?: string;
}
interface QueryEntry {
  index: number;
  leafHash: string;
  logTime: number;
  entry: Record<string, unknown>;
  signature: string;
  envelope: string;
  payloads: Record<string, { commitment: string; erasedBy?: number }>;
  proof: string[];
}
interface QueryPage {
  checkpoint: string;
  treeSize: number;
  entries: QueryEntry[];
  next: string | null;
}
interface RunPage extends QueryPage {
  closed: boolean;
  count: number;
  findings: Array<{ kind: string; seq?: number; indices?: number[]; message: string }>;
}

/** Signs arbitrary CBOR as an entry (no schema check): for entries the server must refuse. */
function rawEnvelope(entry: CborValue | Uint8Array, skey: string): Uint8Array {
  const entryBytes = entry instanceof Uint8Array ? entry : encodeCanonical(entry);
  const sig = nobleEd25519.sign(parseSignerKey(skey).seed, entrySigningMessage(entryBytes));
  return encodeCanonical({ entry: entryBytes, sig });
}

/** Checks that a response is the JSON error body with `status` and a message matching `message`. */
async function expectError(res: Response, status: number, message: RegExp): Promise<string> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const parsed = JSON.parse(text) as { error: { status: number; message: string } };
  expect(parsed).toEqual({ error: { status, message: expect.any(String) } });
  expect(parsed.error.message).toMatch(message);
  return parsed.error.message;
}

/** Verifies a tlog-proof receipt for a leaf hash at an index. */
function checkReceipt(receipt: string, vkey: string, index: number, leaf: Uint8Array): number {
  const p = parseTlogProof(receipt);
  expect(p.index).toBe(index);
  const cp = openCheckpoint(p.checkpoint, vkey);
  verifyInclusion(leaf, index, cp.treeSize, [...p.proof], cp.rootHash);
  return cp.treeSize;
}

/** Verifies every entry of a query or run answer against the answer's own checkpoint. */
function checkProofs(page: QueryPage, vkey: string): void {
  const cp = openCheckpoint(page.checkpoint, vkey);
  expect(cp.treeSize).toBe(page.treeSize);
  for (const e of page.entries) {
    const env = decodeBase64(e.envelope, 'envelope');
    const lh = leafHash(env);
    expect(encodeBase64(lh)).toBe(e.leafHash);
    expect(e.index).toBeLessThan(cp.treeSize);
    verifyInclusion(lh, e.index, cp.treeSize, e.proof.map((p) => decodeBase64(p, 'proof')), cp.rootHash);
  }
}

describe.each(factories)('agent audit HTTP API on $name', (factory) => {
  let fx: AuditFixture;

  async function open(o: AuditFixtureOptions = {}): Promise<AuditFixture> {
    const f = await createAuditFixture(factory, o);
    onTestFinished(() => f.cleanup());
    fx = f;
    return f;
  }

  const req = (path: string, init?: RequestInit) => fx.request(path, init);
  const postJson = (path: string, payload: unknown, token: string | null = fx.token) =>
    req(path, {
      method: 'POST',
      headers: { ...(token === null ? {} : fx.auth(token)), 'Content-Type': JSON_TYPE },
      body: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  const postEntries = (agent: string, payload: string | Uint8Array, o: { token?: string | null; type?: string; query?: string } = {}) =>
    req(`/v1/agents/${agent}/entries${o.query ?? ''}`, {
      method: 'POST',
      headers: { ...(o.token === null ? {} : fx.auth(o.token ?? fx.token)), 'Content-Type': o.type ?? JSON_TYPE },
      body: typeof payload === 'string' ? payload : body(payload),
    });

  /** Submits entries as JSON envelopes; expects success and checks every result and receipt. */
  async function submit(agent: TestAgent | string, entries: ClientEntry[], o: { token?: string; query?: string } = {}): Promise<{ status: number; results: Result[] }> {
    const id = typeof agent === 'string' ? agent : agent.id;
    const res = await postEntries(id, entriesBody(entries), o);
    const text = await res.text();
    expect([200, 201], text).toContain(res.status);
    const { results } = JSON.parse(text) as { results: Result[] };
    expect(results).toHaveLength(entries.length);
    results.forEach((r, i) => {
      const e = entries[i]!;
      expect(r.leafHash).toBe(encodeBase64(e.signed.leafHash));
      if (o.query?.includes('wait=sequenced')) expect(r.receipt).toBeUndefined();
      else verifyReceipt(r.receipt!, fx.vkey, e.signed.bytes);
    });
    expect(res.status).toBe(results.every((r) => r.duplicate) ? 200 : 201);
    return { status: res.status, results };
  }

  /** Runs a request that must be refused, and checks that nothing was stored. */
  async function refused(send: () => Promise<Response>, status: number, message: RegExp): Promise<{ res: Response; message: string }> {
    const before = await fx.snapshot();
    const res = await send();
    const msg = await expectError(res, status, message);
    await sleep(10);
    expect(await fx.snapshot()).toEqual(before);
    return { res, message: msg };
  }

  async function registryCall(path: string, payload: unknown, token = fx.token): Promise<{ index: number; leafHash: string }> {
    const res = await postJson(path, payload, token);
    const text = await res.text();
    expect(res.status, text).toBe(201);
    const b = JSON.parse(text) as { index: number; leafHash: string; receipt: string };
    checkReceipt(b.receipt, fx.vkey, b.index, decodeBase64(b.leafHash, 'leafHash'));
    return b;
  }
  const register = async (a: TestAgent) => (await registryCall('/v1/agents', { agent: a.id, key: a.key.vkey })).index;
  const rotate = async (a: TestAgent, key: { skey: string; vkey: string }) => {
    const r = await registryCall(`/v1/agents/${a.id}/keys`, { key: key.vkey });
    a.key = key;
    return r.index;
  };
  const revoke = async (a: TestAgent, reason = 'compromised') => (await registryCall(`/v1/agents/${a.id}/keys/revoke`, { key: a.key.vkey, reason })).index;

  async function credential(spec: Record<string, unknown>): Promise<{ id: string; token: string }> {
    const res = await postJson('/v1/credentials', spec);
    const text = await res.text();
    expect(res.status, text).toBe(201);
    return JSON.parse(text) as { id: string; token: string };
  }

  async function getJson<T>(path: string, token?: string): Promise<{ status: number; body: T }> {
    const res = await req(path, token ? { headers: fx.auth(token) } : undefined);
    const text = await res.text();
    return { status: res.status, body: JSON.parse(text) as T };
  }

  async function metric(name: string, labels: string): Promise<number> {
    const text = await (await req('/metrics')).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  }

  /** A fresh log with agent "a1" registered. */
  async function withAgent(o: AuditFixtureOptions = {}): Promise<TestAgent> {
    await open(o);
    const a = new TestAgent('a1');
    await register(a);
    return a;
  }

  // ---------------------------------------------------------------------------------------
  describe('refusals: status, message, nothing stored', () => {
    it('malformed request bodies', async () => {
      const a = await withAgent();
      const good = a.event('r');
      await refused(() => postEntries('a1', '{"entries": ['), 400, /not valid JSON/);
      await refused(() => postEntries('a1', '[]'), 400, /JSON object/);
      await refused(() => postEntries('a1', '{}'), 400, /\{"entries": \[\.\.\.\]\}/);
      await refused(() => postEntries('a1', '{"entries": 3}'), 400, /\{"entries": \[\.\.\.\]\}/);
      await refused(() => postEntries('a1', '{"entries": []}'), 400, /"entries" is empty/);
      await refused(() => postEntries('a1', JSON.stringify({ entries: [entryJson(good)], extra: 1 })), 400, /unknown field "extra"/);
      await refused(() => postEntries('a1', entriesBody([good]), { type: 'text/plain' }), 415, /Content-Type/);
      await refused(() => postEntries('a1', JSON.stringify({ entries: ['x'] })), 400, /entries\[0\] must be an object/);
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ ...entryJson(good), note: 'hi' }] })), 400, /entries\[0\]: unknown field "note"/);
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{}] })), 400, /entries\[0\]: needs "envelope"/);
      await refused(
        () => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(good.signed.bytes), sig: encodeBase64(good.signed.signature) }] })),
        400,
        /entries\[0\]: give "envelope" or "entry" with "sig", not both/
      );
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ envelope: 'not base64!' }] })), 400, /entries\[0\]\.envelope: invalid base64/);
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ envelope: 42 }] })), 400, /entries\[0\]\.envelope must be/);
      // Canonical CBOR bodies are refused when not canonical.
      const cbor = encodeCanonical({ entries: [{ envelope: good.signed.bytes }] });
      const nonCanonical = concatBytes(Uint8Array.of(0xbf), cbor.subarray(1), Uint8Array.of(0xff)); // indefinite-length map
      await refused(() => postEntries('a1', nonCanonical, { type: CBOR_TYPE }), 400, /request body/);
      await refused(() => postEntries('a1', Uint8Array.of(0xff), { type: CBOR_TYPE }), 400, /request body/);
      // The good entry alone is accepted: the refusals above were about the body.
      await submit(a, [good]);
    });

    it('malformed envelopes and entries (bad CBOR, non-canonical, unknown field, wrong types)', async () => {
      const a = await withAgent();
      const good = a.event('r');
      const env = good.signed;
      const send = (bytes: Uint8Array) => () => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(bytes) }] }));
      await refused(send(Uint8Array.of(0xff)), 400, /^entries\[0\]: envelope/);
      await refused(send(Uint8Array.of(0x01)), 400, /^entries\[0\]: envelope: expected a map/);
      await refused(send(concatBytes(env.bytes, Uint8Array.of(0))), 400, /^entries\[0\]: envelope.*trailing/);
      // The envelope's keys in the wrong order ("entry" before "sig").
      const swapped = concatBytes(Uint8Array.of(0xa2), encodeCanonical('entry'), encodeCanonical(env.entryBytes), encodeCanonical('sig'), encodeCanonical(env.signature));
      await refused(send(swapped), 400, /^entries\[0\]: envelope/);
      await refused(send(encodeCanonical({ entry: env.entryBytes, sig: env.signature, x: 1 })), 400, /envelope\.x: unknown field/);
      await refused(send(encodeCanonical({ entry: env.entryBytes })), 400, /envelope\.sig: missing/);
      await refused(send(encodeCanonical({ entry: env.entryBytes, sig: env.signature.subarray(0, 63) })), 400, /envelope\.sig: 63 bytes/);
      // Entries inside a canonical envelope, validly signed, but not valid entries.
      const base = { v: 1, type: 'event', agent: 'a1', run: 'r2', seq: 0, kind: 'tool_call', time: T0 };
      await refused(send(rawEnvelope({ ...base, foo: 1 }, a.key.skey)), 400, /entries\[0\]: entry\.foo: unknown field/);
      await refused(send(rawEnvelope({ ...base, seq: 'zero' }, a.key.skey)), 400, /entries\[0\]: entry\.seq: expected an unsigned integer/);
      await refused(send(rawEnvelope({ ...base, kind: 'shell' }, a.key.skey)), 400, /entries\[0\]: entry\.kind/);
      await refused(send(rawEnvelope({ ...base, v: 2 }, a.key.skey)), 400, /entries\[0\]: entry\.v: unsupported version/);
      await refused(send(rawEnvelope({ ...base, seq: 1 }, a.key.skey)), 400, /entries\[0\]: entry\.prev: missing/);
      await refused(send(rawEnvelope({ ...base, type: 'agent.login' }, a.key.skey)), 400, /entries\[0\]: entry\.type: unknown entry type/);
      // A non-canonical entry encoding (seq 0 with a one-byte head) inside a canonical envelope.
      const canonical = encodeCanonical(base);
      const seqAt = Buffer.from(canonical).indexOf(Buffer.from([0x63, 0x73, 0x65, 0x71, 0x00]));
      expect(seqAt).toBeGreaterThan(0);
      const loose = concatBytes(canonical.subarray(0, seqAt + 4), Uint8Array.of(0x18, 0x00), canonical.subarray(seqAt + 5));
      await refused(send(rawEnvelope(loose, a.key.skey)), 400, /entries\[0\]: entry/);
      // The JSON form {entry, sig}: the same checks, named under entries[i].entry.
      const sig = encodeBase64(env.signature);
      const json = entryToJson(good.signed.entry);
      const sendJson = (entry: unknown, s: unknown = sig) => () => postEntries('a1', JSON.stringify({ entries: [{ entry, sig: s }] }));
      await refused(sendJson({ ...json, extra: true }), 400, /entries\[0\]\.entry: entry\.extra: unknown field/);
      await refused(sendJson({ ...json, seq: '0' }), 400, /entries\[0\]\.entry: entry\.seq: expected an unsigned integer/);
      await refused(sendJson({ ...json, time: 1.5 }), 400, /entries\[0\]\.entry: entry\.time/);
      await refused(sendJson({ ...json, v: 2 }), 400, /entries\[0\]\.entry: entry\.v/);
      await refused(sendJson(json, encodeBase64(env.signature.subarray(0, 32))), 400, /sig: 32 bytes/);
      // The second entry of a batch is named.
      await refused(() => postEntries('a1', JSON.stringify({ entries: [entryJson(good), { envelope: encodeBase64(rawEnvelope({ ...base, foo: 1 }, a.key.skey)) }] })), 400, /^entries\[1\]: entry\.foo: unknown field/);
      await submit(a, [good]);
    });

    it('a registry or erasure entry submitted by an agent is refused (400)', async () => {
      const a = await withAgent();
      const k = a.newKey();
      for (const e of [
        { type: 'agent.rotate', agent: 'a1', key: k.vkey, time: T0 },
        { type: 'agent.register', agent: 'a1', key: k.vkey, time: T0 },
        { type: 'agent.revoke', agent: 'a1', key: a.key.vkey, reason: '', time: T0 },
        { type: 'payload.erase', index: 0, name: 'p', reason: '', time: T0 },
      ] as Entry[]) {
        // Signed by the agent's key and by the log's key: neither may come in this way.
        for (const skey of [a.key.skey, fx.skey]) {
          const s = signEntry(e, skey);
          await refused(() => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(s.bytes) }] })), 400, new RegExp(`entries\\[0\\]: an agent cannot submit a "${e.type.replace('.', '\\.')}" entry`));
        }
      }
    });

    it("an entry of another agent than the path's is refused (403)", async () => {
      const a = await withAgent();
      const b = new TestAgent('b2');
      await register(b);
      const agentToken = (await credential({ kind: 'agent', agent: 'a1' })).token;
      const eb = b.event('r');
      // As the operator, and as a1's own credential: b2's entry on a1's path.
      await refused(() => postEntries('a1', entriesBody([eb])), 403, /entries\[0\] is an entry of agent "b2", not of "a1"/);
      await refused(() => postEntries('a1', entriesBody([a.event('r'), eb]), { token: agentToken }), 403, /entries\[1\] is an entry of agent "b2", not of "a1"/);
      await submit(b, [eb]);
    });

    it('payloads: missing (400), extra (400), not matching the commitment (422)', async () => {
      const a = await withAgent();
      const e = a.event('r', { payloads: { prompt: 'the prompt', output: 'the output' } });
      const withPayloads = (payloads: Record<string, { salt: string; data: string }>) => () =>
        postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(e.signed.bytes), payloads }] }));
      const p = (x: { salt: Uint8Array; data: Uint8Array }) => ({ salt: encodeBase64(x.salt), data: encodeBase64(x.data) });
      const prompt = p(e.payloads.prompt!);
      const output = p(e.payloads.output!);
      await refused(withPayloads({ prompt }), 400, /entries\[0\]: the entry commits to payload "output", which the request does not carry/);
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(e.signed.bytes) }] })), 400, /commits to payload "(prompt|output)"/);
      await refused(withPayloads({ prompt, output, extra: output }), 400, /entries\[0\]: payload "extra" is not committed to by the entry/);
      await refused(withPayloads({ prompt, output: p({ salt: e.payloads.output!.salt, data: utf8('another output') }) }), 422, /entries\[0\]: payload "output" and its salt do not match the entry's commitment/);
      await refused(withPayloads({ prompt, output: p({ salt: e.payloads.prompt!.salt, data: e.payloads.output!.data }) }), 422, /payload "output" and its salt do not match/);
      await refused(withPayloads({ prompt, output: { salt: output.salt } as never }), 400, /entries\[0\]\.payloads\.output must be \{"salt", "data"\}/);
      // Payloads on an entry that commits to none.
      const plain = a.event('r2');
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ ...entryJson(plain), payloads: { prompt } }] })), 400, /payload "prompt" is not committed to/);
      await submit(a, [e, plain]);
    });

    it('payloads: a salt of the wrong size is a client error (400), not a server error', async () => {
      const a = await withAgent();
      const e = a.event('r', { payloads: { prompt: 'p' } });
      const short = { salt: encodeBase64(new Uint8Array(16)), data: encodeBase64(utf8('p')) };
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(e.signed.bytes), payloads: { prompt: short } }] })), 400, /salt/);
    });

    it('payloads: an extra payload named like an Object.prototype member is refused', async () => {
      const a = await withAgent();
      // An extra payload named "toString" (the entry commits to none of that name).
      const plain = a.event('r');
      const extra = { salt: encodeBase64(new Uint8Array(32)), data: encodeBase64(utf8('x')) };
      await refused(
        () => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(plain.signed.bytes), payloads: { toString: extra } }] })),
        400,
        /payload "toString" is not committed to/
      );
    });

    it('payloads: a committed payload named like an Object.prototype member must be carried', async () => {
      const a = await withAgent();
      // An entry committing to a payload named "constructor" that the request does not carry.
      const e = a.event('r2', { payloads: { constructor: 'c' } });
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(e.signed.bytes) }] })), 400, /commits to payload "constructor", which the request does not carry/);
      // With its payload it is accepted, and the payload reads back.
      const { results } = await submit(a, [e]);
      const got = await getJson<{ data: string }>(`/v1/agent-entries/${results[0]!.index}/payloads/constructor`, fx.token);
      expect(got.status).toBe(200);
      expect(got.body.data).toBe(encodeBase64(utf8('c')));
    });

    it('unknown agent (404), and unknown agent in the path of a valid entry', async () => {
      await open();
      const z = new TestAgent('zed');
      await refused(() => postEntries('zed', entriesBody([z.event('r')])), 404, /unknown agent "zed"/);
      await refused(() => postEntries('bad%20name', entriesBody([z.event('r')])), 400, /agent/);
    });

    it('revoked key (403 naming the revocation), rotated-out key (403 naming the rotation index), bad signature (422)', async () => {
      const a = await withAgent();
      const k1 = a.key;
      await submit(a, [a.event('r')]);
      const rot = await rotate(a, a.newKey());
      const stale = a.event('r', {}, k1.skey);
      const prev0 = (stale.signed.entry as { prev?: Uint8Array }).prev;
      const { message } = await refused(() => postEntries('a1', entriesBody([stale])), 403, new RegExp(`entries\\[0\\] is signed with .*rotated out at index ${rot}`));
      // The key is named (quoted, possibly shortened): its name and key ID at least.
      expect(message).toContain(k1.vkey.split('+').slice(0, 2).join('+'));
      // A key that was never the agent's (named after it): a bad signature.
      const stranger = generateKey('a1');
      a.seek('r', 1, prev0);
      await refused(() => postEntries('a1', entriesBody([a.event('r', {}, stranger.skey)])), 422, /entries\[0\]: the signature does not verify with agent "a1"'s current key/);
      // A valid entry with one signature bit flipped.
      a.seek('r', 1, prev0);
      const good = a.event('r');
      const sig = new Uint8Array(good.signed.signature);
      sig[5]! ^= 1;
      const flipped = envelope(good.signed.entryBytes, sig);
      await refused(() => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(flipped.bytes) }] })), 422, /signature does not verify/);
      await submit(a, [good]);
      // Revoked: nothing is accepted, whichever key signs.
      const rev = await revoke(a);
      const next = a.event('r');
      await refused(() => postEntries('a1', entriesBody([next])), 403, new RegExp(`agent "a1" has no valid key: .* was revoked at index ${rev}`));
      a.seek('r', 2, good.signed.leafHash);
      await refused(() => postEntries('a1', entriesBody([a.event('r', {}, k1.skey)])), 403, /revoked at index/);
      // After a rotation to a new key, the revoked key is named as such.
      const k3 = a.newKey();
      const revoked = a.key;
      await rotate(a, k3);
      a.seek('r', 2, good.signed.leafHash);
      await refused(() => postEntries('a1', entriesBody([a.event('r', {}, revoked.skey)])), 403, new RegExp(`revoked at index ${rev}`));
      a.seek('r', 2, good.signed.leafHash);
      await submit(a, [a.event('r')]);
    });

    it('replay: the same (agent, run, seq) with other bytes (409), and one seq twice in a request (409)', async () => {
      const a = await withAgent();
      const e0 = a.event('r', { attrs: { n: 1 } });
      const [r0] = (await submit(a, [e0])).results;
      a.seek('r', 0);
      const other = a.event('r', { attrs: { n: 2 } });
      await refused(() => postEntries('a1', entriesBody([other])), 409, new RegExp(`entries\\[0\\]: seq 0 of run "r" is already logged at index ${r0!.index} with different content`));
      // Twice in one request, same bytes or not.
      const e1 = a.event('r2');
      await refused(() => postEntries('a1', entriesBody([e1, e1])), 409, /entries\[1\]: seq 0 of run "r2" appears twice in the request/);
      a.seek('r2', 0);
      const e1b = a.event('r2', { kind: 'decision' });
      await refused(() => postEntries('a1', entriesBody([e1, e1b])), 409, /entries\[1\]: seq 0 of run "r2"/);
      await submit(a, [e1]);
    });

    it("prev that is not the previous entry's leaf hash (422), and entries after run.close (409)", async () => {
      const a = await withAgent();
      const e0 = a.event('r');
      await submit(a, [e0]);
      const wrong = a.event('r', { prev: leafHash(utf8('something else')) });
      await refused(() => postEntries('a1', entriesBody([wrong])), 422, /entries\[0\]: prev is not the leaf hash of seq 0 of run "r"/);
      // In one batch: seq 0 and a seq 1 pointing elsewhere.
      const f0 = a.event('q');
      const f1 = a.event('q', { prev: new Uint8Array(32).fill(7) });
      await refused(() => postEntries('a1', entriesBody([f0, f1])), 422, /entries\[1\]: prev is not the leaf hash of seq 0 of run "q"/);
      a.seek('r', 1, e0.signed.leafHash);
      const e1 = a.event('r');
      const close = a.close('r');
      const [, rc] = (await submit(a, [e1, close])).results;
      const late = a.event('r');
      await refused(() => postEntries('a1', entriesBody([late])), 409, new RegExp(`entries\\[0\\]: run "r" was closed at index ${rc!.index}`));
      // A close and an entry after it in one batch.
      const g0 = a.event('s');
      const gc = a.close('s');
      const g2 = a.event('s');
      await refused(() => postEntries('a1', entriesBody([g0, gc, g2])), 409, /entries\[2\]: run "s" was closed/);
      // Resubmitting what the closed run holds is still fine (a duplicate).
      expect((await submit(a, [e1, close])).results.every((r) => r.duplicate)).toBe(true);
    });

    it('rate limit: 429 with Retry-After, nothing stored; admitted again after Retry-After', async () => {
      let clock = T0;
      const a = await withAgent({ rate: { perSecond: 1, burst: 3 }, now: () => clock });
      const first = [a.event('r'), a.event('r'), a.event('r')];
      await submit(a, first);
      const next = a.event('r');
      const { res } = await refused(() => postEntries('a1', entriesBody([next])), 429, /agent "a1" exceeds its rate limit/);
      const wait = Number(res.headers.get('retry-after'));
      expect(wait).toBeGreaterThanOrEqual(1);
      // Duplicates cost nothing.
      expect((await submit(a, first)).results.every((r) => r.duplicate)).toBe(true);
      // Another agent has its own budget.
      const b = new TestAgent('b2');
      await register(b);
      await submit(b, [b.event('r')]);
      clock += wait * 1000;
      await submit(a, [next]);
      expect(await metric('glasslog_agent_entries_rejected_total', 'reason="rate"')).toBeGreaterThanOrEqual(1);
    });

    it('rate limit: a batch larger than the burst is not told to retry in vain', async () => {
      let clock = T0;
      const a = await withAgent({ rate: { perSecond: 2, burst: 4 }, now: () => clock });
      const batch = [0, 1, 2, 3, 4].map(() => a.event('r'));
      const res = await postEntries('a1', entriesBody(batch));
      const text = await res.text();
      if (res.status === 429) {
        // Retry-After promises that a retry after that many seconds can be admitted.
        clock += Number(res.headers.get('retry-after')) * 1000 + 60_000;
        const retry = await postEntries('a1', entriesBody(batch));
        expect(retry.status, `429 "${text}", then after Retry-After: ${retry.status} ${await retry.text()}`).toBe(201);
      } else {
        expect([201, 413], text).toContain(res.status);
      }
    });

    it('credentials: none (401 + WWW-Authenticate), invalid (401), wrong kind (403); denials are counted', async () => {
      const a = await withAgent();
      const e = a.event('r');
      const before = {
        missing: await metric('glasslog_http_denied_total', 'reason="missing"'),
        invalid: await metric('glasslog_http_denied_total', 'reason="invalid"'),
        forbidden: await metric('glasslog_http_denied_total', 'reason="forbidden"'),
      };
      const { res } = await refused(() => postEntries('a1', entriesBody([e]), { token: null }), 401, /Authorization: Bearer/);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const bad = await refused(() => postEntries('a1', entriesBody([e]), { token: 'not-a-token' }), 401, /not valid/);
      expect(bad.res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      await refused(
        () => req('/v1/agents/a1/entries', { method: 'POST', headers: { Authorization: 'Basic abc', 'Content-Type': JSON_TYPE }, body: entriesBody([e]) }),
        401,
        /Authorization: Bearer/
      );
      const reader = await credential({ kind: 'reader', agents: ['a1'] });
      await refused(() => postEntries('a1', entriesBody([e]), { token: reader.token }), 403, /a reader credential cannot write entries/);
      const other = await credential({ kind: 'agent', agent: 'b2' });
      await refused(() => postEntries('a1', entriesBody([e]), { token: other.token }), 403, /writes as agent "b2", not "a1"/);
      await refused(() => postJson('/v1/agents', { agent: 'c3', key: generateKey('c3').vkey }, other.token), 403, /registering an agent needs an operator credential/);
      expect(await metric('glasslog_http_denied_total', 'reason="missing"')).toBe(before.missing + 2);
      expect(await metric('glasslog_http_denied_total', 'reason="invalid"')).toBe(before.invalid + 1);
      expect(await metric('glasslog_http_denied_total', 'reason="forbidden"')).toBe(before.forbidden + 3);
      await submit(a, [e]);
    });

    it('registry refusals: register twice, rotate to a used key, revoke a non-current key (409), bad keys (400), unknown agent (404)', async () => {
      const a = await withAgent();
      const k1 = a.key;
      await refused(() => postJson('/v1/agents', { agent: 'a1', key: a.newKey().vkey }), 409, /agent "a1" is already registered/);
      await refused(() => postJson('/v1/agents', { agent: 'b2', key: generateKey('a1').vkey }), 400, /key: its name "a1" must be the agent id "b2"/);
      await refused(() => postJson('/v1/agents', { agent: 'b2', key: 'b2+00000000+AAAA' }), 400, /key/);
      await refused(() => postJson('/v1/agents', { agent: 'b2', key: generateKey('b2', 0x04).vkey }), 400, /Ed25519/);
      await refused(() => postJson('/v1/agents', { agent: 'b c', key: generateKey('b2').vkey }), 400, /agent/);
      await refused(() => postJson('/v1/agents', { agent: 'b2' }), 400, /"key" must be/);
      await refused(() => postJson('/v1/agents', { agent: 'b2', key: generateKey('b2').vkey, extra: 1 }), 400, /unknown field "extra"/);
      await refused(() => postJson('/v1/agents/a1/keys', { key: k1.vkey }), 409, /has used this key before/);
      await refused(() => postJson('/v1/agents/a1/keys', { key: generateKey('b2').vkey }), 400, /must be the agent id "a1"/);
      await refused(() => postJson('/v1/agents/zz/keys', { key: generateKey('zz').vkey }), 404, /unknown agent "zz"/);
      await refused(() => postJson('/v1/agents/a1/keys/revoke', { key: generateKey('a1').vkey }), 409, /is not agent "a1"'s current key/);
      const k2 = a.newKey();
      await rotate(a, k2);
      await refused(() => postJson('/v1/agents/a1/keys/revoke', { key: k1.vkey }), 409, /is not agent "a1"'s current key/);
      await refused(() => postJson('/v1/agents/a1/keys', { key: k1.vkey }), 409, /has used this key before/);
      await refused(() => postJson('/v1/agents/a1/keys', { key: k2.vkey }), 409, /has used this key before/);
      await revoke(a);
      await refused(() => postJson('/v1/agents/a1/keys/revoke', { key: k2.vkey }), 409, /current key/);
      await refused(() => postJson('/v1/agents/a1/keys', { key: k2.vkey }), 409, /has used this key before/);
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('all or nothing, idempotency', () => {
    it('a batch with one bad entry stores none of it; the good ones then go in at the same place', async () => {
      const a = await withAgent();
      const good = [a.event('r', { payloads: { p: 'zero' } }), a.event('r'), a.event('r', { payloads: { p: 'two' } })];
      const stranger = generateKey('a1');
      const bad = a.event('other', {}, stranger.skey);
      const size = fx.log.sequencedSize();
      await refused(() => postEntries('a1', entriesBody([...good, bad])), 422, /^entries\[3\]: the signature does not verify/);
      await refused(() => postEntries('a1', entriesBody([good[0]!, bad, good[1]!])), 422, /^entries\[1\]/);
      const { results } = await submit(a, good);
      expect(results.map((r) => r.index)).toEqual([size, size + 1, size + 2]);
      expect(results.every((r) => !r.duplicate)).toBe(true);
    });

    it('resubmitting returns the same indices as duplicates and the log does not grow', async () => {
      const a = await withAgent();
      const entries = [a.event('r', { payloads: { p: 'x' } }), a.event('r'), a.close('r')];
      const first = await submit(a, entries);
      expect(first.status).toBe(201);
      const snap = await fx.snapshot();
      const again = await submit(a, entries);
      expect(again.status).toBe(200);
      expect(again.results.map((r) => r.index)).toEqual(first.results.map((r) => r.index));
      expect(again.results.every((r) => r.duplicate)).toBe(true);
      // The JSON form {entry, sig} and the CBOR body are the same entries.
      const asJson = JSON.stringify({
        entries: entries.map((e) => ({ entry: entryToJson(e.signed.entry), sig: encodeBase64(e.signed.signature), ...('p' in e.payloads ? { payloads: entryJson(e).payloads } : {}) })),
      });
      const r2 = await postEntries('a1', asJson);
      expect(r2.status).toBe(200);
      expect(((await r2.json()) as { results: Result[] }).results.map((r) => [r.index, r.duplicate])).toEqual(first.results.map((r) => [r.index, true]));
      const cbor = encodeCanonical({
        entries: entries.map((e) => ({
          envelope: e.signed.bytes,
          ...(Object.keys(e.payloads).length ? { payloads: Object.fromEntries(Object.entries(e.payloads).map(([n, p]) => [n, { salt: p.salt, data: p.data }])) } : {}),
        })),
      });
      const r3 = await postEntries('a1', cbor, { type: CBOR_TYPE });
      expect(r3.status, await r3.clone().text()).toBe(200);
      expect(await fx.snapshot()).toEqual(snap);
      // Old and new together: the old ones are duplicates, the new one is appended.
      const more = a.event('r2');
      const mixed = await submit(a, [entries[1]!, more]);
      expect(mixed.status).toBe(201);
      expect(mixed.results.map((r) => r.duplicate)).toEqual([true, false]);
      expect(mixed.results[0]!.index).toBe(first.results[1]!.index);
      expect(mixed.results[1]!.index).toBe(snap.sequenced);
    });

    it('a CBOR body may carry the entry as a map with byte strings for bytes', async () => {
      const a = await withAgent();
      const e0 = a.event('r');
      const e1 = a.event('r', { payloads: { p: 'data' } });
      await submit(a, [e0]);
      const cborEntry = (e: ClientEntry) => {
        const j = entryToJson(e.signed.entry) as Record<string, CborValue>;
        const ev = e.signed.entry as { prev?: Uint8Array; payloads?: Record<string, Uint8Array> };
        return { ...j, ...(ev.prev ? { prev: ev.prev } : {}), ...(ev.payloads ? { payloads: ev.payloads } : {}) } as CborValue;
      };
      const cbor = encodeCanonical({
        entries: [{ entry: cborEntry(e1), sig: e1.signed.signature, payloads: { p: { salt: e1.payloads.p!.salt, data: e1.payloads.p!.data } } }],
      });
      const res = await postEntries('a1', cbor, { type: CBOR_TYPE });
      expect(res.status, await res.text()).toBe(201);
    });

    it('a CBOR batch as large as a JSON one is accepted', async () => {
      const a = await withAgent();
      const entries = Array.from({ length: 300 }, () => a.event('r', { attrs: { note: 'x'.repeat(100) } }));
      // Canonical CBOR written by hand (encodeCanonical itself stops at 64 KiB):
      // {"entries": [{"envelope": h'…'}, …]} with a 2-byte array head for 300 items.
      const cbor = concatBytes(
        Uint8Array.of(0xa1),
        encodeCanonical('entries'),
        Uint8Array.of(0x99, entries.length >> 8, entries.length & 0xff),
        ...entries.map((e) => encodeCanonical({ envelope: e.signed.bytes }))
      );
      expect(cbor.length).toBeGreaterThan(65536);
      expect(entriesBody(entries).length).toBeGreaterThan(cbor.length);
      const res = await postEntries('a1', cbor, { type: CBOR_TYPE, query: '?wait=sequenced' });
      expect(res.status, (await res.text()).slice(0, 300)).toBe(201);
    });

    it('10 identical submissions in parallel log each entry once', async () => {
      const a = await withAgent();
      const entries = [a.event('r', { payloads: { p: 'x' } }), a.event('r'), a.event('r2')];
      const snap = await fx.snapshot();
      const all = await Promise.all(Array.from({ length: 10 }, () => postEntries('a1', entriesBody(entries))));
      const bodies = await Promise.all(all.map(async (r) => ({ status: r.status, body: (await r.json()) as { results: Result[] } })));
      for (const b of bodies) expect([200, 201], JSON.stringify(b)).toContain(b.status);
      const indices = bodies[0]!.body.results.map((r) => r.index);
      expect(new Set(indices).size).toBe(3);
      for (const b of bodies) expect(b.body.results.map((r) => r.index)).toEqual(indices);
      // Each entry was appended by exactly one of the requests.
      for (let i = 0; i < 3; i++) expect(bodies.filter((b) => !b.body.results[i]!.duplicate)).toHaveLength(1);
      const after = await fx.snapshot();
      expect(after.sequenced).toBe(snap.sequenced + 3);
      expect(after.entries).toBe(snap.entries + 3);
      expect(after.payloads).toBe(snap.payloads + 1);
      const q = await getJson<QueryPage>('/v1/agent-entries?agent=a1&type=event');
      expect(q.body.entries.map((e) => e.index)).toEqual([...indices].sort((x, y) => x - y));
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('key rotation and revocation across indices', () => {
    it('entries stay valid across rotations; key periods match the log indices', async () => {
      await open();
      const a = new TestAgent('svc:planner@acme.example');
      const reg = await register(a);
      const k1 = a.key;
      const before = (await submit(a, [a.event('r'), a.event('r', { payloads: { p: 'one' } })])).results;
      const k2 = a.newKey();
      const rot = await rotate(a, k2);
      expect(rot).toBeGreaterThan(before[1]!.index);
      // After the rotation only the new key works.
      const afterRot = (await submit(a, [a.event('r')])).results;
      const rev = await revoke(a, 'laptop stolen');
      const k3 = a.newKey();
      const rot2 = await rotate(a, k3);
      const last = (await submit(a, [a.event('r'), a.close('r')])).results;

      const keys = await getJson<{ agent: string; keys: Array<{ key: string; from: number; until: number | null; endedBy: string | null }> }>(`/v1/agents/${a.id}`);
      expect(keys.status).toBe(200);
      expect(keys.body).toEqual({
        agent: a.id,
        keys: [
          { key: k1.vkey, from: reg, until: rot, endedBy: 'rotated' },
          { key: k2.vkey, from: rot, until: rev, endedBy: 'revoked' },
          { key: k3.vkey, from: rot2, until: null, endedBy: null },
        ],
      });
      // The run reads whole: every entry, in seq order, its chain intact, each signed by the
      // key its index falls in.
      const run = await getJson<RunPage>(`/v1/agents/${a.id}/runs/r`);
      expect(run.status).toBe(200);
      expect(run.body.findings).toEqual([]);
      expect(run.body.closed).toBe(true);
      expect(run.body.entries.map((e) => e.index)).toEqual([...before, ...afterRot, ...last].map((r) => r.index));
      checkProofs(run.body, fx.vkey);
      for (const e of run.body.entries) {
        const period = keys.body.keys.find((k) => k.from < e.index && (k.until === null || e.index <= k.until))!;
        expect(period, `entry ${e.index}`).toBeDefined();
        const signed = decodeEnvelope(decodeBase64(e.envelope, 'envelope'));
        expect(encodeBase64(signed.signature)).toBe(e.signature);
        expect(verifyEntrySignature(signed, parseVerifierKey(period.key).publicKey)).toBe(true);
      }
      // The entries of k1 survive a restart (the key history is rebuilt from the store).
      await fx.restart();
      const again = await getJson<RunPage>(`/v1/agents/${a.id}/runs/r`);
      expect(again.body.entries.map((e) => e.index)).toEqual(run.body.entries.map((e) => e.index));
      const k1entry = new TestAgent(a.id, k1).event('r9');
      await refused(() => postEntries(a.id, entriesBody([k1entry])), 403, new RegExp(`rotated out at index ${rot}`));
      await submit(a, [a.event('r9')]);
      expect((await getJson(`/v1/agents/nobody`)).status).toBe(404);
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('erasure', () => {
    it('payload readable before, 410 after; proofs of the erased entry still verify; erased twice 410', async () => {
      const a = await withAgent();
      const reader = await credential({ kind: 'reader', agents: ['a1'] });
      const e = a.event('r', { payloads: { prompt: 'secret prompt', output: 'output' } });
      const [r] = (await submit(a, [e])).results;
      const idx = r!.index;
      const read = (name: string, token = reader.token) => getJson<Record<string, string>>(`/v1/agent-entries/${idx}/payloads/${name}`, token);
      const got = await read('prompt');
      expect(got.status).toBe(200);
      expect(got.body).toEqual({
        index: idx,
        name: 'prompt',
        agent: 'a1',
        run: 'r',
        commitment: encodeBase64(e.payloads.prompt!.commitment),
        salt: encodeBase64(e.payloads.prompt!.salt),
        data: encodeBase64(utf8('secret prompt')),
      });
      // Only operators erase.
      const agentCred = await credential({ kind: 'agent', agent: 'a1' });
      for (const t of [reader.token, agentCred.token]) {
        await refused(() => postJson(`/v1/agent-entries/${idx}/payloads/prompt/erase`, { reason: 'x' }, t), 403, /erasing a payload needs an operator credential/);
      }
      await refused(() => postJson(`/v1/agent-entries/${idx}/payloads/prompt/erase`, { reason: 'x' }, null), 401, /Bearer/);
      await refused(() => postJson(`/v1/agent-entries/${idx}/payloads/nope/erase`, { reason: 'x' }), 404, new RegExp(`entry ${idx} has no payload "nope"`));
      await refused(() => postJson(`/v1/agent-entries/9999/payloads/prompt/erase`, { reason: 'x' }), 404, /entry 9999 has no payload "prompt"/);
      await refused(() => postJson(`/v1/agent-entries/${idx}/payloads/prompt/erase`, {}), 400, /"reason" must be/);

      const er = await registryCall(`/v1/agent-entries/${idx}/payloads/prompt/erase`, { reason: 'GDPR request' });
      expect(er.index).toBeGreaterThan(idx);
      for (const t of [reader.token, fx.token]) {
        const gone = await req(`/v1/agent-entries/${idx}/payloads/prompt`, { headers: fx.auth(t) });
        await expectError(gone, 410, new RegExp(`payload "prompt" of entry ${idx} was erased at index ${er.index}`));
      }
      expect((await read('output')).status).toBe(200);
      await refused(() => postJson(`/v1/agent-entries/${idx}/payloads/prompt/erase`, { reason: 'again' }), 410, new RegExp(`erased at index ${er.index}`));
      // Resubmitting the entry with its payload does not bring the payload back.
      expect((await submit(a, [e])).results[0]).toMatchObject({ index: idx, duplicate: true });
      await expectError(await req(`/v1/agent-entries/${idx}/payloads/prompt`, { headers: fx.auth() }), 410, /erased/);

      // The tree grows; the erased entry's receipt and query proof verify against later checkpoints.
      await submit(a, [a.event('r'), a.event('r')]);
      const rec = await req(`/v1/receipts/${idx}`);
      expect(rec.status).toBe(200);
      const { cp } = verifyReceipt(await rec.text(), fx.vkey, e.signed.bytes);
      expect(cp.treeSize).toBeGreaterThan(er.index + 1);
      const q = await getJson<QueryPage>('/v1/agent-entries?agent=a1&run=r');
      checkProofs(q.body, fx.vkey);
      const qe = q.body.entries.find((x) => x.index === idx)!;
      expect(qe.envelope).toBe(encodeBase64(e.signed.bytes));
      expect(qe.payloads).toEqual({
        prompt: { commitment: encodeBase64(e.payloads.prompt!.commitment), erasedBy: er.index },
        output: { commitment: encodeBase64(e.payloads.output!.commitment) },
      });
      // The erasure itself is an entry of the log, signed by the log's key.
      const erq = await getJson<QueryPage>('/v1/agent-entries?type=payload.erase');
      expect(erq.body.entries.map((x) => x.index)).toEqual([er.index]);
      expect(erq.body.entries[0]!.entry).toMatchObject({ type: 'payload.erase', index: idx, name: 'prompt', reason: 'GDPR request' });
      checkProofs(erq.body, fx.vkey);
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('access control', () => {
    it('per credential kind: operator, agent, reader by agents, reader by runs; public reads', async () => {
      const a = await withAgent();
      const b = new TestAgent('b2');
      await register(b);
      const [ia] = (await submit(a, [a.event('r', { payloads: { p: 'a-data' } })])).results;
      const [ib1] = (await submit(b, [b.event('r1', { payloads: { p: 'b1-data' } })])).results;
      const [ib2] = (await submit(b, [b.event('r2', { payloads: { p: 'b2-data' } })])).results;
      const payloadOf = (index: number, token: string | undefined) => req(`/v1/agent-entries/${index}/payloads/p`, token ? { headers: fx.auth(token) } : undefined);

      const op = await credential({ kind: 'operator', label: 'second operator' });
      const agentA = await credential({ kind: 'agent', agent: 'a1' });
      const readA = await credential({ kind: 'reader', agents: ['a1'] });
      const readB1 = await credential({ kind: 'reader', runs: ['b2/r1'] });

      // Operators (the log's token and a created one) read everything and register.
      for (const t of [fx.token, op.token]) for (const r of [ia, ib1, ib2]) expect((await payloadOf(r!.index, t)).status).toBe(200);
      await registryCall('/v1/agents', { agent: 'c3', key: generateKey('c3').vkey }, op.token);
      // An agent credential writes its own agent only, reads no payload, registers nothing.
      await submit(a, [a.event('r')], { token: agentA.token });
      await refused(() => postEntries('b2', entriesBody([b.event('r1')]), { token: agentA.token }), 403, /writes as agent "a1", not "b2"/);
      b.seek('r1', 1, decodeBase64(ib1!.leafHash, 'h'));
      await expectError(await payloadOf(ia!.index, agentA.token), 403, /an agent credential cannot read payloads/);
      await refused(() => postJson('/v1/agents', { agent: 'd4', key: generateKey('d4').vkey }, agentA.token), 403, /needs an operator credential/);
      await refused(() => postJson('/v1/agents/a1/keys', { key: a.newKey().vkey }, agentA.token), 403, /rotating a key needs an operator/);
      await refused(() => postJson('/v1/agents/a1/keys/revoke', { key: a.key.vkey }, agentA.token), 403, /revoking a key needs an operator/);
      await refused(() => postJson('/v1/credentials', { kind: 'operator' }, agentA.token), 403, /creating a credential needs an operator/);
      expect((await req('/v1/credentials', { headers: fx.auth(agentA.token) })).status).toBe(403);
      // Readers: their scope only.
      expect((await payloadOf(ia!.index, readA.token)).status).toBe(200);
      await expectError(await payloadOf(ib1!.index, readA.token), 403, /may not read payloads of agent "b2", run "r1"/);
      expect((await payloadOf(ib1!.index, readB1.token)).status).toBe(200);
      await expectError(await payloadOf(ib2!.index, readB1.token), 403, /may not read payloads of agent "b2", run "r2"/);
      await expectError(await payloadOf(ia!.index, readB1.token), 403, /may not read/);
      await refused(() => postEntries('a1', entriesBody([a.event('r')]), { token: readA.token }), 403, /a reader credential cannot write/);
      // Payloads need a credential at all.
      await expectError(await payloadOf(ia!.index, undefined), 401, /Bearer/);
      await expectError(await payloadOf(ia!.index, 'nonsense'), 401, /not valid/);
      // Public reads need none.
      expect((await req('/v1/agent-entries')).status).toBe(200);
      expect((await req('/v1/agents/a1/runs/r')).status).toBe(200);
      expect((await req('/v1/agents/a1')).status).toBe(200);
      expect((await req(`/v1/receipts/${ia!.index}`)).status).toBe(200);
      expect((await req('/checkpoint')).status).toBe(200);
      // Credential creation is validated.
      await refused(() => postJson('/v1/credentials', { kind: 'reader' }), 400, /needs "agents" or "runs"/);
      await refused(() => postJson('/v1/credentials', { kind: 'agent' }), 400, /needs "agent"/);
      await refused(() => postJson('/v1/credentials', { kind: 'reader', runs: ['norun'] }), 400, /"agent\/run"/);
      await refused(() => postJson('/v1/credentials', { kind: 'root' }), 400, /"kind" must be/);
      // The list shows every credential, without tokens.
      const list = await getJson<{ credentials: Array<Record<string, unknown>> }>('/v1/credentials', fx.token);
      expect(list.body.credentials.map((c) => c.id).sort()).toEqual([op.id, agentA.id, readA.id, readB1.id].sort());
      expect(JSON.stringify(list.body)).not.toContain(readA.token);
    });

    it('a revoked credential stops working (within 1 s)', async () => {
      const a = await withAgent();
      const [ia] = (await submit(a, [a.event('r', { payloads: { p: 'x' } })])).results;
      const agentA = await credential({ kind: 'agent', agent: 'a1' });
      const readA = await credential({ kind: 'reader', agents: ['a1'] });
      // Warm the lookup cache, then revoke.
      await submit(a, [a.event('r')], { token: agentA.token });
      expect((await req(`/v1/agent-entries/${ia!.index}/payloads/p`, { headers: fx.auth(readA.token) })).status).toBe(200);
      for (const c of [agentA, readA]) {
        const del = await req(`/v1/credentials/${c.id}`, { method: 'DELETE', headers: fx.auth() });
        expect(del.status).toBe(200);
        expect(await del.json()).toEqual({ revoked: true });
      }
      await sleep(1100);
      const invalid = await metric('glasslog_http_denied_total', 'reason="invalid"');
      await refused(() => postEntries('a1', entriesBody([a.event('r')]), { token: agentA.token }), 401, /not valid/);
      await expectError(await req(`/v1/agent-entries/${ia!.index}/payloads/p`, { headers: fx.auth(readA.token) }), 401, /not valid/);
      expect(await metric('glasslog_http_denied_total', 'reason="invalid"')).toBe(invalid + 2);
      // Revoking again, or an unknown id: 404; a malformed id: 400.
      await expectError(await req(`/v1/credentials/${agentA.id}`, { method: 'DELETE', headers: fx.auth() }), 404, /no such credential/);
      await expectError(await req(`/v1/credentials/0123456789abcdef`, { method: 'DELETE', headers: fx.auth() }), 404, /no such credential/);
      await expectError(await req(`/v1/credentials/xyz`, { method: 'DELETE', headers: fx.auth() }), 400, /16 lowercase hex/);
      const list = await getJson<{ credentials: Array<{ id: string; revokedAt: string | null }> }>('/v1/credentials', fx.token);
      for (const c of list.body.credentials) expect(c.revokedAt).not.toBeNull();
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('queries', () => {
    it('GET /v1/agent-entries matches a brute-force filter of a random log; every proof verifies', async () => {
      let clock = T0;
      await open({ now: () => clock });
      let seed = factory.name === 'pglite' ? 7 : 11;
      const rnd = () => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed / 2 ** 32;
      };
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const KINDS = ['decision', 'tool_call', 'model_call', 'x-plan.v2'];
      const RUNS = ['r0', 'r1', 'r2'];
      interface Mirror {
        index: number;
        type: EntryType;
        agent: string | null;
        run: string | null;
        kind: string | null;
        clientTime: number;
        logTime: number;
        envelope?: Uint8Array;
      }
      const mirror: Mirror[] = [];
      const agents = [new TestAgent('alpha'), new TestAgent('svc:beta@x.example'), new TestAgent('g.3')];
      for (const a of agents) {
        clock += Math.floor(rnd() * 4);
        mirror.push({ index: await register(a), type: 'agent.register', agent: a.id, run: null, kind: null, clientTime: clock, logTime: clock });
      }
      const closed = new Set<string>();
      let erased = false;
      for (let step = 0; step < 34; step++) {
        clock += Math.floor(rnd() * 4);
        const a = pick(agents);
        const run = pick(RUNS);
        const roll = rnd();
        if (step === 12 || step === 25) {
          // A key change: revoke then rotate (2 registry entries), or a plain rotation.
          if (step === 12) {
            const v = await revoke(a);
            mirror.push({ index: v, type: 'agent.revoke', agent: a.id, run: null, kind: null, clientTime: clock, logTime: clock });
          }
          const r = await rotate(a, a.newKey());
          mirror.push({ index: r, type: 'agent.rotate', agent: a.id, run: null, kind: null, clientTime: clock, logTime: clock });
          continue;
        }
        if (step === 18) {
          // An opaque entry through the raw write API: no row.
          const res = await req('/v1/entries', { method: 'POST', headers: { ...fx.auth(), 'Content-Type': 'application/octet-stream' }, body: 'opaque entry' });
          expect(res.status).toBe(201);
          continue;
        }
        if (closed.has(`${a.id}/${run}`)) continue;
        if (roll < 0.12) {
          const c = a.close(run, { time: T0 + Math.floor(rnd() * 1000) });
          const [r] = (await submit(a, [c])).results;
          closed.add(`${a.id}/${run}`);
          mirror.push({ index: r!.index, type: 'run.close', agent: a.id, run, kind: null, clientTime: c.signed.entry.time, logTime: clock, envelope: c.signed.bytes });
          continue;
        }
        const n = 1 + Math.floor(rnd() * 3);
        const batch = Array.from({ length: n }, () => a.event(run, { kind: pick(KINDS), time: T0 + Math.floor(rnd() * 1000), ...(rnd() < 0.3 ? { payloads: { p: `payload ${step}` } } : {}) }));
        const { results } = await submit(a, batch);
        results.forEach((r, i) => {
          const e = batch[i]!.signed.entry as { kind: string; time: number };
          mirror.push({ index: r.index, type: 'event', agent: a.id, run, kind: e.kind, clientTime: e.time, logTime: clock, envelope: batch[i]!.signed.bytes });
        });
        if (!erased && Object.keys(batch[0]!.payloads).length > 0) {
          erased = true;
          clock += 1;
          const er = await registryCall(`/v1/agent-entries/${results[0]!.index}/payloads/p/erase`, { reason: 'test' });
          mirror.push({ index: er.index, type: 'payload.erase', agent: null, run: null, kind: null, clientTime: clock, logTime: clock });
        }
      }
      if (!erased || closed.size === 0) {
        clock += 1;
        const a = agents[0]!;
        const e = a.event('rz', { kind: 'decision', time: T0 + 500, payloads: { p: 'last' } });
        const c = a.close('rz', { time: T0 + 501 });
        const [re, rc] = (await submit(a, [e, c])).results;
        mirror.push({ index: re!.index, type: 'event', agent: a.id, run: 'rz', kind: 'decision', clientTime: T0 + 500, logTime: clock, envelope: e.signed.bytes });
        mirror.push({ index: rc!.index, type: 'run.close', agent: a.id, run: 'rz', kind: null, clientTime: T0 + 501, logTime: clock, envelope: c.signed.bytes });
        clock += 1;
        const er = await registryCall(`/v1/agent-entries/${re!.index}/payloads/p/erase`, { reason: 'test' });
        mirror.push({ index: er.index, type: 'payload.erase', agent: null, run: null, kind: null, clientTime: clock, logTime: clock });
      }
      mirror.sort((x, y) => x.index - y.index);
      expect(mirror.length).toBeGreaterThan(40);
      expect(new Set(mirror.map((m) => m.type)).size).toBe(ENTRY_TYPES.length);

      // A full scan returns exactly the mirror, with its log times.
      const full = await getJson<QueryPage>('/v1/agent-entries?limit=1000');
      expect(full.body.next).toBeNull();
      expect(full.body.entries.map((e) => [e.index, e.entry.type, e.logTime])).toEqual(mirror.map((m) => [m.index, m.type, m.logTime]));
      checkProofs(full.body, fx.vkey);
      for (const e of full.body.entries) {
        const m = mirror.find((x) => x.index === e.index)!;
        if (m.envelope) expect(e.envelope).toBe(encodeBase64(m.envelope));
      }

      const agentIds = agents.map((a) => a.id);
      const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
      const queryArb = fc.record({
        agent: opt(fc.constantFrom(...agentIds, 'nobody')),
        run: opt(fc.constantFrom(...RUNS)),
        kind: opt(fc.constantFrom(...KINDS, 'outcome')),
        types: opt(fc.subarray([...ENTRY_TYPES], { minLength: 1 })),
        since: opt(fc.integer({ min: T0 - 5, max: T0 + 1005 })),
        until: opt(fc.integer({ min: T0 - 5, max: T0 + 1005 })),
        time: opt(fc.constantFrom('client' as const, 'log' as const)),
        order: opt(fc.constantFrom('asc' as const, 'desc' as const)),
        limit: opt(fc.integer({ min: 1, max: 9 })),
      });
      await fc.assert(
        fc.asyncProperty(queryArb, async (q) => {
          const run = q.agent === undefined ? undefined : q.run;
          const expected = mirror
            .filter((m) => {
              const t = q.time === 'log' ? m.logTime : m.clientTime;
              return (
                (q.agent === undefined || m.agent === q.agent) &&
                (run === undefined || m.run === run) &&
                (q.kind === undefined || m.kind === q.kind) &&
                (q.types === undefined || q.types.includes(m.type)) &&
                (q.since === undefined || t >= q.since) &&
                (q.until === undefined || t < q.until)
              );
            })
            .map((m) => m.index);
          if (q.order === 'desc') expected.reverse();
          const params = new URLSearchParams();
          if (q.agent !== undefined) params.set('agent', q.agent);
          if (run !== undefined) params.set('run', run);
          if (q.kind !== undefined) params.set('kind', q.kind);
          if (q.types !== undefined) params.set('type', q.types.join(','));
          if (q.since !== undefined) params.set('since', String(q.since));
          if (q.until !== undefined) params.set('until', String(q.until));
          if (q.time !== undefined) params.set('time', q.time);
          if (q.order !== undefined) params.set('order', q.order);
          if (q.limit !== undefined) params.set('limit', String(q.limit));
          const limit = q.limit ?? 100;
          const got: number[] = [];
          let cursor: string | null = null;
          for (let page = 0; ; page++) {
            expect(page).toBeLessThan(100);
            if (cursor !== null) params.set('cursor', cursor);
            const res = await getJson<QueryPage>(`/v1/agent-entries?${params}`);
            expect(res.status, JSON.stringify(res.body)).toBe(200);
            expect(res.body.entries.length).toBeLessThanOrEqual(limit);
            if (res.body.entries.length < limit) expect(res.body.next).toBeNull();
            checkProofs(res.body, fx.vkey);
            got.push(...res.body.entries.map((e) => e.index));
            cursor = res.body.next;
            if (cursor === null) break;
          }
          expect(got).toEqual(expected);
        }),
        { numRuns: 40, seed: 42 }
      );

      // Cursors and parameters.
      const first = await getJson<QueryPage>('/v1/agent-entries?limit=2&order=desc');
      expect(first.body.next).not.toBeNull();
      await expectError(await req(`/v1/agent-entries?limit=2&order=asc&cursor=${first.body.next}`), 400, /cursor was made for order=desc/);
      const page2 = await getJson<QueryPage>(`/v1/agent-entries?limit=2&order=desc&cursor=${first.body.next}`);
      expect(page2.body.entries.map((e) => e.index)).toEqual([mirror.at(-3)!.index, mirror.at(-4)!.index]);
      await expectError(await req('/v1/agent-entries?cursor=bm90IGEgY3Vyc29y'), 400, /cursor/);
      await expectError(await req('/v1/agent-entries?limit=0'), 400, /limit must be 1 to 1000/);
      await expectError(await req('/v1/agent-entries?limit=1001'), 400, /limit must be 1 to 1000/);
      await expectError(await req('/v1/agent-entries?limit=ten'), 400, /limit/);
      await expectError(await req('/v1/agent-entries?order=up'), 400, /order must be asc or desc/);
      await expectError(await req('/v1/agent-entries?time=wall'), 400, /time must be client or log/);
      await expectError(await req('/v1/agent-entries?run=r0'), 400, /run needs agent/);
      await expectError(await req('/v1/agent-entries?type=event,bogus'), 400, /unknown type "bogus"/);
      await expectError(await req('/v1/agent-entries?since=-1'), 400, /since/);
      await expectError(await req('/v1/agent-entries?agent=a%20b'), 400, /agent/);
    });

    for (const q of ['kind=', 'kind=%00', 'agent=a1&kind=' + 'x'.repeat(300)]) {
      it(`a kind no entry can have is answered without a server error (${q.slice(0, 20)})`, async () => {
        await withAgent();
        const res = await req(`/v1/agent-entries?${q}`);
        expect([200, 400], `${q}: ${res.status} ${await res.clone().text()}`).toContain(res.status);
      });
    }

    it('a payload at the largest index is answered without a server error', async () => {
      await withAgent();
      const huge = await req(`/v1/agent-entries/${Number.MAX_SAFE_INTEGER}/payloads/p`, { headers: fx.auth() });
      expect([400, 404], `${huge.status} ${await huge.clone().text()}`).toContain(huge.status);
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('runs', () => {
    it('a clean closed run: entries in seq order (submitted out of order), no findings', async () => {
      const a = await withAgent();
      const e = [a.event('r', { kind: 'prompt' }), a.event('r', { kind: 'model_call', parent: 0 }), a.event('r', { kind: 'outcome', parent: 1 })];
      const close = a.close('r');
      // seq 2 first (seq 1 not logged yet: its prev cannot be checked), then 0, then 1.
      const [i2] = (await submit(a, [e[2]!])).results;
      const [i0] = (await submit(a, [e[0]!])).results;
      const [i1] = (await submit(a, [e[1]!])).results;
      const open1 = await getJson<RunPage>('/v1/agents/a1/runs/r');
      expect(open1.body.closed).toBe(false);
      expect(open1.body.findings.map((f) => f.kind)).toEqual(['not-closed']);
      const [ic] = (await submit(a, [close])).results;
      const run = await getJson<RunPage>('/v1/agents/a1/runs/r');
      expect(run.status).toBe(200);
      expect(run.body).toMatchObject({ closed: true, count: 3, findings: [] });
      expect(run.body.entries.map((x) => x.index)).toEqual([i0!.index, i1!.index, i2!.index, ic!.index]);
      expect(run.body.entries.map((x) => x.entry.seq)).toEqual([0, 1, 2, 3]);
      expect(run.body.entries.map((x) => x.entry.type)).toEqual(['event', 'event', 'event', 'run.close']);
      checkProofs(run.body, fx.vkey);
      expect(run.body.entries[1]!.entry).toEqual(entryToJson(e[1]!.signed.entry));
    });

    it("a run with a gap shows 'gap' and 'not-closed'; unknown runs are 404", async () => {
      const a = await withAgent();
      const e0 = a.event('r');
      a.event('r'); // seq 1: made, never submitted
      const e2 = a.event('r');
      const [i0] = (await submit(a, [e0])).results;
      const [i2] = (await submit(a, [e2])).results;
      const run = await getJson<RunPage>('/v1/agents/a1/runs/r');
      expect(run.body.closed).toBe(false);
      expect(run.body.count).toBe(2);
      expect(run.body.entries.map((x) => x.index)).toEqual([i0!.index, i2!.index]);
      expect(run.body.findings).toEqual([
        { kind: 'gap', seq: 1, message: expect.stringMatching(/seq 1 is missing/) },
        { kind: 'not-closed', message: expect.any(String) },
      ]);
      checkProofs(run.body, fx.vkey);
      await expectError(await req('/v1/agents/a1/runs/nope'), 404, /no entries of run "nope"/);
      await expectError(await req('/v1/agents/zz/runs/r'), 404, /no entries/);
      await expectError(await req('/v1/agents/a1/runs/bad%20run'), 400, /run/);
    });

    it("a late seq 0 that does not match seq 1's prev shows as a broken link", async () => {
      const a = await withAgent();
      const e0 = a.event('r');
      const e1 = a.event('r');
      await submit(a, [e1]);
      a.seek('r', 0);
      const other0 = a.event('r', { kind: 'decision' });
      expect(equalBytes(other0.signed.leafHash, e0.signed.leafHash)).toBe(false);
      const res = await postEntries('a1', entriesBody([other0]));
      if (res.status === 201) {
        const run = await getJson<RunPage>('/v1/agents/a1/runs/r');
        expect(run.body.findings.map((f) => f.kind)).toContain('broken-link');
      } else {
        await expectError(res, 422, /prev/);
      }
    });
  });

  it('?wait=sequenced answers without receipts once indexed', async () => {
    const a = await withAgent();
    const e = a.event('r', { payloads: { p: 'x' } });
    const { results } = await submit(a, [e], { query: '?wait=sequenced' });
    const snap = await fx.snapshot();
    expect(snap.indexed).toBeGreaterThan(results[0]!.index);
    await fx.log.waitForPublished(results[0]!.index);
    expect((await req(`/v1/agent-entries/${results[0]!.index}/payloads/p`, { headers: fx.auth() })).status).toBe(200);
    await expectError(await postEntries('a1', entriesBody([e]), { query: '?wait=soon' }), 400, /wait must be/);
  });

  it('a raw payload commitment for a different payload name is refused', async () => {
    const a = await withAgent();
    const p = clientPayload('data');
    const entry = { type: 'event' as const, agent: 'a1', run: 'r', seq: 0, kind: 'tool_call', time: T0, payloads: { p: p.commitment } };
    const s = signEntry(entry, a.key.skey);
    await refused(
      () => postEntries('a1', JSON.stringify({ entries: [{ envelope: encodeBase64(s.bytes), payloads: { q: { salt: encodeBase64(p.salt), data: encodeBase64(p.data) } } }] })),
      400,
      /payload "q" is not committed to/
    );
  });
});
