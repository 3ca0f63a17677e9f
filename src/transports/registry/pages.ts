import { FerryError } from '../../errors.js';
import type { HttpResponse } from '../../net/http.js';
import { readCapped } from '../../net/http.js';
import { remoteText, remoteUrl } from '../../net/remote-text.js';
import type { OpOptions } from '../types.js';
import type { RegistryClient } from './client.js';

/**
 * Paginated registry listings: the catalog, a repository's tags (distribution
 * pages both with `Link: <…>; rel="next"`), and the OCI referrers API. A
 * registry decides where each next page is, so a hostile or broken one can
 * page forever: a Link back to a page already read ends the walk at once, and
 * so does a walk longer than its cap (a registry varying the URL to dodge the
 * first check). Both are E_REGISTRY naming the registry.
 */

/** Pages of `/v2/_catalog`: at 100 names a page (what many registries give whatever `n` says), 500,000 names. */
export const CATALOG_PAGES_MAX = 5_000;
/** Pages of one repository's `/tags/list`: 100,000 tags at 100 a page. */
export const TAG_LIST_PAGES_MAX = 1_000;
/** Pages of one manifest's referrers. */
export const REFERRER_PAGES_MAX = 100;
/** Names kept from one listing (the catalog, or one repository's tags): bounds memory whatever the pages hold. */
export const LIST_ENTRIES_MAX = 100_000;
/** Tagged images one registry inventory reads (every repository's tags together): 20,000 images a dozen times over. */
export const INVENTORY_TAGS_MAX = 250_000;
/** One page of a listing: 1,000 names of 255 characters fit in a quarter of this. */
export const LIST_PAGE_MAX_BYTES = 4 * 1024 * 1024;

/** The target of `rel="next"` in a Link header (RFC 8288), as the distribution and OCI specs paginate. */
export function nextLinkTarget(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (!value) return undefined;
  for (const part of value.split(',')) {
    const m = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (m && /\brel="?next"?/.test(m[2]!)) return m[1]!;
  }
  return undefined;
}

/** One walk through a paginated listing: every page URL passes `enter` before it is fetched. */
export class PageTrail {
  private readonly seen = new Set<string>();
  private pages = 0;

  constructor(private readonly client: RegistryClient, private readonly what: string, private readonly maxPages: number) {}

  /** Records the page about to be read; refuses one read before (a loop) and one past the cap. */
  enter(url: string | URL): void {
    const key = pageKey(url);
    if (this.seen.has(key)) throw this.error(`the next-page link leads back to a page already read (${remoteText(new URL(url, 'http://registry').pathname, 200)})`);
    if (++this.pages > this.maxPages) throw this.error(`more than ${this.maxPages} pages`);
    this.seen.add(key);
  }

  /**
   * The next page named by the answer's Link header, or undefined on the last
   * page. It must stay on the registry's origin: the request carries the
   * registry's token, which no other host may see.
   */
  next(res: HttpResponse): URL | undefined {
    const raw = nextLinkTarget(res.headers.link);
    if (raw === undefined) return undefined;
    const url = this.client.resolve(raw, res.url, `${this.what}: next page`);
    if (url.origin !== res.url.origin) throw this.error(`the next page is on another host (${remoteUrl(url)}); ferry pages only on the registry's own origin`);
    return url;
  }

  private error(why: string): FerryError {
    return new FerryError('E_REGISTRY', `registry ${this.client.registry}: ${this.what}: ${why}`, {
      hint: 'the registry (or a proxy before it) paginates without end; check what answers at this address, or ask its administrator',
      details: { registry: this.client.registry, pages: this.pages },
    });
  }
}

/** Query parameters in any order name the same page. */
function pageKey(url: string | URL): string {
  const u = new URL(url, 'http://registry');
  const params = [...u.searchParams].sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : x > y ? 1 : 0) : a < b ? -1 : 1));
  return `${u.pathname}?${new URLSearchParams(params).toString()}`;
}

/**
 * All names of a paginated listing (`repositories` of the catalog, `tags` of
 * a tags/list), page after page. Besides the PageTrail guards, a page that
 * adds no name not seen before yet points to a next one is a loop too (a
 * registry cycling its `last` parameter), and more than LIST_ENTRIES_MAX
 * names is refused.
 */
export async function listAll(
  client: RegistryClient,
  first: string,
  scope: string,
  field: 'repositories' | 'tags',
  what: string,
  maxPages: number,
  opts: OpOptions = {},
): Promise<string[]> {
  const trail = new PageTrail(client, what, maxPages);
  const seen = new Set<string>();
  const fail = (why: string, hint: string): FerryError => new FerryError('E_REGISTRY', `registry ${client.registry}: ${what}: ${why}`, { hint, details: { registry: client.registry } });
  let url: string | URL | undefined = first;
  while (url !== undefined) {
    trail.enter(url);
    const res = await client.expect({ method: 'GET', url, scopes: [scope], signal: opts.signal }, [200], `registry ${client.registry}: ${what}`);
    const body = await readCapped(res.body, LIST_PAGE_MAX_BYTES);
    if (!body) throw fail(`a page is larger than ${LIST_PAGE_MAX_BYTES} bytes`, 'the registry answers with something other than a list');
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      throw fail('the answer is not JSON', 'check that a registry (API v2) answers at this address');
    }
    const list = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)[field] : undefined;
    if (list !== null && list !== undefined && !Array.isArray(list)) throw fail(`"${field}" is not a list`, 'the registry does not follow the distribution API');
    const before = seen.size;
    for (const v of (list ?? []) as unknown[]) if (typeof v === 'string') seen.add(v);
    if (seen.size > LIST_ENTRIES_MAX) throw fail(`more than ${LIST_ENTRIES_MAX} entries`, 'take the inventory of a smaller registry, or from its storage layout (ferry inventory --layout)');
    url = trail.next(res);
    if (url !== undefined && seen.size === before) {
      throw fail('a page with a link to the next one adds nothing new (the registry pages in a loop)', 'the registry (or a proxy before it) paginates without end; ask its administrator');
    }
  }
  return [...seen];
}
