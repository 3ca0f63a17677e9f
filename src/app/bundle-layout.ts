import type { Readable } from 'node:stream';
import { copyImages, type CopyOptions, type CopyReport } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import type { CopyPlan } from '../copy/plan.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor, Manifest } from '../oci/manifest.js';
import { type BundlePlan, type ConfigInfo, isImageConfig, type LayoutRequest, metadataOf, planBundle, readConfigInfo, walkImages } from '../transports/bundle/layout.js';
import type { BundleBase } from '../transports/bundle/metadata.js';
import { TOOL_VERSION } from '../version.js';
import type { ImageDestination, ImageSource, OpOptions } from '../transports/types.js';
import { failureError } from './failures.js';

/**
 * What the bundle writer needs before the first layer (transports/bundle/layout.ts):
 * the plan as its layout request, and the images' configs, fetched first through
 * the engine and its one verifier like any blob. Shared by export, merge and plan.
 */

/** The writer's view of a copy plan: each image's record, and every manifest the images reach. */
export function layoutRequest(plan: CopyPlan): LayoutRequest {
  const manifests = new Map<Digest, Manifest>();
  for (const image of plan.images) for (const m of image.manifests) manifests.set(m.digest, m);
  return {
    images: plan.images.map((image) => {
      const r = image.request;
      return {
        repository: r.targetRepository, manifest: image.top, origin: r.origin,
        ...(r.targetTag !== undefined ? { tag: r.targetTag } : {}), ...(image.sourceDigest ? { sourceDigest: image.sourceDigest } : {}),
      };
    }),
    manifests,
  };
}

/** The first pass's plan: each image's configs (those `leaveOut` does not name), no manifests, so nothing is tagged. */
export function configPlan(plan: CopyPlan, leaveOut: (d: Digest) => boolean): CopyPlan {
  return {
    failures: [],
    images: plan.images.map((image) => {
      const configs = new Map<Digest, Descriptor>();
      for (const p of image.parsed.values()) if (p.kind === 'image' && p.config && !leaveOut(p.config.digest)) configs.set(p.config.digest, p.config);
      return { ...image, manifests: [], blobs: [...configs.values()] };
    }),
  };
}

/**
 * A source read front to back (a bundle on a pipe) serves its configs from
 * memory at any time; the first pass asks it for nothing else, so it goes to
 * the engine as a random-access source and its layers stay unread for the second.
 */
function randomAccess(source: ImageSource): ImageSource {
  return {
    description: source.description,
    getManifest: (repository, reference, opts) => source.getManifest(repository, reference, opts),
    getBlob: (repository: string, desc: Descriptor, opts?: OpOptions): Promise<Readable> => source.getBlob(repository, desc, opts),
    close: async () => undefined,
  };
}

/**
 * Fetches the plan's configs into `sink` (a bundle writer's configSink) through
 * the engine; any that cannot be had fails the run, as an export missing an
 * image does. Only warnings go to the observer: the progress it shows is the
 * second pass's.
 */
export async function fetchConfigs(source: ImageSource, sink: ImageDestination, plan: CopyPlan, leaveOut: (d: Digest) => boolean, command: string, opts: CopyOptions & { observer?: CopyObserver }): Promise<CopyReport & { moved: ReadonlySet<Digest> }> {
  const moved = new Set<Digest>();
  const observer = opts.observer;
  const firstPass: CopyObserver = {
    blobDone: (desc, outcome) => {
      if (outcome === 'copied') moved.add(desc.digest);
    },
    ...(observer?.warning ? { warning: (m: string) => observer.warning?.(m) } : {}),
  };
  const report = await copyImages(randomAccess(source), sink, configPlan(plan, leaveOut), { ...opts, observer: firstPass });
  if (report.failures.length > 0) throw failureError(command, report.failures, plan.images.length);
  return { ...report, moved };
}

/**
 * The second pass's observer: the configs the first pass fetched are "already
 * there" to the writer, but to the person watching they moved in this run, so
 * they count as moved bytes, not as skipped ones.
 */
export function countingFirstPass(observer: CopyObserver | undefined, moved: ReadonlySet<Digest>): CopyObserver | undefined {
  if (!observer || moved.size === 0) return observer;
  return {
    ...observer,
    blobDone: (desc, outcome) => {
      if (outcome === 'skipped' && moved.has(desc.digest)) {
        observer.bytes?.(desc.size, desc);
        observer.blobDone?.(desc, 'copied');
      } else observer.blobDone?.(desc, outcome);
    },
  };
}

/**
 * A first-pass destination that keeps only what the metadata takes from each
 * config (platform, time): `ferry plan` lays a bundle out without writing one.
 */
export function configInfoSink(): ImageDestination & { infos: Map<Digest, ConfigInfo> } {
  const infos = new Map<Digest, ConfigInfo>();
  return {
    description: 'plan (configs)',
    capabilities: { concurrentBlobs: 8, globalBlobs: true },
    infos,
    hasBlob: async () => false,
    putBlob: async (_repository, desc, data) => {
      const chunks: Buffer[] = [];
      for await (const c of data as AsyncIterable<Buffer>) if (isImageConfig(desc)) chunks.push(c);
      if (isImageConfig(desc)) infos.set(desc.digest, readConfigInfo(Buffer.concat(chunks)));
    },
    putManifest: async () => undefined,
    putImage: async () => undefined,
    commit: async () => undefined,
    close: async () => undefined,
  };
}

export interface LayoutInputs {
  /** What the image configs say; without it (plan without --split) plain images' platforms are allowed for, not known. */
  infos?: ReadonlyMap<Digest, ConfigInfo>;
  delta?: { bases: BundleBase[]; omitted: ReadonlySet<Digest> };
  foreign?: ReadonlySet<Digest>;
  split?: number;
  /** With `split` and no `infos`: cut as if the head were already as large as the configs can make it (the slack), so the cut holds once they are read. */
  boundHead?: boolean;
  description: string;
}

/**
 * The bundle's layout by the writer's own planner, from the plan (and the
 * configs when given): volumes, file sizes, the metadata's cost. Without the
 * configs the metadata lacks the plain images' platforms: `slack` is what they
 * can add (an index into the platform table each, the table itself).
 */
export function planLayout(plan: CopyPlan, inputs: LayoutInputs): { layout: BundlePlan; slack: { bytes: number; parseBytes: number } } {
  const content = walkImages(layoutRequest(plan), {
    isOmitted: (d) => inputs.delta?.omitted.has(d) ?? false, isForeign: (d) => inputs.foreign?.has(d) ?? false, description: inputs.description,
  });
  const meta = metadataOf(content, (d) => inputs.infos?.get(d), { toolVersion: TOOL_VERSION, ...(inputs.delta ? { delta: { bases: inputs.delta.bases } } : {}) });
  const plainImages = inputs.infos ? 0 : content.images.filter((i) => !i.isIndex).length;
  const slack = { bytes: plainImages * 8 + (plainImages > 0 ? 1024 : 0), parseBytes: plainImages * 32 + (plainImages > 0 ? 4096 : 0) };
  const layout = planBundle(meta, content.stored, inputs.split === undefined ? undefined : { maxBytes: inputs.split, description: inputs.description, ...(inputs.boundHead ? { headSlack: slack.bytes } : {}) });
  return { layout, slack };
}
