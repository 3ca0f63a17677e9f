import type { CommandModule } from 'yargs';
import { type GlobalFlags, outputFor } from '../context.js';

interface Flags extends GlobalFlags {
  host: string;
}

export const logoutCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'logout <host>',
  describe: 'remove the credentials stored for a registry from ~/.docker/config.json and its credential helper, as docker logout does',
  builder: (y) => y
    .positional('host', { type: 'string', demandOption: true, describe: 'registry host[:port] (docker.io for Docker Hub)' })
    .example('$0 logout harbor.corp.local', 'every stored spelling of the host goes (harbor.corp.local, https://harbor.corp.local, …)'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { logout, renderLogout } = await import('../../app/login.js');
    // No registry is contacted and no secret read: the output settings are all it needs of the context.
    const out = outputFor(argv);
    const result = await logout({ registry: argv.host });
    out.result(result, () => renderLogout(result));
  },
};
