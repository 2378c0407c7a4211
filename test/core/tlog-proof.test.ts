import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  MAX_PROOF_HASHES,
  MAX_TLOG_PROOF_SIZE,
  TLOG_PROOF_HEADER,
  formatTlogProof,
  parseTlogProof,
  type TlogProof,
} from '../../src/core/tlog-proof.js';
import { parseCheckpoint } from '../../src/core/checkpoint.js';
import { rootFromInclusionProof, verifyInclusion } from '../../src/core/tree.js';
import { leafHash } from '../../src/core/hash.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { encodeBase64, toHex } from '../../src/core/encoding.js';
import { arbHash, b64, hex, loadVectors } from './helpers.js';

const V = loadVectors('tlog-proof.json');

interface ValidVector {
  source: string;
  text: string;
  index: number;
  treeSize: number;
  leafInputHex: string;
  leafHash: string;
  proof: string[];
  checkpoint: string;
  checkpointBody: string;
  extra?: string;
}
const valid = V.valid as ValidVector[];

const plain = (p: TlogProof) => ({
  index: p.index,
  proof: p.proof.map(toHex),
  checkpoint: p.checkpoint,
  extra: p.extra === undefined ? undefined : toHex(p.extra),
});

const arbProof: fc.Arbitrary<TlogProof> = fc
  .record({
    index: fc.oneof(fc.nat({ max: 1000 }), fc.maxSafeNat()),
    proof: fc.array(arbHash, { maxLength: MAX_PROOF_HASHES, size: 'max' }),
    checkpoint: fc.string({ minLength: 1, maxLength: 200 }),
    extra: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
  })
  .map(({ extra, ...rest }) => (extra === undefined ? rest : { ...rest, extra }));

describe('parseTlogProof', () => {
  it('parses every valid vector to its index, hashes, extra data and verbatim checkpoint', () => {
    for (const v of valid) {
      const p = parseTlogProof(v.text);
      expect(plain(p), v.source).toEqual({
        index: v.index,
        proof: v.proof.map((h) => toHex(b64(h))),
        checkpoint: v.checkpoint,
        extra: v.extra === undefined ? undefined : toHex(b64(v.extra)),
      });
      expect('extra' in p).toBe(v.extra !== undefined);
    }
  });
  it('yields proofs that verify against the root of the checkpoint they carry', () => {
    for (const v of valid) {
      const p = parseTlogProof(v.text);
      const body = p.checkpoint.slice(0, p.checkpoint.indexOf('\n\n') + 1);
      expect(body).toBe(v.checkpointBody);
      const c = parseCheckpoint(body);
      expect(c.treeSize).toBe(v.treeSize);
      const leaf = leafHash(hex(v.leafInputHex));
      expect(toHex(leaf)).toBe(toHex(b64(v.leafHash)));
      verifyInclusion(leaf, p.index, c.treeSize, [...p.proof], c.rootHash);
    }
  });
  it('parses the illustrative spec example, whose 5 hashes cannot prove index 73894 of 109482', () => {
    const e = V.specExample as { text: string; index: number; treeSize: number; proofLength: number };
    const p = parseTlogProof(e.text);
    expect(p.index).toBe(e.index);
    expect(p.proof).toHaveLength(e.proofLength);
    expect(p.extra).toBeDefined();
    expect(p.checkpoint.startsWith('example.com/fancylog\n109482\n')).toBe(true);
    expect(() => rootFromInclusionProof(p.proof[0]!, p.index, e.treeSize, [...p.proof])).toThrow(VerificationError);
  });
  it('rejects every invalid vector with MalformedError', () => {
    for (const v of V.invalid as Array<{ text: string; why: string }>) {
      expect(() => parseTlogProof(v.text), v.why).toThrow(MalformedError);
    }
  });
  it(`accepts ${MAX_PROOF_HASHES} hashes and rejects ${MAX_PROOF_HASHES + 1}`, () => {
    const h = encodeBase64(new Uint8Array(32).fill(1));
    const text = (n: number) => `${TLOG_PROOF_HEADER}\nindex 0\n${`${h}\n`.repeat(n)}\ncheckpoint\n`;
    expect(parseTlogProof(text(MAX_PROOF_HASHES)).proof).toHaveLength(MAX_PROOF_HASHES);
    expect(() => parseTlogProof(text(MAX_PROOF_HASHES + 1))).toThrow(MalformedError);
  });
  it(`rejects a text longer than ${MAX_TLOG_PROOF_SIZE} characters`, () => {
    const head = `${TLOG_PROOF_HEADER}\nindex 0\n\n`;
    expect(parseTlogProof(head + 'x'.repeat(MAX_TLOG_PROOF_SIZE - head.length)).checkpoint).toHaveLength(MAX_TLOG_PROOF_SIZE - head.length);
    expect(() => parseTlogProof(head + 'x'.repeat(MAX_TLOG_PROOF_SIZE - head.length + 1))).toThrow(MalformedError);
  });
  it('accepts the largest safe index and an empty extra value', () => {
    const p = parseTlogProof(`${TLOG_PROOF_HEADER}\nextra \nindex ${Number.MAX_SAFE_INTEGER}\n\nc`);
    expect(p.index).toBe(Number.MAX_SAFE_INTEGER);
    expect(p.extra).toEqual(new Uint8Array(0));
    expect(p.checkpoint).toBe('c');
  });
  it('rejects a truncation of a valid vector anywhere before its checkpoint', () => {
    const v = valid[0]!;
    const cut = v.text.indexOf('\n\n') + 2;
    for (let i = 0; i < cut; i++) {
      expect(() => parseTlogProof(v.text.slice(0, i)), JSON.stringify(v.text.slice(0, i))).toThrow(MalformedError);
    }
  });
  it('throws only MalformedError on arbitrary text', () => {
    const near = fc
      .array(fc.constantFrom(TLOG_PROOF_HEADER, '\n', 'index ', '0', '1', 'extra ', 'AAAA', '=', encodeBase64(new Uint8Array(32))), { maxLength: 12 })
      .map((p) => p.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string(), near), (s) => {
        try {
          expect(formatTlogProof(parseTlogProof(s))).toBe(s);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
        }
      })
    );
  });
});

describe('formatTlogProof', () => {
  it('reproduces every valid vector from its parsed value', () => {
    for (const v of valid) expect(formatTlogProof(parseTlogProof(v.text)), v.source).toBe(v.text);
    const e = V.specExample as { text: string };
    expect(formatTlogProof(parseTlogProof(e.text))).toBe(e.text);
  });
  it('is inverted by parseTlogProof for any proof', () => {
    fc.assert(
      fc.property(arbProof, (p) => {
        expect(plain(parseTlogProof(formatTlogProof(p)))).toEqual(plain(p));
      })
    );
  });
  it('writes the header, the optional extra line, the index, one hash per line, a blank line and the checkpoint', () => {
    const h = new Uint8Array(32).fill(0xfb);
    expect(formatTlogProof({ index: 7, proof: [h], checkpoint: 'cp\n', extra: new Uint8Array([1, 2, 3]) })).toBe(
      `c2sp.org/tlog-proof@v1\nextra AQID\nindex 7\n${encodeBase64(h)}\n\ncp\n`
    );
    expect(formatTlogProof({ index: 0, proof: [], checkpoint: 'cp\n' })).toBe('c2sp.org/tlog-proof@v1\nindex 0\n\ncp\n');
  });
});
