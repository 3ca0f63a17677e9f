import { describe, expect, it } from 'vitest';
import { Gate } from '../../../src/referrers/gate.js';

/** A request that finishes when the test says so. */
function held(): { promise: Promise<void>; release(): void } {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  return { promise, release };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Gate: the --jobs budget of referrer lookups', () => {
  it('runs at most `limit` at once and starts the next as soon as one ends', async () => {
    const gate = new Gate(3);
    let running = 0;
    let max = 0;
    const holds = Array.from({ length: 10 }, held);
    const done = holds.map((h) => gate.run(async () => {
      running++;
      max = Math.max(max, running);
      await h.promise;
      running--;
    }));
    await tick();
    expect(running).toBe(3);
    holds[0]!.release();
    await tick();
    expect(running).toBe(3);
    for (const h of holds) h.release();
    await Promise.all(done);
    expect(max).toBe(3);
  });

  it('after close, queued and later work fails with the first error and never starts', async () => {
    const gate = new Gate(1);
    const first = held();
    const started: string[] = [];
    const a = gate.run(async () => {
      started.push('a');
      await first.promise;
      return 'a done';
    });
    const b = gate.run(async () => {
      started.push('b');
    });
    await tick();
    const reason = new Error('registry said no');
    gate.close(reason);
    gate.close(new Error('a later failure'));
    first.release();
    expect(await a).toBe('a done');
    await expect(b).rejects.toBe(reason);
    await expect(gate.run(async () => started.push('c'))).rejects.toBe(reason);
    expect(started).toEqual(['a']);
  });

  it('stops starting work once the run is interrupted', async () => {
    const ac = new AbortController();
    const gate = new Gate(2, ac.signal);
    ac.abort();
    let ran = false;
    await expect(gate.run(async () => (ran = true))).rejects.toThrow();
    expect(ran).toBe(false);
  });
});
