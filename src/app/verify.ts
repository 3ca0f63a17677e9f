import { copyImages } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { planCopy, withoutBlobs } from '../copy/plan.js';
import type { VolumeSetInfo } from '../transports/bundle/volume-set-check.js';
import { type BundleInput, openBundle } from '../transports/bundle/input.js';
import { VerifySink } from '../transports/sink/verify-sink.js';
import { warmHashingFor } from './hash-warmup.js';
import { requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';
import { type SignatureCheck, SignatureChecks, signatureError } from './signatures.js';
import { CaptureSink } from '../referrers/capture-sink.js';
import { loadPublicKey, PAYLOAD_MAX_BYTES } from '../referrers/cosign.js';
import { asFerryError, FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { defaultReportPath, problemOf, type RepairReport, writeRepairReport } from './repair.js';

export interface VerifyResult {
  bundle: string;
  bundleId: string;
  images: number;
  blobs: number;
  bytes: number;
  seconds: number;
  /** A delta's base blobs: not in the bundle by design, not checked here. */
  omittedBlobs: number;
  /** Foreign (non-distributable) layers not carried: absent by design, not checked here (spec/bundle.md §2.2). */
  foreignBlobs?: number;
  /** With --key: each image's cosign signature status. */
  signatures?: SignatureCheck[];
  /** A split bundle: which volumes were checked; volumes not given are not checked (unless a .sha256 list asked for them). */
  volumes?: VolumeSetInfo;
  /** Repair bundles read with it (spec/repair.md): the blobs they carry were checked in place of the bundle's. */
  repairs?: string[];
}

export interface VerifyOptions {
  signal?: AbortSignal;
  /** Blobs verified at once when the bundle is read at random (a file): each hashed on its own worker thread. Default 4. */
  jobs?: number | undefined;
  observer?: CopyObserver;
  /** PEM public key (cosign.pub): check every image's cosign signatures against it. */
  key?: string | undefined;
  /** With key: an unsigned image is an error too. */
  requireSigned?: boolean | undefined;
  /** Further volumes of a split bundle. */
  volumes?: string[] | undefined;
  /**
   * Where to write the repair report when blobs are bad (spec/repair.md).
   * Default: `<stem>.repair.json` beside the bundle; `false`: none. Never written when all is well.
   */
  report?: string | false | undefined;
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
  await warmHashingFor([bundle, ...(opts.volumes ?? [])]);
  const source = await openBundle([bundle, ...(opts.volumes ?? [])]);
  try {
    const meta = source.metadata;
    const requests = requestsFromBundle(meta, { identity: true });
    const copyOpts = { jobs: opts.jobs ?? 4, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.observer ? { observer: opts.observer } : {}) };
    // Foreign layers the bundle does not carry are absent by design: nothing to check.
    const plan = withoutBlobs(await planCopy(source, requests, copyOpts), new Set((meta.foreignBlobs ?? []).map((b) => b.digest)));
    // Volumes given one by one are checked alone: the layers of the others are not asked for. A .sha256 list asks for all.
    const notGiven = source.condition.notGiven;
    const sink = new VerifySink(new Set([...source.omittedBlobs, ...notGiven]));
    const done = new Set<Digest>();
    const outer = copyOpts.observer;
    copyOpts.observer = { ...outer, blobDone: (desc, o) => { done.add(desc.digest); outer?.blobDone?.(desc, o); } };
    // Signature payloads are layers, so they arrive in the one pass over the bundle; the sink keeps those few.
    const checks = key ? await SignatureChecks.plan(source, meta) : undefined;
    const capture = new CaptureSink(sink, checks?.payloads ?? new Set(), PAYLOAD_MAX_BYTES);
    const report = await copyImages(source, capture, plan, copyOpts);
    // A layer cut across volumes of which only some were given is not asked for, but its given parts are checked alone (spec/bundle.md §9.3).
    await source.checkRest(copyOpts);
    const condition = source.condition;
    const badParts = condition.damagedParts;
    for (const image of plan.images) {
      const bad = image.blobs.find((b) => badParts.has(b.digest));
      if (bad && !report.failures.some((f) => f.image === image.request.origin)) report.failures.push({ image: image.request.origin, error: badParts.get(bad.digest)! });
    }
    if (report.failures.length > 0) {
      const err = failureError(`verify ${source.where}`, report.failures, requests.length);
      const unchecked = new Set([...notGiven].filter((d) => !badParts.has(d)));
      throw await withRepairReport(err, bundle, opts.report, () => repairReport(source, plan.images.flatMap((i) => i.blobs), done, sink.errors, unchecked));
    }
    // Every blob verified, but the file was cut short (only its end is missing): nothing to repair, still not the file that was sent.
    if (report.cutShort) throw report.cutShort;
    const signatures = key && checks ? checks.check(key, capture.captured) : undefined;
    if (signatures) {
      const err = signatureError(bundle, signatures, opts.requireSigned === true);
      if (err) throw err;
    }
    return {
      bundle, bundleId: meta.bundleId, images: meta.images.length, blobs: meta.blobs.length - notGiven.size,
      bytes: sink.bytesVerified, seconds: (Date.now() - started) / 1000, omittedBlobs: source.omittedBlobs.size,
      ...(meta.foreignBlobs?.length ? { foreignBlobs: meta.foreignBlobs.length } : {}),
      ...(signatures ? { signatures } : {}),
      ...(condition.volumes ? { volumes: condition.volumes } : {}),
      ...(condition.repairs.length > 0 ? { repairs: [...condition.repairs] } : {}),
    };
  } finally {
    await source.close();
  }
}

/**
 * Every config and layer the images need that did not verify: the ones not
 * given on purpose (single volumes) and a delta's base blobs are not bad.
 */
function repairReport(source: BundleInput, needed: Descriptor[], done: ReadonlySet<Digest>, sinkErrors: ReadonlyMap<Digest, string>, notGiven: ReadonlySet<Digest>): RepairReport | undefined {
  const meta = source.metadata;
  const kinds = new Map(meta.blobs.map((b) => [b.digest as string, b.kind]));
  const unreadable = source.condition.unreadable;
  const blobs: RepairReport['blobs'] = [];
  const seen = new Set<Digest>();
  for (const d of needed) {
    if (seen.has(d.digest) || done.has(d.digest) || source.omittedBlobs.has(d.digest) || notGiven.has(d.digest)) continue;
    seen.add(d.digest);
    const kind = kinds.get(d.digest);
    if (kind !== 'config' && kind !== 'layer') continue;
    const code = sinkErrors.get(d.digest) ?? unreadable.get(d.digest)?.code ?? 'E_BLOB_MISSING';
    blobs.push({ digest: d.digest, size: d.size, mediaType: d.mediaType, problem: problemOf(code), images: source.imagesNeeding(d.digest) });
  }
  if (blobs.length === 0) return undefined;
  const metadataDigest = source.wholeMetadataDigest;
  const info = source.condition.volumes;
  return {
    format: 'ferry-repair', version: 1, bundleId: meta.bundleId, metadataDigest,
    ...(info ? { volumes: { missing: info.missing.map((v) => v.volume - 1), damaged: info.damaged.map((v) => v.volume - 1) } } : {}),
    blobs,
  };
}

/** Writes the report (when there is something to repair) and names it in the error the user sees. */
async function withRepairReport(err: FerryError, bundle: string, where: string | false | undefined, build: () => RepairReport | undefined): Promise<FerryError> {
  if (where === false) return err;
  const report = build();
  if (!report) return err;
  const path = where ?? (bundle === '-' ? undefined : defaultReportPath(bundle));
  if (path === undefined) return err;
  try {
    await writeRepairReport(path, report);
  } catch (e) {
    // A read-only medium must not hide the verification result itself.
    return new FerryError(err.code, `${err.message}\n(the repair report could not be written to ${path}: ${asFerryError(e).message})`, {
      hint: 'run ferry verify again with --report FILE on a writable path', details: err.details, cause: err,
    });
  }
  return new FerryError(err.code, `${err.message}\nrepair report: ${path} (${report.blobs.length} blobs)`, {
    hint: `carry ${path} to the connected side and run \`ferry export -f images.list --repair ${path} -o repair.tar\`; import the good volumes, then repair.tar`,
    details: { ...err.details, repairReport: path, repairBlobs: report.blobs.length }, cause: err,
  });
}
