/**
 * Credentials of the audit layer. Tokens are random 32-byte strings shown once; only their
 * SHA-256 is stored. Three kinds:
 *
 * - operator: registers agents, rotates and revokes keys, erases payloads, manages
 *   credentials, appends raw entries; reads every payload. The log's write token is one.
 * - agent: writes the entries of exactly one agent.
 * - reader: reads the payloads of the agents and runs (`agent/run`) in its scope.
 *
 * Public (no credential): checkpoints, tiles, proofs, receipts, and every entry's public
 * fields (everything in the leaf).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ForbiddenError, MalformedError } from '../core/errors.js';
import type { AuditStore, CredentialKind, CredentialRow } from '../storage/audit-store.js';

export interface Principal {
  readonly kind: CredentialKind;
  /** The credential's public id ('operator' for the log's own write token). */
  readonly id: string;
  readonly agent: string | null;
  readonly agents: ReadonlySet<string>;
  readonly runs: ReadonlySet<string>;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();
const ID_CHARS = /^[0-9a-f]{16}$/;
const CACHE_MS = 1000;

export class Access {
  private readonly operators: Buffer[];
  private readonly cache = new Map<string, { p: Principal | null; at: number }>();

  constructor(
    private readonly store: AuditStore,
    operatorTokens: readonly string[]
  ) {
    this.operators = operatorTokens.map(sha256);
  }

  /** The principal a bearer token stands for, or null. Revocations take effect within 1 s. */
  async authenticate(token: string): Promise<Principal | null> {
    const h = sha256(token);
    if (this.operators.some((o) => timingSafeEqual(o, h))) return { kind: 'operator', id: 'operator', agent: null, agents: new Set(), runs: new Set() };
    const key = h.toString('hex');
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.p;
    const row = await this.store.credentialByHash(h);
    const p = row && row.revokedAt === null ? principalOf(row) : null;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { p, at: Date.now() });
    return p;
  }

  /** Creates a credential; the token is returned once and never stored. */
  async create(req: { kind: CredentialKind; agent?: string; agents?: readonly string[]; runs?: readonly string[]; label?: string }): Promise<{ id: string; token: string; credential: CredentialRow }> {
    if (req.kind === 'agent' && !req.agent) throw new MalformedError('an agent credential needs "agent"');
    if (req.kind !== 'agent' && req.agent !== undefined) throw new MalformedError('"agent" is only for an agent credential');
    if (req.kind !== 'reader' && ((req.agents?.length ?? 0) > 0 || (req.runs?.length ?? 0) > 0)) throw new MalformedError('"agents" and "runs" are only for a reader credential');
    if (req.kind === 'reader' && (req.agents?.length ?? 0) === 0 && (req.runs?.length ?? 0) === 0) throw new MalformedError('a reader credential needs "agents" or "runs" (agent/run) in its scope');
    for (const r of req.runs ?? []) if (!/^[^/]+\/[^/]+$/.test(r)) throw new MalformedError(`runs: ${JSON.stringify(r)} is not "agent/run"`);
    const token = randomBytes(32).toString('base64url');
    const tokenHash = sha256(token);
    const id = tokenHash.subarray(0, 8).toString('hex');
    const credential = await this.store.createCredential({
      id,
      tokenHash,
      kind: req.kind,
      agent: req.agent ?? null,
      agents: [...(req.agents ?? [])],
      runs: [...(req.runs ?? [])],
      label: req.label ?? '',
    });
    return { id, token, credential };
  }

  async revoke(id: string): Promise<boolean> {
    if (!ID_CHARS.test(id)) throw new MalformedError('a credential id is 16 lowercase hex digits');
    this.cache.clear();
    return this.store.revokeCredential(id);
  }

  list(): Promise<CredentialRow[]> {
    return this.store.credentials();
  }
}

function principalOf(row: CredentialRow): Principal {
  return { kind: row.kind, id: row.id, agent: row.agent, agents: new Set(row.agents), runs: new Set(row.runs) };
}

/** @throws {ForbiddenError} unless the principal is an operator */
export function requireOperator(p: Principal, what: string): void {
  if (p.kind !== 'operator') throw new ForbiddenError(`${what} needs an operator credential`);
}

/** @throws {ForbiddenError} unless the principal may write as `agent` */
export function requireWriter(p: Principal, agent: string): void {
  if (p.kind === 'operator') return;
  if (p.kind !== 'agent') throw new ForbiddenError(`a ${p.kind} credential cannot write entries; an agent credential can`);
  if (p.agent !== agent) throw new ForbiddenError(`this credential writes as agent ${JSON.stringify(p.agent)}, not ${JSON.stringify(agent)}`);
}

/** @throws {ForbiddenError} unless the principal may read the payloads of `agent`'s `run` */
export function requireReader(p: Principal, agent: string, run: string): void {
  if (p.kind === 'operator') return;
  if (p.kind !== 'reader') throw new ForbiddenError('an agent credential cannot read payloads; a reader credential can');
  if (!p.agents.has(agent) && !p.runs.has(`${agent}/${run}`)) throw new ForbiddenError(`this credential may not read payloads of agent ${JSON.stringify(agent)}, run ${JSON.stringify(run)}`);
}
