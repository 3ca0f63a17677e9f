import { constants } from 'node:fs';
import type { Stats } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, open, readdir, rename, rm, rmdir, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../errors.js';
import { type Digest, digestStream, sha256Digest } from '../oci/digest.js';
import { DirSyncBatch } from './durable.js';
import { DIR_MODE, FILE_MODE, isMissing, mkdirp, naming, readAt } from './files.js';
import { type Owner, targetOwner } from './owner.js';
import type { FileSystemPort } from './port.js';
import { type SweptEntry, sweepStaleTemps } from './stale-temps.js';
import { tempPathFor } from './temp-names.js';

export interface TargetTreeOptions {
  /** `--owner`: who new files and directories belong to (default: see owner.ts `targetOwner`). */
  owner?: Owner | undefined;
}

/** Blobs are hundreds of MiB: the default 16/64 KiB chunks cost a syscall (and a promise) each. */
const IO_CHUNK = 1 << 20;
/** Files hashed from one buffer of their size rather than streamed. */
const SMALL_FILE = 256 * 1024;

/**
 * The local directory tree an import writes into (a registry layout, an OCI
 * layout, a skopeo dir tree), with every rule that keeps writing there safe:
 *
 * - Confined: nothing is read, written or deleted through a symbolic link
 *   below the root. Every directory on a path is checked with lstat (once per
 *   run), files are opened with O_NOFOLLOW, temp files with O_EXCL, and a link
 *   where ferry would read or write is refused with an error naming it
 *   (ferry never makes links there, so one is planted). The root itself may be
 *   a link: that is where the user pointed.
 * - Durable: each file is fsynced before the rename that publishes it; the
 *   directories renamed into or created in are noted and fsynced together by
 *   `flush()`, which writers call before publishing what points at those files.
 * - Owned: new files and directories get the target's owner (owner.ts).
 * - Clean: the first write into a directory that existed before the run
 *   removes what killed runs left there (stale-temps.ts).
 */
export class TargetTree implements FileSystemPort {
  readonly description = 'local';
  readonly root: string;
  /*
   * What this run learnt about directories. Each is a cache of a fact the disk
   * still holds, so forgetting one costs only a check again (an lstat, or a
   * sweep that finds nothing stale): bounded, since a layout of 50,000 blobs has
   * 100,000 folders of its own and their paths were ~20 MB of a 200 MiB budget.
   */
  /** Directories below the root known to be real directories (checked with lstat, or made here). */
  private readonly dirs = new RecentSet(DIRS_REMEMBERED);
  /** Directories this run created: nothing stale in them. */
  private readonly made = new RecentSet(DIRS_REMEMBERED);
  private readonly swept = new RecentSet(DIRS_REMEMBERED);
  private readonly batch = new DirSyncBatch();
  /** Directories noted since the last flush, repeats counted: past FLUSH_EVERY they are flushed early. */
  private noted = 0;
  /** An early flush's failure, reported by the next `flush()` (its directories were kept pending too). */
  private earlyFailure: Error | undefined;
  private flushingEarly = false;
  private ownerOnce: Promise<Owner | undefined> | undefined;
  private rootOnce: Promise<void> | undefined;
  /** What earlier, killed runs left behind and this run removed. */
  readonly removedTemps: SweptEntry[] = [];

  constructor(root: string, private readonly opts: TargetTreeOptions = {}) {
    this.root = resolve(root);
  }

  /** The owner new entries get; undefined when they keep this process's. */
  owner(): Promise<Owner | undefined> {
    this.ownerOnce ??= targetOwner(this.root, this.opts.owner);
    return this.ownerOnce;
  }

  /** Makes every rename and new directory so far durable. */
  async flush(): Promise<void> {
    this.noted = 0;
    await this.batch.flush();
    const failure = this.earlyFailure;
    this.earlyFailure = undefined;
    if (failure !== undefined) throw failure;
  }

  /**
   * Notes a directory whose entries changed. A registry layout has a folder per
   * blob and per layer link: 50,000 blobs noted ~100,000 paths (~18 MB) before
   * the first manifest flushed them. Flushing them early, in the background, is
   * only durability sooner; what points at them still waits for `flush()`.
   */
  private note(dir: string): void {
    this.batch.note(dir);
    // One early flush at a time: each holds up to 16 directories open, and a slow disk must not stack them.
    if (++this.noted < FLUSH_EVERY || this.flushingEarly) return;
    this.noted = 0;
    this.flushingEarly = true;
    this.batch.flush().catch((e: unknown) => {
      this.earlyFailure ??= e instanceof Error ? e : new Error(String(e));
    }).finally(() => {
      this.flushingEarly = false;
    });
  }

  async fileSize(path: string): Promise<number | undefined> {
    if ((await this.checkDirs(dirname(path))) !== undefined) return undefined;
    const st = await this.lstatNoLink(path);
    return st?.isFile() ? st.size : undefined;
  }

  /** Hashes a file (streaming); undefined when there is none. */
  async hashFile(path: string): Promise<{ digest: Digest; size: number } | undefined> {
    const fh = await this.openForReading(path);
    if (!fh) return undefined;
    try {
      const st = await fh.stat();
      if (!st.isFile()) return undefined;
      // A small file in one read of its size: a stream gives each file a 1 MiB chunk (a re-import of
      // 50,000 small blobs allocated 50 GiB for them). One byte more than stated finds a file grown meanwhile.
      if (st.size < SMALL_FILE) {
        const bytes = await readAt(fh, 0, st.size + 1);
        if (bytes.length <= st.size) return { digest: sha256Digest(bytes), size: bytes.length };
      }
      // The stream closes the handle at its end (a stream that does not, leaves a handle close() waits on for ever).
      return await digestStream(fh.createReadStream({ highWaterMark: IO_CHUNK }));
    } finally {
      await fh.close();
    }
  }

  async readFileHead(path: string, max: number): Promise<Buffer | undefined> {
    const fh = await this.openForReading(path);
    if (!fh) return undefined;
    try {
      const buf = Buffer.alloc(max);
      const { bytesRead } = await fh.read(buf, 0, max, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }

  async readdir(dir: string): Promise<{ name: string; isDirectory: boolean }[]> {
    if ((await this.checkDirs(dir)) !== undefined) return [];
    try {
      return (await readdir(dir, { withFileTypes: true })).map((e) => ({ name: e.name, isDirectory: e.isDirectory() }));
    } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
  }

  createReadStream(path: string, start?: number): Readable {
    const open = () => this.openForReading(path);
    return Readable.from((async function* () {
      const fh = await open();
      if (!fh) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT', syscall: 'open', path });
      try {
        yield* fh.createReadStream({ highWaterMark: IO_CHUNK, ...(start !== undefined ? { start } : {}) });
      } finally {
        await fh.close();
      }
    })(), { objectMode: false });
  }

  async mkdirs(dir: string): Promise<void> {
    await this.ensureRoot();
    const missing = await this.checkDirs(dir);
    if (missing === undefined) return;
    const owner = await this.owner();
    const chain: string[] = [];
    for (let d = dir; d !== dirname(missing); d = dirname(d)) chain.unshift(d);
    for (const d of chain) {
      try {
        await mkdir(d, { mode: DIR_MODE });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw naming(e, d);
        // Made meanwhile by a concurrent write: it must still be a real directory.
        const st = await this.lstatNoLink(d);
        if (!st?.isDirectory()) throw notADirectory(d);
        this.dirs.add(d);
        continue;
      }
      try {
        await chmod(d, DIR_MODE);
        if (owner) await chown(d, owner.uid, owner.gid);
      } catch (e) {
        throw naming(e, d);
      }
      this.dirs.add(d);
      this.made.add(d);
      this.note(dirname(d));
    }
  }

  async writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
    await this.publish(path, (fh) => fh.writeFile(data));
  }

  async streamToFileAtomic(path: string, data: Readable, signal?: AbortSignal): Promise<void> {
    try {
      await this.prepareFile(path);
    } catch (e) {
      data.destroy();
      throw e;
    }
    const tmp = tempPathFor(path);
    try {
      const fh = await openNew(tmp);
      try {
        await this.seal(fh);
        // The stream owns the handle: it fsyncs (`flush`) and closes it at the end.
        await pipeline(data, fh.createWriteStream({ highWaterMark: IO_CHUNK, flush: true }), signal ? { signal } : {});
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      this.note(dirname(path));
    } catch (e) {
      data.destroy();
      await rm(tmp, { force: true });
      throw naming(e, path);
    }
  }

  /**
   * A new file at `path` whose bytes `fill` writes through the descriptor it is
   * given (positioned writes, from a worker thread too): published like
   * streamToFileAtomic's — temp name, fsync, rename — only when `fill`
   * resolves; removed when it rejects. `fill` must have stopped writing when it
   * settles: the descriptor is closed then.
   */
  async fillFileAtomic(path: string, fill: (fd: number) => Promise<void>): Promise<void> {
    await this.publish(path, (fh) => fill(fh.fd));
  }

  /** A new file at `path`, written by `write` under a temp name, fsynced, then renamed into place; removed if anything fails. */
  private async publish(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
    await this.prepareFile(path);
    const tmp = tempPathFor(path);
    try {
      const fh = await openNew(tmp);
      try {
        await this.seal(fh);
        await write(fh);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      this.note(dirname(path));
    } catch (e) {
      await rm(tmp, { force: true });
      throw naming(e, path);
    }
  }

  /**
   * Gives `to` the content of `from` (a file in this tree): a hard link when
   * the file system allows one, else a durable copy.
   */
  async linkFile(from: string, to: string): Promise<void> {
    await this.prepareFile(to);
    await rm(to, { force: true });
    try {
      await link(from, to);
      this.note(dirname(to));
    } catch {
      // Some file systems (and some mounts) refuse hard links; a copy is only slower.
      await this.streamToFileAtomic(to, this.createReadStream(from));
    }
  }

  /** Removes a file or a whole tree (links in it are removed, not followed); nothing when missing. */
  async rm(path: string): Promise<void> {
    if ((await this.checkDirs(dirname(path))) !== undefined) return;
    if (path !== this.root) await this.lstatNoLink(path);
    // force covers ENOENT only: under a root that is a file (--to skopeo-dir:b.tar) the staging folder's
    // removal at close met ENOTDIR, and that error replaced the preflight's, which names the user's path.
    await rm(path, { recursive: true, force: true }).catch((e: unknown) => {
      if (!isMissing(e)) throw e;
    });
    this.forget(path);
  }

  /** Removes empty directories from `dir` upwards, stopping at `stop` or the first non-empty one. */
  async removeEmptyDirs(dir: string, stop: string): Promise<void> {
    for (let d = dir; d.startsWith(`${stop}${sep}`) && this.inside(d); d = dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        return;
      }
      this.forget(d);
    }
  }

  /** Removes what killed runs left in `dir` (once per run; nothing in a directory this run made). */
  async sweepOnce(dir: string): Promise<void> {
    if (this.made.has(dir) || this.swept.has(dir)) return;
    this.swept.add(dir);
    if ((await this.checkDirs(dir)) !== undefined) return;
    for (const t of await sweepStaleTemps(dir)) this.removedTemps.push(t);
  }

  /** The directory holding `path` exists (made here if need be, its stale temps swept); no link where the file goes. */
  private async prepareFile(path: string): Promise<void> {
    const dir = dirname(path);
    await this.mkdirs(dir);
    await this.sweepOnce(dir);
    await this.lstatNoLink(path);
  }

  /** Mode and owner of a new file, set before its data: the fsync after the data covers them too. */
  private async seal(fh: FileHandle): Promise<void> {
    await fh.chmod(FILE_MODE);
    const owner = await this.owner();
    if (owner) await fh.chown(owner.uid, owner.gid);
  }

  private ensureRoot(): Promise<void> {
    this.rootOnce ??= (async () => {
      // The owner is that of the nearest existing folder: find it before making the root.
      const owner = await this.owner();
      let first: string | undefined;
      try {
        first = await mkdirp(this.root);
      } catch (e) {
        throw naming(e, this.root);
      }
      if (first === undefined) return;
      for (let d = this.root; ; d = dirname(d)) {
        await chmod(d, DIR_MODE);
        if (owner) await chown(d, owner.uid, owner.gid);
        this.note(dirname(d));
        if (d === first) break;
      }
      this.made.add(this.root);
    })();
    return this.rootOnce;
  }

  /**
   * Checks each directory from below the root down to `dir` (lstat, once per
   * run). Returns the first one that does not exist, undefined when all do.
   */
  private async checkDirs(dir: string): Promise<string | undefined> {
    let cur = this.root;
    for (const part of this.partsOf(dir)) {
      cur = join(cur, part);
      if (this.dirs.has(cur)) continue;
      const st = await this.lstatNoLink(cur);
      if (st === undefined) return cur;
      if (!st.isDirectory()) throw notADirectory(cur);
      this.dirs.add(cur);
    }
    return undefined;
  }

  /** lstat that refuses a link; undefined when nothing is there. */
  private async lstatNoLink(path: string): Promise<Stats | undefined> {
    try {
      const st = await lstat(path);
      if (st.isSymbolicLink() && path !== this.root) throw linkRefused(path, this.root);
      return st;
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  }

  private async openForReading(path: string): Promise<FileHandle | undefined> {
    if ((await this.checkDirs(dirname(path))) !== undefined) return undefined;
    try {
      return await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if (isMissing(e)) return undefined;
      if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw linkRefused(path, this.root);
      throw e;
    }
  }

  private inside(path: string): boolean {
    const rel = relative(this.root, path);
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  }

  private partsOf(path: string): string[] {
    const rel = relative(this.root, path);
    if (rel === '') return [];
    if (!this.inside(path)) {
      throw new FerryError('E_NAME_UNSAFE', `${path} is outside the target ${this.root}`, {
        hint: 'this is a bug in ferry: paths are built from validated names only', details: { file: path, target: this.root },
      });
    }
    return rel.split(sep);
  }

  private forget(path: string): void {
    for (const set of [this.dirs, this.made, this.swept]) {
      for (const d of set) if (d === path || d.startsWith(`${path}${sep}`)) set.delete(d);
    }
  }
}

/** Directories noted before an early flush: enough that a folder shared by many files is synced once per few thousand, not per file. */
const FLUSH_EVERY = 8192;

/** Folders each of the sets above remembers: the most recent ones (a target's shared folders are met again and again). */
const DIRS_REMEMBERED = 4_096;

/** A set of at most `max` strings; past that the oldest half is forgotten. */
class RecentSet implements Iterable<string> {
  private readonly set = new Set<string>();

  constructor(private readonly max: number) {}

  has(value: string): boolean {
    return this.set.has(value);
  }

  add(value: string): void {
    // Met again: it becomes recent.
    this.set.delete(value);
    this.set.add(value);
    if (this.set.size <= this.max) return;
    let drop = this.set.size - this.max / 2;
    for (const old of this.set) {
      if (drop-- <= 0) break;
      this.set.delete(old);
    }
  }

  delete(value: string): boolean {
    return this.set.delete(value);
  }

  [Symbol.iterator](): Iterator<string> {
    return this.set[Symbol.iterator]();
  }
}

async function openNew(path: string): Promise<FileHandle> {
  return open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
}

function linkRefused(path: string, root: string): FerryError {
  return new FerryError('E_NAME_UNSAFE', `${path} is a symbolic link inside the target ${root}; ferry does not follow links there and changed nothing through it`, {
    hint: 'ferry never makes links in a target, so someone planted this one; a link there could make ferry write or delete outside the target. Remove it (or put the real directory or file in its place) and run the command again',
    details: { file: path, target: root },
  });
}

function notADirectory(path: string): FerryError {
  return new FerryError('E_IO', `${path}: expected a directory, found a file`, {
    hint: 'the target holds something ferry did not write; move that file away and run the command again', details: { file: path },
  });
}
