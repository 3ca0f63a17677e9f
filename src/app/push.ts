import type { CopyPlan, PlannedImage } from '../copy/plan.js';
import { forEachLimited } from '../copy/pool.js';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { preflightPush } from '../harbor/preflight.js';
import { RegistryDestination } from '../transports/registry/destination.js';
import type { ImageDestination } from '../transports/types.js';
import { type BeforeCopyResult, type ImportOptions, type ImportReceipt, importBundle } from './import.js';
import { parseLocation } from './locations.js';

/** What push does with a target tag that already points at a different image. */
export const ON_EXISTING_TAG = ['overwrite', 'skip', 'fail'] as const;
export type OnExistingTag = (typeof ON_EXISTING_TAG)[number];

export interface PushOptions extends Omit<ImportOptions, 'to' | 'prune' | 'platform' | 'beforeCopy'> {
  /** `HOST[:PORT][/PREFIX]` (also `registry:…` or `docker://…`). */
  target: string;
  /** Harbor: create projects the push needs (`--create-projects`); a no-op on other registries. */
  createProjects?: boolean;
  /** Harbor: created projects are public (`--public-projects`); Harbor's default is private. */
  publicProjects?: boolean;
  /**
   * A target tag that exists and points elsewhere: `overwrite` moves it (docker
   * push's behaviour, the default, no lookups), `skip` leaves it and pushes
   * nothing of that image, `fail` refuses the whole push before the first byte,
   * listing every such tag. A tag already on the image's digest is never a conflict.
   */
  onExistingTag?: OnExistingTag;
}

export type PushReceipt = ImportReceipt & { preflight?: unknown };

/** A target tag that points at another image than the one the push would put there. */
interface TagConflict {
  image: PlannedImage;
  current: Digest;
}

/**
 * Push = import into a registry, with a preflight before the first byte:
 * credentials, projects (Harbor), rights, quota and (unless overwriting)
 * existing tags are all checked at once, so a push never fails after an hour
 * on something knowable in a second.
 */
export async function pushBundle(opts: PushOptions): Promise<PushReceipt> {
  const mode = opts.onExistingTag ?? 'overwrite';
  if (!ON_EXISTING_TAG.includes(mode)) {
    throw new FerryError('E_USAGE', `--on-existing-tag ${String(mode)}: unknown policy`, { hint: `use one of ${ON_EXISTING_TAG.join(', ')}` });
  }
  const to = parseLocation(opts.target, '--to', ['registry'], true);
  let preflight: unknown;
  const receipt = await importBundle({
    ...opts,
    to,
    verb: 'push',
    beforeCopy: async (plan, { registry, destination }): Promise<BeforeCopyResult | undefined> => {
      if (!registry) return undefined;
      const pre = await preflightPush({
        registry, repositories: bytesPerRepository(plan),
        createProjects: opts.createProjects === true, public: opts.publicProjects === true,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      // Repositories in projects that do not exist yet hold no tags: no need to ask (Harbor would refuse the question).
      const empty = new Set(pre.projects.filter((p) => p.exists === false).flatMap((p) => p.repositories));
      try {
        preflight = pre.toJSON();
        pre.assertOk();
        if (!opts.dryRun) await pre.createMissingProjects();
      } finally {
        pre.close();
      }
      if (mode === 'overwrite') return undefined;
      const conflicts = await tagConflicts(plan, destination, empty, opts);
      if (conflicts.length === 0) return undefined;
      if (mode === 'fail') throw conflictError(registry.registry, conflicts);
      return { skipped: conflicts.map((c) => ({ image: c.image, current: c.current, reason: `the tag exists and points at ${c.current} (--on-existing-tag skip)` })) };
    },
  });
  return preflight === undefined ? receipt : { ...receipt, preflight };
}

/** Looks up every target tag once; those pointing at another digest are conflicts. */
async function tagConflicts(plan: CopyPlan, destination: ImageDestination, empty: Set<string>, opts: PushOptions): Promise<TagConflict[]> {
  if (!(destination instanceof RegistryDestination)) throw new FerryError('E_INTERNAL', `push: ${destination.description} is not a registry`);
  const lookups = new Map<string, Promise<Digest | undefined>>();
  const tagged = plan.images.filter((i) => i.request.targetTag !== undefined && !empty.has(i.request.targetRepository));
  const current = new Map<PlannedImage, Digest | undefined>();
  const signal = opts.signal ? { signal: opts.signal } : {};
  await forEachLimited(tagged, opts.jobs, async (image) => {
    const { targetRepository: repo, targetTag: tag } = image.request;
    const key = `${repo}:${tag!}`;
    let p = lookups.get(key);
    if (!p) {
      p = destination.resolveTag(repo, tag!, signal);
      lookups.set(key, p);
    }
    current.set(image, await p);
  }, opts.signal);
  return tagged.flatMap((image) => {
    const digest = current.get(image);
    return digest !== undefined && digest !== image.top.digest ? [{ image, current: digest }] : [];
  });
}

function conflictError(registry: string, conflicts: TagConflict[]): FerryError {
  const lines = conflicts.map((c) => `  ${c.image.request.targetRepository}:${c.image.request.targetTag!}  ${c.current} → ${c.image.top.digest}  (${c.image.request.origin})`);
  return new FerryError('E_USAGE', `${conflicts.length} tag${conflicts.length > 1 ? 's' : ''} on ${registry} already point${conflicts.length > 1 ? '' : 's'} at other images (--on-existing-tag fail); nothing was sent:\n${lines.join('\n')}`, {
    hint: 'rerun with --on-existing-tag overwrite to move them, --on-existing-tag skip to leave them, or push elsewhere with --to HOST/PREFIX',
    details: {
      registry,
      conflicts: conflicts.map((c) => ({ repository: c.image.request.targetRepository, tag: c.image.request.targetTag, current: c.current, new: c.image.top.digest, origin: c.image.request.origin })),
    },
  });
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
