import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { readCapped } from '../../net/http.js';
import { isDigest } from '../../oci/digest.js';
import { checkManifestDigest, type Descriptor, type Manifest, MANIFEST_MAX_BYTES, manifestFromBytes } from '../../oci/manifest.js';
import { isManifestMediaType, MANIFEST_ACCEPT } from '../../oci/media-types.js';
import type { ImageSource, OpOptions } from '../types.js';
import { pullScope, type RegistryClient } from './client.js';

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

    const manifest = manifestFromBytes(bytes, mediaTypeOf(res.headers['content-type'], bytes));
    if (isDigest(reference)) checkManifestDigest(manifest, reference, image);
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
    const res = await this.client.expect(
      { method: 'GET', url: `/v2/${repository}/blobs/${desc.digest}`, scopes: [pullScope(repository)], signal: opts.signal },
      [200],
      `blob ${desc.digest} of ${this.client.registry}/${repository}`,
    );
    return res.body;
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
