import { existsSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ALG_COSIGNATURE_V1, ALG_ED25519, generateKey } from '../note/keys.js';

const HELP = `Usage: glasslog keygen --name <key name> [--out <file>] [--cosigner]

Generates an Ed25519 signing key in the signed-note form
PRIVATE+KEY+<name>+<keyid>+<base64> and prints its verifier key <name>+<keyid>+<base64>.

Options:
  --name <name>   the key name; for a log, its origin (no spaces, no "+")
  --out <file>    write the private key to this file (mode 0600, never overwritten)
                  and the verifier key to <file>.vkey; without it the private key
                  is printed on stdout
  --cosigner      a tlog-cosignature/v1 (type 0x04) witness key instead of a log key
  -h, --help      this text
`;

export async function keygenCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      out: { type: 'string' },
      cosigner: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.name) {
    process.stderr.write(`glasslog keygen: --name is required\n\n${HELP}`);
    return 2;
  }
  const { skey, vkey } = generateKey(values.name, values.cosigner ? ALG_COSIGNATURE_V1 : ALG_ED25519);
  if (values.out) {
    if (existsSync(values.out)) {
      process.stderr.write(`glasslog keygen: ${values.out} exists; refusing to overwrite a key\n`);
      return 1;
    }
    writeFileSync(values.out, skey + '\n', { mode: 0o600, flag: 'wx' });
    writeFileSync(values.out + '.vkey', vkey + '\n', { flag: 'wx' });
    process.stdout.write(vkey + '\n');
  } else {
    process.stdout.write(`${skey}\n${vkey}\n`);
  }
  return 0;
}
