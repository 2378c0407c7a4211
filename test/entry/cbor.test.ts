import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MalformedError, TooLargeError } from '../../src/core/errors.js';
import { fromHex, toHex, utf8 } from '../../src/core/encoding.js';
import {
  decodeCanonical,
  encodeCanonical,
  MAX_CBOR_DEPTH,
  MAX_CBOR_SIZE,
  type CborValue,
} from '../../src/entry/cbor.js';
import { cborArb, numRuns, referenceEncode, vectors } from './helpers.js';

const hex = (s: string) => fromHex(s, 'test');
const decode = (b: Uint8Array) => decodeCanonical(b, 'test');
const isRejected = (e: unknown) => e instanceof MalformedError || e instanceof TooLargeError;

function expectMalformed(b: Uint8Array, message?: RegExp): void {
  let err: unknown;
  try {
    decode(b);
  } catch (e) {
    err = e;
  }
  expect(err, toHex(b)).toBeInstanceOf(MalformedError);
  expect((err as Error).message).toMatch(/^test: /);
  if (message) expect((err as Error).message).toMatch(message);
}

describe('encodeCanonical', () => {
  it('encodes the RFC 8949 Appendix A examples of the data model', () => {
    for (const v of vectors.cbor.valid) {
      const value = v.bytesHex !== undefined ? hex(v.bytesHex) : v.value!;
      expect(toHex(encodeCanonical(value)), `${v.source}: ${JSON.stringify(v.value)}`).toBe(v.hex);
    }
  });

  it('uses the shortest head at every integer boundary', () => {
    const cases: [number, string][] = [
      [0, '00'],
      [23, '17'],
      [24, '1818'],
      [255, '18ff'],
      [256, '190100'],
      [65535, '19ffff'],
      [65536, '1a00010000'],
      [2 ** 32 - 1, '1affffffff'],
      [2 ** 32, '1b0000000100000000'],
      [2 ** 53 - 1, '1b001fffffffffffff'],
    ];
    for (const [n, h] of cases) expect(toHex(encodeCanonical(n)), String(n)).toBe(h);
  });

  it('uses the shortest head for string, byte string, array and map lengths', () => {
    // (A 4-byte length head needs 65536 bytes or more, beyond MAX_CBOR_SIZE.)
    for (const n of [0, 23, 24, 255, 256, 65535 - 3]) {
      const s = 'x'.repeat(n);
      expect(toHex(encodeCanonical(s))).toBe(toHex(referenceEncode(s)));
      expect(toHex(encodeCanonical(new Uint8Array(n)))).toBe(toHex(referenceEncode(new Uint8Array(n))));
    }
    for (const n of [23, 24, 255, 256]) {
      const a = new Array<number>(n).fill(1);
      expect(encodeCanonical(a)).toEqual(referenceEncode(a));
      const m = Object.fromEntries(a.map((_, i) => [`k${i}`, i]));
      expect(encodeCanonical(m)).toEqual(referenceEncode(m));
    }
    // Multi-byte UTF-8 whose byte length crosses a head boundary that its JS length does not.
    for (const s of ['é'.repeat(12), 'é'.repeat(128), '水'.repeat(86), '🦀'.repeat(6), '🦀'.repeat(64)]) {
      expect(encodeCanonical(s), s.length + ' chars').toEqual(referenceEncode(s));
    }
  });

  it('sorts map keys by their encoded bytes: shorter first, then bytewise', () => {
    expect(toHex(encodeCanonical({ a: 1, b: 2, aa: 3 }))).toBe('a361610161620262616103');
    expect(toHex(encodeCanonical({ aa: 3, b: 2, a: 1 }))).toBe('a361610161620262616103');
    // JS puts integer-like keys first in numeric order; canonical order puts "a" before "10".
    expect(toHex(encodeCanonical({ '10': 1, '2': 2, a: 3 }))).toBe('a361320261610362313001');
    // UTF-8 length first: U+FF61 (3 bytes) before U+1F980 (4 bytes), though UTF-16 order
    // (0xff61 > 0xd83e) would put it after.
    expect(toHex(encodeCanonical({ '🦀': 1, '｡': 2 }))).toBe('a263efbda10264f09fa68001');
    // Equal UTF-8 lengths: bytewise, "Za" (5a 61) before "é" (c3 a9).
    expect(toHex(encodeCanonical({ é: 1, Za: 2 }))).toBe('a2625a610262c3a901');
  });

  it('gives equal bytes for equal values whatever the key insertion order', () => {
    const a = encodeCanonical({ x: 1, y: { p: true, q: 'z' } });
    const b = encodeCanonical({ y: { q: 'z', p: true }, x: 1 });
    expect(a).toEqual(b);
  });

  it('keeps "__proto__" as a plain map key', () => {
    const v = JSON.parse('{"__proto__": 1, "a": 2}') as CborValue;
    const b = encodeCanonical(v);
    expect(toHex(b)).toBe('a2616102695f5f70726f746f5f5f01');
    expect(decode(b)).toEqual(v);
    expect(Object.keys(decode(b) as object)).toEqual(['a', '__proto__']);
  });

  it('decodes maps to null-prototype objects: nothing inherited', () => {
    const m = decode(encodeCanonical({ a: 1, toString: 2 })) as Record<string, CborValue>;
    expect(Object.getPrototypeOf(m)).toBeNull();
    expect(m['toString']).toBe(2);
    expect(m['constructor']).toBeUndefined();
    expect('hasOwnProperty' in m).toBe(false);
    expect(encodeCanonical(m)).toEqual(encodeCanonical({ toString: 2, a: 1 }));
  });

  it('returns a plain Uint8Array, not a view of a shared buffer', () => {
    const a = encodeCanonical('first');
    const b = encodeCanonical('second');
    expect(a.constructor).toBe(Uint8Array);
    expect(toHex(a)).toBe('656669727374');
    expect(b.buffer).not.toBe(a.buffer);
  });

  it('refuses values outside the data model', () => {
    const bad: [unknown, RegExp][] = [
      [1.5, /not an integer/],
      [-1, /negative/],
      [2 ** 53, /larger than 2\^53/],
      [Number.NaN, /not an integer/],
      [Number.POSITIVE_INFINITY, /not an integer/],
      [null, /null/],
      [undefined, /undefined/],
      [{ a: undefined }, /cbor\.a: undefined/],
      [[1, null], /cbor\[1\]: null/],
      [10n, /unsupported/],
      [new Date(0), /unsupported/],
      [new Map(), /unsupported/],
      [new Uint16Array(2), /unsupported/],
      ['\ud800', /lone surrogate/],
      [{ '\udc00': 1 }, /lone surrogate/],
      [() => 1, /unsupported/],
      [Symbol('s'), /unsupported/],
    ];
    for (const [v, re] of bad) {
      expect(() => encodeCanonical(v as CborValue), String(v)).toThrow(MalformedError);
      expect(() => encodeCanonical(v as CborValue), String(v)).toThrow(re);
    }
  });

  it('refuses nesting deeper than MAX_CBOR_DEPTH and output over MAX_CBOR_SIZE', () => {
    let v: CborValue = 1;
    for (let i = 0; i < MAX_CBOR_DEPTH; i++) v = [v];
    expect(() => encodeCanonical(v)).not.toThrow();
    expect(() => encodeCanonical([v])).toThrow(/nested/);
    expect(() => encodeCanonical(new Uint8Array(MAX_CBOR_SIZE - 3))).not.toThrow();
    expect(() => encodeCanonical(new Uint8Array(MAX_CBOR_SIZE - 2))).toThrow(TooLargeError);
  });

  it('matches the reference encoder on arbitrary values (cbor-x output is canonical)', () => {
    fc.assert(
      fc.property(cborArb, (v) => {
        expect(toHex(encodeCanonical(v))).toBe(toHex(referenceEncode(v)));
      }),
      { numRuns: numRuns * 5 }
    );
  });
});

describe('decodeCanonical', () => {
  it('decodes the RFC 8949 Appendix A examples of the data model', () => {
    for (const v of vectors.cbor.valid) {
      const value = v.bytesHex !== undefined ? hex(v.bytesHex) : v.value!;
      expect(decode(hex(v.hex)), v.hex).toEqual(value);
    }
  });

  it('rejects every invalid vector with a MalformedError', () => {
    for (const v of vectors.cbor.invalid) expectMalformed(hex(v.hex));
  });

  it('names what is wrong', () => {
    expectMalformed(hex('1817'), /shortest form/);
    expectMalformed(hex('9fff'), /indefinite length/);
    expectMalformed(hex('a2616201616102'), /canonical order/);
    expectMalformed(hex('a2626161016162 02'.replace(' ', '')), /canonical order/);
    expectMalformed(hex('a2616101616102'), /duplicate map key/);
    expectMalformed(hex('fb3ff199999999999a'), /floating-point/);
    expectMalformed(hex('c249010000000000000000'), /tags/);
    expectMalformed(hex('20'), /negative/);
    expectMalformed(hex('f6'), /null/);
    expectMalformed(hex('f7'), /undefined/);
    expectMalformed(hex('0000'), /1 trailing bytes/);
    expectMalformed(hex('a10101'), /map key is not a text string/);
    expectMalformed(hex('1b0020000000000000'), /larger than 2\^53/);
    expectMalformed(hex('62c328'), /UTF-8/);
    expectMalformed(new Uint8Array(0), /empty/);
  });

  it('refuses input over 64 KiB with a TooLargeError before parsing', () => {
    const big = encodeCanonical(new Uint8Array(MAX_CBOR_SIZE - 3));
    expect(big.length).toBe(MAX_CBOR_SIZE);
    expect(decode(big)).toHaveLength(MAX_CBOR_SIZE - 3);
    expect(() => decode(new Uint8Array(MAX_CBOR_SIZE + 1))).toThrow(TooLargeError);
  });

  it('refuses deep nesting without overflowing the stack', () => {
    expectMalformed(new Uint8Array(60000).fill(0x81), /nested/);
    expectMalformed(new Uint8Array(60000).fill(0xa1), /nested|map key/);
  });

  it('throws TypeError for a non-Uint8Array argument', () => {
    expect(() => decodeCanonical('00' as unknown as Uint8Array, 'test')).toThrow(TypeError);
  });

  it('returns fresh byte strings that do not alias the input', () => {
    const input = hex('4401020304');
    const out = decode(input) as Uint8Array;
    input[1] = 9;
    expect(out).toEqual(Uint8Array.of(1, 2, 3, 4));
    expect(out.constructor).toBe(Uint8Array);
  });

  it('decode(encode(x)) = x', () => {
    fc.assert(
      fc.property(cborArb, (v) => {
        expect(decode(encodeCanonical(v))).toEqual(v);
      }),
      { numRuns: numRuns * 5 }
    );
  });

  it('encode(decode(b)) = b for every b it accepts, including mutations of valid encodings', () => {
    const mutated = fc
      .tuple(cborArb, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 3 }), fc.nat(4))
      .map(([v, changes, cut]) => {
        const b = encodeCanonical(v).slice();
        for (const [i, x] of changes) b[i % b.length] = x;
        return b.subarray(0, Math.max(0, b.length - (cut === 4 ? 1 : 0)));
      });
    fc.assert(
      fc.property(fc.oneof(mutated, fc.uint8Array({ maxLength: 64 })), (b) => {
        let v: CborValue;
        try {
          v = decode(b);
        } catch (e) {
          expect(isRejected(e), String(e)).toBe(true);
          return;
        }
        expect(toHex(encodeCanonical(v))).toBe(toHex(b));
      }),
      { numRuns: numRuns * 10 }
    );
  });

  it('accepts exactly the reference encoding of a value among its non-canonical spellings', () => {
    // The same map, written with its keys in both orders and with a non-shortest length.
    const ok = referenceEncode({ a: 1, bb: 2 });
    expect(decode(ok)).toEqual({ a: 1, bb: 2 });
    expectMalformed(hex('a262626202616101'));
    expectMalformed(hex('b8026161016262620 2'.replace(/ /g, '')));
    expectMalformed(utf8('{"json": 1}'));
  });
});
