/**
 * An in-memory glasslog log of real signed agent entries, served as tlog-tiles (checkpoint,
 * hash tiles and entry bundles, with the partial ones of every published size) through a
 * `fetch` function, for audit tests. The log's own entries (agent.register/rotate/revoke,
 * payload.erase) are signed with its key; agents sign their events and closes.
 *
 *   const log = new AgentLog();
 *   const a = log.register('agent-1');
 *   log.add(a.event('run-1'), a.event('run-1'), a.close('run-1'));
 *   log.publish();
 *   await auditLog(log.url, { trust: { logKey: log.vkey }, state: null, fetch: log.fetch });
 *
 * Anything can be appended as a leaf (`leaf(bytes)`), so tests can log what an honest
 * server would refuse, and `view.override` can serve something else for any path.
 */
import { encodeBundle } from '../../src/core/bundle.js';
import { leafHash } from '../../src/core/hash.js';
import { tilePath, tileWidthAt, TILE_WIDTH } from '../../src/core/tile.js';
import type { Entry } from '../../src/entry/entry.js';
import { signEntry } from '../../src/entry/envelope.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import { FakeLog, type FakeLogView } from './fake-log.js';
import { TestAgent, type ClientEntry } from './audit.js';

export class AgentLog {
  readonly fake: FakeLog;
  readonly view: FakeLogView;
  readonly url: string;
  /** Every leaf appended (published or not), in order. */
  readonly leaves: Uint8Array[] = [];
  readonly agents = new Map<string, TestAgent>();
  private published = 0;
  private time = 1_790_000_000_000;

  /** `fake`: another AgentLog's FakeLog, to serve a second history under the same key. */
  constructor(opts: { origin?: string; url?: string; fake?: FakeLog } = {}) {
    this.fake = opts.fake ?? new FakeLog(opts.origin ?? 'audit.example/log');
    this.url = opts.url ?? 'http://log.test/';
    this.view = this.fake.view(this.url);
  }

  get vkey(): string {
    return this.fake.vkey;
  }
  get skey(): string {
    return this.fake.skey;
  }
  /** Leaves appended so far (the next index). */
  get size(): number {
    return this.leaves.length;
  }
  get fetch(): typeof fetch {
    return this.fake.fetch as typeof fetch;
  }
  /** Paths requested so far (below the prefix). */
  get requests(): string[] {
    return this.view.requests;
  }

  /** Appends raw leaf bytes; returns the index. */
  leaf(bytes: Uint8Array): number {
    this.leaves.push(bytes);
    return this.leaves.length - 1;
  }

  /** Appends the envelopes of client entries; returns the first index. */
  add(...entries: ClientEntry[]): number {
    const first = this.size;
    for (const e of entries) this.leaf(e.signed.bytes);
    return first;
  }

  /** Appends an entry signed by the log's key (or `skey`); returns its index. */
  logEntry(entry: Entry, skey = this.fake.skey): number {
    return this.leaf(signEntry(entry, skey, nodeEd25519).bytes);
  }

  /** Registers a new agent (logged) and returns it. */
  register(id: string): TestAgent {
    const a = new TestAgent(id);
    this.agents.set(id, a);
    this.logEntry({ type: 'agent.register', agent: id, key: a.key.vkey, time: this.tick() });
    return a;
  }

  /** Rotates `agent` to a fresh key (logged); returns the old key's vkey. */
  rotate(a: TestAgent): string {
    const old = a.key.vkey;
    a.key = a.newKey();
    this.logEntry({ type: 'agent.rotate', agent: a.id, key: a.key.vkey, time: this.tick() });
    return old;
  }

  /** Revokes the agent's current key (logged). */
  revoke(a: TestAgent, reason = 'compromised'): number {
    return this.logEntry({ type: 'agent.revoke', agent: a.id, key: a.key.vkey, reason, time: this.tick() });
  }

  /** Logs the erasure of payload `name` of entry `index`. */
  erase(index: number, name: string, reason = 'gdpr art. 17'): number {
    return this.logEntry({ type: 'payload.erase', index, name, reason, time: this.tick() });
  }

  /**
   * Publishes every leaf appended since the last publish in one integration: stores the
   * hash tiles, the entry bundles (full and partial) and a checkpoint of the new size.
   */
  publish(): string {
    const from = this.published;
    const to = this.size;
    for (let n = Math.floor(from / TILE_WIDTH); n * TILE_WIDTH < to; n++) {
      const width = tileWidthAt('entries', n, to);
      this.view.tiles.set(tilePath({ level: 'entries', index: n, width }), encodeBundle(this.leaves.slice(n * TILE_WIDTH, n * TILE_WIDTH + width)));
    }
    const note = this.view.append(this.leaves.slice(from, to).map((l) => leafHash(l)));
    this.published = to;
    return note;
  }

  private tick(): number {
    return ++this.time;
  }
}
