import type { CopyPlan } from '../copy/plan.js';
import type { Digest } from '../oci/digest.js';
import { preflightPush } from '../harbor/preflight.js';
import { type ImportOptions, type ImportReceipt, importBundle } from './import.js';

export interface PushOptions extends Omit<ImportOptions, 'kind' | 'prune' | 'platform' | 'beforeCopy'> {
  /** Harbor: create projects the push needs (`--create-projects`); a no-op on other registries. */
  createProjects?: boolean;
  /** Harbor: created projects are public (`--public-projects`); Harbor's default is private. */
  publicProjects?: boolean;
}

export type PushReceipt = ImportReceipt & { preflight?: unknown };

/**
 * Push = import into a registry, with a preflight before the first byte:
 * credentials, projects (Harbor), rights and quota are all checked at once, so
 * a push never fails after an hour on something knowable in a second.
 */
export async function pushBundle(opts: PushOptions): Promise<PushReceipt> {
  let preflight: unknown;
  const receipt = await importBundle({
    ...opts,
    kind: 'registry',
    beforeCopy: async (plan, { registry }) => {
      if (!registry) return;
      const pre = await preflightPush({
        registry, repositories: bytesPerRepository(plan),
        createProjects: opts.createProjects === true, public: opts.publicProjects === true,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      try {
        preflight = pre.toJSON();
        pre.assertOk();
        if (!opts.dryRun) await pre.createMissingProjects();
      } finally {
        pre.close();
      }
    },
  });
  return preflight === undefined ? receipt : { ...receipt, preflight };
}

/** Upper bound of what the push adds to each repository: its images' manifests and blobs, each once. */
function bytesPerRepository(plan: CopyPlan): { repository: string; bytes: number }[] {
  const seen = new Map<string, Map<Digest, number>>();
  for (const image of plan.images) {
    const repo = image.request.targetRepository;
    const sizes = seen.get(repo) ?? new Map<Digest, number>();
    for (const b of image.blobs) sizes.set(b.digest, b.size);
    for (const m of image.manifests) sizes.set(m.digest, m.bytes.length);
    seen.set(repo, sizes);
  }
  return [...seen].map(([repository, sizes]) => ({ repository, bytes: [...sizes.values()].reduce((a, b) => a + b, 0) }));
}
