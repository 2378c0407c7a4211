/**
 * `glasslog export <log-url>`: writes an evidence bundle (spec/evidence-bundle.md) of the
 * agent entries a filter selects. With --log-key or --policy the bundle is verified before
 * it is written, and a bundle that does not verify is not written. Exit 0 when the bundle
 * was written (and verified, when asked); 1 when the export or the verification failed (the
 * message names what); 2 for a usage error. `--json` prints one JSON object instead of prose.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDecimal, quote } from '../core/encoding.js';
import { TlogError } from '../core/errors.js';
import { exportEvidenceBundle } from '../client/export.js';
import { isValidId } from '../entry/entry.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { formatEvidenceBundle, verifyEvidenceBundle, type EvidenceBundle, type EvidenceFilter } from '../verify/bundle.js';
import { readText, trustFromFlags, UsageError } from './common.js';
import { bundleProse, bundleSummary } from './verify.js';

const HELP = `Usage:
  glasslog export <log-url> [--agent <id>] [--run <id>] [--since <ms>] [--until <ms>]
                  [--token <token> | --token-file <file>] [--out <file>]
                  [--log-key <vkey|file> | --policy <file>] [--json]

Writes an evidence bundle (glasslog/evidence-bundle@v1): the events and run.close
entries of the log at <log-url> that match the filter, each with an inclusion proof
against one checkpoint (with its cosignatures), the payloads the token may read, the
agents' key history and the payloads' erasures, with their proofs. Check it offline
with: glasslog verify bundle <file> --log-key <vkey|file>

  --agent, --run       only this agent, only this run of it (--run needs --agent)
  --since, --until     only entries whose own (client) time is in [since, until),
                       in milliseconds since the Unix epoch
  --token, --token-file  a reader (or operator) credential: payloads in its scope
                       are included, the others are withheld
  --out                the bundle's file (default: standard output, and the summary
                       goes to standard error)
  --log-key, --policy  verify the bundle before writing it; refuse to write one that
                       does not verify
  --json               the summary as a JSON object

Exit status: 0 written (and verified, if asked), 1 export or verification failed,
2 usage error.
`;

interface Args {
  readonly url: string;
  readonly filter: EvidenceFilter;
  readonly token: string | undefined;
  readonly out: string | undefined;
  readonly values: { 'log-key'?: string; policy?: string };
  readonly json: boolean;
}

/** Parses the command line. @throws {UsageError} */
function parse(args: string[]): Args | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        agent: { type: 'string' },
        run: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        token: { type: 'string' },
        'token-file': { type: 'string' },
        out: { type: 'string' },
        'log-key': { type: 'string' },
        policy: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length !== 1) throw new UsageError('export takes one <log-url>');
  const url = positionals[0]!;
  if (!/^https?:\/\/[^/?#]/.test(url) || !URL.canParse(url)) throw new UsageError(`<log-url> must be an http:// or https:// URL, got ${quote(url)}`);
  for (const flag of ['agent', 'run'] as const) {
    const v = values[flag];
    if (v !== undefined && !isValidId(v)) throw new UsageError(`--${flag} ${quote(v)} is not 1–128 characters of [A-Za-z0-9._:@-]`);
  }
  if (values.run !== undefined && values.agent === undefined) throw new UsageError('--run needs --agent');
  if (values.token !== undefined && values['token-file'] !== undefined) throw new UsageError('give --token or --token-file, not both');
  const time = (flag: 'since' | 'until'): number | undefined => {
    const v = values[flag];
    if (v === undefined) return undefined;
    try {
      return parseDecimal(v, `--${flag}`);
    } catch (err) {
      throw new UsageError(`${(err as Error).message} (milliseconds since the Unix epoch)`);
    }
  };
  const filter: { agent?: string; run?: string; since?: number; until?: number } = {};
  if (values.agent !== undefined) filter.agent = values.agent;
  if (values.run !== undefined) filter.run = values.run;
  const since = time('since');
  const until = time('until');
  if (since !== undefined) filter.since = since;
  if (until !== undefined) filter.until = until;
  const token = values['token-file'] !== undefined ? readText(values['token-file'], 'the token file').trim() : values.token;
  return {
    url,
    filter,
    token,
    out: values.out,
    values: { ...(values['log-key'] !== undefined ? { 'log-key': values['log-key'] } : {}), ...(values.policy !== undefined ? { policy: values.policy } : {}) },
    json: values.json,
  };
}

/** Writes `text` to `file` whole or not at all (a temporary file renamed into place). */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { flag: 'wx' });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new UsageError(`cannot write ${file}: ${(err as Error).message}`);
  }
}

/** What the bundle holds, before verification. */
function counts(b: EvidenceBundle): { entries: number; registry: number; erasures: number; openedPayloads: number } {
  let opened = 0;
  for (const e of b.entries) opened += Object.keys(e.payloads ?? {}).length;
  return { entries: b.entries.length, registry: b.registry.length, erasures: b.erasures.length, openedPayloads: opened };
}

export async function exportCommand(args: string[]): Promise<number> {
  let a: Args | 'help';
  try {
    a = parse(args);
  } catch (err) {
    process.stderr.write(`glasslog export: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (a === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  // The summary goes to standard output, unless the bundle does.
  const say = (text: string) => (a.out === undefined ? process.stderr : process.stdout).write(text);
  const fail = (what: string, err: unknown): number => {
    if (err instanceof UsageError) {
      process.stderr.write(`glasslog export: ${err.message}\n`);
      return 2;
    }
    if (!(err instanceof TlogError)) throw err;
    if (a.json) say(JSON.stringify({ written: null, verified: false, error: `${what}: ${err.message}` }) + '\n');
    else process.stderr.write(`glasslog export: ${what}: ${err.message}\n`);
    return 1;
  };
  let trust;
  try {
    trust = a.values['log-key'] !== undefined || a.values.policy !== undefined ? trustFromFlags(a.values) : undefined;
  } catch (err) {
    return fail('the trust', err);
  }
  let bundle: EvidenceBundle;
  try {
    bundle = await exportEvidenceBundle(a.url, a.filter, a.token !== undefined ? { token: a.token } : {});
  } catch (err) {
    return fail('export failed', err);
  }
  const text = formatEvidenceBundle(bundle);
  let verified;
  try {
    verified = trust === undefined ? undefined : verifyEvidenceBundle(text, trust, { ed25519: nodeEd25519 });
  } catch (err) {
    return fail('NOT VERIFIED, nothing written', err);
  }
  try {
    if (a.out === undefined) process.stdout.write(text);
    else writeAtomically(a.out, text);
  } catch (err) {
    return fail('write failed', err);
  }
  const where = a.out ?? '(standard output)';
  const c = counts(bundle);
  if (a.json) {
    say(JSON.stringify({ written: where, ...c, verified: verified !== undefined, ...(verified ? bundleSummary(verified) : { origin: bundle.origin }) }) + '\n');
  } else {
    const n = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
    let msg = `wrote ${where}: ${n(c.entries, 'entry', 'entries')}, ${n(c.registry, 'registry entry', 'registry entries')}, ${n(c.erasures, 'erasure', 'erasures')}, ${n(c.openedPayloads, 'payload', 'payloads')} opened, from ${quote(bundle.origin)}\n`;
    msg += verified ? `verified: ${bundleProse(verified).join('\n  ')}\n` : 'not verified (give --log-key or --policy to verify before writing)\n';
    say(msg);
  }
  return 0;
}
