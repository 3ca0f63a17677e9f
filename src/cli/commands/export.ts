import type { CommandModule } from 'yargs';
import { bundleFiles, bundleOutput, wholeNumber } from '../flags.js';
import { parsePlatforms } from '../../oci/platform.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { refuseSharedStdin } from '../stdin.js';
import { formatBytes } from '../output.js';
import { progressObserver } from '../progress.js';
import type { ExportCacheReport, ForeignReport } from '../../app/export.js';
import { describeConversions } from '../../copy/convert-oci.js';
import { parseVolumeName } from '../../transports/bundle/volumes.js';

interface Flags extends GlobalFlags {
  file?: string | undefined;
  images?: string[] | undefined;
  output: string;
  from?: string | undefined;
  'registry-name'?: string | undefined;
  'convert-oci'?: boolean | undefined;
  'include-foreign'?: boolean | undefined;
  compression?: 'none' | 'zstd' | undefined;
  level?: number | undefined;
  platform?: string | undefined;
  cache?: string | undefined;
  'cache-max'?: string | undefined;
  since?: string | string[] | undefined;
  referrers?: boolean | undefined;
  split?: string | undefined;
  repair?: string | undefined;
  'skip-missing'?: boolean | undefined;
}

export const exportCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'export [images..]',
  describe: 'pull images from registries (or a layout/dir) into one deduplicated, verified bundle',
  builder: (y) => y
    .positional('images', { type: 'string', array: true, describe: 'image references (in addition to --file)' })
    .option('file', { alias: 'f', type: 'string', describe: 'images.list: one reference a line, # comments ("-" for stdin)' })
    .option('output', { alias: 'o', type: 'string', demandOption: true, requiresArg: true, coerce: bundleOutput('output'), describe: 'bundle file (.tar or .tar.zst), or - for stdout' })
    .option('from', { type: 'string', describe: 'read from registry-layout:DIR, skopeo-dir:DIR, oci:DIR or bundle:FILE instead of registries' })
    .option('registry-name', { type: 'string', requiresArg: true, describe: 'with --from: record images whose names have no registry (python, team/app) as HOST/name' })
    .option('convert-oci', { type: 'boolean', describe: 'store Docker schema 2 images with OCI media types, for readers that take OCI only (new manifest digests, listed in the output; layers unchanged)' })
    .option('include-foreign', { type: 'boolean', describe: 'carry the bytes of foreign (non-distributable) layers too, fetched from their URLs (default: their descriptors only, as registries keep them)' })
    .option('compression', { choices: ['none', 'zstd'] as const, describe: 'default: zstd when the output ends in .zst, else none' })
    .option('level', { type: 'string', coerce: wholeNumber('level', 1, 19, 9), describe: 'zstd level (1-19)' })
    .option('platform', { type: 'string', describe: 'keep only these platforms of multi-arch images, e.g. linux/amd64,linux/arm64' })
    // Not `array`: a greedy array option would swallow the image arguments after it; repeated flags still collect.
    .option('since', { type: 'string', requiresArg: true, coerce: bundleFiles('export --since'), describe: 'delta: leave out blobs this prior bundle, its .ferry.json or inventory holds (repeatable)' })
    .option('referrers', { type: 'boolean', default: true, describe: 'also carry each image\'s cosign signatures, attestations, SBOMs and OCI referrers (--no-referrers to leave them)' })
    .option('split', { type: 'string', requiresArg: true, describe: 'cut the bundle into volumes of at most this size (2GB = 2,000,000,000 bytes; 2G or 2GiB = 2×1024³), NAME.000.tar[.zst], … plus NAME.sha256' })
    .option('repair', { type: 'string', requiresArg: true, describe: 'a repair bundle: only the blobs this report of `ferry verify` lists, for the bundle it names (spec/repair.md)' })
    .option('skip-missing', { type: 'boolean', describe: 'leave out images the registry no longer has (manifest not found), list them as skipped with the reason, and export the rest; without it such an export fails naming them' })
    .option('cache', { type: 'string', describe: 'keep every fetched blob in this cache directory for later exports (each byte is then written twice: bundle and cache; also FERRY_CACHE). Without it ~/.cache/ferry is only read. A killed export continues without it' })
    .option('cache-max', { type: 'string', requiresArg: true, describe: 'cap the blob cache at this size after the export, least recently used blobs first (50GB decimal, 50G or 50GiB binary; default 20GiB or FERRY_CACHE_MAX; 0 or unlimited: no cap)' })
    .example('$0 export -f images.list -o release-2.0.tar.zst', 'export every image of the list')
    .example('$0 export -f images.list --since release-1.0.tar.zst -o release-2.0-delta.tar.zst', 'a delta: only what release 1.0 lacks')
    .example('$0 export -f images.list -o release.tar.zst --split 2G', 'volumes of at most 2 GiB (2G = 2GiB; 2GB is 2,000,000,000 bytes) for a file share: release.000.tar.zst, … and release.sha256')
    .example('$0 export -f images.list --repair rel.repair.json -o repair.tar', 'only the blobs verify found missing or damaged at the far side')
    .example('$0 export --from registry-layout:/var/lib/registry -o old.tar.zst', 'bundle a registry directory without starting a registry')
    .example('$0 export --from oci:./app --registry-name registry.corp.local -o app.tar', 'an OCI layout from skopeo, buildah or umoci, its images recorded as registry.corp.local/app:TAG') as never,
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { exportBundle } = await import('../../app/export.js');
    const { sizeSettings } = await import('../sizes.js');
    refuseSharedStdin(argv, argv.file === '-', 'the image list (-f -)');
    const ctx = await contextFrom(argv);
    if (argv.output === '-') ctx.out.claimStdout();
    // Read before the copy: a typo in a size should not cost a whole export.
    const sizes = sizeSettings(argv, ctx.out);
    const cacheMax = sizes.cacheMaxBytes ?? 'unlimited';
    const observer = progressObserver(ctx.out, 'export');
    try {
      const result = await exportBundle({
        listFile: argv.file, references: argv.images ?? [], from: argv.from, registryName: argv['registry-name'], convertOci: argv['convert-oci'] === true, includeForeign: argv['include-foreign'] === true, output: argv.output,
        compression: argv.compression ?? (argv.output.endsWith('.zst') ? 'zstd' : 'none'), level: argv.level,
        platforms: argv.platform ? parsePlatforms(argv.platform) : undefined, cacheDir: argv.cache, cacheMax, since: argv.since === undefined ? undefined : ([] as string[]).concat(argv.since),
        referrers: argv.referrers, split: sizes.splitBytes, repair: argv.repair, skipMissing: argv['skip-missing'] === true,
        jobs: ctx.jobs, registry: ctx.registry, signal: ctx.signal, observer, stdout: ctx.io.stdout,
      });
      observer.done();
      if (result.cache?.error) ctx.out.warn(`the bundle is complete, but the cache ${result.cache.dir} was not trimmed: ${result.cache.error}`);
      ctx.out.result({ ...result, sizes: sizes.report }, () => `${result.output}: ${result.images} images, ${result.blobs} blobs, ${formatBytes(result.storedBytes)} stored `
        + `(${formatBytes(result.referencedBytes)} referenced, ${formatBytes(result.fetchedBytes)} fetched${result.resumedBytes > 0 ? `, ${formatBytes(result.resumedBytes)} resumed from the work file` : ''}) in ${result.seconds.toFixed(1)} s\nbundle id ${result.bundleId}`
        + (result.referrers && result.referrers.images.length > 0 ? `\nreferrers: ${result.referrers.images.reduce((n, g) => n + g.referrers.length, 0)} signatures, attestations, SBOMs and referrers of ${result.referrers.images.length} images carried` : '')
        + (result.volumes ? `\n${result.volumes.length} volumes: ${result.volumes.map((v) => v.path).join(', ')}; checksums in ${parseVolumeName(result.volumes[0]!.path)?.stem ?? ''}.sha256` : '')
        + (result.repair ? `\nrepair of bundle ${result.repair.bundleId}: ${result.repair.blobs} blobs carried; import it after the good volumes (or the damaged bundle)` : '')
        + (result.delta && !result.repair ? `\ndelta: ${result.delta.omittedBlobs} blobs (${formatBytes(result.delta.omittedBytes)}) left out, held by base ${result.delta.bases.map((b) => b.bundleId).join(', ')}` : '')
        + (result.skipped ? `\n${result.skipped.length} image${result.skipped.length === 1 ? '' : 's'} left out (--skip-missing), gone upstream:${result.skipped.map((m) => `\n  ${m.image}${m.where ? ` (${m.where})` : ''}: ${m.reason}`).join('')}` : '')
        + (!result.cache || result.cache.error ? '' : `\n${cacheLine(result.cache)}`)
        + describeConversions(result.converted).map((l) => `\n${l}`).join('')
        + (result.foreign ? `\n${foreignLine(result.foreign)}` : ''));
    } finally {
      observer.stop();
    }
  },
};

/** Foreign layers are never silent: carried, or left to their URLs by design. */
function foreignLine(f: ForeignReport): string {
  const bytes = formatBytes(f.layers.reduce((n, l) => n + l.size, 0));
  const images = new Set(f.layers.flatMap((l) => l.images)).size;
  const head = f.carried
    ? `foreign layers: ${f.layers.length} (${bytes}) of ${images} image${images === 1 ? '' : 's'} carried, fetched from their URLs`
    : `note: ${f.layers.length} foreign (non-distributable) layer${f.layers.length === 1 ? '' : 's'} (${bytes}) of ${images} image${images === 1 ? '' : 's'} not carried, descriptor only: whoever pulls ${images === 1 ? 'it' : 'them'} fetches ${f.layers.length === 1 ? 'it' : 'them'} from ${f.layers.length === 1 ? 'its' : 'their'} URLs (--include-foreign carries the bytes)`;
  return [head, ...f.layers.map((l) => `  ${l.digest} ${formatBytes(l.size)} ${l.urls.join(' ')} (${l.images.join(', ')})`)].join('\n');
}

function cacheLine(c: ExportCacheReport): string {
  const parts = [`cache ${c.dir}: ${formatBytes(c.bytes)} ${c.maxBytes === null ? '(no cap)' : `of ${formatBytes(c.maxBytes)}`}`];
  if (c.evictedBlobs > 0) parts.push(`${c.evictedBlobs} least recently used blobs (${formatBytes(c.evictedBytes)}) evicted`);
  if (c.prunedFiles > 0) parts.push(`${c.prunedFiles} abandoned partial files (${formatBytes(c.prunedBytes)}) removed`);
  if (c.skipped) parts.push('not trimmed: another export kept it busy');
  else if (c.maxBytes !== null && c.bytes > c.maxBytes) parts.push(`over the cap: ${formatBytes(c.keptInUseBytes)} are blobs this export (or one running beside it) uses`);
  return parts.join('; ');
}
