import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * sha256 off the main thread, for the one verifier (verify.ts). One core hashes
 * at ~1.2–1.6 GB/s; a verify or import of a file-backed bundle reads faster
 * than that, so hashing on the main thread makes it the bottleneck and leaves
 * the other cores idle. Blobs read from a file come in chunks backed by a
 * SharedArrayBuffer (transports/bundle/range-reader.ts): both threads see the
 * same memory, so a chunk goes to a worker without a copy while the same bytes
 * flow on to the destination. Each blob is hashed by one worker, its chunks in
 * order; several blobs hash on several workers at once.
 *
 * The hashing itself is node:crypto's sha256, as on the main thread: only
 * where it runs changes, not what decides a blob is good (VerifyStream).
 */

/** Runs in each worker: one sha256 state per blob id, fed in order, finished on `end`. */
const WORKER_CODE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const states = new Map();
parentPort.on('message', (m) => {
  if (m.drop) { states.delete(m.id); return; }
  let h = states.get(m.id);
  if (!h) { h = createHash('sha256'); states.set(m.id, h); }
  if (m.chunk) {
    h.update(m.chunk);
    parentPort.postMessage({ id: m.id, done: m.chunk.length });
    return;
  }
  states.delete(m.id);
  parentPort.postMessage({ id: m.id, digest: h.digest('hex') });
});
`;

/** Bytes a blob may have handed to its worker but not yet seen hashed: the back-pressure window. */
export const HASH_WINDOW_BYTES = 8 * 1024 * 1024;

interface Pending {
  /** Bytes sent and not yet hashed. */
  bytes: number;
  /** Resolves a writer waiting for the window to open. */
  wake?: () => void;
  result?: { resolve: (hex: string) => void; reject: (e: Error) => void };
}

class HashWorker {
  private readonly worker: Worker;
  /** Blobs this worker is hashing now. */
  readonly jobs = new Map<number, Pending>();
  /** Bytes sent to it and not yet hashed, over all its blobs: how busy it is. */
  load = 0;
  private failure: Error | undefined;

  constructor() {
    this.worker = new Worker(WORKER_CODE, { eval: true, name: 'ferry-sha256' });
    // An idle worker must not keep the process alive; one with work does (see track()).
    this.worker.unref();
    this.worker.on('message', (m: { id: number; done?: number; digest?: string }) => {
      const job = this.jobs.get(m.id);
      if (!job) return;
      if (m.done !== undefined) {
        job.bytes -= m.done;
        this.load -= m.done;
        const wake = job.wake;
        job.wake = undefined;
        wake?.();
      }
      if (m.digest !== undefined) {
        this.untrack(m.id);
        job.result?.resolve(m.digest);
      }
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`the sha256 worker exited (${code})`)));
  }

  get broken(): boolean {
    return this.failure !== undefined;
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const [id, job] of this.jobs) {
      job.wake?.();
      job.result?.reject(this.failure);
      this.jobs.delete(id);
    }
    this.load = 0;
    this.worker.unref();
  }

  track(id: number): Pending {
    if (this.jobs.size === 0) this.worker.ref();
    const job: Pending = { bytes: 0 };
    this.jobs.set(id, job);
    return job;
  }

  untrack(id: number): void {
    const job = this.jobs.get(id);
    if (!job) return;
    this.load -= job.bytes;
    this.jobs.delete(id);
    if (this.jobs.size === 0) this.worker.unref();
  }

  send(id: number, chunk: Uint8Array): void {
    const job = this.jobs.get(id);
    if (this.failure || !job) throw this.failure ?? new Error('the sha256 worker dropped this blob');
    job.bytes += chunk.length;
    this.load += chunk.length;
    // A chunk on a SharedArrayBuffer is shared, not copied; any other is copied by postMessage.
    this.worker.postMessage({ id, chunk });
  }

  end(id: number): Promise<string> {
    const job = this.jobs.get(id);
    if (this.failure || !job) return Promise.reject(this.failure ?? new Error('the sha256 worker dropped this blob'));
    return new Promise((resolve, reject) => {
      job.result = { resolve, reject };
      this.worker.postMessage({ id });
    });
  }

  drop(id: number): void {
    if (!this.jobs.has(id)) return;
    this.untrack(id);
    if (!this.failure) this.worker.postMessage({ id, drop: true });
  }
}

let pool: HashWorker[] | undefined;
let nextId = 1;

/** As many workers as cores, at most 4: hashing is all they do. FERRY_HASH_WORKERS=0 hashes on the main thread. */
function poolSize(): number {
  const env = process.env['FERRY_HASH_WORKERS'];
  if (env !== undefined && /^\d+$/.test(env)) return Math.min(Number(env), 16);
  return Math.min(availableParallelism(), 4);
}

function workers(): HashWorker[] {
  if (!pool) pool = Array.from({ length: poolSize() }, () => new HashWorker());
  return pool;
}

/** Whether chunks like this one are worth handing to a worker (shared memory, so no copy), and a worker is there to take them. */
export function offloadable(chunk: Uint8Array): boolean {
  return chunk.buffer instanceof SharedArrayBuffer && poolSize() > 0;
}

/**
 * One blob's sha256, computed by a worker. update() never blocks; a caller
 * that wants bounded memory awaits room() before the next chunk.
 */
export class RemoteHash {
  private readonly id = nextId++;
  private readonly worker: HashWorker;
  private readonly job: Pending;
  private finished = false;

  constructor() {
    const all = workers().filter((w) => !w.broken);
    if (all.length === 0) throw new Error('no sha256 worker is running');
    // The least busy worker: a big blob on one does not hold up the small ones.
    this.worker = all.reduce((a, b) => (b.load < a.load || (b.load === a.load && b.jobs.size < a.jobs.size) ? b : a));
    this.job = this.worker.track(this.id);
  }

  update(chunk: Uint8Array): void {
    this.worker.send(this.id, chunk);
  }

  /** Resolves once fewer than HASH_WINDOW_BYTES of this blob wait for the worker. */
  async room(): Promise<void> {
    while (this.job.bytes >= HASH_WINDOW_BYTES && !this.worker.broken && !this.finished) {
      await new Promise<void>((resolve) => {
        this.job.wake = resolve;
      });
    }
  }

  /** The hex digest of everything given to update(). */
  digest(): Promise<string> {
    this.finished = true;
    return this.worker.end(this.id);
  }

  /** Forgets the blob (the stream failed or was abandoned). */
  drop(): void {
    if (!this.finished) this.worker.drop(this.id);
    this.finished = true;
  }
}
