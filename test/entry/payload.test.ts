import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, fromHex, toHex, utf8 } from '../../src/core/encoding.js';
import {
  newPayloadSalt,
  PAYLOAD_COMMITMENT_CONTEXT,
  PAYLOAD_SALT_SIZE,
  payloadCommitment,
  verifyPayloadCommitment,
} from '../../src/entry/index.js';
import { numRuns, vectors } from './helpers.js';

describe('payloadCommitment', () => {
  it('is SHA-256("glasslog/payload/v1\\n" || salt || data)', () => {
    expect(PAYLOAD_COMMITMENT_CONTEXT).toBe('glasslog/payload/v1\n');
    expect(PAYLOAD_SALT_SIZE).toBe(32);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 200 }), (salt, data) => {
        expect(payloadCommitment(salt, data)).toEqual(sha256(concatBytes(utf8('glasslog/payload/v1\n'), salt, data)));
        expect(verifyPayloadCommitment(payloadCommitment(salt, data), salt, data)).toBe(true);
      }),
      { numRuns }
    );
  });

  it('matches the vector', () => {
    const p = vectors.payload;
    expect(toHex(payloadCommitment(fromHex(p.saltHex, 's'), fromHex(p.dataHex, 'd')))).toBe(p.commitmentHex);
  });

  it('depends on the salt: another salt, another commitment', () => {
    const data = utf8('alice@example.com');
    const a = payloadCommitment(new Uint8Array(32), data);
    const b = payloadCommitment(new Uint8Array(32).fill(1), data);
    expect(a).not.toEqual(b);
    expect(verifyPayloadCommitment(a, new Uint8Array(32).fill(1), data)).toBe(false);
    expect(verifyPayloadCommitment(a, new Uint8Array(32), utf8('bob@example.com'))).toBe(false);
  });

  it('refuses a salt that is not 32 bytes', () => {
    expect(() => payloadCommitment(new Uint8Array(31), new Uint8Array(0))).toThrow(RangeError);
    expect(() => payloadCommitment('s' as unknown as Uint8Array, new Uint8Array(0))).toThrow(TypeError);
    expect(verifyPayloadCommitment(new Uint8Array(32), new Uint8Array(31), new Uint8Array(0))).toBe(false);
    expect(verifyPayloadCommitment(new Uint8Array(31), new Uint8Array(32), new Uint8Array(0))).toBe(false);
  });

  it('newPayloadSalt returns fresh 32-byte salts', () => {
    const a = newPayloadSalt();
    expect(a).toHaveLength(32);
    expect(newPayloadSalt()).not.toEqual(a);
    expect(() => newPayloadSalt(() => new Uint8Array(16))).toThrow(RangeError);
  });
});
