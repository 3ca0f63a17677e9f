import { open, stat } from 'node:fs/promises';
import { planCopy } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import { formatBytes } from '../format.js';
import { checkJsonBudget, INPUT, inputTooLarge, type InputLimit, parseJsonInput, readInputFile } from '../input-limits.js';
import { type Digest, sha256Digest } from '../oci/digest.js';
import { formatReference, fullName, parseReference } from '../oci/reference.js';
import { type BundleBase, type BundleMetadata, METADATA_MAX_BYTES, parseMetadata } from '../transports/bundle/metadata.js';
import { BundleSource } from '../transports/bundle/reader.js';
import { parseSidecar } from '../transports/bundle/volumes.js';
import type { ImageSource } from '../transports/types.js';
import { buildInventory, type Inventory, type InventoryBlob, type InventoryImage, parseInventory } from './inventory.js';

/**
 * The things a delta can be taken against or compared: a bundle (only its
 * head is read), the `<bundle>.ferry.json` sidecar metadata, an inventory, or
 * (for diff) an image list resolved against registries. Each becomes an
 * inventory, plus the identity a delta records for it as a base.
 */
export type InputKind = 'bundle' | 'metadata' | 'inventory' | 'image-list';

export interface LoadedInput {
  where: string;
  kind: InputKind;
  inventory: Inventory;
  /** What a delta built against this input records in `delta.bases`. Absent for image lists. */
  base?: BundleBase;
  /** Bundle metadata, for bundles and sidecars. */
  metadata?: BundleMetadata;
}

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** A file read whole, within its kind's cap (input-limits.ts); a missing one is E_NOT_FOUND naming it. */
async function readInput(path: string, kind: InputLimit): Promise<Buffer> {
  try {
    return await readInputFile(path, kind);
  } catch (e) {
    if (e instanceof FerryError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new FerryError(code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `${path}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`, { hint: 'check the path', details: { file: path } });
  }
}

/** Sniffs the first bytes: zstd or tar → bundle, `{` → JSON document, anything else → text (an image list). */
export async function sniff(path: string): Promise<'bundle' | 'json' | 'text'> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError('E_NOT_FOUND', `${path}: no such file`, { hint: 'check the path', details: { file: path } });
    throw e;
  }
  try {
    // A folder opens for reading on Linux; its first read is EISDIR, which named no file and spoke of writing.
    if ((await fh.stat()).isDirectory()) {
      throw new FerryError('E_USAGE', `${path} is a directory, not a bundle, .ferry.json, inventory or image list`, { hint: 'name the file itself', details: { file: path } });
    }
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    const head = buf.subarray(0, bytesRead);
    if (head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'bundle';
    if (bytesRead >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'bundle';
    if (head.toString('utf8').trimStart().startsWith('{')) return 'json';
    return 'text';
  } finally {
    await fh.close();
  }
}

/** Configs and layers a bundle's receiver holds after importing it: the stored ones and, for a delta, those its bases supplied. */
export function inventoryOfMetadata(meta: BundleMetadata, description: string): Inventory {
  const blobs: InventoryBlob[] = [];
  for (const b of [...meta.blobs, ...(meta.delta?.omittedBlobs ?? [])]) if (b.kind === 'config' || b.kind === 'layer') blobs.push({ digest: b.digest, size: b.size });
  const images: InventoryImage[] = meta.images.map((i) => (i.tag !== undefined ? { repository: i.repository, tag: i.tag, digest: i.digest } : { repository: i.repository, digest: i.digest }));
  return buildInventory({ source: { kind: 'bundle', description }, images, blobs, created: new Date(meta.created) });
}

/** How much of a bundle to read: its whole head (manifests checked against the metadata), or its `ferry.json` alone. */
export interface LoadOptions {
  /**
   * `diff` compares only what the metadata lists, so it reads no further (as for
   * the sidecar, which gives the same inventory): the head of 20,000 images took
   * a diff of two such bundles to 287 MiB; `verify` is what checks a bundle.
   */
  metadataOnly?: boolean;
}

async function loadBundle(path: string, where = path, opts: LoadOptions = {}): Promise<LoadedInput> {
  if (opts.metadataOnly) {
    const { metadata: meta, wholeMetadataDigest } = await BundleSource.peek(path);
    return { where, kind: 'bundle', metadata: meta, inventory: inventoryOfMetadata(meta, `bundle ${meta.bundleId}`), base: { bundleId: meta.bundleId, metadataDigest: wholeMetadataDigest } };
  }
  const src = await BundleSource.open(path);
  try {
    const meta = src.metadata;
    // Any volume of a split bundle stands for the whole set, named like its STEM.ferry.json.
    return { where, kind: 'bundle', metadata: meta, inventory: inventoryOfMetadata(meta, `bundle ${meta.bundleId}`), base: { bundleId: meta.bundleId, metadataDigest: src.wholeMetadataDigest } };
  } finally {
    await src.close();
  }
}

/** A split bundle's .sha256 list: every volume carries the whole set's metadata, so the first one there will do. */
async function loadVolumeList(path: string, opts: LoadOptions = {}): Promise<LoadedInput> {
  const text = (await readInput(path, INPUT.volumeList)).toString('utf8');
  const listed = parseSidecar(text, path);
  for (const { path: volume } of listed) {
    if (await stat(volume).then((s) => s.isFile(), () => false)) return loadBundle(volume, path, opts);
  }
  throw new FerryError('E_NOT_FOUND', `${path}: none of the ${listed.length} volumes it lists is beside it`, {
    hint: 'give the volumes next to their .sha256 list, or the split bundle\'s STEM.ferry.json', details: { file: path },
  });
}

/** A `.ferry.json` or an inventory: read up to the larger of the two caps, then each kind's own cap applies. */
const JSON_INPUT: InputLimit = {
  what: 'a bundle\'s .ferry.json or an inventory',
  maxBytes: Math.max(INPUT.inventory.maxBytes, METADATA_MAX_BYTES),
  code: 'E_BUNDLE_INVALID',
  hint: `bundle metadata is at most ${formatBytes(METADATA_MAX_BYTES)} and an inventory ${formatBytes(INPUT.inventory.maxBytes)}; this file is something else or was altered: give the .ferry.json written beside the bundle, or take the inventory again`,
};
const METADATA_INPUT: InputLimit = { ...JSON_INPUT, what: 'bundle metadata', maxBytes: METADATA_MAX_BYTES };

/**
 * The document's top-level `format`. Both of ferry's writers put it first, so
 * the head of the file tells without parsing the whole document twice; a
 * hand-edited one is parsed (within the memory budget) to find it.
 */
function formatOf(bytes: Buffer, path: string): unknown {
  const head = /^\s*\{\s*"format"\s*:\s*"([a-z0-9-]{1,64})"/.exec(bytes.subarray(0, 256).toString('utf8'));
  if (head) return head[1];
  try {
    return (parseJsonInput(bytes, path, JSON_INPUT) as { format?: unknown } | null)?.format;
  } catch (e) {
    if (e instanceof FerryError) throw e;
    throw new FerryError('E_USAGE', `${path}: not JSON (${(e as Error).message})`, { hint: 'give a bundle, its .ferry.json metadata, or an inventory', details: { file: path } });
  }
}

async function loadJson(path: string): Promise<LoadedInput> {
  const bytes = await readInput(path, JSON_INPUT);
  const format = formatOf(bytes, path);
  if (format === 'ferry-bundle') {
    if (bytes.length > METADATA_INPUT.maxBytes) throw inputTooLarge(path, METADATA_INPUT, bytes.length);
    // parseMetadata parses it whole: what that would allocate is checked first.
    checkJsonBudget(bytes, path, METADATA_INPUT);
    const meta = parseMetadata(bytes, path);
    return { where: path, kind: 'metadata', metadata: meta, inventory: inventoryOfMetadata(meta, `bundle ${meta.bundleId}`), base: { bundleId: meta.bundleId, metadataDigest: sha256Digest(bytes) } };
  }
  if (format === 'ferry-inventory') {
    const inventory = parseInventory(bytes, path);
    // An inventory base is named by its content id and by the digest of the exact document used.
    return { where: path, kind: 'inventory', inventory, base: { bundleId: inventory.id, metadataDigest: sha256Digest(bytes) } };
  }
  throw new FerryError('E_USAGE', `${path}: a JSON document of format ${JSON.stringify(format)}, neither bundle metadata nor an inventory`, {
    hint: 'give a bundle, its .ferry.json metadata (written beside every bundle), or the output of `ferry inventory`', details: { file: path },
  });
}

/** Image list → inventory: manifests are resolved (and index children walked) from the registries; no blob is fetched. */
export async function inventoryOfImageList(refs: { reference: string; where: string }[], source: ImageSource, opts: { signal?: AbortSignal; jobs?: number } = {}): Promise<Inventory> {
  const requests = refs.map(({ reference, where }) => {
    const r = parseReference(reference, where);
    const name = fullName(r);
    return { sourceRepository: name, sourceReference: r.digest ?? r.tag!, targetRepository: name, origin: formatReference(r), ...(r.tag !== undefined ? { targetTag: r.tag } : {}) };
  });
  const plan = await planCopy(source, requests, { jobs: opts.jobs ?? 4, ...(opts.signal ? { signal: opts.signal } : {}) });
  if (plan.failures.length > 0) {
    const f = plan.failures[0]!;
    throw new FerryError(f.error.code, `${f.request.origin}: ${f.error.message}${plan.failures.length > 1 ? ` (and ${plan.failures.length - 1} more images failed)` : ''}`, {
      ...(f.error.hint ? { hint: f.error.hint } : {}), details: { failures: plan.failures.map((x) => ({ image: x.request.origin, code: x.error.code })) },
    });
  }
  const images: InventoryImage[] = [];
  const blobs: InventoryBlob[] = [];
  for (const p of plan.images) {
    images.push(p.request.targetTag !== undefined ? { repository: p.request.targetRepository, tag: p.request.targetTag, digest: p.top.digest } : { repository: p.request.targetRepository, digest: p.top.digest });
    for (const b of p.blobs) blobs.push({ digest: b.digest, size: b.size });
  }
  return buildInventory({ source: { kind: 'image-list', description: `image list (${refs.length} references)` }, images, blobs });
}

/**
 * Loads a bundle, sidecar metadata or inventory. `imageList` resolves a text
 * file as an image list (diff); without it a text file is a usage error.
 */
export async function loadInput(path: string, imageList?: (path: string) => Promise<Inventory>, opts: LoadOptions = {}): Promise<LoadedInput> {
  if (path.endsWith('.sha256')) return loadVolumeList(path, opts);
  const kind = await sniff(path);
  if (kind === 'bundle') return loadBundle(path, path, opts);
  if (kind === 'json') return loadJson(path);
  if (imageList) return { where: path, kind: 'image-list', inventory: await imageList(path) };
  throw new FerryError('E_USAGE', `${path}: not a bundle, bundle metadata (.ferry.json) or inventory`, {
    hint: 'a delta is taken against what the receiver holds: give a prior bundle, its .ferry.json, or `ferry inventory` output',
    details: { file: path },
  });
}

/** Union of what the bases hold, and how a delta names them. */
export interface DeltaBases {
  bases: BundleBase[];
  /** Config and layer digests held by at least one base. */
  held: Map<Digest, number>;
  inputs: LoadedInput[];
}

export async function loadBases(paths: string[]): Promise<DeltaBases> {
  const inputs: LoadedInput[] = [];
  for (const p of paths) inputs.push(await loadInput(p));
  const bases: BundleBase[] = [];
  const held = new Map<Digest, number>();
  for (const i of inputs) {
    if (i.base && !bases.some((b) => b.bundleId === i.base!.bundleId && b.metadataDigest === i.base!.metadataDigest)) bases.push(i.base);
    for (const b of i.inventory.blobs) held.set(b.digest, b.size);
  }
  return { bases, held, inputs };
}
