/**
 * verifyReceipt (src/verify/receipt.ts) against receipts from a real in-process Log over
 * signed agent envelopes: round trips with the log key and with a tlog-policy, every kind
 * of tampering detected with a message naming what failed, and a property that no random
 * mutation of a valid receipt verifies and nothing but VerificationError/MalformedError is
 * ever thrown.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCheckpoint, parseCheckpoint } from '../../src/core/checkpoint.js';
import { encodeBase64, utf8 } from '../../src/core/encoding.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { leafHash } from '../../src/core/hash.js';
import { formatTlogProof, parseTlogProof } from '../../src/core/tlog-proof.js';
import { signEntry, type SignedEntry } from '../../src/entry/index.js';
import { newCosigner } from '../../src/note/cosignature.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { formatNote, newSigner, parseNote, signNote } from '../../src/note/note.js';
import { parsePolicy, type Policy } from '../../src/verify/policy.js';
import { verifyReceipt } from '../../src/verify/receipt.js';
import { createTestLog, type TestLog } from '../helpers/log.js';
import { pgliteFactory } from '../helpers/stores.js';

const numRuns = Number(process.env['FC_NUM_RUNS'] ?? 300);

const AGENT = 'agent-7';
const AGENT_KEY = generateKey(AGENT, 0x01, (n) => new Uint8Array(n).fill(7));
const WITNESSES = ['W1', 'W2', 'W3'] as const;
type WitnessName = (typeof WITNESSES)[number];
const W = Object.fromEntries(
  WITNESSES.map((n, i) => [n, generateKey(`witness${i + 1}.test/w`, ALG_COSIGNATURE_V1, (k) => new Uint8Array(k).fill(40 + i))])
) as Record<WitnessName, { skey: string; vkey: string }>;

let t: TestLog;
let entries: SignedEntry[];
/** receipts[i]: the receipt of entries[i] (at index i) against the checkpoint of size N. */
let receipts: string[];
/** Entry 3's receipt against the older checkpoint of size FIRST. */
let oldReceipt: string;
let twoOfThree: Policy;
let allThree: Policy;
const FIRST = 13;
const N = 21;

/** The receipt with cosignatures by the named witnesses added to its checkpoint. */
function cosign(receipt: string, by: readonly WitnessName[], time = 1_700_000_000): string {
  const p = parseTlogProof(receipt);
  const note = parseNote(p.checkpoint);
  const lines = by.map((w) => newCosigner(W[w].skey).cosign(note.text, time));
  return formatTlogProof({ ...p, checkpoint: formatNote(note.text, [...note.signatures, ...lines]) });
}

/** Replaces the checkpoint note of a receipt. */
function withNote(receipt: string, note: string): string {
  return formatTlogProof({ ...parseTlogProof(receipt), checkpoint: note });
}

/** The receipt's checkpoint body edited by `f`, keeping the original signature lines. */
function editBody(receipt: string, f: (lines: string[]) => void): string {
  const p = parseTlogProof(receipt);
  const note = parseNote(p.checkpoint);
  const lines = note.text.slice(0, -1).split('\n');
  f(lines);
  return withNote(receipt, formatNote(lines.join('\n') + '\n', note.signatures));
}

/** Flips one bit of signature line `k` (0-based) of the receipt's checkpoint note. */
function flipSignature(receipt: string, k: number): string {
  const p = parseTlogProof(receipt);
  const note = parseNote(p.checkpoint);
  const sigs = note.signatures.map((s, i) => {
    if (i !== k) return s;
    const sig = Uint8Array.from(s.signature);
    sig[sig.length - 1]! ^= 0x01;
    return { ...s, signature: sig };
  });
  return withNote(receipt, formatNote(note.text, sigs));
}

/** Calls f and returns what it threw; fails the test if it returned. */
function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected verifyReceipt to throw');
}

function expectFailure(f: () => unknown, type: typeof VerificationError | typeof MalformedError, ...parts: string[]): Error {
  const e = thrown(f);
  expect(e).toBeInstanceOf(type);
  for (const part of parts) expect(e.message).toContain(part);
  return e;
}

beforeAll(async () => {
  t = await createTestLog(pgliteFactory);
  entries = [];
  let prev: Uint8Array | undefined;
  for (let seq = 0; seq < N; seq++) {
    const se = signEntry(
      { type: 'event', agent: AGENT, run: 'run-1', seq, ...(prev && { prev }), kind: 'tool_call', time: 1_700_000_000_000 + seq, attrs: { step: seq } },
      AGENT_KEY.skey
    );
    entries.push(se);
    prev = se.leafHash;
  }
  // Two batches, so there are published checkpoints of sizes FIRST and N.
  const a = await t.log.add(entries.slice(0, FIRST).map((e) => e.bytes), 'published');
  const b = await t.log.add(entries.slice(FIRST).map((e) => e.bytes), 'published');
  expect([...a, ...b].map((r) => r.index)).toEqual(entries.map((_, i) => i));
  expect(t.log.checkpoint().treeSize).toBe(N);
  receipts = await t.log.receipts(entries.map((_, i) => i));
  oldReceipt = await t.log.receipt(3, FIRST);

  const witnessLines = WITNESSES.map((n) => `witness ${n} ${W[n].vkey}\n`).join('');
  twoOfThree = parsePolicy(`log ${t.vkey}\n${witnessLines}group two 2 W1 W2 W3\nquorum two\n`);
  allThree = parsePolicy(`log ${t.vkey}\n${witnessLines}group all3 all W1 W2 W3\nquorum all3\n`);
});

afterAll(async () => {
  await t?.cleanup();
});

describe('verifyReceipt: round trips', () => {
  it('accepts every receipt of the log with its key, given the envelope bytes or the leaf hash', () => {
    for (let i = 0; i < N; i++) {
      const r = verifyReceipt(receipts[i]!, entries[i]!.bytes, { logKey: t.vkey });
      expect(r.index).toBe(i);
      expect(r.leafHash).toEqual(entries[i]!.leafHash);
      expect(r.checkpoint.origin).toBe(t.origin);
      expect(r.checkpoint.treeSize).toBe(N);
      expect(r.note).toBe(t.log.checkpoint().note);
      expect([...r.cosigned]).toEqual([]);
      const byHash = verifyReceipt(receipts[i]!, { leafHash: entries[i]!.leafHash }, { logKey: t.vkey });
      expect(byHash.index).toBe(i);
      expect(byHash.checkpoint.rootHash).toEqual(r.checkpoint.rootHash);
    }
  });

  it('accepts a receipt against an older checkpoint', () => {
    const r = verifyReceipt(oldReceipt, entries[3]!.bytes, { logKey: t.vkey });
    expect(r.index).toBe(3);
    expect(r.checkpoint.treeSize).toBe(FIRST);
  });

  it('accepts the receipt of a single-entry tree (empty proof)', () => {
    // A checkpoint of size 1 whose root is the leaf hash, signed by the log key.
    const leaf = entries[0]!;
    const text = formatCheckpoint({ origin: t.origin, treeSize: 1, rootHash: leaf.leafHash, extensions: [] });
    const receipt = formatTlogProof({ index: 0, proof: [], checkpoint: signNote(text, [newSigner(t.skey)]) });
    expect(verifyReceipt(receipt, leaf.bytes, { logKey: t.vkey }).checkpoint.treeSize).toBe(1);
  });

  it('ignores the unauthenticated extra line and signatures by unknown keys', () => {
    const p = parseTlogProof(receipts[5]!);
    const withExtra = formatTlogProof({ ...p, extra: utf8('anything') });
    expect(verifyReceipt(withExtra, entries[5]!.bytes, { logKey: t.vkey }).index).toBe(5);
    const stranger = generateKey('stranger.test/log');
    const note = parseNote(p.checkpoint);
    const extraSig = parseNote(signNote(note.text, [newSigner(stranger.skey)])).signatures;
    const r = withNote(receipts[5]!, formatNote(note.text, [...note.signatures, ...extraSig]));
    expect(verifyReceipt(r, entries[5]!.bytes, { logKey: t.vkey }).index).toBe(5);
  });

  it('under a policy, reports the witnesses whose cosignature verified', () => {
    const r = verifyReceipt(cosign(receipts[8]!, ['W1', 'W3']), entries[8]!.bytes, { policy: twoOfThree });
    expect(r.index).toBe(8);
    expect([...r.cosigned]).toEqual(['W1', 'W3']);
    const all = verifyReceipt(cosign(receipts[8]!, ['W3', 'W2', 'W1']), entries[8]!.bytes, { policy: allThree });
    expect([...all.cosigned]).toEqual(['W1', 'W2', 'W3']);
    // A cosigned receipt verifies with the bare log key too; cosignatures by keys it does not know are ignored.
    expect([...verifyReceipt(cosign(receipts[8]!, ['W1']), entries[8]!.bytes, { logKey: t.vkey }).cosigned]).toEqual([]);
  });

  it('a policy with quorum none needs no cosignature', () => {
    const none = parsePolicy(`log ${t.vkey}\nquorum none\n`);
    expect(verifyReceipt(receipts[2]!, entries[2]!.bytes, { policy: none }).index).toBe(2);
  });
});

describe('verifyReceipt: tampering is detected and named', () => {
  const logKey = () => ({ logKey: t.vkey });

  it('a flipped bit in the entry: names the leaf hash and the index', () => {
    for (const at of [0, 17, entries[4]!.bytes.length - 1]) {
      const bytes = Uint8Array.from(entries[4]!.bytes);
      bytes[at]! ^= 0x10;
      expectFailure(() => verifyReceipt(receipts[4]!, bytes, logKey()), VerificationError, encodeBase64(leafHash(bytes)), 'index 4', 'inclusion proof');
    }
  });

  it('a flipped bit in any proof hash', () => {
    const p = parseTlogProof(receipts[9]!);
    expect(p.proof.length).toBeGreaterThan(2);
    for (let k = 0; k < p.proof.length; k++) {
      const proof = p.proof.map((h) => Uint8Array.from(h));
      proof[k]![k]! ^= 0x80;
      const forged = formatTlogProof({ ...p, proof });
      expectFailure(() => verifyReceipt(forged, entries[9]!.bytes, logKey()), VerificationError, 'inclusion proof', 'index 9', encodeBase64(entries[9]!.leafHash), 'root hash');
    }
  });

  it('a proof hash too many or too few', () => {
    const p = parseTlogProof(receipts[9]!);
    const more = formatTlogProof({ ...p, proof: [...p.proof, p.proof[0]!] });
    expectFailure(() => verifyReceipt(more, entries[9]!.bytes, logKey()), VerificationError, 'too many hashes', 'index 9');
    const fewer = formatTlogProof({ ...p, proof: p.proof.slice(1) });
    expectFailure(() => verifyReceipt(fewer, entries[9]!.bytes, logKey()), VerificationError, 'too few hashes', 'index 9');
  });

  it("the checkpoint's root hash, tree size or origin changed: the log signature fails", () => {
    const label = t.vkey.split('+').slice(0, 2).join('+');
    const root = editBody(receipts[6]!, (l) => (l[2] = encodeBase64(leafHash(utf8('another root')))));
    expectFailure(() => verifyReceipt(root, entries[6]!.bytes, logKey()), VerificationError, 'signature by the log key', label, 'invalid');
    const size = editBody(receipts[6]!, (l) => (l[1] = String(N + 1)));
    expectFailure(() => verifyReceipt(size, entries[6]!.bytes, logKey()), VerificationError, 'signature by the log key', 'invalid');
    // Another origin: the note is then signed by no key the verifier knows.
    const origin = editBody(receipts[6]!, (l) => (l[0] = 'evil.test/log'));
    expectFailure(() => verifyReceipt(origin, entries[6]!.bytes, logKey()), VerificationError, 'signature by the log key', 'invalid');
  });

  it('a checkpoint the log key signed for another origin', () => {
    const cp = parseCheckpoint(parseNote(parseTlogProof(receipts[6]!).checkpoint).text);
    const text = formatCheckpoint({ ...cp, origin: 'elsewhere.test/log' });
    const forged = withNote(receipts[6]!, signNote(text, [newSigner(t.skey)]));
    expectFailure(() => verifyReceipt(forged, entries[6]!.bytes, logKey()), VerificationError, 'checkpoint origin "elsewhere.test/log"', `"${t.origin}"`);
    expectFailure(() => verifyReceipt(forged, entries[6]!.bytes, { policy: twoOfThree }), VerificationError, '"elsewhere.test/log" is not a log in the policy');
  });

  it("a flipped bit in the log's signature", () => {
    const forged = flipSignature(receipts[1]!, 0);
    expectFailure(() => verifyReceipt(forged, entries[1]!.bytes, logKey()), VerificationError, 'signature by the log key', 'invalid');
    expectFailure(() => verifyReceipt(cosign(forged, ['W1', 'W2']), entries[1]!.bytes, { policy: twoOfThree }), VerificationError, 'signature by the log key', 'invalid');
  });

  it('no signature by the log key: signed by another key of the same name, or only by witnesses', () => {
    const impostor = generateKey(t.origin);
    const note = parseNote(parseTlogProof(receipts[1]!).checkpoint);
    const forged = withNote(receipts[1]!, signNote(note.text, [newSigner(impostor.skey)]));
    expectFailure(() => verifyReceipt(forged, entries[1]!.bytes, logKey()), VerificationError, 'not signed by the log key');
    // Trusting the impostor's key instead: the genuine receipt is not signed by it.
    expectFailure(() => verifyReceipt(receipts[1]!, entries[1]!.bytes, { logKey: impostor.vkey }), VerificationError, 'not signed by the log key');
    const cosignedOnly = cosign(receipts[1]!, ['W1', 'W2', 'W3']);
    const sigs = parseNote(parseTlogProof(cosignedOnly).checkpoint).signatures.slice(1);
    const witnessesOnly = withNote(receipts[1]!, formatNote(note.text, sigs));
    expectFailure(() => verifyReceipt(witnessesOnly, entries[1]!.bytes, { policy: twoOfThree }), VerificationError, 'not signed by a policy key for log');
  });

  it('a flipped bit in a cosignature under a policy names the witness', () => {
    const cosigned = cosign(receipts[7]!, ['W1', 'W2', 'W3']);
    for (const [k, w] of WITNESSES.entries()) {
      const forged = flipSignature(cosigned, k + 1);
      expectFailure(() => verifyReceipt(forged, entries[7]!.bytes, { policy: twoOfThree }), VerificationError, `witness "${w}"`, 'invalid');
    }
    // Under the bare log key, witness lines are unknown keys and a bad one is ignored.
    expect(verifyReceipt(flipSignature(cosigned, 1), entries[7]!.bytes, logKey()).index).toBe(7);
  });

  it('quorum not met', () => {
    expectFailure(() => verifyReceipt(receipts[7]!, entries[7]!.bytes, { policy: twoOfThree }), VerificationError, 'quorum not met', 'no witness');
    expectFailure(() => verifyReceipt(cosign(receipts[7]!, ['W2']), entries[7]!.bytes, { policy: twoOfThree }), VerificationError, 'quorum not met', 'W2', 'two = 2 of (W1, W2, W3)');
    expectFailure(() => verifyReceipt(cosign(receipts[7]!, ['W1', 'W3']), entries[7]!.bytes, { policy: allThree }), VerificationError, 'quorum not met');
  });

  it('wrong index: within the tree, and beyond it', () => {
    const p = parseTlogProof(receipts[10]!);
    for (const index of [0, 9, 11, N - 1]) {
      const moved = formatTlogProof({ ...p, index });
      expectFailure(() => verifyReceipt(moved, entries[10]!.bytes, logKey()), VerificationError, `index ${index}`);
    }
    const beyond = formatTlogProof({ ...p, index: N });
    expectFailure(() => verifyReceipt(beyond, entries[10]!.bytes, logKey()), VerificationError, `index ${N} is not below the tree size ${N}`);
    expectFailure(() => verifyReceipt(oldReceipt.replace('index 3\n', `index ${FIRST + 2}\n`), entries[3]!.bytes, logKey()), VerificationError, `index ${FIRST + 2} is not below the tree size ${FIRST}`);
  });

  it("a receipt for another leaf: names the given leaf's hash", () => {
    for (const [r, e] of [[3, 4], [4, 3], [0, N - 1], [N - 1, 0]] as const) {
      expectFailure(() => verifyReceipt(receipts[r]!, entries[e]!.bytes, logKey()), VerificationError, encodeBase64(entries[e]!.leafHash), `index ${r}`);
      expectFailure(() => verifyReceipt(receipts[r]!, { leafHash: entries[e]!.leafHash }, logKey()), VerificationError, encodeBase64(entries[e]!.leafHash));
    }
  });

  it('malformed receipts, leaves and keys are MalformedErrors', () => {
    const e5 = entries[5]!.bytes;
    expectFailure(() => verifyReceipt('', e5, logKey()), MalformedError, 'tlog-proof');
    expectFailure(() => verifyReceipt(receipts[5]!.replace('c2sp.org/tlog-proof@v1', 'c2sp.org/tlog-proof@v2'), e5, logKey()), MalformedError, 'first line');
    expectFailure(() => verifyReceipt(receipts[5]!.replace('index 5', 'index 05'), e5, logKey()), MalformedError, 'index');
    expectFailure(() => verifyReceipt(receipts[5]! + 'trailing', e5, logKey()), MalformedError, 'checkpoint');
    // An empty entry is a valid RFC 6962 leaf: it is checked, and is simply not entry 5.
    expectFailure(() => verifyReceipt(receipts[5]!, new Uint8Array(0), logKey()), VerificationError, 'inclusion proof');
    expectFailure(() => verifyReceipt(receipts[5]!, { leafHash: new Uint8Array(31) }, logKey()), MalformedError, 'leafHash');
    expectFailure(() => verifyReceipt(receipts[5]!, e5, { logKey: 'not a key' }), MalformedError, 'log key');
    expectFailure(() => verifyReceipt(receipts[5]!, e5, { logKey: W.W1.vkey }), MalformedError, 'log key');
    const anyCall = verifyReceipt as (...args: unknown[]) => unknown;
    expectFailure(() => anyCall(42, e5, logKey()), MalformedError, 'not a string');
    expectFailure(() => anyCall(receipts[5], 'bytes', logKey()), MalformedError, 'leaf');
    expectFailure(() => anyCall(receipts[5], e5, {}), MalformedError, 'trust');
    expectFailure(() => anyCall(receipts[5], e5, null), MalformedError, 'trust');
  });
});

describe('verifyReceipt: properties', () => {
  /** A single random edit of a string; never the identity. */
  const edit = (s: string) =>
    fc.oneof(
      // Replace one character.
      fc.record({ at: fc.nat(s.length - 1), c: fc.constantFrom(...'AZaz09+/= \n—-.x\t\u0000é') }).map(({ at, c }) =>
        s[at] === c ? s.slice(0, at) + (c === 'A' ? 'B' : 'A') + s.slice(at + 1) : s.slice(0, at) + c + s.slice(at + 1)
      ),
      // Flip one bit of a character.
      fc.record({ at: fc.nat(s.length - 1), bit: fc.integer({ min: 0, max: 6 }) }).map(
        ({ at, bit }) => s.slice(0, at) + String.fromCharCode(s.charCodeAt(at) ^ (1 << bit)) + s.slice(at + 1)
      ),
      // Delete a range.
      fc.record({ at: fc.nat(s.length - 1), n: fc.integer({ min: 1, max: 50 }) }).map(({ at, n }) => s.slice(0, at) + s.slice(at + n)),
      // Insert a string.
      fc.record({ at: fc.nat(s.length), ins: fc.string({ minLength: 1, maxLength: 8 }) }).map(({ at, ins }) => s.slice(0, at) + ins + s.slice(at)),
      // Swap two lines. (Not two signature lines: their order carries no meaning, so
      // swapping them gives an equivalent receipt, which rightly verifies.)
      fc.record({ i: fc.nat(40), j: fc.nat(40) }).map(({ i, j }) => {
        const lines = s.split('\n');
        const a = i % lines.length;
        const b = j % lines.length;
        if (lines[a] === lines[b] || (lines[a]!.startsWith('— ') && lines[b]!.startsWith('— '))) return s.slice(1);
        [lines[a], lines[b]] = [lines[b]!, lines[a]!];
        return lines.join('\n');
      }),
      // Truncate.
      fc.nat(s.length - 1).map((n) => s.slice(0, n))
    );

  /** Runs verify and returns 'ok' or the error; fails on any other exception type. */
  function outcome(f: () => unknown): 'ok' | Error {
    try {
      f();
      return 'ok';
    } catch (e) {
      if (!(e instanceof VerificationError) && !(e instanceof MalformedError)) throw e;
      return e;
    }
  }

  it('no random edit of a valid receipt verifies (log key), and only Verification/MalformedError is thrown', () => {
    fc.assert(
      fc.property(
        fc.nat(N - 1).chain((i) => fc.tuple(fc.constant(i), edit(receipts[i]!))),
        ([i, mutated]) => {
          fc.pre(mutated !== receipts[i]);
          expect(outcome(() => verifyReceipt(mutated, entries[i]!.bytes, { logKey: t.vkey }))).not.toBe('ok');
        }
      ),
      { numRuns }
    );
  });

  it('no random edit of a cosigned receipt verifies under a policy needing every cosignature', () => {
    const cosigned = receipts.map((r) => cosign(r, ['W1', 'W2', 'W3']));
    expect(verifyReceipt(cosigned[0]!, entries[0]!.bytes, { policy: allThree }).cosigned.size).toBe(3);
    fc.assert(
      fc.property(
        fc.nat(N - 1).chain((i) => fc.tuple(fc.constant(i), edit(cosigned[i]!))),
        ([i, mutated]) => {
          fc.pre(mutated !== cosigned[i]);
          expect(outcome(() => verifyReceipt(mutated, entries[i]!.bytes, { policy: allThree }))).not.toBe('ok');
        }
      ),
      { numRuns }
    );
  });

  it('no other leaf verifies against a receipt', () => {
    fc.assert(
      fc.property(
        fc.nat(N - 1),
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 300 }),
          fc.record({ at: fc.nat(10_000), bit: fc.integer({ min: 0, max: 7 }) })
        ),
        (i, m) => {
          let leaf: Uint8Array;
          if (m instanceof Uint8Array) leaf = m;
          else {
            leaf = Uint8Array.from(entries[i]!.bytes);
            leaf[m.at % leaf.length]! ^= 1 << m.bit;
          }
          const e = outcome(() => verifyReceipt(receipts[i]!, leaf, { logKey: t.vkey }));
          expect(e).toBeInstanceOf(VerificationError);
          expect((e as Error).message).toContain(encodeBase64(leafHash(leaf)));
        }
      ),
      { numRuns }
    );
  });

  it('arbitrary input never throws anything but VerificationError or MalformedError', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 400 }),
      fc.string({ unit: 'binary', maxLength: 400 }),
      fc.constantFrom(...receipts).chain((r) => fc.tuple(fc.nat(r.length), fc.string({ unit: 'grapheme', maxLength: 20 })).map(([at, s]) => r.slice(0, at) + s))
    );
    const leaf = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ minLength: 0, maxLength: 40 }).map((leafHash) => ({ leafHash })),
      fc.anything()
    );
    fc.assert(
      fc.property(text, leaf, fc.boolean(), (s, l, usePolicy) => {
        const trust = usePolicy ? { policy: twoOfThree } : { logKey: t.vkey };
        expect(outcome(() => verifyReceipt(s, l as Uint8Array, trust))).not.toBe('ok');
      }),
      { numRuns }
    );
  });
});
