// A hostile registry's token challenge: a realm that downgrades https to http, or a token
// that cannot go into a header. The registry here is a loopback https server written for
// the case (no real registry sends these); ferry's registry client talks to it over TLS.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../../src/transports/registry/client.js';
import { RegistrySource } from '../../../src/transports/registry/source.js';
import { rejection } from '../../support/rejection.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

let dir: TempDir;
let key: Buffer;
let cert: Buffer;
const servers: Server[] = [];
/** Token-service requests seen: a refused realm must not be asked at all. */
const tokenRequests: IncomingMessage[] = [];

beforeAll(() => {
  dir = makeTempDir('ferry-auth-realm-');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir.path, 'k.pem'), '-out', join(dir.path, 'c.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  key = readFileSync(join(dir.path, 'k.pem'));
  cert = readFileSync(join(dir.path, 'c.pem'));
});
afterAll(async () => {
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  await dir.cleanup();
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** A registry over https whose every /v2/ request is challenged with `realm`, and whose token service answers `token`. */
async function hostileRegistry(realmFor: (tokenPort: number, selfPort: number) => string, token = 'a.b.c'): Promise<string> {
  const tokenService = (req: IncomingMessage, res: ServerResponse) => {
    tokenRequests.push(req);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token }));
  };
  const plainTokenPort = await listen(createHttpServer(tokenService));
  let selfPort = 0;
  selfPort = await listen(createHttpsServer({ key, cert }, (req, res) => {
    if (req.url?.startsWith('/token')) return tokenService(req, res);
    if (req.headers.authorization?.startsWith('Bearer ')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
      return;
    }
    res.writeHead(401, { 'www-authenticate': `Bearer realm="${realmFor(plainTokenPort, selfPort)}",service="hostile"` });
    res.end();
  }));
  return `127.0.0.1:${selfPort}`;
}

function sourceFor(registry: string, credentials = true): RegistrySource {
  return new RegistrySource(new RegistryClient({
    registry, caFile: join(dir.path, 'c.pem'),
    ...(credentials ? { credentials: { username: 'u', password: 'realm-test-password', source: '--username' } } : {}),
  }, credentials ? undefined : {}));
}

describe('token realm and token checks', () => {
  it('an https registry naming a plain-HTTP realm: E_AUTH with or without credentials, and the realm is never asked', async () => {
    const registry = await hostileRegistry((port) => `http://127.0.0.1:${port}/token`);
    for (const credentials of [true, false]) {
      const before = tokenRequests.length;
      const src = sourceFor(registry, credentials);
      const err = await rejection(src.getManifest('team/app', 'v1'));
      await src.close();
      expect(err.code, err.message).toBe('E_AUTH');
      expect(err.message).toContain(registry);
      expect(err.message).toMatch(/plain-HTTP token realm \(http:\/\/127\.0\.0\.1:\d+\/token\)/);
      expect(err.hint).toBeTruthy();
      expect(tokenRequests.length, 'the plain-HTTP realm was contacted').toBe(before);
    }
  });

  it('the same registry with an https realm works (the check is on the downgrade only)', async () => {
    const registry = await hostileRegistry((_p, self) => `https://127.0.0.1:${self}/token`);
    const src = sourceFor(registry);
    const err = await rejection(src.getManifest('team/app', 'v1'));
    await src.close();
    expect(err.code).toBe('E_NOT_FOUND');
  });

  it('a token that cannot go into a header (CR LF, spaces): E_AUTH, not a TypeError from the HTTP stack', async () => {
    for (const token of ['abc\r\nX-Injected: 1', 'two words']) {
      const registry = await hostileRegistry((_p, self) => `https://127.0.0.1:${self}/token`, token);
      const src = sourceFor(registry);
      const err = await rejection(src.getManifest('team/app', 'v1'));
      await src.close();
      expect(err.code, `${JSON.stringify(token)}: ${err.message}`).toBe('E_AUTH');
      expect(err.message).toContain(registry);
    }
  });
});
