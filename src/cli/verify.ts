/**
 * `glasslog verify receipt|consistency|evidence|bundle`: offline checks with nothing but
 * public keys. Exit 0 only when everything verified; 1 when something did not (the message
 * names it); 2 for a usage error. `--json` prints one JSON object instead of prose.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodeBase64, encodeBase64, quote } from '../core/encoding.js';
import { MalformedError, TlogError } from '../core/errors.js';
import { newVerifier } from '../note/note.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { verifyCheckpointConsistency } from '../verify/consistency.js';
import { checkpointOf, parseForkEvidence, verifyForkEvidence } from '../verify/evidence.js';
import { policyLog } from '../verify/policy.js';
import { readText, trustFromFlags, UsageError } from './common.js';
import { verifyReceipt } from '../verify/receipt.js';
import { verifyEvidenceBundle, type VerifiedEvidenceBundle } from '../verify/bundle.js';

const HELP = `Usage:
  glasslog verify receipt <file> (--log-key <vkey|file> | --policy <file>)
                          [--entry <file> | --leaf-hash <base64>] [--json]
  glasslog verify consistency <old-checkpoint> <new-checkpoint> <proof>
                          (--log-key <vkey|file> | --policy <file>) [--json]
  glasslog verify evidence <file> (--log-key <vkey|file> | --policy <file>) [--json]
  glasslog verify bundle <file> (--log-key <vkey|file> | --policy <file>) [--json]

Checks, offline, with nothing but public keys:
  receipt       a c2sp.org/tlog-proof receipt: the log's signature, the witnesses'
                cosignatures and the quorum (with --policy), and the inclusion proof
                of the entry (its bytes, --entry) or of its leaf hash (--leaf-hash)
  consistency   two checkpoints signed by the log (and cosigned per --policy) and
                the consistency proof between them (base64 hashes one per line, or
                the JSON of GET /v1/proofs/consistency)
  evidence      a witness's fork evidence (glasslog/fork-evidence@v1): two
                checkpoints the log signed that cannot be one history
  bundle        an evidence bundle (glasslog/evidence-bundle@v1, from glasslog
                export): the checkpoint, every entry's inclusion proof and agent
                signature under the key history in the bundle, the payloads it
                opens, the erasures, and every run's chain (spec/evidence-bundle.md)

The policy file is C2SP tlog-policy (log, witness, group, quorum lines).
Exit status: 0 verified, 1 not verified, 2 usage error.
`;

function parseProof(text: string): Uint8Array[] {
  const t = text.trim();
  if (t.startsWith('{')) {
    let j: unknown;
    try {
      j = JSON.parse(t);
    } catch {
      throw new MalformedError('proof: not valid JSON');
    }
    const proof = (j as { proof?: unknown }).proof;
    if (!Array.isArray(proof) || !proof.every((h) => typeof h === 'string')) throw new MalformedError('proof: JSON without a "proof" array of base64 hashes');
    return proof.map((h, i) => decodeBase64(h as string, `proof hash ${i + 1}`));
  }
  return t === '' ? [] : t.split('\n').map((line, i) => decodeBase64(line.trim(), `proof line ${i + 1}`));
}

export async function verifyCommand(args: string[]): Promise<number> {
  const [what, ...rest] = args;
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: rest,
      options: {
        'log-key': { type: 'string' },
        policy: { type: 'string' },
        entry: { type: 'string' },
        'leaf-hash': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    process.stderr.write(`glasslog verify: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help || what === undefined || what === '--help' || what === '-h') {
    process.stdout.write(HELP);
    return what === undefined ? 2 : 0;
  }
  const json = values.json;
  const ok = (summary: string, data: Record<string, unknown>) => {
    process.stdout.write(json ? JSON.stringify({ verified: true, ...data }) + '\n' : `verified: ${summary}\n`);
    return 0;
  };
  try {
    const want = (n: number, names: string) => {
      if (positionals.length !== n) throw new UsageError(`verify ${what} takes ${names}`);
    };
    switch (what) {
      case 'receipt': {
        want(1, '<file>');
        const trust = trustFromFlags(values);
        if (values.entry !== undefined && values['leaf-hash'] !== undefined) throw new UsageError('give --entry or --leaf-hash, not both');
        if (values.entry === undefined && values['leaf-hash'] === undefined) throw new UsageError('give the entry (--entry <file>) or its leaf hash (--leaf-hash <base64>)');
        let leaf: Uint8Array | { leafHash: Uint8Array };
        if (values.entry !== undefined) {
          try {
            leaf = new Uint8Array(readFileSync(values.entry));
          } catch (err) {
            throw new UsageError(`cannot read the entry ${values.entry}: ${(err as Error).message}`);
          }
        } else {
          leaf = { leafHash: decodeBase64(values['leaf-hash']!, '--leaf-hash') };
        }
        const r = verifyReceipt(readText(positionals[0]!, 'the receipt'), leaf, trust);
        const cos = [...r.cosigned];
        return ok(`entry ${r.index} (leaf hash ${encodeBase64(r.leafHash)}) is in ${quote(r.checkpoint.origin)} at tree size ${r.checkpoint.treeSize}${cos.length ? `, cosigned by ${cos.join(', ')}` : ''}`, {
          index: r.index,
          leafHash: encodeBase64(r.leafHash),
          origin: r.checkpoint.origin,
          treeSize: r.checkpoint.treeSize,
          cosignedBy: cos,
        });
      }
      case 'consistency': {
        want(3, '<old-checkpoint> <new-checkpoint> <proof>');
        const trust = trustFromFlags(values);
        const proof = parseProof(readText(positionals[2]!, 'the proof'));
        const r = verifyCheckpointConsistency(readText(positionals[0]!, 'the old checkpoint'), readText(positionals[1]!, 'the new checkpoint'), proof, trust);
        return ok(`${quote(r.old.origin)} at tree size ${r.new.treeSize} extends tree size ${r.old.treeSize}`, { origin: r.old.origin, oldSize: r.old.treeSize, newSize: r.new.treeSize });
      }
      case 'evidence': {
        want(1, '<file>');
        const trust = trustFromFlags(values);
        const text = readText(positionals[0]!, 'the evidence');
        let keys: string[];
        if ('logKey' in trust) keys = [trust.logKey];
        else {
          // The evidence names its origin; the policy gives that log's key(s).
          const origin = checkpointOf(parseForkEvidence(text).smaller).origin;
          const log = policyLog(trust.policy, origin);
          if (!log) throw new MalformedError(`evidence: origin ${quote(origin)} is not a log of the policy`);
          keys = trust.policy.logs.filter((l) => l.origin === origin).map((l) => l.vkey);
        }
        const f = verifyForkEvidence(text, keys.map((k) => newVerifier(k, nodeEd25519)));
        return ok(
          `the log ${quote(f.origin)} signed two checkpoints that are not one history: size ${f.smaller.treeSize} root ${encodeBase64(f.smaller.rootHash)}, and size ${f.larger.treeSize} root ${encodeBase64(f.larger.rootHash)}${f.prefixRoot ? ` whose first ${f.smaller.treeSize} entries have root ${encodeBase64(f.prefixRoot)}` : ''}`,
          { origin: f.origin, smaller: { treeSize: f.smaller.treeSize, rootHash: encodeBase64(f.smaller.rootHash) }, larger: { treeSize: f.larger.treeSize, rootHash: encodeBase64(f.larger.rootHash) } }
        );
      }
      case 'bundle': {
        want(1, '<file>');
        const trust = trustFromFlags(values);
        const v = verifyEvidenceBundle(readText(positionals[0]!, 'the evidence bundle'), trust, { ed25519: nodeEd25519 });
        return ok(bundleProse(v).join('\n  '), bundleSummary(v));
      }
      default:
        throw new UsageError(`unknown check ${JSON.stringify(what)} (receipt, consistency, evidence or bundle)`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`glasslog verify: ${err.message}\n`);
      return 2;
    }
    const message = err instanceof Error ? err.message : String(err);
    if (!(err instanceof TlogError)) throw err;
    if (json) process.stdout.write(JSON.stringify({ verified: false, error: message }) + '\n');
    else process.stderr.write(`NOT VERIFIED: ${message}\n`);
    return 1;
  }
}

/** Counts of the payload statuses of a verified bundle. */
function payloadCounts(v: VerifiedEvidenceBundle): { opened: number; withheld: number; erased: number } {
  const n = { opened: 0, withheld: 0, erased: 0 };
  for (const e of v.entries) for (const p of Object.values(e.payloads)) n[p.status]++;
  return n;
}

function filterText(v: VerifiedEvidenceBundle): string {
  const f = v.filter;
  const parts: string[] = [];
  if (f.agent !== undefined) parts.push(`agent ${quote(f.agent)}`);
  if (f.run !== undefined) parts.push(`run ${quote(f.run)}`);
  if (f.since !== undefined || f.until !== undefined) parts.push(`client time [${f.since ?? '-∞'}, ${f.until ?? '∞'}) ms`);
  return parts.length === 0 ? 'every agent entry' : parts.join(', ');
}

/** A verified bundle in words, one line per item: what it proves, its runs, keys and payloads. */
export function bundleProse(v: VerifiedEvidenceBundle): string[] {
  const cos = [...v.cosigned];
  const n = payloadCounts(v);
  const lines = [
    `evidence bundle of ${quote(v.origin)} at tree size ${v.checkpoint.treeSize}${cos.length ? `, cosigned by ${cos.join(', ')}` : ''}`,
    `filter: ${filterText(v)}`,
    `${v.entries.length} entries in ${v.runs.length} runs; payloads: ${n.opened} opened, ${n.withheld} withheld, ${n.erased} erased`,
  ];
  for (const r of v.runs) {
    const span = r.first === r.last ? `seq ${r.first}` : `seqs ${r.first}–${r.last}`;
    lines.push(`run ${quote(r.run)} of ${quote(r.agent)}: ${span}${r.closedWith !== undefined ? `, closed after ${r.closedWith} events` : ', no close in the bundle'}`);
  }
  for (const a of v.agents) {
    for (const p of a.periods) {
      const end = p.until === null ? 'current' : `${p.endedBy === 'revoked' ? 'revoked' : 'rotated out'} at index ${p.until}`;
      lines.push(`agent ${quote(a.agent)} key ${p.keyId.toString(16).padStart(8, '0')}: installed at index ${p.from}, ${end}`);
    }
  }
  for (const e of v.entries) {
    for (const [name, p] of Object.entries(e.payloads)) {
      if (p.status === 'erased') lines.push(`entry ${e.index} payload ${quote(name)}: erased at index ${p.erasedAt}`);
      else if (p.status === 'withheld') lines.push(`entry ${e.index} payload ${quote(name)}: withheld`);
      else if (p.erasedAt !== undefined) lines.push(`entry ${e.index} payload ${quote(name)}: opened, although erased at index ${p.erasedAt}`);
    }
  }
  return lines;
}

/** A verified bundle as JSON data (payload contents left out). */
export function bundleSummary(v: VerifiedEvidenceBundle): Record<string, unknown> {
  return {
    origin: v.origin,
    treeSize: v.checkpoint.treeSize,
    rootHash: encodeBase64(v.checkpoint.rootHash),
    cosignedBy: [...v.cosigned],
    filter: v.filter,
    payloads: payloadCounts(v),
    entries: v.entries.map((e) => ({
      index: e.index,
      leafHash: encodeBase64(e.leafHash),
      type: e.entry.type,
      agent: e.entry.agent,
      run: e.entry.run,
      seq: e.entry.seq,
      ...(e.entry.type === 'event' ? { kind: e.entry.kind } : {}),
      time: e.entry.time,
      key: e.key.vkey,
      payloads: Object.fromEntries(
        Object.entries(e.payloads).map(([name, p]) => [name, p.status === 'opened' ? { status: p.status, size: p.data.length, ...(p.erasedAt !== undefined ? { erasedAt: p.erasedAt } : {}) } : p])
      ),
    })),
    runs: v.runs,
    agents: v.agents.map((a) => ({ agent: a.agent, keys: a.periods.map((p) => ({ key: p.vkey, from: p.from, until: p.until, endedBy: p.endedBy })) })),
    erasures: v.erasures.map((e) => ({ index: e.index, entry: e.entry.index, name: e.entry.name, reason: e.entry.reason, time: e.entry.time })),
  };
}
