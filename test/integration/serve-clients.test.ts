// `ferry serve` pulled by the real clients a site points at it: skopeo (copy --all of every
// image and the multi-arch index), podman pull, containerd's ctr pull, docker-registry
// in proxy (pull-through cache) mode in front of it, and `skopeo sync` from it into an
// empty registry (what Harbor's pull-based replication does). Then load: concurrent
// pullers of every image, with a 32 MiB layer, all digests right, the server's peak RSS
// measured (VmHWM); and a graceful stop that finishes the response in flight.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request, Agent } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainerd, type ContainerdHandle } from '../support/containerd.js';
import { startDaemon } from '../support/daemon.js';
import { makeImage, makeStreamLayer, type Image, type Index } from '../support/images.js';
import { startPodman, type PodmanHandle } from '../support/podman.js';
import { pushArtifact } from '../support/push.js';
import { freePort, REGISTRY_BIN, startRegistry } from '../support/registry.js';
import { startServe, type ServeHandle } from '../support/serve.js';
import { skopeo, skopeoInspectRaw, skopeoOk } from '../support/skopeo.js';
import { makeTempDir } from '../support/tmp.js';
import { validateDirImage, validateRegistryImage } from '../support/validate.js';
import { type CliEnv, entry, expectationsOf, ferryOk, startCliEnv } from './cli-fixture.js';

let env: CliEnv;
let serve: ServeHandle;
let big: Image;
/** Every image to pull: the corpus plus the big-layer image. */
let wanted: { repo: string; ref: string; digest: string }[];

beforeAll(async () => {
  env = await startCliEnv(0x5e7c);
  big = makeImage({ layers: [await makeStreamLayer({ seed: 0x5e7c, size: 32 * 1024 * 1024, compressible: false })], mediaTypes: 'oci', labels: { name: 'big' } });
  await pushArtifact(env.reg.url, 'load/big', big, ['1']);
  const bundle = env.path('rel.tar');
  await ferryOk(['export', ...env.corpus.hostRefs, `${env.corpus.host}/load/big:1`, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  serve = await startServe([bundle, '--quiet', '--cache', env.path('serve-cache')]);
  wanted = [...expectationsOf(env.corpus), { repo: 'load/big', ref: '1', digest: big.digest }];
}, 180_000);
afterAll(async () => {
  await serve?.stop();
  await env?.stop();
});

const refOf = (host: string, x: { repo: string; ref: string }) => `${host}/${x.repo}${x.ref.startsWith('sha256:') ? '@' : ':'}${x.ref}`;

describe('ferry serve and the real clients', () => {
  it('skopeo copy --all of every image (the multi-arch index whole) into dir: trees that hold exactly the source digests', async () => {
    for (const x of wanted) {
      const dir = env.path('skopeo-dir');
      await skopeoOk(['copy', '--all', '--src-tls-verify=false', `docker://${refOf(serve.host, x)}`, `dir:${dir}`]);
      const walked = await validateDirImage(dir, { expectDigest: x.digest });
      expect(walked.digest, refOf(serve.host, x)).toBe(x.digest);
    }
  });

  it('podman pull and ctr pull --plain-http pull images and the index with their source digests', async () => {
    const podman: PodmanHandle = await startPodman();
    let containerd: ContainerdHandle | undefined;
    try {
      containerd = await startContainerd();
      const web = entry(env.corpus, 'apps/web');
      const multi = entry(env.corpus, 'multi/arch');
      for (const e of [web, multi]) {
        const ref = `${serve.host}/${e.repo}:${e.tags[0]}`;
        await podman.ok(['pull', '--tls-verify=false', `docker://${ref}`]);
        await containerd.ctrOk(['images', 'pull', '--plain-http', ref], { namespace: 'serve' });
      }
      const pulled = await podman.images();
      for (const e of [web, multi]) expect(pulled.some((i) => i.repoDigests.includes(`${serve.host}/${e.repo}@${e.digest}`)), e.repo).toBe(true);
      const amd = (multi.artifact as Index).manifests.find((m) => m.platform.architecture === 'amd64')!;
      expect(pulled.some((i) => `sha256:${i.id}` === amd.config.digest)).toBe(true);
      const ctr = new Map((await containerd.images('serve')).map((i) => [i.name, i.digest]));
      expect(ctr).toEqual(new Map([web, multi].map((e) => [`${serve.host}/${e.repo}:${e.tags[0]}`, e.digest])));
    } finally {
      await containerd?.stop();
      await podman.stop();
    }
  }, 180_000);

  it('docker-registry in proxy (pull-through cache) mode in front of it serves every image with its digest', async () => {
    const dir = makeTempDir('ferry-proxy-');
    try {
      const port = await freePort();
      const config = join(dir.path, 'config.yml');
      mkdirSync(join(dir.path, 'storage'));
      writeFileSync(config, [
        'version: 0.1', 'log:', '  level: warn', 'storage:', '  filesystem:', `    rootdirectory: ${JSON.stringify(join(dir.path, 'storage'))}`,
        'http:', `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`, 'proxy:', `  remoteurl: ${JSON.stringify(serve.url)}`, '',
      ].join('\n'));
      const proxy = await startDaemon('docker-registry (proxy)', REGISTRY_BIN, ['serve', config], {
        logFile: join(dir.path, 'registry.log'),
        ready: () => new Promise((resolve) => {
          request(`http://127.0.0.1:${port}/v2/`, (res) => {
            res.resume();
            resolve(res.statusCode === 200);
          }).on('error', () => resolve(false)).end();
        }),
      });
      try {
        for (const x of wanted) {
          const walked = await validateRegistryImage(`http://127.0.0.1:${port}`, x.repo, x.ref);
          expect(walked.digest, `${x.repo} ${x.ref}\n${proxy.logTail(10)}`).toBe(x.digest);
        }
      } finally {
        await proxy.stop();
      }
    } finally {
      await dir.cleanup();
    }
  }, 180_000);

  it('skopeo sync --src docker --dest docker from it into an empty registry (Harbor-style pull replication): every tag with its digest', async () => {
    const dest = await startRegistry();
    try {
      const repos = [...new Set(wanted.map((x) => x.repo))];
      for (const repo of repos) {
        const slash = repo.lastIndexOf('/');
        const target = slash < 0 ? dest.host : `${dest.host}/${repo.slice(0, slash)}`;
        await skopeoOk(['sync', '--all', '--src', 'docker', '--dest', 'docker', '--src-tls-verify=false', '--dest-tls-verify=false', `${serve.host}/${repo}`, target]);
      }
      for (const x of wanted.filter((w) => !w.ref.startsWith('sha256:'))) {
        const got = await skopeoInspectRaw(refOf(dest.host, x));
        expect(got.digest, `${x.repo}:${x.ref}`).toBe(x.digest);
        await validateRegistryImage(dest.url, x.repo, x.ref);
      }
    } finally {
      await dest.stop();
    }
  }, 180_000);
});

/** One puller: every image, manifests and blobs, each blob hashed; over one keep-alive connection pool. */
async function pullEverything(url: string, agent: Agent): Promise<number> {
  let bytes = 0;
  const fetch = (path: string, accept?: string): Promise<Buffer> => new Promise((resolve, reject) => {
    request(new URL(path, url), { agent, headers: accept ? { Accept: accept } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    }).on('error', reject).end();
  });
  const blobDigest = (path: string): Promise<string> => new Promise((resolve, reject) => {
    request(new URL(path, url), { agent }, (res) => {
      const h = createHash('sha256');
      res.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      res.on('end', () => (res.statusCode === 200 && res.complete ? resolve(`sha256:${h.digest('hex')}`) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    }).on('error', reject).end();
  });
  const accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json';
  const visit = async (repo: string, ref: string, expect?: string): Promise<void> => {
    const body = await fetch(`/v2/${repo}/manifests/${ref}`, accept);
    const d = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (expect !== undefined && d !== expect) throw new Error(`${repo}@${ref}: manifest hashes to ${d}`);
    const m = JSON.parse(body.toString('utf8')) as { manifests?: { digest: string }[]; config?: { digest: string }; layers?: { digest: string }[] };
    for (const c of m.manifests ?? []) await visit(repo, c.digest, c.digest);
    for (const b of [...(m.config ? [m.config] : []), ...(m.layers ?? [])]) {
      const got = await blobDigest(`/v2/${repo}/blobs/${b.digest}`);
      if (got !== b.digest) throw new Error(`${repo}: blob ${b.digest} hashes to ${got}`);
    }
  };
  for (const x of wanted) await visit(x.repo, x.ref, x.digest);
  return bytes;
}

describe('ferry serve under load', () => {
  it('16 concurrent pullers plus 4 skopeo copies, each of every image: every digest right, peak RSS under 200 MiB', async () => {
    const N = 16;
    const agents = Array.from({ length: N }, () => new Agent({ keepAlive: true, maxSockets: 2 }));
    const copies = Array.from({ length: 4 }, async (_, i) => {
      const dir = env.path(`load-skopeo-${i}`);
      const r = await skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${serve.host}/load/big:1`, `dir:${dir}`]);
      if (r.code !== 0) throw new Error(r.stderr);
      return (await validateDirImage(dir, { expectDigest: big.digest })).digest;
    });
    try {
      const bytes = await Promise.all(agents.map((a) => pullEverything(serve.url, a)));
      expect(await Promise.all(copies)).toEqual(Array(4).fill(big.digest));
      expect(bytes.every((b) => b >= 32 * 1024 * 1024)).toBe(true);
    } finally {
      for (const a of agents) a.destroy();
    }
    const peak = serve.peakRss();
    if (process.env['FERRY_ROBUSTNESS_REPORT'] === '1') process.stderr.write(`serve peak RSS under load: ${(peak / 2 ** 20).toFixed(0)} MiB\n`);
    expect(peak).toBeLessThan(200 * 1024 * 1024);
  }, 300_000);

  it('clients that go away mid-blob leave nothing broken: the next pulls are whole and the bundle is still the one open file (regression: a destroyed fs.ReadStream closed the shared descriptor)', async () => {
    const layer = big.layers[0]!;
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = request(new URL(`/v2/load/big/blobs/${layer.digest}`, serve.url), { agent: false, headers: i % 2 ? { Range: 'bytes=1000-' } : {} }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => resolve());
        req.on('timeout', () => reject(new Error('timeout')));
        req.end();
      });
    }
    const agent = new Agent({ keepAlive: true });
    try {
      expect(await pullEverything(serve.url, agent)).toBeGreaterThan(32 * 1024 * 1024);
    } finally {
      agent.destroy();
    }
    expect(serve.openFiles()).toEqual([serve.started.bundles![0]!.files[0]!.path]);
  }, 120_000);

  it('SIGTERM: stops accepting, finishes the response in flight, exits 0', async () => {
    const s = await startServe([serve.started.bundles![0]!.files[0]!.path, '--quiet', '--cache', env.path('serve-cache')]);
    const layer = big.layers[0]!;
    const body = await new Promise<{ digest: string; complete: boolean; refusedMeanwhile: boolean }>((resolve, reject) => {
      request(new URL(`/v2/load/big/blobs/${layer.digest}`, s.url), { agent: false }, (res) => {
        const h = createHash('sha256');
        let refusedMeanwhile = false;
        res.once('data', (c: Buffer) => {
          h.update(c);
          // Hold the response open, stop the server, wait until it refuses new connections, then read the rest.
          res.pause();
          s.child.kill('SIGTERM');
          const probe = (): void => {
            const sock = connect(Number(s.host.split(':')[1]), '127.0.0.1');
            sock.on('connect', () => {
              sock.destroy();
              setTimeout(probe, 50);
            });
            sock.on('error', () => {
              refusedMeanwhile = true;
              res.on('data', (more: Buffer) => h.update(more));
              res.resume();
            });
          };
          probe();
        });
        res.on('end', () => resolve({ digest: `sha256:${h.digest('hex')}`, complete: res.complete, refusedMeanwhile }));
        res.on('error', reject);
      }).on('error', reject).end();
    });
    expect(body).toEqual({ digest: layer.digest, complete: true, refusedMeanwhile: true });
    const r = await s.exited;
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stderr.slice(r.stderr.indexOf('{'))).requests).toBe(1);
  }, 120_000);
});
