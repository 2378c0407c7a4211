/**
 * An HttpGet (src/client/tile-client.ts) on node:http and node:https with keep-alive
 * agents, for the CLI. A full audit makes two GETs per entry bundle, and undici's fetch
 * spent about 0.5 ms of CPU on each (WHATWG streams, Headers, Response); this spends about
 * a third of that (measured fetching the 2,344 bundles and level-0 tiles of a 300,000-entry
 * log, 1.2 against 0.45 CPU s; in bench/audit.ts the audit's CPU fell by about 1 s). It keeps fetchGet's contract: any status resolves, a
 * 200 brings its whole body with gzip, deflate or br undone, and a failed request, a
 * passed deadline or a body over the limit rejects with an Error naming it.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { brotliDecompress, gunzip, inflate, type InputType, type ZlibOptions } from 'node:zlib';
import type { HttpGet } from '../client/tile-client.js';

export interface NodeHttpGet {
  readonly get: HttpGet;
  /** Closes the idle keep-alive connections. */
  close(): void;
}

type Decode = (buf: InputType, opts: ZlibOptions, cb: (err: Error | null, out: Buffer) => void) => void;
const DECODERS: Record<string, Decode | undefined> = { gzip: gunzip, 'x-gzip': gunzip, deflate: inflate, br: brotliDecompress as Decode };

export function nodeHttpGet(): NodeHttpGet {
  const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  const get: HttpGet = (url, { headers, timeoutMs, maxBodyBytes }) =>
    new Promise((resolve, reject) => {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        return reject(new Error('not a valid URL'));
      }
      const secure = u.protocol === 'https:';
      if (!secure && u.protocol !== 'http:') return reject(new Error(`unsupported protocol ${u.protocol}`));
      let done = false;
      const finish = (err: Error | undefined, status: number, body?: Uint8Array) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(body ? { status, body } : { status });
      };
      const tooLarge = (n: number) => new Error(`body of ${n} bytes exceeds ${maxBodyBytes}`);
      const req = (secure ? https : http).get(u, { agent: secure ? agents.https : agents.http, headers: { 'accept-encoding': 'gzip', ...headers } }, (res) => {
        const status = res.statusCode ?? 0;
        // First, so that destroying the request (on any failure) cannot leave an error unheard.
        res.on('error', (err) => finish(new Error(`reading the body: ${err.message}`), status));
        if (status !== 200) {
          res.resume(); // drain, so the connection can be reused
          return finish(undefined, status);
        }
        const declared = Number(res.headers['content-length'] ?? NaN);
        if (declared > maxBodyBytes) return finish(tooLarge(declared), status);
        const encoding = (res.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
        const decode = DECODERS[encoding];
        if (decode === undefined && encoding !== 'identity') return finish(new Error(`unsupported content-encoding ${JSON.stringify(encoding)}`), status);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBodyBytes) finish(tooLarge(size), status);
          else chunks.push(c);
        });
        res.on('close', () => {
          if (!res.complete) finish(new Error('reading the body: the connection closed before it ended'), status);
        });
        res.on('end', () => {
          const raw = Buffer.concat(chunks, size);
          if (decode === undefined) return finish(undefined, status, view(raw));
          decode(raw, { maxOutputLength: maxBodyBytes }, (err, out) => {
            if (!err) return finish(undefined, status, view(out));
            const over = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
            finish(over ? new Error(`body exceeds ${maxBodyBytes} bytes once decoded (${encoding})`) : new Error(`reading the body: ${encoding}: ${err.message}`), status);
          });
        });
      });
      req.on('error', (err) => finish(err, 0));
      const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms`), 0), timeoutMs);
    });
  return {
    get,
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

/** A Buffer as a plain Uint8Array over the same bytes. */
const view = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);
