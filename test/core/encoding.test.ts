import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  parseDecimal,
  checkSize,
  encodeBase64,
  decodeBase64,
  toHex,
  fromHex,
  equalBytes,
  concatBytes,
  utf8,
  fromUtf8,
  quote,
} from '../../src/core/encoding.js';
import { MalformedError } from '../../src/core/errors.js';
import { NUM_RUNS } from './helpers.js';

describe('parseDecimal', () => {
  it('parses canonical decimals up to 2^53 − 1', () => {
    expect(parseDecimal('0', 'n')).toBe(0);
    expect(parseDecimal('7', 'n')).toBe(7);
    expect(parseDecimal('20852163', 'n')).toBe(20852163);
    expect(parseDecimal('9007199254740991', 'n')).toBe(Number.MAX_SAFE_INTEGER);
  });
  it("rejects '', ' 1', '1 ', '01', '00', '+1', '-1', '1e3', '0x10', '1.0', '١', 2^53 and 2^64", () => {
    for (const s of ['', ' 1', '1 ', '01', '00', '+1', '-1', '-0', '1e3', '0x10', '1.0', '1_000', '١', '1\n', '\n1', String(2 ** 53), '18446744073709551616']) {
      expect(() => parseDecimal(s, 'n'), JSON.stringify(s)).toThrow(MalformedError);
    }
  });
  it('names the field in its error', () => {
    expect(() => parseDecimal('x', 'tree size')).toThrow(/tree size/);
  });
  it('accepts exactly the strings that String(n) produces for safe integers', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        expect(parseDecimal(String(n), 'n')).toBe(n);
      })
    );
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'0123456789+-. e'.split('')), maxLength: 18 }), (s) => {
        let n: number | undefined;
        try {
          n = parseDecimal(s, 'n');
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
        }
        if (n !== undefined) expect(String(n)).toBe(s);
      })
    );
  });
});

describe('checkSize', () => {
  it('accepts safe non-negative integers', () => {
    for (const n of [0, 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) expect(() => checkSize(n, 'n')).not.toThrow();
  });
  it('throws RangeError for anything else', () => {
    for (const n of [-1, 0.5, 2 ** 53, NaN, Infinity, -0.1]) expect(() => checkSize(n, 'n')).toThrow(RangeError);
  });
});

describe('encodeBase64', () => {
  it('matches the RFC 4648 test vectors', () => {
    const cases: Array<[string, string]> = [
      ['', ''],
      ['f', 'Zg=='],
      ['fo', 'Zm8='],
      ['foo', 'Zm9v'],
      ['foob', 'Zm9vYg=='],
      ['fooba', 'Zm9vYmE='],
      ['foobar', 'Zm9vYmFy'],
    ];
    for (const [raw, enc] of cases) expect(encodeBase64(utf8(raw))).toBe(enc);
  });
  it('matches Buffer for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        expect(encodeBase64(b)).toBe(Buffer.from(b).toString('base64'));
      })
    );
  });
});

describe('decodeBase64', () => {
  it('inverts encodeBase64 for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        expect(decodeBase64(encodeBase64(b), 'x')).toEqual(b);
      })
    );
  });
  it('decodes a 32-byte hash (specs.md §1.1)', () => {
    expect(toHex(decodeBase64('47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=', 'x'))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
  it('rejects non-zero trailing bits', () => {
    for (const s of ['Zh==', 'Zm9=', 'Zm+=', 'Zn==', 'TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=']) {
      expect(() => decodeBase64(s, 'x'), s).toThrow(MalformedError);
    }
  });
  it('rejects missing, extra or misplaced padding', () => {
    for (const s of ['Zg', 'Zg=', 'Zm8', 'Zg===', '====', 'Z===', '=Zg=', 'Zg==Zg==', 'Zm=9', 'Zg==\n', 'Zm9v=', 'Zm9v====']) {
      expect(() => decodeBase64(s, 'x'), s).toThrow(MalformedError);
    }
  });
  it('rejects whitespace anywhere', () => {
    for (const s of [' Zm9v', 'Zm9v ', 'Zm 9v', 'Zm9v\n', '\tZm9v', 'Zm9v\r\n', 'Zm\n9v']) {
      expect(() => decodeBase64(s, 'x'), JSON.stringify(s)).toThrow(MalformedError);
    }
  });
  it('rejects the URL-safe alphabet and other characters', () => {
    for (const s of ['-_-_', 'ab-c', 'ab_c', 'Zm9v!', 'Zm9\u00e9', 'Zm9\u{1f600}', 'Zm.v', 'Zm*v']) {
      expect(() => decodeBase64(s, 'x'), s).toThrow(MalformedError);
    }
  });
  it('accepts exactly the strings that Buffer decodes and re-encodes unchanged', () => {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n.'.split('');
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: fc.constantFrom(...chars), maxLength: 16 }), fc.string({ maxLength: 16 })), (s) => {
        const canonical = Buffer.from(s, 'base64').toString('base64') === s;
        let out: Uint8Array | undefined;
        try {
          out = decodeBase64(s, 'x');
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
        }
        expect(out !== undefined, JSON.stringify(s)).toBe(canonical);
        if (out) expect(Buffer.from(out).equals(Buffer.from(s, 'base64'))).toBe(true);
      }),
      { numRuns: Math.max(1000, 10 * NUM_RUNS) }
    );
  });
  it('names the field in its error', () => {
    expect(() => decodeBase64('!', 'root hash')).toThrow(/root hash/);
  });
});

describe('toHex', () => {
  it('writes lowercase hex', () => {
    expect(toHex(new Uint8Array([0, 1, 0xab, 0xff]))).toBe('0001abff');
    expect(toHex(new Uint8Array(0))).toBe('');
  });
  it('matches Buffer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(toHex(b)).toBe(Buffer.from(b).toString('hex'));
      })
    );
  });
});

describe('fromHex', () => {
  it('inverts toHex', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(fromHex(toHex(b), 'x')).toEqual(b);
      })
    );
  });
  it('rejects uppercase, odd length, prefixes and non-hex characters', () => {
    for (const s of ['AB', 'aB', 'abc', '0x00', 'zz', ' 00', '00 ', '-1']) expect(() => fromHex(s, 'x'), s).toThrow(MalformedError);
  });
});

describe('equalBytes', () => {
  it('compares length and content', () => {
    expect(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false);
    expect(equalBytes(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
  it('agrees with Buffer.equals', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4 }), fc.uint8Array({ maxLength: 4 }), (a, b) => {
        expect(equalBytes(a, b)).toBe(Buffer.from(a).equals(Buffer.from(b)));
      })
    );
  });
});

describe('concatBytes', () => {
  it('concatenates in order', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 10 }), { maxLength: 6 }), (parts) => {
        expect(Buffer.from(concatBytes(...parts)).equals(Buffer.concat(parts))).toBe(true);
      })
    );
    expect(concatBytes()).toEqual(new Uint8Array(0));
  });
});

describe('utf8', () => {
  it('encodes a string as UTF-8', () => {
    expect(toHex(utf8('leaf 0'))).toBe('6c6561662030');
    expect(toHex(utf8('—'))).toBe('e28094');
  });
});

describe('fromUtf8', () => {
  it('inverts utf8 for any well-formed string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        expect(fromUtf8(utf8(s), 'x')).toBe(s);
      })
    );
  });
  it('rejects invalid UTF-8 with MalformedError', () => {
    for (const b of [[0xff], [0xc0, 0x80], [0xe2, 0x80], [0xed, 0xa0, 0x80], [0x80]]) {
      expect(() => fromUtf8(new Uint8Array(b), 'x'), toHex(new Uint8Array(b))).toThrow(MalformedError);
    }
  });
});

describe('quote', () => {
  it('quotes as JSON and truncates after 40 characters', () => {
    expect(quote('a"b')).toBe('"a\\"b"');
    expect(quote('x'.repeat(41))).toBe(JSON.stringify('x'.repeat(40) + '…'));
    expect(quote('x'.repeat(40))).toBe(JSON.stringify('x'.repeat(40)));
  });
});
