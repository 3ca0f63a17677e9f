import { createHash, type Hash } from 'node:crypto';
import { FerryError } from '../../errors.js';
import { JSON_PARSE_BUDGET_BYTES, jsonHeapEstimate } from '../../input-limits.js';
import { type Digest, parseDigest } from '../../oci/digest.js';
import { parseReference, validateQualifiedName, validateTag } from '../../oci/reference.js';
import { JSON_MAX_DEPTH, jsonDepth } from '../../oci/json-depth.js';
import { FOREIGN_LAYER_MEDIA_TYPES, isIndexMediaType } from '../../oci/media-types.js';

/**
 * `ferry.json`, the first entry of every bundle: what the bundle holds, so a
 * reader on a pipe knows what comes before the first layer byte arrives.
 * spec/bundle.md is the normative description; this module builds it and
 * checks it, treating a read document as hostile input.
 */

export const BUNDLE_FORMAT = 'ferry-bundle';
/**
 * The version this ferry writes (the compact encoding of spec/bundle.md §4.5);
 * it reads every version up to it (version 1: the bundles earlier ferry wrote).
 */
export const BUNDLE_FORMAT_VERSION = 2;
export type FormatVersion = 1 | 2;
/**
 * The metadata is JSON parsed whole. Two caps bound what a hostile bundle can make
 * a reader allocate: its bytes, and what parsing them would take (JSON.parse needs
 * many times a document's size for some shapes: input-limits.ts estimates it in one
 * pass before parsing). A 20,000-image, 100,000-blob bundle's metadata is ~11 MB
 * in version 2 and estimates at ~40 MiB; the caps allow half as much again above
 * that, and keep a reader's parse under 200 MiB RSS.
 */
export const METADATA_MAX_BYTES = 32 * 1024 * 1024;
export const METADATA_PARSE_BUDGET_BYTES = JSON_PARSE_BUDGET_BYTES;

export type BlobKind = 'index' | 'manifest' | 'config' | 'layer';
export const BLOB_KINDS: readonly BlobKind[] = ['index', 'manifest', 'config', 'layer'];

export interface BundleBlob {
  digest: Digest;
  size: number;
  mediaType: string;
  kind: BlobKind;
}

export interface BundleImage {
  /** The reference it was pulled from (never with credentials). */
  origin: string;
  /** Full name with registry host (`docker.io/library/nginx`), or without one for images from a place that has none (`python`). */
  repository: string;
  tag?: string | undefined;
  /** The stored top manifest (index or image manifest). */
  digest: Digest;
  mediaType: string;
  platforms: string[];
  /** Bytes of every manifest, config and layer of this image, each counted once. */
  size: number;
  /** The index the origin resolved to, when a platform filter replaced it. */
  sourceDigest?: Digest | undefined;
}

export interface BundleBase {
  bundleId: Digest;
  /** sha256 of the base bundle's ferry.json bytes. */
  metadataDigest: Digest;
}

export interface BundleDelta {
  bases: BundleBase[];
  omittedBlobs: BundleBlob[];
}

export interface BundleTotals {
  images: number;
  blobs: number;
  storedBytes: number;
  referencedBytes: number;
}

export interface BundleMetadata {
  format: typeof BUNDLE_FORMAT;
  formatVersion: number;
  bundleId: Digest;
  created: string;
  tool: { name: string; version: string };
  images: BundleImage[];
  blobs: BundleBlob[];
  totals: BundleTotals;
  delta?: BundleDelta | undefined;
  /**
   * Only in a split bundle whose export cut layers across volumes (spec/bundle.md §9.2):
   * every part of every cut layer. Part of the whole bundle's metadata (STEM.ferry.json and
   * every volume's), so a volume's own part records are checked against the set's.
   */
  split?: BundleSplit | undefined;
  /**
   * Foreign (non-distributable) layers the images reference whose bytes the
   * bundle does not hold by design (spec/bundle.md §2.2): their consumers fetch
   * them from the descriptor's `urls`. Absent when there are none.
   */
  foreignBlobs?: BundleBlob[] | undefined;
  /** Only in one volume of a split bundle (spec/bundle.md "Volumes"): which of `blobs` this file holds. */
  volume?: BundleVolume | undefined;
}

/** The cut of a split bundle: how many volumes, and each part of each cut layer with the volume holding it. */
export interface BundleSplit {
  count: number;
  parts: BundleSplitPart[];
}

export interface BundleSplitPart extends BundlePart {
  /** 0-based index of the volume holding this part. */
  volume: number;
}

/**
 * One volume of a bundle split for file shares. Each volume is a whole bundle
 * file with the whole bundle's metadata; `blobs` (digests, in stored order) is
 * the truth for which entries this file holds. Not part of the bundle id.
 */
export interface BundleVolume {
  /** 0-based. */
  index: number;
  count: number;
  bundleId: Digest;
  blobs: Digest[];
  /** Pieces of layers too large for one volume, in stored order; absent when the file holds none. */
  parts?: BundlePart[];
}

/**
 * One consecutive byte range of a layer cut across volumes (spec/bundle.md
 * §9.2). Its own digest lets a volume verify alone; the whole layer is checked
 * against `digest` once every part is joined.
 */
export interface BundlePart {
  /** The whole layer's digest (a layer of `blobs`). */
  digest: Digest;
  /** 0-based part number. */
  index: number;
  /** How many parts the layer was cut into. */
  count: number;
  /** Where this part starts in the layer. */
  offset: number;
  size: number;
  /** sha256 of this part's bytes. */
  partDigest: Digest;
}

/** The tar entry name of a blob. */
export function blobEntryName(digest: Digest): string {
  return `blobs/sha256/${digest.slice(7)}`;
}

/**
 * The tar entry name of a layer part: outside `blobs/`, so OCI readers
 * (skopeo's oci-archive) never take a part for a blob, and beside ferry.json,
 * which they already ignore.
 */
export function partEntryName(digest: Digest, index: number): string {
  return `ferry-parts/sha256/${digest.slice(7)}.${index}`;
}

/** `org.opencontainers.image.ref.name` of an image in index.json (what `oci-archive:FILE:<name>` matches). */
export function imageRefName(image: Pick<BundleImage, 'repository' | 'tag' | 'digest'>): string {
  return image.tag !== undefined ? `${image.repository}:${image.tag}` : `${image.repository}@${image.digest}`;
}

/** Orders images by (repository, tag, digest) in UTF-16 code-unit order; an absent tag sorts first. */
export function compareImages(a: Pick<BundleImage, 'repository' | 'tag' | 'digest'>, b: Pick<BundleImage, 'repository' | 'tag' | 'digest'>): number {
  return cmp(a.repository, b.repository) || cmp(a.tag ?? '', b.tag ?? '') || cmp(a.digest, b.digest);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `2024-05-01T12:00:00Z`: whole seconds, UTC, because the tar mtime field holds whole seconds. */
export function formatCreated(date: Date): string {
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

const CREATED_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

export function createdSeconds(created: string): number {
  return Math.floor(Date.parse(created) / 1000);
}

/**
 * A bundle repository is `[<registry>/]<path>` (oci/reference.ts
 * validateQualifiedName, the one name validator): a name without a registry
 * (`python`, `team/app`) came from a place without one and is never given
 * `docker.io`; `../../etc` fails here, before any name becomes a path. Kept
 * under this name for the metadata's callers.
 */
export const validateBundleName: (name: unknown, where: string) => string = validateQualifiedName;

/**
 * The canonical serialisation the bundle id hashes: JSON with object keys sorted
 * by code unit at every level, no white space. Values in the metadata are only
 * strings, safe integers, arrays and objects, so JSON.stringify's number and
 * string forms are already canonical (the JCS subset we need).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort(cmp);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * canonicalJson(value) fed into `hash` piece by piece: the same bytes without
 * building one string of the whole document (a 100,000-blob list is tens of MB).
 */
function hashCanonical(value: unknown, hash: Hash): void {
  if (Array.isArray(value)) {
    hash.update('[');
    value.forEach((v, i) => {
      if (i > 0) hash.update(',');
      if (v !== null && typeof v === 'object') hashCanonical(v, hash);
      else hash.update(canonicalJson(v));
    });
    hash.update(']');
    return;
  }
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort(cmp);
    // Small objects (a blob, an image) in one piece; large ones member by member.
    if (keys.length <= 16 && keys.every((k) => !Array.isArray(o[k]) || (o[k] as unknown[]).length <= 16)) {
      hash.update(canonicalJson(o));
      return;
    }
    hash.update('{');
    keys.forEach((k, i) => {
      hash.update(`${i > 0 ? ',' : ''}${JSON.stringify(k)}:`);
      hashCanonical(o[k], hash);
    });
    hash.update('}');
    return;
  }
  hash.update(canonicalJson(value));
}

function canonicalDigest(body: Record<string, unknown>): Digest {
  const hash = createHash('sha256');
  hashCanonical(body, hash);
  return `sha256:${hash.digest('hex')}` as Digest;
}

/** Version 1: sha256 of canonical({images, blobs, delta?, foreignBlobs?}) — content only, so time and tool version do not change it. */
export function computeBundleId(images: unknown, blobs: unknown, delta: unknown, foreignBlobs?: unknown): Digest {
  const body: Record<string, unknown> = { images, blobs };
  if (delta !== undefined) body.delta = delta;
  if (foreignBlobs !== undefined) body.foreignBlobs = foreignBlobs;
  return canonicalDigest(body);
}

/** Version 2: the same rule over the compact document's content members, the tables they index into included. */
function computeBundleIdV2(doc: Record<string, unknown>): Digest {
  const body: Record<string, unknown> = { mediaTypes: doc.mediaTypes, platforms: doc.platforms, images: doc.images, blobs: doc.blobs };
  if (doc.delta !== undefined) body.delta = doc.delta;
  if (doc.foreign !== undefined) body.foreign = doc.foreign;
  return canonicalDigest(body);
}

export interface BuildMetadataInput {
  created: string;
  toolVersion: string;
  /** Any order: sorted here. */
  images: BundleImage[];
  /** In stored order. */
  blobs: BundleBlob[];
  delta?: BundleDelta;
  /** Foreign layers not carried, in stored order (where they would stand among the layers). */
  foreignBlobs?: BundleBlob[];
  /** Default BUNDLE_FORMAT_VERSION; 1 writes what earlier ferry wrote (tests of old bundles). */
  formatVersion?: FormatVersion;
}

export function buildMetadata(input: BuildMetadataInput): BundleMetadata {
  const images = [...input.images].sort(compareImages).map(normaliseImage);
  const blobs = input.blobs.map(normaliseBlob);
  const delta = input.delta
    ? { bases: input.delta.bases.map((b) => ({ bundleId: b.bundleId, metadataDigest: b.metadataDigest })), omittedBlobs: input.delta.omittedBlobs.map(normaliseBlob) }
    : undefined;
  const foreignBlobs = input.foreignBlobs?.length ? input.foreignBlobs.map(normaliseBlob) : undefined;
  const formatVersion = input.formatVersion ?? BUNDLE_FORMAT_VERSION;
  const meta: BundleMetadata = {
    format: BUNDLE_FORMAT,
    formatVersion,
    bundleId: '' as Digest,
    created: input.created,
    tool: { name: 'ferry', version: input.toolVersion },
    images,
    blobs,
    totals: {
      images: images.length,
      blobs: blobs.length,
      storedBytes: blobs.reduce((n, b) => n + b.size, 0),
      referencedBytes: images.reduce((n, i) => n + i.size, 0),
    },
  };
  if (delta) meta.delta = delta;
  if (foreignBlobs) meta.foreignBlobs = foreignBlobs;
  meta.bundleId = formatVersion === 1 ? computeBundleId(images, blobs, delta, foreignBlobs) : computeBundleIdV2(encodeV2(meta));
  return meta;
}

/** Fixed key order, so the serialised document is byte-identical for equal content. */
function normaliseImage(i: BundleImage): BundleImage {
  const o: BundleImage = { origin: i.origin, repository: i.repository } as BundleImage;
  if (i.tag !== undefined) o.tag = i.tag;
  o.digest = i.digest;
  o.mediaType = i.mediaType;
  o.platforms = [...i.platforms];
  o.size = i.size;
  if (i.sourceDigest !== undefined) o.sourceDigest = i.sourceDigest;
  return o;
}

function normaliseBlob(b: BundleBlob): BundleBlob {
  return { digest: b.digest, size: b.size, mediaType: b.mediaType, kind: b.kind };
}

/**
 * The bytes of ferry.json (inside the bundle and beside it): version 1 as
 * indented JSON, version 2 in its compact encoding on one line. Also takes a
 * version 2 document as JSON.parse gave it (already encoded; written as it is,
 * so a volume's metadata without its `volume` member gives back STEM.ferry.json).
 */
export function serialiseMetadata(meta: BundleMetadata): Buffer {
  if (meta.formatVersion === 1) return Buffer.from(`${JSON.stringify(meta, null, 2)}\n`, 'utf8');
  const doc = isEncodedV2(meta) ? meta : encodeV2(meta);
  return Buffer.from(`${JSON.stringify(doc)}\n`, 'utf8');
}

/** A version 2 document in its encoded form (blobs as groups of tuples), rather than the parsed metadata. */
function isEncodedV2(meta: unknown): boolean {
  const blobs = (meta as { blobs?: unknown }).blobs;
  return typeof blobs === 'object' && blobs !== null && !Array.isArray(blobs);
}

/**
 * The sizes that decide whether a bundle's metadata can be read back: its
 * serialised bytes and what parsing them would take. An export checks its own
 * metadata with this before fetching any layer.
 */
export function metadataCost(bytes: Uint8Array): { bytes: number; parseBytes: number } {
  return { bytes: bytes.length, parseBytes: jsonHeapEstimate(bytes) };
}

/**
 * A floor under metadataCost of a version 2 document storing `blobs` blobs, from
 * the count alone: each is a `["<64 hex>",size,type],` tuple of at least 73 bytes,
 * which jsonHeapEstimate counts at no less than 274 (an array 56, a string 32 and
 * its 65 counted characters, two numbers 24 each, and the tuple's bytes). An export
 * whose floor is over the caps is refused before its metadata is built, which would
 * cost the memory the caps bound (a 260,000-blob plan peaked at 424 MiB building it).
 */
export function metadataCostFloor(blobs: number): { bytes: number; parseBytes: number } {
  const tupleBytes = 73;
  return { bytes: blobs * tupleBytes, parseBytes: blobs * (56 + 32 + 65 + 24 + 24 + tupleBytes) };
}

/** Why metadata of this cost is refused, or undefined when readers take it. */
export function metadataOverLimit(cost: { bytes: number; parseBytes: number }): string | undefined {
  if (cost.bytes > METADATA_MAX_BYTES) return `is ${cost.bytes} bytes, more than the ${METADATA_MAX_BYTES} allowed`;
  if (cost.parseBytes > METADATA_PARSE_BUDGET_BYTES) return `would take about ${cost.parseBytes} bytes of memory to parse, more than the ${METADATA_PARSE_BUDGET_BYTES} allowed`;
  return undefined;
}

// ---------------------------------------------------------------- version 2 (compact)

/** A blob in version 2: [hex digest, size, index into mediaTypes]. */
type BlobTuple = [string, number, number];

interface EncodedImageV2 {
  repository: string;
  tag?: string;
  /** Index into blobs.manifests. */
  manifest: number;
  /** Indexes into platforms. */
  platforms: number[];
  size: number;
  /** Only when it differs from repository:tag (or repository@digest). */
  origin?: string;
  sourceDigest?: Digest;
}

/**
 * The compact encoding (spec/bundle.md §4.5): media types and platforms
 * interned in tables, blobs as tuples grouped by kind (their order is the stored
 * order, their kind the group), an image's manifest by its place among the
 * stored manifests (its media type is that blob's), an origin only when it is
 * not the image's own name, a delta's omitted blobs as tuples, a volume's whole
 * layers as one range.
 */
export function encodeV2(meta: BundleMetadata): Record<string, unknown> {
  const mediaTypes: string[] = [];
  const mtIndex = new Map<string, number>();
  const mt = (t: string): number => {
    let i = mtIndex.get(t);
    if (i === undefined) {
      i = mediaTypes.length;
      mediaTypes.push(t);
      mtIndex.set(t, i);
    }
    return i;
  };
  const tuple = (b: BundleBlob): BlobTuple => [b.digest.slice(7), b.size, mt(b.mediaType)];
  const groups = { manifests: [] as BlobTuple[], configs: [] as BlobTuple[], layers: [] as BlobTuple[] };
  const manifestIndex = new Map<string, number>();
  const layerIndex = new Map<string, number>();
  for (const b of meta.blobs) {
    if (b.kind === 'index' || b.kind === 'manifest') {
      if ((b.kind === 'index') !== isIndexMediaType(b.mediaType)) throw internal(`${b.digest} is stored as ${b.kind} with media type ${b.mediaType}`);
      manifestIndex.set(b.digest, groups.manifests.length);
      groups.manifests.push(tuple(b));
    } else if (b.kind === 'config') {
      groups.configs.push(tuple(b));
    } else {
      layerIndex.set(b.digest, groups.layers.length);
      groups.layers.push(tuple(b));
    }
  }
  const platforms: string[] = [];
  const platformIndex = new Map<string, number>();
  const images: EncodedImageV2[] = meta.images.map((img) => {
    const at = manifestIndex.get(img.digest);
    if (at === undefined) throw internal(`image ${imageRefName(img)}: its manifest ${img.digest} is not stored`);
    const o: EncodedImageV2 = { repository: img.repository } as EncodedImageV2;
    if (img.tag !== undefined) o.tag = img.tag;
    o.manifest = at;
    o.platforms = img.platforms.map((p) => {
      let i = platformIndex.get(p);
      if (i === undefined) {
        i = platforms.length;
        platforms.push(p);
        platformIndex.set(p, i);
      }
      return i;
    });
    o.size = img.size;
    if (img.origin !== imageRefName(img)) o.origin = img.origin;
    if (img.sourceDigest !== undefined) o.sourceDigest = img.sourceDigest;
    return o;
  });
  const doc: Record<string, unknown> = {
    format: meta.format,
    formatVersion: 2,
    bundleId: meta.bundleId,
    created: meta.created,
    tool: meta.tool,
    mediaTypes,
    platforms,
    images,
    blobs: groups,
    totals: meta.totals,
  };
  if (meta.delta) {
    const omitted = { configs: [] as BlobTuple[], layers: [] as BlobTuple[] };
    for (const b of meta.delta.omittedBlobs) {
      if (b.kind === 'config') omitted.configs.push(tuple(b));
      else if (b.kind === 'layer') omitted.layers.push(tuple(b));
      else throw internal(`a delta omits ${b.kind} ${b.digest}`);
    }
    doc.delta = { bases: meta.delta.bases, omitted };
  }
  if (meta.foreignBlobs) doc.foreign = meta.foreignBlobs.map(tuple);
  // Media types are interned as met above: every one is in the table before the content is hashed.
  doc.mediaTypes = mediaTypes;
  const partOf = (p: BundlePart): Record<string, unknown> => {
    const layer = layerIndex.get(p.digest);
    if (layer === undefined) throw internal(`a part of ${p.digest}, which is not a stored layer`);
    return { layer, index: p.index, count: p.count, offset: p.offset, size: p.size, partDigest: p.partDigest };
  };
  if (meta.split) doc.split = { count: meta.split.count, parts: meta.split.parts.map((p) => ({ ...partOf(p), volume: p.volume })) };
  if (meta.volume) {
    const v = meta.volume;
    const layers = v.blobs.filter((d) => layerIndex.has(d)).map((d) => layerIndex.get(d)!);
    const first = layers[0] ?? 0;
    if (layers.some((l, i) => l !== first + i) || v.blobs.length - layers.length !== groups.manifests.length + groups.configs.length) {
      throw internal(`volume ${v.index + 1}: a version 2 volume holds every manifest and config and one run of whole layers`);
    }
    const vol: Record<string, unknown> = { index: v.index, count: v.count, bundleId: v.bundleId, layers: [first, first + layers.length] };
    if (v.parts) vol.parts = v.parts.map(partOf);
    doc.volume = vol;
  }
  return doc;
}

function internal(why: string): FerryError {
  return new FerryError('E_INTERNAL', `bundle metadata: ${why}`);
}

// ---------------------------------------------------------------- parsing

function bad(where: string, why: string, details: Record<string, unknown> = {}): FerryError {
  return new FerryError('E_BUNDLE_INVALID', `${where}: ${why}`, {
    hint: 'the bundle metadata is damaged or was not written by ferry; re-export the bundle',
    details: { file: where, ...details },
  });
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(where, 'is not a JSON object');
  return v as Record<string, unknown>;
}

function str(v: unknown, where: string, max = 1024): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max || /[\u0000-\u001f\u007f]/.test(v)) {
    throw bad(where, `is not a non-empty string of at most ${max} printable characters`);
  }
  return v;
}

function size(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(where, 'is not a non-negative integer');
  return v;
}

function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw bad(where, 'is not an array');
  return v;
}

const PLATFORM_RE = /^[a-z0-9._-]+\/[a-z0-9._-]+(?:\/[a-z0-9._-]+)?$/;
const KIND_GROUP: Record<BlobKind, number> = { index: 0, manifest: 0, config: 1, layer: 2 };

function parseBlob(v: unknown, where: string): BundleBlob {
  const o = obj(v, where);
  const kind = o.kind;
  if (typeof kind !== 'string' || !(BLOB_KINDS as readonly string[]).includes(kind)) throw bad(`${where}.kind`, `must be one of ${BLOB_KINDS.join(', ')}`);
  return { digest: parseDigest(o.digest, `${where}.digest`), size: size(o.size, `${where}.size`), mediaType: str(o.mediaType, `${where}.mediaType`, 255), kind: kind as BlobKind };
}

function parseImage(v: unknown, where: string): BundleImage {
  const o = obj(v, where);
  const origin = str(o.origin, `${where}.origin`, 1024);
  // An origin that does not parse as a reference could be a URL carrying credentials: refuse it.
  parseReference(origin, `${where}.origin`);
  const img: BundleImage = {
    origin,
    repository: validateQualifiedName(o.repository, `${where}.repository`),
    digest: parseDigest(o.digest, `${where}.digest`),
    mediaType: str(o.mediaType, `${where}.mediaType`, 255),
    platforms: arr(o.platforms, `${where}.platforms`).map((p, i) => {
      if (typeof p !== 'string' || !PLATFORM_RE.test(p)) throw bad(`${where}.platforms[${i}]`, 'is not os/architecture[/variant]');
      return p;
    }),
    size: size(o.size, `${where}.size`),
  };
  if (o.tag !== undefined) img.tag = validateTag(o.tag, `${where}.tag`);
  if (o.sourceDigest !== undefined) img.sourceDigest = parseDigest(o.sourceDigest, `${where}.sourceDigest`);
  return img;
}

/**
 * Parses and checks ferry.json. Refuses a newer formatVersion, unsafe names,
 * inconsistent totals, duplicate or mis-grouped blobs, and a bundleId that does
 * not match the content. Unknown fields are allowed (additive changes do not
 * bump the version) and are part of what the bundleId covers.
 * @param where names the bundle file.
 */
export function parseMetadata(bytes: Uint8Array, where: string): BundleMetadata {
  const w = `${where}: ferry.json`;
  // Both caps before JSON.parse: what parsing a hostile document would allocate is known from one pass over it.
  const over = metadataOverLimit({ bytes: bytes.length, parseBytes: bytes.length > METADATA_MAX_BYTES ? 0 : jsonHeapEstimate(bytes) });
  if (over) throw bad(w, over);
  let doc: unknown;
  // A view, not a copy: Buffer.from(bytes) would copy the whole document first.
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw bad(w, `is not JSON (${(e as Error).message})`);
  }
  // Unknown fields are kept and hashed into the bundle id by a recursive walk: a nesting bomb would overflow it.
  if (jsonDepth(text) > JSON_MAX_DEPTH) throw bad(w, `nests deeper than ${JSON_MAX_DEPTH} levels`);
  const o = obj(doc, w);
  if (o.format !== BUNDLE_FORMAT) throw bad(w, `format is ${JSON.stringify(o.format)}, not "${BUNDLE_FORMAT}"`);
  if (typeof o.formatVersion !== 'number' || !Number.isSafeInteger(o.formatVersion) || o.formatVersion < 1) throw bad(`${w}.formatVersion`, 'is not a positive integer');
  if (o.formatVersion > BUNDLE_FORMAT_VERSION) {
    throw new FerryError('E_BUNDLE_INVALID', `${w}: bundle format version ${o.formatVersion} is newer than this ferry understands (${BUNDLE_FORMAT_VERSION})`, {
      hint: 'upgrade ferry on this side to the version that wrote the bundle (see tool.version in the metadata)',
      details: { file: where, formatVersion: o.formatVersion, supported: BUNDLE_FORMAT_VERSION },
    });
  }
  const created = str(o.created, `${w}.created`, 32);
  if (!CREATED_RE.test(created) || Number.isNaN(Date.parse(created))) throw bad(`${w}.created`, 'is not a UTC time like 2024-05-01T12:00:00Z');
  const tool = obj(o.tool, `${w}.tool`);
  const head = {
    format: BUNDLE_FORMAT,
    formatVersion: o.formatVersion,
    bundleId: parseDigest(o.bundleId, `${w}.bundleId`),
    created,
    tool: { name: str(tool.name, `${w}.tool.name`, 100), version: str(tool.version, `${w}.tool.version`, 100) },
  } as const;
  return o.formatVersion === 1 ? parseContentV1(o, head, w) : parseContentV2(o, head, w);
}

type MetadataHead = Pick<BundleMetadata, 'format' | 'formatVersion' | 'bundleId' | 'created' | 'tool'>;

function parseBases(v: unknown, w: string): BundleBase[] {
  return arr(v, w).map((x, i) => {
    const b = obj(x, `${w}[${i}]`);
    return { bundleId: parseDigest(b.bundleId, `${w}[${i}].bundleId`), metadataDigest: parseDigest(b.metadataDigest, `${w}[${i}].metadataDigest`) };
  });
}

function checkForeign(b: BundleBlob, where: string): BundleBlob {
  if (b.kind !== 'layer' || !FOREIGN_LAYER_MEDIA_TYPES.includes(b.mediaType)) throw bad(where, `${b.digest} is a ${b.kind} of type ${b.mediaType}: only foreign (non-distributable) layers may be left out as foreign`, { digest: b.digest });
  return b;
}

/** Version 1: every blob an object, listed whole (what ferry wrote before the compact encoding). */
function parseContentV1(o: Record<string, unknown>, head: MetadataHead, w: string): BundleMetadata {
  const images = arr(o.images, `${w}.images`).map((v, i) => parseImage(v, `${w}.images[${i}]`));
  const blobs = arr(o.blobs, `${w}.blobs`).map((v, i) => parseBlob(v, `${w}.blobs[${i}]`));
  let delta: BundleDelta | undefined;
  if (o.delta !== undefined) {
    const d = obj(o.delta, `${w}.delta`);
    delta = {
      bases: parseBases(d.bases, `${w}.delta.bases`),
      omittedBlobs: arr(d.omittedBlobs, `${w}.delta.omittedBlobs`).map((v, i) => parseBlob(v, `${w}.delta.omittedBlobs[${i}]`)),
    };
  }
  const meta: BundleMetadata = { ...head, images, blobs, totals: { images: 0, blobs: 0, storedBytes: 0, referencedBytes: 0 } };
  if (delta) meta.delta = delta;
  if (o.foreignBlobs !== undefined) {
    meta.foreignBlobs = arr(o.foreignBlobs, `${w}.foreignBlobs`).map((v, i) => checkForeign(parseBlob(v, `${w}.foreignBlobs[${i}]`), `${w}.foreignBlobs[${i}]`));
  }
  checkConsistency(meta, obj(o.totals, `${w}.totals`), w);
  const id = computeBundleId(o.images, o.blobs, o.delta, o.foreignBlobs);
  if (id !== meta.bundleId) throw bad(`${w}.bundleId`, `is ${meta.bundleId} but the content hashes to ${id}`, { expected: meta.bundleId, actual: id });
  if (o.split !== undefined) meta.split = parseSplit(o.split, meta, `${w}.split`);
  if (o.volume !== undefined) meta.volume = parseVolume(o.volume, meta, `${w}.volume`);
  if (meta.volume && meta.split) checkVolumeAgainstSplit(meta.volume, meta.split, w);
  return meta;
}

const HEX_RE = /^[a-f0-9]{64}$/;

/** Version 2 (spec/bundle.md §4.5): decoded into the same metadata as version 1, then checked by the same rules. */
function parseContentV2(o: Record<string, unknown>, head: MetadataHead, w: string): BundleMetadata {
  const mediaTypes = arr(o.mediaTypes, `${w}.mediaTypes`).map((v, i) => str(v, `${w}.mediaTypes[${i}]`, 255));
  const platforms = arr(o.platforms, `${w}.platforms`).map((p, i) => {
    if (typeof p !== 'string' || !PLATFORM_RE.test(p)) throw bad(`${w}.platforms[${i}]`, 'is not os/architecture[/variant]');
    return p;
  });
  const index = (v: unknown, length: number, where: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= length) throw bad(where, `is not an index below ${length}`);
    return v;
  };
  const blob = (v: unknown, kind: BlobKind | 'manifests', where: string): BundleBlob => {
    const t = arr(v, where);
    if (t.length !== 3) throw bad(where, 'is not [hex digest, size, media type index]');
    if (typeof t[0] !== 'string' || !HEX_RE.test(t[0])) throw bad(`${where}[0]`, 'is not 64 lowercase hex characters (a sha256 digest)');
    const mediaType = mediaTypes[index(t[2], mediaTypes.length, `${where}[2]`)]!;
    // join makes one flat string; `sha256:${hex}` would keep a 32-byte concatenation over the hex string (100,000 of them).
    return { digest: ['sha256:', t[0]].join('') as Digest, size: size(t[1], `${where}[1]`), mediaType, kind: kind === 'manifests' ? (isIndexMediaType(mediaType) ? 'index' : 'manifest') : kind };
  };
  const group = (v: unknown, kind: BlobKind | 'manifests', where: string): BundleBlob[] => arr(v, where).map((x, i) => blob(x, kind, `${where}[${i}]`));
  const g = obj(o.blobs, `${w}.blobs`);
  const manifests = group(g.manifests, 'manifests', `${w}.blobs.manifests`);
  const configs = group(g.configs, 'config', `${w}.blobs.configs`);
  const layers = group(g.layers, 'layer', `${w}.blobs.layers`);
  const images = arr(o.images, `${w}.images`).map((v, i): BundleImage => {
    const where = `${w}.images[${i}]`;
    const x = obj(v, where);
    const top = manifests[index(x.manifest, manifests.length, `${where}.manifest`)]!;
    const img: BundleImage = {
      origin: '',
      repository: validateQualifiedName(x.repository, `${where}.repository`),
      digest: top.digest,
      mediaType: top.mediaType,
      platforms: arr(x.platforms, `${where}.platforms`).map((p, k) => platforms[index(p, platforms.length, `${where}.platforms[${k}]`)]!),
      size: size(x.size, `${where}.size`),
    };
    if (x.tag !== undefined) img.tag = validateTag(x.tag, `${where}.tag`);
    img.origin = x.origin === undefined ? imageRefName(img) : str(x.origin, `${where}.origin`, 1024);
    // An origin that does not parse as a reference could be a URL carrying credentials: refuse it.
    parseReference(img.origin, `${where}.origin`);
    if (x.sourceDigest !== undefined) img.sourceDigest = parseDigest(x.sourceDigest, `${where}.sourceDigest`);
    return img;
  });
  const meta: BundleMetadata = { ...head, images, blobs: [...manifests, ...configs, ...layers], totals: { images: 0, blobs: 0, storedBytes: 0, referencedBytes: 0 } };
  if (o.delta !== undefined) {
    const d = obj(o.delta, `${w}.delta`);
    const om = obj(d.omitted, `${w}.delta.omitted`);
    meta.delta = {
      bases: parseBases(d.bases, `${w}.delta.bases`),
      omittedBlobs: [...group(om.configs, 'config', `${w}.delta.omitted.configs`), ...group(om.layers, 'layer', `${w}.delta.omitted.layers`)],
    };
  }
  if (o.foreign !== undefined) meta.foreignBlobs = group(o.foreign, 'layer', `${w}.foreign`).map((b, i) => checkForeign(b, `${w}.foreign[${i}]`));
  checkConsistency(meta, obj(o.totals, `${w}.totals`), w);
  const id = computeBundleIdV2(o);
  if (id !== meta.bundleId) throw bad(`${w}.bundleId`, `is ${meta.bundleId} but the content hashes to ${id}`, { expected: meta.bundleId, actual: id });
  // The cut and the volume name layers by their place among the stored layers: read as version 1 records.
  const layerPart = (p: unknown, where: string): Record<string, unknown> => {
    const x = obj(p, where);
    return { ...x, digest: layers[index(x.layer, layers.length, `${where}.layer`)]!.digest };
  };
  if (o.split !== undefined) {
    const sp = obj(o.split, `${w}.split`);
    meta.split = parseSplit({ ...sp, parts: arr(sp.parts, `${w}.split.parts`).map((p, i) => layerPart(p, `${w}.split.parts[${i}]`)) }, meta, `${w}.split`);
  }
  if (o.volume !== undefined) {
    const v = obj(o.volume, `${w}.volume`);
    const range = arr(v.layers, `${w}.volume.layers`);
    const from = range.length === 2 ? index(range[0], layers.length + 1, `${w}.volume.layers[0]`) : -1;
    const to = range.length === 2 ? index(range[1], layers.length + 1, `${w}.volume.layers[1]`) : -1;
    if (from < 0 || to < from) throw bad(`${w}.volume.layers`, 'is not [first, end) of a run of stored layers');
    const blobs = [...manifests, ...configs, ...layers.slice(from, to)].map((b) => b.digest);
    const parts = v.parts === undefined ? undefined : arr(v.parts, `${w}.volume.parts`).map((p, i) => layerPart(p, `${w}.volume.parts[${i}]`));
    meta.volume = parseVolume({ ...v, blobs, ...(parts ? { parts } : {}) }, meta, `${w}.volume`);
  }
  if (meta.volume && meta.split) checkVolumeAgainstSplit(meta.volume, meta.split, w);
  return meta;
}

/**
 * The whole cut: each cut layer's parts listed together, in order, in consecutive
 * volumes, covering the layer's bytes exactly once; layers in stored order.
 */
function parseSplit(v: unknown, meta: BundleMetadata, w: string): BundleSplit {
  const o = obj(v, w);
  const count = size(o.count, `${w}.count`);
  if (count < 2) throw bad(`${w}.count`, `is ${count}: a split bundle has at least 2 volumes`);
  const parts = arr(o.parts, `${w}.parts`).map((p, i): BundleSplitPart => {
    const volume = size(obj(p, `${w}.parts[${i}]`).volume, `${w}.parts[${i}].volume`);
    if (volume >= count) throw bad(`${w}.parts[${i}].volume`, `is ${volume}, not below the ${count} volumes`);
    return { ...parsePart(p, meta, `${w}.parts[${i}]`), volume };
  });
  if (parts.length === 0) throw bad(`${w}.parts`, 'is empty: the record is written only when layers are cut');
  const pos = new Map(meta.blobs.map((b, i) => [b.digest as string, i]));
  let lastLayer = -1;
  for (let i = 0; i < parts.length;) {
    const first = parts[i]!;
    const at = pos.get(first.digest)!;
    if (at <= lastLayer) throw bad(`${w}.parts[${i}]`, `${first.digest} is listed twice or out of stored order`, { digest: first.digest });
    lastLayer = at;
    let offset = 0;
    for (let k = 0; k < first.count; k++, i++) {
      const p = parts[i];
      const where = `${w}.parts[${i}]`;
      if (!p || p.digest !== first.digest || p.index !== k || p.count !== first.count || p.offset !== offset || p.volume !== first.volume + k) {
        throw bad(where, `part ${k + 1} of ${first.count} of layer ${first.digest} is not where the cut puts it (right after part ${k}, at byte ${offset}, in volume ${first.volume + k + 1})`, { digest: first.digest });
      }
      offset += p.size;
    }
  }
  return { count, parts };
}

/** A volume's own part records are exactly the set's record of the parts it holds. */
function checkVolumeAgainstSplit(vol: BundleVolume, split: BundleSplit, w: string): void {
  const label = `${w}: volume ${vol.index + 1} of ${vol.count}`;
  if (vol.count !== split.count) throw bad(`${w}.volume.count`, `is ${vol.count}, the bundle's record of the cut (split) says ${split.count} volumes`);
  const want = split.parts.filter((p) => p.volume === vol.index);
  const have = vol.parts ?? [];
  const same = (a: BundlePart, b: BundlePart): boolean => a.digest === b.digest && a.index === b.index && a.count === b.count && a.offset === b.offset && a.size === b.size && a.partDigest === b.partDigest;
  for (const p of have) {
    const rec = want.find((x) => x.digest === p.digest && x.index === p.index);
    if (!rec || !same(p, rec)) {
      const says = rec ? `records it as ${rec.size} bytes at ${rec.offset} hashing to ${rec.partDigest}` : 'does not put it in this volume';
      throw new FerryError('E_BUNDLE_INVALID', `${label}: part ${p.index + 1} of ${p.count} of layer ${p.digest} (${p.size} bytes at ${p.offset}, ${p.partDigest}) is not the part the bundle's record of the cut ${says}`, {
        hint: 'this volume was altered or damaged after export: copy it again from the exporting side (the other volumes are not affected)',
        details: { file: w.replace(/: ferry\.json$/, ''), volume: vol.index + 1, digest: p.digest, part: p.index + 1, partDigest: p.partDigest, ...(rec ? { expected: rec.partDigest } : {}) },
      });
    }
  }
  const lacking = want.find((x) => !have.some((p) => p.digest === x.digest && p.index === x.index));
  if (lacking) {
    throw new FerryError('E_BUNDLE_INVALID', `${label}: the bundle's record of the cut puts part ${lacking.index + 1} of ${lacking.count} of layer ${lacking.digest} in this volume, which does not record it`, {
      hint: 'this volume was altered or damaged after export: copy it again from the exporting side (the other volumes are not affected)',
      details: { file: w.replace(/: ferry\.json$/, ''), volume: vol.index + 1, digest: lacking.digest, part: lacking.index + 1 },
    });
  }
}

/**
 * A volume's blob list must be a subsequence of `blobs` in stored order and hold
 * every manifest, index and config (each volume carries them all, so it can be
 * planned and verified alone); only layers are spread over volumes, whole or
 * in parts.
 */
function parseVolume(v: unknown, meta: BundleMetadata, w: string): BundleVolume {
  const o = obj(v, w);
  const count = size(o.count, `${w}.count`);
  const index = size(o.index, `${w}.index`);
  if (count < 1 || index >= count) throw bad(`${w}`, `index ${index} of ${count} volumes is out of range`);
  const bundleId = parseDigest(o.bundleId, `${w}.bundleId`);
  if (bundleId !== meta.bundleId) throw bad(`${w}.bundleId`, `is ${bundleId}, the metadata's bundleId is ${meta.bundleId}`);
  const blobs = arr(o.blobs, `${w}.blobs`).map((d, i) => parseDigest(d, `${w}.blobs[${i}]`));
  const pos = new Map(meta.blobs.map((b, i) => [b.digest as string, i]));
  let last = -1;
  blobs.forEach((d, i) => {
    const p = pos.get(d);
    if (p === undefined) throw bad(`${w}.blobs[${i}]`, `${d} is not a blob of the bundle`, { digest: d });
    if (p <= last) throw bad(`${w}.blobs[${i}]`, `${d} is listed twice or out of stored order`, { digest: d });
    last = p;
  });
  const held = new Set<string>(blobs);
  const lacking = meta.blobs.find((b) => b.kind !== 'layer' && !held.has(b.digest));
  if (lacking) throw bad(`${w}.blobs`, `lacks ${lacking.kind} ${lacking.digest}: every volume holds every manifest, index and config`, { digest: lacking.digest });
  const vol: BundleVolume = { index, count, bundleId, blobs };
  if (o.parts !== undefined) {
    const parts = arr(o.parts, `${w}.parts`).map((p, i) => parsePart(p, meta, `${w}.parts[${i}]`));
    let lastPart = -1;
    parts.forEach((p, i) => {
      const at = pos.get(p.digest)!;
      if (held.has(p.digest)) throw bad(`${w}.parts[${i}]`, `${p.digest} is held whole and in part`, { digest: p.digest });
      if (at <= lastPart) throw bad(`${w}.parts[${i}]`, `${p.digest} has two parts here or is out of stored order`, { digest: p.digest });
      lastPart = at;
    });
    if (parts.length > 0) vol.parts = parts;
  }
  return vol;
}

/** A part must lie inside its layer, the first at offset 0 and the last at the layer's end; the rest is checked when parts are joined. */
function parsePart(v: unknown, meta: BundleMetadata, w: string): BundlePart {
  const o = obj(v, w);
  const digest = parseDigest(o.digest, `${w}.digest`);
  const layer = meta.blobs.find((b) => b.digest === digest);
  if (!layer || layer.kind !== 'layer') throw bad(`${w}.digest`, `${digest} is not a stored layer of the bundle (only layers are cut)`, { digest });
  const part: BundlePart = {
    digest,
    index: size(o.index, `${w}.index`),
    count: size(o.count, `${w}.count`),
    offset: size(o.offset, `${w}.offset`),
    size: size(o.size, `${w}.size`),
    partDigest: parseDigest(o.partDigest, `${w}.partDigest`),
  };
  const end = part.offset + part.size;
  if (part.count < 2 || part.index >= part.count) throw bad(w, `part ${part.index} of ${part.count} is out of range (a cut layer has at least 2 parts)`, { digest });
  if (part.size < 1 || end > layer.size) throw bad(w, `bytes ${part.offset}…${end} do not lie inside the ${layer.size} bytes of ${digest}`, { digest });
  if ((part.index === 0) !== (part.offset === 0)) throw bad(w, `part ${part.index} of ${digest} starts at ${part.offset}: only the first part starts at 0`, { digest });
  if ((part.index === part.count - 1) !== (end === layer.size)) throw bad(w, `part ${part.index} of ${part.count} of ${digest} ends at ${end}: only the last part ends at the layer's end`, { digest });
  return part;
}

function checkConsistency(meta: BundleMetadata, totals: Record<string, unknown>, w: string): void {
  const stored = new Map<string, BundleBlob>();
  let group = 0;
  meta.blobs.forEach((b, i) => {
    if (stored.has(b.digest)) throw bad(`${w}.blobs[${i}]`, `lists ${b.digest} twice`, { digest: b.digest });
    stored.set(b.digest, b);
    const g = KIND_GROUP[b.kind];
    if (g < group) throw bad(`${w}.blobs[${i}]`, `${b.kind} ${b.digest} comes after a later group (order is manifests and indexes, then configs, then layers)`, { digest: b.digest });
    group = g;
  });
  const omitted = new Set<string>();
  meta.delta?.omittedBlobs.forEach((b, i) => {
    if (stored.has(b.digest) || omitted.has(b.digest)) throw bad(`${w}.delta.omittedBlobs[${i}]`, `${b.digest} is listed twice`, { digest: b.digest });
    if (b.kind === 'index' || b.kind === 'manifest') throw bad(`${w}.delta.omittedBlobs[${i}]`, 'manifests and indexes are always stored, never omitted', { digest: b.digest });
    omitted.add(b.digest);
  });
  meta.foreignBlobs?.forEach((b, i) => {
    if (stored.has(b.digest) || omitted.has(b.digest)) throw bad(`${w}.foreignBlobs[${i}]`, `${b.digest} is listed twice`, { digest: b.digest });
    omitted.add(b.digest);
  });
  const names = new Set<string>();
  meta.images.forEach((img, i) => {
    const name = imageRefName(img);
    if (names.has(name)) throw bad(`${w}.images[${i}]`, `${name} is listed twice`);
    names.add(name);
    const top = stored.get(img.digest);
    if (!top || (top.kind !== 'index' && top.kind !== 'manifest')) throw bad(`${w}.images[${i}]`, `${name}: its manifest ${img.digest} is not a stored manifest or index`, { digest: img.digest });
    if (top.mediaType !== img.mediaType) throw bad(`${w}.images[${i}].mediaType`, `${name}: ${img.mediaType} differs from the stored blob's ${top.mediaType}`);
    if (i > 0 && compareImages(meta.images[i - 1]!, img) >= 0) throw bad(`${w}.images[${i}]`, `${name} is out of order (images are sorted by repository, tag, digest)`);
  });
  const want: BundleTotals = {
    images: meta.images.length,
    blobs: meta.blobs.length,
    storedBytes: meta.blobs.reduce((n, b) => n + b.size, 0),
    referencedBytes: meta.images.reduce((n, i) => n + i.size, 0),
  };
  for (const k of Object.keys(want) as (keyof BundleTotals)[]) {
    const have = size(totals[k], `${w}.totals.${k}`);
    if (have !== want[k]) throw bad(`${w}.totals.${k}`, `is ${have}, but the lists add up to ${want[k]}`);
  }
  meta.totals = want;
}
