/**
 * Errors raised on bad or hostile data. Programmer misuse (a wrong type, a negative size
 * passed by our own code) throws TypeError or RangeError instead.
 *
 * Subclasses are chosen by how the caller must react; `http/errors.ts` holds the one table
 * that maps each to an HTTP status.
 */
export type TlogErrorCode =
  | 'MALFORMED'
  | 'TOO_LARGE'
  | 'VERIFICATION_FAILED'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'PUSHBACK'
  | 'RATE_LIMITED'
  | 'GONE'
  | 'FATAL'
  | 'STORAGE';

export class TlogError extends Error {
  readonly code: TlogErrorCode;
  constructor(code: TlogErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Input that does not parse, or is not in canonical form. */
export class MalformedError extends TlogError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MALFORMED', message, options);
  }
}

/** Input larger than the limit that applies to it. */
export class TooLargeError extends TlogError {
  constructor(message: string) {
    super('TOO_LARGE', message);
  }
}

/** A signature, proof or hash that does not check out. */
export class VerificationError extends TlogError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VERIFICATION_FAILED', message, options);
  }
}

/** A request without valid credentials. */
export class UnauthorizedError extends TlogError {
  constructor(message: string) {
    super('UNAUTHORIZED', message);
  }
}

/** Valid credentials or signatures, but not ones that may do this. */
export class ForbiddenError extends TlogError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

/** Something that does not exist (yet): an index beyond the tree, a tile not published. */
export class NotFoundError extends TlogError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** The request conflicts with the stored state. */
export class ConflictError extends TlogError {
  constructor(message: string) {
    super('CONFLICT', message);
  }
}

/**
 * The caller's idea of a size is not the stored one (tlog-witness: the `old` size of an
 * add-checkpoint request is not the size the witness last cosigned). Carries the stored
 * size, which the answer must report.
 */
export class SizeConflictError extends ConflictError {
  constructor(
    message: string,
    readonly treeSize: number
  ) {
    super(message);
  }
}

/** Temporarily overloaded; retry after `retryAfterSeconds`. */
export class PushbackError extends TlogError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1) {
    super('PUSHBACK', message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** A caller exceeded its rate limit; retry after `retryAfterSeconds`. */
export class RateLimitedError extends TlogError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1) {
    super('RATE_LIMITED', message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Something that existed and was deliberately removed (an erased payload). */
export class GoneError extends TlogError {
  constructor(message: string) {
    super('GONE', message);
  }
}

/** The process cannot safely go on (for example the stored tree changed under it). */
export class FatalError extends TlogError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FATAL', message, options);
  }
}

/** A storage driver failure; `cause` carries the driver's error (and its SQLSTATE). */
export class StorageError extends TlogError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORAGE', message, options);
  }
}
