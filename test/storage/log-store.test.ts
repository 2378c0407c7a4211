/**
 * The LogStore contract (src/storage/types.ts), run against every store: PGlite always,
 * Postgres when DATABASE_URL is set.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EMPTY_ROOT, FatalError, ConflictError, leafHash, integrate, EMPTY_EDGE, utf8, decodeBundle } from '../../src/core/index.js';
import type { PostgresLogStore } from '../../src/storage/postgres.js';
import { storeFactories, type StoreHandle } from '../helpers/stores.js';

const entries = (from: number, n: number) => Array.from({ length: n }, (_, i) => utf8(`entry ${from + i}`));

describe.each(storeFactories())('LogStore on $name', (factory) => {
  let handle: StoreHandle | undefined;
  const open: PostgresLogStore[] = [];
  async function fresh(): Promise<PostgresLogStore> {
    handle = await factory.create();
    const s = await handle.open();
    open.push(s);
    await s.migrate();
    return s;
  }
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close().catch(() => undefined);
    await handle?.destroy();
    handle = undefined;
  });

  it('starts empty, and migrate is idempotent', async () => {
    const s = await fresh();
    await s.migrate();
    const st = await s.state();
    expect(st).toEqual({ nextIndex: 0, treeSize: 0, rootHash: EMPTY_ROOT });
    expect(await s.getMeta()).toBeNull();
    expect(await s.latestCheckpoint()).toBeNull();
    expect(await s.readTile(0, 0)).toBeNull();
    expect(await s.readBundle(0)).toBeNull();
  });

  it('keeps the first identity stored', async () => {
    const s = await fresh();
    expect(await s.initMeta({ origin: 'a.example/log', vkey: 'k1' })).toEqual({ origin: 'a.example/log', vkey: 'k1' });
    expect(await s.initMeta({ origin: 'b.example/log', vkey: 'k2' })).toEqual({ origin: 'a.example/log', vkey: 'k1' });
  });

  it('sequences contiguous indices across bundle boundaries and reads them back', async () => {
    const s = await fresh();
    let n = 0;
    for (const k of [1, 254, 1, 300, 256, 3]) {
      expect(await s.sequence(entries(n, k))).toBe(n);
      n += k;
    }
    expect((await s.state()).nextIndex).toBe(n);
    expect(await s.readEntries(0, n)).toEqual(entries(0, n));
    expect(await s.readEntries(250, 600)).toEqual(entries(250, 350));
    const b1 = await s.readBundle(1);
    expect(decodeBundle(b1!)).toEqual(entries(256, 256));
    await expect(s.readEntries(n - 1, n + 1)).rejects.toThrow(/not all sequenced/);
  });

  // The embedded engine admits one client, so two concurrent sequencers need real Postgres.
  it.skipIf(factory.name !== 'postgres')('never hands out one index twice to concurrent sequencers', async () => {
    const s = await fresh();
    const s2 = await handle!.open();
    open.push(s2);
    const firsts = await Promise.all(Array.from({ length: 8 }, (_, k) => (k % 2 ? s : s2).sequence(entries(k * 1000, 100))));
    const sorted = [...firsts].sort((a, b) => a - b);
    expect(sorted).toEqual(Array.from({ length: 8 }, (_, k) => k * 100));
    const all = await s.readEntries(0, 800);
    for (let k = 0; k < 8; k++) expect(all.slice(firsts[k]!, firsts[k]! + 100)).toEqual(entries(k * 1000, 100));
  });

  it('integrates tiles with a compare-and-swap on the tree size', async () => {
    const s = await fresh();
    await s.sequence(entries(0, 300));
    const r1 = integrate(EMPTY_EDGE, entries(0, 200).map(leafHash));
    await s.integrate(0, 200, r1.rootHash, r1.tiles);
    expect((await s.state()).treeSize).toBe(200);
    // Replaying the same step must fail: the tree is no longer at size 0.
    await expect(s.integrate(0, 200, r1.rootHash, r1.tiles)).rejects.toBeInstanceOf(FatalError);
    // Integrating beyond what was sequenced must fail.
    const tooFar = integrate(r1.edge, entries(200, 200).map(leafHash));
    await expect(s.integrate(200, 400, tooFar.rootHash, tooFar.tiles)).rejects.toBeInstanceOf(FatalError);
    const r2 = integrate(r1.edge, entries(200, 100).map(leafHash));
    await s.integrate(200, 300, r2.rootHash, r2.tiles);
    const st = await s.state();
    expect(st.treeSize).toBe(300);
    expect(st.rootHash).toEqual(r2.rootHash);
    expect((await s.readTile(0, 0))!.length).toBe(256 * 32);
    expect((await s.readTile(0, 1))!.length).toBe(44 * 32);
  });

  it('refuses to change a full tile or a partial tile prefix, storing nothing', async () => {
    const s = await fresh();
    await s.sequence(entries(0, 600));
    const r = integrate(EMPTY_EDGE, entries(0, 300).map(leafHash));
    await s.integrate(0, 300, r.rootHash, r.tiles);
    // A forged continuation that rewrites tile 0/0 (full) must be refused.
    const forged = integrate(EMPTY_EDGE, entries(1000, 400).map(leafHash));
    await expect(s.integrate(300, 400, forged.rootHash, forged.tiles)).rejects.toBeInstanceOf(FatalError);
    // A wider partial tile 0/1 whose prefix differs must be refused too.
    const bad = forged.tiles.filter((t) => t.coord.level === 0 && t.coord.index === 1);
    await expect(s.integrate(300, 400, forged.rootHash, bad)).rejects.toBeInstanceOf(FatalError);
    const st = await s.state();
    expect(st.treeSize).toBe(300);
    expect(st.rootHash).toEqual(r.rootHash);
    expect((await s.readTile(0, 1))!.length).toBe(44 * 32);
  });

  it('finds leaves by hash', async () => {
    const s = await fresh();
    await s.sequence(entries(0, 300));
    const r = integrate(EMPTY_EDGE, entries(0, 300).map(leafHash));
    await s.integrate(0, 300, r.rootHash, r.tiles);
    expect(await s.findLeaf(leafHash(utf8('entry 299')))).toEqual([299]);
    expect(await s.findLeaf(leafHash(utf8('absent')))).toEqual([]);
  });

  it('publishes checkpoints monotonically', async () => {
    const s = await fresh();
    await s.publish({ treeSize: 0, note: 'cp0' });
    await s.sequence(entries(0, 10));
    const r = integrate(EMPTY_EDGE, entries(0, 10).map(leafHash));
    await s.integrate(0, 10, r.rootHash, r.tiles);
    await expect(s.publish({ treeSize: 11, note: 'too far' })).rejects.toBeInstanceOf(FatalError);
    await s.publish({ treeSize: 10, note: 'cp10' });
    await s.publish({ treeSize: 10, note: 'cp10' });
    await expect(s.publish({ treeSize: 5, note: 'rewind' })).rejects.toBeInstanceOf(FatalError);
    expect(await s.latestCheckpoint()).toEqual({ treeSize: 10, note: 'cp10' });
    expect(await s.checkpointAt(0)).toEqual({ treeSize: 0, note: 'cp0' });
    expect(await s.checkpointAt(5)).toBeNull();
  });

  it('keeps everything across close and reopen', async () => {
    const s = await fresh();
    await s.initMeta({ origin: 'o', vkey: 'k' });
    await s.sequence(entries(0, 5));
    await s.close();
    open.splice(open.indexOf(s), 1);
    const again = await handle!.open();
    open.push(again);
    expect(await again.getMeta()).toEqual({ origin: 'o', vkey: 'k' });
    expect(await again.readEntries(0, 5)).toEqual(entries(0, 5));
  });

  it('addCosignatures replaces a published note only with a longer one', async () => {
    const s = await fresh();
    await s.publish({ treeSize: 0, note: 'cp0\n' });
    await s.sequence(entries(0, 10));
    const r = integrate(EMPTY_EDGE, entries(0, 10).map(leafHash));
    await s.integrate(0, 10, r.rootHash, r.tiles);
    await s.publish({ treeSize: 10, note: 'cp10\n' });
    // A longer note (the same checkpoint with one more signature) replaces it.
    expect(await s.addCosignatures({ treeSize: 10, note: 'cp10\n— w1\n' })).toBe(true);
    expect(await s.checkpointAt(10)).toEqual({ treeSize: 10, note: 'cp10\n— w1\n' });
    expect(await s.latestCheckpoint()).toEqual({ treeSize: 10, note: 'cp10\n— w1\n' });
    expect(await s.addCosignatures({ treeSize: 10, note: 'cp10\n— w1\n— w2\n' })).toBe(true);
    // A note no longer than the stored one changes nothing: shorter, or as long.
    expect(await s.addCosignatures({ treeSize: 10, note: 'cp10\n— w3\n' })).toBe(false);
    expect(await s.addCosignatures({ treeSize: 10, note: 'cp10\n— w3\n— w4\n' })).toBe(false);
    expect(await s.addCosignatures({ treeSize: 10, note: 'cp10\n— w1\n— w2\n' })).toBe(false);
    expect(await s.checkpointAt(10)).toEqual({ treeSize: 10, note: 'cp10\n— w1\n— w2\n' });
    // An earlier published size can gain signatures too; the latest stays the latest.
    expect(await s.addCosignatures({ treeSize: 0, note: 'cp0\n— w1\n' })).toBe(true);
    expect(await s.checkpointAt(0)).toEqual({ treeSize: 0, note: 'cp0\n— w1\n' });
    expect(await s.latestCheckpoint()).toEqual({ treeSize: 10, note: 'cp10\n— w1\n— w2\n' });
    // A size never published: false, and nothing is created (below, between or beyond).
    for (const size of [5, 11, 1000]) {
      expect(await s.addCosignatures({ treeSize: size, note: `cp${size}\n— w1\n— w2\n— w3\n` })).toBe(false);
      expect(await s.checkpointAt(size)).toBeNull();
    }
    expect(await s.latestCheckpoint()).toEqual({ treeSize: 10, note: 'cp10\n— w1\n— w2\n' });
    // Publishing the size again with its original note does not take the signatures away.
    await s.publish({ treeSize: 10, note: 'cp10\n' }).catch(() => undefined);
    expect(await s.checkpointAt(10)).toEqual({ treeSize: 10, note: 'cp10\n— w1\n— w2\n' });
    // Durable.
    await s.close();
    open.splice(open.indexOf(s), 1);
    const again = await handle!.open();
    open.push(again);
    expect(await again.checkpointAt(10)).toEqual({ treeSize: 10, note: 'cp10\n— w1\n— w2\n' });
    expect(await again.checkpointAt(0)).toEqual({ treeSize: 0, note: 'cp0\n— w1\n' });
  });

  it('addCosignatures compares note lengths as the caller counts them, outside the BMP too', async () => {
    const s = await fresh();
    // A stored note with a character outside the Basic Multilingual Plane: 4 UTF-16 code
    // units (JavaScript's length), 3 code points, 6 UTF-8 bytes.
    const stored = 'cp\u{1F600}';
    expect(stored.length).toBe(4);
    await s.publish({ treeSize: 0, note: stored });
    // As long as the stored note in JavaScript's length (and shorter in bytes): not longer.
    expect(await s.addCosignatures({ treeSize: 0, note: 'cpxy' })).toBe(false);
    expect(await s.checkpointAt(0)).toEqual({ treeSize: 0, note: stored });
  });

  if (factory.name === 'postgres') {
    it('admits one writer per log', async () => {
      const s = await fresh();
      const s2 = await handle!.open();
      open.push(s2);
      await s.lockWriter();
      await expect(s2.lockWriter()).rejects.toBeInstanceOf(ConflictError);
    });
  }
});
