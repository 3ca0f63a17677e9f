import type { CommandModule } from 'yargs';
import { FerryError } from '../../errors.js';
import { contextFrom, type GlobalFlags } from '../context.js';
import { bundleFile, path, seconds, single } from '../flags.js';
import { kindPrefix, parseLocation, pathOfKind } from '../../app/locations.js';

interface Flags extends GlobalFlags {
  bundles?: string[] | undefined;
  layout?: string | undefined;
  oci?: string | undefined;
  listen?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  htpasswd?: string | undefined;
  rename?: string[] | undefined;
  prefix?: string | undefined;
  shutdownTimeout?: number | undefined;
  cache?: string | undefined;
}

export const serveCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'serve [bundles..]',
  describe: 'serve a bundle (its volumes, a delta over its base) or a layout as a read-only registry, read in place',
  builder: (y) => y
    .positional('bundles', { type: 'string', array: true, describe: 'uncompressed bundle files: one bundle, the volumes of a split one or its .sha256 list, a delta with its base(s)' })
    .option('layout', { type: 'string', coerce: path('layout'), describe: 'serve a registry storage layout (the registry\'s rootdirectory) instead' })
    .option('oci', { type: 'string', coerce: path('oci'), describe: 'serve an OCI image layout instead' })
    .option('listen', { type: 'string', coerce: single('listen'), describe: 'ADDR:PORT to listen on (default 127.0.0.1:5000; port 0 picks a free one). Other hosts reach it only with an explicit address, e.g. 0.0.0.0:5000' })
    .option('tls-cert', { type: 'string', coerce: path('tls-cert'), describe: 'serve HTTPS with this certificate (PEM, chain included)' })
    .option('tls-key', { type: 'string', coerce: path('tls-key'), describe: 'the certificate\'s private key (PEM)' })
    .option('htpasswd', { type: 'string', coerce: path('htpasswd'), describe: 'require Basic auth by this htpasswd file (bcrypt entries, as `htpasswd -B` writes)' })
    .option('rename', { type: 'string', array: true, describe: 'OLD_PREFIX=NEW_PREFIX repository mapping, as on import (repeatable)' })
    .option('prefix', { type: 'string', coerce: single('prefix'), describe: 'serve every repository under this path, like --to host/PREFIX on import' })
    .option('shutdown-timeout', { type: 'string', default: '30', coerce: seconds('shutdown-timeout', 86_400, 30), describe: 'seconds responses in flight get to finish after SIGINT/SIGTERM' })
    .option('cache', { type: 'string', coerce: path('cache'), describe: 'where the entry index is kept when the bundle\'s folder is read-only (default ~/.cache/ferry)' })
    .example('$0 serve release-2.tar', 'docker pull 127.0.0.1:5000/library/nginx:1.25')
    .example('$0 serve release.sha256 --listen 0.0.0.0:5000 --tls-cert c.pem --tls-key k.pem --htpasswd users', 'a split bundle to the network, with TLS and auth')
    .example('$0 serve release-1.tar release-2-delta.tar', 'release 2 from its delta, the base supplying what it leaves out')
    .example('$0 serve --layout /var/lib/registry', 'a registry storage layout'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { serve, renderStarted, renderResult } = await import('../../app/serve.js');
    const { defaultCacheDir } = await import('../../app/cache-dir.js');
    const { bundles, layout } = servedPlaces(argv);
    const ctx = await contextFrom(argv);
    const out = ctx.out;
    const result = await serve({
      inputs: bundles,
      layout,
      listen: argv.listen, tlsCert: argv.tlsCert, tlsKey: argv.tlsKey, htpasswd: argv.htpasswd,
      renames: argv.rename ?? [], prefix: argv.prefix, shutdownTimeout: argv.shutdownTimeout ?? 30,
      cacheDir: argv.cache ?? defaultCacheDir(), signal: ctx.signal,
      log: out.quiet ? undefined : (line) => out.stderr.write(`${line}\n`),
      alert: (line) => out.stderr.write(`${line}\n`),
      onListening: (doc) => {
        // The startup document is what a script waits for (it names the port): it is this run's one
        // stdout document. From here on the stop summary and any error go to stderr.
        out.data(out.json ? `${JSON.stringify(doc, null, 2)}\n` : `${renderStarted(doc)}\n`);
        out.claimStdout();
      },
    });
    out.result(result, () => renderResult(result));
  },
};

/**
 * What to serve: bundle files, or one layout, named by --layout / --oci or as
 * `registry-layout:DIR` / `oci:DIR` (the location syntax of --from and --to).
 */
function servedPlaces(argv: Flags): { bundles: string[]; layout: { kind: 'registry-layout' | 'oci'; dir: string } | undefined } {
  const words = argv.bundles ?? [];
  const places = words.filter((w) => kindPrefix(w) !== undefined && kindPrefix(w) !== 'bundle').map((w) => parseLocation(w, 'serve', ['registry-layout', 'oci']));
  const layouts = [
    ...(argv.layout !== undefined ? [{ kind: 'registry-layout' as const, dir: pathOfKind(argv.layout, '--layout', 'registry-layout') }] : []),
    ...(argv.oci !== undefined ? [{ kind: 'oci' as const, dir: pathOfKind(argv.oci, '--oci', 'oci') }] : []),
    ...places.map((p) => ({ kind: p.kind as 'registry-layout' | 'oci', dir: p.location })),
  ];
  const bundles = words.filter((w) => kindPrefix(w) === undefined || kindPrefix(w) === 'bundle').map(bundleFile('serve'));
  if (layouts.length > 1 || (layouts.length === 1 && bundles.length > 0)) {
    throw new FerryError('E_USAGE', `serve: ${layouts.length > 1 ? `${layouts.length} layouts given` : 'a layout and bundle files given'}`, { hint: 'serve one layout, or bundle files, per ferry serve' });
  }
  return { bundles, layout: layouts[0] };
}
