/**
 * @module
 * A full, incremental audit of a glasslog log from its tiles and entry bundles
 * (spec/audit.md). Pure: the caller fetches; this module checks and keeps the state.
 *
 * One pass takes the log from the tree it audited last (the state's right edge, or the
 * empty tree) to a newer checkpoint signed by the log (and cosigned under a policy):
 *
 * - every new leaf is decoded as a glasslog signed envelope (canonical CBOR, strict), and
 *   its signature checked: an agent's entry under the key the agent's history, replayed
 *   from the log's own `agent.*` entries, gives for its index; a registry or erasure entry
 *   under the log's key;
 * - every `payload.erase` must name an earlier event that commits to that payload;
 * - the leaves are integrated into the saved edge, so the rebuilt root proves at once that
 *   the new checkpoint's tree holds the leaves of the last one (consistency), and every
 *   tile the log serves for the new part is compared with the one rebuilt.
 *
 * Problems with entries and tiles are findings: the pass goes on, so one run shows all of
 * them. A rebuilt root other than the checkpoint's is fatal: the state does not advance.
 */
import { parseCheckpoint, type Checkpoint } from '../core/checkpoint.js';
import { decodeBundle } from '../core/bundle.js';
import { concatBytes, decodeBase64, encodeBase64, equalBytes, quote } from '../core/encoding.js';
import { MalformedError, TlogError, VerificationError } from '../core/errors.js';
import { HASH_SIZE, leafHash } from '../core/hash.js';
import { EMPTY_EDGE, edgeRootHash, extendEdge, type TreeEdge } from '../core/integrate.js';
import { newTiles, TILE_WIDTH, tileWidthAt } from '../core/tile.js';
import { rootFromInclusionProof } from '../core/tree.js';
import { decodeEnvelope, entrySigningParts, readEnvelope, type EnvelopeView, type SignedEntry } from '../entry/envelope.js';
import type { Entry, EventEntry, RunCloseEntry } from '../entry/entry.js';
import { KeyHistory, type KeyPeriod } from '../entry/key-history.js';
import { nobleEd25519, type Ed25519 } from '../note/ed25519.js';
import { ALG_ED25519, parseVerifierKey } from '../note/keys.js';
import { parseNote } from '../note/note.js';
import { policyLog } from './policy.js';
import { verifyTrustedCheckpoint, type ReceiptTrust } from './receipt.js';

export const AUDIT_STATE_FORMAT = 'glasslog/audit-state@v1';

/** How many findings a state keeps in full; the rest are only counted. */
export const MAX_KEPT_FINDINGS = 1000;

/** A hash tile's coordinates (level ≥ 0). */
export interface HashTile {
  readonly level: number;
  readonly index: number;
  readonly width: number;
}

/** What kind of problem a finding is (spec/audit.md §4). */
export type FindingKind =
  | 'envelope' // a leaf that is not a canonical glasslog signed envelope
  | 'signature' // a signature that does not verify under the key it must
  | 'key' // an agent entry with no key valid at its index
  | 'registry' // a log-signed agent.* entry that is not a valid key transition
  | 'erasure' // a payload.erase naming no such earlier payload, or one erased before
  | 'tile' // a tile the log serves that differs from the one rebuilt from the entries
  | 'rewrite'; // an entry audited before that the log now serves differently

export interface Finding {
  readonly kind: FindingKind;
  /** The log index concerned, when there is one. */
  readonly index?: number;
  readonly message: string;
}

/** Counts of what has been audited, per entry type (`raw` for non-envelope leaves). */
export type AuditCounts = Record<string, number>;

/** An erasure whose target has not been checked yet. */
export interface PendingErasure {
  /** Index of the payload.erase entry. */
  readonly by: number;
  /** Index of the event it names, and the payload name. */
  readonly index: number;
  readonly name: string;
}

/**
 * What an auditor keeps between runs (serialized by {@link formatAuditState}). Everything
 * here was checked by earlier passes; the file is the auditor's own, trusted as such.
 */
export interface AuditState {
  readonly origin: string;
  /** The last checkpoint note a pass completed against (verbatim), or null. */
  readonly checkpoint: string | null;
  /**
   * The right edge of the audited tree. Its size is the checkpoint's tree size, or larger
   * while a pass toward `target` was interrupted.
   */
  readonly edge: TreeEdge;
  /** The checkpoint an interrupted pass was auditing toward, or null. */
  readonly target: string | null;
  /** The log-signed agent.* entries applied so far, in order (base64 envelopes). */
  readonly registry: ReadonlyArray<{ readonly index: number; readonly envelope: string }>;
  /** Erased payloads: `${index}/${name}` → index of the erasure. */
  readonly erased: ReadonlyArray<{ readonly index: number; readonly name: string; readonly by: number }>;
  /** Erasures seen but whose target is not checked yet (an interrupted pass). */
  readonly pendingErasures: readonly PendingErasure[];
  readonly counts: AuditCounts;
  /** Findings of every pass, oldest first, at most {@link MAX_KEPT_FINDINGS}. */
  readonly findings: readonly Finding[];
  /** All findings ever, including those not kept. */
  readonly findingsTotal: number;
}

/** A state for a log never audited. */
export function newAuditState(origin: string): AuditState {
  return {
    origin,
    checkpoint: null,
    edge: EMPTY_EDGE,
    target: null,
    registry: [],
    erased: [],
    pendingErasures: [],
    counts: {},
    findings: [],
    findingsTotal: 0,
  };
}

/** One JSON document, stable field order. */
export function formatAuditState(s: AuditState): string {
  return (
    JSON.stringify(
      {
        format: AUDIT_STATE_FORMAT,
        origin: s.origin,
        checkpoint: s.checkpoint,
        target: s.target,
        treeSize: s.edge.size,
        edge: s.edge.levels.map((l) => l.map(encodeBase64)),
        registry: s.registry,
        erased: s.erased,
        pendingErasures: s.pendingErasures,
        counts: s.counts,
        findingsTotal: s.findingsTotal,
        findings: s.findings,
      },
      null,
      1
    ) + '\n'
  );
}

const STATE_FIELDS = [
  'format',
  'origin',
  'checkpoint',
  'target',
  'treeSize',
  'edge',
  'registry',
  'erased',
  'pendingErasures',
  'counts',
  'findingsTotal',
  'findings',
];
const FINDING_KINDS: ReadonlySet<string> = new Set(['envelope', 'signature', 'key', 'registry', 'erasure', 'tile', 'rewrite']);

/**
 * Parses a state file strictly.
 * @throws {MalformedError} Naming the field that is wrong.
 */
export function parseAuditState(text: string): AuditState {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw new MalformedError('audit state: not JSON');
  }
  const o = obj(j, 'audit state');
  for (const k of Object.keys(o)) if (!STATE_FIELDS.includes(k)) throw new MalformedError(`audit state: unknown field ${quote(k)}`);
  if (o.format !== AUDIT_STATE_FORMAT) throw new MalformedError(`audit state: format is not ${quote(AUDIT_STATE_FORMAT)}`);
  const origin = str(o.origin, 'audit state.origin');
  const checkpoint = o.checkpoint === null ? null : str(o.checkpoint, 'audit state.checkpoint');
  const target = o.target === null ? null : str(o.target, 'audit state.target');
  const size = int(o.treeSize, 'audit state.treeSize');
  const levels = arr(o.edge, 'audit state.edge').map((l, i) =>
    arr(l, `audit state.edge[${i}]`).map((h, k) => {
      const b = decodeBase64(str(h, `audit state.edge[${i}][${k}]`), `audit state.edge[${i}][${k}]`);
      if (b.length !== HASH_SIZE) throw new MalformedError(`audit state.edge[${i}][${k}]: not a 32-byte hash`);
      return b;
    })
  );
  const edge: TreeEdge = { size, levels };
  checkEdgeShape(edge);
  const registry = arr(o.registry, 'audit state.registry').map((r, i) => {
    const x = obj(r, `audit state.registry[${i}]`);
    return { index: int(x.index, `audit state.registry[${i}].index`), envelope: str(x.envelope, `audit state.registry[${i}].envelope`) };
  });
  const erased = arr(o.erased, 'audit state.erased').map((r, i) => {
    const x = obj(r, `audit state.erased[${i}]`);
    return { index: int(x.index, `audit state.erased[${i}].index`), name: str(x.name, `audit state.erased[${i}].name`), by: int(x.by, `audit state.erased[${i}].by`) };
  });
  const pendingErasures = arr(o.pendingErasures, 'audit state.pendingErasures').map((r, i) => {
    const x = obj(r, `audit state.pendingErasures[${i}]`);
    return { by: int(x.by, `audit state.pendingErasures[${i}].by`), index: int(x.index, `audit state.pendingErasures[${i}].index`), name: str(x.name, `audit state.pendingErasures[${i}].name`) };
  });
  const c = obj(o.counts, 'audit state.counts');
  const counts: AuditCounts = {};
  for (const [k, v] of Object.entries(c)) counts[k] = int(v, `audit state.counts.${k}`);
  const findings = arr(o.findings, 'audit state.findings').map((f, i) => {
    const x = obj(f, `audit state.findings[${i}]`);
    const kind = str(x.kind, `audit state.findings[${i}].kind`);
    if (!FINDING_KINDS.has(kind)) throw new MalformedError(`audit state.findings[${i}].kind: unknown kind ${quote(kind)}`);
    const out: Finding = { kind: kind as FindingKind, message: str(x.message, `audit state.findings[${i}].message`) };
    return x.index === undefined ? out : { ...out, index: int(x.index, `audit state.findings[${i}].index`) };
  });
  const findingsTotal = int(o.findingsTotal, 'audit state.findingsTotal');
  if (findingsTotal < findings.length) throw new MalformedError('audit state.findingsTotal: fewer than the findings listed');
  return { origin, checkpoint, edge, target, registry, erased, pendingErasures, counts, findings, findingsTotal };
}

/** Every level below the top must exist, and each holds exactly its partial tile. */
function checkEdgeShape(edge: TreeEdge): void {
  let top = 0;
  while (Math.floor(edge.size / 256 ** top) > 0) top++;
  if (edge.levels.length !== top) throw new MalformedError(`audit state.edge: ${edge.levels.length} levels for a tree of size ${edge.size}, want ${top}`);
  edge.levels.forEach((l, level) => {
    const want = tileWidthAt(level, Math.floor(edge.size / 256 ** (level + 1)), edge.size);
    if (l.length !== want) throw new MalformedError(`audit state.edge[${level}]: ${l.length} hashes, want ${want} for a tree of size ${edge.size}`);
  });
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new MalformedError(`${what}: expected an object`);
  return v as Record<string, unknown>;
}
function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new MalformedError(`${what}: expected an array`);
  return v;
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new MalformedError(`${what}: expected a string`);
  return v;
}
function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new MalformedError(`${what}: expected a non-negative integer`);
  return v;
}

/** One signature to check: `publicKey` over `message` (given whole, or as its parts in order). */
export interface SignatureCheck {
  readonly publicKey: Uint8Array;
  readonly message: Uint8Array | readonly Uint8Array[];
  readonly signature: Uint8Array;
}

/** A queued agent signature check: which entry, its leaf, and the key it is checked under. */
interface PendingSignature {
  readonly index: number;
  readonly leaf: Uint8Array;
  readonly key: KeyPeriod;
}

export interface LogAuditOptions {
  /**
   * `agent` (default): every leaf must be a glasslog signed envelope. `any`: leaves that
   * are not envelopes are counted as `raw` and otherwise only hashed (a log that also
   * holds raw entries, spec/http-api.md).
   */
  readonly entries?: 'agent' | 'any';
  /** Checks a batch of signatures; answers one boolean each, never throws for bad input. */
  readonly verifyBatch?: (checks: readonly SignatureCheck[]) => Promise<readonly boolean[]>;
  /** Synchronous Ed25519, for the log's registry entries (default: @noble/ed25519). */
  readonly ed25519?: Ed25519;
}

/** What a pass covers, once its checkpoint is accepted. */
export interface AuditPlan {
  readonly checkpoint: Checkpoint;
  /** The witnesses whose cosignature verified (policy names). */
  readonly cosigned: ReadonlySet<string>;
  /** First leaf the pass reads, and the tree size it ends at. */
  readonly from: number;
  readonly to: number;
  /** Entry bundles to fetch, in order, each at its width for `to` (with the level-0 tile). */
  readonly bundles: ReadonlyArray<{ readonly index: number; readonly width: number }>;
  /** Tiles above level 0 that are new or wider: fetched and compared as the pass goes. */
  readonly upperTiles: readonly HashTile[];
}

export interface AuditSummary {
  readonly origin: string;
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
  /** Tree size already audited before this pass. */
  readonly previousSize: number;
  readonly entriesChecked: number;
  /** This pass's findings, the first {@link MAX_KEPT_FINDINGS} of them. */
  readonly findings: readonly Finding[];
  /** How many findings this pass made in all. */
  readonly findingsCount: number;
  /** The state after the pass, to be saved. */
  readonly state: AuditState;
}

/**
 * One audit pass. Use: {@link begin} with the log's current checkpoint note; then, in
 * order, {@link addBundle} for each planned bundle (with its level-0 tile), awaiting
 * {@link flush} to check the signatures gathered so far; {@link checkTile} for each upper
 * tile; the erasure targets ({@link erasureTargets}, {@link checkErasure}); then
 * {@link finish}. {@link snapshot} gives a state to save between bundles, from which a
 * later pass resumes.
 */
export class LogAudit {
  private readonly mode: 'agent' | 'any';
  private readonly ed: Ed25519;
  private readonly verifyBatch: (checks: readonly SignatureCheck[]) => Promise<readonly boolean[]>;
  private readonly keys = new KeyHistory();
  private readonly logKeys: Uint8Array[];
  private state: AuditState;
  private edge: TreeEdge;
  private plan: AuditPlan | null = null;
  /** The checkpoint note of the pass, verbatim. */
  private note: string | null = null;
  private counts: AuditCounts;
  private registry: Array<{ index: number; envelope: string }>;
  private readonly erased = new Map<string, number>();
  private pending: PendingErasure[];
  /** This pass's findings, the first MAX_KEPT_FINDINGS of them; `foundCount` counts all. */
  private readonly found: Finding[] = [];
  private foundCount = 0;
  /**
   * Signature checks gathered since the last flush, and for each the entry's index, leaf
   * (a view into its bundle) and key. Only these small records wait for the workers: a
   * decoded entry held that long outlived the young generation, and promoting a million of
   * them was most of an audit's garbage-collection time.
   */
  private checks: SignatureCheck[] = [];
  private batch: PendingSignature[] = [];
  /** Full tiles above level 0 rebuilt in this pass, by "level/index", until compared. */
  private readonly upper = new Map<string, Uint8Array>();
  private entriesChecked = 0;
  private nextBundle = 0;

  /**
   * @param trust The log's key, or a tlog-policy (its log keys and quorum).
   * @param state From a previous run ({@link parseAuditState}), or null for a first audit.
   * @throws {MalformedError} If the state's registry does not replay.
   */
  constructor(
    private readonly trust: ReceiptTrust,
    state: AuditState | null,
    private readonly origin: string,
    opts: LogAuditOptions = {}
  ) {
    this.mode = opts.entries ?? 'agent';
    this.ed = opts.ed25519 ?? nobleEd25519;
    this.verifyBatch = opts.verifyBatch ?? (async (checks) => checks.map((c) => safeVerify(this.ed, c)));
    if (state !== null && state.origin !== origin) {
      throw new MalformedError(`audit state: it is for log ${quote(state.origin)}, not ${quote(origin)}`);
    }
    this.state = state ?? newAuditState(origin);
    this.logKeys = logPublicKeys(trust, origin);
    this.edge = this.state.edge;
    this.counts = { ...this.state.counts };
    this.registry = [...this.state.registry];
    for (const r of this.registry) {
      let e: SignedEntry;
      try {
        e = decodeEnvelope(decodeBase64(r.envelope, `audit state.registry ${r.index}`));
        this.keys.apply(r.index, e.entry);
      } catch (err) {
        throw new MalformedError(`audit state.registry: entry ${r.index} does not replay: ${(err as Error).message}`);
      }
    }
    for (const x of this.state.erased) this.erased.set(`${x.index}/${x.name}`, x.by);
    this.pending = [...this.state.pendingErasures];
  }

  /** The tree size audited so far (the edge's size). */
  get size(): number {
    return this.edge.size;
  }

  /**
   * Accepts the log's current checkpoint and plans the pass.
   *
   * @throws {MalformedError}, {VerificationError} If the note does not verify under the
   *   trust, is of another origin, or is smaller than a checkpoint audited (or targeted)
   *   before, or of the same size with another root: the log rolled back or forked.
   */
  begin(note: string): AuditPlan {
    const { checkpoint, cosigned } = verifyTrustedCheckpoint(note, this.trust, 'checkpoint');
    if (checkpoint.origin !== this.origin) {
      throw new VerificationError(`checkpoint: origin ${quote(checkpoint.origin)} is not the audited log ${quote(this.origin)}`);
    }
    for (const [prev, label] of [
      [this.state.checkpoint, 'the last audited checkpoint'],
      [this.state.target, 'the checkpoint the interrupted audit was checking'],
    ] as const) {
      if (prev === null) continue;
      const p = parseCheckpoint(parseNote(prev).text);
      if (checkpoint.treeSize < p.treeSize) {
        throw new VerificationError(
          `checkpoint: the log now signs tree size ${checkpoint.treeSize}, smaller than ${label} (size ${p.treeSize}, root ${encodeBase64(p.rootHash)}): the log rolled back`
        );
      }
      if (checkpoint.treeSize === p.treeSize && !equalBytes(checkpoint.rootHash, p.rootHash)) {
        throw new VerificationError(
          `checkpoint: the log signed two roots for tree size ${p.treeSize}: ${encodeBase64(p.rootHash)} (${label}) and ${encodeBase64(checkpoint.rootHash)} (now): the log forked`
        );
      }
    }
    if (checkpoint.treeSize < this.edge.size) {
      throw new VerificationError(`checkpoint: tree size ${checkpoint.treeSize} is below the ${this.edge.size} entries already audited`);
    }
    const from = this.edge.size;
    const to = checkpoint.treeSize;
    const bundles: Array<{ index: number; width: number }> = [];
    if (from < to) for (let n = Math.floor(from / TILE_WIDTH); n * TILE_WIDTH < to; n++) bundles.push({ index: n, width: tileWidthAt('entries', n, to) });
    const upperTiles = newTiles(from, to).flatMap((t) => (typeof t.level === 'number' && t.level > 0 ? [{ level: t.level, index: t.index, width: t.width }] : []));
    this.plan = { checkpoint, cosigned, from, to, bundles, upperTiles };
    this.note = note;
    this.nextBundle = 0;
    return this.plan;
  }

  /**
   * Checks entry bundle `index` (as planned) and its level-0 tile: decodes and checks
   * each new entry, queues its signature check, and integrates the leaves. Returns the
   * upper tiles this completed, for {@link checkTile}. The queued checks refer to `bundle`:
   * it must not change until the next {@link flush} settles.
   *
   * @throws {VerificationError} If the bundle or tile is not the one planned next or does
   *   not frame the planned number of entries: the tree cannot be rebuilt past it.
   */
  addBundle(index: number, bundle: Uint8Array, tile0: Uint8Array): HashTile[] {
    const plan = this.mustPlan();
    const want = plan.bundles[this.nextBundle];
    if (want === undefined || want.index !== index) throw new RangeError(`addBundle: bundle ${index} is not the next planned (${want?.index ?? 'none'})`);
    let leaves: Uint8Array[];
    try {
      leaves = decodeBundle(bundle, want.width);
    } catch (err) {
      throw new VerificationError(`entry bundle ${index} (width ${want.width}): ${(err as Error).message}`);
    }
    if (tile0.length !== want.width * HASH_SIZE) {
      throw new VerificationError(`tile 0/${index} (width ${want.width}): ${tile0.length} bytes, want ${want.width * HASH_SIZE}`);
    }
    const base = index * TILE_WIDTH;
    const skip = this.edge.size - base; // leaves of this bundle audited by an earlier pass
    const hashes: Uint8Array[] = [];
    for (let k = 0; k < leaves.length; k++) {
      const i = base + k;
      const served = tile0.subarray(k * HASH_SIZE, (k + 1) * HASH_SIZE);
      if (k < skip) {
        const h = leafHash(leaves[k]!);
        const audited = this.edge.levels[0]![k]!;
        if (!equalBytes(h, audited)) {
          this.finding('rewrite', i, `entry ${i}: audited before with leaf hash ${encodeBase64(audited)}, now served in bundle ${index} with leaf hash ${encodeBase64(h)}`);
        }
        continue;
      }
      const h = this.checkEntry(i, leaves[k]!);
      if (!equalBytes(h, served)) {
        this.finding('tile', i, `tile 0/${index}: hash ${k} (entry ${i}) is ${encodeBase64(served)}, but the entry in bundle ${index} has leaf hash ${encodeBase64(h)}`);
      }
      hashes.push(h);
    }
    const r = extendEdge(this.edge, hashes);
    this.edge = r.edge;
    this.nextBundle++;
    const completed: HashTile[] = [];
    for (const { coord, data } of r.fullTiles) {
      if (typeof coord.level === 'number' && coord.level > 0 && coord.width === TILE_WIDTH) {
        this.upper.set(`${coord.level}/${coord.index}`, data);
        completed.push({ level: coord.level, index: coord.index, width: coord.width });
      }
    }
    return completed;
  }

  /**
   * Compares a served tile above level 0 with the one rebuilt: a full tile this pass
   * completed, or (once every bundle is in) a partial tile of the new right edge.
   */
  checkTile(coord: HashTile, served: Uint8Array): void {
    const key = `${coord.level}/${coord.index}`;
    let rebuilt = this.upper.get(key);
    if (rebuilt === undefined) {
      const plan = this.mustPlan();
      if (this.nextBundle !== plan.bundles.length) throw new RangeError(`checkTile: tile ${key} is neither completed nor final yet`);
      const hashes = this.edge.levels[coord.level] ?? [];
      if (coord.width !== hashes.length || Math.floor(this.edge.size / 256 ** (coord.level + 1)) !== coord.index) {
        throw new RangeError(`checkTile: tile ${key} of width ${coord.width} is not on the right edge`);
      }
      rebuilt = concat(hashes);
    }
    this.upper.delete(key);
    const what = `tile ${coord.level}/${coord.index}${coord.width < TILE_WIDTH ? `.p/${coord.width}` : ''}`;
    if (served.length !== rebuilt.length) {
      this.finding('tile', undefined, `${what}: served ${served.length} bytes, want ${rebuilt.length}`);
      return;
    }
    for (let k = 0; k * HASH_SIZE < rebuilt.length; k++) {
      const a = served.subarray(k * HASH_SIZE, (k + 1) * HASH_SIZE);
      const b = rebuilt.subarray(k * HASH_SIZE, (k + 1) * HASH_SIZE);
      if (!equalBytes(a, b)) {
        this.finding('tile', undefined, `${what}: hash ${k} is ${encodeBase64(a)}, rebuilt from the entries it is ${encodeBase64(b)}`);
        return;
      }
    }
  }

  /**
   * Checks the signatures queued so far (the caller bounds how many flushes overlap). The
   * checks are handed to verifyBatch now, and not kept while it runs.
   */
  flush(): Promise<void> {
    const batch = this.batch;
    const checks = this.checks;
    this.batch = [];
    this.checks = [];
    if (batch.length === 0) return Promise.resolve();
    let ok: Promise<readonly boolean[]>;
    try {
      ok = this.verifyBatch(checks);
    } catch (err) {
      ok = Promise.reject(err as Error);
    }
    return this.settle(batch, ok);
  }

  private async settle(batch: readonly PendingSignature[], results: Promise<readonly boolean[]>): Promise<void> {
    let ok: readonly boolean[];
    try {
      ok = await results;
    } catch (err) {
      throw new VerificationError(`signature checks failed to run: ${(err as Error).message}`);
    }
    batch.forEach((b, k) => {
      if (ok[k] !== true) {
        // The message is made only for a failure (a million entries need no million
        // strings), from the leaf, which decoded when it was queued.
        const v = readEnvelope(b.leaf);
        const e = v.entry as EventEntry | RunCloseEntry;
        const check = { publicKey: b.key.publicKey, message: entrySigningParts(v.entryBytes), signature: v.signature };
        const what = `the ${e.type} of agent ${quote(e.agent)} run ${quote(e.run)} seq ${e.seq}: its signature does not verify under the agent's key ${quote(b.key.vkey)} (installed by entry ${b.key.from})`;
        this.finding('signature', b.index, `entry ${b.index}: ${what}${this.otherKey(e.agent, b.index, check)}`);
      }
    });
  }

  /** Erasures whose named event is still to be checked (after the last bundle). */
  erasureTargets(): readonly PendingErasure[] {
    return [...this.pending];
  }

  /**
   * Checks an erasure's target: `leaf` is the entry at `p.index`, with its inclusion
   * proof in the pass's checkpoint (whose root the pass rebuilt).
   */
  checkErasure(p: PendingErasure, leaf: Uint8Array, proof: readonly Uint8Array[]): void {
    const plan = this.mustPlan();
    const at = `entry ${p.by} (payload.erase of ${quote(p.name)} of entry ${p.index})`;
    this.pending = this.pending.filter((x) => x !== p && !(x.by === p.by && x.index === p.index && x.name === p.name));
    let root: Uint8Array | null = null;
    try {
      root = rootFromInclusionProof(leafHash(leaf), p.index, plan.checkpoint.treeSize, [...proof]);
    } catch {
      // a malformed proof: reported below as not leading to the root
    }
    if (root === null || !equalBytes(root, plan.checkpoint.rootHash)) {
      this.finding('erasure', p.by, `${at}: the log served an entry ${p.index} and an inclusion proof that do not lead to the checkpoint's root, so the erased entry cannot be checked`);
      return;
    }
    let e: SignedEntry;
    try {
      e = decodeEnvelope(leaf);
    } catch {
      this.finding('erasure', p.by, `${at}: entry ${p.index} is not an agent entry`);
      return;
    }
    if (e.entry.type !== 'event' || e.entry.payloads?.[p.name] === undefined) {
      this.finding('erasure', p.by, `${at}: entry ${p.index} (${e.entry.type}) commits to no payload ${quote(p.name)}`);
    }
  }

  /**
   * Ends the pass: all signatures must have been flushed and every planned bundle added.
   * The new state advances to the checkpoint only if the rebuilt root is its root.
   *
   * @throws {VerificationError} If the rebuilt root differs: the log's entries do not
   *   make the tree it signed, or do not extend the tree audited before.
   */
  finish(): AuditSummary {
    const plan = this.mustPlan();
    if (this.nextBundle !== plan.bundles.length) throw new RangeError(`finish: ${plan.bundles.length - this.nextBundle} bundles not added`);
    if (this.batch.length > 0) throw new RangeError('finish: signatures not flushed');
    const root = edgeRootHash(this.edge);
    if (!equalBytes(root, plan.checkpoint.rootHash)) {
      const prev = this.state.checkpoint === null ? null : parseCheckpoint(parseNote(this.state.checkpoint).text);
      throw new VerificationError(
        `root: the entries rebuild tree size ${plan.to} to root ${encodeBase64(root)}, but the log signed root ${encodeBase64(plan.checkpoint.rootHash)}` +
          (prev === null ? '' : `; either the new entries it serves are not the ones it signed, or its tree does not extend the audited tree of size ${prev.treeSize} (root ${encodeBase64(prev.rootHash)}): a fork`) +
          (this.foundCount === 0 ? '' : `; ${this.foundCount} findings, the first: ${this.found.slice(0, 3).map((f) => f.message).join('; ')}`)
      );
    }
    for (const key of this.upper.keys()) {
      this.finding('tile', undefined, `tile ${key}: rebuilt but never compared with the served tile`);
    }
    this.upper.clear();
    const state = this.snapshotState(null, this.note);
    this.state = state;
    return {
      origin: this.origin,
      treeSize: plan.to,
      rootHash: root,
      previousSize: plan.from,
      entriesChecked: this.entriesChecked,
      findings: [...this.found],
      findingsCount: this.foundCount,
      state,
    };
  }

  /**
   * The state to save mid-pass, between bundles, once every flush has settled: a later
   * pass resumes from here, and its checkpoint must reach at least the target's size.
   */
  snapshot(): AuditState {
    this.mustPlan();
    if (this.batch.length > 0) throw new RangeError('snapshot: signatures not flushed');
    return this.snapshotState(this.note, this.state.checkpoint);
  }

  /** This pass's findings so far. */
  findings(): readonly Finding[] {
    return [...this.found];
  }

  private snapshotState(target: string | null, checkpoint: string | null): AuditState {
    const all = [...this.state.findings, ...this.found];
    return {
      origin: this.origin,
      checkpoint,
      edge: this.edge,
      target,
      registry: [...this.registry],
      erased: [...this.erased].map(([k, by]) => {
        const slash = k.indexOf('/');
        return { index: Number(k.slice(0, slash)), name: k.slice(slash + 1), by };
      }),
      pendingErasures: [...this.pending],
      counts: { ...this.counts },
      findings: all.slice(0, MAX_KEPT_FINDINGS),
      findingsTotal: this.state.findingsTotal + this.foundCount,
    };
  }

  private mustPlan(): AuditPlan {
    if (this.plan === null) throw new RangeError('LogAudit: begin() first');
    return this.plan;
  }

  private finding(kind: FindingKind, index: number | undefined, message: string): void {
    this.foundCount++;
    if (this.found.length < MAX_KEPT_FINDINGS) this.found.push(index === undefined ? { kind, message } : { kind, index, message });
  }

  private count(type: string): void {
    this.counts[type] = (this.counts[type] ?? 0) + 1;
  }

  /**
   * Decodes and checks one new leaf at index `i` (a view into its bundle, which is not
   * changed while its signature check waits); queues its signature check. Returns its leaf
   * hash.
   */
  private checkEntry(i: number, leaf: Uint8Array): Uint8Array {
    this.entriesChecked++;
    const h = leafHash(leaf);
    let e: EnvelopeView;
    try {
      e = readEnvelope(leaf);
    } catch (err) {
      if (this.mode === 'any') {
        this.count('raw');
        return h;
      }
      this.count('invalid');
      this.finding('envelope', i, `entry ${i} (leaf hash ${encodeBase64(h)}): ${err instanceof TlogError ? err.message : String(err)}`);
      return h;
    }
    this.checkSigned(i, e, leaf);
    return h;
  }

  private checkSigned(i: number, e: EnvelopeView, leaf: Uint8Array): void {
    const entry = e.entry;
    this.count(entry.type);
    // In parts: the worker pool packs them without a concatenation.
    const message = entrySigningParts(e.entryBytes);
    if (entry.type !== 'event' && entry.type !== 'run.close') {
      // Registry entries change which keys are valid for what follows: checked here, in
      // order, before they are applied, so no entry is judged by a forged key change.
      if (!this.logKeys.some((k) => safeVerify(this.ed, { publicKey: k, message, signature: e.signature }))) {
        this.finding('signature', i, `entry ${i}: the ${entry.type} entry's signature by the log key does not verify`);
        return;
      }
      if (entry.type === 'payload.erase') this.noteErasure(i, entry);
      else this.applyRegistry(i, entry, leaf);
      return;
    }
    const agent = entry.agent;
    const key = this.keys.keyAt(agent, i);
    if (key === null) {
      this.finding('key', i, `entry ${i} (${entry.type} of agent ${quote(agent)}): ${this.noKeyReason(agent, i)}`);
      return;
    }
    this.checks.push({ publicKey: key.publicKey, message, signature: e.signature });
    this.batch.push({ index: i, leaf, key });
  }

  /** For a failed agent signature: names another key of the agent it verifies under. */
  private otherKey(agent: string, i: number, c: SignatureCheck): string {
    for (const p of this.keys.periods(agent)) {
      if (equalBytes(p.publicKey, c.publicKey) || !safeVerify(this.ed, { ...c, publicKey: p.publicKey })) continue;
      if (p.from >= i) return `; it is signed with the agent's key ${quote(p.vkey)}, installed only later by entry ${p.from}`;
      return `; it is signed with the agent's key ${quote(p.vkey)}, ${p.endedBy} by entry ${p.until} before it`;
    }
    return '';
  }

  private noKeyReason(agent: string, i: number): string {
    const periods = this.keys.periods(agent);
    if (periods.length === 0) return 'the agent was never registered before it';
    const last = [...periods].reverse().find((p) => p.from < i);
    if (last === undefined) return `the agent's first key was installed later, by entry ${periods[0]!.from}`;
    return `the agent's key ${quote(last.vkey)} was ${last.endedBy} by entry ${last.until}, before it`;
  }

  private applyRegistry(i: number, entry: Entry, bytes: Uint8Array): void {
    try {
      this.keys.apply(i, entry);
    } catch (err) {
      this.finding('registry', i, `entry ${i}: ${(err as Error).message}`);
      return;
    }
    this.registry.push({ index: i, envelope: encodeBase64(bytes) });
  }

  private noteErasure(i: number, entry: Extract<Entry, { type: 'payload.erase' }>): void {
    const key = `${entry.index}/${entry.name}`;
    const before = this.erased.get(key);
    if (entry.index >= i) {
      this.finding('erasure', i, `entry ${i}: payload.erase names entry ${entry.index}, which is not before it`);
      return;
    }
    if (before !== undefined) {
      this.finding('erasure', i, `entry ${i}: payload ${quote(entry.name)} of entry ${entry.index} was already erased by entry ${before}`);
      return;
    }
    this.erased.set(key, i);
    this.pending.push({ by: i, index: entry.index, name: entry.name });
  }
}

function concat(hashes: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(hashes.length * HASH_SIZE);
  hashes.forEach((h, k) => out.set(h, k * HASH_SIZE));
  return out;
}

function safeVerify(ed: Ed25519, c: SignatureCheck): boolean {
  try {
    const m = c.message instanceof Uint8Array ? c.message : concatBytes(...c.message);
    return ed.verify(c.publicKey, m, c.signature) === true;
  } catch {
    return false;
  }
}

/** The Ed25519 public keys the log may sign its own entries with. */
function logPublicKeys(trust: ReceiptTrust, origin: string): Uint8Array[] {
  const vkeys: string[] = [];
  if ('logKey' in trust) vkeys.push(trust.logKey);
  else for (const l of trust.policy.logs) if (l.origin === origin) vkeys.push(l.vkey);
  if (vkeys.length === 0 || ('policy' in trust && policyLog(trust.policy, origin) === undefined)) {
    throw new MalformedError(`origin ${quote(origin)} is not a log of the policy`);
  }
  return vkeys.map((v) => {
    const k = parseVerifierKey(v.trim());
    if (k.alg !== ALG_ED25519) throw new MalformedError(`the log key ${quote(v)} is not an Ed25519 (type 0x01) key`);
    return k.publicKey;
  });
}
