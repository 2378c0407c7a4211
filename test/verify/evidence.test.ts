/**
 * Fork evidence (src/verify/evidence.ts): compareCheckpoints finds forks (and only forks)
 * between two log-signed checkpoints, given the larger tree's hashes; verifyForkEvidence
 * checks an evidence file with nothing but the log's key, and rejects every tampered or
 * non-conflicting file with an error that names the problem.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatCheckpoint, parseCheckpoint, type Checkpoint } from '../../src/core/checkpoint.js';
import { encodeBase64, equalBytes, toHex, utf8 } from '../../src/core/encoding.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { EMPTY_ROOT, leafHash } from '../../src/core/hash.js';
import { consistencyPath, memoryNodeReader, rootHash, type NodeReader } from '../../src/core/tree.js';
import { generateKey } from '../../src/note/keys.js';
import { formatNote, newSigner, newVerifier, parseNote, signNote, type NoteSigner } from '../../src/note/note.js';
import {
  FORK_EVIDENCE_HEADER,
  checkpointOf,
  compareCheckpoints,
  formatForkEvidence,
  parseForkEvidence,
  verifyForkEvidence,
  type ForkEvidence,
} from '../../src/verify/evidence.js';
import { flipBit } from '../core/helpers.js';

const ORIGIN = 'evidence.test/log';
const fixedKey = (name: string, seed: number) => generateKey(name, undefined, (n) => new Uint8Array(n).fill(seed));
const LOG = fixedKey(ORIGIN, 7);
const signer = newSigner(LOG.skey);
const verifier = newVerifier(LOG.vkey);
// Another key under the same name: its signatures are not the log's.
const IMPOSTOR = fixedKey(ORIGIN, 8);
const impostor = newSigner(IMPOSTOR.skey);

interface Signed {
  note: string;
  checkpoint: Checkpoint;
}

/** A tree: its leaf hashes and a reader over them. */
interface Tree {
  readonly leaves: Uint8Array[];
  readonly node: NodeReader;
  root(size: number): Uint8Array;
}

function tree(leaves: Uint8Array[]): Tree {
  const node = memoryNodeReader(leaves);
  return { leaves, node, root: (s) => (s === 0 ? EMPTY_ROOT : rootHash(s, node)) };
}

/** Two trees of `len` leaves sharing the first `p` leaves, different from leaf p on. */
function forkedTrees(p: number, len: number, seed = 0): { x: Tree; y: Tree } {
  const mk = (tag: string) =>
    tree(Array.from({ length: len }, (_, i) => leafHash(utf8(i < p ? `common ${seed} ${i}` : `${tag} ${seed} ${i}`))));
  return { x: mk('x'), y: mk('y') };
}

function sign(size: number, root: Uint8Array, opts: { origin?: string; signers?: NoteSigner[]; extensions?: string[] } = {}): Signed {
  const text = formatCheckpoint({ origin: opts.origin ?? ORIGIN, treeSize: size, rootHash: root, extensions: opts.extensions ?? [] });
  const note = signNote(text, opts.signers ?? [signer]);
  return { note, checkpoint: parseCheckpoint(text) };
}

const cp = (t: Tree, size: number) => sign(size, t.root(size));

/** Throws unless f throws an error of one of `types` whose message matches `message`. */
function expectRejected(f: () => unknown, message: RegExp, types: Array<new (...args: any[]) => Error> = [VerificationError, MalformedError]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, `expected a rejection matching ${message}`).toBeDefined();
  expect(types.some((t) => err instanceof t), `${(err as Error).name}: ${(err as Error).message}`).toBe(true);
  expect((err as Error).message).toMatch(message);
}

function forkEvidence(a: Signed, b: Signed, node: NodeReader | undefined): string {
  const r = compareCheckpoints(a, b, node);
  if (r.kind !== 'fork') throw new Error(`expected a fork, got ${JSON.stringify(r)}`);
  return r.evidence;
}

/** Sizes 0 ≤ p < m ≤ n ≤ 64: a common prefix p and a fork inside both trees. */
const arbFork = fc
  .integer({ min: 1, max: 64 })
  .chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n)))
  .chain(([m, n]) => fc.tuple(fc.integer({ min: 0, max: m - 1 }), fc.constant(m), fc.constant(n)));

describe('compareCheckpoints', () => {
  it('finds every fork whose divergence lies below both sizes, and the evidence verifies with the log key (fast-check)', () => {
    fc.assert(
      fc.property(arbFork, fc.nat(), fc.boolean(), fc.boolean(), ([p, m, n], seed, smallerFromX, swapArgs) => {
        const { x, y } = forkedTrees(p, 64, seed);
        const [st, lt] = smallerFromX ? [x, y] : [y, x];
        const s = cp(st, m);
        const l = cp(lt, n);
        const r = swapArgs ? compareCheckpoints(l, s, lt.node) : compareCheckpoints(s, l, lt.node);
        expect(r.kind).toBe('fork');
        if (r.kind !== 'fork') return;
        const v = verifyForkEvidence(r.evidence, [verifier]);
        expect(v.origin).toBe(ORIGIN);
        expect(v.smaller.treeSize).toBe(m);
        expect(v.larger.treeSize).toBe(n);
        // Equal sizes keep the order of the arguments.
        const [first, second, ft, lt2] = m === n && swapArgs ? [l, s, lt, st] : [s, l, st, lt];
        expect(toHex(v.smaller.rootHash)).toBe(toHex(ft.root(m)));
        expect(toHex(v.larger.rootHash)).toBe(toHex(lt2.root(n)));
        if (m < n) expect(toHex(v.prefixRoot!)).toBe(toHex(lt.root(m)));
        else expect(v.prefixRoot).toBeUndefined();
        const e = parseForkEvidence(r.evidence);
        expect(e.smaller).toBe(first.note);
        expect(e.larger).toBe(second.note);
        expect(e.path.length).toBe(m === n ? 0 : consistencyPath(m, n, lt.node).length);
      })
    );
  });

  it('needs no tree hashes for equal sizes with different roots', () => {
    const { x, y } = forkedTrees(3, 10);
    const r = compareCheckpoints(cp(x, 9), cp(y, 9), undefined);
    expect(r.kind).toBe('fork');
    const v = verifyForkEvidence((r as { evidence: string }).evidence, [verifier]);
    expect([v.smaller.treeSize, v.larger.treeSize]).toEqual([9, 9]);
  });

  it('finds consistent pairs consistent: one tree at two sizes, or two trees at sizes within their common prefix (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 64 }).chain((n) => fc.tuple(fc.integer({ min: 0, max: n }), fc.constant(n))),
        fc.nat({ max: 64 }),
        fc.nat(),
        fc.boolean(),
        ([m, n], p, seed, swapArgs) => {
          const { x, y } = forkedTrees(p, 64, seed);
          // The smaller from the other tree too, when it lies in the common prefix.
          const st = m <= p ? y : x;
          const s = cp(st, m);
          const l = cp(x, n);
          const r = swapArgs ? compareCheckpoints(l, s, x.node) : compareCheckpoints(s, l, x.node);
          expect(r).toEqual({ kind: 'consistent' });
        }
      )
    );
  });

  it('with hashes of the wrong tree: unproven, never a fork (fast-check)', () => {
    fc.assert(
      fc.property(arbFork, fc.nat(), fc.boolean(), ([p, m, n], seed, swapArgs) => {
        fc.pre(m < n);
        const { x, y } = forkedTrees(p, 64, seed);
        const s = cp(x, m);
        const l = cp(y, n);
        // The smaller checkpoint's branch extended to n: a malicious log's other history.
        const r = swapArgs ? compareCheckpoints(l, s, x.node) : compareCheckpoints(s, l, x.node);
        expect(r.kind).toBe('unproven');
        expect((r as { reason: string }).reason).toMatch(`do not lead to its signed root`);
      })
    );
  });

  it('never reports a fork for a consistent pair, whatever hashes it is given (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 64 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n - 1 }), fc.constant(n))),
        fc.nat({ max: 63 }),
        fc.nat(),
        fc.nat(),
        ([m, n], p, seed, other) => {
          const { x } = forkedTrees(p, 64, seed);
          // Any other tree: random leaves, or x with one leaf changed.
          const bogus = other % 2 === 0 ? forkedTrees(0, 64, other).y : forkedTrees(other % n, 64, seed).y;
          const r = compareCheckpoints(cp(x, m), cp(x, n), bogus.node);
          expect(r.kind).not.toBe('fork');
          if (!equalBytes(bogus.root(n), x.root(n))) expect(r.kind).toBe('unproven');
        }
      )
    );
  });

  it('is unproven without a reader, or with a reader that cannot read the tree', () => {
    const { x, y } = forkedTrees(2, 20);
    const r1 = compareCheckpoints(cp(x, 5), cp(y, 9), undefined);
    expect(r1).toEqual({ kind: 'unproven', reason: expect.stringMatching(/no source of the size 9 tree/) });
    const short = tree(y.leaves.slice(0, 6)).node;
    const r2 = compareCheckpoints(cp(x, 5), cp(y, 9), short);
    expect(r2).toEqual({ kind: 'unproven', reason: expect.stringMatching(/could not read the size 9 tree/) });
  });

  it('treats size 0 by its root: the empty root is consistent with anything, another root is unproven', () => {
    const { x } = forkedTrees(2, 20);
    expect(compareCheckpoints(cp(x, 0), cp(x, 7), x.node)).toEqual({ kind: 'consistent' });
    expect(compareCheckpoints(sign(0, EMPTY_ROOT), sign(0, EMPTY_ROOT), undefined)).toEqual({ kind: 'consistent' });
    expect(compareCheckpoints(sign(0, x.root(3)), cp(x, 7), x.node).kind).toBe('unproven');
  });
});

describe('verifyForkEvidence rejects what is not a fork, naming the problem', () => {
  // Sizes 11 → 20 (path without seed), 8 → 20 (seed first) and 13 = 13, forks at leaf 5.
  const { x, y } = forkedTrees(5, 32, 42);
  const cases = [
    { name: '11 → 20', s: cp(x, 11), l: cp(y, 20), node: y.node },
    { name: '8 → 20 (power of two)', s: cp(x, 8), l: cp(y, 20), node: y.node },
    { name: '20 → 25 (the larger tree read from x)', s: cp(y, 20), l: cp(x, 25), node: x.node },
  ];
  const eq = { s: cp(x, 13), l: cp(y, 13) };
  const eqEvidence = forkEvidence(eq.s, eq.l, undefined);

  /** Rebuilds an evidence file with one part replaced. */
  const rebuild = (text: string, f: (e: ForkEvidence) => ForkEvidence) => formatForkEvidence(f(parseForkEvidence(text)));

  /** The note with its checkpoint text changed but its signatures kept. */
  const retext = (note: string, f: (text: string) => string) => {
    const n = parseNote(note);
    return formatNote(f(n.text), n.signatures);
  };
  const flipRootLine = (text: string) => {
    const c = parseCheckpoint(text);
    return formatCheckpoint({ ...c, rootHash: flipBit(c.rootHash, 17) });
  };

  it('accepts the untouched evidence', () => {
    for (const c of cases) {
      const v = verifyForkEvidence(forkEvidence(c.s, c.l, c.node), [verifier]);
      expect([v.smaller.treeSize, v.larger.treeSize], c.name).toEqual([c.s.checkpoint.treeSize, c.l.checkpoint.treeSize]);
    }
    expect(verifyForkEvidence(eqEvidence, [verifier]).smaller.treeSize).toBe(13);
  });

  for (const c of cases) {
    describe(c.name, () => {
      const text = forkEvidence(c.s, c.l, c.node);
      const m = c.s.checkpoint.treeSize;
      const n = c.l.checkpoint.treeSize;
      const path = parseForkEvidence(text).path;

      it('a flipped bit in any path hash', () => {
        path.forEach((_, i) => {
          for (const bit of [0, 100, 255]) {
            const bad = rebuild(text, (e) => ({ ...e, path: e.path.map((h, j) => (j === i ? flipBit(h, bit) : h)) }));
            expectRejected(() => verifyForkEvidence(bad, [verifier]), new RegExp(`path does not lead to the root of the size ${n} checkpoint`), [VerificationError]);
          }
        });
      });

      it('a flipped bit in either root, the signatures kept', () => {
        const bad1 = rebuild(text, (e) => ({ ...e, smaller: retext(e.smaller, flipRootLine) }));
        expectRejected(() => verifyForkEvidence(bad1, [verifier]), /first checkpoint is not signed by the log/, [VerificationError]);
        const bad2 = rebuild(text, (e) => ({ ...e, larger: retext(e.larger, flipRootLine) }));
        expectRejected(() => verifyForkEvidence(bad2, [verifier]), /second checkpoint is not signed by the log/, [VerificationError]);
      });

      it('a larger root the log did sign, but that the path does not lead to', () => {
        const other = sign(n, flipBit(c.l.checkpoint.rootHash, 3));
        const bad = rebuild(text, (e) => ({ ...e, larger: other.note }));
        expectRejected(() => verifyForkEvidence(bad, [verifier]), new RegExp(`does not lead to the root of the size ${n} checkpoint`), [VerificationError]);
      });

      it('a smaller checkpoint replaced by the consistent one (the larger tree\'s own prefix)', () => {
        const prefix = sign(m, verifyForkEvidence(text, [verifier]).prefixRoot!);
        const bad = rebuild(text, (e) => ({ ...e, smaller: prefix.note }));
        expectRejected(() => verifyForkEvidence(bad, [verifier]), new RegExp(`checkpoints are consistent \\(the size ${n} tree extends the size ${m} tree\\)`), [VerificationError]);
      });

      it('a flipped bit in a log signature', () => {
        for (const which of ['smaller', 'larger'] as const) {
          const bad = rebuild(text, (e) => {
            const note = parseNote(e[which]);
            const sig = note.signatures[0]!;
            return { ...e, [which]: formatNote(note.text, [{ ...sig, signature: flipBit(sig.signature, 9) }]) };
          });
          expectRejected(() => verifyForkEvidence(bad, [verifier]), new RegExp(`${which === 'smaller' ? 'first' : 'second'} checkpoint is not signed by the log`), [VerificationError]);
        }
      });

      it('the checkpoints in the wrong order', () => {
        const bad = rebuild(text, (e) => ({ ...e, smaller: e.larger, larger: e.smaller }));
        expectRejected(() => verifyForkEvidence(bad, [verifier]), new RegExp(`first checkpoint \\(size ${n}\\) must not be larger than the second \\(size ${m}\\)`), [VerificationError]);
      });

      it('a path line dropped or added, or no path at all', () => {
        for (let i = 0; i < path.length; i++) {
          const bad = rebuild(text, (e) => ({ ...e, path: e.path.filter((_, j) => j !== i) }));
          expectRejected(() => verifyForkEvidence(bad, [verifier]), path.length === 1 ? /consistency proof is empty/ : /too few hashes/, [VerificationError]);
        }
        for (let i = 0; i <= path.length; i++) {
          const bad = rebuild(text, (e) => ({ ...e, path: [...e.path.slice(0, i), leafHash(utf8('added')), ...e.path.slice(i)] }));
          expectRejected(() => verifyForkEvidence(bad, [verifier]), /too many hashes/, [VerificationError]);
        }
        const none = rebuild(text, (e) => ({ ...e, path: [] }));
        expectRejected(() => verifyForkEvidence(none, [verifier]), /consistency proof is empty/, [VerificationError]);
      });

      it('checkpoints of different origins, both signed by the log key', () => {
        const other = sign(n, c.l.checkpoint.rootHash, { origin: 'evidence.test/other' });
        const bad = rebuild(text, (e) => ({ ...e, larger: other.note }));
        expectRejected(() => verifyForkEvidence(bad, [verifier]), /different origins, "evidence.test\/log" and "evidence.test\/other"/, [VerificationError]);
      });

      it('a checkpoint signed by another key of the same name, or checked against another key', () => {
        const forged = sign(m, c.s.checkpoint.rootHash, { signers: [impostor] });
        const bad = rebuild(text, (e) => ({ ...e, smaller: forged.note }));
        expectRejected(() => verifyForkEvidence(bad, [verifier]), /first checkpoint is not signed by the log/, [VerificationError]);
        expectRejected(() => verifyForkEvidence(text, [newVerifier(IMPOSTOR.vkey)]), /first checkpoint is not signed by the log/, [VerificationError]);
        // Signed by both: the log's signature counts, the other is ignored.
        const both = sign(m, c.s.checkpoint.rootHash, { signers: [impostor, signer] });
        expect(verifyForkEvidence(rebuild(text, (e) => ({ ...e, smaller: both.note })), [verifier]).smaller.treeSize).toBe(m);
      });

      it('a size-0 first checkpoint, with the empty root or not', () => {
        for (const root of [EMPTY_ROOT, c.s.checkpoint.rootHash]) {
          const bad = rebuild(text, (e) => ({ ...e, smaller: sign(0, root).note }));
          expectRejected(() => verifyForkEvidence(bad, [verifier]), /checkpoint of size 0 is consistent with every tree/, [VerificationError]);
        }
      });

      it('a consistent pair presented as evidence', () => {
        const lt = c.node === x.node ? x : y;
        const s = cp(lt, m);
        const fake = formatForkEvidence({ path: consistencyPath(m, n, lt.node), smaller: s.note, larger: c.l.note });
        expectRejected(() => verifyForkEvidence(fake, [verifier]), /checkpoints are consistent/, [VerificationError]);
      });
    });
  }

  it('equal sizes: equal roots, path hashes, or a size-0 pair', () => {
    const same = formatForkEvidence({ path: [], smaller: eq.s.note, larger: sign(13, eq.s.checkpoint.rootHash, { extensions: ['other extension'] }).note });
    expectRejected(() => verifyForkEvidence(same, [verifier]), /both checkpoints of size 13 have the same root; they do not conflict/, [VerificationError]);
    const identical = formatForkEvidence({ path: [], smaller: eq.s.note, larger: eq.s.note });
    expectRejected(() => verifyForkEvidence(identical, [verifier]), /same root/, [VerificationError]);
    const withPath = rebuild(eqEvidence, (e) => ({ ...e, path: [leafHash(utf8('p'))] }));
    expectRejected(() => verifyForkEvidence(withPath, [verifier]), /checkpoints of equal size take no path hashes/, [VerificationError]);
    const empties = formatForkEvidence({ path: [], smaller: sign(0, EMPTY_ROOT).note, larger: sign(0, EMPTY_ROOT).note });
    expectRejected(() => verifyForkEvidence(empties, [verifier]), /same root/, [VerificationError]);
  });

  it('equal sizes in either order are evidence', () => {
    const swapped = rebuild(eqEvidence, (e) => ({ ...e, smaller: e.larger, larger: e.smaller }));
    expect(verifyForkEvidence(swapped, [verifier]).smaller.treeSize).toBe(13);
  });

  it('a note that is not a checkpoint, a wrong header, trailing text', () => {
    const notCheckpoint = signNote('hello\n', [signer]);
    expectRejected(() => verifyForkEvidence(rebuild(eqEvidence, (e) => ({ ...e, smaller: notCheckpoint })), [verifier]), /malformed checkpoint/);
    expectRejected(() => verifyForkEvidence(eqEvidence.replace(FORK_EVIDENCE_HEADER, 'glasslog/fork-evidence@v2'), [verifier]), /first line must be glasslog\/fork-evidence@v1/, [MalformedError]);
    expectRejected(() => verifyForkEvidence(eqEvidence + 'trailing\n', [verifier]), /second checkpoint/);
    expectRejected(() => verifyForkEvidence(eqEvidence.slice(0, -1), [verifier]), /second checkpoint/);
  });
});

describe('format and parse', () => {
  const { x, y } = forkedTrees(4, 64, 9);
  const notes = [cp(x, 10).note, cp(y, 30).note, cp(x, 64).note, sign(5, EMPTY_ROOT, { extensions: ['ext one', 'ext two'] }).note];

  it('round-trip: parse(format(e)) = e and format(parse(text)) = text (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 64 }),
        fc.constantFrom(...notes),
        fc.constantFrom(...notes),
        (path, smaller, larger) => {
          const text = formatForkEvidence({ path, smaller, larger });
          const e = parseForkEvidence(text);
          expect(e.path.map(toHex)).toEqual(path.map(toHex));
          expect(e.smaller).toBe(smaller);
          expect(e.larger).toBe(larger);
          expect(formatForkEvidence(e)).toBe(text);
        }
      )
    );
  });

  it('has the documented layout', () => {
    const h = [leafHash(utf8('a')), leafHash(utf8('b'))];
    const text = formatForkEvidence({ path: h, smaller: notes[0]!, larger: notes[1]! });
    expect(text).toBe(`${FORK_EVIDENCE_HEADER}\n${encodeBase64(h[0]!)}\n${encodeBase64(h[1]!)}\n\n${notes[0]}\n${notes[1]}`);
    expect(checkpointOf(notes[1]!).treeSize).toBe(30);
  });

  it('refuses more than 64 path hashes, a hash of the wrong size, a missing part', () => {
    const h = leafHash(utf8('a'));
    const ok = formatForkEvidence({ path: Array(64).fill(h), smaller: notes[0]!, larger: notes[1]! });
    expect(parseForkEvidence(ok).path.length).toBe(64);
    expectRejected(() => parseForkEvidence(formatForkEvidence({ path: Array(65).fill(h), smaller: notes[0]!, larger: notes[1]! })), /more than 64 path hashes/, [MalformedError]);
    const short = `${FORK_EVIDENCE_HEADER}\n${encodeBase64(h.subarray(1))}\n\n${notes[0]}\n${notes[1]}`;
    expectRejected(() => parseForkEvidence(short), /path line 1 is not a 32-byte hash/, [MalformedError]);
    const notB64 = `${FORK_EVIDENCE_HEADER}\nnot base64!\n\n${notes[0]}\n${notes[1]}`;
    expectRejected(() => parseForkEvidence(notB64), /path line 1/, [MalformedError]);
    expectRejected(() => parseForkEvidence(`${FORK_EVIDENCE_HEADER}\n`), /no empty line after the header/, [MalformedError]);
    expectRejected(() => parseForkEvidence(`${FORK_EVIDENCE_HEADER}\n\n${notes[0]}`), /no empty line between the two checkpoints/, [MalformedError]);
    expectRejected(() => parseForkEvidence(`${FORK_EVIDENCE_HEADER}\n\n${notes[0]}\n`), /missing the second checkpoint/, [MalformedError]);
    expectRejected(() => parseForkEvidence(`${FORK_EVIDENCE_HEADER}\n\nexample\n`), /the first checkpoint has no signatures/, [MalformedError]);
    expectRejected(() => parseForkEvidence('x'.repeat(64 * 1024 + 1)), /too large/, [MalformedError]);
  });

  it('rejects garbage with MalformedError only, and verification with MalformedError or VerificationError only (fast-check)', () => {
    const pieces = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ maxLength: 10 }),
      fc.constantFrom('\n', '\n\n', FORK_EVIDENCE_HEADER + '\n', '— ', ...notes, encodeBase64(leafHash(utf8('z'))) + '\n', '=\n', '\r\n', '\u2014')
    );
    const texts = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.array(pieces, { maxLength: 12 }).map((a) => a.join('')),
      fc.array(pieces, { maxLength: 12 }).map((a) => FORK_EVIDENCE_HEADER + '\n' + a.join(''))
    );
    fc.assert(
      fc.property(texts, (text) => {
        try {
          parseForkEvidence(text);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedError);
          expect((e as Error).message).toMatch(/^malformed fork evidence/);
        }
        try {
          verifyForkEvidence(text, [verifier]);
        } catch (e) {
          expect(e instanceof MalformedError || e instanceof VerificationError, `${(e as Error).name}: ${(e as Error).message}`).toBe(true);
        }
      }),
      { numRuns: 500 }
    );
  });

  it('rejects every truncation and every single-character deletion of real evidence without a false acceptance', () => {
    const { x: a, y: b } = forkedTrees(3, 20, 5);
    const text = forkEvidence(cp(a, 7), cp(b, 12), b.node);
    for (let i = 0; i < text.length; i++) {
      for (const bad of [text.slice(0, i), text.slice(0, i) + text.slice(i + 1)]) {
        let accepted = false;
        try {
          verifyForkEvidence(bad, [verifier]);
          accepted = true;
        } catch (e) {
          expect(e instanceof MalformedError || e instanceof VerificationError, `${(e as Error).name}: ${(e as Error).message}`).toBe(true);
        }
        // The only deletions that may still verify leave both notes and the path intact.
        if (accepted) expect(parseForkEvidence(bad)).toEqual(parseForkEvidence(text));
      }
    }
  });
});
