import type { Readable } from 'node:stream';
import { asFerryError, FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { copyVerified, VerifyStream, verifyInPlace } from '../stream/verify.js';
import { type ImageDestination, type ImageRecord, type ImageSource, isSequentialSource, type OpOptions, type SequentialSource } from '../transports/types.js';
import type { BlobOutcome, CopyObserver } from './events.js';
import type { CopyPlan, PlannedImage } from './plan.js';
import { forEachLimited } from './pool.js';

export interface CopyOptions extends OpOptions {
  /** Blobs moved at once (capped by the destination's own limit). */
  jobs?: number;
  observer?: CopyObserver;
}

export interface ImageResult {
  origin: string;
  repository: string;
  tag?: string;
  digest: Digest;
  status: 'done' | 'failed';
  error?: FerryError;
}

export interface CopyReport {
  images: ImageResult[];
  blobs: Record<BlobOutcome, number> & { bytesCopied: number };
  manifests: number;
  /** Every image that did not land, with why: plan failures included. */
  failures: { image: string; error: FerryError }[];
  /**
   * The sequential source was cut short (E_BUNDLE_TRUNCATED): what it lost failed the
   * images that need it (in `failures`); this says so even when no image needed any of it
   * (a file missing only its end), so the caller can still exit non-zero.
   */
  cutShort?: FerryError;
}

/**
 * One blob being landed: made when its turn comes and dropped when it is done,
 * so at most `limit` exist at once. What is known of every blob for the whole
 * run lives in the BlobTable.
 */
interface BlobJob {
  index: number;
  desc: Descriptor;
  /** Bytes of this blob reported to the observer so far: a retry or a second send re-reads bytes already counted. */
  reported: number;
}

/** Errors worth one more fetch from a random-access source: the bytes may come right next time. */
const RETRYABLE = new Set(['E_NETWORK', 'E_SIZE_MISMATCH', 'E_DIGEST_MISMATCH', 'E_REGISTRY']);
const BLOB_ATTEMPTS = 3;

/**
 * The one mover. Images the destination holds whole already are left out
 * (one question each, where it can answer). Blobs first (each verified in
 * flight, each once per target repository, skipped when present, mounted when the destination can), then
 * manifests children-first, then tags. A failure fails the images that need
 * the failed piece; every other image still lands. The caller commits.
 */
export async function copyImages(source: ImageSource, destination: ImageDestination, plan: CopyPlan, opts: CopyOptions = {}): Promise<CopyReport> {
  const observer = opts.observer;
  const report: CopyReport = {
    images: [],
    blobs: { copied: 0, skipped: 0, mounted: 0, 'present-in-base': 0, bytesCopied: 0 },
    manifests: 0,
    failures: plan.failures.map((f) => ({ image: f.request.origin, error: f.error })),
  };
  const failed = new Map<PlannedImage, FerryError>();
  const failImages = (images: PlannedImage[], error: FerryError) => {
    for (const image of images) {
      if (!failed.has(image)) {
        failed.set(image, error);
        observer?.imageFailed?.(image.request.origin, error);
      }
    }
  };

  const limit = Math.max(1, Math.min(opts.jobs ?? 4, destination.capabilities.concurrentBlobs));
  const whole = await wholeImages(destination, plan.images, limit, opts);
  const table = new BlobTable(plan, whole, isSequentialSource(source));
  observer?.planned?.({ images: plan.images.length, blobs: table.size, bytes: table.descs.reduce((n, d) => n + d.size, 0) });
  const imageLabel = (job: BlobJob): string => table.label(job.index);
  const withBlobContext = (e: unknown, job: BlobJob): FerryError => blobContext(e, job.desc, () => table.label(job.index));
  observer?.phase?.('blobs');

  const outcome = (job: BlobJob, o: BlobOutcome) => {
    report.blobs[o]++;
    if (o === 'copied') report.blobs.bytesCopied += job.desc.size;
    observer?.blobDone?.(job.desc, o);
  };

  /** Progress for one attempt at a blob: only bytes beyond those already reported for it count. */
  const progressOf = (job: BlobJob): ((n: number) => void) | undefined => {
    const obs = observer;
    if (!obs?.bytes) return undefined;
    let seen = 0;
    return (n: number): void => {
      seen += n;
      const before = job.reported;
      if (seen > before) {
        job.reported = seen;
        obs.bytes?.(seen - before, job.desc);
      }
    };
  };

  const verified = (job: BlobJob, data: Readable, where = imageLabel(job)): Readable => {
    const verify = new VerifyStream(job.desc, where, progressOf(job));
    // The destination sees the error through the stream it consumes (pipeline / for-await
    // report `errored`); this listener only keeps an early failure, before the destination
    // attached its own, from being an unhandled 'error' that ends the process.
    verify.on('error', () => {});
    data.on('error', (e) => verify.destroy(withBlobContext(e, job)));
    return data.pipe(verify);
  };

  /**
   * putBlob with a stream that may fail before the destination has even started
   * reading it (a bundle cut short ends while a registry upload is still being
   * opened). A destination that then only pipes the stream would wait for bytes
   * that never come, so when the stream fails before anyone consumed it, the
   * blob's work is aborted; either way the stream's own error is what the job
   * fails with. (A destination already reading sees the error itself, and no abort.)
   */
  const putChecked = async (repository: string, job: BlobJob, checked: Readable): Promise<void> => {
    const cut = new AbortController();
    const interrupted = (): void => cut.abort(opts.signal?.reason);
    if (opts.signal?.aborted) interrupted();
    opts.signal?.addEventListener('abort', interrupted, { once: true });
    // Only a failure before the destination read anything is the stream's to report; once it
    // reads, the destination's own error (naming its file, say) is the better one, and the
    // stream's errors reach it through what it consumes.
    let failedUnread: FerryError | undefined;
    const onError = (e: unknown): void => {
      if (checked.readableFlowing !== null || failedUnread) return;
      failedUnread = asFerryError(e);
      cut.abort(failedUnread);
    };
    checked.once('error', onError);
    try {
      await destination.putBlob(repository, job.desc, checked, { ...opts, signal: cut.signal });
    } catch (e) {
      // The destination's failure names the image and blob too (a dropped upload says only which host).
      throw failedUnread && !opts.signal?.aborted ? failedUnread : withBlobContext(e, job);
    } finally {
      checked.off('error', onError);
      opts.signal?.removeEventListener('abort', interrupted);
    }
  };

  /** Lands the blob in every repository that needs it; `first` is the stream for the first send, if any, read from `where`. */
  const land = async (job: BlobJob, first?: Readable, where?: string): Promise<void> => {
    const all = table.repositoriesOf(job.index);
    const head = all[0]!;
    let firstStream = first;
    const send = async (repository: string) => {
      if (firstStream) {
        const s = firstStream;
        firstStream = undefined;
        observer?.blobStarted?.(job.desc);
        const checked = verified(job, s, where);
        try {
          await putChecked(repository, job, checked);
        } catch (e) {
          // A destination that failed before (or while) reading leaves the source piped into a
          // verifier nobody reads: back-pressure would hold the source paused for ever and the
          // run would end with work pending. Cut the pipe so the caller can drain the source.
          s.unpipe();
          checked.destroy();
          throw e;
        }
        return;
      }
      if (isSequentialSource(source) && !source.omittedBlobs.has(job.desc.digest) && first !== undefined) {
        // The one stream went to the first repository; this one could not take a mount of it.
        throw new FerryError('E_REGISTRY', `${destination.description} did not link blob ${job.desc.digest} into ${repository} from ${head}, and ${source.description} can be read only once`, {
          hint: 'give the bundle as a file (not stdin) so its blobs can be read again, or grant pull rights on the repository it was sent to first',
          details: { digest: job.desc.digest, repository, from: head },
        });
      }
      // A file gives the same bytes every time: one that failed verification is not read again.
      await withRetries(async () => {
        observer?.blobStarted?.(job.desc);
        // Only the verdict wanted, and the blob lies whole in a file: a worker reads and judges it where it lies.
        const range = destination.takesVerdict?.(job.desc) && destination.putVerdict ? source.blobFile?.(job.desc) : undefined;
        if (range) {
          await destination.putVerdict!(repository, job.desc, verifyInPlace(range, job.desc, placeOf(job), progressOf(job), opts.signal), opts);
          return;
        }
        // File to file: a worker reads each chunk once, writes it into the destination's temp file and hashes it.
        const from = destination.copiesFiles?.(job.desc) && destination.putBlobCopy ? source.blobFile?.(job.desc) : undefined;
        if (from) {
          const copy = (fd: number): Promise<void> => copyVerified(from, job.desc, { fd }, placeOf(job), progressOf(job), opts.signal);
          await destination.putBlobCopy!(repository, job.desc, copy, opts).catch((e: unknown) => {
            throw withBlobContext(e, job);
          });
          return;
        }
        // A failed request names the image and blob, as a failure mid-stream does (withBlobContext in verified()).
        const data = await source.getBlob(table.sourceRepositoryOf(job.index), job.desc, opts).catch((e: unknown) => {
          throw withBlobContext(e, job);
        });
        const checked = verified(job, data, placeOf(job));
        try {
          await putChecked(repository, job, checked);
        } catch (e) {
          // Both ends: a verifier nobody reads still holds its hashing worker (which keeps the process alive).
          data.destroy();
          checked.destroy();
          throw e;
        }
      }, source.immutable ? 1 : BLOB_ATTEMPTS, opts.signal);
    };

    // Where the blob already is: nothing to send there, and the place to mount it from for the others.
    const repositories = destination.capabilities.globalBlobs ? [head] : all;
    const present = await Promise.all(repositories.map((r) => destination.hasBlob(r, job.desc, opts)));
    let holder = repositories.find((_, i) => present[i]);
    if (holder !== undefined) {
      outcome(job, 'skipped');
    } else {
      await send(head);
      outcome(job, 'copied');
      holder = head;
    }
    for (const [i, repository] of repositories.entries()) {
      if (present[i] || repository === holder) continue;
      if (destination.mountBlob && (await destination.mountBlob(repository, job.desc, holder, opts))) {
        outcome(job, 'mounted');
        continue;
      }
      // Sent again: the stream a sequential source gave, if still unread, else a fresh read.
      await send(repository);
      outcome(job, 'copied');
    }
    if (firstStream) await drain(firstStream);
  };

  /** For the verifier's messages: where the source's bytes lie (file, volume), and the images that need them. */
  const placeOf = (job: BlobJob): string => {
    const place = source.blobPlace?.(job.desc);
    return place !== undefined ? `${place}, needed by ${imageLabel(job)}` : imageLabel(job);
  };

  const runJob = async (index: number, stream?: Readable, where?: (job: BlobJob) => string) => {
    const job: BlobJob = { index, desc: table.descs[index]!, reported: 0 };
    try {
      await land(job, stream, where?.(job));
    } catch (e) {
      const error = asFerryError(e);
      if (error.code === 'E_ABORTED' || opts.signal?.aborted) throw error;
      failImages(table.imagesOf(index), error);
      if (stream) await drain(stream);
    } finally {
      table.done[index] = 1;
    }
  };

  /** A blob the source lacks on purpose (a delta's base blob): it must already be at the destination. */
  const allRepositories = [...new Set(plan.images.map((i) => i.request.targetRepository))];
  const fromBase = async (index: number): Promise<void> => {
    const job: BlobJob = { index, desc: table.descs[index]!, reported: 0 };
    try {
      await requireBase(destination, job, table, allRepositories, opts);
      outcome(job, 'present-in-base');
    } catch (e) {
      const error = asFerryError(e);
      if (error.code === 'E_ABORTED') throw error;
      failImages(table.imagesOf(index), error);
    } finally {
      table.done[index] = 1;
    }
  };

  if (isSequentialSource(source)) {
    const cutShort = await copySequential(source, table, runJob, failImages, fromBase, limit, opts);
    if (cutShort) report.cutShort = cutShort;
  } else {
    // Read at random: every blob at once, up to the limit, in any order.
    const omitted = source.omittedBlobs ?? new Set<Digest>();
    // From a bundle file, the largest blobs first: what is left at the end is small blobs spread over every
    // hashing worker, not one large blob hashing alone on one core while the others idle.
    const order = table.indexes();
    if (source.blobFile) order.sort((a, b) => table.descs[b]!.size - table.descs[a]!.size);
    await forEachLimited(order, limit, (i) => (omitted.has(table.descs[i]!.digest) ? fromBase(i) : runJob(i)), opts.signal);
    // A source cut short lost only what failed above, blob by blob; it says so even when nothing an image needs was lost.
    if (source.cutShort) report.cutShort = source.cutShort;
  }

  // Manifests: children before parents within each image; each (repository, digest) once.
  observer?.phase?.('manifests');
  // Keyed by repository, then by the plan's own digest string: no `repo@digest` string made per manifest.
  // A manifest in flight is its promise (a second image needing it waits on it); one landed is `true`,
  // not a settled promise kept for the rest of the run (20,000 of them at 20,000 images).
  const landed = new Map<string, Map<Digest, Promise<void> | true>>();
  const live = plan.images.filter((i) => !failed.has(i) && !whole.has(i));
  await forEachLimited(live, limit, async (image) => {
    try {
      const repo = image.request.targetRepository;
      let inRepo = landed.get(repo);
      if (!inRepo) landed.set(repo, (inRepo = new Map()));
      for (const m of image.manifests) {
        let p = inRepo.get(m.digest);
        if (p === true) continue;
        if (!p) {
          const held = inRepo;
          p = (async () => {
            if (!destination.hasManifest || !(await destination.hasManifest(repo, m.digest, opts))) {
              await destination.putManifest(repo, m, opts);
              report.manifests++;
            }
            held.set(m.digest, true);
          })();
          inRepo.set(m.digest, p);
        }
        await p;
      }
    } catch (e) {
      const error = asFerryError(e);
      if (error.code === 'E_ABORTED') throw error;
      failImages([image], error);
    }
  }, opts.signal);

  // Tags last: a tag never points at something incomplete. Images are tagged side by side
  // (a round trip each on a registry); the report keeps the plan's order.
  observer?.phase?.('tags');
  const results: ImageResult[] = new Array(plan.images.length);
  await forEachLimited(plan.images.keys(), limit, async (i) => {
    const image = plan.images[i]!;
    const r = image.request;
    const result: ImageResult = { origin: r.origin, repository: r.targetRepository, digest: image.top.digest, status: 'done' };
    if (r.targetTag !== undefined) result.tag = r.targetTag;
    if (whole.has(image)) {
      observer?.imageDone?.(image);
    } else if (!failed.has(image)) {
      try {
        const record: ImageRecord = { repository: r.targetRepository, manifest: image.top, origin: r.origin };
        if (r.targetTag !== undefined) record.tag = r.targetTag;
        if (image.sourceDigest) record.sourceDigest = image.sourceDigest;
        await destination.putImage(record, opts);
        observer?.imageDone?.(image);
      } catch (e) {
        const error = asFerryError(e);
        if (error.code === 'E_ABORTED') throw error;
        failImages([image], error);
      }
    }
    results[i] = result;
  }, opts.signal);
  for (const [i, image] of plan.images.entries()) {
    const result = results[i]!;
    const error = failed.get(image);
    if (error) {
      result.status = 'failed';
      result.error = error;
      report.failures.push({ image: image.request.origin, error });
    }
    report.images.push(result);
  }
  return report;
}

async function copySequential(
  source: SequentialSource,
  table: BlobTable,
  runJob: (index: number, stream?: Readable, where?: (job: BlobJob) => string) => Promise<void>,
  failImages: (images: PlannedImage[], error: FerryError) => void,
  fromBase: (index: number) => Promise<void>,
  limit: number,
  opts: CopyOptions,
): Promise<FerryError | undefined> {
  let cutShort: FerryError | undefined;
  try {
    for await (const { descriptor, stream, where } of source.blobs(opts)) {
      const index = table.indexOf(descriptor.digest);
      if (index === undefined || table.done[index]) {
        await drain(stream);
        continue;
      }
      // The verifier's messages name where the bytes lie (file, volume) and the images that need them.
      await runJob(index, stream, where ? (job) => `${where}, needed by ${table.label(job.index)}` : undefined);
    }
  } catch (e) {
    const error = asFerryError(e);
    if (error.code === 'E_ABORTED' || opts.signal?.aborted) throw error;
    // A source cut short lost only what it had not delivered, and answers getBlob for each
    // such blob with the error that names it: those fail below, one by one, and every
    // image whose blobs all arrived still lands. Any other failure of the stream (an
    // entry that should not be there) leaves nothing to trust: no further image lands.
    if (error.code === 'E_BUNDLE_TRUNCATED') cutShort = error;
    else for (const i of table.indexes()) if (!table.done[i] && !source.omittedBlobs.has(table.descs[i]!.digest)) { table.done[i] = 1; failImages(table.imagesOf(i), error); }
  }
  // What the stream did not carry: a delta's base blobs must already be at the
  // destination; the rest (configs kept in the source's head, blobs a cut source lost) is asked for at random.
  const rest = table.indexes().filter((i) => !table.done[i]);
  await forEachLimited(rest, limit, (i) => (source.omittedBlobs.has(table.descs[i]!.digest) ? fromBase(i) : runJob(i)), opts.signal);
  return cutShort;
}

/**
 * A delta's omitted blob must already be at the destination in every target
 * repository that needs it: present, or mountable from any repository this
 * import touches (the base release put it in one of them, not necessarily in
 * the same repository).
 */
async function requireBase(destination: ImageDestination, job: BlobJob, table: BlobTable, allRepositories: string[], opts: OpOptions): Promise<void> {
  const repositories = table.repositoriesOf(job.index);
  const candidates = [...new Set([...repositories, ...allRepositories])];
  for (const repository of repositories) {
    if (await destination.hasBlob(repository, job.desc, opts)) continue;
    let mounted = false;
    if (destination.mountBlob) {
      for (const from of candidates) {
        if (from !== repository && (await destination.mountBlob(repository, job.desc, from, opts))) { mounted = true; break; }
      }
    }
    if (!mounted) {
      throw new FerryError('E_BASE_MISSING', `${job.desc.digest} is not in this delta bundle and ${destination.description} does not have it (needed by ${table.label(job.index)})`, {
        hint: 'import the base bundle first (or the full release), or export a delta against what this destination really holds (ferry inventory)',
        details: { digest: job.desc.digest, images: table.imagesOf(job.index).map((i) => i.request.origin) },
      });
    }
  }
}

/**
 * The images the destination holds whole already (ImageDestination.hasImage),
 * asked side by side before any blob. A question that fails is left to the
 * ordinary path, which asks per blob and reports the failure there; after the
 * first such failure no more are asked (a registry gone would fail each one).
 */
async function wholeImages(destination: ImageDestination, images: PlannedImage[], limit: number, opts: OpOptions): Promise<Set<PlannedImage>> {
  const whole = new Set<PlannedImage>();
  if (!destination.hasImage) return whole;
  let failing = false;
  await forEachLimited(images, limit, async (image) => {
    if (failing) return;
    const r = image.request;
    const record: ImageRecord = { repository: r.targetRepository, manifest: image.top };
    if (r.targetTag !== undefined) record.tag = r.targetTag;
    try {
      if (await destination.hasImage!(record, opts)) whole.add(image);
    } catch (e) {
      const error = asFerryError(e);
      if (error.code === 'E_ABORTED' || opts.signal?.aborted) throw error;
      failing = true;
    }
  }, opts.signal);
  return whole;
}

/**
 * Every blob the copy lands, each once, and the images that need it: index-based,
 * so 100,000 blobs cost a few typed arrays and the plan's own descriptors, not an
 * object, a map entry and two arrays each for the whole run (~18 MB at 100,000).
 * Who needs a blob is asked only for messages and failures, and answered by
 * walking that blob's list of uses.
 */
class BlobTable {
  /** Blob i's descriptor (the plan's own object). */
  readonly descs: Descriptor[] = [];
  /** 1 once blob i is landed or failed. */
  readonly done: Uint8Array;
  private readonly images: readonly PlannedImage[];
  /** Blob i's first use (an index into useImage), uses chained through useNext (-1 ends). */
  private readonly firstUse: Int32Array;
  private readonly useImage: Int32Array;
  private readonly useNext: Int32Array;
  /** Digest to blob, kept only for a source that delivers blobs in its own order. */
  private readonly byDigest: Map<Digest, number> | undefined;

  constructor(plan: CopyPlan, whole: ReadonlySet<PlannedImage>, keepDigests: boolean) {
    this.images = plan.images;
    let uses = 0;
    for (const image of plan.images) if (!whole.has(image)) uses += image.blobs.length;
    this.firstUse = new Int32Array(uses);
    this.useImage = new Int32Array(uses);
    this.useNext = new Int32Array(uses).fill(-1);
    const lastUse = new Int32Array(uses);
    const byDigest = new Map<Digest, number>();
    let u = 0;
    for (const [n, image] of plan.images.entries()) {
      if (whole.has(image)) continue;
      for (const desc of image.blobs) {
        let i = byDigest.get(desc.digest);
        if (i === undefined) {
          i = this.descs.length;
          byDigest.set(desc.digest, i);
          this.descs.push(desc);
          this.firstUse[i] = u;
        } else {
          this.useNext[lastUse[i]!] = u;
        }
        lastUse[i] = u;
        this.useImage[u++] = n;
      }
    }
    this.done = new Uint8Array(this.descs.length);
    this.byDigest = keepDigests ? byDigest : undefined;
  }

  get size(): number {
    return this.descs.length;
  }

  /** Every blob's index, in the plan's order. */
  indexes(): number[] {
    return Array.from({ length: this.descs.length }, (_, i) => i);
  }

  indexOf(digest: Digest): number | undefined {
    return this.byDigest?.get(digest);
  }

  /** The images that need blob i, in the plan's order. */
  imagesOf(i: number): PlannedImage[] {
    const out: PlannedImage[] = [];
    for (let u = this.firstUse[i]!; u !== -1; u = this.useNext[u]!) out.push(this.images[this.useImage[u]!]!);
    return out;
  }

  /** Target repositories that need blob i, each once, in a stable order. */
  repositoriesOf(i: number): string[] {
    return [...new Set(this.imagesOf(i).map((image) => image.request.targetRepository))];
  }

  /** Where the first image that needs blob i reads it from. */
  sourceRepositoryOf(i: number): string {
    return this.images[this.useImage[this.firstUse[i]!]!]!.request.sourceRepository;
  }

  /** The images that need blob i, for messages: three names and how many more. */
  label(i: number): string {
    const names = [...new Set(this.imagesOf(i).map((image) => image.request.origin))];
    return names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`;
  }
}

/**
 * A source's stream error (a stalled or dropped connection) knows the host,
 * not the blob: name the blob and its images, as every other blob error does.
 */
function blobContext(e: unknown, desc: Descriptor, label: () => string): FerryError {
  const err = asFerryError(e);
  // Named already: by its digest, or by a file named after it.
  if (err.code === 'E_ABORTED' || err.message.includes(desc.digest.slice('sha256:'.length))) return err;
  return new FerryError(err.code, `${label()}: blob ${desc.digest}: ${err.message}`, {
    ...(err.hint !== undefined ? { hint: err.hint } : {}), details: { ...err.details, digest: desc.digest }, cause: err,
  });
}

async function withRetries(attempt: () => Promise<void>, attempts: number, signal?: AbortSignal): Promise<void> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      const error = asFerryError(e);
      if (n >= attempts || !RETRYABLE.has(error.code) || signal?.aborted) throw error;
      await new Promise((r) => setTimeout(r, 200 * 2 ** n));
    }
  }
}

/** Reads a stream to its end, discarding it, so a sequential source can move on. Errors are the source's to report. */
async function drain(stream: Readable): Promise<void> {
  if (stream.readableEnded || stream.destroyed) return;
  // A stream still piped somewhere would be paused again by that destination's back-pressure.
  stream.unpipe();
  await new Promise<void>((resolve) => {
    stream.on('end', resolve).on('close', resolve).on('error', () => resolve());
    stream.resume();
  });
}
