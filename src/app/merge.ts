import { dirname, resolve } from 'node:path';
import { copyImages } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { planCopy, withoutBlobs } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import type { LayoutRequest } from '../transports/bundle/layout.js';
import type { BundleImage } from '../transports/bundle/metadata.js';
import { openBundle } from '../transports/bundle/input.js';
import { BundleDestination, refuseLevelWithoutZstd } from '../transports/bundle/writer.js';
import type { OpOptions } from '../transports/types.js';
import { BasedSource } from '../transports/bundle/based-source.js';
import { TOOL_VERSION } from '../version.js';
import { requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';
import { prepareOutputFile, refuseInputAsOutput, requireSpace } from '../fsys/preflight.js';
import { countingFirstPass, fetchConfigs, layoutRequest } from './bundle-layout.js';
import { checkBundleLimits } from './bundle-limits.js';

export interface MergeOptions {
  /** The base first, then deltas in order; the last one is the release the output holds. */
  inputs: string[];
  output: string;
  compression: 'none' | 'zstd';
  level?: number | undefined;
  jobs: number;
  signal?: AbortSignal;
  observer?: CopyObserver;
}

export interface MergeResult {
  output: string;
  bundleId: string;
  images: number;
  blobs: number;
  storedBytes: number;
  /** Omitted blobs of the last delta, supplied from the earlier inputs. */
  fromBases: number;
  warnings: string[];
  seconds: number;
}

/**
 * Merge = the last delta, copied into a plain bundle writer, the blobs it
 * leaves out coming from the earlier inputs in the same copy. The writer is the
 * same deterministic one export uses (laid out from the manifests and configs
 * first, each blob written once at its place), so the result is the bundle a
 * full export of that release would have written, byte for byte (given the
 * same SOURCE_DATE_EPOCH, or none).
 */
export async function mergeBundles(opts: MergeOptions): Promise<MergeResult> {
  refuseLevelWithoutZstd(opts);
  const started = Date.now();
  if (opts.inputs.length < 2) throw new FerryError('E_USAGE', 'merge needs a base bundle and at least one delta', { hint: 'ferry merge base.tar.zst delta.tar.zst -o full.tar.zst' });
  if (opts.output === '-') throw new FerryError('E_USAGE', 'merge writes a file: give -o FILE', { hint: 'the output needs a name beside which its metadata is written' });
  const last = opts.inputs[opts.inputs.length - 1]!;
  const earlier = opts.inputs.slice(0, -1);
  const signalOpt: OpOptions = opts.signal ? { signal: opts.signal } : {};
  const warnings: string[] = [];

  const output = resolve(opts.output);
  const delta = await openBundle([last]);
  let source: BasedSource | undefined;
  try {
    const meta = delta.metadata;
    if (!meta.delta) {
      throw new FerryError('E_USAGE', `${last}: not a delta bundle (it names no base)`, { hint: 'the last input must be a delta made with `ferry export --since`; a full bundle needs no merge' });
    }
    // Before the first byte: the output's folder can be written and has room for the merged bundle, the delta's
    // bytes and those its bases supply, each written once (a full disk met half-way named no file and failed every image).
    await refuseInputAsOutput(output, opts.inputs, '-o');
    await prepareOutputFile(output, '-o');
    const omittedBytes = meta.delta.omittedBlobs.reduce((n, b) => n + b.size, 0);
    await requireSpace([{ path: dirname(output), bytes: meta.totals.storedBytes + omittedBytes, what: 'the merged bundle' }]);
    await checkChain(opts.inputs, warnings);
    // The delta and the earlier inputs as one source: what the delta leaves out comes from them, in the one copy.
    source = await BasedSource.open(delta, earlier);
    const unsupplied = [...source.omittedBlobs];
    if (unsupplied.length > 0) {
      const images = [...new Set(unsupplied.flatMap((d) => delta.imagesNeeding(d)))];
      throw new FerryError('E_BASE_MISSING', `${last}: ${unsupplied.length} omitted blob(s) are in none of ${earlier.join(', ')} (first: ${unsupplied[0]}), needed by ${images.slice(0, 10).join(', ')}${images.length > 10 ? ', …' : ''}; the delta's base is ${meta.delta.bases.map((b) => b.bundleId).join(', ')}`, {
        hint: 'give the base bundle the delta was exported against (see `ferry inspect` of the delta for its base ids) before the delta',
        details: { missing: unsupplied, images, bases: meta.delta.bases },
      });
    }

    // The merged bundle carries what the delta carries: its foreign layers stay descriptors only.
    const foreign = new Set((meta.foreignBlobs ?? []).map((b) => b.digest));
    const destination = new BundleDestination({
      output, compression: opts.compression, ...(opts.level !== undefined ? { level: opts.level } : {}), toolVersion: TOOL_VERSION,
      ...(foreign.size > 0 ? { foreign } : {}),
    });
    try {
      const plan = withoutBlobs(await planCopy(source, requestsFromBundle(meta, { identity: true }), { jobs: opts.jobs, ...signalOpt }), foreign);
      if (plan.failures.length > 0) throw failureError('merge', plan.failures.map((f) => ({ image: f.request.origin, error: f.error })), meta.images.length);
      // The merged bundle's limits (readers' caps on its head and metadata), from the manifests: before the first blob is read.
      checkBundleLimits(plan, { foreign, description: destination.description });
      const copyOpts = { jobs: opts.jobs, ...signalOpt, ...(opts.observer ? { observer: opts.observer } : {}) };
      const configs = await fetchConfigs(source, destination.configSink(), plan, () => false, 'merge', copyOpts);
      destination.layOut(keepSourceDigests(layoutRequest(plan), meta.images));
      await destination.open(signalOpt);
      const counted = countingFirstPass(opts.observer, configs.moved);
      const report = await copyImages(source, destination, plan, { ...copyOpts, ...(counted ? { observer: counted } : {}) });
      if (report.failures.length > 0) throw failureError('merge', report.failures, meta.images.length);
      // Every blob arrived, but an input was cut short after its last one: the merged bundle would look whole from an incomplete copy.
      if (report.cutShort) throw report.cutShort;
      await destination.commit(signalOpt);
      const out = destination.metadata!;
      return {
        output: opts.output, bundleId: out.bundleId, images: out.totals.images, blobs: out.totals.blobs, storedBytes: out.totals.storedBytes,
        fromBases: source.supplied, warnings, seconds: (Date.now() - started) / 1000,
      };
    } finally {
      await destination.close();
    }
  } finally {
    await (source ?? delta).close();
  }
}

/** Each delta should name an earlier input as its base; content is checked by digest anyway, so a mismatch only warns. */
async function checkChain(inputs: string[], warnings: string[]): Promise<void> {
  const seen: { bundleId: string; metadataDigest: string }[] = [];
  for (const [i, path] of inputs.entries()) {
    const src = await openBundle([path]);
    try {
      const meta = src.metadata;
      if (i > 0 && meta.delta) {
        const named = meta.delta.bases.some((b) => seen.some((s) => s.bundleId === b.bundleId || s.metadataDigest === b.metadataDigest));
        if (!named) warnings.push(`${path} was exported against ${meta.delta.bases.map((b) => b.bundleId).join(', ')}, none of which is among the earlier inputs; merging by content`);
      }
      seen.push({ bundleId: meta.bundleId, metadataDigest: src.wholeMetadataDigest });
    } finally {
      await src.close();
    }
  }
}

/**
 * The copy plan has no room for the platform-filter provenance a bundle keeps
 * (`sourceDigest`); the delta's metadata has it, so the merged bundle keeps it too.
 */
function keepSourceDigests(request: LayoutRequest, images: readonly BundleImage[]): LayoutRequest {
  const digests = new Map(images.map((i) => [`${i.repository}\u0000${i.tag ?? ''}\u0000${i.digest}`, i.sourceDigest]));
  return {
    ...request,
    images: request.images.map((image) => {
      const sd = digests.get(`${image.repository}\u0000${image.tag ?? ''}\u0000${image.manifest.digest}`);
      return sd !== undefined && image.sourceDigest === undefined ? { ...image, sourceDigest: sd } : image;
    }),
  };
}
