import { createHash } from 'node:crypto';
import { FerryError } from '../errors.js';
import { INPUT, parseJsonInput } from '../input-limits.js';
import { type Digest, hashDigest, isDigest, parseDigest } from '../oci/digest.js';
import { validateQualifiedName, validateTag } from '../oci/reference.js';
import { compareImages, formatCreated } from '../transports/bundle/metadata.js';

/**
 * An inventory: what a target (registry, registry storage layout, set of
 * bundles, image list) holds, as a small JSON document the receiving site can
 * carry back across the gap so the next export ships only what is missing.
 * spec/inventory.schema.json is the normative description. Names and digests
 * only: never credentials, never URLs.
 */

export const INVENTORY_FORMAT = 'ferry-inventory';
export const INVENTORY_VERSION = 1;

export type InventorySourceKind = 'registry' | 'registry-layout' | 'bundle' | 'image-list';
export const INVENTORY_SOURCE_KINDS: readonly InventorySourceKind[] = ['registry', 'registry-layout', 'bundle', 'image-list'];

export interface InventoryImage {
  /** As the target names it: a registry's own path (`team/app`), a bundle's full name (`docker.io/library/nginx`). */
  repository: string;
  tag?: string | undefined;
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

/**
 * sha256 of canonicalJson({images, blobs}), hashed as it is written out: the
 * canonical text of a 100,000-blob inventory built whole (and the strings its
 * recursive construction leaves behind) cost more memory than the inventory.
 * Keys in canonical (sorted) order: blobs, images; digest, size; digest,
 * repository, tag. test/unit/delta/inventory.test.ts holds it to canonicalJson.
 */
export function inventoryId(images: InventoryImage[], blobs: InventoryBlob[]): Digest {
  const hash = createHash('sha256');
  let pending = '';
  const write = (text: string): void => {
    pending += text;
    if (pending.length >= 64 * 1024) {
      hash.update(pending);
      pending = '';
    }
  };
  write('{"blobs":[');
  blobs.forEach((b, i) => write(`${i ? ',' : ''}{"digest":${JSON.stringify(b.digest)},"size":${JSON.stringify(b.size)}}`));
  write('],"images":[');
  images.forEach((m, i) => write(`${i ? ',' : ''}{"digest":${JSON.stringify(m.digest)},"repository":${JSON.stringify(m.repository)}${m.tag !== undefined ? `,"tag":${JSON.stringify(m.tag)}` : ''}}`));
  hash.update(`${pending}]}`);
  return hashDigest(hash);
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

function fieldCount(o: Record<string, unknown>): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw bad(where, 'is not an array');
  return v;
}

/** Parses and checks an inventory document (hostile input): names, digests, sizes, and that the id matches the content. */
export function parseInventory(bytes: Uint8Array, where: string): Inventory {
  // An inventory is parsed whole: its size and what parsing it would allocate are checked first (input-limits.ts).
  if (bytes.length > INPUT.inventory.maxBytes) throw bad(where, `is ${bytes.length} bytes, more than the ${INPUT.inventory.maxBytes} an inventory may be`);
  let doc: unknown;
  try {
    doc = parseJsonInput(bytes, where, INPUT.inventory);
  } catch (e) {
    if (e instanceof FerryError) throw e;
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
  // The parsed objects are kept when they hold exactly the known fields (the usual case): a 100,000-blob
  // inventory then costs its parse once, not twice. Field names for messages are built only on error.
  const images = arr(o.images, `${where}.images`).map((v, i): InventoryImage => {
    const img = obj(v, `${where}.images[${i}]`);
    const w = () => `${where}.images[${i}]`;
    const repository = validateQualifiedName(img.repository, `${w()}.repository`);
    const digest = isDigest(img.digest) ? img.digest : parseDigest(img.digest, `${w()}.digest`);
    const tag = img.tag === undefined ? undefined : validateTag(img.tag, `${w()}.tag`);
    if (repository === img.repository && tag === img.tag && fieldCount(img) === (tag === undefined ? 2 : 3)) return img as unknown as InventoryImage;
    return tag !== undefined ? { repository, tag, digest } : { repository, digest };
  });
  const blobs = arr(o.blobs, `${where}.blobs`).map((v, i): InventoryBlob => {
    const b = obj(v, `${where}.blobs[${i}]`);
    if (typeof b.size !== 'number' || !Number.isSafeInteger(b.size) || b.size < 0) throw bad(`${where}.blobs[${i}].size`, 'is not a non-negative integer');
    const digest = isDigest(b.digest) ? b.digest : parseDigest(b.digest, `${where}.blobs[${i}].digest`);
    return fieldCount(b) === 2 ? b as unknown as InventoryBlob : { digest, size: b.size };
  });
  const id = parseDigest(o.id, `${where}.id`);
  const actual = inventoryId(images, blobs);
  if (actual !== id) throw bad(`${where}.id`, `is ${id} but the content hashes to ${actual}`);
  return { format: INVENTORY_FORMAT, version: o.version, id, created: o.created, source: { kind: source.kind as InventorySourceKind, description: source.description }, images, blobs };
}
