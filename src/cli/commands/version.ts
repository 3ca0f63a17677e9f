import type { CommandModule } from 'yargs';
import { outputFor, type GlobalFlags } from '../context.js';

export const versionCommand: CommandModule<GlobalFlags, GlobalFlags> = {
  command: 'version',
  describe: 'print the versions of ferry, Node.js, the bundle format and zstd, and the platform (what a bug report needs)',
  builder: (y) => y
    .example('$0 version --json', 'the same as one JSON document'),
  handler: async (argv) => {
    const { versionReport, renderVersion } = await import('../../app/version-report.js');
    const out = outputFor(argv);
    const report = versionReport();
    out.result(report, () => renderVersion(report));
  },
};
