import { isAbortError, isFerryError } from '../errors.js';
import { discard, readCapped } from '../net/http.js';
import { pullScope, type RegistryClient } from '../transports/registry/client.js';
import type { OpOptions } from '../transports/types.js';

/** Asked per page; distribution 2.8 ignores it and answers with every tag at once. */
const PAGE = 1000;
/** A tag is at most 128 characters: this holds ~100,000 of them in one answer. */
const BODY_MAX = 16 * 1024 * 1024;
/** Pages asked for one after another when the caller sets no bound. */
const PAGES_DEFAULT_MAX = 20;

/**
 * Every tag of a repository over the distribution API (`GET /v2/<name>/tags/list`,
 * following `Link: rel="next"` on the registry's own origin only, so a token
 * never leaves it). `undefined` when the registry does not give a usable list —
 * an error status, an answer that is no tag list, or more than `maxPages`
 * pages: the caller then asks tag by tag, exactly as it would without a list.
 */
export async function listTags(client: RegistryClient, repository: string, opts: OpOptions & { maxPages?: number } = {}): Promise<Set<string> | undefined> {
  const tags = new Set<string>();
  let url: string | URL | undefined = `/v2/${repository}/tags/list?n=${PAGE}`;
  try {
    for (let page = 0; url !== undefined; page++) {
      if (page >= (opts.maxPages ?? PAGES_DEFAULT_MAX)) return undefined;
      const res = await client.send({ method: 'GET', url, scopes: [pullScope(repository)], signal: opts.signal });
      if (res.status !== 200) {
        await discard(res.body);
        return undefined;
      }
      const body = await readCapped(res.body, BODY_MAX);
      if (!body) return undefined;
      let list: unknown;
      try {
        list = (JSON.parse(body.toString('utf8')) as { tags?: unknown }).tags;
      } catch {
        return undefined;
      }
      // distribution answers `"tags": null` for a repository without tags.
      if (list !== null && list !== undefined && !Array.isArray(list)) return undefined;
      for (const t of (list ?? []) as unknown[]) if (typeof t === 'string') tags.add(t);
      const next = nextPage(res.headers.link, res.url);
      // A next page on another origin cannot be followed with our token: the list would be partial.
      if (next === 'elsewhere') return undefined;
      url = next;
    }
    return tags;
  } catch (e) {
    // Interrupted stays interrupted; any other failure leaves the tag-by-tag lookups to report it.
    if (isAbortError(e) || isFerryError(e, 'E_ABORTED')) throw e;
    return undefined;
  }
}

/** `<url>; rel="next"` (RFC 8288): the next page, none, or one on another origin. */
function nextPage(header: string | string[] | undefined, base: URL): URL | undefined | 'elsewhere' {
  const value = Array.isArray(header) ? header.join(',') : header;
  const m = value?.match(/<([^>]+)>\s*;\s*rel="?next"?/);
  if (!m) return undefined;
  const next = new URL(m[1]!, base);
  return next.origin === base.origin ? next : 'elsewhere';
}
