import { createReadStream } from 'node:fs';
import { open, readdir, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { streamToFileAtomic, writeFileAtomic } from './atomic.js';
import { fileSize, isMissing, mkdirs, removeEmptyDirs } from './files.js';

/**
 * The file operations an on-disk destination needs, so the same writer can put
 * a layout on this machine or on another over SFTP with the same rules: data at
 * its final name is always complete (temp name, then rename), files 0644,
 * directories 0755, a missing file is `undefined` / an empty listing, not an error.
 */
export interface FileSystemPort {
  /** `local` or `sftp user@host:port`, for messages. */
  readonly description: string;
  /** Size of a regular file; undefined when there is none. */
  fileSize(path: string): Promise<number | undefined>;
  mkdirs(dir: string): Promise<void>;
  /** The file appears only if `data` ends cleanly; partial data is removed and the error rethrown. */
  streamToFileAtomic(path: string, data: Readable, signal?: AbortSignal): Promise<void>;
  writeFileAtomic(path: string, data: string | Uint8Array): Promise<void>;
  /** At most `max` bytes from the start of the file; undefined when it does not exist. */
  readFileHead(path: string, max: number): Promise<Buffer | undefined>;
  /** Entries of a directory; [] when it does not exist. */
  readdir(dir: string): Promise<{ name: string; isDirectory: boolean }[]>;
  /** Removes a file or a whole tree; nothing when missing. */
  rm(path: string): Promise<void>;
  /** Removes empty directories from `dir` upwards, stopping at `stop` or the first non-empty one. */
  removeEmptyDirs(dir: string, stop: string): Promise<void>;
  createReadStream(path: string, start?: number): Readable;
}

export const localFileSystem: FileSystemPort = {
  description: 'local',
  fileSize,
  mkdirs,
  streamToFileAtomic,
  writeFileAtomic,
  async readFileHead(path, max) {
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
    try {
      const buf = Buffer.alloc(max);
      const { bytesRead } = await fh.read(buf, 0, max, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  },
  async readdir(dir) {
    try {
      return (await readdir(dir, { withFileTypes: true })).map((e) => ({ name: e.name, isDirectory: e.isDirectory() }));
    } catch (e) {
      if (isMissing(e)) return [];
      throw e;
    }
  },
  rm: (path) => rm(path, { recursive: true, force: true }),
  removeEmptyDirs,
  createReadStream: (path, start) => createReadStream(path, start !== undefined ? { start } : {}),
};
