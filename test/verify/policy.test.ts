import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatCheckpoint } from '../../src/core/checkpoint.js';
import { MalformedError, VerificationError } from '../../src/core/errors.js';
import { newCosigner } from '../../src/note/cosignature.js';
import { nobleEd25519, type Ed25519 } from '../../src/note/ed25519.js';
import { ALG_COSIGNATURE_V1, ALG_ED25519, generateKey, type KeyAlgorithm } from '../../src/note/keys.js';
import {
  InvalidSignatureError,
  newSigner,
  parseNote,
  signNote,
  UnverifiedNoteError,
  type NoteSignature,
} from '../../src/note/note.js';
import {
  describeQuorum,
  parsePolicy,
  policyLog,
  quorumMet,
  verifyCheckpoint,
  type Policy,
} from '../../src/verify/index.js';

const numRuns = Number(process.env['FC_NUM_RUNS'] ?? 100);

/** A key pair from a fixed seed, so that failures reproduce. */
function key(name: string, alg: KeyAlgorithm, seedByte: number): { skey: string; vkey: string } {
  return generateKey(name, alg, (n) => new Uint8Array(n).fill(seedByte));
}

const ORIGIN = 'example.com/log';
const LOG = key(ORIGIN, ALG_ED25519, 1);
const OTHER_LOG = key('example.com/other', ALG_ED25519, 2);
const WITNESS_NAMES = ['X1', 'X2', 'X3', 'Y1', 'Y2', 'Y3'] as const;
// Key names deliberately differ from the policy names.
const W = Object.fromEntries(
  WITNESS_NAMES.map((n, i) => [n, key(`witness${i}.example/${n.toLowerCase()}`, ALG_COSIGNATURE_V1, 10 + i)])
) as Record<(typeof WITNESS_NAMES)[number], { skey: string; vkey: string }>;
const STRANGER = key('stranger.example/w', ALG_COSIGNATURE_V1, 99);

/**
 * The c2sp.org/tlog-policy "Example policy", verbatim, with each `<vkey>` replaced in turn
 * by a real key: the log first, then X1…X3 and Y1…Y3.
 */
const SPEC_EXAMPLE = `log <vkey>

witness X1 <vkey>
witness X2 <vkey>
witness X3 <vkey>
group X-witnesses 2 X1 X2 X3

witness Y1 <vkey>
witness Y2 <vkey>
witness Y3 <vkey>
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
`;
const exampleKeys = [LOG.vkey, ...WITNESS_NAMES.map((n) => W[n].vkey)];
let nextKey = 0;
const EXAMPLE = SPEC_EXAMPLE.replace(/<vkey>/g, () => exampleKeys[nextKey++]!);

/** Expects `parsePolicy(text)` to throw a MalformedError whose message contains `msg`. */
function rejects(text: string, msg: string): void {
  let err: unknown;
  try {
    parsePolicy(text);
  } catch (e) {
    err = e;
  }
  expect(err, JSON.stringify(text)).toBeInstanceOf(MalformedError);
  expect((err as Error).message).toContain(msg);
}

describe('parsePolicy', () => {
  it('parses the spec example', () => {
    const p = parsePolicy(EXAMPLE);
    expect(p.logs).toHaveLength(1);
    expect(p.logs[0]!.origin).toBe(ORIGIN);
    expect(p.logs[0]!.vkey).toBe(LOG.vkey);
    expect(p.logs[0]!.verifier.name).toBe(ORIGIN);
    expect(p.logs[0]!.url).toBeUndefined();
    expect(p.witnesses.map((w) => w.name)).toEqual(WITNESS_NAMES);
    expect(p.witnesses.map((w) => w.vkey)).toEqual(WITNESS_NAMES.map((n) => W[n].vkey));
    expect(p.witnesses[0]!.verifier.name).toBe('witness0.example/x1');
    expect(p.groups).toEqual([
      { name: 'X-witnesses', threshold: 2, members: ['X1', 'X2', 'X3'] },
      { name: 'Y-witnesses', threshold: 1, members: ['Y1', 'Y2', 'Y3'] },
      { name: 'X-and-Y', threshold: 2, members: ['X-witnesses', 'Y-witnesses'] },
    ]);
    expect(p.quorum).toBe('X-and-Y');
  });

  it('returns a frozen policy', () => {
    const p = parsePolicy(EXAMPLE);
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.logs)).toBe(true);
    expect(Object.isFrozen(p.witnesses)).toBe(true);
    expect(Object.isFrozen(p.groups)).toBe(true);
    expect(Object.isFrozen(p.groups[0]!.members)).toBe(true);
  });

  it('reads the optional URLs, a "#" inside an item included', () => {
    const p = parsePolicy(
      `log ${LOG.vkey} https://log.example/api#x\nwitness X1 ${W.X1.vkey} https://w.example/\nquorum X1\n`
    );
    expect(p.logs[0]!.url).toBe('https://log.example/api#x');
    expect(p.witnesses[0]!.url).toBe('https://w.example/');
  });

  it('ignores comment lines, blank lines, and leading, trailing and repeated spaces and tabs', () => {
    const text = [
      '# a policy',
      '   # an indented comment',
      '\t#\ta tab-indented comment',
      '',
      ' \t ',
      `\tlog\t${LOG.vkey}   `,
      `witness \t X1\t\t${W.X1.vkey}\t`,
      `  witness X2 ${W.X2.vkey} \t `,
      'group\tG\t \tany X1\tX2',
      '#quorum none',
      '  quorum   G\t',
      '',
    ].join('\n');
    const p = parsePolicy(text);
    expect(p.logs.map((l) => l.origin)).toEqual([ORIGIN]);
    expect(p.witnesses.map((w) => w.name)).toEqual(['X1', 'X2']);
    expect(p.groups).toEqual([{ name: 'G', threshold: 1, members: ['X1', 'X2'] }]);
    expect(p.quorum).toBe('G');
  });

  it('reads "quorum none" as null, with or without logs and witnesses', () => {
    expect(parsePolicy('quorum none\n')).toEqual({ logs: [], witnesses: [], groups: [], quorum: null });
    const p = parsePolicy(`log ${LOG.vkey}\nwitness X1 ${W.X1.vkey}\nquorum none\n`);
    expect(p.quorum).toBeNull();
    expect(p.witnesses).toHaveLength(1);
  });

  it('accepts a single witness as the quorum', () => {
    expect(parsePolicy(`witness X1 ${W.X1.vkey}\nquorum X1\n`).quorum).toBe('X1');
  });

  it('accepts lines after the quorum line, in any order', () => {
    const p = parsePolicy(`witness X1 ${W.X1.vkey}\nquorum X1\nlog ${LOG.vkey}\nwitness X2 ${W.X2.vkey}\n`);
    expect(p.logs).toHaveLength(1);
    expect(p.witnesses).toHaveLength(2);
  });

  it('accepts a file without a quorum line only with quorumOptional', () => {
    const text = `log ${LOG.vkey}\nwitness X1 ${W.X1.vkey}\n`;
    rejects(text, 'policy: no quorum line');
    expect(parsePolicy(text, { quorumOptional: true }).quorum).toBeNull();
    expect(parsePolicy('', { quorumOptional: true }).logs).toEqual([]);
    // Still at most one.
    expect(() => parsePolicy('quorum none\nquorum none\n', { quorumOptional: true })).toThrow('second quorum line');
  });

  it('treats names as opaque: "K" and the Kelvin sign are different names', () => {
    const p = parsePolicy(`witness K ${W.X1.vkey}\nwitness \u212a ${W.X2.vkey}\ngroup \u00e9t\u00e9 all K \u212a\nquorum \u00e9t\u00e9\n`);
    expect(p.witnesses.map((w) => w.name)).toEqual(['K', '\u212a']);
    expect(p.quorum).toBe('\u00e9t\u00e9');
  });

  it('accepts "all" and "any" as names, and numeric names', () => {
    const p = parsePolicy(`witness all ${W.X1.vkey}\nwitness 2 ${W.X2.vkey}\ngroup any all all 2\nquorum any\n`);
    expect(p.groups).toEqual([{ name: 'any', threshold: 2, members: ['all', '2'] }]);
  });

  it('accepts two log keys for one origin (key rotation); policyLog returns the first', () => {
    const rotated = key(ORIGIN, ALG_ED25519, 3);
    const p = parsePolicy(`log ${LOG.vkey}\nlog ${rotated.vkey}\nlog ${OTHER_LOG.vkey}\nquorum none\n`);
    expect(p.logs.map((l) => l.origin)).toEqual([ORIGIN, ORIGIN, 'example.com/other']);
    expect(policyLog(p, ORIGIN)!.vkey).toBe(LOG.vkey);
    expect(policyLog(p, 'example.com/other')!.vkey).toBe(OTHER_LOG.vkey);
    expect(policyLog(p, 'example.com/nope')).toBeUndefined();
  });

  it('builds the verifiers with the given Ed25519 implementation', () => {
    let calls = 0;
    const counting: Ed25519 = {
      ...nobleEd25519,
      verify: (pub, msg, sig) => {
        calls++;
        return nobleEd25519.verify(pub, msg, sig);
      },
    };
    const p = parsePolicy(`log ${LOG.vkey}\nquorum none\n`, { ed25519: counting });
    const text = checkpointText();
    verifyCheckpoint(p, signNote(text, [newSigner(LOG.skey)]));
    expect(calls).toBe(1);
  });

  describe('rejects', () => {
    const log = `log ${LOG.vkey}\n`;
    const x1 = `witness X1 ${W.X1.vkey}\n`;
    const x2 = `witness X2 ${W.X2.vkey}\n`;

    it('unknown keywords, case included', () => {
      rejects('logs foo\nquorum none\n', 'policy line 1: unknown keyword "logs"');
      rejects('quorum none\nQuorum none\n', 'policy line 2: unknown keyword "Quorum"');
      rejects('\ufeffquorum none\n', 'policy line 1: unknown keyword "\ufeffquorum"');
      // "#" starts a comment only at the start of a line.
      rejects(`${x1}quorum X1 # the only witness\n`, 'policy line 2: expected "quorum <name>", got 5 items');
    });

    it('lines with too few or too many items', () => {
      rejects('log\nquorum none\n', 'policy line 1: expected "log <vkey> [<url>]", got 0 items');
      rejects(`log ${LOG.vkey} https://a https://b\nquorum none\n`, 'policy line 1: expected "log <vkey> [<url>]", got 3 items');
      rejects('witness\nquorum none\n', 'policy line 1: expected "witness <name> <vkey> [<url>]", got 0 items');
      rejects('witness X1\nquorum none\n', 'policy line 1: expected "witness <name> <vkey> [<url>]", got 1 items');
      rejects(`witness X1 ${W.X1.vkey} https://a extra\nquorum none\n`, 'got 4 items after "witness"');
      rejects(`${x1}group\nquorum none\n`, 'policy line 2: expected "group <name> all|any|<k> <member>...", got 0 items');
      rejects(`${x1}group G\nquorum none\n`, 'got 1 items after "group"');
      rejects(`${x1}group G any\nquorum none\n`, 'got 2 items after "group"');
      rejects('quorum\n', 'policy line 1: expected "quorum <name>", got 0 items');
      rejects(`${x1}${x2}quorum X1 X2\n`, 'policy line 3: expected "quorum <name>", got 2 items');
    });

    it('thresholds that are not all, any or a decimal 1 ≤ k ≤ n', () => {
      rejects(`${x1}${x2}group G 0 X1 X2\nquorum G\n`, 'policy line 3: group "G" threshold 0 is not between 1 and 2');
      rejects(`${x1}${x2}group G 3 X1 X2\nquorum G\n`, 'policy line 3: group "G" threshold 3 is not between 1 and 2');
      rejects(`${x1}group G 99999999999999999999999 X1\nquorum G\n`, 'is not between 1 and 1');
      for (const k of ['01', '-1', '+1', '1.0', '0x1', 'two', 'ALL', 'Any', '١']) {
        rejects(`${x1}group G ${k} X1\nquorum G\n`, `policy line 2: group "G" threshold ${JSON.stringify(k)} is not "all", "any" or a decimal number`);
      }
    });

    it('group members not defined on an earlier line, "none", or listed twice', () => {
      rejects(`${x1}group G all X1 Y\nquorum G\n`, 'policy line 2: group "G" member "Y" is not defined on an earlier line');
      rejects(`${x1}group G all X1 H\ngroup H any X1\nquorum G\n`, 'group "G" member "H" is not defined on an earlier line');
      rejects(`${x1}group G all X1 G\nquorum G\n`, 'group "G" member "G" is not defined on an earlier line');
      rejects(`${x1}group G any X1 none\nquorum G\n`, 'policy line 2: group "G" member "none" is not allowed');
      rejects(`${x1}${x2}group G any X1 X2 X1\nquorum G\n`, 'policy line 3: group "G" lists member "X1" twice');
      // Listing a witness in two different groups is fine.
      expect(() => parsePolicy(`${x1}${x2}group G any X1 X2\ngroup H all X1 G\nquorum H\n`)).not.toThrow();
    });

    it('duplicate names, across witnesses and groups, and the reserved name none', () => {
      rejects(`${x1}witness X1 ${W.X2.vkey}\nquorum none\n`, 'policy line 2: witness name "X1" is already defined on line 1');
      rejects(`${x1}group X1 any X1\nquorum none\n`, 'policy line 2: group name "X1" is already defined on line 1');
      rejects(`${x1}group G any X1\ngroup G all X1\nquorum none\n`, 'policy line 3: group name "G" is already defined on line 2');
      rejects(`${x1}group G any X1\nwitness G ${W.X2.vkey}\nquorum none\n`, 'policy line 3: witness name "G" is already defined on line 2');
      rejects(`witness none ${W.X1.vkey}\nquorum none\n`, 'policy line 1: witness name "none" is reserved');
      rejects(`${x1}group none any X1\nquorum none\n`, 'policy line 2: group name "none" is reserved');
    });

    it('duplicate public keys, even under another key name and id', () => {
      rejects(`${log}${log}quorum none\n`, 'policy line 2: log key "example.com/log+');
      rejects(`${log}${log}quorum none\n`, 'has the same public key as the log on line 1');
      const sameLogKey = key('example.com/renamed', ALG_ED25519, 1);
      rejects(`${log}log ${sameLogKey.vkey}\nquorum none\n`, 'has the same public key as the log on line 1');
      rejects(`${x1}witness X2 ${W.X1.vkey}\nquorum none\n`, 'policy line 2: witness "X2" key has the same public key as the witness on line 1');
      const sameWitnessKey = key('renamed.example/w', ALG_COSIGNATURE_V1, 10);
      rejects(`${x1}witness X2 ${sameWitnessKey.vkey}\nquorum none\n`, 'has the same public key as the witness on line 1');
    });

    it('a second quorum line, a missing one, and an undefined or later-defined quorum name', () => {
      rejects('quorum none\n\nquorum none\n', 'policy line 3: second quorum line (the first is line 1)');
      rejects(`${x1}quorum X1\nquorum none\n`, 'policy line 3: second quorum line (the first is line 2)');
      rejects(`${log}${x1}`, 'policy: no quorum line');
      rejects('', 'policy: no quorum line');
      rejects('# only a comment\n', 'policy: no quorum line');
      rejects(`${x1}quorum X2\n`, 'policy line 2: quorum "X2" is not defined on an earlier line');
      rejects(`quorum X1\n${x1}`, 'policy line 1: quorum "X1" is not defined on an earlier line');
      rejects(`${x1}quorum NONE\n`, 'quorum "NONE" is not defined');
    });

    it('vkeys that do not parse', () => {
      rejects('log example.com/log\nquorum none\n', 'policy line 1: log key: malformed verifier key: missing "+"');
      const wrongId = LOG.vkey.replace(/\+([0-9a-f]{8})\+/, (_, id: string) => `+${id === '00000000' ? '00000001' : '00000000'}+`);
      rejects(`log ${wrongId}\nquorum none\n`, 'policy line 1: log key: malformed verifier key: key id');
      rejects(`witness X1 ${W.X1.vkey.slice(0, -2)}\nquorum none\n`, 'policy line 1: witness "X1" key: malformed verifier key');
      let err: unknown;
      try {
        parsePolicy(`witness X1 nope\nquorum none\n`);
      } catch (e) {
        err = e;
      }
      expect((err as Error).cause).toBeInstanceOf(MalformedError);
    });

    it('keys of the wrong signature type for their role', () => {
      rejects(`log ${W.X1.vkey}\nquorum none\n`, 'policy line 1: log key "witness0.example/x1+');
      rejects(`log ${W.X1.vkey}\nquorum none\n`, 'is a type 0x04 cosignature key; logs need a type 0x01 Ed25519 note key');
      rejects(`${log}witness L ${LOG.vkey}\nquorum none\n`, 'policy line 2: witness "L" key "example.com/log+');
      rejects(`${log}witness L ${LOG.vkey}\nquorum none\n`, 'is a type 0x01 note key; witnesses need a type 0x04 cosignature/v1 key');
    });

    it('characters outside the allowed set, and an unterminated last line', () => {
      rejects(`${log}quorum none\r\n`, 'policy line 2: control character U+000d at column 12');
      rejects(`quorum none\n#\u0000\n`, 'policy line 2: control character U+0000 at column 2');
      rejects(`# \u007f\nquorum none\n`, 'policy line 1: control character U+007f');
      rejects(`quorum\u000bnone\n`, 'control character U+000b');
      rejects(`quorum\u000cnone\n`, 'control character U+000c');
      rejects(`# \ud800\nquorum none\n`, 'policy line 1: not valid Unicode (lone surrogate)');
      rejects('quorum none', 'policy line 1: does not end in a newline');
      rejects(`${log}quorum none\n# trailing`, 'policy line 3: does not end in a newline');
      // Non-ASCII is opaque and allowed, in comments as in names and URLs.
      expect(parsePolicy('# caf\u00e9 \u0085 \u{1f600}\nquorum none\n').quorum).toBeNull();
    });

    it('only with MalformedError, never a TypeError or RangeError, on mangled spec examples', () => {
      // Every single-character deletion of the example either parses or throws MalformedError.
      for (let i = 0; i < EXAMPLE.length; i += 7) {
        const mangled = EXAMPLE.slice(0, i) + EXAMPLE.slice(i + 1);
        try {
          parsePolicy(mangled);
        } catch (e) {
          expect(e, `deleting offset ${i}`).toBeInstanceOf(MalformedError);
        }
      }
    });
  });
});

describe('quorumMet', () => {
  const example = parsePolicy(EXAMPLE);

  it('follows the spec example: at least two X witnesses and at least one Y witness', () => {
    for (let mask = 0; mask < 64; mask++) {
      const cosigned = new Set<string>(WITNESS_NAMES.filter((_, i) => (mask & (1 << i)) !== 0));
      const xs = ['X1', 'X2', 'X3'].filter((n) => cosigned.has(n)).length;
      const ys = ['Y1', 'Y2', 'Y3'].filter((n) => cosigned.has(n)).length;
      expect(quorumMet(example, cosigned), [...cosigned].join(',')).toBe(xs >= 2 && ys >= 1);
    }
  });

  it('does not count group names, key names or unknown names as cosigners', () => {
    expect(quorumMet(example, new Set(['X-witnesses', 'Y-witnesses', 'X-and-Y']))).toBe(false);
    expect(quorumMet(example, new Set(['X1', 'X-witnesses', 'Y1']))).toBe(false);
    expect(quorumMet(example, new Set(['witness0.example/x1', 'witness1.example/x2', 'Y1']))).toBe(false);
    expect(quorumMet(example, new Set(['X1', 'X2', 'Y1', 'nobody']))).toBe(true);
  });

  it('is always met for quorum none, and met by the one witness for a witness quorum', () => {
    expect(quorumMet(parsePolicy(`${`witness X1 ${W.X1.vkey}\n`}quorum none\n`), new Set())).toBe(true);
    const single = parsePolicy(`witness X1 ${W.X1.vkey}\nwitness X2 ${W.X2.vkey}\nquorum X1\n`);
    expect(quorumMet(single, new Set())).toBe(false);
    expect(quorumMet(single, new Set(['X2']))).toBe(false);
    expect(quorumMet(single, new Set(['X1']))).toBe(true);
  });

  it('fails closed for hand-built policies with forward references or a zero threshold', () => {
    const forward: Policy = {
      logs: [],
      witnesses: [],
      groups: [
        { name: 'A', threshold: 1, members: ['B'] },
        { name: 'B', threshold: 0, members: [] },
      ],
      quorum: 'A',
    };
    expect(quorumMet(forward, new Set())).toBe(false);
  });

  /**
   * Random policies over the six witnesses: each group takes members among the names
   * defined before it, with a threshold in 1..n; the quorum is any name or none.
   */
  const policyArb = fc
    .record({
      witnesses: fc.integer({ min: 1, max: 6 }),
      groups: fc.array(fc.record({ picks: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), k: fc.nat() }), {
        maxLength: 6,
      }),
      quorum: fc.nat(),
    })
    .map(({ witnesses, groups, quorum }) => {
      const names: string[] = WITNESS_NAMES.slice(0, witnesses);
      const lines = names.map((n) => `witness ${n} ${W[n as keyof typeof W].vkey}`);
      groups.forEach(({ picks, k }, i) => {
        const members = [...new Set(picks.map((p) => names[p % names.length]!))];
        lines.push(`group G${i} ${1 + (k % members.length)} ${members.join(' ')}`);
        names.push(`G${i}`);
      });
      const q = quorum % (names.length + 1);
      lines.push(`quorum ${q === names.length ? 'none' : names[q]!}`);
      return parsePolicy(lines.join('\n') + '\n');
    });
  const subsetArb = fc.subarray([...WITNESS_NAMES]);

  /** The spec's definition, evaluated recursively from the quorum. */
  function reference(p: Policy, cosigned: ReadonlySet<string>): boolean {
    const met = (name: string): boolean => {
      const g = p.groups.find((x) => x.name === name);
      if (g === undefined) return cosigned.has(name) && p.witnesses.some((w) => w.name === name);
      return g.members.filter(met).length >= g.threshold;
    };
    return p.quorum === null || met(p.quorum);
  }

  it('agrees with a recursive evaluation of the spec definition', () => {
    fc.assert(
      fc.property(policyArb, subsetArb, (p, s) => {
        expect(quorumMet(p, new Set(s))).toBe(reference(p, new Set(s)));
      }),
      { numRuns }
    );
  });

  it('is monotone: adding cosigners never turns true into false', () => {
    fc.assert(
      fc.property(policyArb, subsetArb, subsetArb, (p, a, b) => {
        const small = new Set(a);
        const large = new Set([...a, ...b]);
        if (quorumMet(p, small)) expect(quorumMet(p, large)).toBe(true);
      }),
      { numRuns }
    );
  });

  it('is met by all witnesses together', () => {
    fc.assert(
      fc.property(policyArb, (p) => {
        expect(quorumMet(p, new Set(WITNESS_NAMES))).toBe(true);
      }),
      { numRuns }
    );
  });
});

describe('describeQuorum', () => {
  it('lists the quorum group first, then the groups it needs', () => {
    expect(describeQuorum(parsePolicy(EXAMPLE))).toBe(
      'X-and-Y = all of (X-witnesses, Y-witnesses); X-witnesses = 2 of (X1, X2, X3); Y-witnesses = any of (Y1, Y2, Y3)'
    );
  });

  it('names each shared group once, and describes none and single-witness quorums', () => {
    const p = parsePolicy(
      `witness X1 ${W.X1.vkey}\nwitness X2 ${W.X2.vkey}\ngroup A any X1 X2\ngroup B all A X1\ngroup C 1 A B\nquorum C\n`
    );
    expect(describeQuorum(p)).toBe('C = any of (A, B); A = any of (X1, X2); B = all of (A, X1)');
    expect(describeQuorum(parsePolicy('quorum none\n'))).toBe('no cosignature (quorum none)');
    expect(describeQuorum(parsePolicy(`witness X1 ${W.X1.vkey}\nquorum X1\n`))).toBe('a cosignature by X1');
  });
});

/** A checkpoint body for `origin`. */
function checkpointText(origin = ORIGIN, treeSize = 5): string {
  return formatCheckpoint({ origin, treeSize, rootHash: new Uint8Array(32).fill(7), extensions: [] });
}

/** Cosignatures of `text` by the named witnesses, timestamped 1000 + their index. */
function cosign(text: string, names: readonly (keyof typeof W)[]): NoteSignature[] {
  return names.map((n) => newCosigner(W[n].skey).cosign(text, 1000 + WITNESS_NAMES.indexOf(n)));
}

/** `text` signed by the log and cosigned by `names`. */
function cosigned(names: readonly (keyof typeof W)[], text = checkpointText()): string {
  return signNote(text, [newSigner(LOG.skey)], cosign(text, names));
}

describe('verifyCheckpoint', () => {
  const policy = parsePolicy(EXAMPLE);

  it('accepts a checkpoint signed by the log and cosigned to quorum', () => {
    const text = checkpointText();
    const v = verifyCheckpoint(policy, cosigned(['Y3', 'X1', 'X3'], text));
    expect(v.text).toBe(text);
    expect(v.checkpoint.origin).toBe(ORIGIN);
    expect(v.checkpoint.treeSize).toBe(5);
    expect(v.log).toBe(policy.logs[0]);
    // Policy names (not key names), in policy order.
    expect([...v.cosigned]).toEqual(['X1', 'X3', 'Y3']);
    expect([...v.timestamps]).toEqual([
      ['X1', 1000],
      ['X3', 1002],
      ['Y3', 1005],
    ]);
  });

  it('ignores signatures by unknown keys', () => {
    const text = checkpointText();
    const strangers = [
      newCosigner(STRANGER.skey).cosign(text, 5),
      // An unknown key whose name is a witness's key name, and one named like the origin.
      newCosigner(key('witness0.example/x1', ALG_COSIGNATURE_V1, 77).skey).cosign(text, 6),
      parseNote(signNote(text, [newSigner(key(ORIGIN, ALG_ED25519, 78).skey)])).signatures[0]!,
      // Garbage by an unknown key.
      { name: 'junk.example', keyId: 1, signature: new Uint8Array(72) },
    ];
    const note = signNote(text, [newSigner(LOG.skey)], [...strangers, ...cosign(text, ['X1', 'X2', 'Y1'])]);
    const v = verifyCheckpoint(policy, note);
    expect([...v.cosigned]).toEqual(['X1', 'X2', 'Y1']);
  });

  it('rejects the whole note when a known witness cosignature does not verify, quorum or not', () => {
    const text = checkpointText();
    const otherText = checkpointText(ORIGIN, 6);
    const note = signNote(text, [newSigner(LOG.skey)], [...cosign(text, ['X1', 'X2', 'Y1']), ...cosign(otherText, ['Y2'])]);
    expect(() => verifyCheckpoint(policy, note)).toThrow(InvalidSignatureError);
    expect(() => verifyCheckpoint(policy, note)).toThrow('invalid signature by known key witness4.example/y2+');
    expect(() => verifyCheckpoint(policy, note, { requireQuorum: false })).toThrow(InvalidSignatureError);
  });

  it('rejects the note when the log signature does not verify', () => {
    const text = checkpointText();
    const forged = signNote(checkpointText(ORIGIN, 6), [newSigner(LOG.skey)]);
    const logSig = parseNote(forged).signatures[0]!;
    const note = signNote(text, [], [logSig, ...cosign(text, ['X1', 'X2', 'Y1'])]);
    expect(() => verifyCheckpoint(policy, note)).toThrow(InvalidSignatureError);
  });

  it('says who cosigned and what the policy needs when the quorum is not met', () => {
    const msg =
      'witness quorum not met: cosigned by X1, Y1, Y2; policy needs X-and-Y = all of (X-witnesses, Y-witnesses); ' +
      'X-witnesses = 2 of (X1, X2, X3); Y-witnesses = any of (Y1, Y2, Y3)';
    const note = cosigned(['Y2', 'X1', 'Y1']);
    let err: unknown;
    try {
      verifyCheckpoint(policy, note);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VerificationError);
    expect((err as Error).message).toBe(msg);
    expect(() => verifyCheckpoint(policy, cosigned([]))).toThrow('witness quorum not met: cosigned by no witness; policy needs');
  });

  it('returns a checkpoint short of quorum with requireQuorum: false', () => {
    const v = verifyCheckpoint(policy, cosigned(['X2']), { requireQuorum: false });
    expect([...v.cosigned]).toEqual(['X2']);
    expect(v.timestamps.get('X2')).toBe(1001);
    expect(verifyCheckpoint(policy, cosigned([]), { requireQuorum: false }).cosigned.size).toBe(0);
  });

  it('accepts a log-signed checkpoint under quorum none', () => {
    const p = parsePolicy(`log ${LOG.vkey}\nquorum none\n`);
    const v = verifyCheckpoint(p, cosigned([]));
    expect(v.log.origin).toBe(ORIGIN);
    expect(v.cosigned.size).toBe(0);
  });

  it('rejects an origin that is not a log in the policy, before looking at signatures', () => {
    const text = checkpointText('example.com/other');
    expect(() => verifyCheckpoint(policy, signNote(text, [newSigner(OTHER_LOG.skey)]))).toThrow(
      'origin "example.com/other" is not a log in the policy'
    );
    // The log's key signing a checkpoint whose origin is not its key name does not help.
    const byLogKey = signNote(text, [newSigner(LOG.skey)], cosign(text, ['X1', 'X2', 'Y1']));
    expect(() => verifyCheckpoint(policy, byLogKey)).toThrow(VerificationError);
    expect(() => verifyCheckpoint(policy, byLogKey)).toThrow('is not a log in the policy');
  });

  it('requires a signature by a key of the log for the origin, not by another policy log', () => {
    const p = parsePolicy(`log ${LOG.vkey}\nlog ${OTHER_LOG.vkey}\nquorum none\n`);
    const text = checkpointText();
    expect(() => verifyCheckpoint(p, signNote(text, [newSigner(OTHER_LOG.skey)]))).toThrow(
      'checkpoint is not signed by a policy key for log "example.com/log"'
    );
    // Witness cosignatures alone are not enough either.
    expect(() => verifyCheckpoint(policy, signNote(text, [], cosign(text, ['X1', 'X2', 'Y1'])))).toThrow(
      'checkpoint is not signed by a policy key for log "example.com/log"'
    );
    // And with no known signature at all, the note does not open.
    expect(() => verifyCheckpoint(policy, signNote(text, [newSigner(key(ORIGIN, ALG_ED25519, 79).skey)]))).toThrow(
      UnverifiedNoteError
    );
  });

  it('accepts either of two keys listed for the same origin', () => {
    const rotated = key(ORIGIN, ALG_ED25519, 3);
    const p = parsePolicy(`log ${LOG.vkey}\nlog ${rotated.vkey}\nquorum none\n`);
    const v = verifyCheckpoint(p, signNote(checkpointText(), [newSigner(rotated.skey)]));
    expect(v.log).toBe(p.logs[1]);
  });

  it('rejects malformed notes and checkpoint bodies with MalformedError', () => {
    expect(() => verifyCheckpoint(policy, 'not a note')).toThrow(MalformedError);
    const badBody = signNote(`${ORIGIN}\n5\nnot base64\n`, [newSigner(LOG.skey)]);
    expect(() => verifyCheckpoint(policy, badBody)).toThrow(MalformedError);
  });
});
