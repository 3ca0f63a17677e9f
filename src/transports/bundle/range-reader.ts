import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';

/**
 * The one way ferry reads byte ranges of a bundle file at random: `ferry serve`
 * answering a blob or a Range request, and verify, import and push reading a
 * blob's entry in place (file-source.ts, volume-set.ts). Every read is a
 * positioned read on a handle the caller owns and keeps open: many ranges of one
 * file stream at once through one descriptor, and no stream ever closes it.
 * (fs.ReadStream closes even a shared descriptor when destroyed — a client
 * that goes away mid-blob — and a later open could then be given the same
 * number for another file: spec/robustness.md finding F5.)
 */

/** Blobs are hundreds of MiB: large reads, one syscall (and one promise) per MiB. */
export const RANGE_CHUNK = 1 << 20;

export interface RangeOptions {
  /** Bytes per read (default RANGE_CHUNK). */
  chunk?: number;
  /** The error when the file ends before `to` (it was cut or replaced while open). */
  short?: (at: number) => Error;
}

/** Bytes [from, to) of the file behind `handle`. */
export class RangeStream extends Readable {
  private pos: number;
  private readonly chunk: number;

  constructor(private readonly handle: FileHandle, from: number, private readonly to: number, private readonly opts: RangeOptions = {}) {
    const chunk = opts.chunk ?? RANGE_CHUNK;
    super({ highWaterMark: chunk });
    this.chunk = chunk;
    this.pos = from;
  }

  override _read(): void {
    const want = Math.min(this.chunk, this.to - this.pos);
    if (want <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(want);
    this.handle.read(buf, 0, want, this.pos).then(({ bytesRead }) => {
      if (this.destroyed) return;
      if (bytesRead === 0) {
        this.destroy(this.opts.short?.(this.pos) ?? new FerryError('E_BUNDLE_TRUNCATED', `the file ends at byte ${this.pos}, inside an entry that should end at ${this.to}`));
        return;
      }
      this.pos += bytesRead;
      this.push(bytesRead === want ? buf : buf.subarray(0, bytesRead));
    }, (e: unknown) => this.destroy(e as Error));
  }
}

/**
 * Streams one after another as one stream (the parts of a layer cut across
 * volumes), each opened only when the one before has ended: one part's bytes
 * in memory at a time, never the whole layer. An error of any part is the
 * stream's error.
 */
export function joinStreams(parts: readonly (() => Readable | Promise<Readable>)[]): Readable {
  if (parts.length === 1) {
    const only = parts[0]!();
    if (only instanceof Readable) return only;
  }
  let current: Readable | undefined;
  const out = Readable.from((async function* () {
    for (const open of parts) {
      current = await open();
      for await (const chunk of current) yield chunk as Buffer;
    }
  })(), { objectMode: false });
  // Whoever gives up on the whole stream gives up on the part being read.
  out.once('close', () => current?.destroy());
  return out;
}
