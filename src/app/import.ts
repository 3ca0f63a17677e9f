import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { copyImages, type CopyReport } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { type CopyPlan, foreignLayersOf, type PlanFailure, type PlannedImage, planCopy, withoutBlobs } from '../copy/plan.js';
import type { Digest } from '../oci/digest.js';
import { asFerryError, FerryError } from '../errors.js';
import { writeDocument } from '../fsys/atomic.js';
import { type Owner, parseOwner, targetOwner } from '../fsys/owner.js';
import type { FileSystemPort } from '../fsys/port.js';
import { SftpFileSystem } from '../fsys/sftp.js';
import type { SshOptions } from '../net/ssh/session.js';
import type { Platform } from '../oci/platform.js';
import { openBundle } from '../transports/bundle/input.js';
import type { ImageDestination, OpOptions } from '../transports/types.js';
import type { RegistryOptions } from '../transports/registry/open.js';
import { TOOL_VERSION } from '../version.js';
import { formatBytes } from '../format.js';
import { assertNoTagCollisions, requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';
import type { RegistryAccess } from './registry-access.js';
import { mapFullName, matchesPattern, parseRenames } from './repository-mapping.js';
import { explainMissingBases } from './failures.js';
import { BasedSource } from '../transports/bundle/based-source.js';
import { isPathKind, type KindName, type Location, openDestinationAt } from './locations.js';
import { prepareDirectory, prepareOutputFile, refuseInputAsOutput, requireSpace, takingBackMadeFolders } from '../fsys/preflight.js';
import { convertPlanToOci, describeConversions, type OciConversion } from '../copy/convert-oci.js';
import { blobsToMove } from './dry-run.js';
import { warmHashingFor } from './hash-warmup.js';

export interface ImportOptions {
  bundle: string;
  /** Further volumes of a split bundle (spec/bundle.md "Volumes"); `bundle` may also be their .sha256 list. */
  volumes?: string[] | undefined;
  /** Where to: `registry-layout:/var/lib/registry`, `registry:harbor.corp.local/mirror`, … (app/locations.ts). */
  to: Location;
  images?: string[];
  renames?: string[];
  prune?: boolean;
  /** Default: a new file under the user's state folder (defaultReceiptDir). */
  receiptFile?: string | undefined;
  /** `--owner UID:GID` for what is written into a local file target (default: the target root's owner when running as root). */
  owner?: string | undefined;
  platform?: Platform | undefined;
  /** Base bundles that supply a delta's omitted blobs the target lacks (spec/delta.md). */
  bases?: string[] | undefined;
  jobs: number;
  registry: RegistryAccess;
  /** --ssh: registry targets are reached through this jump host; a registry-layout target is written on it over SFTP. */
  ssh?: SshOptions | undefined;
  signal?: AbortSignal;
  observer?: CopyObserver;
  /** The command the failure message names (push runs this use case too). Default: import. */
  verb?: 'import' | 'push';
  /** `--flatten N`: cap target repository names at N path components, before the prefix (repository-mapping.ts). */
  flatten?: number | undefined;
  /**
   * Runs after planning, before the first byte moves (push's preflight and tag
   * check); `registry` is set for registry targets. Images it returns as
   * skipped are left out of the copy and reported as such.
   */
  beforeCopy?: (plan: CopyPlan, target: { registry?: RegistryOptions; destination: ImageDestination }) => Promise<void | BeforeCopyResult>;
  /** Plan (and run beforeCopy) only: nothing is written, no receipt. */
  dryRun?: boolean;
  /** `--convert-oci`: Docker schema 2 manifests, lists and configs relabelled with OCI media types (copy/convert-oci.ts). */
  convertOci?: boolean | undefined;
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
  /** With --convert-oci: each image whose manifest was rewritten, source digest → written digest. */
  converted?: OciConversion[];
  /** Foreign (non-distributable) layers the images name but the bundle does not carry: written as descriptors only (spec/bundle.md §2.2). */
  foreign?: { layers: number; bytes: number };
  /** What `--prune` removed from a registry layout. */
  pruned?: {
    repositories: string[];
    /** `repository:tag`. */
    tags: string[];
    /** `repository@sha256:…` unlinked from repositories that stay. */
    manifests: string[];
    /** Blobs whose data was deleted. */
    blobs: string[];
  };
  /** Things that did not fail the run but need a person's attention (also printed on stderr). */
  warnings?: string[];
  /** Where the receipt was written; absent when it could not be (see warnings). */
  receipt?: string;
}

/**
 * Import (and push) = copy(bundle → target). The bundle streams front to back
 * once; every blob is verified as it lands; images whose pieces all verified
 * are tagged even when others fail, and the command then exits non-zero with
 * the list of what did not make it.
 */
export async function importBundle(opts: ImportOptions): Promise<ImportReceipt> {
  const owner = opts.owner === undefined ? undefined : parseOwner(opts.owner);
  if (owner && (opts.to.kind === 'registry' || opts.ssh)) {
    throw new FerryError('E_USAGE', `--owner applies to a local file target, not to --to ${opts.to.kind}${opts.ssh ? ' over --ssh' : ''}`, { hint: 'leave --owner out' });
  }
  if (opts.receiptFile !== undefined && !opts.dryRun) await checkReceiptPlace(resolve(opts.receiptFile));
  if (opts.to.kind === 'docker-archive' && !opts.ssh) {
    await refuseInputAsOutput(opts.to.location, [opts.bundle, ...(opts.volumes ?? []), ...(opts.bases ?? [])], `--to ${opts.to.kind}`);
  }
  if (opts.ssh) return withSsh(opts, opts.ssh);
  // A local target's folders are made before the first byte (to know they can be written); an import refused
  // after that (no room, a damaged bundle's head) takes away those still empty, as export does for -o.
  const made = isPathKind(opts.to.kind) && !opts.dryRun ? [resolve(opts.to.kind === 'docker-archive' ? dirname(opts.to.location) : opts.to.location)] : [];
  return takingBackMadeFolders(made, () => importWith(opts, undefined, owner));
}

/** Opens the SSH connection once for the whole import and routes the target through it. */
async function withSsh(opts: ImportOptions, ssh: SshOptions): Promise<ImportReceipt> {
  if (opts.to.kind !== 'registry' && opts.to.kind !== 'registry-layout') {
    throw new FerryError('E_USAGE', `--ssh works with --to registry and --to registry-layout, not ${opts.to.kind}`, { hint: 'write the target locally and copy it with `ferry send`, or import on the remote host' });
  }
  // Loaded on use: ssh2 alone is ~14 MiB of every import's memory, and only --ssh needs it.
  const { SshSession } = await import('../net/ssh/session.js');
  const session = await SshSession.open(ssh);
  try {
    if (opts.to.kind === 'registry') return await importWith({ ...opts, registry: { ...opts.registry, connect: session.connectionFactory } });
    return await importWith(opts, new SftpFileSystem(await session.sftp(), `sftp ${session.description}`, session.dropped));
  } finally {
    session.close();
  }
}

async function importWith(opts: ImportOptions, remote?: FileSystemPort, owner?: Owner): Promise<ImportReceipt> {
  const started = new Date();
  if (opts.prune && opts.to.kind !== 'registry-layout') throw new FerryError('E_USAGE', '--prune applies to --to registry-layout only');
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    opts.observer?.warning?.(message);
  };
  if (!opts.dryRun) await warmHashingFor([opts.bundle, ...(opts.volumes ?? [])]);
  const { destination, prefix, display: location, registry, fullNames, pruned } = await openDestinationAt(opts.to, { access: opts.registry, fs: remote, prune: opts.prune, platform: opts.platform, owner, warn });
  const given = await openBundle([opts.bundle, ...(opts.volumes ?? [])]);
  // A delta with --base: the blobs it leaves out come from the base bundles, in the same one copy.
  const source = opts.bases?.length && given.metadata.delta ? await BasedSource.open(given, opts.bases).catch(async (e: unknown) => { await given.close(); throw e; }) : given;
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
    // Foreign layers the bundle does not carry are known absent by design: their manifests land, their bytes are fetched from their URLs by whoever pulls.
    const absent = new Set((meta.foreignBlobs ?? []).map((b) => b.digest));
    const absentNeeded = [...foreignLayersOf(plan).values()].filter((f) => absent.has(f.descriptor.digest));
    plan = withoutBlobs(plan, absent);
    const foreign = absentNeeded.length > 0 ? { foreign: { layers: absentNeeded.length, bytes: absentNeeded.reduce((n, f) => n + f.descriptor.size, 0) } } : {};
    let conversions: OciConversion[] = [];
    if (opts.convertOci) ({ plan, conversions } = convertPlanToOci(plan, opts.observer));
    const converted = conversions.length > 0 ? { converted: conversions } : {};
    const before = opts.beforeCopy ? await opts.beforeCopy(plan, registry ? { registry, destination } : { destination }) : undefined;
    const leaveOut = [...(before?.skipped ?? [])];
    if (destination.admit) {
      const screened = admitted(plan, destination, opts.images ?? [], absent, opts.observer);
      for (const s of screened.skips) leaveOut.push(s);
      plan = { images: plan.images.filter((i) => !screened.failed.has(i)), failures: [...plan.failures, ...screened.failures] };
    }
    const skipped = leaveOut.map(skippedEntry);
    if (leaveOut.length > 0) {
      const leave = new Set(leaveOut.map((s) => s.image));
      plan = { ...plan, images: plan.images.filter((i) => !leave.has(i)) };
    }
    if (opts.dryRun) {
      const planned = plannedReceipt(opts, meta.bundleId, location, started, plan);
      return { ...planned, images: [...planned.images, ...skipped], blobs: await blobsToMove(plan, destination, copyOpts), ...converted, ...foreign };
    }
    if (!remote) await preflightTarget(opts.to, location, plan, destination, { ...copyOpts, owner });
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
      blobs: report.blobs, manifests: report.manifests, ...converted, ...foreign,
    };
    const removed = pruned?.();
    if (removed) receipt.pruned = { repositories: removed.repositories, tags: removed.tags, manifests: removed.revisions, blobs: removed.blobs };
    if (warnings.length > 0) receipt.warnings = warnings;
    const written = await writeReceipt(receipt, opts, started);
    if ('file' in written) {
      receipt.receipt = written.file;
    } else {
      // Only the printed receipt (and stderr) can carry this one.
      warn(written.warning);
      receipt.warnings = warnings;
    }
    if (report.failures.length > 0) throw failureError(`${opts.verb ?? 'import'} ${source.where}`, report.failures, requests.length);
    // Every image landed, yet the file was cut short (only its end is missing): the copy is incomplete, so is the run.
    if (report.cutShort) throw report.cutShort;
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
function admitted(plan: CopyPlan, destination: ImageDestination, patterns: string[], absent: ReadonlySet<Digest>, observer?: CopyObserver): {
  skips: Skip[]; failures: PlanFailure[]; failed: Set<PlannedImage>;
} {
  const skips: Skip[] = [];
  const failures: PlanFailure[] = [];
  const failed = new Set<PlannedImage>();
  const loadable: PlannedImage[] = [];
  for (const image of plan.images) {
    try {
      const answer = destination.admit!({ top: image.top.digest, parsed: image.parsed, origin: image.request.origin, absent });
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

/**
 * A file target is judged before the first byte: its folder made and probed
 * (a read-only mount, a file in the way), and its disk asked for the room the
 * blobs it lacks need — asked of the destination itself, which hashes what it
 * already holds once (the copy then reuses that answer). A docker archive
 * needs its blobs twice: spooled, then in the archive.
 */
async function preflightTarget(to: Location, display: string, plan: CopyPlan, destination: ImageDestination, opts: OpOptions & { jobs: number; owner: Owner | undefined }): Promise<void> {
  if (!isPathKind(to.kind)) return;
  // A folder made here is made as the destination would: fsynced into its parent, with the target's owner.
  const owner = await targetOwner(display, opts.owner);
  if (to.kind === 'docker-archive') await prepareOutputFile(display, `--to ${to.kind}`, { owner });
  else await prepareDirectory(display, `--to ${to.kind}`, { owner });
  const moving = await blobsToMove(plan, destination, opts);
  const manifests = new Map(plan.images.flatMap((i) => i.manifests.map((m) => [m.digest, m.bytes.length] as const)));
  const bytes = moving.bytesCopied * (to.kind === 'docker-archive' ? 2 : 1) + [...manifests.values()].reduce((n, s) => n + s, 0);
  await requireSpace([{ path: display, bytes, what: `${moving.copied} blobs and ${manifests.size} manifests` }]);
}

/**
 * Where receipts go without --receipt: the user's state folder,
 * `$XDG_STATE_HOME/ferry/receipts` (default `~/.local/state/ferry/receipts`).
 * An audit record belongs to whoever ran the import: not to the current folder
 * (often read-only, or a share) and not inside the target, where a registry
 * or a loader would find a stranger's file.
 */
export function defaultReceiptDir(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state');
  return join(state, 'ferry', 'receipts');
}

/**
 * A --receipt the run could not write is known before the first byte: the
 * nearest existing folder on its path must be a folder this user may write.
 */
async function checkReceiptPlace(file: string): Promise<void> {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    let st;
    try {
      st = await stat(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && dir !== dirname(dir)) continue;
      throw e;
    }
    const why = !st.isDirectory() ? 'is not a folder' : await access(dir, constants.W_OK).then(() => undefined, (e: NodeJS.ErrnoException) => (e.code === 'EROFS' ? 'is on a read-only file system' : 'is not writable for this user'));
    if (why === undefined) return;
    throw new FerryError('E_IO', `--receipt ${file}: ${dir} ${why}; nothing was imported`, {
      hint: `give --receipt a file in a folder you can write, or leave it out (receipts then go to ${defaultReceiptDir()})`, details: { file },
    });
  }
}

/**
 * Writes the receipt: --receipt FILE, else a new file in defaultReceiptDir().
 * A receipt that cannot be written is a warning, not a failure: the images
 * landed, and a non-zero exit would tell a script they had not.
 */
async function writeReceipt(receipt: ImportReceipt, opts: ImportOptions, started: Date): Promise<{ file: string } | { warning: string }> {
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const name = `${stamp}-${receipt.bundleId.slice(7, 19)}-${process.pid}.json`;
  const file = opts.receiptFile ? resolve(opts.receiptFile) : join(defaultReceiptDir(), name);
  try {
    await writeDocument(file, `${JSON.stringify({ ...receipt, receipt: undefined }, null, 2)}\n`);
    return { file };
  } catch (e) {
    const err = asFerryError(e);
    return { warning: `the receipt could not be written (${err.message}); what landed is in place; keep this output as the run's record, or give --receipt a file you can write next time` };
  }
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
    ...describeConversions(r.converted),
    ...(r.foreign ? [`foreign (non-distributable) layers: ${r.foreign.layers} (${formatBytes(r.foreign.bytes)}) not in the bundle, written as descriptors only; whoever pulls the images fetches them from their URLs`] : []),
    ...(r.receipt ? [`receipt: ${r.receipt}`] : []),
  ].join('\n');
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${Math.round(s % 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}
