import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { missingNodeOptions, SERVE_NODE_OPTIONS } from '../../src/cli/serve.js';

describe('the Node options of glasslog serve', () => {
  it('are given by npm start and by the Docker image', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
    const start = pkg.scripts.start!.split(/\s+/);
    expect(start.slice(0, 1 + SERVE_NODE_OPTIONS.length)).toEqual(['node', ...SERVE_NODE_OPTIONS]);
    const entrypoint = /^ENTRYPOINT (.*)$/m.exec(readFileSync('Dockerfile', 'utf8'))?.[1];
    expect(JSON.parse(entrypoint!)).toEqual(['node', ...SERVE_NODE_OPTIONS, 'dist/cli/main.js']);
  });

  it('are missing unless the command line or NODE_OPTIONS has them, with any value and either spelling', () => {
    expect(missingNodeOptions([])).toEqual([...SERVE_NODE_OPTIONS]);
    expect(missingNodeOptions(['--cpu-prof'], '--max-old-space-size=4096')).toEqual([...SERVE_NODE_OPTIONS]);
    expect(missingNodeOptions([...SERVE_NODE_OPTIONS])).toEqual([]);
    expect(missingNodeOptions([], ` --trace-gc  ${SERVE_NODE_OPTIONS.join(' ')} `)).toEqual([]);
    expect(missingNodeOptions(['--initial_heap_size=512'])).toEqual([]);
    // A longer option that merely starts with the same name is another option.
    expect(missingNodeOptions(['--initial-heap-size-extra=1'])).toEqual([...SERVE_NODE_OPTIONS]);
  });
});
