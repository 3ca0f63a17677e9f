import type { CommandModule } from 'yargs';
import { contextFrom, type GlobalFlags } from '../context.js';
import { formatBytes } from '../output.js';
import { progressObserver } from '../progress.js';

interface Flags extends GlobalFlags {
  dir: string;
}

export const demoCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'demo',
  describe: 'run the whole job on generated sample images: local registry → export → verify → import → serve',
  builder: (y) => y.option('dir', { type: 'string', default: '.ferry-demo', describe: 'working folder: new, empty, or one an earlier demo made (which is emptied first); any other is refused' }),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { runDemo } = await import('../../app/demo/run.js');
    const ctx = await contextFrom(argv);
    const observer = progressObserver(ctx.out, 'demo');
    try {
      const r = await runDemo({ workDir: argv.dir, jobs: ctx.jobs, signal: ctx.signal, observer, say: (l) => ctx.out.info(l) });
      observer.done();
      ctx.out.result(r, () => [
        '',
        'ferry demo: done. Everything is in place:',
        `  image list        ${r.imagesList}`,
        `  bundle            ${r.bundle}  (${r.exported.images} images, ${r.exported.blobs} blobs, ${formatBytes(r.exported.storedBytes)} stored for ${formatBytes(r.exported.referencedBytes)} referenced)`,
        `  verified          ${r.verified.blobs} blobs, ${formatBytes(r.verified.bytes)}`,
        `  registry layout   ${r.layout}  (start registry:2 on it as /var/lib/registry)`,
        `  receipt           ${r.imported.receipt ?? '-'}`,
        '  served from the imported layout, digests equal to the source:',
        ...r.served.map((s) => `    ${s.reference}  ${s.digest}`),
      ].join('\n'));
    } finally {
      observer.stop();
    }
  },
};
