/**
 * Shared helpers for the entry tests: the vectors of spec/vectors/entries.json, fixed keys,
 * fast-check arbitraries for valid entries, and a reference canonical CBOR encoder written
 * from RFC 8949 §4.2.1 independently of cbor-x.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, encodeBase64, utf8 } from '../../src/core/encoding.js';
import { generateKey } from '../../src/note/keys.js';
import {
  EVENT_KINDS,
  type CborValue,
  type Entry,
  type EventEntry,
  type RunCloseEntry,
} from '../../src/entry/index.js';

/** fast-check runs per property; FC_NUM_RUNS raises it for slow runs. */
export const numRuns = Number(process.env['FC_NUM_RUNS'] ?? 100);

export interface EntryVectors {
  keys: Record<'agent' | 'log', { skey: string; vkey: string; seedHex: string }>;
  payload: { saltHex: string; dataHex: string; commitmentHex: string; commitmentBase64: string };
  entries: { name: string; signer: 'agent' | 'log'; json: Record<string, unknown>; entryHex: string; envelopeHex: string; leafHash: string }[];
  cbor: {
    valid: { source: string; value?: CborValue; bytesHex?: string; hex: string }[];
    invalid: { hex: string; reason: string }[];
  };
}

export const vectors: EntryVectors = JSON.parse(
  readFileSync(new URL('../../spec/vectors/entries.json', import.meta.url), 'utf8')
) as EntryVectors;

/** A key pair from a fixed seed (SHA-256 of `label`). */
export function fixedKey(name: string, label: string): { skey: string; vkey: string } {
  return generateKey(name, 1, () => sha256(utf8(label)));
}

/** Agents with a pool of fixed keys each, for registry entries and KeyHistory. */
export const AGENTS = ['agent-1', 'svc:planner@acme.example'] as const;
export const KEYS: Record<string, { skey: string; vkey: string }[]> = Object.fromEntries(
  AGENTS.map((a) => [a, [0, 1, 2, 3].map((i) => fixedKey(a, `test key ${a} ${i}`))])
);

/** Reference canonical CBOR (RFC 8949 §4.2.1), written from the RFC, not from cbor-x. */
export function referenceEncode(v: CborValue): Uint8Array {
  const head = (major: number, n: number): Uint8Array => {
    const m = major << 5;
    if (n < 24) return Uint8Array.of(m | n);
    if (n < 0x100) return Uint8Array.of(m | 24, n);
    if (n < 0x10000) return Uint8Array.of(m | 25, n >> 8, n & 0xff);
    const out = new Uint8Array(n < 2 ** 32 ? 5 : 9);
    const dv = new DataView(out.buffer);
    if (n < 2 ** 32) {
      out[0] = m | 26;
      dv.setUint32(1, n);
    } else {
      out[0] = m | 27;
      dv.setBigUint64(1, BigInt(n));
    }
    return out;
  };
  if (typeof v === 'boolean') return Uint8Array.of(v ? 0xf5 : 0xf4);
  if (typeof v === 'number') return head(0, v);
  if (typeof v === 'string') {
    const b = utf8(v);
    return concatBytes(head(3, b.length), b);
  }
  if (v instanceof Uint8Array) return concatBytes(head(2, v.length), v);
  if (Array.isArray(v)) return concatBytes(head(4, v.length), ...v.map(referenceEncode));
  const items = Object.keys(v).map((k) => [referenceEncode(k), referenceEncode(v[k]!)] as const);
  items.sort(([a], [b]) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
    return a.length - b.length;
  });
  return concatBytes(head(5, items.length), ...items.flat());
}

const LONE = /\p{Surrogate}/u;
/** Text without lone surrogates, up to `max` code points. */
export const textArb = (min = 0, max = 40) =>
  fc.string({ unit: 'binary', minLength: min, maxLength: max }).filter((s) => !LONE.test(s));

/** Arbitrary values of the canonical CBOR data model. */
export const cborArb: fc.Arbitrary<CborValue> = fc.letrec<{ v: CborValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.maxSafeNat(),
    fc.constantFrom(0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1),
    textArb(),
    fc.boolean(),
    fc.uint8Array({ maxLength: 40 }),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.dictionary(fc.oneof(textArb(0, 8), fc.constantFrom('__proto__', '10', '2', 'constructor')), tie('v'), { maxKeys: 6 })
  ),
})).v;

export const idArb = fc.stringMatching(/^[A-Za-z0-9._:@-]{1,128}$/);
export const fieldNameArb = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
  fc.constantFrom('__proto__', '10', '2', 'toString', 'gen_ai.tool.name')
);
export const kindArb = fc.oneof(fc.constantFrom(...EVENT_KINDS), fc.stringMatching(/^x-[a-z0-9_.-]{1,64}$/));
export const hashArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
const optional = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });

/** Drops keys whose value is undefined (entries omit absent optional fields). */
function compact<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export const eventArb: fc.Arbitrary<EventEntry> = fc
  .record({
    agent: idArb,
    run: idArb,
    seq: fc.oneof(fc.constant(0), fc.nat(1000), fc.maxSafeNat()),
    prev: hashArb,
    parentFrac: optional(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })),
    kind: kindArb,
    time: fc.maxSafeNat(),
    model: optional(fc.record({ provider: textArb(1, 20), name: textArb(1, 40), version: optional(textArb(1, 20)) })),
    attrs: optional(
      fc.dictionary(fieldNameArb, fc.oneof(textArb(0, 64), fc.maxSafeNat(), fc.boolean()), { maxKeys: 32 })
    ),
    payloads: optional(fc.dictionary(fieldNameArb, hashArb, { maxKeys: 16 })),
  })
  .map(({ seq, prev, parentFrac, model, ...rest }) =>
    compact({
      type: 'event' as const,
      ...rest,
      seq,
      prev: seq > 0 ? prev : undefined,
      parent: seq > 0 && parentFrac !== undefined ? Math.floor(parentFrac * seq) : undefined,
      model: model && compact(model),
    })
  );

export const runCloseArb: fc.Arbitrary<RunCloseEntry> = fc
  .record({ agent: idArb, run: idArb, seq: fc.oneof(fc.constant(0), fc.maxSafeNat()), prev: hashArb, time: fc.maxSafeNat() })
  .map(({ seq, prev, ...rest }) => compact({ type: 'run.close' as const, ...rest, seq, prev: seq > 0 ? prev : undefined }));

const agentKeyArb = fc.constantFrom(...AGENTS).chain((agent) =>
  fc.constantFrom(...KEYS[agent]!).map((k) => ({ agent, key: k.vkey }))
);

export const registryArb: fc.Arbitrary<Entry> = fc
  .tuple(fc.constantFrom('agent.register', 'agent.rotate', 'agent.revoke'), agentKeyArb, textArb(0, 100), fc.maxSafeNat())
  .map(([type, { agent, key }, reason, time]): Entry =>
    type === 'agent.revoke' ? { type, agent, key, reason, time } : { type: type as 'agent.register', agent, key, time }
  );

export const eraseArb: fc.Arbitrary<Entry> = fc
  .record({ index: fc.maxSafeNat(), name: fieldNameArb, reason: textArb(0, 100), time: fc.maxSafeNat() })
  .map((r) => ({ type: 'payload.erase' as const, ...r }));

export const entryArb: fc.Arbitrary<Entry> = fc.oneof(eventArb, runCloseArb, registryArb, eraseArb);

/** The same object with its keys (and those of nested plain objects) in a shuffled order. */
export function reorder<T>(v: T, seed: number): T {
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array || Array.isArray(v)) return v;
  const keys = Object.keys(v);
  let s = seed >>> 0 || 1;
  for (let i = keys.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
  }
  return Object.fromEntries(keys.map((k) => [k, reorder((v as Record<string, unknown>)[k], s + 1)])) as T;
}

/** JSON-ifies a raw entry-like object the way entryToJson would (bytes → base64). */
export function jsonify(v: unknown): unknown {
  if (v instanceof Uint8Array) return encodeBase64(v);
  if (Array.isArray(v)) return v.map(jsonify);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonify(x)]));
  }
  return v;
}
