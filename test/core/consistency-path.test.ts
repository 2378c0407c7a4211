/**
 * Consistency paths with an explicit seed (src/core/tree.ts): consistencyPath builds one from
 * a tree, rootsFromConsistencyPath runs the RFC 9162 §2.1.4.2 loop over it, and
 * verifyConsistency now delegates to that loop, so its behaviour is held to the pre-refactor
 * implementation (copied below as the reference) on valid and mutated proofs.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  consistencyPath,
  isPow2,
  memoryNodeReader,
  proveConsistency,
  rootHash,
  rootsFromConsistencyPath,
  verifyConsistency,
  type NodeReader,
} from '../../src/core/tree.js';
import { EMPTY_ROOT, HASH_SIZE, leafHash, nodeHash } from '../../src/core/hash.js';
import { VerificationError } from '../../src/core/errors.js';
import { equalBytes, toHex, utf8 } from '../../src/core/encoding.js';
import { ReferenceTree, b64, consistencyProofLength, flipBit, hex, leafNHashes, loadVectors } from './helpers.js';

const V = loadVectors('tree.json');
const rfcLeaves: Uint8Array[] = (V.rfc6962.leavesHex as string[]).map((h) => leafHash(hex(h)));
const rfcReader = memoryNodeReader(rfcLeaves);

/** A random 64-leaf tree (seeded, so failures reproduce) and its reference. */
function randomTree(seed: number, n = 64): { node: NodeReader; ref: ReferenceTree; leaves: Uint8Array[] } {
  const leaves = Array.from({ length: n }, (_, i) => leafHash(utf8(`random ${seed}/${i}`)));
  return { node: memoryNodeReader(leaves), ref: new ReferenceTree(leaves), leaves };
}

function expectVerificationError(f: () => unknown, message?: RegExp): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a VerificationError').toBeInstanceOf(VerificationError);
  if (message) expect((err as Error).message).toMatch(message);
}

describe('consistencyPath → rootsFromConsistencyPath', () => {
  const { node, ref } = randomTree(1);

  it('yields (root(m), root(n)) for every 0 < m < n ≤ 64 of a random tree', () => {
    let pairs = 0;
    for (let n = 2; n <= 64; n++) {
      for (let m = 1; m < n; m++) {
        const path = consistencyPath(m, n, node);
        const r = rootsFromConsistencyPath(m, n, path);
        expect(toHex(r.oldRoot), `${m}→${n} old`).toBe(toHex(ref.mth(0, m)));
        expect(toHex(r.newRoot), `${m}→${n} new`).toBe(toHex(ref.mth(0, n)));
        expect(toHex(r.oldRoot)).toBe(toHex(rootHash(m, node)));
        expect(toHex(r.newRoot)).toBe(toHex(rootHash(n, node)));
        pairs++;
      }
    }
    expect(pairs).toBe((64 * 63) / 2);
  });

  it('is PROOF(m, n), preceded by root(m) exactly when m is a power of two', () => {
    const pow2 = new Set([1, 2, 4, 8, 16, 32]);
    for (let n = 2; n <= 64; n++) {
      for (let m = 1; m < n; m++) {
        const path = consistencyPath(m, n, node);
        const proof = proveConsistency(m, n, node);
        expect(proof.length).toBe(consistencyProofLength(m, n));
        expect(isPow2(m)).toBe(pow2.has(m));
        if (pow2.has(m)) {
          expect(path.length, `${m}→${n}`).toBe(proof.length + 1);
          expect(toHex(path[0]!)).toBe(toHex(ref.mth(0, m)));
          expect(path.slice(1).map(toHex)).toEqual(proof.map(toHex));
        } else {
          expect(path.length, `${m}→${n}`).toBe(proof.length);
          expect(path.map(toHex)).toEqual(ref.proof(m, n).map(toHex));
        }
      }
    }
  });

  it('holds over random trees and sizes (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.nat(),
        fc.integer({ min: 2, max: 64 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n - 1 }), fc.constant(n))),
        (seed, [m, n]) => {
          const t = randomTree(seed, n);
          const r = rootsFromConsistencyPath(m, n, consistencyPath(m, n, t.node));
          return equalBytes(r.oldRoot, t.ref.mth(0, m)) && equalBytes(r.newRoot, t.ref.mth(0, n));
        }
      )
    );
  });

  it('reads only nodes inside the tree of size n', () => {
    const leaves = leafNHashes(64);
    for (let n = 2; n <= 40; n++) {
      const inner = memoryNodeReader(leaves);
      const guarded: NodeReader = (level, index) => {
        expect((index + 1) * 2 ** level, `node ${level}/${index} read for size ${n}`).toBeLessThanOrEqual(n);
        return inner(level, index);
      };
      for (let m = 1; m < n; m++) consistencyPath(m, n, guarded);
    }
  });

  it('throws RangeError unless 0 < m < n', () => {
    expect(() => consistencyPath(0, 5, node)).toThrow(RangeError);
    expect(() => consistencyPath(5, 5, node)).toThrow(RangeError);
    expect(() => consistencyPath(6, 5, node)).toThrow(RangeError);
    expect(() => consistencyPath(-1, 5, node)).toThrow(RangeError);
    expect(() => consistencyPath(1.5, 5, node)).toThrow(RangeError);
  });
});

describe('the RFC happy-path vectors (specs.md §6.2)', () => {
  // Copied from specs.md §6.2 (transparency-dev/merkle testdata/consistency/*/happy-path.json).
  const vectors = [
    {
      m: 1,
      n: 8,
      root1: 'bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=',
      root2: 'XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=',
      proof: ['lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=', 'Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=', 'a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ='],
    },
    {
      m: 6,
      n: 8,
      root1: 'duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=',
      root2: 'XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=',
      proof: ['DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=', 'yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=', '037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc='],
    },
    {
      m: 2,
      n: 5,
      root1: '+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU=',
      root2: 'Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=',
      proof: ['Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=', 'vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms='],
    },
    {
      m: 6,
      n: 7,
      root1: 'duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=',
      root2: '3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=',
      proof: ['DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=', 'sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=', '037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc='],
    },
  ];

  for (const v of vectors) {
    it(`${v.m} → ${v.n}: consistencyPath over the RFC 6962 tree is the vector, with the old root first iff m is a power of two`, () => {
      const proof = v.proof.map(b64);
      const root1 = b64(v.root1);
      const root2 = b64(v.root2);
      const expected = isPow2(v.m) ? [root1, ...proof] : proof;
      expect(consistencyPath(v.m, v.n, rfcReader).map(toHex)).toEqual(expected.map(toHex));
      const r = rootsFromConsistencyPath(v.m, v.n, expected);
      expect(toHex(r.oldRoot)).toBe(toHex(root1));
      expect(toHex(r.newRoot)).toBe(toHex(root2));
      expect(() => verifyConsistency(v.m, v.n, proof, root1, root2)).not.toThrow();
    });
  }

  it('a power-of-two m without its seed is one hash short', () => {
    const proof = vectors[0]!.proof.map(b64);
    expectVerificationError(() => rootsFromConsistencyPath(1, 8, proof), /too few hashes/);
    const p25 = vectors[2]!.proof.map(b64);
    expectVerificationError(() => rootsFromConsistencyPath(2, 5, p25), /too few hashes/);
  });
});

describe('rootsFromConsistencyPath rejects paths of the wrong length', () => {
  const { node } = randomTree(2);
  const extra = leafHash(utf8('extra'));

  it('one hash short, one too many, or empty → VerificationError naming the problem, for every 0 < m < n ≤ 40', () => {
    for (let n = 2; n <= 40; n++) {
      for (let m = 1; m < n; m++) {
        const path = consistencyPath(m, n, node);
        expectVerificationError(() => rootsFromConsistencyPath(m, n, path.slice(0, -1)), path.length === 1 ? /empty/ : /too few hashes/);
        if (path.length > 1) expectVerificationError(() => rootsFromConsistencyPath(m, n, path.slice(1)), /too few hashes/);
        expectVerificationError(() => rootsFromConsistencyPath(m, n, [...path, extra]), /too many hashes/);
        expectVerificationError(() => rootsFromConsistencyPath(m, n, [...path, ...path]), /too many hashes/);
        expectVerificationError(() => rootsFromConsistencyPath(m, n, []), /empty/);
      }
    }
  });

  it('reports proofLength (the proof without its seed) in the message when given', () => {
    const path = consistencyPath(4, 7, node);
    expectVerificationError(() => rootsFromConsistencyPath(4, 7, [...path, extra], path.length), new RegExp(`too many hashes \\(${path.length}\\)`));
    expectVerificationError(() => rootsFromConsistencyPath(4, 7, path.slice(0, -1), 99), /too few hashes \(99\) for 4 → 7/);
  });

  it('rejects sizes that are not 0 < m < n with VerificationError', () => {
    const path = consistencyPath(3, 7, node);
    expectVerificationError(() => rootsFromConsistencyPath(0, 7, path), /0 < old size < new size/);
    expectVerificationError(() => rootsFromConsistencyPath(7, 7, path), /0 < old size < new size/);
    expectVerificationError(() => rootsFromConsistencyPath(8, 7, path), /0 < old size < new size/);
    expect(() => rootsFromConsistencyPath(-1, 7, path)).toThrow(RangeError);
  });

  it('rejects a hash that is not 32 bytes with VerificationError', () => {
    const path = consistencyPath(3, 7, node);
    expectVerificationError(() => rootsFromConsistencyPath(3, 7, [path[0]!.subarray(1), ...path.slice(1)]), /31 bytes/);
    expectVerificationError(() => rootsFromConsistencyPath(3, 7, [...path.slice(0, -1), new Uint8Array(33)]), /33 bytes/);
  });

  it('any path of the right length yields some roots, and changing any hash changes the new root (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 64 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n - 1 }), fc.constant(n))),
        fc.nat(),
        fc.nat({ max: 255 }),
        ([m, n], pick, bit) => {
          const path = consistencyPath(m, n, node);
          const i = pick % path.length;
          const r = rootsFromConsistencyPath(m, n, path);
          const bad = rootsFromConsistencyPath(m, n, path.map((h, j) => (j === i ? flipBit(h, bit) : h)));
          return !equalBytes(r.newRoot, bad.newRoot);
        }
      )
    );
  });
});

// -------------------------------------------------------------------------------------------
// verifyConsistency before it was refactored onto rootsFromConsistencyPath (git 1c5066b^),
// verbatim but for names: the reference its behaviour must not have drifted from.

const half = (n: number) => Math.floor(n / 2);
const odd = (n: number) => n % 2 === 1;

function referenceVerifyConsistency(oldSize: number, newSize: number, proof: Uint8Array[], oldRoot: Uint8Array, newRoot: Uint8Array): void {
  for (const h of [oldRoot, newRoot, ...proof]) {
    if (h.length !== HASH_SIZE) throw new VerificationError(`consistency proof: hash of ${h.length} bytes`);
  }
  if (oldSize > newSize) throw new VerificationError(`consistency proof: old size ${oldSize} exceeds new size ${newSize}`);
  if (oldSize === 0) {
    if (proof.length !== 0) throw new VerificationError('consistency proof from size 0 must be empty');
    if (!equalBytes(oldRoot, EMPTY_ROOT)) throw new VerificationError('tree of size 0 must have the empty root');
    if (newSize === 0 && !equalBytes(newRoot, EMPTY_ROOT)) throw new VerificationError('tree of size 0 must have the empty root');
    return;
  }
  if (oldSize === newSize) {
    if (proof.length !== 0) throw new VerificationError('consistency proof between equal sizes must be empty');
    if (!equalBytes(oldRoot, newRoot)) throw new VerificationError(`two different roots for tree size ${oldSize}`);
    return;
  }
  if (proof.length === 0) throw new VerificationError('consistency proof is empty');
  let p = proof;
  if (isPow2(oldSize)) p = [oldRoot, ...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = p[0]!;
  let sr = p[0]!;
  for (let i = 1; i < p.length; i++) {
    const c = p[i]!;
    if (sn === 0) throw new VerificationError(`consistency proof: too many hashes (${proof.length}) for ${oldSize} → ${newSize}`);
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!odd(fn)) {
        do {
          fn = half(fn);
          sn = half(sn);
        } while (!odd(fn) && fn !== 0);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new VerificationError(`consistency proof: too few hashes (${proof.length}) for ${oldSize} → ${newSize}`);
  if (!equalBytes(fr, oldRoot)) throw new VerificationError(`consistency proof does not lead to the root of tree size ${oldSize}`);
  if (!equalBytes(sr, newRoot)) throw new VerificationError(`consistency proof does not lead to the root of tree size ${newSize}`);
}

/** 'ok' or the VerificationError message; any other throw fails the test. */
function outcome(f: () => void): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (!(e instanceof VerificationError)) throw e;
    return e.message;
  }
}

describe('verifyConsistency is unchanged by the refactoring', () => {
  const { node, ref } = randomTree(3);
  const root = (s: number) => (s === 0 ? EMPTY_ROOT : ref.mth(0, s));

  it('accepts every valid proof 0 ≤ m ≤ n ≤ 64, as the reference does', () => {
    for (let n = 0; n <= 64; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = proveConsistency(m, n, node);
        expect(outcome(() => verifyConsistency(m, n, proof, root(m), root(n))), `${m}→${n}`).toBe('ok');
        expect(outcome(() => referenceVerifyConsistency(m, n, proof, root(m), root(n)))).toBe('ok');
      }
    }
  });

  it('gives the same verdict and message as the reference on every systematic mutation, 1 ≤ m < n ≤ 33', () => {
    const extra = leafHash(utf8('extra'));
    let cases = 0;
    for (let n = 2; n <= 33; n++) {
      for (let m = 1; m < n; m++) {
        const proof = proveConsistency(m, n, node);
        const r1 = root(m);
        const r2 = root(n);
        const variants: Array<[number, number, Uint8Array[], Uint8Array, Uint8Array]> = [
          [m, n, proof, r1, r2],
          [m, n, proof.slice(0, -1), r1, r2],
          [m, n, proof.slice(1), r1, r2],
          [m, n, [...proof, extra], r1, r2],
          [m, n, [r1, ...proof], r1, r2],
          [m, n, [], r1, r2],
          [m, n, proof, r2, r1],
          [m, n, proof, flipBit(r1, 7), r2],
          [m, n, proof, r1, flipBit(r2, 7)],
          [m + 1, n, proof, r1, r2],
          [m, n + 1, proof, r1, r2],
          [n, m, proof, r1, r2],
          [m, m, [], r1, r1],
          [m, m, [], r1, r2],
          [m, m, proof, r1, r1],
          [0, n, [], EMPTY_ROOT, r2],
          [0, n, proof, EMPTY_ROOT, r2],
          [0, n, [], r1, r2],
          [0, 0, [], EMPTY_ROOT, r2],
          [m, n, [...proof.slice(0, -1), new Uint8Array(31)], r1, r2],
        ];
        proof.forEach((_, i) => variants.push([m, n, proof.map((h, j) => (j === i ? flipBit(h, i * 13) : h)), r1, r2]));
        for (const [a, b, p, x, y] of variants) {
          expect(outcome(() => verifyConsistency(a, b, p, x, y)), `${a}→${b} (${p.length} hashes)`).toBe(outcome(() => referenceVerifyConsistency(a, b, p, x, y)));
          cases++;
        }
      }
    }
    expect(cases).toBeGreaterThan(10_000);
  });

  it('gives the same verdict and message as the reference on random inputs (fast-check)', () => {
    const hash = fc.oneof(
      fc.constantFrom(...[0, 1, 2, 3, 5, 8, 13, 21, 34].map((s) => root(s))),
      fc.uint8Array({ minLength: 32, maxLength: 32 })
    );
    fc.assert(
      fc.property(fc.nat({ max: 40 }), fc.nat({ max: 40 }), fc.array(hash, { maxLength: 8 }), hash, hash, (m, n, p, x, y) => {
        expect(outcome(() => verifyConsistency(m, n, p, x, y))).toBe(outcome(() => referenceVerifyConsistency(m, n, p, x, y)));
      })
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 64 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n - 1 }), fc.constant(n))),
        fc.nat(),
        fc.nat({ max: 255 }),
        ([m, n], pick, bit) => {
          const proof = proveConsistency(m, n, node);
          const bad = proof.map((h, j) => (j === pick % proof.length ? flipBit(h, bit) : h));
          const got = outcome(() => verifyConsistency(m, n, bad, root(m), root(n)));
          expect(got).not.toBe('ok');
          expect(got).toBe(outcome(() => referenceVerifyConsistency(m, n, bad, root(m), root(n))));
        }
      )
    );
  });

  it('reports the proof length without the seed for power-of-two old sizes', () => {
    const proof = proveConsistency(4, 7, node);
    const msg = outcome(() => verifyConsistency(4, 7, [...proof, proof[0]!], root(4), root(7)));
    expect(msg).toBe(`consistency proof: too many hashes (${proof.length + 1}) for 4 → 7`);
  });
});
