import { setTimeout as sleep } from 'node:timers/promises';
import { isFerryError } from '../errors.js';
import { discard, type HttpResponse } from './http.js';

/**
 * The one retry loop of ferry, and its policies: the HTTP client's (429 with
 * Retry-After, 5xx gateway and overload answers, connections that broke or
 * timed out) and the copy engine's for a whole blob (fetched again when it
 * arrived short, damaged or not at all). Attempts are bounded in number and
 * in time, pauses back off exponentially with jitter, and an abort ends the
 * pause at once. Only for work that can be done again: the caller passes a
 * function that redoes all of it (re-opening a request body) on every attempt.
 */

export interface RetryPolicy {
  /** Total attempts, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 250, maxDelayMs: 10_000 };

/** A blob fetched again is fetched whole, possibly gigabytes: fewer attempts than a request. */
export const BLOB_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 400, maxDelayMs: 10_000 };

/** When to try again: the pause before the next attempt in ms, or undefined when the outcome stands. `retry` counts from 0. */
export interface RetryRule<T> {
  afterError(error: unknown, retry: number): number | undefined;
  /** For answers that are failures too (an HTTP 503); it must release what it throws away (a response body). */
  afterResult?(value: T, retry: number): Promise<number | undefined>;
}

/** Runs `attempt` until it succeeds, `rule` says the outcome stands, or `policy.attempts` are spent; the last outcome is the answer. */
export async function retry<T>(attempt: () => Promise<T>, policy: RetryPolicy, rule: RetryRule<T>, signal?: AbortSignal): Promise<T> {
  for (let n = 0; ; n++) {
    const last = n + 1 >= policy.attempts;
    let wait: number | undefined;
    try {
      const value = await attempt();
      wait = last || !rule.afterResult ? undefined : await rule.afterResult(value, n);
      if (wait === undefined) return value;
    } catch (e) {
      wait = last ? undefined : rule.afterError(e, n);
      if (wait === undefined) throw e;
    }
    await sleep(wait, undefined, signal ? { signal } : undefined);
  }
}

/** A server asking for a longer pause than this is still retried after this long: attempts stay bounded in time too. */
const RETRY_AFTER_MAX_MS = 60_000;

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRY_ERRNO = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN']);

function isRetryableStatus(status: number): boolean {
  return RETRY_STATUS.has(status);
}

function isRetryableError(e: unknown): boolean {
  return isFerryError(e, 'E_NETWORK') && RETRY_ERRNO.has(String(e.details.errno));
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // Date.parse reads bare numbers like "-1" as years; an HTTP date always names a month.
  const at = /[a-z]{3}/i.test(v) ? Date.parse(v) : NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Exponential backoff with equal jitter: half the step fixed, half random, so concurrent clients spread out. */
export function backoffDelay(retry: number, policy: RetryPolicy): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return step / 2 + Math.random() * (step / 2);
}

/** An HTTP request under the request policy: a retried answer's body is read away first, so the connection can be reused. */
export function withRetry(attempt: () => Promise<HttpResponse>, policy: RetryPolicy = DEFAULT_RETRY, signal?: AbortSignal): Promise<HttpResponse> {
  return retry(attempt, policy, {
    async afterResult(res, n) {
      if (!isRetryableStatus(res.status)) return undefined;
      const after = parseRetryAfter(headerValue(res.headers['retry-after']));
      await discard(res.body);
      return after === undefined ? backoffDelay(n, policy) : Math.min(after, RETRY_AFTER_MAX_MS);
    },
    afterError: (e, n) => (isRetryableError(e) ? backoffDelay(n, policy) : undefined),
  }, signal);
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
