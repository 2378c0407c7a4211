import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import {
  maxPow2Below,
  perfectSubtrees,
  rangeHash,
  rootHash,
  proveInclusion,
  proveConsistency,
  rootFromInclusionProof,
  verifyInclusion,
  verifyConsistency,
  memoryNodeReader,
  type NodeReader,
  type RangeMemo,
} from '../../src/core/tree.js';
import { EMPTY_ROOT, leafHash, nodeHash } from '../../src/core/hash.js';
import { VerificationError } from '../../src/core/errors.js';
import { toHex, utf8 } from '../../src/core/encoding.js';
import {
  ReferenceTree,
  arbLeaves,
  b64,
  bitLength,
  consistencyProofLength,
  flipBit,
  hex,
  inclusionProofLength,
  leafNHashes,
  loadVectors,
} from './helpers.js';

const V = loadVectors('tree.json');

interface InclusionVector { leafIdx: number; treeSize: number; root: string; leafHash: string; proof: string[] }
interface ConsistencyVector { size1: number; size2: number; root1: string; root2: string; proof: string[] }

const rfcLeaves: Uint8Array[] = (V.rfc6962.leavesHex as string[]).map((h) => leafHash(hex(h)));
const rfcReader = memoryNodeReader(rfcLeaves);
const inclusionVectors = V.inclusion as InclusionVector[];
const consistencyVectors = V.consistency as ConsistencyVector[];

const hexes = (hs: Uint8Array[]) => hs.map(toHex);
const b64s = (ss: string[]) => ss.map(b64);

function expectVerificationError(f: () => unknown): void {
  expect(f).toThrow(VerificationError);
}

/** Every mutation of an inclusion proof that must not verify. */
function inclusionMutations(v: { leaf: Uint8Array; index: number; size: number; proof: Uint8Array[]; root: Uint8Array }) {
  const out: Array<[string, Uint8Array, number, number, Uint8Array[], Uint8Array]> = [];
  const { leaf, index, size, proof, root } = v;
  const garbage = leafHash(utf8('garbage'));
  proof.forEach((h, i) => {
    for (const bit of [0, 7, 100, 255]) {
      out.push([`proof[${i}] bit ${bit} flipped`, leaf, index, size, proof.map((p, j) => (j === i ? flipBit(h, bit) : p)), root]);
    }
  });
  if (proof.length > 0) {
    out.push(['truncated proof', leaf, index, size, proof.slice(0, -1), root]);
    out.push(['first hash dropped', leaf, index, size, proof.slice(1), root]);
    out.push(['empty proof', leaf, index, size, [], root]);
  }
  out.push(['trailing garbage', leaf, index, size, [...proof, garbage], root]);
  out.push(['preceding garbage', leaf, index, size, [garbage, ...proof], root]);
  out.push(['trailing root', leaf, index, size, [...proof, root], root]);
  out.push(['wrong leaf', flipBit(leaf, 3), index, size, proof, root]);
  out.push(['wrong root', leaf, index, size, proof, flipBit(root, 200)]);
  out.push(['index = size', leaf, size, size, proof, root]);
  out.push(['index > size', leaf, size + 5, size, proof, root]);
  if ((index ^ 1) < size) out.push(['sibling index', leaf, index ^ 1, size, proof, root]);
  out.push(['size × 2', leaf, index, size * 2, proof, root]);
  if (size > 1 && index < size - 1 && inclusionProofLength(index, size - 1) !== proof.length) {
    out.push(['size − 1', leaf, index, size - 1, proof, root]);
  }
  if (proof.length > 0) {
    const rev = [...proof].reverse();
    if (rev.some((h, i) => h !== proof[i])) out.push(['reversed proof', leaf, index, size, rev, root]);
  }
  return out;
}

describe('maxPow2Below', () => {
  it('returns the largest power of two strictly below n for every n from 2 to 4097', () => {
    for (let n = 2; n <= 4097; n++) {
      const k = maxPow2Below(n);
      expect(Number.isInteger(Math.log2(k))).toBe(true);
      expect(k < n && n <= 2 * k).toBe(true);
    }
  });
  it('works above 2^32 without truncating', () => {
    expect(maxPow2Below(2 ** 32)).toBe(2 ** 31);
    expect(maxPow2Below(2 ** 32 + 1)).toBe(2 ** 32);
    expect(maxPow2Below(2 ** 40 + 12345)).toBe(2 ** 40);
    expect(maxPow2Below(Number.MAX_SAFE_INTEGER)).toBe(2 ** 52);
  });
});

describe('perfectSubtrees', () => {
  it('splits [0, n) into one perfect subtree per set bit of n, largest first', () => {
    for (const n of [1, 2, 3, 7, 8, 255, 256, 257, 70000, 2 ** 40 + 2 ** 33 + 7, Number.MAX_SAFE_INTEGER]) {
      const parts = perfectSubtrees(0, n);
      const levels = parts.map(([l]) => l);
      const expected: number[] = [];
      for (let b = 60; b >= 0; b--) if ((BigInt(n) >> BigInt(b)) & 1n) expected.push(b);
      expect(levels).toEqual(expected);
      let lo = 0;
      for (const [l, i] of parts) {
        expect(i * 2 ** l).toBe(lo);
        lo += 2 ** l;
      }
      expect(lo).toBe(n);
    }
  });
  it('covers an aligned range [lo, hi) contiguously with aligned subtrees', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: 1, max: 2 ** 30 }), (shift, a, w) => {
        const lo = a * 2 ** shift;
        const hi = lo + w;
        let at = lo;
        for (const [l, i] of perfectSubtrees(lo, hi)) {
          expect(i * 2 ** l).toBe(at);
          expect(Number.isSafeInteger(i)).toBe(true);
          at += 2 ** l;
        }
        expect(at).toBe(hi);
      })
    );
  });
  it('returns nothing for an empty range', () => {
    expect(perfectSubtrees(5, 5)).toEqual([]);
  });
});

describe('rangeHash', () => {
  it('equals MTH(D[lo:hi]) for every valid subtree [lo, hi) of a 64-leaf tree (specs.md §1.8)', () => {
    const leaves = leafNHashes(64);
    const ref = new ReferenceTree(leaves);
    const node = memoryNodeReader(leaves);
    let checked = 0;
    for (let lo = 0; lo < 64; lo++) {
      for (let hi = lo + 1; hi <= 64; hi++) {
        let p = 1;
        while (p < hi - lo) p *= 2;
        if (lo % p !== 0) continue;
        expect(toHex(rangeHash(lo, hi, node))).toBe(toHex(ref.mth(lo, hi)));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(200);
  });
});

describe('rootHash', () => {
  it('reproduces the RFC 6962 roots for sizes 0–8 (specs.md §6.1)', () => {
    (V.rfc6962.rootsHex as string[]).forEach((r, n) => expect(toHex(rootHash(n, rfcReader))).toBe(r));
  });
  it('returns the empty-tree root for size 0 without reading any node', () => {
    const never: NodeReader = () => {
      throw new Error('read');
    };
    expect(rootHash(0, never)).toEqual(EMPTY_ROOT);
    expect(toHex(EMPTY_ROOT)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
  it('reproduces the "leaf %d" roots up to size 70000 (specs.md §6.9)', () => {
    const node = memoryNodeReader(leafNHashes(70000));
    for (const { size, rootHex } of V.leafN.rootsHex as Array<{ size: number; rootHex: string }>) {
      expect(toHex(rootHash(size, node))).toBe(rootHex);
    }
  });
  it('equals the recursive MTH for every size 0–70', () => {
    const leaves = leafNHashes(70);
    const ref = new ReferenceTree(leaves);
    const node = memoryNodeReader(leaves);
    for (let n = 0; n <= 70; n++) expect(toHex(rootHash(n, node))).toBe(toHex(ref.mth(0, n)));
  });
  it('throws RangeError for a negative, fractional or unsafe size', () => {
    for (const n of [-1, 1.5, NaN, 2 ** 53]) expect(() => rootHash(n, rfcReader)).toThrow(RangeError);
  });
});

describe('proveInclusion', () => {
  it('reproduces the merkle happy-path inclusion proofs (specs.md §6.2)', () => {
    for (const v of inclusionVectors) {
      expect(hexes(proveInclusion(v.leafIdx, v.treeSize, rfcReader))).toEqual(hexes(b64s(v.proof)));
    }
  });
  it('reproduces the 17-hash proof of index 65535 in the "leaf %d" tree of 70000 (specs.md §6.9)', () => {
    const node = memoryNodeReader(leafNHashes(70000));
    const [v] = V.leafN.inclusion as Array<{ leafIdx: number; treeSize: number; proofHex: string[] }>;
    const proof = proveInclusion(v!.leafIdx, v!.treeSize, node);
    expect(proof).toHaveLength(17);
    expect(hexes(proof)).toEqual(v!.proofHex);
  });
  it('matches PATH and the closed-form length for every index of every size 1–70, and the proof verifies', () => {
    const leaves = leafNHashes(70);
    const ref = new ReferenceTree(leaves);
    const node = memoryNodeReader(leaves);
    for (let n = 1; n <= 70; n++) {
      const root = rootHash(n, node);
      for (let i = 0; i < n; i++) {
        const proof = proveInclusion(i, n, node);
        expect(proof).toHaveLength(inclusionProofLength(i, n));
        expect(hexes(proof)).toEqual(hexes(ref.path(i, 0, n)));
        verifyInclusion(leaves[i]!, i, n, proof, root);
      }
    }
  });
  it('gives the same proofs with one RangeMemo shared across every index and size of a tree', () => {
    const leaves = leafNHashes(70);
    const node = memoryNodeReader(leaves);
    const memo: RangeMemo = new Map();
    for (let n = 1; n <= 70; n++) {
      for (let i = 0; i < n; i++) expect(hexes(proveInclusion(i, n, node, memo))).toEqual(hexes(proveInclusion(i, n, node)));
    }
    expect(memo.size).toBeGreaterThan(0);
  });
  it('throws RangeError for an index at or beyond the size, or a bad number', () => {
    expect(() => proveInclusion(8, 8, rfcReader)).toThrow(RangeError);
    expect(() => proveInclusion(0, 0, rfcReader)).toThrow(RangeError);
    expect(() => proveInclusion(-1, 8, rfcReader)).toThrow(RangeError);
    expect(() => proveInclusion(1.5, 8, rfcReader)).toThrow(RangeError);
  });
});

describe('proveConsistency', () => {
  it('reproduces the merkle happy-path proofs and 3→7, 4→7 (specs.md §6.2, §6.9)', () => {
    for (const v of consistencyVectors) {
      expect(hexes(proveConsistency(v.size1, v.size2, rfcReader))).toEqual(hexes(b64s(v.proof)));
    }
  });
  it('reproduces 65536→70000 and 256→257 in the "leaf %d" tree (specs.md §6.9)', () => {
    const node = memoryNodeReader(leafNHashes(70000));
    for (const v of V.leafN.consistency as Array<{ size1: number; size2: number; proofHex: string[] }>) {
      expect(hexes(proveConsistency(v.size1, v.size2, node))).toEqual(v.proofHex);
    }
  });
  it('matches PROOF and the closed-form length for every 1 ≤ m ≤ n ≤ 70, and the proof verifies', () => {
    const leaves = leafNHashes(70);
    const ref = new ReferenceTree(leaves);
    const node = memoryNodeReader(leaves);
    const roots = Array.from({ length: 71 }, (_, n) => rootHash(n, node));
    for (let n = 1; n <= 70; n++) {
      for (let m = 1; m <= n; m++) {
        const proof = proveConsistency(m, n, node);
        expect(proof).toHaveLength(m === n ? 0 : consistencyProofLength(m, n));
        expect(hexes(proof)).toEqual(hexes(ref.proof(m, n)));
        verifyConsistency(m, n, proof, roots[m]!, roots[n]!);
      }
    }
  });
  it('returns an empty proof from size 0 and between equal sizes', () => {
    expect(proveConsistency(0, 8, rfcReader)).toEqual([]);
    expect(proveConsistency(0, 0, rfcReader)).toEqual([]);
    expect(proveConsistency(5, 5, rfcReader)).toEqual([]);
  });
  it('throws RangeError when the old size exceeds the new size, or for a bad number', () => {
    expect(() => proveConsistency(5, 4, rfcReader)).toThrow(RangeError);
    expect(() => proveConsistency(-1, 4, rfcReader)).toThrow(RangeError);
    expect(() => proveConsistency(1, 2 ** 53, rfcReader)).toThrow(RangeError);
  });
});

describe('rootFromInclusionProof', () => {
  it('returns the root of every merkle happy-path vector', () => {
    for (const v of inclusionVectors) {
      expect(toHex(rootFromInclusionProof(b64(v.leafHash), v.leafIdx, v.treeSize, b64s(v.proof)))).toBe(toHex(b64(v.root)));
    }
  });
  it('returns the leaf itself for the single-leaf tree', () => {
    const leaf = rfcLeaves[0]!;
    expect(rootFromInclusionProof(leaf, 0, 1, [])).toEqual(leaf);
  });
  it('throws VerificationError for an index at or beyond the size', () => {
    expectVerificationError(() => rootFromInclusionProof(rfcLeaves[0]!, 1, 1, []));
    expectVerificationError(() => rootFromInclusionProof(rfcLeaves[0]!, 0, 0, []));
  });
  it('throws VerificationError for too many or too few hashes', () => {
    const proof = proveInclusion(5, 8, rfcReader);
    expectVerificationError(() => rootFromInclusionProof(rfcLeaves[5]!, 5, 8, [...proof, proof[0]!]));
    expectVerificationError(() => rootFromInclusionProof(rfcLeaves[5]!, 5, 8, proof.slice(0, 2)));
    expectVerificationError(() => rootFromInclusionProof(rfcLeaves[0]!, 0, 1, [proof[0]!]));
  });
  it('throws VerificationError when the leaf or a proof hash is not 32 bytes', () => {
    const proof = proveInclusion(5, 8, rfcReader);
    expectVerificationError(() => rootFromInclusionProof(rfcLeaves[5]!.subarray(0, 31), 5, 8, proof));
    expectVerificationError(() => rootFromInclusionProof(rfcLeaves[5]!, 5, 8, [proof[0]!, new Uint8Array(33), proof[2]!]));
  });
  it('throws RangeError for a negative or unsafe index or size', () => {
    expect(() => rootFromInclusionProof(rfcLeaves[0]!, -1, 8, [])).toThrow(RangeError);
    expect(() => rootFromInclusionProof(rfcLeaves[0]!, 0, 2 ** 53, [])).toThrow(RangeError);
  });
});

describe('verifyInclusion', () => {
  it('accepts every merkle happy-path vector', () => {
    for (const v of inclusionVectors) verifyInclusion(b64(v.leafHash), v.leafIdx, v.treeSize, b64s(v.proof), b64(v.root));
  });
  it('accepts the 17-hash "leaf %d" proof against the size-70000 root', () => {
    const [v] = V.leafN.inclusion as Array<{ leafIdx: number; treeSize: number; proofHex: string[] }>;
    const root = (V.leafN.rootsHex as Array<{ size: number; rootHex: string }>).find((r) => r.size === 70000)!.rootHex;
    verifyInclusion(leafHash(utf8('leaf 65535')), v!.leafIdx, v!.treeSize, v!.proofHex.map(hex), hex(root));
  });
  it('rejects modified, truncated, extended, reordered proofs, wrong leaves, roots, indices and sizes', () => {
    const cases = inclusionVectors.map((v) => ({ leaf: b64(v.leafHash), index: v.leafIdx, size: v.treeSize, proof: b64s(v.proof), root: b64(v.root) }));
    for (const c of cases) {
      for (const [what, leaf, index, size, proof, root] of inclusionMutations(c)) {
        expect(() => verifyInclusion(leaf, index, size, proof, root), `${what} (${c.index}/${c.size})`).toThrow(VerificationError);
      }
    }
  });
  it('rejects a flip of any single bit of any proof hash or of the root of the vectors', () => {
    for (const v of inclusionVectors) {
      const leaf = b64(v.leafHash);
      const proof = b64s(v.proof);
      const root = b64(v.root);
      for (let bit = 0; bit < 256; bit++) {
        expectVerificationError(() => verifyInclusion(leaf, v.leafIdx, v.treeSize, proof, flipBit(root, bit)));
        proof.forEach((h, i) => {
          const bad = proof.map((p, j) => (j === i ? flipBit(h, bit) : p));
          expectVerificationError(() => verifyInclusion(leaf, v.leafIdx, v.treeSize, bad, root));
        });
      }
    }
  });
  it('accepts a proof for a random leaf of a random tree, and rejects it after any bit flip of a proof hash or the root', () => {
    fc.assert(
      fc.property(
        arbLeaves(1, 300),
        fc.nat(),
        fc.nat(),
        fc.nat({ max: 255 }),
        (leaves, i0, which, bit) => {
          const n = leaves.length;
          const i = i0 % n;
          const node = memoryNodeReader(leaves);
          const root = rootHash(n, node);
          const proof = proveInclusion(i, n, node);
          verifyInclusion(leaves[i]!, i, n, proof, root);
          const target = which % (proof.length + 1);
          if (target === proof.length) {
            expectVerificationError(() => verifyInclusion(leaves[i]!, i, n, proof, flipBit(root, bit)));
          } else {
            const bad = proof.map((p, j) => (j === target ? flipBit(p, bit) : p));
            expectVerificationError(() => verifyInclusion(leaves[i]!, i, n, bad, root));
          }
          if (proof.length > 0) expectVerificationError(() => verifyInclusion(leaves[i]!, i, n, proof.slice(0, -1), root));
          expectVerificationError(() => verifyInclusion(leaves[i]!, i, n, [...proof, root], root));
        }
      )
    );
  });
});

describe('verifyConsistency', () => {
  it('accepts every merkle happy-path vector and 3→7, 4→7', () => {
    for (const v of consistencyVectors) verifyConsistency(v.size1, v.size2, b64s(v.proof), b64(v.root1), b64(v.root2));
  });
  it('accepts 65536→70000 and 256→257 in the "leaf %d" tree', () => {
    const roots = new Map((V.leafN.rootsHex as Array<{ size: number; rootHex: string }>).map((r) => [r.size, hex(r.rootHex)]));
    for (const v of V.leafN.consistency as Array<{ size1: number; size2: number; proofHex: string[] }>) {
      verifyConsistency(v.size1, v.size2, v.proofHex.map(hex), roots.get(v.size1)!, roots.get(v.size2)!);
    }
  });
  it('follows the documented size-0 and equal-size rules (specs.md §1.7)', () => {
    for (const c of V.consistencyEdgeCases.cases as Array<ConsistencyVector & { accept: boolean; why: string }>) {
      const run = () => verifyConsistency(c.size1, c.size2, b64s(c.proof), b64(c.root1), b64(c.root2));
      if (c.accept) expect(run, c.why).not.toThrow();
      else expect(run, c.why).toThrow(VerificationError);
    }
  });
  it('rejects modified, truncated, extended proofs, swapped and wrong roots, and changed sizes', () => {
    const garbage = leafHash(utf8('garbage'));
    for (const v of consistencyVectors) {
      const proof = b64s(v.proof);
      const r1 = b64(v.root1);
      const r2 = b64(v.root2);
      const bad: Array<[string, number, number, Uint8Array[], Uint8Array, Uint8Array]> = [
        ['wrong root1', v.size1, v.size2, proof, flipBit(r1, 9), r2],
        ['wrong root2', v.size1, v.size2, proof, r1, flipBit(r2, 9)],
        ['trailing garbage', v.size1, v.size2, [...proof, garbage], r1, r2],
        ['preceding garbage', v.size1, v.size2, [garbage, ...proof], r1, r2],
        ['trailing root1', v.size1, v.size2, [...proof, r1], r1, r2],
        ['trailing root2', v.size1, v.size2, [...proof, r2], r1, r2],
        ['size1 > size2', v.size2 + 1, v.size2, proof, r1, r2],
      ];
      if (toHex(r1) !== toHex(r2)) bad.push(['swapped roots', v.size1, v.size2, proof, r2, r1]);
      if (v.size1 !== v.size2) {
        bad.push(['empty proof', v.size1, v.size2, [], r1, r2]);
        bad.push(['size1 − 1', v.size1 - 1, v.size2, proof, r1, r2]);
        bad.push(['size2 × 2', v.size1, v.size2 * 2, proof, r1, r2]);
      }
      if (v.size1 + 1 < v.size2) bad.push(['size1 + 1', v.size1 + 1, v.size2, proof, r1, r2]);
      proof.forEach((h, i) => {
        bad.push([`proof[${i}] modified`, v.size1, v.size2, proof.map((p, j) => (j === i ? flipBit(h, 4) : p)), r1, r2]);
      });
      if (proof.length > 0) bad.push(['truncated', v.size1, v.size2, proof.slice(0, -1), r1, r2]);
      for (const [what, m, n, p, a, b] of bad) {
        expect(() => verifyConsistency(m, n, p, a, b), `${what} (${v.size1}→${v.size2})`).toThrow(VerificationError);
      }
    }
  });
  it('rejects a flip of any single bit of any proof hash or of either root of the vectors', () => {
    for (const v of consistencyVectors) {
      const proof = b64s(v.proof);
      const r1 = b64(v.root1);
      const r2 = b64(v.root2);
      for (let bit = 0; bit < 256; bit++) {
        expectVerificationError(() => verifyConsistency(v.size1, v.size2, proof, flipBit(r1, bit), r2));
        expectVerificationError(() => verifyConsistency(v.size1, v.size2, proof, r1, flipBit(r2, bit)));
        proof.forEach((h, i) => {
          const bad = proof.map((p, j) => (j === i ? flipBit(h, bit) : p));
          expectVerificationError(() => verifyConsistency(v.size1, v.size2, bad, r1, r2));
        });
      }
    }
  });
  it('rejects hashes that are not 32 bytes with VerificationError', () => {
    const v = consistencyVectors.find((c) => c.size1 === 6 && c.size2 === 8)!;
    const proof = b64s(v.proof);
    expectVerificationError(() => verifyConsistency(6, 8, proof, b64(v.root1).subarray(1), b64(v.root2)));
    expectVerificationError(() => verifyConsistency(6, 8, [proof[0]!, new Uint8Array(31), proof[2]!], b64(v.root1), b64(v.root2)));
    expectVerificationError(() => verifyConsistency(1, 1, [], new Uint8Array(12), new Uint8Array(12)));
  });
  it('throws RangeError for a negative or unsafe size', () => {
    expect(() => verifyConsistency(-1, 1, [], EMPTY_ROOT, EMPTY_ROOT)).toThrow(RangeError);
    expect(() => verifyConsistency(1, 2 ** 53, [], EMPTY_ROOT, EMPTY_ROOT)).toThrow(RangeError);
  });
  it('accepts a proof between random sizes m ≤ n of a random tree, and rejects it after any bit flip', () => {
    fc.assert(
      fc.property(
        arbLeaves(1, 300),
        fc.nat(),
        fc.nat(),
        fc.nat({ max: 255 }),
        (leaves, m0, which, bit) => {
          const n = leaves.length;
          const m = 1 + (m0 % n);
          const node = memoryNodeReader(leaves);
          const r1 = rootHash(m, node);
          const r2 = rootHash(n, node);
          const proof = proveConsistency(m, n, node);
          verifyConsistency(m, n, proof, r1, r2);
          const target = which % (proof.length + 2);
          if (target === proof.length) expectVerificationError(() => verifyConsistency(m, n, proof, flipBit(r1, bit), r2));
          else if (target === proof.length + 1) expectVerificationError(() => verifyConsistency(m, n, proof, r1, flipBit(r2, bit)));
          else {
            const bad = proof.map((p, j) => (j === target ? flipBit(p, bit) : p));
            expectVerificationError(() => verifyConsistency(m, n, bad, r1, r2));
          }
          if (m < n) {
            expectVerificationError(() => verifyConsistency(m, n, proof.slice(0, -1), r1, r2));
            expectVerificationError(() => verifyConsistency(m, n, [...proof, r1], r1, r2));
            if (toHex(r1) !== toHex(r2)) expectVerificationError(() => verifyConsistency(m, n, proof, r2, r1));
          }
        }
      )
    );
  });
});

describe('memoryNodeReader', () => {
  it('returns the RFC 6962 node hashes of the 8-leaf tree (specs.md §6.1)', () => {
    (V.rfc6962.nodesHex as string[][]).forEach((row, level) => {
      row.forEach((h, index) => expect(toHex(rfcReader(level, index))).toBe(h));
    });
  });
  it('throws RangeError for a leaf beyond the list', () => {
    expect(() => rfcReader(0, 8)).toThrow(RangeError);
    expect(() => rfcReader(3, 1)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------
// Indices and sizes past 2^32 and 2^40. A tree that large cannot be materialised, so two
// synthetic readers stand in for it:
//  - `sparseTree`: a consistent Merkle tree in which every leaf has the same hash except a
//    few special ones, so any node is computable in O(level) (untouched subtrees of height
//    l all share one hash). Proofs over it really verify against its root.
//  - `coordReader`: node (level, index) → SHA-256 of its coordinates. Not a Merkle tree,
//    but it shows exactly which coordinates the prover reads, so a truncated index shows.

function sparseTree(special: ReadonlyMap<number, Uint8Array>): NodeReader {
  const base: Uint8Array[] = [leafHash(utf8('filler'))];
  const baseAt = (l: number): Uint8Array => {
    while (base.length <= l) base.push(nodeHash(base[base.length - 1]!, base[base.length - 1]!));
    return base[l]!;
  };
  const keys = [...special.keys()];
  const memo = new Map<string, Uint8Array>();
  const node: NodeReader = (level, index) => {
    const lo = index * 2 ** level;
    const hi = lo + 2 ** level;
    if (!keys.some((k) => k >= lo && k < hi)) return baseAt(level);
    if (level === 0) return special.get(lo)!;
    const key = `${level}/${index}`;
    let h = memo.get(key);
    if (!h) {
      h = nodeHash(node(level - 1, 2 * index), node(level - 1, 2 * index + 1));
      memo.set(key, h);
    }
    return h;
  };
  return node;
}

function coordHash(level: number | bigint, index: number | bigint): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`${level}/${index}`).digest());
}

describe('proofs past 2^32 and 2^40', () => {
  const specials = [2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, 2 ** 40 + 3, 2 ** 40 + 2 ** 33 + 1];
  const special = new Map(specials.map((i) => [i, leafHash(utf8(`special ${i}`))]));
  const node = sparseTree(special);

  it('the sparse reader agrees with memoryNodeReader on a small tree', () => {
    const small = new Map([3, 17, 40].map((i) => [i, leafHash(utf8(`s${i}`))]));
    const sparse = sparseTree(small);
    const leaves = Array.from({ length: 64 }, (_, i) => sparse(0, i));
    const mem = memoryNodeReader(leaves);
    for (let n = 1; n <= 64; n++) expect(toHex(rootHash(n, sparse))).toBe(toHex(rootHash(n, mem)));
  });

  const sizes = [2 ** 32 + 1, 2 ** 32 + 6, 2 ** 40 + 4, 2 ** 40 + 2 ** 33 + 7, 2 ** 41 + 3, 2 ** 52 + 12345];
  it('proves and verifies inclusion of indices near 2^32 and 2^40 in trees up to 2^52', () => {
    let checked = 0;
    for (const size of sizes) {
      const root = rootHash(size, node);
      for (const index of [...specials, 0, 2 ** 31, size - 1]) {
        if (index >= size) continue;
        const proof = proveInclusion(index, size, node);
        expect(proof).toHaveLength(inclusionProofLength(index, size));
        expect(toHex(rootFromInclusionProof(node(0, index), index, size, proof))).toBe(toHex(root));
        verifyInclusion(node(0, index), index, size, proof, root);
        // The same proof read with the index truncated to 32 bits does not verify.
        const truncated = index % 2 ** 32;
        if (truncated !== index) expectVerificationError(() => verifyInclusion(node(0, index), truncated, size, proof, root));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
  });

  it('proves and verifies consistency between sizes past 2^32 and 2^40', () => {
    const pairs: Array<[number, number]> = [
      [2 ** 32, 2 ** 32 + 6],
      [2 ** 32 + 1, 2 ** 40 + 4],
      [2 ** 40 + 3, 2 ** 40 + 2 ** 33 + 7],
      [2 ** 40 + 4, 2 ** 41 + 3],
      [5, 2 ** 41 + 3],
      [2 ** 41 + 3, 2 ** 52 + 12345],
    ];
    for (const [m, n] of pairs) {
      const proof = proveConsistency(m, n, node);
      expect(proof).toHaveLength(consistencyProofLength(m, n));
      verifyConsistency(m, n, proof, rootHash(m, node), rootHash(n, node));
      expectVerificationError(() => verifyConsistency(m, n, proof, rootHash(m - 1, node), rootHash(n, node)));
    }
  });

  it('reads only nodes inside the tree, at the exact sibling coordinates (no 32-bit truncation)', () => {
    for (const size of sizes) {
      const read: NodeReader = (level, index) => {
        expect(Number.isSafeInteger(index) && index >= 0).toBe(true);
        expect((index + 1) * 2 ** level <= size).toBe(true);
        return coordHash(level, index);
      };
      for (const index of [...specials, size - 1]) {
        if (index >= size) continue;
        const proof = proveInclusion(index, size, read);
        const inner = bitLength(BigInt(index) ^ BigInt(size - 1));
        // Below the level where index and size-1 part ways, every sibling is a perfect
        // subtree read in one go: (l, (index >> l) ^ 1).
        for (let l = 0; l < inner - 1; l++) {
          const sib = (BigInt(index) >> BigInt(l)) ^ 1n;
          expect(toHex(proof[l]!), `size ${size} index ${index} level ${l}`).toBe(toHex(coordHash(l, sib)));
        }
      }
    }
  });
});
