import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { leafHash } from '../../src/core/hash.js';
import { auditRun, encodeEntry, type LoggedRunEntry, type RunEntry, type RunFinding } from '../../src/entry/index.js';
import { numRuns } from './helpers.js';

const AGENT = 'agent-1';
const RUN = 'run-1';

/** Leaf hashes stand in for envelope hashes: any injective function of the entry will do. */
function logged(index: number, entry: RunEntry): LoggedRunEntry {
  return { index, entry, leafHash: leafHash(encodeEntry(entry)) };
}

function event(seq: number, prev: Uint8Array | undefined, extra: Partial<RunEntry> = {}): RunEntry {
  return {
    type: 'event',
    agent: AGENT,
    run: RUN,
    seq,
    ...(prev && { prev }),
    ...(seq > 0 && { parent: seq - 1 }),
    kind: 'decision',
    time: 1000 + seq,
    ...extra,
  } as RunEntry;
}

/** A clean run of `n` events at indices 10, 12, 14, …, closed after them unless `close` is false. */
function cleanRun(n: number, close = true): LoggedRunEntry[] {
  const out: LoggedRunEntry[] = [];
  let prev: Uint8Array | undefined;
  for (let seq = 0; seq < n; seq++) {
    const l = logged(10 + 2 * seq, event(seq, prev));
    out.push(l);
    prev = l.leafHash;
  }
  if (close) out.push(logged(10 + 2 * n, { type: 'run.close', agent: AGENT, run: RUN, seq: n, ...(prev && { prev }), time: 5000 }));
  return out;
}

const kinds = (f: RunFinding[]) => f.map((x) => x.kind);

describe('auditRun', () => {
  it('finds nothing on a clean closed run, in any order (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), fc.integer(), (n, seed) => {
        const run = cleanRun(n);
        const shuffled = [...run].sort((a, b) => ((a.index * 7919 + seed) % 13) - ((b.index * 7919 + seed) % 13));
        const r = auditRun(shuffled);
        expect(r.findings).toEqual([]);
        expect(r.closed).toBe(true);
        expect(r.count).toBe(n);
      }),
      { numRuns }
    );
  });

  it('reports an empty list as nothing', () => {
    expect(auditRun([])).toEqual({ findings: [], closed: false, count: 0 });
  });

  it('not-closed: a run without run.close', () => {
    const r = auditRun(cleanRun(3, false));
    expect(kinds(r.findings)).toEqual(['not-closed']);
    expect(r.closed).toBe(false);
    expect(r.count).toBe(3);
  });

  it('gap: missing seqs, one finding per range', () => {
    const run = cleanRun(8);
    const r = auditRun(run.filter((e) => e.entry.seq !== 2 && !(e.entry.type === 'event' && e.entry.seq >= 4 && e.entry.seq <= 6)));
    expect(r.findings).toEqual([
      { kind: 'gap', seq: 2, message: 'seq 2 is missing' },
      { kind: 'gap', seq: 4, message: 'seq 4 to 6 are missing' },
    ]);
  });

  it('gap: entries the close counts but the log does not hold', () => {
    const run = cleanRun(5);
    const r = auditRun(run.filter((e) => !(e.entry.type === 'event' && e.entry.seq >= 3)));
    expect(r.findings).toEqual([{ kind: 'gap', seq: 3, message: 'seq 3 to 4 are missing' }]);
  });

  it('fork: two different entries with one seq', () => {
    const run = cleanRun(4);
    const fork = logged(100, event(2, run[1]!.leafHash, { time: 7 }));
    const r = auditRun([...run, fork]);
    // Before the close in seq, but logged after it: also after-close.
    expect(kinds(r.findings)).toEqual(['fork', 'after-close']);
    expect(r.findings[0]).toMatchObject({ kind: 'fork', seq: 2, indices: [14, 100] });
    expect(r.findings[0]!.message).toMatch(/2 different entries/);
  });

  it('fork: the same entry logged twice is reported as such', () => {
    const run = cleanRun(3, false);
    const r = auditRun([...run, { ...run[1]!, index: 13 }]);
    expect(r.findings[0]).toMatchObject({ kind: 'fork', seq: 1, indices: [12, 13] });
    expect(r.findings[0]!.message).toMatch(/same entry logged 2 times/);
  });

  it('broken-link: prev is not the leaf hash of the entry at seq - 1', () => {
    const run = cleanRun(4);
    run[2] = logged(14, event(2, new Uint8Array(32)));
    // The entry at seq 3 links to the original seq 2, which is no longer there.
    const r = auditRun(run);
    expect(kinds(r.findings)).toEqual(['broken-link', 'broken-link']);
    expect(r.findings.map((f) => f.seq)).toEqual([2, 3]);
    expect(r.findings[0]!.indices).toEqual([14]);
  });

  it('broken-link: parent not before seq, and prev where it must not be (unvalidated input)', () => {
    const run = cleanRun(3);
    run[1] = { ...run[1]!, entry: { ...run[1]!.entry, parent: 1 } as RunEntry };
    run[0] = { ...run[0]!, entry: { ...run[0]!.entry, prev: new Uint8Array(32) } };
    const f = auditRun(run).findings;
    expect(f.filter((x) => x.kind === 'broken-link').map((x) => x.message)).toEqual(
      expect.arrayContaining(['seq 1: parent 1 is not before it', 'seq 0: has a prev'])
    );
  });

  it('after-close: an event logged after the close', () => {
    const run = cleanRun(3);
    const late = logged(99, event(3, run[2]!.leafHash));
    const r = auditRun([...run, late]);
    expect(r.findings).toEqual([
      { kind: 'after-close', seq: 3, indices: [99], message: 'seq 3 logged at index 99, after the close at index 16' },
    ]);
  });

  it('bad-close: prev that is not the last entry’s leaf hash', () => {
    const run = cleanRun(3);
    run[3] = logged(16, { type: 'run.close', agent: AGENT, run: RUN, seq: 3, prev: run[1]!.leafHash, time: 1 });
    expect(auditRun(run).findings).toEqual([
      { kind: 'bad-close', seq: 3, indices: [16], message: "the close's prev is not the leaf hash of the entry at seq 2" },
    ]);
  });

  it('bad-close: a close that counts fewer entries than were logged before it', () => {
    const run = cleanRun(4);
    const close = logged(9999, { type: 'run.close', agent: AGENT, run: RUN, seq: 2, prev: run[1]!.leafHash, time: 1 });
    const r = auditRun([...run.slice(0, 4), close]);
    expect(r.findings.map((f) => [f.kind, f.seq])).toEqual([
      ['bad-close', 2],
      ['bad-close', 3],
    ]);
  });

  it('bad-close: closed twice', () => {
    const run = cleanRun(2);
    const again = { ...run[2]!, index: 50 };
    const r = auditRun([...run, again]);
    expect(r.findings).toEqual([
      { kind: 'bad-close', seq: 2, indices: [14, 50], message: 'closed again at index 50 (first closed at index 14)' },
    ]);
  });

  it('a close of an empty run is clean', () => {
    const r = auditRun([logged(3, { type: 'run.close', agent: AGENT, run: RUN, seq: 0, time: 0 })]);
    expect(r).toEqual({ findings: [], closed: true, count: 0 });
  });

  it('refuses entries of more than one run', () => {
    const run = cleanRun(2);
    const other = logged(90, { ...(run[0]!.entry as RunEntry), run: 'run-2' } as RunEntry);
    expect(() => auditRun([...run, other])).toThrow(RangeError);
  });

  it('finds a removed entry, a swapped entry or a truncated tail in any clean run (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 12 }), fc.nat(), (n, pick) => {
        const run = cleanRun(n);
        const i = pick % n; // an event
        // Removing any event leaves a gap.
        expect(kinds(auditRun(run.filter((_, j) => j !== i)).findings)).toContain('gap');
        // Replacing any event with a different one breaks a link (or the close's prev).
        const swapped = [...run];
        swapped[i] = logged(run[i]!.index, { ...(run[i]!.entry as RunEntry), time: 1 } as RunEntry);
        const k = kinds(auditRun(swapped).findings);
        expect(k.includes('broken-link') || k.includes('bad-close')).toBe(true);
        // Dropping the close: not closed.
        expect(kinds(auditRun(run.slice(0, n)).findings)).toEqual(['not-closed']);
      }),
      { numRuns }
    );
  });
});
