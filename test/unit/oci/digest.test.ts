// Whole-stream hashing (src/oci/digest.ts digestStream): digest and size, the cap that stops a
// source that never ends, and an abort.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { digestStream } from '../../../src/oci/digest.js';

/** `chunks` chunks of 1000 bytes, then (with `endless`) more for ever. */
function source(chunks: number, endless = false): { stream: Readable; pulled: () => number } {
  let n = 0;
  const stream = new Readable({
    read() {
      if (n >= chunks && !endless) this.push(null);
      else this.push(Buffer.alloc(1000, n++ % 256));
    },
  });
  return { stream, pulled: () => n };
}

function expected(chunks: number): string {
  const h = createHash('sha256');
  for (let i = 0; i < chunks; i++) h.update(Buffer.alloc(1000, i % 256));
  return `sha256:${h.digest('hex')}`;
}

describe('digestStream', () => {
  it('hashes the whole stream, consuming it', async () => {
    const { stream } = source(300);
    expect(await digestStream(stream)).toEqual({ digest: expected(300), size: 300_000 });
    expect(stream.readableEnded).toBe(true);
  });

  it('with a cap: a stream at the cap is hashed; one over it is destroyed at the first chunk over, undefined', async () => {
    expect(await digestStream(source(5).stream, { maxBytes: 5000 })).toEqual({ digest: expected(5), size: 5000 });
    const endless = source(0, true);
    expect(await digestStream(endless.stream, { maxBytes: 5000 })).toBeUndefined();
    expect(endless.stream.destroyed).toBe(true);
    // Reading stops at once: only what the stream buffered ahead (its highWaterMark) was pulled past the cap.
    expect(endless.pulled()).toBeLessThan(6 + 16 * 1024 / 1000 + 2);
  });

  it('an abort ends it with the abort, the stream destroyed', async () => {
    const controller = new AbortController();
    const endless = source(0, true);
    const hashing = digestStream(endless.stream, { signal: controller.signal });
    controller.abort();
    await expect(hashing).rejects.toMatchObject({ name: 'AbortError' });
    expect(endless.stream.destroyed).toBe(true);
  });
});
