import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MalformedError } from '../../src/core/errors.js';
import { fromUtf8, toHex, utf8 } from '../../src/core/encoding.js';
import {
  COSIGNATURE_V1_SIZE,
  cosignatureMessage,
  cosignatureTimestamp,
  newCosignatureVerifier,
  newCosigner,
} from '../../src/note/cosignature.js';
import {
  formatNote,
  InvalidSignatureError,
  newSigner,
  newVerifier,
  openNote,
  parseNote,
  signNote,
  UnverifiedNoteError,
} from '../../src/note/note.js';
import { ALG_COSIGNATURE_V1, formatKeyId, generateKey, isValidKeyName, parseSignerKey } from '../../src/note/keys.js';

const parseSignerKeySeed = (skey: string) => parseSignerKey(skey).seed;
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import { numRuns, vectors } from './vectors.js';

const V = vectors.cosignedCheckpoints[0]!;
const label = (s: { name: string; keyId: number }) => `${s.name}+${formatKeyId(s.keyId)}`;

describe('cosignatureMessage', () => {
  it('is "cosignature/v1\\ntime <t>\\n" followed by the checkpoint text (tlog-cosignature example)', () => {
    expect(fromUtf8(cosignatureMessage(V.text, V.timestamp), 'msg')).toBe(V.cosignatureMessage);
  });

  it('writes the timestamp in decimal without leading zeroes', () => {
    expect(fromUtf8(cosignatureMessage('x\n', 0), 'msg')).toBe('cosignature/v1\ntime 0\nx\n');
    expect(fromUtf8(cosignatureMessage('x\n', 2 ** 53 - 1), 'msg')).toBe('cosignature/v1\ntime 9007199254740991\nx\n');
  });

  it('rejects bad texts and timestamps', () => {
    expect(() => cosignatureMessage('no newline', 1)).toThrow(MalformedError);
    for (const t of [-1, 1.5, 2 ** 53, Number.NaN]) expect(() => cosignatureMessage('x\n', t)).toThrow(RangeError);
  });
});

describe('newCosigner', () => {
  it('reproduces the DERIVED cosigned checkpoint of specs.md §6.9 byte for byte', () => {
    for (const impl of [undefined, nodeEd25519]) {
      const logSigned = signNote(V.text, [newSigner(V.logSkey, impl)]);
      const cosig = newCosigner(V.cosignerSkey, impl).cosign(V.text, V.timestamp);
      expect(cosig.signature.length).toBe(COSIGNATURE_V1_SIZE);
      expect(formatNote(V.text, [...parseNote(logSigned).signatures, cosig])).toBe(V.note);
      // The same note through signNote's `existing` argument.
      expect(signNote(V.text, [newSigner(V.logSkey, impl)], [cosig]).split('\n').length).toBe(V.note.split('\n').length);
    }
  });

  it('puts the big-endian timestamp before the Ed25519 signature', () => {
    const cosig = newCosigner(V.cosignerSkey).cosign(V.text, V.timestamp);
    expect(toHex(cosig.signature.subarray(0, 8))).toBe('00000000641850cb');
    expect(V.timestamp).toBe(0x641850cb);
    const max = newCosigner(V.cosignerSkey).cosign(V.text, 2 ** 53 - 1);
    expect(toHex(max.signature.subarray(0, 8))).toBe('001fffffffffffff');
  });

  it('refuses timestamps that are not safe integers > 0', () => {
    const c = newCosigner(V.cosignerSkey);
    for (const t of [0, -1, 1.5, 2 ** 53, Number.POSITIVE_INFINITY]) expect(() => c.cosign(V.text, t)).toThrow(RangeError);
    expect(() => c.cosign('no newline', 1)).toThrow(MalformedError);
  });

  it('refuses type 0x01 keys', () => {
    expect(() => newCosigner(V.logSkey)).toThrow('use newSigner');
    expect(() => newCosigner('PRIVATE+KEY+x+00000000+AA==')).toThrow(MalformedError);
  });
});

describe('newCosignatureVerifier', () => {
  const logVerifier = newVerifier(V.logVkey);
  const w1 = newCosignatureVerifier(V.cosignerVkey);

  it('opens the cosigned checkpoint with the log key and the cosigner key', () => {
    const o = openNote(V.note, [logVerifier, w1]);
    expect(o.text).toBe(V.text);
    expect(o.verified.map(label)).toEqual(['example.com/behind-the-sofa+bed5581b', 'witness.example.com/w1+d46a2b1b']);
    expect(w1.timestampOf(o.verified[1]!.signature)).toBe(V.timestamp);
  });

  it('treats the cosignature as unknown when only the log key is known', () => {
    const o = openNote(V.note, [logVerifier]);
    expect(o.unverified.map(label)).toEqual(['witness.example.com/w1+d46a2b1b']);
  });

  it('rejects the note when the timestamp was changed after signing', () => {
    const n = parseNote(V.note);
    const cosig = n.signatures[1]!;
    const changed = cosig.signature.slice();
    changed[7]! ^= 1;
    const msg = formatNote(n.text, [n.signatures[0]!, { ...cosig, signature: changed }]);
    expect(() => openNote(msg, [logVerifier, w1])).toThrow(InvalidSignatureError);
    expect(() => openNote(msg, [logVerifier, w1])).toThrow('witness.example.com/w1+d46a2b1b');
  });

  it('rejects a cosignature over a different checkpoint', () => {
    const cosig = newCosigner(V.cosignerSkey).cosign(V.text, V.timestamp);
    const other = V.text.replace('20852163', '20852164');
    const msg = formatNote(other, [cosig]);
    expect(() => openNote(msg, [w1])).toThrow(InvalidSignatureError);
  });

  it('verify returns false, never throws, on malformed payloads', () => {
    const text = utf8(V.text);
    const good = parseNote(V.note).signatures[1]!.signature;
    expect(w1.verify(text, good)).toBe(true);
    expect(w1.verify(text, good.subarray(0, 71))).toBe(false);
    expect(w1.verify(text, Uint8Array.of(...good, 0))).toBe(false);
    expect(w1.verify(text, new Uint8Array(0))).toBe(false);
    const big = good.slice();
    big[0] = 0x80; // ≥ 2^63: invalid per tlog-cosignature
    expect(w1.verify(text, big)).toBe(false);
    const unsafe = good.slice();
    unsafe.set([0, 0x20, 0, 0, 0, 0, 0, 0]); // 2^53: not a safe integer
    expect(w1.verify(text, unsafe)).toBe(false);
    expect(w1.verify(text, undefined as unknown as Uint8Array)).toBe(false);
  });

  it('timestampOf rejects malformed payloads with MalformedError', () => {
    expect(() => w1.timestampOf(new Uint8Array(71))).toThrow('cosignature is 71 bytes, want 72');
    const big = new Uint8Array(72);
    big[0] = 0x80;
    expect(() => w1.timestampOf(big)).toThrow('2^63 or more');
    big[0] = 0x7f;
    expect(() => w1.timestampOf(big)).toThrow('exceeds 2^53-1');
  });

  it('accepts timestamp 0, which cosignature/v1 does not forbid', () => {
    const zero = new Uint8Array(72);
    expect(w1.timestampOf(zero)).toBe(0);
  });

  it('refuses type 0x01 keys and a type 0x04 key id computed with type 0x01', () => {
    expect(() => newCosignatureVerifier(V.logVkey)).toThrow('use newVerifier');
    const wrongId = vectors.verifierKeys.invalid.find((k) => k.reason.includes('0x04'))!;
    expect(() => newCosignatureVerifier(wrongId.vkey)).toThrow(MalformedError);
  });

  it('does not take a type 0x01 note signature by the same seed for a cosignature', () => {
    const seed = parseSignerKeySeed(V.cosignerSkey);
    const { skey } = generateKey('witness.example.com/w1', 1, () => seed);
    const msg = signNote(V.text, [newSigner(skey)]);
    // The type byte is hashed into the key id, so the note key is simply unknown...
    expect(parseNote(msg).signatures[0]!.keyId).not.toBe(w1.keyId);
    expect(() => openNote(msg, [w1])).toThrow(UnverifiedNoteError);
    // ...and its 64-byte signature could not pass as a 72-byte cosignature anyway.
    expect(w1.verify(utf8(V.text), parseNote(msg).signatures[0]!.signature)).toBe(false);
  });
});

describe('cosignatureTimestamp', () => {
  it('reads the timestamps of the spec and real-world cosignatures', () => {
    let n = 0;
    for (const v of vectors.parseOnly) {
      const sigs = parseNote(v.note).signatures;
      v.signatures.forEach((want, i) => {
        if (want.timestamp === undefined) return;
        expect(cosignatureTimestamp(sigs[i]!.signature), v.source).toBe(want.timestamp);
        n++;
      });
    }
    expect(n).toBe(3);
  });
});

describe('cosignature properties', () => {
  const name = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter(isValidKeyName);
  const text = fc.string({ maxLength: 60 }).map((s) => s.replace(/[\u0000-\u001f]/g, '') + '\n');

  it('verifies what it cosigns, and reads back the timestamp', () => {
    fc.assert(
      fc.property(name, fc.uint8Array({ minLength: 32, maxLength: 32 }), text, fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (n, seed, t, ts) => {
        const { skey, vkey } = generateKey(n, ALG_COSIGNATURE_V1, () => seed);
        const sig = newCosigner(skey, nodeEd25519).cosign(t, ts);
        const v = newCosignatureVerifier(vkey, nodeEd25519);
        const o = openNote(formatNote(t, [sig]), [v]);
        expect(v.timestampOf(o.verified[0]!.signature)).toBe(ts);
      }),
      { numRuns }
    );
  });

  it('fails after any bit flip in the cosignature payload', () => {
    const w1 = newCosignatureVerifier(V.cosignerVkey, nodeEd25519);
    const good = parseNote(V.note).signatures[1]!.signature;
    fc.assert(
      fc.property(fc.nat({ max: COSIGNATURE_V1_SIZE * 8 - 1 }), (bit) => {
        const s = good.slice();
        s[bit >> 3]! ^= 1 << (bit & 7);
        expect(w1.verify(utf8(V.text), s)).toBe(false);
      }),
      { numRuns: COSIGNATURE_V1_SIZE * 8 }
    );
  });

  it('gives no known signature when only an unknown cosigner signed', () => {
    const { skey } = generateKey('other.example/w', ALG_COSIGNATURE_V1);
    const msg = formatNote(V.text, [newCosigner(skey).cosign(V.text, 1)]);
    expect(() => openNote(msg, [newCosignatureVerifier(V.cosignerVkey)])).toThrow(UnverifiedNoteError);
  });
});
