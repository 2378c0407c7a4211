/**
 * @module
 * `auditLog`: fetches what a {@link LogAudit} pass needs from a tlog-tiles log over HTTP
 * and feeds it in order (spec/audit.md). Bundles and their level-0 tiles are fetched a
 * window ahead, and signature checks overlap with fetching and decoding. Fetch-only, so it
 * runs in Node and in a browser; the caller brings the worker pool and the state file.
 */
import { parseCheckpoint } from '../core/checkpoint.js';
import { decodeBundle } from '../core/bundle.js';
import { VerificationError } from '../core/errors.js';
import { TILE_WIDTH, tileWidthAt } from '../core/tile.js';
import { proveInclusion } from '../core/tree.js';
import { parseNote } from '../note/note.js';
import { LogAudit, type AuditState, type AuditSummary, type LogAuditOptions } from '../verify/log-audit.js';
import type { ReceiptTrust } from '../verify/receipt.js';
import { TileClient, type HttpGet } from './tile-client.js';

export interface AuditProgress {
  /** Entries read in this pass, and how many it reads in all. */
  readonly entries: number;
  readonly totalEntries: number;
  readonly bytes: number;
}

export interface AuditLogOptions extends LogAuditOptions {
  readonly trust: ReceiptTrust;
  /** The state of the previous run, or null for a first audit. */
  readonly state: AuditState | null;
  readonly fetch?: typeof fetch;
  /** How to GET, instead of `fetch` (see {@link HttpGet}). */
  readonly get?: HttpGet;
  readonly timeoutMs?: number;
  /** Ask for gzip-compressed bundles (default false: the audit is bound by CPU, see spec/audit.md §3). */
  readonly compress?: boolean;
  /** Bundles (each with its level-0 tile) fetched ahead of the one being checked (default 16). */
  readonly concurrency?: number;
  /** Signature batches checked at once (default 4). */
  readonly inFlightBatches?: number;
  readonly onProgress?: (p: AuditProgress) => void;
  /** Called with a resumable state between bundles, every `saveEveryMs` (default 5000). */
  readonly saveState?: (s: AuditState) => void | Promise<void>;
  readonly saveEveryMs?: number;
  /** Stops the pass between bundles (after a last save); the promise then rejects. */
  readonly signal?: AbortSignal;
  /** A clock in milliseconds (default Date.now). */
  readonly now?: () => number;
}

export interface AuditLogResult extends AuditSummary {
  /** The checkpoint note the pass audited, verbatim. */
  readonly note: string;
  readonly cosigned: ReadonlySet<string>;
  readonly fetched: { readonly requests: number; readonly bytes: number; readonly bundles: number; readonly tiles: number };
}

/**
 * Audits the log at `url` (its tlog-tiles prefix) from `opts.state` up to its current
 * checkpoint. Resolves with the summary (whose `findings` may be non-empty: the caller
 * decides); rejects with a VerificationError when the checkpoint does not verify, the log
 * rolled back or forked, or the rebuilt root is not the signed one, and with a FetchError
 * when the log cannot be read.
 */
export async function auditLog(url: string, opts: AuditLogOptions): Promise<AuditLogResult> {
  const client = new TileClient(url, { fetch: opts.fetch, get: opts.get, timeoutMs: opts.timeoutMs ?? 30_000, compressBundles: opts.compress ?? false });
  const now = opts.now ?? Date.now;
  const note = await client.checkpoint();
  let origin: string;
  try {
    origin = opts.state?.origin ?? parseCheckpoint(parseNote(note).text).origin;
  } catch (err) {
    throw new VerificationError(`checkpoint: ${(err as Error).message}`);
  }
  const audit = new LogAudit(opts.trust, opts.state, origin, opts);
  const plan = audit.begin(note);
  let bundles = 0;
  let tiles = 0;

  const window = Math.max(1, opts.concurrency ?? 16);
  const fetchBundle = (k: number) => {
    const b = plan.bundles[k]!;
    return Promise.all([client.entryBundle(b.index, b.width), client.tile(0, b.index, b.width)]);
  };
  const ahead: Array<Promise<[Uint8Array, Uint8Array]>> = [];
  const prefetch = (k: number) => {
    const p = fetchBundle(k);
    p.catch(() => undefined); // rejections are seen when awaited in order
    ahead.push(p);
  };
  for (let k = 0; k < Math.min(window, plan.bundles.length); k++) prefetch(k);

  const flushes: Array<Promise<void>> = [];
  const settle = async () => {
    while (flushes.length > 0) await flushes.shift();
  };
  const upperTile = async (t: { level: number; index: number; width: number }) => {
    audit.checkTile(t, await client.tile(t.level, t.index, t.width));
    tiles++;
  };

  let lastSave = now();
  const save = async () => {
    if (!opts.saveState) return;
    await settle();
    await opts.saveState(audit.snapshot());
    lastSave = now();
  };

  for (let k = 0; k < plan.bundles.length; k++) {
    if (opts.signal?.aborted) {
      await save();
      throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error('audit interrupted');
    }
    const [bundle, tile0] = await ahead.shift()!;
    if (k + window < plan.bundles.length) prefetch(k + window);
    const completed = audit.addBundle(plan.bundles[k]!.index, bundle, tile0);
    bundles++;
    tiles++;
    flushes.push(audit.flush());
    if (flushes.length > (opts.inFlightBatches ?? 4)) await flushes.shift();
    for (const t of completed) await upperTile(t);
    opts.onProgress?.({ entries: audit.size - plan.from, totalEntries: plan.to - plan.from, bytes: client.stats.bytes });
    if (now() - lastSave >= (opts.saveEveryMs ?? 5000) && k + 1 < plan.bundles.length) await save();
  }
  await settle();
  for (const t of plan.upperTiles) if (t.width < TILE_WIDTH) await upperTile(t);

  for (const p of audit.erasureTargets()) {
    const n = Math.floor(p.index / TILE_WIDTH);
    const size = plan.to;
    const leaves = decodeBundle(await client.entryBundle(n, tileWidthAt('entries', n, size)));
    const leaf = leaves[p.index % TILE_WIDTH];
    const proof = await client.withTree(size, (node, memo) => proveInclusion(p.index, size, node, memo));
    audit.checkErasure(p, leaf ?? new Uint8Array(0), proof);
  }

  const summary = audit.finish();
  return { ...summary, note, cosigned: plan.cosigned, fetched: { ...client.stats, bundles, tiles } };
}
