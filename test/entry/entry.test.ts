import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MalformedError, TooLargeError } from '../../src/core/errors.js';
import { concatBytes, encodeBase64, toHex, utf8 } from '../../src/core/encoding.js';
import { formatVerifierKey, generateKey } from '../../src/note/keys.js';
import {
  compareCborKeys,
  decodeCanonical,
  decodeEntry,
  readRunEntry,
  encodeCanonical,
  encodeEntry,
  entryFromCbor,
  entryFromJson,
  entryToJson,
  EVENT_KINDS,
  isRegistryEntry,
  isRunEntry,
  isValidEventKind,
  isValidFieldName,
  isValidId,
  MAX_AGENT_ENTRY_SIZE,
  type CborValue,
  type Entry,
} from '../../src/entry/index.js';
import { cborArb, entryArb, eventArb, jsonify, KEYS, numRuns, referenceEncode, reorder, runCloseArb } from './helpers.js';

const H = new Uint8Array(32).fill(7);
const AGENT = 'agent-1';
const VKEY = KEYS[AGENT]![0]!.vkey;

const base: Record<Entry['type'], Record<string, unknown>> = {
  event: {
    type: 'event',
    agent: AGENT,
    run: 'r1',
    seq: 3,
    prev: H,
    parent: 1,
    kind: 'tool_call',
    time: 1767225600000,
    model: { provider: 'openai', name: 'gpt-5', version: '2026-01' },
    attrs: { 'gen_ai.tool.name': 'search', tokens: 12, ok: true },
    payloads: { args: H, result: H },
  },
  'run.close': { type: 'run.close', agent: AGENT, run: 'r1', seq: 4, prev: H, time: 1 },
  'agent.register': { type: 'agent.register', agent: AGENT, key: VKEY, time: 1 },
  'agent.rotate': { type: 'agent.rotate', agent: AGENT, key: VKEY, time: 1 },
  'agent.revoke': { type: 'agent.revoke', agent: AGENT, key: VKEY, reason: 'key leaked', time: 1 },
  'payload.erase': { type: 'payload.erase', index: 12, name: 'args', reason: 'erasure request', time: 1 },
};

type Raw = Record<string, unknown>;
const withField = (type: Entry['type'], k: string, v: unknown): Raw => ({ ...base[type], [k]: v });
const without = (type: Entry['type'], k: string): Raw => {
  const o = { ...base[type] };
  delete o[k];
  return o;
};

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
}

/**
 * Expects `raw` to be refused, with a MalformedError naming `path`, by encodeEntry, by
 * entryFromJson (its JSON form), and by decodeEntry (its CBOR form, when it has one).
 */
function expectRejected(raw: Raw, path: string, message?: RegExp): void {
  const label = `${path}: ${JSON.stringify(jsonify(raw))}`.slice(0, 300);
  const check = (how: string, f: () => unknown) => {
    const e = errorOf(f);
    expect(e, `${how} ${label}`).toBeInstanceOf(MalformedError);
    expect(e.message.startsWith(`${path}: `), `${how} ${label}: ${e.message}`).toBe(true);
    if (message) expect(e.message, `${how} ${label}`).toMatch(message);
  };
  check('encodeEntry', () => encodeEntry(raw as unknown as Entry));
  check('entryFromJson', () => entryFromJson(jsonify(raw)));
  let cbor: Uint8Array | undefined;
  try {
    cbor = encodeCanonical({ v: 1, ...raw } as CborValue);
  } catch {
    // not representable in CBOR (a float, a negative number, null): JSON and objects only
  }
  if (cbor !== undefined) check('decodeEntry', () => decodeEntry(cbor));
}

describe('entry schema', () => {
  it('accepts the base entry of every type, in all three forms', () => {
    for (const raw of Object.values(base)) {
      const e = raw as unknown as Entry;
      const bytes = encodeEntry(e);
      expect(decodeEntry(bytes)).toEqual(e);
      expect(entryFromJson(entryToJson(e))).toEqual(e);
      expect(entryFromJson(jsonify(raw))).toEqual(e);
    }
  });

  it('refuses a missing, unknown or mistyped type', () => {
    expectRejected(without('event', 'type'), 'entry.type', /missing/);
    expectRejected(withField('event', 'type', 'events'), 'entry.type', /unknown entry type/);
    expectRejected(withField('event', 'type', 1), 'entry.type', /expected text/);
  });

  it('refuses entries that are not maps', () => {
    for (const v of [null, 1, 'event', [], new Uint8Array(1)]) {
      expect(() => encodeEntry(v as unknown as Entry)).toThrow(/^entry: expected a map/);
      expect(() => entryFromJson(v)).toThrow(/^entry: expected a map/);
    }
    expect(() => decodeEntry(encodeCanonical([1]))).toThrow(/^entry: expected a map/);
  });

  it('requires v = 1 in CBOR, allows it to be omitted in JSON and objects', () => {
    const b = encodeCanonical(base['run.close'] as CborValue);
    expect(() => decodeEntry(b)).toThrow(/^entry\.v: missing/);
    for (const v of [0, 2, '1', true]) expectRejected(withField('run.close', 'v', v), 'entry.v');
    expect(encodeEntry({ ...base['run.close'], v: 1 } as unknown as Entry)).toEqual(encodeEntry(base['run.close'] as unknown as Entry));
    expect(entryFromJson({ ...(jsonify(base['run.close']) as Raw), v: 1 })).toEqual(base['run.close']);
  });

  it('refuses unknown fields, at the top level and inside model', () => {
    expectRejected(withField('event', 'extra', 1), 'entry.extra', /unknown field/);
    expectRejected(withField('run.close', 'kind', 'decision'), 'entry.kind', /unknown field/);
    expectRejected(withField('agent.register', 'reason', 'x'), 'entry.reason', /unknown field/);
    expectRejected(withField('payload.erase', 'agent', AGENT), 'entry.agent', /unknown field/);
    expectRejected(withField('event', 'model', { provider: 'a', name: 'b', temperature: 1 }), 'entry.model.temperature', /unknown field/);
  });

  it('checks agent and run ids', () => {
    for (const field of ['agent', 'run']) {
      for (const bad of ['', 'a'.repeat(129), 'a+b', 'a b', 'a/b', 'é', 'a\nb', 1, null]) {
        expectRejected(withField('event', field, bad), `entry.${field}`);
        expectRejected(withField('run.close', field, bad), `entry.${field}`);
      }
      expectRejected(without('event', field), `entry.${field}`, /missing/);
    }
    for (const bad of ['', 'a b', 'a+b']) expectRejected(withField('agent.revoke', 'agent', bad), 'entry.agent');
    expect(() => encodeEntry({ ...base['run.close'], agent: 'A-z.0_9:@-'.repeat(12).slice(0, 128) } as unknown as Entry)).not.toThrow();
  });

  it('checks seq and time as unsigned integers up to 2^53 - 1', () => {
    for (const field of ['seq', 'time']) {
      for (const bad of [1.5, -1, 2 ** 53, '3', true, null, Number.NaN]) {
        expectRejected(withField('event', field, bad), `entry.${field}`);
      }
      expectRejected(without('event', field), `entry.${field}`, /missing/);
    }
    expectRejected(withField('payload.erase', 'index', 0.5), 'entry.index');
    expectRejected(without('payload.erase', 'index'), 'entry.index', /missing/);
    expect(() => encodeEntry({ ...base['run.close'], time: 2 ** 53 - 1 } as unknown as Entry)).not.toThrow();
  });

  it('requires prev exactly when seq > 0, as 32 bytes', () => {
    for (const type of ['event', 'run.close'] as const) {
      expectRejected(without(type, 'prev'), 'entry.prev', /missing/);
      expectRejected({ ...withField(type, 'seq', 0), ...(type === 'event' && { parent: undefined }) }, 'entry.prev', /absent when seq is 0/);
      expectRejected(withField(type, 'prev', new Uint8Array(31)), 'entry.prev', /31 bytes/);
      expectRejected(withField(type, 'prev', new Uint8Array(33)), 'entry.prev', /33 bytes/);
      expectRejected(withField(type, 'prev', 'not bytes'), 'entry.prev');
    }
    // A close of an empty run has no prev.
    const empty = { ...without('run.close', 'prev'), seq: 0 } as unknown as Entry;
    expect(decodeEntry(encodeEntry(empty))).toEqual(empty);
  });

  it('requires parent < seq', () => {
    expectRejected(withField('event', 'parent', 3), 'entry.parent', /not less than seq/);
    expectRejected(withField('event', 'parent', 4), 'entry.parent', /not less than seq/);
    expectRejected(withField('event', 'parent', -1), 'entry.parent');
    expectRejected(withField('event', 'parent', 'x'), 'entry.parent');
  });

  it('checks kind', () => {
    for (const k of EVENT_KINDS) expect(isValidEventKind(k)).toBe(true);
    for (const k of ['x-a', 'x-acme.approval_2', 'x-' + 'a'.repeat(64)]) {
      expect(() => encodeEntry(withField('event', 'kind', k) as unknown as Entry), k).not.toThrow();
    }
    for (const k of ['', 'Decision', 'tool-call', 'x-', 'x-Upper', 'x-a b', 'x-' + 'a'.repeat(65), 'y-a', 'x-é', 1]) {
      expectRejected(withField('event', 'kind', k), 'entry.kind');
    }
    expectRejected(without('event', 'kind'), 'entry.kind', /missing/);
  });

  it('checks model', () => {
    expectRejected(withField('event', 'model', 'gpt'), 'entry.model', /expected a map/);
    expectRejected(withField('event', 'model', { name: 'b' }), 'entry.model.provider', /missing/);
    expectRejected(withField('event', 'model', { provider: 'a' }), 'entry.model.name', /missing/);
    expectRejected(withField('event', 'model', { provider: '', name: 'b' }), 'entry.model.provider', /empty/);
    expectRejected(withField('event', 'model', { provider: 'a', name: 'b', version: '' }), 'entry.model.version', /empty/);
    expectRejected(withField('event', 'model', { provider: 'a', name: 'é'.repeat(129) }), 'entry.model.name', /258 bytes/);
    expectRejected(withField('event', 'model', { provider: 'a', name: 1 }), 'entry.model.name', /expected text/);
    const ok = withField('event', 'model', { provider: 'a', name: 'x'.repeat(256) }) as unknown as Entry;
    expect(decodeEntry(encodeEntry(ok))).toEqual(ok);
  });

  it('checks attrs: at most 32, valid keys, text of at most 256 bytes, uint or bool values', () => {
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
    expect(() => encodeEntry(withField('event', 'attrs', many(32)) as unknown as Entry)).not.toThrow();
    expectRejected(withField('event', 'attrs', many(33)), 'entry.attrs', /33 attributes/);
    expectRejected(withField('event', 'attrs', { 'a b': 1 }), 'entry.attrs.a b');
    expectRejected(withField('event', 'attrs', { 'a+b': 1 }), 'entry.attrs.a+b');
    expectRejected(withField('event', 'attrs', { ['k'.repeat(65)]: 1 }), `entry.attrs.${'k'.repeat(65)}`);
    expectRejected(withField('event', 'attrs', { a: 'x'.repeat(257) }), 'entry.attrs.a', /257 bytes/);
    expectRejected(withField('event', 'attrs', { a: 1.5 }), 'entry.attrs.a');
    expectRejected(withField('event', 'attrs', { a: -1 }), 'entry.attrs.a');
    expectRejected(withField('event', 'attrs', { a: null }), 'entry.attrs.a');
    expectRejected(withField('event', 'attrs', { a: [1] }), 'entry.attrs.a');
    expectRejected(withField('event', 'attrs', { a: { b: 1 } }), 'entry.attrs.a');
    expectRejected(withField('event', 'attrs', []), 'entry.attrs', /expected a map/);
    // Bytes are not an attrs value type (in CBOR and objects; in JSON they are just text).
    expect(() => encodeEntry(withField('event', 'attrs', { a: H }) as unknown as Entry)).toThrow(/^entry\.attrs\.a: /);
    expect(() => decodeEntry(encodeCanonical({ v: 1, ...withField('event', 'attrs', { a: H }) } as CborValue))).toThrow(/^entry\.attrs\.a: /);
    const edge = withField('event', 'attrs', { ['k'.repeat(64)]: 'x'.repeat(256), '10': '', '2': false, __proto__x: 0 }) as unknown as Entry;
    expect(decodeEntry(encodeEntry(edge))).toEqual(edge);
  });

  it('keeps an attrs key "__proto__" as data', () => {
    const json = JSON.parse(
      `{"type":"event","agent":"a","run":"r","seq":0,"kind":"decision","time":1,"attrs":{"__proto__":"x","b":1}}`
    ) as unknown;
    const e = entryFromJson(json);
    expect(e.type === 'event' && Object.keys(e.attrs!)).toEqual(['__proto__', 'b']);
    expect(decodeEntry(encodeEntry(e))).toEqual(e);
    expect(entryToJson(decodeEntry(encodeEntry(e)))).toEqual({ v: 1, ...(json as object) });
  });

  it('returns attrs and payloads with a null prototype: absent names are undefined', () => {
    const e = decodeEntry(encodeEntry(base.event as unknown as Entry));
    if (e.type !== 'event') throw new Error('not an event');
    for (const r of [e.attrs!, e.payloads!]) {
      expect(Object.getPrototypeOf(r)).toBeNull();
      expect((r as Record<string, unknown>)['toString']).toBeUndefined();
      expect((r as Record<string, unknown>)['constructor']).toBeUndefined();
    }
    const j = entryToJson(e);
    expect((j['payloads'] as Record<string, unknown>)['constructor']).toBeUndefined();
    const c = decodeEntry(encodeEntry({ ...(base.event as object), payloads: { constructor: H } } as unknown as Entry));
    expect(c.type === 'event' && c.payloads!['constructor']).toEqual(H);
    expect(c.type === 'event' && Object.keys(c.payloads!)).toEqual(['constructor']);
  });

  it('checks payloads: at most 16, valid names, 32-byte commitments', () => {
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, H]));
    expect(() => encodeEntry(withField('event', 'payloads', many(16)) as unknown as Entry)).not.toThrow();
    expectRejected(withField('event', 'payloads', many(17)), 'entry.payloads', /17 payloads/);
    expectRejected(withField('event', 'payloads', { 'a/b': H }), 'entry.payloads.a/b');
    expectRejected(withField('event', 'payloads', { '': H }), 'entry.payloads.');
    expectRejected(withField('event', 'payloads', { a: new Uint8Array(31) }), 'entry.payloads.a', /31 bytes/);
    expectRejected(withField('event', 'payloads', { a: 1 }), 'entry.payloads.a');
    expectRejected(withField('event', 'payloads', H), 'entry.payloads', /expected a map/);
  });

  it('checks agent keys: canonical type-0x01 vkey, named after the agent, usable', () => {
    const other = KEYS['svc:planner@acme.example']![0]!.vkey;
    const cosigner = generateKey(AGENT, 4).vkey;
    // The identity point (y = 1): small order, so trivial signatures would verify.
    const weak = formatVerifierKey(AGENT, 1, Uint8Array.of(1, ...new Uint8Array(31)));
    for (const type of ['agent.register', 'agent.rotate', 'agent.revoke'] as const) {
      expectRejected(withField(type, 'key', other), 'entry.key', /not the agent id/);
      expectRejected(withField(type, 'key', cosigner), 'entry.key', /type 0x01/);
      expectRejected(withField(type, 'key', weak), 'entry.key', /usable/);
      expectRejected(withField(type, 'key', VKEY.replace('+', '+0')), 'entry.key', /malformed verifier key/);
      expectRejected(withField(type, 'key', VKEY.slice(0, -1)), 'entry.key');
      expectRejected(withField(type, 'key', VKEY.toUpperCase()), 'entry.key');
      expectRejected(withField(type, 'key', 1), 'entry.key');
      expectRejected(without(type, 'key'), 'entry.key', /missing/);
    }
  });

  it('checks reasons (at most 1024 bytes) and erased payload names', () => {
    for (const type of ['agent.revoke', 'payload.erase'] as const) {
      expect(() => encodeEntry(withField(type, 'reason', 'x'.repeat(1024)) as unknown as Entry)).not.toThrow();
      expect(() => encodeEntry(withField(type, 'reason', '') as unknown as Entry)).not.toThrow();
      expectRejected(withField(type, 'reason', 'é'.repeat(513)), 'entry.reason', /1026 bytes/);
      expectRejected(withField(type, 'reason', 5), 'entry.reason');
      expectRejected(without(type, 'reason'), 'entry.reason', /missing/);
    }
    for (const bad of ['', 'a b', 'x'.repeat(65), 3]) expectRejected(withField('payload.erase', 'name', bad), 'entry.name');
  });

  it('refuses lone surrogates in text', () => {
    expectRejected(withField('agent.revoke', 'reason', 'a\ud800'), 'entry.reason', /surrogate/);
    expectRejected(withField('event', 'attrs', { a: '\udc00' }), 'entry.attrs.a', /surrogate/);
  });

  it('refuses an entry over 16 KiB before decoding it', () => {
    const e = errorOf(() => decodeEntry(new Uint8Array(MAX_AGENT_ENTRY_SIZE + 1)));
    expect(e).toBeInstanceOf(TooLargeError);
    expect(e.message).toMatch(/^entry: 16385 bytes/);
  });

  it('keeps the largest possible event under 16 KiB (13,264 bytes)', () => {
    const name = (c: string, i: number) => (c.repeat(64) + String(i)).slice(-64);
    const wide = '\u{10000}'.repeat(64); // 256 UTF-8 bytes
    const e: Entry = {
      type: 'event',
      agent: 'a'.repeat(128),
      run: 'r'.repeat(128),
      seq: 2 ** 53 - 1,
      prev: H,
      parent: 2 ** 53 - 2,
      kind: 'x-' + 'a'.repeat(64),
      time: 2 ** 53 - 1,
      model: { provider: wide, name: wide, version: wide },
      attrs: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [name('k', i), wide])),
      payloads: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [name('p', i), H])),
    };
    expect(encodeEntry(e).length).toBe(13264);
    expect(13264).toBeLessThan(MAX_AGENT_ENTRY_SIZE);
  });

  it('counts undefined fields as absent', () => {
    const e = { ...base['run.close'], extra: undefined } as unknown as Entry;
    expect(encodeEntry(e)).toEqual(encodeEntry(base['run.close'] as unknown as Entry));
  });
});

describe('entryFromCbor', () => {
  it('validates a decoded CBOR map, bytes as byte strings, v optional', () => {
    for (const raw of Object.values(base)) {
      expect(entryFromCbor(raw)).toEqual(raw);
      expect(entryFromCbor({ v: 1, ...raw })).toEqual(raw);
    }
    expect(() => entryFromCbor({ ...base.event, v: 2 })).toThrow(/^entry\.v: /);
    expect(() => entryFromCbor(jsonify(base.event))).toThrow(/^entry\.prev: expected bytes/);
    expect(() => entryFromCbor({ ...base.event, x: 1 })).toThrow(/^entry\.x: unknown field/);
  });
});

describe('entry JSON form', () => {
  it('writes bytes as padded base64 and v first', () => {
    const j = entryToJson(base.event as unknown as Entry);
    expect(Object.keys(j)[0]).toBe('v');
    expect(j['v']).toBe(1);
    expect(j['prev']).toBe(encodeBase64(H));
    expect(j['payloads']).toEqual({ args: encodeBase64(H), result: encodeBase64(H) });
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  it('refuses non-canonical base64, wrong JSON types and null', () => {
    const j = jsonify(base.event) as Raw;
    const b64 = encodeBase64(H); // 'BwcH…Bwc=' : 32 bytes, one pad
    const check = (v: Raw, path: string) => {
      const e = errorOf(() => entryFromJson(v));
      expect(e).toBeInstanceOf(MalformedError);
      expect(e.message.startsWith(`${path}: `), e.message).toBe(true);
    };
    check({ ...j, prev: b64.slice(0, -1) }, 'entry.prev');
    check({ ...j, prev: b64.replace(/c=$/, 'd=') }, 'entry.prev'); // non-zero trailing bits
    check({ ...j, prev: b64.replace('=', '') }, 'entry.prev');
    check({ ...j, prev: ' ' + b64 }, 'entry.prev');
    check({ ...j, prev: encodeBase64(new Uint8Array(32).fill(0xff)).replace(/\//g, '_') }, 'entry.prev'); // base64url
    check({ ...j, prev: Array.from(H) }, 'entry.prev');
    check({ ...j, payloads: { args: toHex(H) } }, 'entry.payloads.args');
    check({ ...j, seq: '3' }, 'entry.seq');
    check({ ...j, seq: 3.0000001 }, 'entry.seq');
    check({ ...j, parent: null }, 'entry.parent');
    check({ ...j, model: null }, 'entry.model');
    check({ ...j, attrs: null }, 'entry.attrs');
    check({ ...j, time: 1e300 }, 'entry.time');
  });

  it('entryFromJson(entryToJson(e)) = e', () => {
    fc.assert(
      fc.property(entryArb, (e) => {
        const j = entryToJson(e);
        expect(entryFromJson(j)).toEqual(e);
        expect(entryFromJson(JSON.parse(JSON.stringify(j)))).toEqual(e);
      }),
      { numRuns }
    );
  });
});

describe('encodeEntry / decodeEntry', () => {
  it('decodeEntry(encodeEntry(e)) = e and encodeEntry(decodeEntry(b)) = b', () => {
    fc.assert(
      fc.property(entryArb, (e) => {
        const b = encodeEntry(e);
        const d = decodeEntry(b);
        expect(d).toEqual(e);
        expect(toHex(encodeEntry(d))).toBe(toHex(b));
      }),
      { numRuns }
    );
  });

  it('is deterministic for equal entries whatever the key order of the objects', () => {
    fc.assert(
      fc.property(entryArb, fc.integer(), (e, seed) => {
        const shuffled = reorder(e, seed);
        expect(toHex(encodeEntry(shuffled))).toBe(toHex(encodeEntry(e)));
        expect(toHex(encodeEntry(entryFromJson(reorder(entryToJson(e), seed + 1))))).toBe(toHex(encodeEntry(e)));
      }),
      { numRuns }
    );
  });

  it('rejects every single-byte change of an encoding, or decodes it to a different entry', () => {
    fc.assert(
      fc.property(entryArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (e, i, x) => {
        const b = encodeEntry(e);
        const m = b.slice();
        m[i % m.length] = m[i % m.length]! ^ x;
        let d: Entry;
        try {
          d = decodeEntry(m);
        } catch (err) {
          expect(err).toBeInstanceOf(MalformedError);
          return;
        }
        expect(toHex(encodeEntry(d))).toBe(toHex(m));
        expect(d).not.toEqual(e);
      }),
      { numRuns: numRuns * 5 }
    );
  });

  it('does not alias the caller’s byte arrays', () => {
    const prev = new Uint8Array(32).fill(1);
    const b = encodeEntry({ type: 'run.close', agent: 'a', run: 'r', seq: 1, prev, time: 0 });
    const d = decodeEntry(b);
    b.fill(0);
    expect(d.type === 'run.close' && d.prev).toEqual(prev);
  });
});

describe('predicates', () => {
  it('isRunEntry and isRegistryEntry', () => {
    for (const raw of Object.values(base)) {
      const e = raw as unknown as Entry;
      expect(isRunEntry(e)).toBe(e.type === 'event' || e.type === 'run.close');
      expect(isRegistryEntry(e)).toBe(e.type.startsWith('agent.'));
    }
  });

  it('isValidId, isValidFieldName', () => {
    expect(isValidId('a')).toBe(true);
    expect(isValidId('svc:planner@acme.example')).toBe(true);
    expect(isValidId('x'.repeat(129))).toBe(false);
    expect(isValidId('a/b')).toBe(false);
    expect(isValidFieldName('gen_ai.usage.input_tokens')).toBe(true);
    expect(isValidFieldName('a:b')).toBe(false);
  });
});

describe('decodeEntry: the one-pass reader of events and run.close', () => {
  /** The general path by hand: canonical CBOR, `v` present, then the schema (entryFromCbor). */
  function reference(b: Uint8Array): Entry {
    const v = decodeCanonical(b, 'entry');
    if (typeof v !== 'object' || v instanceof Uint8Array || Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, 'v')) {
      throw new MalformedError('entry.v: missing');
    }
    return entryFromCbor(v);
  }
  const outcome = (f: () => Entry) => {
    try {
      return `ok ${JSON.stringify(entryToJson(f()))}`;
    } catch (err) {
      if (!(err instanceof MalformedError || err instanceof TooLargeError)) throw err;
      return 'refused';
    }
  };
  const same = (b: Uint8Array) => {
    const want = outcome(() => reference(b));
    expect(outcome(() => decodeEntry(b))).toBe(want);
    if (want.startsWith('ok')) expect(decodeEntry(b)).toEqual(reference(b));
  };

  /** Text that is mostly ASCII (what the reader handles itself), sometimes not. */
  const asciiText = (min: number, max: number) =>
    fc.oneof({ weight: 4, arbitrary: fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: min, maxLength: max }) }, { weight: 1, arbitrary: fc.string({ minLength: min, maxLength: max }) });
  const asciiEventArb = fc
    .tuple(eventArb, fc.option(fc.record({ provider: asciiText(0, 12), name: asciiText(0, 300), version: fc.option(asciiText(0, 12), { nil: undefined }) }), { nil: undefined }), fc.option(fc.dictionary(fc.stringMatching(/^[A-Za-z0-9_.-]{0,70}$/), fc.oneof(asciiText(0, 270), fc.maxSafeNat(), fc.boolean()), { maxKeys: 34 }), { nil: undefined }))
    .map(([e, model, attrs]) => {
      const out: Record<string, unknown> = { ...e };
      if (model !== undefined) out['model'] = Object.fromEntries(Object.entries(model).filter(([, x]) => x !== undefined));
      if (attrs !== undefined) out['attrs'] = attrs;
      return out;
    });
  /** The CBOR value of an entry (valid or not, so built without encodeEntry's checks). */
  const valueOf = (e: Record<string, unknown>): Record<string, CborValue> => {
    const out: Record<string, CborValue> = { v: 1 };
    for (const [k, x] of Object.entries(e)) if (x !== undefined) out[k] = x as CborValue;
    return out;
  };
  const fieldArb = fc.constantFrom('v', 'type', 'agent', 'run', 'seq', 'prev', 'parent', 'kind', 'time', 'model', 'attrs', 'payloads', 'x', 'key', 'index');
  /** One change to a CBOR value: a top-level or nested field removed, added or replaced. */
  const mutate = (v: Record<string, CborValue>, how: number, field: string, value: CborValue, nested: string): Record<string, CborValue> => {
    const out = { ...v };
    const inner = out[nested];
    const target = how >= 3 && inner !== undefined && typeof inner === 'object' && !(inner instanceof Uint8Array) && !Array.isArray(inner) ? { ...(inner as Record<string, CborValue>) } : out;
    const keys = Object.keys(target);
    if (how % 3 === 0) delete target[keys[(field.length + how) % Math.max(1, keys.length)] ?? field];
    else if (how % 3 === 1) target[field] = value;
    else target[keys[field.length % Math.max(1, keys.length)] ?? field] = value;
    if (target !== out) out[nested] = target;
    return out;
  };
  const valueArb = fc.oneof(cborArb, fc.constantFrom<CborValue>(0, 1, 2, 'event', 'run.close', 'agent.register', 'decision', 'x-custom', 'é', '', new Uint8Array(32), new Uint8Array(31), true, 2 ** 53 - 1, 2 ** 32, {}, { provider: 'p', name: 'n' }));

  it('puts the keys it reads in canonical order', () => {
    const keys = ['v', 'run', 'seq', 'kind', 'prev', 'time', 'type', 'agent', 'attrs', 'model', 'parent', 'payloads'];
    expect([...keys].sort((a, b) => compareCborKeys(utf8(a), utf8(b)))).toEqual(keys);
    expect(['name', 'version', 'provider'].sort((a, b) => compareCborKeys(utf8(a), utf8(b)))).toEqual(['name', 'version', 'provider']);
  });

  it('reads ASCII events and run.closes itself, and leaves other types and non-ASCII text to the general path', () => {
    const ascii = { type: 'event', agent: 'agent-7', run: 'run-1', seq: 2, prev: new Uint8Array(32).fill(1), parent: 1, kind: 'tool_call', time: 1_790_000_000_000, model: { provider: 'anthropic', name: 'claude', version: '4' }, attrs: { 'gen_ai.tool.name': 'refunds.create', n: 3, ok: true }, payloads: { prompt: new Uint8Array(32).fill(2) } };
    const b = referenceEncode(valueOf(ascii));
    expect(readRunEntry(b)).toEqual(decodeEntry(b));
    expect(readRunEntry(b)).toEqual(reference(b));
    const close = referenceEncode(valueOf({ type: 'run.close', agent: 'a', run: 'r', seq: 3, prev: new Uint8Array(32), time: 9 }));
    expect(readRunEntry(close)).toEqual(reference(close));
    expect(readRunEntry(referenceEncode(valueOf({ ...ascii, attrs: { t: 'café' } })))).toBeUndefined();
    expect(readRunEntry(encodeEntry({ type: 'agent.register', agent: 'agent-1', key: KEYS['agent-1']![0]!.vkey, time: 1 }))).toBeUndefined();
    // Over random valid ASCII events and run.closes, the reader answers for most.
    let read = 0;
    const sample = fc.sample(fc.oneof(asciiEventArb as fc.Arbitrary<unknown>, runCloseArb), 300);
    for (const e of sample) if (readRunEntry(referenceEncode(valueOf(e as Record<string, unknown>))) !== undefined) read++;
    expect(read).toBeGreaterThan(sample.length / 3);
  });

  it('returns what the general path returns for valid entries of every type', () => {
    fc.assert(fc.property(fc.oneof(entryArb, asciiEventArb as fc.Arbitrary<unknown>, runCloseArb), (e) => same(referenceEncode(valueOf(e as Record<string, unknown>)))), { numRuns: numRuns * 5 });
  });

  it('accepts and refuses exactly what the general path does, for any field removed, added or replaced, at the top or inside model, attrs and payloads', () => {
    fc.assert(
      fc.property(fc.oneof(asciiEventArb as fc.Arbitrary<unknown>, runCloseArb), fc.nat(5), fieldArb, valueArb, fc.constantFrom('model', 'attrs', 'payloads'), (e, how, field, value, nested) => {
        same(referenceEncode(mutate(valueOf(e as Record<string, unknown>), how, field, value, nested)));
      }),
      { numRuns: numRuns * 10 }
    );
  });

  it('accepts and refuses exactly what the general path does, for any byte changed, cut or inserted', () => {
    fc.assert(
      fc.property(fc.oneof(asciiEventArb as fc.Arbitrary<unknown>, runCloseArb), fc.nat(), fc.nat(255), fc.constantFrom('flip', 'cut', 'insert'), (e, at, byte, how) => {
        const b = referenceEncode(valueOf(e as Record<string, unknown>));
        const i = at % b.length;
        same(how === 'flip' ? Uint8Array.from(b, (x, k) => (k === i ? byte : x)) : how === 'cut' ? b.subarray(0, i) : concatBytes(b.subarray(0, i), Uint8Array.of(byte), b.subarray(i)));
      }),
      { numRuns: numRuns * 10 }
    );
  });

  it('agrees at the edges: integer heads, text lengths, map sizes', () => {
    const base = { type: 'event', agent: 'a', run: 'r', seq: 1, prev: new Uint8Array(32).fill(7), kind: 'decision', time: 5 };
    const cases: Array<Record<string, unknown>> = [];
    for (const n of [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1]) cases.push({ ...base, time: n }, { ...base, seq: n + 1, parent: n });
    for (const n of [63, 64, 65, 66, 67]) cases.push({ ...base, kind: 'x-' + 'a'.repeat(n - 2) });
    for (const n of [127, 128, 129]) cases.push({ ...base, agent: 'a'.repeat(n) }, { ...base, run: 'r'.repeat(n) });
    for (const n of [0, 1, 23, 24, 31, 32, 33]) cases.push({ ...base, attrs: Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${String(i).padStart(2, '0')}`, i])) });
    for (const n of [0, 1, 16, 17]) cases.push({ ...base, payloads: Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${String(i).padStart(2, '0')}`, new Uint8Array(32)])) });
    for (const n of [0, 1, 255, 256, 257]) cases.push({ ...base, attrs: { t: 'x'.repeat(n) } }, { ...base, model: { provider: 'p', name: 'n'.repeat(n) } });
    for (const k of [23, 24, 63, 64, 65]) cases.push({ ...base, attrs: { ['k'.repeat(k)]: true } });
    cases.push({ ...base, attrs: JSON.parse('{"__proto__": 1, "constructor": "c", "toString": false}') as Record<string, unknown> }, { ...base, payloads: Object.defineProperty({}, '__proto__', { value: new Uint8Array(32), enumerable: true }) });
    cases.push({ ...base, seq: 0 }, { ...base, seq: 0, prev: undefined }, { ...base, parent: 1 }, { ...base, parent: 0 }, { type: 'run.close', agent: 'a', run: 'r', seq: 0, time: 1 });
    for (const c of cases) same(referenceEncode(valueOf(c)));
  });
});
