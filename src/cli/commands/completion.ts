import type { CommandModule } from 'yargs';
import { outputFor, type GlobalFlags } from '../context.js';

interface Flags extends GlobalFlags {
  shell: 'bash' | 'zsh';
}

export const COMPLETION_SHELLS = ['bash', 'zsh'] as const;

export const completionCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'completion <shell>',
  describe: 'print a shell completion script for ferry\'s commands, flags and --to kinds',
  builder: (y) => y
    .positional('shell', { choices: COMPLETION_SHELLS, demandOption: true, describe: 'bash or zsh' })
    .example('$0 completion bash > /etc/bash_completion.d/ferry', 'bash, for every user (or source <(ferry completion bash) in ~/.bashrc)')
    .example('$0 completion zsh > "${fpath[1]}/_ferry"', 'zsh: a directory on $fpath, then compinit'),
  handler: async (argv) => {
    const { completionScript } = await import('../completion.js');
    // The script is the result, --json or not: it is meant to be redirected into a file.
    outputFor(argv).data(completionScript(argv.shell));
  },
};
