/**
 * src/entry must run in a browser: no Node built-ins, no Buffer or process, and imports
 * only src/core, src/note (not its node:crypto backend), cbor-x and @noble/*.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const DIR = new URL('../../src/entry/', import.meta.url).pathname;
const files = readdirSync(DIR).filter((f) => f.endsWith('.ts'));

describe('src/entry purity', () => {
  it('imports only what a browser bundle can load', () => {
    const bad: string[] = [];
    for (const f of files) {
      const text = readFileSync(join(DIR, f), 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
        const spec = m[1]!;
        const ok =
          spec === 'cbor-x' ||
          spec.startsWith('@noble/') ||
          /^\.\/[a-z-]+\.js$/.test(spec) ||
          (/^\.\.\/(core|note)\/[a-z0-9-]+\.js$/.test(spec) && !spec.endsWith('ed25519-node.js'));
        if (!ok) bad.push(`${f}: ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('uses no Node globals', () => {
    for (const f of files) {
      const code = readFileSync(join(DIR, f), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
      expect(code, f).not.toMatch(/\b(Buffer|process|require|__dirname)\b/);
    }
  });
});
