import { copyImages } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { planCopy } from '../copy/plan.js';
import { openBundleInput, type VolumeSetInfo, VolumeSetSource } from '../transports/bundle/volume-set.js';
import { VerifySink } from '../transports/sink/verify-sink.js';
import { requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';
import { type SignatureCheck, SignatureChecks, signatureError } from './signatures.js';
import { CaptureSink } from '../referrers/capture-sink.js';
import { loadPublicKey, PAYLOAD_MAX_BYTES } from '../referrers/cosign.js';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';

export interface VerifyResult {
  bundle: string;
  bundleId: string;
  images: number;
  blobs: number;
  bytes: number;
  seconds: number;
  /** A delta's base blobs: not in the bundle by design, not checked here. */
  omittedBlobs: number;
  /** With --key: each image's cosign signature status. */
  signatures?: SignatureCheck[];
  /** A split bundle: which volumes were checked; volumes not given are not checked (unless a .sha256 list asked for them). */
  volumes?: VolumeSetInfo;
}

export interface VerifyOptions {
  signal?: AbortSignal;
  observer?: CopyObserver;
  /** PEM public key (cosign.pub): check every image's cosign signatures against it. */
  key?: string | undefined;
  /** With key: an unsigned image is an error too. */
  requireSigned?: boolean | undefined;
  /** Further volumes of a split bundle. */
  volumes?: string[] | undefined;
}

/**
 * Verify = a copy of every image into a sink: the same reader, planner and
 * verifier an import uses, so what verifies here imports there. Every problem
 * is reported with the digest and the images it breaks.
 */
export async function verifyBundle(bundle: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const started = Date.now();
  if (opts.requireSigned && opts.key === undefined) {
    throw new FerryError('E_USAGE', '--require-signed needs --key: signatures are checked against a public key', { hint: 'add --key cosign.pub' });
  }
  // The key first: a wrong path should fail before a long read.
  const key = opts.key !== undefined ? await loadPublicKey(opts.key) : undefined;
  const source = await openBundleInput([bundle, ...(opts.volumes ?? [])]);
  try {
    const meta = source.metadata;
    const requests = requestsFromBundle(meta, { identity: true });
    const copyOpts = { jobs: 1, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.observer ? { observer: opts.observer } : {}) };
    const plan = await planCopy(source, requests, copyOpts);
    // Volumes given one by one are checked alone: the layers of the others are not asked for. A .sha256 list asks for all.
    const notGiven: ReadonlySet<Digest> = source instanceof VolumeSetSource && !source.info.fromSidecar ? source.absentLayers : new Set();
    const sink = new VerifySink(new Set([...source.omittedBlobs, ...notGiven]));
    // Signature payloads are layers, so they arrive in the one pass over the bundle; the sink keeps those few.
    const checks = key ? await SignatureChecks.plan(source, meta) : undefined;
    const capture = new CaptureSink(sink, checks?.payloads ?? new Set(), PAYLOAD_MAX_BYTES);
    const report = await copyImages(source, capture, plan, copyOpts);
    if (report.failures.length > 0) throw failureError(`verify ${source.where}`, report.failures, requests.length);
    const signatures = key && checks ? checks.check(key, capture.captured) : undefined;
    if (signatures) {
      const err = signatureError(bundle, signatures, opts.requireSigned === true);
      if (err) throw err;
    }
    return {
      bundle, bundleId: meta.bundleId, images: meta.images.length, blobs: meta.blobs.length - notGiven.size,
      bytes: sink.bytesVerified, seconds: (Date.now() - started) / 1000, omittedBlobs: source.omittedBlobs.size,
      ...(signatures ? { signatures } : {}),
      ...(source instanceof VolumeSetSource ? { volumes: source.info } : {}),
    };
  } finally {
    await source.close();
  }
}
