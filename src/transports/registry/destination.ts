import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { discard } from '../../net/http.js';
import { type Digest, digestStream, isDigest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, MANIFEST_MAX_BYTES } from '../../oci/manifest.js';
import { MANIFEST_ACCEPT } from '../../oci/media-types.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import { pullScope, pushScope, type RegistryClient } from './client.js';

/** The largest PATCH chunk (held in memory) a registry's OCI-Chunk-Min-Length may ask for. */
const CHUNK_MAX_BYTES = 64 * 1024 * 1024;

/** Pushes blobs and manifests to one registry over the distribution API. */
export class RegistryDestination implements ImageDestination {
  readonly description: string;
  // Uploads run as --jobs says (up to 32 at once): over a WAN link each waits mostly on round trips.
  readonly capabilities: DestinationCapabilities = { concurrentBlobs: 32, globalBlobs: false };

  constructor(private readonly client: RegistryClient) {
    this.description = `registry ${client.registry}`;
  }

  async hasBlob(repository: string, desc: Descriptor, opts: OpOptions = {}): Promise<boolean> {
    return this.exists(`/v2/${repository}/blobs/${desc.digest}`, repository, `blob ${desc.digest} in ${this.name(repository)}`, {}, opts);
  }

  async hasManifest(repository: string, digest: Digest, opts: OpOptions = {}): Promise<boolean> {
    return this.exists(`/v2/${repository}/manifests/${digest}`, repository, `manifest ${this.name(repository)}@${digest}`, { accept: MANIFEST_ACCEPT }, opts);
  }

  /**
   * The image is here whole: its tag (or its digest, for a digest-only image)
   * names this manifest. The registry accepted that manifest only with every
   * blob and child manifest it references in the repository, so one HEAD
   * stands for all of them (a re-push of 10,000 images: 10,000 requests, not
   * ~70,000).
   */
  async hasImage(image: ImageRecord, opts: OpOptions = {}): Promise<boolean> {
    const { repository, tag, manifest } = image;
    if (tag === undefined) return this.hasManifest(repository, manifest.digest, opts);
    return (await this.resolveTag(repository, tag, opts)) === manifest.digest;
  }

  /**
   * The digest `repository:tag` points at now, or undefined when the tag (or the
   * repository) does not exist: what push compares before moving a tag.
   */
  async resolveTag(repository: string, tag: string, opts: OpOptions = {}): Promise<Digest | undefined> {
    const what = `tag ${this.name(repository)}:${tag}`;
    const req = { url: `/v2/${repository}/manifests/${encodeURIComponent(tag)}`, scopes: [pushScope(repository)], headers: { accept: MANIFEST_ACCEPT }, signal: opts.signal };
    const head = await this.client.expect({ ...req, method: 'HEAD' }, [200, 404], what);
    await discard(head.body);
    if (head.status === 404) return undefined;
    const stated = head.headers['docker-content-digest'];
    if (typeof stated === 'string' && isDigest(stated)) return stated;
    // Docker-Content-Digest is optional in the OCI spec: hash the manifest itself (small JSON).
    const get = await this.client.expect({ ...req, method: 'GET' }, [200, 404], what);
    if (get.status === 404) {
      await discard(get.body);
      return undefined;
    }
    // Hashed as it streams, but no further than a manifest can be: a registry that never stops sending must not hold the push.
    const hashed = await digestStream(get.body, { maxBytes: MANIFEST_MAX_BYTES, signal: opts.signal });
    if (!hashed) {
      throw new FerryError('E_MANIFEST_INVALID', `${what}: the manifest is larger than ${MANIFEST_MAX_BYTES} bytes`, {
        hint: 'manifests are small JSON documents; this registry sent something else', details: { image: `${this.name(repository)}:${tag}` },
      });
    }
    return hashed.digest;
  }

  async mountBlob(repository: string, desc: Descriptor, fromRepository: string, opts: OpOptions = {}): Promise<boolean> {
    const url = `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(fromRepository)}`;
    const res = await this.client.expect(
      { method: 'POST', url, scopes: [pushScope(repository), pullScope(fromRepository)], body: Buffer.alloc(0), signal: opts.signal },
      [201, 202],
      `mounting blob ${desc.digest} from ${fromRepository} into ${this.name(repository)}`,
    );
    await discard(res.body);
    if (res.status === 201) return true;
    // 202: the registry opened an ordinary upload instead; we do not want it. An unusable Location is left to the registry to purge.
    const location = res.headers.location;
    let upload: URL | undefined;
    try {
      upload = location ? this.client.resolve(location, res.url, 'mount') : undefined;
    } catch {
      upload = undefined;
    }
    if (upload) await this.cancelUpload(upload, repository);
    return false;
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    const what = `upload of blob ${desc.digest} to ${this.name(repository)}`;
    const scopes = [pushScope(repository)];
    const start = await this.client.expect(
      { method: 'POST', url: `/v2/${repository}/blobs/uploads/`, scopes, body: Buffer.alloc(0), signal: opts.signal },
      [202],
      what,
    );
    await discard(start.body);
    let location = this.client.location(start, what);
    try {
      let body: Buffer | Readable = data;
      const minChunk = Number(start.headers['oci-chunk-min-length']) || 0;
      // Each chunk is held in memory: a registry may raise the size, not make us hold a whole layer.
      if (this.client.chunkSize !== undefined && minChunk > CHUNK_MAX_BYTES) {
        throw new FerryError('E_REGISTRY', `${what}: registry ${this.client.registry} wants chunks of at least ${minChunk} bytes (OCI-Chunk-Min-Length), more than the ${CHUNK_MAX_BYTES} ferry holds in memory`, {
          hint: 'upload without chunks (a plain streamed PUT), or ask the registry administrator to lower the minimum', details: { registry: this.client.registry },
        });
      }
      if (this.client.chunkSize !== undefined) {
        const chunked = await this.patchChunks(location, data, Math.max(this.client.chunkSize, minChunk), scopes, what, opts);
        location = chunked.location;
        body = chunked.rest;
      }
      const put = new URL(location);
      put.searchParams.set('digest', desc.digest);
      const size = Buffer.isBuffer(body) ? body.length : desc.size;
      const res = await this.client.expect(
        { method: 'PUT', url: put, scopes, body, headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) }, signal: opts.signal },
        [201],
        what,
      );
      await discard(res.body);
    } catch (e) {
      await this.cancelUpload(location, repository);
      throw e;
    }
  }

  async putManifest(repository: string, manifest: Manifest, opts: OpOptions = {}): Promise<void> {
    await this.pushManifest(repository, manifest.digest, manifest, opts);
  }

  async putImage(image: ImageRecord, opts: OpOptions = {}): Promise<void> {
    // A digest-only image is complete once its manifest is in: there is nothing to name.
    if (image.tag !== undefined) await this.pushManifest(image.repository, image.tag, image.manifest, opts);
  }

  async commit(): Promise<void> {}

  async close(): Promise<void> {
    this.client.close();
  }

  private name(repository: string): string {
    return `${this.client.registry}/${repository}`;
  }

  private async exists(url: string, repository: string, what: string, headers: Record<string, string>, opts: OpOptions): Promise<boolean> {
    const res = await this.client.expect({ method: 'HEAD', url, scopes: [pushScope(repository)], headers, signal: opts.signal }, [200, 404], what);
    await discard(res.body);
    return res.status === 200;
  }

  private async pushManifest(repository: string, reference: string, manifest: Manifest, opts: OpOptions): Promise<void> {
    const image = `${this.name(repository)}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const res = await this.client.expect(
      {
        method: 'PUT',
        url: `/v2/${repository}/manifests/${reference}`,
        scopes: [pushScope(repository)],
        headers: { 'content-type': manifest.mediaType },
        body: manifest.bytes,
        signal: opts.signal,
      },
      [201],
      `pushing manifest ${image}`,
    );
    await discard(res.body);
    const stored = res.headers['docker-content-digest'];
    if (typeof stored === 'string' && stored.startsWith('sha256:') && stored !== manifest.digest) {
      throw new FerryError('E_DIGEST_MISMATCH', `${image}: the registry stored the manifest as ${stored}, not ${manifest.digest}`, {
        hint: 'the registry rewrote the manifest (or something between it and you altered it); the pushed image would not match its source',
        details: { image, expected: manifest.digest, actual: stored },
      });
    }
  }

  /**
   * Sends the blob in PATCH requests of at least `chunkSize` bytes (one chunk
   * in memory at a time) and returns the upload's latest Location and the
   * bytes left over for the closing PUT.
   */
  private async patchChunks(start: URL, data: Readable, chunkSize: number, scopes: string[], what: string, opts: OpOptions): Promise<{ location: URL; rest: Buffer }> {
    let location = start;
    let offset = 0;
    let pending: Buffer[] = [];
    let pendingSize = 0;
    for await (const chunk of data as AsyncIterable<Buffer>) {
      pending.push(chunk);
      pendingSize += chunk.length;
      if (pendingSize < chunkSize) continue;
      const body = Buffer.concat(pending, pendingSize);
      pending = [];
      pendingSize = 0;
      const res = await this.client.expect(
        {
          method: 'PATCH',
          url: location,
          scopes,
          body,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + body.length - 1}` },
          signal: opts.signal,
        },
        [202],
        what,
      );
      await discard(res.body);
      location = this.client.location(res, what);
      offset += body.length;
    }
    return { location, rest: Buffer.concat(pending, pendingSize) };
  }

  /** Best effort: a session left behind is purged by the registry later anyway. */
  private async cancelUpload(url: URL, repository: string): Promise<void> {
    await this.client.send({ method: 'DELETE', url, scopes: [pushScope(repository)] }).then((r) => discard(r.body), () => undefined);
  }
}
