import type { CommandModule } from 'yargs';
import { bundleFiles, bundleOutput, wholeNumber } from '../flags.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { formatBytes } from '../output.js';
import { progressObserver } from '../progress.js';

interface Flags extends GlobalFlags {
  bundles: string[];
  output: string;
  compression?: 'none' | 'zstd' | undefined;
  level?: number | undefined;
}

export const mergeCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'merge <bundles..>',
  describe: 'rebuild the full bundle of a release from its base bundle and delta(s)',
  builder: (y) => y
    .positional('bundles', { type: 'string', array: true, demandOption: true, coerce: (v: unknown) => bundleFiles('merge')(v) ?? [], describe: 'base bundle, then the deltas in order' })
    .option('output', { alias: 'o', type: 'string', demandOption: true, coerce: (v: unknown) => bundleOutput('output')(v) ?? '', describe: 'the full bundle to write (.tar or .tar.zst)' })
    .option('compression', { choices: ['none', 'zstd'] as const, describe: 'default: zstd when the output ends in .zst, else none' })
    .option('level', { type: 'string', coerce: wholeNumber('level', 1, 19, 9), describe: 'zstd level (1-19)' })
    .example('$0 merge release-1.tar.zst release-2-delta.tar.zst -o release-2.tar.zst', 'the same bytes a full export of release 2 writes'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { mergeBundles } = await import('../../app/merge.js');
    const ctx = await contextFrom(argv);
    const observer = progressObserver(ctx.out, 'merge');
    try {
      const r = await mergeBundles({
        inputs: argv.bundles, output: argv.output, compression: argv.compression ?? (argv.output.endsWith('.zst') ? 'zstd' : 'none'), level: argv.level,
        jobs: ctx.jobs, signal: ctx.signal, observer,
      });
      observer.done();
      for (const w of r.warnings) ctx.out.warn(w);
      ctx.out.result(r, () => `${r.output}: ${r.images} images, ${r.blobs} blobs, ${formatBytes(r.storedBytes)} (${r.fromBases} blobs from the base) in ${r.seconds.toFixed(1)} s\nbundle id ${r.bundleId}`);
    } finally {
      observer.stop();
    }
  },
};
