/**
 * What a witness does on its own schedule:
 *
 * - gossip: fetch, from every peer witness in the policy (`witness <name> <vkey> <url>`),
 *   the checkpoint it cosigned for each trusted log (its monitoring endpoint,
 *   `<url>/<origin hash>/checkpoint`) and any fork evidence it holds
 *   (`<url>/<origin hash>/fork-evidence`). Every two log-signed checkpoints of one origin
 *   (ours and the peers') are compared; evidence a peer holds is checked with the log's key
 *   and adopted. A log that shows different histories to different witnesses is caught in
 *   one round by the witness that can read the larger tree from the log's tiles, and by
 *   every other witness in the next round through the evidence.
 * - pull: for each trusted log with a URL (`log <vkey> <url>`), fetch its checkpoint, build
 *   the consistency proof from its tiles, and cosign through the same checks as a push.
 */
import { formatAddCheckpoint } from '../core/add-checkpoint.js';
import { parseCheckpoint } from '../core/checkpoint.js';
import { quote, toHex } from '../core/encoding.js';
import { SizeConflictError, VerificationError } from '../core/errors.js';
import { proveConsistency } from '../core/tree.js';
import { TileClient } from '../client/tile-client.js';
import { openNote } from '../note/note.js';
import { verifyForkEvidence } from '../verify/evidence.js';
import type { PolicyLog, PolicyWitness } from '../verify/policy.js';
import { originHash, type SignedCheckpoint, type Witness } from './witness.js';

export interface GossipOptions {
  readonly fetch?: typeof fetch;
  readonly timeoutMs?: number;
}

export interface GossipReport {
  /** Peer checkpoints fetched and verified. */
  readonly checkpoints: number;
  /** Pairs compared and found consistent. */
  readonly consistent: number;
  /** Forks found (new evidence stored, including evidence adopted from peers). */
  readonly forks: number;
  /** Pairs that could not be decided (the larger tree's hashes were not available). */
  readonly unproven: number;
  /** Peers or logs that could not be reached, with why. */
  readonly errors: readonly string[];
}

export class Gossip {
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;
  /** Pairs already found consistent, so a quiet log costs no tile fetches. */
  private readonly settled = new Set<string>();

  constructor(
    private readonly witness: Witness,
    opts: GossipOptions = {}
  ) {
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Reads a log's tiles (the witness's TileClient factory uses the same fetch). */
  tileClient(log: PolicyLog): TileClient | undefined {
    return log.url ? new TileClient(log.url, { fetch: this.fetchFn, timeoutMs: this.timeoutMs }) : undefined;
  }

  private peers(): PolicyWitness[] {
    const me = this.witness;
    return me.currentPolicy().witnesses.filter((w) => w.url && !(w.verifier.name === me.name && w.verifier.keyId === me.keyId));
  }

  private async get(url: string): Promise<string | null> {
    const res = await this.fetchFn(url, { signal: AbortSignal.timeout(this.timeoutMs) });
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new Error(`GET ${url}: status ${res.status}`);
    }
    const text = await res.text();
    if (text.length > 64 * 1024) throw new Error(`GET ${url}: body too large`);
    return text;
  }

  /** One gossip round over every peer and every trusted log. */
  async gossipRound(): Promise<GossipReport> {
    let checkpoints = 0;
    let consistent = 0;
    let forks = 0;
    let unproven = 0;
    const errors: string[] = [];
    const peers = this.peers();
    for (const log of this.witness.currentPolicy().logs) {
      const hash = originHash(log.origin);
      const views: SignedCheckpoint[] = [];
      const own = await this.witness.latest(log.origin);
      if (own) views.push(own);
      await Promise.all(
        peers.map(async (peer) => {
          const base = peer.url!.replace(/\/+$/, '');
          try {
            const note = await this.get(`${base}/${hash}/checkpoint`);
            if (note !== null) {
              const checkpoint = parseCheckpoint(openNote(note, [log.verifier]).text);
              if (checkpoint.origin !== log.origin) throw new VerificationError(`serves a checkpoint for ${quote(checkpoint.origin)} at the path of ${quote(log.origin)}`);
              views.push({ note, checkpoint });
              checkpoints++;
            }
          } catch (err) {
            errors.push(`peer ${peer.name}: checkpoint of ${log.origin}: ${(err as Error).message}`);
          }
          try {
            const evidence = await this.get(`${base}/${hash}/fork-evidence`);
            if (evidence !== null && !this.witness.isQuarantined(log.origin)) {
              verifyForkEvidence(evidence, [log.verifier]);
              await this.witness.recordFork(log.origin, evidence);
              forks++;
            }
          } catch (err) {
            errors.push(`peer ${peer.name}: fork evidence for ${log.origin}: ${(err as Error).message}`);
          }
        })
      );
      // Every pair once; pairs of identical checkpoints need no work.
      for (let i = 0; i < views.length; i++) {
        for (let j = i + 1; j < views.length; j++) {
          const a = views[i]!.checkpoint;
          const b = views[j]!.checkpoint;
          const key = pairKey(log.origin, a.treeSize, a.rootHash, b.treeSize, b.rootHash);
          if (this.settled.has(key)) {
            consistent++;
            continue;
          }
          let r;
          try {
            r = await this.witness.compare(views[i]!, views[j]!);
          } catch (err) {
            errors.push(`comparing sizes ${a.treeSize} and ${b.treeSize} of ${log.origin}: ${(err as Error).message}`);
            continue;
          }
          if (r.kind === 'consistent') {
            consistent++;
            this.remember(key);
          } else if (r.kind === 'fork') {
            forks++;
          } else {
            unproven++;
          }
        }
      }
    }
    return { checkpoints, consistent, forks, unproven, errors };
  }

  private remember(key: string): void {
    if (this.settled.size > 10_000) this.settled.clear();
    this.settled.add(key);
  }

  /**
   * One pull round: for every trusted log with a URL, cosign its current checkpoint if it
   * is newer than the one held. Returns per-log outcomes.
   */
  async pullRound(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const log of this.witness.currentPolicy().logs) {
      if (!log.url) continue;
      try {
        out.set(log.origin, await this.pull(log));
      } catch (err) {
        out.set(log.origin, `error: ${(err as Error).message}`);
      }
    }
    return out;
  }

  private async pull(log: PolicyLog): Promise<string> {
    const client = this.tileClient(log)!;
    const note = await client.checkpoint();
    const offered = this.witness.verifyLogSigned(note);
    if (offered.checkpoint.origin !== log.origin) {
      throw new VerificationError(`the log at ${log.url} serves a checkpoint for ${quote(offered.checkpoint.origin)}, not ${quote(log.origin)}`);
    }
    const held = await this.witness.latest(log.origin);
    const oldSize = held?.checkpoint.treeSize ?? 0;
    const newSize = offered.checkpoint.treeSize;
    if (held && newSize < oldSize) {
      await this.witness.compare(held, offered);
      this.witness.alarm({ origin: log.origin, kind: 'rejected', message: `the log serves size ${newSize}, smaller than the size ${oldSize} this witness cosigned` });
      return `behind (${newSize} < ${oldSize})`;
    }
    if (held && newSize === oldSize) {
      await this.witness.compare(held, offered);
      return 'unchanged';
    }
    const proof = oldSize === 0 ? [] : await client.withTree(newSize, (node) => proveConsistency(oldSize, newSize, node));
    try {
      await this.witness.addCheckpoint(formatAddCheckpoint({ oldSize, proof, checkpoint: note }));
    } catch (err) {
      if (err instanceof SizeConflictError) return 'raced with a push';
      throw err;
    }
    return `cosigned ${newSize}`;
  }
}

function pairKey(origin: string, m: number, a: Uint8Array, n: number, b: Uint8Array): string {
  const x = `${m}:${toHex(a)}`;
  const y = `${n}:${toHex(b)}`;
  return `${origin}\n${[x, y].sort().join('\n')}`;
}
