/**
 * @module
 * Auditing one agent run from its logged entries (spec/agent-entries.md §7). Signatures
 * are not checked here; pair this with verifyEntrySignature and KeyHistory.
 */
import { equalBytes } from '../core/encoding.js';
import type { RunEntry } from './entry.js';

/** One thing wrong with a run. */
export interface RunFinding {
  readonly kind: 'gap' | 'fork' | 'broken-link' | 'not-closed' | 'after-close' | 'bad-close';
  /** The seq concerned: the first missing one for a gap. */
  readonly seq?: number;
  /** Log indices of the entries concerned. */
  readonly indices?: readonly number[];
  readonly message: string;
}

/** An entry of the run as logged. */
export interface LoggedRunEntry {
  readonly index: number;
  readonly leafHash: Uint8Array;
  readonly entry: RunEntry;
}

/**
 * Audits one run from its logged entries (any order) and reports:
 *
 * - `fork`: two or more events with one seq (one finding per seq);
 * - `gap`: seqs missing below the highest seq seen or the close's count (one finding per
 *   missing range, `seq` its first);
 * - `broken-link`: an event whose `prev` is not the leaf hash of any logged event at
 *   seq − 1 (not checked when seq − 1 is missing, which is a gap), or whose `parent` is
 *   not below its seq;
 * - `after-close`: an event logged at an index after the (first) close;
 * - `bad-close`: a second close; a close whose `prev` is not the leaf hash of the event at
 *   seq − 1; an event logged before the close with a seq at or beyond the close's count;
 * - `not-closed`: no close at all (normal for a run still going on).
 *
 * An empty list gives no findings. `count` is the number of events (forks included);
 * `closed` whether a run.close was logged.
 *
 * @throws {RangeError} If the entries are not all of one agent and run.
 */
export function auditRun(entries: ReadonlyArray<LoggedRunEntry>): {
  readonly findings: RunFinding[];
  readonly closed: boolean;
  readonly count: number;
} {
  const findings: RunFinding[] = [];
  const first = entries[0];
  if (first === undefined) return { findings, closed: false, count: 0 };
  const { agent, run } = first.entry;
  for (const e of entries) {
    if (e.entry.agent !== agent || e.entry.run !== run) {
      throw new RangeError(`auditRun: entries of more than one run (${agent}/${run} and ${e.entry.agent}/${e.entry.run})`);
    }
  }
  const sorted = [...entries].sort((a, b) => a.index - b.index);
  const events = sorted.filter((e) => e.entry.type === 'event');
  const closes = sorted.filter((e) => e.entry.type === 'run.close');

  const bySeq = new Map<number, LoggedRunEntry[]>();
  for (const e of events) {
    const list = bySeq.get(e.entry.seq);
    if (list === undefined) bySeq.set(e.entry.seq, [e]);
    else list.push(e);
  }
  const seqs = [...bySeq.keys()].sort((a, b) => a - b);

  // Forks.
  for (const seq of seqs) {
    const list = bySeq.get(seq)!;
    if (list.length < 2) continue;
    const same = list.every((e) => equalBytes(e.leafHash, list[0]!.leafHash));
    findings.push({
      kind: 'fork',
      seq,
      indices: list.map((e) => e.index),
      message: same
        ? `seq ${seq}: the same entry logged ${list.length} times`
        : `seq ${seq}: ${list.length} different entries`,
    });
  }

  // Gaps, up to the highest seq seen or the close's count, whichever is larger.
  const close = closes[0];
  const end = Math.max((seqs.at(-1) ?? -1) + 1, close?.entry.seq ?? 0);
  let expect = 0;
  for (const seq of [...seqs, end]) {
    if (seq > expect) {
      findings.push({
        kind: 'gap',
        seq: expect,
        message: seq - 1 === expect ? `seq ${expect} is missing` : `seq ${expect} to ${seq - 1} are missing`,
      });
    }
    expect = Math.max(expect, seq + 1);
  }

  // Links.
  for (const e of events) {
    const { seq, prev } = e.entry;
    const parent = e.entry.type === 'event' ? e.entry.parent : undefined;
    const link = (message: string) => findings.push({ kind: 'broken-link', seq, indices: [e.index], message });
    if (parent !== undefined && parent >= seq) link(`seq ${seq}: parent ${parent} is not before it`);
    if (seq === 0) {
      if (prev !== undefined) link('seq 0: has a prev');
      continue;
    }
    if (prev === undefined) {
      link(`seq ${seq}: no prev`);
      continue;
    }
    const before = bySeq.get(seq - 1);
    if (before !== undefined && !before.some((p) => equalBytes(p.leafHash, prev))) {
      link(`seq ${seq}: prev is not the leaf hash of the entry at seq ${seq - 1}`);
    }
  }

  // The close.
  if (close === undefined) {
    findings.push({ kind: 'not-closed', message: `the run was never closed (${events.length} events)` });
    return { findings, closed: false, count: events.length };
  }
  for (const c of closes.slice(1)) {
    findings.push({
      kind: 'bad-close',
      seq: c.entry.seq,
      indices: [close.index, c.index],
      message: `closed again at index ${c.index} (first closed at index ${close.index})`,
    });
  }
  const n = close.entry.seq;
  for (const e of events) {
    if (e.index > close.index) {
      findings.push({
        kind: 'after-close',
        seq: e.entry.seq,
        indices: [e.index],
        message: `seq ${e.entry.seq} logged at index ${e.index}, after the close at index ${close.index}`,
      });
    } else if (e.entry.seq >= n) {
      findings.push({
        kind: 'bad-close',
        seq: e.entry.seq,
        indices: [close.index, e.index],
        message: `the close at index ${close.index} counts ${n} entries, but seq ${e.entry.seq} was logged before it`,
      });
    }
  }
  const prev = close.entry.prev;
  const closeFinding = (message: string) =>
    findings.push({ kind: 'bad-close', seq: n, indices: [close.index], message });
  if (n === 0) {
    if (prev !== undefined) closeFinding('the close counts 0 entries but has a prev');
  } else if (prev === undefined) {
    closeFinding(`the close counts ${n} entries but has no prev`);
  } else {
    const last = bySeq.get(n - 1);
    if (last !== undefined && !last.some((p) => equalBytes(p.leafHash, prev))) {
      closeFinding(`the close's prev is not the leaf hash of the entry at seq ${n - 1}`);
    }
  }
  return { findings, closed: true, count: events.length };
}
