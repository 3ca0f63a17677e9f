// A minimal registry HTTP client for the test harness (independent of src/): loopback
// http, Basic auth, and the Bearer token dance (Harbor-style) with tokens cached per scope.
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface RegistryTarget {
  /** `http://127.0.0.1:PORT` */
  url: string;
  username?: string;
  password?: string;
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** A stream body needs contentLength. */
  body?: Buffer | Readable;
  contentLength?: number;
  /** Repository the request is for (drives the token scope); omit for /v2/ and _catalog. */
  repo?: string;
  /** Token scope actions; default pull for GET/HEAD, pull,push otherwise. */
  actions?: string;
}

/** Makes a target from a RegistryHandle-like object, logging in as `user` (default: the first user). */
export function targetOf(reg: { url: string; users?: Record<string, string>; auth?: string }, user?: string): RegistryTarget {
  if (reg.auth === undefined || reg.auth === 'none' || reg.users === undefined) return { url: reg.url };
  const name = user ?? Object.keys(reg.users)[0];
  if (name === undefined) return { url: reg.url };
  const password = reg.users[name];
  return password === undefined ? { url: reg.url } : { url: reg.url, username: name, password };
}

function parseChallenge(header: string | undefined): { scheme: string; params: Record<string, string> } | undefined {
  if (header === undefined) return undefined;
  const m = /^(\w+)\s*(.*)$/.exec(header.trim());
  if (m === null || m[1] === undefined) return undefined;
  const params: Record<string, string> = {};
  for (const p of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) if (p[1] !== undefined && p[2] !== undefined) params[p[1]] = p[2];
  return { scheme: m[1].toLowerCase(), params };
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function send(url: URL, method: string, headers: Record<string, string>, body?: Buffer | Readable): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers }, resolve);
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else pipeline(body, req).catch(reject);
  });
}

export class RegistryClient {
  private challenge: { scheme: string; params: Record<string, string> } | null | undefined;
  private readonly tokens = new Map<string, string>();
  /** How many token requests this client made (one per distinct scope unless a token is rejected). */
  tokenFetches = 0;

  constructor(readonly target: RegistryTarget) {}

  private basic(): string | undefined {
    const { username, password } = this.target;
    if (username === undefined || password === undefined) return undefined;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /** Learns once what /v2/ asks for, so stream bodies never need a retry. */
  private async learnChallenge(): Promise<void> {
    if (this.challenge !== undefined) return;
    const res = await send(new URL('/v2/', this.target.url), 'GET', {});
    res.resume();
    this.challenge = res.statusCode === 401 ? (parseChallenge(res.headers['www-authenticate']) ?? null) : null;
  }

  private async authorization(scope: string | undefined): Promise<string | undefined> {
    await this.learnChallenge();
    const ch = this.challenge;
    if (ch === null || ch === undefined) return undefined;
    if (ch.scheme === 'basic') return this.basic();
    if (ch.scheme !== 'bearer') throw new Error(`unsupported auth challenge ${ch.scheme}`);
    const key = scope ?? '';
    const cached = this.tokens.get(key);
    if (cached !== undefined) return `Bearer ${cached}`;
    const realm = ch.params['realm'];
    if (realm === undefined) throw new Error('Bearer challenge without realm');
    const u = new URL(realm);
    if (ch.params['service'] !== undefined) u.searchParams.set('service', ch.params['service']);
    if (scope !== undefined) u.searchParams.append('scope', scope);
    const basic = this.basic();
    this.tokenFetches++;
    const res = await send(u, 'GET', basic !== undefined ? { Authorization: basic } : {});
    const body = await readAll(res);
    if (res.statusCode !== 200) throw new Error(`token request to ${u.origin}${u.pathname} failed: HTTP ${res.statusCode}`);
    const parsed = JSON.parse(body.toString('utf8')) as { token?: string; access_token?: string };
    const token = parsed.token ?? parsed.access_token;
    if (token === undefined) throw new Error('token response without token');
    this.tokens.set(key, token);
    return `Bearer ${token}`;
  }

  /** Sends a request and returns the response unread (for streaming blob bodies). Follows redirects without credentials. */
  async open(method: string, path: string, opts: RequestOptions = {}): Promise<IncomingMessage> {
    const actions = opts.actions ?? (method === 'GET' || method === 'HEAD' ? 'pull' : 'pull,push');
    const scope = opts.repo !== undefined ? `repository:${opts.repo}:${actions}` : undefined;
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const authz = await this.authorization(scope);
    if (authz !== undefined) headers['Authorization'] = authz;
    if (opts.body !== undefined) {
      headers['Content-Length'] = String(Buffer.isBuffer(opts.body) ? opts.body.length : (opts.contentLength ?? 0));
      if (!Buffer.isBuffer(opts.body) && opts.contentLength === undefined) throw new Error('stream body needs contentLength');
    }
    let url = new URL(path, this.target.url);
    let res = await send(url, method, headers, opts.body);
    for (let hops = 0; hops < 5 && res.statusCode !== undefined && [301, 302, 303, 307, 308].includes(res.statusCode); hops++) {
      const loc = res.headers.location;
      res.resume();
      if (loc === undefined) break;
      const next = new URL(loc, url);
      // Credentials go only to the origin that asked for them.
      if (next.origin !== url.origin) delete headers['Authorization'];
      url = next;
      res = await send(url, method === 'HEAD' ? 'HEAD' : 'GET', headers);
    }
    return res;
  }

  /** Sends a request and reads the whole (small) response body. */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const res = await this.open(method, path, opts);
    const body = await readAll(res);
    return { status: res.statusCode ?? 0, headers: res.headers, body };
  }
}

export function clientFor(target: RegistryTarget | string): RegistryClient {
  return new RegistryClient(typeof target === 'string' ? { url: target } : target);
}
