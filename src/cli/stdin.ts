import { FerryError } from '../errors.js';

/**
 * Stdin can carry one thing. `cat B | ferry push - --password-stdin` would read
 * the bundle as the password and then find stdin empty ("bundle truncated"),
 * so the combination is refused up front with what to do instead.
 */
export function refuseSharedStdin(argv: { username?: string | undefined; 'password-stdin'?: boolean | undefined; 'ssh-passphrase-stdin'?: boolean | undefined }, dataFromStdin: boolean, what: string): void {
  if (!dataFromStdin) return;
  const secret = argv['password-stdin'] === true && argv.username !== undefined ? '--password-stdin' : argv['ssh-passphrase-stdin'] === true ? '--ssh-passphrase-stdin' : undefined;
  if (secret === undefined) return;
  throw new FerryError('E_USAGE', `${what} and ${secret} both want stdin`, {
    hint: `give the ${what.includes('list') ? 'image list' : 'bundle'} as a file, or the password through FERRY_PASSWORD / ~/.docker/config.json`,
  });
}
