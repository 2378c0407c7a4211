#!/usr/bin/env node
/**
 * The glasslog command: the composition root, and the only code that reads argv, the
 * environment, files and the clock to build the log.
 */
import { serveCommand } from './serve.js';
import { keygenCommand } from './keygen.js';
import { witnessCommand } from './witness.js';
import { verifyCommand } from './verify.js';
import { auditCommand } from './audit.js';
import { exportCommand } from './export.js';

const USAGE = `glasslog — a transparency log for the audit trails of AI agents

Usage:
  glasslog serve [options]     run the log server (see glasslog serve --help)
  glasslog witness [options]   run a witness (see glasslog witness --help)
  glasslog keygen [options]    generate a signing key (see glasslog keygen --help)
  glasslog verify <check> …    offline checks: receipt, consistency, evidence, bundle
                               (see glasslog verify --help)
  glasslog audit <log-url> …   audit every entry and tile of a log, incrementally
                               (see glasslog audit --help)
  glasslog export <log-url> …  write an evidence bundle of an agent, a run or a time
                               window (see glasslog export --help)
  glasslog --version
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serveCommand(rest);
    case 'witness':
      return witnessCommand(rest);
    case 'verify':
      return verifyCommand(rest);
    case 'audit':
      return auditCommand(rest);
    case 'export':
      return exportCommand(rest);
    case 'keygen':
      return keygenCommand(rest);
    case '--version':
    case 'version':
      console.log('glasslog 0.1.0');
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`glasslog: unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== -1) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`glasslog: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
);

