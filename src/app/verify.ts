import { copyImages } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { planCopy } from '../copy/plan.js';
import { BundleSource } from '../transports/bundle/reader.js';
import { VerifySink } from '../transports/sink/verify-sink.js';
import { requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';

export interface VerifyResult {
  bundle: string;
  bundleId: string;
  images: number;
  blobs: number;
  bytes: number;
  seconds: number;
  /** A delta's base blobs: not in the bundle by design, not checked here. */
  omittedBlobs: number;
}

/**
 * Verify = a copy of every image into a sink: the same reader, planner and
 * verifier an import uses, so what verifies here imports there. Every problem
 * is reported with the digest and the images it breaks.
 */
export async function verifyBundle(bundle: string, opts: { signal?: AbortSignal; observer?: CopyObserver } = {}): Promise<VerifyResult> {
  const started = Date.now();
  const source = await BundleSource.open(bundle);
  try {
    const meta = source.metadata;
    const requests = requestsFromBundle(meta, { identity: true });
    const copyOpts = { jobs: 1, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.observer ? { observer: opts.observer } : {}) };
    const plan = await planCopy(source, requests, copyOpts);
    const sink = new VerifySink(source.omittedBlobs);
    const report = await copyImages(source, sink, plan, copyOpts);
    if (report.failures.length > 0) throw failureError(`verify ${bundle}`, report.failures, requests.length);
    return {
      bundle, bundleId: meta.bundleId, images: meta.images.length, blobs: meta.blobs.length,
      bytes: sink.bytesVerified, seconds: (Date.now() - started) / 1000, omittedBlobs: source.omittedBlobs.size,
    };
  } finally {
    await source.close();
  }
}
