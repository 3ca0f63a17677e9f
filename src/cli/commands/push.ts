import type { CommandModule } from 'yargs';
import type { OnExistingTag } from '../../app/push.js';
import { bundleFile, bundleFiles } from '../flags.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { refuseSharedStdin } from '../stdin.js';
import { progressObserver } from '../progress.js';

interface Flags extends GlobalFlags {
  bundle: string;
  volumes?: string[] | undefined;
  to: string;
  image?: string[] | undefined;
  'project-map'?: string[] | undefined;
  receipt?: string | undefined;
  'create-projects'?: boolean | undefined;
  'public-projects'?: boolean | undefined;
  'dry-run'?: boolean | undefined;
  'on-existing-tag'?: OnExistingTag | undefined;
  flatten?: string | undefined;
  base?: string | string[] | undefined;
}

/** app/push.ts's ON_EXISTING_TAG, repeated so --help does not load the push machinery. */
const ON_EXISTING_TAG: readonly OnExistingTag[] = ['overwrite', 'skip', 'fail'];

export const pushCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'push <bundle> [volumes..]',
  describe: 'push a bundle\'s images to a registry (Harbor, distribution, …): blobs skipped when present, mounted across repositories',
  builder: (y) => y
    .positional('bundle', { type: 'string', demandOption: true, coerce: bundleFile('push', ['registry']), describe: 'bundle file, a volume of a split bundle, its .sha256 list, or - for stdin' })
    .positional('volumes', { type: 'string', array: true, coerce: bundleFiles('push', ['registry']), describe: 'further volumes of a split bundle (any order), or its .sha256 list; and repair bundles of `ferry export --repair` (spec/repair.md)' })
    .option('to', { type: 'string', demandOption: true, describe: 'registry host[:port][/prefix], also written registry:host… or docker://host…' })
    .option('image', { type: 'string', array: true, describe: 'push only images whose reference matches (glob), repeatable' })
    .option('project-map', { alias: 'rename', type: 'string', array: true, describe: 'OLD_PREFIX=NEW_PREFIX, e.g. docker.io/library=library' })
    .option('flatten', { type: 'string', describe: 'cap repository depth at N components, joining the rest with "-" (a/b/c/d with 2 → a/b-c-d); after --project-map, before the --to prefix' })
    .option('on-existing-tag', { choices: ON_EXISTING_TAG, default: 'overwrite', describe: 'a target tag pointing at another image: move it, leave it (skip that image), or refuse the whole push before sending' })
    .option('receipt', { type: 'string', describe: 'write the JSON receipt here (default: a new file under $XDG_STATE_HOME/ferry/receipts)' })
    .option('base', { type: 'string', requiresArg: true, coerce: bundleFiles('push --base'), describe: 'delta bundles: a base bundle that supplies the blobs the delta leaves out and the registry lacks (repeatable), for a delta into a registry that never had the base' })
    .option('create-projects', { type: 'boolean', describe: 'Harbor: create missing projects (no-op on other registries)' })
    .option('public-projects', { type: 'boolean', describe: 'Harbor: projects created by --create-projects are public' })
    .option('dry-run', { type: 'boolean', describe: 'check credentials, projects, rights and quota and print the plan; send nothing' })
    .example('$0 push release.tar.zst --to harbor.corp.local --project-map docker.io/library=library --create-projects', 'into Harbor, creating missing projects')
    .example('$0 push release.tar.zst --to 10.0.0.5:5000/mirror --dry-run', 'check everything, send nothing')
    .example('$0 push release.tar.zst --to harbor.corp.local --flatten 2 --on-existing-tag fail', 'docker.io/a/b/c:1 → harbor.corp.local/a/b-c:1; refuse if any tag would move') as never,
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { renderImportReport } = await import('../../app/import.js');
    const { pushBundle } = await import('../../app/push.js');
    const { parseFlatten } = await import('../../app/repository-mapping.js');
    refuseSharedStdin(argv, argv.bundle === '-', 'the bundle (-)');
    const flatten = parseFlatten(argv.flatten);
    const ctx = await contextFrom(argv);
    const observer = progressObserver(ctx.out, 'push');
    try {
      const report = await pushBundle({
        bundle: argv.bundle, volumes: argv.volumes, target: argv.to, images: argv.image ?? [], renames: argv['project-map'] ?? [],
        createProjects: argv['create-projects'] === true, publicProjects: argv['public-projects'] === true, dryRun: argv['dry-run'] === true,
        onExistingTag: argv['on-existing-tag'] ?? 'overwrite', flatten,
        receiptFile: argv.receipt, bases: argv.base === undefined ? undefined : ([] as string[]).concat(argv.base), jobs: ctx.jobs, registry: ctx.registry, ssh: ctx.ssh, signal: ctx.signal, observer,
      });
      observer.done();
      ctx.out.result(report, () => renderImportReport(report));
    } finally {
      observer.stop();
    }
  },
};
