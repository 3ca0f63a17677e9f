import { describe, expect, it } from 'vitest';
import { backoffDelay, DEFAULT_RETRY, parseRetryAfter, retry } from '../../../src/net/retry.js';

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    const now = Date.parse('2024-01-01T00:00:00Z');
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Sun, 31 Dec 2023 23:59:00 GMT', now)).toBe(0);
  });

  it('ignores absent and unreadable values', () => {
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter('-1')).toBeUndefined();
  });
});

describe('backoffDelay', () => {
  it('grows exponentially, stays within [step/2, step] and is capped', () => {
    for (let retry = 0; retry < 12; retry++) {
      const step = Math.min(DEFAULT_RETRY.maxDelayMs, DEFAULT_RETRY.baseDelayMs * 2 ** retry);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(retry, DEFAULT_RETRY);
        expect(d).toBeGreaterThanOrEqual(step / 2);
        expect(d).toBeLessThanOrEqual(step);
      }
    }
  });
});

describe('retry (the one loop: the HTTP client and the engine\'s blob fetches)', () => {
  const quick = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 };
  const transient = (e: unknown) => (e instanceof Error && e.message === 'transient' ? 1 : undefined);

  it('tries again while the rule says so, at most policy.attempts times, and answers with the last outcome', async () => {
    let calls = 0;
    await expect(retry(async () => { calls++; throw new Error('transient'); }, quick, { afterError: transient })).rejects.toThrow('transient');
    expect(calls).toBe(3);
    calls = 0;
    expect(await retry(async () => { if (++calls < 3) throw new Error('transient'); return 'ok'; }, quick, { afterError: transient })).toBe('ok');
    calls = 0;
    await expect(retry(async () => { calls++; throw new Error('final'); }, quick, { afterError: transient })).rejects.toThrow('final');
    expect(calls).toBe(1);
  });

  it('an answer can be a failure too; the last one is returned as it is', async () => {
    const answers: number[] = [];
    const released: number[] = [];
    const got = await retry(async () => { answers.push(503); return answers.length; }, quick, {
      afterError: () => undefined,
      afterResult: async (n) => { released.push(n); return 1; },
    });
    expect(got).toBe(3);
    expect(released, 'every answer but the last is released before the next attempt').toEqual([1, 2]);
  });

  it('an abort ends the pause with the abort', async () => {
    const controller = new AbortController();
    let calls = 0;
    const slow = { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 };
    const running = retry(async () => { calls++; controller.abort(); throw new Error('transient'); }, slow, { afterError: transient }, controller.signal);
    await expect(running).rejects.toMatchObject({ name: 'AbortError' });
    expect(calls).toBe(1);
  });
});
