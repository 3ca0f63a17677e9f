// Writes images straight into a distribution v2.8 registry storage tree (the layout in
// shared/ARCHITECTURE.md "Registry storage"), for corpora too large to push over HTTP in
// reasonable time. Independent of src/: the bench's data must not come from the code it
// measures. Only for a fresh tree that no registry serves while it is written.
import { mkdirSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export interface StoredBlob {
  digest: string;
  bytes: Buffer;
}

/** One image (or index, or artifact) as it lands in a repository: what it needs linked there. */
export interface StoredArtifact {
  /** Configs and layers (of the children too, for an index). */
  blobs: StoredBlob[];
  /** Every manifest: children first, the top one last. */
  manifests: StoredBlob[];
  /** Tags pointing at the top manifest. */
  tags: string[];
}

const hexOf = (digest: string): string => {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m) throw new Error(`not a sha256 digest: ${digest}`);
  return m[1]!;
};

export class StorageWriter {
  /** `<root>/docker/registry/v2`. */
  readonly v2: string;
  private readonly written = new Set<string>();
  private readonly dirs = new Set<string>();
  bytes = 0;

  constructor(root: string) {
    this.v2 = join(root, 'docker', 'registry', 'v2');
  }

  private mkdir(dir: string): void {
    if (this.dirs.has(dir)) return;
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    this.dirs.add(dir);
  }

  /** A link file holds exactly `sha256:<hex>`, no newline (the registry parses it strictly). */
  private link(path: string, digest: string): void {
    this.mkdir(path);
    writeFileSync(join(path, 'link'), digest, { mode: 0o644 });
  }

  /** blobs/sha256/<xx>/<hex>/data, once per digest (temp + rename, as the registry does). */
  blob(b: StoredBlob): void {
    if (this.written.has(b.digest)) return;
    const hex = hexOf(b.digest);
    const dir = join(this.v2, 'blobs', 'sha256', hex.slice(0, 2), hex);
    this.mkdir(dir);
    const data = join(dir, 'data');
    if (!existsSync(data)) {
      writeFileSync(`${data}.tmp`, b.bytes, { mode: 0o644 });
      renameSync(`${data}.tmp`, data);
      this.bytes += b.bytes.length;
    }
    this.written.add(b.digest);
  }

  /**
   * In the order a registry's own push leaves things: data → _layers links → child
   * revision links → the top revision → the tag's index link → current/link last.
   * v2.8's catalog lists a repository by its _layers; v3 by _manifests: both are written.
   */
  put(repository: string, a: StoredArtifact): void {
    const repo = join(this.v2, 'repositories', ...repository.split('/'));
    for (const b of a.blobs) this.blob(b);
    for (const m of a.manifests) this.blob(m);
    for (const b of a.blobs) this.link(join(repo, '_layers', 'sha256', hexOf(b.digest)), b.digest);
    for (const m of a.manifests) this.link(join(repo, '_manifests', 'revisions', 'sha256', hexOf(m.digest)), m.digest);
    const top = a.manifests[a.manifests.length - 1]!.digest;
    for (const tag of a.tags) {
      this.link(join(repo, '_manifests', 'tags', tag, 'index', 'sha256', hexOf(top)), top);
      this.link(join(repo, '_manifests', 'tags', tag, 'current'), top);
    }
  }
}
