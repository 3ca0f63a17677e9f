import { FerryError } from '../errors.js';
import type { Credentials } from './credentials.js';
import { type HttpClient, type HttpResponse, readCapped } from './http.js';
import { registryError } from './registry-error.js';
import { rememberSecret, remoteText, remoteUrl } from './remote-text.js';
import { withRetry } from './retry.js';

/**
 * Registry authentication: parses `WWW-Authenticate`, answers Basic
 * challenges with the credentials, and runs the bearer token flow (docker's
 * token spec, and the OAuth2 refresh-token form for docker `identitytoken`s).
 * Tokens are cached per scope set until shortly before they expire, and
 * concurrent requests for the same scope set share one token request.
 *
 * The caller attaches the returned Authorization header only to the registry's
 * own origin; this class sends credentials only to that origin's challenge realm.
 */

export interface Challenge {
  /** Lower-cased: `basic`, `bearer`. */
  scheme: string;
  /** Parameter names lower-cased, values unquoted. */
  params: Record<string, string>;
}

const TOKEN_CHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;

/** Parses a WWW-Authenticate value (one or several challenges, RFC 7235), quoted values with commas and escapes included. */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const skip = (re: RegExp): void => {
    while (i < header.length && re.test(header[i] as string)) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < header.length && TOKEN_CHAR.test(header[i] as string)) i++;
    return header.slice(start, i);
  };
  /** True when the text at i is `name =`, i.e. a parameter rather than the next challenge's scheme. */
  const atParam = (): boolean => /^[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*=(?!=)/.test(header.slice(i));

  while (i < header.length) {
    skip(/[\s,]/);
    const scheme = token();
    if (!scheme) break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    skip(/[ \t]/);
    if (!atParam()) {
      // token68 (e.g. `Negotiate abc==`) or nothing: not used by registries, skipped.
      if (header[i] !== ',') skip(/[A-Za-z0-9\-._~+/=]/);
      continue;
    }
    while (i < header.length) {
      skip(/[\s,]/);
      if (!atParam()) break;
      const name = token().toLowerCase();
      skip(/[ \t]/);
      i++; // '='
      skip(/[ \t]/);
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < header.length && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < header.length) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        value = token();
      }
      challenge.params[name] = value;
      skip(/[ \t]/);
    }
  }
  return challenges;
}

interface CachedToken {
  value: string;
  expiresAt: number;
}

/** Tokens live 60 s unless the server says otherwise (the token spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
const TOKEN_RESPONSE_MAX_BYTES = 1024 * 1024;

export class Authenticator {
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, Promise<CachedToken>>();

  /**
   * @param registryUrl the registry's own origin (scheme decided), for the realm check
   * @param missingHint why no credentials were found although some were set up (a credential helper)
   */
  constructor(
    private readonly http: HttpClient,
    private readonly registry: string,
    private readonly registryUrl: URL,
    private readonly credentials: Credentials | undefined,
    private readonly missingHint?: string,
  ) {}

  /**
   * Records the challenge of a 401 answer. Returns the scopes to ask for next
   * (ours plus any the registry named), or undefined when the challenge is one
   * we cannot answer (unknown scheme, or Basic without credentials).
   */
  learn(header: string | string[] | undefined, scopes: string[]): string[] | undefined {
    const all = (Array.isArray(header) ? header : [header ?? '']).flatMap(parseWwwAuthenticate);
    const chosen = all.find((c) => c.scheme === 'bearer' && c.params.realm) ?? all.find((c) => c.scheme === 'basic');
    if (!chosen || (chosen.scheme === 'basic' && !this.hasPassword())) return undefined;
    this.challenge = chosen;
    const extra = chosen.params.scope?.split(' ').filter(Boolean) ?? [];
    const next = [...new Set([...scopes, ...extra])];
    // The refused token may be cached under the request's own scopes as well as the merged set: drop both,
    // or the next request that cannot be replayed (a streamed blob PUT) would reuse it and fail.
    this.tokens.delete(scopeKey(scopes));
    this.tokens.delete(scopeKey(next));
    return next;
  }

  /** The Authorization header for a request to the registry's own origin, or undefined when none is needed (yet). */
  async authorization(scopes: string[], signal?: AbortSignal): Promise<string | undefined> {
    const c = this.challenge;
    if (!c) return undefined;
    if (c.scheme === 'basic') return this.basic();
    return `Bearer ${(await this.token(c, scopes, signal)).value}`;
  }

  /**
   * What a final 401 means. With credentials and a token that lacked the
   * scope (`error="insufficient_scope"`), the user is known but not allowed:
   * E_DENIED. Otherwise the credentials are wrong or missing: E_AUTH.
   */
  rejection(header: string | string[] | undefined): { code: 'E_AUTH' | 'E_DENIED'; hint: string } {
    const challenges = (Array.isArray(header) ? header : [header ?? '']).flatMap(parseWwwAuthenticate);
    if (this.credentials && challenges.some((c) => c.params.error === 'insufficient_scope')) {
      return { code: 'E_DENIED', hint: `the registry does not let ${this.who()} do this; ask its administrator for pull (or push) access to the repository` };
    }
    if (this.credentials) return { code: 'E_AUTH', hint: `the registry refused ${this.who()} (credentials from ${this.credentials.source}); check them, or log in again` };
    return {
      code: 'E_AUTH',
      hint: this.missingHint ?? `log in: ferry login ${this.registry} (or docker login), --username with --password-stdin, or FERRY_USERNAME/FERRY_PASSWORD`,
    };
  }

  private who(): string {
    return this.credentials?.username ? `user "${this.credentials.username}"` : 'the identity token';
  }

  private hasPassword(): boolean {
    return this.credentials?.username !== undefined && this.credentials.password !== undefined;
  }

  private basic(): string | undefined {
    const c = this.credentials;
    if (c?.username === undefined || c.password === undefined) return undefined;
    return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  }

  private token(c: Challenge, scopes: string[], signal?: AbortSignal): Promise<CachedToken> {
    const key = scopeKey(scopes);
    const cached = this.tokens.get(key);
    if (cached) {
      return cached.then((t) => {
        if (t.expiresAt > Date.now()) return t;
        if (this.tokens.get(key) === cached) this.tokens.delete(key);
        return this.token(c, scopes, signal);
      });
    }
    const fresh = this.fetchToken(c, scopes, signal);
    this.tokens.set(key, fresh);
    fresh.catch(() => {
      if (this.tokens.get(key) === fresh) this.tokens.delete(key);
    });
    return fresh;
  }

  private async fetchToken(c: Challenge, scopes: string[], signal?: AbortSignal): Promise<CachedToken> {
    const realm = this.realm(c.params.realm ?? '');

    const form = new URLSearchParams();
    if (c.params.service) form.set('service', c.params.service);
    const headers: Record<string, string> = { accept: 'application/json' };
    let method = 'GET';
    let body: Buffer | undefined;
    if (this.credentials?.identityToken) {
      method = 'POST';
      form.set('grant_type', 'refresh_token');
      form.set('refresh_token', this.credentials.identityToken);
      form.set('client_id', 'ferry');
      if (scopes.length) form.set('scope', scopes.join(' '));
      body = Buffer.from(form.toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      for (const s of scopes) realm.searchParams.append('scope', s);
      for (const [k, v] of form) realm.searchParams.set(k, v);
      const basic = this.basic();
      if (basic) headers.authorization = basic;
    }

    const asked = Date.now();
    const res = await withRetry(() => this.http.request({ method, url: realm, headers, body, signal }), undefined, signal);
    if (res.status !== 200) throw await this.tokenError(res, realm);
    const raw = await readCapped(res.body, TOKEN_RESPONSE_MAX_BYTES);
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(raw?.toString('utf8') ?? '') as typeof parsed;
    } catch {
      parsed = {};
    }
    const value = typeof parsed.token === 'string' && parsed.token ? parsed.token : parsed.access_token;
    if (typeof value !== 'string' || !value) {
      throw new FerryError('E_REGISTRY', `the token service ${realm.host} of registry ${this.registry} sent no token`, { hint: 'the token service is misconfigured; ask the registry administrator' });
    }
    // It goes into an Authorization header: a value with spaces or controls would make the request unsendable.
    if (!/^[\x21-\x7e]+$/.test(value)) {
      throw new FerryError('E_AUTH', `the token service ${realm.host} of registry ${this.registry} sent a token that is not a valid header value`, { hint: 'the token service is misconfigured; ask the registry administrator' });
    }
    rememberSecret(value);
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS;
    // Counted from when we asked, on our own clock (issued_at is on the server's, which may be skewed),
    // and renewed a little early so a token does not expire between our check and the registry's.
    return { value, expiresAt: asked + seconds * 1000 - Math.min(10_000, seconds * 100) };
  }

  /**
   * The challenge's token realm, where credentials are sent: an http(s) URL,
   * and https whenever the registry itself is (a token fetched over plain
   * HTTP can be read or replaced on the way, credentials or not). Anything
   * else stops authentication: E_AUTH, naming the registry and the scheme.
   */
  private realm(raw: string): URL {
    const refuse = (why: string, scheme?: string): FerryError => new FerryError('E_AUTH', `registry ${this.registry} ${why}; refusing to authenticate there`, {
      hint: 'the registry\'s token service is misconfigured (or something between you and it rewrites its answers); ask its administrator',
      details: { registry: this.registry, ...(scheme !== undefined ? { scheme } : {}) },
    });
    let realm: URL;
    try {
      realm = new URL(raw);
    } catch {
      throw refuse(`names an invalid token realm (${remoteText(raw.replace(/[?#].*$/s, ''), 100)})`);
    }
    const scheme = remoteText(realm.protocol, 20);
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw refuse(`names a token realm with the ${scheme} scheme (${remoteUrl(realm)}), not http(s)`, scheme);
    if (realm.protocol === 'http:' && this.registryUrl.protocol === 'https:') {
      throw refuse(`is https but names a plain-HTTP token realm (${remoteUrl(realm)}): the token and credentials would travel unencrypted`, scheme);
    }
    return realm;
  }

  private async tokenError(res: HttpResponse, realm: URL): Promise<FerryError> {
    const what = `registry ${this.registry}: token service ${realm.host}`;
    if (res.status === 401 || res.status === 403) return registryError(res, what, { code: 'E_AUTH', hint: this.rejection(undefined).hint });
    return registryError(res, what);
  }
}

function scopeKey(scopes: string[]): string {
  return [...new Set(scopes)].sort().join(' ');
}
