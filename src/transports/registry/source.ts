import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { discard, readCapped } from '../../net/http.js';
import { registryError } from '../../net/registry-error.js';
import { isDigest } from '../../oci/digest.js';
import type { Digest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, MANIFEST_MAX_BYTES, manifestFromBytes, manifestWithDigest, parseManifest } from '../../oci/manifest.js';
import { isManifestMediaType, MANIFEST_ACCEPT, MT } from '../../oci/media-types.js';
import type { ImageSource, OpOptions } from '../types.js';
import { pullScope, type RegistryClient } from './client.js';
import { PageTrail, REFERRER_PAGES_MAX } from './pages.js';

/** Pulls manifests and blobs from one registry over the distribution API. */
export class RegistrySource implements ImageSource {
  readonly description: string;

  constructor(private readonly client: RegistryClient) {
    this.description = `registry ${client.registry}`;
  }

  async getManifest(repository: string, reference: string, opts: OpOptions = {}): Promise<Manifest> {
    const image = `${this.client.registry}/${repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    const res = await this.client.expect(
      { method: 'GET', url: `/v2/${repository}/manifests/${reference}`, scopes: [pullScope(repository)], headers: { accept: MANIFEST_ACCEPT }, signal: opts.signal },
      [200],
      `manifest of ${image}`,
    );
    const tooLarge = (): FerryError =>
      new FerryError('E_MANIFEST_INVALID', `${image}: manifest is larger than ${MANIFEST_MAX_BYTES} bytes`, {
        hint: 'manifests are small JSON documents; this registry sent something else',
        details: { image },
      });
    if (Number(res.headers['content-length']) > MANIFEST_MAX_BYTES) {
      res.body.destroy();
      throw tooLarge();
    }
    const bytes = await readCapped(res.body, MANIFEST_MAX_BYTES);
    if (!bytes) throw tooLarge();

    const mediaType = mediaTypeOf(res.headers['content-type'], bytes);
    const manifest = isDigest(reference)
      ? manifestWithDigest(bytes, mediaType, { digest: reference, where: image, hint: 'the registry (or something between it and you) altered the manifest; do not trust this source' })
      : manifestFromBytes(bytes, mediaType);
    const claimed = res.headers['docker-content-digest'];
    // Only sha256 can be compared: a registry may name another algorithm.
    if (typeof claimed === 'string' && claimed.startsWith('sha256:') && claimed !== manifest.digest) {
      throw new FerryError('E_DIGEST_MISMATCH', `${image}: manifest content hashes to ${manifest.digest}, but the registry says ${claimed}`, {
        hint: 'the registry (or something between it and you) altered the manifest; do not trust this source',
        details: { image, expected: claimed, actual: manifest.digest },
      });
    }
    return manifest;
  }

  async getBlob(repository: string, desc: Descriptor, opts: OpOptions = {}): Promise<Readable> {
    return (await this.getBlobFrom(repository, desc, 0, opts)).stream;
  }

  /**
   * The blob from byte `offset` on (`Range: bytes=N-`), for resuming a cut-off
   * fetch. `offset` in the answer is where the stream really starts: 0 when the
   * registry (or a redirect target) ignored the range and sent the whole blob,
   * or could not satisfy it (416).
   */
  async getBlobFrom(repository: string, desc: Descriptor, offset: number, opts: OpOptions = {}): Promise<{ stream: Readable; offset: number }> {
    const what = `blob ${desc.digest} of ${this.client.registry}/${repository}`;
    const request = (headers?: Record<string, string>) => ({
      method: 'GET' as const, url: `/v2/${repository}/blobs/${desc.digest}`, scopes: [pullScope(repository)], signal: opts.signal, ...(headers ? { headers } : {}),
    });
    if (offset <= 0 || offset >= desc.size) return { stream: (await this.client.expect(request(), [200], what)).body, offset: 0 };
    const res = await this.client.expect(request({ range: `bytes=${offset}-` }), [200, 206, 416], what);
    if (res.status === 206) {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? '').trim());
      if (range && Number(range[1]) === offset) return { stream: res.body, offset };
      // A range we did not ask for cannot be spliced onto the prefix: start over.
      res.body.destroy();
    } else if (res.status === 200) {
      return { stream: res.body, offset: 0 };
    } else {
      await discard(res.body);
    }
    return { stream: (await this.client.expect(request(), [200], what)).body, offset: 0 };
  }

  /**
   * The OCI 1.1 referrers API: descriptors of the manifests whose `subject` is
   * `digest`, following `Link: rel="next"` pages. `undefined` when the registry
   * has no such API (404, as distribution 2.8 answers): the caller then falls
   * back to the `sha256-<hex>` tag the OCI 1.1 spec defines for such registries.
   */
  async referrers(repository: string, digest: Digest, opts: OpOptions = {}): Promise<Descriptor[] | undefined> {
    const where = `referrers of ${this.client.registry}/${repository}@${digest}`;
    const out: Descriptor[] = [];
    const trail = new PageTrail(this.client, `referrers of ${repository}@${digest}`, REFERRER_PAGES_MAX);
    let url: string | URL | undefined = `/v2/${repository}/referrers/${digest}`;
    for (let page = 0; url !== undefined; page++) {
      trail.enter(url);
      const res = await this.client.send({ method: 'GET', url, scopes: [pullScope(repository)], headers: { accept: MT.ociIndex }, signal: opts.signal });
      // Unsupported shows up as 404 (no route) or, from some proxies, 400/405: none is an error for the image.
      if (page === 0 && (res.status === 404 || res.status === 400 || res.status === 405)) {
        await discard(res.body);
        return undefined;
      }
      if (res.status !== 200) throw await registryError(res, where);
      const bytes = await readCapped(res.body, MANIFEST_MAX_BYTES);
      if (!bytes) throw new FerryError('E_MANIFEST_INVALID', `${where}: answer is larger than ${MANIFEST_MAX_BYTES} bytes`, { hint: 'the registry sent something other than a referrers index', details: { image: `${repository}@${digest}` } });
      for (const m of parseManifest(bytes, MT.ociIndex, where).manifests) out.push(m);
      url = trail.next(res);
    }
    return out;
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

/** The Content-Type when it names a manifest kind; otherwise (`application/json`, none) the document's own mediaType field. */
function mediaTypeOf(contentType: string | undefined, bytes: Buffer): string {
  const header = contentType?.split(';')[0]?.trim() ?? '';
  if (isManifestMediaType(header)) return header;
  try {
    const field = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    if (typeof field === 'string') return field;
  } catch {
    // not JSON: the engine's manifest parser reports it
  }
  return header;
}
