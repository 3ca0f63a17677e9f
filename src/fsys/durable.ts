import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Directory fsyncs. A rename is a change to the directory, not to the file:
 * after a power cut the new name can be there while the file's data is not
 * (unless the file was fsynced before the rename), or the rename can be lost
 * although the run reported success (unless the directory was fsynced after).
 * Writers fsync each file before its rename (atomic.ts, target-tree.ts) and
 * the directory after, through here: either at once (`syncDir`) or noted and
 * flushed together at the points where something that depends on them is
 * about to be published (`DirSyncBatch`).
 */

interface Pending {
  running: Promise<void>;
  /** A sync queued to start after `running`: it covers every request made while `running` was already under way. */
  next: Promise<void> | undefined;
}

const inFlight = new Map<string, Pending>();

/**
 * Fsyncs a directory. Concurrent requests for one directory share syncs: a
 * request made while a sync runs waits for the next one (which starts after
 * it, so covers its rename), and all requests made meanwhile share that one.
 */
export function syncDir(dir: string): Promise<void> {
  const p = inFlight.get(dir);
  if (p === undefined) return startSync(dir);
  p.next ??= p.running.then(noop, noop).then(() => startSync(dir));
  return p.next;
}

function startSync(dir: string): Promise<void> {
  const state: Pending = { running: Promise.resolve(), next: undefined };
  state.running = fsyncDirectory(dir).finally(() => {
    if (inFlight.get(dir) === state) inFlight.delete(dir);
  });
  inFlight.set(dir, state);
  return state.running;
}

function noop(): void {}

async function fsyncDirectory(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (e) {
    // Removed meanwhile (a staging directory at commit, a pruned one): nothing left to make durable.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    await fh.sync();
  } catch (e) {
    // Some file systems (a few network and FUSE ones) cannot fsync a directory; their own guarantees are all there is.
    if (!['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EBADF'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    await fh.close();
  }
}

/** Directory fsyncs at a time: a batch can hold thousands, and a run may have few descriptors to spare (ulimit -n). */
const FLUSH_PARALLEL = 16;

/**
 * Directories whose entries changed, made durable together. A writer notes
 * each directory it renamed a file into (or created a directory in) and
 * flushes before it publishes anything that points at those files: the
 * registry layout before a revision link or a tag, the OCI layout before
 * index.json, a dir image before its manifest.json. One fsync per directory
 * per flush however many files landed in it.
 */
export class DirSyncBatch {
  private pending = new Set<string>();
  /** The flushes under way: a flush returns only when they are done too (what they sync was noted before it). */
  private running: Promise<unknown> = Promise.resolve();

  note(dir: string): void {
    this.pending.add(dir);
  }

  flush(): Promise<void> {
    const dirs = [...this.pending];
    this.pending = new Set();
    const mine = (async () => {
      try {
        for (let i = 0; i < dirs.length; i += FLUSH_PARALLEL) await Promise.all(dirs.slice(i, i + FLUSH_PARALLEL).map(syncDir));
      } catch (e) {
        // Not durable yet: a later flush tries again.
        for (const d of dirs) this.pending.add(d);
        throw e;
      }
    })();
    const all = Promise.all([this.running, mine]);
    this.running = all.catch(noop);
    return all.then(noop);
  }
}

/** Fsyncs a file written through a stream that closed it already. */
export async function syncFile(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
