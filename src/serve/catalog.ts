import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import type { ServedContent, ServedImage, ServedManifest } from './content.js';

/**
 * The served names as a registry holds them: per repository its tags, the
 * manifests reachable from its images (index children and referrers
 * included) and the configs and layers those need. As in distribution, a
 * manifest or blob is served only in a repository whose images reach it.
 */
export interface Repository {
  name: string;
  /** Sorted in byte order, as distribution lists them. */
  tags: string[];
  tag(tag: string): Digest | undefined;
  hasManifest(digest: Digest): boolean;
  hasBlob(digest: Digest): boolean;
  /** OCI 1.1 referrers of `subject` among this repository's manifests, optionally of one artifactType. */
  referrers(subject: Digest, artifactType?: string): Descriptor[];
}

export class Catalog {
  private readonly repos = new Map<string, RepositoryEntry>();
  /** Repository names in byte order (the `_catalog` order). */
  readonly names: string[];

  constructor(content: Pick<ServedContent, 'images' | 'manifests'>) {
    for (const image of content.images) {
      let repo = this.repos.get(image.repository);
      if (!repo) this.repos.set(image.repository, repo = new RepositoryEntry(image.repository, content.manifests));
      repo.add(image);
    }
    this.names = [...this.repos.keys()].sort(byteOrder);
  }

  repository(name: string): Repository | undefined {
    return this.repos.get(name);
  }
}

class RepositoryEntry implements Repository {
  private readonly tagMap = new Map<string, Digest>();
  private readonly manifests = new Set<Digest>();
  private readonly blobs = new Set<Digest>();
  private sortedTags: string[] | undefined;

  constructor(readonly name: string, private readonly all: ReadonlyMap<Digest, ServedManifest>) {}

  add(image: ServedImage): void {
    if (image.tag !== undefined) this.tagMap.set(image.tag, image.digest);
    this.sortedTags = undefined;
    const visit = (d: Digest, depth: number): void => {
      const m = this.all.get(d);
      if (!m || depth > 8 || this.manifests.has(d)) return;
      this.manifests.add(d);
      for (const c of m.parsed.manifests) visit(c.digest, depth + 1);
      if (m.parsed.config) this.blobs.add(m.parsed.config.digest);
      for (const l of m.parsed.layers) this.blobs.add(l.digest);
    };
    visit(image.digest, 0);
  }

  get tags(): string[] {
    return (this.sortedTags ??= [...this.tagMap.keys()].sort(byteOrder));
  }

  tag(tag: string): Digest | undefined {
    return this.tagMap.get(tag);
  }

  hasManifest(digest: Digest): boolean {
    return this.manifests.has(digest);
  }

  hasBlob(digest: Digest): boolean {
    return this.blobs.has(digest);
  }

  referrers(subject: Digest, artifactType?: string): Descriptor[] {
    const out: Descriptor[] = [];
    for (const d of this.manifests) {
      const m = this.all.get(d)!;
      if (m.parsed.subject?.digest !== subject) continue;
      // The image spec's rule: a manifest's artifactType, else its config's media type.
      const type = m.parsed.artifactType ?? m.parsed.config?.mediaType;
      if (artifactType !== undefined && type !== artifactType) continue;
      out.push({
        mediaType: m.mediaType, digest: m.digest, size: m.bytes.length,
        ...(type !== undefined ? { artifactType: type } : {}),
        ...(m.parsed.annotations ? { annotations: m.parsed.annotations } : {}),
      });
    }
    return out.sort((a, b) => byteOrder(a.digest, b.digest));
  }
}

export function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
