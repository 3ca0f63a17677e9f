// Proves the test harness against the real peers: what the generator makes and the push
// client uploads is what docker-registry serves and what skopeo reads back.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildCorpus, sampleCorpus, type PushedCorpus } from '../support/corpus.js';
import { clientFor, RegistryClient, targetOf } from '../support/http.js';
import { layerStream, makeImage, makeLayer, makeStreamLayer, MT, Rng, type Layer } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeo, skopeoCopyToDir, skopeoInspectDigest, skopeoInspectRaw, tlsFlags } from '../support/skopeo.js';
import { startSshd, type SshdHandle } from '../support/sshd.js';
import { makeTempDir } from '../support/tmp.js';
import { Client as SshClient } from 'ssh2';
import { validateDirImage, validateRegistryImage } from '../support/validate.js';

async function sha256OfStream(s: AsyncIterable<Buffer>): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of s) {
    h.update(c);
    size += c.length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; wwwAuth: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, wwwAuth: res.headers['www-authenticate'] });
    });
    req.on('error', reject);
    req.end();
  });
}

const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

describe('image generator', () => {
  test('is deterministic per seed and different across seeds', async () => {
    const a = await buildCorpus(11);
    const b = await buildCorpus(11);
    const c = await buildCorpus(12);
    expect([...a.blobs.keys()]).toEqual([...b.blobs.keys()]);
    expect([...a.manifests.keys()]).toEqual([...b.manifests.keys()]);
    for (const d of a.blobs.keys()) expect(c.blobs.has(d)).toBe(false);
    expect(a.totalBytes).toBeLessThan(5_000_000);
  });

  test('layers are gzip tars whose diff_id is the sha256 of the tar, and mix compressible and random content', async () => {
    const rng = new Rng(3);
    const text = await makeLayer(rng, { size: 100_000, compressible: true });
    const rand = await makeLayer(rng, { size: 100_000, compressible: false });
    for (const l of [text, rand]) {
      expect(l.digest).toBe(`sha256:${createHash('sha256').update(l.bytes!).digest('hex')}`);
      expect(l.size).toBe(l.bytes!.length);
      const unz = await sha256OfStream(l.open().pipe(createGunzip()));
      expect(unz).toEqual({ digest: l.diffId, size: l.uncompressedSize });
    }
    expect(text.size).toBeLessThan(40_000);
    expect(rand.size).toBeGreaterThan(100_000);
    const img = makeImage({ layers: [text, rand], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    const config = JSON.parse(img.config.bytes.toString()) as { rootfs: { diff_ids: string[] }; architecture: string; variant: string; history: unknown[] };
    expect(config.rootfs.diff_ids).toEqual([text.diffId, rand.diffId]);
    expect(config.architecture).toBe('arm64');
    expect(config.variant).toBe('v8');
    expect(config.history).toHaveLength(2);
    const manifest = JSON.parse(img.bytes.toString()) as { mediaType: string; layers: Array<{ mediaType: string }> };
    expect(manifest.mediaType).toBe(MT.dockerManifest);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual([MT.dockerLayerGzip, MT.dockerLayerGzip]);
  });

  test('streamed layers regenerate the same bytes on every open()', async () => {
    const l = await makeStreamLayer({ seed: 99, size: 3_000_000, compressible: 'mixed' });
    expect(l.bytes).toBeUndefined();
    expect(await sha256OfStream(l.open())).toEqual({ digest: l.digest, size: l.size });
    expect(await sha256OfStream(layerStream(l.spec).pipe(createGunzip()))).toEqual({ digest: l.diffId, size: l.uncompressedSize });
  });
});

/** The checks every auth mode must pass: registry walk, skopeo inspect (digest + raw bytes), skopeo copy to dir:. */
async function checkCorpusReadBack(reg: RegistryHandle, corpus: PushedCorpus): Promise<void> {
  const target = targetOf(reg);
  const client = new RegistryClient(target);
  const seen = new Set<string>();
  for (const e of corpus.entries) {
    const refs = e.tags.length > 0 ? e.tags : [e.digest];
    for (const ref of refs) {
      const walked = await validateRegistryImage(client, e.repo, ref);
      expect(walked.digest).toBe(e.digest);
      walked.digests.forEach((d) => seen.add(d));
    }
  }
  expect(seen).toEqual(new Set([...corpus.blobs.keys(), ...corpus.manifests.keys()]));
  // Every blob is stored once, in distribution's layout.
  for (const d of [...corpus.blobs.keys(), ...corpus.manifests.keys()]) {
    const hex = d.slice(7);
    expect(existsSync(join(reg.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'))).toBe(true);
  }
  const tmp = makeTempDir('ferry-support-dir-');
  try {
    for (const [i, e] of corpus.entries.entries()) {
      const ref = `${corpus.host}/${e.refs[0]!}`;
      expect(await skopeoInspectDigest(ref, target)).toBe(e.digest);
      const raw = await skopeoInspectRaw(ref, target);
      expect(raw.bytes.equals(e.artifact.bytes)).toBe(true);
      const dir = join(tmp.path, `img-${i}`);
      await skopeoCopyToDir(ref, dir, target);
      const fromDir = await validateDirImage(dir, { expectDigest: e.digest });
      const fromReg = await validateRegistryImage(client, e.repo, e.digest);
      expect(fromDir.digests).toEqual(fromReg.digests);
    }
  } finally {
    await tmp.cleanup();
  }
}

describe('docker-registry without auth', () => {
  let reg: RegistryHandle;
  let corpus: PushedCorpus;
  beforeAll(async () => {
    reg = await startRegistry();
    corpus = await sampleCorpus(reg.url, 2024);
  });
  afterAll(async () => reg?.stop());

  test('serves exactly the corpus, and skopeo reads the same digests and bytes', async () => {
    expect(reg.host).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(corpus.refs).toContain('a/b/c:stable');
    expect(corpus.refs.filter((r) => r.startsWith('library/base-os:'))).toHaveLength(2);
    expect(corpus.refs.some((r) => /^apps\/web@sha256:[a-f0-9]{64}$/.test(r))).toBe(true);
    const types = new Set(corpus.entries.map((e) => e.mediaType));
    expect(types).toEqual(new Set([MT.dockerManifest, MT.ociManifest, MT.ociIndex, MT.dockerList]));
    await checkCorpusReadBack(reg, corpus);
  });

  test('the digest-only image has no tag', async () => {
    const r = await skopeo(['list-tags', ...tlsFlags(), `docker://${reg.host}/apps/web`]);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { Tags: string[] }).Tags).toEqual(['v1']);
  });

  test('the validators notice missing and corrupted blobs', async () => {
    const layer = await makeLayer(new Rng(5), { size: 10_000, compressible: false });
    const img = makeImage({ layers: [layer], mediaTypes: 'oci' });
    const c = clientFor(reg.url);
    await pushArtifact(c, 'holes/missing', img, ['t']);
    await pushArtifact(c, 'holes/corrupt', img, ['t']);
    expect((await validateRegistryImage(c, 'holes/missing', 't')).blobs.size).toBe(2);
    const tmp = makeTempDir('ferry-support-holes-');
    try {
      const dir = join(tmp.path, 'd');
      await skopeoCopyToDir(`${reg.host}/holes/corrupt:t`, dir);
      await validateDirImage(dir);
      const blobFile = join(dir, layer.digest.slice(7));
      const bytes = await readFile(blobFile);
      bytes[100] = (bytes[100]! + 1) % 256;
      await writeFile(blobFile, bytes);
      await expect(validateDirImage(dir)).rejects.toThrow(new RegExp(`blob ${layer.digest} hashes to`));
      await rm(blobFile);
      await expect(validateDirImage(dir)).rejects.toThrow(new RegExp(`blob ${layer.digest} missing`));
    } finally {
      await tmp.cleanup();
    }
    // Deleting the blob from one repository unlinks it there only.
    expect((await c.request('DELETE', `/v2/holes/missing/blobs/${layer.digest}`, { repo: 'holes/missing', actions: '*' })).status).toBe(202);
    await expect(validateRegistryImage(c, 'holes/missing', 't')).rejects.toThrow(new RegExp(`blob ${layer.digest} missing`));
    // Same size, one byte different, straight in the registry's storage.
    const hex = layer.digest.slice(7);
    const data = join(reg.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const stored = await readFile(data);
    stored[0] = stored[0]! ^ 0xff;
    await writeFile(data, stored);
    await expect(validateRegistryImage(c, 'holes/corrupt', 't')).rejects.toThrow(new RegExp(`blob ${layer.digest} hashes to`));
  });

  test('streams a layer that is never held in memory', async () => {
    const big: Layer = await makeStreamLayer({ seed: 7, size: 24_000_000, compressible: 'mixed' });
    const img = makeImage({ layers: [big], mediaTypes: 'docker' });
    await pushArtifact(reg.url, 'big/one', img, ['latest']);
    const walked = await validateRegistryImage(reg.url, 'big/one', 'latest');
    expect(walked.blobs).toEqual(new Set([img.config.digest, big.digest]));
    expect(await skopeoInspectDigest(`${reg.host}/big/one:latest`)).toBe(img.digest);
  });

  test('a restart on the same storage keeps the images', async () => {
    const storage = makeTempDir('ferry-support-storage-');
    try {
      const r1 = await startRegistry({ storageDir: storage.path });
      const small = await sampleCorpus(r1.url, 1);
      await r1.stop();
      const r2 = await startRegistry({ storageDir: storage.path });
      try {
        const e = small.entries[0]!;
        expect((await validateRegistryImage(r2.url, e.repo, e.tags[0]!)).digest).toBe(e.digest);
      } finally {
        await r2.stop();
      }
    } finally {
      await storage.cleanup();
    }
  });

  test('a missing registry binary fails with an install hint', async () => {
    const old = process.env['FERRY_TEST_REGISTRY_BIN'];
    process.env['FERRY_TEST_REGISTRY_BIN'] = '/nonexistent/docker-registry';
    try {
      await expect(startRegistry()).rejects.toThrow(/apt-get install docker-registry/);
    } finally {
      if (old === undefined) delete process.env['FERRY_TEST_REGISTRY_BIN'];
      else process.env['FERRY_TEST_REGISTRY_BIN'] = old;
    }
  });
});

describe('docker-registry with htpasswd auth', () => {
  let reg: RegistryHandle;
  let corpus: PushedCorpus;
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'htpasswd', users: { alice: 'wonder land', bob: 'b0b' } });
    corpus = await sampleCorpus(targetOf(reg, 'alice'), 77);
  });
  afterAll(async () => reg?.stop());

  test('anonymous and wrong passwords get 401, right ones 200', async () => {
    expect((await get(`${reg.url}/v2/`)).status).toBe(401);
    expect((await get(`${reg.url}/v2/`, { Authorization: basic('alice', 'wrong') })).status).toBe(401);
    expect((await get(`${reg.url}/v2/`, { Authorization: basic('nobody', 'wonder land') })).status).toBe(401);
    expect((await get(`${reg.url}/v2/`, { Authorization: basic('alice', 'wonder land') })).status).toBe(200);
    expect((await get(`${reg.url}/v2/`, { Authorization: basic('bob', 'b0b') })).status).toBe(200);
    const r = await skopeo(['inspect', ...tlsFlags({ url: reg.url, username: 'alice', password: 'nope' }), `docker://${corpus.hostRefs[0]!}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unauthorized|authentication required|401/i);
  });

  test('corpus reads back through the registry and skopeo', async () => {
    await checkCorpusReadBack(reg, corpus);
  });
});

describe('docker-registry with Harbor-style token auth', () => {
  let reg: RegistryHandle;
  let corpus: PushedCorpus;
  beforeAll(async () => {
    reg = await startRegistry({
      auth: 'token',
      users: { admin: 'Harbor12345', reader: 'read-only' },
      tokenAccess: (user, requested) => {
        if (user === 'admin') return requested;
        if (user === 'reader') return requested.filter((s) => s.type === 'repository' && s.name === 'a/b/c').map((s) => ({ ...s, actions: s.actions.filter((a) => a === 'pull') }));
        return [];
      },
    });
    corpus = await sampleCorpus(targetOf(reg, 'admin'), 3);
  });
  afterAll(async () => reg?.stop());

  test('challenges with Bearer realm and service, and the issuer rejects wrong passwords', async () => {
    const ch = await get(`${reg.url}/v2/`);
    expect(ch.status).toBe(401);
    expect(ch.wwwAuth).toContain(`Bearer realm="${reg.issuer!.realm}"`);
    expect(ch.wwwAuth).toContain(`service="${reg.issuer!.service}"`);
    const before = reg.issuer!.requests;
    const bad = await get(`${reg.issuer!.realm}?service=${reg.issuer!.service}&scope=repository:a/b/c:pull`, { Authorization: basic('admin', 'wrong') });
    expect(bad.status).toBe(401);
    expect(reg.issuer!.requests).toBe(before + 1);
    const r = await skopeo(['inspect', ...tlsFlags({ url: reg.url, username: 'admin', password: 'wrong' }), `docker://${corpus.hostRefs[0]!}`]);
    expect(r.code).not.toBe(0);
  });

  test('corpus reads back through the registry and skopeo', async () => {
    await checkCorpusReadBack(reg, corpus);
  });

  test('grants only what tokenAccess allows', async () => {
    const reader = new RegistryClient(targetOf(reg, 'reader'));
    const abc = corpus.entries.find((e) => e.repo === 'a/b/c')!;
    expect((await validateRegistryImage(reader, 'a/b/c', 'stable')).digest).toBe(abc.digest);
    const last = reg.issuer!.history.at(-1)!;
    expect(last.user).toBe('reader');
    expect(last.service).toBe(reg.issuer!.service);
    expect(last.granted).toEqual([{ type: 'repository', name: 'a/b/c', actions: ['pull'] }]);
    // No pull on another repository, no push anywhere.
    expect((await reader.request('GET', '/v2/apps/web/manifests/v1', { repo: 'apps/web' })).status).toBe(401);
    const up = await reader.request('POST', '/v2/a/b/c/blobs/uploads/', { repo: 'a/b/c', body: Buffer.alloc(0) });
    expect(up.status).toBe(401);
    // Anonymous: a token with no access.
    const anon = new RegistryClient({ url: reg.url });
    expect((await anon.request('GET', '/v2/a/b/c/manifests/stable', { repo: 'a/b/c' })).status).toBe(401);
    expect(reg.issuer!.history.at(-1)!.user).toBeUndefined();
    expect(reg.issuer!.history.at(-1)!.granted).toEqual([]);
  });

  test('a client reusing its token does not go back to the issuer', async () => {
    const admin = new RegistryClient(targetOf(reg, 'admin'));
    const before = reg.issuer!.requests;
    await validateRegistryImage(admin, 'multi/arch', '1.0');
    await validateRegistryImage(admin, 'multi/arch', '1.0');
    expect(reg.issuer!.requests - before).toBe(1);
    expect(admin.tokenFetches).toBe(1);
  });
});

describe('sshd launcher', () => {
  const sshArgs = (h: SshdHandle, key: string): string[] => [
    '-i', key, '-p', String(h.port),
    '-o', `UserKnownHostsFile=${h.knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes',
    '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-F', '/dev/null',
    `${h.user}@${h.host}`,
  ];
  const ssh = (args: string[]): { code: number; out: string } => {
    const r = spawnSync('/usr/bin/ssh', args, { encoding: 'utf8', timeout: 30_000 });
    return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
  };
  const forwardTo = (h: SshdHandle, port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const c = new SshClient();
      c.on('ready', () => {
        c.forwardOut('127.0.0.1', 0, '127.0.0.1', port, (err, stream) => {
          if (err) {
            c.end();
            reject(err);
            return;
          }
          stream.end('GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n');
          let text = '';
          stream.on('data', (d: Buffer) => (text += d.toString()));
          stream.on('close', () => {
            c.end();
            resolve(Number(/^HTTP\/1\.\d (\d{3})/.exec(text)?.[1] ?? 0));
          });
        });
      });
      c.on('error', reject);
      c.connect({ host: h.host, port: h.port, username: h.user, privateKey: readFileSync(h.keyPath) });
    });

  test('accepts the user key against known_hosts, refuses other keys, and tunnels to a registry', async () => {
    const h = await startSshd();
    const reg = await startRegistry();
    try {
      const ok = ssh([...sshArgs(h, h.keyPath), 'echo', 'ferry-ok']);
      expect(ok.out).toContain('ferry-ok');
      expect(ok.code).toBe(0);
      expect(ssh([...sshArgs(h, h.otherKeyPath), 'true']).code).not.toBe(0);
      expect(await forwardTo(h, reg.port)).toBe(200);
    } finally {
      await reg.stop();
      await h.stop();
    }
  });

  test('refuses tunnels when TCP forwarding is disabled, and known_hosts pins the host key', async () => {
    const h = await startSshd({ allowTcpForwarding: false });
    const other = await startSshd();
    try {
      await expect(forwardTo(h, h.port)).rejects.toThrow();
      // other's host key is not in h's known_hosts.
      const mismatch = ssh([...sshArgs(other, other.keyPath).map((a) => (a === `UserKnownHostsFile=${other.knownHostsPath}` ? `UserKnownHostsFile=${h.knownHostsPath}` : a)), 'true']);
      expect(mismatch.code).not.toBe(0);
    } finally {
      await other.stop();
      await h.stop();
    }
  });
});
