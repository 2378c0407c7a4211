/**
 * Bulk bytea reads decode Postgres' hex output themselves (src/storage/bytea.ts): they must
 * give exactly the bytes, and refuse anything that is not that format instead of guessing.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/core/errors.js';
import { decodeByteaHex, decodeIntText } from '../../src/storage/bytea.js';

const text = (s: string) => new TextEncoder().encode(s);

describe('decodeByteaHex', () => {
  it('decodes the hex output of any bytes, in either case', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, upper) => {
        const hex = Buffer.from(bytes).toString('hex');
        expect(decodeByteaHex(text('\\x' + (upper ? hex.toUpperCase() : hex)), 'x')).toEqual(bytes);
      })
    );
  });

  it('refuses a missing prefix, an odd digit count, the escape format and any non-hex byte', () => {
    for (const bad of ['', '\\', 'x00', '00', '\\x0', '\\x000', '\\000', 'abc\\000', '\\x0g', '\\xg0', '\\x 0'] ) {
      expect(() => decodeByteaHex(text(bad), 'tile 0/1'), bad).toThrow(StorageError);
    }
    expect(() => decodeByteaHex(text('\\000'), 'tile 0/1')).toThrow(/stored tile 0\/1 is not a bytea in hex output format/);
    // Every byte that is not a hex digit, at every position of an otherwise good value.
    const good = '\\x00ff10';
    for (let b = 0; b < 256; b++) {
      const isHex = /[0-9a-fA-F]/.test(String.fromCharCode(b));
      for (let p = 2; p < good.length; p++) {
        const t = text(good);
        t[p] = b;
        if (isHex) expect(() => decodeByteaHex(t, 'x')).not.toThrow();
        else expect(() => decodeByteaHex(t, 'x'), `byte ${b} at ${p}`).toThrow(/not a hex digit/);
      }
    }
  });
});

describe('decodeIntText', () => {
  it('reads any safe non-negative integer', () => {
    fc.assert(fc.property(fc.maxSafeNat(), (n) => {
      expect(decodeIntText(text(String(n)), 'x')).toBe(n);
    }));
  });

  it('refuses empty, signed, fractional, non-digit and unsafe values', () => {
    for (const bad of ['', '-1', '+1', '1.5', '1e3', ' 1', 'abc', '9007199254740992', '12345678901234567']) {
      expect(() => decodeIntText(text(bad), 'bundle index'), bad).toThrow(/stored bundle index is not a safe size/);
    }
  });
});
