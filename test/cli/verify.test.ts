/**
 * `glasslog verify receipt|consistency|evidence`, run as the built CLI: exit 0 only when
 * everything verified, 1 naming what failed, 2 for a usage error.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBase64 } from '../../src/core/encoding.js';
import { formatTlogProof } from '../../src/core/tlog-proof.js';
import { proveInclusion } from '../../src/core/tree.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { formatNote, parseNote } from '../../src/note/note.js';
import { newCosigner } from '../../src/note/cosignature.js';
import { checkpointOf, compareCheckpoints } from '../../src/verify/evidence.js';
import { TestLog } from '../helpers/witness.js';

const MAIN = new URL('../../dist/cli/main.js', import.meta.url).pathname;
let dir: string;
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const run = (...args: string[]) => {
  const r = spawnSync(process.execPath, [MAIN, 'verify', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

const log = new TestLog('verify.test/log', 40);
const receiptFor = (index: number, size: number, note = log.note(size)) => formatTlogProof({ index, proof: proveInclusion(index, size, log.reader), checkpoint: note });

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error('build first: npm run build');
  dir = mkdtempSync(join(tmpdir(), 'glasslog-verify-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('verify receipt', () => {
  it('verifies a receipt with the log key, in prose and in JSON', () => {
    const key = file('log.vkey', log.vkey + '\n');
    const r = file('r.tlog-proof', receiptFor(7, 30));
    const hash = encodeBase64(log.leaves[7]!);
    const ok = run('receipt', r, '--log-key', key, '--leaf-hash', hash);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/^verified: entry 7 .* tree size 30/);
    const j = run('receipt', r, '--log-key', log.vkey, '--leaf-hash', hash, '--json');
    expect(JSON.parse(j.out)).toMatchObject({ verified: true, index: 7, treeSize: 30, origin: log.origin });
  });

  it('fails, naming the problem, for another leaf, a flipped proof hash and a flipped root', () => {
    const good = receiptFor(7, 30);
    const r = file('r2', good);
    const other = run('receipt', r, '--log-key', log.vkey, '--leaf-hash', encodeBase64(log.leaves[8]!));
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/NOT VERIFIED: .*inclusion proof of leaf hash/);
    const lines = good.split('\n');
    const flipped = lines.map((l, i) => (i === 3 ? encodeBase64(new Uint8Array(32).fill(9)) : l)).join('\n');
    expect(run('receipt', file('r3', flipped), '--log-key', log.vkey, '--leaf-hash', encodeBase64(log.leaves[7]!)).code).toBe(1);
    const badRoot = receiptFor(7, 30, log.note(30, { root: log.rootAt(29) }));
    const res = run('receipt', file('r4', badRoot), '--log-key', log.vkey, '--leaf-hash', encodeBase64(log.leaves[7]!), '--json');
    expect(res.code).toBe(1);
    expect(JSON.parse(res.out)).toMatchObject({ verified: false });
  });

  it('applies a policy quorum: a missing cosignature fails, a present one passes', () => {
    const w = generateKey('w1.verify.test', ALG_COSIGNATURE_V1);
    const policy = file('policy', `log ${log.vkey}\nwitness w1 ${w.vkey}\nquorum w1\n`);
    const note = log.note(30);
    const { text, signatures } = parseNote(note);
    const cosigned = formatNote(text, [...signatures, newCosigner(w.skey).cosign(text, 1_800_000_000)]);
    const hash = encodeBase64(log.leaves[3]!);
    const miss = run('receipt', file('q1', receiptFor(3, 30, note)), '--policy', policy, '--leaf-hash', hash);
    expect(miss.code).toBe(1);
    expect(miss.err).toMatch(/quorum not met/);
    expect(run('receipt', file('q2', receiptFor(3, 30, cosigned)), '--policy', policy, '--leaf-hash', hash).code).toBe(0);
  });

  it('is a usage error (2) without a trust or a leaf, or with both trusts', () => {
    const r = file('r5', receiptFor(1, 5));
    expect(run('receipt', r, '--leaf-hash', encodeBase64(log.leaves[1]!)).code).toBe(2);
    expect(run('receipt', r, '--log-key', log.vkey).code).toBe(2);
    expect(run('receipt', r, '--log-key', log.vkey, '--policy', r, '--leaf-hash', encodeBase64(log.leaves[1]!)).code).toBe(2);
    expect(run('nonsense').code).toBe(2);
  });
});

describe('verify consistency', () => {
  it('verifies a proof given as base64 lines or as the API JSON, and fails a wrong one', () => {
    const old = file('old', log.note(13));
    const nw = file('new', log.note(37));
    const proof = log.proof(13, 37);
    expect(run('consistency', old, nw, file('p.txt', proof.map(encodeBase64).join('\n') + '\n'), '--log-key', log.vkey).code).toBe(0);
    const json = file('p.json', JSON.stringify({ oldSize: 13, newSize: 37, proof: proof.map(encodeBase64) }));
    const ok = run('consistency', old, nw, json, '--log-key', log.vkey, '--json');
    expect(JSON.parse(ok.out)).toEqual({ verified: true, origin: log.origin, oldSize: 13, newSize: 37 });
    const wrong = run('consistency', old, nw, file('p2', log.proof(12, 37).map(encodeBase64).join('\n')), '--log-key', log.vkey);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/13 → 37/);
    const forked = log.fork(5);
    const split = run('consistency', old, file('forked', forked.note(37)), file('p3', forked.proof(13, 37).map(encodeBase64).join('\n')), '--log-key', log.vkey);
    expect(split.code).toBe(1);
  });
});

describe('verify evidence', () => {
  it('confirms fork evidence with the log key alone, and refuses it with another key', () => {
    const forked = log.fork(10);
    const a = { note: log.note(20), checkpoint: checkpointOf(log.note(20)) };
    const b = { note: forked.note(33), checkpoint: checkpointOf(forked.note(33)) };
    const c = compareCheckpoints(a, b, forked.reader);
    if (c.kind !== 'fork') throw new Error(`expected a fork, got ${c.kind}`);
    const ev = file('evidence', c.evidence);
    const ok = run('evidence', ev, '--log-key', log.vkey);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/signed two checkpoints that are not one history/);
    expect(run('evidence', ev, '--policy', file('pol', `log ${log.vkey}\n`)).code).toBe(0);
    const stranger = new TestLog(log.origin, 4);
    const bad = run('evidence', ev, '--log-key', stranger.vkey);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/not signed by the log/);
  });
});
