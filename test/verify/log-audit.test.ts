/**
 * The log audit (src/verify/log-audit.ts) driven over HTTP by auditLog
 * (src/client/log-auditor.ts), against in-memory logs of real signed agent entries.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatCheckpoint, parseCheckpoint } from '../../src/core/checkpoint.js';
import { encodeBundle } from '../../src/core/bundle.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { newTiles, tilePath, tileWidthAt, TILE_WIDTH } from '../../src/core/tile.js';
import { encodeCanonical } from '../../src/entry/cbor.js';
import { newCosigner } from '../../src/note/cosignature.js';
import { nodeEd25519 } from '../../src/note/ed25519-node.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { formatNote, newSigner, openNote, parseNote, signNote } from '../../src/note/note.js';
import { auditLog, type AuditLogOptions } from '../../src/client/log-auditor.js';
import { formatAuditState, MAX_KEPT_FINDINGS, newAuditState, parseAuditState, type AuditState } from '../../src/verify/log-audit.js';
import { parsePolicy } from '../../src/verify/policy.js';
import { AgentLog } from '../helpers/agent-log.js';
import { TestAgent } from '../helpers/audit.js';

/** Audits with node:crypto Ed25519 (the library's default, @noble, is checked once below). */
function audit(log: AgentLog, state: AuditState | null, opts: Partial<AuditLogOptions> = {}) {
  return auditLog(log.url, { trust: { logKey: log.vkey }, state, fetch: log.fetch, ed25519: nodeEd25519, ...opts });
}

/** A log of `runs` closed runs of `len` events by two agents, with payloads. */
function busyLog(runs: number, len: number): { log: AgentLog; agents: TestAgent[] } {
  const log = new AgentLog();
  const agents = [log.register('agent-a'), log.register('agent-b')];
  for (let r = 0; r < runs; r++) {
    const a = agents[r % 2]!;
    const run = `run-${r}`;
    for (let i = 0; i < len; i++) log.add(a.event(run, { kind: 'tool_call', payloads: { args: `call ${r}/${i}` } }));
    log.add(a.close(run));
  }
  log.publish();
  return { log, agents };
}

/** The paths an incremental pass from `from` to `to` must fetch, and no others. */
function expectedPaths(from: number, to: number): string[] {
  const out = ['checkpoint'];
  if (from === to) return out;
  for (let n = Math.floor(from / TILE_WIDTH); n * TILE_WIDTH < to; n++) {
    out.push(tilePath({ level: 'entries', index: n, width: tileWidthAt('entries', n, to) }));
  }
  for (const t of newTiles(from, to)) out.push(tilePath(t));
  return out.sort();
}

describe('auditLog on an honest log', () => {
  it('checks every entry and the root, and saves a state that round-trips', async () => {
    const { log } = busyLog(30, 20);
    const r = await audit(log, null);
    expect(r.findings).toEqual([]);
    expect(r.treeSize).toBe(log.size);
    expect(r.previousSize).toBe(0);
    expect(r.entriesChecked).toBe(log.size);
    expect(r.state.counts).toEqual({ 'agent.register': 2, event: 600, 'run.close': 30 });
    expect(r.fetched.bundles).toBe(Math.ceil(log.size / 256));
    const again = parseAuditState(formatAuditState(r.state));
    expect(again).toEqual(r.state);
    expect(parseCheckpoint(openNote(again.checkpoint!, [log.fake.verifier]).text).treeSize).toBe(log.size);
  });

  it('a second run fetches only the checkpoint, bundles and tiles that are new or wider', async () => {
    const { log, agents } = busyLog(10, 30);
    const first = await audit(log, null);
    const from = log.size;
    for (let i = 0; i < 700; i++) log.add(agents[0]!.event('late', { kind: 'observation' }));
    log.publish();
    log.requests.length = 0;
    const second = await audit(log, first.state);
    expect(second.findings).toEqual([]);
    expect(second.previousSize).toBe(from);
    expect(second.entriesChecked).toBe(700);
    expect([...log.requests].sort()).toEqual(expectedPaths(from, log.size));
    log.requests.length = 0;
    const third = await audit(log, second.state);
    expect(third.entriesChecked).toBe(0);
    expect(log.requests).toEqual(['checkpoint']);
  });

  it('property: audited at random sizes, every pass verifies and fetches exactly what changed', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 5 }), async (growth) => {
        const log = new AgentLog();
        const a = log.register('agent-p');
        let state: AuditState | null = null;
        let run = 0;
        for (const g of growth) {
          for (let i = 0; i < g; i++) {
            if (i % 50 === 49) log.add(a.close(`r${run++}`));
            else log.add(a.event(`r${run}`));
          }
          log.publish();
          const from: number = state?.edge.size ?? 0;
          log.requests.length = 0;
          const r = await audit(log, state);
          expect(r.findings).toEqual([]);
          expect([...log.requests].sort()).toEqual(expectedPaths(from, log.size));
          state = r.state;
        }
        expect(state!.edge.size).toBe(log.size);
      }),
      { numRuns: 15 }
    );
  });

  it('asks for uncompressed bundles unless told to compress', async () => {
    const { log } = busyLog(1, 10);
    const seen: Array<string | undefined> = [];
    log.view.override = (path, init) => {
      if (path.startsWith('tile/entries/')) seen.push((init?.headers as Record<string, string> | undefined)?.['accept-encoding']);
      return undefined;
    };
    await audit(log, null);
    await audit(log, null, { compress: true });
    expect(seen).toEqual(['identity', undefined]);
  });

  it('checks key history across rotation and revocation, and erasures', async () => {
    const log = new AgentLog();
    const a = log.register('agent-r');
    const first = log.add(a.event('r1', { payloads: { prompt: 'secret' } }));
    log.rotate(a);
    log.add(a.event('r1'));
    log.revoke(a);
    log.rotate(a);
    log.add(a.event('r1'), a.close('r1'));
    log.erase(first, 'prompt');
    log.publish();
    // The library's defaults: @noble/ed25519 and @noble/hashes, as in a browser.
    const r = await auditLog(log.url, { trust: { logKey: log.vkey }, state: null, fetch: log.fetch });
    expect(r.findings).toEqual([]);
    expect(r.state.erased).toEqual([{ index: first, name: 'prompt', by: log.size - 1 }]);
    expect(r.state.pendingErasures).toEqual([]);
    expect(r.state.registry.length).toBe(4);
  });

  it('counts raw leaves with entries: any, and reports them otherwise', async () => {
    const log = new AgentLog();
    const a = log.register('agent-x');
    log.add(a.event('r'));
    const raw = log.leaf(new TextEncoder().encode('a raw entry'));
    log.publish();
    expect((await audit(log, null, { entries: 'any' })).state.counts).toEqual({ 'agent.register': 1, event: 1, raw: 1 });
    const strict = await audit(log, null);
    expect(strict.findings).toEqual([expect.objectContaining({ kind: 'envelope', index: raw, message: expect.stringMatching(/^entry 2 \(leaf hash .*\): envelope/) })]);
  });

  it('keeps the first 1,000 findings of a pass in full and counts the rest', async () => {
    const log = new AgentLog();
    for (let i = 0; i < 1200; i++) log.leaf(new TextEncoder().encode(`raw ${i}`));
    log.publish();
    const r = await audit(log, null);
    expect(r.findingsCount).toBe(1200);
    expect(r.findings).toHaveLength(MAX_KEPT_FINDINGS);
    expect(r.findings[999]).toMatchObject({ kind: 'envelope', index: 999 });
    expect(r.state.findingsTotal).toBe(1200);
    expect(r.state.findings).toHaveLength(MAX_KEPT_FINDINGS);
  });

  it('resumes an interrupted pass from the saved state', async () => {
    const { log } = busyLog(40, 40); // 1,642 entries, 7 bundles
    const saved: AuditState[] = [];
    const ctl = new AbortController();
    let t = 0;
    await expect(
      audit(log, null, {
        now: () => t++,
        saveEveryMs: 1,
        saveState: (s) => {
          saved.push(s);
          if (saved.length === 3) ctl.abort(new Error('stop'));
        },
        signal: ctl.signal,
      })
    ).rejects.toThrow('stop');
    const mid = parseAuditState(formatAuditState(saved.at(-1)!));
    expect(mid.checkpoint).toBeNull();
    expect(mid.target).not.toBeNull();
    expect(mid.edge.size % TILE_WIDTH).toBe(0);
    expect(mid.edge.size).toBeGreaterThan(0);
    log.requests.length = 0;
    const r = await audit(log, mid);
    expect(r.findings).toEqual([]);
    expect(r.previousSize).toBe(mid.edge.size);
    expect(r.entriesChecked).toBe(log.size - mid.edge.size);
    expect(r.state.counts).toEqual({ 'agent.register': 2, event: 1600, 'run.close': 40 });
    expect(r.state.target).toBeNull();
    expect([...log.requests].sort()).toEqual(expectedPaths(mid.edge.size, log.size));
  });

  it('verifies the checkpoint under a policy: a missing cosignature under the quorum fails', async () => {
    const { log } = busyLog(2, 5);
    const w1 = generateKey('witness.example/w1', ALG_COSIGNATURE_V1);
    const w2 = generateKey('witness.example/w2', ALG_COSIGNATURE_V1);
    const policy = parsePolicy(`log ${log.vkey}\nwitness w1 ${w1.vkey}\nwitness w2 ${w2.vkey}\ngroup both all w1 w2\nquorum both\n`);
    const note = parseNote(log.view.served!);
    const cosigned = (by: string[]) => formatNote(note.text, [...note.signatures, ...by.map((k) => newCosigner(k).cosign(note.text, 1_700_000_000))]);
    log.view.serve(cosigned([w1.skey]));
    await expect(auditLog(log.url, { trust: { policy }, state: null, fetch: log.fetch })).rejects.toThrow(/witness quorum not met: cosigned by w1; policy needs/);
    log.view.serve(cosigned([w1.skey, w2.skey]));
    const r = await auditLog(log.url, { trust: { policy }, state: null, fetch: log.fetch });
    expect([...r.cosigned]).toEqual(['w1', 'w2']);
    const bad = cosigned([w1.skey, w2.skey]).replace(/— witness\.example\/w2 (\S+)\n/, (_m, sig: string) => `— witness.example/w2 ${sig.slice(0, 20)}${sig[20] === 'A' ? 'B' : 'A'}${sig.slice(21)}\n`);
    log.view.serve(bad);
    await expect(auditLog(log.url, { trust: { policy }, state: null, fetch: log.fetch })).rejects.toThrow(/signature by witness "w2" .* is invalid/);
  });
});

describe('auditLog finds tampering', () => {
  it('an entry flipped in its bundle: the tile disagrees and the root does not rebuild, naming the index', async () => {
    const { log } = busyLog(5, 60);
    const i = 300;
    const bad = log.leaves[i]!.slice();
    bad[bad.length - 3]! ^= 0x01;
    const path = tilePath({ level: 'entries', index: 1, width: tileWidthAt('entries', 1, log.size) });
    const leaves = log.leaves.slice(256, 256 + tileWidthAt('entries', 1, log.size));
    leaves[i - 256] = bad;
    log.view.tiles.set(path, encodeBundle(leaves));
    const err = await audit(log, null).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerificationError);
    expect((err as Error).message).toMatch(/^root: the entries rebuild tree size 307 to root .*, but the log signed root/);
    expect((err as Error).message).toContain(`tile 0/1: hash 44 (entry ${i}) is`);
  });

  it('a forged agent signature in a consistent tree is a finding at its index', async () => {
    const log = new AgentLog();
    const a = log.register('agent-f');
    log.add(a.event('r'));
    const forged = a.event('r', {}, generateKey('agent-f').skey);
    const i = log.add(forged);
    log.add(a.event('r'));
    log.publish();
    const r = await audit(log, null);
    expect(r.findings).toEqual([
      { kind: 'signature', index: i, message: expect.stringContaining(`entry ${i}: the event of agent "agent-f" run "r" seq 1: its signature does not verify under the agent's key`) },
    ]);
    expect(r.state.findingsTotal).toBe(1);
    // The tree itself verified, so the state advances, keeping the finding.
    expect(r.state.edge.size).toBe(log.size);
    expect(parseAuditState(formatAuditState(r.state)).findings).toEqual(r.findings);
  });

  it('an entry signed with a rotated-out key names the key and the rotation', async () => {
    const log = new AgentLog();
    const a = log.register('agent-o');
    const oldSkey = a.key.skey;
    log.add(a.event('r'));
    log.rotate(a);
    const rotation = log.size - 1;
    const i = log.add(a.event('r', {}, oldSkey));
    log.publish();
    const [f] = (await audit(log, null)).findings;
    expect(f).toMatchObject({ kind: 'signature', index: i });
    expect(f!.message).toContain(`rotated by entry ${rotation} before it`);
  });

  it('an entry after its agent was revoked, or by an unknown agent, has no key', async () => {
    const log = new AgentLog();
    const a = log.register('agent-v');
    const revoked = log.revoke(a);
    const i = log.add(a.event('r'));
    const j = log.add(new TestAgent('stranger').event('r'));
    log.publish();
    expect((await audit(log, null)).findings).toEqual([
      { kind: 'key', index: i, message: expect.stringContaining(`was revoked by entry ${revoked}, before it`) },
      { kind: 'key', index: j, message: expect.stringContaining('the agent was never registered before it') },
    ]);
  });

  it('registry and erasure entries must be signed by the log and be valid', async () => {
    const log = new AgentLog();
    const a = log.register('agent-g');
    const e = log.add(a.event('r', { payloads: { p: 'x' } }));
    const forgedRotate = log.logEntry({ type: 'agent.rotate', agent: 'agent-g', key: generateKey('agent-g').vkey, time: 1 }, generateKey('audit.example/log').skey);
    const badRegister = log.logEntry({ type: 'agent.register', agent: 'agent-g', key: generateKey('agent-g').vkey, time: 2 });
    const noPayload = log.erase(e, 'nope');
    const notBefore = log.erase(log.size + 5, 'p');
    const ok = log.erase(e, 'p');
    const twice = log.erase(e, 'p');
    log.publish();
    const r = await audit(log, null);
    const byIndex = Object.fromEntries(r.findings.map((f) => [f.index, f]));
    expect(byIndex[forgedRotate]).toMatchObject({ kind: 'signature', message: `entry ${forgedRotate}: the agent.rotate entry's signature by the log key does not verify` });
    expect(byIndex[badRegister]).toMatchObject({ kind: 'registry', message: expect.stringContaining('already registered') });
    expect(byIndex[noPayload]).toMatchObject({ kind: 'erasure', message: expect.stringContaining(`commits to no payload "nope"`) });
    expect(byIndex[notBefore]).toMatchObject({ kind: 'erasure', message: expect.stringContaining('which is not before it') });
    expect(byIndex[twice]).toMatchObject({ kind: 'erasure', message: expect.stringContaining(`already erased by entry ${ok}`) });
    expect(r.findings).toHaveLength(5);
  });

  it('a non-canonical envelope is a finding', async () => {
    const log = new AgentLog();
    const a = log.register('agent-c');
    const good = a.event('r');
    // The same map with its keys in the wrong order: valid CBOR, not canonical.
    const bytes = good.signed.bytes;
    // Canonical order is "sig" then "entry" (shorter key first); this puts "entry" first.
    const swapped = new Uint8Array([0xa2, 0x65, ...new TextEncoder().encode('entry'), ...encodeCanonical(good.signed.entryBytes), 0x63, ...new TextEncoder().encode('sig'), 0x58, 0x40, ...good.signed.signature]);
    expect(swapped.length).toBe(bytes.length);
    const i = log.leaf(swapped);
    log.publish();
    const [f] = (await audit(log, null)).findings;
    expect(f).toMatchObject({ kind: 'envelope', index: i });
  });

  it('a served tile above level 0 that differs from the rebuilt one is a finding; the root still verifies', async () => {
    const log = new AgentLog();
    const a = log.register('agent-t');
    for (let i = 0; i < 256 * 2 + 10; i++) log.add(a.event('r'));
    log.publish();
    const path = tilePath({ level: 1, index: 0, width: 2 });
    const t = log.view.tiles.get(path)!.slice();
    t[40]! ^= 0x80;
    log.view.tiles.set(path, t);
    const r = await audit(log, null);
    expect(r.findings).toEqual([{ kind: 'tile', message: expect.stringMatching(/^tile 1\/0\.p\/2: hash 1 is .*, rebuilt from the entries it is/) }]);
  });

  it('a level-0 tile that disagrees with its bundle names the entry', async () => {
    const log = new AgentLog();
    const a = log.register('agent-l');
    for (let i = 0; i < 20; i++) log.add(a.event('r'));
    log.publish();
    const path = tilePath({ level: 0, index: 0, width: 21 });
    const t = log.view.tiles.get(path)!.slice();
    t[32 * 7]! ^= 1;
    log.view.tiles.set(path, t);
    const r = await audit(log, null);
    expect(r.findings).toEqual([{ kind: 'tile', index: 7, message: expect.stringContaining('tile 0/0: hash 7 (entry 7) is') }]);
  });

  it('a checkpoint with a flipped bit, a bad signature, or another origin is refused', async () => {
    const { log } = busyLog(1, 3);
    const note = log.view.served!;
    const flipped = note.replace(/\n(\d+)\n/, (_m, n: string) => `\n${Number(n) + 1}\n`);
    log.view.serve(flipped);
    await expect(audit(log, null)).rejects.toThrow(/signature by the log key .* is invalid/);
    const other = generateKey('audit.example/log');
    log.view.serve(signNote(formatCheckpoint(parseCheckpoint(openNote(note, [log.fake.verifier]).text)), [newSigner(other.skey)]));
    await expect(audit(log, null)).rejects.toThrow(/not signed by the log key/);
    log.view.serve(note);
    await expect(audit(log, newAuditState('another.example/log'))).rejects.toThrow(/checkpoint: origin "audit.example\/log" is not the audited log "another.example\/log"/);
  });

  it('a rollback and a fork at the audited size are refused; the state is not advanced', async () => {
    const { log, agents } = busyLog(3, 10);
    const first = await audit(log, null);
    const size = log.size;
    log.add(agents[0]!.event('more'));
    log.publish();
    log.view.serve(log.view.checkpoint(size - 0));
    log.view.serve(log.fake.sign(size - 1, log.view.roots.get(size)!));
    await expect(audit(log, first.state)).rejects.toThrow(/smaller than the last audited checkpoint .*: the log rolled back/);
    log.view.serve(log.fake.sign(size, new Uint8Array(32).fill(7)));
    await expect(audit(log, first.state)).rejects.toThrow(new RegExp(`the log signed two roots for tree size ${size}: .*: the log forked`));
  });

  it('a log that rewrote history after an audit fails the root, naming the rewritten entry', async () => {
    const { log, agents } = busyLog(1, 100); // 103 entries: the last bundle is partial
    const first = await audit(log, null);
    // A second history under the same key: entry 50 replaced, and one more entry.
    const fork = new AgentLog({ fake: log.fake, url: 'http://fork.test/' });
    log.leaves.forEach((l, i) => fork.leaf(i === 50 ? agents[0]!.event('other').signed.bytes : l));
    fork.add(agents[0]!.event('x'));
    fork.publish();
    const err = await auditLog('http://fork.test/', { trust: { logKey: log.vkey }, state: first.state, fetch: log.fetch }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerificationError);
    expect((err as Error).message).toContain('does not extend the audited tree of size 103');
    expect((err as Error).message).toContain('entry 50: audited before with leaf hash');
  });

  it('property: a bit flipped in any bundle, tile or the checkpoint the pass reads is always detected', async () => {
    const log = new AgentLog();
    const a = log.register('agent-b');
    const b = log.register('agent-c');
    for (let i = 0; i < 700; i++) log.add((i % 3 ? a : b).event(`r${i % 7}`, { payloads: i % 5 ? undefined : { p: `v${i}` } }));
    log.rotate(a);
    for (let i = 0; i < 100; i++) log.add(a.event('r9'));
    log.publish();
    const paths = expectedPaths(0, log.size);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), fc.nat(), fc.integer({ min: 0, max: 7 }), async (path, at, bit) => {
        const original = path === 'checkpoint' ? new TextEncoder().encode(log.view.served!) : log.view.tiles.get(path)!;
        const flipped = original.slice();
        flipped[at % flipped.length]! ^= 1 << bit;
        log.view.override = (p) => (p === path ? new Response(flipped, { status: 200 }) : undefined);
        try {
          const r = await audit(log, null);
          expect(r.findings.length, `${path} byte ${at % flipped.length} bit ${bit}`).toBeGreaterThan(0);
        } catch (err) {
          expect((err as { code?: string }).code, String(err)).toMatch(/^(MALFORMED|VERIFICATION_FAILED|TOO_LARGE)$/);
        } finally {
          log.view.override = undefined;
        }
      }),
      { numRuns: 40 }
    );
  });

  it('never throws anything but a TlogError for garbage served in place of bundles and tiles', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.constantFrom<'entries' | 0>('entries', 0), async (junk, which) => {
        const log = new AgentLog();
        const a = log.register('agent-j');
        for (let i = 0; i < 5; i++) log.add(a.event('r'));
        log.publish();
        log.view.tiles.set(tilePath({ level: which, index: 0, width: 6 }), junk);
        try {
          const r = await audit(log, null);
          expect(r.findings.length).toBeGreaterThan(0);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          expect((err as { code?: string }).code).toMatch(/^(MALFORMED|VERIFICATION_FAILED|STORAGE|TOO_LARGE)$/);
        }
      }),
      { numRuns: 60 }
    );
  });
});

describe('audit state files', () => {
  it('refuses unknown fields, bad hashes and an edge of the wrong shape', async () => {
    const { log } = busyLog(1, 300);
    const s = (await audit(log, null)).state;
    const j = JSON.parse(formatAuditState(s)) as Record<string, unknown>;
    expect(() => parseAuditState(JSON.stringify({ ...j, extra: 1 }))).toThrow(/unknown field "extra"/);
    expect(() => parseAuditState(JSON.stringify({ ...j, format: 'x' }))).toThrow(/format/);
    expect(() => parseAuditState(JSON.stringify({ ...j, treeSize: 5 }))).toThrow(/levels for a tree of size 5|hashes, want/);
    expect(() => parseAuditState(JSON.stringify({ ...j, edge: [['AAAA']] }))).toThrow(MalformedError);
    expect(() => parseAuditState('{')).toThrow(/not JSON/);
    expect(() => parseAuditState(JSON.stringify({ ...j, findingsTotal: -1 }))).toThrow(/findingsTotal/);
  });
});

