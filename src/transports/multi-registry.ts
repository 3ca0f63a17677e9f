import type { Readable } from 'node:stream';
import { FerryError } from '../errors.js';
import type { Descriptor, Manifest } from '../oci/manifest.js';
import { splitQualifiedName } from '../oci/reference.js';
import type { ImageSource, OpOptions } from './types.js';

/**
 * One source over every registry an image list names. Repositories here are
 * registry-qualified (`quay.io/calico/node`), the same names a bundle stores, so
 * an export is a single copy whatever mix of registries the list holds.
 */
export class MultiRegistrySource implements ImageSource {
  readonly description = 'registries';
  private readonly sources = new Map<string, ImageSource>();

  constructor(private readonly open: (registry: string) => ImageSource) {}

  private route(qualified: string): { source: ImageSource; repository: string } {
    const { registry, repository } = splitQualifiedName(qualified);
    if (registry === undefined) {
      throw new FerryError('E_INTERNAL', `${qualified}: repository has no registry part`);
    }
    let source = this.sources.get(registry);
    if (!source) {
      source = this.open(registry);
      this.sources.set(registry, source);
    }
    return { source, repository };
  }

  getManifest(repository: string, reference: string, opts?: OpOptions): Promise<Manifest> {
    const r = this.route(repository);
    return r.source.getManifest(r.repository, reference, opts);
  }

  getBlob(repository: string, desc: Descriptor, opts?: OpOptions): Promise<Readable> {
    const r = this.route(repository);
    return r.source.getBlob(r.repository, desc, opts);
  }

  async close(): Promise<void> {
    await Promise.all([...this.sources.values()].map((s) => s.close()));
  }
}
