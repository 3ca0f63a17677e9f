// A loopback token server doing what Harbor's core does for its registry: check
// Basic credentials, read `service` and every `scope`, grant a subset, and answer
// with a JWT the registry verifies against the certificate in its rootcertbundle.
import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, randomUUID, sign, timingSafeEqual, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface Scope {
  type: string;
  name: string;
  actions: string[];
}

/** Decides what a token grants. `user` is undefined for an anonymous request. */
export type TokenAccess = (user: string | undefined, requested: Scope[]) => Scope[];

export interface IssuedRequest {
  user: string | undefined;
  service: string | null;
  requested: Scope[];
  granted: Scope[];
  method: string;
}

export interface TokenIssuer {
  /** Full URL of the token endpoint, the registry's `realm`. */
  realm: string;
  service: string;
  issuer: string;
  certPath: string;
  /** Number of requests answered with a token or a 401; tests assert token reuse with it. */
  readonly requests: number;
  /** Every request, in order. */
  readonly history: readonly IssuedRequest[];
  stop(): Promise<void>;
}

export interface TokenIssuerOptions {
  dir: string;
  users: Record<string, string>;
  tokenAccess?: TokenAccess;
  service?: string;
  issuer?: string;
  expiresInSeconds?: number;
}

/** Full access to what was asked for, for a valid user; nothing for anonymous. */
export const grantAllToUsers: TokenAccess = (user, requested) =>
  user === undefined ? [] : requested.map((s) => ({ ...s, actions: [...s.actions] }));

/** `repository:a/b:pull,push` → scope. The name may itself hold colons (host:port), so split at first and last. */
export function parseScope(raw: string): Scope | undefined {
  const first = raw.indexOf(':');
  const last = raw.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const actions = raw
    .slice(last + 1)
    .split(',')
    .filter((a) => a.length > 0);
  return { type: raw.slice(0, first), name: raw.slice(first + 1, last), actions };
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function ensureOpenssl(): void {
  if (!existsSync('/usr/bin/openssl')) {
    throw new Error('openssl is needed to make the token-signing key: `npm test` installs it (scripts/ensure-peers.mjs) or run `apt-get install openssl`');
  }
}

function makeSigningKey(dir: string): { keyPem: string; certPath: string; certDerB64: string } {
  ensureOpenssl();
  const keyPath = join(dir, 'token-signing.key');
  const certPath = join(dir, 'token-signing.crt');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=ferry-test-token-issuer'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const certPem = readFileSync(certPath, 'utf8');
  const cert = new X509Certificate(certPem);
  return { keyPem: readFileSync(keyPath, 'utf8'), certPath, certDerB64: cert.raw.toString('base64') };
}

function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export async function startTokenIssuer(opts: TokenIssuerOptions): Promise<TokenIssuer> {
  const service = opts.service ?? 'ferry-test-registry';
  const issuer = opts.issuer ?? 'ferry-test-issuer';
  const access = opts.tokenAccess ?? grantAllToUsers;
  const expiresIn = opts.expiresInSeconds ?? 300;
  const { keyPem, certPath, certDerB64 } = makeSigningKey(opts.dir);
  const key = createPrivateKey(keyPem);
  const history: IssuedRequest[] = [];

  const mint = (user: string | undefined, granted: Scope[]): { token: string; issuedAt: Date } => {
    const now = Math.floor(Date.now() / 1000);
    // distribution 2.8 finds the verification key through x5c (a chain ending at a rootcertbundle cert).
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDerB64] };
    const claims = {
      iss: issuer,
      sub: user ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access: granted,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), key);
    return { token: `${input}.${b64url(sig)}`, issuedAt: new Date(now * 1000) };
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/service/token') {
      res.writeHead(404).end();
      return;
    }
    let user: string | undefined;
    const authz = req.headers.authorization;
    if (authz !== undefined) {
      const m = /^Basic\s+(.+)$/i.exec(authz);
      const decoded = m?.[1] !== undefined ? Buffer.from(m[1], 'base64').toString('utf8') : undefined;
      const colon = decoded?.indexOf(':') ?? -1;
      const name = decoded !== undefined && colon > 0 ? decoded.slice(0, colon) : undefined;
      const pass = decoded !== undefined && colon > 0 ? decoded.slice(colon + 1) : undefined;
      const expected = name !== undefined ? opts.users[name] : undefined;
      if (name === undefined || pass === undefined || expected === undefined || !safeEqual(pass, expected)) {
        history.push({ user: name, service: url.searchParams.get('service'), requested: [], granted: [], method: req.method ?? '' });
        res.writeHead(401, { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Basic realm="ferry-test-issuer"' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
      user = name;
    }
    const requested = url.searchParams
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .map(parseScope)
      .filter((s): s is Scope => s !== undefined);
    const granted = access(user, requested);
    history.push({ user, service: url.searchParams.get('service'), requested, granted, method: req.method ?? '' });
    const { token, issuedAt } = mint(user, granted);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: expiresIn, issued_at: issuedAt.toISOString() }));
  };

  const server: Server = createServer((req, res) => {
    // Drain any body (OAuth2 POST form) so the socket is reusable; we answer from the query only.
    req.resume();
    req.on('end', () => handle(req, res));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    realm: `http://127.0.0.1:${port}/service/token`,
    service,
    issuer,
    certPath,
    get requests() {
      return history.length;
    },
    get history() {
      return history;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
