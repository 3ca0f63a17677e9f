import type { CommandModule } from 'yargs';
import { bundleFiles, kept, path, single } from '../flags.js';
import { kindPrefix, parseLocation, pathOfKind } from '../../app/locations.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { formatBytes } from '../output.js';

interface Flags extends GlobalFlags {
  registry?: string | undefined;
  layout?: string | undefined;
  bundle?: string[] | undefined;
  output?: string | undefined;
}

export const inventoryCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'inventory',
  describe: 'write what a registry, registry layout or set of bundles holds (small JSON) for `export --since`',
  builder: (y) => y
    // `registry:HOST` and `docker://HOST` name a registry here as on push --to (they were "not a registry host"); a URL is refused saying to drop the scheme.
    .option('registry', { type: 'string', coerce: kept(registryHost), describe: 'a live registry host[:port] (or registry:host[:port]), read over its API (catalog, tags, manifests)' })
    .option('layout', { type: 'string', coerce: kept((v: unknown) => { const dir = path('layout')(v); return dir === undefined ? undefined : pathOfKind(dir, '--layout', 'registry-layout'); }), describe: 'a registry storage layout directory (the registry\'s rootdirectory)' })
    .option('bundle', { type: 'string', array: true, coerce: bundleFiles('inventory --bundle'), describe: 'bundles (or their .ferry.json) that were imported' })
    .option('output', { alias: 'o', type: 'string', describe: 'write the inventory here (default: stdout)' })
    .example('$0 inventory --layout /var/lib/registry -o site.inventory.json', 'then carry the file out and: ferry export --since site.inventory.json …'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { takeInventory } = await import('../../app/inventory.js');
    const { serialiseInventory } = await import('../../delta/inventory.js');
    const ctx = await contextFrom(argv);
    const result = await takeInventory({
      registry: argv.registry, layout: argv.layout, bundles: argv.bundle, output: argv.output,
      access: ctx.registry, jobs: ctx.jobs, signal: ctx.signal, warn: (m) => ctx.out.warn(m),
    });
    const inv = result.inventory;
    if (result.output === undefined) {
      // The inventory itself is the result: printed as is, --json or not.
      ctx.out.data(serialiseInventory(inv));
      return;
    }
    ctx.out.result({ output: result.output, id: inv.id, images: inv.images.length, blobs: inv.blobs.length, bytes: inv.blobs.reduce((n, b) => n + b.size, 0) },
      () => `${result.output}: ${inv.source.description}: ${inv.images.length} images, ${inv.blobs.length} blobs (${formatBytes(inv.blobs.reduce((n, b) => n + b.size, 0))})\ninventory id ${inv.id}`);
  },
};

/** `--registry HOST`, also written `registry:HOST` or `docker://HOST` (read as push --to reads them); a bare host is kept as given. */
function registryHost(v: unknown): string | undefined {
  const text = single('registry')(v);
  if (text === undefined || (kindPrefix(text) === undefined && !/^(docker|https?):\/\//i.test(text))) return text;
  return parseLocation(text, '--registry', ['registry'], true).location;
}
