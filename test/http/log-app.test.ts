/**
 * The log's HTTP API, route by route, through app.request() on every store: the
 * c2sp.org/tlog-tiles read path (checked byte for byte against tiles rebuilt here from the
 * submitted entries), the write API, receipts, proofs, health, metrics and error bodies.
 */
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBase64, encodeBase64, utf8 } from '../../src/core/encoding.js';
import { verifyConsistency, verifyInclusion } from '../../src/core/tree.js';
import { parseTlogProof } from '../../src/core/tlog-proof.js';
import { generateKey, newVerifier, openNote } from '../../src/note/index.js';
import {
  createTestLog,
  openCheckpoint,
  refBundle,
  refLeafHash,
  refRoot,
  refTile,
  verifyReceipt,
  type TestLog,
} from '../helpers/log.js';
import { storeFactories } from '../helpers/stores.js';

interface EntryResult {
  index: number;
  leafHash: string;
  duplicate: boolean;
  receipt?: string;
}

const MAX_BATCH = 100;
const SEED = 300;
const OCTETS = 'application/octet-stream';
const JSON_TYPE = 'application/json';

/** A copy with a plain ArrayBuffer, as fetch's BodyInit wants. */
const body = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);
const filled = (n: number, byte: number) => new Uint8Array(n).fill(byte);
let unique = 0;
/** Bytes never submitted before in this file. */
const fresh = (label = 'entry') => utf8(`${label} ${unique++} ${Math.random()}`);

describe.each(storeFactories())('log HTTP API on $name', (factory) => {
  let t: TestLog;
  /** Every entry the log accepted, by index: the test's own mirror of the log. */
  const mirror: Uint8Array[] = [];

  const req = (path: string, init?: RequestInit) => t.app.request(path, init);
  const auth = () => ({ Authorization: `Bearer ${t.token}` });

  function record(index: number, entry: Uint8Array): void {
    const had = mirror[index];
    if (had) expect(Buffer.from(had).equals(Buffer.from(entry))).toBe(true);
    else mirror[index] = entry;
  }
  function leaves(size: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < size; i++) {
      const e = mirror[i];
      if (!e) throw new Error(`mirror has no entry ${i}`);
      out.push(refLeafHash(e));
    }
    return out;
  }

  async function metric(name: string): Promise<number> {
    const text = await (await req('/metrics')).text();
    const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
    if (!m) throw new Error(`metric ${name} not found`);
    return Number(m[1]);
  }
  async function treeSize(): Promise<number> {
    return openCheckpoint(await (await req('/checkpoint')).text(), t.vkey).treeSize;
  }
  /** Tree size and sequenced count: both must stay put across a rejected request. */
  async function snapshot(): Promise<{ treeSize: number; sequenced: number }> {
    return { treeSize: await treeSize(), sequenced: await metric('glasslog_sequenced_entries') };
  }
  /** Waits until everything sequenced is published. */
  async function settle(): Promise<void> {
    for (let i = 0; i < 500; i++) {
      if ((await metric('glasslog_pending_entries')) === 0 && (await treeSize()) === (await metric('glasslog_sequenced_entries'))) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('log did not settle');
  }

  async function expectError(res: Response, status: number, message: RegExp): Promise<void> {
    const text = await res.text();
    expect(res.status, text).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const parsed = JSON.parse(text) as { error: { status: number; message: string } };
    expect(parsed).toEqual({ error: { status, message: expect.any(String) } });
    expect(parsed.error.message).toMatch(message);
  }
  /** Runs `fn` (which sends rejected requests) and checks nothing was stored. */
  async function nothingStored(fn: () => Promise<void>): Promise<void> {
    const before = await snapshot();
    await fn();
    await new Promise((r) => setTimeout(r, 5));
    expect(await snapshot()).toEqual(before);
  }

  const postOne = (entry: Uint8Array, opts: { json?: boolean; query?: string; headers?: Record<string, string> } = {}) =>
    req(`/v1/entries${opts.query ?? ''}`, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': opts.json ? JSON_TYPE : OCTETS, ...opts.headers },
      body: opts.json ? JSON.stringify({ entry: encodeBase64(entry) }) : body(entry),
    });
  const postRaw = (path: string, payload: string | Uint8Array, type: string | undefined, headers: Record<string, string> = auth()) =>
    req(path, {
      method: 'POST',
      headers: type === undefined ? headers : { ...headers, 'Content-Type': type },
      body: typeof payload === 'string' ? payload : body(payload),
    });
  const postBatchJson = (entries: Uint8Array[], query = '') =>
    postRaw(`/v1/entries/batch${query}`, JSON.stringify({ entries: entries.map(encodeBase64) }), JSON_TYPE);

  /** Checks one write result against the entry and verifies its receipt. */
  function checkResult(r: EntryResult, entry: Uint8Array, duplicate: boolean): void {
    expect(r.leafHash).toBe(encodeBase64(refLeafHash(entry)));
    expect(r.duplicate).toBe(duplicate);
    expect(typeof r.receipt).toBe('string');
    const p = verifyReceipt(r.receipt!, t.vkey, entry);
    expect(p.index).toBe(r.index);
    expect(p.cp.origin).toBe(t.origin);
    expect(p.cp.treeSize).toBeGreaterThan(r.index);
    record(r.index, entry);
  }

  beforeAll(async () => {
    t = await createTestLog(factory, { app: { maxBatchEntries: MAX_BATCH } });
    // Varied sizes, including empty-adjacent and large entries, so bundle framing is exercised.
    const seed = Array.from({ length: SEED }, (_, i) => (i % 97 === 5 ? filled(1000 + i, i & 0xff) : utf8(`seed entry ${i}`)));
    const results = await t.log.add(seed);
    results.forEach((r, i) => {
      expect(r.index).toBe(i);
      record(r.index, seed[i]!);
    });
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  describe('GET /checkpoint', () => {
    it('serves the signed checkpoint of the published tree', async () => {
      const res = await req('/checkpoint');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('no-cache');
      const note = await res.text();
      const opened = openNote(note, [newVerifier(t.vkey)]);
      expect(opened.verified).toHaveLength(1);
      expect(opened.unverified).toHaveLength(0);
      const cp = openCheckpoint(note, t.vkey);
      expect(cp.origin).toBe(t.origin);
      expect(cp.treeSize).toBe(SEED);
      expect(cp.treeSize).toBe(t.log.checkpoint().treeSize);
      expect(cp.extensions).toEqual([]);
      expect(encodeBase64(cp.rootHash)).toBe(encodeBase64(refRoot(leaves(SEED))));
      expect(note).toBe(t.log.checkpoint().note);
    });

    it('is not signed by any other key', async () => {
      const other = generateKey(t.origin).vkey;
      expect(() => openCheckpoint(t.log.checkpoint().note, other)).toThrow();
    });
  });

  describe('GET /tile/…', () => {
    async function getTile(path: string, acceptEncoding?: string): Promise<Uint8Array> {
      const res = await req('/' + path, acceptEncoding === undefined ? {} : { headers: { 'Accept-Encoding': acceptEncoding } });
      const data = new Uint8Array(await res.arrayBuffer());
      expect(res.status, `${path}: ${Buffer.from(data).toString()}`).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
      expect(res.headers.get('cache-control')).toMatch(/\bimmutable\b/);
      expect(res.headers.get('cache-control')).toMatch(/max-age=\d{6,}/);
      return res.headers.get('content-encoding') === 'gzip' ? new Uint8Array(gunzipSync(data)) : data;
    }
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

    it('serves every tile and bundle of the published tree, byte for byte', async () => {
      const size = await treeSize();
      expect(size).toBe(SEED);
      const l = leaves(size);
      // Size 300: level 0 has a full tile and a partial of 44; level 1 a partial of 1.
      expect(hex(await getTile('tile/0/000'))).toBe(hex(refTile(l, 0, 0, 256)));
      expect(hex(await getTile('tile/0/001.p/44'))).toBe(hex(refTile(l, 0, 1, 44)));
      expect(hex(await getTile('tile/1/000.p/1'))).toBe(hex(refTile(l, 1, 0, 1)));
      expect((await getTile('tile/0/000')).length).toBe(8192);
      expect(hex(await getTile('tile/entries/000'))).toBe(hex(refBundle(mirror.slice(0, 256))));
      expect(hex(await getTile('tile/entries/001.p/44'))).toBe(hex(refBundle(mirror.slice(256, 300))));
    });

    it('serves narrower widths as prefixes of the published tiles', async () => {
      const l = leaves(SEED);
      for (const w of [1, 2, 10, 43]) {
        expect(hex(await getTile(`tile/0/001.p/${w}`))).toBe(hex(refTile(l, 0, 1, w)));
        expect(hex(await getTile(`tile/entries/001.p/${w}`))).toBe(hex(refBundle(mirror.slice(256, 256 + w))));
      }
      for (const w of [1, 128, 255]) {
        expect(hex(await getTile(`tile/0/000.p/${w}`))).toBe(hex(refTile(l, 0, 0, 256).subarray(0, w * 32)));
        expect(hex(await getTile(`tile/entries/000.p/${w}`))).toBe(hex(refBundle(mirror.slice(0, w))));
      }
    });

    it('keeps serving earlier partial tiles unchanged after the tree grows', async () => {
      const before = await getTile('tile/0/001.p/44');
      const beforeBundle = await getTile('tile/entries/001.p/44');
      const added = Array.from({ length: 10 }, () => fresh('growth'));
      const rs = await t.log.add(added);
      rs.forEach((r, i) => record(r.index, added[i]!));
      const size = await treeSize();
      expect(size).toBe(SEED + 10);
      const l = leaves(size);
      expect(hex(await getTile('tile/0/001.p/44'))).toBe(hex(before));
      expect(hex(await getTile('tile/entries/001.p/44'))).toBe(hex(beforeBundle));
      expect(hex(await getTile('tile/0/001.p/54'))).toBe(hex(refTile(l, 0, 1, 54)));
      expect(hex(await getTile('tile/entries/001.p/54'))).toBe(hex(refBundle(mirror.slice(256, 310))));
      expect(hex(await getTile('tile/1/000.p/1'))).toBe(hex(refTile(l, 1, 0, 1)));
    });

    it('returns 404 for tiles beyond the published tree', async () => {
      const size = await treeSize();
      expect(size).toBe(SEED + 10); // partial level-0 tile 1 has width 54
      for (const path of [
        'tile/0/001.p/55', // width too large
        'tile/0/001.p/255',
        'tile/0/001', // not full yet
        'tile/0/002.p/1', // index too large
        'tile/0/002',
        'tile/0/x001/000',
        'tile/1/000', // level 1 holds one hash
        'tile/1/000.p/2',
        'tile/1/001.p/1',
        'tile/2/000.p/1',
        'tile/63/000.p/1',
        'tile/entries/001',
        'tile/entries/001.p/55',
        'tile/entries/002.p/1',
        'tile/entries/x999/999',
      ]) {
        await expectError(await req('/' + path), 404, /not in the published tree/);
      }
    });

    it('returns 400 for malformed or non-canonical tile paths', async () => {
      for (const path of [
        'tile/00/000', // level with a leading zero
        'tile/01/000',
        'tile/64/000', // level above 63
        'tile/-1/000',
        'tile/a/000',
        'tile/0/00', // index element not 3 digits
        'tile/0/0000',
        'tile/0/abc',
        'tile/0/001/000', // missing x prefix
        'tile/0/x000/001', // non-canonical: leading x000
        'tile/0/x1/000',
        'tile/0/x001/x000', // x on the last element
        'tile/0/000.p/256', // width out of range
        'tile/0/000.p/0',
        'tile/0/000.p/01', // width with a leading zero
        'tile/0/000.p/',
        'tile/0/000.p',
        'tile/0/000.q/1',
        'tile/0/000.p/1/2',
        'tile/entries/000.p/256',
        'tile/entries/000.p/0',
        'tile/entries/00',
        'tile/entries/x000/000',
        'tile',
        'tile/0',
        'tile/0/',
        'tile/0/000/',
        'tile/0/x999/x999/x999/x999/x999/x999/999', // index beyond a safe integer
      ]) {
        await expectError(await req('/' + path), 400, /malformed tile path/);
      }
    });

    it('gzips entry bundles when the client accepts gzip, and not otherwise', async () => {
      const want = refBundle(mirror.slice(0, 256));
      const gz = await req('/tile/entries/000', { headers: { 'Accept-Encoding': 'gzip, identity' } });
      expect(gz.status).toBe(200);
      expect(gz.headers.get('content-encoding')).toBe('gzip');
      expect(gz.headers.get('vary')).toMatch(/Accept-Encoding/i);
      const raw = new Uint8Array(await gz.arrayBuffer());
      expect(raw[0]).toBe(0x1f);
      expect(hex(new Uint8Array(gunzipSync(raw)))).toBe(hex(want));

      const partial = await req('/tile/entries/001.p/20', { headers: { 'Accept-Encoding': 'gzip' } });
      expect(partial.headers.get('content-encoding')).toBe('gzip');
      expect(hex(new Uint8Array(gunzipSync(new Uint8Array(await partial.arrayBuffer()))))).toBe(hex(refBundle(mirror.slice(256, 276))));

      const variants: Array<Record<string, string>> = [{}, { 'Accept-Encoding': 'identity' }, { 'Accept-Encoding': 'br' }];
      for (const headers of variants) {
        const res = await req('/tile/entries/000', { headers });
        expect(res.status).toBe(200);
        expect(res.headers.get('content-encoding')).toBeNull();
        expect(hex(new Uint8Array(await res.arrayBuffer()))).toBe(hex(want));
      }
    });
  });

  describe('POST /v1/entries', () => {
    it('refuses writes without a valid bearer token, storing nothing', async () => {
      const e = fresh('unauthorized');
      await nothingStored(async () => {
        const variants: Array<Record<string, string>> = [
          {},
          { Authorization: 'Bearer wrong-token' },
          { Authorization: `Bearer ${t.token}x` },
          { Authorization: `Basic ${t.token}` },
          { Authorization: 'Bearer ' },
          { Authorization: t.token },
        ];
        for (const headers of variants) {
          for (const path of ['/v1/entries', '/v1/entries/batch']) {
            const res = await postRaw(path, e, OCTETS, headers);
            expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
            expect(res.headers.get('cache-control')).toBe('no-store');
            await expectError(res, 401, /bearer token|Authorization/i);
          }
        }
      });
      const res = await postOne(e); // the same bytes, now authorised, are new
      expect(res.status).toBe(201);
      checkResult((await res.json()) as EntryResult, e, false);
    });

    it('treats the Bearer scheme name case-insensitively (RFC 9110 §11.1)', async () => {
      for (const scheme of ['bearer', 'BEARER', 'Bearer ']) {
        const e = fresh('scheme');
        const res = await postRaw('/v1/entries', e, OCTETS, { Authorization: `${scheme} ${t.token}` });
        expect(res.status).toBe(201);
        checkResult((await res.json()) as EntryResult, e, false);
      }
    });

    it('accepts raw bytes: 201 with index, leaf hash and a verifying receipt', async () => {
      const e = fresh('raw');
      const before = await metric('glasslog_sequenced_entries');
      const res = await postOne(e);
      expect(res.status).toBe(201);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      const r = (await res.json()) as EntryResult;
      expect(r.index).toBe(before);
      checkResult(r, e, false);
    });

    it('accepts base64 in JSON, with a charset parameter too', async () => {
      const e = fresh('json');
      const r = (await (await postOne(e, { json: true })).json()) as EntryResult;
      checkResult(r, e, false);
      const e2 = fresh('json');
      const res = await postRaw('/v1/entries', JSON.stringify({ entry: encodeBase64(e2) }), 'application/json; charset=utf-8');
      expect(res.status).toBe(201);
      checkResult((await res.json()) as EntryResult, e2, false);
    });

    it('answers a duplicate with 200, the same index, and does not grow', async () => {
      const e = fresh('dup');
      const first = (await (await postOne(e)).json()) as EntryResult;
      checkResult(first, e, false);
      const size = await treeSize();
      for (const json of [false, true]) {
        const res = await postOne(e, { json });
        expect(res.status).toBe(200);
        const again = (await res.json()) as EntryResult;
        expect(again.index).toBe(first.index);
        checkResult(again, e, true);
      }
      expect(await treeSize()).toBe(size);
    });

    it('with ?wait=sequenced returns the index without a receipt', async () => {
      const e = fresh('sequenced');
      const res = await postOne(e, { query: '?wait=sequenced' });
      expect(res.status).toBe(201);
      const r = (await res.json()) as EntryResult;
      expect(r).not.toHaveProperty('receipt');
      expect(r.leafHash).toBe(encodeBase64(refLeafHash(e)));
      expect(r.duplicate).toBe(false);
      record(r.index, e);
      await settle();
      const receipt = await req(`/v1/receipts/${r.index}`);
      expect(receipt.status).toBe(200);
      expect(verifyReceipt(await receipt.text(), t.vkey, e).index).toBe(r.index);
      const published = await postOne(e, { query: '?wait=published' });
      expect(published.status).toBe(200);
      checkResult((await published.json()) as EntryResult, e, true);
    });

    it('rejects a bad wait value with 400', async () => {
      const e = fresh('badwait');
      await nothingStored(async () => {
        for (const q of ['?wait=bogus', '?wait=', '?wait=Sequenced', '?wait=integrated']) {
          await expectError(await postOne(e, { query: q }), 400, /wait/);
        }
        await expectError(await postRaw('/v1/entries/batch?wait=x', refBundle([e]), OCTETS), 400, /wait/);
      });
    });

    it('rejects empty entries with 400', async () => {
      await nothingStored(async () => {
        await expectError(await postOne(new Uint8Array(0)), 400, /empty/);
        await expectError(await postOne(new Uint8Array(0), { json: true }), 400, /empty/);
      });
    });

    it('accepts a 65,535-byte entry and refuses 65,536 with 413', async () => {
      const big = filled(65535, 0x41);
      big.set(utf8(`max ${Math.random()}`));
      const r = (await (await postOne(big)).json()) as EntryResult;
      checkResult(r, big, false);
      const bigJson = filled(65535, 0x42);
      bigJson.set(utf8(`max ${Math.random()}`));
      const rj = await postOne(bigJson, { json: true });
      expect(rj.status).toBe(201);
      checkResult((await rj.json()) as EntryResult, bigJson, false);
      // The largest entry is served back in its bundle.
      await settle();
      const b = Math.floor(r.index / 256);
      const size = await treeSize();
      const w = Math.min(256, size - b * 256);
      const res = await req(`/tile/entries/${String(b).padStart(3, '0')}${w === 256 ? '' : `.p/${w}`}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(refBundle(mirror.slice(b * 256, b * 256 + w))))).toBe(true);

      await nothingStored(async () => {
        await expectError(await postOne(filled(65536, 1)), 413, /65536 bytes.*65535/);
        await expectError(await postOne(filled(65536, 2), { json: true }), 413, /65536 bytes.*65535/);
      });
    });

    it('refuses bodies over the limit with 413', async () => {
      await nothingStored(async () => {
        const huge = filled(128 * 1024 + 1, 3);
        await expectError(await postOne(huge), 413, /exceeds/);
        await expectError(
          await postRaw('/v1/entries', huge, OCTETS, { ...auth(), 'Content-Length': String(huge.length) }),
          413,
          /exceeds/
        );
        const json = JSON.stringify({ entry: encodeBase64(filled(100_000, 4)) });
        await expectError(await postRaw('/v1/entries', json, JSON_TYPE), 413, /exceeds/);
      });
    });

    it('refuses other content types with 415', async () => {
      const e = fresh('type');
      await nothingStored(async () => {
        for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
          await expectError(await postRaw('/v1/entries', e, type), 415, /content type/);
          await expectError(await postRaw('/v1/entries/batch', refBundle([e]), type), 415, /content type/);
        }
      });
    });

    it('rejects bad JSON, unknown fields and non-canonical base64 with 400', async () => {
      const ok = encodeBase64(fresh('json-bad'));
      await nothingStored(async () => {
        const cases: Array<[string, RegExp]> = [
          ['{"entry":', /not valid JSON/],
          ['', /not valid JSON/],
          ['[]', /JSON object/],
          ['"QUFB"', /JSON object/],
          ['null', /JSON object/],
          [JSON.stringify({ entry: ok, extra: 1 }), /unknown field "extra"/],
          [JSON.stringify({ entries: [ok] }), /unknown field "entries"/],
          [JSON.stringify({}), /"entry" must be a base64 string/],
          [JSON.stringify({ entry: 5 }), /"entry" must be a base64 string/],
          [JSON.stringify({ entry: [ok] }), /"entry" must be a base64 string/],
          [JSON.stringify({ entry: 'QUFBQQ' }), /entry: invalid base64/], // missing padding
          [JSON.stringify({ entry: 'QR==' }), /entry: invalid base64/], // non-zero trailing bits
          [JSON.stringify({ entry: 'QUE=\n' }), /entry: invalid base64/],
          [JSON.stringify({ entry: 'QU E=' }), /entry: invalid base64/],
          [JSON.stringify({ entry: 'QUF-' }), /entry: invalid base64/], // URL-safe alphabet
          [JSON.stringify({ entry: 'QQ==QQ==' }), /entry: invalid base64/], // padding inside
          [JSON.stringify({ entry: '====' }), /entry: invalid base64/],
        ];
        for (const [payload, message] of cases) {
          await expectError(await postRaw('/v1/entries', payload, JSON_TYPE), 400, message);
        }
      });
    });
  });

  describe('POST /v1/entries/batch', () => {
    it('accepts a JSON batch: results in order, each with a verifying receipt', async () => {
      const es = Array.from({ length: 7 }, () => fresh('batch-json'));
      const before = await metric('glasslog_sequenced_entries');
      const res = await postBatchJson(es);
      expect(res.status).toBe(200);
      const { entries } = (await res.json()) as { entries: EntryResult[] };
      expect(entries).toHaveLength(es.length);
      entries.forEach((r, i) => {
        expect(r.index).toBe(before + i);
        checkResult(r, es[i]!, false);
      });
    });

    it('accepts the uint16-length-prefixed binary framing', async () => {
      const es = [fresh('batch-bin'), filled(65535, 7), utf8('x'), fresh('batch-bin')];
      es[1]!.set(utf8(`big ${Math.random()}`));
      const res = await postRaw('/v1/entries/batch', refBundle(es), OCTETS);
      expect(res.status).toBe(200);
      const { entries } = (await res.json()) as { entries: EntryResult[] };
      expect(entries.map((r) => r.index)).toEqual(entries.map((_, i) => entries[0]!.index + i));
      entries.forEach((r, i) => checkResult(r, es[i]!, false));
    });

    it('gives one index to the same bytes twice in a batch, and to earlier entries', async () => {
      const a = fresh('twice');
      const b = fresh('twice');
      const earlier = mirror[3]!;
      const size = await metric('glasslog_sequenced_entries');
      const res = await postBatchJson([a, b, a, earlier]);
      expect(res.status).toBe(200);
      const { entries } = (await res.json()) as { entries: EntryResult[] };
      checkResult(entries[0]!, a, false);
      checkResult(entries[1]!, b, false);
      checkResult(entries[2]!, a, true);
      checkResult(entries[3]!, earlier, true);
      expect(entries[2]!.index).toBe(entries[0]!.index);
      expect(entries[3]!.index).toBe(3);
      expect(await metric('glasslog_sequenced_entries')).toBe(size + 2);
    });

    it('with ?wait=sequenced returns indices without receipts', async () => {
      const es = [fresh('batch-seq'), fresh('batch-seq')];
      const res = await postBatchJson(es, '?wait=sequenced');
      expect(res.status).toBe(200);
      const { entries } = (await res.json()) as { entries: EntryResult[] };
      for (const [i, r] of entries.entries()) {
        expect(r).not.toHaveProperty('receipt');
        record(r.index, es[i]!);
      }
      await settle();
    });

    it('rejects truncated framing, empty batches and empty entries with 400', async () => {
      const e = fresh('batch-bad');
      await nothingStored(async () => {
        await expectError(await postRaw('/v1/entries/batch', Uint8Array.of(0), OCTETS), 400, /truncated length prefix of entry 0/);
        await expectError(await postRaw('/v1/entries/batch', Uint8Array.of(0, 5, 1, 2), OCTETS), 400, /entry 0 is truncated/);
        const framed = refBundle([e]);
        await expectError(await postRaw('/v1/entries/batch', Uint8Array.of(...framed, 0), OCTETS), 400, /entry 1/);
        await expectError(await postRaw('/v1/entries/batch', Uint8Array.of(...framed, 0, 9, 1), OCTETS), 400, /entry 1 is truncated/);
        await expectError(await postRaw('/v1/entries/batch', new Uint8Array(0), OCTETS), 400, /at least one entry/);
        await expectError(await postRaw('/v1/entries/batch', '{"entries":[]}', JSON_TYPE), 400, /at least one entry/);
        // One bad entry rejects the whole batch.
        await expectError(await postRaw('/v1/entries/batch', refBundle([e, new Uint8Array(0), fresh()]), OCTETS), 400, /entry 1 is empty/);
        await expectError(await postBatchJson([e, new Uint8Array(0)]), 400, /entry 1 is empty/);
      });
    });

    it('rejects malformed JSON batches with 400', async () => {
      const ok = encodeBase64(fresh('batch-json-bad'));
      await nothingStored(async () => {
        const cases: Array<[string, RegExp]> = [
          ['{', /not valid JSON/],
          ['[]', /JSON object/],
          [JSON.stringify({ entries: ok }), /"entries" must be an array/],
          [JSON.stringify({ entry: ok }), /unknown field "entry"/],
          [JSON.stringify({ entries: [ok], more: true }), /unknown field "more"/],
          [JSON.stringify({ entries: [ok, 7] }), /entries\[1\] must be a base64 string/],
          [JSON.stringify({ entries: [ok, 'QR=='] }), /entries\[1\]: invalid base64/],
        ];
        for (const [payload, message] of cases) {
          await expectError(await postRaw('/v1/entries/batch', payload, JSON_TYPE), 400, message);
        }
      });
    });

    it('refuses batches over the entry limit or with an oversized entry with 413', async () => {
      await nothingStored(async () => {
        const many = Array.from({ length: MAX_BATCH + 1 }, (_, i) => utf8(`over ${i} ${Math.random()}`));
        await expectError(await postBatchJson(many), 413, new RegExp(`at most ${MAX_BATCH} entries, got ${MAX_BATCH + 1}`));
        await expectError(await postRaw('/v1/entries/batch', refBundle(many), OCTETS), 413, /at most/);
        await expectError(await postBatchJson([fresh(), filled(65536, 9)]), 413, /entry 1 is 65536 bytes/);
      });
      // Exactly the limit is fine.
      const max = Array.from({ length: MAX_BATCH }, (_, i) => utf8(`limit ${i} ${Math.random()}`));
      const res = await postRaw('/v1/entries/batch', refBundle(max), OCTETS);
      expect(res.status).toBe(200);
      const { entries } = (await res.json()) as { entries: EntryResult[] };
      entries.forEach((r, i) => checkResult(r, max[i]!, false));
    });
  });

  describe('GET /v1/receipts/<index>', () => {
    it('serves a verifying receipt against the latest checkpoint', async () => {
      await settle();
      const size = await treeSize();
      for (const index of [0, 1, 255, 256, SEED - 1, size - 1]) {
        const res = await req(`/v1/receipts/${index}`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
        expect(res.headers.get('cache-control')).toBe('no-cache');
        const p = verifyReceipt(await res.text(), t.vkey, mirror[index]!);
        expect(p.index).toBe(index);
        expect(p.cp.treeSize).toBe(size);
      }
    });

    it('serves receipts against an earlier published checkpoint, immutably', async () => {
      for (const index of [0, 299]) {
        const res = await req(`/v1/receipts/${index}?treeSize=${SEED}`);
        expect(res.status).toBe(200);
        expect(res.headers.get('cache-control')).toMatch(/immutable/);
        const p = verifyReceipt(await res.text(), t.vkey, mirror[index]!);
        expect(p.cp.treeSize).toBe(SEED);
        expect(encodeBase64(p.cp.rootHash)).toBe(encodeBase64(refRoot(leaves(SEED))));
      }
    });

    it('returns 404 for unknown indices and unpublished tree sizes', async () => {
      const size = await treeSize();
      await expectError(await req(`/v1/receipts/${size}`), 404, /index \d+ is not in the tree of size/);
      await expectError(await req(`/v1/receipts/${2 ** 40}`), 404, /not in the tree/);
      await expectError(await req(`/v1/receipts/${SEED}?treeSize=${SEED}`), 404, /index 300 is not in the tree of size 300/);
      await expectError(await req(`/v1/receipts/0?treeSize=0`), 404, /not in the tree of size 0/);
      // The seed went in as one batch: no checkpoint of size 150 was ever published.
      await expectError(await req(`/v1/receipts/0?treeSize=150`), 404, /no checkpoint of tree size 150/);
      await expectError(await req(`/v1/receipts/0?treeSize=${size + 1}`), 404, /beyond the latest checkpoint/);
    });

    it('rejects malformed numbers with 400', async () => {
      for (const index of ['01', '-1', '1e3', 'abc', '99999999999999999999', '1.0', '+1', '0x1', '%201', '1%20']) {
        await expectError(await req(`/v1/receipts/${index}`), 400, /index: .* is not a canonical decimal|index: .* too large/);
      }
      for (const q of ['01', '-1', '1e3', 'abc', '', '9007199254740993']) {
        await expectError(await req(`/v1/receipts/0?treeSize=${q}`), 400, /query parameter treeSize/);
      }
    });
  });

  describe('GET /v1/proofs/…', () => {
    interface InclusionBody {
      index: number;
      treeSize: number;
      leafHash: string;
      proof: string[];
    }
    /** The signed root of a published size, taken from a receipt (the only way to get old checkpoints). */
    async function signedRoot(size: number): Promise<Uint8Array> {
      const res = await req(`/v1/receipts/0?treeSize=${size}`);
      expect(res.status).toBe(200);
      const cp = openCheckpoint(parseTlogProof(await res.text()).checkpoint, t.vkey);
      expect(cp.treeSize).toBe(size);
      return cp.rootHash;
    }
    const q = encodeURIComponent;

    it('serves inclusion proofs by index that verify against the published checkpoints', async () => {
      await settle();
      const note = await (await req('/checkpoint')).text();
      const cp = openCheckpoint(note, t.vkey);
      for (const index of [0, 7, 255, 256, 299, cp.treeSize - 1]) {
        const res = await req(`/v1/proofs/inclusion?index=${index}`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const p = (await res.json()) as InclusionBody;
        expect(p.index).toBe(index);
        expect(p.treeSize).toBe(cp.treeSize);
        expect(p.leafHash).toBe(encodeBase64(refLeafHash(mirror[index]!)));
        verifyInclusion(refLeafHash(mirror[index]!), index, cp.treeSize, p.proof.map((h) => decodeBase64(h, 'proof')), cp.rootHash);
      }
      const root = await signedRoot(SEED);
      for (const index of [0, 150, 299]) {
        const p = (await (await req(`/v1/proofs/inclusion?index=${index}&treeSize=${SEED}`)).json()) as InclusionBody;
        expect(p.treeSize).toBe(SEED);
        verifyInclusion(refLeafHash(mirror[index]!), index, SEED, p.proof.map((h) => decodeBase64(h, 'proof')), root);
      }
    });

    it('serves inclusion proofs by leaf hash', async () => {
      const cp = openCheckpoint(await (await req('/checkpoint')).text(), t.vkey);
      for (const index of [0, 42, 300]) {
        const h = refLeafHash(mirror[index]!);
        const res = await req(`/v1/proofs/inclusion?leafHash=${q(encodeBase64(h))}`);
        expect(res.status).toBe(200);
        const p = (await res.json()) as InclusionBody;
        expect(p.index).toBe(index);
        verifyInclusion(h, index, cp.treeSize, p.proof.map((x) => decodeBase64(x, 'proof')), cp.rootHash);
      }
      const h = refLeafHash(mirror[5]!);
      const p = (await (await req(`/v1/proofs/inclusion?leafHash=${q(encodeBase64(h))}&treeSize=${SEED}`)).json()) as InclusionBody;
      verifyInclusion(h, 5, SEED, p.proof.map((x) => decodeBase64(x, 'proof')), await signedRoot(SEED));
    });

    it('rejects bad inclusion queries', async () => {
      const size = await treeSize();
      const h = q(encodeBase64(refLeafHash(mirror[0]!)));
      await expectError(await req(`/v1/proofs/inclusion?index=0&leafHash=${h}`), 400, /exactly one of/);
      await expectError(await req(`/v1/proofs/inclusion`), 400, /exactly one of/);
      await expectError(await req(`/v1/proofs/inclusion?treeSize=5`), 400, /exactly one of/);
      await expectError(await req(`/v1/proofs/inclusion?leafHash=${q(encodeBase64(refLeafHash(utf8('never submitted'))))}`), 404, /no entry with that leaf hash/);
      await expectError(await req(`/v1/proofs/inclusion?leafHash=not-base64`), 400, /leafHash: invalid base64/);
      // An unescaped "+" in a query string is a space.
      await expectError(await req(`/v1/proofs/inclusion?leafHash=${encodeBase64(filled(32, 0xfb))}`), 400, /leafHash: invalid base64/);
      await expectError(await req(`/v1/proofs/inclusion?leafHash=${q(encodeBase64(new Uint8Array(16)))}`), 400, /32 bytes/);
      await expectError(await req(`/v1/proofs/inclusion?index=${size}`), 404, /not in the tree/);
      await expectError(await req(`/v1/proofs/inclusion?index=0&treeSize=${size + 1}`), 404, /beyond the latest checkpoint/);
      await expectError(await req(`/v1/proofs/inclusion?index=10&treeSize=10`), 404, /index 10 is not in the tree of size 10/);
      await expectError(await req(`/v1/proofs/inclusion?index=01`), 400, /query parameter index/);
      await expectError(await req(`/v1/proofs/inclusion?index=-1`), 400, /query parameter index/);
      await expectError(await req(`/v1/proofs/inclusion?index=0&treeSize=1e3`), 400, /query parameter treeSize/);
    });

    it('serves consistency proofs that verify between published checkpoints', async () => {
      const latestNote = await (await req('/checkpoint')).text();
      const latest = openCheckpoint(latestNote, t.vkey);
      const old = await signedRoot(SEED);
      const check = async (path: string, oldSize: number, newSize: number, oldRoot: Uint8Array, newRoot: Uint8Array) => {
        const res = await req(path);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const p = (await res.json()) as { oldSize: number; newSize: number; proof: string[] };
        expect(p.oldSize).toBe(oldSize);
        expect(p.newSize).toBe(newSize);
        verifyConsistency(oldSize, newSize, p.proof.map((h) => decodeBase64(h, 'proof')), oldRoot, newRoot);
        return p;
      };
      await check(`/v1/proofs/consistency?old=${SEED}&new=${latest.treeSize}`, SEED, latest.treeSize, old, latest.rootHash);
      await check(`/v1/proofs/consistency?old=${SEED}`, SEED, latest.treeSize, old, latest.rootHash);
      await check(`/v1/proofs/consistency?old=${SEED + 10}&new=${latest.treeSize}`, SEED + 10, latest.treeSize, await signedRoot(SEED + 10), latest.rootHash);
      // Sizes that were never published verify against roots rebuilt from the entries.
      const l = leaves(latest.treeSize);
      for (const [a, b] of [[1, 2], [1, SEED], [150, SEED], [256, 257], [255, latest.treeSize], [7, 300]] as const) {
        await check(`/v1/proofs/consistency?old=${a}&new=${b}`, a, b, refRoot(l.slice(0, a)), refRoot(l.slice(0, b)));
      }
      expect((await check(`/v1/proofs/consistency?old=0&new=${SEED}`, 0, SEED, refRoot([]), old)).proof).toEqual([]);
      expect((await check(`/v1/proofs/consistency?old=${SEED}&new=${SEED}`, SEED, SEED, old, old)).proof).toEqual([]);
    });

    it('rejects bad consistency queries', async () => {
      const size = await treeSize();
      await expectError(await req(`/v1/proofs/consistency?old=10&new=5`), 400, /old size 10 is larger than new size 5/);
      await expectError(await req(`/v1/proofs/consistency?old=${size + 1}`), 400, /larger than new size/);
      await expectError(await req(`/v1/proofs/consistency?old=1&new=${size + 1}`), 404, /beyond the latest checkpoint/);
      await expectError(await req(`/v1/proofs/consistency?new=5`), 400, /query parameter old is required/);
      await expectError(await req(`/v1/proofs/consistency`), 400, /query parameter old is required/);
      await expectError(await req(`/v1/proofs/consistency?old=01&new=5`), 400, /query parameter old/);
      await expectError(await req(`/v1/proofs/consistency?old=1&new=abc`), 400, /query parameter new/);
      await expectError(await req(`/v1/proofs/consistency?old=1&new=-5`), 400, /query parameter new/);
    });
  });

  describe('operations', () => {
    it('GET /healthz answers 200 JSON', async () => {
      const res = await req('/healthz');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await res.json()).toEqual({ status: 'ok', origin: t.origin, treeSize: await treeSize() });
    });

    it('GET /metrics serves Prometheus text', async () => {
      await settle();
      const size = await treeSize();
      const res = await req('/metrics');
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(text).toMatch(/^# TYPE glasslog_tree_size gauge$/m);
      expect(text).toMatch(new RegExp(`^glasslog_tree_size ${size}$`, 'm'));
      expect(text).toMatch(/^glasslog_pending_entries 0$/m);
      expect(text).toMatch(new RegExp(`^glasslog_sequenced_entries ${size}$`, 'm'));
      expect(text).toMatch(/^# TYPE glasslog_http_requests_total counter$/m);
      expect(text).toMatch(/^glasslog_http_requests_total\{method="GET",route="\/checkpoint",status="200"\} [1-9]\d*$/m);
      expect(text).toMatch(/^glasslog_http_requests_total\{method="POST",route="\/v1\/entries",status="401"\} [1-9]\d*$/m);
      expect(text).toMatch(/^# TYPE glasslog_integration_seconds histogram$/m);
      expect(text).toMatch(/^glasslog_integration_seconds_bucket\{le="\+Inf"\} [1-9]\d*$/m);
      expect(text).toMatch(/^glasslog_integration_seconds_count [1-9]\d*$/m);
      expect(text).toMatch(/^glasslog_integration_seconds_sum [\d.e-]+$/m);
      // Every sample line is "name{labels} value" or "name value".
      for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('# ')) continue;
        expect(line).toMatch(/^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$/);
      }
    });

    it('unknown routes answer 404 with a JSON error', async () => {
      await expectError(await req('/nope'), 404, /no route for GET \/nope/);
      await expectError(await req('/checkpoint', { method: 'POST' }), 404, /no route for POST \/checkpoint/);
      await expectError(await req('/v1/entries'), 404, /no route for GET \/v1\/entries/);
      await expectError(await req('/v1/proofs'), 404, /no route/);
    });
  });
});
