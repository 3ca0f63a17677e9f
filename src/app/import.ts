import { join, posix, resolve } from 'node:path';
import { copyImages, type CopyReport } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { type CopyPlan, type PlanFailure, type PlannedImage, planCopy } from '../copy/plan.js';
import { asFerryError, FerryError } from '../errors.js';
import { writeFileAtomic } from '../fsys/atomic.js';
import type { FileSystemPort } from '../fsys/port.js';
import { SftpFileSystem } from '../fsys/sftp.js';
import { SshSession, type SshOptions } from '../net/ssh/session.js';
import type { Platform } from '../oci/platform.js';
import { RepairedSource } from '../transports/bundle/repaired-source.js';
import type { ImageDestination } from '../transports/types.js';
import { TOOL_VERSION } from '../version.js';
import { formatBytes } from '../format.js';
import { assertNoTagCollisions, requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';
import type { RegistryAccess, RegistryConnection } from './registry-access.js';
import { mapFullName, matchesPattern, parseRenames } from './repository-mapping.js';
import { explainMissingBases, supplyBasesToDestination } from '../delta/supply.js';
import { type KindName, type Location, openDestinationAt, type OpenedDestination } from './locations.js';
import { blobsToMove } from './dry-run.js';

export interface ImportOptions {
  bundle: string;
  /** Further volumes of a split bundle (spec/bundle.md "Volumes"); `bundle` may also be their .sha256 list. */
  volumes?: string[] | undefined;
  /** Where to: `registry-layout:/var/lib/registry`, `registry:harbor.corp.local/mirror`, … (app/locations.ts). */
  to: Location;
  images?: string[];
  renames?: string[];
  prune?: boolean;
  receiptFile?: string | undefined;
  platform?: Platform | undefined;
  /** Base bundles that supply a delta's omitted blobs the target lacks (spec/delta.md). */
  bases?: string[] | undefined;
  jobs: number;
  registry: RegistryAccess;
  /** --ssh: registry targets are reached through this jump host; a registry-layout target is written on it over SFTP. */
  ssh?: SshOptions | undefined;
  signal?: AbortSignal;
  observer?: CopyObserver;
  /** `--flatten N`: cap target repository names at N path components, before the prefix (repository-mapping.ts). */
  flatten?: number | undefined;
  /**
   * Runs after planning, before the first byte moves (push's preflight and tag
   * check); `registry` is set for registry targets. Images it returns as
   * skipped are left out of the copy and reported as such.
   */
  beforeCopy?: (plan: CopyPlan, target: { registry?: RegistryConnection; destination: ImageDestination }) => Promise<void | BeforeCopyResult>;
  /** Plan (and run beforeCopy) only: nothing is written, no receipt. */
  dryRun?: boolean;
}

export interface BeforeCopyResult {
  /** Images not to copy at all, with why (push --on-existing-tag skip: the tag exists and points elsewhere). */
  skipped?: { image: PlannedImage; reason: string; current?: string }[];
}

/** What an import did, kept by the site's auditors: also written as the receipt. */
export interface ImportReceipt {
  tool: { name: 'ferry'; version: string };
  bundle: string;
  bundleId: string;
  target: { kind: KindName; location: string };
  started: string;
  finished: string;
  images: {
    origin: string; repository: string; tag?: string; digest: string;
    status: 'done' | 'failed' | 'planned' | 'skipped';
    error?: { code: string; message: string };
    /** Skipped images: why, and the digest the target's tag points at instead. */
    reason?: string;
    current?: string;
  }[];
  dryRun?: boolean;
  blobs: CopyReport['blobs'];
  manifests: number;
  receipt?: string;
}

/**
 * Import (and push) = copy(bundle → target). The bundle streams front to back
 * once; every blob is verified as it lands; images whose pieces all verified
 * are tagged even when others fail, and the command then exits non-zero with
 * the list of what did not make it.
 */
export async function importBundle(opts: ImportOptions): Promise<ImportReceipt> {
  if (opts.ssh) return withSsh(opts, opts.ssh);
  return importWith(opts);
}

/** Opens the SSH connection once for the whole import and routes the target through it. */
async function withSsh(opts: ImportOptions, ssh: SshOptions): Promise<ImportReceipt> {
  if (opts.to.kind !== 'registry' && opts.to.kind !== 'registry-layout') {
    throw new FerryError('E_USAGE', `--ssh works with --to registry and --to registry-layout, not ${opts.to.kind}`, { hint: 'write the target locally and copy it with `ferry send`, or import on the remote host' });
  }
  const session = await SshSession.open(ssh);
  try {
    if (opts.to.kind === 'registry') return await importWith({ ...opts, registry: { ...opts.registry, connect: session.connectionFactory } });
    return await importWith(opts, new SftpFileSystem(await session.sftp(), `sftp ${session.description}`, session.dropped));
  } finally {
    session.close();
  }
}

async function importWith(opts: ImportOptions, remote?: FileSystemPort): Promise<ImportReceipt> {
  const started = new Date();
  if (opts.prune && opts.to.kind !== 'registry-layout') throw new FerryError('E_USAGE', '--prune applies to --to registry-layout only');
  const { destination, prefix, display: location, registry, fullNames } = await openTarget(opts, remote);
  const source = await RepairedSource.open([opts.bundle, ...(opts.volumes ?? [])]);
  let receipt: ImportReceipt;
  try {
    const meta = source.metadata;
    const renames = parseRenames(opts.renames ?? []);
    let requests = requestsFromBundle(meta, { patterns: opts.images ?? [], ...(fullNames ? { identity: true } : { renames, prefix, flatten: opts.flatten }) });
    // Where the name is all a loader shows (a docker archive), it stays whole: registry kept, renames applied.
    if (fullNames) requests = requests.map((r) => ({ ...r, targetRepository: mapFullName(r.sourceRepository, renames) }));
    // A tag is a single pointer in every target kind: two images aimed at it means one silently loses.
    assertNoTagCollisions(requests);
    const copyOpts = { jobs: opts.jobs, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.observer ? { observer: opts.observer } : {}) };
    let plan = await planCopy(source, requests, copyOpts);
    const before = opts.beforeCopy ? await opts.beforeCopy(plan, registry ? { registry, destination } : { destination }) : undefined;
    const leaveOut = [...(before?.skipped ?? [])];
    if (destination.admit) {
      const screened = admitted(plan, destination, opts.images ?? [], opts.observer);
      leaveOut.push(...screened.skips);
      plan = { images: plan.images.filter((i) => !screened.failed.has(i)), failures: [...plan.failures, ...screened.failures] };
    }
    const skipped = leaveOut.map(skippedEntry);
    if (leaveOut.length > 0) {
      const leave = new Set(leaveOut.map((s) => s.image));
      plan = { ...plan, images: plan.images.filter((i) => !leave.has(i)) };
    }
    if (opts.dryRun) {
      const planned = plannedReceipt(opts, meta.bundleId, location, started, plan);
      return { ...planned, images: [...planned.images, ...skipped], blobs: await blobsToMove(plan, destination, copyOpts) };
    }
    if (opts.bases?.length && meta.delta) await supplyBasesToDestination(opts.bases, source, plan, destination, copyOpts);
    const report = await copyImages(source, destination, plan, copyOpts);
    explainMissingBases(report, meta);
    if (report.images.some((i) => i.status === 'done')) await destination.commit(opts.signal ? { signal: opts.signal } : {});
    receipt = {
      tool: { name: 'ferry', version: TOOL_VERSION }, bundle: opts.bundle, bundleId: meta.bundleId,
      target: { kind: opts.to.kind, location }, started: started.toISOString(), finished: new Date().toISOString(),
      images: [
        ...report.images.map((i) => ({
          origin: i.origin, repository: i.repository, ...(i.tag !== undefined ? { tag: i.tag } : {}), digest: i.digest, status: i.status,
          ...(i.error ? { error: { code: i.error.code, message: i.error.message } } : {}),
        })),
        ...plan.failures.map((f) => ({
          origin: f.request.origin, repository: f.request.targetRepository, digest: f.request.sourceReference, status: 'failed' as const,
          error: { code: f.error.code, message: f.error.message },
        })),
        ...skipped,
      ],
      blobs: report.blobs, manifests: report.manifests,
    };
    receipt.receipt = await writeReceipt(receipt, opts, started, remote);
    if (report.failures.length > 0) throw failureError(`import ${source.where}`, report.failures, requests.length);
    return receipt;
  } finally {
    await Promise.all([source.close(), destination.close()]);
  }
}

type Skip = NonNullable<BeforeCopyResult['skipped']>[number];

/**
 * Asks a destination that cannot hold every image (a docker archive takes
 * runnable images only) about each planned image, before the first byte:
 * returns those to leave out, each with its reason, and moves the images it
 * refuses outright (E_NOT_FOUND: an index without the archive's platform) to
 * the plan's failures. Leaving out what cannot land is success, unless it is
 * all that was selected, or all that one `--image` pattern selected (the user
 * asked for it by name): then nothing is written and the import fails with
 * E_UNSUPPORTED_MEDIA_TYPE.
 */
function admitted(plan: CopyPlan, destination: ImageDestination, patterns: string[], observer?: CopyObserver): {
  skips: Skip[]; failures: PlanFailure[]; failed: Set<PlannedImage>;
} {
  const skips: Skip[] = [];
  const failures: PlanFailure[] = [];
  const failed = new Set<PlannedImage>();
  const loadable: PlannedImage[] = [];
  for (const image of plan.images) {
    try {
      const answer = destination.admit!({ top: image.top.digest, parsed: image.parsed, origin: image.request.origin });
      if (!answer.admit) {
        skips.push({ image, reason: answer.reason });
        continue;
      }
      loadable.push(image);
      if (answer.warning) observer?.warning?.(`${image.request.origin}: ${answer.warning}`);
    } catch (e) {
      const error = asFerryError(e);
      if (error.code !== 'E_NOT_FOUND') throw error;
      failures.push({ request: image.request, error });
      failed.add(image);
      observer?.imageFailed?.(image.request.origin, error);
    }
  }
  if (skips.length === 0) return { skips, failures, failed };
  const isSkipped = new Set(skips.map((s) => s.image));
  const matches = (p: string, i: PlannedImage) => matchesPattern(i.request.origin, p) || matchesPattern(`${i.request.sourceRepository}:${i.request.targetTag ?? ''}`, p);
  const named = patterns.filter((p) => {
    const hit = plan.images.filter((i) => matches(p, i));
    return hit.length > 0 && hit.every((i) => isSkipped.has(i));
  });
  const everything = loadable.length === 0 && failures.length === 0 && plan.failures.length === 0;
  if (named.length > 0 || everything) {
    const cause = named.length > 0
      ? `--image ${named.map((p) => JSON.stringify(p)).join(', ')} selects nothing ${destination.description} can hold`
      : `none of the ${skips.length} selected image${skips.length === 1 ? '' : 's'} can go into ${destination.description}`;
    const listed = skips.filter((s) => everything || named.some((p) => matches(p, s.image)));
    throw new FerryError('E_UNSUPPORTED_MEDIA_TYPE', `${cause}:\n${listed.slice(0, 20).map((s) => `  ${s.image.request.origin}: ${s.reason}`).join('\n')}${listed.length > 20 ? `\n  … and ${listed.length - 20} more` : ''}`, {
      hint: 'write signatures, SBOMs and other artifacts with --to oci or --to registry-layout, or select images with --image',
      details: { skipped: listed.map((s) => ({ image: s.image.request.origin, reason: s.reason })) },
    });
  }
  return { skips, failures, failed };
}

function skippedEntry(s: Skip): ImportReceipt['images'][number] {
  const r = s.image.request;
  return {
    origin: r.origin, repository: r.targetRepository, ...(r.targetTag !== undefined ? { tag: r.targetTag } : {}), digest: s.image.top.digest,
    status: 'skipped', reason: s.reason, ...(s.current !== undefined ? { current: s.current } : {}),
  };
}

/** What a dry run reports: the images as they would land, nothing written. */
function plannedReceipt(opts: ImportOptions, bundleId: string, location: string, started: Date, plan: CopyPlan): ImportReceipt {
  return {
    tool: { name: 'ferry', version: TOOL_VERSION }, bundle: opts.bundle, bundleId, dryRun: true,
    target: { kind: opts.to.kind, location }, started: started.toISOString(), finished: new Date().toISOString(),
    images: plan.images.map((i) => ({
      origin: i.request.origin, repository: i.request.targetRepository, ...(i.request.targetTag !== undefined ? { tag: i.request.targetTag } : {}),
      digest: i.top.digest, status: 'planned' as const,
    })),
    blobs: { copied: 0, skipped: 0, mounted: 0, 'present-in-base': 0, bytesCopied: 0 }, manifests: 0,
  };
}

function openTarget(opts: ImportOptions, remote?: FileSystemPort): Promise<OpenedDestination> {
  return openDestinationAt(opts.to, { access: opts.registry, fs: remote, prune: opts.prune, platform: opts.platform });
}

async function writeReceipt(receipt: ImportReceipt, opts: ImportOptions, started: Date, remote?: FileSystemPort): Promise<string> {
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const name = `${stamp}-${receipt.bundleId.slice(7, 19)}.json`;
  // A registry layout keeps its import history beside the data (the registry ignores other top-level directories).
  if (remote && !opts.receiptFile) {
    const file = posix.join(opts.to.location, 'ferry-receipts', name);
    await remote.writeFileAtomic(file, `${JSON.stringify({ ...receipt, receipt: undefined }, null, 2)}\n`);
    return `${remote.description.replace(/^sftp /, '')}:${file}`;
  }
  const file = opts.receiptFile
    ? resolve(opts.receiptFile)
    : opts.to.kind === 'registry-layout' ? join(resolve(opts.to.location), 'ferry-receipts', name) : resolve(`ferry-receipt-${name}`);
  await writeFileAtomic(file, `${JSON.stringify({ ...receipt, receipt: undefined }, null, 2)}\n`);
  return file;
}

export function renderImportReport(r: ImportReceipt): string {
  if (r.dryRun) {
    const going = r.images.filter((i) => i.status !== 'skipped').length;
    return [`dry run: ${going} images would go to ${r.target.kind} ${r.target.location}${going < r.images.length ? `, ${r.images.length - going} skipped` : ''}; nothing was ${r.target.kind === 'registry' ? 'sent' : 'written'}`,
      ...r.images.map((i) => `  ${i.origin} → ${i.repository}${i.tag !== undefined ? `:${i.tag}` : `@${i.digest}`}${i.status === 'skipped' ? ` (skipped: ${i.reason ?? ''})` : ''}`),
      `blobs: ${r.blobs.copied} to ${r.target.kind === 'registry' ? 'upload' : 'write'} (${formatBytes(r.blobs.bytesCopied)}), ${r.blobs.skipped} already there`].join('\n');
  }
  const done = r.images.filter((i) => i.status === 'done').length;
  const skipped = r.images.filter((i) => i.status === 'skipped');
  const verb = r.target.kind === 'registry' ? 'pushed to' : 'imported into';
  const seconds = Math.max(0, (Date.parse(r.finished) - Date.parse(r.started)) / 1000);
  return [
    `${done} of ${r.images.length} images ${verb} ${r.target.kind} ${r.target.location}${skipped.length ? `, ${skipped.length} skipped` : ''} in ${formatSeconds(seconds)}`,
    ...skipped.map((i) => `  skipped ${i.repository}:${i.tag ?? ''}: ${i.reason ?? 'left as it was'}`),
    `blobs: ${r.blobs.copied} ${r.target.kind === 'registry' ? 'uploaded' : 'written'} (${formatBytes(r.blobs.bytesCopied)}${seconds > 0 && r.blobs.bytesCopied > 0 ? `, ${formatBytes(Math.round(r.blobs.bytesCopied / seconds))}/s` : ''}), ${r.blobs.skipped} already there, ${r.blobs.mounted} linked/mounted${r.blobs['present-in-base'] ? `, ${r.blobs['present-in-base']} from the base` : ''}; ${r.manifests} manifests`,
    ...(r.receipt ? [`receipt: ${r.receipt}`] : []),
  ].join('\n');
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${Math.round(s % 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}
