/**
 * Merkle tree hashes and proofs (RFC 6962 §2.1, RFC 9162 §2.1.3–2.1.4) over an abstract
 * reader of perfect-subtree hashes, so the same code serves in-memory trees, tiles in a
 * database and tiles fetched over HTTP.
 *
 * Sizes and indices are JavaScript numbers checked to be safe integers. No bitwise
 * operator is applied to them: `>>` and `&` truncate to 32 bits, and a tree may grow past
 * 2^31 entries.
 */
import { EMPTY_ROOT, HASH_SIZE, nodeHash } from './hash.js';
import { checkSize, equalBytes } from './encoding.js';
import { VerificationError } from './errors.js';

/**
 * Returns the hash of the perfect subtree at height `level` (0 = leaf) and horizontal
 * position `index`, which covers leaves [index·2^level, (index+1)·2^level). It is only
 * ever asked for nodes that lie wholly inside the tree being proved.
 */
export type NodeReader = (level: number, index: number) => Uint8Array;

/** The largest power of two strictly less than n (n ≥ 2). */
export function maxPow2Below(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The perfect subtrees that make up [lo, hi) when split greedily from the left, as
 * [level, index] pairs (go-tlog subTreeIndex). `lo` must be aligned to the first one.
 */
export function perfectSubtrees(lo: number, hi: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  while (lo < hi) {
    let level = 0;
    let width = 1;
    while (lo % (width * 2) === 0 && lo + width * 2 <= hi) {
      width *= 2;
      level++;
    }
    out.push([level, lo / width]);
    lo += width;
  }
  return out;
}

/** MTH(D[lo:hi]) for a range whose subtrees `node` can read (lo < hi). */
export function rangeHash(lo: number, hi: number, node: NodeReader): Uint8Array {
  const parts = perfectSubtrees(lo, hi);
  let i = parts.length - 1;
  let h = node(...parts[i]!);
  while (i-- > 0) h = nodeHash(node(...parts[i]!), h);
  return h;
}

/** The root hash of the tree of `size` leaves. */
export function rootHash(size: number, node: NodeReader): Uint8Array {
  checkSize(size, 'size');
  return size === 0 ? EMPTY_ROOT : rangeHash(0, size, node);
}

/**
 * Memoises MTH(D[lo:hi]) across proofs against one tree: proofs for many entries of the same
 * tree share most of their right-border ranges. Only valid for one NodeReader.
 */
export type RangeMemo = Map<string, Uint8Array>;

function memoRangeHash(lo: number, hi: number, node: NodeReader, memo: RangeMemo | undefined): Uint8Array {
  if (!memo) return rangeHash(lo, hi, node);
  const key = `${lo}:${hi}`;
  let h = memo.get(key);
  if (!h) {
    h = rangeHash(lo, hi, node);
    memo.set(key, h);
  }
  return h;
}

/** PATH(index, D[0:size]), RFC 6962 §2.1.1, ordered from the leaf upward. */
export function proveInclusion(index: number, size: number, node: NodeReader, memo?: RangeMemo): Uint8Array[] {
  checkSize(index, 'index');
  checkSize(size, 'size');
  if (index >= size) throw new RangeError(`index ${index} is not below size ${size}`);
  const path: Uint8Array[] = [];
  const walk = (lo: number, hi: number): void => {
    if (hi - lo === 1) return;
    const k = maxPow2Below(hi - lo);
    if (index < lo + k) {
      walk(lo, lo + k);
      path.push(memoRangeHash(lo + k, hi, node, memo));
    } else {
      walk(lo + k, hi);
      path.push(memoRangeHash(lo, lo + k, node, memo));
    }
  };
  walk(0, size);
  return path;
}

/** PROOF(oldSize, D[0:newSize]), RFC 6962 §2.1.2 (0 < oldSize ≤ newSize). */
export function proveConsistency(oldSize: number, newSize: number, node: NodeReader): Uint8Array[] {
  checkSize(oldSize, 'oldSize');
  checkSize(newSize, 'newSize');
  if (oldSize > newSize) throw new RangeError(`oldSize ${oldSize} exceeds newSize ${newSize}`);
  if (oldSize === 0 || oldSize === newSize) return [];
  const proof: Uint8Array[] = [];
  const sub = (m: number, lo: number, hi: number, whole: boolean): void => {
    if (m === hi - lo) {
      if (!whole) proof.push(rangeHash(lo, hi, node));
      return;
    }
    const k = maxPow2Below(hi - lo);
    if (m <= k) {
      sub(m, lo, lo + k, whole);
      proof.push(rangeHash(lo + k, hi, node));
    } else {
      sub(m - k, lo + k, hi, false);
      proof.push(rangeHash(lo, lo + k, node));
    }
  };
  sub(oldSize, 0, newSize, true);
  return proof;
}

const half = (n: number) => Math.floor(n / 2);
const odd = (n: number) => n % 2 === 1;

function checkHashes(hashes: Uint8Array[], what: string): void {
  for (const h of hashes) {
    if (h.length !== HASH_SIZE) throw new VerificationError(`${what}: hash of ${h.length} bytes`);
  }
}

/**
 * Computes the root implied by an inclusion proof (RFC 9162 §2.1.3.2).
 * @throws {VerificationError} if the proof has the wrong shape
 */
export function rootFromInclusionProof(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: Uint8Array[]
): Uint8Array {
  checkSize(index, 'index');
  checkSize(size, 'size');
  checkHashes([leaf, ...proof], 'inclusion proof');
  if (index >= size) throw new VerificationError(`inclusion proof: index ${index} is not below tree size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new VerificationError(`inclusion proof: too many hashes (${proof.length}) for index ${index} in tree size ${size}`);
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!odd(fn)) {
        do {
          fn = half(fn);
          sn = half(sn);
        } while (!odd(fn) && fn !== 0);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new VerificationError(`inclusion proof: too few hashes (${proof.length}) for index ${index} in tree size ${size}`);
  return r;
}

/**
 * Verifies that `leaf` is at `index` in the tree of `size` with root `root`.
 * @throws {VerificationError}
 */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: Uint8Array[],
  root: Uint8Array
): void {
  const got = rootFromInclusionProof(leaf, index, size, proof);
  if (!equalBytes(got, root)) {
    throw new VerificationError(`inclusion proof for index ${index} does not lead to the root of tree size ${size}`);
  }
}

/**
 * Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2). Equal sizes
 * need an empty proof and equal roots. An old size of 0 is accepted only with an empty
 * proof and the empty-tree root (the rule tlog-witness applies).
 * @throws {VerificationError}
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  proof: Uint8Array[],
  oldRoot: Uint8Array,
  newRoot: Uint8Array
): void {
  checkSize(oldSize, 'oldSize');
  checkSize(newSize, 'newSize');
  checkHashes([oldRoot, newRoot, ...proof], 'consistency proof');
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
  const { oldRoot: fr, newRoot: sr } = rootsFromConsistencyPath(oldSize, newSize, isPow2(oldSize) ? [oldRoot, ...proof] : proof, proof.length);
  if (!equalBytes(fr, oldRoot)) throw new VerificationError(`consistency proof does not lead to the root of tree size ${oldSize}`);
  if (!equalBytes(sr, newRoot)) throw new VerificationError(`consistency proof does not lead to the root of tree size ${newSize}`);
}

/**
 * The two roots a consistency path implies (the loop of RFC 9162 §2.1.4.2). `path` is the
 * proof with its seed made explicit: for an `oldSize` that is a power of two, RFC 9162
 * prepends the old root to the proof before this loop; here the caller does. That makes
 * the same loop usable for fork evidence, where the seed comes from the larger tree and
 * the old root it yields differs from the one the log signed.
 * @throws {VerificationError} if the path has the wrong length for the sizes
 */
export function rootsFromConsistencyPath(
  oldSize: number,
  newSize: number,
  path: readonly Uint8Array[],
  proofLength = path.length
): { oldRoot: Uint8Array; newRoot: Uint8Array } {
  checkSize(oldSize, 'oldSize');
  checkSize(newSize, 'newSize');
  checkHashes([...path], 'consistency proof');
  if (oldSize === 0 || oldSize >= newSize) throw new VerificationError(`consistency path: need 0 < old size < new size, got ${oldSize} → ${newSize}`);
  if (path.length === 0) throw new VerificationError('consistency proof is empty');
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) throw new VerificationError(`consistency proof: too many hashes (${proofLength}) for ${oldSize} → ${newSize}`);
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
  if (sn !== 0) throw new VerificationError(`consistency proof: too few hashes (${proofLength}) for ${oldSize} → ${newSize}`);
  return { oldRoot: fr, newRoot: sr };
}

/**
 * The consistency path from `oldSize` to `newSize` with its seed explicit (see
 * {@link rootsFromConsistencyPath}): PROOF(oldSize, newSize), preceded by the hash of the
 * perfect subtree [0, oldSize) when oldSize is a power of two.
 */
export function consistencyPath(oldSize: number, newSize: number, node: NodeReader): Uint8Array[] {
  const proof = proveConsistency(oldSize, newSize, node);
  if (oldSize === 0 || oldSize >= newSize) throw new RangeError(`consistency path needs 0 < oldSize < newSize, got ${oldSize} → ${newSize}`);
  return isPow2(oldSize) ? [rangeHash(0, oldSize, node), ...proof] : proof;
}

export function isPow2(n: number): boolean {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

/**
 * An in-memory reader over a list of leaf hashes, computing interior nodes on demand.
 * For tests and small trees; O(2^level) per node.
 */
export function memoryNodeReader(leaves: Uint8Array[]): NodeReader {
  const cache = new Map<string, Uint8Array>();
  const read: NodeReader = (level, index) => {
    if (level === 0) {
      const h = leaves[index];
      if (!h) throw new RangeError(`no leaf ${index}`);
      return h;
    }
    const key = `${level}/${index}`;
    let h = cache.get(key);
    if (!h) {
      h = nodeHash(read(level - 1, 2 * index), read(level - 1, 2 * index + 1));
      cache.set(key, h);
    }
    return h;
  };
  return read;
}
