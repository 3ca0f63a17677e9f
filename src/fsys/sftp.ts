import { posix } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { SFTPWrapper, Stats } from 'ssh2';
import { FerryError } from '../errors.js';
import { tempPathFor } from './atomic.js';
import { DIR_MODE, FILE_MODE } from './files.js';
import type { FileSystemPort } from './port.js';

/**
 * The file-system port over SFTP (OpenSSH's sftp-server or internal-sftp).
 * Renames use OpenSSH's posix-rename extension, which replaces the target
 * atomically as rename(2) does; plain SFTP v3 rename refuses an existing target.
 * Writes go through SftpWriter: requests as large as the server takes, many in
 * flight at once (as OpenSSH's own sftp and scp do), so a link is paid for its
 * bandwidth, not once per request's round trip.
 */

const NO_SUCH_FILE = 2;
/** Bytes of write requests in flight at most: what a dropped link can leave with holes (RESUME_OVERLAP). */
const WRITE_WINDOW = 4 * 1024 * 1024;
/** Every SFTP server takes writes of 32 KiB (draft-ietf-secsh-filexfer-02 §3); OpenSSH's limits extension allows more. */
const MIN_WRITE = 32 * 1024;
const MAX_WRITE = 256 * 1024;

/**
 * How far back from a partial file's end a resumed upload starts: writes in
 * flight when a link dropped can land out of order, so the last window's worth
 * of the file may hold a hole behind bytes that did arrive.
 */
export const RESUME_OVERLAP = WRITE_WINDOW;

type SftpError = Error & { code?: number | string };

export function isSftpMissing(e: unknown): boolean {
  return (e as SftpError | undefined)?.code === NO_SUCH_FILE;
}

/** One SFTP request; `dropped` ends the wait when the connection is gone (ssh2 then never answers). */
function request<T>(dropped: AbortSignal | undefined, fn: (cb: (err: Error | null | undefined, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    // The drop's reason is the FerryError the session made when the connection went away.
    if (dropped?.aborted) return reject(dropped.reason as Error);
    const onDrop = (): void => reject(dropped!.reason as Error);
    dropped?.addEventListener('abort', onDrop, { once: true });
    try {
      fn((err, value) => {
        dropped?.removeEventListener('abort', onDrop);
        if (err) reject(err);
        else resolve(value);
      });
    } catch (e) {
      dropped?.removeEventListener('abort', onDrop);
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}

export class SftpFileSystem implements FileSystemPort {
  private readonly knownDirs = new Set<string>();
  private readonly posixRename: boolean;

  /** `dropped`: aborted when the SSH connection goes away (SshSession.dropped). */
  constructor(private readonly sftp: SFTPWrapper, readonly description: string, private readonly dropped?: AbortSignal) {
    // ssh2 records the server's extensions at SFTP version negotiation.
    const ext = (sftp as unknown as { _extensions?: Record<string, string> })._extensions;
    this.posixRename = ext === undefined || ext['posix-rename@openssh.com'] !== undefined;
  }

  private ioError(op: string, path: string, e: unknown): FerryError {
    const err = e as SftpError;
    const denied = err.code === 3;
    return new FerryError('E_IO', `${this.description}: ${op} ${path}: ${err.message}`, {
      hint: denied ? 'the SSH user may not write there: pick a directory it owns, or fix the permissions on the remote host' : 'check the remote path and free space on the remote host',
      cause: e, details: { file: path, sftpStatus: err.code },
    });
  }

  private call<T>(fn: (cb: (err: Error | null | undefined, value: T) => void) => void): Promise<T> {
    return request(this.dropped, fn);
  }

  stat(path: string): Promise<Stats | undefined> {
    return this.call<Stats>((cb) => this.sftp.stat(path, cb)).catch((e: unknown) => {
      if (isSftpMissing(e)) return undefined;
      throw this.ioError('stat', path, e);
    });
  }

  async fileSize(path: string): Promise<number | undefined> {
    const s = await this.stat(path);
    return s?.isFile() ? s.size : undefined;
  }

  async mkdirs(dir: string): Promise<void> {
    const d = posix.normalize(dir);
    if (this.knownDirs.has(d) || d === '/' || d === '.') return;
    const s = await this.stat(d);
    if (s?.isDirectory()) {
      this.knownDirs.add(d);
      return;
    }
    await this.mkdirs(posix.dirname(d));
    try {
      await this.call<void>((cb) => this.sftp.mkdir(d, { mode: DIR_MODE }, cb));
      // The server applies its umask to mkdir's mode.
      await this.call<void>((cb) => this.sftp.chmod(d, DIR_MODE, cb));
    } catch (e) {
      // A concurrent writer may have made it first. SFTP says only "Failure" when a file is in the way: say so.
      const there = await this.stat(d);
      if (there && !there.isDirectory()) {
        throw new FerryError('E_IO', `${this.description}: mkdir ${d}: a file is where a folder should be`, {
          hint: 'move or remove that file on the remote host, or send to another directory, then run the command again', cause: e, details: { file: d },
        });
      }
      if (!there) throw this.ioError('mkdir', d, e);
    }
    this.knownDirs.add(d);
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      if (this.posixRename) await this.call<void>((cb) => this.sftp.ext_openssh_rename(from, to, cb));
      else await this.call<void>((cb) => this.sftp.rename(from, to, cb));
    } catch (e) {
      throw this.ioError('rename to', to, e);
    }
  }

  async unlink(path: string): Promise<void> {
    await this.call<void>((cb) => this.sftp.unlink(path, cb)).catch(() => undefined);
  }

  /** Free bytes (for this user) on the file system that holds `dir`, or undefined when the server does not say (statvfs@openssh.com). */
  async freeBytes(dir: string): Promise<number | undefined> {
    try {
      const info = await this.call<{ f_bavail: number | bigint; f_frsize: number | bigint }>((cb) => this.sftp.ext_openssh_statvfs(dir, cb as (err: Error | undefined, fsInfo: unknown) => void));
      return Number(info.f_bavail) * Number(info.f_frsize);
    } catch {
      return undefined;
    }
  }

  /** A failed write to `path` as the error users get: named, with what to check (SFTP says only "Failure" for a full disk). */
  writeError(path: string, e: unknown): unknown {
    return e instanceof FerryError || (e as Error).name === 'AbortError' ? e : this.ioError('write', path, e);
  }

  /** A write stream at `start` (append after a partial upload) or a new file. */
  createWriteStream(path: string, start?: number): Writable {
    return new SftpWriter(this.sftp, path, start ?? 0, this.dropped);
  }

  async streamToFileAtomic(path: string, data: Readable, signal?: AbortSignal): Promise<void> {
    await this.mkdirs(posix.dirname(path));
    const tmp = tempPathFor(path);
    try {
      await pipeline(data, this.createWriteStream(tmp), { signal: this.signalWith(signal) });
      await this.rename(tmp, path);
    } catch (e) {
      data.destroy();
      await this.unlink(tmp);
      if (this.dropped?.aborted) throw this.dropped.reason;
      throw e instanceof FerryError || (e as Error).name === 'AbortError' ? e : this.ioError('write', path, e);
    }
  }

  async writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
    await this.mkdirs(posix.dirname(path));
    const tmp = tempPathFor(path);
    try {
      await this.call<void>((cb) => this.sftp.writeFile(tmp, typeof data === 'string' ? data : Buffer.from(data), { mode: FILE_MODE }, cb));
      await this.call<void>((cb) => this.sftp.chmod(tmp, FILE_MODE, cb));
      await this.rename(tmp, path);
    } catch (e) {
      await this.unlink(tmp);
      throw e instanceof FerryError ? e : this.ioError('write', path, e);
    }
  }

  async readFileHead(path: string, max: number): Promise<Buffer | undefined> {
    let handle: Buffer;
    try {
      handle = await this.call<Buffer>((cb) => this.sftp.open(path, 'r', cb));
    } catch (e) {
      if (isSftpMissing(e)) return undefined;
      throw this.ioError('open', path, e);
    }
    try {
      const buf = Buffer.alloc(max);
      let got = 0;
      while (got < max) {
        const n = await new Promise<number>((resolve, reject) =>
          this.sftp.read(handle, buf, got, max - got, got, (err, bytesRead) => (err ? ((err as SftpError).code === 1 ? resolve(0) : reject(err)) : resolve(bytesRead))));
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    } finally {
      await this.call<void>((cb) => this.sftp.close(handle, cb)).catch(() => undefined);
    }
  }

  async readdir(dir: string): Promise<{ name: string; isDirectory: boolean }[]> {
    try {
      const list = await this.call<{ filename: string; attrs: Stats }[]>((cb) => this.sftp.readdir(dir, cb));
      return list.filter((e) => e.filename !== '.' && e.filename !== '..').map((e) => ({ name: e.filename, isDirectory: e.attrs.isDirectory() }));
    } catch (e) {
      if (isSftpMissing(e)) return [];
      throw this.ioError('readdir', dir, e);
    }
  }

  async rm(path: string): Promise<void> {
    const s = await this.stat(path);
    if (!s) return;
    if (s.isDirectory()) {
      for (const e of await this.readdir(path)) await this.rm(posix.join(path, e.name));
      await this.call<void>((cb) => this.sftp.rmdir(path, cb)).catch((e: unknown) => {
        throw this.ioError('rmdir', path, e);
      });
      this.knownDirs.delete(posix.normalize(path));
    } else {
      await this.call<void>((cb) => this.sftp.unlink(path, cb)).catch((e: unknown) => {
        if (!isSftpMissing(e)) throw this.ioError('unlink', path, e);
      });
    }
  }

  async removeEmptyDirs(dir: string, stop: string): Promise<void> {
    let d = dir;
    while (d.startsWith(stop) && d !== stop) {
      try {
        await this.call<void>((cb) => this.sftp.rmdir(d, cb));
        this.knownDirs.delete(posix.normalize(d));
      } catch {
        return;
      }
      d = posix.dirname(d);
    }
  }

  /** Why the connection went away, once it has. */
  get dropReason(): unknown {
    return this.dropped?.aborted ? this.dropped.reason : undefined;
  }

  /** The caller's signal combined with the connection's: a stream pipeline stops on either. */
  signalWith(signal?: AbortSignal): AbortSignal {
    const all = [signal, this.dropped].filter((s): s is AbortSignal => s !== undefined);
    return all.length === 0 ? new AbortController().signal : AbortSignal.any(all);
  }

  createReadStream(path: string, start?: number): Readable {
    return this.sftp.createReadStream(path, start !== undefined ? { start } : {});
  }
}

/**
 * A file written over SFTP with many write requests in flight. ssh2's own write
 * stream sends a chunk, waits for the server's answer, then sends the next
 * (and splits a chunk larger than a request only after the first part is
 * acknowledged): one round trip per request, about half of scp's speed on a
 * LAN. Here each chunk is cut into requests of the largest size the server
 * takes (OpenSSH says so in its limits extension; 32 KiB for any server) and
 * sent at once; the stream takes more while fewer than WRITE_WINDOW bytes are
 * unacknowledged. A failed request fails the stream; the file is closed when
 * every request is answered, so 'finish' means the server has every byte.
 */
export class SftpWriter extends Writable {
  private handle: Buffer | undefined;
  private pos: number;
  private inFlight = 0;
  private failed: Error | undefined;
  /** Called when the window has room again (or a request failed). */
  private waiting: (() => void) | undefined;
  private readonly requestSize: number;

  constructor(private readonly sftp: SFTPWrapper, private readonly path: string, start: number, private readonly dropped?: AbortSignal) {
    super({ highWaterMark: MAX_WRITE });
    this.pos = start;
    // ssh2 keeps the server's limit (limits@openssh.com, else its OpenSSH default) here; it splits larger writes one round trip at a time.
    const max = (sftp as unknown as { _maxWriteLen?: unknown })._maxWriteLen;
    this.requestSize = typeof max === 'number' && max >= MIN_WRITE ? Math.min(max, MAX_WRITE) : MIN_WRITE;
    // ssh2 never answers the requests of a connection that is gone: the wait ends on the drop instead.
    dropped?.addEventListener('abort', () => this.wake(), { once: true });
  }

  override _construct(callback: (error?: Error | null) => void): void {
    const append = this.pos > 0;
    request<Buffer>(this.dropped, (cb) => this.sftp.open(this.path, append ? 'r+' : 'w', { mode: FILE_MODE }, cb))
      .then(async (handle) => {
        this.handle = handle;
        // The server applies its umask to open's mode.
        await request<void>(this.dropped, (cb) => this.sftp.fchmod(handle, FILE_MODE, cb));
      })
      .then(() => callback(), (e: Error) => callback(e));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // Never more than WRITE_WINDOW unacknowledged: a dropped link leaves holes only in the file's last window (RESUME_OVERLAP).
    const send = (off: number): void => {
      if (off >= chunk.length) return callback();
      const len = Math.min(this.requestSize, chunk.length - off);
      this.whenRoom(WRITE_WINDOW - len, (err) => {
        if (err) return callback(err);
        this.inFlight += len;
        this.sftp.write(this.handle!, chunk, off, len, this.pos, (e) => {
          this.inFlight -= len;
          if (e && !this.failed) this.failed = e;
          this.wake();
        });
        this.pos += len;
        send(off + len);
      });
    };
    send(0);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.whenRoom(0, (err) => {
      if (err) return callback(err);
      const handle = this.handle;
      this.handle = undefined;
      request<void>(this.dropped, (cb) => this.sftp.close(handle!, cb)).then(() => callback(), (e: Error) => callback(e));
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = undefined;
    this.waiting = undefined;
    if (!handle || this.dropped?.aborted) return callback(error);
    this.sftp.close(handle, () => callback(error));
  }

  /** Calls back once at most `limit` bytes are unacknowledged, or with the first failure (a dropped link included). */
  private whenRoom(limit: number, callback: (error?: Error | null) => void): void {
    const check = (): boolean => {
      const err = this.failed ?? (this.dropped?.aborted ? asError(this.dropped.reason) : undefined);
      if (err) {
        this.waiting = undefined;
        callback(err);
        return true;
      }
      if (this.inFlight > limit) return false;
      this.waiting = undefined;
      callback();
      return true;
    };
    if (check()) return;
    this.waiting = () => void check();
  }

  private wake(): void {
    this.waiting?.();
  }
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
