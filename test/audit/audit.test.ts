/**
 * The agent audit service (src/audit/audit.ts) on every store (PGlite always, Postgres when
 * DATABASE_URL is set), each test on a fresh log + audit index sharing one connection in a
 * schema of its own (test/helpers/audit.ts):
 *
 * - recovery: entries sequenced but not indexed (appended straight through log.add behind
 *   the AuditLog's back) are checked and indexed when an AuditLog opens, registry entries
 *   among them included; the whole index can be rebuilt from the log;
 * - payloads lost that way come back with a resubmission, never after an erasure;
 * - concurrency: identical and conflicting submissions racing, key changes racing writes;
 * - the rate limiter, the registry's refusals as error classes, closing.
 */
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { utf8 } from '../../src/core/encoding.js';
import {
  ConflictError,
  ForbiddenError,
  GoneError,
  MalformedError,
  NotFoundError,
  PushbackError,
  RateLimitedError,
  TlogError,
  VerificationError,
} from '../../src/core/errors.js';
import { decodeEnvelope, signEntry, verifyEntrySignature, type Entry } from '../../src/entry/index.js';
import { generateKey, parseVerifierKey } from '../../src/note/index.js';
import type { AuditRow, KeyRow } from '../../src/storage/audit-store.js';
import { createAuditFixture, submission, TestAgent, type AuditFixture, type AuditFixtureOptions, type ClientEntry } from '../helpers/audit.js';
import { auditStoreFactories } from '../helpers/audit-stores.js';

const T0 = 1_750_000_000_000;
const factories = auditStoreFactories();
afterAll(async () => {
  for (const f of factories) await f.dispose();
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rejects with a clear message if `p` does not settle in `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: did not settle within ${ms} ms`)), ms);
    }),
  ]);
}

async function rejection(p: Promise<unknown>): Promise<TlogError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TlogError);
    return err as TlogError;
  }
  throw new Error('expected a rejection');
}

describe.each(factories)('AuditLog on $name', (factory) => {
  let fx: AuditFixture;

  async function open(o: AuditFixtureOptions = {}): Promise<AuditFixture> {
    const f = await createAuditFixture(factory, o);
    onTestFinished(() => f.cleanup());
    fx = f;
    return f;
  }

  /** Every recorded row, oldest first, straight from the store. */
  async function rows(): Promise<AuditRow[]> {
    return fx.store.query({ below: 2 ** 40, limit: 1000 });
  }
  const indices = async () => (await rows()).map((r) => r.index);

  /** A registry entry signed by the log's key, as the AuditLog would append it. */
  const logSigned = (e: Entry) => signEntry(e, fx.skey).bytes;

  const submit = (a: TestAgent, entries: ClientEntry[]) => fx.audit.submit(a.id, entries.map(submission));

  /** Appends raw leaves behind the AuditLog's back, published. */
  async function appendRaw(leaves: Uint8Array[]): Promise<number[]> {
    const r = await fx.log.add(leaves, 'published');
    expect(r.every((x) => !x.duplicate)).toBe(true);
    return r.map((x) => x.index);
  }

  /** Checks every indexed run entry against the key its index falls in. */
  function checkSignedByPeriod(all: AuditRow[], keys: KeyRow[], leaves: Map<number, Uint8Array>): void {
    for (const r of all) {
      if (r.type !== 'event' && r.type !== 'run.close') continue;
      const period = keys.find((k) => k.agent === r.agent && k.from < r.index && (k.until === null || r.index <= k.until));
      expect(period, `no key period covers entry ${r.index}`).toBeDefined();
      const s = decodeEnvelope(leaves.get(r.index)!);
      expect(verifyEntrySignature(s, parseVerifierKey(period!.vkey).publicKey), `entry ${r.index} is not signed by the key of its period`).toBe(true);
    }
  }

  async function leavesOf(n: number): Promise<Map<number, Uint8Array>> {
    const out = new Map<number, Uint8Array>();
    (await fx.log.sequencedEntries(0, n)).forEach((b, i) => out.set(i, b));
    return out;
  }

  // ---------------------------------------------------------------------------------------
  describe('recovery', () => {
    it('entries sequenced but not indexed are checked and indexed on open; junk and bad signatures are skipped', async () => {
      await open();
      const a = new TestAgent('a1');
      const reg = await fx.audit.register(a.id, a.key.vkey);
      const [r0] = await submit(a, [a.event('r')]);
      await fx.closeAudit();

      const e1 = a.event('r', { payloads: { p: 'lost payload' } });
      const forged = new TestAgent('a1').event('r2'); // a key named a1, never registered
      const e2 = a.event('r');
      const junk = utf8('an opaque entry, not an envelope');
      const [i1, iForged, iJunk, i2] = await appendRaw([e1.signed.bytes, forged.signed.bytes, junk, e2.signed.bytes]);
      expect(await fx.store.indexedSize()).toBe(i1);

      const audit = await within(fx.openAudit(), 20_000, 'AuditLog.open');
      expect(await fx.store.indexedSize()).toBe(fx.log.sequencedSize());
      expect(await indices()).toEqual([reg.index, r0!.index, i1!, i2!]);
      expect(await indices()).not.toContain(iForged);
      expect(await indices()).not.toContain(iJunk);
      const run = await audit.run('a1', 'r');
      expect(run.entries.map((e) => e.index)).toEqual([r0!.index, i1!, i2!]);
      expect(run.findings.map((f) => f.kind)).toEqual(['not-closed']);
      await expect(audit.run('a1', 'r2')).rejects.toBeInstanceOf(NotFoundError);
      // The payload travelled beside the entry and is lost; resubmitting restores it.
      await expect(audit.payload(i1!, 'p')).rejects.toBeInstanceOf(NotFoundError);
      const again = await audit.submit('a1', [submission(e1)]);
      expect(again).toEqual([{ index: i1, leafHash: e1.signed.leafHash, duplicate: true }]);
      expect((await audit.payload(i1!, 'p')).data).toEqual(utf8('lost payload'));
      // The recovered chain is the one new entries are checked against.
      const [r3] = await audit.submit('a1', [submission(a.event('r'))]);
      expect(r3!.index).toBe(fx.log.sequencedSize() - 1);
      await expect(audit.submit('a1', [submission(a.event('r', { prev: e1.signed.leafHash, seq: 4 }))])).rejects.toBeInstanceOf(VerificationError);
      // The forged entry is refused when submitted properly.
      await expect(audit.submit('a1', [submission(forged)])).rejects.toBeInstanceOf(VerificationError);
    });

    it('recovery across a restart of the whole server', async () => {
      await open();
      const a = new TestAgent('a1');
      await fx.audit.register(a.id, a.key.vkey);
      await submit(a, [a.event('r')]);
      await fx.closeAudit();
      const raw = [a.event('r'), a.event('r'), a.close('r')];
      const ix = await appendRaw(raw.map((e) => e.signed.bytes));
      await fx.restart();
      expect(await fx.store.indexedSize()).toBe(fx.log.sequencedSize());
      const res = await fx.request('/v1/agents/a1/runs/r');
      const run = (await res.json()) as { closed: boolean; findings: unknown[]; entries: Array<{ index: number }> };
      expect(res.status).toBe(200);
      expect(run.closed).toBe(true);
      expect(run.findings).toEqual([]);
      expect(run.entries.map((e) => e.index).slice(1)).toEqual(ix);
    });

    it('a registry entry appended raw is applied, and the entries after it in the same range are checked against it', async () => {
      await open();
      await fx.closeAudit();
      const a = new TestAgent('a1');
      const k1 = a.key;
      const k2 = a.newKey();
      const reg = { type: 'agent.register', agent: 'a1', key: k1.vkey, time: T0 } as const;
      const e0 = a.event('r');
      const rot = { type: 'agent.rotate', agent: 'a1', key: k2.vkey, time: T0 + 1 } as const;
      const e1 = a.event('r', {}, k2.skey);
      const stale = a.event('x', {}, k1.skey); // after the rotation, by the old key: not valid
      const [iReg, i0, iRot, i1] = await appendRaw([logSigned(reg), e0.signed.bytes, logSigned(rot), e1.signed.bytes, stale.signed.bytes]);
      const audit = await within(fx.openAudit(), 20_000, 'AuditLog.open');
      expect(await fx.store.indexedSize()).toBe(fx.log.sequencedSize());
      expect(await audit.agentKeys('a1')).toEqual([
        { agent: 'a1', vkey: k1.vkey, from: iReg, until: iRot, endedBy: 'rotated' },
        { agent: 'a1', vkey: k2.vkey, from: iRot, until: null, endedBy: null },
      ]);
      expect(await indices()).toEqual([iReg, i0, iRot, i1]);
    });

    it('a rotation appended raw: the old key no longer counts after it, the new one does', async () => {
      await open();
      const a = new TestAgent('a1');
      const k1 = a.key;
      const k2 = a.newKey();
      const reg = await fx.audit.register('a1', k1.vkey);
      const [r0] = await submit(a, [a.event('r')]);
      await fx.closeAudit();
      const stale = a.event('r', {}, k1.skey); // seq 1 by the rotated-out key
      const fresh = new TestAgent('a1', k2).event('x'); // by the new key
      const [iRot, iStale, iFresh] = await appendRaw([logSigned({ type: 'agent.rotate', agent: 'a1', key: k2.vkey, time: T0 }), stale.signed.bytes, fresh.signed.bytes]);
      await within(fx.openAudit(), 20_000, 'AuditLog.open');
      const all = await rows();
      expect(all.map((r) => r.index)).toEqual([reg.index, r0!.index, iRot, iFresh]);
      expect(all.map((r) => r.index)).not.toContain(iStale);
      checkSignedByPeriod(all, await fx.audit.agentKeys('a1'), await leavesOf(fx.log.sequencedSize()));
    });

    it('a resubmission of logged bytes is a duplicate even after the key was rotated or revoked', async () => {
      await open();
      const a = new TestAgent('a1');
      await fx.audit.register('a1', a.key.vkey);
      const oldKey = a.key.skey;
      const e = a.event('r', { payloads: { p: 'kept' } });
      const [first] = await submit(a, [e]);
      await fx.audit.rotate('a1', (a.key = a.newKey()).vkey);
      const again = await submit(a, [e]);
      expect(again).toEqual([{ index: first!.index, leafHash: e.signed.leafHash, duplicate: true }]);
      await fx.audit.revoke('a1', a.key.vkey, 'lost');
      const size = fx.log.sequencedSize();
      expect((await submit(a, [e]))[0]!.duplicate).toBe(true);
      // A new entry by the old key is still refused, naming the rotation, and nothing is stored.
      const stale = (await rejection(submit(a, [a.event('r2', {}, oldKey)]))).message;
      expect(stale).toMatch(/has no valid key|rotated out|revoked/);
      expect(fx.log.sequencedSize()).toBe(size);
    });

    it('the whole index can be rebuilt from the log', async () => {
      await open();
      const a = new TestAgent('a1');
      const b = new TestAgent('b2');
      await fx.audit.register('a1', a.key.vkey);
      await submit(a, [a.event('r', { payloads: { p: 'x' } }), a.event('r')]);
      await fx.audit.rotate('a1', (a.key = a.newKey()).vkey);
      await submit(a, [a.event('r')]);
      await fx.audit.revoke('a1', a.key.vkey, 'lost');
      await fx.audit.rotate('a1', (a.key = a.newKey()).vkey);
      await submit(a, [a.event('r'), a.close('r')]);
      await fx.audit.register('b2', b.key.vkey);
      await submit(b, [b.event('s')]);
      const strip = (r: AuditRow) => ({ ...r, logTime: 0 });
      const before = (await rows()).map(strip);
      const keysA = await fx.audit.agentKeys('a1');
      expect(before).toHaveLength(fx.log.sequencedSize());

      await fx.closeAudit();
      await fx.conn.sql`DROP TABLE audit_state, audit_entries, audit_keys, audit_payloads, audit_erasures, audit_credentials CASCADE`;
      const audit = await within(fx.openAudit(), 20_000, 'AuditLog.open');
      expect(await fx.store.indexedSize()).toBe(fx.log.sequencedSize());
      expect((await rows()).map(strip)).toEqual(before);
      expect(await audit.agentKeys('a1')).toEqual(keysA);
    });

    it('a payload erased before its resubmission is never restored', async () => {
      await open();
      const a = new TestAgent('a1');
      await fx.audit.register('a1', a.key.vkey);
      const e = a.event('r', { payloads: { p: 'secret', q: 'other' } });
      const [r] = await submit(a, [e]);
      await fx.log.waitForPublished(r!.index);
      expect((await fx.audit.payload(r!.index, 'p')).data).toEqual(utf8('secret'));
      const er = await fx.audit.erase(r!.index, 'p', 'leaked secret');
      const gone = await rejection(fx.audit.payload(r!.index, 'p'));
      expect(gone).toBeInstanceOf(GoneError);
      expect(gone.message).toContain(`erased at index ${er.index}`);
      expect(await submit(a, [e])).toEqual([{ index: r!.index, leafHash: e.signed.leafHash, duplicate: true }]);
      await expect(fx.audit.payload(r!.index, 'p')).rejects.toBeInstanceOf(GoneError);
      expect((await fx.audit.payload(r!.index, 'q')).data).toEqual(utf8('other'));
      // And across a restart.
      await fx.restart();
      await expect(fx.audit.payload(r!.index, 'p')).rejects.toBeInstanceOf(GoneError);
      const again = await rejection(fx.audit.erase(r!.index, 'p', 'again'));
      expect(again).toBeInstanceOf(GoneError);
      expect(await rejection(fx.audit.erase(r!.index, 'nope', 'x'))).toBeInstanceOf(NotFoundError);
      expect(await rejection(fx.audit.erase(10_000, 'p', 'x'))).toBeInstanceOf(NotFoundError);
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('concurrency', () => {
    it('10 identical submissions in parallel: each entry logged once, one appender each', async () => {
      await open();
      const a = new TestAgent('a1');
      await fx.audit.register('a1', a.key.vkey);
      for (let round = 0; round < 4; round++) {
        const entries = [a.event(`r${round}`, { payloads: { p: `x${round}` } }), a.event(`r${round}`), a.event(`s${round}`), a.close(`r${round}`)];
        const size = fx.log.sequencedSize();
        const all = await within(Promise.all(Array.from({ length: 10 }, () => submit(a, entries))), 10_000, `round ${round}`);
        const seen = JSON.stringify(all.map((res) => res.map((r) => [r.index, r.duplicate])));
        const ix = all[0]!.map((r) => r.index);
        expect([...ix].sort((x, y) => x - y), seen).toEqual([size, size + 1, size + 2, size + 3]);
        for (const res of all) expect(res.map((r) => r.index), seen).toEqual(ix);
        for (let i = 0; i < entries.length; i++) expect(all.filter((res) => !res[i]!.duplicate), `entry ${i}: ${seen}`).toHaveLength(1);
        expect(fx.log.sequencedSize(), seen).toBe(size + 4);
        expect(await indices(), seen).toHaveLength(size + 4);
        await fx.log.waitForPublished(ix[0]!);
        expect((await fx.audit.payload(ix[0]!, 'p')).data).toEqual(utf8(`x${round}`));
      }
    });

    it('many agents and runs in parallel, chains submitted entry by entry: all logged, every run clean', async () => {
      await open();
      const agents = ['a1', 'b2', 'c3'].map((id) => new TestAgent(id));
      for (const a of agents) await fx.audit.register(a.id, a.key.vkey);
      const jobs: Promise<unknown>[] = [];
      const closes: Array<[TestAgent, ClientEntry]> = [];
      for (const a of agents) {
        for (const run of ['r0', 'r1', 'r2']) {
          const chain = [a.event(run), a.event(run), a.event(run)];
          closes.push([a, a.close(run)]);
          // Every entry its own request, all at once, in reverse order for one run.
          (run === 'r1' ? [...chain].reverse() : chain).forEach((e) => jobs.push(submit(a, [e])));
        }
      }
      await Promise.all(jobs);
      await Promise.all(closes.map(([a, c]) => submit(a, [c])));
      expect(await indices()).toHaveLength(fx.log.sequencedSize());
      await fx.log.waitForPublished(fx.log.sequencedSize() - 1);
      for (const a of agents) {
        for (const run of ['r0', 'r1', 'r2']) {
          const r = await fx.audit.run(a.id, run);
          expect(r.count).toBe(3);
          expect(r.closed).toBe(true);
          expect(r.findings, `${a.id}/${run}`).toEqual([]);
          expect(r.entries.map((e) => (e.signed.entry as { seq: number }).seq)).toEqual([0, 1, 2, 3]);
        }
      }
    });

    it('conflicting submissions of one (agent, run, seq) racing: exactly one wins and the index never stalls', async () => {
      await open();
      const a = new TestAgent('a1');
      await fx.audit.register('a1', a.key.vkey);
      for (let round = 0; round < 40; round++) {
        const run = `race${round}`;
        const mine = a.event(run, { attrs: { who: 'first' } });
        a.seek(run, 0);
        const theirs = a.event(run, { attrs: { who: 'second' } });
        // The second request also carries fresh entries of other runs (more lookups, a wider window).
        const others = Array.from({ length: 15 }, (_, k) => a.event(`${run}-other${k}`));
        const first = submit(a, [mine]).then(
          () => 'ok',
          (err: unknown) => err
        );
        await sleep(round % 4);
        const second = submit(a, [theirs, ...others]).then(
          () => 'ok',
          (err: unknown) => err
        );
        const outcomes = await within(Promise.all([first, second]), 6000, `round ${round}`);
        const wins = outcomes.filter((o) => o === 'ok');
        expect(wins, `round ${round}: ${outcomes.map(String).join(' / ')}`).toHaveLength(1);
        const loser = outcomes.find((o) => o !== 'ok');
        expect(loser).toBeInstanceOf(ConflictError);
        if (outcomes[1] !== 'ok') {
          // The loser's other entries went nowhere (all or nothing): submit them now.
          await within(submit(a, others), 15_000, `round ${round} others`);
        }
      }
      expect(await within(fx.store.indexedSize(), 5000, 'indexedSize')).toBe(fx.log.sequencedSize());
      const all = await rows();
      const keys = new Set(all.filter((r) => r.type === 'event').map((r) => `${r.run}/${r.seq}`));
      expect(keys.size).toBe(all.filter((r) => r.type === 'event').length);
    });

    it('a rotation racing writes: no entry of the old key is logged after the rotation', async () => {
      await open();
      const a = new TestAgent('a1');
      const k1 = a.key;
      const k2 = a.newKey();
      await fx.audit.register('a1', k1.vkey);
      const outcome = (p: Promise<Array<{ index: number }>>) =>
        p.then(
          (r) => ({ ok: true as const, index: r[0]!.index }),
          (err: unknown) => ({ ok: false as const, err })
        );
      const early = Array.from({ length: 10 }, (_, i) => outcome(submit(a, [a.event(`e${i}`)])));
      const rot = fx.audit.rotate('a1', k2.vkey);
      const late: Array<Promise<{ ok: true; index: number } | { ok: false; err: unknown }>> = [];
      for (let i = 0; i < 10; i++) {
        await sleep(i % 3);
        late.push(outcome(submit(a, [a.event(`l${i}`)])));
      }
      const { index: rotIndex } = await rot;
      const results = await Promise.all([...early, ...late]);
      for (const r of results) {
        if (r.ok) expect(r.index).toBeLessThan(rotIndex);
        else {
          expect(r.err).toBeInstanceOf(ForbiddenError);
          expect((r.err as Error).message).toMatch(new RegExp(`rotated out at index ${rotIndex}`));
        }
      }
      // Whatever the interleaving, the old key's successes all precede the rotation (checked above).
      expect(results.filter((r) => r.ok).length + results.filter((r) => !r.ok).length).toBe(20);
      // After the rotation the old key is refused, the new one accepted.
      const err = await rejection(submit(a, [a.event('after', {}, k1.skey)]));
      expect(err).toBeInstanceOf(ForbiddenError);
      a.key = k2;
      await submit(a, [a.event('after2')]);
      checkSignedByPeriod(await rows(), await fx.audit.agentKeys('a1'), await leavesOf(fx.log.sequencedSize()));
    });

    it('a revocation racing writes: nothing is logged after it until a rotation', async () => {
      await open();
      const a = new TestAgent('a1');
      await fx.audit.register('a1', a.key.vkey);
      const jobs = Array.from({ length: 12 }, (_, i) =>
        (async () => {
          await sleep(i % 4);
          return submit(a, [a.event(`r${i}`)]).then(
            (r) => r[0]!.index,
            (err: unknown) => err
          );
        })()
      );
      await sleep(1);
      const rev = await fx.audit.revoke('a1', a.key.vkey, 'stop');
      for (const r of await Promise.all(jobs)) {
        if (typeof r === 'number') expect(r).toBeLessThan(rev.index);
        else {
          expect(r).toBeInstanceOf(ForbiddenError);
          expect((r as Error).message).toMatch(new RegExp(`revoked at index ${rev.index}`));
        }
      }
      const size = fx.log.sequencedSize();
      expect(await rejection(submit(a, [a.event('x')]))).toBeInstanceOf(ForbiddenError);
      expect(fx.log.sequencedSize()).toBe(size);
      await fx.audit.rotate('a1', (a.key = a.newKey()).vkey);
      await submit(a, [a.event('y')]);
      checkSignedByPeriod(await rows(), await fx.audit.agentKeys('a1'), await leavesOf(fx.log.sequencedSize()));
    });
  });

  // ---------------------------------------------------------------------------------------
  describe('refusals as errors', () => {
    it('the rate limiter: a refused batch takes nothing, tokens come back with time', async () => {
      let clock = T0;
      await open({ rate: { perSecond: 2, burst: 3 }, now: () => clock });
      const a = new TestAgent('a1');
      await fx.audit.register('a1', a.key.vkey);
      const three = [a.event('r'), a.event('r'), a.event('r')];
      await submit(a, three);
      const next = [a.event('r'), a.event('r')];
      const size = fx.log.sequencedSize();
      const err = await rejection(submit(a, next));
      expect(err).toBeInstanceOf(RateLimitedError);
      expect((err as RateLimitedError).retryAfterSeconds).toBe(1);
      expect(fx.log.sequencedSize()).toBe(size);
      // Duplicates are free.
      expect((await submit(a, three)).every((r) => r.duplicate)).toBe(true);
      clock += 500; // one token
      expect(await rejection(submit(a, next))).toBeInstanceOf(RateLimitedError);
      clock += 500; // two
      expect(await submit(a, next)).toHaveLength(2);
      expect(fx.log.sequencedSize()).toBe(size + 2);
    });

    it('registry changes: the error classes, and nothing appended when refused', async () => {
      await open();
      const a = new TestAgent('a1');
      const k1 = a.key;
      const cases: Array<[() => Promise<unknown>, new (...args: never[]) => TlogError, RegExp]> = [
        [() => fx.audit.rotate('a1', a.newKey().vkey), NotFoundError, /unknown agent "a1"/],
        [() => fx.audit.revoke('a1', k1.vkey, ''), NotFoundError, /unknown agent "a1"/],
        [() => fx.audit.register('a1', generateKey('b2').vkey), MalformedError, /must be the agent id "a1"/],
        [() => fx.audit.register('a1', 'a1+0000+xx'), MalformedError, /key/],
        [() => fx.audit.register('a1', generateKey('a1', 0x04).vkey), MalformedError, /Ed25519/],
      ];
      const size = fx.log.sequencedSize();
      for (const [call, cls, msg] of cases) {
        const err = await rejection(call());
        expect(err).toBeInstanceOf(cls);
        expect(err.message).toMatch(msg);
      }
      expect(fx.log.sequencedSize()).toBe(size);
      const reg = await fx.audit.register('a1', k1.vkey);
      const k2 = a.newKey();
      const more: typeof cases = [
        [() => fx.audit.register('a1', a.newKey().vkey), ConflictError, /already registered/],
        [() => fx.audit.rotate('a1', k1.vkey), ConflictError, /used this key before/],
        [() => fx.audit.revoke('a1', k2.vkey, ''), ConflictError, /not agent "a1"'s current key/],
      ];
      for (const [call, cls, msg] of more) {
        const err = await rejection(call());
        expect(err).toBeInstanceOf(cls);
        expect(err.message).toMatch(msg);
      }
      expect(fx.log.sequencedSize()).toBe(size + 1);
      const rot = await fx.audit.rotate('a1', k2.vkey);
      const rev = await fx.audit.revoke('a1', k2.vkey, 'r');
      expect(await rejection(fx.audit.revoke('a1', k2.vkey, ''))).toBeInstanceOf(ConflictError);
      expect(await rejection(fx.audit.rotate('a1', k2.vkey))).toBeInstanceOf(ConflictError);
      expect(await fx.audit.agentKeys('a1')).toEqual([
        { agent: 'a1', vkey: k1.vkey, from: reg.index, until: rot.index, endedBy: 'rotated' },
        { agent: 'a1', vkey: k2.vkey, from: rot.index, until: rev.index, endedBy: 'revoked' },
      ]);
      expect(await rejection(fx.audit.agentKeys('zz'))).toBeInstanceOf(NotFoundError);
      expect(await rejection(fx.audit.submit('zz', [submission(new TestAgent('zz').event('r'))]))).toBeInstanceOf(NotFoundError);
      expect(await rejection(fx.audit.submit('a1', []))).toBeInstanceOf(MalformedError);
    });

    it('after close, writes are refused with pushback', async () => {
      await open();
      const a = new TestAgent('a1');
      await fx.audit.register('a1', a.key.vkey);
      const audit = fx.audit;
      await fx.closeAudit();
      expect(await rejection(audit.submit('a1', [submission(a.event('r'))]))).toBeInstanceOf(PushbackError);
      const later = (f: () => Promise<unknown>) => rejection(Promise.resolve().then(f));
      expect(await later(() => audit.register('b2', generateKey('b2').vkey))).toBeInstanceOf(PushbackError);
      expect(await later(() => audit.erase(0, 'p', ''))).toBeInstanceOf(PushbackError);
    });

    it('the registry methods report refusals through their promise, not by throwing', async () => {
      await open();
      const audit = fx.audit;
      await fx.closeAudit();
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['register', () => audit.register('b2', generateKey('b2').vkey)],
        ['rotate', () => audit.rotate('b2', generateKey('b2').vkey)],
        ['revoke', () => audit.revoke('b2', generateKey('b2').vkey, '')],
      ];
      for (const [name, call] of calls) {
        let p: Promise<unknown> | undefined;
        expect(() => (p = call()), `${name}() threw synchronously`).not.toThrow();
        expect(await rejection(p!)).toBeInstanceOf(PushbackError);
      }
    });
  });
});
