/**
 * An independent C2SP tlog-tiles client for end-to-end tests.
 *
 * It deliberately imports nothing from src/: hashing (RFC 6962 over SHA-256), Merkle proof
 * verification (RFC 9162 §2.1.3.2 and §2.1.4.2), signed notes, verifier keys, checkpoints,
 * tile paths, entry bundles and c2sp.org/tlog-proof receipts are all re-implemented here from
 * the public specifications (see /work/shared/reference/specs.md §1, §2, §3, §5), using only
 * node: built-ins. If the server and this client share a misreading of a spec, the tests
 * cannot catch it; if they misread it differently, the tests fail.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';

// ---------------------------------------------------------------------------------------
// Errors

/** A verification failure: the server sent something a correct log never would. */
export class AuditError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditError';
  }
}

function fail(message: string): never {
  throw new AuditError(message);
}

// ---------------------------------------------------------------------------------------
// Hashing (RFC 6962 §2.1)

export const HASH_SIZE = 32;
export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);
export const EMPTY_ROOT = sha256();

export function leafHash(entry: Uint8Array): Buffer {
  return sha256(LEAF_PREFIX, entry);
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(NODE_PREFIX, left, right);
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** MTH over a power-of-two number of hashes (the hash of a full subtree, go-tlog tileHash). */
export function subtreeHash(hashes: readonly Uint8Array[]): Buffer {
  const n = hashes.length;
  if (n === 0 || (n & (n - 1)) !== 0) throw new RangeError(`subtreeHash needs a power of two hashes, got ${n}`);
  let level: Buffer[] = hashes.map((h) => Buffer.from(h));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    level = next;
  }
  return level[0]!;
}

/**
 * Incrementally appends leaf hashes, keeping the perfect subtrees of the compact range,
 * so that the RFC 6962 root of every prefix can be read off in O(log n).
 */
export class CompactRange {
  private readonly stack: Array<{ height: number; hash: Buffer }> = [];
  size = 0;

  append(leaf: Uint8Array): void {
    let node: { height: number; hash: Buffer } = { height: 0, hash: Buffer.from(leaf) };
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.height === node.height) {
      const left = this.stack.pop()!;
      node = { height: node.height + 1, hash: nodeHash(left.hash, node.hash) };
    }
    this.stack.push(node);
    this.size++;
  }

  /** MTH of the leaves appended so far: the perfect subtrees folded from the right. */
  root(): Buffer {
    if (this.stack.length === 0) return EMPTY_ROOT;
    let r = this.stack[this.stack.length - 1]!.hash;
    for (let i = this.stack.length - 2; i >= 0; i--) r = nodeHash(this.stack[i]!.hash, r);
    return r;
  }
}

/** The RFC 6962 root of the first `size` leaves, by the recursive definition (§1.2). */
export function merkleRoot(leaves: readonly Uint8Array[], size = leaves.length): Buffer {
  const rec = (lo: number, hi: number): Buffer => {
    const n = hi - lo;
    if (n === 1) return Buffer.from(leaves[lo]!);
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(rec(lo, lo + k), rec(lo + k, hi));
  };
  return size === 0 ? EMPTY_ROOT : rec(0, size);
}

/** The root of every requested size, from one pass over the leaves. */
export function rootsAtSizes(leaves: readonly Uint8Array[], sizes: Iterable<number>): Map<number, Buffer> {
  const want = new Set(sizes);
  const out = new Map<number, Buffer>();
  const cr = new CompactRange();
  if (want.has(0)) out.set(0, EMPTY_ROOT);
  for (let i = 0; i < leaves.length; i++) {
    cr.append(leaves[i]!);
    if (want.has(i + 1)) out.set(i + 1, cr.root());
  }
  for (const s of want) if (!out.has(s)) throw new RangeError(`size ${s} is beyond the ${leaves.length} leaves given`);
  return out;
}

// ---------------------------------------------------------------------------------------
// Proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2)

/** Verifies an inclusion proof; throws AuditError on failure. */
export function verifyInclusion(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): void {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0) fail(`inclusion: bad index ${index} or size ${size}`);
  if (index >= size) fail(`inclusion: index ${index} is not below tree size ${size}`);
  for (const p of proof) if (p.length !== HASH_SIZE) fail('inclusion: a proof element is not 32 bytes');
  // fn and sn can exceed 2^31, so use arithmetic, not bitwise operators.
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  const odd = (x: number) => x % 2 === 1;
  const half = (x: number) => Math.floor(x / 2);
  for (const p of proof) {
    if (sn === 0) fail(`inclusion: proof for index ${index} in size ${size} is too long (${proof.length})`);
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!odd(fn)) {
        do {
          fn = half(fn);
          sn = half(sn);
        } while (!odd(fn) && fn !== 0);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) fail(`inclusion: proof for index ${index} in size ${size} is too short (${proof.length})`);
  if (!r.equals(root)) fail(`inclusion: proof for index ${index} in size ${size} does not lead to the root`);
}

/**
 * Verifies a consistency proof between two tree heads; throws AuditError on failure.
 * Size 0 → anything: the proof must be empty and the old root the empty hash.
 * Equal sizes: the proof must be empty and the roots equal.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  proof: readonly Uint8Array[],
  oldRoot: Uint8Array,
  newRoot: Uint8Array
): void {
  if (!Number.isSafeInteger(oldSize) || !Number.isSafeInteger(newSize) || oldSize < 0) fail(`consistency: bad sizes ${oldSize}, ${newSize}`);
  if (oldSize > newSize) fail(`consistency: old size ${oldSize} is larger than new size ${newSize} (a rewind)`);
  for (const p of proof) if (p.length !== HASH_SIZE) fail('consistency: a proof element is not 32 bytes');
  if (oldSize === 0) {
    if (proof.length !== 0) fail('consistency: the proof from size 0 must be empty');
    if (!equalBytes(oldRoot, EMPTY_ROOT)) fail('consistency: a tree of size 0 must have the empty root');
    return;
  }
  if (oldSize === newSize) {
    if (proof.length !== 0) fail(`consistency: the proof between equal sizes ${oldSize} must be empty`);
    if (!equalBytes(oldRoot, newRoot)) fail(`consistency: two different roots for tree size ${oldSize} (a fork)`);
    return;
  }
  if (proof.length === 0) fail(`consistency: empty proof from ${oldSize} to ${newSize}`);
  const odd = (x: number) => x % 2 === 1;
  const half = (x: number) => Math.floor(x / 2);
  const isPow2 = (x: number) => x > 0 && 2 ** Math.round(Math.log2(x)) === x;
  const path: Buffer[] = isPow2(oldSize) ? [Buffer.from(oldRoot), ...proof.map((p) => Buffer.from(p))] : proof.map((p) => Buffer.from(p));
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) fail(`consistency: proof from ${oldSize} to ${newSize} is too long (${proof.length})`);
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!odd(fn)) {
        do {
          fn = half(fn);
          sn = half(sn);
        } while (!odd(fn) && fn !== 0);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) fail(`consistency: proof from ${oldSize} to ${newSize} is too short (${proof.length})`);
  if (!fr.equals(oldRoot)) fail(`consistency: proof from ${oldSize} to ${newSize} does not reproduce the old root`);
  if (!sr.equals(newRoot)) fail(`consistency: proof from ${oldSize} to ${newSize} does not reproduce the new root`);
}

// ---------------------------------------------------------------------------------------
// Encodings

const DECIMAL = /^(0|[1-9][0-9]*)$/;

export function parseDecimal(s: string, what: string): number {
  if (!DECIMAL.test(s) || !Number.isSafeInteger(Number(s))) fail(`${what}: ${JSON.stringify(s)} is not a canonical decimal`);
  return Number(s);
}

/** Standard, padded, canonical base64 (RFC 4648 §4); Buffer.from alone is far too lenient. */
export function decodeBase64(s: string, what: string): Buffer {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) fail(`${what}: ${JSON.stringify(s.slice(0, 60))} is not padded standard base64`);
  const b = Buffer.from(s, 'base64');
  if (b.toString('base64') !== s) fail(`${what}: ${JSON.stringify(s.slice(0, 60))} is not canonical base64`);
  return b;
}

export function decodeHash(s: string, what: string): Buffer {
  const b = decodeBase64(s, what);
  if (b.length !== HASH_SIZE) fail(`${what}: ${b.length} bytes, not a ${HASH_SIZE}-byte hash`);
  return b;
}

// ---------------------------------------------------------------------------------------
// Verifier keys and signed notes (c2sp.org/signed-note)

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const SIG_ED25519 = 0x01;

export interface Verifier {
  readonly name: string;
  /** The 4-byte key ID. */
  readonly keyId: Buffer;
  readonly publicKey: Buffer;
  readonly key: KeyObject;
}

function isValidKeyName(name: string): boolean {
  return name.length > 0 && !name.includes('+') && !/\s/u.test(name);
}

/** Parses `<name>+<hex key ID>+<base64(0x01 || 32-byte Ed25519 key)>` and checks the key ID. */
export function parseVerifierKey(vkey: string): Verifier {
  const a = vkey.indexOf('+');
  const b = a < 0 ? -1 : vkey.indexOf('+', a + 1);
  if (a < 0 || b < 0) fail(`verifier key ${JSON.stringify(vkey)}: need name+keyid+key`);
  const name = vkey.slice(0, a);
  const idHex = vkey.slice(a + 1, b);
  const keyB64 = vkey.slice(b + 1);
  if (!isValidKeyName(name)) fail(`verifier key: invalid key name ${JSON.stringify(name)}`);
  if (!/^[0-9a-fA-F]{8}$/.test(idHex)) fail(`verifier key: key ID ${JSON.stringify(idHex)} is not 8 hex digits`);
  const key = decodeBase64(keyB64, 'verifier key');
  if (key[0] !== SIG_ED25519) fail(`verifier key: signature type ${key[0]} is not Ed25519 (0x01)`);
  if (key.length !== 33) fail(`verifier key: Ed25519 key is ${key.length - 1} bytes, not 32`);
  const keyId = sha256(Buffer.from(name + '\n', 'utf8'), key).subarray(0, 4);
  if (keyId.toString('hex') !== idHex.toLowerCase()) fail(`verifier key: key ID ${idHex} does not match the key (${keyId.toString('hex')})`);
  const publicKey = key.subarray(1);
  const keyObject = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  return { name, keyId, publicKey, key: keyObject };
}

export interface NoteSignature {
  readonly name: string;
  readonly keyId: Buffer;
  readonly signature: Buffer;
}

export interface ParsedNote {
  /** The signed text, ending in its final newline. */
  readonly text: string;
  readonly signatures: NoteSignature[];
}

/** Parses a signed note strictly (c2sp.org/signed-note; golang/mod sumdb/note Open). */
export function parseNote(msg: string | Uint8Array): ParsedNote {
  let s: string;
  if (typeof msg === 'string') {
    s = msg;
  } else {
    try {
      s = new TextDecoder('utf-8', { fatal: true }).decode(msg);
    } catch {
      fail('note: not valid UTF-8');
    }
  }
  if (/[\x00-\x09\x0b-\x1f]/.test(s)) fail('note: contains a control character other than newline');
  const split = s.lastIndexOf('\n\n');
  if (split < 0) fail('note: no blank line separating the text from the signatures');
  const text = s.slice(0, split + 1);
  const sigBlock = s.slice(split + 2);
  if (!sigBlock.endsWith('\n')) fail('note: the signature block does not end in a newline');
  const lines = sigBlock.slice(0, -1).split('\n');
  if (lines.length === 0 || lines.length > 100) fail(`note: ${lines.length} signature lines`);
  const signatures: NoteSignature[] = [];
  for (const line of lines) {
    const m = /^\u2014 ([^ ]+) ([^ ]+)$/.exec(line);
    if (!m) fail(`note: malformed signature line ${JSON.stringify(line)}`);
    if (!isValidKeyName(m[1]!)) fail(`note: invalid key name ${JSON.stringify(m[1])}`);
    const sig = decodeBase64(m[2]!, 'note signature');
    if (sig.length < 5) fail('note: signature shorter than 5 bytes');
    signatures.push({ name: m[1]!, keyId: sig.subarray(0, 4), signature: sig.subarray(4) });
  }
  return { text, signatures };
}

/**
 * Opens a signed note with one verifier: signatures by other keys are ignored, every
 * signature by this key (name and key ID) must verify, and at least one must be present.
 * Returns the signed text.
 */
export function openNote(msg: string | Uint8Array, verifier: Verifier): string {
  const note = parseNote(msg);
  let verified = 0;
  for (const sig of note.signatures) {
    if (sig.name !== verifier.name || !sig.keyId.equals(verifier.keyId)) continue;
    if (sig.signature.length !== 64) fail('note: Ed25519 signature is not 64 bytes');
    if (!cryptoVerify(null, Buffer.from(note.text, 'utf8'), verifier.key, sig.signature)) fail(`note: invalid signature by ${verifier.name}`);
    verified++;
  }
  if (verified === 0) fail(`note: no signature by ${verifier.name}+${verifier.keyId.toString('hex')}`);
  return note.text;
}

// ---------------------------------------------------------------------------------------
// Checkpoints (c2sp.org/tlog-checkpoint)

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly root: Buffer;
  readonly extensions: string[];
  /** The whole signed note, verbatim. */
  readonly note: string;
}

export function parseCheckpointText(text: string): Omit<Checkpoint, 'note'> {
  if (!text.endsWith('\n')) fail('checkpoint: text does not end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) fail(`checkpoint: ${lines.length} lines, need at least 3`);
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) fail('checkpoint: empty origin');
  const size = parseDecimal(sizeLine, 'checkpoint tree size');
  const root = decodeHash(rootLine, 'checkpoint root hash');
  for (const e of extensions) if (e.length === 0) fail('checkpoint: empty extension line');
  if (size === 0 && !root.equals(EMPTY_ROOT)) fail('checkpoint: size 0 with a root other than the empty hash');
  return { origin, size, root, extensions };
}

/** Verifies a checkpoint note against the log's key (name = origin). */
export function verifyCheckpoint(note: string | Uint8Array, verifier: Verifier): Checkpoint {
  const text = openNote(note, verifier);
  const cp = parseCheckpointText(text);
  if (cp.origin !== verifier.name) fail(`checkpoint: origin ${JSON.stringify(cp.origin)} is not the key name ${JSON.stringify(verifier.name)}`);
  return { ...cp, note: typeof note === 'string' ? note : Buffer.from(note).toString('utf8') };
}

// ---------------------------------------------------------------------------------------
// c2sp.org/tlog-proof receipts

export interface TlogProof {
  readonly index: number;
  readonly extra: Buffer | undefined;
  readonly proof: Buffer[];
  readonly checkpointNote: string;
}

export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

export function parseTlogProof(text: string): TlogProof {
  const blank = text.indexOf('\n\n');
  if (blank < 0) fail('tlog-proof: no blank line before the checkpoint');
  const lines = text.slice(0, blank).split('\n');
  const checkpointNote = text.slice(blank + 2);
  let i = 0;
  if (lines[i++] !== TLOG_PROOF_HEADER) fail(`tlog-proof: first line is not ${TLOG_PROOF_HEADER}`);
  let extra: Buffer | undefined;
  if (lines[i]?.startsWith('extra ')) extra = decodeBase64(lines[i++]!.slice(6), 'tlog-proof extra');
  const m = /^index (.*)$/.exec(lines[i++] ?? '');
  if (!m) fail('tlog-proof: missing index line');
  const index = parseDecimal(m[1]!, 'tlog-proof index');
  const proof = lines.slice(i).map((l, k) => decodeHash(l, `tlog-proof hash ${k}`));
  return { index, extra, proof, checkpointNote };
}

/**
 * Verifies a receipt for the entry whose leaf hash is `leaf`: the checkpoint's signature
 * and the inclusion proof. Returns the parsed receipt and its checkpoint.
 */
export function verifyTlogProof(text: string, verifier: Verifier, leaf: Uint8Array, expectIndex?: number): { receipt: TlogProof; checkpoint: Checkpoint } {
  const receipt = parseTlogProof(text);
  if (expectIndex !== undefined && receipt.index !== expectIndex) fail(`tlog-proof: index ${receipt.index}, expected ${expectIndex}`);
  const checkpoint = verifyCheckpoint(receipt.checkpointNote, verifier);
  verifyInclusion(receipt.index, checkpoint.size, leaf, receipt.proof, checkpoint.root);
  return { receipt, checkpoint };
}

// ---------------------------------------------------------------------------------------
// Tiles (c2sp.org/tlog-tiles)

/** `x001/x234/067` for 1234067. */
export function formatTileIndex(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad tile index ${n}`);
  let s = String(n % 1000).padStart(3, '0');
  n = Math.floor(n / 1000);
  while (n > 0) {
    s = `x${String(n % 1000).padStart(3, '0')}/${s}`;
    n = Math.floor(n / 1000);
  }
  return s;
}

export function tilePath(level: number | 'entries', index: number, width: number): string {
  if (!(width >= 1 && width <= TILE_WIDTH)) throw new RangeError(`bad tile width ${width}`);
  return `tile/${level}/${formatTileIndex(index)}${width === TILE_WIDTH ? '' : `.p/${width}`}`;
}

/** Hashes at level `level` in a tree of `size`: floor(size / 256^level). */
export function levelCount(size: number, level: number): number {
  return Math.floor(size / TILE_WIDTH ** level);
}

export interface TileRef {
  readonly level: number;
  readonly index: number;
  readonly width: number;
}

/** Every tile (full and partial) that exists for a tree of `size`, level by level. */
export function tilesForSize(size: number): TileRef[] {
  const out: TileRef[] = [];
  for (let level = 0; levelCount(size, level) > 0; level++) {
    const n = levelCount(size, level);
    const full = Math.floor(n / TILE_WIDTH);
    for (let i = 0; i < full; i++) out.push({ level, index: i, width: TILE_WIDTH });
    if (n % TILE_WIDTH > 0) out.push({ level, index: full, width: n % TILE_WIDTH });
  }
  return out;
}

/** Splits an entry bundle (uint16 big-endian length, bytes; repeated) into exactly `width` entries. */
export function parseBundle(data: Uint8Array, width: number, what = 'bundle'): Buffer[] {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const entries: Buffer[] = [];
  let o = 0;
  while (o < b.length) {
    if (o + 2 > b.length) fail(`${what}: truncated length prefix at byte ${o}`);
    const n = b.readUInt16BE(o);
    if (o + 2 + n > b.length) fail(`${what}: entry ${entries.length} runs past the end`);
    entries.push(b.subarray(o + 2, o + 2 + n));
    o += 2 + n;
  }
  if (entries.length !== width) fail(`${what}: ${entries.length} entries, expected ${width}`);
  return entries;
}

export function formatBundle(entries: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(e.length);
    parts.push(len, Buffer.from(e));
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------
// HTTP (node:http, so that the raw headers and the undecoded body are visible)

export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

export function httpRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Uint8Array | string; timeoutMs?: number } = {}
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error(`response from ${url} aborted`)));
    });
    req.on('error', reject);
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`request to ${url} timed out`)));
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

function header(r: HttpResponse, name: string): string | undefined {
  const v = r.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

function expectStatus(r: HttpResponse, status: number, what: string): void {
  if (r.status !== status) fail(`${what}: HTTP ${r.status}, expected ${status}: ${r.body.toString('utf8').slice(0, 300)}`);
}

function expectHeader(r: HttpResponse, name: string, want: string | RegExp, what: string): void {
  const got = header(r, name);
  const ok = got !== undefined && (typeof want === 'string' ? got === want : want.test(got));
  if (!ok) fail(`${what}: ${name} is ${JSON.stringify(got)}, expected ${want}`);
}

function join(base: string, path: string): string {
  return base.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '');
}

/** Fetches the latest checkpoint and verifies its signature and headers. */
export async function fetchVerifiedCheckpoint(baseUrl: string, vkey: string | Verifier): Promise<Checkpoint> {
  const verifier = typeof vkey === 'string' ? parseVerifierKey(vkey) : vkey;
  const r = await httpRequest(join(baseUrl, 'checkpoint'));
  expectStatus(r, 200, 'GET /checkpoint');
  expectHeader(r, 'content-type', 'text/plain; charset=utf-8', 'GET /checkpoint');
  expectHeader(r, 'cache-control', /^no-cache$/, 'GET /checkpoint');
  return verifyCheckpoint(r.body, verifier);
}

function expectTileHeaders(r: HttpResponse, what: string): void {
  expectStatus(r, 200, what);
  expectHeader(r, 'content-type', 'application/octet-stream', what);
  expectHeader(r, 'cache-control', /(^|[ ,])immutable($|[ ,])/, what);
  expectHeader(r, 'cache-control', /(^|[ ,])max-age=\d+/, what);
}

/** Fetches hash tile (level, index, width): exactly width × 32 bytes. */
export async function fetchTile(baseUrl: string, level: number, index: number, width: number): Promise<Buffer> {
  const path = tilePath(level, index, width);
  const r = await httpRequest(join(baseUrl, path));
  expectTileHeaders(r, `GET /${path}`);
  if (header(r, 'content-encoding') !== undefined) fail(`GET /${path}: unexpected Content-Encoding on a hash tile`);
  if (r.body.length !== width * HASH_SIZE) fail(`GET /${path}: ${r.body.length} bytes, expected ${width * HASH_SIZE}`);
  return r.body;
}

/**
 * Fetches entry bundle (index, width), gzip-compressed or not, and returns its raw bytes
 * (decompressed) and its entries (exactly `width`).
 */
export async function fetchBundle(baseUrl: string, index: number, width: number, gzip = true): Promise<{ raw: Buffer; entries: Buffer[] }> {
  const path = tilePath('entries', index, width);
  const what = `GET /${path} (Accept-Encoding: ${gzip ? 'gzip' : 'identity'})`;
  const r = await httpRequest(join(baseUrl, path), { headers: { 'accept-encoding': gzip ? 'gzip, identity' : 'identity' } });
  expectTileHeaders(r, what);
  expectHeader(r, 'vary', /accept-encoding/i, what);
  let raw = r.body;
  const enc = header(r, 'content-encoding');
  if (gzip) {
    if (enc !== 'gzip') fail(`${what}: Content-Encoding ${JSON.stringify(enc)}, expected gzip`);
    try {
      raw = gunzipSync(r.body);
    } catch (err) {
      fail(`${what}: body is not valid gzip: ${String(err)}`);
    }
  } else if (enc !== undefined && enc !== 'identity') {
    fail(`${what}: Content-Encoding ${enc} though only identity was accepted`);
  }
  return { raw, entries: parseBundle(raw, width, what) };
}

/** Fetches and checks a consistency proof from /v1/proofs/consistency. */
export async function fetchConsistencyProof(baseUrl: string, oldSize: number, newSize: number): Promise<Buffer[]> {
  const what = `GET /v1/proofs/consistency?old=${oldSize}&new=${newSize}`;
  const r = await httpRequest(join(baseUrl, `v1/proofs/consistency?old=${oldSize}&new=${newSize}`));
  expectStatus(r, 200, what);
  expectHeader(r, 'content-type', /^application\/json\b/, what);
  const body = JSON.parse(r.body.toString('utf8')) as { oldSize?: unknown; newSize?: unknown; proof?: unknown };
  if (body.oldSize !== oldSize || body.newSize !== newSize) fail(`${what}: answer is for ${String(body.oldSize)} → ${String(body.newSize)}`);
  if (!Array.isArray(body.proof) || body.proof.some((p) => typeof p !== 'string')) fail(`${what}: proof is not an array of strings`);
  return (body.proof as string[]).map((p, i) => decodeHash(p, `${what} proof[${i}]`));
}

/** Fetches the consistency proof from `older` to `newer` and verifies it with this client. */
export async function verifyConsistencyWithServer(baseUrl: string, older: { size: number; root: Uint8Array }, newer: { size: number; root: Uint8Array }): Promise<void> {
  if (older.size > newer.size) fail(`checkpoint of size ${newer.size} is older than one of size ${older.size}: the log rewound`);
  const proof = await fetchConsistencyProof(baseUrl, older.size, newer.size);
  verifyConsistency(older.size, newer.size, proof, older.root, newer.root);
}

/** Fetches a receipt (optionally pinned to a tree size) and verifies it. */
export async function fetchVerifiedReceipt(baseUrl: string, vkey: string | Verifier, index: number, leaf: Uint8Array, treeSize?: number): Promise<{ receipt: TlogProof; checkpoint: Checkpoint }> {
  const verifier = typeof vkey === 'string' ? parseVerifierKey(vkey) : vkey;
  const q = treeSize === undefined ? '' : `?treeSize=${treeSize}`;
  const what = `GET /v1/receipts/${index}${q}`;
  const r = await httpRequest(join(baseUrl, `v1/receipts/${index}${q}`));
  expectStatus(r, 200, what);
  expectHeader(r, 'content-type', 'text/plain; charset=utf-8', what);
  const out = verifyTlogProof(r.body.toString('utf8'), verifier, leaf, index);
  if (treeSize !== undefined && out.checkpoint.size !== treeSize) fail(`${what}: receipt is against size ${out.checkpoint.size}`);
  return out;
}

// ---------------------------------------------------------------------------------------
// The audit

export interface AuditOptions {
  /** Receipt to check (default: a random index; none for an empty tree). */
  readonly receiptIndex?: number;
  /**
   * Also check that the read path does not run ahead of the checkpoint (the next tile
   * width is 404). Only valid while nothing is being written.
   */
  readonly quiescent?: boolean;
  /** Parallel requests (default 8). */
  readonly concurrency?: number;
}

export interface AuditResult {
  readonly checkpoint: Checkpoint;
  /** Every entry of the tree, by index. */
  readonly entries: Buffer[];
  /** Every leaf hash, by index. */
  readonly leafHashes: Buffer[];
  /** Every served resource fetched, by path (tile/L/N[.p/W] or tile/entries/N[.p/W], bundles decompressed). */
  readonly resources: Map<string, Buffer>;
  readonly requests: number;
}

async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * Audits the log at `baseUrl` against its verifier key: the checkpoint's signature; every
 * hash tile and entry bundle of its tree (full and partial, headers and exact lengths);
 * each bundle's entries against its level-0 tile; each full tile against its hash in the
 * parent tile; the root rebuilt from the tiles (and, independently, from all leaf hashes)
 * against the signed root; a receipt; and, if `previous` is given, the server's
 * consistency proof from it (and the previous root against the leaves).
 */
export async function audit(baseUrl: string, vkey: string | Verifier, previous?: { size: number; root: Uint8Array }, opts: AuditOptions = {}): Promise<AuditResult> {
  const verifier = typeof vkey === 'string' ? parseVerifierKey(vkey) : vkey;
  const checkpoint = await fetchVerifiedCheckpoint(baseUrl, verifier);
  const size = checkpoint.size;
  const concurrency = opts.concurrency ?? 8;
  let requests = 1;

  // 1. Fetch every tile and bundle of the tree.
  const tiles = new Map<string, Buffer>(); // key `${level}/${index}`, the tile as served for `size`
  const resources = new Map<string, Buffer>();
  const bundles = new Map<number, Buffer[]>();
  const refs = tilesForSize(size);
  const jobs: Array<() => Promise<void>> = [];
  for (const t of refs) {
    jobs.push(async () => {
      const data = await fetchTile(baseUrl, t.level, t.index, t.width);
      tiles.set(`${t.level}/${t.index}`, data);
      resources.set(tilePath(t.level, t.index, t.width), data);
    });
    if (t.level === 0) {
      jobs.push(async () => {
        const { raw, entries } = await fetchBundle(baseUrl, t.index, t.width, t.index % 2 === 0);
        bundles.set(t.index, entries);
        resources.set(tilePath('entries', t.index, t.width), raw);
      });
    }
  }
  await pool(jobs, concurrency, (j) => j());
  requests += jobs.length;

  // 2. Entries hash to the level-0 tiles.
  const entries: Buffer[] = [];
  const leafHashes: Buffer[] = [];
  for (let i = 0; i * TILE_WIDTH < size; i++) {
    const es = bundles.get(i)!;
    const tile = tiles.get(`0/${i}`)!;
    es.forEach((e, j) => {
      const h = leafHash(e);
      if (!h.equals(tile.subarray(j * HASH_SIZE, (j + 1) * HASH_SIZE))) {
        fail(`entry ${i * TILE_WIDTH + j} (bundle ${tilePath('entries', i, es.length)}[${j}]) does not hash to its leaf in tile/0/${formatTileIndex(i)}`);
      }
      entries.push(e);
      leafHashes.push(h);
    });
  }
  if (entries.length !== size) fail(`bundles hold ${entries.length} entries, the checkpoint says ${size}`);

  // 3. Each full tile hashes to its entry in the parent tile.
  for (const t of refs) {
    if (t.width !== TILE_WIDTH) continue;
    const data = tiles.get(`${t.level}/${t.index}`)!;
    const hashes = Array.from({ length: TILE_WIDTH }, (_, k) => data.subarray(k * HASH_SIZE, (k + 1) * HASH_SIZE));
    const parent = tiles.get(`${t.level + 1}/${Math.floor(t.index / TILE_WIDTH)}`);
    if (!parent) fail(`full tile ${t.level}/${t.index} has no parent tile`);
    const off = (t.index % TILE_WIDTH) * HASH_SIZE;
    if (!subtreeHash(hashes).equals(parent.subarray(off, off + HASH_SIZE))) {
      fail(`tile/${t.level}/${formatTileIndex(t.index)} does not hash to its entry in tile/${t.level + 1}/${formatTileIndex(Math.floor(t.index / TILE_WIDTH))}`);
    }
  }

  // 4. The root from the tiles: the perfect subtrees of size's binary decomposition.
  const hashAt = (level: number, n: number): Buffer => {
    const t = tiles.get(`${level}/${Math.floor(n / TILE_WIDTH)}`);
    const off = (n % TILE_WIDTH) * HASH_SIZE;
    if (!t || t.length < off + HASH_SIZE) fail(`hash ${n} of level ${level} is not in the tiles for size ${size}`);
    return t.subarray(off, off + HASH_SIZE);
  };
  const subtrees: Buffer[] = [];
  let start = 0;
  for (let k = 52; k >= 0; k--) {
    const span = 2 ** k;
    if (Math.floor(size / span) % 2 === 0) continue;
    const level = Math.floor(k / TILE_HEIGHT);
    const count = 2 ** (k % TILE_HEIGHT);
    const first = start / TILE_WIDTH ** level;
    subtrees.push(subtreeHash(Array.from({ length: count }, (_, j) => hashAt(level, first + j))));
    start += span;
  }
  let tileRoot = EMPTY_ROOT;
  if (subtrees.length > 0) {
    tileRoot = subtrees[subtrees.length - 1]!;
    for (let i = subtrees.length - 2; i >= 0; i--) tileRoot = nodeHash(subtrees[i]!, tileRoot);
  }
  if (!tileRoot.equals(checkpoint.root)) fail(`the root rebuilt from the tiles differs from the signed root at size ${size}`);
  const leafRoot = rootsAtSizes(leafHashes, [size]).get(size)!;
  if (!leafRoot.equals(checkpoint.root)) fail(`the root of all ${size} leaf hashes differs from the signed root`);

  // 5. Consistency with the previous checkpoint.
  if (previous) {
    await verifyConsistencyWithServer(baseUrl, previous, checkpoint);
    requests++;
    const prevRoot = rootsAtSizes(leafHashes, [previous.size]).get(previous.size)!;
    if (!prevRoot.equals(previous.root)) fail(`the previous root at size ${previous.size} is not the root of the first ${previous.size} entries`);
  }

  // 6. A receipt, pinned to this checkpoint.
  if (size > 0) {
    const index = opts.receiptIndex ?? Math.floor(Math.random() * size);
    const { checkpoint: rc } = await fetchVerifiedReceipt(baseUrl, verifier, index, leafHashes[index]!, size);
    requests++;
    if (!rc.root.equals(checkpoint.root)) fail(`receipt for ${index} is against a different root of size ${size}`);
  }

  // 7. Nothing beyond the checkpoint is served.
  if (opts.quiescent) {
    const beyond: Array<[number | 'entries', number, number]> = [];
    const n0 = levelCount(size, 0);
    beyond.push([0, Math.floor(n0 / TILE_WIDTH), (n0 % TILE_WIDTH) + 1]);
    beyond.push(['entries', Math.floor(n0 / TILE_WIDTH), (n0 % TILE_WIDTH) + 1]);
    const n1 = levelCount(size, 1);
    beyond.push([1, Math.floor(n1 / TILE_WIDTH), (n1 % TILE_WIDTH) + 1]);
    for (const [level, index, width] of beyond) {
      const path = tilePath(level, index, Math.min(width, TILE_WIDTH));
      const r = await httpRequest(join(baseUrl, path));
      requests++;
      if (r.status !== 404) fail(`GET /${path} beyond the checkpoint of size ${size}: HTTP ${r.status}, expected 404`);
    }
    const r = await httpRequest(join(baseUrl, `v1/proofs/consistency?old=0&new=${size + 1}`));
    requests++;
    if (r.status !== 404) fail(`consistency proof to size ${size + 1} beyond the checkpoint: HTTP ${r.status}, expected 404`);
  }

  return { checkpoint, entries, leafHashes, resources, requests };
}
