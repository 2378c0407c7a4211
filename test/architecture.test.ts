/**
 * Import direction (README "Layout"): the pure core and the note module do no I/O and know
 * nothing above them; Hono lives only in src/http; only the CLI composes everything.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = new URL('../src/', import.meta.url).pathname;

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? files(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : []
  );
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
}

/** The src/ folder an import lands in, or the package name. */
function target(file: string, spec: string): string {
  if (!spec.startsWith('.')) return spec.startsWith('node:') ? 'node:' : spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
  const abs = join(file, '..', spec);
  return 'src/' + relative(SRC, abs).split('/')[0]!.replace(/\.js$/, '.ts');
}

const ALLOWED: Record<string, (t: string, file: string) => boolean> = {
  core: (t) => t === 'src/core' || t === '@noble/hashes',
  note: (t, file) => t === 'src/core' || t === 'src/note' || t === '@noble/hashes' || t === '@noble/ed25519' || (t === 'node:' && file.endsWith('ed25519-node.ts')),
  storage: (t) => ['src/core', 'src/storage', 'postgres', '@electric-sql/pglite', '@electric-sql/pglite-socket', 'node:'].includes(t),
  verify: (t) => ['src/core', 'src/note', 'src/entry', 'src/verify', '@noble/hashes', '@noble/ed25519'].includes(t),
  entry: (t) => ['src/core', 'src/note', 'src/entry', 'cbor-x', '@noble/hashes', '@noble/ed25519'].includes(t),
  client: (t) => ['src/core', 'src/note', 'src/verify', 'src/entry', 'src/client'].includes(t),
  audit: (t) => ['src/core', 'src/note', 'src/entry', 'src/log', 'src/storage', 'src/audit', 'src/metrics.ts', 'node:'].includes(t),
  log: (t) => ['src/core', 'src/note', 'src/storage', 'src/log', 'src/metrics.ts'].includes(t),
  witness: (t) => ['src/core', 'src/note', 'src/verify', 'src/client', 'src/storage', 'src/witness', 'src/metrics.ts', '@noble/hashes'].includes(t),
  http: (t) => ['src/core', 'src/entry', 'src/log', 'src/audit', 'src/witness', 'src/http', 'src/metrics.ts', 'hono', '@hono/node-server', 'node:'].includes(t),
};

describe('import direction', () => {
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    it(`src/${folder} imports only what it may`, () => {
      const bad: string[] = [];
      for (const f of files(join(SRC, folder))) {
        for (const spec of imports(f)) {
          const t = target(f, spec);
          if (!allowed(t, f)) bad.push(`${relative(SRC, f)} → ${spec}`);
        }
      }
      expect(bad).toEqual([]);
    });
  }

  it('nothing outside src/http and src/cli imports hono', () => {
    const bad = files(SRC)
      .filter((f) => !/\/src\/(http|cli)\//.test(f))
      .filter((f) => imports(f).some((s) => s === 'hono' || s.startsWith('hono/') || s.startsWith('@hono/')));
    expect(bad.map((f) => relative(SRC, f))).toEqual([]);
  });
});
