/**
 * The AuditStore contract (src/storage/audit-store.ts), run against every store: PGlite
 * always, Postgres when DATABASE_URL is set. Each test has a schema of its own; on PGlite
 * the tests of the block share one embedded database. The query test compares every page
 * of random queries over random row sets with a brute-force filter and sort in JS.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConflictError, leafHash, utf8 } from '../../src/core/index.js';
import {
  ENTRY_TYPES,
  IndexConflictError,
  PostgresAuditStore,
  type AuditRow,
  type CredentialRow,
  type EntryQuery,
  type EntryType,
  type IndexBatch,
  type PayloadRow,
} from '../../src/storage/audit-store.js';
import { PostgresLogStore } from '../../src/storage/postgres.js';
import { auditStoreFactories, type AuditStoreFactory, type AuditStoreHandle } from '../helpers/audit-stores.js';

const hashOf = (tag: string) => leafHash(utf8(tag));
const sha256 = (s: string) => new Uint8Array(createHash('sha256').update(s).digest());

function row(index: number, fields: Partial<AuditRow> = {}): AuditRow {
  return { index, type: 'event', agent: null, run: null, seq: null, kind: null, clientTime: null, logTime: 1_700_000_000_000 + index, leafHash: hashOf(`entry ${index}`), ...fields };
}
const ev = (index: number, agent: string, run: string, seq: number, fields: Partial<AuditRow> = {}) => row(index, { agent, run, seq, kind: 'tool_call', ...fields });

function batch(from: number, to: number, parts: Partial<Omit<IndexBatch, 'from' | 'to'>> = {}): IndexBatch {
  return { from, to, rows: [], keys: [], keyEnds: [], payloads: [], erasures: [], ...parts };
}

function payload(index: number, name: string, data: string | null = `${name} of ${index}`): PayloadRow {
  return {
    index,
    name,
    commitment: sha256(`commitment ${index} ${name}`),
    salt: data === null ? null : sha256(`salt ${index} ${name}`).subarray(0, 16),
    data: data === null ? null : utf8(data),
    erasedBy: null,
  };
}
const erased = (p: PayloadRow, by: number): PayloadRow => ({ ...p, salt: null, data: null, erasedBy: by });

/** Every row below `below`, oldest first (a full scan through the query API). */
async function all(s: PostgresAuditStore, below = 1_000_000): Promise<AuditRow[]> {
  const out: AuditRow[] = [];
  for (let after: number | undefined; ; ) {
    const page = await s.query({ below, limit: 1000, ...(after === undefined ? {} : { after }) });
    out.push(...page);
    if (page.length < 1000) return out;
    after = page.at(-1)!.index;
  }
}

function suite(factory: AuditStoreFactory) {
  let handle: AuditStoreHandle | undefined;
  const open: PostgresAuditStore[] = [];
  async function reopen(): Promise<PostgresAuditStore> {
    const s = await handle!.open();
    open.push(s);
    await s.migrate();
    return s;
  }
  async function fresh(): Promise<PostgresAuditStore> {
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
    await Promise.all([s.migrate(), s.migrate()]);
    expect(await s.indexedSize()).toBe(0);
    expect(await s.query({ below: 100, limit: 10 })).toEqual([]);
    expect(await s.run('a', 'r')).toEqual([]);
    expect(await s.runClose('a', 'r')).toBeNull();
    expect(await s.findRunEntries([{ agent: 'a', run: 'r', seq: 0 }])).toEqual([]);
    expect(await s.keys('a')).toEqual([]);
    expect(await s.allKeys()).toEqual([]);
    expect(await s.payloads([0, 1])).toEqual([]);
    expect(await s.credentials()).toEqual([]);
    expect(await s.credentialByHash(sha256('x'))).toBeNull();
  });

  if (factory.name === 'postgres') {
    it('migrates concurrently from several connections', async () => {
      handle = await factory.create();
      const stores = await Promise.all(Array.from({ length: 4 }, () => handle!.open()));
      open.push(...stores);
      await Promise.all(stores.map((s) => s.migrate()));
      for (const s of stores) expect(await s.indexedSize()).toBe(0);
    });
  }

  it('moves the watermark only by compare-and-swap, refusing a re-index', async () => {
    const s = await fresh();
    const first = batch(0, 3, { rows: [row(0), row(1), row(2)] });
    await s.index(first);
    expect(await s.indexedSize()).toBe(3);
    const stored = await all(s);
    expect(stored).toEqual(first.rows);

    // The same batch again (a retry after a lost answer) is refused and changes nothing.
    const again = s.index(first);
    await expect(again).rejects.toBeInstanceOf(IndexConflictError);
    await expect(again).rejects.toBeInstanceOf(ConflictError);
    await expect(again).rejects.toMatchObject({ indexedSize: 3 });
    // A gap, an overlap, a stale from: refused, nothing stored.
    await expect(s.index(batch(5, 6, { rows: [row(5)] }))).rejects.toMatchObject({ indexedSize: 3 });
    await expect(s.index(batch(2, 4, { rows: [row(3)] }))).rejects.toBeInstanceOf(IndexConflictError);
    await expect(s.index(batch(0, 4, { rows: [row(3)] }))).rejects.toBeInstanceOf(IndexConflictError);
    expect(await s.indexedSize()).toBe(3);
    expect(await all(s)).toEqual(stored);

    // An empty range is a no-op; a range may hold indices without rows.
    await s.index(batch(3, 3));
    expect(await s.indexedSize()).toBe(3);
    await s.index(batch(3, 10, { rows: [row(7), row(3)] }));
    expect(await s.indexedSize()).toBe(10);
    expect((await all(s)).map((r) => r.index)).toEqual([0, 1, 2, 3, 7]);
    const last = row(2 ** 53 - 2, { logTime: 2 ** 53 - 1, clientTime: -(2 ** 53 - 1) });
    await s.index(batch(10, 2 ** 53 - 1, { rows: [last] }));
    expect(await s.indexedSize()).toBe(2 ** 53 - 1);
    expect(await s.query({ below: 2 ** 53 - 1, limit: 1, order: 'desc' })).toEqual([last]);
  });

  it('refuses rows outside the range and malformed batches, storing nothing', async () => {
    const s = await fresh();
    await s.index(batch(0, 2, { rows: [row(0), row(1)] }));
    const bad: Array<[string, IndexBatch]> = [
      ['row past the end', batch(2, 4, { rows: [row(2), row(4)] })],
      ['row before the start', batch(2, 4, { rows: [row(1), row(2)] })],
      ['two rows at one index', batch(2, 4, { rows: [row(2), row(2)] })],
      ['to before from', batch(2, 1)],
      ['negative from', batch(-1, 4)],
      ['unsafe to', batch(2, 2 ** 53)],
      ['fractional index', batch(2, 4, { rows: [row(2.5)] })],
      ['short leaf hash', batch(2, 4, { rows: [row(2, { leafHash: new Uint8Array(31) })] })],
      ['run without agent', batch(2, 4, { rows: [row(2, { run: 'r' })] })],
      ['run.close without run', batch(2, 4, { rows: [row(2, { type: 'run.close', agent: 'a' })] })],
      ['unknown type', batch(2, 4, { rows: [row(2, { type: 'event.x' as EntryType })] })],
      ['negative seq', batch(2, 4, { rows: [ev(2, 'a', 'r', -1)] })],
      ['empty agent', batch(2, 4, { rows: [row(2, { agent: '' })] })],
      ['NUL in kind', batch(2, 4, { rows: [row(2, { kind: 'a\0b' })] })],
      ['NaN client time', batch(2, 4, { rows: [row(2, { clientTime: Number.NaN })] })],
      ['fractional log time', batch(2, 4, { rows: [row(2, { logTime: 1.5 })] })],
      ['key outside', batch(2, 4, { rows: [row(2)], keys: [{ agent: 'a', vkey: 'k', from: 1, until: null, endedBy: null }] })],
      ['key without its row', batch(2, 4, { rows: [row(2)], keys: [{ agent: 'a', vkey: 'k', from: 3, until: null, endedBy: null }] })],
      ['key until without endedBy', batch(2, 4, { rows: [row(2), row(3)], keys: [{ agent: 'a', vkey: 'k', from: 2, until: 3, endedBy: null }] })],
      ['key end outside', batch(2, 4, { rows: [row(2)], keyEnds: [{ agent: 'a', vkey: 'k', until: 4, endedBy: 'revoked' }] })],
      ['key end reason', batch(2, 4, { rows: [row(2)], keyEnds: [{ agent: 'a', vkey: 'k', until: 2, endedBy: 'lost' as 'revoked' }] })],
      ['payload outside', batch(2, 4, { rows: [row(2)], payloads: [payload(1, 'p')] })],
      ['payload without its row', batch(2, 4, { rows: [row(2)], payloads: [payload(3, 'p')] })],
      ['payload twice', batch(2, 4, { rows: [row(2)], payloads: [payload(2, 'p'), payload(2, 'p')] })],
      ['payload marked erased', batch(2, 4, { rows: [row(2)], payloads: [erased(payload(2, 'p'), 3)] })],
      ['empty commitment', batch(2, 4, { rows: [row(2)], payloads: [{ ...payload(2, 'p'), commitment: new Uint8Array(0) }] })],
      ['erasure by an entry outside', batch(2, 4, { rows: [row(2)], erasures: [{ index: 0, name: 'p', erasedBy: 5 }] })],
      ['erasure of a later entry', batch(2, 4, { rows: [row(2), row(3)], erasures: [{ index: 3, name: 'p', erasedBy: 2 }] })],
    ];
    for (const [what, b] of bad) {
      await expect(s.index(b), what).rejects.toBeInstanceOf(RangeError);
    }
    expect(await s.indexedSize()).toBe(2);
    expect(await all(s)).toEqual([row(0), row(1)]);
    expect(await s.allKeys()).toEqual([]);
    expect(await s.payloads([1, 2, 3])).toEqual([]);
    await s.index(batch(2, 4, { rows: [row(2), row(3)] }));
    expect(await s.indexedSize()).toBe(4);
  });

  it('keeps (agent, run, seq) unique among run entries, and finds them', async () => {
    const s = await fresh();
    await s.index(
      batch(0, 6, {
        rows: [
          ev(0, 'a', 'r', 0),
          ev(1, 'a', 'r', 1),
          row(2, { type: 'run.close', agent: 'a', run: 'r', seq: 2 }),
          ev(3, 'a', 'r2', 1),
          ev(4, 'b', 'r', 1),
          // Not a run entry: may carry the run and a seq already taken.
          row(5, { type: 'payload.erase', agent: 'a', run: 'r', seq: 1 }),
        ],
      })
    );
    for (const dup of [ev(6, 'a', 'r', 1), row(6, { type: 'run.close', agent: 'a', run: 'r', seq: 0 })]) {
      const p = s.index(batch(6, 7, { rows: [dup] }));
      await expect(p).rejects.toBeInstanceOf(ConflictError);
      await expect(p).rejects.not.toBeInstanceOf(IndexConflictError);
    }
    await expect(s.index(batch(6, 8, { rows: [ev(6, 'c', 'r', 4), ev(7, 'c', 'r', 4)] }))).rejects.toBeInstanceOf(ConflictError);
    expect(await s.indexedSize()).toBe(6);
    expect((await all(s)).map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5]);

    const found = await s.findRunEntries([
      { agent: 'a', run: 'r', seq: 1 },
      { agent: 'a', run: 'r', seq: 1 },
      { agent: 'a', run: 'r', seq: 9 },
      { agent: 'b', run: 'r', seq: 1 },
      { agent: 'a', run: 'r2', seq: 1 },
      { agent: 'a', run: 'r', seq: 2 },
    ]);
    expect(found).toEqual([ev(1, 'a', 'r', 1), row(2, { type: 'run.close', agent: 'a', run: 'r', seq: 2 }), ev(3, 'a', 'r2', 1), ev(4, 'b', 'r', 1)]);
    expect(await s.findRunEntries([])).toEqual([]);
    await s.index(batch(6, 7, { rows: [ev(6, 'a', 'r', 3)] }));
    expect(await s.indexedSize()).toBe(7);
  });

  it('orders a run by seq then index, and finds its close', async () => {
    const s = await fresh();
    await s.index(
      batch(0, 7, {
        rows: [
          ev(0, 'a', 'r', 5),
          ev(1, 'a', 'r', 2),
          row(2, { type: 'run.close', agent: 'a', run: 'r', seq: 9 }),
          row(3, { type: 'agent.revoke', agent: 'a', run: 'r' }),
          row(4, { type: 'payload.erase', agent: 'a', run: 'r', seq: 2 }),
          ev(5, 'a', 'other', 0),
          ev(6, 'b', 'r', 0),
        ],
      })
    );
    expect((await s.run('a', 'r')).map((r) => r.index)).toEqual([1, 4, 0, 2, 3]);
    expect(await s.run('a', 'r')).toContainEqual(ev(1, 'a', 'r', 2));
    expect(await s.runClose('a', 'r')).toBe(2);
    expect(await s.runClose('a', 'other')).toBeNull();
    expect(await s.runClose('b', 'r')).toBeNull();
    expect(await s.run('c', 'r')).toEqual([]);
  });

  it('records key periods and their ends in index order', async () => {
    const s = await fresh();
    await s.index(
      batch(0, 4, {
        rows: [row(0, { type: 'agent.register', agent: 'a' }), ev(1, 'a', 'r', 0), row(2, { type: 'agent.rotate', agent: 'a' }), row(3, { type: 'agent.register', agent: 'b' })],
        keys: [
          { agent: 'a', vkey: 'a-k1', from: 0, until: null, endedBy: null },
          { agent: 'a', vkey: 'a-k2', from: 2, until: null, endedBy: null },
          { agent: 'b', vkey: 'b-k1', from: 3, until: null, endedBy: null },
        ],
        keyEnds: [{ agent: 'a', vkey: 'a-k1', until: 2, endedBy: 'rotated' }],
      })
    );
    expect(await s.keys('a')).toEqual([
      { agent: 'a', vkey: 'a-k1', from: 0, until: 2, endedBy: 'rotated' },
      { agent: 'a', vkey: 'a-k2', from: 2, until: null, endedBy: null },
    ]);
    // Revoke a-k2, then register a-k1 again; rotate b-k1 to itself (an end and a start at one index).
    await s.index(
      batch(4, 7, {
        rows: [row(4, { type: 'agent.revoke', agent: 'a' }), row(5, { type: 'agent.register', agent: 'a' }), row(6, { type: 'agent.rotate', agent: 'b' })],
        keys: [
          { agent: 'b', vkey: 'b-k1', from: 6, until: null, endedBy: null },
          { agent: 'a', vkey: 'a-k1', from: 5, until: null, endedBy: null },
        ],
        keyEnds: [
          { agent: 'b', vkey: 'b-k1', until: 6, endedBy: 'rotated' },
          { agent: 'a', vkey: 'a-k2', until: 4, endedBy: 'revoked' },
        ],
      })
    );
    const a = [
      { agent: 'a', vkey: 'a-k1', from: 0, until: 2, endedBy: 'rotated' },
      { agent: 'a', vkey: 'a-k2', from: 2, until: 4, endedBy: 'revoked' },
      { agent: 'a', vkey: 'a-k1', from: 5, until: null, endedBy: null },
    ];
    const b = [
      { agent: 'b', vkey: 'b-k1', from: 3, until: 6, endedBy: 'rotated' },
      { agent: 'b', vkey: 'b-k1', from: 6, until: null, endedBy: null },
    ];
    expect(await s.keys('a')).toEqual(a);
    expect(await s.keys('b')).toEqual(b);
    expect(await s.allKeys()).toEqual([a[0], a[1], b[0], a[2], b[1]]);

    // An end without an open period, a second open period of one key: refused, nothing stored.
    await expect(
      s.index(batch(7, 8, { rows: [row(7, { type: 'agent.revoke', agent: 'a' })], keyEnds: [{ agent: 'a', vkey: 'a-k2', until: 7, endedBy: 'revoked' }] }))
    ).rejects.toBeInstanceOf(ConflictError);
    await expect(
      s.index(batch(7, 8, { rows: [row(7, { type: 'agent.revoke', agent: 'c' })], keyEnds: [{ agent: 'c', vkey: 'c-k', until: 7, endedBy: 'revoked' }] }))
    ).rejects.toBeInstanceOf(ConflictError);
    await expect(
      s.index(batch(7, 8, { rows: [row(7, { type: 'agent.register', agent: 'a' })], keys: [{ agent: 'a', vkey: 'a-k1', from: 7, until: null, endedBy: null }] }))
    ).rejects.toBeInstanceOf(ConflictError);
    expect(await s.indexedSize()).toBe(7);
    expect(await s.allKeys()).toEqual([a[0], a[1], b[0], a[2], b[1]]);

    // Registered and revoked within one batch.
    await s.index(
      batch(7, 10, {
        rows: [row(7, { type: 'agent.register', agent: 'c' }), ev(8, 'c', 'r', 0), row(9, { type: 'agent.revoke', agent: 'c' })],
        keys: [{ agent: 'c', vkey: 'c-k', from: 7, until: null, endedBy: null }],
        keyEnds: [{ agent: 'c', vkey: 'c-k', until: 9, endedBy: 'revoked' }],
      })
    );
    expect(await s.keys('c')).toEqual([{ agent: 'c', vkey: 'c-k', from: 7, until: 9, endedBy: 'revoked' }]);
  });

  it('erases salt and data, keeps the commitment, and never resurrects an erased payload', async () => {
    const s = await fresh();
    const p0 = payload(0, 'prompt');
    const o0 = payload(0, 'output');
    const x1 = payload(1, 'x');
    await s.index(batch(0, 2, { rows: [ev(0, 'a', 'r', 0), ev(1, 'a', 'r', 1)], payloads: [p0, o0, x1] }));
    expect(await s.payloads([1, 0, 1])).toEqual([o0, p0, x1]);

    // Erase prompt, and "late", whose payload is not stored yet.
    await s.index(
      batch(2, 3, {
        rows: [row(2, { type: 'payload.erase', agent: 'a' })],
        erasures: [
          { index: 0, name: 'prompt', erasedBy: 2 },
          { index: 1, name: 'late', erasedBy: 2 },
        ],
      })
    );
    expect(await s.payloads([0])).toEqual([o0, erased(p0, 2)]);
    // A second erasure keeps the first.
    await s.index(batch(3, 4, { rows: [row(3, { type: 'payload.erase', agent: 'a' })], erasures: [{ index: 0, name: 'prompt', erasedBy: 3 }] }));
    expect(await s.payloads([0])).toEqual([o0, erased(p0, 2)]);

    // putPayloads: a stored payload is never changed, an erased one never comes back.
    expect(await s.putPayloads([p0, { ...o0, data: utf8('changed') }])).toBe(0);
    expect(await s.payloads([0])).toEqual([o0, erased(p0, 2)]);
    const late = payload(1, 'late');
    const more = payload(1, 'more');
    expect(await s.putPayloads([late, more])).toBe(2);
    expect(await s.payloads([1])).toEqual([erased(late, 2), more, x1]);
    expect(await s.putPayloads([late, more])).toBe(0);
    expect(await s.putPayloads([])).toBe(0);
    // Not indexed yet, duplicates, marked erased: refused. Indexed but without an entry row: a conflict.
    await expect(s.putPayloads([payload(4, 'p')])).rejects.toBeInstanceOf(RangeError);
    await expect(s.putPayloads([payload(1, 'y'), payload(1, 'y')])).rejects.toBeInstanceOf(RangeError);
    await expect(s.putPayloads([erased(payload(1, 'y'), 2)])).rejects.toBeInstanceOf(RangeError);
    await s.index(batch(4, 6, { rows: [ev(4, 'a', 'r', 2)] }));
    await expect(s.putPayloads([payload(1, 'y'), payload(5, 'p')])).rejects.toBeInstanceOf(ConflictError);
    expect(await s.payloads([1, 5])).toEqual([erased(late, 2), more, x1]);

    // A payload and its erasure in one batch; an erasure of an index without an entry row.
    const q6 = payload(6, 'q');
    await s.index(batch(6, 8, { rows: [ev(6, 'a', 'r', 3), row(7, { type: 'payload.erase', agent: 'a' })], payloads: [q6], erasures: [{ index: 6, name: 'q', erasedBy: 7 }] }));
    expect(await s.payloads([6])).toEqual([erased(q6, 7)]);
    await expect(s.index(batch(8, 9, { rows: [row(8, { type: 'payload.erase' })], erasures: [{ index: 5, name: 'p', erasedBy: 8 }] }))).rejects.toBeInstanceOf(ConflictError);
    expect(await s.indexedSize()).toBe(8);
    // A payload without salt or data (commitment only) is stored as such.
    const bare = payload(4, 'bare', null);
    expect(await s.putPayloads([bare])).toBe(1);
    expect(await s.payloads([4])).toEqual([bare]);
  });

  it('creates, finds and revokes credentials', async () => {
    const s = await fresh();
    const op = await s.createCredential({ id: '0123456789abcdef', tokenHash: sha256('op'), kind: 'operator', agent: null, agents: [], runs: [], label: 'root' });
    expect(op).toMatchObject({ id: '0123456789abcdef', tokenHash: sha256('op'), kind: 'operator', agent: null, agents: [], runs: [], label: 'root', revokedAt: null });
    expect(op.createdAt).toBeInstanceOf(Date);
    const ag = await s.createCredential({ id: 'aaaa000000000001', tokenHash: sha256('agent'), kind: 'agent', agent: 'a', agents: [], runs: [], label: '' });
    const rd = await s.createCredential({ id: 'bbbb000000000002', tokenHash: sha256('reader'), kind: 'reader', agent: null, agents: ['a', 'b'], runs: ['c/r1', 'c/r 2'], label: 'auditor' });
    expect(rd.agents).toEqual(['a', 'b']);
    expect(rd.runs).toEqual(['c/r1', 'c/r 2']);
    expect(await s.credentialByHash(sha256('agent'))).toEqual(ag);
    expect(await s.credentialByHash(sha256('reader'))).toEqual(rd);
    expect(await s.credentialByHash(sha256('nobody'))).toBeNull();

    await expect(s.createCredential({ id: op.id, tokenHash: sha256('other'), kind: 'operator', agent: null, agents: [], runs: [], label: '' })).rejects.toBeInstanceOf(ConflictError);
    await expect(s.createCredential({ id: 'cccc', tokenHash: sha256('op'), kind: 'operator', agent: null, agents: [], runs: [], label: '' })).rejects.toBeInstanceOf(ConflictError);
    const bad: Array<Omit<CredentialRow, 'createdAt' | 'revokedAt'>> = [
      { id: 'x1', tokenHash: sha256('x1'), kind: 'agent', agent: null, agents: [], runs: [], label: '' },
      { id: 'x2', tokenHash: sha256('x2'), kind: 'operator', agent: 'a', agents: [], runs: [], label: '' },
      { id: 'x3', tokenHash: sha256('x3'), kind: 'agent', agent: 'a', agents: ['a'], runs: [], label: '' },
      { id: 'x4', tokenHash: new Uint8Array(31), kind: 'operator', agent: null, agents: [], runs: [], label: '' },
      { id: '', tokenHash: sha256('x5'), kind: 'operator', agent: null, agents: [], runs: [], label: '' },
      { id: 'x6', tokenHash: sha256('x6'), kind: 'admin' as 'operator', agent: null, agents: [], runs: [], label: '' },
      { id: 'x7', tokenHash: sha256('x7'), kind: 'reader', agent: null, agents: [''], runs: [], label: '' },
    ];
    for (const b of bad) await expect(s.createCredential(b), b.id).rejects.toBeInstanceOf(RangeError);
    expect(await s.credentials()).toEqual([op, ag, rd]);

    expect(await s.revokeCredential(ag.id)).toBe(true);
    expect(await s.revokeCredential(ag.id)).toBe(false);
    expect(await s.revokeCredential('unknown')).toBe(false);
    const revoked = await s.credentialByHash(sha256('agent'));
    expect(revoked).toMatchObject({ ...ag, revokedAt: expect.any(Date) });
    expect(revoked!.revokedAt!.getTime()).toBeGreaterThanOrEqual(ag.createdAt.getTime());
    expect(await s.credentials()).toEqual([op, revoked, rd]);
  });

  it('keeps everything across close and reopen', async () => {
    const s = await fresh();
    await s.index(
      batch(0, 3, {
        rows: [row(0, { type: 'agent.register', agent: 'a' }), ev(1, 'a', 'r', 0, { clientTime: 5 }), row(2, { type: 'run.close', agent: 'a', run: 'r', seq: 1 })],
        keys: [{ agent: 'a', vkey: 'a-k', from: 0, until: null, endedBy: null }],
        payloads: [payload(1, 'p'), payload(1, 'q')],
      })
    );
    await s.index(batch(3, 4, { rows: [row(3, { type: 'payload.erase', agent: 'a' })], erasures: [{ index: 1, name: 'q', erasedBy: 3 }, { index: 1, name: 'r', erasedBy: 3 }] }));
    const cred = await s.createCredential({ id: 'c1', tokenHash: sha256('c1'), kind: 'reader', agent: null, agents: [], runs: ['a/r'], label: 'l' });
    await s.revokeCredential('c1');
    const before = { rows: await all(s), keys: await s.allKeys(), payloads: await s.payloads([1]), creds: await s.credentials() };
    await closeAll();
    await handle!.restart();
    const again = await reopen();
    expect(await again.indexedSize()).toBe(4);
    expect(await all(again)).toEqual(before.rows);
    expect(await again.allKeys()).toEqual(before.keys);
    expect(await again.payloads([1])).toEqual(before.payloads);
    expect(await again.credentials()).toEqual(before.creds);
    expect((await again.credentialByHash(cred.tokenHash))?.revokedAt).toBeInstanceOf(Date);
    expect(await again.runClose('a', 'r')).toBe(2);
    // The tombstone survives too: the late payload comes back erased.
    expect(await again.putPayloads([payload(1, 'r')])).toBe(1);
    expect((await again.payloads([1])).find((p) => p.name === 'r')).toEqual(erased(payload(1, 'r'), 3));
    await expect(again.index(batch(3, 4, { rows: [row(3)] }))).rejects.toBeInstanceOf(IndexConflictError);
    await again.index(batch(4, 5, { rows: [row(4)] }));
  });

  it('lets exactly one of concurrent indexers of one range win', async () => {
    const s = await fresh();
    // On Postgres spread the callers over two pools (8 connections); PGlite has one session.
    const stores = factory.name === 'postgres' ? [s, await reopen()] : [s];
    for (const from of [0, 1]) {
      const attempts = Array.from({ length: 20 }, (_, k) => batch(from, from + 1, { rows: [ev(from, `agent${k}`, `r${from}`, 0)] }));
      const results = await Promise.allSettled(attempts.map((b, k) => stores[k % stores.length]!.index(b)));
      const won = results.flatMap((r, k) => (r.status === 'fulfilled' ? [k] : []));
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(IndexConflictError);
      expect(await s.indexedSize()).toBe(from + 1);
      expect(await s.query({ below: 10, after: from - 1, limit: 10 })).toEqual([attempts[won[0]!]!.rows[0]]);
    }
  });

  it("shares the log's connection and schema", async () => {
    handle = await factory.create();
    const { sql, options } = await handle.connect();
    const log = new PostgresLogStore(sql, { schema: options.schema, advisoryLock: false, singleSession: options.singleSession, ...(options.afterCommit ? { afterCommit: options.afterCommit } : {}) });
    const audit = new PostgresAuditStore(sql, options);
    try {
      await Promise.all([log.migrate(), audit.migrate()]);
      expect(await log.sequence([utf8('{"agent":"a"}')])).toBe(0);
      await audit.index(batch(0, 1, { rows: [ev(0, 'a', 'r', 0, { leafHash: leafHash(utf8('{"agent":"a"}')) })] }));
      await audit.close(); // does not own the connection
      expect((await log.state()).nextIndex).toBe(1);
      expect(await audit.indexedSize()).toBe(1);
      const tables = await sql`SELECT table_name FROM information_schema.tables WHERE table_schema = ${options.schema} ORDER BY table_name`;
      const names = tables.map((t) => t.table_name as string);
      expect(names.filter((n) => n.startsWith('audit_'))).toEqual(['audit_credentials', 'audit_entries', 'audit_erasures', 'audit_keys', 'audit_payloads', 'audit_state', 'audit_time_blocks']);
      expect(names).toContain('log_sequence');
    } finally {
      await log.close(); // ends the shared connection
    }
  });

  it('validates queries', async () => {
    const s = await fresh();
    await s.index(batch(0, 2, { rows: [ev(0, 'a', 'r', 0), row(1, { type: 'agent.revoke', agent: 'a' })] }));
    const bad: EntryQuery[] = [
      { below: 10, limit: 0 },
      { below: 10, limit: 1001 },
      { below: 10, limit: 1.5 },
      { below: -1, limit: 10 },
      { below: 1.5, limit: 10 },
      { below: 10, limit: 10, run: 'r' },
      { below: 10, limit: 10, agent: '' },
      { below: 10, limit: 10, types: ['event', 'nope' as EntryType] },
      { below: 10, limit: 10, order: 'up' as 'asc' },
      { below: 10, limit: 10, timeField: 'wall' as 'log' },
      { below: 10, limit: 10, since: Number.NaN },
      { below: 10, limit: 10, after: 0.5 },
    ];
    for (const q of bad) await expect(s.query(q), JSON.stringify(q)).rejects.toBeInstanceOf(RangeError);
    expect(await s.query({ below: 10, limit: 10, types: [] })).toEqual([]);
    expect(await s.query({ below: 10, limit: 1000, types: ['agent.revoke'] })).toEqual([row(1, { type: 'agent.revoke', agent: 'a' })]);
    expect(await s.query({ below: 10, limit: 1000, types: ['agent.revoke', 'event'], order: 'desc' })).toHaveLength(2);
    expect(await s.query({ below: 1, limit: 1000 })).toEqual([ev(0, 'a', 'r', 0)]);
    expect(await s.query({ below: 0, limit: 1000 })).toEqual([]);
    expect(await s.query({ below: 10, limit: 1000, after: -1 })).toHaveLength(2);
    expect(await s.query({ below: 10, limit: 1000, after: 0, order: 'desc' })).toEqual([]);
  });

  // ---- query correctness against a brute-force model ----------------------------------

  const AGENTS = ['a0', 'a1', 'a2'];
  const RUNS = ['r0', 'r1', 'r2'];
  const KINDS = ['k0', 'k1', 'k2'];
  const T = 60; // times are drawn from [0, T), bounds from [-2, T + 2]

  const specArb = fc.record({
    present: fc.integer({ min: 0, max: 9 }).map((n) => n > 0),
    type: fc.oneof({ weight: 6, arbitrary: fc.constant<EntryType>('event') }, { weight: 2, arbitrary: fc.constantFrom(...ENTRY_TYPES) }),
    agent: fc.option(fc.constantFrom(...AGENTS), { freq: 8 }),
    run: fc.option(fc.constantFrom(...RUNS), { freq: 3 }),
    seq: fc.option(fc.integer({ min: 0, max: 30 }), { freq: 6 }),
    kind: fc.option(fc.constantFrom(...KINDS), { freq: 4 }),
    clientTime: fc.option(fc.integer({ min: 0, max: T - 1 }), { freq: 6 }),
    logTime: fc.integer({ min: 0, max: T - 1 }),
  });
  type Spec = typeof specArb extends fc.Arbitrary<infer S> ? S : never;
  const datasetArb = fc.record({
    specs: fc.array(specArb, { minLength: 100, maxLength: 300 }),
    tail: fc.integer({ min: 0, max: 5 }),
    cuts: fc.uniqueArray(fc.integer({ min: 1, max: 305 }), { maxLength: 6 }),
    // Rows at indices slot * stride: spread over many of the store's 256-index time blocks.
    stride: fc.constantFrom(1, 3, 64, 257),
    // Times at random, or moving forward with jitter (as real clocks do, the case the
    // store's time bounds on idx are for).
    clock: fc.constantFrom<'random' | 'forward'>('random', 'forward'),
  });
  const opt = <T,>(a: fc.Arbitrary<T>, freq = 2) => fc.option(a, { freq, nil: undefined });
  const bound = fc.integer({ min: -2, max: T + 2 });
  const queryArb = fc.record({
    agent: opt(fc.constantFrom(...AGENTS, 'zz')),
    run: opt(fc.constantFrom(...RUNS)),
    kind: opt(fc.constantFrom(...KINDS, 'kz'), 3),
    types: opt(fc.oneof(fc.subarray([...ENTRY_TYPES], { minLength: 1 }), fc.constantFrom(...ENTRY_TYPES).map((t) => [t])), 3),
    since: opt(bound),
    until: opt(bound),
    timeField: opt(fc.constantFrom<'client' | 'log'>('client', 'log')),
    order: opt(fc.constantFrom<'asc' | 'desc'>('asc', 'desc')),
    after: opt(fc.oneof(fc.integer({ min: -1, max: 310 }), fc.integer({ min: -1, max: 3 })), 4),
    // Mostly anywhere, often at the edges (nothing, the first rows), sometimes past the end.
    below: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 320 }) }, fc.integer({ min: 0, max: 3 }), fc.constant(1_000_000)),
    limit: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 25 }) }, { weight: 1, arbitrary: fc.constant(1000) }),
    /** below and after are in slots; jitter places them inside a slot. */
    jitter: fc.nat(1000),
  });

  function buildRows(specs: ReadonlyArray<Spec>, stride: number, clock: 'random' | 'forward'): AuditRow[] {
    const used = new Map<string, Set<number>>();
    const rows: AuditRow[] = [];
    specs.forEach((sp, slot) => {
      if (!sp.present) return;
      const index = slot * stride;
      const now = Math.floor((slot * T) / specs.length);
      const clientTime = clock === 'random' || sp.clientTime === null ? sp.clientTime : now + (sp.clientTime % 7) - 3;
      const logTime = clock === 'random' ? sp.logTime : now + (sp.logTime % 3) - 1;
      const agent = sp.agent;
      const run = agent === null ? null : sp.run;
      const type: EntryType = sp.type === 'run.close' && run === null ? 'event' : sp.type;
      let seq = sp.seq;
      if ((type === 'event' || type === 'run.close') && run !== null && agent !== null && seq !== null) {
        // Unique per (agent, run) among run entries: bump past seqs taken.
        const key = `${agent}/${run}`;
        const taken = used.get(key) ?? new Set<number>();
        used.set(key, taken);
        while (taken.has(seq)) seq++;
        taken.add(seq);
      }
      rows.push({ index, type, agent, run, seq, kind: sp.kind, clientTime, logTime, leafHash: hashOf(`leaf ${index}`) });
    });
    return rows;
  }

  function bruteForce(rows: readonly AuditRow[], q: EntryQuery): AuditRow[] {
    const field = (r: AuditRow) => ((q.timeField ?? 'client') === 'log' ? r.logTime : r.clientTime);
    const desc = q.order === 'desc';
    return rows
      .filter(
        (r) =>
          r.index < q.below &&
          (q.agent === undefined || r.agent === q.agent) &&
          (q.run === undefined || r.run === q.run) &&
          (q.kind === undefined || r.kind === q.kind) &&
          (q.types === undefined || q.types.includes(r.type)) &&
          (q.since === undefined || (field(r) !== null && field(r)! >= q.since)) &&
          (q.until === undefined || (field(r) !== null && field(r)! < q.until)) &&
          (q.after === undefined || (desc ? r.index < q.after : r.index > q.after))
      )
      .sort((x, y) => (desc ? y.index - x.index : x.index - y.index));
  }

  it('answers random queries exactly like a brute-force filter and sort, page by page', async () => {
    let datasets = 0;
    let queries = 0;
    let pages = 0;
    await fc.assert(
      fc.asyncProperty(datasetArb, fc.array(queryArb, { minLength: 25, maxLength: 40 }), async (ds, qs) => {
        datasets++;
        const { stride } = ds;
        const rows = buildRows(ds.specs, stride, ds.clock);
        const size = (ds.specs.length + ds.tail) * stride;
        handle = await factory.create();
        const s = await reopen();
        try {
          // Index in batches split at the cuts, as the indexer would.
          const bounds = [0, ...ds.cuts.map((c) => c * stride - (c % stride)).filter((c) => c > 0 && c < size).sort((a, b) => a - b), size];
          for (let i = 0; i + 1 < bounds.length; i++) {
            const [from, to] = [bounds[i]!, bounds[i + 1]!];
            await s.index(batch(from, to, { rows: rows.filter((r) => r.index >= from && r.index < to) }));
          }
          expect(await s.indexedSize()).toBe(size);

          for (const { jitter, ...raw } of qs) {
            const at = (slot: number) => slot * stride + (jitter % stride);
            const q: EntryQuery = Object.fromEntries(
              Object.entries({
                ...raw,
                run: raw.agent === undefined ? undefined : raw.run,
                below: at(raw.below),
                after: raw.after === undefined ? undefined : at(raw.after),
              }).filter(([, v]) => v !== undefined)
            ) as unknown as EntryQuery;
            const want = bruteForce(rows, q);
            const got: AuditRow[] = [];
            let cursor = q.after;
            for (let n = 0; ; n++) {
              expect(n, 'pages').toBeLessThanOrEqual(rows.length + 1);
              const page = await s.query(cursor === undefined ? q : { ...q, after: cursor });
              pages++;
              expect(page.length).toBeLessThanOrEqual(q.limit);
              if (n === 0) expect(page).toEqual(want.slice(0, q.limit));
              got.push(...page);
              if (page.length < q.limit) break;
              cursor = page.at(-1)!.index;
            }
            expect(got).toEqual(want);
            queries++;
          }

          // Runs, closes and run entries against the model too.
          for (const agent of AGENTS) {
            for (const run of RUNS) {
              const mine = rows.filter((r) => r.agent === agent && r.run === run);
              const bySeq = [...mine].sort((x, y) => (x.seq ?? Infinity) - (y.seq ?? Infinity) || x.index - y.index);
              expect(await s.run(agent, run)).toEqual(bySeq);
              const close = mine.find((r) => r.type === 'run.close');
              expect(await s.runClose(agent, run)).toBe(close ? close.index : null);
            }
          }
          const keys = AGENTS.flatMap((agent) => RUNS.flatMap((run) => Array.from({ length: 40 }, (_, seq) => ({ agent, run, seq }))));
          const runEntries = rows.filter((r) => (r.type === 'event' || r.type === 'run.close') && r.run !== null && r.seq !== null && r.seq < 40);
          expect(await s.findRunEntries(keys)).toEqual(runEntries);
        } finally {
          await closeAll();
          await handle.destroy();
          handle = undefined;
        }
      }),
      { numRuns: Number(process.env.AUDIT_QUERY_RUNS ?? 20) }
    );
    expect(queries).toBeGreaterThan(datasets * 20);
    expect(pages).toBeGreaterThan(queries);
  });
}

describe.each(auditStoreFactories())('AuditStore on $name', suite);
