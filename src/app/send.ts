import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, posix } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../errors.js';
import { RESUME_OVERLAP, SftpFileSystem } from '../fsys/sftp.js';
import { SshSession, type SshOptions } from '../net/ssh/session.js';

/**
 * `ferry send`: carries a bundle (its sidecar metadata and any further volumes
 * named) to a host over SFTP. Uploads go to a fixed partial name beside the
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
  | { type: 'start'; file: string; size: number; resumeFrom: number }
  | { type: 'progress'; file: string; bytes: number; size: number }
  | { type: 'verify'; file: string }
  | { type: 'done'; file: string; sha256: string; verifiedBy: VerifiedBy; status: SentFile['status'] };

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
  const session = await SshSession.open({ ...opts.ssh, destination: target.ssh });
  try {
    return await sendFiles(session, opts.files, target.dir, opts);
  } finally {
    session.close();
  }
}

/** Which files go: each one named, and beside each its `.ferry.json` sidecar when there is one (sent last, so its presence means the bundle is complete). */
async function filesToSend(files: string[]): Promise<{ path: string; size: number }[]> {
  const main: { path: string; size: number }[] = [];
  const sidecars: { path: string; size: number }[] = [];
  for (const f of files) {
    const s = await stat(f).catch((e: NodeJS.ErrnoException) => {
      throw new FerryError('E_USAGE', `${f}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, { hint: 'name the bundle file to send', cause: e });
    });
    if (!s.isFile()) throw new FerryError('E_USAGE', `${f}: not a file`, { hint: 'name the bundle file to send' });
    main.push({ path: f, size: s.size });
    if (!f.endsWith('.ferry.json') && !files.includes(`${f}.ferry.json`)) {
      const side = await stat(`${f}.ferry.json`).catch(() => undefined);
      if (side?.isFile()) sidecars.push({ path: `${f}.ferry.json`, size: side.size });
    }
  }
  return [...main, ...sidecars];
}

export async function sendFiles(session: SshSession, files: string[], dir: string, opts: Pick<SendOptions, 'signal' | 'onEvent'> = {}): Promise<SendReport> {
  const started = Date.now();
  const list = await filesToSend(files);
  const fs = new SftpFileSystem(await session.sftp(), `sftp ${session.description}`, session.dropped);
  await fs.mkdirs(dir);
  const out: SentFile[] = [];
  for (const f of list) out.push(await sendOne(session, fs, f.path, f.size, dir, opts));
  return { destination: `${session.description}:${dir}`, files: out, seconds: (Date.now() - started) / 1000 };
}

function hashLocal(path: string, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  return pipeline(createReadStream(path), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) h.update(c);
  }, signal ? { signal } : {}).then(() => h.digest('hex'));
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The remote file's sha256: by the remote host when it has sha256sum (no bytes come back), else read back over SFTP. */
async function hashRemote(session: SshSession, fs: SftpFileSystem, path: string, signal?: AbortSignal): Promise<{ sha256: string; by: VerifiedBy }> {
  const r = await session.exec(`sha256sum -- ${shellQuote(path)}`).catch(() => undefined);
  const m = r && r.code === 0 ? /^\\?([0-9a-f]{64})\s/.exec(r.stdout) : null;
  if (m) return { sha256: m[1]!, by: 'sha256sum' };
  const h = createHash('sha256');
  await pipeline(fs.createReadStream(path), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) h.update(c);
  }, { signal: fs.signalWith(signal) });
  return { sha256: h.digest('hex'), by: 'sftp-read-back' };
}

async function sendOne(session: SshSession, fs: SftpFileSystem, local: string, size: number, dir: string, opts: Pick<SendOptions, 'signal' | 'onEvent'>): Promise<SentFile> {
  const name = basename(local);
  const remote = posix.join(dir, name);
  const partial = posix.join(dir, `${PARTIAL_PREFIX}${name}`);
  const emit = opts.onEvent ?? (() => undefined);
  const localHash = hashLocal(local, opts.signal);
  localHash.catch(() => undefined);

  if ((await fs.fileSize(remote)) === size) {
    emit({ type: 'verify', file: local });
    const [want, got] = await Promise.all([localHash, hashRemote(session, fs, remote, opts.signal)]);
    if (want === got.sha256) {
      emit({ type: 'done', file: local, sha256: want, verifiedBy: got.by, status: 'already-there' });
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
      emit({ type: 'done', file: local, sha256: want, verifiedBy: got.by, status: 'sent' });
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
    throw fs.dropReason ?? e;
  }
  return done - from;
}

export function renderSendReport(r: SendReport): string {
  return [
    ...r.files.map((f) => `${f.status === 'already-there' ? 'already there' : f.resumedFrom > 0 ? `sent (resumed at ${f.resumedFrom} bytes)` : 'sent'}: ${f.local} → ${f.remote} (${f.size} bytes, sha256:${f.sha256}, checked by ${f.verifiedBy})`),
    `${r.files.length} file(s) to ${r.destination} in ${r.seconds.toFixed(1)} s`,
  ].join('\n');
}
