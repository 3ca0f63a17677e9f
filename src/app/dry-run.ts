import type { CopyReport } from '../copy/engine.js';
import type { CopyPlan } from '../copy/plan.js';
import { forEachLimited } from '../copy/pool.js';
import type { Digest } from '../oci/digest.js';
import type { ImageDestination, OpOptions } from '../transports/types.js';

/**
 * What a copy of `plan` would move, asked of the destination without writing:
 * each blob once, in the first repository that needs it. `copied` counts the
 * blobs that would be written, `skipped` those already there. A destination
 * that cannot answer for a blob (a registry refusing the question) counts it as
 * one to write: a dry run errs toward saying more would move.
 */
export async function blobsToMove(plan: CopyPlan, destination: ImageDestination, opts: OpOptions & { jobs: number }): Promise<CopyReport['blobs']> {
  const blobs = new Map<Digest, { repository: string; size: number; desc: CopyPlan['images'][number]['blobs'][number] }>();
  for (const image of plan.images) {
    for (const desc of image.blobs) if (!blobs.has(desc.digest)) blobs.set(desc.digest, { repository: image.request.targetRepository, size: desc.size, desc });
  }
  const out: CopyReport['blobs'] = { copied: 0, skipped: 0, mounted: 0, 'present-in-base': 0, bytesCopied: 0 };
  await forEachLimited([...blobs.values()], opts.jobs, async (b) => {
    const present = await destination.hasBlob(b.repository, b.desc, opts).catch(() => false);
    if (present) out.skipped++;
    else {
      out.copied++;
      out.bytesCopied += b.size;
    }
  }, opts.signal);
  return out;
}
