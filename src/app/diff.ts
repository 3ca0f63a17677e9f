import { diffInventories, type DiffResult } from '../delta/diff.js';
import { inventoryOfImageList, loadInput } from '../delta/inputs.js';
import { formatReference } from '../oci/reference.js';
import { readImageList } from './image-list.js';
import { openRegistries } from './resumable-source.js';
import type { RegistryAccess } from './registry-access.js';

export interface DiffOptions {
  a: string;
  b: string;
  access: RegistryAccess;
  jobs: number;
  signal?: AbortSignal;
}

/**
 * Diff = two inventories compared. Each side may be a bundle (its ferry.json only), its
 * metadata, an inventory, or an image list whose manifests are resolved from
 * the registries (no blob is fetched).
 */
export async function diffTargets(opts: DiffOptions): Promise<DiffResult> {
  const fromList = async (path: string) => {
    const listed = await readImageList(path);
    const { source } = openRegistries(opts.access);
    try {
      return await inventoryOfImageList(listed.map((l) => ({ reference: formatReference(l.reference), where: l.where })), source, { jobs: opts.jobs, ...(opts.signal ? { signal: opts.signal } : {}) });
    } finally {
      await source.close();
    }
  };
  // Only the inventories are compared: a side's parsed bundle metadata (at 50,000 blobs tens of
  // MB of objects) is let go before the other side is read.
  const side = async (path: string) => {
    const { where, kind, inventory } = await loadInput(path, fromList, { metadataOnly: true });
    return { where, kind, inventory };
  };
  const a = await side(opts.a);
  const b = await side(opts.b);
  return diffInventories(a, b);
}
