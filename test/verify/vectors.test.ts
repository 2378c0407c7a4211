/**
 * The verify library against the spec vectors (spec/vectors/): receipts and checkpoints
 * signed outside this code base (golang/mod's public test seed, Python `cryptography`),
 * RFC 6962 proofs from transparency-dev/merkle's test data.
 */
import { describe, expect, it } from 'vitest';
import { decodeBase64 } from '../../src/core/encoding.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { parseNote, formatNote } from '../../src/note/note.js';
import { parsePolicy } from '../../src/verify/policy.js';
import { verifyReceipt, verifyTrustedCheckpoint } from '../../src/verify/receipt.js';
import { loadVectors } from '../core/helpers.js';

const P = loadVectors<{
  valid: Array<{ text: string; index: number; treeSize: number; leafInputHex: string; leafHash: string; vkey: string }>;
  invalid: Array<{ text: string; why: string }>;
}>('tlog-proof.json');
const N = loadVectors<{
  cosignedCheckpoints: Array<{ logVkey: string; cosignerVkey: string; note: string; text: string }>;
}>('note.json');

const hexBytes = (h: string) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));

describe('receipts of the spec vectors', () => {
  for (const v of P.valid) {
    it(`verifies index ${v.index} of tree size ${v.treeSize}, by the entry and by its leaf hash`, () => {
      const r = verifyReceipt(v.text, hexBytes(v.leafInputHex), { logKey: v.vkey });
      expect(r).toMatchObject({ index: v.index, checkpoint: { treeSize: v.treeSize } });
      expect(verifyReceipt(v.text, { leafHash: decodeBase64(v.leafHash, 'leafHash') }, { logKey: v.vkey }).index).toBe(v.index);
    });
  }

  it('rejects another entry, every mutated receipt, and a receipt under another log key', () => {
    const v = P.valid[0]!;
    expect(() => verifyReceipt(v.text, Uint8Array.of(1, 2, 3), { logKey: v.vkey })).toThrow(/inclusion proof of leaf hash .* at index 5 leads to root hash/);
    for (const bad of P.invalid) {
      let err: unknown;
      try {
        verifyReceipt(bad.text, hexBytes(v.leafInputHex), { logKey: v.vkey });
      } catch (e) {
        err = e;
      }
      expect(err, bad.why).toBeDefined();
      expect(err instanceof MalformedError || err instanceof VerificationError, bad.why).toBe(true);
    }
    const other = 'example.com/rfc6962-8+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
    expect(() => verifyReceipt(v.text, hexBytes(v.leafInputHex), { logKey: other })).toThrow(MalformedError);
  });
});

describe('the cosigned checkpoint vector under a policy', () => {
  const v = N.cosignedCheckpoints[0]!;
  const policy = (quorum: string) => parsePolicy(`log ${v.logVkey}\nwitness w1 ${v.cosignerVkey}\nquorum ${quorum}\n`);

  it('meets a quorum of its one witness', () => {
    const r = verifyTrustedCheckpoint(v.note, { policy: policy('w1') });
    expect([...r.cosigned]).toEqual(['w1']);
    expect(r.checkpoint.treeSize).toBe(20852163);
  });

  it('fails the quorum without the cosignature, and fails outright with a corrupted one', () => {
    const note = parseNote(v.note);
    const logOnly = formatNote(note.text, note.signatures.filter((s) => s.name !== 'witness.example.com/w1'));
    expect(() => verifyTrustedCheckpoint(logOnly, { policy: policy('w1') })).toThrow(/witness quorum not met: cosigned by no witness/);
    expect(verifyTrustedCheckpoint(logOnly, { policy: policy('none') }).cosigned.size).toBe(0);
    const corrupted = v.note.replace(/— witness\.example\.com\/w1 (\S+)/, (_m, sig: string) => `— witness.example.com/w1 ${sig.slice(0, 30)}${sig[30] === 'A' ? 'B' : 'A'}${sig.slice(31)}`);
    expect(() => verifyTrustedCheckpoint(corrupted, { policy: policy('none') })).toThrow(/signature by witness "w1" .* is invalid/);
    expect(() => verifyTrustedCheckpoint(v.note, { logKey: v.logVkey })).not.toThrow();
  });
});
