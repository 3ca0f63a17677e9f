import { refuseRepeats } from '../transports/bundle/repaired-source.js';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createSecureContext } from 'node:tls';
import type { ImageRequest } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import { validateRepository } from '../oci/reference.js';
import { accessLine } from '../serve/access-log.js';
import { openBundles, type OpenedBundles } from '../serve/bundle-blobs.js';
import { Catalog } from '../serve/catalog.js';
import type { ServedContent, ServedImage } from '../serve/content.js';
import { Htpasswd } from '../serve/htpasswd.js';
import { type LayoutKind, openLayout, type OpenedLayout } from '../serve/layout-blobs.js';
import { RegistryApi } from '../serve/registry-api.js';
import { type ListenAddress, RegistryServer } from '../serve/server.js';
import { VerifiedBlobs } from '../serve/verified-blobs.js';
import type { IndexOrigin } from '../transports/bundle/entry-index.js';
import { assertNoTagCollisions, requestsFromBundle } from './bundle-requests.js';
import { mapRepository, parseRenames } from './repository-mapping.js';

/**
 * `ferry serve`: a bundle (its volumes, a delta over its base) or a layout as
 * a read-only registry, read in place (spec/serve.md). Everything that can be
 * checked is checked before the port is opened — flags, TLS files, the
 * htpasswd file, every bundle header, every manifest and config, the names —
 * then it serves until the invocation is aborted (SIGINT/SIGTERM), finishes
 * the responses in flight, and reports.
 */

export const DEFAULT_LISTEN = '127.0.0.1:5000';

export interface ServeOptions {
  /** Bundle files, volumes, `.sha256` lists (empty with `layout`). */
  inputs: string[];
  layout?: { kind: LayoutKind; dir: string } | undefined;
  /** `ADDR:PORT`; default 127.0.0.1:5000. */
  listen?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  htpasswd?: string | undefined;
  renames: string[];
  /** Served names get this path in front (as `import --to registry:host/PREFIX`). */
  prefix?: string | undefined;
  /** Seconds responses in flight get to finish on a stop. */
  shutdownTimeout: number;
  /** Where the entry index goes when the bundle's folder is read-only. */
  cacheDir: string;
  signal: AbortSignal;
  /** One access-log line per request (undefined: --quiet). */
  log?: ((line: string) => void) | undefined;
  /** Problems while serving (a blob that failed verification): always shown. */
  alert: (line: string) => void;
  /** Called once, when the port is open. */
  onListening: (doc: ServeStarted) => void;
}

/** The startup document (`--json`: stdout), spec/cli-output.schema.json#/$defs/serveStarted. */
export interface ServeStarted {
  url: string;
  address: string;
  tls: boolean;
  auth: boolean;
  source: { kind: 'bundle' | LayoutKind; paths: string[] };
  bundles?: {
    bundleId: string;
    role: 'served' | 'base';
    files: { path: string; volume?: number; index: { how: IndexOrigin['how']; file?: string; stale?: string } }[];
    volumes?: { count: number; given: number };
  }[];
  images: { origin: string; repository: string; tag?: string; digest: string; mediaType: string; reference: string }[];
  skipped?: { image: string; reason: string }[];
  repositories: number;
  blobs: number;
  verifiedAtStart: number;
  seconds: number;
}

/** The document of a clean stop, spec/cli-output.schema.json#/$defs/serveResult. */
export interface ServeResult {
  url: string;
  seconds: number;
  requests: number;
  bytesSent: number;
  verifiedBlobs: number;
  /** Blobs that failed verification while being served (answered 500 since). */
  failedBlobs: { digest: string; code: string; message: string }[];
  cutResponses: number;
}

export async function serve(opts: ServeOptions): Promise<ServeResult> {
  const started = Date.now();
  // Flags and files first: nothing is opened or listened on before they are all right.
  const listen = parseListen(opts.listen ?? DEFAULT_LISTEN);
  const tls = await loadTls(opts.tlsCert, opts.tlsKey);
  const htpasswd = opts.htpasswd !== undefined ? await Htpasswd.load(opts.htpasswd) : undefined;
  const renames = parseRenames(opts.renames);
  const prefix = opts.prefix === undefined ? '' : validatePrefix(opts.prefix);
  if (opts.layout && opts.inputs.length > 0) throw new FerryError('E_USAGE', `give bundles or --${opts.layout.kind === 'oci' ? 'oci' : 'layout'}, not both`, { hint: 'run one ferry serve per source' });
  if (!opts.layout && opts.inputs.length === 0) throw new FerryError('E_USAGE', 'nothing to serve', { hint: 'ferry serve BUNDLE.tar [DELTA.tar …], ferry serve STEM.sha256, or ferry serve --layout DIR' });
  await refuseRepeats(opts.inputs);

  const opened = opts.layout ? await openLayout(opts.layout.kind, opts.layout.dir, opts.signal) : await openBundles(opts.inputs, { cacheDir: opts.cacheDir, signal: opts.signal });
  const reader = opened.reader;
  try {
    const requests = opts.layout ? layoutRequests(opened as OpenedLayout, renames, prefix) : bundleRequests(opened as OpenedBundles, renames, prefix);
    // One tag, one image: which of two would win is not for the server to guess.
    assertNoTagCollisions(requests);
    const images: ServedImage[] = requests.map((r) => ({ repository: r.targetRepository, digest: parseDigest(r.sourceReference, r.origin), origin: r.origin, ...(r.targetTag !== undefined ? { tag: r.targetTag } : {}) }));
    const content: ServedContent = { images, manifests: opened.manifests, blobs: reader, verified: opened.verified };
    const catalog = new Catalog(content);
    const blobs = new VerifiedBlobs(reader, content.verified, (digest, error) => opts.alert(`ferry serve: error: blob ${digest} failed verification and will not be served: ${error.message}`));
    let bytesSent = 0;
    const api = new RegistryApi({
      catalog, manifests: content.manifests, reader, blobs, htpasswd,
      onDone: (x) => {
        bytesSent += x.bytes;
        opts.log?.(accessLine(x));
      },
    });
    opts.signal.throwIfAborted();
    const server = await RegistryServer.start({ listen, tls, handle: (req, res) => api.handle(req, res) });
    const shown = displayHost(server.address);
    const url = `${tls ? 'https' : 'http'}://${shown}`;
    let cut = 0;
    try {
      opts.onListening(startedDocument(opts, opened, content, catalog, url, shown, tls !== undefined, htpasswd !== undefined, (Date.now() - started) / 1000));
      await untilAborted(opts.signal);
    } finally {
      cut = await server.stop(opts.shutdownTimeout * 1000);
    }
    // A stop is clean whatever was found on the way: damage was answered 500 and logged when met, and is listed here.
    const failedBlobs = blobs.failures().map((f) => ({ digest: f.digest, code: f.error.code, message: f.error.message }));
    return { url, seconds: (Date.now() - started) / 1000, requests: server.requests, bytesSent, verifiedBlobs: blobs.verifiedCount, failedBlobs, cutResponses: cut };
  } finally {
    await reader.close();
  }
}

/** `ADDR:PORT`, `[v6]:PORT`; port 0 picks a free one. */
export function parseListen(text: string): ListenAddress {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    throw new FerryError('E_USAGE', `--listen ${JSON.stringify(text.slice(0, 80))}: expected ADDR:PORT`, {
      hint: 'e.g. --listen 0.0.0.0:5000 to serve the network, --listen 127.0.0.1:0 for a free port, --listen [::1]:5000', details: { listen: text.slice(0, 80) },
    });
  }
  return { host: m[1]!, port };
}

async function loadTls(certFile: string | undefined, keyFile: string | undefined): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) throw new FerryError('E_USAGE', `--tls-${certFile === undefined ? 'cert' : 'key'} is missing: TLS needs both --tls-cert and --tls-key`, { hint: 'give the certificate (PEM, chain included) and its private key (PEM)' });
  const read = async (file: string, flag: string): Promise<Buffer> => readFile(file).catch((e: NodeJS.ErrnoException) => {
    throw new FerryError('E_CONFIG', `${flag} ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, { hint: 'give a PEM file', details: { file } });
  });
  const cert = await read(certFile, '--tls-cert');
  const key = await read(keyFile, '--tls-key');
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new FerryError('E_CONFIG', `--tls-cert ${certFile} / --tls-key ${keyFile}: ${(e as Error).message}`, {
      hint: 'both must be PEM, and the key must be the certificate\'s (openssl x509 -noout -modulus -in CERT | openssl md5; the same for the key)', details: { cert: certFile, key: keyFile },
    });
  }
  return { cert, key };
}

function validatePrefix(prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, '');
  return validateRepository(p, `--prefix ${prefix}`);
}

function bundleRequests(opened: OpenedBundles, renames: ReturnType<typeof parseRenames>, prefix: string): ImageRequest[] {
  return opened.bundles.filter((b) => !b.isBase).flatMap((b) => requestsFromBundle(b.metadata, { renames, prefix }));
}

function layoutRequests(opened: OpenedLayout, renames: ReturnType<typeof parseRenames>, prefix: string): ImageRequest[] {
  return opened.images.map((i) => ({
    sourceRepository: i.repository, sourceReference: i.digest, targetRepository: mapRepository(i.repository, renames, prefix),
    origin: `${i.repository}${i.tag !== undefined ? `:${i.tag}` : `@${i.digest}`}`, ...(i.tag !== undefined ? { targetTag: i.tag } : {}),
  }));
}

/** How clients name this server: the bound address, or the host name for a wildcard one. */
function displayHost(a: ListenAddress): string {
  const host = a.host === '0.0.0.0' || a.host === '::' ? hostname() : a.host;
  return `${host.includes(':') ? `[${host}]` : host}:${a.port}`;
}

function startedDocument(opts: ServeOptions, opened: OpenedBundles | OpenedLayout, content: ServedContent, catalog: Catalog, url: string, shown: string, tls: boolean, auth: boolean, seconds: number): ServeStarted {
  const blobs = new Set<string>();
  for (const m of content.manifests.values()) for (const d of [...(m.parsed.config ? [m.parsed.config] : []), ...m.parsed.layers]) blobs.add(d.digest);
  const doc: ServeStarted = {
    url, address: shown, tls, auth,
    source: opts.layout ? { kind: opts.layout.kind, paths: [opts.layout.dir] } : { kind: 'bundle', paths: opts.inputs },
    images: content.images.map((i) => ({
      origin: i.origin, repository: i.repository, ...(i.tag !== undefined ? { tag: i.tag } : {}), digest: i.digest,
      mediaType: content.manifests.get(i.digest)!.mediaType, reference: `${shown}/${i.repository}${i.tag !== undefined ? `:${i.tag}` : `@${i.digest}`}`,
    })),
    repositories: catalog.names.length, blobs: blobs.size, verifiedAtStart: content.verified.size, seconds,
  };
  if ('bundles' in opened) {
    doc.bundles = opened.bundles.map((b) => ({
      bundleId: b.metadata.bundleId, role: b.isBase ? 'base' as const : 'served' as const,
      files: b.files.map((f) => ({ path: f.path, ...(f.metadata.volume ? { volume: f.metadata.volume.index + 1 } : {}), index: { how: f.origin.how, ...(f.origin.file ? { file: f.origin.file } : {}), ...(f.origin.stale ? { stale: f.origin.stale } : {}) } })),
      ...(b.metadata.volume ? { volumes: { count: b.metadata.volume.count, given: b.files.length } } : {}),
    }));
  } else if (opened.skipped.length > 0) {
    doc.skipped = opened.skipped.map((s) => ({ image: `${s.image.repository}${s.image.tag !== undefined ? `:${s.image.tag}` : `@${s.image.digest}`}`, reason: s.why }));
  }
  return doc;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** The startup lines without --json: where to pull from, and what. */
export function renderStarted(doc: ServeStarted): string {
  const from = doc.source.kind === 'bundle' ? doc.source.paths.join(' ') : `${doc.source.kind} ${doc.source.paths[0]}`;
  const lines = [`ferry serve: ${doc.url} serves ${doc.images.length} image${doc.images.length === 1 ? '' : 's'} in ${doc.repositories} repositor${doc.repositories === 1 ? 'y' : 'ies'} from ${from}${doc.tls ? ', TLS' : ''}${doc.auth ? ', htpasswd auth' : ''} (ready in ${doc.seconds.toFixed(1)} s)`];
  for (const i of doc.images.slice(0, 50)) lines.push(`  ${i.reference}`);
  if (doc.images.length > 50) lines.push(`  … and ${doc.images.length - 50} more (--json lists them all)`);
  for (const s of doc.skipped ?? []) lines.push(`  skipped ${s.image}: ${s.reason}`);
  return lines.join('\n');
}

export function renderResult(r: ServeResult): string {
  return `ferry serve: stopped after ${r.seconds.toFixed(1)} s: ${r.requests} requests, ${r.bytesSent} bytes sent, ${r.verifiedBlobs} blobs verified${r.cutResponses ? `, ${r.cutResponses} responses cut at the shutdown timeout` : ''}`
    + r.failedBlobs.map((f) => `\n  refused (failed verification): ${f.message}`).join('');
}
