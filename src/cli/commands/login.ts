import type { CommandModule } from 'yargs';
import { FerryError } from '../../errors.js';
import { contextFrom, type GlobalFlags } from '../context.js';

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
    .example('printf \'%s\\n\' "$TOKEN" | $0 login harbor.corp.local -u robot$ci --password-stdin', 'from a script') as never,
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
      if (!process.stdin.isTTY || !process.stderr.isTTY) {
        throw new FerryError('E_USAGE', `no terminal to ask for the ${username === undefined ? 'user name and password' : 'password'}`, {
          hint: `in a script, pipe the password: printf '%s\\n' "$PASSWORD" | ferry login ${argv.host} -u USER --password-stdin`,
        });
      }
      username ??= await askLine('Username: ', true);
      password = await askLine('Password: ', false);
    }
    const result = await login({ registry: argv.host, username, password, access: ctx.registry, ssh: ctx.ssh, signal: ctx.signal });
    if (result.stored === 'config-file') ctx.out.info(`the password is stored unencrypted (base64) in ${result.file}; set "credsStore" there to keep it in a credential helper instead`);
    ctx.out.result(result, () => renderLogin(result));
  },
};

/**
 * One line from the terminal, read in raw mode: echoed as typed, or not at all
 * (a password: nothing on the screen, not even stars). Ctrl-C and Ctrl-D on an
 * empty line abort.
 */
function askLine(prompt: string, echo: boolean): Promise<string> {
  const stdin = process.stdin;
  // Raw before the prompt shows: nothing typed after it is echoed by the terminal itself.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (err?: FerryError): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || (ch === '\u0004' && value === '')) return finish(new FerryError('E_ABORTED', 'login cancelled at the prompt'));
        if (ch === '\u007f' || ch === '\b') {
          if (value !== '' && echo) process.stderr.write('\b \b');
          value = [...value].slice(0, -1).join('');
        } else if (ch === '\u0015') {
          if (echo) process.stderr.write('\b \b'.repeat([...value].length));
          value = '';
        } else if (ch >= ' ') {
          value += ch;
          if (echo) process.stderr.write(ch);
        }
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}
