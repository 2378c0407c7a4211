/**
 * The Log directly, on every store: deduplication (within a batch, across batches, across a
 * restart), recovery of entries sequenced but never integrated, identity checks, pushback,
 * receipts, the consistency of every checkpoint it signs, and a property: how entries are
 * split into add() calls never changes the tree.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBase64, utf8 } from '../../src/core/encoding.js';
import { FatalError, MalformedError, PushbackError, TooLargeError } from '../../src/core/errors.js';
import { EMPTY_EDGE, integrate } from '../../src/core/integrate.js';
import { leafHash } from '../../src/core/hash.js';
import { tilesForSize } from '../../src/core/tile.js';
import { verifyConsistency } from '../../src/core/tree.js';
import { Log, type AddResult } from '../../src/log/log.js';
import { generateKey, newSigner } from '../../src/note/index.js';
import { createTestLog, openCheckpoint, refBundle, refLeafHash, refRoot, refTile, verifyReceipt, type TestLog } from '../helpers/log.js';
import { storeFactories } from '../helpers/stores.js';

let unique = 0;
const fresh = (label = 'entry') => utf8(`${label} ${unique++} ${Math.random()}`);
const many = (n: number, label = 'entry') => Array.from({ length: n }, () => fresh(label));
const b64 = encodeBase64;

describe.each(storeFactories())('Log on $name', (factory) => {
  // One log (one data directory) for the whole suite; later groups reopen it with other
  // settings, which is cheap, where a fresh embedded database is not.
  let t: TestLog;
  /** Every entry the log holds, by index. */
  const mirror: Uint8Array[] = [];
  async function add(entries: Uint8Array[]) {
    const rs = await t.log.add(entries);
    rs.forEach((r, i) => {
      if (!r.duplicate) mirror[r.index] = entries[i]!;
    });
    return rs;
  }
  const size = () => t.log.checkpoint().treeSize;
  const rootOf = () => openCheckpoint(t.log.checkpoint().note, t.vkey).rootHash;

  beforeAll(async () => {
    t = await createTestLog(factory);
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  describe('deduplication, recovery and identity', () => {

    it('starts with a signed checkpoint of the empty tree', () => {
      const cp = openCheckpoint(t.log.checkpoint().note, t.vkey);
      expect(cp.origin).toBe(t.origin);
      expect(cp.treeSize).toBe(0);
      expect(b64(cp.rootHash)).toBe(b64(refRoot([])));
      expect(t.log.healthy()).toBe(true);
    });

    it('deduplicates within a batch', async () => {
      const [a, b] = many(2, 'within');
      const rs = await add([a!, b!, a!, a!]);
      expect(rs.map((r) => r.index)).toEqual([0, 1, 0, 0]);
      expect(rs.map((r) => r.duplicate)).toEqual([false, false, true, true]);
      expect(rs.map((r) => b64(r.leafHash))).toEqual([a, b, a, a].map((e) => b64(refLeafHash(e!))));
      expect(size()).toBe(2);
    });

    it('deduplicates across batches, including concurrent ones', async () => {
      const again = await add([mirror[1]!]);
      expect(again).toEqual([{ index: 1, leafHash: refLeafHash(mirror[1]!), duplicate: true }]);
      const c = fresh('concurrent');
      const [x, y] = await Promise.all([add([c]), add([c])]);
      expect(x![0]!.index).toBe(2);
      expect(y![0]!.index).toBe(2);
      expect([x![0]!.duplicate, y![0]!.duplicate].sort()).toEqual([false, true]);
      // The same bytes while still unpublished (wait: 'sequenced').
      const d = fresh('unpublished');
      const [s] = await t.log.add([d], 'sequenced');
      const [p] = await t.log.add([d]);
      expect(p!.index).toBe(s!.index);
      expect(p!.duplicate).toBe(true);
      mirror[s!.index] = d;
      expect(size()).toBe(4);
    });

    it('rejects empty and oversized entries without storing anything', async () => {
      const before = size();
      await expect(t.log.add([fresh(), new Uint8Array(0)])).rejects.toThrow(MalformedError);
      await expect(t.log.add([fresh(), new Uint8Array(65536)])).rejects.toThrow(TooLargeError);
      await expect(t.log.add([fresh(), new Uint8Array(65536)])).rejects.toThrow(/entry 1 is 65536 bytes/);
      const [r] = await add([new Uint8Array(65535).fill(7)]);
      expect(r!.index).toBe(before);
      expect(size()).toBe(before + 1);
    });

    it('deduplicates across a restart, from a window rebuilt from the tiles', async () => {
      await add(many(600, 'window')); // spans three level-0 tiles
      const n = size();
      const root = b64(rootOf());
      await t.reopen();
      expect(size()).toBe(n);
      expect(b64(rootOf())).toBe(root);
      for (const i of [0, 1, 255, 256, 300, n - 1]) {
        const [r] = await t.log.add([mirror[i]!]);
        expect(r).toEqual({ index: i, leafHash: refLeafHash(mirror[i]!), duplicate: true });
      }
      expect(size()).toBe(n);
      // A smaller window after a restart only remembers the last entries.
      await t.reopen({ log: { dedupWindow: 10 } });
      const [recent] = await t.log.add([mirror[n - 10]!]);
      expect(recent).toMatchObject({ index: n - 10, duplicate: true });
      const [old] = await add([mirror[n - 11]!]);
      expect(old).toMatchObject({ index: n, duplicate: false });
      expect(size()).toBe(n + 1);
      // Appending evicts the oldest entries of the live window, one for one.
      const fresh = many(10, 'evict');
      await add(fresh);
      const [inside] = await t.log.add([fresh[4]!]);
      expect(inside).toMatchObject({ index: n + 5, duplicate: true });
      const [evicted] = await add([mirror[n]!]);
      expect(evicted).toMatchObject({ index: n + 11, duplicate: false });
      expect(size()).toBe(n + 12);
      await t.reopen();
    });

    it('integrates and publishes entries that were sequenced but never integrated', async () => {
      const before = size();
      await t.close();
      const store = await t.openStore();
      const behind = many(300, 'recovered');
      try {
        expect(await store.sequence(behind.slice(0, 100))).toBe(before);
        expect(await store.sequence(behind.slice(100))).toBe(before + 100);
        const st = await store.state();
        expect(st).toMatchObject({ nextIndex: before + 300, treeSize: before });
      } finally {
        await store.close();
      }
      behind.forEach((e, i) => (mirror[before + i] = e));
      await t.reopen();
      const n = before + 300;
      expect(size()).toBe(n);
      const l = mirror.slice(0, n).map(refLeafHash);
      expect(b64(rootOf())).toBe(b64(refRoot(l)));
      for (const i of [before, before + 150, n - 1]) verifyReceipt(await t.log.receipt(i), t.vkey, mirror[i]!);
      // Tiles and bundles are served for them, and the dedup window knows them.
      const last = Math.floor((n - 1) / 256);
      const w = n - last * 256;
      expect(b64(await t.log.tile(0, last, w))).toBe(b64(refTile(l, 0, last, w)));
      expect(b64(await t.log.bundle(last, w))).toBe(b64(refBundle(mirror.slice(last * 256, n))));
      const [r] = await t.log.add([behind[299]!]);
      expect(r).toMatchObject({ index: n - 1, duplicate: true });
    });

    it('refuses to open with a different origin or key than the stored one', async () => {
      await t.close();
      const other = generateKey('other.example/log');
      const sameName = generateKey(t.origin);
      const attempts: Array<[string, string, string, RegExp]> = [
        ['other.example/log', other.skey, other.vkey, /holds the log ".+", not "other\.example\/log".*refusing to start/],
        [t.origin, sameName.skey, sameName.vkey, /was created with key .+, but the configured key is .+: refusing to start/],
      ];
      for (const [origin, skey, vkey, message] of attempts) {
        const store = await t.handle.open();
        try {
          const err = await Log.open({ store, origin, vkey, signer: newSigner(skey) }).then(
            () => undefined,
            (e: unknown) => e
          );
          expect(err).toBeInstanceOf(FatalError);
          expect((err as Error).message).toMatch(message);
        } finally {
          await store.close();
        }
      }
      await t.reopen();
      expect(t.log.healthy()).toBe(true);
    });

    it('serves receipts for many indices that all verify', async () => {
      const n = size();
      const indices = Array.from({ length: n }, (_, i) => i);
      const receipts = await t.log.receipts(indices);
      expect(receipts).toHaveLength(n);
      receipts.forEach((r, i) => {
        const p = verifyReceipt(r, t.vkey, mirror[i]!);
        expect(p.index).toBe(i);
        expect(p.cp.treeSize).toBe(n);
      });
      await expect(t.log.receipts([0, n])).rejects.toThrow(/not in the tree/);
    });

    it('closes cleanly while a sequencing transaction is in flight', async () => {
      // Regression: close() used to overlook the batch inside store.sequence(), so the
      // caller waiting for publication was never answered.
      for (let k = 0; k < 3; k++) {
        const e = fresh('closing');
        const pending = t.log.add([e]);
        await new Promise((r) => setTimeout(r, 2 + k));
        await t.close();
        const outcome = await Promise.race([
          pending.then(
            (rs) => rs[0]!.index,
            (err: unknown) => err
          ),
          new Promise((r) => setTimeout(() => r('hung'), 3000)),
        ]);
        expect(outcome).not.toBe('hung');
        await t.reopen();
        // Sequenced or not, the entry was either published or is new now.
        const [r] = await add([e]);
        if (typeof outcome === 'number') expect(r).toMatchObject({ index: outcome, duplicate: true });
        mirror[r!.index] = e;
        expect(size()).toBe(mirror.length);
      }
    });
  });

  describe('tuning', () => {
    const tuning = { log: { dedupWindow: 0, maxPending: 5 } };
    beforeAll(async () => {
      await t.reopen(tuning);
    });
    afterAll(async () => {
      await t.reopen({});
    });

    it('dedupWindow 0 turns deduplication off', async () => {
      const n = size();
      const a = mirror[n - 1]!; // the latest entry: inside any window, were there one
      const [x] = await add([a]);
      const [y] = await add([a]);
      expect(x).toMatchObject({ index: n, duplicate: false });
      expect(y).toMatchObject({ index: n + 1, duplicate: false });
      const z = await add([a, a]);
      expect(z.map((r) => [r.index, r.duplicate])).toEqual([
        [n + 2, false],
        [n + 3, false],
      ]);
      await t.reopen(tuning);
      const [w] = await add([a]);
      expect(w).toMatchObject({ index: n + 4, duplicate: false });
      expect(size()).toBe(n + 5);
    });

    it('pushes back when more than maxPending entries wait, storing nothing', async () => {
      const before = size();
      await expect(t.log.add(many(6, 'push'))).rejects.toThrow(PushbackError);
      const first = add(many(3, 'push')); // waiting now
      const err = await t.log.add(many(3, 'push')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PushbackError);
      expect((err as PushbackError).retryAfterSeconds).toBe(1);
      expect(await first).toHaveLength(3);
      expect(t.log.checkpoint().treeSize).toBe(before + 3);
      // Over HTTP: 503 with Retry-After, and nothing stored.
      const res = await t.app.request('/v1/entries/batch', {
        method: 'POST',
        headers: { Authorization: `Bearer ${t.token}`, 'Content-Type': 'application/octet-stream' },
        body: new Uint8Array(refBundle(many(6, 'push'))),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/too many entries waiting/);
      expect(t.log.checkpoint().treeSize).toBe(before + 3);
      // Once drained, the log accepts again.
      expect(await add(many(5, 'push'))).toHaveLength(5);
    });
  });

  describe('checkpoints and batching', () => {
    beforeAll(async () => {
      // Small sequencing batches, so add() calls and sequencer batches do not line up.
      await t.reopen({ log: { maxBatchSize: 37, maxBatchDelayMs: 0 } });
    });

    it('signs only checkpoints consistent with every earlier one', async () => {
      const start = size();
      const notes = new Map<number, string>([
        [0, (await t.log.checkpointAt(0)).note],
        [start, t.log.checkpoint().note],
      ]);
      const sizes = [1, 2, 1, 5, 3, 8, 13, 1, 1, 40, 7, 90, 2, 33, 1, 60, 4, 9, 11, 1, 3, 5, 100, 6];
      for (let round = 0; round < sizes.length; round += 3) {
        // Three adds at a time, concurrently: their entries interleave in the sequencer.
        const group = sizes.slice(round, round + 3).map((n) => many(n, 'cp'));
        const results = await Promise.all(group.map((g) => add(g)));
        results.forEach((rs) => rs.forEach((r) => expect(r.duplicate).toBe(false)));
        const cp = t.log.checkpoint();
        notes.set(cp.treeSize, cp.note);
      }
      // Collect every checkpoint the log published along the way, not only the ones seen.
      for (let s = start + 1; s <= size(); s++) {
        const cp = await t.log.checkpointAt(s).catch(() => undefined);
        if (cp) notes.set(s, cp.note);
      }
      const total = sizes.reduce((a, b) => a + b, 0);
      expect(size()).toBe(start + total);
      const leaves = mirror.map(refLeafHash);
      const cps = [...notes.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([size, note]) => {
          const cp = openCheckpoint(note, t.vkey);
          expect(cp.treeSize).toBe(size);
          expect(b64(cp.rootHash)).toBe(b64(refRoot(leaves.slice(0, size))));
          return cp;
        });
      expect(cps.length).toBeGreaterThanOrEqual(9);
      let pairs = 0;
      for (let i = 0; i < cps.length; i++) {
        for (let j = i; j < cps.length; j++) {
          const a = cps[i]!;
          const b = cps[j]!;
          const proof = await t.log.consistencyProof(a.treeSize, b.treeSize);
          verifyConsistency(a.treeSize, b.treeSize, proof, a.rootHash, b.rootHash);
          pairs++;
        }
      }
      expect(pairs).toBe((cps.length * (cps.length + 1)) / 2);
    });

    it('property: however entries are split into add() calls, the tree is the one-batch tree', async () => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 0, max: 140 }), { minLength: 1, maxLength: 5 }),
          fc.boolean(),
          async (batchSizes, concurrent) => {
            const batches = batchSizes.map((n) => many(n, `prop ${run}`));
            run++;
            const start = t.log.checkpoint().treeSize;
            let results: AddResult[][];
            if (concurrent) results = await Promise.all(batches.map((b) => t.log.add(b)));
            else {
              results = [];
              for (const b of batches) results.push(await t.log.add(b));
            }
            const flat = results.flat();
            expect(flat.map((r) => r.index)).toEqual(flat.map((_, i) => start + i));
            batches.flat().forEach((e, i) => (mirror[start + i] = e));
            const size = t.log.checkpoint().treeSize;
            expect(size).toBe(mirror.length);
            // The tree of all entries in one integrate() call, and by the RFC 6962 definition.
            const hashes = mirror.map((e) => leafHash(e));
            const one = integrate(EMPTY_EDGE, hashes);
            const cp = openCheckpoint(t.log.checkpoint().note, t.vkey);
            expect(b64(cp.rootHash)).toBe(b64(one.rootHash));
            expect(b64(cp.rootHash)).toBe(b64(refRoot(mirror.map(refLeafHash))));
            // And every tile the log serves is the one-batch tile.
            const tiles = new Map(one.tiles.map((x) => [`${x.coord.level}/${x.coord.index}`, x]));
            for (const c of tilesForSize(size)) {
              const want = tiles.get(`${c.level}/${c.index}`);
              expect(want?.coord.width).toBe(c.width);
              expect(b64(await t.log.tile(c.level as number, c.index, c.width))).toBe(b64(want!.data));
            }
          }
        ),
        { numRuns: 12 }
      );
    });
  });
});
