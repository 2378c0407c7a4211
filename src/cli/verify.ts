/**
 * `glasslog verify receipt|consistency|evidence`: offline checks with nothing but public
 * keys. Exit 0 only when everything verified; 1 when something did not (the message names
 * it); 2 for a usage error. `--json` prints one JSON object instead of prose.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { decodeBase64, encodeBase64, quote } from '../core/encoding.js';
import { MalformedError, TlogError } from '../core/errors.js';
import { parseVerifierKey } from '../note/keys.js';
import { newVerifier } from '../note/note.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { verifyCheckpointConsistency } from '../verify/consistency.js';
import { checkpointOf, parseForkEvidence, verifyForkEvidence } from '../verify/evidence.js';
import { policyLog } from '../verify/policy.js';
import { readPolicyFile } from './common.js';
import { verifyReceipt, type ReceiptTrust } from '../verify/receipt.js';

const HELP = `Usage:
  glasslog verify receipt <file> (--log-key <vkey|file> | --policy <file>)
                          [--entry <file> | --leaf-hash <base64>] [--json]
  glasslog verify consistency <old-checkpoint> <new-checkpoint> <proof>
                          (--log-key <vkey|file> | --policy <file>) [--json]
  glasslog verify evidence <file> (--log-key <vkey|file> | --policy <file>) [--json]

Checks, offline, with nothing but public keys:
  receipt       a c2sp.org/tlog-proof receipt: the log's signature, the witnesses'
                cosignatures and the quorum (with --policy), and the inclusion proof
                of the entry (its bytes, --entry) or of its leaf hash (--leaf-hash)
  consistency   two checkpoints signed by the log (and cosigned per --policy) and
                the consistency proof between them (base64 hashes one per line, or
                the JSON of GET /v1/proofs/consistency)
  evidence      a witness's fork evidence (glasslog/fork-evidence@v1): two
                checkpoints the log signed that cannot be one history

The policy file is C2SP tlog-policy (log, witness, group, quorum lines).
Exit status: 0 verified, 1 not verified, 2 usage error.
`;

class UsageError extends Error {}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

function trustOf(values: { 'log-key'?: string; policy?: string }): ReceiptTrust {
  if ((values['log-key'] === undefined) === (values.policy === undefined)) throw new UsageError('give exactly one of --log-key and --policy');
  if (values.policy !== undefined) {
    try {
      return { policy: readPolicyFile(values.policy, { quorumOptional: true }) };
    } catch (err) {
      if (err instanceof TlogError) throw err;
      throw new UsageError((err as Error).message);
    }
  }
  const k = values['log-key']!;
  // A verifier key has no "/" before its first "+", a path usually does; try the key first.
  try {
    parseVerifierKey(k);
    return { logKey: k };
  } catch {
    return { logKey: readText(k, 'the log key').trim() };
  }
}

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
        const trust = trustOf(values);
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
        const trust = trustOf(values);
        const proof = parseProof(readText(positionals[2]!, 'the proof'));
        const r = verifyCheckpointConsistency(readText(positionals[0]!, 'the old checkpoint'), readText(positionals[1]!, 'the new checkpoint'), proof, trust);
        return ok(`${quote(r.old.origin)} at tree size ${r.new.treeSize} extends tree size ${r.old.treeSize}`, { origin: r.old.origin, oldSize: r.old.treeSize, newSize: r.new.treeSize });
      }
      case 'evidence': {
        want(1, '<file>');
        const trust = trustOf(values);
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
      default:
        throw new UsageError(`unknown check ${JSON.stringify(what)} (receipt, consistency or evidence)`);
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
