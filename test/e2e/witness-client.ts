/**
 * An independent, minimal C2SP tlog-witness client and cosignature verifier for end-to-end
 * tests.
 *
 * Like tlog-client.ts it deliberately imports nothing from src/ (and nothing from the other
 * test helpers): RFC 6962 hashing, consistency proofs computed from a list of leaves, the
 * RFC 9162 consistency check, signed notes (signing with a test log key and verifying),
 * verifier keys, checkpoints, c2sp.org/tlog-cosignature `cosignature/v1`, the
 * c2sp.org/tlog-witness add-checkpoint request and the glasslog fork evidence format are
 * re-implemented here from the public specifications (/work/shared/reference/specs.md §1,
 * §3, §4, and the format documented in the witness's evidence module header), using only
 * node: built-ins. If the witness and this client share a misreading of a spec, the tests
 * cannot catch it; if they misread it differently, the tests fail.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import http from 'node:http';

// ---------------------------------------------------------------------------------------
// Errors

export class WitnessClientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WitnessClientError';
  }
}

function fail(message: string): never {
  throw new WitnessClientError(message);
}

// ---------------------------------------------------------------------------------------
// RFC 6962 hashing (specs.md §1.1, §1.2)

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export const EMPTY_ROOT = sha256();

export function leafHash(entry: Uint8Array): Buffer {
  return sha256(Buffer.from([0x00]), entry);
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(Buffer.from([0x01]), left, right);
}

/** The largest power of two strictly less than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[lo:hi]) over leaf hashes. */
export function treeHash(leaves: readonly Uint8Array[], lo = 0, hi = leaves.length): Buffer {
  const n = hi - lo;
  if (n < 0 || hi > leaves.length) throw new RangeError(`treeHash: bad range [${lo}, ${hi}) of ${leaves.length}`);
  if (n === 0) return EMPTY_ROOT;
  if (n === 1) return Buffer.from(leaves[lo]!);
  const k = splitPoint(n);
  return nodeHash(treeHash(leaves, lo, lo + k), treeHash(leaves, lo + k, hi));
}

/** PROOF(m, D[0:n]) of RFC 6962 §2.1.2 (specs.md §1.5), from the list of leaf hashes. */
export function consistencyProof(m: number, n: number, leaves: readonly Uint8Array[]): Buffer[] {
  if (!(0 < m && m <= n && n <= leaves.length)) throw new RangeError(`consistencyProof(${m}, ${n}) over ${leaves.length} leaves`);
  const sub = (m: number, lo: number, hi: number, whole: boolean): Buffer[] => {
    const size = hi - lo;
    if (m === size) return whole ? [] : [treeHash(leaves, lo, hi)];
    const k = splitPoint(size);
    if (m <= k) return [...sub(m, lo, lo + k, whole), treeHash(leaves, lo + k, hi)];
    return [...sub(m - k, lo + k, hi, false), treeHash(leaves, lo, lo + k)];
  };
  return sub(m, 0, n, true);
}

/**
 * The RFC 9162 §2.1.4.2 loop without the power-of-two prepend: `path[0]` is the seed.
 * Returns the two roots the path leads to (the old size's and the new size's).
 */
export function rootsFromSeededPath(m: number, n: number, path: readonly Uint8Array[]): { oldRoot: Buffer; newRoot: Buffer } {
  if (!(0 < m && m < n)) fail(`consistency path: need 0 < ${m} < ${n}`);
  if (path.length === 0) fail('consistency path: empty');
  let fn = m - 1;
  let sn = n - 1;
  while ((fn & 1) === 1) {
    fn >>>= 1;
    sn >>>= 1;
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) fail('consistency path: too long');
    if ((fn & 1) === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if ((fn & 1) === 0) {
        do {
          fn >>>= 1;
          sn >>>= 1;
        } while ((fn & 1) === 0 && fn !== 0);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>>= 1;
    sn >>>= 1;
  }
  if (sn !== 0) fail('consistency path: too short');
  return { oldRoot: fr, newRoot: sr };
}

/** RFC 9162 §2.1.4.2 consistency verification (specs.md §1.6). Throws on failure. */
export function verifyConsistency(m: number, n: number, proof: readonly Uint8Array[], oldRoot: Uint8Array, newRoot: Uint8Array): void {
  if (m === n) {
    if (proof.length !== 0 || !Buffer.from(oldRoot).equals(newRoot)) fail('consistency: equal sizes need an empty proof and equal roots');
    return;
  }
  if (m === 0) fail('consistency: from the empty tree is meaningless');
  const isPow2 = (m & (m - 1)) === 0;
  const path = isPow2 ? [oldRoot, ...proof] : [...proof];
  const r = rootsFromSeededPath(m, n, path);
  if (!r.oldRoot.equals(oldRoot)) fail('consistency: old root mismatch');
  if (!r.newRoot.equals(newRoot)) fail('consistency: new root mismatch');
}

// ---------------------------------------------------------------------------------------
// Base64, decimals

function decodeBase64(s: string, what: string): Buffer {
  if (s.length === 0 || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) fail(`${what}: not standard padded base64: ${JSON.stringify(s.slice(0, 60))}`);
  const b = Buffer.from(s, 'base64');
  if (b.toString('base64') !== s) fail(`${what}: non-canonical base64`);
  return b;
}

function decodeHash(s: string, what: string): Buffer {
  const b = decodeBase64(s, what);
  if (b.length !== 32) fail(`${what}: ${b.length} bytes, not 32`);
  return b;
}

function parseDecimal(s: string, what: string): number {
  if (!/^(0|[1-9][0-9]*)$/.test(s) || !Number.isSafeInteger(Number(s))) fail(`${what}: not a decimal: ${JSON.stringify(s.slice(0, 40))}`);
  return Number(s);
}

// ---------------------------------------------------------------------------------------
// Keys (specs.md §3.3, §3.4)

export const TYPE_ED25519 = 0x01;
export const TYPE_COSIGNATURE_V1 = 0x04;
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface VerifierKey {
  readonly name: string;
  readonly keyId: Buffer;
  readonly type: number;
  readonly publicKey: Buffer;
  readonly key: KeyObject;
  readonly vkey: string;
}

function keyIdOf(name: string, type: number, publicKey: Uint8Array): Buffer {
  return sha256(Buffer.from(name + '\n', 'utf8'), Buffer.from([type]), publicKey).subarray(0, 4);
}

function validName(name: string): boolean {
  return name.length > 0 && !name.includes('+') && !/\s/u.test(name);
}

/** `<name>+<hex key ID>+<base64(type || 32-byte Ed25519 key)>`, key ID checked. */
export function parseVerifierKey(vkey: string, wantType?: number): VerifierKey {
  const a = vkey.indexOf('+');
  const b = a < 0 ? -1 : vkey.indexOf('+', a + 1);
  if (a < 0 || b < 0) fail(`vkey ${JSON.stringify(vkey)}: need name+keyid+key`);
  const name = vkey.slice(0, a);
  const idHex = vkey.slice(a + 1, b);
  if (!validName(name)) fail(`vkey: bad name ${JSON.stringify(name)}`);
  if (!/^[0-9a-f]{8}$/.test(idHex)) fail(`vkey: key ID ${JSON.stringify(idHex)} is not 8 lowercase hex digits`);
  const raw = decodeBase64(vkey.slice(b + 1), 'vkey');
  const type = raw[0]!;
  if (type !== TYPE_ED25519 && type !== TYPE_COSIGNATURE_V1) fail(`vkey: unsupported type 0x${type.toString(16)}`);
  if (wantType !== undefined && type !== wantType) fail(`vkey: type 0x${type.toString(16)}, want 0x${wantType.toString(16)}`);
  if (raw.length !== 33) fail(`vkey: ${raw.length - 1}-byte key, not 32`);
  const publicKey = raw.subarray(1);
  const keyId = keyIdOf(name, type, publicKey);
  if (keyId.toString('hex') !== idHex) fail(`vkey: key ID ${idHex} does not match the key (${keyId.toString('hex')})`);
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  return { name, keyId, type, publicKey, key, vkey };
}

/** A test log's Ed25519 note signer (type 0x01). */
export interface LogSigner {
  readonly name: string;
  readonly keyId: Buffer;
  readonly vkey: string;
  /** The 68-byte note signature (key ID || Ed25519 signature) over `text`. */
  sign(text: string): Buffer;
}

function signerFromPrivate(name: string, priv: KeyObject): LogSigner {
  const pub = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  const publicKey = Buffer.from(pub.subarray(pub.length - 32));
  const keyId = keyIdOf(name, TYPE_ED25519, publicKey);
  const vkey = `${name}+${keyId.toString('hex')}+${Buffer.concat([Buffer.from([TYPE_ED25519]), publicKey]).toString('base64')}`;
  return {
    name,
    keyId,
    vkey,
    sign: (text) => Buffer.concat([keyId, cryptoSign(null, Buffer.from(text, 'utf8'), priv)]),
  };
}

/** A fresh Ed25519 log key named `name`. */
export function generateLogSigner(name: string): LogSigner {
  if (!validName(name)) throw new RangeError(`bad key name ${name}`);
  return signerFromPrivate(name, generateKeyPairSync('ed25519').privateKey);
}

/** Parses a signed-note private key `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`. */
export function parseLogSignerKey(skey: string): LogSigner {
  const m = /^PRIVATE\+KEY\+([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(skey.trim());
  if (!m) fail('private key: not PRIVATE+KEY+<name>+<id>+<key>');
  const raw = decodeBase64(m[3]!, 'private key');
  if (raw[0] !== TYPE_ED25519 || raw.length !== 33) fail('private key: not an Ed25519 (type 0x01) seed');
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw.subarray(1)]), format: 'der', type: 'pkcs8' });
  const s = signerFromPrivate(m[1]!, priv);
  if (s.keyId.toString('hex') !== m[2]) fail(`private key: key ID ${m[2]} does not match (${s.keyId.toString('hex')})`);
  return s;
}

// ---------------------------------------------------------------------------------------
// Signed notes (specs.md §3.2)

const SIG_PREFIX = '\u2014 ';

export interface NoteSignature {
  readonly name: string;
  readonly keyId: Buffer;
  /** The decoded signature bytes after the key ID. */
  readonly body: Buffer;
  /** The line as it appears, with the final newline. */
  readonly line: string;
}

export interface Note {
  readonly text: string;
  readonly signatures: NoteSignature[];
}

function parseSignatureLine(line: string, what: string): NoteSignature {
  if (!line.startsWith(SIG_PREFIX)) fail(`${what}: not a signature line: ${JSON.stringify(line.slice(0, 60))}`);
  const rest = line.slice(SIG_PREFIX.length);
  const sp = rest.indexOf(' ');
  if (sp <= 0) fail(`${what}: no space after the key name`);
  const name = rest.slice(0, sp);
  if (!validName(name)) fail(`${what}: bad key name`);
  const sig = decodeBase64(rest.slice(sp + 1), `${what}: signature`);
  if (sig.length < 5) fail(`${what}: signature too short`);
  return { name, keyId: sig.subarray(0, 4), body: sig.subarray(4), line: line + '\n' };
}

/** Splits at the last "\n\n": text (with its final newline), then signature lines. */
export function parseNote(msg: string): Note {
  const split = msg.lastIndexOf('\n\n');
  if (split < 0) fail('note: no blank line before the signatures');
  if (!msg.endsWith('\n')) fail('note: does not end in a newline');
  const text = msg.slice(0, split + 1);
  const sigLines = msg.slice(split + 2, -1).split('\n');
  if (sigLines.length === 1 && sigLines[0] === '') fail('note: no signatures');
  return { text, signatures: sigLines.map((l, i) => parseSignatureLine(l, `note signature line ${i + 1}`)) };
}

export function signatureLine(name: string, sig: Uint8Array): string {
  return `${SIG_PREFIX}${name} ${Buffer.from(sig).toString('base64')}\n`;
}

/** A note: the text, a blank line, then one line per signer (and any extra lines given). */
export function signNote(text: string, signers: readonly LogSigner[], extraLines: readonly string[] = []): string {
  if (!text.endsWith('\n')) throw new RangeError('note text must end in a newline');
  return text + '\n' + signers.map((s) => signatureLine(s.name, s.sign(text))).join('') + extraLines.join('');
}

/**
 * Verifies the log signature (type 0x01) by `log` on a note: lines with the log's name and
 * key ID must verify, and there must be one. Returns the text.
 */
export function openLogNote(note: string, log: VerifierKey): string {
  if (log.type !== TYPE_ED25519) fail('openLogNote: not a log (type 0x01) key');
  const { text, signatures } = parseNote(note);
  let ok = 0;
  for (const s of signatures) {
    if (s.name !== log.name || !s.keyId.equals(log.keyId)) continue;
    if (s.body.length !== 64 || !cryptoVerify(null, Buffer.from(text, 'utf8'), log.key, s.body)) fail(`note: the signature by ${log.name} does not verify`);
    ok++;
  }
  if (ok === 0) fail(`note: no signature by ${log.name}+${log.keyId.toString('hex')}`);
  return text;
}

// ---------------------------------------------------------------------------------------
// Checkpoints (specs.md §3.1)

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly root: Buffer;
  /** The signed text. */
  readonly text: string;
  /** The whole note, verbatim. */
  readonly note: string;
}

export function checkpointText(origin: string, size: number, root: Uint8Array): string {
  return `${origin}\n${size}\n${Buffer.from(root).toString('base64')}\n`;
}

export function parseCheckpointText(text: string): Omit<Checkpoint, 'note'> {
  if (!text.endsWith('\n')) fail('checkpoint: no final newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) fail('checkpoint: fewer than 3 lines');
  const origin = lines[0]!;
  if (origin === '') fail('checkpoint: empty origin');
  const size = parseDecimal(lines[1]!, 'checkpoint size');
  const root = decodeHash(lines[2]!, 'checkpoint root');
  if (lines.slice(3).some((l) => l === '')) fail('checkpoint: empty extension line');
  return { origin, size, root, text };
}

/** Verifies a checkpoint note's log signature and parses it; the origin must be the key name. */
export function verifyLogCheckpoint(note: string, log: VerifierKey): Checkpoint {
  const text = openLogNote(note, log);
  const cp = parseCheckpointText(text);
  if (cp.origin !== log.name) fail(`checkpoint: origin ${JSON.stringify(cp.origin)} is not the log key name ${JSON.stringify(log.name)}`);
  return { ...cp, note };
}

/** A checkpoint of the first `size` leaves, signed by `signer` (origin = key name). */
export function signedCheckpoint(signer: LogSigner, leaves: readonly Uint8Array[], size: number): Checkpoint {
  const root = treeHash(leaves, 0, size);
  const text = checkpointText(signer.name, size, root);
  return { origin: signer.name, size, root, text, note: signNote(text, [signer]) };
}

// ---------------------------------------------------------------------------------------
// cosignature/v1 (specs.md §3.5)

/** The message a cosignature/v1 signs: the header, the time line, the checkpoint text. */
export function cosignatureMessage(timestamp: bigint, checkpointText: string): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${timestamp.toString(10)}\n${checkpointText}`, 'utf8');
}

export interface VerifiedCosignature {
  readonly witness: string;
  readonly timestamp: bigint;
}

/**
 * Verifies one cosignature/v1 signature line by `witness` over `checkpointText`, byte by
 * byte: name and key ID match, 76 decoded bytes = key ID (4) || u64 big-endian timestamp (8)
 * || Ed25519 signature (64), over "cosignature/v1\ntime <ts>\n" + the checkpoint text.
 */
export function verifyCosignatureLine(sig: NoteSignature, checkpointText: string, witness: VerifierKey): VerifiedCosignature {
  if (witness.type !== TYPE_COSIGNATURE_V1) fail('not a cosignature/v1 (type 0x04) key');
  if (sig.name !== witness.name || !sig.keyId.equals(witness.keyId)) fail(`cosignature: line is by ${sig.name}+${sig.keyId.toString('hex')}, not ${witness.name}`);
  if (sig.body.length !== 72) fail(`cosignature: ${4 + sig.body.length} bytes, not 76`);
  const timestamp = sig.body.readBigUInt64BE(0);
  if (timestamp === 0n) fail('cosignature: timestamp 0 on a checkpoint cosignature');
  if (timestamp > 0x7fffffffffffffffn) fail('cosignature: timestamp above 2^63-1');
  const ed = sig.body.subarray(8);
  if (!cryptoVerify(null, cosignatureMessage(timestamp, checkpointText), witness.key, ed)) fail(`cosignature by ${witness.name} does not verify`);
  return { witness: witness.name, timestamp };
}

/**
 * The witnesses among `witnesses` with a valid cosignature on the checkpoint note. A line
 * whose name and key ID match a witness but that fails to verify throws.
 */
export function validCosigners(note: string, witnesses: readonly VerifierKey[]): Map<string, VerifiedCosignature> {
  const { text, signatures } = parseNote(note);
  const out = new Map<string, VerifiedCosignature>();
  for (const s of signatures) {
    const w = witnesses.find((w) => w.name === s.name && w.keyId.equals(s.keyId));
    if (!w) continue;
    out.set(w.vkey, verifyCosignatureLine(s, text, w));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// add-checkpoint (specs.md §4.2) and HTTP

export const TLOG_SIZE_TYPE = 'text/x.tlog.size';

export function formatAddCheckpoint(oldSize: number, proof: readonly Uint8Array[], checkpointNote: string): string {
  if (proof.length > 63) throw new RangeError('at most 63 proof lines');
  return `old ${oldSize}\n` + proof.map((h) => Buffer.from(h).toString('base64') + '\n').join('') + '\n' + checkpointNote;
}

export interface HttpAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

export function request(url: string, opts: { method?: string; body?: string | Uint8Array; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.end(opts.body);
  });
}

function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '');
}

/** POST <prefix>/add-checkpoint with a raw body. */
export function postAddCheckpoint(prefix: string, body: string | Uint8Array, timeoutMs?: number): Promise<HttpAnswer> {
  return request(joinUrl(prefix, 'add-checkpoint'), { method: 'POST', body, timeoutMs });
}

export interface AddCheckpointResult {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
  /** On 409 with text/x.tlog.size: the witness's size. */
  readonly witnessSize?: number;
  /** On 200: the cosignature lines verified against `witness`. */
  readonly cosignature?: VerifiedCosignature;
  /** On 200: the checkpoint note with the witness's lines appended. */
  readonly cosignedNote?: string;
}

/**
 * Sends add-checkpoint and interprets the answer: a 200 body must be signature lines only,
 * with a valid cosignature/v1 line by `witness` over the checkpoint (unknown keys ignored);
 * a 409 with text/x.tlog.size carries the witness's size.
 */
export async function addCheckpoint(prefix: string, witness: VerifierKey, oldSize: number, proof: readonly Uint8Array[], checkpointNote: string): Promise<AddCheckpointResult> {
  const r = await postAddCheckpoint(prefix, formatAddCheckpoint(oldSize, proof, checkpointNote));
  const base = { status: r.status, contentType: r.contentType, body: r.body };
  if (r.status === 409 && r.contentType.split(';')[0]!.trim() === TLOG_SIZE_TYPE) {
    if (!/^(0|[1-9][0-9]*)\n$/.test(r.body)) fail(`409 ${TLOG_SIZE_TYPE} body ${JSON.stringify(r.body)} is not a decimal and a newline`);
    return { ...base, witnessSize: Number(r.body.slice(0, -1)) };
  }
  if (r.status !== 200) return base;
  if (r.body === '' || !r.body.endsWith('\n') || r.body.includes('\n\n')) fail(`200 body is not signature lines: ${JSON.stringify(r.body.slice(0, 200))}`);
  const { text } = parseNote(checkpointNote);
  const lines = r.body.slice(0, -1).split('\n').map((l, i) => parseSignatureLine(l, `cosignature line ${i + 1}`));
  const mine = lines.filter((s) => s.name === witness.name && s.keyId.equals(witness.keyId));
  if (mine.length === 0) fail(`200 without a cosignature by ${witness.name}: ${JSON.stringify(r.body)}`);
  let cosignature: VerifiedCosignature | undefined;
  for (const s of mine) cosignature = verifyCosignatureLine(s, text, witness);
  return { ...base, cosignature, cosignedNote: checkpointNote + r.body };
}

/** Lowercase hex SHA-256 of the origin: its path segment on the monitoring prefix. */
export function originHash(origin: string): string {
  return sha256(Buffer.from(origin, 'utf8')).toString('hex');
}

/** GET <prefix>/<origin hash>/checkpoint; null on 404. */
export async function fetchMonitoringCheckpoint(prefix: string, origin: string): Promise<string | null> {
  const r = await request(joinUrl(prefix, `${originHash(origin)}/checkpoint`));
  if (r.status === 404) return null;
  if (r.status !== 200) fail(`GET monitoring checkpoint: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
  return r.body;
}

/** GET <prefix>/<origin hash>/fork-evidence; null on 404. */
export async function fetchForkEvidence(prefix: string, origin: string): Promise<string | null> {
  const r = await request(joinUrl(prefix, `${originHash(origin)}/fork-evidence`));
  if (r.status === 404) return null;
  if (r.status !== 200) fail(`GET fork evidence: HTTP ${r.status}: ${r.body.slice(0, 200)}`);
  return r.body;
}

// ---------------------------------------------------------------------------------------
// Fork evidence (glasslog/fork-evidence@v1), checked offline with the log's key only

export const FORK_EVIDENCE_HEADER = 'glasslog/fork-evidence@v1';

export interface VerifiedForkEvidence {
  readonly smaller: Checkpoint;
  readonly larger: Checkpoint;
  readonly path: Buffer[];
  /** For different sizes: the root of the larger tree's first smaller.size leaves. */
  readonly prefixRoot?: Buffer;
}

/**
 * Parses and verifies fork evidence:
 *
 *   glasslog/fork-evidence@v1
 *   <base64 hash>…   (the consistency path, its first hash the seed; none for equal sizes)
 *   <blank line>
 *   <smaller checkpoint note>
 *   <blank line>
 *   <larger checkpoint note>
 *
 * Both notes must carry a valid signature by `log`; the sizes must be ordered; equal sizes
 * need different roots; otherwise the path, run through the RFC 9162 loop with its first
 * hash as the seed, must yield the larger root and a prefix root unlike the smaller root.
 */
export function verifyForkEvidenceOffline(evidence: string, log: VerifierKey): VerifiedForkEvidence {
  const head = evidence.indexOf('\n\n');
  if (head < 0) fail('fork evidence: no blank line after the header');
  const headLines = evidence.slice(0, head).split('\n');
  if (headLines[0] !== FORK_EVIDENCE_HEADER) fail(`fork evidence: first line ${JSON.stringify(headLines[0])}`);
  const path = headLines.slice(1).map((l, i) => decodeHash(l, `fork evidence path line ${i + 1}`));
  const rest = evidence.slice(head + 2);
  // The smaller note: checkpoint text (no blank line inside), "\n", signature lines, then
  // the separating blank line.
  const textEnd = rest.indexOf('\n\n');
  if (textEnd < 0) fail('fork evidence: the first checkpoint has no signatures');
  const sigsEnd = rest.indexOf('\n\n', textEnd + 2);
  if (sigsEnd < 0) fail('fork evidence: no blank line between the checkpoints');
  const smallerNote = rest.slice(0, sigsEnd + 1);
  const largerNote = rest.slice(sigsEnd + 2);
  const smaller = verifyLogCheckpoint(smallerNote, log);
  const larger = verifyLogCheckpoint(largerNote, log);
  if (smaller.size > larger.size) fail('fork evidence: checkpoints out of order');
  if (smaller.size === larger.size) {
    if (path.length !== 0) fail('fork evidence: equal sizes with path hashes');
    if (smaller.root.equals(larger.root)) fail('fork evidence: equal sizes and equal roots are no fork');
    return { smaller, larger, path };
  }
  if (smaller.size === 0) fail('fork evidence: the empty tree is consistent with everything');
  const { oldRoot, newRoot } = rootsFromSeededPath(smaller.size, larger.size, path);
  if (!newRoot.equals(larger.root)) fail('fork evidence: the path does not lead to the larger root');
  if (oldRoot.equals(smaller.root)) fail('fork evidence: the path proves the checkpoints consistent');
  return { smaller, larger, path, prefixRoot: oldRoot };
}
