import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MalformedError, TooLargeError, VerificationError } from '../../src/core/errors.js';
import { decodeBase64, encodeBase64, equalBytes, fromHex, utf8 } from '../../src/core/encoding.js';
import {
  checkNoteText,
  formatNote,
  InvalidSignatureError,
  MAX_NOTE_SIZE,
  MAX_SIGNATURES,
  newSigner,
  newVerifier,
  openNote,
  parseNote,
  signNote,
  UnverifiedNoteError,
  type NoteSignature,
  type NoteVerifier,
} from '../../src/note/note.js';
import { formatKeyId, generateKey, isValidKeyName } from '../../src/note/keys.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import { notRejected, numRuns, singleByteChanges, vectors } from './vectors.js';

const label = (s: NoteSignature) => `${s.name}+${formatKeyId(s.keyId)}`;
const PETER_SKEY = vectors.ed25519Keys[0]!.skey;
const PETER_VKEY = vectors.ed25519Keys[0]!.vkey;
const GO_TEXT = vectors.signing[0]!.text;
const GO_NOTE = vectors.signing[0]!.note;

function rejectedNoteInput(v: (typeof vectors.rejectedNotes)[number]): string | Uint8Array {
  return v.noteHex !== undefined ? fromHex(v.noteHex, 'vector') : v.note!;
}

/** Arbitrary valid note text: no control characters but \n, ends in \n. */
const noteText = fc
  .array(fc.string({ unit: 'grapheme', maxLength: 30 }), { minLength: 1, maxLength: 5 })
  .map((lines) => lines.map((l) => l.replace(/[\u0000-\u001f]/g, '')).join('\n') + '\n');
const keyName = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter(isValidKeyName);
const noteSignature = fc.record({
  name: keyName,
  keyId: fc.nat({ max: 0xffffffff }),
  signature: fc.uint8Array({ minLength: 1, maxLength: 100 }),
});

describe('parseNote', () => {
  it('parses every note vector into its text and signatures', () => {
    for (const v of [...vectors.notes, ...vectors.signing]) {
      const n = parseNote(v.note);
      expect(n.text, v.source).toBe(v.text);
      expect(formatNote(n.text, n.signatures), v.source).toBe(v.note);
    }
  });

  it('decodes the key id and length of signatures by unpublished keys', () => {
    for (const v of vectors.parseOnly) {
      const n = parseNote(v.note);
      expect(n.text, v.source).toBe(v.text);
      expect(n.signatures.map((s) => ({ name: s.name, keyId: formatKeyId(s.keyId), length: s.signature.length }))).toEqual(
        v.signatures.map(({ name, keyId, length }) => ({ name, keyId, length }))
      );
      expect(formatNote(n.text, n.signatures)).toBe(v.note);
    }
  });

  it('rejects every malformed vector (go-note TestOpen badMsgs) with MalformedError', () => {
    for (const v of vectors.rejectedNotes.filter((r) => r.error === 'malformed')) {
      expect(() => parseNote(rejectedNoteInput(v)), v.source).toThrow(MalformedError);
    }
  });

  it('explains what is wrong', () => {
    expect(() => parseNote(GO_TEXT)).toThrow('malformed note: no blank line before the signatures');
    expect(() => parseNote(GO_TEXT + '\n')).toThrow('malformed note: no signature lines');
    expect(() => parseNote(GO_NOTE.slice(0, -1))).toThrow('does not end in a newline');
    expect(() => parseNote(GO_NOTE + 'Unexpected line.\n')).toThrow('malformed note: signature line 2: does not start with "— "');
    expect(() => parseNote(GO_NOTE + '— Bad Name AAAAAAA=\n')).toThrow('signature line 2: invalid base64');
    expect(() => parseNote(GO_NOTE + '— a+b AAAAAAA=\n')).toThrow('signature line 2: invalid key name "a+b"');
    expect(() => parseNote(GO_NOTE + '— x AAAAAA==\n')).toThrow('signature line 2: signature is 4 bytes, need at least 5');
    expect(() => parseNote(GO_NOTE + '— x\n')).toThrow('signature line 2: missing signature');
    expect(() => parseNote('\u0001' + GO_NOTE)).toThrow('malformed note: control character U+0001 at offset 0');
    expect(() => parseNote(Uint8Array.of(0xff, ...utf8(GO_NOTE)))).toThrow('malformed note: not valid UTF-8');
    expect(() => parseNote('\ud800' + GO_NOTE)).toThrow('malformed note: not valid UTF-8');
  });

  it('splits at the last blank line, so the text may contain blank lines', () => {
    const n = parseNote('a\n\nb\n\n\n' + GO_NOTE.slice(GO_TEXT.length + 1));
    expect(n.text).toBe('a\n\nb\n\n');
    expect(n.signatures).toHaveLength(1);
  });

  it('accepts a text that is a single newline', () => {
    expect(parseNote('\n\n— x AAAAAAA=\n').text).toBe('\n');
  });

  it('accepts 100 signatures and rejects 101', () => {
    const line = GO_NOTE.slice(GO_TEXT.length + 1);
    expect(parseNote(GO_TEXT + '\n' + line.repeat(MAX_SIGNATURES)).signatures).toHaveLength(100);
    expect(() => parseNote(GO_TEXT + '\n' + line.repeat(MAX_SIGNATURES + 1))).toThrow('101 signature lines, at most 100');
  });

  it('accepts a note of exactly MAX_NOTE_SIZE bytes and rejects one byte more', () => {
    const sig = '\n— x AAAAAAA=\n';
    const fill = (n: number) => 'a'.repeat(n - utf8(sig).length - 1) + '\n' + sig;
    expect(utf8(fill(MAX_NOTE_SIZE)).length).toBe(MAX_NOTE_SIZE);
    expect(parseNote(fill(MAX_NOTE_SIZE)).signatures).toHaveLength(1);
    expect(parseNote(utf8(fill(MAX_NOTE_SIZE))).signatures).toHaveLength(1);
    expect(() => parseNote(fill(MAX_NOTE_SIZE + 1))).toThrow(TooLargeError);
    expect(() => parseNote(utf8(fill(MAX_NOTE_SIZE + 1)))).toThrow(TooLargeError);
  });

  it('measures the limit in UTF-8 bytes, not UTF-16 code units', () => {
    const text = 'é'.repeat(MAX_NOTE_SIZE / 2) + '\n';
    expect(text.length).toBeLessThan(MAX_NOTE_SIZE);
    expect(() => parseNote(text + '\n— x AAAAAAA=\n')).toThrow(TooLargeError);
  });

  it('keeps a leading byte-order mark as text when given bytes', () => {
    const n = parseNote(Uint8Array.of(0xef, 0xbb, 0xbf, ...utf8(GO_NOTE)));
    expect(n.text).toBe('\ufeff' + GO_TEXT);
  });

  it('accepts strings and bytes alike', () => {
    const fromString = parseNote(GO_NOTE);
    expect(parseNote(utf8(GO_NOTE))).toEqual(fromString);
  });

  it('returns duplicate signature lines as they are', () => {
    const line = GO_NOTE.slice(GO_TEXT.length + 1);
    expect(parseNote(GO_NOTE + line).signatures).toHaveLength(2);
  });

  it('throws only MalformedError or TooLargeError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 })), (msg) => {
        try {
          parseNote(msg);
        } catch (e) {
          expect(e instanceof MalformedError || e instanceof TooLargeError).toBe(true);
        }
      }),
      { numRuns }
    );
  });
});

describe('formatNote', () => {
  it('round-trips through parseNote for arbitrary texts and signatures', () => {
    fc.assert(
      fc.property(noteText, fc.array(noteSignature, { minLength: 1, maxLength: 10 }), (text, sigs) => {
        const msg = formatNote(text, sigs);
        const n = parseNote(msg);
        expect(n.text).toBe(text);
        expect(n.signatures).toEqual(sigs);
        expect(formatNote(n.text, n.signatures)).toBe(msg);
      }),
      { numRuns }
    );
  });

  it('writes "— <name> <base64(key id || signature)>" lines after a blank line', () => {
    const msg = formatNote('t\n', [{ name: 'n', keyId: 0x01020304, signature: Uint8Array.of(5) }]);
    expect(msg).toBe(`t\n\n\u2014 n ${encodeBase64(Uint8Array.of(1, 2, 3, 4, 5))}\n`);
  });

  it('refuses anything parseNote would reject', () => {
    const sig = { name: 'n', keyId: 1, signature: Uint8Array.of(1) };
    expect(() => formatNote('abc', [sig])).toThrow(MalformedError);
    expect(() => formatNote('a\tb\n', [sig])).toThrow(MalformedError);
    expect(() => formatNote('\ud800\n', [sig])).toThrow(MalformedError);
    expect(() => formatNote('t\n', [])).toThrow(MalformedError);
    expect(() => formatNote('t\n', Array(101).fill(sig))).toThrow(MalformedError);
    expect(() => formatNote('t\n', [{ ...sig, name: 'a b' }])).toThrow(MalformedError);
    expect(() => formatNote('t\n', [{ ...sig, signature: new Uint8Array(0) }])).toThrow(MalformedError);
    expect(() => formatNote('t\n', [{ ...sig, keyId: 2 ** 32 }])).toThrow(RangeError);
    expect(() => formatNote('a'.repeat(MAX_NOTE_SIZE) + '\n', [sig])).toThrow(TooLargeError);
  });
});

describe('checkNoteText', () => {
  it('requires a final newline and no control characters', () => {
    expect(() => checkNoteText('a\n\nb\n')).not.toThrow();
    expect(() => checkNoteText('')).toThrow('malformed note text: does not end in a newline');
    expect(() => checkNoteText('a\r\n')).toThrow('control character U+000d');
  });
});

describe('signNote', () => {
  it('reproduces the go-note TestSign signature exactly (Ed25519 is deterministic)', () => {
    for (const v of vectors.signing) {
      expect(signNote(v.text, [newSigner(v.skey)]), v.source).toBe(v.note);
      expect(signNote(v.text, [newSigner(v.skey, nodeEd25519)]), v.source).toBe(v.note);
    }
  });

  it('replaces an existing signature by the same key (go-note TestSign)', () => {
    // go-note uses Base64 "BADSIGN=", which is not canonical base64; any garbage will do.
    const bad = { name: 'PeterNeumann', keyId: 0xc74f20a3, signature: utf8('BADSIGN') };
    expect(signNote(GO_TEXT, [newSigner(PETER_SKEY)], [bad])).toBe(GO_NOTE);
  });

  it('keeps other existing signatures first, then adds the new ones', () => {
    const enoch = parseNote(vectors.notes[1]!.note).signatures[1]!;
    const msg = signNote(GO_TEXT, [newSigner(PETER_SKEY)], [enoch]);
    expect(parseNote(msg).signatures.map(label)).toEqual(['EnochRoot+af0cfe78', 'PeterNeumann+c74f20a3']);
  });

  it('rejects bad text, bad signer names and bad existing signatures', () => {
    const signer = newSigner(PETER_SKEY);
    expect(() => signNote('abc', [signer])).toThrow(MalformedError);
    expect(() => signNote(GO_TEXT, [{ ...signer, name: 'bad name', sign: signer.sign }])).toThrow('invalid signer');
    expect(() => signNote(GO_TEXT, [], [{ name: 'a+b', keyId: 1, signature: Uint8Array.of(1) }])).toThrow(MalformedError);
  });

  it('lets the signer exception through', () => {
    const boom = { name: 'x', keyId: 1, sign: (): Uint8Array => { throw new Error('surprise!'); } };
    expect(() => signNote(GO_TEXT, [boom])).toThrow('surprise!');
  });
});

describe('openNote', () => {
  it('verifies every note vector', () => {
    for (const v of vectors.notes) {
      const o = openNote(v.note, v.vkeys.map((k) => newVerifier(k)));
      expect(o.text, v.source).toBe(v.text);
      expect(o.verified.map(label), v.source).toEqual(v.verified);
      expect(o.unverified.map(label), v.source).toEqual(v.unverified);
    }
  });

  it('rejects every rejected-note vector with the right error', () => {
    for (const v of vectors.rejectedNotes) {
      const verifiers = v.vkeys.map((k) => newVerifier(k));
      const cls = { malformed: MalformedError, 'invalid-signature': InvalidSignatureError, unverified: UnverifiedNoteError }[v.error];
      expect(() => openNote(rejectedNoteInput(v), verifiers), v.source).toThrow(cls);
    }
  });

  it('names the key whose signature failed', () => {
    const line = GO_NOTE.slice(GO_TEXT.length + 1);
    const bad = GO_TEXT + '\n' + line.slice(0, 58) + 'ABCD' + line.slice(58);
    try {
      openNote(bad, [newVerifier(PETER_VKEY)]);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(VerificationError);
      expect(e).toBeInstanceOf(InvalidSignatureError);
      expect((e as InvalidSignatureError).keyName).toBe('PeterNeumann');
      expect((e as InvalidSignatureError).keyId).toBe(0xc74f20a3);
      expect((e as Error).message).toBe('invalid signature by known key PeterNeumann+c74f20a3');
      expect((e as VerificationError).code).toBe('VERIFICATION_FAILED');
    }
  });

  it('reports the unknown keys when nothing verified, and keeps the parsed note', () => {
    try {
      openNote(vectors.notes[1]!.note, []);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(UnverifiedNoteError);
      expect((e as Error).message).toBe(
        'no signature by a known key (note is signed by PeterNeumann+c74f20a3, EnochRoot+af0cfe78)'
      );
      expect((e as UnverifiedNoteError).text).toBe(GO_TEXT);
      expect((e as UnverifiedNoteError).unverified.map(label)).toEqual(['PeterNeumann+c74f20a3', 'EnochRoot+af0cfe78']);
    }
  });

  it('ignores a signature whose name or key id alone matches a known key', () => {
    const peter = newVerifier(PETER_VKEY);
    const impostor: NoteVerifier = { name: 'PeterNeumann', keyId: 0x11111111, verify: () => false };
    const o = openNote(GO_NOTE + '— PeterNeumann ERERERERERE=\n', [peter]);
    expect(o.unverified.map(label)).toEqual(['PeterNeumann+11111111']);
    // With the verifier for that (name, id) present, its signature must verify.
    expect(() => openNote(GO_NOTE + '— PeterNeumann ERERERERERE=\n', [peter, impostor])).toThrow(InvalidSignatureError);
  });

  it('checks only the first of repeated signatures by one known key (go-note)', () => {
    const line = GO_NOTE.slice(GO_TEXT.length + 1);
    const garbage = '— PeterNeumann x08goxERERERERE=\n';
    const o = openNote(GO_NOTE + garbage + line, [newVerifier(PETER_VKEY)]);
    expect(o.verified.map(label)).toEqual(['PeterNeumann+c74f20a3']);
    expect(() => openNote(GO_TEXT + '\n' + garbage + line, [newVerifier(PETER_VKEY)])).toThrow(InvalidSignatureError);
  });

  it('rejects two different verifiers for one key only when that key signed (go-note ambiguous key)', () => {
    const enoch = vectors.notes[1]!.vkeys[1]!;
    const e1 = newVerifier(enoch);
    const e2 = newVerifier(enoch);
    const enochOnly = GO_TEXT + '\n' + vectors.notes[1]!.note.split('\n').at(-2)! + '\n';
    expect(() => openNote(enochOnly, [e1, newVerifier(PETER_VKEY), e2])).toThrow('ambiguous key EnochRoot+af0cfe78');
    expect(openNote(GO_NOTE, [e1, newVerifier(PETER_VKEY), e2]).verified).toHaveLength(1);
    // The same verifier object twice is not ambiguous.
    expect(openNote(enochOnly, [e1, e1]).verified).toHaveLength(1);
  });

  it('verifies what signNote signs, for arbitrary keys and texts', () => {
    fc.assert(
      fc.property(keyName, fc.uint8Array({ minLength: 32, maxLength: 32 }), noteText, (name, seed, text) => {
        const { skey, vkey } = generateKey(name, 1, () => seed);
        const msg = signNote(text, [newSigner(skey)]);
        const o = openNote(msg, [newVerifier(vkey)]);
        expect(o.text).toBe(text);
        expect(o.verified).toHaveLength(1);
        expect(o.verified[0]!.name).toBe(name);
      }),
      { numRuns: Math.max(10, numRuns / 2) }
    );
  });

  it('fails after any bit flip in the key id or signature', () => {
    const peter = newVerifier(PETER_VKEY, nodeEd25519);
    const sig = parseNote(GO_NOTE).signatures[0]!;
    const raw = decodeBase64(GO_NOTE.slice(GO_TEXT.length + 1).split(' ')[2]!.trim(), 't');
    expect(raw.length).toBe(4 + sig.signature.length);
    fc.assert(
      fc.property(fc.nat({ max: raw.length * 8 - 1 }), (bit) => {
        const flipped = raw.slice();
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        const msg = `${GO_TEXT}\n— PeterNeumann ${encodeBase64(flipped)}\n`;
        expect(() => openNote(msg, [peter])).toThrow(bit < 32 ? UnverifiedNoteError : InvalidSignatureError);
      }),
      { numRuns: raw.length * 8 }
    );
  });

  it('rejects every single-byte change of a singly signed note', () => {
    for (const [msg, vkey] of [
      [GO_NOTE, PETER_VKEY],
      [vectors.notes[0]!.note, vectors.notes[0]!.vkeys[0]!],
    ] as const) {
      const verifiers = [newVerifier(vkey, nodeEd25519)];
      const accepted = notRejected(
        singleByteChanges(msg),
        (m) => openNote(m, verifiers),
        (e) => e instanceof MalformedError || e instanceof VerificationError || e instanceof TooLargeError
      );
      expect(accepted.map((m) => new TextDecoder().decode(m))).toEqual([]);
    }
  });

  it('never accepts a changed text or a changed signature in a doubly signed note', () => {
    const v = vectors.notes[1]!;
    const verifiers = v.vkeys.map((k) => newVerifier(k, nodeEd25519));
    const original = parseNote(v.note).signatures;
    let opened = 0;
    for (const m of singleByteChanges(v.note)) {
      let o;
      try {
        o = openNote(m, verifiers);
      } catch (e) {
        expect(e instanceof MalformedError || e instanceof VerificationError).toBe(true);
        continue;
      }
      // Only a change that makes one signature unknown (its name or key id) can still open,
      // with the other, untouched signature.
      opened++;
      expect(o.text).toBe(v.text);
      expect(o.verified).toHaveLength(1);
      for (const s of o.verified) {
        expect(original.some((x) => x.name === s.name && x.keyId === s.keyId && equalBytes(x.signature, s.signature))).toBe(true);
      }
    }
    expect(opened).toBeGreaterThan(0);
  });
});

describe('newSigner and newVerifier', () => {
  it('sign and verify with the same key (go-note testSignerAndVerifier)', () => {
    const { skey, vkey } = generateKey('EnochRoot');
    const s = newSigner(skey);
    const v = newVerifier(vkey);
    expect([s.name, s.keyId]).toEqual([v.name, v.keyId]);
    const msg = utf8('hi');
    const sig = s.sign(msg);
    expect(v.verify(msg, sig)).toBe(true);
    sig[0]! ^= 1;
    expect(v.verify(msg, sig)).toBe(false);
    sig[0]! ^= 1;
    msg[0]! ^= 1;
    expect(v.verify(msg, sig)).toBe(false);
  });

  it('verify returns false, never throws, on signatures of the wrong length', () => {
    const v = newVerifier(PETER_VKEY);
    for (const n of [0, 1, 63, 65, 72]) expect(v.verify(utf8(GO_TEXT), new Uint8Array(n))).toBe(false);
  });

  it('refuse cosignature (type 0x04) keys', () => {
    const w1 = vectors.signerKeys.valid.find((k) => k.alg === 4)!;
    expect(() => newSigner(w1.skey)).toThrow('use newCosigner');
    expect(() => newVerifier(w1.vkey)).toThrow('use newCosignatureVerifier');
  });

  it('reject malformed keys', () => {
    expect(() => newSigner('PRIVATE+KEY+x')).toThrow(MalformedError);
    expect(() => newVerifier('x+00000000+AA==')).toThrow(MalformedError);
  });
});
