import type { Digest } from '../oci/digest.js';
import { convertToOci, ociMediaType } from '../oci/convert.js';
import { type Descriptor, type Manifest, manifestFromBytes, parseManifest, type ParsedManifest } from '../oci/manifest.js';
import type { CopyObserver } from './events.js';
import type { CopyPlan, PlannedImage } from './plan.js';

/** One image whose top manifest `--convert-oci` rewrote. */
export interface OciConversion {
  origin: string;
  /** The top digest in the source. */
  from: Digest;
  /** The top digest written. */
  to: Digest;
}

/**
 * `--convert-oci`: the plan with every Docker schema 2 manifest, manifest list
 * and config descriptor relabelled with its OCI media type, for readers that
 * take OCI types only. The one place conversion happens, before any byte moves,
 * so every destination simply writes what the plan holds: manifests are
 * converted children first, an index is re-pointed at its converted children,
 * layers and configs keep their bytes and digests (only their descriptors'
 * labels change). Manifests that are already OCI through and through keep
 * their exact bytes. A converted image keeps the source's top digest as
 * `sourceDigest` (a platform filter's, when there was one).
 */
export function convertPlanToOci(plan: CopyPlan, observer?: CopyObserver): { plan: CopyPlan; conversions: OciConversion[] } {
  // Shared across images: one converted child serves every index that lists it.
  const converted = new Map<Digest, Manifest>();
  const conversions: OciConversion[] = [];
  const images = plan.images.map((image) => {
    const out = convertImage(image, converted);
    if (out.top.digest !== image.top.digest) conversions.push({ origin: image.request.origin, from: image.top.digest, to: out.top.digest });
    return out;
  });
  // What a conversion costs: signatures and referrers name the source digests, which the converted images no longer have.
  const referrers = plan.images.filter((i) => i.parsed.get(i.top.digest)?.subject !== undefined || /^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$/.test(i.request.targetTag ?? ''));
  if (conversions.length > 0 && referrers.length > 0) {
    observer?.warning?.(`--convert-oci gave ${conversions.length} image${conversions.length === 1 ? '' : 's'} new digests: the ${referrers.length} signatures, attestations and referrers carried with them name the source digests and will not match`);
  }
  return { plan: { ...plan, images }, conversions };
}

function convertImage(image: PlannedImage, converted: Map<Digest, Manifest>): PlannedImage {
  const parsed = new Map<Digest, ParsedManifest>();
  const manifests: Manifest[] = [];
  const replaced = new Map<Digest, Descriptor>();
  const descriptorOf = (m: Manifest): Descriptor => ({ digest: m.digest, size: m.bytes.length, mediaType: m.mediaType });
  // image.manifests is children first, so every child is converted before the index that lists it.
  for (const m of image.manifests) {
    let out = converted.get(m.digest);
    if (!out) {
      const next = convertToOci(m.bytes, m.mediaType, replaced);
      out = next ? manifestFromBytes(next.bytes, next.mediaType) : m;
      converted.set(m.digest, out);
    }
    const changed = out.digest !== m.digest;
    if (changed) replaced.set(m.digest, descriptorOf(out));
    manifests.push(out);
    parsed.set(out.digest, !changed ? image.parsed.get(m.digest)! : parseManifest(out.bytes, out.mediaType, `${image.request.origin} (converted to OCI)`));
  }
  const top = converted.get(image.top.digest) ?? image.top;
  if (top.digest === image.top.digest) return image;
  return {
    ...image,
    top,
    manifests,
    parsed,
    blobs: image.blobs.map((b) => ({ ...b, mediaType: ociMediaType(b.mediaType) })),
    sourceDigest: image.sourceDigest ?? image.top.digest,
  };
}

/** `--convert-oci` in human output: which images got new digests. */
export function describeConversions(converted: OciConversion[] | undefined): string[] {
  if (!converted?.length) return [];
  return [`converted to OCI media types (new manifest digests): ${converted.length} image${converted.length === 1 ? '' : 's'}`, ...converted.map((c) => `  ${c.origin}: ${c.from} → ${c.to}`)];
}
