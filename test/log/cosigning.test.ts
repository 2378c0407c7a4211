/**
 * Cosigning against in-process fake witnesses that implement c2sp.org/tlog-witness
 * add-checkpoint for real (strict request parsing, log signature check, old-size
 * compare-and-swap, consistency proof verification, cosignature/v1 answers), plus scripted
 * answers for the failure cases. Most fakes are `fetch` functions; one suite runs the real
 * fetch against a node:http server.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { formatAddCheckpoint, parseAddCheckpoint, TLOG_SIZE_CONTENT_TYPE } from '../../src/core/add-checkpoint.js';
import { formatCheckpoint, parseCheckpoint } from '../../src/core/checkpoint.js';
import { equalBytes, utf8 } from '../../src/core/encoding.js';
import { EMPTY_ROOT, leafHash } from '../../src/core/hash.js';
import { memoryNodeReader, proveConsistency, rootHash, verifyConsistency } from '../../src/core/tree.js';
import { Cosigning, MAX_TRIES, MAX_WITNESS_RESPONSE_SIZE, type WitnessEndpoint } from '../../src/log/cosigning.js';
import { Registry } from '../../src/metrics.js';
import { cosignatureMessage, newCosignatureVerifier, newCosigner, type Cosigner } from '../../src/note/cosignature.js';
import { nobleEd25519 } from '../../src/note/ed25519.js';
import { ALG_COSIGNATURE_V1, generateKey, parseSignerKey } from '../../src/note/keys.js';
import { formatNote, newSigner, newVerifier, openNote, parseNote, signNote, type NoteSignature } from '../../src/note/note.js';

// ---------------------------------------------------------------------------------------
// The log: a tree of 100 leaves, checkpoints of any prefix of it, signed by a real key.

const ORIGIN = 'glasslog.test/cosigning';
const logKey = generateKey(ORIGIN);
const logSigner = newSigner(logKey.skey);
const logVerifier = newVerifier(logKey.vkey);
const leaves = Array.from({ length: 100 }, (_, i) => leafHash(utf8(`entry ${i}`)));
const reader = memoryNodeReader(leaves);
const rootAt = (n: number) => (n === 0 ? EMPTY_ROOT : rootHash(n, reader));

function checkpoint(n: number, origin = ORIGIN): { treeSize: number; note: string } {
  const text = formatCheckpoint({ origin, treeSize: n, rootHash: rootAt(n), extensions: [] });
  return { treeSize: n, note: signNote(text, [logSigner]) };
}

/** A proof callback over the log's tree, recording its calls. */
const proofSpy = () => vi.fn(async (o: number, n: number) => proveConsistency(o, n, reader));

/** The signature line for `sig`, with its newline. */
const line = (sig: NoteSignature) => formatNote('x\n', [sig]).slice(3);

// ---------------------------------------------------------------------------------------
// A fake witness.

interface Seen {
  readonly url: string;
  readonly contentType: string | null;
  readonly oldSize: number;
  readonly proof: readonly Uint8Array[];
  readonly treeSize: number;
}

/** A scripted answer: return a Response to answer instead of the witness logic. */
type Script = (seen: Seen, text: string) => Response | Promise<Response> | undefined;

class FakeWitness {
  readonly cosigner: Cosigner;
  /** Its signer key, for hand-made cosignatures. */
  readonly skey: string;
  readonly endpoint: WitnessEndpoint;
  /** The size and root of the latest checkpoint it cosigned (0 / empty: none). */
  size = 0;
  root = EMPTY_ROOT;
  readonly seen: Seen[] = [];
  /** Answers for the next requests, in order; `undefined` entries run the real logic. */
  readonly scripts: Array<Script | undefined> = [];
  /** Log keys it trusts, by origin. */
  readonly trusted = new Map([[ORIGIN, logVerifier]]);
  /** The timestamp it cosigns with. */
  now = 1_700_000_000;

  constructor(readonly name: string, url = `https://${name}.witness.test/w`) {
    const k = generateKey(`${name}.witness.test`, ALG_COSIGNATURE_V1);
    this.skey = k.skey;
    this.cosigner = newCosigner(k.skey);
    this.endpoint = { name, url, verifier: newCosignatureVerifier(k.vkey) };
  }

  /** Handles one POST body strictly, like a tlog-witness. */
  async handle(url: string, contentType: string | null, body: string): Promise<Response> {
    // Strict: the body must parse and be in canonical form.
    const req = parseAddCheckpoint(body);
    expect(formatAddCheckpoint(req)).toBe(body);
    const text = parseNote(req.checkpoint).text;
    const cp = parseCheckpoint(text);
    const seen: Seen = { url, contentType, oldSize: req.oldSize, proof: req.proof, treeSize: cp.treeSize };
    this.seen.push(seen);
    const script = this.scripts.shift();
    const scripted = script?.(seen, text);
    if (scripted !== undefined) return scripted;

    const v = this.trusted.get(cp.origin);
    if (v === undefined) return new Response('unknown origin\n', { status: 404 });
    try {
      openNote(req.checkpoint, [v]);
    } catch {
      return new Response('no valid log signature\n', { status: 403 });
    }
    if (req.oldSize > cp.treeSize) return new Response('old size > checkpoint size\n', { status: 400 });
    if (req.oldSize !== this.size) {
      return new Response(`${this.size}\n`, { status: 409, headers: { 'Content-Type': TLOG_SIZE_CONTENT_TYPE } });
    }
    try {
      if (req.oldSize === 0) {
        if (req.proof.length !== 0) throw new Error('proof from 0 must be empty');
      } else {
        verifyConsistency(req.oldSize, cp.treeSize, [...req.proof], this.root, cp.rootHash);
      }
    } catch (e) {
      return new Response(`bad proof: ${(e as Error).message}\n`, { status: 422 });
    }
    this.size = cp.treeSize;
    this.root = cp.rootHash;
    return new Response(line(this.cosigner.cosign(text, this.now)), { status: 200 });
  }
}

/** A fetch over a set of fake witnesses, checking the request as a witness would. */
function fakeFetch(witnesses: readonly FakeWitness[]): typeof fetch {
  return async (input, init) => {
    const url = String(input);
    expect(init?.method).toBe('POST');
    const w = witnesses.find((x) => `${x.endpoint.url.replace(/\/$/, '')}/add-checkpoint` === url);
    if (w === undefined) throw new TypeError(`fetch failed: no witness at ${url}`);
    const body = init?.body;
    if (!(body instanceof Uint8Array)) throw new TypeError('expected a byte body');
    const ct = new Headers(init?.headers).get('content-type');
    return w.handle(url, ct, new TextDecoder('utf-8', { fatal: true }).decode(body));
  };
}

function setup(ws: FakeWitness[], opts: { timeoutMs?: number; fetch?: typeof fetch } = {}) {
  const proof = proofSpy();
  const alarms: Array<[string, string]> = [];
  const metrics = new Registry();
  const c = new Cosigning({
    witnesses: ws.map((w) => w.endpoint),
    proof,
    fetch: opts.fetch ?? fakeFetch(ws),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    metrics,
    onAlarm: (w, m) => alarms.push([w, m]),
  });
  return { c, proof, alarms, metrics };
}

const status = (code: number, body = '', headers: Record<string, string> = {}) => () =>
  new Response(body, { status: code, headers });

/** Opens a cosigned note with the log key and the given witnesses' keys. */
function openWith(note: string, ws: readonly FakeWitness[]) {
  return openNote(note, [logVerifier, ...ws.map((w) => w.endpoint.verifier)]);
}

// ---------------------------------------------------------------------------------------

describe('Cosigning', () => {
  it('collects the cosignatures of three witnesses, after the log signature, in witness order', async () => {
    const ws = [new FakeWitness('a'), new FakeWitness('b', 'https://b.witness.test/w/'), new FakeWitness('c')];
    const { c, proof, alarms } = setup(ws);
    const ck = checkpoint(10);
    const r = await c.cosign(ck);

    expect(r.failures).toEqual(new Map());
    expect([...r.cosigned]).toEqual(['a', 'b', 'c']);
    expect(r.failures.size).toBe(0);
    expect(alarms).toEqual([]);
    expect(r.note.startsWith(ck.note)).toBe(true);
    const opened = openWith(r.note, ws);
    expect(opened.verified.map((s) => s.name)).toEqual([ORIGIN, 'a.witness.test', 'b.witness.test', 'c.witness.test']);
    expect(parseNote(r.note).signatures).toHaveLength(4);
    // First contact: old 0, no proof, so no proof was built.
    expect(proof).not.toHaveBeenCalled();
    for (const w of ws) {
      expect(w.seen).toEqual([
        { url: `https://${w.name}.witness.test/w/add-checkpoint`, contentType: null, oldSize: 0, proof: [], treeSize: 10 },
      ]);
    }
    expect(Object.fromEntries(c.witnessSizes())).toEqual({ a: 10, b: 10, c: 10 });
  });

  it('with no witnesses returns the note unchanged', async () => {
    const { c } = setup([]);
    const ck = checkpoint(3);
    const r = await c.cosign(ck);
    expect(r).toEqual({ note: ck.note, cosigned: new Set(), failures: new Map() });
  });

  it('on first contact learns the size from a 409 and retries with a proof from it', async () => {
    const w = new FakeWitness('a');
    w.size = 7;
    w.root = rootAt(7);
    const { c, proof, alarms } = setup([w]);
    const r = await c.cosign(checkpoint(20));

    expect([...r.cosigned]).toEqual(['a']);
    expect(alarms).toEqual([]);
    expect(w.seen.map((s) => s.oldSize)).toEqual([0, 7]);
    expect(proof).toHaveBeenCalledTimes(1);
    expect(proof).toHaveBeenCalledWith(7, 20);
    expect(w.seen[1]!.proof).toEqual(proveConsistency(7, 20, reader));
    expect(c.witnessSizes().get('a')).toBe(20);
    expect(w.size).toBe(20);
  });

  it('a 409 at exactly the checkpoint size is retried with an empty proof', async () => {
    const w = new FakeWitness('a');
    w.size = 20;
    w.root = rootAt(20);
    const { c, proof } = setup([w]);
    const r = await c.cosign(checkpoint(20));
    expect([...r.cosigned]).toEqual(['a']);
    expect(w.seen.map((s) => [s.oldSize, s.proof.length])).toEqual([[0, 0], [20, 0]]);
    expect(proof).not.toHaveBeenCalled();
  });

  it('alarms once, without retrying, when the witness is ahead of the log', async () => {
    const w = new FakeWitness('a');
    w.size = 50;
    w.root = rootAt(50);
    const good = new FakeWitness('b');
    const { c, alarms } = setup([w, good]);
    const r = await c.cosign(checkpoint(30));

    const msg = 'witness is ahead of the log: it cosigned size 50, the log is at 30';
    expect(alarms).toEqual([['a', msg]]);
    expect(r.failures).toEqual(new Map([['a', msg]]));
    expect([...r.cosigned]).toEqual(['b']);
    expect(w.seen).toHaveLength(1);
    expect(c.witnessSizes().get('a')).toBe(0);
  });

  describe('alarms on refusals, quoting the witness', () => {
    it('403: the witness does not trust the log key', async () => {
      const w = new FakeWitness('a');
      w.trusted.set(ORIGIN, newVerifier(generateKey(ORIGIN).vkey));
      const { c, alarms } = setup([w]);
      const r = await c.cosign(checkpoint(5));
      expect(r.cosigned.size).toBe(0);
      expect(alarms).toHaveLength(1);
      expect(alarms[0]![1]).toMatch(/403 Forbidden.*"no valid log signature"/);
      expect(r.failures.get('a')).toBe(alarms[0]![1]);
      expect(w.seen).toHaveLength(1);
    });

    it('404: the witness does not know the origin', async () => {
      const w = new FakeWitness('a');
      w.trusted.clear();
      const { c, alarms } = setup([w]);
      const r = await c.cosign(checkpoint(5));
      expect(alarms).toEqual([['a', expect.stringMatching(/404 Not Found.*"unknown origin"/)]]);
      expect(r.failures.has('a')).toBe(true);
    });

    it('422: the witness holds a different tree of the same size (a fork)', async () => {
      const w = new FakeWitness('a');
      w.size = 8;
      w.root = leafHash(utf8('a forked root'));
      const { c, proof, alarms } = setup([w]);
      const r = await c.cosign(checkpoint(12));
      expect(w.seen.map((s) => s.oldSize)).toEqual([0, 8]);
      expect(proof).toHaveBeenCalledWith(8, 12);
      expect(alarms).toEqual([['a', expect.stringMatching(/consistency proof from size 8 to 12 \(422 .*"bad proof: /)]]);
      expect(r.cosigned.size).toBe(0);
      // The witness said 8; that is what the log now believes.
      expect(c.witnessSizes().get('a')).toBe(8);
    });

    it('409 without text/x.tlog.size: a root mismatch', async () => {
      const w = new FakeWitness('a');
      w.scripts.push(status(409, 'different root'));
      const { c, alarms } = setup([w]);
      const r = await c.cosign(checkpoint(5));
      expect(alarms).toEqual([['a', expect.stringMatching(/root mismatch at size 0 \(409 Conflict without text\/x\.tlog\.size\): "different root"/)]]);
      expect(r.failures.has('a')).toBe(true);
      expect(w.seen).toHaveLength(1);
    });

    it('truncates a long body to 200 characters', async () => {
      const w = new FakeWitness('a');
      w.scripts.push(status(422, 'x'.repeat(5000)));
      const { c, alarms } = setup([w]);
      await c.cosign(checkpoint(5));
      const m = alarms[0]![1];
      expect(m).toContain(`"${'x'.repeat(200)}…"`);
      expect(m).not.toContain('x'.repeat(201));
    });
  });

  describe('drops and alarms on bad cosignatures', () => {
    async function withAnswer(answer: (w: FakeWitness, text: string) => string) {
      const bad = new FakeWitness('bad');
      const good = new FakeWitness('good');
      bad.scripts.push((_, text) => new Response(answer(bad, text), { status: 200 }));
      const { c, alarms } = setup([bad, good]);
      const r = await c.cosign(checkpoint(9));
      expect([...r.cosigned]).toEqual(['good']);
      expect(parseNote(r.note).signatures.map((s) => s.name)).toEqual([ORIGIN, 'good.witness.test']);
      expect(alarms).toHaveLength(1);
      expect(alarms[0]![0]).toBe('bad');
      expect(r.failures.get('bad')).toBe(alarms[0]![1]);
      // A 200 means the witness stored the checkpoint.
      expect(c.witnessSizes().get('bad')).toBe(9);
      return alarms[0]![1];
    }

    it('by another key under the witness name', async () => {
      const other = newCosigner(generateKey('bad.witness.test', ALG_COSIGNATURE_V1).skey);
      const m = await withAnswer((_, text) => line(other.cosign(text, 1_700_000_000)));
      expect(m).toMatch(/without a cosignature by the witness key bad\.witness\.test\+[0-9a-f]{8}/);
    });

    it('corrupted', async () => {
      const m = await withAnswer((w, text) => {
        const sig = w.cosigner.cosign(text, 1_700_000_000);
        const s = sig.signature.slice();
        s[20]! ^= 1;
        return line({ ...sig, signature: s });
      });
      expect(m).toMatch(/the cosignature by bad\.witness\.test\+[0-9a-f]{8} does not verify/);
    });

    it('over another checkpoint', async () => {
      const other = formatCheckpoint({ origin: ORIGIN, treeSize: 9, rootHash: rootAt(8), extensions: [] });
      const m = await withAnswer((w) => line(w.cosigner.cosign(other, 1_700_000_000)));
      expect(m).toMatch(/does not verify/);
    });

    it('with timestamp 0', async () => {
      const m = await withAnswer((w, text) => {
        // Cosigner refuses timestamp 0; sign the cosignature/v1 message by hand.
        const seed = parseSignerKey(w.skey).seed;
        const payload = new Uint8Array(72);
        payload.set(nobleEd25519.sign(seed, cosignatureMessage(text, 0)), 8);
        return line({ name: w.cosigner.name, keyId: w.cosigner.keyId, signature: payload });
      });
      expect(m).toMatch(/timestamp 0/);
    });

    it('not signature lines', async () => {
      expect(await withAnswer(() => 'hello\n')).toMatch(/malformed body/);
      expect(await withAnswer((w, text) => '\n' + line(w.cosigner.cosign(text, 5)))).toMatch(/not signature lines/);
      expect(await withAnswer((w, text) => line(w.cosigner.cosign(text, 5)).slice(0, -1))).toMatch(/not signature lines/);
      expect(await withAnswer(() => '')).toMatch(/empty body/);
    });

    it('larger than 16 KiB', async () => {
      const m = await withAnswer((w, text) => line(w.cosigner.cosign(text, 5)).repeat(200));
      expect(m).toContain(`larger than ${MAX_WITNESS_RESPONSE_SIZE} bytes`);
    });
  });

  it('keeps only the witness key line of a 200, ignoring lines by unknown keys', async () => {
    const w = new FakeWitness('a');
    const stranger = newCosigner(generateKey('stranger.test', ALG_COSIGNATURE_V1).skey);
    w.scripts.push((_, text) =>
      new Response(line(stranger.cosign(text, 7)) + line(w.cosigner.cosign(text, 8)) + line(w.cosigner.cosign(text, 9)), { status: 200 })
    );
    const { c, alarms } = setup([w]);
    const r = await c.cosign(checkpoint(4));
    expect(alarms).toEqual([]);
    const sigs = parseNote(r.note).signatures;
    expect(sigs.map((s) => s.name)).toEqual([ORIGIN, 'a.witness.test']);
    expect(w.endpoint.verifier.timestampOf(sigs[1]!.signature)).toBe(8);
  });

  it('a witness that never answers times out without an alarm; the others still cosign', async () => {
    const slow = new FakeWitness('slow');
    const deaf = new FakeWitness('deaf');
    const good = new FakeWitness('good');
    // One honours the abort signal, one ignores it entirely.
    const inner = fakeFetch([good]);
    const fetchFn: typeof fetch = (input, init) => {
      const url = String(input);
      if (url.startsWith(slow.endpoint.url)) {
        return new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
      }
      if (url.startsWith(deaf.endpoint.url)) return new Promise(() => undefined);
      return inner(input, init);
    };
    const { c, alarms, metrics } = setup([slow, deaf, good], { timeoutMs: 50, fetch: fetchFn });
    const t0 = Date.now();
    const r = await c.cosign(checkpoint(6));
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(alarms).toEqual([]);
    expect([...r.cosigned]).toEqual(['good']);
    expect(r.failures.get('slow')).toBe('no answer within 50 ms');
    expect(r.failures.get('deaf')).toBe('no answer within 50 ms');
    expect(c.witnessSizes().get('slow')).toBe(0);
    expect(metrics.render()).toContain('glasslog_witness_requests_total{outcome="timeout",witness="slow"} 1');
  });

  it('a body that stalls after the headers also times out', async () => {
    const w = new FakeWitness('a');
    const fetchFn: typeof fetch = async () =>
      new Response(new ReadableStream({ start: (ctl) => ctl.enqueue(utf8('— a')) }), { status: 200 });
    const { c } = setup([w], { timeoutMs: 50, fetch: fetchFn });
    const r = await c.cosign(checkpoint(6));
    expect(r.failures.get('a')).toBe('no answer within 50 ms');
  });

  it('advances oldSize after a success: the next request sends old = previous size with a proof', async () => {
    const w = new FakeWitness('a');
    const { c, proof } = setup([w]);
    await c.cosign(checkpoint(10));
    expect(c.witnessSizes().get('a')).toBe(10);
    const r = await c.cosign(checkpoint(37));
    expect([...r.cosigned]).toEqual(['a']);
    expect(w.seen.map((s) => s.oldSize)).toEqual([0, 10]);
    const sent = w.seen[1]!.proof;
    expect(sent.length).toBeGreaterThan(0);
    expect(sent).toEqual(proveConsistency(10, 37, reader));
    expect(proof.mock.calls).toEqual([[10, 37]]);
    expect(c.witnessSizes().get('a')).toBe(37);
    // The same checkpoint again: old = size, empty proof, the witness cosigns again.
    const again = await c.cosign(checkpoint(37));
    expect([...again.cosigned]).toEqual(['a']);
    expect(w.seen[2]).toMatchObject({ oldSize: 37, proof: [] });
  });

  it('builds one proof per distinct old size and shares it across witnesses', async () => {
    const ws = [new FakeWitness('a'), new FakeWitness('b'), new FakeWitness('c'), new FakeWitness('d')];
    ws[3]!.scripts.push(status(503, 'busy'));
    const { c, proof, alarms } = setup(ws);
    const first = await c.cosign(checkpoint(16));
    expect([...first.cosigned]).toEqual(['a', 'b', 'c']);
    expect(first.failures.get('d')).toMatch(/pushed back \(503\)/);
    expect(alarms).toEqual([]);

    const r = await c.cosign(checkpoint(40));
    expect([...r.cosigned]).toEqual(['a', 'b', 'c', 'd']);
    expect(proof.mock.calls).toEqual([[16, 40]]);
    // d is retried on the next call, from old 0.
    expect(ws[3]!.seen.map((s) => s.oldSize)).toEqual([0, 0]);
    for (const w of ws.slice(0, 3)) expect(w.seen[1]).toMatchObject({ oldSize: 16, proof: proveConsistency(16, 40, reader) });
    expect(openWith(r.note, ws).verified).toHaveLength(5);
  });

  it('treats 429, 5xx, 400, other statuses and network errors as failures without alarms', async () => {
    const ws = ['429', '500', '502', '400', '418'].map((n) => new FakeWitness(`w${n}`));
    ws.forEach((w, i) => w.scripts.push(status([429, 500, 502, 400, 418][i]!, 'nope')));
    const net = new FakeWitness('net', 'https://unreachable.test/w');
    const { c, alarms } = setup([...ws, net], { fetch: fakeFetch(ws) });
    const r = await c.cosign(checkpoint(3));
    expect(alarms).toEqual([]);
    expect(r.cosigned.size).toBe(0);
    expect(r.failures.get('w429')).toMatch(/pushed back \(429\): "nope"/);
    expect(r.failures.get('w500')).toMatch(/unexpected status 500/);
    expect(r.failures.get('w400')).toMatch(/400 Bad Request/);
    expect(r.failures.get('net')).toMatch(/request to https:\/\/unreachable\.test\/w\/add-checkpoint failed: fetch failed/);
    // All retried next time (the scripts are used up).
    const again = await c.cosign(checkpoint(4));
    expect([...again.cosigned]).toEqual(ws.map((w) => w.name));
  });

  it(`gives up after ${MAX_TRIES} requests when the witness keeps answering 409 with a size, backing off`, async () => {
    const w = new FakeWitness('a');
    for (let i = 0; i < 5; i++) w.scripts.push(() => new Response('3\n', { status: 409, headers: { 'Content-Type': 'text/x.tlog.size; charset=utf-8' } }));
    const { c, alarms } = setup([w]);
    const t0 = Date.now();
    const r = await c.cosign(checkpoint(10));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25); // 10 ms + 20 ms of back-off
    expect(w.seen.map((s) => s.oldSize)).toEqual([0, 3, 3]);
    expect(r.failures.get('a')).toMatch(/after 3 requests/);
    expect(alarms).toEqual([]);
  });

  it('a malformed text/x.tlog.size body is a failure', async () => {
    const w = new FakeWitness('a');
    w.scripts.push(status(409, '012\n', { 'Content-Type': TLOG_SIZE_CONTENT_TYPE }));
    const { c, alarms } = setup([w]);
    const r = await c.cosign(checkpoint(20));
    expect(r.failures.get('a')).toMatch(/malformed text\/x\.tlog\.size/);
    expect(alarms).toEqual([]);
    expect(w.seen).toHaveLength(1);
  });

  it('a failing proof callback fails the witnesses that needed it', async () => {
    const w = new FakeWitness('a');
    w.size = 5;
    w.root = rootAt(5);
    const c = new Cosigning({
      witnesses: [w.endpoint],
      proof: () => Promise.reject(new Error('tile missing')),
      fetch: fakeFetch([w]),
    });
    const r = await c.cosign(checkpoint(9));
    expect(r.failures.get('a')).toBe('cannot build the consistency proof 5 → 9: tile missing');
  });

  it('serializes overlapping cosign() calls', async () => {
    const ws = [new FakeWitness('a'), new FakeWitness('b')];
    const { c } = setup(ws);
    const [r1, r2, r3] = await Promise.all([c.cosign(checkpoint(10)), c.cosign(checkpoint(20)), c.cosign(checkpoint(30))]);
    for (const r of [r1, r2, r3]) expect([...r.cosigned]).toEqual(['a', 'b']);
    for (const w of ws) expect(w.seen.map((s) => [s.oldSize, s.treeSize])).toEqual([[0, 10], [10, 20], [20, 30]]);
  });

  it('an older checkpoint than a witness cosigned is not sent', async () => {
    const w = new FakeWitness('a');
    const { c } = setup([w]);
    await c.cosign(checkpoint(30));
    const r = await c.cosign(checkpoint(20));
    expect(r.failures.get('a')).toMatch(/size 20.*smaller than.*size 30/);
    expect(w.seen).toHaveLength(1);
  });

  it('counts requests and alarms per witness', async () => {
    const w = new FakeWitness('a');
    w.size = 2;
    w.root = rootAt(2);
    const x = new FakeWitness('x');
    x.scripts.push(status(403));
    const { c, metrics } = setup([w, x]);
    await c.cosign(checkpoint(4));
    const text = metrics.render();
    expect(text).toContain('glasslog_witness_requests_total{outcome="stale_old_size",witness="a"} 1');
    expect(text).toContain('glasslog_witness_requests_total{outcome="cosigned",witness="a"} 1');
    expect(text).toContain('glasslog_witness_requests_total{outcome="forbidden",witness="x"} 1');
    expect(text).toContain('glasslog_witness_alarms_total{witness="x"} 1');
    expect(text).toContain('glasslog_witness_request_seconds_count{witness="a"} 2');
  });

  it('throws on programmer errors only, and stays usable after one', async () => {
    const w = new FakeWitness('a');
    expect(() => new Cosigning({ witnesses: [w.endpoint, w.endpoint], proof: proofSpy() })).toThrow(RangeError);
    expect(() => new Cosigning({ witnesses: [w.endpoint, { ...w.endpoint, name: 'other' }], proof: proofSpy() })).toThrow(/key .* configured twice/);
    expect(() => new Cosigning({ witnesses: [w.endpoint], proof: proofSpy(), timeoutMs: 0 })).toThrow(RangeError);
    const { c } = setup([w]);
    await expect(c.cosign({ treeSize: 11, note: checkpoint(10).note })).rejects.toThrow(RangeError);
    await expect(c.cosign({ treeSize: 10, note: 'not a note' })).rejects.toThrow(/malformed/);
    const r = await c.cosign(checkpoint(10));
    expect([...r.cosigned]).toEqual(['a']);
  });

  it('an onAlarm that throws does not break cosign()', async () => {
    const w = new FakeWitness('a');
    w.scripts.push(status(404));
    const c = new Cosigning({
      witnesses: [w.endpoint],
      proof: proofSpy(),
      fetch: fakeFetch([w]),
      onAlarm: () => {
        throw new Error('sink down');
      },
    });
    const r = await c.cosign(checkpoint(3));
    expect(r.failures.get('a')).toMatch(/404/);
  });
});

// ---------------------------------------------------------------------------------------
// The real fetch against a node:http witness.

describe('Cosigning over HTTP', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    server = undefined;
  });

  async function listen(handler: (req: import('node:http').IncomingMessage, body: string) => Promise<Response | 'hang'>) {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void handler(req, Buffer.concat(chunks).toString('utf8')).then(async (answer) => {
          if (answer === 'hang') return;
          const headers: Record<string, string> = {};
          answer.headers.forEach((v, k) => (headers[k] = v));
          res.writeHead(answer.status, headers);
          res.end(Buffer.from(await answer.arrayBuffer()));
        });
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
  }

  it('speaks add-checkpoint with the real fetch: POST, no Content-Type, 409 then 200', async () => {
    const w = new FakeWitness('a');
    w.size = 3;
    w.root = rootAt(3);
    const methods: string[] = [];
    const base = await listen(async (req, body) => {
      methods.push(`${req.method} ${req.url} ${req.headers['content-type'] ?? '-'}`);
      return w.handle(req.url ?? '', req.headers['content-type'] ?? null, body);
    });
    const c = new Cosigning({ witnesses: [{ ...w.endpoint, url: `${base}/w/` }], proof: proofSpy() });
    const r = await c.cosign(checkpoint(12));
    expect([...r.cosigned]).toEqual(['a']);
    expect(methods).toEqual(['POST /w/add-checkpoint -', 'POST /w/add-checkpoint -']);
    expect(w.seen.map((s) => s.oldSize)).toEqual([0, 3]);
    expect(openWith(r.note, [w]).verified).toHaveLength(2);
    expect(equalBytes(w.root, rootAt(12))).toBe(true);
  });

  it('times out on a server that never answers', async () => {
    const base = await listen(async () => 'hang');
    const w = new FakeWitness('a');
    const c = new Cosigning({ witnesses: [{ ...w.endpoint, url: base }], proof: proofSpy(), timeoutMs: 100 });
    const r = await c.cosign(checkpoint(1));
    expect(r.failures.get('a')).toBe('no answer within 100 ms');
  });

  it('does not follow redirects', async () => {
    const w = new FakeWitness('a');
    let base = '';
    const paths: string[] = [];
    base = await listen(async (req, body) => {
      paths.push(req.url ?? '');
      // A working witness one redirect away: following it would get a cosignature.
      if (req.url === '/add-checkpoint') return new Response(null, { status: 307, headers: { Location: `${base}/w/add-checkpoint` } });
      return w.handle(req.url ?? '', null, body);
    });
    const c = new Cosigning({ witnesses: [{ ...w.endpoint, url: base }], proof: proofSpy() });
    const r = await c.cosign(checkpoint(1));
    expect(r.failures.get('a')).toMatch(/request to .* failed/);
    expect(paths).toEqual(['/add-checkpoint']);
  });
});

// ---------------------------------------------------------------------------------------
// `enough`: returning once a quorum answered, and skipping a witness still answering.

describe('Cosigning with enough', () => {
  /** Witnesses a, b answer at once; c's request hangs until release() (its timeout, 10 s, is longer than the test). */
  function withSilentWitness() {
    const ws = [new FakeWitness('a'), new FakeWitness('b'), new FakeWitness('c')];
    const silent = ws[2]!;
    const inner = fakeFetch(ws);
    let sentToSilent = 0;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const fetchFn: typeof fetch = async (input, init) => {
      if (String(input).startsWith(silent.endpoint.url)) {
        sentToSilent++;
        await released;
      }
      return inner(input, init);
    };
    return { ws, silent, ...setup(ws, { timeoutMs: 10_000, fetch: fetchFn }), sentToSilent: () => sentToSilent, release };
  }
  const twoOfThree = (cosigned: ReadonlySet<string>) => cosigned.size >= 2;

  it('returns as soon as the answers satisfy it, reporting the silent witness as not answered yet', async () => {
    const { ws, silent, c, alarms, sentToSilent, release } = withSilentWitness();
    try {
      const t0 = performance.now();
      const r = await c.cosign(checkpoint(10), twoOfThree);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect([...r.cosigned].sort()).toEqual(['a', 'b']);
      expect([...r.failures.keys()]).toEqual(['c']);
      expect(r.failures.get('c')).toMatch(/^no answer yet/);
      expect(openWith(r.note, ws).verified.map((s) => s.name)).toEqual([ORIGIN, 'a.witness.test', 'b.witness.test']);
      expect(alarms).toEqual([]);
      expect(sentToSilent()).toBe(1);
      expect(silent.seen).toEqual([]);
      expect(Object.fromEntries(c.witnessSizes())).toEqual({ a: 10, b: 10, c: 0 });
    } finally {
      release();
    }
  });

  it('a later call skips a witness still answering an earlier checkpoint, without a second request to it', async () => {
    const { ws, silent, c, sentToSilent, release } = withSilentWitness();
    try {
      await c.cosign(checkpoint(10), twoOfThree);
      const t0 = performance.now();
      const r = await c.cosign(checkpoint(20), twoOfThree);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect([...r.cosigned].sort()).toEqual(['a', 'b']);
      expect(r.failures).toEqual(new Map([['c', 'still answering an earlier checkpoint']]));
      expect(openWith(r.note, ws).verified).toHaveLength(3);
      // Without `enough` too: it does not wait for the silent witness either.
      const r2 = await c.cosign(checkpoint(25));
      expect(r2.failures).toEqual(new Map([['c', 'still answering an earlier checkpoint']]));
      expect(sentToSilent()).toBe(1);
      for (const w of ws.slice(0, 2)) expect(w.seen.map((s) => [s.oldSize, s.treeSize])).toEqual([[0, 10], [10, 20], [20, 25]]);

      // Once it answers (the size-10 request), it is asked again, from the size it cosigned.
      release();
      await vi.waitFor(() => expect(c.witnessSizes().get('c')).toBe(10), { timeout: 2000, interval: 5 });
      const r3 = await c.cosign(checkpoint(30));
      expect([...r3.cosigned]).toEqual(['a', 'b', 'c']);
      expect(sentToSilent()).toBe(2);
      expect(silent.seen.map((s) => [s.oldSize, s.treeSize])).toEqual([[0, 10], [10, 30]]);
      expect(silent.seen[1]!.proof).toEqual(proveConsistency(10, 30, reader));
    } finally {
      release();
    }
  });
});
