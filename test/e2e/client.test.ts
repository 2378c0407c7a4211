/**
 * End to end: the real server process, audited by the independent client
 * (test/e2e/tlog-client.ts). A few hundred entries through every write form, a full audit,
 * a graceful restart, and an audit with a consistency proof across the restart. On
 * embedded PGlite always, and on the Postgres at $DATABASE_URL when it is set.
 *
 * Needs `npm run build` first (it runs dist/cli/main.js).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, ServerProcess, dropSchema, killAllServers, removeDataDir, tempDataDir, uniqueSchema, type ServerOptions } from './server.js';
import {
  EMPTY_ROOT,
  audit,
  decodeHash,
  fetchBundle,
  fetchTile,
  fetchVerifiedCheckpoint,
  httpRequest,
  leafHash,
  parseVerifierKey,
  verifyInclusion,
  verifyTlogProof,
  type Checkpoint,
} from './tlog-client.js';
import { postBatch, postEntry, WriteError, type WriteResult } from './writes.js';

const timings: string[] = [];

afterAll(async () => {
  await killAllServers();
  if (timings.length) console.log(`client.test timings:\n  ${timings.join('\n  ')}`);
});

function randomEntry(min = 16, max = 300): Buffer {
  return randomBytes(min + Math.floor(Math.random() * (max - min + 1)));
}

async function waitForSize(url: string, vkey: string, size: number, timeoutMs = 15_000): Promise<Checkpoint> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cp = await fetchVerifiedCheckpoint(url, vkey);
    if (cp.size >= size) return cp;
    if (Date.now() > deadline) throw new Error(`checkpoint stuck at ${cp.size}, waiting for ${size}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function scenario(name: 'pglite' | 'postgres', dbUrl: string | undefined) {
  describe.skipIf(name === 'postgres' && !dbUrl)(`e2e client audit on ${name}`, { timeout: 150_000 }, () => {
    // Created when the test runs (not when a skipped or filtered suite is collected).
    let dataDir: string | undefined;
    let schema: string | undefined;
    const setup = (): ServerOptions => {
      dataDir = tempDataDir(`client-${name}`);
      schema = dbUrl ? uniqueSchema('client') : undefined;
      return { dataDir, ...(dbUrl ? { databaseUrl: dbUrl, schema } : {}) };
    };

    afterAll(async () => {
      await killAllServers();
      if (dbUrl && schema) await dropSchema(dbUrl, schema);
      if (dataDir) removeDataDir(dataDir);
    });

    // Shared by the tests below, in order.
    let opts: ServerOptions;
    let vkey = '';
    let token = '';
    const submitted: Buffer[] = []; // by index
    let sigtermUnderLoad: { code: number | null; signal: string | null; forced: boolean; ms: number; answeredAfter: number } | undefined;

    it('writes a few hundred entries, audits, restarts with SIGTERM, and audits consistency across the restart', async () => {
      opts = setup();
      const t0 = performance.now();
      let server = await ServerProcess.start(opts);
      timings.push(`${name}: first start ${server.startMs.toFixed(0)} ms`);
      vkey = server.vkey;
      const verifier = parseVerifierKey(vkey);
      token = server.token;
      expect(server.output()).toContain(`verifier key ${vkey}`);

      const record = (entries: readonly Buffer[], results: readonly WriteResult[]) => {
        results.forEach((r, i) => {
          const e = entries[i]!;
          expect(decodeHash(r.leafHash, 'leafHash').equals(leafHash(e))).toBe(true);
          if (r.duplicate) {
            expect(submitted[r.index]?.equals(e)).toBe(true);
          } else {
            expect(submitted[r.index], `index ${r.index} given twice`).toBeUndefined();
            submitted[r.index] = e;
          }
          if (r.receipt !== undefined) {
            const { checkpoint } = verifyTlogProof(r.receipt, verifier, leafHash(e), r.index);
            expect(checkpoint.size).toBeGreaterThan(r.index);
          }
        });
      };

      // The empty log.
      const empty = await fetchVerifiedCheckpoint(server.url, vkey);
      expect(empty.size).toBe(0);
      expect(empty.root.equals(EMPTY_ROOT)).toBe(true);
      expect(empty.extensions).toEqual([]);
      await audit(server.url, vkey, undefined, { quiescent: true });

      // Writes: three JSON batches (wait=published), sequential, so indices are contiguous.
      const tw = performance.now();
      for (let k = 0; k < 3; k++) {
        const entries = Array.from({ length: 100 }, () => randomEntry());
        const res = await postBatch(server.url, token, entries, { format: 'json' });
        expect(res.map((r) => r.index)).toEqual(entries.map((_, i) => 100 * k + i));
        expect(res.every((r) => !r.duplicate)).toBe(true);
        record(entries, res);
      }
      const cp300 = await fetchVerifiedCheckpoint(server.url, vkey);
      expect(cp300.size).toBe(300);
      // A binary-framed batch, wait=sequenced.
      {
        const entries = Array.from({ length: 57 }, () => randomEntry());
        entries[3] = Buffer.from([0x42]); // a 1-byte entry
        const res = await postBatch(server.url, token, entries, { format: 'binary', wait: 'sequenced' });
        expect(res.map((r) => r.index)).toEqual(entries.map((_, i) => 300 + i));
        record(entries, res);
      }
      // Single entries, raw and JSON, both waits, one after another.
      for (let i = 0; i < 20; i++) {
        const e = randomEntry();
        const r = await postEntry(server.url, token, e, { format: i % 2 ? 'json' : 'binary', wait: i % 3 ? 'published' : 'sequenced' });
        expect(r.status).toBe(201);
        record([e], [r]);
      }
      // The largest entry, and one byte too many.
      {
        const e = randomBytes(65535);
        const r = await postEntry(server.url, token, e);
        record([e], [r]);
        await expect(postEntry(server.url, token, randomBytes(65536))).rejects.toSatisfy((err) => err instanceof WriteError && err.status === 413);
      }
      // Concurrent singles and batches.
      await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          if (i % 5 === 0) {
            const entries = Array.from({ length: 1 + (i % 7) * 3 }, () => randomEntry());
            record(entries, await postBatch(server.url, token, entries, { format: i % 2 ? 'json' : 'binary', wait: i % 3 ? 'published' : 'sequenced' }));
          } else {
            const e = randomEntry();
            record([e], [await postEntry(server.url, token, e, { wait: i % 4 ? 'published' : 'sequenced' })]);
          }
        }),
      );
      // A duplicate: same index, HTTP 200, nothing appended.
      {
        const dup = await postEntry(server.url, token, submitted[5]!, { format: 'json' });
        expect(dup).toMatchObject({ index: 5, duplicate: true, status: 200 });
        record([submitted[5]!], [dup]);
      }
      // Writes need the token.
      {
        const r = await httpRequest(`${server.url}/v1/entries`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: 'x' });
        expect(r.status).toBe(401);
        const r2 = await httpRequest(`${server.url}/v1/entries`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', authorization: 'Bearer wrong-token-wrong-token' }, body: 'x' });
        expect(r2.status).toBe(401);
      }
      const total = submitted.length;
      expect(submitted.every((e) => e !== undefined)).toBe(true);
      timings.push(`${name}: ${total} entries written in ${(performance.now() - tw).toFixed(0)} ms`);

      // Every entry is published eventually (the wait=sequenced ones included); then audit.
      await waitForSize(server.url, vkey, total);
      const ta = performance.now();
      const a1 = await audit(server.url, vkey, cp300, { quiescent: true });
      timings.push(`${name}: audit of ${a1.checkpoint.size} entries, ${a1.requests} requests, ${(performance.now() - ta).toFixed(0)} ms`);
      expect(a1.checkpoint.size).toBe(total);
      a1.entries.forEach((e, i) => expect(e.equals(submitted[i]!), `entry ${i}`).toBe(true));
      await audit(server.url, vkey, empty, { receiptIndex: total - 1 });
      await audit(server.url, vkey, a1.checkpoint, { receiptIndex: 0 });

      // Narrower partial widths of stored tiles are served as prefixes (spec/http-api.md).
      {
        const full0 = a1.resources.get('tile/0/000')!;
        const part1 = a1.resources.get(`tile/0/001.p/${total - 256}`)!;
        expect((await fetchTile(server.url, 0, 0, 5)).equals(full0.subarray(0, 5 * 32))).toBe(true);
        expect((await fetchTile(server.url, 0, 1, 3)).equals(part1.subarray(0, 3 * 32))).toBe(true);
        const b5 = await fetchBundle(server.url, 0, 5, false);
        b5.entries.forEach((e, i) => expect(e.equals(submitted[i]!)).toBe(true));
        const b3 = await fetchBundle(server.url, 1, 3, true);
        b3.entries.forEach((e, i) => expect(e.equals(submitted[256 + i]!)).toBe(true));
      }

      // Inclusion proofs by leaf hash.
      for (const i of [0, 3, 255, 256, total - 1]) {
        const lh = leafHash(submitted[i]!);
        const r = await httpRequest(`${server.url}/v1/proofs/inclusion?leafHash=${encodeURIComponent(lh.toString('base64'))}`);
        expect(r.status).toBe(200);
        const body = JSON.parse(r.body.toString('utf8')) as { index: number; treeSize: number; leafHash: string; proof: string[] };
        expect(body.index).toBe(i);
        expect(body.treeSize).toBe(total);
        verifyInclusion(i, total, lh, body.proof.map((p, k) => decodeHash(p, `proof[${k}]`)), a1.checkpoint.root);
      }

      // Graceful restart.
      const beforeRestart = a1.checkpoint;
      const stopped = await server.stop();
      expect(stopped, server.output()).toMatchObject({ code: 0, forced: false });
      server = await ServerProcess.start(opts);
      timings.push(`${name}: restart after SIGTERM ${server.startMs.toFixed(0)} ms`);
      expect(server.vkey).toBe(vkey);
      expect(server.token).toBe(token);
      const after = await fetchVerifiedCheckpoint(server.url, vkey);
      expect(after.size).toBe(beforeRestart.size);
      expect(after.root.equals(beforeRestart.root)).toBe(true);
      const a2 = await audit(server.url, vkey, beforeRestart, { quiescent: true });
      for (const [path, bytes] of a1.resources) {
        if (a2.resources.has(path)) expect(a2.resources.get(path)!.equals(bytes), path).toBe(true);
      }

      // More entries after the restart, across the next tile boundary; dedup survived.
      {
        const dup = await postEntry(server.url, token, submitted[100]!);
        expect(dup).toMatchObject({ index: 100, duplicate: true });
        for (let k = 0; k < 3; k++) {
          const entries = Array.from({ length: 100 }, () => randomEntry());
          record(entries, await postBatch(server.url, token, entries, { format: k % 2 ? 'json' : 'binary', wait: k === 1 ? 'sequenced' : 'published' }));
        }
      }
      await waitForSize(server.url, vkey, submitted.length);
      const a3 = await audit(server.url, vkey, beforeRestart, { quiescent: true });
      expect(a3.checkpoint.size).toBe(submitted.length);
      a3.entries.forEach((e, i) => expect(e.equals(submitted[i]!), `entry ${i}`).toBe(true));
      // Every resource served before the restart is byte-identical now.
      for (const [path, bytes] of a1.resources) {
        if (a3.resources.has(path)) {
          expect(a3.resources.get(path)!.equals(bytes), path).toBe(true);
        } else {
          const r = await httpRequest(`${server.url}/${path}`, { headers: { 'accept-encoding': 'identity' } });
          expect(r.status, path).toBe(200);
          expect(r.body.equals(bytes), path).toBe(true);
        }
      }
      // Old receipts still verify against their own checkpoint size.
      await audit(server.url, vkey, cp300);

      const stopped2 = await server.stop();
      expect(stopped2, server.output()).toMatchObject({ code: 0, forced: false });
      timings.push(`${name}: whole scenario ${(performance.now() - t0).toFixed(0)} ms, ${submitted.length} entries`);
    });

    it('SIGTERM under keep-alive write load: every answered write survives the restart', async () => {
      expect(submitted.length, 'needs the first test').toBeGreaterThan(0);
      const server = await ServerProcess.start(opts);
      const acked = new Map<number, Buffer>();
      let stopping = false;
      let stopSent = 0;
      let answeredAfter = 0;
      const writer = async (w: number) => {
        for (let k = 0; ; k++) {
          const entries = Array.from({ length: 1 + ((k * 7 + w) % 40) }, () => randomEntry());
          try {
            const res = await postBatch(server.url, token, entries, { wait: k % 2 ? 'published' : 'sequenced', format: 'binary' });
            res.forEach((r, i) => acked.set(r.index, entries[i]!));
            if (stopSent) answeredAfter++;
          } catch (err) {
            // After SIGTERM a write may be refused (503) or cut off; before it, nothing may fail.
            if (!stopping) throw err;
            return;
          }
        }
      };
      const writers = Array.from({ length: 3 }, (_, w) => writer(w));
      await new Promise((r) => setTimeout(r, 300));
      stopping = true;
      stopSent = performance.now();
      const stopped = await server.stop(10_000);
      sigtermUnderLoad = { ...stopped, ms: performance.now() - stopSent, answeredAfter };
      await Promise.all(writers);
      timings.push(`${name}: SIGTERM under load: ${JSON.stringify(sigtermUnderLoad)}`);

      const again = await ServerProcess.start(opts);
      const a = await audit(again.url, vkey);
      for (const [i, bytes] of acked) expect(a.entries[i]?.equals(bytes), `answered entry ${i}`).toBe(true);
      submitted.forEach((e, i) => expect(a.entries[i]!.equals(e), `entry ${i}`).toBe(true));
      expect((await again.stop()).forced).toBe(false);
    });

    // Regression: http.Server#close() alone lets busy keep-alive connections go on writing,
    // so a client posting in a loop kept the server from ever finishing its shutdown.
    it('SIGTERM under keep-alive write load exits within 10 s with code 0', () => {
      expect(sigtermUnderLoad, 'needs the previous test').toBeDefined();
      expect(sigtermUnderLoad).toMatchObject({ code: 0, forced: false });
    });
  });
}

scenario('pglite', undefined);
scenario('postgres', DATABASE_URL);
