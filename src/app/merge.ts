import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { copyImages } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { planCopy, withoutBlobs } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { openBundle } from '../transports/bundle/input.js';
import { BundleDestination } from '../transports/bundle/writer.js';
import type { ImageDestination, ImageRecord, OpOptions } from '../transports/types.js';
import { BasedSource } from '../transports/bundle/based-source.js';
import { TOOL_VERSION } from '../version.js';
import { requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';
import { prepareOutputFile, refuseInputAsOutput, requireSpace } from '../fsys/preflight.js';

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
 * Merge = the last delta, copied into a plain bundle writer whose spool was
 * first filled with that delta's omitted blobs from the earlier inputs. The
 * writer is the same deterministic one export uses, so the result is the
 * bundle a full export of that release would have written, byte for byte
 * (given the same SOURCE_DATE_EPOCH, or none).
 */
export async function mergeBundles(opts: MergeOptions): Promise<MergeResult> {
  const started = Date.now();
  if (opts.inputs.length < 2) throw new FerryError('E_USAGE', 'merge needs a base bundle and at least one delta', { hint: 'ferry merge base.tar.zst delta.tar.zst -o full.tar.zst' });
  if (opts.output === '-') throw new FerryError('E_USAGE', 'merge writes a file: give -o FILE', { hint: 'the output needs a name beside which its metadata is written' });
  const last = opts.inputs[opts.inputs.length - 1]!;
  const earlier = opts.inputs.slice(0, -1);
  const signalOpt: OpOptions = opts.signal ? { signal: opts.signal } : {};
  const warnings: string[] = [];

  const output = resolve(opts.output);
  const spool = join(dirname(output), `.ferry-merge-${process.pid}-${randomBytes(4).toString('hex')}`);
  const delta = await openBundle([last]);
  let source: BasedSource | undefined;
  try {
    const meta = delta.metadata;
    if (!meta.delta) {
      throw new FerryError('E_USAGE', `${last}: not a delta bundle (it names no base)`, { hint: 'the last input must be a delta made with `ferry export --since`; a full bundle needs no merge' });
    }
    // Before the first byte: the output's folder can be written and has room for the merged bundle and, beside it,
    // the spool of the blobs the bases supply (a full disk met half-way named no file and failed every image).
    await refuseInputAsOutput(output, opts.inputs, '-o');
    await prepareOutputFile(output, '-o');
    const omittedBytes = meta.delta.omittedBlobs.reduce((n, b) => n + b.size, 0);
    await requireSpace([
      { path: dirname(output), bytes: meta.totals.storedBytes + omittedBytes, what: 'the merged bundle' },
      { path: dirname(output), bytes: omittedBytes, what: 'the blobs its bases supply, spooled beside it' },
    ]);
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
      output, compression: opts.compression, ...(opts.level !== undefined ? { level: opts.level } : {}), toolVersion: TOOL_VERSION, storeDir: spool,
      ...(foreign.size > 0 ? { foreign } : {}),
    });
    try {
      const plan = withoutBlobs(await planCopy(source, requestsFromBundle(meta, { identity: true }), { jobs: opts.jobs, ...signalOpt }), foreign);
      if (plan.failures.length > 0) throw failureError('merge', plan.failures.map((f) => ({ image: f.request.origin, error: f.error })), meta.images.length);
      const sourceDigests = new Map(meta.images.map((i) => [`${i.repository}\u0000${i.tag ?? ''}\u0000${i.digest}`, i.sourceDigest]));
      const report = await copyImages(source, keepSourceDigests(destination, sourceDigests), plan, { jobs: opts.jobs, ...signalOpt, ...(opts.observer ? { observer: opts.observer } : {}) });
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
    await rm(spool, { recursive: true, force: true });
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
 * The engine's image record has no room for the platform-filter provenance a
 * bundle keeps (`sourceDigest`); the delta's metadata has it, so the merged
 * bundle keeps it too.
 */
function keepSourceDigests(dest: BundleDestination, digests: Map<string, Digest | undefined>): ImageDestination {
  return {
    description: dest.description,
    capabilities: dest.capabilities,
    hasBlob: (r, d) => dest.hasBlob(r, d),
    putBlob: (r, d, s, o) => dest.putBlob(r, d, s, o),
    putManifest: (r, m) => dest.putManifest(r, m),
    putImage: (image: ImageRecord) => {
      const sd = digests.get(`${image.repository}\u0000${image.tag ?? ''}\u0000${image.manifest.digest}`);
      return dest.putImage(sd !== undefined && image.sourceDigest === undefined ? { ...image, sourceDigest: sd } : image);
    },
    commit: (o) => dest.commit(o),
    close: () => dest.close(),
  };
}
