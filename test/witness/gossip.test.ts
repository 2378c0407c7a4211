/**
 * Gossip and pull (src/witness/gossip.ts) between real witnesses: Witness objects on real
 * stores (PGlite always, Postgres too when DATABASE_URL is set), each behind its Hono app,
 * and logs that are in-memory tlog-tiles logs built with integrate(). All HTTP goes through
 * one `fetch` that routes by URL host: no network.
 *
 * The malicious log signs two histories with one key and serves X under http://log-a/ and Y
 * under http://log-b/. Witness A reads log-a, B reads log-b, C reads log-a.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { formatAddCheckpoint } from '../../src/core/add-checkpoint.js';
import { parseCheckpoint } from '../../src/core/checkpoint.js';
import { equalBytes, toHex, utf8 } from '../../src/core/encoding.js';
import { leafHash } from '../../src/core/hash.js';
import { consistencyPath, memoryNodeReader, proveConsistency, rootHash } from '../../src/core/tree.js';
import { createWitnessApp } from '../../src/http/witness-app.js';
import { Registry } from '../../src/metrics.js';
import { newCosignatureVerifier, newCosigner, type CosignatureVerifier } from '../../src/note/cosignature.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { newVerifier, openNote } from '../../src/note/note.js';
import { formatForkEvidence, verifyForkEvidence } from '../../src/verify/evidence.js';
import { parsePolicy } from '../../src/verify/policy.js';
import { Gossip, type GossipReport } from '../../src/witness/gossip.js';
import { originHash, Witness, type Alarm } from '../../src/witness/witness.js';
import { FakeLog, hostRouter, type FakeLogView } from '../helpers/fake-log.js';
import { pgliteWitnessFactory, postgresWitnessFactory, type WitnessStoreFactory, type WitnessStoreHandle } from '../helpers/witness-stores.js';

const ORIGIN = 'gossip.test/log';
const HASH = originHash(ORIGIN);

/** Three engines per backend: on PGlite each admits one client, and each witness has its own. */
function backends(): Array<{ name: string; factories: WitnessStoreFactory[] }> {
  const out = [{ name: 'pglite', factories: [pgliteWitnessFactory(), pgliteWitnessFactory(), pgliteWitnessFactory()] }];
  const url = process.env.DATABASE_URL;
  if (url) out.push({ name: 'postgres', factories: [postgresWitnessFactory(url), postgresWitnessFactory(url), postgresWitnessFactory(url)] });
  return out;
}

interface Peer {
  readonly name: string;
  readonly host: string;
  readonly vkey: string;
  readonly skey: string;
  readonly cosigVerifier: CosignatureVerifier;
}

interface Node extends Peer {
  readonly witness: Witness;
  readonly gossip: Gossip;
  readonly alarms: Alarm[];
  /** Every checkpoint this witness cosigned (answered 200 to), as (size, root hex). */
  readonly cosigned: Array<{ size: number; root: string }>;
}

function peer(name: string): Peer {
  const k = generateKey(`${name}.gossip.test`, ALG_COSIGNATURE_V1);
  return { name, host: name, vkey: k.vkey, skey: k.skey, cosigVerifier: newCosignatureVerifier(k.vkey) };
}

function policyText(logVkey: string, logUrl: string | undefined, peers: readonly Peer[], extra = ''): string {
  return (
    `log ${logVkey}${logUrl ? ' ' + logUrl : ''}\n` +
    peers.map((p) => `witness ${p.name} ${p.vkey} http://${p.host}/\n`).join('') +
    extra +
    'quorum none\n'
  );
}

/** Leaf hashes of `len` entries; the first `p` shared by every `tag`. */
function history(tag: string, p: number, len: number): Uint8Array[] {
  return Array.from({ length: len }, (_, i) => leafHash(utf8(i < p ? `common ${i}` : `${tag} ${i}`)));
}

describe.each(backends())('gossip and pull on $name', ({ factories }) => {
  let routes: Record<string, { fetch: (r: Request) => Response | Promise<Response> } | ((u: string | URL | Request, i?: RequestInit) => Promise<Response>)>;
  let net: typeof fetch;
  let opened: Array<{ witness: Witness; handle: WitnessStoreHandle }>;
  let errors: ReturnType<typeof vi.spyOn>;

  beforeEach(() => {
    routes = {};
    net = hostRouter(routes);
    opened = [];
    // Alarms are logged with console.error; keep the output readable.
    errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
  });
  afterEach(async () => {
    for (const o of opened.splice(0)) {
      await o.witness.close().catch(() => undefined);
      await o.handle.destroy().catch(() => undefined);
    }
    errors.mockRestore();
  });
  afterAll(async () => {
    for (const f of factories) await f.dispose();
  });

  /** Opens a witness on engine `i`, serves its app at http://<host>/. */
  async function start(p: Peer, i: number, policy: string): Promise<Node> {
    const handle = await factories[i]!.create();
    const store = await handle.open();
    const alarms: Alarm[] = [];
    let gossip: Gossip | undefined;
    const witness = await Witness.open({
      store,
      cosigner: newCosigner(p.skey),
      policy: parsePolicy(policy),
      onAlarm: (a) => alarms.push(a),
      tiles: (log) => gossip?.tileClient(log),
    });
    opened.push({ witness, handle });
    gossip = new Gossip(witness, { fetch: net, timeoutMs: 5000 });
    routes[p.host] = createWitnessApp({ witness, metrics: new Registry(), adminTokens: ['admin-token'] });
    return { ...p, witness, gossip, alarms, cosigned: [] };
  }

  /** Closes a witness and opens it again on the same data (a process restart). */
  async function restart(w: Node, policy: string): Promise<Node> {
    const i = opened.findIndex((o) => o.witness === w.witness);
    const { handle } = opened[i]!;
    await w.witness.close();
    const store = await handle.open();
    let gossip: Gossip | undefined;
    const alarms: Alarm[] = [];
    const witness = await Witness.open({
      store,
      cosigner: newCosigner(w.skey),
      policy: parsePolicy(policy),
      onAlarm: (a) => alarms.push(a),
      tiles: (log) => gossip?.tileClient(log),
    });
    opened[i] = { witness, handle };
    gossip = new Gossip(witness, { fetch: net, timeoutMs: 5000 });
    routes[w.host] = createWitnessApp({ witness, metrics: new Registry(), adminTokens: ['admin-token'] });
    return { ...w, witness, gossip, alarms };
  }

  /** POST add-checkpoint through the network; records what was cosigned. */
  async function push(w: Node, note: string, oldSize: number, proof: readonly Uint8Array[] = []): Promise<{ status: number; body: string }> {
    const res = await net(`http://${w.host}/add-checkpoint`, { method: 'POST', body: formatAddCheckpoint({ oldSize, proof, checkpoint: note }) });
    const body = await res.text();
    if (res.status === 200) {
      const cp = parseCheckpoint(openNote(note, [w.witness.currentPolicy().logs[0]!.verifier]).text);
      w.cosigned.push({ size: cp.treeSize, root: toHex(cp.rootHash) });
    }
    return { status: res.status, body };
  }

  /** Pushes the view's checkpoints of `sizes` in order, each with a proof from the previous. */
  async function pushAll(w: Node, v: FakeLogView, sizes: readonly number[]): Promise<void> {
    const node = memoryNodeReader(v.leafHashes);
    let old = 0;
    for (const s of sizes) {
      const r = await push(w, v.checkpoint(s), old, old === 0 ? [] : proveConsistency(old, s, node));
      expect(r.status, `${w.name} ← ${s}: ${r.body}`).toBe(200);
      old = s;
    }
  }

  async function get(url: string): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await net(url);
    return { status: res.status, body: await res.text(), headers: res.headers };
  }

  // -------------------------------------------------------------------------------------
  describe('an honest log', () => {
    it('gossip between three witnesses at different sizes finds everything consistent, and a quiet log costs no tile fetches', async () => {
      const log = new FakeLog(ORIGIN);
      const h = log.view('http://log-h/');
      h.grow(history('h', 0, 700), [10, 300, 700]);
      routes['log-h'] = log.fetch;
      const peers = [peer('wa'), peer('wb'), peer('wc')];
      // A fourth witness in the policy that cannot be reached.
      const ghost = peer('wd');
      const policy = policyText(log.vkey, 'http://log-h/', peers, `witness wd ${ghost.vkey} http://wd/\n`);
      const [a, b, c] = await Promise.all(peers.map((p, i) => start(p, i, policy)));
      await pushAll(a!, h, [10, 300]);
      await pushAll(b!, h, [700]);

      h.requests.length = 0;
      const ra = await a!.gossip.gossipRound();
      expect(ra).toMatchObject({ checkpoints: 1, consistent: 1, forks: 0, unproven: 0 });
      expect(h.requests.some((p) => p.startsWith('tile/')), 'A reads the size-700 tree').toBe(true);
      expect(ra.errors).toHaveLength(2);
      expect(ra.errors.join('\n')).toMatch(/^peer wd: checkpoint of gossip.test\/log: .*ENOTFOUND wd/m);
      expect(ra.errors.join('\n')).toMatch(/^peer wd: fork evidence for gossip.test\/log: /m);
      const rb = await b!.gossip.gossipRound();
      expect(rb).toMatchObject({ checkpoints: 1, consistent: 1, forks: 0, unproven: 0 });
      const rc = await c!.gossip.gossipRound();
      expect(rc).toMatchObject({ checkpoints: 2, consistent: 1, forks: 0, unproven: 0 });

      // Nothing changed: the pairs are settled, no tile is fetched again.
      h.requests.length = 0;
      const again = await a!.gossip.gossipRound();
      expect(again).toMatchObject({ checkpoints: 1, consistent: 1, forks: 0, unproven: 0 });
      expect(h.requests.filter((p) => p.startsWith('tile/'))).toEqual([]);

      for (const w of [a!, b!, c!]) {
        expect(w.witness.isQuarantined(ORIGIN)).toBe(false);
        expect(w.alarms).toEqual([]);
        expect((await get(`http://${w.host}/${HASH}/fork-evidence`)).status).toBe(404);
      }
      // Still cosigning: A moves on to 700.
      const node = memoryNodeReader(h.leafHashes);
      expect((await push(a!, h.checkpoint(700), 300, proveConsistency(300, 700, node))).status).toBe(200);
    });
  });

  // -------------------------------------------------------------------------------------
  describe('a malicious log showing history X to A and Y to B under one key', () => {
    const P = 40; // X and Y share leaves [0, 40)
    const cases = [
      { name: 'B holds the larger tree', sa: 300, sb: 520, detector: 'wb' },
      { name: 'A holds the larger tree', sa: 520, sb: 300, detector: 'wa' },
      { name: 'equal sizes', sa: 300, sb: 300, detector: 'wa' },
    ];

    it.each(cases)('$name ($sa vs $sb): one round finds the fork, the next spreads the evidence', async ({ sa, sb, detector }) => {
      const log = new FakeLog(ORIGIN);
      const logVerifier = newVerifier(log.vkey);
      const X = history('x', P, 600);
      const Y = history('y', P, 600);
      const va = log.view('http://log-a/');
      const vb = log.view('http://log-b/');
      va.grow(X, [20, sa]);
      vb.grow(Y, [20, sb]);
      routes['log-a'] = log.fetch;
      routes['log-b'] = log.fetch;
      // The checkpoint of size 20 lies in the common prefix: the same signed note on both.
      expect(va.checkpoint(20)).toBe(vb.checkpoint(20));

      const peers = [peer('wa'), peer('wb'), peer('wc')];
      const [a, b, c] = await Promise.all([
        start(peers[0]!, 0, policyText(log.vkey, 'http://log-a/', peers)),
        start(peers[1]!, 1, policyText(log.vkey, 'http://log-b/', peers)),
        start(peers[2]!, 2, policyText(log.vkey, 'http://log-a/', peers)),
      ]);
      const byName = { wa: a!, wb: b!, wc: c! };
      await pushAll(a!, va, [20, sa]);
      await pushAll(b!, vb, [20, sb]);

      // One round each, A then B then C.
      const round1: Record<string, GossipReport> = {};
      for (const w of [a!, b!, c!]) round1[w.name] = await w.gossip.gossipRound();
      const det = byName[detector as keyof typeof byName];
      const other = det === a ? b! : a!;

      // The witness that can read the larger tree (either, for equal sizes) found it.
      expect(round1[det.name]!.forks, JSON.stringify(round1)).toBeGreaterThanOrEqual(1);
      expect(det.witness.isQuarantined(ORIGIN)).toBe(true);
      if (other === a) {
        // A ran first and could not prove anything from its own view of the log (log-a does
        // not serve the larger tree): nothing is concluded from hashes that do not check out.
        expect(round1['wa']).toMatchObject({ forks: 0, unproven: 1, consistent: 0 });
        expect(a!.witness.isQuarantined(ORIGIN)).toBe(false);
      } else {
        // B ran after A had stored evidence: it adopted it in the same round.
        expect(round1['wb']!.forks).toBeGreaterThanOrEqual(1);
        expect(b!.witness.isQuarantined(ORIGIN)).toBe(true);
      }
      // C ran last and adopted the evidence from a peer.
      expect(round1['wc']!.forks).toBeGreaterThanOrEqual(1);
      const forkAlarm = det.alarms.find((x) => x.kind === 'fork');
      expect(forkAlarm?.message).toMatch(new RegExp(`/${HASH}/fork-evidence`));

      // The evidence, as served, verifies offline with nothing but the log's vkey.
      const served = await get(`http://${det.host}/${HASH}/fork-evidence`);
      expect(served.status).toBe(200);
      expect(served.headers.get('Glasslog-Fork-Status')).toBe('open');
      expect(served.body).toBe(forkAlarm!.evidence);
      const proved = verifyForkEvidence(served.body, [newVerifier(log.vkey)]);
      expect(proved.origin).toBe(ORIGIN);
      expect([proved.smaller.treeSize, proved.larger.treeSize]).toEqual([Math.min(sa, sb), Math.max(sa, sb)]);
      const rootsX = new Set([toHex(rootHash(sa, memoryNodeReader(X)))]);
      const rootsY = new Set([toHex(rootHash(sb, memoryNodeReader(Y)))]);
      const seen = [toHex(proved.smaller.rootHash), toHex(proved.larger.rootHash)];
      expect(seen.filter((r) => rootsX.has(r))).toHaveLength(1);
      expect(seen.filter((r) => rootsY.has(r))).toHaveLength(1);

      // The detector refuses the next checkpoint of its own branch: 403.
      const mine = det === a ? va : vb;
      const hist = det === a ? X : Y;
      const from = det === a ? sa : sb;
      mine.append(hist.slice(from, from + 10));
      const refused = await push(det, mine.checkpoint(from + 10), from, proveConsistency(from, from + 10, memoryNodeReader(hist)));
      expect(refused.status, refused.body).toBe(403);
      expect(refused.body).toMatch(/holds fork evidence against "gossip.test\/log"/);

      // Round two: everyone adopts the evidence from a peer's /fork-evidence.
      for (const w of [a!, b!, c!]) await w.gossip.gossipRound();
      for (const w of [a!, b!, c!]) {
        expect(w.witness.isQuarantined(ORIGIN), w.name).toBe(true);
        const e = await get(`http://${w.host}/${HASH}/fork-evidence`);
        expect(e.status, w.name).toBe(200);
        expect(verifyForkEvidence(e.body, [logVerifier]).origin).toBe(ORIGIN);
        expect(w.alarms.filter((x) => x.kind === 'fork').length, w.name).toBeGreaterThanOrEqual(1);
      }

      // The other branch is refused everywhere (403: quarantined).
      const crossX = await push(b!, va.checkpoint(sa), Math.min(sa, sb), sa > sb ? proveConsistency(sb, sa, memoryNodeReader(X)) : []);
      const crossY = await push(a!, vb.checkpoint(sb), Math.min(sa, sb), sb > sa ? proveConsistency(sa, sb, memoryNodeReader(Y)) : []);
      const crossC = await push(c!, vb.checkpoint(sb), 0);
      for (const r of [crossX, crossY, crossC]) expect(r.status, r.body).toBe(403);

      // No witness ever cosigned both branches; what each serves is its own branch, cosigned.
      const branch = (s: { size: number; root: string }) => {
        const inX = s.size <= X.length && toHex(rootHash(s.size, memoryNodeReader(X))) === s.root;
        const inY = s.size <= Y.length && toHex(rootHash(s.size, memoryNodeReader(Y))) === s.root;
        return inX && inY ? 'both' : inX ? 'X' : inY ? 'Y' : 'neither';
      };
      for (const w of [a!, b!, c!]) {
        const branches = new Set(w.cosigned.map(branch).filter((x) => x !== 'both'));
        expect(branches.size, `${w.name} cosigned ${[...branches]}`).toBeLessThanOrEqual(1);
        expect(branches.has('neither')).toBe(false);
      }
      expect(new Set(a!.cosigned.map(branch))).toEqual(new Set(['both', 'X']));
      expect(new Set(b!.cosigned.map(branch))).toEqual(new Set(['both', 'Y']));
      expect(c!.cosigned).toEqual([]);
      for (const [w, s, v] of [
        [a!, sa, va],
        [b!, sb, vb],
      ] as const) {
        const m = await get(`http://${w.host}/${HASH}/checkpoint`);
        expect(m.status).toBe(200);
        const opened = openNote(m.body, [logVerifier, w.cosigVerifier]);
        expect(opened.verified.map((x) => x.name).sort()).toEqual([ORIGIN, `${w.name}.gossip.test`].sort());
        expect(equalBytes(parseCheckpoint(opened.text).rootHash, v.roots.get(s)!)).toBe(true);
      }
      expect((await get(`http://${c!.host}/${HASH}/checkpoint`)).status).toBe(404);
    });

    it('evidence served by a peer that does not verify is not adopted', async () => {
      const log = new FakeLog(ORIGIN);
      const X = history('x', 0, 50);
      const v = log.view('http://log-a/');
      v.grow(X, [10, 50]);
      routes['log-a'] = log.fetch;
      const peers = [peer('wa'), peer('wb')];
      const a = await start(peers[0]!, 0, policyText(log.vkey, 'http://log-a/', peers));
      await pushAll(a, v, [10]);
      // A fake peer serving a consistent pair as "evidence" and its checkpoint at 50.
      const bogus = formatForkEvidence({ path: consistencyPath(10, 50, memoryNodeReader(X)), smaller: v.checkpoint(10), larger: v.checkpoint(50) });
      routes['wb'] = (async (u: string | URL | Request) => {
        const url = String(u);
        if (url.endsWith('/fork-evidence')) return new Response(bogus);
        if (url.endsWith('/checkpoint')) return new Response(v.checkpoint(50));
        return new Response('', { status: 404 });
      }) as (u: string | URL | Request, i?: RequestInit) => Promise<Response>;
      const r = await a.gossip.gossipRound();
      expect(r.forks).toBe(0);
      expect(r.consistent).toBe(1);
      expect(r.errors.join('\n')).toMatch(/peer wb: fork evidence for gossip.test\/log: fork evidence: the checkpoints are consistent/);
      expect(a.witness.isQuarantined(ORIGIN)).toBe(false);
    });
  });

  // -------------------------------------------------------------------------------------
  describe('robustness', () => {
    it('a peer serving a log-signed checkpoint of another origin does not abort the round or quarantine anything', async () => {
      const log = new FakeLog(ORIGIN);
      const h = log.view('http://log-h/');
      h.grow(history('h', 0, 10), [10]);
      routes['log-h'] = log.fetch;
      const peers = [peer('wa'), peer('wb')];
      const a = await start(peers[0]!, 0, policyText(log.vkey, 'http://log-h/', peers));
      await pushAll(a, h, [10]);
      // The log signed, with its own key, a checkpoint whose origin line is another log's;
      // a (malicious) peer serves it on the monitoring path of gossip.test/log.
      const foreign = log.sign(10, leafHash(utf8('another tree')), 'gossip.test/other');
      routes['wb'] = (async (u: string | URL | Request) =>
        String(u).endsWith(`/${HASH}/checkpoint`) ? new Response(foreign) : new Response('', { status: 404 })) as (
        u: string | URL | Request,
        i?: RequestInit
      ) => Promise<Response>;
      let report: GossipReport | undefined;
      let thrown: unknown;
      try {
        report = await a.gossip.gossipRound();
      } catch (e) {
        thrown = e;
      }
      expect(thrown, `gossipRound rejected: ${(thrown as Error)?.message}`).toBeUndefined();
      expect(report!.forks).toBe(0);
      expect(report!.errors.join('\n')).toMatch(/peer wb/);
      expect(a.witness.isQuarantined(ORIGIN)).toBe(false);
    });

    it('after an operator resolves a fork, the quarantine a gossip round leaves is the one a restart sees', async () => {
      const log = new FakeLog(ORIGIN);
      const X = history('x', 40, 300);
      const Y = history('y', 40, 300);
      const va = log.view('http://log-a/');
      const vb = log.view('http://log-b/');
      va.grow(X, [300]);
      vb.grow(Y, [300]);
      routes['log-a'] = log.fetch;
      routes['log-b'] = log.fetch;
      const peers = [peer('wa'), peer('wb')];
      const policyB = policyText(log.vkey, 'http://log-b/', peers);
      const a = await start(peers[0]!, 0, policyText(log.vkey, 'http://log-a/', peers));
      let b = await start(peers[1]!, 1, policyB);
      await pushAll(a, va, [300]);
      await pushAll(b, vb, [300]);
      await a.gossip.gossipRound();
      await b.gossip.gossipRound();
      expect(a.witness.isQuarantined(ORIGIN) && b.witness.isQuarantined(ORIGIN)).toBe(true);

      // B's operator resolves the fork.
      const res = await net(`http://wb/admin/forks/${HASH}/resolve`, { method: 'POST', headers: { Authorization: 'Bearer admin-token' } });
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/resolved [12] fork record/);
      expect(b.witness.isQuarantined(ORIGIN)).toBe(false);
      expect((await get(`http://wb/${HASH}/fork-evidence`)).headers.get('Glasslog-Fork-Status')).toBe('resolved');

      // A still holds the same evidence, open. B gossips once more.
      await b.gossip.gossipRound();
      const before = b.witness.isQuarantined(ORIGIN);
      const status = (await get(`http://wb/${HASH}/fork-evidence`)).headers.get('Glasslog-Fork-Status');
      // What the witness serves and what it enforces agree...
      expect(status === 'open', `fork-evidence says ${status}, quarantined: ${before}`).toBe(before);
      // ...and survive a restart.
      b = await restart(b, policyB);
      expect(b.witness.isQuarantined(ORIGIN), `quarantined before the restart: ${before}`).toBe(before);
    });
  });

  // -------------------------------------------------------------------------------------
  describe('pull', () => {
    it('cosigns an honest log, follows it with proofs built from tiles, and alarms on a rollback', async () => {
      const log = new FakeLog(ORIGIN);
      const H = history('h', 0, 900);
      const h = log.view('http://log-h/');
      h.grow(H, [300]);
      routes['log-h'] = log.fetch;
      const me = peer('wp');
      const w = await start(me, 0, policyText(log.vkey, 'http://log-h/', [me]));
      const monitor = async () => {
        const m = await get(`http://wp/${HASH}/checkpoint`);
        expect(m.status).toBe(200);
        const o = openNote(m.body, [newVerifier(log.vkey), me.cosigVerifier]);
        expect(o.verified).toHaveLength(2);
        return parseCheckpoint(o.text);
      };

      expect((await get(`http://wp/${HASH}/checkpoint`)).status).toBe(404);
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'cosigned 300']]));
      expect((await monitor()).treeSize).toBe(300);
      // From size 0 no proof is needed, so no tile was read.
      expect(h.requests).toEqual(['checkpoint']);

      h.grow(H, [700]);
      h.requests.length = 0;
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'cosigned 700']]));
      const at700 = await monitor();
      expect(at700.treeSize).toBe(700);
      expect(toHex(at700.rootHash)).toBe(toHex(h.roots.get(700)!));
      expect(h.requests[0]).toBe('checkpoint');
      expect(h.requests.slice(1).length).toBeGreaterThan(0);
      expect(h.requests.slice(1).every((p) => /^tile\/\d+\/\d{3}(\.p\/\d+)?$/.test(p))).toBe(true);

      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'unchanged']]));
      expect(w.alarms).toEqual([]);

      // The log rolls its checkpoint back to 300 (same history): an alarm, no fork.
      h.serve(300);
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'behind (300 < 700)']]));
      expect(w.alarms).toHaveLength(1);
      expect(w.alarms[0]).toMatchObject({ origin: ORIGIN, kind: 'rejected' });
      expect(w.alarms[0]!.message).toMatch(/serves size 300, smaller than the size 700 this witness cosigned/);
      expect(w.witness.isQuarantined(ORIGIN)).toBe(false);
      expect((await monitor()).treeSize).toBe(700);

      // It grows again and is followed again.
      h.grow(H, [900]);
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'cosigned 900']]));
    });

    it('a rollback to another history is a fork: evidence from the tiles of the size held', async () => {
      const log = new FakeLog(ORIGIN);
      const H = history('h', 30, 400);
      const Z = history('z', 30, 400);
      const h = log.view('http://log-h/');
      const z = log.view('http://log-z/');
      h.grow(H, [400]);
      z.grow(Z, [250]);
      routes['log-h'] = log.fetch;
      const me = peer('wp');
      const w = await start(me, 0, policyText(log.vkey, 'http://log-h/', [me]));
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'cosigned 400']]));
      h.serve(z.checkpoint(250));
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'behind (250 < 400)']]));
      expect(w.witness.isQuarantined(ORIGIN)).toBe(true);
      const fork = w.alarms.find((x) => x.kind === 'fork');
      expect(fork).toBeDefined();
      const v = verifyForkEvidence(fork!.evidence!, [newVerifier(log.vkey)]);
      expect([v.smaller.treeSize, v.larger.treeSize]).toEqual([250, 400]);
      expect((await get(`http://wp/${HASH}/fork-evidence`)).body).toBe(fork!.evidence);
    });

    it('another checkpoint of the size held is a fork at once, without tiles', async () => {
      const log = new FakeLog(ORIGIN);
      const h = log.view('http://log-h/');
      const z = log.view('http://log-z/');
      h.grow(history('h', 5, 50), [50]);
      z.grow(history('z', 5, 50), [50]);
      routes['log-h'] = log.fetch;
      const me = peer('wp');
      const w = await start(me, 0, policyText(log.vkey, 'http://log-h/', [me]));
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'cosigned 50']]));
      h.serve(z.checkpoint(50));
      h.requests.length = 0;
      await w.gossip.pullRound();
      expect(h.requests).toEqual(['checkpoint']);
      expect(w.witness.isQuarantined(ORIGIN)).toBe(true);
      const e = await get(`http://wp/${HASH}/fork-evidence`);
      const v = verifyForkEvidence(e.body, [newVerifier(log.vkey)]);
      expect([v.smaller.treeSize, v.larger.treeSize]).toEqual([50, 50]);
      expect(v.prefixRoot).toBeUndefined();
    });

    it('a log that rewrites its history is refused (422) and caught from its own tiles', async () => {
      const log = new FakeLog(ORIGIN);
      const H = history('h', 100, 500);
      const Z = history('z', 100, 500);
      const h = log.view('http://log-h/');
      const z = log.view('http://log-z/');
      h.grow(H, [300]);
      z.grow(Z, [450]);
      routes['log-h'] = log.fetch;
      const me = peer('wp');
      const w = await start(me, 0, policyText(log.vkey, 'http://log-h/', [me]));
      expect(await w.gossip.pullRound()).toEqual(new Map([[ORIGIN, 'cosigned 300']]));
      // From now on log-h serves history Z, tiles and checkpoint.
      h.override = (path, init) => z.handle(path, init);
      const out = (await w.gossip.pullRound()).get(ORIGIN)!;
      expect(out).toMatch(/^error: consistency proof does not lead to the root of tree size 300/);
      // The witness inspects the refused checkpoint in the background and proves the fork.
      await vi.waitFor(() => expect(w.witness.isQuarantined(ORIGIN)).toBe(true), { timeout: 10_000, interval: 50 });
      const fork = w.alarms.find((x) => x.kind === 'fork')!;
      expect(w.alarms.some((x) => x.kind === 'rejected')).toBe(true);
      const v = verifyForkEvidence(fork.evidence!, [newVerifier(log.vkey)]);
      expect([v.smaller.treeSize, v.larger.treeSize]).toEqual([300, 450]);
      expect((await monitorSize(w))).toBe(300);
      // Quarantined: even the honest history is not cosigned any more.
      h.override = undefined;
      h.grow(H, [500]);
      expect((await w.gossip.pullRound()).get(ORIGIN)).toMatch(/^error: this witness holds fork evidence/);
    });

    it('reports unreachable logs and logs serving another origin as errors', async () => {
      const log = new FakeLog(ORIGIN);
      const h = log.view('http://log-h/');
      h.grow(history('h', 0, 10), [10]);
      const me = peer('wp');
      const w = await start(me, 0, policyText(log.vkey, 'http://log-h/', [me]));
      expect((await w.gossip.pullRound()).get(ORIGIN)).toMatch(/^error: GET http:\/\/log-h\/checkpoint: .*ENOTFOUND log-h/);
      routes['log-h'] = log.fetch;
      h.serve(log.sign(10, h.roots.get(10)!, 'gossip.test/other'));
      expect((await w.gossip.pullRound()).get(ORIGIN)).toMatch(/^error: .*gossip.test\/other/);
      h.serve(10);
      expect((await w.gossip.pullRound()).get(ORIGIN)).toBe('cosigned 10');
    });

    async function monitorSize(w: Node): Promise<number> {
      const m = await get(`http://${w.host}/${HASH}/checkpoint`);
      return parseCheckpoint(openNote(m.body, [w.witness.currentPolicy().logs[0]!.verifier]).text).treeSize;
    }
  });
});
