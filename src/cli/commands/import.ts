import type { CommandModule } from 'yargs';
import { DESTINATION_KINDS, isKind, kindPrefix, type Location, locationOf, parseLocation } from '../../app/locations.js';
import { parsePlatforms } from '../../oci/platform.js';
import { FerryError } from '../../errors.js';
import { bundleFile, bundleFiles } from '../flags.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { refuseSharedStdin } from '../stdin.js';
import { progressObserver } from '../progress.js';

interface Flags extends GlobalFlags {
  bundle: string;
  volumes?: string[] | undefined;
  to: string[];
  image?: string[] | undefined;
  rename?: string[] | undefined;
  prune?: boolean | undefined;
  receipt?: string | undefined;
  owner?: string | undefined;
  platform?: string | undefined;
  base?: string | string[] | undefined;
  'convert-oci'?: boolean | undefined;
  'dry-run'?: boolean | undefined;
}

export const importCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'import <bundle> [volumes..]',
  describe: 'write a bundle\'s images into a registry storage layout, skopeo dir trees, an OCI layout, a docker-archive or a registry',
  builder: (y) => y
    .positional('bundle', { type: 'string', demandOption: true, coerce: bundleFile('import', DESTINATION_KINDS), describe: 'bundle file, a volume of a split bundle, its .sha256 list, or - for stdin' })
    .positional('volumes', { type: 'string', array: true, coerce: bundleFiles('import', DESTINATION_KINDS), describe: 'further volumes of a split bundle (any order), or its .sha256 list; and repair bundles of `ferry export --repair` (spec/repair.md)' })
    .option('to', { type: 'string', array: true, requiresArg: true, demandOption: true, describe: `KIND:TARGET (or KIND TARGET); KIND is one of ${DESTINATION_KINDS.join(', ')}` })
    .option('image', { type: 'string', array: true, describe: 'import only images whose reference matches (glob: * and ?), repeatable' })
    .option('rename', { type: 'string', array: true, describe: 'OLD_PREFIX=NEW_PREFIX repository mapping, e.g. docker.io/library=library (repeatable)' })
    .option('prune', { type: 'boolean', describe: 'registry-layout: afterwards hold exactly this bundle\'s images and blobs' })
    .option('receipt', { type: 'string', describe: 'where to write the JSON receipt (default: a new file in $XDG_STATE_HOME/ferry/receipts, i.e. ~/.local/state/ferry/receipts; never inside the target)' })
    .option('owner', { type: 'string', requiresArg: true, describe: 'UID:GID (numbers or names) that new files and folders in a local target get (default, as root: the owner of the target folder, e.g. the registry\'s user)' })
    .option('base', { type: 'string', requiresArg: true, coerce: bundleFiles('import --base'), describe: 'delta bundles: a base bundle that supplies the blobs the delta leaves out and the target lacks (repeatable)' })
    .option('platform', { type: 'string', describe: 'docker-archive: the platform to take from multi-arch images (default linux/amd64)' })
    .option('convert-oci', { type: 'boolean', describe: 'write Docker schema 2 images with OCI media types, for readers that take OCI only (skopeo, podman, umoci on oci:); new manifest digests, listed in the output; layers unchanged' })
    .example('$0 import release.tar.zst --to registry-layout:/var/lib/registry', 'then start registry:2 on it')
    .example('$0 import release.tar.zst --to skopeo-dir:./images', 'one dir per image, for skopeo')
    .example('$0 import release.tar.zst --to registry-layout /var/lib/registry', 'the two-word form works too')
    .example('$0 import release.tar --to oci:./layout --convert-oci', 'an OCI layout whose Docker-built images skopeo, podman and umoci can select')
    .option('dry-run', { type: 'boolean', describe: 'list what would land and where (images, tags, blobs to write and already there) and write nothing, no receipt either' })
    .example('$0 import release-2-delta.tar.zst --to registry-layout:/var/lib/registry --dry-run', 'what would land, and what is already there; nothing written'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { importBundle, renderImportReport } = await import('../../app/import.js');
    refuseSharedStdin(argv, argv.bundle === '-', 'the bundle (-)');
    const { to, volumes } = targetOf(argv.to, argv.volumes ?? []);
    const platform = argv.platform ? parsePlatforms(argv.platform) : undefined;
    // Every other kind lands every platform the bundle carries: a --platform there would be quietly ignored.
    if (platform && to.kind !== 'docker-archive') {
      throw new FerryError('E_USAGE', `--platform applies to --to docker-archive only (it picks the one platform docker load takes); --to ${to.kind} lands every platform the bundle carries`, {
        hint: 'to carry fewer platforms, cut the bundle first: ferry export --from bundle:FILE --platform linux/amd64 -o smaller.tar',
      });
    }
    if (platform && platform.length > 1) throw new FerryError('E_USAGE', `--platform ${argv.platform}: a docker-archive takes one platform`, { hint: 'e.g. --platform linux/arm64' });
    const ctx = await contextFrom(argv);
    const observer = progressObserver(ctx.out, 'import');
    try {
      const report = await importBundle({
        bundle: argv.bundle, volumes, to, images: argv.image ?? [], renames: argv.rename ?? [],
        prune: argv.prune === true, receiptFile: argv.receipt, owner: argv.owner, platform: platform?.[0], dryRun: argv['dry-run'] === true,
        bases: argv.base === undefined ? undefined : ([] as string[]).concat(argv.base),
        convertOci: argv['convert-oci'] === true, jobs: ctx.jobs, registry: ctx.registry, ssh: ctx.ssh, signal: ctx.signal, observer,
      });
      observer.done();
      ctx.out.result(report, () => renderImportReport(report));
    } finally {
      observer.stop();
    }
  },
};

/**
 * `--to` takes `KIND:TARGET` or the older two words `KIND TARGET`. It is read
 * as a list (yargs cannot take one or two words), so words after the target
 * are further bundle volumes, as they would be without `--to` in between.
 */
function targetOf(words: string[], volumes: string[]): { to: Location; volumes: string[] } {
  const [first, ...rest] = words;
  if (first === undefined) throw new FerryError('E_USAGE', '--to needs KIND:TARGET', { hint: `KIND is one of ${DESTINATION_KINDS.join(', ')}` });
  if (isKind(first)) {
    const [target, ...more] = rest;
    if (target === undefined) throw new FerryError('E_USAGE', `--to ${first} needs a target`, { hint: `--to ${first}:TARGET or --to ${first} TARGET` });
    // `--to registry-layout oci:out`: both forms at once; the second kind would become part of a folder's name.
    if (kindPrefix(target) !== undefined) {
      const other = `--to ${first}:${target.slice(target.indexOf(':') + 1) || 'TARGET'}`;
      const hint = other === `--to ${target}` ? other : `one of: --to ${target}, or ${other}`;
      throw new FerryError('E_USAGE', `--to ${first} ${target}: two kinds given`, { hint });
    }
    return { to: locationOf(first, target, '--to', DESTINATION_KINDS), volumes: [...volumes, ...more] };
  }
  return { to: parseLocation(first, '--to', DESTINATION_KINDS), volumes: [...volumes, ...rest] };
}
