// The one drain (src/stream/drain.ts): a destination reading what it already holds sees the
// stream's end, its error and the abort; a reader skipping a stream does not.
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { drain } from '../../../src/stream/drain.js';

function chunks(n: number, failAt?: number): Readable {
  let i = 0;
  return new Readable({
    read() {
      if (i === failAt) this.destroy(new Error('source broke'));
      else if (i++ >= n) this.push(null);
      else this.push(Buffer.alloc(1000));
    },
  });
}

describe('drain', () => {
  it('reads to the end', async () => {
    const s = chunks(50);
    await drain(s);
    expect(s.readableEnded).toBe(true);
  });

  it("rejects with the stream's error, and with the abort", async () => {
    await expect(drain(chunks(50, 10))).rejects.toThrow('source broke');
    const controller = new AbortController();
    const endless = new Readable({ read() { this.push(Buffer.alloc(10)); } });
    const draining = drain(endless, { signal: controller.signal });
    controller.abort();
    await expect(draining).rejects.toMatchObject({ name: 'AbortError' });
    expect(endless.destroyed).toBe(true);
  });

  it('ignoreErrors: resolves on the error, on an ended stream, and on one still piped elsewhere', async () => {
    await drain(chunks(50, 10), { ignoreErrors: true });
    const ended = chunks(0);
    await drain(ended);
    await drain(ended, { ignoreErrors: true });
    const piped = chunks(200);
    piped.pipe(new PassThrough({ highWaterMark: 1 }));
    await drain(piped, { ignoreErrors: true });
    expect(piped.readableEnded).toBe(true);
  });
});
