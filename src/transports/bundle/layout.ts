import { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, parseManifest } from '../../oci/manifest.js';
import { isIndexMediaType, isManifestMediaType, MT } from '../../oci/media-types.js';
import { formatPlatform, type Platform } from '../../oci/platform.js';
import { parseReference, validateQualifiedName } from '../../oci/reference.js';
import { walkManifestsSync, type WalkNode } from '../../oci/walk.js';
import {
  type BlobKind, type BundleBase, type BundleBlob, type BundleImage, type BundleMetadata, type BundlePart, type BundleSplit, blobEntryName, buildMetadata,
  compareImages, createdSeconds, formatCreated, type FormatVersion, imageRefName, metadataCost, metadataOverLimit, partEntryName, serialiseMetadata,
} from './metadata.js';
import { BLOCK, padding } from './tar.js';
import { planVolumes, type VolumeEntry } from './volumes.js';

/**
 * The one planner of a bundle's bytes (spec/bundle.md §2): from the images'
 * manifests (and what their configs say) to the stored order, the metadata,
 * and where every entry of every file lies — header, content and padding —
 * before a single blob byte exists. The writer lays its files out with it and
 * writes each blob at its place as it arrives; `ferry plan` counts volumes with
 * it; a reader that needs offsets can compute them from the metadata with
 * `layoutArchive`.
 */

/** An image as the bundle records it: its top manifest, name and provenance. */
export interface LayoutImage {
  repository: string;
  tag?: string;
  /** The top manifest (index or image manifest). */
  manifest: Manifest;
  origin?: string;
  sourceDigest?: Digest;
}

/** What the planner is given: the images, and every manifest they reach (children included). */
export interface LayoutRequest {
  images: LayoutImage[];
  manifests: ReadonlyMap<Digest, Manifest>;
}

export interface LaidBlob extends BundleBlob {
  /** Left out of a delta: the receiver has it. */
  omitted: boolean;
  /** A foreign layer whose bytes are not carried. */
  foreign: boolean;
}

/** What the metadata takes from an image config. */
export interface ConfigInfo {
  platform?: Platform;
  /** ms since the epoch */
  created?: number;
}

/** Configs are JSON documents; one larger than this is not read for platform/created (it is still carried). */
export const CONFIG_READ_MAX = 16 * 1024 * 1024;

interface WalkedImage {
  record: LayoutImage;
  name: string;
  /** From the index's children; a plain image's comes from its config. */
  platforms: string[];
  /** Its configs, the plain image's own first. */
  configs: Digest[];
  isIndex: boolean;
  /** Bytes of every manifest, config and layer it references, each once. */
  size: number;
  blobs: Set<Digest>;
}

/** The images walked into the stored order (spec §2): every blob once, in its group, in order of first appearance. */
export interface BundleContent {
  images: WalkedImage[];
  /** Manifests and indexes (children first), then configs, then layers: stored, omitted and foreign alike. */
  all: LaidBlob[];
  /** The blob entries of the bundle, in stored order. */
  stored: LaidBlob[];
}

export interface WalkOptions {
  isOmitted?: (d: Digest) => boolean;
  isForeign?: (d: Digest) => boolean;
  /** For messages: `bundle release.tar`. */
  description: string;
}

/** A manifest in the walk, with the bytes the bundle stores. */
interface ManifestNode extends WalkNode {
  manifest: Manifest;
}

/** Walks every image in sorted order, depth first, as spec/bundle.md §2 fixes. */
export function walkImages(request: LayoutRequest, opts: WalkOptions): BundleContent {
  const records = [...request.images].sort((a, b) => compareImages(
    { repository: a.repository, tag: a.tag, digest: a.manifest.digest },
    { repository: b.repository, tag: b.tag, digest: b.manifest.digest },
  ));
  const groups: Record<'manifests' | 'configs' | 'layers', LaidBlob[]> = { manifests: [], configs: [], layers: [] };
  const seen = new Map<Digest, LaidBlob>();
  const isOmitted = opts.isOmitted ?? (() => false);
  const isForeign = opts.isForeign ?? (() => false);

  const note = (desc: Pick<Descriptor, 'digest' | 'size' | 'mediaType'>, kind: BlobKind, where: string): LaidBlob => {
    const have = seen.get(desc.digest);
    if (have) {
      if (have.size !== desc.size) {
        throw new FerryError('E_MANIFEST_INVALID', `${where}: ${desc.digest} is referenced with size ${desc.size} here and ${have.size} elsewhere`, {
          hint: 'one of the manifests is wrong; re-push the image', details: { digest: desc.digest },
        });
      }
      return have;
    }
    const omitted = (kind === 'config' || kind === 'layer') && isOmitted(desc.digest);
    const foreign = kind === 'layer' && !omitted && isForeign(desc.digest);
    const p: LaidBlob = { digest: desc.digest, size: desc.size, mediaType: desc.mediaType, kind, omitted, foreign };
    seen.set(desc.digest, p);
    (kind === 'index' || kind === 'manifest' ? groups.manifests : kind === 'config' ? groups.configs : groups.layers).push(p);
    return p;
  };

  const images: WalkedImage[] = [];
  const names = new Set<string>();
  for (const rec of records) {
    const repository = validateQualifiedName(rec.repository, `${opts.description}: image ${rec.origin ?? rec.repository}`);
    const name = imageRefName({ repository, tag: rec.tag, digest: rec.manifest.digest });
    if (names.has(name)) {
      throw new FerryError('E_USAGE', `${opts.description}: ${name} was given twice`, { hint: 'a bundle holds one image per repository:tag; list each tag once', details: { image: name } });
    }
    names.add(name);
    const inImage = new Map<Digest, number>();
    const platforms: string[] = [];
    const configs: Digest[] = [];
    const node = (m: Manifest): ManifestNode => ({ digest: m.digest, parsed: parseManifest(m.bytes, m.mediaType, `${name} manifest ${m.digest}`), manifest: m });
    const root = node(rec.manifest);
    // The one manifest walker: children before parents, each once, the depth capped; the stored order is its order.
    const walked = walkManifestsSync(root, (child) => {
      if (!isManifestMediaType(child.mediaType)) {
        throw new FerryError('E_UNSUPPORTED_MEDIA_TYPE', `${name}: index entry ${child.digest} has media type ${child.mediaType}`, {
          hint: 'ferry carries indexes of image manifests and indexes', details: { image: name, digest: child.digest },
        });
      }
      const m = request.manifests.get(child.digest);
      if (!m) {
        throw new FerryError('E_BLOB_MISSING', `${opts.description}: ${name} needs manifest ${child.digest}, which was never written`, {
          hint: 'the copy did not complete; run the export again', details: { image: name, digest: child.digest },
        });
      }
      if (child.size !== m.bytes.length) {
        throw new FerryError('E_MANIFEST_INVALID', `${name}: index entry ${child.digest} declares ${child.size} bytes, the manifest has ${m.bytes.length}`, {
          hint: 'the index is inconsistent; re-push the image', details: { image: name, digest: child.digest },
        });
      }
      return node(m);
    }, name);
    for (const child of root.parsed.manifests) {
      if (child.platform && child.platform.os !== 'unknown') {
        const p = formatPlatform(child.platform);
        if (!platforms.includes(p)) platforms.push(p);
      }
    }
    for (const { node: { parsed, manifest: m } } of walked) {
      if (parsed.kind === 'image') {
        if (parsed.config) {
          inImage.set(parsed.config.digest, note(parsed.config, 'config', name).size);
          if (!configs.includes(parsed.config.digest)) configs.push(parsed.config.digest);
        }
        for (const l of parsed.layers) inImage.set(l.digest, note(l, 'layer', name).size);
      }
      inImage.set(m.digest, note({ digest: m.digest, mediaType: m.mediaType, size: m.bytes.length }, isIndexMediaType(m.mediaType) ? 'index' : 'manifest', name).size);
    }
    images.push({
      record: { ...rec, repository }, name, platforms, configs, isIndex: isIndexMediaType(rec.manifest.mediaType),
      size: [...inImage.values()].reduce((n, s) => n + s, 0), blobs: new Set(inImage.keys()),
    });
  }
  const all = [...groups.manifests, ...groups.configs, ...groups.layers];
  return { images, all, stored: all.filter((b) => !b.omitted && !b.foreign) };
}

/** The stored configs whose content the metadata reads (platform, created): image configs of a readable size. */
export function configsToRead(content: BundleContent): LaidBlob[] {
  return content.stored.filter((b) => b.kind === 'config' && isImageConfig(b));
}

export function isImageConfig(b: Pick<BundleBlob, 'mediaType' | 'size'>): boolean {
  return b.size <= CONFIG_READ_MAX && (b.mediaType === MT.ociConfig || b.mediaType === MT.dockerConfig);
}

/** What an image config says about platform and time; nothing for what does not parse (it is still carried). */
export function readConfigInfo(bytes: Buffer): ConfigInfo {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
  if (doc === null || typeof doc !== 'object') return {};
  const info: ConfigInfo = {};
  if (typeof doc.os === 'string' && typeof doc.architecture === 'string' && doc.os !== '' && doc.architecture !== '') {
    const p: Platform = { os: doc.os, architecture: doc.architecture };
    if (typeof doc.variant === 'string' && doc.variant !== '') p.variant = doc.variant;
    if (/^[a-z0-9._-]+\/[a-z0-9._-]+(?:\/[a-z0-9._-]+)?$/.test(formatPlatform(p))) info.platform = p;
  }
  if (typeof doc.created === 'string') {
    const t = Date.parse(doc.created);
    if (!Number.isNaN(t) && t > 0) info.created = t;
  }
  return info;
}

export interface MetadataOptions {
  toolVersion: string;
  /** Bundle time when SOURCE_DATE_EPOCH is not set (spec/bundle.md §4.3). */
  created?: Date;
  delta?: { bases: BundleBase[] };
  /** Default: the version this ferry writes; 1 for a bundle an older ferry reads (tests of old bundles). */
  formatVersion?: FormatVersion;
}

/**
 * The metadata of the walked images. `configInfo` answers for the stored image
 * configs (undefined for any other: a plain image whose config is omitted or not an
 * image config records no platform).
 */
export function metadataOf(content: BundleContent, configInfo: (d: Digest) => ConfigInfo | undefined, opts: MetadataOptions): BundleMetadata {
  const images = content.images.map((w): BundleImage => {
    const platforms = [...w.platforms];
    if (!w.isIndex) {
      const p = w.configs[0] === undefined ? undefined : configInfo(w.configs[0])?.platform;
      if (p) platforms.push(formatPlatform(p));
    }
    const r = w.record;
    const img: BundleImage = { origin: r.origin ?? w.name, repository: r.repository, digest: r.manifest.digest, mediaType: r.manifest.mediaType, platforms, size: w.size };
    parseReference(img.origin, `${w.name} origin`);
    if (r.tag !== undefined) img.tag = r.tag;
    if (r.sourceDigest !== undefined) img.sourceDigest = r.sourceDigest;
    return img;
  });
  const created = chooseCreated(opts.created, () => {
    let newest = 0;
    for (const b of content.stored) {
      const t = b.kind === 'config' ? configInfo(b.digest)?.created : undefined;
      if (t !== undefined && t > newest) newest = t;
    }
    return newest;
  });
  return buildMetadata({
    created, toolVersion: opts.toolVersion, images, blobs: content.stored.map(plain),
    ...(opts.delta ? { delta: { bases: opts.delta.bases, omittedBlobs: content.all.filter((b) => b.omitted).map(plain) } } : {}),
    foreignBlobs: content.all.filter((b) => b.foreign).map(plain),
    ...(opts.formatVersion ? { formatVersion: opts.formatVersion } : {}),
  });
}

function plain(b: BundleBlob): BundleBlob {
  return { digest: b.digest, size: b.size, mediaType: b.mediaType, kind: b.kind };
}

/**
 * SOURCE_DATE_EPOCH (reproducible-builds convention) wins, then the explicit
 * option, then the newest image config's `created`: a content time, so the
 * same images give the same bytes by default.
 */
function chooseCreated(option: Date | undefined, newestConfig: () => number): string {
  const env = process.env['SOURCE_DATE_EPOCH'];
  if (env !== undefined && env !== '') {
    if (!/^\d{1,12}$/.test(env)) throw new FerryError('E_USAGE', `SOURCE_DATE_EPOCH=${JSON.stringify(env.slice(0, 40))} is not a number of seconds`, { hint: 'set it to a Unix time, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)' });
    return formatCreated(new Date(Number(env) * 1000));
  }
  if (option) return formatCreated(option);
  return formatCreated(new Date(newestConfig()));
}

/** index.json: one descriptor per image, in metadata order, named so `oci-archive:FILE:<name>` finds it. */
export function ociIndex(meta: BundleMetadata): Buffer {
  const blobSize = new Map(meta.blobs.map((b) => [b.digest, b.size]));
  const doc = {
    schemaVersion: 2,
    mediaType: MT.ociIndex,
    manifests: meta.images.map((i) => ({
      mediaType: i.mediaType,
      digest: i.digest,
      size: blobSize.get(i.digest) ?? 0,
      annotations: { 'org.opencontainers.image.ref.name': imageRefName(i) },
    })),
  };
  return Buffer.from(JSON.stringify(doc), 'utf8');
}

export const OCI_LAYOUT = Buffer.from('{"imageLayoutVersion":"1.0.0"}');

// ---------------------------------------------------------------- the tar

/** Tar bytes of an entry with `size` content bytes: its header, the content, the padding. */
export function entryBytes(size: number): number {
  return BLOCK + size + padding(size);
}

/** tar-stream writes mtime as `seconds | 0`: a later time would wrap around, so it is refused. */
const MTIME_MAX = 0x7fffffff;

/**
 * One 512-byte ustar header exactly as spec/bundle.md §2.1 fixes it (the bytes
 * tar-stream 3.x's `headers.encode` writes for these fields): octal fields
 * zero-padded with a trailing space, `mode`/`uid`/`gid`/`devmajor`/`devminor`
 * and the checksum as 6 digits + space + NUL, sizes of 8 GiB and more in
 * base-256, empty user and group names, `ustar\0` `00`.
 */
export function tarHeader(name: string, type: 'file' | 'directory', size: number, mtime: number): Buffer {
  if (!Number.isInteger(mtime) || mtime < 0 || mtime > MTIME_MAX) {
    throw new FerryError('E_USAGE', `bundle time ${mtime} s is outside 1970-01-01 … 2038-01-19, which bundle tar headers cannot hold`, {
      hint: 'set SOURCE_DATE_EPOCH (or the created time) to a time in that range',
    });
  }
  const full = type === 'directory' && !name.endsWith('/') ? `${name}/` : name;
  if (Buffer.byteLength(full) !== full.length || full.length > 100) throw new FerryError('E_INTERNAL', `tar entry name ${JSON.stringify(full.slice(0, 120))} is not ASCII of at most 100 bytes`);
  const h = Buffer.alloc(BLOCK);
  h.write(full, 0, 'latin1');
  h.write(octal(type === 'directory' ? 0o755 : 0o644, 6), 100, 'latin1');
  h.write(octal(0, 6), 108, 'latin1');
  h.write(octal(0, 6), 116, 'latin1');
  const bytes = type === 'directory' ? 0 : size;
  if (bytes.toString(8).length > 11) {
    h[124] = 0x80;
    let n = bytes;
    for (let i = 11; i > 0; i--) {
      h[124 + i] = n % 256;
      n = Math.floor(n / 256);
    }
  } else {
    h.write(octal(bytes, 11), 124, 'latin1');
  }
  h.write(octal(mtime, 11), 136, 'latin1');
  h[156] = type === 'directory' ? 0x35 : 0x30;
  h.write('ustar\u000000', 257, 'latin1');
  h.write(octal(0, 6), 329, 'latin1');
  h.write(octal(0, 6), 337, 'latin1');
  let sum = 8 * 32;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += h[i]!;
  h.write(octal(sum, 6), 148, 'latin1');
  return h;
}

/** `n` as `width` zero-padded octal digits and a space (a value too wide for the field is all sevens, as tar-stream writes it). */
function octal(n: number, width: number): string {
  const s = n.toString(8);
  return s.length > width ? `${'7'.repeat(width)} ` : `${s.padStart(width, '0')} `;
}

/** One entry of a bundle file: where its header starts, what it holds. */
export interface ArchiveEntry {
  name: string;
  type: 'file' | 'directory';
  /** Offset of its 512-byte header; the content follows at offset + 512. */
  offset: number;
  /** Content bytes. */
  size: number;
  /** A stored blob, or the layer a part is cut from. */
  blob?: BundleBlob;
  /** Set for a part of a cut layer (spec §9.2): which bytes of `blob` it holds. */
  part?: PartOf;
}

/** A part's place in its layer; its digest is known only once the layer's bytes are. */
export interface PartOf {
  index: number;
  count: number;
  offset: number;
  size: number;
}

export interface ArchiveLayout {
  /** Bytes of the whole file, the two end-of-archive blocks included. */
  size: number;
  /** Every entry in file order: ferry.json, oci-layout, index.json, the two directories, the blobs (and parts). */
  entries: ArchiveEntry[];
  /** Where the first layer (or part) entry starts: everything before it is the head. */
  headEnd: number;
}

/**
 * Where every entry of one bundle file lies (spec §2): the metadata of
 * `metaBytes` bytes, oci-layout, index.json of `indexJsonBytes`, the two
 * directories, then `entries` (the stored blobs of this file, and parts of cut
 * layers where they stand), then two zero blocks.
 */
export function layoutArchive(metaBytes: number, indexJsonBytes: number, entries: readonly { blob: BundleBlob; part?: PartOf }[]): ArchiveLayout {
  const out: ArchiveEntry[] = [];
  let at = 0;
  const add = (e: Omit<ArchiveEntry, 'offset'>): void => {
    out.push({ ...e, offset: at });
    at += e.type === 'directory' ? BLOCK : entryBytes(e.size);
  };
  add({ name: 'ferry.json', type: 'file', size: metaBytes });
  add({ name: 'oci-layout', type: 'file', size: OCI_LAYOUT.length });
  add({ name: 'index.json', type: 'file', size: indexJsonBytes });
  add({ name: 'blobs/', type: 'directory', size: 0 });
  add({ name: 'blobs/sha256/', type: 'directory', size: 0 });
  let headEnd: number | undefined;
  for (const { blob, part } of entries) {
    if (headEnd === undefined && (blob.kind === 'layer' || part)) headEnd = at;
    if (part) add({ name: partEntryName(blob.digest, part.index), type: 'file', size: part.size, blob, part });
    else add({ name: blobEntryName(blob.digest), type: 'file', size: blob.size, blob });
  }
  return { size: at + 2 * BLOCK, entries: out, headEnd: headEnd ?? at };
}

// ---------------------------------------------------------------- files of a bundle

/** One file of a bundle: the whole bundle, or one volume of a split one. */
export interface PlannedFile {
  /** 0-based volume index (0 for an unsplit bundle). */
  index: number;
  /** Its metadata: with `volume` (and the cut) in a volume; part digests are placeholders until the layers are written. */
  meta: BundleMetadata;
  metaBytes: number;
  layout: ArchiveLayout;
  /** Whole layers in it. */
  layers: number;
  /** Parts of cut layers in it. */
  parts: number;
}

export interface BundlePlan {
  /** The whole bundle's metadata (STEM.ferry.json of a split one: with the cut, placeholders for part digests). */
  meta: BundleMetadata;
  stored: LaidBlob[];
  indexJson: Buffer;
  files: PlannedFile[];
  /** Cut layers: each layer's part sizes, in order. */
  cuts: Map<Digest, number[]>;
}

/** A part digest not known yet: the same length as the real one, so the metadata's size does not change when it is. */
export const PENDING_DIGEST = `sha256:${'0'.repeat(64)}` as Digest;

/**
 * Every file of the bundle and every entry's place in it. With `split`, the
 * layers are cut over volumes by the continuation rule (volumes.ts), each volume
 * a bundle file with the whole bundle's metadata, its `volume` member and the
 * record of the cut (spec §9).
 */
export function planBundle(meta: BundleMetadata, stored: LaidBlob[], split?: { maxBytes: number; description: string; headSlack?: number }): BundlePlan {
  // The bundle time must fit the tar headers (1970…2038): refused when planned, not after the fetch.
  tarHeader('ferry.json', 'file', 0, mtimeOf(meta));
  const indexJson = ociIndex(meta);
  const cuts = new Map<Digest, number[]>();
  if (split === undefined) {
    const metaBytes = serialiseMetadata(meta).length;
    const layout = layoutArchive(metaBytes, indexJson.length, stored.map((blob) => ({ blob })));
    return { meta, stored, indexJson, cuts, files: [{ index: 0, meta, metaBytes, layout, layers: stored.filter((b) => b.kind === 'layer').length, parts: 0 }] };
  }
  const cut = planVolumes(meta, stored, indexJson.length, split.maxBytes, split.description, split.headSlack);
  for (const piece of cut.flat()) {
    if (!piece.part) continue;
    const sizes = cuts.get(piece.blob.digest) ?? [];
    sizes.push(piece.part.size);
    cuts.set(piece.blob.digest, sizes);
  }
  const head = stored.filter((b) => b.kind !== 'layer');
  const splitParts = cut.flatMap((pieces, volume) => pieces.flatMap(({ blob, part }) => (part ? [{ digest: blob.digest, ...part, partDigest: PENDING_DIGEST, volume }] : [])));
  const whole: BundleMetadata = splitParts.length > 0 ? { ...meta, split: { count: cut.length, parts: splitParts } } : meta;
  const files = cut.map((pieces, index): PlannedFile => {
    const entries: VolumeEntry<LaidBlob>[] = [
      ...head.map((blob) => ({ blob })),
      ...pieces.map(({ blob, part }) => (part ? { blob, part: { digest: blob.digest, ...part, partDigest: PENDING_DIGEST } } : { blob })),
    ];
    const parts = entries.flatMap((e) => (e.part ? [e.part] : []));
    const volMeta: BundleMetadata = {
      ...whole,
      volume: { index, count: cut.length, bundleId: meta.bundleId, blobs: entries.filter((e) => !e.part).map((e) => e.blob.digest), ...(parts.length > 0 ? { parts } : {}) },
    };
    const metaBytes = serialiseMetadata(volMeta).length;
    return {
      index, meta: volMeta, metaBytes, layout: layoutArchive(metaBytes, indexJson.length, entries),
      layers: pieces.filter((p) => !p.part).length, parts: parts.length,
    };
  });
  return { meta: whole, stored, indexJson, files, cuts };
}

/** The metadata of `plan` with the part digests known now (split bundles); unchanged without cut layers. */
export function withPartDigests(meta: BundleMetadata, digests: ReadonlyMap<Digest, readonly Digest[]>): BundleMetadata {
  const fill = <P extends BundlePart>(p: P): P => {
    const d = digests.get(p.digest)?.[p.index];
    if (d === undefined) throw new FerryError('E_INTERNAL', `part ${p.index + 1} of ${p.digest} has no digest`);
    return { ...p, partDigest: d };
  };
  const out: BundleMetadata = { ...meta };
  if (meta.split) out.split = { count: meta.split.count, parts: meta.split.parts.map(fill) } satisfies BundleSplit;
  if (meta.volume) out.volume = { ...meta.volume, ...(meta.volume.parts ? { parts: meta.volume.parts.map(fill) } : {}) };
  return out;
}

/**
 * Refuses metadata readers would refuse (spec §4.4), naming the file and what
 * to do: known from the manifests and configs, before any layer is fetched.
 */
export function checkMetadataLimits(plan: BundlePlan, description: string, slack = { bytes: 0, parseBytes: 0 }): void {
  for (const f of plan.files) {
    const exact = metadataCost(serialiseMetadata(f.meta));
    const cost = { bytes: exact.bytes + slack.bytes, parseBytes: exact.parseBytes + slack.parseBytes };
    const over = metadataOverLimit(cost);
    if (over === undefined) continue;
    throw new FerryError('E_USAGE', `${description}: the metadata of ${plan.meta.totals.images} images and ${plan.meta.totals.blobs} blobs ${over}: readers would refuse the bundle`, {
      hint: 'export the images in several bundles (split the image list), each well under the limit; `ferry plan` shows it before the transfer window',
      details: { images: plan.meta.totals.images, blobs: plan.meta.totals.blobs, metadataBytes: cost.bytes, parseBytes: cost.parseBytes },
    });
  }
}

/** The tar mtime of every header of the bundle. */
export function mtimeOf(meta: BundleMetadata): number {
  return createdSeconds(meta.created);
}
