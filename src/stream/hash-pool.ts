import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * sha256 off the main thread, for the one verifier (verify.ts). One core hashes
 * at ~1.2–1.6 GB/s; a verify or import of a bundle file reads faster than that,
 * so hashing on the main thread makes it the bottleneck and leaves the other
 * cores idle. Here each blob is hashed by one worker thread, its bytes in
 * order, while the same bytes flow on to the destination; several blobs hash
 * on several workers at once, and the main thread keeps reading and writing.
 *
 * The bytes travel through shared memory: each blob being hashed holds two
 * 1 MiB slots (SharedArrayBuffers, reused from blob to blob), fills one while
 * the worker hashes the other, and waits when both are with the worker. So
 * memory is bounded — at most MAX_BLOBS blobs at once, two slots each — and
 * nothing depends on when the garbage collector frees a buffer (V8 does not
 * count shared buffers as memory pressure: allocating one per chunk grew a
 * busy `ferry serve` past 400 MiB). A blob that finds no free slots is hashed
 * on the main thread, as every blob was before.
 *
 * A blob that lies whole in a file, when nothing but its verdict is wanted
 * (`ferry verify`), is read by the worker itself (hashFileRange): the main
 * thread handles none of its bytes. So is one copied from a bundle file into
 * a file of the target (import): the worker writes each chunk it read there
 * too, and the destination publishes the file on the verdict.
 *
 * The hashing itself is node:crypto's sha256, as on the main thread: only
 * where it runs changes, not what decides a blob is good (verify.ts).
 */

/** Runs in each worker: one sha256 state per blob, fed slot by slot in order, finished on `end`. */
const WORKER_CODE = `
// getBuiltinModule: the same code whether the worker runs as a script or, under --input-type=module, as a module.
const { parentPort } = process.getBuiltinModule('node:worker_threads');
const { createHash } = process.getBuiltinModule('node:crypto');
const { readSync, writeSync } = process.getBuiltinModule('node:fs');
const states = new Map();
const cancelled = new Set();
const yieldNow = () => new Promise((resolve) => setImmediate(resolve));
// A range of a file, in 1 MiB chunks; with copyTo, each chunk is also written at the same place of that file,
// counted from the range's start (a verified copy). The reads and writes are synchronous, on this thread: the
// process's shared I/O threads are often all busy with fsyncs of an import, and a worker waiting behind them
// idles. Between chunks the worker yields: the other ranges it hashes take turns, and a cancellation is heard.
async function hashRange(m) {
  const CHUNK = 1048576;
  const h = createHash('sha256');
  const end = m.offset + m.size;
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, m.size));
  let since = 0;
  for (let pos = m.offset; pos < end;) {
    await yieldNow();
    // Nothing more is written into copyTo once the caller hears of this: it closes and removes the file then.
    if (cancelled.delete(m.id)) { parentPort.postMessage({ id: m.id, cancelled: true }); return; }
    const n = readSync(m.fd, buf, 0, Math.min(CHUNK, end - pos), pos);
    if (n === 0) { parentPort.postMessage({ id: m.id, short: pos, progress: since }); return; }
    const data = n === buf.length ? buf : buf.subarray(0, n);
    if (m.copyTo !== undefined) {
      try {
        for (let done = 0; done < n;) done += writeSync(m.copyTo, data, done, n - done, pos - m.offset + done);
      } catch (e) {
        throw Object.assign(e, { side: 'write' });
      }
    }
    h.update(data);
    pos += n;
    since += n;
    if (since >= 8 * CHUNK) { parentPort.postMessage({ id: m.id, progress: since }); since = 0; }
  }
  parentPort.postMessage({ id: m.id, digest: h.digest('hex'), progress: since });
}
parentPort.on('message', (m) => {
  if (m.cancel) { cancelled.add(m.id); return; }
  if (m.file) {
    hashRange(m).catch((e) => parentPort.postMessage({ id: m.id, error: { message: String(e && e.message), code: e && e.code, syscall: e && e.syscall, side: e && e.side } }));
    return;
  }
  if (m.drop) { states.delete(m.id); return; }
  let h = states.get(m.id);
  if (!h) { h = createHash('sha256'); states.set(m.id, h); }
  if (m.slot) {
    h.update(new Uint8Array(m.slot, 0, m.length));
    parentPort.postMessage({ id: m.id, done: m.index });
    return;
  }
  states.delete(m.id);
  parentPort.postMessage({ id: m.id, digest: h.digest('hex') });
});
`;

const SLOT_BYTES = 1024 * 1024;
/** Blobs hashed off the main thread at once (two slots each: 32 MiB at most); more are hashed in place. */
const MAX_BLOBS = 16;

/** What a worker tells the blob it hashes for. */
interface Listener {
  done?(index: number): void;
  progress?(bytes: number): void;
  /** A file range ended before its size: the position where the file ends. */
  short?(at: number): void;
  /** The worker stopped a file range on request (and writes nothing more for it). */
  cancelled?(): void;
  digest(hex: string): void;
  failed(e: Error): void;
}

/** What a worker says about a blob. */
interface WorkerMessage {
  id: number;
  done?: number;
  progress?: number;
  short?: number;
  digest?: string;
  cancelled?: true;
  /** side `write`: writing the copy failed (the destination's file), not reading the range. */
  error?: { message: string; code?: string; syscall?: string; side?: 'write' };
}

class HashWorker {
  private readonly worker: Worker;
  private readonly listeners = new Map<number, Listener>();
  private failure: Error | undefined;

  constructor() {
    this.worker = new Worker(WORKER_CODE, { eval: true, name: 'ferry-sha256' });
    this.worker.on('message', (m: WorkerMessage) => {
      const l = this.listeners.get(m.id);
      if (!l) return;
      if (m.done !== undefined) l.done?.(m.done);
      if (m.progress) l.progress?.(m.progress);
      if (m.short !== undefined) {
        this.release(m.id);
        l.short?.(m.short);
      }
      if (m.cancelled) {
        this.release(m.id);
        l.cancelled?.();
      }
      if (m.error) {
        this.release(m.id);
        l.failed(Object.assign(new Error(m.error.message), { code: m.error.code, syscall: m.error.syscall, ...(m.error.side ? { side: m.error.side } : {}) }));
      }
      if (m.digest !== undefined) {
        this.release(m.id);
        l.digest(m.digest);
      }
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`the sha256 worker exited (${code})`)));
    // An idle worker must not keep the process alive; one with work does (see attach()). After the
    // listeners: adding a 'message' listener refs the worker's port again.
    this.worker.unref();
  }

  get broken(): boolean {
    return this.failure !== undefined;
  }

  get busy(): number {
    return this.listeners.size;
  }

  private fail(e: Error): void {
    this.failure ??= e;
    const all = [...this.listeners.values()];
    this.listeners.clear();
    this.worker.unref();
    for (const l of all) l.failed(this.failure);
  }

  attach(id: number, l: Listener): void {
    if (this.failure) throw this.failure;
    if (this.listeners.size === 0) this.worker.ref();
    this.listeners.set(id, l);
  }

  release(id: number): void {
    if (!this.listeners.delete(id)) return;
    if (this.listeners.size === 0) this.worker.unref();
  }

  post(message: { id: number; slot?: SharedArrayBuffer | undefined; index?: number; length?: number; drop?: true; cancel?: true; file?: true; fd?: number; offset?: number; size?: number; copyTo?: number }): void {
    if (this.failure) throw this.failure;
    this.worker.postMessage(message);
  }
}

let pool: HashWorker[] | undefined;
let nextId = 1;
/** Slot pairs not in use, kept for the next blob. */
const freePairs: [SharedArrayBuffer, SharedArrayBuffer][] = [];
let pairsInUse = 0;

/** As many workers as cores, at most 4: hashing is all they do. FERRY_HASH_WORKERS=0 hashes on the main thread. */
function poolSize(): number {
  const env = process.env['FERRY_HASH_WORKERS'];
  if (env !== undefined && /^\d+$/.test(env)) return Math.min(Number(env), 16);
  return Math.min(availableParallelism(), 4);
}

function workers(): HashWorker[] {
  pool ??= Array.from({ length: poolSize() }, () => new HashWorker());
  return pool.filter((w) => !w.broken);
}

/**
 * Starts the workers now instead of at the first large blob. Each takes 30–100 ms
 * to start (an isolate and Node's bootstrap, longer on a busy machine); started
 * here, that overlaps opening the bundle and planning, and the first blob is
 * hashed at once. For callers that know much is to be hashed: an idle worker is
 * ~10 MiB of the process's memory, which a bundle of small blobs does not need.
 */
export function warmHashPool(): void {
  if (poolSize() > 0) workers();
}

/** Blobs hashed by a worker so far in this process (for tests and diagnostics). */
export let blobsHashedOffThread = 0;

/**
 * One blob's sha256, computed by a worker. `update()` copies the bytes into
 * the blob's slots and returns a promise only when it has to wait for the
 * worker (both slots with it): the caller awaits it before the next chunk.
 */
export class RemoteHash {
  private readonly id = nextId++;
  private readonly slots: [SharedArrayBuffer, SharedArrayBuffer];
  private readonly views: [Uint8Array, Uint8Array];
  /** Slots handed to the worker and not yet hashed. */
  private readonly out = [false, false];
  private cur = 0;
  private fill = 0;
  private finished = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private result: { resolve: (hex: string) => void; reject: (e: Error) => void } | undefined;

  private constructor(private readonly worker: HashWorker) {
    const pair = freePairs.pop() ?? [new SharedArrayBuffer(SLOT_BYTES), new SharedArrayBuffer(SLOT_BYTES)];
    pairsInUse++;
    this.slots = pair;
    this.views = [new Uint8Array(pair[0]), new Uint8Array(pair[1])];
    worker.attach(this.id, {
      done: (index) => {
        this.out[index] = false;
        const wake = this.wake;
        this.wake = undefined;
        wake?.();
      },
      digest: (hex) => {
        this.giveBack();
        this.result?.resolve(hex);
      },
      failed: (e) => {
        this.failure = e;
        // A digest already asked for will never come: its slots are not reused (drop() does the same otherwise).
        if (this.result) pairsInUse--;
        this.wake?.();
        this.result?.reject(e);
      },
    });
  }

  /** A hash on the least busy worker, or undefined: no worker (FERRY_HASH_WORKERS=0), or MAX_BLOBS already hashing. */
  static start(): RemoteHash | undefined {
    if (pairsInUse >= MAX_BLOBS || poolSize() === 0) return undefined;
    const all = workers();
    if (all.length === 0) return undefined;
    return new RemoteHash(all.reduce((a, b) => (b.busy < a.busy ? b : a)));
  }

  update(chunk: Uint8Array): Promise<void> | undefined {
    let at = 0;
    while (at < chunk.length) {
      if (this.failure) throw this.failure;
      // Both slots with the worker: the rest waits for it (back-pressure on the stream).
      if (this.out[this.cur]) return this.afterRoom().then(() => this.update(chunk.subarray(at)));
      const n = Math.min(SLOT_BYTES - this.fill, chunk.length - at);
      this.views[this.cur]!.set(chunk.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === SLOT_BYTES) this.send();
    }
    return undefined;
  }

  /** The hex digest of everything given to update(). */
  async digest(): Promise<string> {
    if (this.out[this.cur]) await this.afterRoom();
    if (this.failure) throw this.failure;
    if (this.fill > 0) this.send();
    this.finished = true;
    blobsHashedOffThread++;
    return new Promise((resolve, reject) => {
      this.result = { resolve, reject };
      this.worker.post({ id: this.id });
    });
  }

  /** Forgets the blob (the stream failed or was abandoned). Its slots may still be with the worker: they are not reused. */
  drop(): void {
    if (this.finished) return;
    this.finished = true;
    this.worker.release(this.id);
    pairsInUse--;
    if (!this.worker.broken) this.worker.post({ id: this.id, drop: true });
  }

  private send(): void {
    this.out[this.cur] = true;
    this.worker.post({ id: this.id, slot: this.slots[this.cur], index: this.cur, length: this.fill });
    this.cur ^= 1;
    this.fill = 0;
  }

  private afterRoom(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      if (!this.out[this.cur] || this.failure) {
        this.wake = undefined;
        resolve();
      }
    });
  }

  /** Every slot message came before the digest, so the worker is done with both: the next blob may use them. */
  private giveBack(): void {
    pairsInUse--;
    freePairs.push(this.slots);
  }
}

/** Ranges smaller than this are read and hashed on the calling thread (as verify.ts does with streamed blobs). */
const FILE_OFFLOAD_MIN_BYTES = 256 * 1024;

/** The verdict material for a range of a file: its digest, or where the file ended before the range did. */
export type RangeHash = { hex: string } | { short: number };

/** Where hashFileRange also writes the range's bytes: an open file, from its start. */
export interface RangeCopy {
  /** Open for writing; kept open by the caller until hashFileRange settles. */
  fd: number;
}

/**
 * sha256 of bytes [offset, offset + size) of the open file `fd`, read and
 * hashed by a worker (the main thread sees none of the bytes); `onBytes`
 * hears of the bytes hashed as they go. With `copy`, the worker also writes
 * each chunk it reads into `copy.fd` at the same place (from 0): one read of
 * each byte serves both the hash and the copy, and no stream, buffer or
 * message per chunk passes through the main thread. An error writing the copy
 * carries `side: 'write'`. With no worker (FERRY_HASH_WORKERS=0), or for a
 * small range, all of it is done here. The caller keeps `fd` (and `copy.fd`)
 * open until this settles: a copy's worker has finished writing by then, even
 * when aborted.
 */
export async function hashFileRange(fd: number, offset: number, size: number, onBytes?: (n: number) => void, signal?: AbortSignal, copy?: RangeCopy): Promise<RangeHash> {
  signal?.throwIfAborted();
  // A small range costs a worker about as much to be told of as to hash: hashed here, and a bundle
  // of small blobs starts no worker (each is an isolate of its own, ~10 MiB of the process's memory).
  if (size < FILE_OFFLOAD_MIN_BYTES) return hashRangeHere(fd, offset, size, onBytes, signal, copy);
  const all = poolSize() > 0 ? workers() : [];
  if (all.length === 0) return hashRangeHere(fd, offset, size, onBytes, signal, copy);
  const worker = all.reduce((a, b) => (b.busy < a.busy ? b : a));
  const id = nextId++;
  return new Promise<RangeHash>((resolve, reject) => {
    let aborted = false;
    const cancel = (): void => {
      aborted = true;
      worker.post({ id, cancel: true });
      // A copy settles only when the worker says it stopped: until then it may still write into copy.fd.
      if (copy) return;
      worker.release(id);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', cancel, { once: true });
    const settle = <T>(f: (v: T) => void) => (v: T): void => {
      signal?.removeEventListener('abort', cancel);
      if (aborted) reject(signal!.reason as Error);
      else f(v);
    };
    worker.attach(id, {
      progress: (n) => onBytes?.(n),
      short: settle((at: number) => resolve({ short: at })),
      cancelled: () => settle<undefined>(() => undefined)(undefined),
      digest: settle((hex: string) => {
        blobsHashedOffThread++;
        resolve({ hex });
      }),
      failed: settle(reject),
    });
    worker.post({ id, file: true, fd, offset, size, ...(copy ? { copyTo: copy.fd } : {}) });
  });
}

async function hashRangeHere(fd: number, offset: number, size: number, onBytes?: (n: number) => void, signal?: AbortSignal, copy?: RangeCopy): Promise<RangeHash> {
  const { read, write } = await import('node:fs');
  const { createHash } = await import('node:crypto');
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(SLOT_BYTES, Math.max(1, size)));
  for (let pos = offset; pos < offset + size;) {
    signal?.throwIfAborted();
    const n = await new Promise<number>((resolve, reject) => read(fd, buf, 0, Math.min(buf.length, offset + size - pos), pos, (e, got) => (e ? reject(e) : resolve(got))));
    if (n === 0) return { short: pos };
    for (let done = 0; copy && done < n;) {
      const at = done;
      done += await new Promise<number>((resolve, reject) => write(copy.fd, buf, at, n - at, pos - offset + at, (e, put) => (e ? reject(Object.assign(e, { side: 'write' })) : resolve(put))));
    }
    h.update(buf.subarray(0, n));
    onBytes?.(n);
    pos += n;
  }
  return { hex: h.digest('hex') };
}
