/**
 * @module
 * Evidence bundles (spec/evidence-bundle.md): one self-contained file holding the agent
 * entries a query selected, the payloads the exporter could read, an inclusion proof of
 * every entry against one signed (and possibly cosigned) checkpoint, the agents' key
 * history with its proofs, and the erasures of the entries' payloads. Anyone holding the
 * log's public key (or a c2sp.org/tlog-policy) checks it offline with
 * {@link verifyEvidenceBundle}. Pure: no Node built-ins, so it runs in browsers.
 *
 * The file is JSON in one canonical layout ({@link formatEvidenceBundle}); a parser accepts
 * exactly that layout, so a bundle has one encoding and no field can appear twice.
 *
 * Every failure is a {@link MalformedError} (the file, an envelope, a key does not parse)
 * or a {@link VerificationError} (a signature, a hash, a proof, the key history, a run's
 * chain or the filter does not check out), whose message names the item (`entries[3]
 * (index 17, event "a1"/"r1" seq 4)`) and what failed. Nothing else is ever thrown.
 */
import type { Checkpoint } from '../core/checkpoint.js';
import { decodeBase64, encodeBase64, equalBytes, quote } from '../core/encoding.js';
import { MalformedError, TlogError, VerificationError } from '../core/errors.js';
import { HASH_SIZE } from '../core/hash.js';
import { MAX_PROOF_HASHES } from '../core/tlog-proof.js';
import { rootFromInclusionProof } from '../core/tree.js';
import { isValidFieldName, isValidId, type Entry, type PayloadEraseEntry, type RunEntry } from '../entry/entry.js';
import { decodeEnvelope, verifyEntrySignature, type SignedEntry } from '../entry/envelope.js';
import { KeyHistory, type KeyPeriod } from '../entry/key-history.js';
import { PAYLOAD_SALT_SIZE, verifyPayloadCommitment } from '../entry/payload.js';
import { nobleEd25519, type Ed25519 } from '../note/ed25519.js';
import { ALG_ED25519, formatKeyId, parseVerifierKey } from '../note/keys.js';
import { verifyTrustedCheckpoint, type ReceiptTrust } from './receipt.js';

/** The value of a bundle's `format` field. */
export const EVIDENCE_BUNDLE_FORMAT = 'glasslog/evidence-bundle@v1';

/** What the exporter asked for. Every field is optional; `run` needs `agent`. */
export interface EvidenceFilter {
  readonly agent?: string;
  readonly run?: string;
  /** Client time (the entries' `time`, ms since the Unix epoch), inclusive lower bound. */
  readonly since?: number;
  /** Client time, exclusive upper bound. */
  readonly until?: number;
}

/** A logged entry with its inclusion proof against the bundle's checkpoint. */
export interface BundleItem {
  /** The entry's log index. */
  readonly index: number;
  /** The leaf bytes: the signed envelope (spec/agent-entries.md §4). */
  readonly envelope: Uint8Array;
  /** The RFC 6962 inclusion proof, leaf's sibling first. */
  readonly proof: readonly Uint8Array[];
}

/** A payload opening: the salt and data whose commitment an event carries. */
export interface OpenedPayload {
  readonly salt: Uint8Array;
  readonly data: Uint8Array;
}

/** An agent entry of the bundle, with the payloads the exporter could read. */
export interface BundleEntry extends BundleItem {
  /** Openings by payload name; absent when none (never an empty record). */
  readonly payloads?: Readonly<Record<string, OpenedPayload>>;
}

/** A parsed, unverified evidence bundle. */
export interface EvidenceBundle {
  /** The log's origin; must be the checkpoint's. */
  readonly origin: string;
  /** The signed checkpoint note, verbatim, with its cosignature lines. */
  readonly checkpoint: string;
  readonly filter: EvidenceFilter;
  /** The selected events and run.close entries, by increasing index. */
  readonly entries: readonly BundleEntry[];
  /** agent.register/rotate/revoke entries of the bundle's agents, by increasing index. */
  readonly registry: readonly BundleItem[];
  /** payload.erase entries naming payloads of `entries`, by increasing index. */
  readonly erasures: readonly BundleItem[];
}

/** What a bundle says about one payload an entry commits to. */
export type PayloadStatus =
  /** The bundle opens it; `erasedAt` is set if an erasure in the bundle also names it. */
  | { readonly status: 'opened'; readonly data: Uint8Array; readonly erasedAt?: number }
  /** Absent, and no erasure in the bundle names it (the exporter could not read it). */
  | { readonly status: 'withheld' }
  /** Absent, and the erasure at log index `erasedAt` names it. */
  | { readonly status: 'erased'; readonly erasedAt: number };

/** An entry that {@link verifyEvidenceBundle} accepted. */
export interface VerifiedBundleEntry {
  readonly index: number;
  readonly leafHash: Uint8Array;
  readonly entry: RunEntry;
  /** The agent's key period the signature verified under. */
  readonly key: KeyPeriod;
  /** One status per committed payload name (none for a run.close). */
  readonly payloads: Readonly<Record<string, PayloadStatus>>;
}

/** One run of the bundle: the contiguous seqs it holds. */
export interface VerifiedRun {
  readonly agent: string;
  readonly run: string;
  /** The lowest and highest position held (a run.close sits at its `seq`, the event count). */
  readonly first: number;
  readonly last: number;
  /** The run.close's count, when the bundle holds the close. */
  readonly closedWith?: number;
}

/** An erasure that {@link verifyEvidenceBundle} accepted. */
export interface VerifiedErasure {
  readonly index: number;
  readonly entry: PayloadEraseEntry;
}

/** What a verified bundle shows. */
export interface VerifiedEvidenceBundle {
  readonly origin: string;
  /** The checkpoint every proof leads to, signed by the log. */
  readonly checkpoint: Checkpoint;
  /** Witness names (policy names) whose cosignature verified; empty with a bare log key. */
  readonly cosigned: ReadonlySet<string>;
  readonly filter: EvidenceFilter;
  readonly entries: readonly VerifiedBundleEntry[];
  readonly runs: readonly VerifiedRun[];
  /** Every agent of the registry with its key periods as the registry shows them. */
  readonly agents: ReadonlyArray<{ readonly agent: string; readonly periods: readonly KeyPeriod[] }>;
  readonly erasures: readonly VerifiedErasure[];
}

export interface VerifyEvidenceBundleOptions {
  /** Ed25519 for the entry signatures (default nobleEd25519; the CLI passes node:crypto). */
  readonly ed25519?: Ed25519;
}

// ---------------------------------------------------------------------------------------
// The file format.

const PREFIX = 'evidence bundle';
const TOP_FIELDS = ['format', 'origin', 'checkpoint', 'filter', 'entries', 'registry', 'erasures'] as const;
const FILTER_FIELDS = ['agent', 'run', 'since', 'until'] as const;
const ITEM_FIELDS = ['index', 'envelope', 'proof'] as const;
const ENTRY_FIELDS = [...ITEM_FIELDS, 'payloads'] as const;
const OPENING_FIELDS = ['salt', 'data'] as const;

/**
 * Formats a bundle in its canonical layout (spec/evidence-bundle.md §2): one top-level
 * field per line in a fixed order, one array item per line, no other white space, strings
 * escaped as JSON.stringify does, payload names sorted, a final newline. Arrays are written
 * in the order given; {@link parseEvidenceBundle} requires increasing indices.
 */
export function formatEvidenceBundle(b: EvidenceBundle): string {
  const lines = [
    `{"format":${JSON.stringify(EVIDENCE_BUNDLE_FORMAT)},`,
    `"origin":${JSON.stringify(b.origin)},`,
    `"checkpoint":${JSON.stringify(b.checkpoint)},`,
    `"filter":${formatFilter(b.filter)},`,
    `"entries":${formatArray(b.entries.map(formatEntry))},`,
    `"registry":${formatArray(b.registry.map((i) => formatItem(i)))},`,
    `"erasures":${formatArray(b.erasures.map((i) => formatItem(i)))}`,
    '}',
  ];
  return lines.join('\n') + '\n';
}

function formatFilter(f: EvidenceFilter): string {
  const parts: string[] = [];
  if (f.agent !== undefined) parts.push(`"agent":${JSON.stringify(f.agent)}`);
  if (f.run !== undefined) parts.push(`"run":${JSON.stringify(f.run)}`);
  if (f.since !== undefined) parts.push(`"since":${f.since}`);
  if (f.until !== undefined) parts.push(`"until":${f.until}`);
  return `{${parts.join(',')}}`;
}

function formatArray(items: string[]): string {
  return items.length === 0 ? '[]' : `[\n${items.join(',\n')}\n]`;
}

function formatItem(i: BundleItem, extra = ''): string {
  const proof = i.proof.map((h) => `"${encodeBase64(h)}"`).join(',');
  return `{"index":${i.index},"envelope":"${encodeBase64(i.envelope)}","proof":[${proof}]${extra}}`;
}

function formatEntry(e: BundleEntry): string {
  const names = Object.keys(e.payloads ?? {}).sort();
  if (names.length === 0) return formatItem(e);
  const opened = names.map((n) => {
    const p = e.payloads![n]!;
    return `${JSON.stringify(n)}:{"salt":"${encodeBase64(p.salt)}","data":"${encodeBase64(p.data)}"}`;
  });
  return formatItem(e, `,"payloads":{${opened.join(',')}}`);
}

/**
 * Parses a bundle strictly: valid JSON, exactly the fields of the format (unknown and
 * missing fields are refused), the format string, valid agent and run ids, safe
 * non-negative integers, canonical padded base64, 32-byte proof hashes and salts, items in
 * strictly increasing index order, and finally the canonical layout byte for byte (so a
 * bundle has one encoding). Envelopes are decoded and everything is verified only by
 * {@link verifyEvidenceBundle}.
 *
 * @throws {MalformedError} Naming the field, e.g. `evidence bundle: entries[2].proof[0]: invalid base64`.
 */
export function parseEvidenceBundle(text: string): EvidenceBundle {
  // attacker-controlled: the whole text.
  if (typeof text !== 'string') throw new MalformedError(`${PREFIX}: not a string`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new MalformedError(`${PREFIX}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const top = record(json, PREFIX, TOP_FIELDS, TOP_FIELDS);
  if (top['format'] !== EVIDENCE_BUNDLE_FORMAT) {
    throw new MalformedError(`${PREFIX}: format ${quote(String(top['format']))} is not ${quote(EVIDENCE_BUNDLE_FORMAT)}`);
  }
  const bundle: EvidenceBundle = {
    origin: string(top['origin'], `${PREFIX}: origin`),
    checkpoint: string(top['checkpoint'], `${PREFIX}: checkpoint`),
    filter: parseFilter(top['filter']),
    entries: items(top['entries'], 'entries', parseEntryItem),
    registry: items(top['registry'], 'registry', parseItem),
    erasures: items(top['erasures'], 'erasures', parseItem),
  };
  const canonical = formatEvidenceBundle(bundle);
  if (canonical !== text) {
    throw new MalformedError(`${PREFIX}: not in the canonical layout (${firstDifference(text, canonical)})`);
  }
  return bundle;
}

/** Where two texts first differ, as `line L, column C`. */
function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const before = a.slice(0, i);
  const line = before.split('\n').length;
  const column = i - before.lastIndexOf('\n');
  return `differs from it at line ${line}, column ${column}`;
}

/** Checks `v` is a JSON object with only `allowed` fields (any, for null) and every `required` one. */
function record(v: unknown, what: string, allowed: readonly string[] | null, required: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new MalformedError(`${what}: expected an object`);
  const o = v as Record<string, unknown>;
  if (allowed !== null) for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new MalformedError(`${what}: unknown field ${quote(k)}`);
  for (const k of required) if (!Object.prototype.hasOwnProperty.call(o, k)) throw new MalformedError(`${what}: missing field ${quote(k)}`);
  return o;
}

function string(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new MalformedError(`${what}: expected a string`);
  return v;
}

function uint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new MalformedError(`${what}: expected a safe non-negative integer`);
  }
  return v;
}

function bytes(v: unknown, what: string, size?: number): Uint8Array {
  const b = decodeBase64(string(v, what), what);
  if (size !== undefined && b.length !== size) throw new MalformedError(`${what}: ${b.length} bytes, want ${size}`);
  return b;
}

function parseFilter(v: unknown): EvidenceFilter {
  const what = `${PREFIX}: filter`;
  const o = record(v, what, FILTER_FIELDS, []);
  const has = (k: string) => Object.prototype.hasOwnProperty.call(o, k);
  const f: { agent?: string; run?: string; since?: number; until?: number } = {};
  if (has('agent')) {
    if (!isValidId(o['agent'])) throw new MalformedError(`${what}.agent: not an agent id (1–128 of [A-Za-z0-9._:@-])`);
    f.agent = o['agent'];
  }
  if (has('run')) {
    if (!isValidId(o['run'])) throw new MalformedError(`${what}.run: not a run id (1–128 of [A-Za-z0-9._:@-])`);
    if (f.agent === undefined) throw new MalformedError(`${what}.run: a run filter needs an agent`);
    f.run = o['run'];
  }
  if (has('since')) f.since = uint(o['since'], `${what}.since`);
  if (has('until')) f.until = uint(o['until'], `${what}.until`);
  return f;
}

function items<T extends BundleItem>(v: unknown, name: string, parse: (v: unknown, what: string) => T): T[] {
  if (!Array.isArray(v)) throw new MalformedError(`${PREFIX}: ${name}: expected an array`);
  const out: T[] = [];
  for (const [k, x] of v.entries()) {
    const what = `${PREFIX}: ${name}[${k}]`;
    const item = parse(x, what);
    const prev = out[k - 1];
    if (prev !== undefined && item.index <= prev.index) {
      throw new MalformedError(
        `${what}: index ${item.index} ${item.index === prev.index ? 'repeats' : 'is below'} index ${prev.index} of ${name}[${k - 1}] (items must be in strictly increasing index order)`
      );
    }
    out.push(item);
  }
  return out;
}

function parseItem(v: unknown, what: string): BundleItem {
  const o = record(v, what, ITEM_FIELDS, ITEM_FIELDS);
  return itemOf(o, what);
}

function itemOf(o: Record<string, unknown>, what: string): BundleItem {
  const index = uint(o['index'], `${what}.index`);
  const envelope = bytes(o['envelope'], `${what}.envelope`);
  if (envelope.length === 0) throw new MalformedError(`${what}.envelope: empty`);
  const p = o['proof'];
  if (!Array.isArray(p)) throw new MalformedError(`${what}.proof: expected an array`);
  if (p.length > MAX_PROOF_HASHES) throw new MalformedError(`${what}.proof: more than ${MAX_PROOF_HASHES} hashes`);
  const proof = p.map((h, i) => bytes(h, `${what}.proof[${i}]`, HASH_SIZE));
  return { index, envelope, proof };
}

function parseEntryItem(v: unknown, what: string): BundleEntry {
  const o = record(v, what, ENTRY_FIELDS, ITEM_FIELDS);
  const item = itemOf(o, what);
  if (!Object.prototype.hasOwnProperty.call(o, 'payloads')) return item;
  const pw = `${what}.payloads`;
  const p = record(o['payloads'], pw, null, []);
  const names = Object.keys(p);
  if (names.length === 0) throw new MalformedError(`${pw}: empty (leave the field out)`);
  const payloads: Record<string, OpenedPayload> = Object.create(null) as Record<string, OpenedPayload>;
  for (const name of names) {
    if (!isValidFieldName(name)) throw new MalformedError(`${pw}: ${quote(name)} is not a payload name`);
    const ow = `${pw}.${name}`;
    const opening = record(p[name], ow, OPENING_FIELDS, OPENING_FIELDS);
    payloads[name] = { salt: bytes(opening['salt'], `${ow}.salt`, PAYLOAD_SALT_SIZE), data: bytes(opening['data'], `${ow}.data`) };
  }
  return { ...item, payloads };
}

// ---------------------------------------------------------------------------------------
// Verification.

/**
 * Verifies an evidence bundle with nothing but the log's verifier key (`{ logKey }`) or a
 * tlog-policy (`{ policy }`, whose quorum of witness cosignatures the checkpoint must meet).
 *
 * Checks (spec/evidence-bundle.md §3), in order:
 * 1. the file parses strictly ({@link parseEvidenceBundle});
 * 2. the checkpoint is signed by the log (a known key's failing signature rejects it) and,
 *    with a policy, cosigned by a quorum; `origin` is its origin;
 * 3. every item's envelope decodes strictly, its index is below the tree size, and its
 *    inclusion proof leads from its RFC 6962 leaf hash to the checkpoint's root;
 * 4. registry items are agent.* entries of the bundle's agents, signed by the log's key, and
 *    replay into a key history (from a register, valid transitions only);
 * 5. entries are events or run.close matching the filter's agent and run, each signed by the
 *    agent's key at its index (a rotated-out or revoked key fails, naming it and its period);
 * 6. erasures are payload.erase entries signed by the log's key, each naming a payload an
 *    entry of the bundle commits to, logged after it, at most once per payload;
 * 7. every payload given opens its commitment, and only committed payloads are given;
 * 8. per run: no two entries at one position, one close at most and nothing at or beyond
 *    its count, nothing logged after the close, positions contiguous and linked by `prev`;
 *    without a time window every run starts at seq 0; with one, an entry outside the window
 *    sits between two of its run's entries inside it.
 *
 * A committed payload that is absent is `erased` if an erasure names it, else `withheld`;
 * neither is a failure. What cannot be detected is in spec/evidence-bundle.md §4.
 *
 * @throws {MalformedError} If the bundle, an envelope or a key does not parse.
 * @throws {VerificationError} Naming the item and what does not check out.
 */
export function verifyEvidenceBundle(text: string, trust: ReceiptTrust, opts: VerifyEvidenceBundleOptions = {}): VerifiedEvidenceBundle {
  try {
    return verify(text, trust, opts.ed25519 ?? nobleEd25519);
  } catch (err) {
    if (err instanceof MalformedError || err instanceof VerificationError) throw err;
    // TooLargeError (an oversized envelope or note) counts as malformed input; anything
    // unexpected fails verification rather than escaping as another type.
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof TlogError) throw new MalformedError(`${PREFIX}: ${message}`, { cause: err });
    throw new VerificationError(`${PREFIX}: could not be verified: ${message}`, { cause: err });
  }
}

/** A bundle item whose envelope decoded and whose inclusion proof verified. */
interface Opened {
  /** `entries[3] (index 17, event "a1"/"r1" seq 4)`, for messages. */
  readonly label: string;
  readonly index: number;
  readonly signed: SignedEntry;
}

function verify(text: string, trust: ReceiptTrust, ed25519: Ed25519): VerifiedEvidenceBundle {
  const b = parseEvidenceBundle(text);
  const { checkpoint, cosigned } = verifyTrustedCheckpoint(b.checkpoint, trust, `${PREFIX}: checkpoint`);
  if (b.origin !== checkpoint.origin) {
    throw new VerificationError(`${PREFIX}: origin ${quote(b.origin)} is not the checkpoint's origin ${quote(checkpoint.origin)}`);
  }
  const logKeys = logPublicKeys(trust, checkpoint.origin);
  const open = (name: string) => (it: BundleItem, k: number) => openItem(it, `${name}[${k}]`, checkpoint);
  const entries = b.entries.map(open('entries'));
  const registry = b.registry.map(open('registry'));
  const erasures = b.erasures.map(open('erasures'));

  const agents = new Set(entries.map((e) => checkRunEntry(e, b.filter).agent));
  if (b.filter.agent !== undefined) agents.add(b.filter.agent);
  const history = replayRegistry(registry, agents, logKeys, ed25519);
  const keys = entries.map((e) => checkAgentSignature(e, history, ed25519));
  const erasedAt = checkErasures(erasures, entries, logKeys, ed25519);
  const verified = entries.map((e, k) => ({
    index: e.index,
    leafHash: e.signed.leafHash,
    entry: e.signed.entry as RunEntry,
    key: keys[k]!,
    payloads: payloadStatuses(e, b.entries[k]!, erasedAt),
  }));
  const runs = checkRuns(entries, b.filter);
  return {
    origin: checkpoint.origin,
    checkpoint,
    cosigned,
    filter: b.filter,
    entries: verified,
    runs,
    agents: history.agents().map((agent) => ({ agent, periods: history.periods(agent) })),
    erasures: erasures.map((e) => ({ index: e.index, entry: e.signed.entry as PayloadEraseEntry })),
  };
}

/** The public keys that sign the log's own entries: the trust's log key, or the policy's keys for `origin`. */
function logPublicKeys(trust: ReceiptTrust, origin: string): Array<{ label: string; publicKey: Uint8Array }> {
  const vkeys = 'logKey' in trust ? [trust.logKey] : trust.policy.logs.filter((l) => l.origin === origin).map((l) => l.vkey);
  return vkeys.map((vkey) => {
    let k;
    try {
      k = parseVerifierKey(vkey);
    } catch (err) {
      throw new MalformedError(`${PREFIX}: the log key: ${(err as Error).message}`, { cause: err });
    }
    if (k.alg !== ALG_ED25519) throw new MalformedError(`${PREFIX}: the log key is not an Ed25519 (type 0x01) key`);
    return { label: quote(`${k.name}+${formatKeyId(k.keyId)}`), publicKey: k.publicKey };
  });
}

/** Decodes an item's envelope and checks its inclusion proof against the checkpoint. */
function openItem(it: BundleItem, name: string, checkpoint: Checkpoint): Opened {
  let signed: SignedEntry;
  try {
    signed = decodeEnvelope(it.envelope);
  } catch (err) {
    throw new MalformedError(`${PREFIX}: ${name} (index ${it.index}): ${(err as Error).message}`, { cause: err });
  }
  const label = `${name} (index ${it.index}, ${describe(signed.entry)})`;
  if (it.index >= checkpoint.treeSize) {
    throw new VerificationError(`${PREFIX}: ${label}: index ${it.index} is not below the checkpoint's tree size ${checkpoint.treeSize}`);
  }
  let root: Uint8Array;
  try {
    root = rootFromInclusionProof(signed.leafHash, it.index, checkpoint.treeSize, [...it.proof]);
  } catch (err) {
    if (!(err instanceof VerificationError)) throw err;
    throw new VerificationError(`${PREFIX}: ${label}: ${err.message} (leaf hash ${encodeBase64(signed.leafHash)})`, { cause: err });
  }
  if (!equalBytes(root, checkpoint.rootHash)) {
    throw new VerificationError(
      `${PREFIX}: ${label}: the inclusion proof of leaf hash ${encodeBase64(signed.leafHash)} leads to root hash ${encodeBase64(root)}, ` +
        `not to the checkpoint's root hash ${encodeBase64(checkpoint.rootHash)} at tree size ${checkpoint.treeSize}`
    );
  }
  return { label, index: it.index, signed };
}

function describe(e: Entry): string {
  switch (e.type) {
    case 'event':
    case 'run.close':
      return `${e.type} ${quote(e.agent)}/${quote(e.run)} seq ${e.seq}`;
    case 'payload.erase':
      return `payload.erase of ${quote(e.name)} of entry ${e.index}`;
    default:
      return `${e.type} ${quote(e.agent)}`;
  }
}

/** An entry of `entries` must be an event or run.close of the filter's agent and run. */
function checkRunEntry(e: Opened, filter: EvidenceFilter): RunEntry {
  const entry = e.signed.entry;
  if (entry.type !== 'event' && entry.type !== 'run.close') {
    throw new VerificationError(`${PREFIX}: ${e.label}: entries hold only events and run.close entries`);
  }
  if (filter.agent !== undefined && entry.agent !== filter.agent) {
    throw new VerificationError(`${PREFIX}: ${e.label}: agent ${quote(entry.agent)} does not match the filter's agent ${quote(filter.agent)}`);
  }
  if (filter.run !== undefined && entry.run !== filter.run) {
    throw new VerificationError(`${PREFIX}: ${e.label}: run ${quote(entry.run)} does not match the filter's run ${quote(filter.run)}`);
  }
  return entry;
}

/** Reports whether the entry's log-key signature verifies under one of the log's keys. */
function signedByLog(e: Opened, logKeys: ReadonlyArray<{ publicKey: Uint8Array }>, ed25519: Ed25519): boolean {
  return logKeys.some((k) => verifyEntrySignature(e.signed, k.publicKey, ed25519));
}

function logKeysLabel(logKeys: ReadonlyArray<{ label: string }>): string {
  return logKeys.length === 1 ? `the log key ${logKeys[0]!.label}` : `any of the log keys ${logKeys.map((k) => k.label).join(', ')}`;
}

/** Replays the registry into a KeyHistory after checking each item's type, agent and signature. */
function replayRegistry(registry: readonly Opened[], agents: ReadonlySet<string>, logKeys: ReadonlyArray<{ label: string; publicKey: Uint8Array }>, ed25519: Ed25519): KeyHistory {
  const history = new KeyHistory();
  for (const r of registry) {
    const entry = r.signed.entry;
    if (entry.type !== 'agent.register' && entry.type !== 'agent.rotate' && entry.type !== 'agent.revoke') {
      throw new VerificationError(`${PREFIX}: ${r.label}: the registry holds only agent.register, agent.rotate and agent.revoke entries`);
    }
    if (!agents.has(entry.agent)) {
      throw new VerificationError(`${PREFIX}: ${r.label}: agent ${quote(entry.agent)} has no entry in the bundle and is not the filter's agent`);
    }
    if (!signedByLog(r, logKeys, ed25519)) {
      throw new VerificationError(`${PREFIX}: ${r.label}: the signature does not verify under ${logKeysLabel(logKeys)}`);
    }
    try {
      history.apply(r.index, entry);
    } catch (err) {
      if (!(err instanceof VerificationError)) throw err;
      throw new VerificationError(`${PREFIX}: ${r.label}: ${err.message}`, { cause: err });
    }
  }
  return history;
}

/** `name+keyid`, quoted. */
function keyLabel(p: KeyPeriod): string {
  return quote(`${p.agent}+${formatKeyId(p.keyId)}`);
}

/** A key period in words: `installed at index 3, rotated out at index 9`. */
function periodText(p: KeyPeriod): string {
  if (p.until === null) return `installed at index ${p.from}, still current`;
  return `installed at index ${p.from}, ${p.endedBy === 'revoked' ? 'revoked' : 'rotated out'} at index ${p.until}`;
}

/** Checks an entry's signature by its agent's key at its index; returns that key's period. */
function checkAgentSignature(e: Opened, history: KeyHistory, ed25519: Ed25519): KeyPeriod {
  const { agent } = e.signed.entry as RunEntry;
  const periods = history.periods(agent);
  const key = history.keyAt(agent, e.index);
  if (key !== null && verifyEntrySignature(e.signed, key.publicKey, ed25519)) return key;
  // Name the key that did sign, if the agent ever held it.
  const signer = periods.find((p) => p !== key && verifyEntrySignature(e.signed, p.publicKey, ed25519));
  if (periods.length === 0) {
    throw new VerificationError(`${PREFIX}: ${e.label}: the registry has no agent.register of agent ${quote(agent)}`);
  }
  const valid = key === null ? `agent ${quote(agent)} had no valid key at index ${e.index}${noKeyReason(periods, e.index)}` : `its key at index ${e.index} is ${keyLabel(key)} (${periodText(key)})`;
  if (signer !== undefined) {
    throw new VerificationError(`${PREFIX}: ${e.label}: signed with key ${keyLabel(signer)} (${periodText(signer)}), which is not valid at index ${e.index}; ${valid}`);
  }
  throw new VerificationError(`${PREFIX}: ${e.label}: the signature does not verify under any key of agent ${quote(agent)}; ${valid}`);
}

/** Why no key was valid at `index`: before the registration, or after a revocation. */
function noKeyReason(periods: readonly KeyPeriod[], index: number): string {
  const first = periods[0]!;
  if (index <= first.from) return ` (registered at index ${first.from})`;
  const before = periods.filter((p) => p.from < index).at(-1)!;
  return ` (key ${keyLabel(before)} was revoked at index ${before.until})`;
}

/** Checks the erasures; returns the erasure index by `"<entry index> <name>"`. */
function checkErasures(erasures: readonly Opened[], entries: readonly Opened[], logKeys: ReadonlyArray<{ label: string; publicKey: Uint8Array }>, ed25519: Ed25519): Map<string, number> {
  const byIndex = new Map(entries.map((e) => [e.index, e]));
  const erasedAt = new Map<string, number>();
  for (const r of erasures) {
    const entry = r.signed.entry;
    if (entry.type !== 'payload.erase') throw new VerificationError(`${PREFIX}: ${r.label}: erasures hold only payload.erase entries`);
    if (!signedByLog(r, logKeys, ed25519)) {
      throw new VerificationError(`${PREFIX}: ${r.label}: the signature does not verify under ${logKeysLabel(logKeys)}`);
    }
    const target = byIndex.get(entry.index);
    if (target === undefined) throw new VerificationError(`${PREFIX}: ${r.label}: names entry ${entry.index}, which is not in the bundle's entries`);
    const t = target.signed.entry;
    if (t.type !== 'event' || t.payloads === undefined || t.payloads[entry.name] === undefined) {
      throw new VerificationError(`${PREFIX}: ${r.label}: entry ${entry.index} commits to no payload ${quote(entry.name)}`);
    }
    if (r.index <= entry.index) throw new VerificationError(`${PREFIX}: ${r.label}: logged before the entry ${entry.index} it erases from`);
    const key = `${entry.index} ${entry.name}`;
    const first = erasedAt.get(key);
    if (first !== undefined) throw new VerificationError(`${PREFIX}: ${r.label}: payload ${quote(entry.name)} of entry ${entry.index} was already erased at index ${first}`);
    erasedAt.set(key, r.index);
  }
  return erasedAt;
}

/** Checks the given openings against the entry's commitments; returns every committed payload's status. */
function payloadStatuses(e: Opened, item: BundleEntry, erasedAt: ReadonlyMap<string, number>): Record<string, PayloadStatus> {
  const entry = e.signed.entry as RunEntry;
  const commitments: Readonly<Record<string, Uint8Array>> = entry.type === 'event' ? entry.payloads ?? {} : {};
  const given = item.payloads ?? {};
  for (const name of Object.keys(given)) {
    if (!Object.prototype.hasOwnProperty.call(commitments, name)) {
      throw new VerificationError(`${PREFIX}: ${e.label}: payload ${quote(name)} is given, but the entry commits to no payload of that name`);
    }
  }
  const out: Record<string, PayloadStatus> = Object.create(null) as Record<string, PayloadStatus>;
  for (const [name, commitment] of Object.entries(commitments)) {
    const erased = erasedAt.get(`${e.index} ${name}`);
    const p = Object.prototype.hasOwnProperty.call(given, name) ? given[name] : undefined;
    if (p !== undefined) {
      if (!verifyPayloadCommitment(commitment, p.salt, p.data)) {
        throw new VerificationError(`${PREFIX}: ${e.label}: payload ${quote(name)} does not open its commitment ${encodeBase64(commitment)}`);
      }
      out[name] = erased === undefined ? { status: 'opened', data: p.data } : { status: 'opened', data: p.data, erasedAt: erased };
    } else {
      out[name] = erased === undefined ? { status: 'withheld' } : { status: 'erased', erasedAt: erased };
    }
  }
  return out;
}

/** The entries of one run, by position (an event's seq; a close's seq, its count). */
interface RunItems {
  readonly agent: string;
  readonly run: string;
  readonly items: Opened[];
}

/** The run checks of step 8; returns each run's span. */
function checkRuns(entries: readonly Opened[], filter: EvidenceFilter): VerifiedRun[] {
  const runs = new Map<string, RunItems>();
  for (const e of entries) {
    const { agent, run } = e.signed.entry as RunEntry;
    const key = JSON.stringify([agent, run]);
    let r = runs.get(key);
    if (r === undefined) runs.set(key, (r = { agent, run, items: [] }));
    r.items.push(e);
  }
  return [...runs.values()].map((r) => checkRun(r, filter));
}

function checkRun(r: RunItems, filter: EvidenceFilter): VerifiedRun {
  const what = `${PREFIX}: run ${quote(r.run)} of agent ${quote(r.agent)}`;
  const seqOf = (e: Opened) => (e.signed.entry as RunEntry).seq;
  const closes = r.items.filter((e) => e.signed.entry.type === 'run.close');
  if (closes.length > 1) throw new VerificationError(`${what}: two run.close entries, ${closes[0]!.label} and ${closes[1]!.label}`);
  const close = closes[0];
  if (close !== undefined) {
    for (const e of r.items) {
      if (e === close) continue;
      if (seqOf(e) >= seqOf(close)) throw new VerificationError(`${what}: ${e.label} is at or beyond the ${seqOf(close)} events ${close.label} counts`);
      if (e.index > close.index) throw new VerificationError(`${what}: ${e.label} is logged after ${close.label}`);
    }
  }
  const sorted = [...r.items].sort((a, b) => seqOf(a) - seqOf(b));
  for (let k = 1; k < sorted.length; k++) {
    const a = sorted[k - 1]!;
    const e = sorted[k]!;
    if (seqOf(e) === seqOf(a)) throw new VerificationError(`${what}: ${a.label} and ${e.label} hold the same seq`);
    if (seqOf(e) !== seqOf(a) + 1) {
      const gap = seqOf(e) - seqOf(a) === 2 ? `seq ${seqOf(a) + 1} is` : `seqs ${seqOf(a) + 1}–${seqOf(e) - 1} are`;
      throw new VerificationError(`${what}: ${gap} missing between ${a.label} and ${e.label}`);
    }
    const prev = (e.signed.entry as RunEntry).prev;
    if (prev === undefined || !equalBytes(prev, a.signed.leafHash)) {
      throw new VerificationError(
        `${what}: ${e.label} has prev ${prev === undefined ? '(none)' : encodeBase64(prev)}, not the leaf hash ${encodeBase64(a.signed.leafHash)} of ${a.label}`
      );
    }
  }
  const first = sorted[0]!;
  const last = sorted.at(-1)!;
  checkWindow(sorted, filter, what);
  return {
    agent: r.agent,
    run: r.run,
    first: seqOf(first),
    last: seqOf(last),
    ...(close !== undefined ? { closedWith: seqOf(close) } : {}),
  };
}

/**
 * Without a time window the filter selects whole runs, which must start at seq 0. With one,
 * an entry outside it is allowed only between two entries of its run inside it: the
 * exporter fills such holes (a client clock that went back) so the chain stays whole.
 */
function checkWindow(sorted: readonly Opened[], filter: EvidenceFilter, what: string): void {
  const seqOf = (e: Opened) => (e.signed.entry as RunEntry).seq;
  if (filter.since === undefined && filter.until === undefined) {
    const first = sorted[0]!;
    if (seqOf(first) !== 0) {
      throw new VerificationError(`${what}: starts at ${first.label}; the filter has no time window, so the run must start at seq 0 (seqs 0–${seqOf(first) - 1} are missing)`);
    }
    return;
  }
  const inside = (e: Opened) => {
    const t = (e.signed.entry as RunEntry).time;
    return (filter.since === undefined || t >= filter.since) && (filter.until === undefined || t < filter.until);
  };
  const firstIn = sorted.findIndex(inside);
  let lastIn = -1;
  sorted.forEach((e, k) => {
    if (inside(e)) lastIn = k;
  });
  sorted.forEach((e, k) => {
    if (firstIn >= 0 && k >= firstIn && k <= lastIn) return;
    const t = (e.signed.entry as RunEntry).time;
    throw new VerificationError(
      `${what}: ${e.label} has time ${t}, outside the filter's window [${filter.since ?? '-∞'}, ${filter.until ?? '∞'}), and is not between two entries of its run inside it`
    );
  });
}
