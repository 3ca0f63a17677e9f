// Authentication against the real registry in htpasswd and token (Harbor-style) modes:
// right and wrong passwords, anonymous access, token reuse, and the rule that
// credentials go only to the registry's own origin.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FerryError } from '../../src/errors.js';
import { digestStream, parseDigest } from '../../src/oci/digest.js';
import { openRegistryDestination, openRegistrySource, type RegistryOptions } from '../../src/transports/registry/open.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { targetOf } from '../support/http.js';
import { pushArtifact } from '../support/push.js';
import { DEFAULT_USERS, startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir } from '../support/tmp.js';
import { startProxy } from './registry-proxy.js';
import { rejection } from '../support/rejection.js';

// Nothing from the machine's environment or ~/.docker may leak into these tests.
const emptyDockerConfig = makeTempDir('ferry-auth-docker-');
process.env.DOCKER_CONFIG = emptyDockerConfig.path;
for (const k of Object.keys(process.env)) if (k.startsWith('FERRY_')) delete process.env[k];

const [USER, PASSWORD] = Object.entries(DEFAULT_USERS)[0]!;
const WRONG = 'not-the-password';

function expectNoSecrets(err: FerryError): void {
  const text = `${err.message}\n${err.hint ?? ''}\n${JSON.stringify(err.details)}`;
  expect(text).not.toContain(PASSWORD);
  expect(text).not.toContain(WRONG);
  expect(text).not.toMatch(/Bearer |Basic /);
}

let image: Image;
beforeAll(async () => {
  const rng = new Rng(0xa17);
  image = makeImage({ layers: [await makeLayer(rng, { size: 40_000 }), await makeLayer(rng, { size: 20_000 })], mediaTypes: 'oci' });
});
afterAll(() => emptyDockerConfig.cleanup());

describe.each(['htpasswd', 'token'] as const)('%s registry', (mode) => {
  let reg: RegistryHandle;
  const opts = (extra: Partial<RegistryOptions> = {}): RegistryOptions => ({ registry: reg.host, plainHttp: true, ...extra });

  beforeAll(async () => {
    reg = await startRegistry({ auth: mode });
    await pushArtifact(targetOf(reg), 'auth/app', image, ['v1']);
  });
  afterAll(() => reg?.stop());

  it('pulls with the right password', async () => {
    const src = openRegistrySource(opts({ credentials: { username: USER, password: PASSWORD, source: '--username' } }));
    const m = await src.getManifest('auth/app', 'v1');
    expect(m.digest).toBe(image.digest);
    const layer = image.layers[0]!;
    const got = await digestStream(await src.getBlob('auth/app', { mediaType: layer.mediaType, digest: parseDigest(layer.digest), size: layer.size }));
    expect(got.digest).toBe(layer.digest);
    await src.close();
  });

  it('gives E_AUTH naming the user for a wrong password, without echoing secrets', async () => {
    const src = openRegistrySource(opts({ credentials: { username: USER, password: WRONG, source: '--username' } }));
    const err = await rejection(src.getManifest('auth/app', 'v1'));
    await src.close();
    expect(err.code).toBe('E_AUTH');
    expect(err.message).toContain(reg.host);
    expect(err.hint).toContain(USER);
    expectNoSecrets(err);
  });

  it('gives E_AUTH with a log-in hint when no credentials are known', async () => {
    const src = openRegistrySource(opts());
    const err = await rejection(src.getManifest('auth/app', 'v1'));
    await src.close();
    expect(err.code).toBe('E_AUTH');
    expect(err.hint).toMatch(/--username|FERRY_USERNAME/);
  });

  it('finds credentials in the per-registry environment and in docker config.json', async () => {
    const prefix = `FERRY_REGISTRY_${reg.host.replace(/[^0-9A-Za-z]/g, '_').toUpperCase()}`;
    process.env[`${prefix}_USERNAME`] = USER;
    process.env[`${prefix}_PASSWORD`] = PASSWORD;
    try {
      const src = openRegistrySource(opts());
      expect((await src.getManifest('auth/app', 'v1')).digest).toBe(image.digest);
      await src.close();
    } finally {
      delete process.env[`${prefix}_USERNAME`];
      delete process.env[`${prefix}_PASSWORD`];
    }

    const dir = makeTempDir('ferry-auth-cfg-');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${dir.path}/config.json`, JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } } }));
    process.env.DOCKER_CONFIG = dir.path;
    try {
      const src = openRegistrySource(opts());
      expect((await src.getManifest('auth/app', 'v1')).digest).toBe(image.digest);
      await src.close();
    } finally {
      process.env.DOCKER_CONFIG = emptyDockerConfig.path;
      await dir.cleanup();
    }
  });

  it('pushes with the right password', async () => {
    const dst = openRegistryDestination(opts({ credentials: { username: USER, password: PASSWORD, source: '--username' } }));
    const config = image.config;
    const desc = { mediaType: config.mediaType, digest: parseDigest(config.digest), size: config.size };
    expect(await dst.hasBlob('auth/copy', desc)).toBe(false);
    await dst.putBlob('auth/copy', desc, config.open());
    expect(await dst.hasBlob('auth/copy', desc)).toBe(true);
    await dst.close();
  });
});

describe('token reuse and credential scoping', () => {
  let reg: RegistryHandle;
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'token' });
    await pushArtifact(targetOf(reg), 'auth/app', image, ['v1']);
  });
  afterAll(() => reg?.stop());
  const credentials = { username: USER, password: PASSWORD, source: '--username' };

  it('asks the issuer once per scope set, not once per request', async () => {
    const before = reg.issuer!.requests;
    const src = openRegistrySource({ registry: reg.host, plainHttp: true, credentials });
    await Promise.all([src.getManifest('auth/app', 'v1'), src.getManifest('auth/app', image.digest)]);
    for (const b of image.blobs) await digestStream(await src.getBlob('auth/app', { mediaType: b.mediaType, digest: parseDigest(b.digest), size: b.size }));
    await src.close();
    expect(reg.issuer!.requests - before).toBe(1);

    // A destination: one token for pull,push on the target, one more for a mount's scope set.
    const mark = reg.issuer!.requests;
    const dst = openRegistryDestination({ registry: reg.host, plainHttp: true, credentials });
    for (const b of image.blobs) {
      const desc = { mediaType: b.mediaType, digest: parseDigest(b.digest), size: b.size };
      await dst.hasBlob('auth/mirror', desc);
      expect(await dst.mountBlob('auth/mirror', desc, 'auth/app')).toBe(true);
    }
    await dst.close();
    const issued = reg.issuer!.history.slice(mark);
    expect(issued).toHaveLength(2);
    expect(issued.map((h) => h.requested.map((s) => `${s.name}:${s.actions.join(',')}`).sort().join(' '))).toEqual([
      'auth/mirror:pull,push',
      'auth/app:pull auth/mirror:pull,push',
    ]);
    expect(issued.every((h) => h.user === USER)).toBe(true);
  });

  it('asks for a fresh token once when the registry rejects the cached one', async () => {
    const issuer = reg.issuer!;
    const proxy = await startProxy(reg.url, {
      inject: (req, n) =>
        req.url?.includes('/manifests/') && n === 1
          ? { status: 401, headers: { 'www-authenticate': `Bearer realm="${issuer.realm}",service="${issuer.service}",scope="repository:auth/app:pull"` } }
          : undefined,
    });
    try {
      const src = openRegistrySource({ registry: proxy.host, plainHttp: true, credentials });
      const before = issuer.requests;
      expect((await src.getManifest('auth/app', 'v1')).digest).toBe(image.digest);
      await src.close();
      expect(issuer.requests - before).toBe(2);
      expect(proxy.count('GET', '/v2/auth/app/manifests/v1')).toBe(2);
    } finally {
      await proxy.stop();
    }
  });

  it('follows a blob redirect to another host without sending Authorization there', async () => {
    const layer = image.layers[0]!;
    const seen: Array<string | undefined> = [];
    const storage = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-length': String(layer.size) });
      layer.open().pipe(res);
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    const storageUrl = `http://127.0.0.1:${(storage.address() as AddressInfo).port}/bucket/${layer.digest}?sig=abc`;
    const proxy = await startProxy(reg.url, {
      inject: (req) => (req.method === 'GET' && req.url?.includes(`/blobs/${layer.digest}`) ? { status: 307, headers: { location: storageUrl } } : undefined),
    });
    try {
      const src = openRegistrySource({ registry: proxy.host, plainHttp: true, credentials });
      const got = await digestStream(await src.getBlob('auth/app', { mediaType: layer.mediaType, digest: parseDigest(layer.digest), size: layer.size }));
      await src.close();
      expect(got.digest).toBe(layer.digest);
      expect(seen).toEqual([undefined]);
      // ...while the registry itself did get credentials.
      expect(proxy.log.find((l) => l.path.includes('/blobs/'))?.headers.authorization).toMatch(/^Bearer /);
    } finally {
      await proxy.stop();
      storage.close();
    }
  });
});

describe('token expiry', () => {
  let reg: RegistryHandle;
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'token', tokenExpiresInSeconds: 2 });
    await pushArtifact(targetOf(reg), 'auth/app', image, ['v1']);
  });
  afterAll(() => reg?.stop());

  it('renews a token before it expires instead of reusing it', async () => {
    const src = openRegistrySource({ registry: reg.host, plainHttp: true, credentials: { username: USER, password: PASSWORD, source: '--username' } });
    const before = reg.issuer!.requests;
    await src.getManifest('auth/app', 'v1');
    await src.getManifest('auth/app', 'v1');
    expect(reg.issuer!.requests - before).toBe(1);
    await new Promise((r) => setTimeout(r, 2000));
    await src.getManifest('auth/app', 'v1');
    await src.close();
    expect(reg.issuer!.requests - before).toBe(2);
  });
});

describe('a user without push access', () => {
  let reg: RegistryHandle;
  beforeAll(async () => {
    // Pull for everyone logged in; push for nobody.
    reg = await startRegistry({ auth: 'token', tokenAccess: (user, requested) => (user === undefined ? [] : requested.map((s) => ({ ...s, actions: s.actions.filter((a) => a === 'pull') }))) });
  });
  afterAll(() => reg?.stop());

  it('gets E_DENIED (known user, not allowed), not E_AUTH', async () => {
    const dst = openRegistryDestination({ registry: reg.host, plainHttp: true, credentials: { username: USER, password: PASSWORD, source: '--username' } });
    const config = image.config;
    const err = await rejection(dst.putBlob('auth/ro', { mediaType: config.mediaType, digest: parseDigest(config.digest), size: config.size }, config.open()));
    await dst.close();
    expect(err.code).toBe('E_DENIED');
    expect(err.message).toContain(`${reg.host}/auth/ro`);
    expect(err.hint).toContain(USER);
    expectNoSecrets(err);
  });
});
