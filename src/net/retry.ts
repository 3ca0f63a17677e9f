import { setTimeout as sleep } from 'node:timers/promises';
import { isFerryError } from '../errors.js';
import { discard, type HttpResponse } from './http.js';

/**
 * Retries for transient registry failures: 429 (honouring Retry-After), 5xx
 * gateway/overload answers, and connections that broke or timed out. Only for
 * requests that can be sent again: the caller passes a function that builds
 * the whole request (re-opening its body) on every attempt, and must not use
 * this for a body stream it cannot re-open.
 */

export interface RetryPolicy {
  /** Total attempts, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 250, maxDelayMs: 10_000 };

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

export async function withRetry(
  attempt: () => Promise<HttpResponse>,
  policy: RetryPolicy = DEFAULT_RETRY,
  signal?: AbortSignal,
): Promise<HttpResponse> {
  for (let n = 0; ; n++) {
    const last = n + 1 >= policy.attempts;
    let wait: number;
    try {
      const res = await attempt();
      if (last || !isRetryableStatus(res.status)) return res;
      const after = parseRetryAfter(headerValue(res.headers['retry-after']));
      wait = after === undefined ? backoffDelay(n, policy) : Math.min(after, RETRY_AFTER_MAX_MS);
      await discard(res.body);
    } catch (e) {
      if (last || !isRetryableError(e)) throw e;
      wait = backoffDelay(n, policy);
    }
    await sleep(wait, undefined, signal ? { signal } : undefined);
  }
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
