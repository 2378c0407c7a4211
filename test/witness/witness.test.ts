/**
 * The witness state machine (src/witness/witness.ts) driven directly, on every witness store
 * (PGlite always, Postgres when DATABASE_URL is set): the c2sp.org/tlog-witness checks of
 * add-checkpoint in the spec's order, each failure as its error class, the atomic
 * compare-and-swap under concurrent requests, fork evidence and quarantine (kept across a
 * restart), and policy reloads. Real keys, real trees, real stores.
 */
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ADD_CHECKPOINT_SIZE } from '../../src/core/add-checkpoint.js';
import { equalBytes, utf8 } from '../../src/core/encoding.js';
import {
  ForbiddenError,
  MalformedError,
  NotFoundError,
  SizeConflictError,
  TlogError,
  TooLargeError,
  VerificationError,
} from '../../src/core/errors.js';
import { EMPTY_ROOT } from '../../src/core/hash.js';
import { openNote, parseNote, signNote } from '../../src/note/note.js';
import { generateKey, newSigner } from '../../src/note/index.js';
import { checkpointOf, verifyForkEvidence } from '../../src/verify/evidence.js';
import { originHash } from '../../src/witness/witness.js';
import {
  TestLog,
  corruptFirstSignature,
  eventually,
  junkHash,
  policyOf,
  rawRequest,
  startWitness,
  witnessKey,
  WITNESS_NAME,
  type WitnessFixture,
} from '../helpers/witness.js';
import { witnessStoreFactories } from '../helpers/witness-stores.js';

const A = new TestLog('log-a.test/glasslog', 1024);
const B = new TestLog('log-b.test/glasslog', 64);
/** Not in the witness's policy at start. */
const C = new TestLog('log-c.test/glasslog', 64);
const KEY = witnessKey();
const T0 = 1_700_000_000_000;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ErrorClass = abstract new (...args: any[]) => Error;

/** Runs `p`, requiring it to reject with exactly `cls` (and not a subclass-of-other surprise). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function rejectsWith<E extends Error>(p: Promise<unknown>, cls: abstract new (...args: any[]) => E): Promise<E> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a rejection').toBeDefined();
  expect(err).toBeInstanceOf(cls);
  return err as E;
}

/** The cosignature line verifies over the checkpoint text; returns its timestamp. */
function checkCosignature(text: string, line: string): number {
  expect(line).toMatch(new RegExp(`^— ${WITNESS_NAME.replace(/[/.]/g, '\\$&')} [A-Za-z0-9+/]+=*\\n$`));
  const opened = openNote(text + '\n' + line, [KEY.verifier]);
  expect(opened.verified).toHaveLength(1);
  expect(opened.unverified).toHaveLength(0);
  return KEY.verifier.timestampOf(opened.verified[0]!.signature);
}

describe.each(witnessStoreFactories())('Witness on $name', (factory) => {
  let f: WitnessFixture;
  const add = (body: string | Uint8Array) => f.witness.addCheckpoint(body);
  const stored = async (log: TestLog = A) => (await f.store.latest(log.origin))?.treeSize ?? null;

  beforeAll(async () => {
    // Start the shared engine (PGlite initdb) outside the first test's clock.
    const warm = await startWitness(factory, [A], KEY);
    await warm.destroy();
  });
  afterEach(async () => {
    await f?.destroy();
  });
  afterAll(() => factory.dispose());

  async function witness(logs: TestLog[] = [A, B]): Promise<WitnessFixture> {
    f = await startWitness(factory, logs, KEY, T0);
    return f;
  }

  describe('success', () => {
    it('accepts the first checkpoint on trust (old 0, no proof) and cosigns it with the pinned time', async () => {
      await witness();
      const line = await add(A.request(0, 10));
      expect(checkCosignature(A.text(10), line)).toBe(T0 / 1000);
      const s = await f.store.latest(A.origin);
      expect(s?.treeSize).toBe(10);
      expect(equalBytes(s!.rootHash, A.rootAt(10))).toBe(true);
      // Served note: the text, the log's signature, the cosignature, in that order.
      const served = parseNote(s!.note);
      expect(served.text).toBe(A.text(10));
      expect(served.signatures.map((x) => x.name)).toEqual([A.origin, WITNESS_NAME]);
      expect(openNote(s!.note, [A.verifier, KEY.verifier]).verified).toHaveLength(2);
      expect(s!.note.endsWith(line)).toBe(true);
      // The other log is untouched.
      expect(await stored(B)).toBeNull();
    });

    it('follows a chain of consistent extensions, and re-cosigns the same checkpoint with a fresh timestamp', async () => {
      await witness();
      let old = 0;
      const sizes = [1, 2, 3, 4, 7, 8, 16, 17, 31, 32, 33, 100, 255, 256, 257, 1000, 1024];
      for (const [i, n] of sizes.entries()) {
        f.clock.ms = T0 + i * 1000;
        const line = await add(A.request(old, n));
        expect(checkCosignature(A.text(n), line)).toBe(T0 / 1000 + i);
        expect(await stored()).toBe(n);
        old = n;
      }
      // old == size, same root, empty proof: cosigned again, with the new time.
      f.clock.ms = T0 + 99_999_999;
      const again = await add(A.request(1024, 1024));
      expect(checkCosignature(A.text(1024), again)).toBe(Math.floor((T0 + 99_999_999) / 1000));
      const s = await f.store.latest(A.origin);
      expect(s!.note.endsWith(again)).toBe(true);
      expect(s!.treeSize).toBe(1024);
    });

    it('accepts a size-0 checkpoint with the empty root, then extends it from old 0', async () => {
      await witness();
      await add(A.request(0, 0));
      const s = await f.store.latest(A.origin);
      expect(s?.treeSize).toBe(0);
      expect(equalBytes(s!.rootHash, EMPTY_ROOT)).toBe(true);
      // State is now "size 0", still old 0 with an empty proof.
      await add(A.request(0, 5));
      expect(await stored()).toBe(5);
    });

    it('takes a Uint8Array body like a string one', async () => {
      await witness();
      const line = await add(utf8(A.request(0, 3)));
      checkCosignature(A.text(3), line);
      expect(await stored()).toBe(3);
    });

    it('keeps only the verified log signature, dropping unknown signature lines', async () => {
      await witness();
      const other = newSigner(generateKey(A.origin).skey); // same name, another key ID
      const grease = newSigner(generateKey('grease.invalid').skey);
      const note = A.note(12, { extra: [other, grease] });
      expect(parseNote(note).signatures).toHaveLength(3);
      await add(A.request(0, 12, { note }));
      const s = await f.store.latest(A.origin);
      const sigs = parseNote(s!.note).signatures;
      expect(sigs.map((x) => [x.name, x.keyId])).toEqual([
        [A.origin, A.verifier.keyId],
        [WITNESS_NAME, KEY.verifier.keyId],
      ]);
    });
  });

  describe('each refusal, as its error, leaving the state alone', () => {
    it('400: malformed bodies (MalformedError)', async () => {
      await witness();
      await add(A.request(0, 10));
      const good = A.note(20);
      const proof = A.proof(10, 20);
      const b64 = (n: number) => Buffer.alloc(n, 7).toString('base64');
      const bodies: Array<[string, string]> = [
        ['empty body', ''],
        ['no blank line', 'old 10\n'],
        ['no blank line before a note', `old 10\n${A.text(20)}`],
        ['missing checkpoint', 'old 10\n\n'],
        ['no "old" line', rawRequest('', proof, good).replace('old \n', '')],
        ['"olds"', rawRequest(10, proof, good).replace('old 10', 'olds 10')],
        ['"OLD"', rawRequest(10, proof, good).replace('old 10', 'OLD 10')],
        ['two spaces', rawRequest(10, proof, good).replace('old 10', 'old  10')],
        ['tab', rawRequest(10, proof, good).replace('old 10', 'old\t10')],
        ['trailing space', rawRequest(10, proof, good).replace('old 10', 'old 10 ')],
        ['CRLF', rawRequest(10, proof, good).replace('old 10\n', 'old 10\r\n')],
        ['negative', rawRequest('-10', proof, good)],
        ['plus sign', rawRequest('+10', proof, good)],
        ['hex', rawRequest('0xa', proof, good)],
        ['fraction', rawRequest('10.0', proof, good)],
        ['exponent', rawRequest('1e1', proof, good)],
        ['empty size', rawRequest('', proof, good)],
        ['leading zero', rawRequest('010', proof, good)],
        ['double zero', rawRequest('00', [], A.note(0))],
        ['beyond 2^53', rawRequest('18446744073709551616', proof, good)],
        ['proof line of 31 bytes', rawRequest(10, [], good).replace('old 10\n', `old 10\n${b64(31)}\n`)],
        ['proof line of 33 bytes', rawRequest(10, [], good).replace('old 10\n', `old 10\n${b64(33)}\n`)],
        ['proof line not base64', rawRequest(10, [], good).replace('old 10\n', 'old 10\nnot base64!\n')],
        ['proof line unpadded', rawRequest(10, [], good).replace('old 10\n', `old 10\n${b64(32).replace(/=+$/, '')}\n`)],
        ['proof line base64url', rawRequest(10, [], good).replace('old 10\n', `old 10\n${'_-'.repeat(21)}8=\n`)],
        ['64 proof lines', rawRequest(10, Array.from({ length: 64 }, (_, i) => junkHash(`p${i}`)), good)],
        ['note without signatures', `old 10\n\n${A.text(20)}`],
        ['note with a garbage signature line', `old 10\n\n${A.text(20)}\nsignature\n`],
        ['note whose signature has no base64', `old 10\n\n${A.text(20)}\n— ${A.origin}\n`],
        ['trailing text after the signatures', rawRequest(10, proof, good + 'trailer')],
        ['control character in the note', rawRequest(10, proof, good.replace(A.origin, A.origin + '\u0001'))],
        ['checkpoint of two lines', rawRequest(0, [], A.note(20).replace(/^.*\n.*\n/, (m) => m.split('\n')[0]! + '\n'))],
        ['checkpoint size with a leading zero', rawRequest(10, proof, good.replace('\n20\n', '\n020\n'))],
        ['checkpoint root of 31 bytes', rawRequest(10, proof, good.replace(/\n[A-Za-z0-9+/]{43}=\n/, `\n${b64(31)}\n`))],
        ['checkpoint with an empty origin', rawRequest(10, proof, good.replace(A.origin + '\n20', '\n20'))],
      ];
      for (const [what, body] of bodies) {
        const err = await rejectsWith(add(body), TlogError);
        expect([what, err.constructor.name]).toEqual([what, 'MalformedError']);
      }
      // A note text that is not a checkpoint, validly signed by the log, is malformed too.
      const signedJunk = signNote(A.text(20).replace('\n20\n', '\n020\n'), [A.signer]);
      await rejectsWith(add(rawRequest(10, proof, signedJunk)), MalformedError);
      expect(await stored()).toBe(10);
      expect(f.alarms).toEqual([]);
    });

    it('400 boundary: exactly 63 proof lines parse (and fail later, 422)', async () => {
      await witness();
      const proof = Array.from({ length: 63 }, (_, i) => junkHash(`p${i}`));
      await rejectsWith(add(rawRequest(0, proof, A.note(20))), VerificationError);
      expect(await stored()).toBeNull();
    });

    it('413: a body over 16 KiB is TooLargeError, as bytes and as a string', async () => {
      await witness();
      const base = A.request(0, 10);
      const pad = (n: number) => base + 'x'.repeat(n - utf8(base).length);
      const over = pad(MAX_ADD_CHECKPOINT_SIZE + 1);
      expect(utf8(over).length).toBe(MAX_ADD_CHECKPOINT_SIZE + 1);
      await rejectsWith(add(utf8(over)), TooLargeError);
      await rejectsWith(add('x'.repeat(MAX_ADD_CHECKPOINT_SIZE + 1)), TooLargeError);
      // Exactly the limit is parsed (and malformed: trailing text after the signatures).
      await rejectsWith(add(utf8(pad(MAX_ADD_CHECKPOINT_SIZE))), MalformedError);
      // An unknown origin does not matter: size comes first.
      await rejectsWith(add(utf8(C.request(0, 3) + '\n'.repeat(MAX_ADD_CHECKPOINT_SIZE))), TooLargeError);
      expect(await stored()).toBeNull();
    });

    it('404: an origin not in the policy (NotFoundError), even validly signed by its own key', async () => {
      await witness();
      await rejectsWith(add(C.request(0, 10)), NotFoundError);
      expect(await stored(C)).toBeNull();
      // A's key signing a checkpoint with C's origin is still an unknown origin.
      const crossed = C.text(10);
      await rejectsWith(add(rawRequest(0, [], A.note(10).replace(A.text(10), crossed))), NotFoundError);
    });

    it('403: no trusted signature, or a bad one by the trusted key (ForbiddenError)', async () => {
      await witness();
      await add(A.request(0, 10));
      const sameName = newSigner(generateKey(A.origin).skey);
      const otherName = newSigner(generateKey('someone-else.test').skey);
      const text = A.text(20);
      // Signed by another key with the log's name (another key ID): unknown, so unverified.
      await rejectsWith(add(A.request(10, 20, { note: signNote(text, [sameName]) })), ForbiddenError);
      await rejectsWith(add(A.request(10, 20, { note: signNote(text, [otherName]) })), ForbiddenError);
      // B's (trusted) key signing A's checkpoint is no signature for A.
      await rejectsWith(add(A.request(10, 20, { note: signNote(text, [B.signer]) })), ForbiddenError);
      // A line with the trusted name and key ID whose signature is wrong.
      const bad = corruptFirstSignature(A.note(20));
      await rejectsWith(add(A.request(10, 20, { note: bad })), ForbiddenError);
      // ... even with a valid signature by the same key after it.
      const badThenGood = bad + A.note(20).slice(A.text(20).length + 1);
      expect(parseNote(badThenGood).signatures).toHaveLength(2);
      await rejectsWith(add(A.request(10, 20, { note: badThenGood })), ForbiddenError);
      // ... or after one (tlog-witness HEAD: any failing line by a trusted key is a 403,
      // although note verification, like go-note, checks only one line per key).
      const goodThenBad = A.note(20) + bad.slice(A.text(20).length + 1);
      expect(parseNote(goodThenBad).signatures).toHaveLength(2);
      await rejectsWith(add(A.request(10, 20, { note: goodThenBad })), ForbiddenError);
      // ... or with an unknown valid signature next to it.
      await rejectsWith(add(A.request(10, 20, { note: corruptFirstSignature(A.note(20, { extra: [sameName] })) })), ForbiddenError);
      // The log's signature over another checkpoint text (a different root) does not verify.
      const swapped = A.note(20).replace(A.text(20), A.text(20, A.rootAt(19)));
      await rejectsWith(add(A.request(10, 20, { note: swapped })), ForbiddenError);
      expect(await stored()).toBe(10);
    });

    it('400: old larger than the checkpoint size (MalformedError)', async () => {
      await witness();
      await rejectsWith(add(rawRequest(11, [], A.note(10))), MalformedError);
      await add(A.request(0, 10));
      await rejectsWith(add(rawRequest(11, [], A.note(10))), MalformedError);
      await rejectsWith(add(rawRequest(1, [], A.note(0))), MalformedError);
      expect(await stored()).toBe(10);
    });

    it('409: old is not the stored size (SizeConflictError carries the stored size)', async () => {
      await witness();
      // No state, old ≠ 0: the witness's size is 0.
      let e = await rejectsWith(add(A.request(5, 10)), SizeConflictError);
      expect(e.treeSize).toBe(0);
      expect(await stored()).toBeNull();
      await add(A.request(0, 10));
      for (const old of [0, 5, 9, 11, 20]) {
        e = await rejectsWith(add(A.request(old, 20)), SizeConflictError);
        expect(e.treeSize).toBe(10);
      }
      // old 0 to learn the size, once there is state.
      e = await rejectsWith(add(A.request(0, 10)), SizeConflictError);
      expect(e.treeSize).toBe(10);
      expect(await stored()).toBe(10);
    });

    it('422: a size-0 checkpoint whose root is not the empty root (VerificationError)', async () => {
      await witness();
      await rejectsWith(add(rawRequest(0, [], A.note(0, { root: A.rootAt(1) }))), VerificationError);
      expect(await stored()).toBeNull();
    });

    it('422: old 0 with a proof, when there is no state (VerificationError)', async () => {
      await witness();
      await rejectsWith(add(rawRequest(0, [junkHash('x')], A.note(10))), VerificationError);
      await rejectsWith(add(rawRequest(0, A.proof(5, 10), A.note(10))), VerificationError);
      expect(await stored()).toBeNull();
      // Also once the state is size 0.
      await add(A.request(0, 0));
      await rejectsWith(add(rawRequest(0, [junkHash('x')], A.note(10))), VerificationError);
      expect(await stored()).toBe(0);
    });

    it('422: bad consistency proofs (VerificationError), raising a "rejected" alarm but no fork', async () => {
      await witness();
      await add(A.request(0, 10));
      const good = A.proof(10, 37);
      const flipped = good.map((h, i) => (i === 1 ? Uint8Array.from(h, (b, j) => (j === 0 ? b ^ 1 : b)) : h));
      const proofs: Array<[string, Uint8Array[]]> = [
        ['flipped bit', flipped],
        ['truncated', good.slice(0, -1)],
        ['extra hash', [...good, junkHash('extra')]],
        ['reordered', [...good].reverse()],
        ['empty', []],
        ['proof for other sizes', A.proof(11, 37)],
        ['proof of the fork', A.fork(5).proof(10, 37)],
      ];
      for (const [what, proof] of proofs) {
        const err = await rejectsWith(add(rawRequest(10, proof, A.note(37))), TlogError);
        expect([what, err.constructor.name]).toEqual([what, 'VerificationError']);
      }
      // A checkpoint whose root is not an extension, with the honest proof.
      await rejectsWith(add(rawRequest(10, good, A.note(37, { root: A.fork(5).rootAt(37) }))), VerificationError);
      // old == size with the same root, but a proof attached.
      await rejectsWith(add(rawRequest(10, [junkHash('x')], A.note(10))), VerificationError);
      expect(await stored()).toBe(10);
      await eventually(() => f.alarms.length >= proofs.length + 2, 'the rejected alarms');
      expect(new Set(f.alarms.map((a) => a.kind))).toEqual(new Set(['rejected']));
      expect(f.alarms.every((a) => a.origin === A.origin)).toBe(true);
      expect(f.witness.isQuarantined(A.origin)).toBe(false);
      expect(await f.store.openForks(A.origin)).toEqual([]);
      // Still cosigning.
      await add(A.request(10, 37));
    });
  });

  describe('check order (c2sp.org/tlog-witness)', () => {
    it('parse < 404 < 403 < 400 (old > size) < 409 < 422', async () => {
      await witness();
      await add(A.request(0, 10));
      const badProof = [junkHash('bad')];
      // Malformed and unknown origin: 400.
      await rejectsWith(add(rawRequest('010', [], C.note(20))), MalformedError);
      // Unknown origin and a bad proof, a wrong old, old > size: 404.
      await rejectsWith(add(rawRequest(10, badProof, C.note(20))), NotFoundError);
      await rejectsWith(add(rawRequest(3, [], C.note(20))), NotFoundError);
      await rejectsWith(add(rawRequest(30, [], C.note(20))), NotFoundError);
      // Unknown origin and a bad signature (by the trusted key of another log): 404.
      await rejectsWith(add(rawRequest(0, [], corruptFirstSignature(C.note(20)))), NotFoundError);
      // Bad signature and old > size: 403.
      await rejectsWith(add(rawRequest(30, [], corruptFirstSignature(A.note(20)))), ForbiddenError);
      // Bad signature and wrong old, and bad proof: 403.
      await rejectsWith(add(rawRequest(3, badProof, corruptFirstSignature(A.note(20)))), ForbiddenError);
      // old > size and wrong old: 400.
      await rejectsWith(add(rawRequest(30, [], A.note(20))), MalformedError);
      // Wrong old and a bad proof: 409.
      await rejectsWith(add(rawRequest(3, badProof, A.note(20))), SizeConflictError);
      // Wrong old and a size-0 checkpoint with a bad root: 409 (old 0 ≠ 10).
      await rejectsWith(add(rawRequest(0, [], A.note(0, { root: A.rootAt(3) }))), SizeConflictError);
      // Wrong old and the same size with another root: 409, not a fork report.
      await rejectsWith(add(rawRequest(3, [], A.note(10, { root: A.rootAt(9) }))), SizeConflictError);
      expect(await stored()).toBe(10);
      expect(f.alarms).toEqual([]);
    });
  });

  describe('atomicity', () => {
    it('20 concurrent extensions from one old size: exactly one wins, the rest see its size', async () => {
      await witness();
      await add(A.request(0, 100));
      for (const round of [0, 1]) {
        const base = (await stored())!;
        const sizes = Array.from({ length: 20 }, (_, i) => base + 1 + ((i * 7 + round) % 20) * 3);
        const results = await Promise.allSettled(sizes.map((n) => add(A.request(base, n))));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [sizes[i]!] : []));
        expect(won).toHaveLength(1);
        const winner = won[0]!;
        for (const r of results) {
          if (r.status === 'rejected') {
            expect(r.reason).toBeInstanceOf(SizeConflictError);
            expect((r.reason as SizeConflictError).treeSize).toBe(winner);
          }
        }
        const s = await f.store.latest(A.origin);
        expect(s!.treeSize).toBe(winner);
        expect(equalBytes(s!.rootHash, A.rootAt(winner))).toBe(true);
        // The cosigned note is the winner's.
        expect(parseNote(s!.note).text).toBe(A.text(winner));
        // The loser's old size is stale now; the winner's is current.
        await rejectsWith(add(A.request(base, winner + 1)), SizeConflictError);
      }
    });

    it('the spec race (A: size N, B: size N+K) never rolls the state back', async () => {
      await witness();
      await add(A.request(0, 50));
      let base = 50;
      for (let round = 0; round < 8; round++) {
        const n = base + 1;
        const nk = base + 1 + 5;
        const order = round % 2 === 0 ? [n, nk] : [nk, n];
        const results = await Promise.allSettled(order.map((s) => add(A.request(base, s))));
        const won = order.filter((_, i) => results[i]!.status === 'fulfilled');
        expect(won).toHaveLength(1);
        expect(await stored()).toBe(won[0]);
        base = won[0]!;
      }
    });

    it('interleaved clients: the successes form one chain and the stored size is their maximum', async () => {
      await witness();
      let seed = 12345;
      const rnd = (k: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % k;
      };
      const successes: Array<{ old: number; size: number }> = [];
      const client = async () => {
        let known = 0;
        for (let i = 0; i < 6; i++) {
          const n = known + 1 + rnd(6);
          try {
            await add(A.request(known, n));
            successes.push({ old: known, size: n });
            known = n;
          } catch (e) {
            if (!(e instanceof SizeConflictError)) throw e;
            // The state only grows: what the witness reports is past what this client knew.
            expect(e.treeSize).toBeGreaterThan(known);
            known = e.treeSize;
          }
        }
      };
      await Promise.all(Array.from({ length: 6 }, client));
      expect(successes.length).toBeGreaterThan(0);
      const chain = [...successes].sort((a, b) => a.size - b.size);
      let prev = 0;
      for (const s of chain) {
        expect(s.old).toBe(prev);
        prev = s.size;
      }
      expect(await stored()).toBe(Math.max(...successes.map((s) => s.size)));
      const s = await f.store.latest(A.origin);
      expect(openNote(s!.note, [A.verifier, KEY.verifier]).verified).toHaveLength(2);
    });

    it('two concurrent first checkpoints (no state): exactly one is trusted', async () => {
      await witness();
      const results = await Promise.allSettled([add(A.request(0, 7)), add(A.request(0, 9))]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      expect(ok).toHaveLength(1);
      const size = (await stored())!;
      expect([7, 9]).toContain(size);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toBeInstanceOf(SizeConflictError);
      expect((lost.reason as SizeConflictError).treeSize).toBe(size);
    });
  });

  describe('forks', () => {
    const F = A.fork(6);

    async function forkAt20(): Promise<void> {
      await add(A.request(0, 20));
      const err = await rejectsWith(add(A.request(20, 20, { note: F.note(20) })), VerificationError);
      expect(err.message).toMatch(/different roots/);
      await eventually(() => f.witness.isQuarantined(A.origin), 'the quarantine');
    }

    it('same size, another root: 422, evidence stored and verifiable, alarm, metric, quarantine', async () => {
      await witness();
      await expect(f.witness.forkEvidence(originHash(A.origin))).rejects.toBeInstanceOf(NotFoundError);
      await forkAt20();
      const forks = await f.store.openForks(A.origin);
      expect(forks).toHaveLength(1);
      const v = verifyForkEvidence(forks[0]!.evidence, [A.verifier]);
      expect(v.origin).toBe(A.origin);
      expect(v.smaller.treeSize).toBe(20);
      expect(v.larger.treeSize).toBe(20);
      expect(new Set([Buffer.from(v.smaller.rootHash).toString('hex'), Buffer.from(v.larger.rootHash).toString('hex')])).toEqual(
        new Set([A.rootAt(20), F.rootAt(20)].map((r) => Buffer.from(r).toString('hex')))
      );
      const fe = await f.witness.forkEvidence(originHash(A.origin));
      expect(fe.open).toBe(true);
      expect(fe.evidence).toBe(forks[0]!.evidence);

      const fork = f.alarms.filter((a) => a.kind === 'fork');
      expect(fork).toHaveLength(1);
      expect(fork[0]!.origin).toBe(A.origin);
      expect(fork[0]!.evidence).toBe(forks[0]!.evidence);
      expect(fork[0]!.message).toContain(`/${originHash(A.origin)}/fork-evidence`);
      expect(f.alarms.some((a) => a.kind === 'rejected')).toBe(true);
      const m = f.metrics.render();
      expect(m).toContain(`glasslog_witness_forks_total{origin="${A.origin}"} 1`);
      expect(m).toContain('glasslog_witness_alarms_total{kind="fork"} 1');
      expect(m).toContain('glasslog_witness_quarantined_logs 1');

      // Quarantine: a valid extension of the held checkpoint is refused, before the 409 check.
      await rejectsWith(add(A.request(20, 30)), ForbiddenError);
      await rejectsWith(add(A.request(3, 30)), ForbiddenError);
      await rejectsWith(add(A.request(20, 20)), ForbiddenError);
      // Checks before the quarantine still come first.
      await rejectsWith(add(rawRequest(31, [], A.note(30))), MalformedError);
      await rejectsWith(add(A.request(20, 30, { note: corruptFirstSignature(A.note(30)) })), ForbiddenError);
      expect(await stored()).toBe(20);
      // Another log is not affected.
      await add(B.request(0, 5));
    });

    it('the same fork again adds no record, alarm or count; another one does', async () => {
      await witness();
      await forkAt20();
      // While quarantined the request is refused before the consistency check.
      await rejectsWith(add(A.request(20, 20, { note: F.note(20) })), ForbiddenError);
      // Record the same evidence directly: idempotent.
      const [first] = await f.store.openForks(A.origin);
      await f.witness.recordFork(A.origin, first!.evidence);
      expect(await f.store.openForks(A.origin)).toHaveLength(1);
      expect(f.alarms.filter((a) => a.kind === 'fork')).toHaveLength(1);
      expect(f.metrics.render()).toContain(`glasslog_witness_forks_total{origin="${A.origin}"} 1`);
      // Invalid evidence is refused and not stored.
      await expect(f.witness.recordFork(A.origin, first!.evidence.replace('glasslog/fork', 'glasslog/spoon'))).rejects.toBeInstanceOf(MalformedError);
      await expect(f.witness.recordFork(C.origin, first!.evidence)).rejects.toBeInstanceOf(NotFoundError);
      expect(await f.store.forks(A.origin)).toHaveLength(1);
      // Another fork of the same size (found by comparing, as gossip does): a second record.
      const F2 = A.fork(3, 'fork two');
      const held = await f.witness.latest(A.origin);
      const r = await f.witness.compare(held!, { note: F2.note(20), checkpoint: checkpointOf(F2.note(20)) });
      expect(r.kind).toBe('fork');
      expect(await f.store.openForks(A.origin)).toHaveLength(2);
      expect(f.alarms.filter((a) => a.kind === 'fork')).toHaveLength(2);
      expect(f.metrics.render()).toContain(`glasslog_witness_forks_total{origin="${A.origin}"} 2`);
      // The oldest open evidence is the one served.
      expect((await f.witness.forkEvidence(originHash(A.origin))).evidence).toBe(first!.evidence);
      // Comparing with a consistent checkpoint finds nothing.
      expect((await f.witness.compare(held!, { note: A.note(20), checkpoint: checkpointOf(A.note(20)) })).kind).toBe('consistent');
      expect(await f.store.forks(A.origin)).toHaveLength(2);
    });

    it('quarantine survives a restart; resolving lifts it, and the held checkpoint is extended', async () => {
      await witness();
      await forkAt20();
      await f.reopen({ restartEngine: true });
      expect(f.witness.isQuarantined(A.origin)).toBe(true);
      expect(f.witness.isQuarantined(B.origin)).toBe(false);
      await rejectsWith(add(A.request(20, 30)), ForbiddenError);
      expect(f.metrics.render()).toContain('glasslog_witness_quarantined_logs 1');

      expect(await f.witness.resolveForks(originHash(A.origin))).toBe(1);
      expect(f.witness.isQuarantined(A.origin)).toBe(false);
      const fe = await f.witness.forkEvidence(originHash(A.origin));
      expect(fe.open).toBe(false);
      f.clock.ms = T0 + 60_000;
      const line = await add(A.request(20, 30));
      expect(checkCosignature(A.text(30), line)).toBe(T0 / 1000 + 60);
      expect(await stored()).toBe(30);
      // Resolved stays resolved across a reopen.
      await f.reopen();
      expect(f.witness.isQuarantined(A.origin)).toBe(false);
      await add(A.request(30, 31));
      await expect(f.witness.resolveForks(originHash(A.origin))).resolves.toBe(0);
      await expect(f.witness.resolveForks(originHash(C.origin))).rejects.toBeInstanceOf(NotFoundError);
    });

    it('a fork detected at a different size without the log tiles is only a rejection', async () => {
      await witness();
      await add(A.request(0, 20));
      await rejectsWith(add(rawRequest(20, A.proof(20, 40), F.note(40))), VerificationError);
      await eventually(() => f.alarms.length > 0, 'the alarm');
      // Give the background inspection time to (wrongly) record something.
      await new Promise((r) => setTimeout(r, 100));
      expect(f.alarms.map((a) => a.kind)).toEqual(['rejected']);
      expect(f.witness.isQuarantined(A.origin)).toBe(false);
      expect(await f.store.forks(A.origin)).toEqual([]);
    });

    it('quarantine (and stored evidence) is in force once the fork request has been answered', async () => {
      await witness();
      await add(A.request(0, 20));
      await rejectsWith(add(A.request(20, 20, { note: F.note(20) })), VerificationError);
      const quarantined = f.witness.isQuarantined(A.origin);
      const forks = (await f.store.forks(A.origin)).length;
      // Let the background work finish before the store closes.
      await eventually(() => f.witness.isQuarantined(A.origin), 'the quarantine');
      expect(quarantined).toBe(true);
      expect(forks).toBe(1);
    });
  });

  describe('policy', () => {
    it('setPolicy: a removed log is unknown (404), an added one is accepted', async () => {
      await witness([A, B]);
      await add(A.request(0, 10));
      await add(B.request(0, 10));
      await f.witness.setPolicy(policyOf([B, C]));
      expect(f.witness.currentPolicy().logs.map((l) => l.origin)).toEqual([B.origin, C.origin]);
      await rejectsWith(add(A.request(10, 20)), NotFoundError);
      await expect(f.witness.monitorCheckpoint(originHash(A.origin))).rejects.toBeInstanceOf(NotFoundError);
      await add(C.request(0, 4));
      await add(B.request(10, 11));
      expect(await stored(C)).toBe(4);
      // Back again: its state was kept.
      await f.witness.setPolicy(policyOf([A, B, C]));
      await rejectsWith(add(A.request(0, 20)), SizeConflictError);
      await add(A.request(10, 20));
      expect(await f.witness.monitorCheckpoint(originHash(A.origin))).toBe((await f.store.latest(A.origin))!.note);
    });

    it('a key rotated in the policy: the old key is refused (403), the new one accepted', async () => {
      await witness([A]);
      await add(A.request(0, 10));
      const rotated = new TestLog(A.origin, 1024, A.origin); // same tree, new key
      await f.witness.setPolicy(policyOf([rotated]));
      await rejectsWith(add(A.request(10, 20)), ForbiddenError);
      await add(rotated.request(10, 20));
      expect(await stored()).toBe(20);
    });

    it('a log added by setPolicy with open fork evidence is quarantined', async () => {
      await witness([A]);
      await add(A.request(0, 20));
      await rejectsWith(add(A.request(20, 20, { note: A.fork(3).note(20) })), VerificationError);
      await eventually(() => f.witness.isQuarantined(A.origin), 'the quarantine');
      await f.reopen({ logs: [B] });
      await f.witness.setPolicy(policyOf([A, B]));
      expect(f.witness.isQuarantined(A.origin)).toBe(true);
      await rejectsWith(add(A.request(20, 30)), ForbiddenError);
    });
  });

  describe('properties', () => {
    it('any sequence of honest and tampered requests: honest ones advance, tampered ones change nothing', async () => {
      await witness([A]);
      let run = 0;
      type Step = { delta: number; kind: 'honest' | 'proof' | 'root' | 'old' | 'again' };
      const step = fc.record({
        delta: fc.integer({ min: 0, max: 40 }),
        kind: fc.constantFrom<Step['kind']>('honest', 'honest', 'proof', 'root', 'old', 'again'),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
          const L = new TestLog(`prop-${run++}.test/glasslog`, 200);
          await f.witness.setPolicy(policyOf([A, L]));
          let size: number | null = null;
          for (const s of steps) {
            const old: number = size ?? 0;
            const n = Math.min(old + s.delta, 150);
            const before = await f.store.latest(L.origin);
            let kind = s.kind;
            if (kind === 'root' && (old === 0 || n === old)) kind = 'honest'; // from 0 any root is trusted
            if (kind === 'again' && size === null) kind = 'honest';
            let body: string;
            let target: number | null = null;
            let expected: ErrorClass = VerificationError;
            switch (kind) {
              case 'honest':
                body = L.request(old, n);
                target = n;
                break;
              case 'again':
                body = L.request(old, old);
                target = old;
                break;
              case 'proof': {
                const p = old === 0 || n === old ? [junkHash('p')] : L.proof(old, n).map((h, i) => (i === 0 ? junkHash('p') : h));
                body = rawRequest(old, p, L.note(n));
                break;
              }
              case 'root':
                body = rawRequest(old, L.proof(old, n), L.note(n, { root: junkHash('root') }));
                break;
              case 'old': {
                const claimed = old + 1 + (s.delta % 3);
                body = L.request(claimed, Math.max(n, claimed));
                expected = SizeConflictError;
                break;
              }
            }
            if (target !== null) {
              checkCosignature(L.text(target), await add(body));
              size = target;
              expect(await stored(L)).toBe(size);
            } else {
              const e = await rejectsWith(add(body), expected);
              if (e instanceof SizeConflictError) expect(e.treeSize).toBe(size ?? 0);
              expect(await f.store.latest(L.origin)).toEqual(before);
            }
          }
          if (size !== null) {
            const note = await f.witness.monitorCheckpoint(originHash(L.origin));
            expect(openNote(note, [L.verifier, KEY.verifier]).verified).toHaveLength(2);
          }
          expect(f.witness.isQuarantined(L.origin)).toBe(false);
        }),
        { numRuns: 12, seed: 20240601 }
      );
    });
  });
});
