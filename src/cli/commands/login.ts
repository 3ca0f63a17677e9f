import type { Argv, CommandModule } from 'yargs';
import { FerryError } from '../../errors.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { askLine, canAsk } from '../prompt.js';

interface Flags extends GlobalFlags {
  host: string;
}

export const loginCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'login <host>',
  describe: 'check credentials against a registry and keep them in ~/.docker/config.json (or its credential helper), as docker login does',
  builder: (y) => y
    .positional('host', { type: 'string', demandOption: true, describe: 'registry host[:port] (docker.io for Docker Hub)' })
    .option('username', { alias: 'u', type: 'string', requiresArg: true, describe: 'user name (asked on a terminal when not given)' })
    .option('password-stdin', { type: 'boolean', describe: 'read the password (or token) from the first line of stdin instead of asking' })
    .example('$0 login harbor.corp.local -u ops', 'asks for the password without echoing it')
    .example('printf \'%s\\n\' "$TOKEN" | $0 login harbor.corp.local -u robot$ci --password-stdin', 'from a script') as unknown as Argv<Flags>,
  // (The cast: two global flags declared again here, with -u and login's wording, make yargs'
  // inferred type one that exactOptionalPropertyTypes cannot match to Flags; the values are the same.)
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { login, renderLogin } = await import('../../app/login.js');
    const fromStdin = argv['password-stdin'] === true;
    if (fromStdin && !argv.username) {
      throw new FerryError('E_USAGE', '--password-stdin needs the user name as -u USER', { hint: `e.g. printf '%s\\n' "$PASSWORD" | ferry login ${argv.host} -u USER --password-stdin` });
    }
    // With -u and --password-stdin the context reads the first line of stdin as the password.
    const ctx = await contextFrom(argv);
    let username = argv.username;
    let password = fromStdin ? ctx.registry.password ?? '' : undefined;
    if (username === undefined || password === undefined) {
      if (!canAsk(ctx.io)) {
        throw new FerryError('E_USAGE', `no terminal to ask for the ${username === undefined ? 'user name and password' : 'password'}`, {
          hint: `in a script, pipe the password: printf '%s\\n' "$PASSWORD" | ferry login ${argv.host} -u USER --password-stdin`,
        });
      }
      username ??= await askLine(ctx.io, 'Username: ', true);
      password = await askLine(ctx.io, 'Password: ', false);
    }
    const result = await login({ registry: argv.host, username, password, access: ctx.registry, ssh: ctx.ssh, signal: ctx.signal });
    if (result.stored === 'config-file') ctx.out.info(`the password is stored unencrypted (base64) in ${result.file}; set "credsStore" there to keep it in a credential helper instead`);
    ctx.out.result(result, () => renderLogin(result));
  },
};
