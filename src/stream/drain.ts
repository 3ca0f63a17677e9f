import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Reads a stream to its end, keeping nothing. Two callers need it:
 * - a destination that already holds a blob still reads its input to the end
 *   (the putBlob contract: the engine's verifier must see the whole blob); the
 *   stream's error, and the abort, are the caller's;
 * - a reader moving past a stream it does not want (a sequential source's next
 *   entry, a blob a repair replaces): `ignoreErrors`, since what is wrong with
 *   that stream is its source's to report, not the skipper's.
 */
export async function drain(stream: Readable, opts: { signal?: AbortSignal | undefined; ignoreErrors?: boolean } = {}): Promise<void> {
  if (opts.ignoreErrors === true) {
    if (stream.readableEnded || stream.destroyed) return;
    // A stream still piped somewhere would be paused again by that destination's back-pressure.
    stream.unpipe();
    await new Promise<void>((resolve) => {
      stream.on('end', resolve).on('close', resolve).on('error', () => resolve());
      stream.resume();
    });
    return;
  }
  await pipeline(stream, new Writable({ write: (_chunk, _encoding, done) => done() }), opts.signal ? { signal: opts.signal } : {});
}

/**
 * Resolves when `out` takes more after a write() returned false, or is gone
 * (closed, destroyed: a writer that then checks its state learns why).
 */
export function writable(out: NodeJS.WritableStream & { destroyed?: boolean; destroying?: boolean }): Promise<void> {
  return new Promise((resolve) => {
    if (out.destroyed === true || out.destroying === true) return resolve();
    const go = (): void => {
      out.off('drain', go);
      out.off('close', go);
      resolve();
    };
    out.on('drain', go);
    out.on('close', go);
  });
}
