import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { copyImages, type CopyReport } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { type CopyPlan, type PlannedImage, planCopy } from '../copy/plan.js';
import { asFerryError, FerryError } from '../errors.js';
import { writeFileAtomic } from '../fsys/atomic.js';
import { type Owner, parseOwner } from '../fsys/owner.js';
import type { FileSystemPort } from '../fsys/port.js';
import { SftpFileSystem } from '../fsys/sftp.js';
import { SshSession, type SshOptions } from '../net/ssh/session.js';
import type { Platform } from '../oci/platform.js';
import { isValidRegistry, validateRepository } from '../oci/reference.js';
import { RepairedSource } from '../transports/bundle/repaired-source.js';
import { openSkopeoDir } from '../transports/dir/index.js';
import { openDockerArchive } from '../transports/docker-archive/index.js';
import { openOciLayout } from '../transports/oci-layout/index.js';
import { openRegistryDestination } from '../transports/registry/open.js';
import { openStorageLayout, type PruneReport, type StorageLayoutDestination } from '../transports/storage/index.js';
import type { ImageDestination } from '../transports/types.js';
import { TOOL_VERSION } from '../version.js';
import { formatBytes } from '../format.js';
import { assertNoTagCollisions, requestsFromBundle } from './bundle-requests.js';
import { failureError } from './failures.js';
import { connectionFor, type RegistryAccess, type RegistryConnection } from './registry-access.js';
import { parseRenames } from './repository-mapping.js';
import { explainMissingBases, supplyBasesToDestination } from '../delta/supply.js';

import { IMPORT_TARGET_KINDS, type ImportTargetKind } from './target-kinds.js';

export { IMPORT_TARGET_KINDS, type ImportTargetKind };

export interface ImportOptions {
  bundle: string;
  /** Further volumes of a split bundle (spec/bundle.md "Volumes"); `bundle` may also be their .sha256 list. */
  volumes?: string[] | undefined;
  kind: ImportTargetKind;
  target: string;
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
  target: { kind: ImportTargetKind; location: string };
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
  if (owner && (opts.kind === 'registry' || opts.ssh)) {
    throw new FerryError('E_USAGE', `--owner applies to a local file target, not to --to ${opts.kind}${opts.ssh ? ' over --ssh' : ''}`, { hint: 'leave --owner out' });
  }
  if (opts.receiptFile !== undefined && !opts.dryRun) await checkReceiptPlace(resolve(opts.receiptFile));
  if (opts.ssh) return withSsh(opts, opts.ssh);
  return importWith(opts, undefined, owner);
}

/** Opens the SSH connection once for the whole import and routes the target through it. */
async function withSsh(opts: ImportOptions, ssh: SshOptions): Promise<ImportReceipt> {
  if (opts.kind !== 'registry' && opts.kind !== 'registry-layout') {
    throw new FerryError('E_USAGE', `--ssh works with --to registry and --to registry-layout, not ${opts.kind}`, { hint: 'write the target locally and copy it with `ferry send`, or import on the remote host' });
  }
  const session = await SshSession.open(ssh);
  try {
    if (opts.kind === 'registry') return await importWith({ ...opts, registry: { ...opts.registry, connect: session.connectionFactory } });
    return await importWith(opts, new SftpFileSystem(await session.sftp(), `sftp ${session.description}`, session.dropped));
  } finally {
    session.close();
  }
}

async function importWith(opts: ImportOptions, remote?: FileSystemPort, owner?: Owner): Promise<ImportReceipt> {
  const started = new Date();
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    opts.observer?.warning?.(message);
  };
  const { destination, prefix, location, registry, layout } = openTarget(opts, remote, owner, warn);
  const source = await RepairedSource.open([opts.bundle, ...(opts.volumes ?? [])]);
  let receipt: ImportReceipt;
  try {
    const meta = source.metadata;
    const requests = requestsFromBundle(meta, { patterns: opts.images ?? [], renames: parseRenames(opts.renames ?? []), prefix, flatten: opts.flatten });
    // A registry tag is a single pointer: two images aimed at it means one silently loses.
    if (opts.kind === 'registry') assertNoTagCollisions(requests);
    const copyOpts = { jobs: opts.jobs, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.observer ? { observer: opts.observer } : {}) };
    let plan = await planCopy(source, requests, copyOpts);
    const before = opts.beforeCopy ? await opts.beforeCopy(plan, registry ? { registry, destination } : { destination }) : undefined;
    const skipped = (before?.skipped ?? []).map(skippedEntry);
    if (before?.skipped?.length) {
      const leave = new Set(before.skipped.map((s) => s.image));
      plan = { ...plan, images: plan.images.filter((i) => !leave.has(i)) };
    }
    if (opts.dryRun) {
      const planned = plannedReceipt(opts, meta.bundleId, location, started, plan);
      return { ...planned, images: [...planned.images, ...skipped] };
    }
    if (opts.bases?.length && meta.delta) await supplyBasesToDestination(opts.bases, source, plan, destination, copyOpts);
    const report = await copyImages(source, destination, plan, copyOpts);
    explainMissingBases(report, meta);
    if (report.images.some((i) => i.status === 'done')) await destination.commit(opts.signal ? { signal: opts.signal } : {});
    receipt = {
      tool: { name: 'ferry', version: TOOL_VERSION }, bundle: opts.bundle, bundleId: meta.bundleId,
      target: { kind: opts.kind, location }, started: started.toISOString(), finished: new Date().toISOString(),
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
    if (layout?.lastPrune) receipt.pruned = prunedEntry(layout.lastPrune);
    if (warnings.length > 0) receipt.warnings = warnings;
    const written = await writeReceipt(receipt, opts, started);
    if ('file' in written) {
      receipt.receipt = written.file;
    } else {
      // Only the printed receipt (and stderr) can carry this one.
      warn(written.warning);
      receipt.warnings = warnings;
    }
    if (report.failures.length > 0) throw failureError(`import ${source.where}`, report.failures, requests.length);
    return receipt;
  } finally {
    await Promise.all([source.close(), destination.close()]);
  }
}

function skippedEntry(s: NonNullable<BeforeCopyResult['skipped']>[number]): ImportReceipt['images'][number] {
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
    target: { kind: opts.kind, location }, started: started.toISOString(), finished: new Date().toISOString(),
    images: plan.images.map((i) => ({
      origin: i.request.origin, repository: i.request.targetRepository, ...(i.request.targetTag !== undefined ? { tag: i.request.targetTag } : {}),
      digest: i.top.digest, status: 'planned' as const,
    })),
    blobs: { copied: 0, skipped: 0, mounted: 0, 'present-in-base': 0, bytesCopied: 0 }, manifests: 0,
  };
}

function openTarget(
  opts: ImportOptions, remote: FileSystemPort | undefined, owner: Owner | undefined, warn: (message: string) => void,
): { destination: ImageDestination; prefix: string; location: string; registry?: RegistryConnection; layout?: StorageLayoutDestination } {
  if (!IMPORT_TARGET_KINDS.includes(opts.kind)) {
    throw new FerryError('E_USAGE', `--to ${opts.kind}: unknown target kind`, { hint: `use one of ${IMPORT_TARGET_KINDS.join(', ')}` });
  }
  if (opts.prune && opts.kind !== 'registry-layout') throw new FerryError('E_USAGE', '--prune applies to --to registry-layout only');
  if (remote) {
    // A remote path is the remote host's business: relative means relative to the login directory there.
    const layout = openStorageLayout(opts.target, { prune: opts.prune === true, fs: remote, warn });
    return { destination: layout, layout, prefix: '', location: `${remote.description.replace(/^sftp /, '')}:${opts.target}` };
  }
  const path = resolve(opts.target);
  const local = { owner, warn };
  switch (opts.kind) {
    case 'registry-layout': {
      const layout = openStorageLayout(path, { prune: opts.prune === true, ...local });
      return { destination: layout, layout, prefix: '', location: path };
    }
    case 'skopeo-dir': return { destination: openSkopeoDir(path, local), prefix: '', location: path };
    case 'oci': return { destination: openOciLayout(path, local), prefix: '', location: path };
    case 'docker-archive': return { destination: openDockerArchive(path, { ...local, ...(opts.platform ? { platform: opts.platform } : {}) }), prefix: '', location: path };
    case 'registry': {
      const slash = opts.target.indexOf('/');
      const host = slash < 0 ? opts.target : opts.target.slice(0, slash);
      const prefix = slash < 0 ? '' : opts.target.slice(slash + 1).replace(/\/+$/, '');
      if (!isValidRegistry(host)) throw new FerryError('E_USAGE', `--to ${opts.target}: "${host}" is not a registry host[:port]`, { hint: 'e.g. --to harbor.corp.local or --to 10.0.0.5:5000/mirror' });
      if (prefix) validateRepository(prefix, `--to ${opts.target}`);
      const registry = connectionFor(opts.registry, host);
      return { destination: openRegistryDestination(registry), prefix, location: opts.target, registry };
    }
  }
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
    await writeFileAtomic(file, `${JSON.stringify({ ...receipt, receipt: undefined }, null, 2)}\n`);
    return { file };
  } catch (e) {
    const err = asFerryError(e);
    return { warning: `the receipt could not be written (${err.message}); what landed is in place; keep this output as the run's record, or give --receipt a file you can write next time` };
  }
}

function prunedEntry(p: PruneReport): NonNullable<ImportReceipt['pruned']> {
  return { repositories: p.repositories, tags: p.tags, manifests: p.revisions, blobs: p.blobs };
}

export function renderImportReport(r: ImportReceipt): string {
  if (r.dryRun) {
    const going = r.images.filter((i) => i.status !== 'skipped').length;
    return [`dry run: ${going} images would go to ${r.target.kind} ${r.target.location}${going < r.images.length ? `, ${r.images.length - going} skipped` : ''}; nothing was sent`,
      ...r.images.map((i) => `  ${i.origin} → ${i.repository}${i.tag !== undefined ? `:${i.tag}` : `@${i.digest}`}${i.status === 'skipped' ? ` (skipped: ${i.reason ?? ''})` : ''}`)].join('\n');
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
