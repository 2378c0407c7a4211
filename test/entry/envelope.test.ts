import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MalformedError, TooLargeError } from '../../src/core/errors.js';
import { concatBytes, toHex, utf8 } from '../../src/core/encoding.js';
import { leafHash } from '../../src/core/hash.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import { nobleEd25519 } from '../../src/note/ed25519.js';
import { generateKey, parseSignerKey, parseVerifierKey } from '../../src/note/keys.js';
import {
  decodeCanonical,
  decodeEntry,
  decodeEnvelope,
  encodeCanonical,
  encodeEntry,
  ENTRY_SIGNATURE_CONTEXT,
  entrySignerKind,
  entrySigningMessage,
  entryToJson,
  envelope,
  MAX_ENVELOPE_SIZE,
  readEnvelope,
  signedEntryFromJson,
  signedEntryToJson,
  signEntry,
  verifyEntrySignature,
  type Entry,
  type SignedEntry,
} from '../../src/entry/index.js';
import { entryArb, fixedKey, numRuns } from './helpers.js';

const key = fixedKey('agent-1', 'envelope test key');
const other = fixedKey('agent-1', 'envelope test other key');
const pub = parseVerifierKey(key.vkey).publicKey;
const otherPub = parseVerifierKey(other.vkey).publicKey;

const event: Entry = {
  type: 'event',
  agent: 'agent-1',
  run: 'r',
  seq: 0,
  kind: 'decision',
  time: 1767225600000,
  attrs: { choice: 'refund' },
  payloads: { reasoning: new Uint8Array(32).fill(3) },
};

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** True if `leaf` fails to decode as an envelope or its signature fails under `pub`. */
function refused(leaf: Uint8Array, publicKey: Uint8Array = pub): boolean {
  let s: SignedEntry;
  try {
    s = decodeEnvelope(leaf);
  } catch (e) {
    if (!(e instanceof MalformedError) && !(e instanceof TooLargeError)) throw e;
    return true;
  }
  return !verifyEntrySignature(s, publicKey, nodeEd25519);
}

describe('signEntry / verifyEntrySignature', () => {
  it('signs "glasslog/entry/v1\\n" || entry bytes', () => {
    const s = signEntry(event, key.skey);
    expect(ENTRY_SIGNATURE_CONTEXT).toBe('glasslog/entry/v1\n');
    expect(s.entryBytes).toEqual(encodeEntry(event));
    expect(entrySigningMessage(s.entryBytes)).toEqual(concatBytes(utf8('glasslog/entry/v1\n'), s.entryBytes));
    expect(nobleEd25519.verify(pub, entrySigningMessage(s.entryBytes), s.signature)).toBe(true);
    expect(verifyEntrySignature(s, pub)).toBe(true);
    expect(verifyEntrySignature(s, pub, nodeEd25519)).toBe(true);
    expect(s.entry).toEqual(event);
  });

  it('builds the envelope as the canonical map { sig, entry } and hashes it as an RFC 6962 leaf', () => {
    const s = signEntry(event, key.skey);
    expect(s.bytes).toEqual(encodeCanonical({ entry: s.entryBytes, sig: s.signature }));
    // "sig" (63 736967) sorts before "entry" (65 656e747279): shorter key first.
    expect(toHex(s.bytes.subarray(0, 7))).toBe('a2637369675840');
    expect(toHex(s.bytes.subarray(71, 77))).toBe('65656e747279');
    expect(s.leafHash).toEqual(leafHash(s.bytes));
    expect(s.bytes.length).toBeLessThanOrEqual(MAX_ENVELOPE_SIZE);
  });

  it('gives the same bytes with the noble and node:crypto backends', () => {
    expect(signEntry(event, key.skey, nodeEd25519).bytes).toEqual(signEntry(event, key.skey).bytes);
  });

  it('fails with another key, and never throws on bad input', () => {
    const s = signEntry(event, key.skey);
    expect(verifyEntrySignature(s, otherPub)).toBe(false);
    expect(verifyEntrySignature(s, otherPub, nodeEd25519)).toBe(false);
    expect(verifyEntrySignature(s, new Uint8Array(31))).toBe(false);
    expect(verifyEntrySignature(s, 'key' as unknown as Uint8Array)).toBe(false);
    expect(verifyEntrySignature({ ...s, signature: new Uint8Array(63) }, pub)).toBe(false);
    expect(verifyEntrySignature({ ...s, entryBytes: null as unknown as Uint8Array }, pub)).toBe(false);
    expect(verifyEntrySignature(null as unknown as SignedEntry, pub)).toBe(false);
    const throwing = { ...nobleEd25519, verify: () => { throw new Error('boom'); } };
    expect(verifyEntrySignature(s, pub, throwing)).toBe(false);
  });

  it('fails for a signature over the entry without the context', () => {
    const entryBytes = encodeEntry(event);
    const { seed } = parseSignerKey(key.skey);
    const bare = envelope(entryBytes, nodeEd25519.sign(seed, entryBytes));
    expect(verifyEntrySignature(bare, pub)).toBe(false);
    expect(verifyEntrySignature(envelope(entryBytes, nodeEd25519.sign(seed, entrySigningMessage(entryBytes))), pub)).toBe(true);
  });

  it('refuses a cosignature (type 0x04) key and invalid entries', () => {
    expect(() => signEntry(event, generateKey('agent-1', 4).skey)).toThrow(MalformedError);
    expect(() => signEntry({ ...event, seq: 1 }, key.skey)).toThrow(/^entry\.prev: /);
  });

  it('signature fails with another key (property)', () => {
    fc.assert(
      fc.property(entryArb, (e) => {
        const s = signEntry(e, key.skey, nodeEd25519);
        expect(verifyEntrySignature(s, pub, nodeEd25519)).toBe(true);
        expect(verifyEntrySignature(s, otherPub, nodeEd25519)).toBe(false);
        expect(verifyEntrySignature(s, otherPub)).toBe(false);
      }),
      { numRuns }
    );
  });

  it('entrySignerKind: agent for run entries, log for the rest', () => {
    expect(entrySignerKind(event)).toBe('agent');
    expect(entrySignerKind({ type: 'run.close', agent: 'a', run: 'r', seq: 0, time: 0 })).toBe('agent');
    expect(entrySignerKind({ type: 'payload.erase', index: 0, name: 'a', reason: '', time: 0 })).toBe('log');
    expect(entrySignerKind({ type: 'agent.register', agent: 'a', key: 'k', time: 0 })).toBe('log');
  });
});

describe('envelope / decodeEnvelope', () => {
  it('decodeEnvelope(envelope(…).bytes) round-trips', () => {
    fc.assert(
      fc.property(entryArb, (e) => {
        const s = signEntry(e, key.skey, nodeEd25519);
        const d = decodeEnvelope(s.bytes);
        expect(d.entry).toEqual(e);
        expect(d.entryBytes).toEqual(s.entryBytes);
        expect(d.signature).toEqual(s.signature);
        expect(d.bytes).toEqual(s.bytes);
        expect(d.leafHash).toEqual(s.leafHash);
        expect(envelope(s.entryBytes, s.signature)).toEqual(s);
      }),
      { numRuns }
    );
  });

  it('any single-byte change makes the envelope fail to decode or fail verification (property)', () => {
    fc.assert(
      fc.property(entryArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (e, i, x) => {
        const leaf = signEntry(e, key.skey, nodeEd25519).bytes.slice();
        leaf[i % leaf.length] = leaf[i % leaf.length]! ^ x;
        expect(refused(leaf)).toBe(true);
      }),
      { numRuns: numRuns * 5 }
    );
  });

  it('every byte of an envelope matters: xor 0x01, 0x80, 0xff at every position', () => {
    const leaf = signEntry(event, key.skey).bytes;
    const bad: string[] = [];
    for (let i = 0; i < leaf.length; i++) {
      for (const x of [0x01, 0x80, 0xff]) {
        const m = leaf.slice();
        m[i] = m[i]! ^ x;
        if (!refused(m)) bad.push(`${i}^${x}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('every strict prefix and every extension is refused', () => {
    const leaf = signEntry(event, key.skey).bytes;
    for (let n = 0; n < leaf.length; n++) expect(refused(leaf.subarray(0, n)), `prefix ${n}`).toBe(true);
    expect(refused(concatBytes(leaf, Uint8Array.of(0)))).toBe(true);
  });

  it('refuses envelopes with wrong, missing or extra fields', () => {
    const s = signEntry(event, key.skey);
    const cases: [Uint8Array, RegExp][] = [
      [encodeCanonical({ entry: s.entryBytes }), /^envelope\.sig: missing/],
      [encodeCanonical({ sig: s.signature }), /^envelope\.entry: missing/],
      [encodeCanonical({ entry: s.entryBytes, sig: s.signature, x: 1 }), /^envelope\.x: unknown field/],
      [encodeCanonical({ entry: s.entryBytes, sig: s.signature.subarray(0, 63) }), /^envelope\.sig: 63 bytes/],
      [encodeCanonical({ entry: s.entryBytes, sig: toHex(s.signature) }), /^envelope\.sig: expected bytes/],
      [encodeCanonical({ entry: 'x', sig: s.signature }), /^envelope\.entry: expected bytes/],
      [encodeCanonical([s.entryBytes, s.signature]), /^envelope: expected a map/],
      [encodeCanonical(s.entryBytes), /^envelope: expected a map/],
      [encodeCanonical({ entry: encodeCanonical({ v: 1, type: 'event' }), sig: s.signature }), /^entry\./],
      [encodeCanonical({ entry: concatBytes(s.entryBytes, Uint8Array.of(0)), sig: s.signature }), /^entry: 1 trailing/],
    ];
    for (const [b, re] of cases) {
      const e = errorOf(() => decodeEnvelope(b));
      expect(e, re.source).toBeInstanceOf(MalformedError);
      expect((e as Error).message).toMatch(re);
    }
  });

  it('refuses an envelope over MAX_ENVELOPE_SIZE before decoding it', () => {
    expect(errorOf(() => decodeEnvelope(new Uint8Array(MAX_ENVELOPE_SIZE + 1)))).toBeInstanceOf(TooLargeError);
    expect(MAX_ENVELOPE_SIZE).toBe(16464);
  });

  it('envelope() refuses a bad signature length or a non-canonical entry', () => {
    const b = encodeEntry(event);
    expect(() => envelope(b, new Uint8Array(65))).toThrow(/^envelope\.sig: 65 bytes/);
    expect(() => envelope(concatBytes(b, Uint8Array.of(0)), new Uint8Array(64))).toThrow(MalformedError);
    expect(() => envelope('x' as unknown as Uint8Array, new Uint8Array(64))).toThrow(TypeError);
  });
});

const entryArbSample = (): Entry => ({ type: 'event', agent: 'agent-1', run: 'r', seq: 0, kind: 'decision', time: 1 });

/** `leaf` with byte `at` set to `byte`, cut there, or `byte` inserted there (or unchanged). */
function mutate(leaf: Uint8Array, at: number, byte: number, how: 'flip' | 'cut' | 'insert' | 'none'): Uint8Array {
  const i = at % leaf.length;
  if (how === 'flip') return Uint8Array.from(leaf, (b, k) => (k === i ? byte : b));
  if (how === 'cut') return leaf.subarray(0, i);
  if (how === 'insert') return concatBytes(leaf.subarray(0, i), Uint8Array.of(byte), leaf.subarray(i));
  return leaf;
}

describe('decodeEnvelope: the canonical-layout fast path', () => {
  /** The general path, by hand: decodeCanonical, exactly {entry, sig}, a 64-byte sig, decodeEntry. */
  function reference(leaf: Uint8Array): { entryBytes: Uint8Array; signature: Uint8Array } {
    const v = decodeCanonical(leaf, 'envelope') as Record<string, unknown>;
    if (typeof v !== 'object' || v instanceof Uint8Array || Array.isArray(v)) throw new MalformedError('not a map');
    const keys = Object.keys(v).sort();
    if (keys.join(',') !== 'entry,sig') throw new MalformedError('fields');
    const { entry, sig } = v as { entry: unknown; sig: unknown };
    if (!(entry instanceof Uint8Array) || !(sig instanceof Uint8Array) || sig.length !== 64) throw new MalformedError('types');
    decodeEntry(entry);
    return { entryBytes: entry, signature: sig };
  }
  const outcome = (f: () => { entryBytes: Uint8Array; signature: Uint8Array }) => {
    try {
      const r = f();
      return `ok ${toHex(r.entryBytes)} ${toHex(r.signature)}`;
    } catch (err) {
      if (!(err instanceof MalformedError || err instanceof TooLargeError)) throw err;
      return 'refused';
    }
  };

  it('accepts and refuses exactly what the general parser does, for any change to a valid envelope', () => {
    const key = fixedKey('agent-1', 'fast-path');
    fc.assert(
      fc.property(entryArb, fc.nat(), fc.nat(255), fc.constantFrom('flip', 'cut', 'insert', 'none'), (entry, at, byte, how) => {
        const leaf = signEntry(entry, key.skey, nodeEd25519).bytes;
        const mutated = mutate(leaf, at, byte, how);
        expect(outcome(() => decodeEnvelope(mutated))).toBe(outcome(() => reference(mutated)));
      }),
      { numRuns }
    );
  });

  it('readEnvelope gives what decodeEnvelope gives, as views into the leaf, for any change to a valid envelope', () => {
    const key = fixedKey('agent-1', 'fast-path');
    fc.assert(
      fc.property(entryArb, fc.nat(), fc.nat(255), fc.constantFrom('flip', 'cut', 'insert', 'none'), (entry, at, byte, how) => {
        const leaf = signEntry(entry, key.skey, nodeEd25519).bytes;
        const mutated = mutate(leaf, at, byte, how);
        let want: string;
        try {
          const d = decodeEnvelope(mutated);
          want = `ok ${JSON.stringify(entryToJson(d.entry))} ${toHex(d.entryBytes)} ${toHex(d.signature)}`;
        } catch (err) {
          want = `refused ${(err as Error).message}`;
        }
        let got: string;
        try {
          const v = readEnvelope(mutated);
          got = `ok ${JSON.stringify(entryToJson(v.entry))} ${toHex(v.entryBytes)} ${toHex(v.signature)}`;
          if (how === 'none') {
            // Views, not copies: the leaf's own bytes.
            expect(v.signature.buffer).toBe(mutated.buffer);
            expect(v.entryBytes.buffer).toBe(mutated.buffer);
          }
        } catch (err) {
          got = `refused ${(err as Error).message}`;
        }
        expect(got).toBe(want);
      }),
      { numRuns }
    );
  });

  it('decodeEnvelope copies: changing the leaf afterwards changes nothing it returned', () => {
    const key = fixedKey('agent-1', 'fast-path');
    const leaf = new Uint8Array(signEntry(entryArbSample(), key.skey, nodeEd25519).bytes);
    const d = decodeEnvelope(leaf);
    const before = [toHex(d.bytes), toHex(d.entryBytes), toHex(d.signature)];
    leaf.fill(0);
    expect([toHex(d.bytes), toHex(d.entryBytes), toHex(d.signature)]).toEqual(before);
  });

  it('refuses a non-shortest length head for the entry, as the general parser does', () => {
    const key = fixedKey('agent-1', 'fast-path');
    const e = signEntry(entryArbSample(), key.skey, nodeEd25519);
    const n = e.entryBytes.length;
    const long = concatBytes(Uint8Array.of(0xa2, 0x63, ...utf8('sig'), 0x58, 0x40), e.signature, Uint8Array.of(0x65, ...utf8('entry'), 0x59, n >> 8, n & 0xff), e.entryBytes);
    expect(n).toBeLessThan(256);
    expect(() => decodeEnvelope(long)).toThrow(/shortest form/);
  });
});

describe('signed entry JSON form', () => {
  it('round-trips and rebuilds the same leaf', () => {
    fc.assert(
      fc.property(entryArb, (e) => {
        const s = signEntry(e, key.skey, nodeEd25519);
        const j = JSON.parse(JSON.stringify(signedEntryToJson(s))) as unknown;
        expect(signedEntryFromJson(j)).toEqual(s);
      }),
      { numRuns }
    );
  });

  it('is strict', () => {
    const j = signedEntryToJson(signEntry(event, key.skey));
    expect(() => signedEntryFromJson({ ...j, extra: 1 })).toThrow(/^extra: unknown field/);
    expect(() => signedEntryFromJson({ entry: j.entry })).toThrow(/^sig: missing/);
    expect(() => signedEntryFromJson({ ...j, sig: j.sig.slice(4) })).toThrow(/^sig: /);
    expect(() => signedEntryFromJson({ ...j, entry: { ...j.entry, x: 1 } })).toThrow(/^entry\.x: unknown field/);
    expect(() => signedEntryFromJson([j])).toThrow(MalformedError);
  });
});
