import type { CommandModule } from 'yargs';
import { bundleFile, bundleFiles } from '../flags.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { refuseSharedStdin } from '../stdin.js';

interface Flags extends GlobalFlags {
  bundle: string;
  volumes?: string[] | undefined;
  metadata?: boolean | undefined;
}

export const inspectCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'inspect <bundle> [volumes..]',
  describe: 'show what a bundle holds: images, platforms, sizes, shared bytes, dedup ratio',
  builder: (y) => y
    .positional('bundle', { type: 'string', demandOption: true, coerce: bundleFile('inspect'), describe: 'bundle file, a volume of a split bundle, its .sha256 list, or - for stdin' })
    .positional('volumes', { type: 'string', array: true, coerce: bundleFiles('inspect'), describe: 'further volumes of a split bundle (any order); or give its .sha256 list as <bundle>' })
    .option('metadata', { type: 'boolean', describe: 'print the bundle metadata (ferry.json) exactly as stored' }),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { inspectBundle, renderInspection } = await import('../../app/inspect.js');
    refuseSharedStdin(argv, argv.bundle === '-', 'the bundle (-)');
    const ctx = await contextFrom(argv);
    const inspection = await inspectBundle(argv.bundle, { signal: ctx.signal, volumes: argv.volumes });
    if (argv.metadata) {
      // The stored encoding (version 2 is compact JSON on one line), as the bundle holds it.
      const { serialiseMetadata } = await import('../../transports/bundle/metadata.js');
      ctx.out.data(serialiseMetadata(inspection.metadata).toString('utf8'));
      return;
    }
    ctx.out.result(inspection.summary, () => renderInspection(inspection));
  },
};
