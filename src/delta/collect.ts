import { stat } from 'node:fs/promises';
import { FerryError, isFerryError } from '../errors.js';
import { type Digest, isDigest } from '../oci/digest.js';
import { type Descriptor, type ParsedManifest, isForeignLayer, parseManifest } from '../oci/manifest.js';
import { isValidRepository, isValidTag } from '../oci/reference.js';
import { walkManifests, type WalkNode } from '../oci/walk.js';
import { forEachLimited } from '../copy/pool.js';
import { pullScope, type RegistryClient } from '../transports/registry/client.js';
import { remoteText } from '../net/remote-text.js';
import { CATALOG_PAGES_MAX, INVENTORY_TAGS_MAX, listAll, TAG_LIST_PAGES_MAX } from '../transports/registry/pages.js';
import { blobDataPath } from '../transports/storage/paths.js';
import type { ImageSource, OpOptions } from '../transports/types.js';
import { buildInventory, type Inventory, type InventoryBlob, type InventoryImage } from './inventory.js';

/**
 * Takes inventories of live targets: a registry over the distribution API and
 * a registry storage layout on disk. Only manifests are read; the blobs an
 * inventory lists are those the manifests reference (and, for a layout, whose
 * data file is really there with the declared size).
 */

export interface CollectOptions extends OpOptions {
  jobs?: number;
  /** Problems that leave an image out (the inventory then claims less, which is safe). */
  warn?: (message: string) => void;
}

const LIST_PAGE = 1000;

/** Failures that are facts about one image (gone, or broken at the registry): it is left out, the inventory goes on. */
const IMAGE_FAULTS: ReadonlySet<string> = new Set(['E_NOT_FOUND', 'E_MANIFEST_INVALID', 'E_UNSUPPORTED_MEDIA_TYPE', 'E_DIGEST_MISMATCH', 'E_SIZE_MISMATCH', 'E_NAME_UNSAFE']);

/** Walks an image (index children included) and returns its configs and layers; manifests are parsed once per digest. */
async function blobsOfImage(source: ImageSource, repository: string, reference: string, cache: Map<Digest, ParsedManifest>, opts: OpOptions): Promise<{ digest: Digest; blobs: Descriptor[] }> {
  const load = async (ref: string): Promise<WalkNode> => {
    if (isDigest(ref)) {
      const known = cache.get(ref);
      if (known) return { digest: ref, parsed: known };
    }
    const m = await source.getManifest(repository, ref, opts);
    const parsed = parseManifest(m.bytes, m.mediaType, `${repository}@${m.digest}`);
    cache.set(m.digest, parsed);
    return { digest: m.digest, parsed };
  };
  const root = await load(reference);
  const out = new Map<Digest, Descriptor>();
  for (const { node } of await walkManifests(root, (child) => load(child.digest), `${repository}:${reference}`)) {
    if (node.parsed.config) out.set(node.parsed.config.digest, node.parsed.config);
    // Foreign layers live at their URLs, not at the site (spec/bundle.md §2.2): not part of what it holds or needs.
    for (const l of node.parsed.layers) if (!isForeignLayer(l)) out.set(l.digest, l);
  }
  return { digest: root.digest, blobs: [...out.values()] };
}

/** Inventory of a registry over its API: the catalog, each repository's tags, each tag's manifests. */
export async function inventoryOfRegistry(client: RegistryClient, source: ImageSource, opts: CollectOptions = {}): Promise<Inventory> {
  const host = client.registry;
  const repos = await listAll(client, `/v2/_catalog?n=${LIST_PAGE}`, 'registry:catalog:*', 'repositories', 'catalog', CATALOG_PAGES_MAX, opts);
  const images: InventoryImage[] = [];
  const blobs = new Map<Digest, number>();
  const cache = new Map<Digest, ParsedManifest>();
  const work: { repository: string; tag: string }[] = [];
  for (const repository of repos) {
    if (!isValidRepository(repository)) { opts.warn?.(`registry ${host}: skipping repository ${JSON.stringify(remoteText(repository, 200))}: not a valid name`); continue; }
    const tags = await listAll(client, `/v2/${repository}/tags/list?n=${LIST_PAGE}`, pullScope(repository), 'tags', `tags of ${repository}`, TAG_LIST_PAGES_MAX, opts);
    for (const tag of tags) {
      if (!isValidTag(tag)) { opts.warn?.(`registry ${host}: skipping ${repository} tag ${JSON.stringify(remoteText(tag, 200))}: not a valid tag`); continue; }
      work.push({ repository, tag });
    }
    if (work.length > INVENTORY_TAGS_MAX) {
      throw new FerryError('E_REGISTRY', `registry ${host}: more than ${INVENTORY_TAGS_MAX} tagged images`, {
        hint: 'take the inventory from the registry\'s storage layout (ferry inventory --layout), or of the bundles it was fed (--bundle)', details: { registry: host },
      });
    }
  }
  await forEachLimited(work, opts.jobs ?? 4, async ({ repository, tag }) => {
    try {
      const r = await blobsOfImage(source, repository, tag, cache, opts);
      images.push({ repository, tag, digest: r.digest });
      for (const b of r.blobs) blobs.set(b.digest, b.size);
    } catch (e) {
      // A tag deleted between listing and reading, or a broken manifest: leave it out, so the inventory never claims what is not there.
      // Anything else (a registry answering 5xx, a dropped link, refused credentials) says nothing about the image: the
      // inventory could not be taken, and an empty one would end in exit 0.
      if (!isFerryError(e) || !IMAGE_FAULTS.has(e.code)) throw namingImage(e, `${repository}:${tag}`);
      opts.warn?.(`registry ${host}: leaving out ${repository}:${tag}: ${e.message}`);
    }
  }, opts.signal);
  return buildInventory({ source: { kind: 'registry', description: `registry ${host}` }, images, blobs: toBlobs(blobs) });
}

/** Inventory of a registry storage layout: tagged images whose every blob has its data file, with the declared size. */
export async function inventoryOfLayout(source: ImageSource & { root: string }, opts: CollectOptions = {}): Promise<Inventory> {
  const listed = await source.listImages!(opts);
  const images: InventoryImage[] = [];
  const blobs = new Map<Digest, number>();
  const cache = new Map<Digest, ParsedManifest>();
  const present = new Map<Digest, boolean>();
  const hasData = async (d: Descriptor): Promise<boolean> => {
    let ok = present.get(d.digest);
    if (ok === undefined) {
      ok = await stat(blobDataPath(source.root, d.digest)).then((s) => s.isFile() && s.size === d.size, () => false);
      present.set(d.digest, ok);
    }
    return ok;
  };
  await forEachLimited(listed, opts.jobs ?? 4, async (img) => {
    const name = `${img.repository}:${img.tag ?? img.digest}`;
    try {
      const r = await blobsOfImage(source, img.repository, img.tag ?? img.digest, cache, opts);
      const missing: Digest[] = [];
      for (const b of r.blobs) if (!(await hasData(b))) missing.push(b.digest);
      if (missing.length > 0) {
        opts.warn?.(`${source.description}: leaving out ${name}: ${missing.length} blob(s) have no data (${missing[0]}${missing.length > 1 ? ', …' : ''})`);
        for (const b of r.blobs) if (!missing.includes(b.digest)) blobs.set(b.digest, b.size);
        return;
      }
      images.push(img.tag !== undefined ? { repository: img.repository, tag: img.tag, digest: r.digest } : { repository: img.repository, digest: r.digest });
      for (const b of r.blobs) blobs.set(b.digest, b.size);
    } catch (e) {
      if (!isFerryError(e) || e.code === 'E_ABORTED' || e.code === 'E_IO') throw e;
      opts.warn?.(`${source.description}: leaving out ${name}: ${e.message}`);
    }
  }, opts.signal);
  return buildInventory({ source: { kind: 'registry-layout', description: source.description }, images, blobs: toBlobs(blobs) });
}

/** The error with the image it was met on, unless it names it already (or is an interruption, which names nothing). */
function namingImage(e: unknown, image: string): unknown {
  if (!isFerryError(e) || e.code === 'E_ABORTED' || e.message.includes(image)) return e;
  return new FerryError(e.code, `${image}: ${e.message}`, { ...(e.hint !== undefined ? { hint: e.hint } : {}), details: { ...e.details, image }, cause: e });
}

function toBlobs(m: Map<Digest, number>): InventoryBlob[] {
  return [...m].map(([digest, size]) => ({ digest, size }));
}
