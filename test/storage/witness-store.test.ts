/**
 * The WitnessStore contract (src/storage/witness-store.ts), run against every store: PGlite
 * always, Postgres when DATABASE_URL is set. Each test has a schema of its own; on PGlite
 * the tests of the block share one embedded database.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConflictError, leafHash, utf8 } from '../../src/core/index.js';
import type { PostgresWitnessStore, WitnessCheckpoint } from '../../src/storage/witness-store.js';
import { witnessStoreFactories, type WitnessStoreHandle } from '../helpers/witness-stores.js';

const ORIGIN = 'example.com/log';
const root = (tag: string) => leafHash(utf8(tag));
const cp = (treeSize: number, tag = `r${treeSize}`, origin = ORIGIN): WitnessCheckpoint => ({
  origin,
  treeSize,
  rootHash: root(tag),
  note: `${origin}\n${treeSize}\n(root ${tag})\n\n— ${origin} sig\n— witness cosig\n`,
});
const state = (c: WitnessCheckpoint) => ({ treeSize: c.treeSize, rootHash: c.rootHash });

describe.each(witnessStoreFactories())('WitnessStore on $name', (factory) => {
  let handle: WitnessStoreHandle | undefined;
  const open: PostgresWitnessStore[] = [];
  async function reopen(): Promise<PostgresWitnessStore> {
    const s = await handle!.open();
    open.push(s);
    await s.migrate();
    return s;
  }
  async function fresh(): Promise<PostgresWitnessStore> {
    handle = await factory.create();
    return reopen();
  }
  async function closeAll(): Promise<void> {
    for (const s of open.splice(0)) await s.close().catch(() => undefined);
  }
  afterEach(async () => {
    await closeAll();
    await handle?.destroy();
    handle = undefined;
  });
  afterAll(() => factory.dispose());

  it('starts empty, and migrate is idempotent', async () => {
    const s = await fresh();
    await s.migrate();
    expect(await s.latest(ORIGIN)).toBeNull();
    expect(await s.all()).toEqual([]);
    expect(await s.openForks(ORIGIN)).toEqual([]);
    expect(await s.forks(ORIGIN)).toEqual([]);
    expect(await s.resolveForks(ORIGIN)).toBe(0);
  });

  it('stores the first checkpoint of an origin only from null', async () => {
    const s = await fresh();
    const c5 = cp(5);
    expect(await s.compareAndSwap(null, c5)).toEqual({ stored: true });
    expect(await s.latest(ORIGIN)).toEqual(c5);
    // A second "first" checkpoint loses and sees the stored one.
    expect(await s.compareAndSwap(null, cp(7))).toEqual({ stored: false, current: c5 });
    // Expecting a state for an origin that has none fails with current null.
    expect(await s.compareAndSwap(state(c5), cp(9, 'x', 'other.example/log'))).toEqual({ stored: false, current: null });
    expect(await s.latest('other.example/log')).toBeNull();
  });

  it('swaps only from the exact stored size and root', async () => {
    const s = await fresh();
    const c5 = cp(5);
    const c8 = cp(8);
    await s.compareAndSwap(null, c5);
    expect(await s.compareAndSwap(state(c5), c8)).toEqual({ stored: true });
    expect(await s.latest(ORIGIN)).toEqual(c8);
    // Stale expectation: returns what is stored.
    expect(await s.compareAndSwap(state(c5), cp(9))).toEqual({ stored: false, current: c8 });
    // Right size, wrong root.
    expect(await s.compareAndSwap({ treeSize: 8, rootHash: root('forged') }, cp(10))).toEqual({ stored: false, current: c8 });
    // Right root, wrong size.
    expect(await s.compareAndSwap({ treeSize: 7, rootHash: c8.rootHash }, cp(10))).toEqual({ stored: false, current: c8 });
    // The same size and root again with a new note (say, one more log signature) is a valid swap.
    const renoted = { ...c8, note: c8.note + '— another sig\n' };
    expect(await s.compareAndSwap(state(c8), renoted)).toEqual({ stored: true });
    expect(await s.latest(ORIGIN)).toEqual(renoted);
    const big = cp(2 ** 53 - 1);
    expect(await s.compareAndSwap(state(c8), big)).toEqual({ stored: true });
    expect(await s.latest(ORIGIN)).toEqual(big);
  });

  it('rejects a shrinking swap and malformed arguments, storing nothing', async () => {
    const s = await fresh();
    const c8 = cp(8);
    await s.compareAndSwap(null, c8);
    await expect(s.compareAndSwap(state(c8), cp(7))).rejects.toBeInstanceOf(RangeError);
    await expect(s.compareAndSwap(state(c8), { ...cp(9), rootHash: new Uint8Array(31) })).rejects.toBeInstanceOf(RangeError);
    await expect(s.compareAndSwap({ treeSize: 8, rootHash: new Uint8Array(33) }, cp(9))).rejects.toBeInstanceOf(RangeError);
    await expect(s.compareAndSwap(state(c8), cp(-1))).rejects.toBeInstanceOf(RangeError);
    await expect(s.compareAndSwap(state(c8), cp(1.5))).rejects.toBeInstanceOf(RangeError);
    await expect(s.compareAndSwap(state(c8), cp(2 ** 53))).rejects.toBeInstanceOf(RangeError);
    await expect(s.compareAndSwap(null, cp(1, 'r', ''))).rejects.toBeInstanceOf(RangeError);
    await expect(s.compareAndSwap(state(c8), { ...cp(9), note: 'nul\0' })).rejects.toBeInstanceOf(RangeError);
    await expect(s.recordFork('', 'e')).rejects.toBeInstanceOf(RangeError);
    await expect(s.recordFork(ORIGIN, 'nul\0')).rejects.toBeInstanceOf(RangeError);
    expect(await s.latest(ORIGIN)).toEqual(c8);
    expect(await s.forks(ORIGIN)).toEqual([]);
  });

  it('lets exactly one of 50 concurrent swaps from the same state win', async () => {
    const s = await fresh();
    // On Postgres spread the callers over two pools (8 connections); PGlite has one session.
    const stores = factory.name === 'postgres' ? [s, await reopen()] : [s];
    const race = async (expected: WitnessCheckpoint | null, base: number) => {
      const nexts = Array.from({ length: 50 }, (_, k) => cp(base + k, `race ${base} ${k}`));
      const results = await Promise.all(nexts.map((n, k) => stores[k % stores.length]!.compareAndSwap(expected && state(expected), n)));
      const winners = nexts.filter((_, k) => results[k]!.stored);
      expect(winners).toHaveLength(1);
      const winner = winners[0]!;
      for (const r of results) if (!r.stored) expect(r.current).toEqual(winner);
      expect(await s.latest(ORIGIN)).toEqual(winner);
      return winner;
    };
    const first = await race(null, 10);
    await race(first, 100);
  });

  it('keeps checkpoints and forks across close and reopen', async () => {
    const s = await fresh();
    const c3 = cp(3);
    await s.compareAndSwap(null, c3);
    const f = await s.recordFork(ORIGIN, 'evidence 1');
    await s.resolveForks(ORIGIN);
    const g = await s.recordFork(ORIGIN, 'evidence 2');
    const before = await s.forks(ORIGIN);
    await closeAll();
    await handle!.restart();
    const again = await reopen();
    expect(await again.latest(ORIGIN)).toEqual(c3);
    expect(await again.forks(ORIGIN)).toEqual(before);
    expect((await again.openForks(ORIGIN)).map((r) => r.id)).toEqual([g.id]);
    expect(await again.recordFork(ORIGIN, 'evidence 1')).toEqual(before.find((r) => r.id === f.id));
    expect(await again.compareAndSwap(state(c3), cp(4))).toEqual({ stored: true });
  });

  it('lists every origin in byte order', async () => {
    const s = await fresh();
    const origins = ['b.example/log', 'a.example/log2', 'B.example/log', 'a.example/log', 'a.example/log/x', '_.example/log'];
    for (const [k, o] of origins.entries()) await s.compareAndSwap(null, cp(k, `o${k}`, o));
    const all = await s.all();
    expect(all.map((c) => c.origin)).toEqual([...origins].sort());
    for (const c of all) expect(c).toEqual(cp(origins.indexOf(c.origin), `o${origins.indexOf(c.origin)}`, c.origin));
  });

  it('records identical fork evidence once per origin', async () => {
    const s = await fresh();
    const long = 'fork evidence\n' + 'x'.repeat(20_000) + '\n';
    const a = await s.recordFork(ORIGIN, long);
    expect(a).toMatchObject({ origin: ORIGIN, evidence: long, resolvedAt: null });
    expect(a.detectedAt).toBeInstanceOf(Date);
    expect(Number.isSafeInteger(a.id)).toBe(true);
    expect(await s.recordFork(ORIGIN, long)).toEqual(a);
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => s.recordFork(ORIGIN, 'evidence B')));
    expect(new Set(concurrent.map((r) => r.id)).size).toBe(1);
    const other = await s.recordFork('other.example/log', long);
    expect(other.id).not.toBe(a.id);
    expect(await s.forks(ORIGIN)).toEqual([concurrent[0], a]);
    expect(await s.forks('other.example/log')).toEqual([other]);
  });

  it('lists open forks oldest first, all forks newest first, and resolves them', async () => {
    const s = await fresh();
    const f1 = await s.recordFork(ORIGIN, 'e1');
    const f2 = await s.recordFork(ORIGIN, 'e2');
    const f3 = await s.recordFork(ORIGIN, 'e3');
    const o1 = await s.recordFork('other.example/log', 'e1');
    expect(f1.id < f2.id && f2.id < f3.id).toBe(true);
    expect(await s.openForks(ORIGIN)).toEqual([f1, f2, f3]);
    expect(await s.forks(ORIGIN)).toEqual([f3, f2, f1]);

    expect(await s.resolveForks(ORIGIN)).toBe(3);
    expect(await s.openForks(ORIGIN)).toEqual([]);
    const resolved = await s.forks(ORIGIN);
    expect(resolved.map((r) => r.id)).toEqual([f3.id, f2.id, f1.id]);
    for (const r of resolved) {
      expect(r.resolvedAt).toBeInstanceOf(Date);
      expect(r.resolvedAt!.getTime()).toBeGreaterThanOrEqual(r.detectedAt.getTime());
    }
    expect(await s.resolveForks(ORIGIN)).toBe(0);
    expect(await s.openForks('other.example/log')).toEqual([o1]);

    // Recording resolved evidence again returns it, still resolved; new evidence opens a fork.
    expect((await s.recordFork(ORIGIN, 'e2')).resolvedAt).toBeInstanceOf(Date);
    const f4 = await s.recordFork(ORIGIN, 'e4');
    expect(await s.openForks(ORIGIN)).toEqual([f4]);
    expect(f4.id > f3.id).toBe(true);
  });

  if (factory.name === 'postgres') {
    it('admits one witness process per schema', async () => {
      const s = await fresh();
      const s2 = await reopen();
      await s.lockWitness();
      await s.lockWitness();
      await expect(s2.lockWitness()).rejects.toBeInstanceOf(ConflictError);
      await s.close();
      open.splice(open.indexOf(s), 1);
      await s2.lockWitness();
    });
  } else {
    it('takes no advisory lock on the embedded store', async () => {
      const s = await fresh();
      await s.lockWitness();
      await s.lockWitness();
    });
  }
});
