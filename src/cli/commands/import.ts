import type { CommandModule } from 'yargs';
import { IMPORT_TARGET_KINDS, type ImportTargetKind } from '../../app/target-kinds.js';
import { parsePlatforms } from '../../oci/platform.js';
import { contextFrom, type GlobalFlags, stdinOrPath } from '../context.js';
import { refuseSharedStdin } from '../stdin.js';
import { progressObserver } from '../progress.js';

interface Flags extends GlobalFlags {
  bundle: string;
  volumes?: string[];
  to: string[];
  image?: string[];
  rename?: string[];
  prune?: boolean;
  receipt?: string;
  owner?: string;
  platform?: string;
  base?: string | string[];
}

export const importCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'import <bundle> [volumes..]',
  describe: 'write a bundle\'s images into a registry storage layout, skopeo dir trees, an OCI layout, a docker-archive or a registry',
  builder: (y) => y
    .positional('bundle', { type: 'string', demandOption: true, coerce: stdinOrPath, describe: 'bundle file, a volume of a split bundle, its .sha256 list, or - for stdin' })
    .positional('volumes', { type: 'string', array: true, describe: 'further volumes of a split bundle (any order), or its .sha256 list; and repair bundles of `ferry export --repair` (spec/repair.md)' })
    .option('to', { type: 'string', nargs: 2, demandOption: true, describe: `KIND TARGET; KIND is one of ${IMPORT_TARGET_KINDS.join(', ')}` })
    .option('image', { type: 'string', array: true, describe: 'import only images whose reference matches (glob: * and ?), repeatable' })
    .option('rename', { type: 'string', array: true, describe: 'OLD_PREFIX=NEW_PREFIX repository mapping, e.g. docker.io/library=library (repeatable)' })
    .option('prune', { type: 'boolean', describe: 'registry-layout: afterwards hold exactly this bundle\'s images and blobs' })
    .option('receipt', { type: 'string', describe: 'where to write the JSON receipt (default: a new file in $XDG_STATE_HOME/ferry/receipts, i.e. ~/.local/state/ferry/receipts; never inside the target)' })
    .option('owner', { type: 'string', requiresArg: true, describe: 'UID:GID (numbers or names) that new files and folders in a local target get (default, as root: the owner of the target folder, e.g. the registry\'s user)' })
    .option('base', { type: 'string', requiresArg: true, describe: 'delta bundles: a base bundle that supplies the blobs the delta leaves out and the target lacks (repeatable)' })
    .option('platform', { type: 'string', describe: 'docker-archive: the platform to take from multi-arch images (default linux/amd64)' })
    .example('$0 import release.tar.zst --to registry-layout /var/lib/registry', 'then start registry:2 on it')
    .example('$0 import release.tar.zst --to skopeo-dir ./images', 'one dir per image, for skopeo') as never,
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { importBundle, IMPORT_TARGET_KINDS, renderImportReport } = await import('../../app/import.js');
    refuseSharedStdin(argv, argv.bundle === '-', 'the bundle (-)');
    const ctx = await contextFrom(argv);
    const [kind, target] = argv.to as [string, string];
    const observer = progressObserver(ctx.out, 'import');
    try {
      const report = await importBundle({
        bundle: argv.bundle, volumes: argv.volumes, kind: kind as ImportTargetKind, target, images: argv.image ?? [], renames: argv.rename ?? [],
        prune: argv.prune === true, receiptFile: argv.receipt, owner: argv.owner, platform: argv.platform ? parsePlatforms(argv.platform)[0] : undefined,
        bases: argv.base === undefined ? undefined : ([] as string[]).concat(argv.base),
        jobs: ctx.jobs, registry: ctx.registry, ssh: ctx.ssh, signal: ctx.signal, observer,
      });
      observer.stop();
      ctx.out.result(report, () => renderImportReport(report));
    } finally {
      observer.stop();
    }
  },
};
