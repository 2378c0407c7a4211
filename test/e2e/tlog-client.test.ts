/**
 * Self-test of the independent client (test/e2e/tlog-client.ts) against the published
 * vectors digested in /work/shared/reference/specs.md §6, and of its auditor against a
 * tiny static tlog-tiles server built here (so that we know the auditor notices tampering
 * before we trust it to pass the real server).
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditError,
  EMPTY_ROOT,
  TILE_WIDTH,
  audit,
  formatBundle,
  formatTileIndex,
  leafHash,
  merkleRoot,
  openNote,
  parseCheckpointText,
  parseTlogProof,
  parseVerifierKey,
  rootsAtSizes,
  sha256,
  subtreeHash,
  tilePath,
  verifyConsistency,
  verifyInclusion,
} from './tlog-client.js';

const h = (s: string) => Buffer.from(s, 'hex');
const b = (s: string) => Buffer.from(s, 'base64');

const LEAVES8 = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(h);
const ROOTS8 = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(h);

/** RFC 6962 PATH(m, D[lo:hi]) (specs.md §1.3), for building a fake server's receipts. */
function inclusionPath(leaves: readonly Buffer[], m: number, lo: number, hi: number): Buffer[] {
  const n = hi - lo;
  if (n === 1) return [];
  let k = 1;
  while (k * 2 < n) k *= 2;
  if (m < k) return [...inclusionPath(leaves, m, lo, lo + k), merkleRoot(leaves.slice(lo + k, hi))];
  return [...inclusionPath(leaves, m - k, lo + k, hi), merkleRoot(leaves.slice(lo, lo + k))];
}

describe('independent client: vectors (specs.md §6)', () => {
  it('hashes the RFC 6962 tree of 8 (merkle testonly constants)', () => {
    const lh = LEAVES8.map(leafHash);
    expect(leafHash(Buffer.alloc(0)).toString('hex')).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    expect(EMPTY_ROOT.equals(ROOTS8[0]!)).toBe(true);
    for (let n = 0; n <= 8; n++) {
      expect(merkleRoot(lh, n).toString('hex')).toBe(ROOTS8[n]!.toString('hex'));
    }
    const roots = rootsAtSizes(lh, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    for (let n = 0; n <= 8; n++) expect(roots.get(n)!.equals(ROOTS8[n]!)).toBe(true);
    expect(subtreeHash(lh.slice(0, 4)).equals(ROOTS8[4]!)).toBe(true);
    expect(leafHash(Buffer.from('hello world')).toString('base64')).toBe('TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=');
  });

  it('verifies the merkle testdata inclusion and consistency happy paths, and rejects mutations', () => {
    const root8 = b('XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=');
    const inc = [
      { i: 0, n: 8, leaf: 'bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=', root: root8, proof: ['lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=', 'Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=', 'a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ='] },
      { i: 5, n: 8, leaf: 'QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg=', root: root8, proof: ['vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=', 'yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=', '037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc='] },
      { i: 2, n: 3, leaf: 'ApjRIpBtz8EIkstTpzmS/FufST6kybrbJ7eRtBJ6f+c=', root: b('rra8/idLcKFPsGel5VeCZNsPqbUa9eC6FZFY8yngbnc='), proof: ['+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU='] },
      { i: 1, n: 5, leaf: 'lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=', root: b('Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ='), proof: ['bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=', 'Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=', 'vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms='] },
      { i: 0, n: 1, leaf: 'bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=', root: b('bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0='), proof: [] },
    ];
    for (const v of inc) {
      const proof = v.proof.map(b);
      expect(() => verifyInclusion(v.i, v.n, b(v.leaf), proof, v.root)).not.toThrow();
      if (proof.length > 0) {
        expect(() => verifyInclusion(v.i, v.n, b(v.leaf), proof.slice(0, -1), v.root)).toThrow(AuditError);
        const bad = proof.map((p) => Buffer.from(p));
        bad[0]![0] = bad[0]![0]! ^ 1;
        expect(() => verifyInclusion(v.i, v.n, b(v.leaf), bad, v.root)).toThrow(AuditError);
      }
      expect(() => verifyInclusion(v.i, v.n, b(v.leaf), [...proof, Buffer.alloc(32)], v.root)).toThrow(AuditError);
      // (Another size with a path of the same shape computes the same root: RFC 9162 binds the size only through the root.)
      expect(() => verifyInclusion(v.i, v.n * 4, b(v.leaf), proof, v.root)).toThrow(AuditError);
      expect(() => verifyInclusion(v.n, v.n, b(v.leaf), proof, v.root)).toThrow(AuditError);
    }
    const r = (n: number) => ROOTS8[n]!;
    const cons = [
      { m: 1, n: 8, proof: ['lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=', 'Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=', 'a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ='] },
      { m: 6, n: 8, proof: ['DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=', 'yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=', '037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc='] },
      { m: 2, n: 5, proof: ['Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=', 'vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms='] },
      { m: 6, n: 7, proof: ['DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=', 'sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=', '037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc='] },
      { m: 3, n: 7, proof: ['ApjRIpBtz8EIkstTpzmS/FufST6kybrbJ7eRtBJ6f+c=', 'B1Bqhf2d0vEg62lPhgEeW7RmLlxBWmKRcDPUqWJEh+c=', '+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU=', 'g327FS6bB5AQcX6E6GXaTrwPoZioBtWdMb8VrM7yLQ4='] },
      { m: 4, n: 7, proof: ['g327FS6bB5AQcX6E6GXaTrwPoZioBtWdMb8VrM7yLQ4='] },
    ];
    for (const v of cons) {
      const proof = v.proof.map(b);
      expect(() => verifyConsistency(v.m, v.n, proof, r(v.m), r(v.n))).not.toThrow();
      expect(() => verifyConsistency(v.m, v.n, proof, r(v.n), r(v.m))).toThrow(AuditError);
      expect(() => verifyConsistency(v.m, v.n, proof.slice(0, -1), r(v.m), r(v.n))).toThrow(AuditError);
      expect(() => verifyConsistency(v.m, v.n, [...proof, Buffer.alloc(32)], r(v.m), r(v.n))).toThrow(AuditError);
      expect(() => verifyConsistency(v.m, v.n, proof, r(v.m), r(v.n === 8 ? 7 : 8))).toThrow(AuditError);
      expect(() => verifyConsistency(v.m, v.n, proof, r(v.m === 1 ? 2 : 1), r(v.n))).toThrow(AuditError);
    }
    expect(() => verifyConsistency(1, 1, [], r(1), r(1))).not.toThrow();
    expect(() => verifyConsistency(3, 3, [], r(3), r(4))).toThrow(AuditError);
    expect(() => verifyConsistency(0, 5, [], EMPTY_ROOT, r(5))).not.toThrow();
    expect(() => verifyConsistency(0, 5, [r(1)], EMPTY_ROOT, r(5))).toThrow(AuditError);
    expect(() => verifyConsistency(5, 4, [], r(5), r(4))).toThrow(AuditError);
  });

  it('reproduces the DERIVED "leaf %d" roots and proofs (§6.9)', () => {
    const leaves = Array.from({ length: 70000 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
    const want: Record<number, string> = {
      1: '1bb97dcc21635d47e2663efdfd0a174686d98dd701352dd2cd06e8b43fd3d305',
      3: 'd4f92c8fbb89720eb3b55677c7d7efaddfeb10d11a1a84a0ba8f1a23337faa95',
      255: 'd71592a219d4067663eede247f9b54c3f9e0290682d55de09b495b07f1de41c9',
      256: 'cf5effdb11d0927a2edf53b0e73c7837f659414e00537da5d90eb5c4c49ff274',
      257: '855b936aa00cb98b5114484249ad39d78a6be93623e26c01e8e487dc02184a5a',
      65536: 'e100ba54d69a91012fc13b7890feac78d6996a097268b6f735d17311c7402a60',
      70000: 'da0532ff7b2ee56f4067110fc964e9f27b5959f9527bfff3fa501aa7584deaf3',
    };
    const roots = rootsAtSizes(leaves, Object.keys(want).map(Number));
    for (const [n, root] of Object.entries(want)) expect(roots.get(Number(n))!.toString('hex')).toBe(root);
    verifyConsistency(65536, 70000, [h('45435bbc4c269433c776be678f524bc22cf1b824c6153ae33d3b8bbff4bd7954')], roots.get(65536)!, roots.get(70000)!);
    verifyConsistency(256, 257, [h('9555e58b62d9f89d5ccd64622a3d7cf6fda1457347363c9a4ce6d622e51e93d9')], roots.get(256)!, roots.get(257)!);
    const path = inclusionPath(leaves, 65535, 0, 70000);
    expect(path.length).toBe(17);
    expect(path[0]!.toString('hex')).toBe('fa1d97d3916176117e562ddc27900cdb94e43cea9df25882f6586c5296b6b5e8');
    expect(path[16]!.toString('hex')).toBe('45435bbc4c269433c776be678f524bc22cf1b824c6153ae33d3b8bbff4bd7954');
    verifyInclusion(65535, 70000, leaves[65535]!, path, roots.get(70000)!);
  });

  it('formats tile paths (C2SP, tessera paths_test)', () => {
    expect(formatTileIndex(0)).toBe('000');
    expect(formatTileIndex(1000)).toBe('x001/000');
    expect(formatTileIndex(1234067)).toBe('x001/x234/067');
    expect(tilePath(0, 0, 256)).toBe('tile/0/000');
    expect(tilePath(0, 0, 255)).toBe('tile/0/000.p/255');
    expect(tilePath(15, 455667, 256)).toBe('tile/15/x455/667');
    expect(tilePath(15, 123456789, 41)).toBe('tile/15/x123/x456/789.p/41');
    expect(tilePath('entries', 1, 1)).toBe('tile/entries/001.p/1');
    expect(tilePath('entries', 123456789, 256)).toBe('tile/entries/x123/x456/789');
    expect(formatBundle([Buffer.from('leaf 0'), Buffer.from('leaf 1')]).toString('hex')).toBe('00066c656166203000066c6561662031');
  });

  it('parses verifier keys and opens signed notes (signed-note, golang/mod note_test)', () => {
    const foo = parseVerifierKey('example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k');
    expect(foo.name).toBe('example.com/foo');
    const note = 'This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';
    expect(openNote(note, foo)).toBe('This is an example message.\n');
    expect(() => openNote(note.replace('example message', 'exemple message'), foo)).toThrow(AuditError);
    const pn = parseVerifierKey('PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW');
    const enoch = parseVerifierKey('EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop');
    const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const two =
      text +
      '\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n' +
      '— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';
    expect(openNote(two, pn)).toBe(text);
    expect(openNote(two, enoch)).toBe(text);
    expect(() => openNote(two, foo)).toThrow(/no signature/);
    expect(() => parseVerifierKey('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==')).toThrow(AuditError);
    expect(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(AuditError);
    expect(() => parseVerifierKey('PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(/key ID/);
    expect(parseVerifierKey('log.example.org+0a72cd63+AV2yLmzeBL9B3zFJNqal0JuqxiFve0m/eqmT1+KkLVeC').name).toBe('log.example.org');
    for (const bad of [text, text + '\n', two.slice(0, -1), '\x01' + two, two + 'Unexpected line.\n', two.replace('— EnochRoot', '— Bad Name')]) {
      expect(() => openNote(bad, pn)).toThrow(AuditError);
    }
  });

  it('parses checkpoints strictly (azul checkpoint.rs cases)', () => {
    const cp = parseCheckpointText('example.com/origin\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\nabc\ndef\n');
    expect(cp.size).toBe(123);
    expect(cp.extensions).toEqual(['abc', 'def']);
    for (const bad of [
      '\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n',
      'o\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n',
      'o\n18446744073709551616\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n',
      'o\n0123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n',
      'o\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0\n',
      'o\n123\nQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBCg==\n',
      'o\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\nabc\n\n',
      'o\n123\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\nabc',
      'o\n0\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n',
    ]) {
      expect(() => parseCheckpointText(bad), JSON.stringify(bad)).toThrow(AuditError);
    }
  });

  it('parses tlog-proof receipts', () => {
    const p = parseTlogProof('c2sp.org/tlog-proof@v1\nextra Z2xhc3Nsb2cgdGVzdCB2ZWN0b3I=\nindex 5\nvBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=\n\no\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n— o AAAA\n');
    expect(p.index).toBe(5);
    expect(p.extra!.toString()).toBe('glasslog test vector');
    expect(p.proof.length).toBe(1);
    expect(p.checkpointNote.startsWith('o\n8\n')).toBe(true);
    expect(() => parseTlogProof('c2sp.org/tlog-proof@v2\nindex 5\n\nx')).toThrow(AuditError);
    expect(() => parseTlogProof('c2sp.org/tlog-proof@v1\nindex 05\n\nx')).toThrow(AuditError);
    expect(() => parseTlogProof('c2sp.org/tlog-proof@v1\nindex 5\nAAAA\n\nx')).toThrow(AuditError);
  });
});

/** A minimal static tlog-tiles server for a fixed tree, with hooks to tamper with it. */
class FakeLog {
  readonly entries: Buffer[];
  readonly levels: Buffer[][] = [];
  readonly vkey: string;
  private readonly priv;
  server!: http.Server;
  url = '';
  tamper: (path: string, body: Buffer) => Buffer = (_p, body) => body;
  cacheControl = 'public, max-age=31536000, immutable';

  constructor(n: number) {
    this.entries = Array.from({ length: n }, (_, i) => Buffer.from(`entry ${i} ${'x'.repeat(i % 50)}`));
    let level = this.entries.map(leafHash);
    while (level.length > 0) {
      this.levels.push(level);
      const up: Buffer[] = [];
      for (let i = 0; i + TILE_WIDTH <= level.length; i += TILE_WIDTH) up.push(subtreeHash(level.slice(i, i + TILE_WIDTH)));
      level = up;
    }
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    this.priv = privateKey;
    const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    const key = Buffer.concat([Buffer.from([1]), raw]);
    const id = sha256(Buffer.from('fake.example/log\n'), key).subarray(0, 4);
    this.vkey = `fake.example/log+${id.toString('hex')}+${key.toString('base64')}`;
  }

  checkpoint(size = this.entries.length, root = merkleRoot(this.levels[0] ?? [], size)): string {
    const text = `fake.example/log\n${size}\n${root.toString('base64')}\n`;
    const id = h(this.vkey.split('+')[1]!);
    const sig = Buffer.concat([id, sign(null, Buffer.from(text), this.priv)]);
    return `${text}\n— fake.example/log ${sig.toString('base64')}\n`;
  }

  handle(path: string, accept: string): { status: number; headers: Record<string, string>; body: Buffer } {
    const n = this.entries.length;
    if (path === '/checkpoint') return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' }, body: Buffer.from(this.checkpoint()) };
    const rm = /^\/v1\/receipts\/(\d+)\?treeSize=(\d+)$/.exec(path);
    if (rm) {
      const i = Number(rm[1]);
      const proof = inclusionPath(this.levels[0]!, i, 0, n);
      const text = ['c2sp.org/tlog-proof@v1', `index ${i}`, ...proof.map((p) => p.toString('base64'))].join('\n') + '\n\n' + this.checkpoint();
      return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' }, body: Buffer.from(text) };
    }
    const m = /^\/tile\/(entries|\d+)\/((?:x\d{3}\/)*\d{3})(?:\.p\/(\d+))?$/.exec(path);
    if (!m) return { status: 404, headers: {}, body: Buffer.from('{}') };
    const index = Number(m[2]!.replace(/[x/]/g, ''));
    const width = m[3] ? Number(m[3]) : TILE_WIDTH;
    const level = m[1] === 'entries' ? 0 : Number(m[1]);
    const hashes = (this.levels[level] ?? []).slice(index * TILE_WIDTH, index * TILE_WIDTH + width);
    if (hashes.length < width) return { status: 404, headers: {}, body: Buffer.from('{}') };
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'cache-control': this.cacheControl };
    let body: Buffer;
    if (m[1] === 'entries') {
      body = this.tamper(path, formatBundle(this.entries.slice(index * TILE_WIDTH, index * TILE_WIDTH + width)));
      headers['vary'] = 'Accept-Encoding';
      if (accept.includes('gzip')) {
        body = gzipSync(body);
        headers['content-encoding'] = 'gzip';
      }
    } else {
      body = this.tamper(path, Buffer.concat(hashes));
    }
    return { status: 200, headers, body };
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const r = this.handle(req.url ?? '/', String(req.headers['accept-encoding'] ?? ''));
      res.writeHead(r.status, r.headers);
      res.end(r.body);
    });
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

describe('independent client: the auditor catches a lying log', () => {
  const fake = new FakeLog(70000);
  beforeAll(() => fake.start());
  afterAll(() => new Promise<void>((r) => fake.server.close(() => r())));

  it('passes an honest log of 70000 entries and fetches exactly the spec tile set', async () => {
    fake.tamper = (_p, body) => body;
    const res = await audit(fake.url, fake.vkey);
    expect(res.checkpoint.size).toBe(70000);
    const paths = [...res.resources.keys()];
    expect(paths.filter((p) => p.startsWith('tile/0/')).length).toBe(274);
    expect(paths).toContain('tile/0/273.p/112');
    expect(paths).toContain('tile/entries/273.p/112');
    expect(paths).toContain('tile/1/000');
    expect(paths).toContain('tile/1/001.p/17');
    expect(paths).toContain('tile/2/000.p/1');
    expect(paths.length).toBe(274 * 2 + 3);
    const prev = { size: 65536, root: merkleRoot(fake.levels[0]!, 65536) };
    // The fake serves no consistency proofs: the previous check must go to the server.
    await expect(audit(fake.url, fake.vkey, prev)).rejects.toThrow(/consistency/);
  });

  const tamperings: Array<[string, (path: string, body: Buffer) => Buffer]> = [
    ['a flipped byte in a full bundle', (p, body) => (p === '/tile/entries/005' ? flip(body, 100) : body)],
    ['a flipped byte in the partial bundle', (p, body) => (p === '/tile/entries/273.p/112' ? flip(body, 7) : body)],
    ['a flipped leaf hash (bundle matches nothing)', (p, body) => (p === '/tile/0/010' ? flip(body, 40) : body)],
    ['a flipped hash in a level-1 tile', (p, body) => (p === '/tile/1/000' ? flip(body, 64) : body)],
    ['a flipped hash in the top tile', (p, body) => (p === '/tile/2/000.p/1' ? flip(body, 0) : body)],
    ['a truncated tile', (p, body) => (p === '/tile/0/003' ? body.subarray(0, body.length - 32) : body)],
    ['a bundle with an extra entry', (p, body) => (p === '/tile/entries/007' ? Buffer.concat([body, Buffer.from([0, 1, 65])]) : body)],
  ];
  for (const [name, fn] of tamperings) {
    it(`fails on ${name}`, async () => {
      fake.tamper = fn;
      await expect(audit(fake.url, fake.vkey)).rejects.toThrow(AuditError);
      fake.tamper = (_p, body) => body;
    });
  }

  it('fails on a mutable tile and on a wrong key', async () => {
    fake.cacheControl = 'no-cache';
    await expect(audit(fake.url, fake.vkey)).rejects.toThrow(/cache-control/);
    fake.cacheControl = 'public, max-age=31536000, immutable';
    const other = new FakeLog(1);
    await expect(audit(fake.url, other.vkey)).rejects.toThrow(AuditError);
  });
});

function flip(body: Buffer, at: number): Buffer {
  const c = Buffer.from(body);
  c[at] = c[at]! ^ 0x01;
  return c;
}
