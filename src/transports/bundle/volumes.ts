import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { FerryError } from '../../errors.js';
import { formatBytes } from '../../format.js';
import { BLOCK, padding } from './tar.js';
import type { Digest } from '../../oci/digest.js';
import { type BundleBlob, type BundleMetadata, type BundlePart, type BundleSplit, encodeV2, serialiseMetadata } from './metadata.js';

/**
 * Splitting a bundle into volumes for file shares (spec/bundle.md "Volumes"):
 * the file names (the size syntax is src/size.ts), the cut (at blob boundaries, and inside
 * the layers no volume can hold whole), and the `sha256sum -c` sidecar. Each volume is a whole bundle file of its own.
 */

export interface VolumeFile {
  index: number;
  path: string;
  /** Uncompressed tar bytes (what the cap bounds). */
  tarBytes: number;
  /** Whole layers in it. */
  layers: number;
  /** Parts of layers cut across volumes in it. */
  parts: number;
  sha256: string;
}

/** `release.tar.zst` → `release`: the stem volume names, the sidecar and the metadata copy are built from. */
export function volumeStem(output: string): string {
  return output.replace(/\.tar\.zst$|\.tar$|\.zst$/, '');
}

/** Volume `index` of `count`: `release.000.tar.zst` — each volume is a bundle of its own, so it keeps the bundle's extension. */
export function volumeName(stem: string, index: number, count: number, compressed: boolean): string {
  const width = Math.max(3, String(count - 1).length);
  return `${stem}.${String(index).padStart(width, '0')}.tar${compressed ? '.zst' : ''}`;
}

/** A name volumeName makes, read back: `release.002.tar.zst` → stem `release`, index 2, compressed. */
export function parseVolumeName(file: string): { stem: string; index: number; compressed: boolean } | undefined {
  const m = /^(.*)\.(\d{3,})\.tar(\.zst)?$/.exec(file);
  return m ? { stem: m[1]!, index: Number(m[2]), compressed: m[3] !== undefined } : undefined;
}

const entryBytes = (size: number): number => BLOCK + size + padding(size);

/** Where a layer cut across volumes starts and how long it is in one volume. */
export interface PartRange {
  index: number;
  count: number;
  offset: number;
  size: number;
}

/** One layer entry of a volume: the whole layer, or one part of it. */
export interface VolumePiece<B> {
  blob: B;
  part?: PartRange;
}

/** What a volume writes after its head: a whole blob, or a part with its own digest. */
export interface VolumeEntry<B> {
  blob: B;
  part?: BundlePart;
}

const MAX = Number.MAX_SAFE_INTEGER;

/**
 * The tar bytes every volume spends before its first layer, and on its end:
 * ferry.json, oci-layout, index.json, the two directories, every manifest and
 * config, the end-of-archive blocks. ferry.json is counted at an upper bound
 * (every digest listed, the widest numbers, two parts of its own: a volume holds
 * at most a continued part and a starting one, and `parts` widest records of the
 * whole cut in `split`), so the cut can be planned before any volume's metadata is
 * known; planVolumes finds the number of parts the bound must allow for.
 */
export function volumeHeadBytes(meta: BundleMetadata, stored: readonly BundleBlob[], indexJsonBytes: number, parts = 0): number {
  const head = stored.filter((b) => b.kind !== 'layer');
  return entryBytes(metadataBound(meta, stored, parts)) + entryBytes(30) + entryBytes(indexJsonBytes) + 2 * BLOCK + head.reduce((n, b) => n + entryBytes(b.size), 0) + 2 * BLOCK;
}

/**
 * The upper bound of a volume's ferry.json (spec §9.2): every number of its
 * `volume` member and of the cut at its widest. Version 1 lists every stored
 * digest in the volume; version 2 names its run of layers by two numbers.
 */
function metadataBound(meta: BundleMetadata, stored: readonly BundleBlob[], parts: number): number {
  if (meta.formatVersion === 1) {
    const widest: BundlePart = { digest: meta.bundleId, index: MAX, count: MAX, offset: MAX, size: MAX, partDigest: meta.bundleId };
    const split: BundleSplit | undefined = parts > 0 ? { count: MAX, parts: Array.from({ length: parts }, () => ({ ...widest, volume: MAX })) } : undefined;
    return serialiseMetadata({ ...meta, ...(split ? { split } : {}), volume: { index: MAX, count: MAX, bundleId: meta.bundleId, blobs: stored.map((b) => b.digest), parts: [widest, widest] } }).length;
  }
  const { split: _split, volume: _volume, ...rest } = meta;
  const doc = encodeV2(rest);
  const widest = { layer: MAX, index: MAX, count: MAX, offset: MAX, size: MAX, partDigest: meta.bundleId };
  if (parts > 0) doc.split = { count: MAX, parts: Array.from({ length: parts }, () => ({ ...widest, volume: MAX })) };
  doc.volume = { index: MAX, count: MAX, bundleId: meta.bundleId, layers: [MAX, MAX], parts: [widest, widest] };
  return Buffer.byteLength(`${JSON.stringify(doc)}\n`);
}

/**
 * The continuation rule (spec/bundle.md §9.2), on sizes alone so that
 * `ferry plan` counts volumes with the writer's own rule. Layers go in stored
 * order; one that fits beside the head of an empty volume is never cut (so it
 * stays readable by skopeo from its one volume, and costs one volume when
 * lost). One that does not is cut: its first part fills what is left of the
 * current volume, middle parts fill whole volumes, the last part opens the
 * next one. Parts but the last are whole tar blocks, so no padding is wasted.
 */
export function cutLayers<B extends BundleBlob>(head: number, layers: readonly B[], maxBytes: number, description: string): VolumePiece<B>[][] {
  const tooSmall = (need: number, why: string): FerryError => {
    const suggest = suggestedSplit(need);
    return new FerryError('E_USAGE', `${description}: --split ${maxBytes} bytes (${formatBytes(maxBytes)}) is too small: every volume carries the bundle's head (metadata, manifests and configs), ${head} bytes (${formatBytes(head)}) here${why}; use --split ${suggest.text} or more`, {
      hint: `give a larger --split (at least ${need} bytes, e.g. --split ${suggest.text}), or export fewer images per bundle (the head grows with the images); \`ferry plan --split SIZE\` shows it before any transfer`,
      details: { split: maxBytes, headBytes: head, neededBytes: need, suggestedSplit: suggest.bytes },
    });
  };
  if (head > maxBytes) throw tooSmall(head + 2 * BLOCK, '');
  const room = maxBytes - head;
  const largestPart = Math.floor((room - BLOCK) / BLOCK) * BLOCK;
  const volumes: VolumePiece<B>[][] = [];
  let current: VolumePiece<B>[] = [];
  let used = 0;
  const next = (): void => {
    volumes.push(current);
    current = [];
    used = 0;
  };
  for (const blob of layers) {
    const e = entryBytes(blob.size);
    if (e <= room) {
      if (used + e > room && current.length > 0) next();
      current.push({ blob });
      used += e;
      continue;
    }
    if (largestPart < BLOCK) throw tooSmall(head + 2 * BLOCK, `, and layer ${blob.digest} (${blob.size} bytes) needs room for a part of at least ${BLOCK} bytes beside them`);
    let first = Math.floor((room - used - BLOCK) / BLOCK) * BLOCK;
    if (first < BLOCK) {
      next();
      first = largestPart;
    }
    const sizes = [first];
    let rest = blob.size - first;
    for (; rest > largestPart; rest -= largestPart) sizes.push(largestPart);
    sizes.push(rest);
    let offset = 0;
    sizes.forEach((size, index) => {
      if (index > 0) next();
      current.push({ blob, part: { index, count: sizes.length, offset, size } });
      used += entryBytes(size);
      offset += size;
    });
  }
  volumes.push(current);
  return volumes;
}

/** More volumes than this is a size typed wrong (100K for 100M), not a plan: a set is carried and checked by hand. */
export const MAX_VOLUMES = 10_000;

function checkVolumeCount(volumes: number, split: number, description: string): void {
  if (volumes <= MAX_VOLUMES) return;
  const at = suggestedSplit(Math.ceil((split * volumes) / MAX_VOLUMES));
  throw new FerryError('E_USAGE', `${description}: --split ${split} bytes (${formatBytes(split)}) would cut this bundle into ${volumes} volumes, more than the ${MAX_VOLUMES} a set may have; use --split ${at.text} or more`, {
    hint: 'give a larger size (e.g. --split 2G); `ferry plan --split SIZE` counts the volumes', details: { volumes, split, limit: MAX_VOLUMES, suggestedSplit: at.bytes },
  });
}

/** The smallest power-of-two MiB size at least `need` bytes, as `--split` takes it (`64M`): a size to suggest. */
export function suggestedSplit(need: number): { bytes: number; text: string } {
  let mib = 1;
  while (mib * 1024 * 1024 < need) mib *= 2;
  return mib >= 1024 ? { bytes: mib * 1024 * 1024, text: `${mib / 1024}G` } : { bytes: mib * 1024 * 1024, text: `${mib}M` };
}

/**
 * The cut of one bundle: its layers over volumes whose head is `volumeHeadBytes`.
 * Every volume records the whole cut (`split`), whose size depends on how many parts
 * the cut makes, which depends on the head: start with room for none, and allow for
 * the parts each cut makes until a cut makes no more than were allowed for (spec §9.2).
 * The head only grows, so this ends (at the latest when the cap is too small).
 * `headSlack`: bytes the head may still grow by (an export planned before the image
 * configs are read does not know their platforms yet), so a cut that this plan allows
 * cannot become impossible once they are known, after the first blob was fetched.
 */
export function planVolumes<B extends BundleBlob>(meta: BundleMetadata, stored: readonly B[], indexJsonBytes: number, maxBytes: number, description: string, headSlack = 0): VolumePiece<B>[][] {
  const layers = stored.filter((b) => b.kind === 'layer');
  for (let allowed = 0; ;) {
    const cut = cutLayers(volumeHeadBytes(meta, stored, indexJsonBytes, allowed) + headSlack, layers, maxBytes, description);
    const parts = cut.flat().filter((p) => p.part).length;
    if (parts <= allowed) {
      // Before each volume's metadata is built: that costs the metadata's size per volume, minutes for a size typed wrong.
      checkVolumeCount(cut.length, maxBytes, description);
      return cut;
    }
    allowed = parts;
  }
}

/**
 * sha256 of consecutive ranges of `data` (sizes in order, adding up to the
 * whole stream): the part digests a cut layer's volumes record, in one pass.
 */
export async function hashRanges(data: AsyncIterable<Buffer>, sizes: readonly number[]): Promise<Digest[]> {
  const out: Digest[] = [];
  let i = 0;
  let left = sizes[0] ?? 0;
  let hash = createHash('sha256');
  const close = (): void => {
    out.push(`sha256:${hash.digest('hex')}` as Digest);
    hash = createHash('sha256');
    left = sizes[++i] ?? 0;
  };
  for await (let chunk of data) {
    while (chunk.length > 0) {
      if (i >= sizes.length) throw new FerryError('E_SIZE_MISMATCH', `the data is longer than its ${sizes.reduce((n, s) => n + s, 0)} bytes`);
      const take = Math.min(left, chunk.length);
      hash.update(chunk.subarray(0, take));
      chunk = chunk.subarray(take);
      left -= take;
      if (left === 0) close();
    }
  }
  if (i < sizes.length) throw new FerryError('E_SIZE_MISMATCH', `the data is shorter than its ${sizes.reduce((n, s) => n + s, 0)} bytes`);
  return out;
}

export interface SidecarEntry {
  sha256: string;
  /** Resolved beside the sidecar. */
  path: string;
}

/**
 * A `sha256sum` list (`<hex>  <name>` or `<hex> *<name>`, one a line). Names
 * must be plain file names: the list names files beside it, nothing else.
 */
export function parseSidecar(text: string, sidecarPath: string): SidecarEntry[] {
  const out: SidecarEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const m = /^([0-9a-f]{64}) [ *]([^/\\\0]+)$/.exec(line.replace(/\r$/, ''));
    if (!m || m[2] === '.' || m[2] === '..') {
      throw new FerryError('E_BUNDLE_INVALID', `${sidecarPath} line ${i + 1}: not "<sha256>  <file name>" naming a file beside the list`, {
        hint: 'give the .sha256 file ferry export wrote with the volumes, unedited', details: { file: sidecarPath, line: i + 1 },
      });
    }
    out.push({ sha256: m[1]!, path: join(dirname(sidecarPath), m[2]!) });
  });
  if (out.length === 0) throw new FerryError('E_BUNDLE_INVALID', `${sidecarPath}: lists no volumes`, { hint: 'give the .sha256 file ferry export wrote with the volumes', details: { file: sidecarPath } });
  return out;
}

/**
 * The entries of a `.sha256` list that may be there already (an export about
 * to write over it, or reading its input's volumes): none when there is no
 * such file, it cannot be read, is over 4 MiB (10,000 volumes take ~0.8 MB)
 * or is no list ferry wrote. Whoever reads it as an input says why later.
 */
export async function existingSidecar(list: string): Promise<SidecarEntry[]> {
  const path = resolve(list);
  const size = (await stat(path).catch(() => undefined))?.size ?? 0;
  if (size === 0 || size > 4 * 1024 * 1024) return [];
  try {
    return parseSidecar(await readFile(path, 'utf8'), path);
  } catch {
    return [];
  }
}
