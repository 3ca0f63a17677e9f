import type { CopyPlan } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import { formatBytes } from '../format.js';
import type { Digest } from '../oci/digest.js';
import { isForeignLayer, MANIFEST_MAX_BYTES } from '../oci/manifest.js';
import { CONFIG_MAX_BYTES, HEAD_MAX_BYTES } from '../transports/bundle/bundle-head.js';
import { metadataCostFloor, metadataOverLimit } from '../transports/bundle/metadata.js';
import { type BundlePlan, checkMetadataLimits, entryBytes } from '../transports/bundle/layout.js';
import { cutLayers } from '../transports/bundle/volumes.js';
import { type LayoutInputs, planLayout } from './bundle-layout.js';

/**
 * Every limit the bundle an export (or merge) writes must keep, checked from
 * the plan — the manifests — before the first blob is fetched or written (the
 * image configs are blobs too): a limit met after an hour of fetching is a
 * limit that was knowable at the start.
 *
 * - what readers hold in memory (bundle-head.ts): each config, and the manifests
 *   and configs together (a reader on a pipe keeps both);
 * - with `--split`: the head every volume carries fits one, and the volumes are
 *   not more than a set may have (volumes.ts, as the cut is planned);
 * - the metadata within the readers' caps (metadata.ts: bytes, parse estimate).
 *
 * Plain images' platforms are read from their configs, after this check: what
 * they can add to the metadata (LayoutInputs' slack) is counted here, so a plan
 * that passes cannot fail once they are known.
 */

export interface HeadBlob {
  digest: Digest;
  size: number;
  kind: 'index' | 'manifest' | 'config' | 'layer';
}

/**
 * The bundle's limits from the layout planned on the manifests alone (no
 * configs read): refuses what readers would refuse or a cut that cannot be
 * made, and returns the layout (its file sizes, for the free-space check).
 */
export function checkBundleLimits(plan: CopyPlan, inputs: LayoutInputs): BundlePlan {
  checkMetadataFloor(plan, (d) => (inputs.delta?.omitted.has(d) ?? false) || (inputs.foreign?.has(d) ?? false), inputs.description);
  const head = headBlobs(plan, (d) => inputs.delta?.omitted.has(d) ?? false);
  checkHeadCaps(head, inputs.description);
  const { layout, slack } = planLayout(plan, { ...inputs, boundHead: true });
  checkMetadataLimits(layout, inputs.description, slack);
  return layout;
}

/**
 * Cheap lower bounds, before the metadata is built and before the run asks the registries for
 * more (signatures and other referrers only add manifests): manifests and the
 * configs the bundle will store. With `--split` it must fit a volume; together
 * they must stay under what readers hold. O(blobs), no metadata built.
 */
export function checkLowerBounds(plan: CopyPlan, inputs: { split?: number | undefined; omitted: (d: Digest) => boolean; description: string }): void {
  checkMetadataFloor(plan, inputs.omitted, inputs.description);
  const head = headBlobs(plan, inputs.omitted);
  checkHeadCaps(head, inputs.description);
  if (inputs.split === undefined) return;
  // ferry.json, oci-layout, index.json, the two directories and the end blocks are at least a block each.
  const bytes = head.reduce((n, b) => n + entryBytes(b.size), 7 * 512);
  cutLayers(bytes, [], inputs.split, inputs.description);
}

/**
 * The metadata's floor from the number of blobs it will list (metadata.ts): far
 * past the caps (a size or a list typed wrong), refused before building it.
 */
function checkMetadataFloor(plan: CopyPlan, leftOut: (d: Digest) => boolean, description: string): void {
  const stored = new Set<Digest>();
  for (const image of plan.images) {
    for (const m of image.manifests) stored.add(m.digest);
    for (const b of image.blobs) if (!leftOut(b.digest) && !isForeignLayer(b)) stored.add(b.digest);
  }
  const floor = metadataCostFloor(stored.size);
  const over = metadataOverLimit(floor);
  if (over === undefined) return;
  throw new FerryError('E_USAGE', `${description}: the metadata of ${plan.images.length} images and ${stored.size} blobs ${over.replace(/^is /, 'is at least ').replace(/^would take about /, 'would take at least ')}: readers would refuse the bundle`, {
    hint: 'export the images in several bundles (split the image list), each well under the limit; `ferry plan` shows it before the transfer window; nothing was fetched',
    details: { images: plan.images.length, blobs: stored.size, metadataBytes: floor.bytes, parseBytes: floor.parseBytes },
  });
}

/** The manifests and stored configs of the plan, each once. */
export function headBlobs(plan: CopyPlan, omitted: (d: Digest) => boolean): HeadBlob[] {
  const out = new Map<Digest, HeadBlob>();
  for (const image of plan.images) {
    for (const m of image.manifests) out.set(m.digest, { digest: m.digest, size: m.bytes.length, kind: 'manifest' });
    for (const p of image.parsed.values()) {
      if (p.kind !== 'image' || !p.config || omitted(p.config.digest)) continue;
      out.set(p.config.digest, { digest: p.config.digest, size: p.config.size, kind: 'config' });
    }
  }
  return [...out.values()];
}

/** The caps bundle readers put on the head (bundle-head.ts checkHeadSizes): each config and manifest, and all of them together. */
function checkHeadCaps(head: readonly HeadBlob[], description: string): void {
  let total = 0;
  for (const b of head) {
    const cap = b.kind === 'config' ? CONFIG_MAX_BYTES : MANIFEST_MAX_BYTES;
    if (b.size > cap) {
      throw new FerryError('E_USAGE', `${description}: ${b.kind} ${b.digest} is ${b.size} bytes (${formatBytes(b.size)}), more than the ${cap} bytes (${formatBytes(cap)}) bundle readers accept: they would refuse the bundle`, {
        hint: 'leave the image that needs it out of this bundle (it cannot be carried in one); nothing was fetched', details: { digest: b.digest, kind: b.kind, bytes: b.size, limit: cap },
      });
    }
    total += b.size;
  }
  if (total > HEAD_MAX_BYTES) {
    throw new FerryError('E_USAGE', `${description}: the manifests and configs of this bundle add up to ${total} bytes (${formatBytes(total)}), more than the ${HEAD_MAX_BYTES} bytes (${formatBytes(HEAD_MAX_BYTES)}) bundle readers hold: they would refuse the bundle`, {
      hint: 'export the images in several bundles (split the image list); `ferry plan` shows the sizes before the transfer window; nothing was fetched',
      details: { headBlobs: head.length, headBytes: total, limit: HEAD_MAX_BYTES },
    });
  }
}
