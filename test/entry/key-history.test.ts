import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { VerificationError } from '../../src/core/errors.js';
import { formatVerifierKey, generateKey, parseVerifierKey } from '../../src/note/keys.js';
import { KeyHistory, type AgentRegisterEntry, type AgentRevokeEntry, type AgentRotateEntry, type Entry } from '../../src/entry/index.js';
import { AGENTS, KEYS, numRuns } from './helpers.js';

const A = AGENTS[0];
const B = AGENTS[1];
const k = (agent: string, i: number) => KEYS[agent]![i]!.vkey;

const reg = (agent: string, key: string): Entry => ({ type: 'agent.register', agent, key, time: 0 });
const rot = (agent: string, key: string): Entry => ({ type: 'agent.rotate', agent, key, time: 0 });
const rev = (agent: string, key: string): Entry => ({ type: 'agent.revoke', agent, key, reason: 'r', time: 0 });
const ev = (agent: string): Entry => ({ type: 'event', agent, run: 'r', seq: 0, kind: 'decision', time: 0 });

describe('KeyHistory', () => {
  it('tracks register, rotate and revoke with half-open periods', () => {
    const h = new KeyHistory();
    h.apply(2, reg(A, k(A, 0)));
    h.apply(5, ev(A));
    h.apply(7, rot(A, k(A, 1)));
    h.apply(9, rev(A, k(A, 1)));
    h.apply(12, rot(A, k(A, 2)));
    expect(h.keyAt(A, 2)).toBeNull();
    expect(h.keyAt(A, 3)?.vkey).toBe(k(A, 0));
    expect(h.keyAt(A, 7)?.vkey).toBe(k(A, 0));
    expect(h.keyAt(A, 8)?.vkey).toBe(k(A, 1));
    expect(h.keyAt(A, 9)?.vkey).toBe(k(A, 1));
    expect(h.keyAt(A, 10)).toBeNull();
    expect(h.keyAt(A, 12)).toBeNull();
    expect(h.keyAt(A, 13)?.vkey).toBe(k(A, 2));
    expect(h.keyAt(A, 1e15)?.vkey).toBe(k(A, 2));
    expect(h.keyAt(B, 100)).toBeNull();
    expect(h.current(A)?.vkey).toBe(k(A, 2));
    expect(h.agents()).toEqual([A]);
    const p = h.periods(A);
    expect(p.map((x) => [x.from, x.until, x.endedBy])).toEqual([
      [2, 7, 'rotated'],
      [7, 9, 'revoked'],
      [12, null, null],
    ]);
    const v = parseVerifierKey(k(A, 0));
    expect(p[0]).toMatchObject({ agent: A, vkey: k(A, 0), keyId: v.keyId, publicKey: v.publicKey });
  });

  it('refuses invalid transitions with a VerificationError and changes nothing', () => {
    const h = new KeyHistory();
    const refuse = (i: number, e: Entry, re: RegExp) => {
      expect(() => h.apply(i, e)).toThrow(VerificationError);
      expect(() => h.apply(i + 1, e)).toThrow(re);
    };
    refuse(0, rot(A, k(A, 0)), /unknown agent/);
    refuse(2, rev(A, k(A, 0)), /unknown agent/);
    h.apply(10, reg(A, k(A, 0)));
    refuse(11, reg(A, k(A, 1)), /already registered/);
    refuse(13, rot(A, k(A, 0)), /current key/);
    refuse(15, rev(A, k(A, 1)), /not the agent's current key/);
    refuse(17, reg(B, k(A, 1)), /not the agent id/);
    refuse(19, rot(A, k(B, 1)), /not the agent id/);
    refuse(21, reg(B, generateKey(B, 4).vkey), /type 0x01/);
    refuse(23, reg(B, formatVerifierKey(B, 1, Uint8Array.of(1, ...new Uint8Array(31)))), /usable/);
    refuse(25, reg(B, 'not a key'), /malformed verifier key/);
    h.apply(30, rot(A, k(A, 1)));
    refuse(31, rot(A, k(A, 0)), /held this key before/);
    h.apply(40, rev(A, k(A, 1)));
    refuse(41, rev(A, k(A, 1)), /not the agent's current key/);
    refuse(43, rot(A, k(A, 1)), /held this key before/);
    expect(h.agents()).toEqual([A]);
    expect(h.periods(A).map((p) => p.vkey)).toEqual([k(A, 0), k(A, 1)]);
    expect(h.current(A)).toBeNull();
  });

  it('requires increasing indices', () => {
    const h = new KeyHistory();
    h.apply(5, ev(A));
    expect(() => h.apply(5, reg(A, k(A, 0)))).toThrow(RangeError);
    expect(() => h.apply(4, reg(A, k(A, 0)))).toThrow(RangeError);
    expect(() => h.apply(-1, reg(A, k(A, 0)))).toThrow(RangeError);
    expect(() => h.apply(6.5, reg(A, k(A, 0)))).toThrow(RangeError);
    h.apply(6, reg(A, k(A, 0)));
    expect(h.current(A)?.from).toBe(6);
  });

  it('returns copies: callers cannot change the history', () => {
    const h = new KeyHistory();
    h.apply(0, reg(A, k(A, 0)));
    (h.periods(A) as unknown as unknown[]).pop();
    h.agents().pop();
    expect(h.periods(A)).toHaveLength(1);
    expect(h.agents()).toEqual([A]);
  });

  it('keyAt matches a brute-force replay of the accepted entries (property)', () => {
    const op = fc.record({
      gap: fc.integer({ min: 1, max: 3 }),
      type: fc.constantFrom('agent.register', 'agent.rotate', 'agent.revoke', 'event'),
      agent: fc.constantFrom(A, B),
      keyAgent: fc.oneof({ weight: 9, arbitrary: fc.constant('same') }, { weight: 1, arbitrary: fc.constant('other') }),
      key: fc.nat(3),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const h = new KeyHistory();
        const accepted: Accepted[] = [];
        let index = -1;
        for (const o of ops) {
          index += o.gap;
          const keyOwner = o.keyAgent === 'same' ? o.agent : o.agent === A ? B : A;
          const vkey = k(keyOwner, o.key);
          const entry: Entry =
            o.type === 'event' ? ev(o.agent) : o.type === 'agent.revoke' ? rev(o.agent, vkey) : { type: o.type as 'agent.register', agent: o.agent, key: vkey, time: 0 };
          // The model's verdict, from the accepted history alone.
          const mine = accepted.filter((x) => x.entry.agent === o.agent);
          const known = mine.some((x) => x.entry.type === 'agent.register');
          const held = mine.flatMap((x) => (x.entry.type === 'agent.register' || x.entry.type === 'agent.rotate' ? [x.entry.key] : []));
          const cur = modelKey(accepted, o.agent, Number.MAX_SAFE_INTEGER);
          let ok: boolean;
          if (o.type === 'event') ok = true;
          else if (keyOwner !== o.agent) ok = false;
          else if (o.type === 'agent.register') ok = !known;
          else if (o.type === 'agent.rotate') ok = known && !held.includes(vkey);
          else ok = known && cur === vkey;
          let threw = false;
          try {
            h.apply(index, entry);
          } catch (e) {
            expect(e).toBeInstanceOf(VerificationError);
            threw = true;
          }
          expect(threw, `${o.type} ${o.agent} ${vkey}`).toBe(!ok);
          if (ok && entry.type !== 'event' && entry.type !== 'run.close' && entry.type !== 'payload.erase') accepted.push({ index, entry });
        }
        for (const agent of [A, B]) {
          for (let i = 0; i <= index + 2; i++) expect(h.keyAt(agent, i)?.vkey ?? null, `${agent} @${i}`).toBe(modelKey(accepted, agent, i));
          expect(h.current(agent)?.vkey ?? null).toBe(modelKey(accepted, agent, Number.MAX_SAFE_INTEGER));
        }
        expect(h.agents()).toEqual(accepted.filter((x) => x.entry.type === 'agent.register').map((x) => x.entry.agent));
      }),
      { numRuns: numRuns * 2 }
    );
  });
});

/** The key in force for `agent` at `index`: replay its accepted entries logged before `index`. */
type Accepted = { index: number; entry: AgentRegisterEntry | AgentRotateEntry | AgentRevokeEntry };

function modelKey(accepted: Accepted[], agent: string, index: number): string | null {
  let key: string | null = null;
  for (const { index: i, entry } of accepted) {
    if (i >= index || entry.agent !== agent) continue;
    if (entry.type === 'agent.register' || entry.type === 'agent.rotate') key = entry.key;
    else if (entry.type === 'agent.revoke') key = null;
  }
  return key;
}
