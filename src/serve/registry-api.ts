import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asFerryError } from '../errors.js';
import { type Digest, isDigest } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { isValidRepository, isValidTag } from '../oci/reference.js';
import { type ApiErrorCode, sendApiError } from './api-errors.js';
import type { Catalog, Repository } from './catalog.js';
import type { BlobReader, ServedManifest, StoredBlob } from './content.js';
import type { Htpasswd } from './htpasswd.js';
import { parseRange } from './range.js';
import type { VerifiedBlobs } from './verified-blobs.js';

/**
 * The read side of the OCI distribution API over the served content, as
 * distribution 2.8 answers it (spec/serve.md §4): `/v2/`, manifests and
 * blobs (GET, HEAD, Range), tags and catalog with `n`/`last` pagination and
 * `Link`, OCI 1.1 referrers, distribution's error bodies; every write method
 * is refused. Request paths are never decoded or turned into file names:
 * names and references are checked against the grammar and looked up in
 * tables built at startup.
 */

export interface ApiOptions {
  catalog: Catalog;
  manifests: ReadonlyMap<Digest, ServedManifest>;
  reader: BlobReader;
  blobs: VerifiedBlobs;
  htpasswd?: Htpasswd | undefined;
  /** Told about each request once its response is done or cut (the access log). */
  onDone?: (x: Exchange) => void;
}

/** One request as the access log sees it. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  started: bigint;
  user?: string;
  /** Body bytes sent. */
  bytes: number;
  /** Set when the response was cut short (client gone, verification failed). */
  cut?: boolean;
}

/** distribution's catalog page size and cap (registry/handlers/catalog.go, configuration's catalog.maxentries). */
const CATALOG_DEFAULT = 100;
const CATALOG_MAX = 1000;
const BLOB_CACHE_CONTROL = 'max-age=31536000';
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export class RegistryApi {
  constructor(private readonly o: ApiOptions) {}

  /** Answers one request; never throws (a failure is a 500, or a cut connection once bytes went out). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const x: Exchange = { req, res, started: process.hrtime.bigint(), bytes: 0 };
    res.once('close', () => {
      if (!res.writableFinished) x.cut = true;
      this.o.onDone?.(x);
    });
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    try {
      await this.route(x);
    } catch (e) {
      if (!res.headersSent) {
        const err = asFerryError(e);
        x.bytes += sendApiError(res, req.method, 'UNKNOWN', err.message);
      } else {
        res.destroy();
      }
    }
  }

  private fail(x: Exchange, code: ApiErrorCode, message?: string, detail?: unknown): void {
    x.bytes += sendApiError(x.res, x.req.method, code, message, detail);
  }

  private async route(x: Exchange): Promise<void> {
    const { req, res } = x;
    const raw = req.url ?? '';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    if (path !== '/v2' && !path.startsWith('/v2/')) return this.notFound(x);

    if (this.o.htpasswd) {
      const user = await this.o.htpasswd.check(req.headers.authorization);
      if (user === undefined) {
        res.setHeader('WWW-Authenticate', 'Basic realm="ferry"');
        return this.fail(x, 'UNAUTHORIZED');
      }
      x.user = user;
    }
    const method = req.method ?? '';
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.fail(x, 'UNSUPPORTED', WRITE_METHODS.has(method) ? 'The operation is unsupported: ferry serve is read-only.' : undefined);
    }
    if (path === '/v2/' || path === '/v2') return this.json(x, 200, {}, 'application/json; charset=utf-8');
    if (path === '/v2/_catalog') return this.catalog(x, query);

    const m = /^\/v2\/(.+)\/(manifests|blobs|referrers)\/([^/]+)$/.exec(path) ?? /^\/v2\/(.+)\/(tags)\/(list)$/.exec(path);
    if (!m) return this.notFound(x);
    const [, name, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === 'blobs' && ref === 'uploads') return this.fail(x, 'UNSUPPORTED', 'The operation is unsupported: ferry serve is read-only.');
    if (!isValidRepository(name)) return this.fail(x, 'NAME_INVALID', undefined, { name: printable(name, 300) });
    const repo = this.o.catalog.repository(name);
    if (!repo) return this.fail(x, 'NAME_UNKNOWN', undefined, { name });
    switch (kind) {
      case 'tags': return this.tags(x, repo, query);
      case 'manifests': return this.manifest(x, repo, ref);
      case 'blobs': return this.blob(x, repo, ref);
      default: return this.referrers(x, repo, ref, query);
    }
  }

  private notFound(x: Exchange): void {
    const body = Buffer.from('404 page not found\n');
    x.res.statusCode = 404;
    x.res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    x.res.setHeader('Content-Length', body.length);
    x.res.end(x.req.method === 'HEAD' ? undefined : body);
    if (x.req.method !== 'HEAD') x.bytes += body.length;
  }

  private json(x: Exchange, status: number, doc: unknown, type: string, headers: Record<string, string> = {}): void {
    const body = Buffer.from(`${JSON.stringify(doc)}\n`);
    x.res.statusCode = status;
    x.res.setHeader('Content-Type', type);
    x.res.setHeader('Content-Length', body.length);
    for (const [k, v] of Object.entries(headers)) x.res.setHeader(k, v);
    x.res.end(x.req.method === 'HEAD' ? undefined : body);
    if (x.req.method !== 'HEAD') x.bytes += body.length;
  }

  // ---------------------------------------------------------- lists

  /** distribution 2.8's catalog: 100 by default, at most 1000 (more is an error), Link to the next page. */
  private catalog(x: Exchange, query: URLSearchParams): void {
    let n = CATALOG_DEFAULT;
    const given = query.get('n');
    if (given !== null && /^-?\d+$/.test(given)) {
      const parsed = Number(given);
      if (parsed > CATALOG_MAX) return this.fail(x, 'PAGINATION_NUMBER_INVALID', undefined, { n: parsed });
      n = parsed < 0 ? CATALOG_MAX : parsed;
    }
    const page = paginate(this.o.catalog.names, n, query.get('last'));
    this.json(x, 200, { repositories: page.items }, 'application/json; charset=utf-8', page.more ? { Link: nextLink('/v2/_catalog', n, page.items) } : {});
  }

  /** Tags as distribution 3 pages them (2.8 has no paging): all by default; `n` caps, a bad `n` is an error. */
  private tags(x: Exchange, repo: Repository, query: URLSearchParams): void {
    const given = query.get('n');
    let n = Infinity;
    if (given !== null) {
      if (!/^\d+$/.test(given)) return this.fail(x, 'PAGINATION_NUMBER_INVALID', undefined, { n: given.slice(0, 40) });
      n = Number(given);
    }
    const page = paginate(repo.tags, n, query.get('last'));
    this.json(x, 200, { name: repo.name, tags: page.items }, 'application/json', page.more ? { Link: nextLink(`/v2/${repo.name}/tags/list`, n, page.items) } : {});
  }

  // ---------------------------------------------------------- manifests

  private manifest(x: Exchange, repo: Repository, ref: string): void {
    let digest: Digest | undefined;
    const byTag = !ref.includes(':');
    if (!byTag) {
      if (!isDigest(ref)) return this.fail(x, 'DIGEST_INVALID', 'invalid digest', { digest: printable(ref, 100) });
      digest = repo.hasManifest(ref) ? ref : undefined;
    } else {
      digest = isValidTag(ref) ? repo.tag(ref) : undefined;
    }
    if (digest === undefined) return this.fail(x, 'MANIFEST_UNKNOWN', undefined, byTag ? { tag: printable(ref, 128) } : { digest: ref });
    let m = this.o.manifests.get(digest)!;
    const accept = accepted(x.req);
    // distribution 2.8 (registry/handlers/manifests.go): an OCI manifest or index only to a client that accepts it.
    if (m.mediaType === MT.ociManifest && !accept.has(MT.ociManifest)) return this.fail(x, 'MANIFEST_UNKNOWN', 'OCI manifest found, but accept header does not support OCI manifests');
    if (m.mediaType === MT.ociIndex && !accept.has(MT.ociIndex)) return this.fail(x, 'MANIFEST_UNKNOWN', 'OCI index found, but accept header does not support OCI indexes');
    // A Docker manifest list asked for by tag by a client that cannot read one: its linux/amd64 image, as distribution does.
    if (byTag && m.mediaType === MT.dockerManifestList && !accept.has(MT.dockerManifestList)) {
      const child = m.parsed.manifests.find((c) => c.platform?.os === 'linux' && c.platform.architecture === 'amd64');
      const cm = child && this.o.manifests.get(child.digest);
      if (!cm) return this.fail(x, 'MANIFEST_UNKNOWN');
      m = cm;
    }
    const etag = `"${m.digest}"`;
    x.res.setHeader('Docker-Content-Digest', m.digest);
    x.res.setHeader('Etag', etag);
    if (matchesEtag(x.req, etag)) {
      x.res.statusCode = 304;
      x.res.end();
      return;
    }
    x.res.statusCode = 200;
    x.res.setHeader('Content-Type', m.mediaType);
    x.res.setHeader('Content-Length', m.bytes.length);
    if (x.req.method === 'HEAD') {
      x.res.end();
      return;
    }
    x.res.end(m.bytes);
    x.bytes += m.bytes.length;
  }

  // ---------------------------------------------------------- blobs

  private async blob(x: Exchange, repo: Repository, ref: string): Promise<void> {
    if (!isDigest(ref)) return this.fail(x, 'DIGEST_INVALID', 'invalid digest', { digest: printable(ref, 100) });
    const blob = repo.hasBlob(ref) ? this.o.reader.blob(ref) : undefined;
    if (!blob) return this.fail(x, 'BLOB_UNKNOWN', undefined, { digest: ref });
    const failed = this.o.blobs.failure(ref);
    if (failed) return this.failedBlob(x, blob, failed.message);
    const { res, req } = x;
    const etag = `"${blob.digest}"`;
    res.setHeader('Docker-Content-Digest', blob.digest);
    res.setHeader('Etag', etag);
    res.setHeader('Cache-Control', BLOB_CACHE_CONTROL);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Content-Type', 'application/octet-stream');
    if (matchesEtag(req, etag)) {
      res.statusCode = 304;
      res.end();
      return;
    }
    const ifRange = req.headers['if-range'];
    const range = ifRange === undefined || ifRange === etag ? parseRange(req.headers.range, blob.size) : undefined;
    if (range === 'unsatisfiable') {
      const body = Buffer.from('invalid range: failed to overlap\n');
      res.statusCode = 416;
      res.setHeader('Content-Range', `bytes */${blob.size}`);
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.setHeader('Content-Length', body.length);
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (req.method === 'HEAD') {
      res.statusCode = 200;
      res.setHeader('Content-Length', blob.size);
      res.end();
      return;
    }
    let streams: Readable[];
    if (range) {
      try {
        streams = [await this.o.blobs.range(blob, range.start, range.end)];
      } catch (e) {
        return this.failedBlob(x, blob, asFerryError(e).message);
      }
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`);
      res.setHeader('Content-Length', range.end - range.start + 1);
    } else {
      streams = await this.o.blobs.whole(blob);
      res.statusCode = 200;
      res.setHeader('Content-Length', blob.size);
    }
    streams[streams.length - 1]!.on('data', (c: Buffer) => {
      x.bytes += c.length;
    });
    try {
      await pipeline([...streams, res]);
    } catch {
      // The client went away, or verification cut the response: pipeline has already destroyed the connection.
      x.cut = true;
    }
  }

  private failedBlob(x: Exchange, blob: StoredBlob, why: string): void {
    x.res.removeHeader('Accept-Ranges');
    this.fail(x, 'UNKNOWN', `blob ${blob.digest} failed verification and is not served: ${why}`, { digest: blob.digest });
  }

  // ---------------------------------------------------------- referrers

  private referrers(x: Exchange, repo: Repository, ref: string, query: URLSearchParams): void {
    if (!isDigest(ref)) return this.fail(x, 'DIGEST_INVALID', 'invalid digest', { digest: printable(ref, 100) });
    const artifactType = query.get('artifactType') ?? undefined;
    const manifests = repo.referrers(ref, artifactType);
    this.json(x, 200, { schemaVersion: 2, mediaType: MT.ociIndex, manifests }, MT.ociIndex, artifactType !== undefined ? { 'OCI-Filters-Applied': 'artifactType' } : {});
  }
}

/** The media types an Accept header names, `;q=` parameters dropped (distribution's own reading). */
function accepted(req: IncomingMessage): Set<string> {
  const out = new Set<string>();
  const values = req.headersDistinct['accept'] ?? [];
  for (const v of values) for (const part of v.split(',')) out.add(part.split(';')[0]!.trim());
  return out;
}

function matchesEtag(req: IncomingMessage, etag: string): boolean {
  const inm = req.headers['if-none-match'];
  return inm !== undefined && inm.split(',').some((t) => t.trim() === etag || t.trim() === '*');
}

/** Up to `n` items after `last` (byte order), and whether more follow. */
function paginate(sorted: string[], n: number, last: string | null): { items: string[]; more: boolean } {
  const from = last === null ? 0 : sorted.findIndex((s) => s > last);
  const rest = from < 0 ? [] : sorted.slice(from);
  const items = rest.slice(0, n);
  return { items, more: n > 0 && rest.length > items.length };
}

/** distribution's Link header: the same path, `last` and `n` in Go's sorted query order. */
function nextLink(path: string, n: number, items: string[]): string {
  const q = new URLSearchParams({ last: items[items.length - 1]!, n: String(n) });
  return `<${path}?${q.toString()}>; rel="next"`;
}

/** Request text echoed back or logged: printable ASCII only, bounded. */
export function printable(text: string, max: number): string {
  const safe = text.slice(0, max).replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return text.length > max ? `${safe}...` : safe;
}
