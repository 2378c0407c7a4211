/**
 * @module
 * Canonical CBOR for agent entries: RFC 8949 §4.2.1 "core deterministic encoding" over a
 * small data model (spec/agent-entries.md §2).
 *
 * The data model: unsigned integers up to 2^53 − 1, UTF-8 text strings, byte strings,
 * arrays, maps with text keys, and `true`/`false`. Nothing else: no floats, negative
 * integers, null, undefined, tags, other simple values or indefinite lengths.
 *
 * Encoding goes through cbor-x, configured for plain CBOR (no records, no tagged byte
 * strings, no tag-259 maps, preferred-size map heads). Map keys are sorted here, before
 * cbor-x sees them, since cbor-x writes keys in the order it is given.
 *
 * Decoding is our own strict parser: it refuses anything outside the data model or not in
 * deterministic form (non-shortest heads, indefinite lengths, unsorted or duplicate keys,
 * trailing bytes), and then re-encodes the value and requires the very same bytes, so one
 * value has exactly one accepted encoding.
 */
import { Encoder } from 'cbor-x';
import { MalformedError, TooLargeError } from '../core/errors.js';
import { fromUtf8, utf8 } from '../core/encoding.js';

/** A value of the canonical CBOR data model (maps are plain objects with text keys). */
export type CborValue =
  | number
  | string
  | boolean
  | Uint8Array
  | CborValue[]
  | { readonly [key: string]: CborValue };

/** The largest input {@link decodeCanonical} reads, and output {@link encodeCanonical} makes: 64 KiB. */
export const MAX_CBOR_SIZE = 65536;

/** The deepest nesting of arrays and maps accepted (the root container counts as 1). */
export const MAX_CBOR_DEPTH = 16;

/** 2^53 − 1, the largest unsigned integer in the data model (`Number.MAX_SAFE_INTEGER`). */
const MAX_UINT = Number.MAX_SAFE_INTEGER;
const TWO_32 = 0x1_0000_0000;

// A lone surrogate has no UTF-8 encoding; TextEncoder would silently write U+FFFD.
const LONE_SURROGATE = /\p{Surrogate}/u;

// cbor-x: plain RFC 8949 CBOR. `useRecords: false` turns off its record extension (tag
// 0xdfff…); `tagUint8Array: false` writes a Uint8Array as a bare byte string, not tag 64;
// `variableMapSize: true` gives objects a preferred-size head instead of a fixed map16;
// `useTag259ForMaps: false` writes a Map as a bare map; `bundleStrings`, `pack`,
// `structuredClone` and `useSelfDescribedHeader` stay off. The values it sees are already
// checked and normalised by `prepare` below: integers ≥ 2^32 arrive as bigint (written as
// a 0x1b head; as a number cbor-x would write a float64), maps arrive as Maps in canonical
// key order. `test/entry/cbor.test.ts` pins its output byte for byte.
const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  tagUint8Array: false,
  bundleStrings: false,
  pack: false,
  structuredClone: false,
  useSelfDescribedHeader: false,
  useFloat32: 0,
  useTag259ForMaps: false,
} as ConstructorParameters<typeof Encoder>[0]);

/**
 * Orders two text map keys as RFC 8949 §4.2.1 does: by the bytewise order of their
 * encodings. A text string's head grows with its length, so this is shorter first, then
 * bytewise; it gives the same order whether `a` and `b` are the keys' UTF-8 bytes or their
 * whole encodings (head included).
 */
export function compareCborKeys(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Checks `v` against the data model and turns it into what cbor-x must be given. */
function prepare(v: unknown, path: string, depth: number): unknown {
  switch (typeof v) {
    case 'number':
      if (!Number.isInteger(v)) throw new MalformedError(`${path}: ${v} is not an integer (floats are not allowed)`);
      if (v < 0) throw new MalformedError(`${path}: negative integers are not allowed`);
      if (v > MAX_UINT) throw new MalformedError(`${path}: ${v} is larger than 2^53 - 1`);
      // 0 for -0, so the output does not depend on the sign of zero.
      return v >= TWO_32 ? BigInt(v) : v + 0;
    case 'string':
      if (LONE_SURROGATE.test(v)) throw new MalformedError(`${path}: text contains a lone surrogate`);
      return v;
    case 'boolean':
      return v;
    case 'object': {
      if (v === null) throw new MalformedError(`${path}: null is not allowed`);
      if (v instanceof Uint8Array) return v;
      if (depth >= MAX_CBOR_DEPTH) throw new MalformedError(`${path}: nested more than ${MAX_CBOR_DEPTH} levels`);
      if (Array.isArray(v)) return v.map((x, i) => prepare(x, `${path}[${i}]`, depth + 1));
      if (!isPlainObject(v)) throw new MalformedError(`${path}: unsupported value type`);
      const keys = Object.keys(v).map((k) => {
        if (LONE_SURROGATE.test(k)) throw new MalformedError(`${path}: map key contains a lone surrogate`);
        return { k, b: utf8(k) };
      });
      keys.sort((x, y) => compareCborKeys(x.b, y.b));
      const m = new Map<string, unknown>();
      for (const { k } of keys) {
        m.set(k, prepare((v as Record<string, unknown>)[k], `${path}.${k}`, depth + 1));
      }
      return m;
    }
    case 'undefined':
      throw new MalformedError(`${path}: undefined is not allowed`);
    default:
      throw new MalformedError(`${path}: unsupported value type ${typeof v}`);
  }
}

/**
 * Encodes `v` in canonical CBOR (RFC 8949 §4.2.1 core deterministic encoding): shortest
 * heads, definite lengths, map keys sorted by their encoded bytes. Equal values give equal
 * bytes whatever the key order of the JavaScript objects.
 *
 * @example
 * ```ts
 * toHex(encodeCanonical({ aa: 3, b: 2, a: 1 })); // 'a361610161620262616103': a, b, aa
 * ```
 * @throws {MalformedError} If `v` holds anything outside the data model (a float, a
 *   negative or unsafe integer, null, undefined, a lone surrogate, a class instance) or is
 *   nested deeper than {@link MAX_CBOR_DEPTH}.
 * @throws {TooLargeError} If the encoding exceeds {@link MAX_CBOR_SIZE} bytes.
 */
export function encodeCanonical(v: CborValue): Uint8Array {
  const prepared = prepare(v, 'cbor', 0);
  // cbor-x returns a view of its shared scratch buffer (a Buffer on Node): copy it out.
  const out = new Uint8Array(encoder.encode(prepared));
  if (out.length > MAX_CBOR_SIZE) {
    throw new TooLargeError(`cbor: encoding is ${out.length} bytes, more than ${MAX_CBOR_SIZE}`);
  }
  return out;
}

/**
 * The text an agent entry repeats in every entry (field names, entry types, event kinds),
 * by UTF-8 length: the parser hands out these very strings instead of building new ones,
 * which spares an allocation and, for map keys, the hashing of a fresh property name.
 * Any other text is decoded as usual; the result is the same string either way.
 */
const INTERNED: ReadonlyArray<ReadonlyArray<readonly [Uint8Array, string]> | undefined> = (() => {
  const words = [
    'v', 'run', 'seq', 'kind', 'prev', 'time', 'type', 'agent', 'model', 'attrs', 'parent',
    'payloads', 'key', 'reason', 'index', 'name', 'provider', 'version', 'entry', 'sig',
    'event', 'run.close', 'agent.register', 'agent.rotate', 'agent.revoke', 'payload.erase',
    'decision', 'prompt', 'model_call', 'tool_call', 'observation', 'policy_check', 'outcome',
  ];
  const out: Array<Array<readonly [Uint8Array, string]>> = [];
  for (const w of words) (out[w.length] ??= []).push([utf8(w), w]);
  return out;
})();

/** A strict single-pass parser over one input. */
class Parser {
  pos = 0;
  constructor(
    private readonly b: Uint8Array,
    private readonly what: string
  ) {}

  fail(msg: string): never {
    throw new MalformedError(`${this.what}: ${msg} at byte ${this.pos}`);
  }

  need(n: number): void {
    if (n > this.b.length - this.pos) this.fail('truncated');
  }

  byte(): number {
    this.need(1);
    return this.b[this.pos++]!;
  }

  /**
   * Reads the argument of the head starting at `start` with additional information `ai`,
   * requiring the shortest form (RFC 8949 §4.2.1 "preferred serialization").
   */
  argument(ai: number, start: number): number {
    if (ai < 24) return ai;
    let n: number;
    let min: number;
    switch (ai) {
      case 24:
        n = this.byte();
        min = 24;
        break;
      case 25:
        this.need(2);
        n = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
        this.pos += 2;
        min = 0x100;
        break;
      case 26:
        this.need(4);
        n = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 4).getUint32(0, false);
        this.pos += 4;
        min = 0x1_0000;
        break;
      case 27: {
        this.need(8);
        const big = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 8).getBigUint64(0, false);
        this.pos += 8;
        if (big > BigInt(MAX_UINT)) {
          this.pos = start;
          this.fail('integer or length larger than 2^53 - 1');
        }
        n = Number(big);
        min = TWO_32;
        break;
      }
      case 31:
        this.pos = start;
        return this.fail('indefinite length is not allowed');
      default:
        this.pos = start;
        return this.fail(`reserved additional information ${ai}`);
    }
    if (n < min) {
      this.pos = start;
      this.fail('integer or length not in its shortest form');
    }
    return n;
  }

  /** UTF-8 text; short ASCII (map keys, ids, kinds: most text here) without a decoder call. */
  private text(from: number, to: number, start: number): string {
    const known = INTERNED[to - from];
    if (known !== undefined) {
      const b = this.b;
      next: for (const [bytes, str] of known) {
        for (let i = 0; i < bytes.length; i++) if (b[from + i] !== bytes[i]) continue next;
        return str;
      }
    }
    if (to - from <= 64) {
      let s = '';
      for (let i = from; i < to; i++) {
        const c = this.b[i]!;
        if (c >= 0x80) return fromUtf8(this.b.subarray(from, to), `${this.what}: text string at byte ${start}`);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return fromUtf8(this.b.subarray(from, to), `${this.what}: text string at byte ${start}`);
  }

  /** {@link compareCborKeys} of two encoded keys given as ranges of the input. */
  private compareRanges(s1: number, e1: number, s2: number, e2: number): number {
    if (e1 - s1 !== e2 - s2) return e1 - s1 - (e2 - s2);
    const b = this.b;
    for (let i = 0; i < e1 - s1; i++) {
      const d = b[s1 + i]! - b[s2 + i]!;
      if (d !== 0) return d;
    }
    return 0;
  }

  item(depth: number): CborValue {
    const start = this.pos;
    const ib = this.byte();
    const major = ib >> 5;
    const ai = ib & 31;
    switch (major) {
      case 0:
        return this.argument(ai, start);
      case 1:
        this.pos = start;
        return this.fail('negative integers are not allowed');
      case 2: {
        const len = this.argument(ai, start);
        this.need(len);
        // Copy, so the value does not alias (or keep alive) the input buffer.
        const out = this.b.slice(this.pos, this.pos + len);
        this.pos += len;
        return out;
      }
      case 3: {
        const len = this.argument(ai, start);
        this.need(len);
        const s = this.text(this.pos, this.pos + len, start);
        this.pos += len;
        return s;
      }
      case 4: {
        if (depth >= MAX_CBOR_DEPTH) {
          this.pos = start;
          this.fail(`nested more than ${MAX_CBOR_DEPTH} levels`);
        }
        const n = this.argument(ai, start);
        const out: CborValue[] = [];
        for (let i = 0; i < n; i++) out.push(this.item(depth + 1));
        return out;
      }
      case 5: {
        if (depth >= MAX_CBOR_DEPTH) {
          this.pos = start;
          this.fail(`nested more than ${MAX_CBOR_DEPTH} levels`);
        }
        const n = this.argument(ai, start);
        // A null prototype: a key such as "toString" or "__proto__" is only ever own data,
        // and reading an absent key gives undefined, never an Object.prototype member.
        const out = Object.create(null) as Record<string, CborValue>;
        // The previous key's encoding, as a range of the input (no view per key).
        let prevStart = -1;
        let prevEnd = -1;
        for (let i = 0; i < n; i++) {
          const keyStart = this.pos;
          if (this.pos < this.b.length && this.b[this.pos]! >> 5 !== 3) this.fail('map key is not a text string');
          const key = this.item(depth + 1) as string;
          if (prevStart >= 0) {
            const c = this.compareRanges(prevStart, prevEnd, keyStart, this.pos);
            if (c === 0) {
              this.pos = keyStart;
              this.fail(`duplicate map key ${JSON.stringify(key.slice(0, 40))}`);
            }
            if (c > 0) {
              this.pos = keyStart;
              this.fail('map keys not in canonical order');
            }
          }
          prevStart = keyStart;
          prevEnd = this.pos;
          out[key] = this.item(depth + 1);
        }
        return out;
      }
      case 6:
        this.pos = start;
        return this.fail('tags are not allowed');
      default: // major 7
        this.pos = start;
        switch (ib) {
          case 0xf4:
            this.pos++;
            return false;
          case 0xf5:
            this.pos++;
            return true;
          case 0xf6:
            return this.fail('null is not allowed');
          case 0xf7:
            return this.fail('undefined is not allowed');
          case 0xf9:
          case 0xfa:
          case 0xfb:
            return this.fail('floating-point numbers are not allowed');
          case 0xff:
            return this.fail('unexpected break code');
          default:
            return this.fail('simple values other than true and false are not allowed');
        }
    }
  }
}

/**
 * Decodes exactly one canonical CBOR data item filling all of `bytes` (at most `maxSize`
 * bytes: an entry's limit by default; a request carrying many entries passes its own).
 *
 * Refuses, with a message starting `${what}: `: input over {@link MAX_CBOR_SIZE} bytes
 * (TooLargeError), empty or truncated input, trailing bytes, indefinite lengths,
 * non-shortest integer or length heads, floats, negative integers, integers over 2^53 − 1,
 * tags, null, undefined and other simple values, invalid UTF-8, non-text map keys,
 * duplicate or unsorted map keys, and nesting deeper than {@link MAX_CBOR_DEPTH}: whatever
 * it accepts is its own canonical encoding.
 *
 * Maps decode to objects with a null prototype (every key an own property, "__proto__" and
 * "toString" included, and nothing inherited), byte strings to fresh Uint8Arrays.
 *
 * @throws {MalformedError}
 * @throws {TooLargeError}
 */
export function decodeCanonical(bytes: Uint8Array, what: string, maxSize = MAX_CBOR_SIZE): CborValue {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${what}: expected a Uint8Array`);
  // attacker-controlled: bytes.
  if (bytes.length > maxSize) {
    throw new TooLargeError(`${what}: ${bytes.length} bytes, more than ${maxSize}`);
  }
  if (bytes.length === 0) throw new MalformedError(`${what}: empty`);
  const p = new Parser(bytes, what);
  const v = p.item(0);
  if (p.pos !== bytes.length) p.fail(`${bytes.length - p.pos} trailing bytes`);
  // The parser enforces every rule of RFC 8949 §4.2.1 as it reads (shortest heads, definite
  // lengths, keys in order and unique, the data-model subset), so the input is exactly
  // encodeCanonical(v) without re-encoding it: the property tests hold the two to that, and
  // re-encoding here cost a fifth of the server's CPU per signed entry.
  return v;
}
