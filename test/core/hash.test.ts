import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { EMPTY_ROOT, HASH_SIZE, leafHash, nodeHash, useSha256 } from '../../src/core/hash.js';
import { concatBytes, toHex, utf8 } from '../../src/core/encoding.js';
import { arbHash, hex, loadVectors } from './helpers.js';

const V = loadVectors('tree.json');
const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());

describe('EMPTY_ROOT', () => {
  it('is SHA-256 of the empty string (specs.md §1.1)', () => {
    expect(HASH_SIZE).toBe(32);
    expect(toHex(EMPTY_ROOT)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});

describe('leafHash', () => {
  it('hashes the RFC 6962 leaves of specs.md §6.1, the empty leaf included', () => {
    (V.rfc6962.leavesHex as string[]).forEach((l, i) => expect(toHex(leafHash(hex(l)))).toBe(V.rfc6962.nodesHex[0][i]));
  });
  it('hashes "hello world" and "leaf 0" to the known values (specs.md §6.4, §6.9)', () => {
    expect(Buffer.from(leafHash(utf8('hello world'))).toString('base64')).toBe('TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=');
    expect(toHex(leafHash(utf8('leaf 0')))).toBe(V.leafN.leafHashesHex[0]);
  });
  it('is SHA-256(0x00 || entry) for any entry', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (e) => {
        expect(leafHash(e)).toEqual(sha256(concatBytes(new Uint8Array([0]), e)));
      })
    );
  });
});

describe('leafHash through its scratch buffer', () => {
  it('is SHA-256(0x00 || entry) for sizes around and past the buffer, in any order', () => {
    const ref = (e: Uint8Array) => toHex(nobleSha256(concatBytes(Uint8Array.of(0), e)));
    const sizes = [0, 1, 1022, 1023, 1024, 5000, 70_000, 131_071, 131_072, 200_000, 3, 1023];
    for (const n of sizes) {
      const e = Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
      expect(toHex(leafHash(e)), `size ${n}`).toBe(ref(e));
    }
  });
});

describe('nodeHash', () => {
  it('is SHA-256(0x01 || left || right) for any two hashes', () => {
    fc.assert(
      fc.property(arbHash, arbHash, (l, r) => {
        expect(nodeHash(l, r)).toEqual(sha256(concatBytes(new Uint8Array([1]), l, r)));
      })
    );
  });
  it('reproduces the level-1 nodes of specs.md §6.1', () => {
    const l0 = (V.rfc6962.nodesHex[0] as string[]).map(hex);
    (V.rfc6962.nodesHex[1] as string[]).forEach((h, i) => expect(toHex(nodeHash(l0[2 * i]!, l0[2 * i + 1]!))).toBe(h));
  });
  it('returns a fresh array each time, unaffected by later calls', () => {
    const a = new Uint8Array(32).fill(1);
    const b = new Uint8Array(32).fill(2);
    const h1 = nodeHash(a, b);
    const copy = toHex(h1);
    nodeHash(b, a);
    expect(toHex(h1)).toBe(copy);
    expect(h1).not.toBe(nodeHash(a, b));
    // Inputs that are views of an earlier result are read before being overwritten.
    expect(toHex(nodeHash(h1, h1))).toBe(toHex(sha256(concatBytes(new Uint8Array([1]), h1, h1))));
  });
  it('throws RangeError unless both hashes are 32 bytes', () => {
    const h = new Uint8Array(32);
    expect(() => nodeHash(h, new Uint8Array(31))).toThrow(RangeError);
    expect(() => nodeHash(new Uint8Array(33), h)).toThrow(RangeError);
  });
});

describe('useSha256', () => {
  it('takes an implementation that computes SHA-256 and keeps every hash the same', () => {
    const before = [leafHash(new Uint8Array([1, 2, 3])), nodeHash(new Uint8Array(32), new Uint8Array(32).fill(1))];
    useSha256((d) => new Uint8Array(createHash('sha256').update(d).digest()));
    try {
      expect([leafHash(new Uint8Array([1, 2, 3])), nodeHash(new Uint8Array(32), new Uint8Array(32).fill(1))]).toEqual(before);
    } finally {
      useSha256(nobleSha256);
    }
  });

  it('refuses a function that is not SHA-256', () => {
    expect(() => useSha256(() => new Uint8Array(32))).toThrow(/not SHA-256/);
    expect(leafHash(new Uint8Array(0))).toEqual(sha256(new Uint8Array([0])));
  });
});
