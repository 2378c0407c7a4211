import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MalformedError } from '../../src/core/errors.js';
import { decodeBase64, fromHex, toHex, utf8 } from '../../src/core/encoding.js';
import {
  ALG_COSIGNATURE_V1,
  ALG_ED25519,
  formatKeyId,
  formatVerifierKey,
  generateKey,
  isValidKeyName,
  keyId,
  parseSignerKey,
  parseVerifierKey,
  type KeyAlgorithm,
} from '../../src/note/keys.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import { lossyString, notRejected, numRuns, singleByteChanges, strictSubstrings, vectors } from './vectors.js';

const isMalformed = (e: unknown) => e instanceof MalformedError;

/** Arbitrary valid key names: printable, no white space, no '+'. */
const keyName = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 40 })
  .filter((s) => isValidKeyName(s));

describe('keyId', () => {
  it('recomputes the key id of every valid verifier key vector', () => {
    for (const v of vectors.verifierKeys.valid) {
      const i = v.vkey.indexOf('+');
      const j = v.vkey.indexOf('+', i + 1);
      const name = v.vkey.slice(0, i);
      const material = decodeBase64(v.vkey.slice(j + 1), 'vector');
      expect(formatKeyId(keyId(name, material)), v.source).toBe(v.keyId);
    }
  });

  it('hashes name || 0x0A || type || key, so the type byte changes the id', () => {
    const pub = new Uint8Array(32).fill(9);
    expect(keyId('a', Uint8Array.of(ALG_ED25519, ...pub))).not.toBe(keyId('a', Uint8Array.of(ALG_COSIGNATURE_V1, ...pub)));
    // The 0x0A separator means "ab" + key is not "a" + "b"-prefixed key.
    expect(keyId('ab', Uint8Array.of(1))).not.toBe(keyId('a', Uint8Array.of(0x62, 0x0a, 1)));
  });

  it('returns an unsigned 32-bit number', () => {
    fc.assert(
      fc.property(fc.string(), fc.uint8Array({ maxLength: 40 }), (name, k) => {
        const id = keyId(name, k);
        return Number.isInteger(id) && id >= 0 && id <= 0xffffffff;
      }),
      { numRuns }
    );
  });
});

describe('formatKeyId', () => {
  it('pads to 8 lowercase hex digits', () => {
    expect(formatKeyId(0)).toBe('00000000');
    expect(formatKeyId(0xc74f20a3)).toBe('c74f20a3');
    expect(formatKeyId(0xffffffff)).toBe('ffffffff');
  });

  it('rejects values that are not uint32', () => {
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) expect(() => formatKeyId(bad)).toThrow(RangeError);
  });
});

describe('isValidKeyName', () => {
  it('accepts names from the specs', () => {
    for (const n of ['example.com/foo', 'PeterNeumann', 'oid/1.3.6.1.4.1.32473.1', 'pixel_transparency_log', '—', 'ü', '🦀']) {
      expect(isValidKeyName(n), n).toBe(true);
    }
  });

  it('rejects empty names, "+" and every kind of Unicode white space', () => {
    const bad = ['', 'a+b', '+', 'a b', 'a\tb', 'a\nb', 'a\rb', 'a\u000bb', 'a\u000cb', 'a\u0085b', 'a\u00a0b'];
    bad.push('a\u1680b', 'a\u2000b', 'a\u200ab', 'a\u2028b', 'a\u2029b', 'a\u202fb', 'a\u205fb', 'a\u3000b');
    for (const n of bad) expect(isValidKeyName(n), JSON.stringify(n)).toBe(false);
  });

  it('rejects control characters and lone surrogates', () => {
    for (const n of ['a\u0000b', 'a\u0001', '\u001f', 'a\ud800', '\udc00b']) expect(isValidKeyName(n), JSON.stringify(n)).toBe(false);
  });

  it('accepts U+FEFF, which is not White_Space (as in Go unicode.IsSpace)', () => {
    expect(isValidKeyName('a\ufeffb')).toBe(true);
  });
});

describe('parseVerifierKey', () => {
  it('parses every valid vector and formats it back identically', () => {
    for (const v of vectors.verifierKeys.valid) {
      const k = parseVerifierKey(v.vkey);
      expect(k.name, v.source).toBe(v.name);
      expect(formatKeyId(k.keyId), v.source).toBe(v.keyId);
      expect(k.alg, v.source).toBe(v.alg);
      expect(k.publicKey.length).toBe(32);
      expect(formatVerifierKey(k.name, k.alg, k.publicKey), v.source).toBe(v.vkey);
    }
  });

  it('splits on the first two "+" only, so base64 may contain "+"', () => {
    const k = parseVerifierKey('log.example.org+0a72cd63+AV2yLmzeBL9B3zFJNqal0JuqxiFve0m/eqmT1+KkLVeC');
    expect(k.name).toBe('log.example.org');
    expect(k.keyId).toBe(0x0a72cd63);
  });

  it('rejects every invalid vector with MalformedError', () => {
    for (const v of vectors.verifierKeys.invalid) {
      expect(() => parseVerifierKey(v.vkey), `${v.reason} (${v.source})`).toThrow(MalformedError);
    }
  });

  it('says why a key is rejected', () => {
    const peter = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
    expect(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(
      'malformed verifier key: unknown signature type 0x65'
    );
    expect(() => parseVerifierKey(peter.replace('c74f20a3', 'c74f20a4'))).toThrow('key id c74f20a4 does not match the key');
    expect(() => parseVerifierKey(peter.replace('c74f20a3', 'C74F20A3'))).toThrow('8 lowercase hex digits');
    expect(() => parseVerifierKey('PeterNeumann')).toThrow('missing "+" after the key name');
    expect(() => parseVerifierKey('PeterNeumann+c74f20a3')).toThrow('missing "+" after the key id');
    expect(() => parseVerifierKey('PeterNeumann+5bdbe860+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==')).toThrow(
      'public key is 33 bytes, want 32'
    );
    expect(() => parseVerifierKey(peter.slice(0, -1))).toThrow('invalid base64');
  });

  it('rejects every strict substring of valid keys (go-note TestNewVerifier)', () => {
    for (const v of vectors.verifierKeys.valid) {
      const accepted = notRejected(strictSubstrings(v.vkey), (m) => parseVerifierKey(lossyString(m)), isMalformed);
      expect(accepted.map(lossyString), v.source).toEqual([]);
    }
  });

  it('rejects every single-byte change of valid keys', () => {
    for (const v of vectors.verifierKeys.valid) {
      const changes = [...singleByteChanges(v.vkey)];
      expect(changes.length).toBe(255 * utf8(v.vkey).length);
      const accepted = notRejected(changes, (m) => parseVerifierKey(lossyString(m)), isMalformed);
      expect(accepted.map(lossyString), v.source).toEqual([]);
    }
  });

  it('round-trips arbitrary names, types and keys', () => {
    fc.assert(
      fc.property(keyName, fc.constantFrom<KeyAlgorithm>(ALG_ED25519, ALG_COSIGNATURE_V1), fc.uint8Array({ minLength: 32, maxLength: 32 }), (name, alg, pub) => {
        const vkey = formatVerifierKey(name, alg, pub);
        const k = parseVerifierKey(vkey);
        expect(k).toEqual({ name, keyId: keyId(name, Uint8Array.of(alg, ...pub)), alg, publicKey: pub });
        expect(formatVerifierKey(k.name, k.alg, k.publicKey)).toBe(vkey);
      }),
      { numRuns }
    );
  });

  it('never throws anything but MalformedError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        try {
          parseVerifierKey(s);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
        }
      }),
      { numRuns }
    );
  });
});

describe('formatVerifierKey', () => {
  it('formats the C2SP example key', () => {
    const k = parseVerifierKey('example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k');
    expect(formatVerifierKey('example.com/foo', ALG_ED25519, k.publicKey)).toBe(
      'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k'
    );
  });

  it('starts type 0x01 keys with "A" and type 0x04 keys with "B" after the second "+"', () => {
    const pub = new Uint8Array(32).fill(0xaa);
    expect(formatVerifierKey('w', ALG_ED25519, pub).split('+')[2]![0]).toBe('A');
    expect(formatVerifierKey('w', ALG_COSIGNATURE_V1, pub).split('+')[2]![0]).toBe('B');
  });

  it('rejects bad names, types and key lengths', () => {
    const pub = new Uint8Array(32);
    expect(() => formatVerifierKey('a b', ALG_ED25519, pub)).toThrow(MalformedError);
    expect(() => formatVerifierKey('a', 2 as KeyAlgorithm, pub)).toThrow(RangeError);
    expect(() => formatVerifierKey('a', ALG_ED25519, new Uint8Array(31))).toThrow(RangeError);
  });
});

describe('parseSignerKey', () => {
  it('parses every valid vector and derives its verifier key', () => {
    for (const v of vectors.signerKeys.valid) {
      const k = parseSignerKey(v.skey);
      expect(k.name, v.source).toBe(v.name);
      expect(formatKeyId(k.keyId), v.source).toBe(v.keyId);
      expect(k.alg, v.source).toBe(v.alg);
      expect(formatVerifierKey(k.name, k.alg, k.publicKey), v.source).toBe(v.vkey);
    }
  });

  it('returns the go-note PeterNeumann seed', () => {
    const [peter] = vectors.ed25519Keys;
    expect(toHex(parseSignerKey(peter!.skey).seed)).toBe(peter!.seedHex);
  });

  it('rejects every invalid vector with MalformedError', () => {
    for (const v of vectors.signerKeys.invalid) {
      expect(() => parseSignerKey(v.skey), `${v.reason} (${v.source})`).toThrow(MalformedError);
    }
  });

  it('never puts key material in error messages', () => {
    const skey = vectors.ed25519Keys[0]!.skey;
    const b64 = skey.split('+').slice(4).join('+');
    for (const bad of [skey.replace('c74f20a3', 'c74f20a4'), skey.slice(0, -1), skey.replace('+AYEK', '+ZYEK')]) {
      try {
        parseSignerKey(bad);
        expect.unreachable();
      } catch (e) {
        expect((e as Error).message).not.toContain(b64.slice(4, 20));
      }
    }
  });

  it('rejects every strict substring and single-byte change (go-note TestNewSigner)', () => {
    const skey = vectors.ed25519Keys[0]!.skey;
    const parse = (m: Uint8Array) => parseSignerKey(lossyString(m), nodeEd25519);
    expect(notRejected(strictSubstrings(skey), parse, isMalformed).map(lossyString)).toEqual([]);
    expect(notRejected(singleByteChanges(skey), parse, isMalformed).map(lossyString)).toEqual([]);
  });
});

describe('generateKey', () => {
  const seedOf = (hex: string) => () => fromHex(hex, 'seed');

  it('reproduces the go-note PeterNeumann key pair from its seed', () => {
    const peter = vectors.ed25519Keys[0]!;
    expect(generateKey('PeterNeumann', ALG_ED25519, seedOf(peter.seedHex))).toEqual({ skey: peter.skey, vkey: peter.vkey });
  });

  it('reproduces the DERIVED cosigner key pair of specs.md §6.9 (type 0x04)', () => {
    const peter = vectors.ed25519Keys[0]!;
    const w1 = vectors.signerKeys.valid.find((k) => k.alg === ALG_COSIGNATURE_V1)!;
    expect(generateKey(w1.name, ALG_COSIGNATURE_V1, seedOf(peter.seedHex))).toEqual({ skey: w1.skey, vkey: w1.vkey });
  });

  it('generates fresh, self-consistent keys by default', () => {
    for (const alg of [ALG_ED25519, ALG_COSIGNATURE_V1] as const) {
      const a = generateKey('example.com/log', alg);
      const b = generateKey('example.com/log', alg);
      expect(a.skey).not.toBe(b.skey);
      const s = parseSignerKey(a.skey);
      const v = parseVerifierKey(a.vkey);
      expect(s.alg).toBe(alg);
      expect(v.keyId).toBe(s.keyId);
      expect(v.publicKey).toEqual(s.publicKey);
      expect(a.skey.startsWith(`PRIVATE+KEY+example.com/log+${formatKeyId(s.keyId)}+`)).toBe(true);
    }
  });

  it('rejects a bad name and a short random source', () => {
    expect(() => generateKey('bad name')).toThrow(MalformedError);
    expect(() => generateKey('a', ALG_ED25519, () => new Uint8Array(31))).toThrow(RangeError);
    expect(() => generateKey('a', 3 as KeyAlgorithm)).toThrow(RangeError);
  });

  it('hashes the UTF-8 name', () => {
    const { vkey } = generateKey('ü', ALG_ED25519, () => new Uint8Array(32));
    const k = parseVerifierKey(vkey);
    expect(k.keyId).toBe(keyId('ü', Uint8Array.of(1, ...k.publicKey)));
    expect(utf8('ü').length).toBe(2);
  });
});
