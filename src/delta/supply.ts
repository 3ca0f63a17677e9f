import type { Readable } from 'node:stream';
import type { CopyReport } from '../copy/engine.js';
import type { CopyPlan } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { VerifyStream } from '../stream/verify.js';
import type { BundleMetadata } from '../transports/bundle/metadata.js';
import { openBundleInput } from '../transports/bundle/volume-set.js';
import type { ImageDestination, OpOptions, SequentialSource } from '../transports/types.js';

/**
 * Supplies a delta's omitted blobs from base bundles. A base is read front to
 * back once (it may be a pipe-sized file; nothing is held in memory), and only
 * the wanted blobs are handed on, each through the verifier: a base is a file
 * we did not write this run.
 */

export type BlobSink = (desc: Descriptor, data: Readable, where: string) => Promise<void>;

export interface Supplied {
  /** digest → the base file it came from */
  from: Map<Digest, string>;
  bytes: number;
}

export async function supplyFromBundles(paths: string[], wanted: Map<Digest, Descriptor>, sink: BlobSink, opts: OpOptions = {}): Promise<Supplied> {
  const from = new Map<Digest, string>();
  let bytes = 0;
  const left = () => [...wanted.keys()].some((d) => !from.has(d));
  const deliver = async (desc: Descriptor, stream: Readable, where: string) => {
    const verify = new VerifyStream(desc, `base ${where}`);
    stream.on('error', (e) => verify.destroy(e));
    await sink(desc, stream.pipe(verify), where);
    from.set(desc.digest, where);
    bytes += desc.size;
  };
  for (const path of paths) {
    if (!left()) break;
    // A split base is given as its .sha256 list (or one volume): read as one set.
    const src = await openBundleInput([path]);
    try {
      const meta = src.metadata;
      const stored = new Map(meta.blobs.map((b) => [b.digest, b]));
      // Configs live in the bundle's head (served from memory); layers come in stored order.
      for (const [d, desc] of wanted) {
        const b = stored.get(d);
        if (b && b.kind === 'config' && !from.has(d)) await deliver({ ...desc, size: b.size }, await src.getBlob('', desc), path);
      }
      const layersWanted = () => meta.blobs.some((b) => b.kind === 'layer' && wanted.has(b.digest) && !from.has(b.digest));
      if (!layersWanted()) continue;
      for await (const { descriptor, stream } of src.blobs(opts)) {
        const want = wanted.get(descriptor.digest);
        if (want && !from.has(descriptor.digest)) await deliver(want, stream, path);
        // Unread entries are skipped by the reader itself.
        if (!layersWanted()) break;
      }
    } finally {
      await src.close();
    }
  }
  return { from, bytes };
}

/**
 * Import of a delta with `--base`: streams the omitted blobs the chosen images
 * need, and the destination lacks, from the base bundles into the destination
 * before the copy. The engine then finds them there (hasBlob) like any base blob.
 */
export async function supplyBasesToDestination(paths: string[], source: SequentialSource, plan: CopyPlan, destination: ImageDestination, opts: OpOptions = {}): Promise<Supplied> {
  const wanted = new Map<Digest, Descriptor>();
  const repoOf = new Map<Digest, string>();
  for (const image of plan.images) {
    for (const b of image.blobs) {
      if (!source.omittedBlobs.has(b.digest) || wanted.has(b.digest)) continue;
      if (await destination.hasBlob(image.request.targetRepository, b, opts)) continue;
      wanted.set(b.digest, b);
      repoOf.set(b.digest, image.request.targetRepository);
    }
  }
  if (wanted.size === 0) return { from: new Map(), bytes: 0 };
  return supplyFromBundles(paths, wanted, (desc, data) => destination.putBlob(repoOf.get(desc.digest)!, desc, data, opts), opts);
}

/** Names the delta's bases in E_BASE_MISSING failures, so the user knows which bundle to import first (or pass with --base). */
export function explainMissingBases(report: CopyReport, meta: BundleMetadata): void {
  const bases = meta.delta?.bases ?? [];
  if (bases.length === 0) return;
  const named = bases.map((b) => b.bundleId).join(', ');
  const swap = (e: FerryError): FerryError => (e.code !== 'E_BASE_MISSING' || e.details['bases'] !== undefined ? e : new FerryError('E_BASE_MISSING', `${e.message}; it comes from the delta's base ${named}`, {
    hint: `import the base bundle (id ${bases[0]!.bundleId}) first, pass it with --base, or export a delta against what this destination holds (ferry inventory)`,
    details: { ...e.details, bases },
    cause: e,
  }));
  for (const f of report.failures) f.error = swap(f.error);
  for (const i of report.images) if (i.error) i.error = swap(i.error);
}
