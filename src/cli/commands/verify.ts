import type { CommandModule } from 'yargs';
import { bundleFile, bundleFiles } from '../flags.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { refuseSharedStdin } from '../stdin.js';
import { formatBytes } from '../output.js';
import { progressObserver } from '../progress.js';

interface Flags extends GlobalFlags {
  bundle: string;
  volumes?: string[] | undefined;
  key?: string | undefined;
  requireSigned?: boolean | undefined;
  report?: string | undefined;
}

export const verifyCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'verify <bundle> [volumes..]',
  describe: 'check every blob digest and size and that every image is complete, offline',
  builder: (y) => y.positional('bundle', { type: 'string', demandOption: true, coerce: bundleFile('verify'), describe: 'bundle file, a volume of a split bundle, its .sha256 list, or - for stdin' })
    .positional('volumes', { type: 'string', array: true, coerce: bundleFiles('verify'), describe: 'further volumes of a split bundle (any order), or its .sha256 list; and repair bundles of `ferry export --repair` (spec/repair.md)' })
    .option('key', { type: 'string', requiresArg: true, describe: 'cosign public key (PEM): also check every image\'s cosign signature, offline' })
    .option('require-signed', { type: 'boolean', describe: 'with --key: an image without a valid signature is an error' })
    .option('report', { type: 'string', requiresArg: true, describe: 'when blobs are bad, write the repair report here (default: STEM.repair.json beside the bundle; never when all is well)' })
    .example('$0 verify rel.sha256', 'a split bundle; on damage writes rel.repair.json for `ferry export --repair`')
    .example('$0 verify release.tar.zst --key cosign.pub --require-signed', 'digests, completeness and signatures'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { verifyBundle } = await import('../../app/verify.js');
    const { volumeLine } = await import('../../app/inspect.js');
    refuseSharedStdin(argv, argv.bundle === '-', 'the bundle (-)');
    const ctx = await contextFrom(argv);
    const observer = progressObserver(ctx.out, 'verify');
    try {
      const result = await verifyBundle(argv.bundle, { volumes: argv.volumes, jobs: ctx.jobs, signal: ctx.signal, observer, key: argv.key, requireSigned: argv.requireSigned, report: argv.report });
      observer.done();
      const sigs = result.signatures;
      ctx.out.result(result, () => `${argv.bundle}: OK — ${result.images} images, ${result.blobs} blobs, ${formatBytes(result.bytes)} verified in ${result.seconds.toFixed(1)} s`
        + (result.volumes ? `\n${volumeLine(result.volumes)}${result.volumes.missing.length ? ' (their layers were not checked)' : ''}` : '')
        + (result.foreignBlobs ? `\nforeign (non-distributable) layers: ${result.foreignBlobs} not carried by design (descriptors only), not checked` : '')
        + (sigs ? `\nsignatures: ${sigs.filter((s) => s.status === 'verified').length} of ${sigs.length} images signed with the key`
          + sigs.filter((s) => s.status === 'unsigned').map((s) => `\n  unsigned: ${s.image}`).join('') : ''));
    } finally {
      observer.stop();
    }
  },
};
