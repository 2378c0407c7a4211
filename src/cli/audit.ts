/**
 * `glasslog audit <log-url>`: a full, incremental audit of a log from its tiles and entry
 * bundles (spec/audit.md), with signatures checked on every core. The state file holds
 * what was audited; a second run reads only what is new, and an interrupted run resumes.
 * Exit 0 only when everything verified and no finding was ever recorded; 1 otherwise; 2
 * for a usage error; 130 when interrupted (the state is saved).
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeBase64, quote } from '../core/encoding.js';
import { TlogError, VerificationError } from '../core/errors.js';
import { nodeEd25519 } from '../note/ed25519-node.js';
import { VerifyPool } from '../audit/verify-pool.js';
import { auditLog, type AuditLogResult } from '../client/log-auditor.js';
import { formatAuditState, parseAuditState, type AuditState, type Finding } from '../verify/log-audit.js';
import { positiveInt, trustFromFlags, UsageError, useNodeSha256 } from './common.js';
import { nodeHttpGet } from './http-get.js';

const HELP = `Usage:
  glasslog audit <log-url> (--log-key <vkey|file> | --policy <file>) --state <file>
                 [--entries agent|any] [--threads <n>] [--save-every <seconds>]
                 [--gzip] [--json] [--no-progress]

Fetches every entry bundle and tile not audited yet, checks every entry (canonical
encoding; the agent's signature under its key history, replayed from the log; the log's
own registry and erasure entries), rebuilds the tree and compares its root with the
checkpoint the log signed (and the witnesses cosigned, with --policy). Rebuilding from the
tree audited last proves the new checkpoint consistent with it.

  --state <file>     what was audited (created on the first run; saved every few
                     seconds, so an interrupted run resumes)
  --entries any      the log also holds raw (non-agent) entries: count them, do not
                     fail on them (default: agent, every leaf must be an agent entry)
  --threads <n>      signature-checking threads (default: one per core)
  --save-every <s>   how often an unfinished pass saves the state (default 5;
                     0: after every bundle)
  --gzip             ask for compressed entry bundles: fewer bytes, more CPU on
                     both sides (an audit is bound by signature checks at about
                     4 MB/s of bundles per core, so only a slower link gains)

Exit status: 0 verified, 1 not verified (findings, or a root or signature that does not
check out), 2 usage error, 130 interrupted (state saved; run again to resume).
`;

export async function auditCommand(args: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: {
        'log-key': { type: 'string' },
        policy: { type: 'string' },
        state: { type: 'string' },
        entries: { type: 'string', default: 'agent' },
        threads: { type: 'string' },
        'save-every': { type: 'string' },
        gzip: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        'no-progress': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    process.stderr.write(`glasslog audit: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const json = values.json;
  let pool: VerifyPool | undefined;
  const http = nodeHttpGet();
  const abort = new AbortController();
  const onSigint = () => abort.abort(new Interrupted());
  let stateFile: string | undefined;
  let before: AuditState | null = null;
  let savedMidPass = false;
  try {
    if (positionals.length !== 1) throw new UsageError('audit takes one <log-url>');
    const url = logUrl(positionals[0]!);
    if (values.state === undefined) throw new UsageError('give --state <file>: where the audit keeps what it checked');
    if (values.entries !== 'agent' && values.entries !== 'any') throw new UsageError('--entries is agent or any');
    const trust = trustFromFlags(values);
    const threads = flagInt(values.threads, 'threads', availableParallelism(), 1);
    const saveEvery = flagInt(values['save-every'], 'save-every', 5, 0);
    stateFile = resolve(values.state);
    before = readState(stateFile);
    const file = stateFile;

    useNodeSha256();
    pool = new VerifyPool(threads);
    const progress = process.stderr.isTTY && !json && !values['no-progress'] ? new ProgressBar() : undefined;
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
    const started = Date.now();
    let result: AuditLogResult;
    try {
      result = await auditLog(url, {
        trust,
        state: before,
        entries: values.entries,
        ed25519: nodeEd25519,
        verifyBatch: (checks) => pool!.verify(checks),
        get: http.get,
        onProgress: progress ? (p) => progress.update(p.entries, p.totalEntries, p.bytes) : undefined,
        saveState: (s) => {
          writeState(file, s);
          savedMidPass = true;
        },
        saveEveryMs: saveEvery * 1000,
        compress: values.gzip,
        signal: abort.signal,
      });
    } finally {
      progress?.done();
    }
    writeState(stateFile, result.state);
    const elapsedMs = Date.now() - started;
    const earlier = before?.findingsTotal ?? 0;
    const verified = result.findingsCount === 0 && earlier === 0;
    if (json) {
      process.stdout.write(
        JSON.stringify({
          verified,
          origin: result.origin,
          treeSize: result.treeSize,
          rootHash: encodeBase64(result.rootHash),
          previousSize: result.previousSize,
          entriesChecked: result.entriesChecked,
          cosignedBy: [...result.cosigned],
          counts: result.state.counts,
          fetched: result.fetched,
          findings: result.findings,
          findingsCount: result.findingsCount,
          earlierFindings: earlier,
          elapsedMs,
        }) + '\n'
      );
    } else {
      report(result, earlier, elapsedMs, stateFile);
    }
    return verified ? 0 : 1;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`glasslog audit: ${err.message}\n`);
      return 2;
    }
    if (err instanceof Interrupted) {
      process.stderr.write(`glasslog audit: interrupted; the state is saved, run again to resume\n`);
      return 130;
    }
    if (!(err instanceof TlogError)) throw err;
    // A pass that failed verification leaves the state as it found it: what it saved on
    // the way was provisional. (A fetch failure keeps it, so the next run resumes.)
    if (err instanceof VerificationError && savedMidPass && stateFile !== undefined) {
      if (before !== null) writeState(stateFile, before);
      else rmSync(stateFile, { force: true });
    }
    if (json) process.stdout.write(JSON.stringify({ verified: false, error: err.message }) + '\n');
    else process.stderr.write(`NOT VERIFIED: ${err.message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await pool?.close();
    http.close();
  }
}

function flagInt(v: string | undefined, name: string, dflt: number, min: number): number {
  try {
    return positiveInt(v, name, dflt, min);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

function logUrl(s: string): string {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new UsageError(`${quote(s)} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${quote(s)} is not an http(s) URL`);
  return s;
}

function readState(file: string): AuditState | null {
  if (!existsSync(file)) return null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the state ${file}: ${(err as Error).message}`);
  }
  try {
    return parseAuditState(text);
  } catch (err) {
    throw new UsageError(`the state ${file} is not an audit state: ${(err as Error).message}`);
  }
}

/** Replaces the state file atomically and durably: a temporary file, fsync, rename, fsync of the directory. */
function writeState(file: string, s: AuditState): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, formatAuditState(s));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dir = openSync(dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function report(r: AuditLogResult, earlier: number, elapsedMs: number, stateFile: string): void {
  const out = process.stdout;
  const cos = [...r.cosigned];
  out.write(
    `log ${quote(r.origin)}: tree size ${r.treeSize}, root ${encodeBase64(r.rootHash)}` +
      (cos.length > 0 ? `, cosigned by ${cos.join(', ')}` : '') +
      '\n'
  );
  out.write(
    r.previousSize === r.treeSize
      ? `nothing new since the last audit at tree size ${r.previousSize}\n`
      : `checked entries ${r.previousSize}–${r.treeSize - 1} (${r.entriesChecked}); the tree rebuilt from them has the signed root` +
          (r.previousSize > 0 ? ` and extends the audited tree of size ${r.previousSize}` : '') +
          '\n'
  );
  const counts = Object.entries(r.state.counts)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  if (counts) out.write(`entries audited so far: ${counts}\n`);
  out.write(`fetched ${r.fetched.bundles} bundles and ${r.fetched.tiles} tiles in ${r.fetched.requests} requests (${formatBytes(r.fetched.bytes)}) in ${(elapsedMs / 1000).toFixed(1)} s\n`);
  out.write(`state saved to ${stateFile}\n`);
  if (r.findingsCount === 0 && earlier === 0) {
    out.write('verified: no findings\n');
    return;
  }
  const shown: Finding[] = r.findings.slice(0, 50);
  if (r.findingsCount > 0) out.write(`NOT VERIFIED: ${r.findingsCount} finding${r.findingsCount === 1 ? '' : 's'} in this run:\n`);
  for (const f of shown) out.write(`  [${f.kind}] ${f.message}\n`);
  if (r.findingsCount > shown.length) {
    out.write(`  … and ${r.findingsCount - shown.length} more (--json lists the first ${r.findings.length})\n`);
  }
  if (earlier > 0) out.write(`NOT VERIFIED: ${earlier} finding${earlier === 1 ? '' : 's'} recorded by earlier runs (listed in the state file)\n`);
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** One line on stderr, redrawn at most ten times a second. */
class ProgressBar {
  private last = 0;
  private readonly start = Date.now();

  update(done: number, total: number, bytes: number): void {
    const t = Date.now();
    if (t - this.last < 100 && done < total) return;
    this.last = t;
    const width = 30;
    const frac = total === 0 ? 1 : done / total;
    const filled = Math.round(frac * width);
    const secs = (t - this.start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? Math.round((total - done) / rate) : 0;
    process.stderr.write(
      `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(1).padStart(5)}% ${done}/${total} entries, ${Math.round(rate)}/s, ${formatBytes(bytes)}, ETA ${eta} s `
    );
  }

  done(): void {
    process.stderr.write('\n');
  }
}
