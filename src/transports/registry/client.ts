import { Readable } from 'node:stream';
import { FerryError, isFerryError } from '../../errors.js';
import { Authenticator } from '../../net/auth.js';
import { type CredentialLookup, type Credentials, lookupCredentials } from '../../net/credentials.js';
import { type ConnectionFactory, discard, HttpClient, type HttpResponse, isPlainHttpAnswer } from '../../net/http.js';
import { registryError } from '../../net/registry-error.js';
import { rememberSecret, remoteText, remoteUrl } from '../../net/remote-text.js';
import { withRetry } from '../../net/retry.js';
import { registryApiHost } from '../../oci/reference.js';

export interface RegistryOptions {
  /** host[:port], as in image references. */
  registry: string;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
  /** PEM file of CA certificates to trust in addition to the system's. */
  caFile?: string;
  /**
   * Speak plain HTTP. Without it, loopback registries (localhost, 127.x, ::1)
   * are tried over https first and over http when the server turns out not to
   * speak TLS — as docker does for localhost; every other registry is https only.
   */
  plainHttp?: boolean;
  /** Explicit credentials (flags); otherwise looked up by net/credentials. */
  credentials?: Credentials;
  userAgent?: string;
  /** Opens connections (the SSH tunnel); default: direct TCP. */
  connect?: ConnectionFactory;
  /** --connect-timeout / --idle-timeout, in ms; default: net/http's. */
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** --min-rate, bytes per second (0: off); default: net/throughput's. */
  minBytesPerSecond?: number;
  /**
   * Upload blobs in PATCH chunks of this many bytes (each chunk is held in
   * memory) instead of one streamed PUT: for registries or proxies that cap
   * request bodies. The registry's OCI-Chunk-Min-Length raises it.
   */
  chunkSize?: number;
}

export interface RegistryRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path under the registry (`/v2/…`), or an absolute URL it handed out (an upload Location). */
  url: string | URL;
  /** Token scopes the request needs, e.g. `repository:a/b:pull`. */
  scopes: string[];
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  signal?: AbortSignal | undefined;
}

interface Session {
  base: URL;
  auth: Authenticator;
}

/**
 * A registry as the client reached it: the origin with its scheme settled, the
 * HTTP client and the credentials. For APIs served beside the registry on the
 * same origin (Harbor's), so they go where the registry client went, the same way.
 */
export interface RegistryEndpoint {
  /** host[:port], for messages. */
  registry: string;
  base: URL;
  credentials?: Credentials | undefined;
  http: HttpClient;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

function isLoopback(registry: string): boolean {
  const host = new URL(`http://${registry}`).hostname;
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The HTTP client a registry's settings call for (TLS, tunnel, timeouts). */
function httpClientFor(options: RegistryOptions): HttpClient {
  return new HttpClient({
    ...(options.insecure !== undefined ? { insecure: options.insecure } : {}),
    ...(options.caFile !== undefined ? { caFile: options.caFile } : {}),
    ...(options.userAgent !== undefined ? { userAgent: options.userAgent } : {}),
    ...(options.connect !== undefined ? { connect: options.connect } : {}),
    ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
    ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
    ...(options.minBytesPerSecond !== undefined ? { minBytesPerSecond: options.minBytesPerSecond } : {}),
  });
}

/**
 * One registry as seen over HTTP: its base URL (scheme settled by a first
 * GET /v2/), its authentication, retries and the redirect policy. Source and
 * destination build their requests on it; nothing else talks to a registry.
 */
/** Requests in a row that fail after their retries before a registry is taken for gone (each took ~2-4 s of retries). */
export const GIVE_UP_AFTER = 6;

export class RegistryClient {
  readonly registry: string;
  readonly chunkSize: number | undefined;
  private readonly http: HttpClient;
  private readonly credentials: CredentialLookup;
  private session: Promise<Session> | undefined;
  /**
   * Requests in a row that ended in a network failure after all their retries,
   * with no answer from the registry in between, and the last such failure.
   * A registry that died behind a proxy or load balancer (each connection
   * accepted, then reset) otherwise cost every pending request its full retry
   * budget: an export of 300 images went on for over 14 minutes (measured).
   */
  private failedInARow = 0;
  private lastFailure: FerryError | undefined;

  constructor(private readonly options: RegistryOptions, credentials?: CredentialLookup) {
    this.registry = options.registry;
    this.chunkSize = options.chunkSize;
    this.credentials = credentials ?? lookupCredentials(options.registry, options.credentials);
    // Whatever a server echoes back of these is redacted from every message that quotes it.
    const held = this.credentials.credentials;
    rememberSecret(held?.password, held?.username);
    rememberSecret(held?.identityToken);
    this.http = httpClientFor(options);
  }

  /**
   * Sends a request with credentials (to the registry's own origin only),
   * retries (unless the body is a stream, which cannot be sent twice, or the
   * request is a PATCH, which is not idempotent), one re-authentication on 401,
   * and redirects for GET/HEAD (a redirect to another host goes without
   * credentials). Returns whatever status comes last.
   */
  async send(req: RegistryRequest): Promise<HttpResponse> {
    if (this.failedInARow >= GIVE_UP_AFTER) throw this.stoppedAnswering();
    const { base, auth } = await this.connect(req.signal);
    const replayable = !(req.body instanceof Readable) && req.method !== 'PATCH';
    let url = typeof req.url === 'string' ? new URL(req.url, base) : req.url;
    const asked = `${req.method} ${url.origin === base.origin ? url.pathname : remoteUrl(url)}`;
    let scopes = req.scopes;
    let reauthenticated = false;
    for (let hops = 0; ; ) {
      const own = url.origin === base.origin;
      const authorization = own ? await auth.authorization(scopes, req.signal) : undefined;
      const headers = { ...req.headers, ...(authorization ? { authorization } : {}) };
      const attempt = () => this.http.request({ method: req.method, url, headers, body: req.body, signal: req.signal });
      let res: HttpResponse;
      try {
        res = replayable ? await withRetry(attempt, undefined, req.signal) : await attempt();
      } catch (e) {
        if (isFerryError(e, 'E_NETWORK') && !req.signal?.aborted) {
          this.failedInARow++;
          this.lastFailure = e;
        }
        throw e;
      }
      // Any answer at all: the registry is there.
      this.failedInARow = 0;

      if (res.status === 401 && own && replayable && !reauthenticated) {
        const next = auth.learn(res.headers['www-authenticate'], scopes);
        if (next) {
          reauthenticated = true;
          scopes = next;
          await discard(res.body);
          continue;
        }
      }
      const location = res.headers.location;
      if (REDIRECTS.has(res.status) && (req.method === 'GET' || req.method === 'HEAD') && location) {
        await discard(res.body);
        if (++hops > MAX_REDIRECTS) {
          throw new FerryError('E_REGISTRY', `registry ${this.registry}: ${asked}: more than ${MAX_REDIRECTS} redirects`, {
            hint: 'the registry (or a proxy or object store behind it) redirects in a loop; ask its administrator',
            details: { registry: this.registry },
          });
        }
        url = this.resolve(location, url, `${asked}: redirected`);
        continue;
      }
      return res;
    }
  }

  /** Sends and returns the response when its status is one of `ok`; otherwise throws the registry's error, naming `what`. */
  async expect(req: RegistryRequest, ok: number[], what: string): Promise<HttpResponse> {
    const res = await this.send(req);
    if (ok.includes(res.status)) return res;
    const override = res.status === 401 ? (await this.connect(req.signal)).auth.rejection(res.headers['www-authenticate']) : {};
    throw await registryError(res, what, override);
  }

  /** Resolves a Location header against the request it answered. */
  location(res: HttpResponse, what: string): URL {
    const loc = res.headers.location;
    if (!loc) throw new FerryError('E_REGISTRY', `${what}: registry ${this.registry} answered ${res.status} without a Location`, { hint: 'the registry does not follow the distribution API; check what serves this address' });
    return this.resolve(loc, res.url, `${what}: Location`);
  }

  /**
   * A URL the registry handed out (a redirect, an upload Location, a Link to
   * the next page), resolved against the request it answered. Only http and
   * https are followed: anything else, or text that is no URL, is the
   * registry's error (E_REGISTRY), named with the scheme but never the query,
   * where signed URLs carry their tokens.
   */
  resolve(raw: string, base: URL, what: string): URL {
    let url: URL;
    try {
      url = new URL(raw, base);
    } catch {
      throw new FerryError('E_REGISTRY', `registry ${this.registry}: ${what} to an invalid URL (${remoteText(raw.replace(/[?#].*$/s, ''), 100)})`, {
        hint: 'the registry (or a proxy before it) sent a malformed address; ask its administrator', details: { registry: this.registry },
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      const scheme = remoteText(url.protocol, 20);
      throw new FerryError('E_REGISTRY', `registry ${this.registry}: ${what} to a ${scheme} URL (${remoteUrl(url)}); ferry follows only http and https`, {
        hint: 'the registry (or a proxy before it) is misconfigured or hostile; ask its administrator', details: { registry: this.registry, scheme },
      });
    }
    return url;
  }

  /** Where the registry was reached (after a first GET /v2/ when there has been none yet). */
  async endpoint(signal?: AbortSignal): Promise<RegistryEndpoint> {
    const { base } = await this.connect(signal);
    return { registry: this.registry, base, credentials: this.credentials.credentials, http: this.http };
  }

  close(): void {
    this.http.close();
  }

  /** GET /v2/ once: settles the scheme and learns the auth challenge before any body is sent. */
  private connect(signal: AbortSignal | undefined): Promise<Session> {
    if (!this.session) {
      const session = this.ping(signal);
      this.session = session;
      // A failed first contact (registry not up yet, interrupted) is tried again by the next request.
      session.catch(() => {
        if (this.session === session) this.session = undefined;
      });
    }
    return this.session;
  }

  private stoppedAnswering(): FerryError {
    const last = this.lastFailure!;
    return new FerryError('E_NETWORK', `registry ${this.registry} stopped answering: ${this.failedInARow} requests in a row failed after their retries (the last: ${last.message}); sending no more`, {
      hint: 'check the registry and the link to it (proxy, load balancer, VPN, SSH tunnel), then run the same command again: what completed is kept',
      details: { registry: this.registry, requestsFailedInARow: this.failedInARow },
      cause: last,
    });
  }

  private async ping(signal: AbortSignal | undefined): Promise<Session> {
    const schemes = this.options.plainHttp ? ['http:'] : isLoopback(this.registry) ? ['https:', 'http:'] : ['https:'];
    for (const [i, scheme] of schemes.entries()) {
      // Docker Hub is named docker.io but serves its API from another host.
      const base = new URL(`${scheme}//${registryApiHost(this.registry)}`);
      let res: HttpResponse;
      try {
        res = await withRetry(() => this.http.request({ method: 'GET', url: new URL('/v2/', base), signal }), undefined, signal);
      } catch (e) {
        // Only a server that does not speak TLS at all gets asked over http; a certificate problem is reported as such.
        if (i + 1 < schemes.length && isFerryError(e, 'E_TLS') && isPlainHttpAnswer(e.details.errno)) continue;
        throw e;
      }
      if (res.status >= 500 || res.status === 429) {
        // A registry that is there but failing (maintenance, overload), after the retries: its own words, not "no registry".
        throw await registryError(res, `registry ${this.registry}: GET /v2/`, {
          code: 'E_REGISTRY', hint: 'the registry is up but failing or overloaded; try again later, or ask its administrator',
        });
      }
      if (res.status !== 200 && res.status !== 401) {
        await discard(res.body);
        throw new FerryError('E_REGISTRY', `registry ${this.registry}: GET /v2/ answered ${res.status}, so this is no registry API v2`, {
          hint: 'check the registry host and port (and that nothing else, such as a web server or proxy, answers there)',
          details: { status: res.status },
        });
      }
      const auth = new Authenticator(this.http, this.registry, base, this.credentials.credentials, this.credentials.hint);
      if (res.status === 401) auth.learn(res.headers['www-authenticate'], []);
      await discard(res.body);
      return { base, auth };
    }
    throw new FerryError('E_INTERNAL', 'no URL scheme to try');
  }
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}
