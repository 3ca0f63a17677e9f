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
 * The hashing itself is node:crypto's sha256, as on the main thread: only
 * where it runs changes, not what decides a blob is good (VerifyStream).
 */

/** Runs in each worker: one sha256 state per blob, fed slot by slot in order, finished on `end`. */
const WORKER_CODE = `
// getBuiltinModule: the same code whether the worker runs as a script or, under --input-type=module, as a module.
const { parentPort } = process.getBuiltinModule('node:worker_threads');
const { createHash } = process.getBuiltinModule('node:crypto');
const states = new Map();
parentPort.on('message', (m) => {
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
  done(index: number): void;
  digest(hex: string): void;
  failed(e: Error): void;
}

class HashWorker {
  private readonly worker: Worker;
  private readonly listeners = new Map<number, Listener>();
  private failure: Error | undefined;

  constructor() {
    this.worker = new Worker(WORKER_CODE, { eval: true, name: 'ferry-sha256' });
    this.worker.on('message', (m: { id: number; done?: number; digest?: string }) => {
      const l = this.listeners.get(m.id);
      if (!l) return;
      if (m.done !== undefined) l.done(m.done);
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

  post(message: { id: number; slot?: SharedArrayBuffer; index?: number; length?: number; drop?: true }): void {
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
