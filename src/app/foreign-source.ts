import type { Readable } from 'node:stream';
import { asFerryError, FerryError } from '../errors.js';
import { HttpClient } from '../net/http.js';
import { type Descriptor, isForeignLayer } from '../oci/manifest.js';
import type { ImageSource, OpOptions } from '../transports/types.js';
import { connectionFor, type RegistryAccess } from './registry-access.js';

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

/**
 * `export --include-foreign`: foreign (non-distributable) layers come from the
 * `urls` of their descriptors when the source does not have them (a registry
 * may not store them: it answers 404). Everything else is the wrapped source's.
 * The URLs are reached under the same rules as registries: TLS verified unless
 * `--insecure`/`--insecure-registry HOST`, `--ca-file`, and plain `http://`
 * only to hosts named with `--plain-http`; no credentials are ever sent. The
 * bytes are unverified, as from any source: the engine's one verifier checks
 * them against the descriptor's digest and size.
 */
export class ForeignLayerSource implements ImageSource {
  readonly description: string;
  private readonly clients = new Map<string, HttpClient>();

  constructor(private readonly inner: ImageSource, private readonly access: RegistryAccess) {
    this.description = inner.description;
  }

  getManifest(repository: string, reference: string, opts?: OpOptions): ReturnType<ImageSource['getManifest']> {
    return this.inner.getManifest(repository, reference, opts);
  }

  async getBlob(repository: string, desc: Descriptor, opts: OpOptions = {}): Promise<Readable> {
    if (!isForeignLayer(desc)) return this.inner.getBlob(repository, desc, opts);
    try {
      return await this.inner.getBlob(repository, desc, opts);
    } catch (e) {
      const err = asFerryError(e);
      if (err.code !== 'E_NOT_FOUND' && err.code !== 'E_BLOB_MISSING') throw err;
    }
    return this.fromUrls(desc, opts);
  }

  /** Closes the connections to the URLs; the wrapped source stays its opener's to close. */
  async close(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  /** Each URL in turn, redirects followed (without credentials: none are ever sent here); the first 200 wins. */
  private async fromUrls(desc: Descriptor, opts: OpOptions): Promise<Readable> {
    const tried: string[] = [];
    let network: FerryError | undefined;
    for (const text of desc.urls ?? []) {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        tried.push('an entry that is not a URL');
        continue;
      }
      for (let hop = 0; ; hop++) {
        if (url.protocol !== 'https:' && url.protocol !== 'http:') {
          tried.push(`${displayUrl(url)} (not http or https)`);
          break;
        }
        const connection = connectionFor(this.access, url.host);
        if (url.protocol === 'http:' && !connection.plainHttp) {
          tried.push(`${displayUrl(url)} (plain HTTP: allowed only to hosts named with --plain-http)`);
          break;
        }
        let res;
        try {
          res = await this.clientFor(url.host).request({ method: 'GET', url, signal: opts.signal });
        } catch (e) {
          const err = asFerryError(e);
          if (err.code === 'E_ABORTED') throw err;
          network = err;
          tried.push(`${displayUrl(url)} (${shown(err.message)})`);
          break;
        }
        if (res.status === 200) return res.body;
        res.body.resume();
        const location = res.headers.location;
        if (REDIRECTS.has(res.status) && typeof location === 'string' && hop < MAX_REDIRECTS) {
          url = new URL(location, url);
          continue;
        }
        tried.push(`${displayUrl(url)} (HTTP ${res.status})`);
        break;
      }
    }
    const code = network && tried.length === 1 ? network.code : 'E_NOT_FOUND';
    throw new FerryError(code, `foreign layer ${desc.digest} is in no registry, and none of its URLs served it: ${tried.join('; ') || 'it has none'}`, {
      hint: 'check that this machine can reach those URLs (and --plain-http HOST for http:// ones), or export without --include-foreign: the bundle then carries the layer\'s descriptor only',
      details: { digest: desc.digest, urls: tried },
    });
  }

  private clientFor(host: string): HttpClient {
    let c = this.clients.get(host);
    if (!c) {
      const conn = connectionFor(this.access, host);
      c = new HttpClient({
        insecure: conn.insecure,
        ...(conn.caFile !== undefined ? { caFile: conn.caFile } : {}),
        ...(conn.connect !== undefined ? { connect: conn.connect } : {}),
        ...(conn.connectTimeoutMs !== undefined ? { connectTimeoutMs: conn.connectTimeoutMs } : {}),
        ...(conn.idleTimeoutMs !== undefined ? { idleTimeoutMs: conn.idleTimeoutMs } : {}),
      });
      this.clients.set(host, c);
    }
    return c;
  }
}

/**
 * Why a foreign layer cannot be fetched under the user's rules, known from its
 * descriptor alone (so an export can refuse before its first byte): none of its
 * URLs is https, or http to a host named with --plain-http. Undefined when one is.
 */
export function unusableUrls(desc: Descriptor, access: RegistryAccess): string | undefined {
  const why: string[] = [];
  for (const text of desc.urls ?? []) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      why.push('an entry that is not a URL');
      continue;
    }
    if (url.protocol === 'https:') return undefined;
    if (url.protocol === 'http:' && connectionFor(access, url.host).plainHttp) return undefined;
    why.push(url.protocol === 'http:' ? `${displayUrl(url)} (plain HTTP: allowed only to hosts named with --plain-http)` : `${displayUrl(url)} (not http or https)`);
  }
  return why.join('; ') || 'it has no URLs';
}

/** A URL from a manifest is remote text: no user info, no query (signed URLs carry tokens there), no control characters. */
export function displayUrl(url: URL): string {
  return shown(`${url.protocol}//${url.host}${url.pathname}${url.search ? '?…' : ''}`);
}

function shown(text: string): string {
   
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').slice(0, 300);
}
