/**
 * Loads spec/vectors/note.json, the shared vectors for the note module. Each vector names
 * its source; see the file's "description".
 */
import { readFileSync } from 'node:fs';

export interface NoteVectors {
  ed25519Keys: { source: string; skey: string; vkey: string; name: string; keyId: string; seedHex: string }[];
  verifierKeys: {
    valid: { source: string; vkey: string; name: string; keyId: string; alg: number }[];
    invalid: { source: string; vkey: string; reason: string }[];
  };
  signerKeys: {
    valid: { source: string; skey: string; name: string; keyId: string; alg: number; vkey: string }[];
    invalid: { source: string; skey: string; reason: string }[];
  };
  notes: { source: string; text: string; note: string; vkeys: string[]; verified: string[]; unverified: string[] }[];
  rejectedNotes: {
    source: string;
    note?: string;
    noteHex?: string;
    vkeys: string[];
    error: 'malformed' | 'invalid-signature' | 'unverified';
  }[];
  signing: { source: string; skey: string; text: string; note: string }[];
  parseOnly: {
    source: string;
    note: string;
    text: string;
    signatures: { name: string; keyId: string; length: number; timestamp?: number }[];
  }[];
  ed25519: { source: string; seedHex: string; publicKeyHex: string; messageHex: string; signatureHex: string }[];
  cosignedCheckpoints: {
    source: string;
    logSkey: string;
    logVkey: string;
    cosignerSkey: string;
    cosignerVkey: string;
    text: string;
    timestamp: number;
    cosignatureMessage: string;
    note: string;
  }[];
}

export const vectors: NoteVectors = JSON.parse(
  readFileSync(new URL('../../spec/vectors/note.json', import.meta.url), 'utf8')
) as NoteVectors;

/** fast-check runs per property; raise with FC_NUM_RUNS for slow runs. */
export const numRuns = Number(process.env['FC_NUM_RUNS'] ?? 100);

/** Every string obtained by replacing one UTF-8 byte of `s` with another value. */
export function* singleByteChanges(s: string): Generator<Uint8Array> {
  const b = new TextEncoder().encode(s);
  for (let i = 0; i < b.length; i++) {
    const orig = b[i]!;
    for (let v = 0; v < 256; v++) {
      if (v === orig) continue;
      const m = b.slice();
      m[i] = v;
      yield m;
    }
  }
}

/** Every strict substring of the UTF-8 bytes of `s` (Go's note_test.go mangling). */
export function* strictSubstrings(s: string): Generator<Uint8Array> {
  const b = new TextEncoder().encode(s);
  for (let i = 0; i <= b.length; i++) {
    for (let j = i + 1; j <= b.length; j++) {
      if (i === 0 && j === b.length) continue;
      yield b.slice(i, j);
    }
  }
}

const lossy = new TextDecoder('utf-8', { ignoreBOM: true });
/** Decodes mangled bytes to a string (invalid sequences become U+FFFD). */
export function lossyString(b: Uint8Array): string {
  return lossy.decode(b);
}

/**
 * Runs `fn` on every input and returns the inputs for which it did NOT throw an error
 * accepted by `ok` (faster than one `expect` per input in large mangling loops).
 */
export function notRejected<T>(inputs: Iterable<T>, fn: (x: T) => unknown, ok: (e: unknown) => boolean): T[] {
  const bad: T[] = [];
  for (const x of inputs) {
    try {
      fn(x);
      bad.push(x);
    } catch (e) {
      if (!ok(e)) bad.push(x);
    }
  }
  return bad;
}
