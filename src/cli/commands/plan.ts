import type { CommandModule } from 'yargs';
import { parsePlatforms } from '../../oci/platform.js';
import { bundleFiles } from '../flags.js';
import { contextFrom, type GlobalFlags } from '../context.js';

interface Flags extends GlobalFlags {
  file?: string | undefined;
  images?: string[] | undefined;
  since?: string | string[] | undefined;
  platform?: string | undefined;
  cache?: string | undefined;
  'cache-max'?: string | undefined;
  split?: string | undefined;
  'skip-missing'?: boolean | undefined;
}

export const planCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'plan [images..]',
  describe: 'what an export would carry, reading only manifests: bytes per image, shared bytes, cache hits, disk needed, volume count',
  builder: (y) => y
    .positional('images', { type: 'string', array: true, describe: 'image references (in addition to --file)' })
    .option('file', { alias: 'f', type: 'string', describe: 'images.list: one reference a line, # comments ("-" for stdin)' })
    .option('since', { type: 'string', requiresArg: true, coerce: bundleFiles('plan --since'), describe: 'plan a delta against this prior bundle, its .ferry.json or an inventory (repeatable)' })
    .option('platform', { type: 'string', describe: 'keep only these platforms of multi-arch images, e.g. linux/amd64' })
    .option('cache', { type: 'string', describe: 'blob cache directory to count hits in (default: ~/.cache/ferry)' })
    .option('cache-max', { type: 'string', requiresArg: true, describe: 'the cache cap the export will use (50GB decimal, 50G or 50GiB binary; default 20GiB or FERRY_CACHE_MAX; 0 or unlimited: no cap)' })
    .option('split', { type: 'string', requiresArg: true, describe: 'volume size (4GB = 4,000,000,000 bytes; 4G or 4GiB = 4×1024³): also print how many volumes the bundle needs' })
    .option('skip-missing', { type: 'boolean', describe: 'as export --skip-missing: leave out images the registry no longer has, and list them' })
    .example('$0 plan -f images.list --split 4G', 'will it fit, and on how many volumes')
    .example('$0 plan -f images.list --since release-1.0.tar.zst --json', 'the delta, as JSON'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { planExport, renderPlan } = await import('../../app/plan.js');
    const { sizeSettings } = await import('../sizes.js');
    const ctx = await contextFrom(argv);
    const sizes = sizeSettings(argv, ctx.out);
    const result = await planExport({
      listFile: argv.file, references: argv.images ?? [], since: argv.since === undefined ? undefined : ([] as string[]).concat(argv.since),
      platforms: argv.platform ? parsePlatforms(argv.platform) : undefined, cacheDir: argv.cache, cacheMax: sizes.cacheMaxBytes ?? 'unlimited', split: sizes.splitBytes,
      jobs: ctx.jobs, registry: ctx.registry, signal: ctx.signal, warn: (m) => ctx.out.warn(m), skipMissing: argv['skip-missing'] === true,
    });
    ctx.out.result({ ...result, sizes: sizes.report }, () => renderPlan(result));
  },
};
