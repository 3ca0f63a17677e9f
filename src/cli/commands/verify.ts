import type { CommandModule } from 'yargs';
import { verifyBundle } from '../../app/verify.js';
import { contextFrom, type GlobalFlags, stdinOrPath } from '../context.js';
import { formatBytes } from '../output.js';
import { progressObserver } from '../progress.js';

interface Flags extends GlobalFlags {
  bundle: string;
}

export const verifyCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'verify <bundle>',
  describe: 'check every blob digest and size and that every image is complete, offline',
  builder: (y) => y.positional('bundle', { type: 'string', demandOption: true, coerce: stdinOrPath, describe: 'bundle file, or - for stdin' }) as never,
  handler: async (argv) => {
    const ctx = await contextFrom(argv);
    const observer = progressObserver(ctx.out, 'verify');
    try {
      const result = await verifyBundle(argv.bundle, { signal: ctx.signal, observer });
      observer.stop();
      ctx.out.result(result, () => `${argv.bundle}: OK — ${result.images} images, ${result.blobs} blobs, ${formatBytes(result.bytes)} verified in ${result.seconds.toFixed(1)} s`);
    } finally {
      observer.stop();
    }
  },
};
