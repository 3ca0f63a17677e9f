import type { CopyPlan } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import { formatBytes } from '../format.js';
import type { Digest } from '../oci/digest.js';
import { MANIFEST_MAX_BYTES } from '../oci/manifest.js';
import { CONFIG_MAX_BYTES, HEAD_MAX_BYTES } from '../transports/bundle/bundle-head.js';
import { type BundlePlan, checkMetadataLimits, entryBytes } from '../transports/bundle/layout.js';
import { cutLayers, suggestedSplit } from '../transports/bundle/volumes.js';
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
 *   not more than a set may have;
 * - the metadata within the readers' caps (metadata.ts: bytes, parse estimate).
 *
 * Plain images' platforms are read from their configs, after this check: what
 * they can add to the metadata (LayoutInputs' slack) is counted here, so a plan
 * that passes cannot fail once they are known.
 */

/** More volumes than this is a size typed wrong (100K for 100M), not a plan: a set is carried and checked by hand. */
export const MAX_VOLUMES = 10_000;

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
  const head = headBlobs(plan, (d) => inputs.delta?.omitted.has(d) ?? false);
  checkHeadCaps(head, inputs.description);
  const { layout, slack } = planLayout(plan, { ...inputs, boundHead: true });
  checkVolumeCount(layout.files.length, inputs.split);
  checkMetadataLimits(layout, inputs.description, slack);
  return layout;
}

/**
 * A cheap lower bound on the head, before the run asks the registries for
 * more (signatures and other referrers only add manifests): manifests and the
 * configs the bundle will store. With `--split` it must fit a volume; together
 * they must stay under what readers hold. O(blobs), no metadata built.
 */
export function checkHeadLowerBound(plan: CopyPlan, inputs: { split?: number | undefined; omitted: (d: Digest) => boolean; description: string }): void {
  const head = headBlobs(plan, inputs.omitted);
  checkHeadCaps(head, inputs.description);
  if (inputs.split === undefined) return;
  // ferry.json, oci-layout, index.json, the two directories and the end blocks are at least a block each.
  const bytes = head.reduce((n, b) => n + entryBytes(b.size), 7 * 512);
  cutLayers(bytes, [], inputs.split, inputs.description);
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

/** A set of more than MAX_VOLUMES volumes is refused (again once the exact layout is known). */
export function checkVolumeCount(volumes: number, split: number | undefined): void {
  if (volumes <= MAX_VOLUMES) return;
  const at = split === undefined ? undefined : suggestedSplit(Math.ceil((split * volumes) / MAX_VOLUMES));
  throw new FerryError('E_USAGE', `--split ${split} bytes would cut this bundle into ${volumes} volumes, more than the ${MAX_VOLUMES} a set may have${at ? `; use --split ${at.text} or more` : ''}`, {
    hint: 'give a larger size (e.g. --split 2G); `ferry plan --split SIZE` counts the volumes; nothing was fetched', details: { volumes, split, limit: MAX_VOLUMES },
  });
}
