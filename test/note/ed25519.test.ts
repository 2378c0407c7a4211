import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { concatBytes, fromHex, toHex, utf8 } from '../../src/core/encoding.js';
import { isWeakPublicKey, nobleEd25519, type Ed25519 } from '../../src/note/ed25519.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import * as noteIndex from '../../src/note/index.js';
import { parseNote } from '../../src/note/note.js';
import { parseVerifierKey } from '../../src/note/keys.js';
import { numRuns, vectors } from './vectors.js';

const impls: [string, Ed25519][] = [
  ['nobleEd25519', nobleEd25519],
  ['nodeEd25519', nodeEd25519],
];

// Group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
function leToBig(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  return n;
}
function bigToLe(n: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

describe.each(impls)('%s', (_, ed) => {
  it('passes the RFC 8032 §7.1 test vectors', () => {
    for (const v of vectors.ed25519) {
      const seed = fromHex(v.seedHex, 'seed');
      const msg = fromHex(v.messageHex, 'msg');
      expect(toHex(ed.publicKey(seed)), v.source).toBe(v.publicKeyHex);
      expect(toHex(ed.sign(seed, msg)), v.source).toBe(v.signatureHex);
      expect(ed.verify(fromHex(v.publicKeyHex, 'pub'), msg, fromHex(v.signatureHex, 'sig')), v.source).toBe(true);
    }
  });

  it('derives the go-note PeterNeumann public key and reproduces its signature', () => {
    const peter = vectors.ed25519Keys[0]!;
    const seed = fromHex(peter.seedHex, 'seed');
    expect(ed.publicKey(seed)).toEqual(parseVerifierKey(peter.vkey).publicKey);
    const sig = parseNote(vectors.signing[0]!.note).signatures[0]!.signature;
    expect(ed.sign(seed, utf8(vectors.signing[0]!.text))).toEqual(sig);
  });

  it('verifies the C2SP and go-note example signatures', () => {
    for (const v of vectors.notes.slice(0, 2)) {
      const sigs = parseNote(v.note).signatures;
      v.vkeys.forEach((vkey, i) => {
        expect(ed.verify(parseVerifierKey(vkey).publicKey, utf8(v.text), sigs[i]!.signature), v.source).toBe(true);
      });
    }
  });

  it('returns false, never throws, on malformed input', () => {
    const seed = new Uint8Array(32).fill(1);
    const pub = ed.publicKey(seed);
    const msg = utf8('m');
    const sig = ed.sign(seed, msg);
    expect(ed.verify(pub, msg, sig)).toBe(true);
    expect(ed.verify(pub.subarray(1), msg, sig)).toBe(false);
    expect(ed.verify(pub, msg, sig.subarray(1))).toBe(false);
    expect(ed.verify(pub, msg, concatBytes(sig, Uint8Array.of(0)))).toBe(false);
    expect(ed.verify(new Uint8Array(32).fill(0xff), msg, sig)).toBe(false); // not canonical
    expect(ed.verify(null as unknown as Uint8Array, msg, sig)).toBe(false);
    expect(ed.verify(pub, 'm' as unknown as Uint8Array, sig)).toBe(false);
  });

  it('rejects S + L (signature malleability, RFC 8032 §5.1.7 requires S < L)', () => {
    const seed = new Uint8Array(32).fill(2);
    const msg = utf8('malleable?');
    const sig = ed.sign(seed, msg);
    const s = leToBig(sig.subarray(32));
    const mauled = concatBytes(sig.subarray(0, 32), bigToLe(s + L, 32));
    expect(ed.verify(ed.publicKey(seed), msg, mauled)).toBe(false);
  });

  it('rejects the small-order public key with the trivial signature (which ZIP-215 would accept)', () => {
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const trivial = concatBytes(identity, new Uint8Array(32)); // R = identity, S = 0
    expect(ed.verify(identity, utf8('any message'), trivial)).toBe(false);
  });

  it('throws RangeError on a seed of the wrong length', () => {
    expect(() => ed.publicKey(new Uint8Array(31))).toThrow(RangeError);
    expect(() => ed.sign(new Uint8Array(33), utf8('m'))).toThrow(RangeError);
  });
});

describe('nobleEd25519 and nodeEd25519', () => {
  it('agree on public keys, signatures and verification for random seeds and messages', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 200 }), fc.nat(), (seed, msg, r) => {
        const pub = nobleEd25519.publicKey(seed);
        expect(nodeEd25519.publicKey(seed)).toEqual(pub);
        const sig = nobleEd25519.sign(seed, msg);
        expect(nodeEd25519.sign(seed, msg)).toEqual(sig);
        expect(nobleEd25519.verify(pub, msg, sig)).toBe(true);
        expect(nodeEd25519.verify(pub, msg, sig)).toBe(true);
        // A flipped bit in the signature, the message or the key fails in both.
        const bad = sig.slice();
        bad[r % 64]! ^= 1 << (r % 8);
        expect(nobleEd25519.verify(pub, msg, bad)).toBe(false);
        expect(nodeEd25519.verify(pub, msg, bad)).toBe(false);
        const other = concatBytes(msg, Uint8Array.of(r & 0xff));
        expect(nobleEd25519.verify(pub, other, sig)).toBe(false);
        expect(nodeEd25519.verify(pub, other, sig)).toBe(false);
      }),
      { numRuns }
    );
  });

  it('agree on random garbage signatures and keys', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 64, maxLength: 64 }), (pub, sig) => {
        const msg = utf8('garbage');
        expect(nodeEd25519.verify(pub, msg, sig)).toBe(nobleEd25519.verify(pub, msg, sig));
      }),
      { numRuns }
    );
  });

  it('agree on weak public keys (small order or not canonical)', () => {
    const smallOrder = [
      '0100000000000000000000000000000000000000000000000000000000000000',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0000000000000000000000000000000000000000000000000000000000000080',
      'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
      '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
    ];
    for (const hex of smallOrder) {
      const pub = fromHex(hex, 'pub');
      expect(isWeakPublicKey(pub), hex).toBe(true);
      const sig = concatBytes(fromHex(smallOrder[0]!, 'R'), new Uint8Array(32));
      expect(nobleEd25519.verify(pub, utf8('x'), sig), hex).toBe(false);
      expect(nodeEd25519.verify(pub, utf8('x'), sig), hex).toBe(false);
    }
    expect(isWeakPublicKey(nobleEd25519.publicKey(new Uint8Array(32)))).toBe(false);
  });

  it('nodeEd25519 stays correct past its key cache size', () => {
    const seeds = Array.from({ length: 150 }, (_, i) => new Uint8Array(32).fill(i));
    for (const round of [0, 1]) {
      for (const seed of seeds) {
        const msg = utf8(`round ${round}`);
        const pub = nodeEd25519.publicKey(seed);
        expect(nodeEd25519.verify(pub, msg, nodeEd25519.sign(seed, msg))).toBe(true);
      }
    }
  });
});

describe('module boundaries', () => {
  it('src/note is free of node: imports except ed25519-node.ts, which index.ts does not re-export', () => {
    const dir = new URL('../../src/note/', import.meta.url);
    for (const f of readdirSync(dir)) {
      const src = readFileSync(new URL(f, dir), 'utf8');
      if (f === 'ed25519-node.ts') expect(src).toContain("from 'node:crypto'");
      else expect(src, f).not.toMatch(/from '(node:|crypto'|fs'|buffer')/);
      if (f !== 'ed25519.ts') expect(src, f).not.toContain("from '@noble/ed25519'");
    }
    expect('nodeEd25519' in noteIndex).toBe(false);
    expect('nobleEd25519' in noteIndex).toBe(true);
  });
});
