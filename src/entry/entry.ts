/**
 * @module
 * Agent audit entries (spec/agent-entries.md §3): the six entry types, their schema, their
 * canonical CBOR encoding and their JSON form.
 *
 * One validator serves every way in: {@link encodeEntry} (objects built in code),
 * {@link decodeEntry} (bytes from a leaf) and {@link entryFromJson} (API bodies). Each
 * refuses unknown fields and any value outside the field's rule, with a MalformedError whose
 * message starts with the field's path (`entry.attrs.model: …`).
 */
import { MalformedError, TooLargeError } from '../core/errors.js';
import { decodeBase64, encodeBase64, quote, utf8 } from '../core/encoding.js';
import { HASH_SIZE } from '../core/hash.js';
import { isWeakPublicKey } from '../note/ed25519.js';
import { ALG_ED25519, parseVerifierKey } from '../note/keys.js';
import { decodeCanonical, encodeCanonical, type CborValue } from './cbor.js';

/** The entry format version, the value of every entry's `v` field. */
export const ENTRY_VERSION = 1;

/** The largest canonical entry encoding: 16 KiB. */
export const MAX_AGENT_ENTRY_SIZE = 16384;
/** At most this many `attrs` per event. */
export const MAX_ATTRS = 32;
/** At most this many UTF-8 bytes in a text `attrs` value. */
export const MAX_ATTR_TEXT_SIZE = 256;
/** At most this many `payloads` per event. */
export const MAX_PAYLOADS = 16;
/** At most this many UTF-8 bytes in a `reason`. */
export const MAX_REASON_SIZE = 1024;
/** At most this many UTF-8 bytes in each `model` field (provider, name, version). */
export const MAX_MODEL_TEXT_SIZE = 256;

/** The built-in event kinds; custom kinds are spelled `x-<name>`. */
export const EVENT_KINDS: readonly string[] = Object.freeze([
  'decision',
  'prompt',
  'model_call',
  'tool_call',
  'observation',
  'policy_check',
  'outcome',
]);

/** An event kind: one of {@link EVENT_KINDS}, or `x-<name>` with name `[a-z0-9_.-]{1,64}`. */
export type EventKind = string;

/** The six entry types. */
export const ENTRY_TYPES = Object.freeze([
  'event',
  'run.close',
  'agent.register',
  'agent.rotate',
  'agent.revoke',
  'payload.erase',
] as const);

export interface ModelInfo {
  readonly provider: string;
  readonly name: string;
  readonly version?: string;
}

/** One step of an agent run, signed by the agent's key. */
export interface EventEntry {
  readonly type: 'event';
  readonly agent: string;
  readonly run: string;
  /** 0-based position in the run. */
  readonly seq: number;
  /** The leaf hash of the run's entry at seq − 1; present iff seq > 0. */
  readonly prev?: Uint8Array;
  /** The seq of this event's causal parent, < seq. */
  readonly parent?: number;
  readonly kind: EventKind;
  /** Client time, milliseconds since the Unix epoch. */
  readonly time: number;
  readonly model?: ModelInfo;
  /** Small public fields. Entries this module returns hold it in a null-prototype object. */
  readonly attrs?: Readonly<Record<string, string | number | boolean>>;
  /**
   * Payload commitments (see payload.ts), 32 bytes each. Entries this module returns hold
   * them in a null-prototype object, so `payloads[name]` is undefined for any name not
   * committed to, "toString" and "constructor" included.
   */
  readonly payloads?: Readonly<Record<string, Uint8Array>>;
}

/** The end of a run, signed by the agent's key: `seq` entries, the last with leaf hash `prev`. */
export interface RunCloseEntry {
  readonly type: 'run.close';
  readonly agent: string;
  readonly run: string;
  /** The number of entries the run had. */
  readonly seq: number;
  /** The leaf hash of the entry at seq − 1; present iff seq > 0. */
  readonly prev?: Uint8Array;
  readonly time: number;
}

/** A new agent and its first key, signed by the log's key. */
export interface AgentRegisterEntry {
  readonly type: 'agent.register';
  readonly agent: string;
  /** Signed-note verifier key, type 0x01, named after the agent. */
  readonly key: string;
  readonly time: number;
}

/** A new key for an agent, ending the current one; signed by the log's key. */
export interface AgentRotateEntry {
  readonly type: 'agent.rotate';
  readonly agent: string;
  readonly key: string;
  readonly time: number;
}

/** The end of an agent's current key, signed by the log's key. */
export interface AgentRevokeEntry {
  readonly type: 'agent.revoke';
  readonly agent: string;
  readonly key: string;
  readonly reason: string;
  readonly time: number;
}

/** Notice that a payload of the entry at `index` was erased; signed by the log's key. */
export interface PayloadEraseEntry {
  readonly type: 'payload.erase';
  readonly index: number;
  readonly name: string;
  readonly reason: string;
  readonly time: number;
}

export type RunEntry = EventEntry | RunCloseEntry;
export type Entry = RunEntry | AgentRegisterEntry | AgentRotateEntry | AgentRevokeEntry | PayloadEraseEntry;
export type EntryType = Entry['type'];

/** Reports whether `e` belongs to an agent run (an event or a run.close). */
export function isRunEntry(e: Entry): e is RunEntry {
  return e.type === 'event' || e.type === 'run.close';
}

/** Reports whether `e` is a registry entry (agent.register, agent.rotate, agent.revoke). */
export function isRegistryEntry(e: Entry): e is AgentRegisterEntry | AgentRotateEntry | AgentRevokeEntry {
  return e.type === 'agent.register' || e.type === 'agent.rotate' || e.type === 'agent.revoke';
}

const ID = /^[A-Za-z0-9._:@-]{1,128}$/;
const FIELD_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const CUSTOM_KIND = /^x-[a-z0-9_.-]{1,64}$/;
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Reports whether `s` is a valid agent or run id: 1–128 of `[A-Za-z0-9._:@-]`. */
export function isValidId(s: unknown): s is string {
  return typeof s === 'string' && ID.test(s);
}

/** Reports whether `s` is a valid attrs key or payload name: 1–64 of `[A-Za-z0-9_.-]`. */
export function isValidFieldName(s: unknown): s is string {
  return typeof s === 'string' && FIELD_NAME.test(s);
}

/** Reports whether `s` is a built-in event kind or a custom `x-<name>` kind. */
export function isValidEventKind(s: unknown): s is EventKind {
  return typeof s === 'string' && (EVENT_KINDS.includes(s) || CUSTOM_KIND.test(s));
}

// ---------------------------------------------------------------------------------------
// Validation, shared by the three ways in.

/** Where values come from: objects and CBOR carry bytes as Uint8Array, JSON as base64. */
type Mode = 'native' | 'json';

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function bad(path: string, msg: string): MalformedError {
  return new MalformedError(`${path}: ${msg}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  return `a ${typeof v}`;
}

/** Own keys of `v` whose value is not undefined (undefined counts as absent). */
function presentKeys(v: Record<string, unknown>): string[] {
  return Object.keys(v).filter((k) => v[k] !== undefined);
}

/** Checks `v` is a map holding only `allowed` fields, and returns a getter for them. */
function record(v: unknown, path: string, allowed: ReadonlySet<string>): (k: string) => unknown {
  if (!isRecord(v)) throw bad(path, `expected a map, got ${typeName(v)}`);
  for (const k of presentKeys(v)) {
    if (!allowed.has(k)) throw bad(`${path}.${k}`, 'unknown field');
  }
  return (k) => (hasOwn(v, k) ? v[k] : undefined);
}

function required(v: unknown, path: string): unknown {
  if (v === undefined) throw bad(path, 'missing');
  return v;
}

function uint(v: unknown, path: string): number {
  if (typeof v !== 'number') throw bad(path, `expected an unsigned integer, got ${typeName(v)}`);
  if (!Number.isInteger(v)) throw bad(path, `${v} is not an integer`);
  if (v < 0) throw bad(path, `${v} is negative`);
  if (v > Number.MAX_SAFE_INTEGER) throw bad(path, `${v} is larger than 2^53 - 1`);
  return v + 0; // -0 → 0
}

function text(v: unknown, path: string, minBytes: number, maxBytes: number): string {
  if (typeof v !== 'string') throw bad(path, `expected text, got ${typeName(v)}`);
  if (LONE_SURROGATE.test(v)) throw bad(path, 'text contains a lone surrogate');
  const n = utf8Length(v);
  if (n < minBytes) throw bad(path, minBytes === 1 ? 'must not be empty' : `shorter than ${minBytes} bytes`);
  if (n > maxBytes) throw bad(path, `${n} bytes, more than ${maxBytes}`);
  return v;
}

/** The UTF-8 length of `s`, which has no lone surrogate, without encoding it. */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3; // a surrogate pair is 4
  }
  return n;
}

function id(v: unknown, path: string): string {
  if (typeof v !== 'string') throw bad(path, `expected text, got ${typeName(v)}`);
  if (!ID.test(v)) throw bad(path, `${quote(v)} is not 1 to 128 characters of [A-Za-z0-9._:@-]`);
  return v;
}

function fieldName(v: string, path: string): string {
  if (!FIELD_NAME.test(v)) throw bad(path, `${quote(v)} is not 1 to 64 characters of [A-Za-z0-9_.-]`);
  return v;
}

function hash(v: unknown, path: string, mode: Mode): Uint8Array {
  let b: Uint8Array;
  if (mode === 'json') {
    if (typeof v !== 'string') throw bad(path, `expected base64 text, got ${typeName(v)}`);
    b = decodeBase64(v, path);
  } else {
    if (!(v instanceof Uint8Array)) throw bad(path, `expected bytes, got ${typeName(v)}`);
    b = new Uint8Array(v);
  }
  if (b.length !== HASH_SIZE) throw bad(path, `${b.length} bytes, want ${HASH_SIZE}`);
  return b;
}

function kind(v: unknown, path: string): EventKind {
  if (typeof v !== 'string') throw bad(path, `expected text, got ${typeName(v)}`);
  if (!isValidEventKind(v)) {
    throw bad(path, `${quote(v)} is not one of ${EVENT_KINDS.join(', ')} or x-<[a-z0-9_.-]{1,64}>`);
  }
  return v;
}

/** The agent's verifier key: a canonical type-0x01 vkey, usable, named after the agent. */
function agentKey(v: unknown, path: string, agent: string): string {
  if (typeof v !== 'string') throw bad(path, `expected a verifier key, got ${typeName(v)}`);
  let k;
  try {
    k = parseVerifierKey(v);
  } catch (cause) {
    throw new MalformedError(`${path}: ${(cause as Error).message}`, { cause });
  }
  if (k.alg !== ALG_ED25519) throw bad(path, 'not an Ed25519 (type 0x01) key');
  if (k.name !== agent) throw bad(path, `key name ${quote(k.name)} is not the agent id ${quote(agent)}`);
  if (isWeakPublicKey(k.publicKey)) throw bad(path, 'not a usable Ed25519 public key');
  return v;
}

/** prev is present iff seq > 0. */
function prevField(v: unknown, seq: number, path: string, mode: Mode): Uint8Array | undefined {
  if (seq === 0) {
    if (v !== undefined) throw bad(path, 'must be absent when seq is 0');
    return undefined;
  }
  if (v === undefined) throw bad(path, 'missing (required when seq > 0)');
  return hash(v, path, mode);
}

const MODEL_FIELDS: ReadonlySet<string> = new Set(['provider', 'name', 'version']);

function model(v: unknown, path: string): ModelInfo {
  const get = record(v, path, MODEL_FIELDS);
  const provider = text(required(get('provider'), `${path}.provider`), `${path}.provider`, 1, MAX_MODEL_TEXT_SIZE);
  const name = text(required(get('name'), `${path}.name`), `${path}.name`, 1, MAX_MODEL_TEXT_SIZE);
  const version = get('version');
  if (version === undefined) return { provider, name };
  return { provider, name, version: text(version, `${path}.version`, 1, MAX_MODEL_TEXT_SIZE) };
}

function attrs(v: unknown, path: string): Record<string, string | number | boolean> {
  if (!isRecord(v)) throw bad(path, `expected a map, got ${typeName(v)}`);
  const keys = presentKeys(v);
  if (keys.length > MAX_ATTRS) throw bad(path, `${keys.length} attributes, more than ${MAX_ATTRS}`);
  const out: [string, string | number | boolean][] = [];
  for (const k of keys) {
    const p = `${path}.${k}`;
    fieldName(k, p);
    const x = v[k];
    if (typeof x === 'string') out.push([k, text(x, p, 0, MAX_ATTR_TEXT_SIZE)]);
    else if (typeof x === 'boolean') out.push([k, x]);
    else if (typeof x === 'number') out.push([k, uint(x, p)]);
    else throw bad(p, `expected text, an unsigned integer or a boolean, got ${typeName(x)}`);
  }
  return dict(out);
}

function payloads(v: unknown, path: string, mode: Mode): Record<string, Uint8Array> {
  if (!isRecord(v)) throw bad(path, `expected a map, got ${typeName(v)}`);
  const keys = presentKeys(v);
  if (keys.length > MAX_PAYLOADS) throw bad(path, `${keys.length} payloads, more than ${MAX_PAYLOADS}`);
  return dict(keys.map((k) => [fieldName(k, `${path}.${k}`), hash(v[k], `${path}.${k}`, mode)]));
}

/**
 * A record with a null prototype. attrs keys and payload names may be "toString",
 * "constructor" or "__proto__"; with no prototype such a key is only ever own data, and
 * looking up an absent name gives undefined rather than an Object.prototype member.
 */
function dict<T>(entries: Iterable<readonly [string, T]>): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  for (const [k, v] of entries) out[k] = v;
  return out;
}

const FIELDS: Record<EntryType, readonly string[]> = {
  event: ['agent', 'run', 'seq', 'prev', 'parent', 'kind', 'time', 'model', 'attrs', 'payloads'],
  'run.close': ['agent', 'run', 'seq', 'prev', 'time'],
  'agent.register': ['agent', 'key', 'time'],
  'agent.rotate': ['agent', 'key', 'time'],
  'agent.revoke': ['agent', 'key', 'reason', 'time'],
  'payload.erase': ['index', 'name', 'reason', 'time'],
};

/** Every field an entry of each type may hold, `v` and `type` included (a set: looked up per field). */
const ALLOWED = Object.fromEntries(Object.entries(FIELDS).map(([t, f]) => [t, new Set(['v', 'type', ...f])])) as unknown as Record<EntryType, ReadonlySet<string>>;

/**
 * Validates an entry in any of its forms and returns a fresh, normalised Entry (optional
 * fields omitted when absent, byte fields copied).
 *
 * @param requireV Whether `v` must be present (the CBOR form); when absent elsewhere it
 *   means version 1.
 */
function parseEntry(v: unknown, mode: Mode, requireV: boolean): Entry {
  const P = 'entry';
  if (!isRecord(v)) throw bad(P, `expected a map, got ${typeName(v)}`);
  const type = hasOwn(v, 'type') ? v['type'] : undefined;
  if (type === undefined) throw bad(`${P}.type`, 'missing');
  if (typeof type !== 'string') throw bad(`${P}.type`, `expected text, got ${typeName(type)}`);
  if (!(ENTRY_TYPES as readonly string[]).includes(type)) {
    throw bad(`${P}.type`, `unknown entry type ${quote(type)}`);
  }
  const t = type as EntryType;
  const get = record(v, P, ALLOWED[t]);
  const version = get('v');
  if (version === undefined) {
    if (requireV) throw bad(`${P}.v`, 'missing');
  } else if (uint(version, `${P}.v`) !== ENTRY_VERSION) {
    throw bad(`${P}.v`, `unsupported version ${String(version)}`);
  }
  const req = (k: string) => required(get(k), `${P}.${k}`);
  switch (t) {
    case 'event': {
      const agent = id(req('agent'), `${P}.agent`);
      const run = id(req('run'), `${P}.run`);
      const seq = uint(req('seq'), `${P}.seq`);
      const prev = prevField(get('prev'), seq, `${P}.prev`, mode);
      const parentV = get('parent');
      let parent: number | undefined;
      if (parentV !== undefined) {
        parent = uint(parentV, `${P}.parent`);
        if (parent >= seq) throw bad(`${P}.parent`, `${parent} is not less than seq ${seq}`);
      }
      const k = kind(req('kind'), `${P}.kind`);
      const time = uint(req('time'), `${P}.time`);
      const m = get('model');
      const a = get('attrs');
      const pl = get('payloads');
      return {
        type: 'event',
        agent,
        run,
        seq,
        ...(prev !== undefined && { prev }),
        ...(parent !== undefined && { parent }),
        kind: k,
        time,
        ...(m !== undefined && { model: model(m, `${P}.model`) }),
        ...(a !== undefined && { attrs: attrs(a, `${P}.attrs`) }),
        ...(pl !== undefined && { payloads: payloads(pl, `${P}.payloads`, mode) }),
      };
    }
    case 'run.close': {
      const agent = id(req('agent'), `${P}.agent`);
      const run = id(req('run'), `${P}.run`);
      const seq = uint(req('seq'), `${P}.seq`);
      const prev = prevField(get('prev'), seq, `${P}.prev`, mode);
      const time = uint(req('time'), `${P}.time`);
      return { type: 'run.close', agent, run, seq, ...(prev !== undefined && { prev }), time };
    }
    case 'agent.register':
    case 'agent.rotate': {
      const agent = id(req('agent'), `${P}.agent`);
      const key = agentKey(req('key'), `${P}.key`, agent);
      const time = uint(req('time'), `${P}.time`);
      return { type: t, agent, key, time };
    }
    case 'agent.revoke': {
      const agent = id(req('agent'), `${P}.agent`);
      const key = agentKey(req('key'), `${P}.key`, agent);
      const reason = text(req('reason'), `${P}.reason`, 0, MAX_REASON_SIZE);
      const time = uint(req('time'), `${P}.time`);
      return { type: 'agent.revoke', agent, key, reason, time };
    }
    case 'payload.erase': {
      const index = uint(req('index'), `${P}.index`);
      const nameV = req('name');
      if (typeof nameV !== 'string') throw bad(`${P}.name`, `expected text, got ${typeName(nameV)}`);
      const name = fieldName(nameV, `${P}.name`);
      const reason = text(req('reason'), `${P}.reason`, 0, MAX_REASON_SIZE);
      const time = uint(req('time'), `${P}.time`);
      return { type: 'payload.erase', index, name, reason, time };
    }
  }
}

/** The CBOR data-model value of a validated entry, `v` included. */
function toCbor(e: Entry): { [key: string]: CborValue } {
  const out: { [key: string]: CborValue } = { v: ENTRY_VERSION };
  for (const [k, x] of Object.entries(e) as [string, unknown][]) {
    if (x === undefined) continue;
    out[k] = x as CborValue;
  }
  return out;
}

function checkEntrySize(n: number): void {
  if (n > MAX_AGENT_ENTRY_SIZE) {
    throw new TooLargeError(`entry: ${n} bytes, more than ${MAX_AGENT_ENTRY_SIZE}`);
  }
}

/**
 * Validates `e` and returns its canonical CBOR encoding (spec/agent-entries.md §3): a map
 * with `v: 1`, `type` and the type's fields. Equal entries give equal bytes, whatever the
 * key order of the objects; fields set to `undefined` count as absent.
 *
 * @throws {MalformedError} If a field is missing, unknown or breaks its rule; the message
 *   starts with the field's path, e.g. `entry.prev: missing (required when seq > 0)`.
 * @throws {TooLargeError} If the encoding exceeds {@link MAX_AGENT_ENTRY_SIZE}.
 */
export function encodeEntry(e: Entry): Uint8Array {
  const out = encodeCanonical(toCbor(parseEntry(e, 'native', false)));
  checkEntrySize(out.length);
  return out;
}

/**
 * Decodes a canonical entry encoding, strictly: canonical CBOR (see decodeCanonical), `v`
 * equal to 1, a known `type`, exactly that type's fields, each within its rule.
 *
 * @throws {MalformedError}
 * @throws {TooLargeError} If `bytes` exceeds {@link MAX_AGENT_ENTRY_SIZE}.
 */
export function decodeEntry(bytes: Uint8Array): Entry {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('entry: expected a Uint8Array');
  // attacker-controlled: bytes (a leaf, or a client's submission).
  checkEntrySize(bytes.length);
  return readRunEntry(bytes) ?? parseEntry(decodeCanonical(bytes, 'entry'), 'native', true);
}

/**
 * Validates an entry given as a decoded CBOR value (for instance a map inside a CBOR request
 * body, after decodeCanonical): byte fields as Uint8Array, the rules of encodeEntry, and
 * `v` either absent or 1. Use decodeEntry for an entry's own encoding, where `v` is required.
 *
 * @throws {MalformedError} Naming the field's path.
 * @throws {TooLargeError} If the entry's encoding would exceed {@link MAX_AGENT_ENTRY_SIZE}.
 */
export function entryFromCbor(value: unknown): Entry {
  // attacker-controlled: value.
  const e = parseEntry(value, 'native', false);
  checkEntrySize(encodeCanonical(toCbor(e)).length);
  return e;
}

/**
 * The JSON form of an entry: the CBOR field names, `v: 1` first, byte fields as standard
 * padded base64, integers as JSON numbers.
 *
 * @throws {MalformedError} If `e` is not a valid entry.
 */
export function entryToJson(e: Entry): Record<string, unknown> {
  const n = parseEntry(e, 'native', false);
  const out: Record<string, unknown> = { v: ENTRY_VERSION };
  for (const [k, x] of Object.entries(n) as [string, unknown][]) {
    if (k === 'prev') out[k] = encodeBase64(x as Uint8Array);
    else if (k === 'payloads') {
      out[k] = dict(Object.entries(x as Record<string, Uint8Array>).map(([name, c]) => [name, encodeBase64(c)]));
    } else if (k === 'attrs') out[k] = dict(Object.entries(x as Record<string, unknown>));
    else if (k === 'model') out[k] = { ...(x as object) };
    else out[k] = x;
  }
  return out;
}

/**
 * Parses the JSON form of an entry (a value from JSON.parse), strictly: unknown fields,
 * wrong types, non-integers, integers over 2^53 − 1, null, and base64 that is not
 * canonical standard padded base64 are refused. `v` may be omitted; if present it must
 * be 1.
 *
 * @throws {MalformedError} Naming the field's path, e.g. `entry.payloads.prompt: invalid base64`.
 * @throws {TooLargeError} If the entry's encoding would exceed {@link MAX_AGENT_ENTRY_SIZE}.
 */
export function entryFromJson(json: unknown): Entry {
  // attacker-controlled: json (an API request body).
  const e = parseEntry(json, 'json', false);
  checkEntrySize(encodeCanonical(toCbor(e)).length);
  return e;
}

// ---------------------------------------------------------------------------------------
// The one-pass reader of events and run.close entries.
//
// An audit decodes a million entries, nearly all events and run.closes with ASCII text. The
// general path (decodeCanonical's value tree, then parseEntry) made a map object, a getter
// and a field list per entry and was most of the audit's own work. readRunEntry reads such
// an entry in one pass over the bytes, checking every rule as it goes, and builds only the
// Entry. It either returns exactly what the general path returns, or undefined, and then
// the general path decides and names what is wrong: it never refuses, so every error
// message comes from one place. Anything it does not handle (other entry types, non-ASCII
// text, more than 23 attrs) goes the general way. test/entry/entry.test.ts holds the two
// paths to the same answers over valid entries and every kind of change to them.

/** Map keys of run entries, in canonical order (length, then bytes): a key's rank. */
const RUN_KEYS = ['v', 'run', 'seq', 'kind', 'prev', 'time', 'type', 'agent', 'attrs', 'model', 'parent', 'payloads'] as const;
const R_V = 0, R_RUN = 1, R_SEQ = 2, R_KIND = 3, R_PREV = 4, R_TIME = 5, R_TYPE = 6, R_AGENT = 7, R_ATTRS = 8, R_MODEL = 9, R_PARENT = 10, R_PAYLOADS = 11;
/** The fields a run.close may hold, as a bit set of ranks. */
const RUN_CLOSE_RANKS = (1 << R_V) | (1 << R_RUN) | (1 << R_SEQ) | (1 << R_PREV) | (1 << R_TIME) | (1 << R_TYPE) | (1 << R_AGENT);
const RUN_KEY_BYTES = RUN_KEYS.map((k) => utf8(k));
/** model's keys in canonical order. */
const MODEL_KEYS = ['name', 'version', 'provider'] as const;
const MODEL_KEY_BYTES = MODEL_KEYS.map((k) => utf8(k));
const EVENT_KIND_SET: ReadonlySet<string> = new Set(EVENT_KINDS);

/** A cursor over an entry's bytes; every read returns undefined (or -1) when the bytes are not the simple canonical form it handles. */
class RunEntryReader {
  pos = 0;
  constructor(readonly b: Uint8Array) {}

  /** The argument of a head of major type `major`, in shortest form, or -1. */
  head(major: number): number {
    const b = this.b;
    if (this.pos >= b.length) return -1;
    const ib = b[this.pos]!;
    if (ib >> 5 !== major) return -1;
    const ai = ib & 31;
    if (ai < 24) {
      this.pos += 1;
      return ai;
    }
    if (ai === 24) {
      if (this.pos + 2 > b.length || b[this.pos + 1]! < 24) return -1;
      this.pos += 2;
      return b[this.pos - 1]!;
    }
    if (ai === 25) {
      if (this.pos + 3 > b.length) return -1;
      const n = (b[this.pos + 1]! << 8) | b[this.pos + 2]!;
      if (n < 0x100) return -1;
      this.pos += 3;
      return n;
    }
    if (ai === 26) {
      if (this.pos + 5 > b.length) return -1;
      const n = b[this.pos + 1]! * 0x100_0000 + ((b[this.pos + 2]! << 16) | (b[this.pos + 3]! << 8) | b[this.pos + 4]!);
      if (n < 0x1_0000) return -1;
      this.pos += 5;
      return n;
    }
    if (ai === 27) {
      if (this.pos + 9 > b.length) return -1;
      const hi = b[this.pos + 1]! * 0x100_0000 + ((b[this.pos + 2]! << 16) | (b[this.pos + 3]! << 8) | b[this.pos + 4]!);
      const lo = b[this.pos + 5]! * 0x100_0000 + ((b[this.pos + 6]! << 16) | (b[this.pos + 7]! << 8) | b[this.pos + 8]!);
      if (hi === 0 || hi >= 0x20_0000) return -1; // below 2^32 (not shortest), or above 2^53 − 1
      this.pos += 9;
      return hi * 0x1_0000_0000 + lo;
    }
    return -1;
  }

  /** An unsigned integer, or -1. */
  uint(): number {
    return this.head(0);
  }

  /** ASCII text of at most `max` bytes, or undefined (non-ASCII text is the general path's). */
  ascii(max: number): string | undefined {
    const start = this.pos;
    const n = this.head(3);
    if (n < 0 || n > max || this.pos + n > this.b.length) {
      this.pos = start;
      return undefined;
    }
    let s = '';
    const b = this.b;
    for (let i = this.pos; i < this.pos + n; i++) {
      const c = b[i]!;
      if (c >= 0x80) return undefined;
      s += String.fromCharCode(c);
    }
    this.pos += n;
    return s;
  }

  /** A 32-byte string (a copy), or undefined. */
  hash(): Uint8Array | undefined {
    const b = this.b;
    if (this.pos + 2 + HASH_SIZE > b.length || b[this.pos] !== 0x58 || b[this.pos + 1] !== HASH_SIZE) return undefined;
    this.pos += 2 + HASH_SIZE;
    return b.slice(this.pos - HASH_SIZE, this.pos);
  }

  /** The rank in `keys` of the text key here (encoded as one-byte head + ASCII), or -1. */
  key(keys: readonly Uint8Array[]): number {
    const b = this.b;
    const ib = b[this.pos];
    if (ib === undefined || ib < 0x61 || ib > 0x77) return -1;
    const n = ib - 0x60;
    if (this.pos + 1 + n > b.length) return -1;
    next: for (let r = 0; r < keys.length; r++) {
      const k = keys[r]!;
      if (k.length !== n) continue;
      for (let i = 0; i < n; i++) if (b[this.pos + 1 + i] !== k[i]) continue next;
      this.pos += 1 + n;
      return r;
    }
    return -1;
  }

  /**
   * A map key that is a field name (attrs, payloads), strictly after the previous key
   * (given as its byte range) in canonical order; -1 if not. Returns the key's start.
   */
  fieldKey(prevStart: number, prevEnd: number): number {
    const start = this.pos;
    const b = this.b;
    const ib = b[start];
    // A text head: 1–23 bytes in the head itself, or 0x78 and a length byte (24–64 here).
    if (ib === undefined || ib < 0x61 || (ib > 0x77 && ib !== 0x78)) return -1;
    const n = ib === 0x78 ? (b[start + 1] ?? 0) : ib - 0x60;
    const from = ib === 0x78 ? start + 2 : start + 1;
    if (ib === 0x78 && (n < 24 || n > 64)) return -1;
    if (from + n > b.length) return -1;
    for (let i = from; i < from + n; i++) {
      const c = b[i]!;
      // [A-Za-z0-9_.-]
      if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2e || c === 0x2d)) return -1;
    }
    if (prevStart >= 0) {
      // Canonical order of the whole encodings: shorter first, then bytewise; strictly after.
      const pl = prevEnd - prevStart;
      const l = from + n - start;
      if (l < pl) return -1;
      if (l === pl) {
        let c = 0;
        for (let i = 0; i < l && c === 0; i++) c = b[start + i]! - b[prevStart + i]!;
        if (c <= 0) return -1;
      }
    }
    this.pos = from + n;
    return start;
  }

  /** The text of the field key that ends here (ASCII, checked by fieldKey). */
  keyText(start: number): string {
    const b = this.b;
    const from = b[start] === 0x78 ? start + 2 : start + 1;
    let s = '';
    for (let i = from; i < this.pos; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
}

function readModel(r: RunEntryReader): ModelInfo | undefined {
  const n = r.head(5);
  if (n !== 2 && n !== 3) return undefined;
  let last = -1;
  let name: string | undefined;
  let version: string | undefined;
  let provider: string | undefined;
  for (let i = 0; i < n; i++) {
    const k = r.key(MODEL_KEY_BYTES);
    if (k <= last) return undefined;
    last = k;
    const v = r.ascii(MAX_MODEL_TEXT_SIZE);
    if (v === undefined || v.length === 0) return undefined;
    if (k === 0) name = v;
    else if (k === 1) version = v;
    else provider = v;
  }
  if (name === undefined || provider === undefined) return undefined;
  return version === undefined ? { provider, name } : { provider, name, version };
}

/**
 * A map of field names (attrs, payloads) of at most `max` entries, keys in canonical
 * order, each value read by `value`; undefined if anything does not fit.
 */
function readFieldMap<T>(r: RunEntryReader, max: number, value: (r: RunEntryReader) => T | undefined): Record<string, T> | undefined {
  const n = r.head(5);
  if (n < 0 || n > max) return undefined;
  const out = Object.create(null) as Record<string, T>;
  let prevStart = -1;
  let prevEnd = -1;
  for (let i = 0; i < n; i++) {
    const start = r.fieldKey(prevStart, prevEnd);
    if (start < 0) return undefined;
    prevStart = start;
    prevEnd = r.pos;
    const k = r.keyText(start);
    const v = value(r);
    if (v === undefined) return undefined;
    out[k] = v;
  }
  return out;
}

/** An attrs value: true, false, an unsigned integer or ASCII text of at most 256 bytes. */
function attrValue(r: RunEntryReader): string | number | boolean | undefined {
  const ib = r.b[r.pos];
  if (ib === 0xf4 || ib === 0xf5) {
    r.pos++;
    return ib === 0xf5;
  }
  if (ib !== undefined && ib >> 5 === 0) {
    const n = r.uint();
    return n < 0 ? undefined : n;
  }
  return r.ascii(MAX_ATTR_TEXT_SIZE);
}

/**
 * An event or run.close entry read in one pass, exactly as decodeEntry's general path
 * would return it; undefined when the general path must decide (see the section comment).
 * decodeEntry uses it; it is exported so tests can see which path answered.
 */
export function readRunEntry(bytes: Uint8Array): Entry | undefined {
  const r = new RunEntryReader(bytes);
  const count = r.head(5);
  if (count < 6 || count > RUN_KEYS.length) return undefined;
  let last = -1;
  let seen = 0;
  let v = -1, seq = -1, time = -1, parent = -1;
  let agent: string | undefined, run: string | undefined, kind: string | undefined, type: string | undefined;
  let prev: Uint8Array | undefined;
  let model: ModelInfo | undefined, attrs: Record<string, string | number | boolean> | undefined, payloads: Record<string, Uint8Array> | undefined;
  for (let i = 0; i < count; i++) {
    const k = r.key(RUN_KEY_BYTES);
    if (k <= last) return undefined; // unknown, repeated or out of canonical order
    last = k;
    seen |= 1 << k;
    // Every read that fails ends the pass here: what follows is not where a key would be.
    switch (k) {
      case R_V:
        if ((v = r.uint()) < 0) return undefined;
        break;
      case R_RUN:
        if ((run = r.ascii(128)) === undefined) return undefined;
        break;
      case R_SEQ:
        if ((seq = r.uint()) < 0) return undefined;
        break;
      case R_KIND:
        if ((kind = r.ascii(66)) === undefined) return undefined;
        break;
      case R_PREV:
        if ((prev = r.hash()) === undefined) return undefined;
        break;
      case R_TIME:
        if ((time = r.uint()) < 0) return undefined;
        break;
      case R_TYPE:
        if ((type = r.ascii(9)) === undefined) return undefined;
        break;
      case R_AGENT:
        if ((agent = r.ascii(128)) === undefined) return undefined;
        break;
      case R_ATTRS:
        if ((attrs = readFieldMap(r, MAX_ATTRS, attrValue)) === undefined) return undefined;
        break;
      case R_MODEL:
        if ((model = readModel(r)) === undefined) return undefined;
        break;
      case R_PARENT:
        if ((parent = r.uint()) < 0) return undefined;
        break;
      case R_PAYLOADS:
        if ((payloads = readFieldMap(r, MAX_PAYLOADS, (x) => x.hash())) === undefined) return undefined;
        break;
    }
  }
  if (r.pos !== bytes.length || v !== ENTRY_VERSION || seq < 0 || time < 0) return undefined;
  if (agent === undefined || !ID.test(agent) || run === undefined || !ID.test(run)) return undefined;
  if ((seq === 0) !== (prev === undefined)) return undefined;
  if (type === 'run.close') {
    if ((seen & ~RUN_CLOSE_RANKS) !== 0) return undefined;
    return prev === undefined ? { type: 'run.close', agent, run, seq, time } : { type: 'run.close', agent, run, seq, prev, time };
  }
  if (type !== 'event' || kind === undefined || !(EVENT_KIND_SET.has(kind) || CUSTOM_KIND.test(kind))) return undefined;
  if (parent >= seq) return undefined; // parent absent is -1
  return {
    type: 'event',
    agent,
    run,
    seq,
    ...(prev !== undefined && { prev }),
    ...(parent >= 0 && { parent }),
    kind,
    time,
    ...(model !== undefined && { model }),
    ...(attrs !== undefined && { attrs }),
    ...(payloads !== undefined && { payloads }),
  };
}
