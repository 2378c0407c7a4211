/**
 * Fixtures for the witness tests (test/witness, test/http/witness-app.test.ts): logs with
 * real Ed25519 keys over real RFC 6962 trees (and forks of them), signed checkpoints,
 * add-checkpoint bodies, and a Witness with its Hono app on a real WitnessStore from the
 * factories of ./witness-stores.ts.
 */
import { formatAddCheckpoint } from '../../src/core/add-checkpoint.js';
import { formatCheckpoint } from '../../src/core/checkpoint.js';
import { utf8 } from '../../src/core/encoding.js';
import { EMPTY_ROOT, leafHash } from '../../src/core/hash.js';
import { memoryNodeReader, proveConsistency, rootHash, type NodeReader } from '../../src/core/tree.js';
import { createWitnessApp } from '../../src/http/witness-app.js';
import { Registry } from '../../src/metrics.js';
import { newCosignatureVerifier, newCosigner, type CosignatureVerifier } from '../../src/note/cosignature.js';
import { ALG_COSIGNATURE_V1, generateKey } from '../../src/note/keys.js';
import { formatNote, newSigner, newVerifier, parseNote, signNote, type NoteSigner, type NoteVerifier } from '../../src/note/note.js';
import type { PostgresWitnessStore } from '../../src/storage/witness-store.js';
import { parsePolicy, type Policy } from '../../src/verify/policy.js';
import { Witness, type Alarm } from '../../src/witness/witness.js';
import type { WitnessStoreFactory, WitnessStoreHandle } from './witness-stores.js';

/** A log: a key named after its origin and a fixed list of leaves. */
export class TestLog {
  readonly skey: string;
  readonly vkey: string;
  readonly signer: NoteSigner;
  readonly verifier: NoteVerifier;
  readonly leaves: Uint8Array[];
  readonly reader: NodeReader;
  private readonly roots = new Map<number, Uint8Array>();

  constructor(
    readonly origin: string,
    size = 128,
    /** Distinguishes the leaves of two logs (or of a fork); the key is separate. */
    leafTag = origin,
    key?: { skey: string; vkey: string }
  ) {
    const k = key ?? generateKey(origin);
    this.skey = k.skey;
    this.vkey = k.vkey;
    this.signer = newSigner(k.skey);
    this.verifier = newVerifier(k.vkey);
    this.leaves = Array.from({ length: size }, (_, i) => leafHash(utf8(`${leafTag} entry ${i}`)));
    this.reader = memoryNodeReader(this.leaves);
  }

  /**
   * The same log key over a tree that agrees with this one on the first `at` leaves and
   * differs from there on: a fork, as a misbehaving log would present it.
   */
  fork(at: number, tag = 'fork'): TestLog {
    const f = new TestLog(this.origin, this.leaves.length, this.origin, { skey: this.skey, vkey: this.vkey });
    for (let i = at; i < f.leaves.length; i++) f.leaves[i] = leafHash(utf8(`${tag} ${this.origin} entry ${i}`));
    return f;
  }

  rootAt(n: number): Uint8Array {
    if (n === 0) return EMPTY_ROOT;
    let r = this.roots.get(n);
    if (!r) {
      r = rootHash(n, this.reader);
      this.roots.set(n, r);
    }
    return r;
  }

  /** The checkpoint body (note text) of size n. */
  text(n: number, root = this.rootAt(n), extensions: string[] = []): string {
    return formatCheckpoint({ origin: this.origin, treeSize: n, rootHash: root, extensions });
  }

  /** The checkpoint of size n signed by the log (and any extra signers after it). */
  note(n: number, opts: { root?: Uint8Array; extra?: NoteSigner[]; extensions?: string[] } = {}): string {
    return signNote(this.text(n, opts.root, opts.extensions), [this.signer, ...(opts.extra ?? [])]);
  }

  proof(oldSize: number, newSize: number): Uint8Array[] {
    return proveConsistency(oldSize, newSize, this.reader);
  }

  /** A well-formed add-checkpoint body from oldSize to n with the right proof. */
  request(oldSize: number, n: number, opts: { note?: string; proof?: Uint8Array[] } = {}): string {
    return formatAddCheckpoint({
      oldSize,
      proof: opts.proof ?? (oldSize === 0 ? [] : this.proof(oldSize, n)),
      checkpoint: opts.note ?? this.note(n),
    });
  }
}

/** A copy of `note` whose first signature has one bit flipped (same name and key ID). */
export function corruptFirstSignature(note: string): string {
  const n = parseNote(note);
  const sigs = n.signatures.map((s) => ({ ...s, signature: s.signature.slice() }));
  sigs[0]!.signature[10]! ^= 0x01;
  return formatNote(n.text, sigs);
}

/** An add-checkpoint body, with no check of its parts. */
export function rawRequest(oldSize: number | string, proof: Uint8Array[], note: string): string {
  let s = `old ${oldSize}\n`;
  for (const h of proof) s += Buffer.from(h).toString('base64') + '\n';
  return s + '\n' + note;
}

/** A 32-byte hash that is in no tree. */
export const junkHash = (tag: string): Uint8Array => leafHash(utf8(`junk ${tag}`));

/** Waits until `check` returns true (polling), failing after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (await check()) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function policyOf(logs: readonly TestLog[]): Policy {
  return parsePolicy(logs.map((l) => `log ${l.vkey}\n`).join('') + 'quorum none\n');
}

export const WITNESS_NAME = 'witness.test/w1';
export const ADMIN_TOKEN = 'admin-token-0123456789';

/** The witness key, one per test file (each test's witness uses it). */
export function witnessKey(name = WITNESS_NAME): { skey: string; vkey: string; verifier: CosignatureVerifier } {
  const k = generateKey(name, ALG_COSIGNATURE_V1);
  return { ...k, verifier: newCosignatureVerifier(k.vkey) };
}

export interface WitnessFixture {
  witness: Witness;
  app: ReturnType<typeof createWitnessApp>;
  metrics: Registry;
  alarms: Alarm[];
  store: PostgresWitnessStore;
  handle: WitnessStoreHandle;
  /** The pinned clock, in milliseconds; change it to move time. */
  clock: { ms: number };
  /** Closes the witness (and its store) and opens a new one on the same data and clock. */
  reopen(opts?: { restartEngine?: boolean; logs?: readonly TestLog[] }): Promise<void>;
  /** Closes the witness and drops its schema. */
  destroy(): Promise<void>;
}

/**
 * A Witness trusting `logs`, on a fresh store (schema) of `factory`, with its HTTP app.
 * On PGlite only one store may be open at a time: destroy() the fixture before the next.
 */
export async function startWitness(
  factory: WitnessStoreFactory,
  logs: readonly TestLog[],
  key: { skey: string },
  startMs = 1_700_000_000_000
): Promise<WitnessFixture> {
  const handle = await factory.create();
  const clock = { ms: startMs };
  const alarms: Alarm[] = [];
  let closed = false;
  const open = async (policyLogs: readonly TestLog[]) => {
    const store = await handle.open();
    const metrics = new Registry();
    const witness = await Witness.open({
      store,
      cosigner: newCosigner(key.skey),
      policy: policyOf(policyLogs),
      now: () => clock.ms,
      metrics,
      onAlarm: (a) => alarms.push(a),
    });
    const app = createWitnessApp({ witness, metrics, adminTokens: [ADMIN_TOKEN] });
    return { store, metrics, witness, app };
  };
  const f: WitnessFixture = {
    ...(await open(logs)),
    alarms,
    handle,
    clock,
    async reopen(opts = {}) {
      await f.witness.close();
      if (opts.restartEngine) await handle.restart();
      Object.assign(f, await open(opts.logs ?? logs));
    },
    async destroy() {
      if (closed) return;
      closed = true;
      await f.witness.close().catch(() => undefined);
      await handle.destroy();
    },
  };
  return f;
}
