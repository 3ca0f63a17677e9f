import { FerryError } from '../errors.js';
import { type Digest, parseDigest, sha256Digest } from '../oci/digest.js';
import { validateQualifiedName, validateTag } from '../oci/reference.js';
import { canonicalJson, compareImages, formatCreated } from '../transports/bundle/metadata.js';

/**
 * An inventory: what a target (registry, registry storage layout, set of
 * bundles, image list) holds, as a small JSON document the receiving site can
 * carry back across the gap so the next export ships only what is missing.
 * spec/inventory.schema.json is the normative description. Names and digests
 * only: never credentials, never URLs.
 */

export const INVENTORY_FORMAT = 'ferry-inventory';
export const INVENTORY_VERSION = 1;
/** An inventory is parsed whole; this caps what a hostile file can make us allocate. */
export const INVENTORY_MAX_BYTES = 256 * 1024 * 1024;

export type InventorySourceKind = 'registry' | 'registry-layout' | 'bundle' | 'image-list';
export const INVENTORY_SOURCE_KINDS: readonly InventorySourceKind[] = ['registry', 'registry-layout', 'bundle', 'image-list'];

export interface InventoryImage {
  /** As the target names it: a registry's own path (`team/app`), a bundle's full name (`docker.io/library/nginx`). */
  repository: string;
  tag?: string;
  /** The top manifest (index or image manifest). */
  digest: Digest;
}

export interface InventoryBlob {
  digest: Digest;
  size: number;
}

export interface Inventory {
  format: typeof INVENTORY_FORMAT;
  version: number;
  /** sha256 of canonical({images, blobs}): equal content, equal id, whenever it was taken. */
  id: Digest;
  created: string;
  source: { kind: InventorySourceKind; description: string };
  images: InventoryImage[];
  /** Configs and layers the target holds (manifests are named by the images). */
  blobs: InventoryBlob[];
}

export function inventoryId(images: InventoryImage[], blobs: InventoryBlob[]): Digest {
  return sha256Digest(canonicalJson({ images, blobs }));
}

/** Builds a normalised inventory: images sorted like bundle metadata, blobs by digest, each once. */
export function buildInventory(input: { source: Inventory['source']; images: InventoryImage[]; blobs: Iterable<InventoryBlob>; created?: Date }): Inventory {
  const seenImages = new Set<string>();
  const images: InventoryImage[] = [];
  for (const i of [...input.images].sort(compareImages)) {
    const key = `${i.repository}\u0000${i.tag ?? ''}\u0000${i.digest}`;
    if (seenImages.has(key)) continue;
    seenImages.add(key);
    images.push(i.tag !== undefined ? { repository: i.repository, tag: i.tag, digest: i.digest } : { repository: i.repository, digest: i.digest });
  }
  const byDigest = new Map<Digest, number>();
  for (const b of input.blobs) byDigest.set(b.digest, b.size);
  const blobs = [...byDigest].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([digest, size]) => ({ digest, size }));
  return {
    format: INVENTORY_FORMAT,
    version: INVENTORY_VERSION,
    id: inventoryId(images, blobs),
    created: formatCreated(input.created ?? new Date()),
    source: { kind: input.source.kind, description: input.source.description },
    images,
    blobs,
  };
}

export function serialiseInventory(inv: Inventory): Buffer {
  return Buffer.from(`${JSON.stringify(inv, null, 2)}\n`, 'utf8');
}

function bad(where: string, why: string): FerryError {
  return new FerryError('E_BUNDLE_INVALID', `${where}: ${why}`, {
    hint: 'the inventory is damaged or was not written by ferry; take it again with `ferry inventory`',
    details: { file: where },
  });
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(where, 'is not a JSON object');
  return v as Record<string, unknown>;
}

function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw bad(where, 'is not an array');
  return v;
}

/** Parses and checks an inventory document (hostile input): names, digests, sizes, and that the id matches the content. */
export function parseInventory(bytes: Uint8Array, where: string): Inventory {
  if (bytes.length > INVENTORY_MAX_BYTES) throw bad(where, `is ${bytes.length} bytes, more than the ${INVENTORY_MAX_BYTES} allowed`);
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw bad(where, `is not JSON (${(e as Error).message})`);
  }
  const o = obj(doc, where);
  if (o.format !== INVENTORY_FORMAT) throw bad(where, `format is ${JSON.stringify(o.format)}, not "${INVENTORY_FORMAT}"`);
  if (typeof o.version !== 'number' || !Number.isSafeInteger(o.version) || o.version < 1) throw bad(`${where}.version`, 'is not a positive integer');
  if (o.version > INVENTORY_VERSION) {
    throw new FerryError('E_BUNDLE_INVALID', `${where}: inventory version ${o.version} is newer than this ferry understands (${INVENTORY_VERSION})`, {
      hint: 'upgrade ferry on this side, or take the inventory with the same ferry version', details: { file: where },
    });
  }
  if (typeof o.created !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(o.created)) throw bad(`${where}.created`, 'is not a UTC time like 2024-05-01T12:00:00Z');
  const source = obj(o.source, `${where}.source`);
  if (typeof source.kind !== 'string' || !(INVENTORY_SOURCE_KINDS as readonly string[]).includes(source.kind)) throw bad(`${where}.source.kind`, `must be one of ${INVENTORY_SOURCE_KINDS.join(', ')}`);
  if (typeof source.description !== 'string' || source.description.length > 1024 || /[\u0000-\u001f]/.test(source.description)) throw bad(`${where}.source.description`, 'is not a printable string');
  const images = arr(o.images, `${where}.images`).map((v, i) => {
    const w = `${where}.images[${i}]`;
    const img = obj(v, w);
    const out: InventoryImage = { repository: validateQualifiedName(String(img.repository), `${w}.repository`), digest: parseDigest(img.digest, `${w}.digest`) };
    if (img.tag !== undefined) out.tag = validateTag(String(img.tag), `${w}.tag`);
    return out;
  });
  const blobs = arr(o.blobs, `${where}.blobs`).map((v, i) => {
    const w = `${where}.blobs[${i}]`;
    const b = obj(v, w);
    if (typeof b.size !== 'number' || !Number.isSafeInteger(b.size) || b.size < 0) throw bad(`${w}.size`, 'is not a non-negative integer');
    return { digest: parseDigest(b.digest, `${w}.digest`), size: b.size };
  });
  const id = parseDigest(o.id, `${where}.id`);
  const actual = inventoryId(images, blobs);
  if (actual !== id) throw bad(`${where}.id`, `is ${id} but the content hashes to ${actual}`);
  return { format: INVENTORY_FORMAT, version: o.version, id, created: o.created, source: { kind: source.kind as InventorySourceKind, description: source.description }, images, blobs };
}
