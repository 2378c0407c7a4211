import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MAX_CHECKPOINT_SIZE, formatCheckpoint, parseCheckpoint, type Checkpoint } from '../../src/core/checkpoint.js';
import { MalformedError } from '../../src/core/errors.js';
import { fromUtf8, toHex, utf8 } from '../../src/core/encoding.js';
import { EMPTY_ROOT, leafHash } from '../../src/core/hash.js';
import { arbHash, hex, loadVectors } from './helpers.js';

const V = loadVectors('checkpoint.json');

interface ValidVector {
  text: string;
  origin: string;
  treeSize: number;
  rootHashHex: string;
  extensions: string[];
  source: string;
  rootIsLeafHashOf?: string;
}
const valid = V.valid as ValidVector[];

const plain = (c: Checkpoint) => ({ origin: c.origin, treeSize: c.treeSize, rootHash: toHex(c.rootHash), extensions: [...c.extensions] });

/** A non-empty line: any string without "\n" (lone surrogates excluded: they cannot come from UTF-8). */
const arbLine = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => !s.includes('\n'));
const arbCheckpoint: fc.Arbitrary<Checkpoint> = fc.record({
  origin: arbLine,
  treeSize: fc.oneof(fc.nat({ max: 1000 }), fc.maxSafeNat()),
  rootHash: arbHash,
  extensions: fc.array(arbLine, { maxLength: 4 }),
});

describe('parseCheckpoint', () => {
  it('parses every valid vector to its fields', () => {
    for (const v of valid) {
      expect(plain(parseCheckpoint(v.text)), v.source).toEqual({ origin: v.origin, treeSize: v.treeSize, rootHash: v.rootHashHex, extensions: v.extensions });
    }
  });
  it('decodes the root hashes that are known leaf hashes and the empty-tree root', () => {
    for (const v of valid.filter((v) => v.rootIsLeafHashOf !== undefined)) {
      expect(toHex(parseCheckpoint(v.text).rootHash)).toBe(toHex(leafHash(utf8(v.rootIsLeafHashOf!))));
    }
    expect(parseCheckpoint('example.com/empty\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n').rootHash).toEqual(EMPTY_ROOT);
    expect(toHex(parseCheckpoint(valid[0]!.text).rootHash)).toBe('0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62');
  });
  it('rejects every invalid vector with MalformedError', () => {
    for (const v of V.invalid as Array<{ text: string; why: string }>) {
      expect(() => parseCheckpoint(v.text), `${JSON.stringify(v.text)}: ${v.why}`).toThrow(MalformedError);
    }
  });
  it('rejects sizes above 2^53 − 1 with MalformedError, though they are valid uint64', () => {
    for (const v of V.beyondSafeInteger as Array<{ text: string; why: string }>) expect(() => parseCheckpoint(v.text), v.why).toThrow(MalformedError);
  });
  it(`rejects a body longer than ${MAX_CHECKPOINT_SIZE} characters before parsing it`, () => {
    const base = valid[0]!.text;
    const ext = 'x'.repeat(MAX_CHECKPOINT_SIZE - base.length - 1) + '\n';
    expect(parseCheckpoint(base + ext).extensions).toHaveLength(1);
    expect(() => parseCheckpoint(base + 'x' + ext)).toThrow(MalformedError);
  });
  it('turns every strict prefix of a valid body into MalformedError or a different checkpoint', () => {
    for (const v of valid) {
      const orig = plain(parseCheckpoint(v.text));
      for (let i = 0; i < v.text.length; i++) {
        const s = v.text.slice(0, i);
        let c: Checkpoint | undefined;
        try {
          c = parseCheckpoint(s);
        } catch (e) {
          expect(e, JSON.stringify(s)).toBeInstanceOf(MalformedError);
        }
        if (c) {
          expect(plain(c)).not.toEqual(orig);
          expect(formatCheckpoint(c)).toBe(s);
        }
      }
    }
  });
  it('turns every single-byte change of a valid body into MalformedError or a different checkpoint', () => {
    // About 200,000 parses: checked without expect() in the loop, failures collected.
    const failures: string[] = [];
    let parsedDifferently = 0;
    for (const v of valid) {
      const bytes = utf8(v.text);
      const orig = JSON.stringify(plain(parseCheckpoint(v.text)));
      for (let i = 0; i < bytes.length; i++) {
        for (let b = 0; b < 256; b++) {
          if (b === bytes[i]) continue;
          const m = bytes.slice();
          m[i] = b;
          let c: Checkpoint | undefined;
          try {
            // A body reaches the parser as UTF-8 decoded by the note layer.
            c = parseCheckpoint(fromUtf8(m, 'checkpoint'));
          } catch (e) {
            if (!(e instanceof MalformedError)) failures.push(`byte ${i} → ${b} of ${JSON.stringify(v.text)}: threw ${String(e)}`);
          }
          if (c) {
            parsedDifferently++;
            if (JSON.stringify(plain(c)) === orig) failures.push(`byte ${i} → ${b} of ${JSON.stringify(v.text)}: same checkpoint`);
            // The parse is canonical: the changed text is exactly the format of what it parsed to.
            if (formatCheckpoint(c) !== fromUtf8(m, 'checkpoint')) failures.push(`byte ${i} → ${b} of ${JSON.stringify(v.text)}: not canonical`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
    expect(parsedDifferently).toBeGreaterThan(1000);
  });
  it('throws only MalformedError on arbitrary text', () => {
    const near = fc
      .array(fc.constantFrom('a', '\n', '0', '1', '=', '+', '/', 'A', ' ', 'Tszz', '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='), { maxLength: 12 })
      .map((p) => p.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string(), near), (s) => {
        try {
          expect(formatCheckpoint(parseCheckpoint(s))).toBe(s);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
        }
      })
    );
  });
});

describe('formatCheckpoint', () => {
  it('reproduces every valid vector from its parsed value', () => {
    for (const v of valid) expect(formatCheckpoint(parseCheckpoint(v.text)), v.source).toBe(v.text);
  });
  it('formats the fields of the spec example body (specs.md §3.1)', () => {
    expect(formatCheckpoint({ origin: 'example.com/behind-the-sofa', treeSize: 20852163, rootHash: hex('0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62'), extensions: [] })).toBe(
      'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n'
    );
  });
  it('is inverted by parseCheckpoint for any checkpoint', () => {
    fc.assert(
      fc.property(arbCheckpoint, (c) => {
        expect(plain(parseCheckpoint(formatCheckpoint(c)))).toEqual(plain(c));
      })
    );
  });
  it('reproduces any text parseCheckpoint accepts', () => {
    fc.assert(
      fc.property(arbCheckpoint, (c) => {
        const s = formatCheckpoint(c);
        expect(formatCheckpoint(parseCheckpoint(s))).toBe(s);
      })
    );
  });
  it('throws RangeError for fields that cannot be formatted', () => {
    const ok: Checkpoint = { origin: 'o', treeSize: 1, rootHash: EMPTY_ROOT, extensions: [] };
    for (const bad of [
      { ...ok, origin: '' },
      { ...ok, origin: 'a\nb' },
      { ...ok, treeSize: -1 },
      { ...ok, treeSize: 1.5 },
      { ...ok, treeSize: 2 ** 53 },
      { ...ok, rootHash: new Uint8Array(31) },
      { ...ok, extensions: [''] },
      { ...ok, extensions: ['a\nb'] },
    ]) {
      expect(() => formatCheckpoint(bad), JSON.stringify({ ...bad, rootHash: bad.rootHash.length })).toThrow(RangeError);
    }
  });
});
