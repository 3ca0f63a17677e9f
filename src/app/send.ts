import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, posix, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError, isFerryError } from '../errors.js';
import { formatBytes } from '../format.js';
import { digestHex, digestStream } from '../oci/digest.js';
import { RESUME_OVERLAP, SftpFileSystem } from '../fsys/sftp.js';
import { SshSession, type SshOptions } from '../net/ssh/session.js';
import { BundleSource } from '../transports/bundle/reader.js';
import { parseSidecar, parseVolumeName, volumeName } from '../transports/bundle/volumes.js';

/**
 * `ferry send`: carries a bundle with its sidecar metadata, or a split
 * bundle's whole set (named by its `.sha256` list or any one volume), to a host over SFTP. Uploads go to a fixed partial name beside the
 * target, so an interrupted run resumes by appending from the partial file's
 * size; the copy is renamed into place only after its sha256, computed on the
 * remote host (sha256sum, else read back over SFTP), equals the local one.
 */

export interface SendTarget {
  /** [user@]host, or [user@]host:port from the ssh:// form. */
  ssh: string;
  /** Remote directory ('.' = the login directory). */
  dir: string;
}

export type SendEvent =
  | { type: 'planned'; files: number; bytes: number }
  | { type: 'start'; file: string; size: number; resumeFrom: number }
  | { type: 'progress'; file: string; bytes: number; size: number }
  | { type: 'verify'; file: string }
  | { type: 'done'; file: string; size: number; sha256: string; verifiedBy: VerifiedBy; status: SentFile['status'] };

type VerifiedBy = 'sha256sum' | 'sftp-read-back';

export interface SentFile {
  local: string;
  remote: string;
  size: number;
  sha256: string;
  /** Bytes already on the remote host from an earlier, interrupted run. */
  resumedFrom: number;
  uploaded: number;
  verifiedBy: VerifiedBy;
  status: 'sent' | 'already-there';
}

export interface SendReport {
  destination: string;
  files: SentFile[];
  seconds: number;
}

export interface SendOptions {
  files: string[];
  /** `[user@]host:/dir/` (scp style) or `ssh://[user@]host[:port]/dir`. */
  destination: string;
  ssh: Omit<SshOptions, 'destination'>;
  signal?: AbortSignal | undefined;
  onEvent?: ((e: SendEvent) => void) | undefined;
}

export const PARTIAL_PREFIX = '.ferry-partial-';

export function parseSendTarget(spec: string): SendTarget {
  const url = /^ssh:\/\/([^/]+)(\/.*)?$/.exec(spec);
  if (url) return { ssh: url[1]!, dir: url[2] ?? '.' };
  const scp = /^((?:[^@:/]+@)?(?:\[[^\]]+\]|[^:/[\]@]+)):(.*)$/.exec(spec);
  if (!scp) {
    throw new FerryError('E_USAGE', `${spec}: not a remote destination`, {
      hint: 'write it as user@host:/dir/ (or ssh://user@host:port/dir for another port, or a Host alias from ~/.ssh/config)',
    });
  }
  return { ssh: scp[1]!, dir: scp[2] === '' ? '.' : scp[2]! };
}

export async function sendBundle(opts: SendOptions): Promise<SendReport> {
  const target = parseSendTarget(opts.destination);
  // The local side is known before any connection: a missing or unreadable file was reported as the
  // host's DNS or login failure (exit 3) when the host was unreachable, and only after connecting when it was not.
  const list = await filesToSend(opts.files);
  const session = await SshSession.open({ ...opts.ssh, destination: target.ssh });
  try {
    return await sendFiles(session, list, target.dir, opts);
  } finally {
    session.close();
  }
}

/** One file to send; `expectedSha256` when a split bundle's `.sha256` list names it (a damaged volume is not sent). */
export interface FileToSend {
  path: string;
  size: number;
  expectedSha256?: string;
}

/** `release.001.tar.zst` → stem `release`, compressed: the name writeVolumes gives volume files. */

/** A split bundle's files: the volumes in order, then `STEM.ferry.json` and `STEM.sha256` (written last by export, sent last here). */
interface VolumeSetFiles {
  volumes: { path: string; expectedSha256?: string }[];
  trailing: string[];
}

const exists = (p: string): Promise<boolean> => stat(p).then((s) => s.isFile(), () => false);

/**
 * The whole split bundle a `.sha256` list or one of its volumes belongs to;
 * undefined for any other file. Every volume must be here: a set sent in part
 * would look complete at the far side only to fail there.
 */
async function volumeSetOf(file: string): Promise<VolumeSetFiles | undefined> {
  let list: string;
  let stem: string;
  const named = parseVolumeName(file);
  if (file.endsWith('.sha256')) {
    list = file;
    stem = file.slice(0, -'.sha256'.length);
  } else if (named) {
    stem = named.stem;
    list = `${stem}.sha256`;
  } else {
    return undefined;
  }
  const trailing = [`${stem}.ferry.json`, list];
  let volumes: VolumeSetFiles['volumes'];
  if (await exists(list)) {
    const text = await readFile(list, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new FerryError('E_IO', `${list}: ${e.message}`, { cause: e });
    });
    volumes = parseSidecar(text, list).map((e) => ({ path: e.path, expectedSha256: e.sha256 }));
    if (named && !volumes.some((v) => basename(v.path) === basename(file))) {
      throw new FerryError('E_USAGE', `${file}: not listed in ${list}, the checksum list of the set it is named for`, {
        hint: 'send the set by its .sha256 list, or rename the file so it does not look like a volume of another set',
        details: { file, list },
      });
    }
  } else if (named) {
    // No list (not copied along, or deleted): the volume's own metadata says how many there are.
    const meta = await BundleSource.peekMetadata(file).catch(() => undefined);
    if (!meta?.volume) return undefined; // named like a volume, but not one: a plain file
    const count = meta.volume.count;
    volumes = Array.from({ length: count }, (_, i) => ({ path: volumeName(stem, i, count, named.compressed) }));
  } else {
    throw new FerryError('E_NOT_FOUND', `${file}: no such file`, { hint: 'name the split bundle\'s .sha256 list as ferry export wrote it, or one of its volumes', details: { file } });
  }
  const missing: string[] = [];
  for (const [i, v] of volumes.entries()) if (!(await exists(v.path))) missing.push(`volume ${i + 1} of ${volumes.length} (${v.path})`);
  if (missing.length > 0) {
    throw new FerryError('E_USAGE', `${file}: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not here; ferry send sends a split bundle's whole set`, {
      hint: 'put the missing volumes beside the others (or export again), then send again; nothing was sent',
      details: { file, missing: missing.length },
    });
  }
  return { volumes, trailing };
}

/**
 * Which files go, in order: each bundle named, or the whole set of a split
 * bundle named by its `.sha256` list or any volume; then the sidecars —
 * `.ferry.json` and the `.sha256` list — last, so their presence at the far
 * side means what they describe has arrived whole.
 */
export async function filesToSend(files: string[]): Promise<FileToSend[]> {
  const main: { path: string; expectedSha256?: string }[] = [];
  const trailing: string[] = [];
  for (const f of files) {
    const set = await volumeSetOf(f);
    if (set) {
      for (const v of set.volumes) main.push(v);
      for (const t of set.trailing) if (await exists(t)) trailing.push(t);
      continue;
    }
    main.push({ path: f });
    if (!f.endsWith('.ferry.json') && !files.includes(`${f}.ferry.json`) && (await exists(`${f}.ferry.json`))) trailing.push(`${f}.ferry.json`);
  }
  // A file named twice (a list and one of its volumes, or a sidecar given by hand) goes once, in its last role.
  const late = new Set(trailing.map((t) => resolve(t)));
  const seen = new Set<string>();
  const ordered = [...main.filter((f) => !late.has(resolve(f.path))), ...trailing.map((path) => ({ path }))].filter((f) => {
    const key = resolve(f.path);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const out: FileToSend[] = [];
  for (const f of ordered) {
    const s = await stat(f.path).catch((e: NodeJS.ErrnoException) => {
      // As every other command that reads a bundle: a missing file is E_NOT_FOUND (exit 5), an unreadable one E_IO.
      throw new FerryError(e.code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `${f.path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, { hint: 'name the bundle file to send', cause: e, details: { file: f.path } });
    });
    if (!s.isFile()) throw new FerryError('E_USAGE', `${f.path}: not a file`, { hint: 'name the bundle file to send' });
    out.push({ ...f, size: s.size });
  }
  return out;
}

/** Sends `list` (judged by filesToSend before the connection was opened) into `dir` on the session's host. */
export async function sendFiles(session: SshSession, list: FileToSend[], dir: string, opts: Pick<SendOptions, 'signal' | 'onEvent'> = {}): Promise<SendReport> {
  const started = Date.now();
  opts.onEvent?.({ type: 'planned', files: list.length, bytes: list.reduce((n, f) => n + f.size, 0) });
  const fs = new SftpFileSystem(await session.sftp(), `sftp ${session.description}`, session.dropped);
  await fs.mkdirs(dir);
  await requireRemoteSpace(session, fs, list, dir);
  const out: SentFile[] = [];
  for (const f of list) out.push(await sendOne(session, fs, f, dir, opts));
  return { destination: `${session.description}:${dir}`, files: out, seconds: (Date.now() - started) / 1000 };
}

/**
 * Before the first byte: room on the remote disk for what is not there yet (files
 * already whole there need none, a partial upload only its rest). A full disk met at
 * the end of a long send, as SFTP's bare "Failure", cost the whole transfer.
 */
async function requireRemoteSpace(session: SshSession, fs: SftpFileSystem, list: FileToSend[], dir: string): Promise<void> {
  const free = await fs.freeBytes(dir);
  if (free === undefined) return;
  let need = 0;
  for (const f of list) {
    const name = basename(f.path);
    if ((await fs.fileSize(posix.join(dir, name))) === f.size) continue;
    need += f.size - Math.min(f.size, (await fs.fileSize(posix.join(dir, `${PARTIAL_PREFIX}${name}`))) ?? 0);
  }
  if (free >= need) return;
  throw new FerryError('E_NO_SPACE', `${session.description}:${dir}: ${formatBytes(free)} free, these files need about ${formatBytes(need)} there`, {
    hint: 'free space on the remote host (df -h there) or send to another directory, then run the command again; nothing was sent',
    details: { path: dir, freeBytes: free, neededBytes: need },
  });
}

async function hashLocal(path: string, signal?: AbortSignal): Promise<string> {
  return digestHex((await digestStream(createReadStream(path), { signal })).digest);
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The remote file's sha256: by the remote host when it has sha256sum (no bytes come back), else read back over SFTP. */
async function hashRemote(session: SshSession, fs: SftpFileSystem, path: string, signal?: AbortSignal): Promise<{ sha256: string; by: VerifiedBy }> {
  const r = await session.exec(`sha256sum -- ${shellQuote(path)}`).catch(() => undefined);
  const m = r && r.code === 0 ? /^\\?([0-9a-f]{64})\s/.exec(r.stdout) : null;
  if (m) return { sha256: m[1]!, by: 'sha256sum' };
  const { digest } = await digestStream(fs.createReadStream(path), { signal: fs.signalWith(signal) });
  return { sha256: digestHex(digest), by: 'sftp-read-back' };
}

async function sendOne(session: SshSession, fs: SftpFileSystem, file: FileToSend, dir: string, opts: Pick<SendOptions, 'signal' | 'onEvent'>): Promise<SentFile> {
  const local = file.path;
  const name = basename(local);
  const remote = posix.join(dir, name);
  const partial = posix.join(dir, `${PARTIAL_PREFIX}${name}`);
  const localHash = hashLocal(local, opts.signal).then((hex) => {
    if (file.expectedSha256 !== undefined && hex !== file.expectedSha256) {
      throw new FerryError('E_DIGEST_MISMATCH', `${local} hashes to ${hex}, not ${file.expectedSha256} as its .sha256 list says: the volume is damaged here; it was not sent`, {
        hint: 'run ferry verify on the set for a repair report, or export the set again',
        details: { file: local, expected: file.expectedSha256, actual: hex },
      });
    }
    return hex;
  });
  // A local volume that does not match its list stops its own upload at once; the copy is thrown away, never resumed.
  const stop = new AbortController();
  let damaged: FerryError | undefined;
  const onAbort = () => stop.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  localHash.catch((e: unknown) => {
    if (isFerryError(e, 'E_DIGEST_MISMATCH')) {
      damaged = e;
      stop.abort(e);
    }
  });
  try {
    return await sendChecked(session, fs, file, { remote, partial, localHash }, { ...opts, signal: stop.signal });
  } catch (e) {
    if (!damaged) throw e;
    await fs.rm(partial).catch(() => undefined);
    throw damaged;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

interface SendState {
  remote: string;
  partial: string;
  localHash: Promise<string>;
}

async function sendChecked(session: SshSession, fs: SftpFileSystem, file: FileToSend, st: SendState, opts: Pick<SendOptions, 'signal' | 'onEvent'>): Promise<SentFile> {
  const { path: local, size } = file;
  const { remote, partial, localHash } = st;
  const emit = opts.onEvent ?? (() => undefined);

  if ((await fs.fileSize(remote)) === size) {
    emit({ type: 'verify', file: local });
    const [want, got] = await Promise.all([localHash, hashRemote(session, fs, remote, opts.signal)]);
    if (want === got.sha256) {
      emit({ type: 'done', file: local, size, sha256: want, verifiedBy: got.by, status: 'already-there' });
      return { local, remote, size, sha256: want, resumedFrom: size, uploaded: 0, verifiedBy: got.by, status: 'already-there' };
    }
  }

  const partialSize = (await fs.fileSize(partial)) ?? 0;
  if (partialSize > size) await fs.rm(partial);
  const resumedFrom = partialSize > size ? 0 : Math.max(0, partialSize - RESUME_OVERLAP);
  let uploaded = 0;
  for (let attempt = 0; ; attempt++) {
    const from = attempt === 0 ? resumedFrom : 0;
    emit({ type: 'start', file: local, size, resumeFrom: from });
    if (from < size) uploaded += await upload(fs, local, partial, from, size, opts);
    emit({ type: 'verify', file: local });
    const [want, got] = await Promise.all([localHash, hashRemote(session, fs, partial, opts.signal)]);
    if (want === got.sha256) {
      await fs.rename(partial, remote);
      emit({ type: 'done', file: local, size, sha256: want, verifiedBy: got.by, status: 'sent' });
      return { local, remote, size, sha256: want, resumedFrom, uploaded, verifiedBy: got.by, status: 'sent' };
    }
    // A partial file from an earlier run can hold other bytes (the local file changed since); start it over once.
    await fs.rm(partial);
    if (attempt > 0 || from === 0) {
      throw new FerryError('E_DIGEST_MISMATCH', `${session.description}:${remote}: the uploaded copy of ${local} hashes to sha256:${got.sha256}, not sha256:${want}`, {
        hint: 'the bytes were changed on the way or on the remote disk; check the remote host\'s storage and send again',
        details: { file: local, remote, expected: `sha256:${want}`, actual: `sha256:${got.sha256}` },
      });
    }
  }
}

async function upload(fs: SftpFileSystem, local: string, partial: string, from: number, size: number, opts: Pick<SendOptions, 'signal' | 'onEvent'>): Promise<number> {
  let done = from;
  let lastEmit = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      const now = Date.now();
      if (now - lastEmit > 200 || done === size) {
        lastEmit = now;
        opts.onEvent?.({ type: 'progress', file: local, bytes: done, size });
      }
      cb(null, chunk);
    },
  });
  // Only what the local file held when we looked: a file still growing is not sent half-way past its stat.
  const src = createReadStream(local, { start: from, end: size - 1, highWaterMark: 256 * 1024 });
  try {
    await pipeline(src, count, fs.createWriteStream(partial, from), { signal: fs.signalWith(opts.signal) });
  } catch (e) {
    // The partial file stays: the next run appends to it.
    throw fs.dropReason ?? fs.writeError(partial, e);
  }
  return done - from;
}

export function renderSendReport(r: SendReport): string {
  return [
    ...r.files.map((f) => `${f.status === 'already-there' ? 'already there' : f.resumedFrom > 0 ? `sent (resumed at ${f.resumedFrom} bytes)` : 'sent'}: ${f.local} → ${f.remote} (${f.size} bytes, sha256:${f.sha256}, checked by ${f.verifiedBy})`),
    `${r.files.length} file(s) to ${r.destination} in ${r.seconds.toFixed(1)} s`,
  ].join('\n');
}
