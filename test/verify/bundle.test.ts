/**
 * Evidence bundles (src/verify/bundle.ts, spec/evidence-bundle.md), on logs built in memory
 * (real Ed25519 keys, real RFC 6962 trees, signed and cosigned checkpoints), so any entry
 * the server would refuse (a rotated-out key, a forged registry) can be written:
 *
 * - the format: canonical layout, round trip, every malformation named;
 * - verification: round trips with the log key and with a policy, payload statuses, key
 *   periods, time windows;
 * - every kind of tampering detected with a message naming the item and what failed;
 * - properties: any single byte change of a bundle fails (outside the unauthenticated
 *   filter), random logs export to bundles that verify with the right statuses, removing
 *   an entry inside a run fails, and nothing but MalformedError/VerificationError escapes.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatCheckpoint } from '../../src/core/checkpoint.js';
import { utf8 } from '../../src/core/encoding.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { leafHash } from '../../src/core/hash.js';
import { memoryNodeReader, proveInclusion, rootHash } from '../../src/core/tree.js';
import { decodeEnvelope, signEntry, type Entry, type SignedEntry } from '../../src/entry/index.js';
import { newCosigner } from '../../src/note/cosignature.js';
import { ALG_COSIGNATURE_V1, ALG_ED25519, generateKey } from '../../src/note/keys.js';
import { formatNote, newSigner, parseNote, signNote } from '../../src/note/note.js';
import {
  EVIDENCE_BUNDLE_FORMAT,
  formatEvidenceBundle,
  parseEvidenceBundle,
  verifyEvidenceBundle,
  type BundleEntry,
  type BundleItem,
  type EvidenceBundle,
  type EvidenceFilter,
  type OpenedPayload,
  type VerifiedEvidenceBundle,
} from '../../src/verify/bundle.js';
import { parsePolicy } from '../../src/verify/policy.js';
import { TestAgent, type ClientEntry, type EventFields } from '../helpers/audit.js';

const numRuns = Number(process.env['FC_NUM_RUNS'] ?? 200);
const T0 = 1_750_000_000_000;
const seeded = (n: number) => (len: number) => new Uint8Array(len).fill(n);

/**
 * A log in memory: envelopes appended in order, the registry and erasures signed with the
 * log key, agent entries signed by TestAgents, and the payload openings kept beside.
 */
class MemLog {
  readonly key: { skey: string; vkey: string };
  readonly envelopes: Uint8Array[] = [];
  readonly entries: Entry[] = [];
  readonly openings = new Map<number, Record<string, OpenedPayload>>();

  constructor(readonly origin = 'bundle.test/log') {
    this.key = generateKey(origin, ALG_ED25519, seeded(1));
  }

  get size(): number {
    return this.envelopes.length;
  }

  append(s: SignedEntry, openings: Record<string, OpenedPayload> = {}): number {
    const i = this.envelopes.length;
    this.envelopes.push(s.bytes);
    this.entries.push(s.entry);
    if (Object.keys(openings).length > 0) this.openings.set(i, openings);
    return i;
  }

  /** An entry signed by the log key (registry, erasure). */
  byLog(e: Entry): number {
    return this.append(signEntry(e, this.key.skey));
  }

  register(a: TestAgent): number {
    return this.byLog({ type: 'agent.register', agent: a.id, key: a.key.vkey, time: T0 });
  }

  /** Rotates the agent to a new key (the TestAgent signs with it from now on). */
  rotate(a: TestAgent): number {
    a.key = a.newKey();
    return this.byLog({ type: 'agent.rotate', agent: a.id, key: a.key.vkey, time: T0 });
  }

  revoke(a: TestAgent): number {
    return this.byLog({ type: 'agent.revoke', agent: a.id, key: a.key.vkey, reason: 'compromised', time: T0 });
  }

  erase(index: number, name: string): number {
    return this.byLog({ type: 'payload.erase', index, name, reason: 'GDPR request', time: T0 });
  }

  write(e: ClientEntry): number {
    return this.append(e.signed, Object.fromEntries(Object.entries(e.payloads).map(([n, p]) => [n, { salt: p.salt, data: p.data }])));
  }

  event(a: TestAgent, run: string, f: EventFields = {}, skey?: string): number {
    return this.write(a.event(run, { time: T0, ...f }, skey));
  }

  close(a: TestAgent, run: string, time = T0): number {
    return this.write(a.close(run, { time }));
  }

  private reader(size: number) {
    return memoryNodeReader(this.envelopes.slice(0, size).map((e) => leafHash(e)));
  }

  /** The checkpoint of `size` signed by the log, with cosignatures by `cosigners`. */
  note(size = this.size, cosigners: readonly string[] = []): string {
    const text = formatCheckpoint({ origin: this.origin, treeSize: size, rootHash: rootHash(size, this.reader(size)), extensions: [] });
    const signed = signNote(text, [newSigner(this.key.skey)]);
    if (cosigners.length === 0) return signed;
    const { signatures } = parseNote(signed);
    return formatNote(text, [...signatures, ...cosigners.map((sk) => newCosigner(sk).cosign(text, 1_800_000_000))]);
  }

  item(index: number, size = this.size): BundleItem {
    return { index, envelope: this.envelopes[index]!, proof: proveInclusion(index, size, this.reader(size)) };
  }

  /** The indices of the entries matching `pred`. */
  where(pred: (e: Entry, i: number) => boolean): number[] {
    return this.entries.flatMap((e, i) => (pred(e, i) ? [i] : []));
  }

  /**
   * The honest bundle for a filter: the matching run entries, the registry of their agents
   * (and the filter's), the erasures naming them; every payload opened unless erased or in
   * `withhold` ("<index> <name>").
   */
  bundle(filter: EvidenceFilter = {}, o: { withhold?: ReadonlySet<string>; size?: number; note?: string } = {}): EvidenceBundle {
    const size = o.size ?? this.size;
    const inWindow = (t: number) => (filter.since === undefined || t >= filter.since) && (filter.until === undefined || t < filter.until);
    const selected = this.where(
      (e, i) => i < size && (e.type === 'event' || e.type === 'run.close') && (filter.agent === undefined || e.agent === filter.agent) && (filter.run === undefined || e.run === filter.run) && inWindow(e.time)
    );
    const agents = new Set(selected.map((i) => (this.entries[i] as { agent: string }).agent));
    if (filter.agent !== undefined) agents.add(filter.agent);
    const registry = this.where((e, i) => i < size && (e.type === 'agent.register' || e.type === 'agent.rotate' || e.type === 'agent.revoke') && agents.has(e.agent));
    const erasures = this.where((e, i) => i < size && e.type === 'payload.erase' && selected.includes(e.index));
    const erased = new Set(erasures.map((i) => {
      const e = this.entries[i] as { index: number; name: string };
      return `${e.index} ${e.name}`;
    }));
    const entries = selected.map((i): BundleEntry => {
      const open = Object.entries(this.openings.get(i) ?? {}).filter(([n]) => !erased.has(`${i} ${n}`) && !o.withhold?.has(`${i} ${n}`));
      return open.length === 0 ? this.item(i, size) : { ...this.item(i, size), payloads: Object.fromEntries(open) };
    });
    return {
      origin: this.origin,
      checkpoint: o.note ?? this.note(size),
      filter,
      entries,
      registry: registry.map((i) => this.item(i, size)),
      erasures: erasures.map((i) => this.item(i, size)),
    };
  }
}

/**
 * The standard log:
 *   0 register a1, 1 register a2, 2 a1/r1#0 {prompt, output}, 3 a2/r1#0 {p},
 *   4 a1/r1#1 {args}, 5 a1/r1#2, 6 a2/r1#1, 7 a1/r1 close 3, 8 rotate a1,
 *   9 a1/r2#0 {q}, 10 a1/r2#1, 11 erase 2 prompt, 12 register a3, 13 a3/x#0
 */
function standardLog(): { log: MemLog; a1: TestAgent; a2: TestAgent; a3: TestAgent; k1: { skey: string; vkey: string } } {
  const log = new MemLog();
  const a1 = new TestAgent('a1', generateKey('a1', ALG_ED25519, seeded(11)));
  const a2 = new TestAgent('a2', generateKey('a2', ALG_ED25519, seeded(12)));
  const a3 = new TestAgent('a3', generateKey('a3', ALG_ED25519, seeded(13)));
  const k1 = a1.key;
  log.register(a1);
  log.register(a2);
  log.event(a1, 'r1', { time: T0, payloads: { prompt: 'Refund order 1234?', output: 'Policy R-7 allows it' } });
  log.event(a2, 'r1', { time: T0 + 1, payloads: { p: 'secret of a2' } });
  log.event(a1, 'r1', { time: T0 + 2, payloads: { args: '{"order":1234}' } });
  log.event(a1, 'r1', { time: T0 + 3 });
  log.event(a2, 'r1', { time: T0 + 4 });
  log.close(a1, 'r1', T0 + 5);
  log.rotate(a1);
  log.event(a1, 'r2', { time: T0 + 6, payloads: { q: 'after the rotation' } });
  log.event(a1, 'r2', { time: T0 + 7 });
  log.erase(2, 'prompt');
  log.register(a3);
  log.event(a3, 'x', { time: T0 + 8 });
  return { log, a1, a2, a3, k1 };
}

const std = standardLog();
const TRUST = { logKey: std.log.key.vkey };
const W = [1, 2, 3].map((n) => generateKey(`w${n}.bundle.test/w`, ALG_COSIGNATURE_V1, seeded(40 + n)));
const POLICY = parsePolicy(`log ${std.log.key.vkey}\n${W.map((w, i) => `witness W${i + 1} ${w.vkey}\n`).join('')}group two 2 W1 W2 W3\nquorum two\n`);
const ALL_WITNESSES = parsePolicy(`log ${std.log.key.vkey}\n${W.map((w, i) => `witness W${i + 1} ${w.vkey}\n`).join('')}group all3 all W1 W2 W3\nquorum all3\n`);

const text = (b: EvidenceBundle) => formatEvidenceBundle(b);
const verifyB = (b: EvidenceBundle | string, trust: Parameters<typeof verifyEvidenceBundle>[1] = TRUST) =>
  verifyEvidenceBundle(typeof b === 'string' ? b : text(b), trust);

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

/** Expects verification of `b` to fail with `type` and a message matching every pattern. */
function fails(b: EvidenceBundle | string, type: typeof VerificationError | typeof MalformedError, ...patterns: RegExp[]): string {
  const e = thrown(() => verifyB(b));
  expect(e).toBeInstanceOf(type);
  for (const p of patterns) expect(e.message).toMatch(p);
  return e.message;
}

function flipBit(b: Uint8Array, at: number, bit = 0): Uint8Array {
  const c = Uint8Array.from(b);
  c[at]! ^= 1 << bit;
  return c;
}

const withEntries = (b: EvidenceBundle, entries: BundleEntry[]): EvidenceBundle => ({ ...b, entries });
const statuses = (v: VerifiedEvidenceBundle) =>
  Object.fromEntries(v.entries.map((e) => [e.index, Object.fromEntries(Object.entries(e.payloads).map(([n, p]) => [n, p.status === 'erased' ? `erased@${p.erasedAt}` : p.status]))]));

describe('the file format', () => {
  it('formats in the canonical layout and parses back to the same bundle', () => {
    const b = std.log.bundle({ agent: 'a1' });
    const t = text(b);
    expect(t.startsWith(`{"format":"${EVIDENCE_BUNDLE_FORMAT}",\n"origin":"bundle.test/log",\n"checkpoint":"bundle.test/log\\n14\\n`)).toBe(true);
    expect(t).toMatch(/\n"filter":\{"agent":"a1"\},\n"entries":\[\n\{"index":2,"envelope":"[A-Za-z0-9+/=]+","proof":\["/);
    expect(t).toMatch(/,"payloads":\{"output":\{"salt":"[A-Za-z0-9+/=]{44}","data":"[A-Za-z0-9+/=]+"\}\}\},\n/);
    expect(t.endsWith('\n]\n}\n')).toBe(true);
    const p = parseEvidenceBundle(t);
    expect(text(p)).toBe(t);
    expect(p.entries.map((e) => e.index)).toEqual([2, 4, 5, 7, 9, 10]);
    expect(p.registry.map((e) => e.index)).toEqual([0, 8]);
    expect(p.erasures.map((e) => e.index)).toEqual([11]);
    const empty = text({ ...b, entries: [], registry: [], erasures: [], filter: {} });
    expect(empty).toMatch(/\n"filter":\{\},\n"entries":\[\],\n"registry":\[\],\n"erasures":\[\]\n\}\n$/);
    expect(text(parseEvidenceBundle(empty))).toBe(empty);
  });

  it('writes payload names sorted and the filter fields in a fixed order', () => {
    const b = std.log.bundle({ agent: 'a1', run: 'r1', since: 5, until: T0 * 2 });
    expect(text(b)).toContain(`"filter":{"agent":"a1","run":"r1","since":5,"until":${T0 * 2}}`);
    const e = b.entries[0]!;
    const reversed = { ...e, payloads: Object.fromEntries(Object.entries(e.payloads!).reverse()) };
    expect(text(withEntries(b, [reversed, ...b.entries.slice(1)]))).toBe(text(b));
  });

  it('refuses anything but the canonical layout, naming where it differs', () => {
    const t = text(std.log.bundle({ agent: 'a2' }));
    const pretty = JSON.stringify(JSON.parse(t), null, 2);
    expect(() => parseEvidenceBundle(pretty)).toThrow(/not in the canonical layout \(differs from it at line 1, column 2\)/);
    expect(() => parseEvidenceBundle(t.slice(0, -1))).toThrow(/canonical layout/);
    expect(() => parseEvidenceBundle(t + '\n')).toThrow(/canonical layout/);
    expect(() => parseEvidenceBundle('\ufeff' + t)).toThrow(MalformedError);
    // A field written twice parses (JSON.parse keeps the last) but is not canonical.
    const twice = t.replace('"filter":{"agent":"a2"}', '"filter":{"agent":"a1","agent":"a2"}');
    expect(() => parseEvidenceBundle(twice)).toThrow(/canonical layout/);
    // Numbers: 1.0, 1e0, -0 parse as integers but are not the canonical spelling.
    for (const n of ['3.0', '3e0', '03']) {
      expect(() => parseEvidenceBundle(t.replace('{"index":3,', `{"index":${n},`))).toThrow(MalformedError);
    }
  });

  it('names every malformation', () => {
    const b = std.log.bundle({ agent: 'a1' });
    const t = text(b);
    const j = () => JSON.parse(t) as Record<string, any>;
    const bad = (o: unknown, re: RegExp) => expect(() => parseEvidenceBundle(typeof o === 'string' ? o : JSON.stringify(o))).toThrow(re);
    bad('{', /evidence bundle: not valid JSON/);
    bad('[]', /evidence bundle: expected an object/);
    bad({ ...j(), extra: 1 }, /evidence bundle: unknown field "extra"/);
    const { erasures: _e, ...noErasures } = j();
    bad(noErasures, /missing field "erasures"/);
    bad({ ...j(), format: 'glasslog/evidence-bundle@v2' }, /format "glasslog\/evidence-bundle@v2" is not/);
    bad({ ...j(), origin: 7 }, /origin: expected a string/);
    bad({ ...j(), filter: { agent: 'a 1' } }, /filter.agent: not an agent id/);
    bad({ ...j(), filter: { run: 'r1' } }, /filter.run: a run filter needs an agent/);
    bad({ ...j(), filter: { since: -1 } }, /filter.since: expected a safe non-negative integer/);
    bad({ ...j(), filter: { until: 2 ** 53 } }, /filter.until: expected a safe non-negative integer/);
    bad({ ...j(), filter: { kind: 'x' } }, /filter: unknown field "kind"/);
    const e0 = () => j().entries[0];
    bad({ ...j(), entries: [{ ...e0(), index: 1.5 }] }, /entries\[0\].index: expected a safe non-negative integer/);
    bad({ ...j(), entries: [{ ...e0(), envelope: 'AAA' }] }, /entries\[0\].envelope: invalid base64/);
    bad({ ...j(), entries: [{ ...e0(), envelope: '' }] }, /entries\[0\].envelope: empty/);
    bad({ ...j(), entries: [{ ...e0(), proof: ['AAAA'] }] }, /entries\[0\].proof\[0\]: 3 bytes, want 32/);
    bad({ ...j(), entries: [{ ...e0(), proof: 'x' }] }, /entries\[0\].proof: expected an array/);
    bad({ ...j(), entries: [{ ...e0(), leafHash: 'x' }] }, /entries\[0\]: unknown field "leafHash"/);
    bad({ ...j(), entries: [{ ...e0(), payloads: {} }] }, /entries\[0\].payloads: empty \(leave the field out\)/);
    bad({ ...j(), entries: [{ ...e0(), payloads: { 'a b': { salt: '', data: '' } } }] }, /payloads: "a b" is not a payload name/);
    bad({ ...j(), entries: [{ ...e0(), payloads: { output: { salt: 'AAAA', data: '' } } }] }, /payloads.output.salt: 3 bytes, want 32/);
    bad({ ...j(), entries: [{ ...e0(), payloads: { output: { data: '' } } }] }, /payloads.output: missing field "salt"/);
    bad({ ...j(), registry: [{ ...j().registry[0], payloads: {} }] }, /registry\[0\]: unknown field "payloads"/);
    expect(() => parseEvidenceBundle(7 as unknown as string)).toThrow(/not a string/);
  });

  it('refuses reordered and duplicated items, naming the position and the index', () => {
    const b = std.log.bundle({ agent: 'a1' });
    const [x, y, ...rest] = b.entries;
    expect(() => parseEvidenceBundle(text(withEntries(b, [y!, x!, ...rest])))).toThrow(/entries\[1\]: index 2 is below index 4 of entries\[0\]/);
    expect(() => parseEvidenceBundle(text(withEntries(b, [x!, x!, y!, ...rest])))).toThrow(/entries\[1\]: index 2 repeats index 2 of entries\[0\]/);
    expect(() => parseEvidenceBundle(text({ ...b, registry: [...b.registry].reverse() }))).toThrow(/registry\[1\]: index 0 is below index 8/);
    // verifyEvidenceBundle reports the same, as a MalformedError.
    fails(withEntries(b, [y!, x!, ...rest]), MalformedError, /entries\[1\]: index 2 is below index 4/);
  });
});

describe('verification: round trips', () => {
  it('verifies the whole log: entries, payload statuses, runs, key periods, erasures', () => {
    const v = verifyB(std.log.bundle({}, { withhold: new Set(['3 p']) }));
    expect(v.origin).toBe('bundle.test/log');
    expect(v.checkpoint.treeSize).toBe(14);
    expect([...v.cosigned]).toEqual([]);
    expect(v.entries.map((e) => e.index)).toEqual([2, 3, 4, 5, 6, 7, 9, 10, 13]);
    expect(statuses(v)).toEqual({
      2: { prompt: 'erased@11', output: 'opened' },
      3: { p: 'withheld' },
      4: { args: 'opened' },
      5: {},
      6: {},
      7: {},
      9: { q: 'opened' },
      10: {},
      13: {},
    });
    const output = v.entries[0]!.payloads['output']!;
    expect(output.status === 'opened' && new TextDecoder().decode(output.data)).toBe('Policy R-7 allows it');
    expect(v.runs).toEqual([
      { agent: 'a1', run: 'r1', first: 0, last: 3, closedWith: 3 },
      { agent: 'a2', run: 'r1', first: 0, last: 1 },
      { agent: 'a1', run: 'r2', first: 0, last: 1 },
      { agent: 'a3', run: 'x', first: 0, last: 0 },
    ]);
    expect(v.agents.map((a) => [a.agent, a.periods.map((p) => [p.from, p.until, p.endedBy])])).toEqual([
      ['a1', [[0, 8, 'rotated'], [8, null, null]]],
      ['a2', [[1, null, null]]],
      ['a3', [[12, null, null]]],
    ]);
    expect(v.entries.find((e) => e.index === 9)!.key.vkey).toBe(std.a1.key.vkey);
    expect(v.entries.find((e) => e.index === 2)!.key.vkey).toBe(std.k1.vkey);
    expect(v.erasures.map((e) => [e.index, e.entry.index, e.entry.name])).toEqual([[11, 2, 'prompt']]);
  });

  it('verifies filtered bundles: an agent, a run, an agent with no entries', () => {
    expect(verifyB(std.log.bundle({ agent: 'a2' })).entries.map((e) => e.index)).toEqual([3, 6]);
    const r = verifyB(std.log.bundle({ agent: 'a1', run: 'r2' }));
    expect(r.entries.map((e) => e.index)).toEqual([9, 10]);
    expect(r.erasures).toEqual([]);
    const none = verifyB(std.log.bundle({ agent: 'nobody' }));
    expect(none.entries).toEqual([]);
    expect(none.agents).toEqual([]);
    // An older checkpoint: only what it covers.
    const old = verifyB(std.log.bundle({ agent: 'a1' }, { size: 9 }));
    expect(old.checkpoint.treeSize).toBe(9);
    expect(old.entries.map((e) => e.index)).toEqual([2, 4, 5, 7]);
    expect(statuses(old)[2]).toEqual({ prompt: 'opened', output: 'opened' });
  });

  it('verifies against a policy whose quorum the cosignatures meet, and reports who cosigned', () => {
    const b = std.log.bundle({ agent: 'a1' }, { note: std.log.note(14, [W[0]!.skey, W[2]!.skey]) });
    const v = verifyB(b, { policy: POLICY });
    expect([...v.cosigned]).toEqual(['W1', 'W3']);
    // The log key alone ignores the cosignatures (unknown keys).
    expect([...verifyB(b).cosigned]).toEqual([]);
  });

  it('reports a payload opened although an erasure names it', () => {
    const b = std.log.bundle({ agent: 'a1' });
    const salt = std.log.openings.get(2)!['prompt']!;
    const withPrompt = withEntries(b, [{ ...b.entries[0]!, payloads: { ...b.entries[0]!.payloads, prompt: salt } }, ...b.entries.slice(1)]);
    const p = verifyB(withPrompt).entries[0]!.payloads['prompt']!;
    expect(p).toMatchObject({ status: 'opened', erasedAt: 11 });
  });

  it('a time window: entries inside it, and the ones between them a clock that went back left out', () => {
    const log = new MemLog();
    const a = new TestAgent('a1', generateKey('a1', ALG_ED25519, seeded(21)));
    log.register(a);
    log.event(a, 'w', { time: T0 + 10 }); // 1
    log.event(a, 'w', { time: T0 + 5 }); // 2: the clock went back
    log.event(a, 'w', { time: T0 + 11 }); // 3
    log.event(a, 'w', { time: T0 + 30 }); // 4
    log.close(a, 'w', T0 + 31); // 5
    const filter = { agent: 'a1', since: T0 + 8, until: T0 + 20 };
    const all = log.bundle({ agent: 'a1' });
    const pick = (...idx: number[]) => ({ ...all, filter, entries: all.entries.filter((e) => idx.includes(e.index)) });
    const v = verifyB(pick(1, 2, 3), { logKey: log.key.vkey });
    expect(v.runs).toEqual([{ agent: 'a1', run: 'w', first: 0, last: 2 }]);
    const f = (b: EvidenceBundle) => thrown(() => verifyB(b, { logKey: log.key.vkey })).message;
    expect(f(pick(1, 3))).toMatch(/run "w" of agent "a1": seq 1 is missing between entries\[0\] \(index 1, event "a1"\/"w" seq 0\) and entries\[1\] \(index 3/);
    expect(f(pick(1, 2, 3, 4))).toMatch(/entries\[3\] \(index 4, event "a1"\/"w" seq 3\) has time 1750000000030, outside the filter's window \[1750000000008, 1750000000020\), and is not between two entries/);
    expect(f(pick(2))).toMatch(/has time 1750000000005, outside the filter's window/);
    // A window need not start a run at seq 0; without one, a run must.
    expect(verifyB({ ...pick(3, 4, 5), filter: { agent: 'a1', since: T0 + 11 } }, { logKey: log.key.vkey }).runs).toEqual([{ agent: 'a1', run: 'w', first: 2, last: 4, closedWith: 4 }]);
    expect(f({ ...pick(3, 4, 5), filter: { agent: 'a1' } })).toMatch(/run "w" of agent "a1": starts at entries\[0\] \(index 3, event "a1"\/"w" seq 2\); the filter has no time window, so the run must start at seq 0 \(seqs 0–1 are missing\)/);
  });
});

describe('verification: tampering is detected and named', () => {
  const b = std.log.bundle({ agent: 'a1' });

  it('a flipped bit in an entry envelope', () => {
    const e = b.entries[1]!; // index 4
    // In the signature: still decodes, but its leaf hash is another one.
    const sigBit = withEntries(b, [b.entries[0]!, { ...e, envelope: flipBit(e.envelope, 10) }, ...b.entries.slice(2)]);
    fails(sigBit, VerificationError, /^evidence bundle: entries\[1\] \(index 4, event "a1"\/"r1" seq 1\): the inclusion proof of leaf hash \S+ leads to root hash \S+, not to the checkpoint's root hash \S+ at tree size 14$/);
    // In the CBOR structure: does not decode.
    const headBit = withEntries(b, [b.entries[0]!, { ...e, envelope: flipBit(e.envelope, 0, 5) }, ...b.entries.slice(2)]);
    fails(headBit, MalformedError, /^evidence bundle: entries\[1\] \(index 4\): envelope/);
  });

  it('a flipped bit in a proof hash, a proof too short or too long', () => {
    const e = b.entries[2]!;
    const proof = e.proof.map((h, i) => (i === 1 ? flipBit(h, 31, 7) : h));
    fails(withEntries(b, [b.entries[0]!, b.entries[1]!, { ...e, proof }, ...b.entries.slice(3)]), VerificationError, /entries\[2\] \(index 5, event "a1"\/"r1" seq 2\): the inclusion proof of leaf hash .* leads to root hash/);
    fails(withEntries(b, [b.entries[0]!, b.entries[1]!, { ...e, proof: e.proof.slice(1) }, ...b.entries.slice(3)]), VerificationError, /entries\[2\] \(index 5.*\): inclusion proof: too few hashes \(3\) for index 5 in tree size 14/);
    fails({ ...b, registry: [{ ...b.registry[0]!, proof: [...b.registry[0]!.proof, b.registry[0]!.proof[0]!] }, b.registry[1]!] }, VerificationError, /registry\[0\] \(index 0, agent.register "a1"\): inclusion proof: too many hashes/);
    fails({ ...b, erasures: [{ ...b.erasures[0]!, proof: b.erasures[0]!.proof.map((h) => flipBit(h, 0)) }] }, VerificationError, /erasures\[0\] \(index 11, payload.erase of "prompt" of entry 2\): the inclusion proof/);
  });

  it('an index beyond the tree, or another index than the proof is for', () => {
    const e = b.entries[5]!; // index 10
    fails(withEntries(b, [...b.entries.slice(0, 5), { ...e, index: 14 }]), VerificationError, /entries\[5\] \(index 14, event "a1"\/"r2" seq 1\): index 14 is not below the checkpoint's tree size 14/);
    fails(withEntries(b, [...b.entries.slice(0, 5), { ...e, index: 11 }]), VerificationError, /entries\[5\] \(index 11, .*\): the inclusion proof of leaf hash/);
  });

  it('the checkpoint: its body, the log signature, the origin, another log', () => {
    const { text: body, signatures } = parseNote(b.checkpoint);
    const root = body.split('\n')[2]!;
    const otherRoot = body.replace(root, root.startsWith('A') ? 'B' + root.slice(1) : 'A' + root.slice(1));
    fails({ ...b, checkpoint: formatNote(otherRoot, signatures) }, VerificationError, /^evidence bundle: checkpoint: the checkpoint's signature by the log key "bundle.test\/log\+[0-9a-f]{8}" is invalid$/);
    const sig = signatures[0]!;
    fails({ ...b, checkpoint: formatNote(body, [{ ...sig, signature: flipBit(sig.signature, 3) }]) }, VerificationError, /checkpoint's signature by the log key .* is invalid/);
    fails({ ...b, checkpoint: 'not a note' }, MalformedError, /^evidence bundle: checkpoint: checkpoint note: malformed note/);
    fails({ ...b, origin: 'other.test/log' }, VerificationError, /origin "other.test\/log" is not the checkpoint's origin "bundle.test\/log"/);
    const other = new MemLog('other.test/log');
    fails({ ...b, checkpoint: other.note(0) }, VerificationError, /checkpoint: the checkpoint is not signed by the log key/);
  });

  it('a cosignature that does not verify, and a missing cosignature under the quorum', () => {
    const note = std.log.note(14, [W[0]!.skey, W[1]!.skey]);
    const { text: body, signatures } = parseNote(note);
    const bad = formatNote(body, signatures.map((s, i) => (i === 2 ? { ...s, signature: flipBit(s.signature, 20) } : s)));
    const e = thrown(() => verifyB({ ...b, checkpoint: bad }, { policy: POLICY }));
    expect(e).toBeInstanceOf(VerificationError);
    expect(e.message).toMatch(/^evidence bundle: checkpoint: the checkpoint's signature by witness "W2" \(key "w2.bundle.test\/w\+[0-9a-f]{8}"\) is invalid$/);
    const one = thrown(() => verifyB({ ...b, checkpoint: std.log.note(14, [W[0]!.skey]) }, { policy: POLICY }));
    expect(one.message).toMatch(/checkpoint: witness quorum not met: cosigned by W1; policy needs two = 2 of \(W1, W2, W3\)/);
    const none = thrown(() => verifyB(b, { policy: POLICY }));
    expect(none.message).toMatch(/witness quorum not met: cosigned by no witness/);
  });

  it('an entry signed with a rotated-out key, or with a revoked key', () => {
    const s = standardLog();
    const idx = s.log.event(s.a1, 'late', { time: T0 + 9 }, s.k1.skey); // 14: signed with the key rotated out at 8
    const v = thrown(() => verifyB(s.log.bundle({ agent: 'a1', run: 'late' }), { logKey: s.log.key.vkey }));
    expect(v).toBeInstanceOf(VerificationError);
    expect(v.message).toMatch(
      new RegExp(`entries\\[0\\] \\(index ${idx}, event "a1"/"late" seq 0\\): signed with key "a1\\+[0-9a-f]{8}" \\(installed at index 0, rotated out at index 8\\), which is not valid at index ${idx}; its key at index ${idx} is "a1\\+[0-9a-f]{8}" \\(installed at index 8, still current\\)`)
    );
    const r = standardLog();
    const revokedAt = r.log.revoke(r.a2);
    const late = r.log.event(r.a2, 'after', { time: T0 + 9 });
    const m = thrown(() => verifyB(r.log.bundle({ agent: 'a2', run: 'after' }), { logKey: r.log.key.vkey })).message;
    expect(m).toMatch(new RegExp(`index ${late}, .*\\): signed with key "a2\\+[0-9a-f]{8}" \\(installed at index 1, revoked at index ${revokedAt}\\), which is not valid at index ${late}; agent "a2" had no valid key at index ${late} \\(key "a2\\+[0-9a-f]{8}" was revoked at index ${revokedAt}\\)`));
    // A key the agent never held.
    const f = standardLog();
    const stranger = generateKey('a2');
    f.log.event(f.a2, 'forged', { time: T0 + 9 }, stranger.skey);
    expect(thrown(() => verifyB(f.log.bundle({ agent: 'a2', run: 'forged' }), { logKey: f.log.key.vkey })).message).toMatch(/the signature does not verify under any key of agent "a2"; its key at index 14 is "a2\+[0-9a-f]{8}" \(installed at index 1, still current\)/);
  });

  it('an entry removed from a run, at its start or in its middle', () => {
    const e = b.entries;
    fails(withEntries(b, [e[0]!, e[2]!, ...e.slice(3)]), VerificationError, /run "r1" of agent "a1": seq 1 is missing between entries\[0\] \(index 2, event "a1"\/"r1" seq 0\) and entries\[1\] \(index 5, event "a1"\/"r1" seq 2\)/);
    fails(withEntries(b, [e[0]!, ...e.slice(3)]), VerificationError, /seqs 1–2 are missing between/);
    fails({ ...withEntries(b, e.slice(1)), erasures: [] }, VerificationError, /run "r1" of agent "a1": starts at entries\[0\] \(index 4, event "a1"\/"r1" seq 1\); the filter has no time window, so the run must start at seq 0/);
    // With its erasure left in, the erasure names an entry the bundle does not have.
    fails(withEntries(b, e.slice(1)), VerificationError, /erasures\[0\] \(index 11, payload.erase of "prompt" of entry 2\): names entry 2, which is not in the bundle's entries/);
  });

  it('an entry of another run swapped in: a broken chain', () => {
    const s = standardLog();
    s.a1.seek('r2', 1, new Uint8Array(32).fill(1)); // seq 1 with a prev that is no entry's leaf hash
    s.log.event(s.a1, 'r2', { time: T0 + 9 });
    const bundle = s.log.bundle({ agent: 'a1', run: 'r2' });
    const swapped = withEntries(bundle, [bundle.entries[0]!, bundle.entries[2]!]);
    expect(thrown(() => verifyB(swapped, { logKey: s.log.key.vkey })).message).toMatch(/run "r2" of agent "a1": entries\[1\] \(index 14, event "a1"\/"r2" seq 1\) has prev AQEB\S+, not the leaf hash \S+ of entries\[0\] \(index 9, event "a1"\/"r2" seq 0\)/);
    expect(thrown(() => verifyB(bundle, { logKey: s.log.key.vkey })).message).toMatch(/entries\[1\] \(index 10, event "a1"\/"r2" seq 1\) and entries\[2\] \(index 14, event "a1"\/"r2" seq 1\) hold the same seq/);
  });

  it('a close that does not end its run', () => {
    const s = standardLog();
    s.a1.seek('r1', 3, leafHash(s.log.envelopes[5]!));
    s.log.event(s.a1, 'r1', { time: T0 + 9 }); // 14: seq 3 after the close of 3 events
    const bundle = s.log.bundle({ agent: 'a1', run: 'r1' });
    expect(thrown(() => verifyB(bundle, { logKey: s.log.key.vkey })).message).toMatch(/run "r1" of agent "a1": entries\[4\] \(index 14, event "a1"\/"r1" seq 3\) is at or beyond the 3 events entries\[3\] \(index 7, run.close "a1"\/"r1" seq 3\) counts/);
  });

  it('a payload changed, a payload given that the entry does not commit to', () => {
    const e = b.entries[0]!;
    const output = e.payloads!['output']!;
    const changed = { ...e, payloads: { output: { ...output, data: utf8('Policy R-7 forbids it') } } };
    fails(withEntries(b, [changed, ...b.entries.slice(1)]), VerificationError, /entries\[0\] \(index 2, event "a1"\/"r1" seq 0\): payload "output" does not open its commitment \S+/);
    const salted = { ...e, payloads: { output: { ...output, salt: flipBit(output.salt, 0) } } };
    fails(withEntries(b, [salted, ...b.entries.slice(1)]), VerificationError, /payload "output" does not open its commitment/);
    const extra = { ...e, payloads: { ...e.payloads, extra: output } };
    fails(withEntries(b, [extra, ...b.entries.slice(1)]), VerificationError, /entries\[0\] \(index 2.*\): payload "extra" is given, but the entry commits to no payload of that name/);
    const close = b.entries[3]!;
    fails(withEntries(b, [...b.entries.slice(0, 3), { ...close, payloads: { output } }, ...b.entries.slice(4)]), VerificationError, /entries\[3\] \(index 7, run.close "a1"\/"r1" seq 3\): payload "output" is given, but the entry commits to no payload/);
  });

  it('a registry entry removed, added, or not signed by the log', () => {
    // Without the rotation, the entries after it are signed by a key the agent never held.
    fails({ ...b, registry: [b.registry[0]!] }, VerificationError, /entries\[4\] \(index 9, event "a1"\/"r2" seq 0\): the signature does not verify under any key of agent "a1"; its key at index 9 is "a1\+[0-9a-f]{8}" \(installed at index 0, still current\)/);
    // Without the registration, the rotation is of an unknown agent.
    fails({ ...b, registry: [b.registry[1]!] }, VerificationError, /registry\[0\] \(index 8, agent.rotate "a1"\): entry 8 \(agent.rotate "a1"\): unknown agent/);
    fails({ ...b, registry: [] }, VerificationError, /entries\[0\] \(index 2, event "a1"\/"r1" seq 0\): the registry has no agent.register of agent "a1"/);
    // Another agent's registry entry is not the bundle's.
    fails({ ...b, registry: [...b.registry, std.log.item(12)] }, VerificationError, /registry\[2\] \(index 12, agent.register "a3"\): agent "a3" has no entry in the bundle and is not the filter's agent/);
    // An entry in the registry that is not a registry entry.
    fails({ ...b, registry: [b.registry[0]!, std.log.item(3), b.registry[1]!] }, VerificationError, /registry\[1\] \(index 3, event "a2"\/"r1" seq 0\): the registry holds only/);
    // A registry entry signed by someone else than the log.
    const s = standardLog();
    const forged = s.log.append(signEntry({ type: 'agent.rotate', agent: 'a1', key: generateKey('a1').vkey, time: T0 }, generateKey('bundle.test/log').skey));
    const fb = s.log.bundle({ agent: 'a1' });
    expect(fb.registry.map((r) => r.index)).toContain(forged);
    expect(thrown(() => verifyB(fb, { logKey: s.log.key.vkey })).message).toMatch(new RegExp(`registry\\[2\\] \\(index ${forged}, agent.rotate "a1"\\): the signature does not verify under the log key "bundle.test/log\\+[0-9a-f]{8}"`));
  });

  it('erasures: removed (the payload reads withheld), misplaced, repeated, not by the log', () => {
    const none = verifyB({ ...b, erasures: [] });
    expect(none.entries[0]!.payloads['prompt']).toEqual({ status: 'withheld' });
    fails({ ...b, erasures: [std.log.item(0)] }, VerificationError, /erasures\[0\] \(index 0, agent.register "a1"\): erasures hold only payload.erase entries/);
    const s = standardLog();
    s.log.erase(2, 'nothing'); // 14
    s.log.erase(4, 'args'); // 15
    s.log.erase(4, 'args'); // 16
    const sb = s.log.bundle({ agent: 'a1' });
    const k = { logKey: s.log.key.vkey };
    expect(thrown(() => verifyB(sb, k)).message).toMatch(/erasures\[1\] \(index 14, payload.erase of "nothing" of entry 2\): entry 2 commits to no payload "nothing"/);
    const rep = { ...sb, erasures: sb.erasures.filter((e) => e.index !== 14) };
    expect(thrown(() => verifyB(rep, k)).message).toMatch(/erasures\[2\] \(index 16, payload.erase of "args" of entry 4\): payload "args" of entry 4 was already erased at index 15/);
    const early = new MemLog();
    const a = new TestAgent('a1', generateKey('a1', ALG_ED25519, seeded(31)));
    early.register(a);
    early.erase(2, 'x'); // 1: erases an entry that comes after it
    early.event(a, 'r', { payloads: { x: 'data' } }); // 2
    expect(thrown(() => verifyB(early.bundle({ agent: 'a1' }), { logKey: early.key.vkey })).message).toMatch(/erasures\[0\] \(index 1, payload.erase of "x" of entry 2\): logged before the entry 2 it erases from/);
    const forged = standardLog();
    forged.log.append(signEntry({ type: 'payload.erase', index: 4, name: 'args', reason: '', time: T0 }, generateKey('bundle.test/log').skey));
    expect(thrown(() => verifyB(forged.log.bundle({ agent: 'a1' }), { logKey: forged.log.key.vkey })).message).toMatch(/erasures\[1\] \(index 14, payload.erase of "args" of entry 4\): the signature does not verify under the log key/);
  });

  it('entries that are not the filter\'s, or not run entries', () => {
    fails({ ...b, filter: { agent: 'a2' } }, VerificationError, /entries\[0\] \(index 2, event "a1"\/"r1" seq 0\): agent "a1" does not match the filter's agent "a2"/);
    fails({ ...b, filter: { agent: 'a1', run: 'r1' } }, VerificationError, /entries\[4\] \(index 9, event "a1"\/"r2" seq 0\): run "r2" does not match the filter's run "r1"/);
    fails(withEntries(b, [std.log.item(0), ...b.entries]), VerificationError, /entries\[0\] \(index 0, agent.register "a1"\): entries hold only events and run.close entries/);
  });

  it('a policy log key signs registry entries; a log key of another log does not', () => {
    const v = verifyB(std.log.bundle({ agent: 'a1' }, { note: std.log.note(14, [W[0]!.skey, W[1]!.skey]) }), { policy: POLICY });
    expect(v.agents[0]!.periods).toHaveLength(2);
    expect(thrown(() => verifyB(b, { logKey: generateKey('bundle.test/log').vkey }))).toBeInstanceOf(VerificationError);
    expect(thrown(() => verifyB(b, { logKey: 'not a key' })).message).toMatch(/^evidence bundle: checkpoint: the log key/);
    expect(thrown(() => verifyB(b, {} as never))).toBeInstanceOf(MalformedError);
  });
});

// ---------------------------------------------------------------------------------------
// Properties.

/** Calls f; returns 'ok' with its value, or the error, which must be one of the two types. */
function outcome<T>(f: () => T): { ok: true; value: T } | { ok: false; error: Error } {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (!(e instanceof MalformedError) && !(e instanceof VerificationError)) throw e;
    return { ok: false, error: e };
  }
}

/** The verified summary without the filter, for comparing two verifications. */
function essence(v: VerifiedEvidenceBundle): unknown {
  const { filter: _f, ...rest } = v;
  return { ...rest, cosigned: [...v.cosigned] };
}

describe('properties', () => {
  const small = std.log.bundle({ agent: 'a1', run: 'r1', since: 5 }, { note: std.log.note(14, W.map((w) => w.skey)) });
  const smallText = text(small);
  const smallBytes = utf8(smallText);
  const original = essence(verifyB(small, { policy: ALL_WITNESSES }));
  const filterStart = smallText.indexOf('"filter":');
  const filterEnd = smallText.indexOf('\n', filterStart);

  it('any single byte change fails to parse or to verify, unless it is in the (unsigned) filter and changes nothing else', () => {
    fc.assert(
      fc.property(fc.nat(smallBytes.length - 1), fc.integer({ min: 1, max: 255 }), (at, delta) => {
        const mutated = Uint8Array.from(smallBytes);
        mutated[at] = (mutated[at]! + delta) & 0xff;
        const t = new TextDecoder('utf-8', { fatal: false }).decode(mutated);
        const r = outcome(() => verifyEvidenceBundle(t, { policy: ALL_WITNESSES }));
        if (r.ok) {
          expect(at).toBeGreaterThanOrEqual(filterStart);
          expect(at).toBeLessThan(filterEnd);
          expect(essence(r.value)).toEqual(original);
        }
      }),
      { numRuns }
    );
  });

  it('a changed since that all entries still meet verifies: the filter is the exporter\'s claim, checked against the entries only', () => {
    expect(verifyB(smallText.replace('"since":5', '"since":6'), { policy: ALL_WITNESSES }).filter).toEqual({ agent: 'a1', run: 'r1', since: 6 });
  });

  it('any value put anywhere in the JSON is refused with MalformedError or VerificationError, never another error', () => {
    const json = JSON.parse(smallText) as Record<string, unknown>;
    const paths: Array<Array<string | number>> = [];
    const walk = (v: unknown, path: Array<string | number>) => {
      paths.push(path);
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
      else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
    };
    walk(json, []);
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.jsonValue(), (path, value) => {
        const copy = structuredClone(json) as Record<string | number, unknown>;
        if (path.length === 0) return;
        let o = copy as Record<string | number, unknown>;
        for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
        const before = JSON.stringify(o[path.at(-1)!]);
        o[path.at(-1)!] = value;
        if (JSON.stringify(value) === before) return;
        // Both the canonical layout of the mutated value and its compact JSON.
        for (const t of [JSON.stringify(copy), (() => {
          try {
            return text(parseEvidenceBundle(JSON.stringify(copy)));
          } catch {
            return JSON.stringify(copy);
          }
        })()]) {
          const r = outcome(() => verifyEvidenceBundle(t, { policy: ALL_WITNESSES }));
          if (r.ok) expect(path[0]).toBe('filter');
        }
      }),
      { numRuns }
    );
  });

  /** A random log: agents registered first, then events, closes, rotations and erasures. */
  const opArb = fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('event' as const), agent: fc.nat(2), run: fc.nat(1), payloads: fc.subarray(['x', 'y']) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('close' as const), agent: fc.nat(2), run: fc.nat(1) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('rotate' as const), agent: fc.nat(2) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('erase' as const), pick: fc.nat() }) }
  );

  function randomLog(ops: ReadonlyArray<{ op: string; agent?: number; run?: number; payloads?: string[]; pick?: number }>): { log: MemLog; erased: Set<string> } {
    const log = new MemLog();
    const agents = [0, 1, 2].map((n) => new TestAgent(`a${n}`, generateKey(`a${n}`, ALG_ED25519, seeded(50 + n))));
    for (const a of agents) log.register(a);
    const closed = new Set<string>();
    const payloads: string[] = [];
    const erased = new Set<string>();
    let time = T0;
    for (const o of ops) {
      const a = agents[o.agent ?? 0]!;
      const run = `r${o.run ?? 0}`;
      if (o.op === 'event' && !closed.has(`${a.id} ${run}`)) {
        const i = log.event(a, run, { time: time++, payloads: Object.fromEntries((o.payloads ?? []).map((n) => [n, `${n} at ${time}`])) });
        for (const n of o.payloads ?? []) payloads.push(`${i} ${n}`);
      } else if (o.op === 'close' && !closed.has(`${a.id} ${run}`)) {
        closed.add(`${a.id} ${run}`);
        log.close(a, run, time++);
      } else if (o.op === 'rotate') {
        log.rotate(a);
      } else if (o.op === 'erase' && payloads.length > erased.size) {
        const open = payloads.filter((p) => !erased.has(p));
        const p = open[(o.pick ?? 0) % open.length]!;
        erased.add(p);
        const [i, n] = p.split(' ');
        log.erase(Number(i), n!);
      }
    }
    return { log, erased };
  }

  it('random logs: the honest bundle verifies with the right statuses; removing an entry inside a run fails', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 24 }),
        fc.constantFrom<EvidenceFilter>({}, { agent: 'a0' }, { agent: 'a0', run: 'r0' }),
        fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
        fc.nat(),
        (ops, filter, mask, removeAt) => {
          const { log, erased } = randomLog(ops);
          const withhold = new Set<string>();
          let k = 0;
          for (const [i, o] of log.openings) for (const n of Object.keys(o)) if (mask[k++ % 64]) withhold.add(`${i} ${n}`);
          const b = log.bundle(filter, { withhold });
          const trust = { logKey: log.key.vkey };
          const v = verifyEvidenceBundle(text(b), trust);
          for (const e of v.entries) {
            for (const [n, p] of Object.entries(e.payloads)) {
              const id = `${e.index} ${n}`;
              expect(p.status).toBe(erased.has(id) ? 'erased' : withhold.has(id) ? 'withheld' : 'opened');
            }
          }
          if (b.entries.length === 0) return;
          const r = removeAt % b.entries.length;
          const gone = decodeEnvelope(b.entries[r]!.envelope).entry as { agent: string; run: string; seq: number };
          const result = outcome(() => verifyEvidenceBundle(text(withEntries(b, b.entries.filter((_, i) => i !== r))), trust));
          const laterInRun = b.entries.some((x) => {
            const e = decodeEnvelope(x.envelope).entry as { agent: string; run: string; seq: number };
            return e.agent === gone.agent && e.run === gone.run && e.seq > gone.seq;
          });
          if (laterInRun) expect(result.ok).toBe(false);
        }
      ),
      { numRuns: Math.max(20, Math.floor(numRuns / 5)) }
    );
  });
});
