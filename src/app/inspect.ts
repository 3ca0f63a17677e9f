import { basename } from 'node:path';
import { planCopy } from '../copy/plan.js';
import type { Digest } from '../oci/digest.js';
import { openBundle } from '../transports/bundle/input.js';
import type { VolumeSetInfo } from '../transports/bundle/volume-set-check.js';
import type { BundleMetadata } from '../transports/bundle/metadata.js';
import { formatBytes, table } from '../format.js';
import { requestsFromBundle } from './bundle-requests.js';

export interface InspectionSummary {
  bundle: string;
  bundleId: string;
  created: string;
  formatVersion: number;
  compressed: boolean;
  images: { reference: string; digest: string; mediaType: string; platforms: string[]; size: number }[];
  blobs: number;
  storedBytes: number;
  referencedBytes: number;
  /** Bytes of blobs that more than one image uses. */
  sharedBytes: number;
  /** referencedBytes / storedBytes: how many times smaller than per-image archives. */
  dedupRatio: number;
  delta?: { bases: { bundleId: string; metadataDigest: string }[]; omittedBlobs: number; omittedBytes: number };
  /** Foreign (non-distributable) layers named but not carried: fetched from their URLs by whoever pulls (spec/bundle.md §2.2). */
  foreign?: { blobs: number; bytes: number };
  /** A split bundle: which volumes were given. */
  volumes?: VolumeSetInfo;
}

export interface Inspection {
  metadata: BundleMetadata;
  summary: InspectionSummary;
}

/** Reads only the bundle's head (metadata and manifests): fast on any size, and works on a pipe. */
export async function inspectBundle(bundle: string, opts: { signal?: AbortSignal; volumes?: string[] | undefined } = {}): Promise<Inspection> {
  const source = await openBundle([bundle, ...(opts.volumes ?? [])]);
  try {
    const meta = source.metadata;
    const plan = await planCopy(source, requestsFromBundle(meta, {}), opts.signal ? { signal: opts.signal } : {});
    const users = new Map<Digest, { size: number; images: number }>();
    for (const image of plan.images) {
      for (const b of image.blobs) {
        const u = users.get(b.digest) ?? { size: b.size, images: 0 };
        u.images++;
        users.set(b.digest, u);
      }
    }
    const sharedBytes = [...users.values()].filter((u) => u.images > 1).reduce((n, u) => n + u.size, 0);
    const summary: InspectionSummary = {
      bundle, bundleId: meta.bundleId, created: meta.created, formatVersion: meta.formatVersion, compressed: source.compressed,
      images: meta.images.map((i) => ({ reference: i.origin, digest: i.digest, mediaType: i.mediaType, platforms: i.platforms, size: i.size })),
      blobs: meta.totals.blobs, storedBytes: meta.totals.storedBytes, referencedBytes: meta.totals.referencedBytes, sharedBytes,
      dedupRatio: meta.totals.storedBytes > 0 ? meta.totals.referencedBytes / meta.totals.storedBytes : 1,
    };
    if (source.condition.volumes) summary.volumes = source.condition.volumes;
    if (meta.foreignBlobs?.length) summary.foreign = { blobs: meta.foreignBlobs.length, bytes: meta.foreignBlobs.reduce((n, b) => n + b.size, 0) };
    if (meta.delta) {
      summary.delta = {
        bases: meta.delta.bases.map((b) => ({ bundleId: b.bundleId, metadataDigest: b.metadataDigest })),
        omittedBlobs: meta.delta.omittedBlobs.length,
        omittedBytes: meta.delta.omittedBlobs.reduce((n, b) => n + b.size, 0),
      };
    }
    return { metadata: meta, summary };
  } finally {
    await source.close();
  }
}

export function renderInspection({ summary: s }: Inspection): string {
  const rows = [['IMAGE', 'DIGEST', 'PLATFORMS', 'SIZE'], ...s.images.map((i) => [i.reference, i.digest.slice(0, 19), i.platforms.join(',') || '-', formatBytes(i.size)])];
  const lines = [
    `bundle   ${s.bundle}${s.compressed ? ' (zstd)' : ''}`,
    `id       ${s.bundleId}`,
    `created  ${s.created}   format v${s.formatVersion}`,
    '',
    table(rows),
    '',
    `${s.images.length} images, ${s.blobs} unique blobs: ${formatBytes(s.storedBytes)} stored for ${formatBytes(s.referencedBytes)} referenced `
      + `(${formatBytes(s.sharedBytes)} in shared blobs, dedup ratio ${s.dedupRatio.toFixed(2)}×)`,
  ];
  if (s.volumes) lines.push(volumeLine(s.volumes));
  if (s.delta) {
    lines.push(`delta against ${s.delta.bases.map((b) => b.bundleId.slice(0, 19)).join(', ')}: ${s.delta.omittedBlobs} blobs (${formatBytes(s.delta.omittedBytes)}) left out, expected at the destination`);
  }
  if (s.foreign) lines.push(`foreign (non-distributable) layers: ${s.foreign.blobs} (${formatBytes(s.foreign.bytes)}) not carried, descriptors only: fetched from their URLs by whoever pulls`);
  return lines.join('\n');
}

/** `volumes: 3 of 4 given (2 missing: release.001.tar)` — what a reader of a split bundle had to work with. */
export function volumeLine(v: VolumeSetInfo): string {
  const missing = v.missing.map((m) => m.file !== undefined ? `${m.volume} (${basename(m.file)})` : String(m.volume));
  return `volumes: ${v.given.map((g) => g.volume).join(', ')} of ${v.count} given`
    + (missing.length ? `; not given: ${missing.join(', ')}` : '')
    + (v.damaged.length ? `; damaged: ${v.damaged.map((d) => `${d.volume} (${basename(d.file)})`).join(', ')}` : '');
}
