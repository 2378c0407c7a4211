/**
 * The worker pool answers exactly what nodeEd25519.verify answers, item by item, for any
 * mix of good and bad signatures, keys and lengths, on the workers and on the caller.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { VerifyPool, wholeMessage, type VerifyItem } from '../../src/audit/verify-pool.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';

const pool = new VerifyPool(2, 4);
afterAll(() => pool.close());

const seeds = [1, 2, 3].map((k) => new Uint8Array(32).fill(k));
const pubs = seeds.map((s) => nodeEd25519.publicKey(s));

/** A signed item, then perhaps broken in one way. */
const itemArb: fc.Arbitrary<VerifyItem> = fc
  .tuple(fc.integer({ min: 0, max: 2 }), fc.uint8Array({ maxLength: 700 }), fc.integer({ min: 0, max: 6 }), fc.nat())
  .map(([k, message, how, at]) => {
    const signature = nodeEd25519.sign(seeds[k]!, message);
    let publicKey = pubs[k]!;
    let sig = signature;
    let msg = message;
    if (how === 1) sig = Uint8Array.from(signature, (b, i) => (i === at % 64 ? b ^ 1 : b));
    if (how === 2) publicKey = pubs[(k + 1) % 3]!;
    if (how === 3) msg = Uint8Array.from([...message, 0]);
    if (how === 4) sig = signature.subarray(0, 63);
    if (how === 5) publicKey = publicKey.subarray(0, 31);
    if (how === 6) {
      publicKey = new Uint8Array(32);
      sig = new Uint8Array(64);
    }
    // The message in parts, split anywhere: the same bytes.
    if (how === 7) return { publicKey, message: [msg.subarray(0, at % (msg.length + 1)), msg.subarray(at % (msg.length + 1))], signature: sig };
    return { publicKey, message: msg, signature: sig };
  });

describe('VerifyPool', () => {
  it('answers as nodeEd25519.verify for every item of a batch', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(itemArb, { maxLength: 60 }), async (items) => {
        const got = await pool.verify(items);
        expect(got).toEqual(items.map((x) => nodeEd25519.verify(x.publicKey, wholeMessage(x.message), x.signature)));
      }),
      { numRuns: 60 }
    );
  });

  it('checks a large batch split across the workers, keeping the order', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => {
      const k = i % 3;
      const message = new TextEncoder().encode(`entry ${i}`);
      const signature = nodeEd25519.sign(seeds[k]!, message);
      return { publicKey: pubs[k]!, message, signature: i % 97 === 0 ? new Uint8Array(64) : signature };
    });
    const got = await pool.verify(items);
    expect(got.filter((x) => !x).length).toBe(Math.ceil(1000 / 97));
    got.forEach((ok, i) => expect(ok).toBe(i % 97 !== 0));
  });

  it('refuses a small-order key even in an array that held a good key when it was first checked', async () => {
    // The all-zero key with the all-zero signature: OpenSSL accepts it, nodeEd25519 does not.
    const key = new Uint8Array(pubs[0]!);
    const zero = new Uint8Array(64);
    const signed = (publicKey: Uint8Array) => Array.from({ length: 8 }, () => ({ publicKey, message: new Uint8Array(0), signature: zero }));
    expect(await pool.verify(signed(key))).toEqual(Array(8).fill(false));
    key.fill(0);
    expect(nodeEd25519.verify(key, new Uint8Array(0), zero)).toBe(false);
    expect(await pool.verify(signed(key))).toEqual(Array(8).fill(false));
    // And a good key again in the same array verifies its own signature.
    key.set(pubs[1]!);
    const msg = new TextEncoder().encode('again');
    expect(await pool.verify(Array.from({ length: 8 }, () => ({ publicKey: key, message: msg, signature: nodeEd25519.sign(seeds[1]!, msg) })))).toEqual(Array(8).fill(true));
  });
});
