import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MAX_ENTRY_SIZE, decodeBundle, encodeBundle } from '../../src/core/bundle.js';
import { MalformedError } from '../../src/core/errors.js';
import { concatBytes, toHex, utf8 } from '../../src/core/encoding.js';
import { HEAVY_RUNS } from './helpers.js';

const arbEntries = fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 256, size: 'max' });

describe('encodeBundle', () => {
  it('frames "leaf 0" and "leaf 1" as in specs.md §2.6', () => {
    expect(toHex(encodeBundle([utf8('leaf 0'), utf8('leaf 1')]))).toBe('00066c656166203000066c6561662031');
  });
  it('frames each entry with its big-endian uint16 length, empty entries included', () => {
    expect(toHex(encodeBundle([]))).toBe('');
    expect(toHex(encodeBundle([new Uint8Array(0)]))).toBe('0000');
    const big = encodeBundle([new Uint8Array(MAX_ENTRY_SIZE).fill(7)]);
    expect(big.length).toBe(2 + MAX_ENTRY_SIZE);
    expect(toHex(big.subarray(0, 3))).toBe('ffff07');
    expect(toHex(encodeBundle([new Uint8Array(0x1234)]).subarray(0, 2))).toBe('1234');
  });
  it('throws RangeError for an entry longer than 65535 bytes', () => {
    expect(() => encodeBundle([new Uint8Array(MAX_ENTRY_SIZE + 1)])).toThrow(RangeError);
  });
});

describe('decodeBundle', () => {
  it('inverts encodeBundle for any list of up to 256 entries', () => {
    fc.assert(
      fc.property(arbEntries, (entries) => {
        const data = encodeBundle(entries);
        const back = decodeBundle(data);
        expect(back.map(toHex)).toEqual(entries.map(toHex));
        expect(decodeBundle(data, entries.length).map(toHex)).toEqual(entries.map(toHex));
      }),
      { numRuns: HEAVY_RUNS }
    );
  });
  it('returns views into the input rather than copies', () => {
    const data = encodeBundle([utf8('leaf 0'), utf8('leaf 1')]);
    const [a] = decodeBundle(data);
    expect(a!.buffer).toBe(data.buffer);
    expect(a!.byteOffset).toBe(data.byteOffset + 2);
  });
  it('accepts 256 entries and rejects 257 even without a width', () => {
    const e = Array.from({ length: 256 }, (_, i) => utf8(`leaf ${i}`));
    expect(decodeBundle(encodeBundle(e), 256)).toHaveLength(256);
    expect(() => decodeBundle(encodeBundle([...e, utf8('one more')]))).toThrow(MalformedError);
    expect(() => decodeBundle(concatBytes(encodeBundle(e), new Uint8Array([0, 0])))).toThrow(MalformedError);
  });
  it('rejects a width that does not match the entry count', () => {
    const data = encodeBundle([utf8('a'), utf8('b')]);
    expect(() => decodeBundle(data, 1)).toThrow(MalformedError);
    expect(() => decodeBundle(data, 3)).toThrow(MalformedError);
    expect(() => decodeBundle(new Uint8Array(0), 1)).toThrow(MalformedError);
  });
  it('rejects a truncated length or entry', () => {
    expect(() => decodeBundle(new Uint8Array([0]))).toThrow(MalformedError);
    expect(() => decodeBundle(new Uint8Array([0, 3, 1, 2]))).toThrow(MalformedError);
    expect(() => decodeBundle(new Uint8Array([0xff, 0xff]))).toThrow(MalformedError);
  });
  it('decodes every strict prefix to the whole entries it holds, or rejects it', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 6 }), { minLength: 1, maxLength: 12 }), (entries) => {
        const data = encodeBundle(entries);
        const boundaries = new Map<number, number>();
        let o = 0;
        entries.forEach((e, i) => {
          boundaries.set(o, i);
          o += 2 + e.length;
        });
        for (let cut = 0; cut < data.length; cut++) {
          const prefix = data.subarray(0, cut);
          const whole = boundaries.get(cut);
          if (whole !== undefined) {
            expect(decodeBundle(prefix).map(toHex)).toEqual(entries.slice(0, whole).map(toHex));
            expect(() => decodeBundle(prefix, entries.length)).toThrow(MalformedError);
          } else {
            expect(() => decodeBundle(prefix)).toThrow(MalformedError);
          }
        }
      })
    );
  });
  it('throws only MalformedError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (data) => {
        try {
          const entries = decodeBundle(data);
          expect(toHex(encodeBundle(entries))).toBe(toHex(data));
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
        }
      })
    );
  });
});
