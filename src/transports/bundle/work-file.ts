import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, lstat, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FILE_MODE } from '../../fsys/files.js';
import { processAlive } from '../../fsys/pid.js';
import { HOST_TAG } from '../../fsys/temp-names.js';

/**
 * A bundle file being written: a hidden work file beside its final name,
 * created at its full size (the layout is known before the first blob), written
 * at offsets as blobs arrive, fsynced, then renamed to its final name (or
 * compressed, or streamed, from here). Beside it a small journal lists what the
 * file holds for good — each entry written whole and fsynced before its line is —
 * and how far each blob still arriving had come, so a killed export continues
 * into the same file: same images, same layout (the journal names it), only
 * what is missing is fetched.
 *
 *   .ferry-resume-<final name>.<pid>-<host tag>.<random>          the file
 *   .ferry-resume-<final name>.<pid>-<host tag>.<random>.journal  its journal
 *
 * The names carry their writer like fsys temp names do, so a live export's
 * file is never taken; they are not `.ferry-tmp-` names because they are meant
 * to outlive an interrupted run (stale-temp sweeps would remove them). A run
 * takes a dead run's file over by renaming it to its own name (atomic: of two
 * runs only one gets it).
 */

export const RESUME_MARKER = '.ferry-resume-';
const JOURNAL_SUFFIX = '.journal';
const JOURNAL_MAGIC = 'ferry-bundle-journal 1';
const READ_CHUNK = 1 << 20;
/** A resume file nobody came back for in this long is removed by the next export in its folder. */
export const RESUME_MAX_AGE_MS = 7 * 24 * 3600_000;

/** A blob (or part) whose bytes are in the file for good: content at `offset`, `size` bytes. */
export interface DoneEntry {
  offset: number;
  /** The blob's hex digest (the layer's, for a part). */
  hex: string;
  size: number;
  /** A part's own digest (hex). */
  partHex?: string;
}

/** What a journal says about its file. */
export interface JournalState {
  layoutId: string;
  fileIndex: number;
  fileSize: number;
  /** By content offset. */
  done: Map<number, DoneEntry>;
  /** Blobs cut off while arriving: their first `bytes` at `offset` are in place. By content offset. */
  progress: Map<number, { hex: string; bytes: number }>;
}

/** A dead run's work file, found beside the final name it was writing. */
export interface Candidate {
  path: string;
  state: JournalState;
}

function owner(name: string): { pid: number; host: string } | undefined {
  const m = /\.(\d+)-([0-9a-f]{8})\.[0-9a-f]{8}$/.exec(name);
  return m ? { pid: Number(m[1]), host: m[2]! } : undefined;
}

/** Work files this process has open: its own pid on a file says nothing once the run that wrote it ended (in-process reruns). */
const openHere = new Set<string>();

/** No live run on this host writes it (another host's files only go by age). */
function abandoned(path: string, ageMs: number): boolean {
  const o = owner(path);
  if (o === undefined) return ageMs > RESUME_MAX_AGE_MS;
  if (o.host !== HOST_TAG) return ageMs > RESUME_MAX_AGE_MS;
  return o.pid === process.pid ? !openHere.has(path) : !processAlive(o.pid);
}

function workNameFor(finalName: string): string {
  return `${RESUME_MARKER}${finalName}.${process.pid}-${HOST_TAG}.${randomBytes(4).toString('hex')}`;
}

export function parseJournal(text: string): JournalState | undefined {
  const lines = text.split('\n');
  const head = lines[0]?.split(' ');
  if (!head || `${head[0]} ${head[1]}` !== JOURNAL_MAGIC || head.length !== 5) return undefined;
  const state: JournalState = { layoutId: head[2]!, fileIndex: Number(head[3]), fileSize: Number(head[4]), done: new Map(), progress: new Map() };
  // The last line may be cut (the run was killed while appending it): only whole, well-formed lines count.
  for (const line of lines.slice(1, text.endsWith('\n') ? -1 : lines.length - 1)) {
    const f = line.split(' ');
    const offset = Number(f[1]);
    const n = Number(f[3]);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(n) || !/^[0-9a-f]{64}$/.test(f[2] ?? '')) continue;
    if (f[0] === 'D' && (f.length === 4 || (f.length === 5 && /^[0-9a-f]{64}$/.test(f[4]!)))) {
      state.done.set(offset, { offset, hex: f[2]!, size: n, ...(f[4] ? { partHex: f[4] } : {}) });
      state.progress.delete(offset);
    } else if (f[0] === 'P' && f.length === 4 && !state.done.has(offset)) {
      if (n > 0) state.progress.set(offset, { hex: f[2]!, bytes: n });
      else state.progress.delete(offset);
    }
  }
  return state;
}

/**
 * The abandoned work files for `finalName` in `dir`, with what their journals
 * say; journals that do not parse make their file useless (it is removed).
 */
export async function findCandidates(dir: string, finalName: string): Promise<Candidate[]> {
  const prefix = `${RESUME_MARKER}${finalName}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: Candidate[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || name.endsWith(JOURNAL_SUFFIX)) continue;
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile() || !abandoned(path, Date.now() - st.mtimeMs)) continue;
    const text = await readFile(`${path}${JOURNAL_SUFFIX}`, 'utf8').catch(() => undefined);
    const state = text === undefined ? undefined : parseJournal(text);
    if (!state || state.fileSize !== st.size) {
      await removeWorkFile(path);
      continue;
    }
    out.push({ path, state });
  }
  return out;
}

/**
 * Removes what no export will continue: resume files of other outputs whose
 * writer is gone and that nobody touched for RESUME_MAX_AGE_MS, and journals
 * whose file is gone.
 */
export async function sweepResumeFiles(dir: string, now = Date.now()): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  const present = new Set(names);
  for (const name of names) {
    if (!name.startsWith(RESUME_MARKER)) continue;
    const path = join(dir, name);
    if (name.endsWith(JOURNAL_SUFFIX)) {
      const file = name.slice(0, -JOURNAL_SUFFIX.length);
      if (!present.has(file) && owner(file) !== undefined && abandoned(join(dir, file), Infinity)) await rm(path, { force: true }).catch(() => undefined);
      continue;
    }
    const st = await lstat(path).catch(() => undefined);
    if (st && now - st.mtimeMs > RESUME_MAX_AGE_MS && abandoned(path, now - st.mtimeMs)) await removeWorkFile(path);
  }
}

export async function removeWorkFile(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => undefined);
  await rm(`${path}${JOURNAL_SUFFIX}`, { force: true }).catch(() => undefined);
}

/** Bytes in flight for one blob, as the journal's progress lines record them. */
export interface Progress {
  offset: number;
  hex: string;
  bytes: number;
}

export class WorkFile {
  private pending: DoneEntry[] = [];
  private lastProgress = new Map<number, number>();
  private checkpointing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly finalPath: string,
    readonly size: number,
    private readonly fh: FileHandle,
    private readonly journal: FileHandle,
    /** What the journal already says (an adopted file), or nothing. */
    readonly resumed: JournalState | undefined,
  ) {
    openHere.add(path);
    for (const [offset, p] of resumed?.progress ?? []) this.lastProgress.set(offset, p.bytes);
  }

  get journalPath(): string {
    return `${this.path}${JOURNAL_SUFFIX}`;
  }

  /** A new work file of `size` bytes (sparse: unwritten ranges read as zeros) and its journal. */
  static async create(dir: string, finalPath: string, finalName: string, size: number, layoutId: string, fileIndex: number): Promise<WorkFile> {
    const path = join(dir, workNameFor(finalName));
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
    let journal: FileHandle | undefined;
    try {
      await fh.chmod(FILE_MODE);
      await fh.truncate(size);
      journal = await open(`${path}${JOURNAL_SUFFIX}`, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND | constants.O_NOFOLLOW, FILE_MODE);
      await journal.write(`${JOURNAL_MAGIC} ${layoutId} ${fileIndex} ${size}\n`);
      await journal.sync();
      return new WorkFile(path, finalPath, size, fh, journal, undefined);
    } catch (e) {
      await fh.close().catch(() => undefined);
      await journal?.close().catch(() => undefined);
      await removeWorkFile(path);
      throw e;
    }
  }

  /** Takes a dead run's file over (renamed to this run's name first: of two runs, one gets it); undefined when another run was faster. */
  static async adopt(candidate: Candidate, dir: string, finalPath: string, finalName: string): Promise<WorkFile | undefined> {
    const path = join(dir, workNameFor(finalName));
    try {
      await rename(candidate.path, path);
    } catch {
      return undefined;
    }
    // The journal follows its file; without it the file is useless (its content unknown).
    try {
      await rename(`${candidate.path}${JOURNAL_SUFFIX}`, `${path}${JOURNAL_SUFFIX}`);
    } catch {
      await removeWorkFile(path);
      return undefined;
    }
    const fh = await open(path, constants.O_RDWR | constants.O_NOFOLLOW);
    const journal = await open(`${path}${JOURNAL_SUFFIX}`, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW);
    return new WorkFile(path, finalPath, candidate.state.fileSize, fh, journal, candidate.state);
  }

  /** Writes all of `data` at `position`. */
  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
  }

  /** Writes the buffers one after another from `position`, without joining them first (pwritev). */
  async writev(data: Buffer[], position: number): Promise<void> {
    let bufs = data;
    let at = position;
    while (bufs.length > 0) {
      const { bytesWritten } = await this.fh.writev(bufs, at);
      at += bytesWritten;
      // A short write (rare, for regular files): go on after what was written.
      let skip = bytesWritten;
      while (bufs.length > 0 && skip >= bufs[0]!.length) {
        skip -= bufs[0]!.length;
        bufs = bufs.slice(1);
      }
      if (skip > 0) bufs = [bufs[0]!.subarray(skip), ...bufs.slice(1)];
    }
  }

  async read(position: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) throw new Error(`${this.path}: ends before byte ${position + length}`);
      done += bytesRead;
    }
    return buf;
  }

  /**
   * Bytes [start, end) of the file, streamed by positioned reads; the file stays
   * open (a FileHandle's own read stream closes the handle when destroyed).
   */
  readStream(start: number, end: number): Readable {
    const fh = this.fh;
    const path = this.path;
    return Readable.from((async function* () {
      for (let at = start; at < end;) {
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, end - at));
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        if (bytesRead === 0) throw new Error(`${path}: ends at byte ${at}, before ${end}`);
        at += bytesRead;
        yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
      }
    })(), { objectMode: false });
  }

  /** Records an entry as written whole; it is journaled at the next checkpoint, after the data is fsynced. */
  noteDone(entry: DoneEntry): void {
    this.pending.push(entry);
  }

  /**
   * Makes what was written so far durable, then says so in the journal:
   * fsync of the data, the lines of entries finished since the last checkpoint
   * and of blobs still arriving, fsync of the journal. A line never names bytes
   * the disk may not have.
   */
  checkpoint(progress: Iterable<Progress> = []): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.closed) return;
      const done = this.pending;
      this.pending = [];
      // A blob that starts, or starts over, at 0 is worth a line only when it resets a prefix recorded before.
      const moved = [...progress].filter((p) => this.lastProgress.get(p.offset) !== p.bytes && (p.bytes > 0 || (this.lastProgress.get(p.offset) ?? 0) > 0));
      if (done.length === 0 && moved.length === 0) return;
      try {
        await this.fh.datasync();
        const lines = [
          ...moved.map((p) => `P ${p.offset} ${p.hex} ${p.bytes}\n`),
          ...done.map((d) => `D ${d.offset} ${d.hex} ${d.size}${d.partHex ? ` ${d.partHex}` : ''}\n`),
        ].join('');
        await this.journal.write(lines);
        await this.journal.datasync();
        for (const p of moved) this.lastProgress.set(p.offset, p.bytes);
        for (const d of done) this.lastProgress.delete(d.offset);
      } catch (e) {
        this.pending = [...done, ...this.pending];
        throw e;
      }
    };
    // One checkpoint at a time; a request made meanwhile runs after it (it covers later writes).
    const next = (this.checkpointing ?? Promise.resolve()).catch(() => undefined).then(run);
    this.checkpointing = next;
    return next;
  }

  /** Flushes the file's data and size for good (before it is renamed or read whole). */
  async sync(): Promise<void> {
    await this.fh.sync();
  }

  /** Closes both handles; the files stay (for a rerun, or for the caller to rename). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.checkpointing?.catch(() => undefined);
    this.closed = true;
    await this.fh.close().catch(() => undefined);
    await this.journal.close().catch(() => undefined);
    openHere.delete(this.path);
  }

  /** Closes and removes the file and its journal. */
  async discard(): Promise<void> {
    await this.close();
    await removeWorkFile(this.path);
  }

  /** Renames the finished file to its final name (the caller syncs the directory) and removes the journal. */
  async publish(): Promise<void> {
    await this.close();
    await rename(this.path, this.finalPath);
    await rm(this.journalPath, { force: true });
  }
}
