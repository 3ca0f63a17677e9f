// Faults between ferry and a real registry, injected by a loopback proxy: altered
// manifests, 5xx/429 answers and dropped connections, and TLS trust.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestFromBytes } from '../../src/oci/manifest.js';
import { digestStream, parseDigest } from '../../src/oci/digest.js';
import { openRegistryDestination, openRegistrySource, type RegistryOptions } from '../../src/transports/registry/open.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir } from '../support/tmp.js';
import { type Proxy, type ProxyHooks, startProxy } from './registry-proxy.js';
import { rejection } from '../support/rejection.js';

let reg: RegistryHandle;
let image: Image;
const proxies: Proxy[] = [];

async function through(hooks: ProxyHooks, extra: Partial<RegistryOptions> = {}) {
  const proxy = await startProxy(reg.url, hooks);
  proxies.push(proxy);
  return { proxy, src: openRegistrySource({ registry: proxy.host, plainHttp: true, ...extra }), dst: openRegistryDestination({ registry: proxy.host, plainHttp: true, ...extra }) };
}

beforeAll(async () => {
  reg = await startRegistry();
  const rng = new Rng(0xfa17);
  image = makeImage({ layers: [await makeLayer(rng, { size: 30_000 })], mediaTypes: 'oci' });
  await pushArtifact(reg.url, 'faults/app', image, ['v1']);
});

afterAll(async () => {
  for (const p of proxies) await p.stop();
  await reg?.stop();
});

const isManifestGet = (method?: string, url?: string) => method === 'GET' && (url ?? '').includes('/manifests/');
const addSpace = (body: Buffer) => Buffer.concat([body, Buffer.from(' ')]);

describe('a manifest that does not match its digest', () => {
  it('is E_DIGEST_MISMATCH naming image and both digests when pulled by digest', async () => {
    const { src } = await through({ rewrite: (req) => (isManifestGet(req.method, req.url) ? addSpace : undefined) });
    const err = await rejection(src.getManifest('faults/app', image.digest));
    await src.close();
    expect(err.code).toBe('E_DIGEST_MISMATCH');
    expect(err.message).toContain(`/faults/app@${image.digest}`);
    expect(err.message).toContain(manifestFromBytes(addSpace(image.bytes), image.mediaType).digest);
  });

  it('is E_DIGEST_MISMATCH against Docker-Content-Digest when pulled by tag', async () => {
    const { src } = await through({ rewrite: (req) => (isManifestGet(req.method, req.url) ? addSpace : undefined) });
    const err = await rejection(src.getManifest('faults/app', 'v1'));
    await src.close();
    expect(err.code).toBe('E_DIGEST_MISMATCH');
    expect(err.message).toContain('/faults/app:v1');
    expect(err.message).toContain(image.digest);
  });
});

describe('retries', () => {
  it('retries a GET answered 500, then 503, and succeeds', async () => {
    const { proxy, src } = await through({
      inject: (req, n) => (isManifestGet(req.method, req.url) && n <= 2 ? { status: n === 1 ? 500 : 503, body: '{"errors":[{"code":"UNKNOWN","message":"boom"}]}' } : undefined),
    });
    expect((await src.getManifest('faults/app', 'v1')).digest).toBe(image.digest);
    await src.close();
    expect(proxy.count('GET', '/v2/faults/app/manifests/v1')).toBe(3);
  });

  it('honours Retry-After on 429', async () => {
    const layer = image.layers[0]!;
    const { proxy, src } = await through({
      inject: (req, n) => (req.method === 'GET' && req.url?.includes('/blobs/') && n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : undefined),
    });
    const started = Date.now();
    const got = await digestStream(await src.getBlob('faults/app', { mediaType: layer.mediaType, digest: parseDigest(layer.digest), size: layer.size }));
    await src.close();
    expect(got.digest).toBe(layer.digest);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(proxy.count('GET', `/v2/faults/app/blobs/${layer.digest}`)).toBe(2);
  });

  it('retries a dropped connection', async () => {
    const { proxy, src } = await through({ inject: (req, n) => (isManifestGet(req.method, req.url) && n === 1 ? 'reset' : undefined) });
    expect((await src.getManifest('faults/app', 'v1')).digest).toBe(image.digest);
    await src.close();
    expect(proxy.count('GET', '/v2/faults/app/manifests/v1')).toBe(2);
  });

  it('gives up after a bounded number of attempts with E_REGISTRY carrying the registry message', async () => {
    const { proxy, src } = await through({
      inject: (req) => (isManifestGet(req.method, req.url) ? { status: 503, body: '{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}' } : undefined),
    });
    const err = await rejection(src.getManifest('faults/app', 'v1'));
    await src.close();
    expect(err.code).toBe('E_REGISTRY');
    expect(err.message).toContain('maintenance');
    expect(err.message).toContain('/faults/app:v1');
    expect(proxy.count('GET', '/v2/faults/app/manifests/v1')).toBe(5);
  });

  it('never re-sends a streamed blob body, and cancels the upload', async () => {
    const config = image.config;
    const { proxy, dst } = await through({ inject: (req) => (req.method === 'PUT' && req.url?.includes('/blobs/uploads/') ? { status: 500 } : undefined) });
    const err = await rejection(dst.putBlob('faults/copy', { mediaType: config.mediaType, digest: parseDigest(config.digest), size: config.size }, config.open()));
    await dst.close();
    expect(err.code).toBe('E_REGISTRY');
    expect(err.message).toContain(config.digest);
    expect(proxy.count('PUT', '/v2/faults/copy/blobs/uploads/')).toBe(1);
    expect(proxy.count('DELETE', '/v2/faults/copy/blobs/uploads/')).toBe(1);
  });
});

describe('TLS', () => {
  const dir = makeTempDir('ferry-tls-');
  let tlsProxy: Proxy;
  beforeAll(async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir.path, 'key.pem'), '-out', join(dir.path, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    tlsProxy = await startProxy(reg.url, { tls: { key: readFileSync(join(dir.path, 'key.pem'), 'utf8'), cert: readFileSync(join(dir.path, 'cert.pem'), 'utf8') } });
    proxies.push(tlsProxy);
  });
  afterAll(() => dir.cleanup());

  it('refuses an untrusted certificate with E_TLS and a --ca-file/--insecure hint', async () => {
    const src = openRegistrySource({ registry: tlsProxy.host });
    const err = await rejection(src.getManifest('faults/app', 'v1'));
    await src.close();
    expect(err.code).toBe('E_TLS');
    expect(err.message).toContain(tlsProxy.host);
    expect(err.hint).toMatch(/--ca-file/);
    expect(err.hint).toMatch(/--insecure/);
  });

  it('trusts the certificate given by caFile, or any with insecure', async () => {
    for (const extra of [{ caFile: join(dir.path, 'cert.pem') }, { insecure: true }]) {
      const src = openRegistrySource({ registry: tlsProxy.host, ...extra });
      expect((await src.getManifest('faults/app', 'v1')).digest).toBe(image.digest);
      await src.close();
    }
  });
});
