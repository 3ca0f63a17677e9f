import { open, stat } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseManifest } from '../oci/manifest.js';
import { VerifyStream } from '../stream/verify.js';
import { OciLayoutSource } from '../transports/oci-layout/source.js';
import { blobPath } from '../transports/oci-layout/paths.js';
import { StorageLayoutSource } from '../transports/storage/source.js';
import { blobDataPath } from '../transports/storage/paths.js';
import { listRepositories, listRevisions } from '../transports/storage/walk.js';
import type { ImageSource } from '../transports/types.js';
import type { BlobReader, ServedManifest, StoredBlob } from './content.js';

/**
 * A registry storage layout (`--layout`) or an OCI layout (`--oci`) served
 * like a bundle (spec/serve.md §2.4). What it holds is read through the
 * layout's own source — tags, revision and `_layers` links, manifests checked
 * against their digests — once, at startup. Blob bytes are then read as
 * ranges of the blob file the layout's own path function names for the digest
 * (no other path is ever built); each file's identity (inode, size, mtime) is
 * taken at startup, and a file that changed afterwards is not served.
 */

export type LayoutKind = 'registry-layout' | 'oci';

/** An image the layout holds, by its own (unmapped) repository name. */
export interface LayoutImage {
  repository: string;
  tag?: string;
  digest: Digest;
}

export interface OpenedLayout {
  images: LayoutImage[];
  manifests: Map<Digest, ServedManifest>;
  verified: Set<Digest>;
  reader: BlobReader;
  /** Images left out, with why (a missing blob): served layouts are often partly garbage-collected. */
  skipped: { image: LayoutImage; why: string }[];
}

interface FileBlob extends StoredBlob {
  path: string;
  identity: string;
}

export async function openLayout(kind: LayoutKind, root: string, signal?: AbortSignal): Promise<OpenedLayout> {
  const isDir = await stat(root).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new FerryError('E_NOT_FOUND', `${root}: no such directory`, { hint: kind === 'oci' ? 'give the directory holding oci-layout and index.json' : 'give the registry\'s rootdirectory (the folder holding docker/registry/v2)', details: { file: root } });
  const source: ImageSource = kind === 'oci' ? new OciLayoutSource(root) : new StorageLayoutSource(root);
  const pathOf = (d: Digest): string => (kind === 'oci' ? blobPath(root, d) : blobDataPath(root, d));
  const listed: LayoutImage[] = (await source.listImages!()).map((i) => ({ repository: i.repository, digest: i.digest, ...(i.tag !== undefined ? { tag: i.tag } : {}) }));
  if (kind === 'registry-layout') {
    // Untagged revisions too: referrers (signatures, SBOMs) live there, found by their subject.
    for (const repository of await listRepositories(root)) {
      for (const digest of await listRevisions(root, repository)) {
        if (!listed.some((i) => i.repository === repository && i.digest === digest)) listed.push({ repository, digest });
      }
    }
  }
  const manifests = new Map<Digest, ServedManifest>();
  const blobs = new Map<Digest, FileBlob>();
  const verified = new Set<Digest>();
  const images: LayoutImage[] = [];
  const skipped: OpenedLayout['skipped'] = [];
  for (const image of listed) {
    signal?.throwIfAborted();
    try {
      await walk(source, image.repository, image.digest, manifests, blobs, pathOf, 0);
      images.push(image);
    } catch (e) {
      if (!(e instanceof FerryError) || !['E_BLOB_MISSING', 'E_NOT_FOUND', 'E_SIZE_MISMATCH'].includes(e.code)) throw e;
      skipped.push({ image, why: e.message });
    }
  }
  const reader = new LayoutBlobReader(source.description, blobs);
  // Configs are small: hashed now, then served as verified.
  for (const m of manifests.values()) {
    const config = m.parsed.config;
    if (!config || verified.has(config.digest) || !blobs.has(config.digest)) continue;
    const blob = blobs.get(config.digest)!;
    const body = blob.size === 0 ? Readable.from([]) : await reader.read(blob, 0, blob.size - 1);
    await pipeline(body, new VerifyStream(blob, `${source.description}: config`), new PassThrough().resume());
    verified.add(config.digest);
  }
  return { images, manifests, verified, reader, skipped };
}

/** Manifests through the source (links and digests checked), blobs by their file's size. */
async function walk(source: ImageSource, repository: string, digest: Digest, manifests: Map<Digest, ServedManifest>, blobs: Map<Digest, FileBlob>, pathOf: (d: Digest) => string, depth: number): Promise<void> {
  if (depth > 8) throw new FerryError('E_MANIFEST_INVALID', `${source.description}: ${repository}@${digest}: indexes nest deeper than 8 levels`);
  let m = manifests.get(digest);
  if (!m) {
    const got = await source.getManifest(repository, digest);
    m = { ...got, parsed: parseManifest(got.bytes, got.mediaType, `${source.description}: ${repository}@${digest}`) };
  }
  for (const child of m.parsed.manifests) await walk(source, repository, child.digest, manifests, blobs, pathOf, depth + 1);
  for (const desc of [...(m.parsed.config ? [m.parsed.config] : []), ...m.parsed.layers]) {
    if (blobs.has(desc.digest)) continue;
    // The source's own check that the blob belongs to the repository (a `_layers` link in a registry layout).
    (await source.getBlob(repository, desc)).destroy();
    const path = pathOf(desc.digest);
    const st = await stat(path);
    if (st.size !== desc.size) {
      throw new FerryError('E_SIZE_MISMATCH', `${source.description}: blob ${desc.digest} is ${st.size} bytes, its manifest says ${desc.size}`, { hint: 'the layout is damaged; re-import the image', details: { digest: desc.digest, file: path } });
    }
    blobs.set(desc.digest, { digest: desc.digest, size: desc.size, path, identity: identity(st) });
  }
  manifests.set(digest, m);
}

function identity(st: { ino: number; size: number; mtimeMs: number }): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}`;
}

class LayoutBlobReader implements BlobReader {
  constructor(readonly description: string, private readonly blobs: ReadonlyMap<Digest, FileBlob>) {}

  blob(digest: Digest): StoredBlob | undefined {
    return this.blobs.get(digest);
  }

  async read(blob: StoredBlob, start: number, end: number): Promise<Readable> {
    const b = this.blobs.get(blob.digest)!;
    const handle = await open(b.path, 'r');
    try {
      if (identity(await handle.stat()) !== b.identity) {
        throw new FerryError('E_IO', `${this.description}: blob ${b.digest} changed on disk while being served (${b.path})`, {
          hint: 'something rewrote the layout under a running `ferry serve` (a garbage collection, an import); restart it', details: { digest: b.digest, file: b.path },
        });
      }
    } catch (e) {
      await handle.close();
      throw e;
    }
    return handle.createReadStream({ start, end, highWaterMark: 256 * 1024 });
  }

  async close(): Promise<void> {}
}
