/**
 * @module
 * The agent key registry, replayed from the log (spec/agent-entries.md §6): which key an
 * agent's entry at a given index must be signed with.
 */
import { VerificationError } from '../core/errors.js';
import { checkSize, quote } from '../core/encoding.js';
import { isWeakPublicKey } from '../note/ed25519.js';
import { ALG_ED25519, parseVerifierKey, type VerifierKey } from '../note/keys.js';
import { isRegistryEntry, type Entry } from './entry.js';

/** One key's period of validity for one agent. */
export interface KeyPeriod {
  readonly agent: string;
  /** The verifier key as logged. */
  readonly vkey: string;
  readonly keyId: number;
  readonly publicKey: Uint8Array;
  /** Index of the agent.register or agent.rotate entry that installed the key. */
  readonly from: number;
  /** Index of the agent.rotate or agent.revoke entry that ended it; null while current. */
  readonly until: number | null;
  readonly endedBy: 'rotated' | 'revoked' | null;
}

/**
 * Replays agent.register, agent.rotate and agent.revoke entries in log order and answers
 * which key was valid at each index.
 *
 * A key installed at index `from` and ended at index `until` is valid for the agent's
 * entries at indices `from < i ≤ until` (an entry can never sit at `until` itself, which
 * holds the registry entry). After a revoke the agent has no key until a rotate installs a
 * new one. A key the agent held before can never be installed again.
 */
export class KeyHistory {
  private readonly byAgent = new Map<string, KeyPeriod[]>();
  private last = -1;

  /**
   * Applies a registry entry logged at `index` (entries must be applied in increasing index
   * order). Non-registry entries are ignored. A refused entry changes nothing, and later
   * entries can still be applied.
   *
   * @throws {VerificationError} For an invalid transition: register of a known agent,
   *   rotate/revoke of an unknown agent, revoke of a key that is not the agent's current
   *   key, rotate to the current key or to any key the agent held before, or a key that is
   *   malformed, not Ed25519, unusable, or whose name is not the agent.
   * @throws {RangeError} If `index` is not a safe non-negative integer or not greater than
   *   the previous one.
   */
  apply(index: number, entry: Entry): void {
    checkSize(index, 'index');
    if (index <= this.last) {
      throw new RangeError(`KeyHistory: index ${index} applied after index ${this.last}`);
    }
    this.last = index;
    if (!isRegistryEntry(entry)) return;
    const { agent } = entry;
    const what = `entry ${index} (${entry.type} ${quote(agent)})`;
    const key = parseAgentKey(entry.key, agent, what);
    const periods = this.byAgent.get(agent);
    const cur = periods?.at(-1);
    const current = cur !== undefined && cur.until === null ? cur : undefined;
    switch (entry.type) {
      case 'agent.register':
        if (periods !== undefined) throw new VerificationError(`${what}: the agent is already registered`);
        this.byAgent.set(agent, [period(agent, entry.key, key, index)]);
        return;
      case 'agent.rotate':
        if (periods === undefined) throw new VerificationError(`${what}: unknown agent`);
        if (current !== undefined && current.vkey === entry.key) {
          throw new VerificationError(`${what}: the new key is the current key`);
        }
        if (periods.some((p) => p.vkey === entry.key)) {
          throw new VerificationError(`${what}: the agent held this key before`);
        }
        if (current !== undefined) periods[periods.length - 1] = { ...current, until: index, endedBy: 'rotated' };
        periods.push(period(agent, entry.key, key, index));
        return;
      case 'agent.revoke':
        if (periods === undefined) throw new VerificationError(`${what}: unknown agent`);
        if (current === undefined || current.vkey !== entry.key) {
          throw new VerificationError(`${what}: the key is not the agent's current key`);
        }
        periods[periods.length - 1] = { ...current, until: index, endedBy: 'revoked' };
        return;
    }
  }

  /**
   * The key valid for an entry of `agent` logged at `index` (installed at an index < index
   * and not ended at an index < index), or null.
   */
  keyAt(agent: string, index: number): KeyPeriod | null {
    for (const p of this.byAgent.get(agent) ?? []) {
      if (p.from < index && (p.until === null || p.until >= index)) return p;
    }
    return null;
  }

  /** The agent's current key, or null if it is unknown or its last key was revoked. */
  current(agent: string): KeyPeriod | null {
    const p = this.byAgent.get(agent)?.at(-1);
    return p !== undefined && p.until === null ? p : null;
  }

  /** Every key period of `agent`, oldest first (empty for an unknown agent). */
  periods(agent: string): readonly KeyPeriod[] {
    return [...(this.byAgent.get(agent) ?? [])];
  }

  /** The registered agents, in registration order. */
  agents(): string[] {
    return [...this.byAgent.keys()];
  }
}

function period(agent: string, vkey: string, k: VerifierKey, from: number): KeyPeriod {
  return { agent, vkey, keyId: k.keyId, publicKey: k.publicKey, from, until: null, endedBy: null };
}

function parseAgentKey(vkey: string, agent: string, what: string): VerifierKey {
  let k: VerifierKey;
  try {
    k = parseVerifierKey(vkey);
  } catch (cause) {
    throw new VerificationError(`${what}: ${(cause as Error).message}`, { cause });
  }
  if (k.alg !== ALG_ED25519) throw new VerificationError(`${what}: not an Ed25519 (type 0x01) key`);
  if (k.name !== agent) throw new VerificationError(`${what}: key name ${quote(k.name)} is not the agent id`);
  if (isWeakPublicKey(k.publicKey)) throw new VerificationError(`${what}: not a usable Ed25519 public key`);
  return k;
}
