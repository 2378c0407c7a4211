/**
 * @module
 * Transparency log trust policies (c2sp.org/tlog-policy): parsing a policy file, deciding
 * whether a set of witness cosignatures meets its quorum, and verifying a cosigned
 * checkpoint against it.
 *
 * A policy file is line based. Items are separated by runs of spaces and tabs (and only
 * those); blank lines and lines whose first non-blank character is `#` are ignored:
 *
 * ```
 * log <vkey> [<url>]
 * witness <name> <vkey> [<url>]
 * group <name> all|any|<k> <member>...
 * quorum <name>|none
 * ```
 *
 * A log's origin is its vkey's key name. Witnesses and groups share one namespace, in which
 * `none` is predefined. Pure: no Node built-ins.
 */
import { parseCheckpoint, type Checkpoint } from '../core/checkpoint.js';
import { quote, toHex } from '../core/encoding.js';
import { MalformedError, VerificationError } from '../core/errors.js';
import { newCosignatureVerifier, type CosignatureVerifier } from '../note/cosignature.js';
import { nobleEd25519, type Ed25519 } from '../note/ed25519.js';
import {
  ALG_COSIGNATURE_V1,
  ALG_ED25519,
  formatKeyId,
  parseVerifierKey,
  type VerifierKey,
} from '../note/keys.js';
import { newVerifier, openNote, parseNote, type NoteVerifier } from '../note/note.js';

/** A log the policy accepts checkpoints from. */
export interface PolicyLog {
  /** The log's origin: by c2sp.org/tlog-policy, the key name of its vkey. */
  readonly origin: string;
  /** The verifier key as written in the policy. */
  readonly vkey: string;
  /** Checks the log's type 0x01 Ed25519 note signatures. */
  readonly verifier: NoteVerifier;
  readonly url?: string;
}

/** A witness whose cosignatures count towards the quorum. */
export interface PolicyWitness {
  /** The witness's name in the policy (not necessarily its key name). */
  readonly name: string;
  /** The verifier key as written in the policy. */
  readonly vkey: string;
  /** Checks the witness's type 0x04 cosignature/v1 signatures; `verifier.name` is the key name. */
  readonly verifier: CosignatureVerifier;
  readonly url?: string;
}

/** A k-of-n group of witnesses and earlier groups. */
export interface PolicyGroup {
  readonly name: string;
  /** k: `all` is stored as `members.length`, `any` as 1. Always 1 ≤ k ≤ n. */
  readonly threshold: number;
  /** Names of witnesses and groups defined before this group; no repeats, never `none`. */
  readonly members: readonly string[];
}

/** A parsed policy. Groups are in file order, so every member precedes the group using it. */
export interface Policy {
  readonly logs: readonly PolicyLog[];
  readonly witnesses: readonly PolicyWitness[];
  readonly groups: readonly PolicyGroup[];
  /** The quorum component name, or null for `quorum none`. */
  readonly quorum: string | null;
}

export interface ParsePolicyOptions {
  /**
   * Accept a file without a quorum line (quorum = null). Default false: exactly one quorum
   * line is required, per spec.
   */
  readonly quorumOptional?: boolean;
  /** Ed25519 implementation for the verifiers (default nobleEd25519). */
  readonly ed25519?: Ed25519;
}

/** The predefined name that, as the quorum, requires no cosignature at all. */
export const QUORUM_NONE = 'none';

// c2sp.org/tlog-policy "Character set": the only allowed octets are 0x09 (tab), 0x0A
// (newline), 0x20–0x7E and 0x80–0xFF. In a JavaScript string every code point from U+0080
// up is made of high-bit octets in UTF-8, so only the other C0 controls and DEL are refused.
const BAD_CHAR = /[\u0000-\u0008\u000b-\u001f\u007f]/;
// A lone surrogate has no octet encoding at all.
const LONE_SURROGATE = /\p{Surrogate}/u;
// c2sp.org/tlog-policy: "whitespace" means sequences of ASCII space and tab characters only.
const WHITESPACE = /[ \t]+/;
const DECIMAL = /^(0|[1-9][0-9]*)$/;

/** Map key for a (key name, key ID) pair; unambiguous because key names have no spaces. */
function pairKey(name: string, id: number): string {
  return `${name} ${id}`;
}

/** `name+hex id` of a parsed key, quoted for messages. */
function keyLabel(k: { name: string; keyId: number }): string {
  return quote(`${k.name}+${formatKeyId(k.keyId)}`);
}

/**
 * Parses a c2sp.org/tlog-policy file strictly.
 *
 * Pass the file's contents decoded as UTF-8. Names are compared as exact strings (the spec's
 * opaque octet strings: no Unicode normalization). Every line, the last one included, must
 * end in `\n`; a `\r` is a disallowed control character, so CRLF files are refused. `#`
 * starts a comment only as the first non-blank character of a line; elsewhere it is an
 * ordinary character (URLs may contain it).
 *
 * Rejected, with the line number in the message:
 * - a character outside the allowed set, or an unterminated last line;
 * - an unknown keyword, or a line with too few or too many items;
 * - a vkey that does not parse; a log key that is not type 0x01 (Ed25519) or a witness key
 *   that is not type 0x04 (cosignature/v1), the two types this implementation verifies;
 * - two logs, or two witnesses, with the same public key (even under other key names);
 * - two keys with the same (key name, key ID), which would make signatures ambiguous;
 * - a witness or group name that is `none` or already defined;
 * - a group threshold that is not `all`, `any` or a decimal k with 1 ≤ k ≤ n, a member that
 *   is not defined on an earlier line, is `none`, or is listed twice;
 * - a second quorum line, a quorum name not defined on an earlier line, and (unless
 *   `quorumOptional`) a file without a quorum line.
 *
 * Lines after the quorum line are allowed. Duplicate log origins under different keys are
 * allowed too (key rotation); {@link policyLog} returns the first.
 *
 * @example
 * ```ts
 * const policy = parsePolicy(`log ${logVkey}\nwitness w1 ${w1Vkey}\nquorum w1\n`);
 * ```
 * @throws {MalformedError} On any deviation; the message names the line.
 */
export function parsePolicy(text: string, opts: ParsePolicyOptions = {}): Policy {
  if (typeof text !== 'string') throw new TypeError('policy must be a string');
  const ed25519 = opts.ed25519 ?? nobleEd25519;

  const logs: PolicyLog[] = [];
  const witnesses: PolicyWitness[] = [];
  const groups: PolicyGroup[] = [];
  let quorum: string | null = null;
  let quorumLine: number | undefined;

  // Line of definition of every witness and group name; `none` is predefined.
  const names = new Map<string, number>();
  // Line of every log and witness public key (hex), per kind, for the duplicate-key rules.
  const logKeys = new Map<string, number>();
  const witnessKeys = new Map<string, number>();
  // Line of every (key name, key ID) pair, so that openNote never sees two verifiers for one.
  const pairs = new Map<string, number>();

  const lines = text.split('\n');
  // c2sp.org/tlog-policy: "each line is terminated by ASCII newline". After the split, a
  // terminated last line leaves an empty string behind.
  const unterminated = lines.pop();
  if (unterminated !== undefined && unterminated !== '') {
    throw new MalformedError(`policy line ${lines.length + 1}: does not end in a newline`);
  }

  for (const [i, line] of lines.entries()) {
    const n = i + 1;
    const fail = (msg: string, cause?: unknown): MalformedError =>
      new MalformedError(`policy line ${n}: ${msg}`, cause === undefined ? undefined : { cause });

    const bad = BAD_CHAR.exec(line);
    if (bad !== null) {
      const code = bad[0].charCodeAt(0).toString(16).padStart(4, '0');
      throw fail(`control character U+${code} at column ${bad.index + 1}`);
    }
    if (LONE_SURROGATE.test(line)) throw fail('not valid Unicode (lone surrogate)');

    // Leading and trailing blanks give empty first and last items; drop them.
    const fields = line.split(WHITESPACE).filter((f) => f !== '');
    const [keyword, ...args] = fields;
    // Empty lines, and comment lines: "#", possibly preceded by whitespace.
    if (keyword === undefined || keyword.startsWith('#')) continue;

    /** Parses a vkey of the given type; `what` names it in messages. */
    const parseKey = (vkey: string, what: string, alg: number): VerifierKey => {
      let k: VerifierKey;
      try {
        k = parseVerifierKey(vkey);
      } catch (cause) {
        throw fail(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause);
      }
      if (k.alg !== alg) {
        // c2sp.org/tlog-policy: log and witness keys "must use a signature type appropriate
        // [to their] respective function" (tlog-checkpoint, tlog-cosignature).
        throw fail(
          alg === ALG_ED25519
            ? `${what} ${keyLabel(k)} is a type 0x04 cosignature key; logs need a type 0x01 Ed25519 note key`
            : `${what} ${keyLabel(k)} is a type 0x01 note key; witnesses need a type 0x04 cosignature/v1 key`
        );
      }
      return k;
    };

    /** Claims a key's (key name, key ID) pair for this line; `what` names it in messages. */
    const claimPair = (k: VerifierKey, what: string): void => {
      const pair = pairKey(k.name, k.keyId);
      const first = pairs.get(pair);
      if (first !== undefined) {
        throw fail(`${what} ${keyLabel(k)} has the same key name and key id as the key on line ${first}`);
      }
      pairs.set(pair, n);
    };

    /** Registers a new witness or group name. */
    const define = (name: string, kind: string): void => {
      // c2sp.org/tlog-policy: witnesses and groups share a single namespace, in which the
      // special name `none` is predefined.
      if (name === QUORUM_NONE) throw fail(`${kind} name "none" is reserved`);
      const first = names.get(name);
      if (first !== undefined) {
        throw fail(`${kind} name ${quote(name)} is already defined on line ${first}`);
      }
      names.set(name, n);
    };

    switch (keyword) {
      case 'log': {
        // log <vkey> [<url>]
        const [vkey, url] = args;
        if (vkey === undefined || args.length > 2) {
          throw fail(`expected "log <vkey> [<url>]", got ${args.length} items after "log"`);
        }
        const k = parseKey(vkey, 'log key', ALG_ED25519);
        // "Duplicate logs, i.e., multiple log lines with the same public key, are not
        // allowed", even under a different key name and key ID.
        const pub = toHex(k.publicKey);
        const first = logKeys.get(pub);
        if (first !== undefined) {
          throw fail(`log key ${keyLabel(k)} has the same public key as the log on line ${first}`);
        }
        logKeys.set(pub, n);
        claimPair(k, 'log key');
        // "The log's vkey includes a key name. This name MUST correspond to the log's
        // origin line."
        logs.push({
          origin: k.name,
          vkey,
          verifier: newVerifier(vkey, ed25519),
          ...(url === undefined ? {} : { url }),
        });
        break;
      }

      case 'witness': {
        // witness <name> <vkey> [<url>]
        const [name, vkey, url] = args;
        if (name === undefined || vkey === undefined || args.length > 3) {
          throw fail(`expected "witness <name> <vkey> [<url>]", got ${args.length} items after "witness"`);
        }
        define(name, 'witness');
        const k = parseKey(vkey, `witness ${quote(name)} key`, ALG_COSIGNATURE_V1);
        const pub = toHex(k.publicKey);
        const first = witnessKeys.get(pub);
        if (first !== undefined) {
          throw fail(`witness ${quote(name)} key has the same public key as the witness on line ${first}`);
        }
        witnessKeys.set(pub, n);
        claimPair(k, `witness ${quote(name)} key`);
        witnesses.push({
          name,
          vkey,
          verifier: newCosignatureVerifier(vkey, ed25519),
          ...(url === undefined ? {} : { url }),
        });
        break;
      }

      case 'group': {
        // group <name> all|any|<k> <name>...
        const [name, k, ...members] = args;
        if (name === undefined || k === undefined || members.length === 0) {
          throw fail(
            `expected "group <name> all|any|<k> <member>...", got ${args.length} items after "group"`
          );
        }
        define(name, 'group');
        // "At least one member must be listed (i.e., n >= 1). The `any` variant is a
        // shorthand for k = 1, and the `all` variant is a shorthand for k = n. If k is given
        // numerically, it must be written in decimal, and it is required that 1 <= k <= n."
        let threshold: number;
        if (k === 'all') threshold = members.length;
        else if (k === 'any') threshold = 1;
        else if (DECIMAL.test(k)) threshold = Number(k);
        else throw fail(`group ${quote(name)} threshold ${quote(k)} is not "all", "any" or a decimal number`);
        if (threshold < 1 || threshold > members.length) {
          throw fail(
            `group ${quote(name)} threshold ${k} is not between 1 and ${members.length}, the number of members`
          );
        }
        const seen = new Set<string>();
        for (const m of members) {
          // "The special name `none` ... is invalid as a group member."
          if (m === QUORUM_NONE) throw fail(`group ${quote(name)} member "none" is not allowed`);
          // "Each defined name can be listed as a group member at most once."
          if (seen.has(m)) throw fail(`group ${quote(name)} lists member ${quote(m)} twice`);
          seen.add(m);
          // "A group definition can only refer to names defined on preceding lines. (This
          // also rules out circular group definitions)."
          if (!names.has(m) || m === name) {
            throw fail(`group ${quote(name)} member ${quote(m)} is not defined on an earlier line`);
          }
        }
        groups.push({ name, threshold, members: Object.freeze(members) });
        break;
      }

      case 'quorum': {
        // quorum <name>
        const [name] = args;
        if (name === undefined || args.length > 1) {
          throw fail(`expected "quorum <name>", got ${args.length} items after "quorum"`);
        }
        // "A policy file must include exactly one quorum line."
        if (quorumLine !== undefined) throw fail(`second quorum line (the first is line ${quorumLine})`);
        if (name !== QUORUM_NONE && !names.has(name)) {
          throw fail(`quorum ${quote(name)} is not defined on an earlier line`);
        }
        quorumLine = n;
        quorum = name === QUORUM_NONE ? null : name;
        break;
      }

      default:
        throw fail(`unknown keyword ${quote(keyword)}`);
    }
  }

  if (quorumLine === undefined && opts.quorumOptional !== true) {
    throw new MalformedError('policy: no quorum line (use "quorum none" to require no cosignatures)');
  }
  return Object.freeze({
    logs: Object.freeze(logs),
    witnesses: Object.freeze(witnesses),
    groups: Object.freeze(groups),
    quorum,
  });
}

/**
 * Whether the named witnesses (PolicyWitness.name values whose cosignature verified) satisfy
 * the policy's quorum. `quorum none` is always satisfied.
 *
 * A witness is satisfied if its name is in `cosigned`; a group if at least `threshold` of its
 * members are (c2sp.org/tlog-policy). Group names in `cosigned` count for nothing. Groups
 * are evaluated once each, in order, so the cost is linear in the size of the policy even
 * when groups share members. A hand-built policy whose groups reference later groups, or
 * whose thresholds are below 1, fails closed for those groups.
 */
export function quorumMet(policy: Policy, cosigned: ReadonlySet<string>): boolean {
  if (policy.quorum === null) return true;
  const met = new Set<string>();
  for (const w of policy.witnesses) if (cosigned.has(w.name)) met.add(w.name);
  for (const g of policy.groups) {
    let count = 0;
    for (const m of g.members) if (met.has(m)) count++;
    if (g.threshold >= 1 && count >= g.threshold) met.add(g.name);
  }
  return met.has(policy.quorum);
}

/**
 * Describes the policy's quorum for messages, e.g.
 * `X-and-Y = all of (X-witnesses, Y-witnesses); X-witnesses = 2 of (X1, X2, X3); …`:
 * the quorum group first, then every group it depends on, each once.
 */
export function describeQuorum(policy: Policy): string {
  const q = policy.quorum;
  if (q === null) return 'no cosignature (quorum none)';
  const byName = new Map(policy.groups.map((g) => [g.name, g]));
  const top = byName.get(q);
  if (top === undefined) return `a cosignature by ${q}`;
  // Breadth-first from the quorum: outermost group first, siblings in member order, and each
  // group once even if several groups share it.
  const order = [top];
  const seen = new Set([q]);
  for (let i = 0; i < order.length; i++) {
    for (const m of order[i]!.members) {
      const sub = byName.get(m);
      if (sub !== undefined && !seen.has(m)) {
        seen.add(m);
        order.push(sub);
      }
    }
  }
  return order
    .map((g) => {
      const k = g.threshold === g.members.length ? 'all' : g.threshold === 1 ? 'any' : String(g.threshold);
      return `${g.name} = ${k} of (${g.members.join(', ')})`;
    })
    .join('; ');
}

/** The log entry for an origin, or undefined. The first one if several keys share it. */
export function policyLog(policy: Policy, origin: string): PolicyLog | undefined {
  return policy.logs.find((l) => l.origin === origin);
}

/** A checkpoint that {@link verifyCheckpoint} accepted. */
export interface VerifiedCheckpoint {
  readonly checkpoint: Checkpoint;
  /** The policy log whose signature verified. */
  readonly log: PolicyLog;
  /** The checkpoint note text (without signatures). */
  readonly text: string;
  /** Witness names (policy names) whose cosignature verified, in policy order. */
  readonly cosigned: ReadonlySet<string>;
  /** Cosignature timestamp (POSIX seconds) per witness name in `cosigned`. */
  readonly timestamps: ReadonlyMap<string, number>;
}

/**
 * Verifies a checkpoint note against the policy.
 *
 * 1. Parses the note and its checkpoint body, and finds the policy logs for its origin.
 * 2. Opens the note with the verifiers of every log and witness in the policy: a signature
 *    line whose (key name, key ID) is one of those keys MUST verify, or the whole note is
 *    rejected; signatures by unknown keys are ignored (c2sp.org/signed-note).
 * 3. Requires a verified signature by a log key for the checkpoint's origin, and collects
 *    the witnesses whose cosignature verified.
 * 4. Unless `opts.requireQuorum === false`, requires {@link quorumMet}.
 *
 * Cosignature timestamps are returned, not judged: freshness is the caller's policy.
 *
 * @throws {TooLargeError} {@link MalformedError} If the note or checkpoint does not parse.
 * @throws {VerificationError} If the origin is not a policy log, a known key's signature is
 *   invalid (`InvalidSignatureError`), no known key signed (`UnverifiedNoteError`), the log
 *   did not sign, or the quorum is not met.
 */
export function verifyCheckpoint(
  policy: Policy,
  note: string,
  opts: { requireQuorum?: boolean } = {}
): VerifiedCheckpoint {
  // attacker-controlled: the whole note. Parse it first, only to learn the origin.
  const checkpoint = parseCheckpoint(parseNote(note).text);
  if (policyLog(policy, checkpoint.origin) === undefined) {
    throw new VerificationError(`origin ${quote(checkpoint.origin)} is not a log in the policy`);
  }

  // Map signature lines back to policy entries by (key name, key ID), which parsePolicy
  // keeps unique across all keys. A witness's key name may differ from its policy name.
  const logByKey = new Map<string, PolicyLog>();
  for (const l of policy.logs) logByKey.set(pairKey(l.verifier.name, l.verifier.keyId), l);
  const witnessByKey = new Map<string, PolicyWitness>();
  for (const w of policy.witnesses) witnessByKey.set(pairKey(w.verifier.name, w.verifier.keyId), w);

  const opened = openNote(note, [
    ...policy.logs.map((l) => l.verifier),
    ...policy.witnesses.map((w) => w.verifier),
  ]);

  let log: PolicyLog | undefined;
  const timestampOf = new Map<string, number>();
  for (const sig of opened.verified) {
    const key = pairKey(sig.name, sig.keyId);
    const l = logByKey.get(key);
    // A valid signature by another log's key is harmless, but does not count.
    if (l !== undefined && log === undefined && l.origin === checkpoint.origin) log = l;
    const w = witnessByKey.get(key);
    if (w !== undefined) timestampOf.set(w.name, w.verifier.timestampOf(sig.signature));
  }
  if (log === undefined) {
    throw new VerificationError(
      `checkpoint is not signed by a policy key for log ${quote(checkpoint.origin)}`
    );
  }

  const cosigned = new Set<string>();
  const timestamps = new Map<string, number>();
  for (const w of policy.witnesses) {
    const t = timestampOf.get(w.name);
    if (t === undefined) continue;
    cosigned.add(w.name);
    timestamps.set(w.name, t);
  }

  if (opts.requireQuorum !== false && !quorumMet(policy, cosigned)) {
    const by = cosigned.size === 0 ? 'no witness' : [...cosigned].join(', ');
    throw new VerificationError(
      `witness quorum not met: cosigned by ${by}; policy needs ${describeQuorum(policy)}`
    );
  }
  return { checkpoint, log, text: opened.text, cosigned, timestamps };
}
