import type { CommandModule } from 'yargs';
import { bundlePath } from '../../app/locations.js';
import { contextFrom, type GlobalFlags } from '../context.js';

interface Flags extends GlobalFlags {
  a: string;
  b: string;
}

export const diffCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'diff <a> <b>',
  describe: 'compare two bundles, bundle metadata files, inventories or image lists: images added, removed, changed; blobs and bytes each way',
  builder: (y) => y
    .positional('a', { type: 'string', demandOption: true, describe: 'the older side' })
    .positional('b', { type: 'string', demandOption: true, describe: 'the newer side' })
    .example('$0 diff release-1.tar.zst images-2.list', 'what a delta from release 1 to the list would carry'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { diffTargets } = await import('../../app/diff.js');
    const { renderDiff } = await import('../../delta/diff.js');
    const ctx = await contextFrom(argv);
    // `bundle:FILE` as everywhere a bundle is read (it was looked up as a file named `bundle:FILE`: exit 5);
    // another kind (`oci:DIR`) is a place, not a file this compares, and is said so.
    const [a, b] = [bundlePath(argv.a, 'diff'), bundlePath(argv.b, 'diff')];
    const result = await diffTargets({ a, b, access: ctx.registry, jobs: ctx.jobs, signal: ctx.signal });
    ctx.out.result(result, () => renderDiff(result));
  },
};
