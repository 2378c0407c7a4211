import { describe, it, expect } from 'vitest';
import {
  TlogError,
  MalformedError,
  TooLargeError,
  VerificationError,
  UnauthorizedError,
  NotFoundError,
  ConflictError,
  PushbackError,
  FatalError,
  StorageError,
} from '../../src/core/errors.js';

const cases: Array<[string, TlogError, string]> = [
  ['MalformedError', new MalformedError('m', { cause: 1 }), 'MALFORMED'],
  ['TooLargeError', new TooLargeError('m'), 'TOO_LARGE'],
  ['VerificationError', new VerificationError('m', { cause: 1 }), 'VERIFICATION_FAILED'],
  ['UnauthorizedError', new UnauthorizedError('m'), 'UNAUTHORIZED'],
  ['NotFoundError', new NotFoundError('m'), 'NOT_FOUND'],
  ['ConflictError', new ConflictError('m'), 'CONFLICT'],
  ['PushbackError', new PushbackError('m'), 'PUSHBACK'],
  ['FatalError', new FatalError('m', { cause: 1 }), 'FATAL'],
  ['StorageError', new StorageError('m', { cause: 1 }), 'STORAGE'],
];

describe('TlogError', () => {
  it('gives every subclass its code, its class name and the message', () => {
    for (const [name, e, code] of cases) {
      expect(e).toBeInstanceOf(TlogError);
      expect(e).toBeInstanceOf(Error);
      expect(e.code).toBe(code);
      expect(e.name).toBe(name);
      expect(e.message).toBe('m');
    }
  });
  it('keeps the cause where one is accepted', () => {
    expect(new MalformedError('m', { cause: 'why' }).cause).toBe('why');
    expect(new StorageError('m', { cause: 'why' }).cause).toBe('why');
  });
});

describe('PushbackError', () => {
  it('carries a retry delay that defaults to one second', () => {
    expect(new PushbackError('m').retryAfterSeconds).toBe(1);
    expect(new PushbackError('m', 30).retryAfterSeconds).toBe(30);
  });
});
