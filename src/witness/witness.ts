/**
 * A C2SP tlog-witness: it cosigns a log's checkpoint only if it is a consistent extension
 * of the last checkpoint it cosigned for that origin, so an honest witness cosigns at most
 * one branch of a log's history. Beyond the spec it collects fork evidence (two log-signed
 * checkpoints that cannot be one history, with the hashes that prove it), stops cosigning
 * a log it holds evidence against until an operator resolves it, and raises an alarm.
 *
 * Gossip with peer witnesses and pulling from logs live in ./gossip.ts; this class is the
 * state machine they and the HTTP layer drive.
 */
import { MAX_ADD_CHECKPOINT_SIZE, parseAddCheckpoint } from '../core/add-checkpoint.js';
import { parseCheckpoint, type Checkpoint } from '../core/checkpoint.js';
import { equalBytes, quote, toHex, utf8 } from '../core/encoding.js';
import { ForbiddenError, MalformedError, NotFoundError, SizeConflictError, TooLargeError, VerificationError } from '../core/errors.js';
import { EMPTY_ROOT } from '../core/hash.js';
import { verifyConsistency } from '../core/tree.js';
import { sha256 } from '@noble/hashes/sha2.js';
import type { Cosigner } from '../note/cosignature.js';
import { formatNote, formatSignatureLine, openNote, parseNote, type Note, type NoteSignature } from '../note/note.js';
import type { WitnessCheckpoint, WitnessStore } from '../storage/witness-store.js';
import type { Policy, PolicyLog } from '../verify/policy.js';
import { checkpointOf, compareCheckpoints, verifyForkEvidence } from '../verify/evidence.js';
import { Counter, Gauge, Registry } from '../metrics.js';
import type { TileClient } from '../client/tile-client.js';

/** One line per (name, key ID). */
function dedupe(sigs: readonly NoteSignature[]): NoteSignature[] {
  const seen = new Set<string>();
  return sigs.filter((s) => {
    const k = `${s.name}\n${s.keyId}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The lowercase hex SHA-256 of an origin: its path segment on the monitoring prefix. */
export function originHash(origin: string): string {
  return toHex(sha256(utf8(origin)));
}

export interface Alarm {
  readonly origin: string;
  readonly kind: 'fork' | 'rejected' | 'unreachable';
  readonly message: string;
  /** For a fork: the evidence file. */
  readonly evidence?: string;
}

export interface WitnessOptions {
  readonly store: WitnessStore;
  readonly cosigner: Cosigner;
  readonly policy: Policy;
  /** Current time in milliseconds (tests pin it). */
  readonly now?: () => number;
  readonly metrics?: Registry;
  /** Raised for every fork found and every validly signed but inconsistent request. */
  readonly onAlarm?: (alarm: Alarm) => void;
  /** Reads a log's tiles (for fork evidence); default: none, so evidence needs equal sizes. */
  readonly tiles?: (log: PolicyLog) => TileClient | undefined;
}

/** A log-signed checkpoint, verified. */
export interface SignedCheckpoint {
  readonly note: string;
  readonly checkpoint: Checkpoint;
}

export class Witness {
  private policy: Policy;
  private byHash = new Map<string, PolicyLog>();
  private readonly store: WitnessStore;
  private readonly cosigner: Cosigner;
  private readonly now: () => number;
  private readonly onAlarm: (alarm: Alarm) => void;
  private readonly tiles: (log: PolicyLog) => TileClient | undefined;
  /**
   * The stored checkpoint per origin. This process holds the store's witness lock, so
   * only it writes; the cache is dropped for an origin whenever a compare-and-swap fails.
   */
  private readonly cache = new Map<string, WitnessCheckpoint>();
  /** Origins with open fork evidence: refused until an operator resolves them. */
  private readonly quarantined = new Set<string>();
  private readonly mRequests: Counter;
  private readonly mForks: Counter;
  private readonly mAlarms: Counter;

  private constructor(opts: WitnessOptions) {
    this.store = opts.store;
    this.cosigner = opts.cosigner;
    this.policy = opts.policy;
    this.now = opts.now ?? Date.now;
    this.onAlarm = opts.onAlarm ?? (() => undefined);
    this.tiles = opts.tiles ?? (() => undefined);
    this.usePolicy(opts.policy);
    const m = opts.metrics ?? new Registry();
    this.mRequests = m.register(new Counter('glasslog_witness_add_checkpoint_total', 'add-checkpoint requests by HTTP status'));
    this.mForks = m.register(new Counter('glasslog_witness_forks_total', 'Forks detected (evidence stored), by origin'));
    this.mAlarms = m.register(new Counter('glasslog_witness_alarms_total', 'Alarms raised, by kind'));
    m.register(new Gauge('glasslog_witness_quarantined_logs', 'Logs with open fork evidence, refused until resolved', () => this.quarantined.size));
  }

  static async open(opts: WitnessOptions): Promise<Witness> {
    const w = new Witness(opts);
    await opts.store.migrate();
    await opts.store.lockWitness();
    for (const log of opts.policy.logs) {
      if ((await opts.store.openForks(log.origin)).length > 0) w.quarantined.add(log.origin);
    }
    return w;
  }

  /**
   * Replaces the trusted logs and peers (a reloaded policy file). A log that comes (back)
   * into the policy with open fork evidence is quarantined before it is trusted.
   */
  async setPolicy(policy: Policy): Promise<void> {
    for (const log of policy.logs) {
      if (!this.quarantined.has(log.origin) && (await this.store.openForks(log.origin)).length > 0) this.quarantined.add(log.origin);
    }
    this.usePolicy(policy);
  }

  private usePolicy(policy: Policy): void {
    this.policy = policy;
    this.byHash = new Map(policy.logs.map((l) => [originHash(l.origin), l]));
  }

  currentPolicy(): Policy {
    return this.policy;
  }

  /** The witness key's name and ID (as on its cosignature lines). */
  get name(): string {
    return this.cosigner.name;
  }

  get keyId(): number {
    return this.cosigner.keyId;
  }

  /** Counts an add-checkpoint outcome by status (the HTTP layer reports it). */
  countRequest(status: number): void {
    this.mRequests.inc({ status: String(status) });
  }

  private logFor(origin: string): PolicyLog | undefined {
    return this.policy.logs.find((l) => l.origin === origin);
  }

  /**
   * Verifies a checkpoint note against a trusted log: its origin is in the policy, and it
   * carries a valid signature by the log's key and no invalid one. Returns the note with
   * only the log's verified signatures.
   * @throws {MalformedError} 400, {NotFoundError} 404, {ForbiddenError} 403
   */
  verifyLogSigned(note: string): SignedCheckpoint & { log: PolicyLog; parsed: Note } {
    const parsed = parseNote(note);
    const checkpoint = parseCheckpoint(parsed.text);
    // A policy may list several keys for one origin (a key rotation): any of them counts.
    const keys = this.policy.logs.filter((l) => l.origin === checkpoint.origin);
    const log = keys[0];
    if (!log) throw new NotFoundError(`unknown log origin ${quote(checkpoint.origin)}`);
    let verified;
    try {
      verified = openNote(note, keys.map((l) => l.verifier)).verified;
    } catch (err) {
      if (err instanceof VerificationError) throw new ForbiddenError(`checkpoint for ${quote(checkpoint.origin)}: ${err.message}`);
      throw err;
    }
    // openNote, like go-note, checks one line per known key and skips repeats; tlog-witness
    // (HEAD) refuses a note in which ANY line by a trusted key fails, so check them all.
    const text = utf8(parsed.text);
    for (const sig of parsed.signatures) {
      const key = keys.find((l) => l.verifier.name === sig.name && l.verifier.keyId === sig.keyId);
      if (key && !key.verifier.verify(text, sig.signature)) {
        throw new ForbiddenError(`checkpoint for ${quote(checkpoint.origin)}: a signature line by the log's key ${quote(sig.name)} does not verify`);
      }
    }
    return { note: formatNote(parsed.text, dedupe(verified)), checkpoint, log, parsed };
  }

  /**
   * POST add-checkpoint: the checks of c2sp.org/tlog-witness in the spec's order, then an
   * atomic compare-and-swap of the stored checkpoint. Returns the cosignature line(s).
   * @throws {MalformedError} 400 (bad body; old > size), {NotFoundError} 404,
   *   {ForbiddenError} 403 (no trusted signature, a bad one, or a log under quarantine),
   *   {SizeConflictError} 409, {VerificationError} 422
   */
  async addCheckpoint(body: string | Uint8Array): Promise<string> {
    if (typeof body !== 'string') {
      if (body.length > MAX_ADD_CHECKPOINT_SIZE) throw new TooLargeError(`add-checkpoint request is larger than ${MAX_ADD_CHECKPOINT_SIZE} bytes`);
      try {
        body = new TextDecoder('utf-8', { fatal: true }).decode(body);
      } catch {
        throw new MalformedError('malformed add-checkpoint request: not valid UTF-8');
      }
    }
    const req = parseAddCheckpoint(body);
    const { note, checkpoint: cp, parsed } = this.verifyLogSigned(req.checkpoint);
    const origin = cp.origin;
    if (req.oldSize > cp.treeSize) throw new MalformedError(`old size ${req.oldSize} is larger than the checkpoint's size ${cp.treeSize}`);
    if (this.quarantined.has(origin)) {
      throw new ForbiddenError(`this witness holds fork evidence against ${quote(origin)} and cosigns none of its checkpoints until an operator resolves it`);
    }
    const stored = await this.stored(origin);
    const storedSize = stored?.treeSize ?? 0;
    if (req.oldSize !== storedSize) throw new SizeConflictError(`old size ${req.oldSize} is not ${storedSize}, the size this witness last cosigned`, storedSize);
    if (cp.treeSize === 0 && !equalBytes(cp.rootHash, EMPTY_ROOT)) throw new VerificationError('a checkpoint of size 0 must have the empty-tree root');
    if (stored) {
      try {
        verifyConsistency(stored.treeSize, cp.treeSize, [...req.proof], stored.rootHash, cp.rootHash);
      } catch (err) {
        if (err instanceof VerificationError) {
          // Equal sizes prove a fork from the two notes alone: store the evidence (and stop
          // cosigning the log) before answering. Other sizes need the log's tiles, which may
          // take a while: that check runs in the background.
          const inspection = this.inspect(stored, { note, checkpoint: cp }, err.message);
          if (stored.treeSize === cp.treeSize) await inspection;
        }
        throw err;
      }
    } else if (req.proof.length !== 0) {
      throw new VerificationError('a consistency proof from size 0 must be empty');
    }
    const line = this.cosigner.cosign(parsed.text, Math.floor(this.now() / 1000));
    const next: WitnessCheckpoint = {
      origin,
      treeSize: cp.treeSize,
      rootHash: cp.rootHash,
      note: formatNote(parsed.text, [...parseNote(note).signatures, line]),
    };
    const r = await this.store.compareAndSwap(stored ? { treeSize: stored.treeSize, rootHash: stored.rootHash } : null, next);
    if (r.stored) this.cache.set(origin, next);
    else this.cache.delete(origin);
    if (!r.stored) {
      const size = r.current?.treeSize ?? 0;
      throw new SizeConflictError(`another request moved this witness to size ${size} first`, size);
    }
    return formatSignatureLine(line);
  }

  /**
   * A validly signed checkpoint was refused for inconsistency: a bad proof from a buggy
   * log, or a fork. Equal sizes with different roots prove a fork at once; otherwise the
   * log's tiles may prove it. Never throws.
   */
  private async inspect(stored: WitnessCheckpoint, offered: SignedCheckpoint, why: string): Promise<void> {
    try {
      this.alarm({ origin: stored.origin, kind: 'rejected', message: `refused a validly signed checkpoint of size ${offered.checkpoint.treeSize}: ${why}` });
      await this.compare({ note: stored.note, checkpoint: checkpointOf(stored.note) }, offered);
    } catch (err) {
      console.error(`glasslog witness: checking ${quote(stored.origin)} for a fork failed: ${(err as Error).message}`);
    }
  }

  /**
   * Compares two log-signed checkpoints of one origin; stores evidence and raises the
   * alarm if they are a fork. Reads the larger tree from the log's tiles when sizes differ.
   */
  async compare(a: SignedCheckpoint, b: SignedCheckpoint): Promise<ReturnType<typeof compareCheckpoints>> {
    const origin = a.checkpoint.origin;
    const log = this.logFor(origin);
    const n = Math.max(a.checkpoint.treeSize, b.checkpoint.treeSize);
    const sameSize = a.checkpoint.treeSize === b.checkpoint.treeSize;
    const client = log && !sameSize ? this.tiles(log) : undefined;
    let result: ReturnType<typeof compareCheckpoints>;
    if (client) {
      try {
        result = await client.withTree(n, (node) => compareCheckpoints(a, b, node));
      } catch (err) {
        result = { kind: 'unproven', reason: `could not read the log's tiles: ${(err as Error).message}` };
      }
    } else {
      result = compareCheckpoints(a, b, undefined);
    }
    if (result.kind === 'fork') await this.recordFork(origin, result.evidence);
    return result;
  }

  /** Stores verified fork evidence, quarantines the log and raises the alarm. */
  async recordFork(origin: string, evidence: string): Promise<void> {
    const log = this.logFor(origin);
    if (!log) throw new NotFoundError(`unknown log origin ${quote(origin)}`);
    const fork = verifyForkEvidence(evidence, this.policy.logs.filter((l) => l.origin === origin).map((l) => l.verifier));
    if (fork.origin !== origin) throw new VerificationError(`fork evidence is about ${quote(fork.origin)}, not ${quote(origin)}`);
    const known = (await this.store.forks(origin)).some((f) => f.evidence === evidence);
    const record = await this.store.recordFork(origin, evidence);
    // Evidence an operator already resolved stays resolved (the store does not reopen it).
    if (record.resolvedAt !== null) return;
    this.quarantined.add(origin);
    if (known) return;
    this.mForks.inc({ origin });
    this.alarm({ origin, kind: 'fork', message: `fork detected: the log signed two inconsistent checkpoints; evidence at /${originHash(origin)}/fork-evidence`, evidence });
  }

  alarm(a: Alarm): void {
    this.mAlarms.inc({ kind: a.kind });
    console.error(`glasslog witness: ALARM ${a.kind} ${quote(a.origin)}: ${a.message}`);
    try {
      this.onAlarm(a);
    } catch (err) {
      console.error(`glasslog witness: alarm hook failed: ${(err as Error).message}`);
    }
  }

  private async stored(origin: string): Promise<WitnessCheckpoint | null> {
    const hit = this.cache.get(origin);
    if (hit) return hit;
    const cp = await this.store.latest(origin);
    if (cp) {
      if (this.cache.size >= 10_000) this.cache.clear();
      this.cache.set(origin, cp);
    }
    return cp;
  }

  /** The log whose origin hashes to `hash`. @throws {NotFoundError} */
  private logByHash(hash: string): PolicyLog {
    const log = this.byHash.get(hash);
    if (!log) throw new NotFoundError(`no log with origin hash ${quote(hash.slice(0, 64))} is configured`);
    return log;
  }

  /** GET <hash>/checkpoint: the latest checkpoint cosigned for the log. @throws {NotFoundError} */
  async monitorCheckpoint(hash: string): Promise<string> {
    const log = this.logByHash(hash);
    const cp = await this.stored(log.origin);
    if (!cp) throw new NotFoundError(`this witness has not cosigned a checkpoint for ${quote(log.origin)}`);
    return cp.note;
  }

  /** The latest verified checkpoint this witness holds for an origin, or null. */
  async latest(origin: string): Promise<SignedCheckpoint | null> {
    const cp = await this.stored(origin);
    return cp ? { note: cp.note, checkpoint: checkpointOf(cp.note) } : null;
  }

  /** GET <hash>/fork-evidence: the oldest open evidence, else the newest resolved one. */
  async forkEvidence(hash: string): Promise<{ evidence: string; open: boolean; detectedAt: Date }> {
    const log = this.logByHash(hash);
    const open = await this.store.openForks(log.origin);
    const f = open[0] ?? (await this.store.forks(log.origin))[0];
    if (!f) throw new NotFoundError(`no fork evidence for ${quote(log.origin)}`);
    return { evidence: f.evidence, open: f.resolvedAt === null, detectedAt: f.detectedAt };
  }

  /**
   * An operator resolved the fork: the log may be cosigned again, from the checkpoint this
   * witness holds (which an operator may reset by other means). Returns how many records
   * were closed.
   */
  async resolveForks(hash: string): Promise<number> {
    const log = this.logByHash(hash);
    const n = await this.store.resolveForks(log.origin);
    this.quarantined.delete(log.origin);
    return n;
  }

  isQuarantined(origin: string): boolean {
    return this.quarantined.has(origin);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
