// ferry's outputs read by the real consumers: `import --to docker-archive` loaded by
// `podman load`, `docker load` (a private dockerd) and `ctr images import` (a private
// containerd), from a bundle that also carries what a real release carries besides
// images: cosign signatures and attestations, an OCI 1.1 SBOM referrer with its
// fallback index, a Helm chart, an artifactType artifact, and an image built by buildah.
// Loaded names must be the source's full names and image IDs the source's config
// digests. Also `import --to oci` read by umoci, skopeo and podman, and a registry
// layout served by docker-registry pulled by podman, ctr and docker (regression tests).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuildah, type BuildahHandle } from '../support/buildah.js';
import { runFerry } from '../support/cli.js';
import { startContainerd, type ContainerdHandle } from '../support/containerd.js';
import { generateCosignKeys, makeAttestation, makeSignature, makeSubjectArtifact, pushReferrer, pushTagged } from '../support/cosign.js';
import { startDockerd, type DockerdHandle } from '../support/dockerd.js';
import type { Image, Index } from '../support/images.js';
import { startPodman, type PodmanHandle } from '../support/podman.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry } from '../support/registry.js';
import { makeTempDir } from '../support/tmp.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { skopeoInspectDigest, skopeoInspectRaw, skopeoOk } from '../support/skopeo.js';
import { umociStat, umociTags } from '../support/umoci.js';
import { type CliEnv, entry, ferryOk, jsonOf, startCliEnv } from './cli-fixture.js';

interface Receipt {
  images: { origin: string; repository: string; tag?: string; digest: string; status: string; reason?: string; error?: { code: string } }[];
}
interface ErrorDoc {
  error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> };
}

let env: CliEnv;
let podman: PodmanHandle;
let dockerd: DockerdHandle;
let containerd: ContainerdHandle;
let buildah: BuildahHandle;
let bundle: string;
/** `host/repo:tag` (or `host/repo@digest`) → the config digest a loader must show for it. */
const runnable = new Map<string, string>();
/** Origins of everything in the bundle that is not a runnable image. */
const artifacts: string[] = [];
let builtDigest: string;

const q = (ref: string) => `${env.corpus.host}/${ref}`;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** An OCI manifest of arbitrary config and layer types (what Helm, oras and others push). */
function artifact(config: { mediaType: string; bytes: Buffer }, layers: { mediaType: string; bytes: Buffer }[], artifactType?: string): Image {
  const blob = (b: { mediaType: string; bytes: Buffer }) => ({ ...b, digest: sha(b.bytes), size: b.bytes.length, open: () => Readable.from([b.bytes]) });
  const c = blob(config);
  const ls = layers.map(blob);
  const d = (x: { mediaType: string; digest: string; size: number }) => ({ mediaType: x.mediaType, digest: x.digest, size: x.size });
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', ...(artifactType ? { artifactType } : {}), config: d(c), layers: ls.map(d) }));
  return { kind: 'manifest', mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes, digest: sha(bytes), size: bytes.length, platform: { os: '', architecture: '' }, config: c, layers: ls, blobs: [c, ...ls] };
}

const amd64 = (a: Image | Index): Image => (a.kind === 'index' ? a.manifests.find((m) => m.platform.architecture === 'amd64')! : a);

beforeAll(async () => {
  env = await startCliEnv(0x1a4);
  [podman, dockerd, containerd, buildah] = await Promise.all([startPodman(), startDockerd(), startContainerd(), startBuildah()]);
  for (const e of env.corpus.entries) for (const ref of e.refs) runnable.set(q(ref), amd64(e.artifact).config.digest);

  const keys = generateCosignKeys();
  const web = entry(env.corpus, 'apps/web').artifact as Image;
  const sig = makeSignature(q('apps/web'), web.digest, [keys.privateKey]);
  const att = makeAttestation(q('apps/web'), web.digest, keys.privateKey);
  await pushTagged(env.reg.url, 'apps/web', sig);
  await pushTagged(env.reg.url, 'apps/web', att);
  const sbom = makeSubjectArtifact(web, 'web');
  const refIndex = await pushReferrer(env.reg.url, 'apps/web', sbom, web.digest);
  const chart = artifact(
    { mediaType: 'application/vnd.cncf.helm.config.v1+json', bytes: Buffer.from('{"name":"web","version":"0.1.0","apiVersion":"v2"}') },
    [{ mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', bytes: gzipSync(Buffer.from('chart bytes')) }],
  );
  await pushArtifact(env.reg.url, 'charts/web', chart, ['0.1.0']);
  const policy = artifact(
    { mediaType: 'application/vnd.oci.empty.v1+json', bytes: Buffer.from('{}') },
    [{ mediaType: 'application/vnd.example.policy.v1+json', bytes: Buffer.from('{"allow":true}') }],
    'application/vnd.example.policy.v1+json',
  );
  await pushArtifact(env.reg.url, 'artifacts/policy', policy, ['1']);
  // The SBOM travels inside its referrers index (the `sha256-<hex>` fallback tag), not as an image of its own.
  artifacts.push(q(`apps/web:${sig.tag}`), q(`apps/web:${att.tag}`), q(`apps/web:sha256-${web.digest.slice(7)}`), q('charts/web:0.1.0'), q('artifacts/policy:1'));
  expect(refIndex.manifests.map((m) => m.digest)).toEqual([sbom.digest]);

  builtDigest = await buildah.buildAndPush(q('built/hello:1'), { name: 'hello.txt', content: 'hello from buildah\n' }, 'docker');
  const built = await skopeoInspectRaw(`${q('built/hello:1')}`);
  expect(built.digest).toBe(builtDigest);
  runnable.set(q('built/hello:1'), (JSON.parse(built.bytes.toString('utf8')) as { config: { digest: string } }).config.digest);

  bundle = env.path('release.tar');
  const refs = [...env.corpus.hostRefs, q('charts/web:0.1.0'), q('artifacts/policy:1'), q('built/hello:1')];
  await ferryOk(['export', ...refs, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
}, 180_000);
afterAll(async () => {
  await Promise.all([podman?.stop(), dockerd?.stop(), containerd?.stop(), buildah?.stop()]);
  await env?.stop();
});

/** Runs `ferry import BUNDLE --to docker-archive FILE` (human output) and reads its receipt. */
async function importArchive(label: string, extra: string[] = [], from = bundle): Promise<{ file: string; receipt: Receipt; stdout: string; stderr: string }> {
  const file = join(env.path(label), 'images.tar');
  const receiptFile = env.path(`${label}.receipt.json`);
  const r = await ferryOk(['import', from, '--to', 'docker-archive', file, '--receipt', receiptFile, ...extra]);
  return { file, receipt: JSON.parse(await readFile(receiptFile, 'utf8')) as Receipt, stdout: r.stdout, stderr: r.stderr };
}

async function emptyLoaders(): Promise<void> {
  await podman.ok(['rmi', '--all', '--force']);
  const ids = (await dockerd.images()).map((i) => i.id);
  if (ids.length > 0) await dockerd.dockerOk(['rmi', '--force', ...ids]);
}

/** name → config digest as containerd holds them in `namespace` (the config read from the stored manifest). */
async function ctrConfigs(namespace: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const i of await containerd.images(namespace)) {
    const m = await containerd.ctrOk(['content', 'get', i.digest], { namespace });
    out.set(i.name, (JSON.parse(m.stdout) as { config: { digest: string } }).config.digest);
  }
  return out;
}

/** The runnable images as a loader must name them after `rename` (tagged ones only; digest-only ones have no name). */
function expectedNames(rename: (name: string) => string = (n) => n): Map<string, string> {
  return new Map([...runnable].filter(([ref]) => !ref.includes('@')).map(([ref, config]) => [rename(ref), config]));
}
const configsOfDigestOnly = () => [...runnable].filter(([ref]) => ref.includes('@')).map(([, c]) => c);

describe('import --to docker-archive from a bundle with artifacts and referrers', () => {
  let plain: Awaited<ReturnType<typeof importArchive>>;
  beforeAll(async () => {
    plain = await importArchive('plain');
  });

  it('leaves out every manifest that is not a runnable image, each skipped with its reason, and exits 0', () => {
    expect(describeErrors(schemaErrors(cliSchemaRef('importReceipt'), plain.receipt))).toBe('');
    const done = plain.receipt.images.filter((i) => i.status === 'done');
    const skipped = plain.receipt.images.filter((i) => i.status === 'skipped');
    expect(done.map((i) => i.origin).sort()).toEqual([...runnable.keys()].sort());
    expect(skipped.map((i) => i.origin).sort()).toEqual([...artifacts].sort());
    for (const s of skipped) expect(s.reason, s.origin).toMatch(/^an (artifact|index of \d+ artifacts?) .*: a docker archive holds runnable images only$/);
    expect(skipped.find((s) => s.origin === q('charts/web:0.1.0'))!.reason).toContain('application/vnd.cncf.helm.config.v1+json');
    expect(skipped.find((s) => s.origin === q('artifacts/policy:1'))!.reason).toContain('artifactType "application/vnd.example.policy.v1+json"');
    expect(skipped.find((s) => s.origin.endsWith('.sig'))!.reason).toContain('application/vnd.dev.cosign.simplesigning.v1+json');
    // names keep their registry: what the loaders show is what a kubelet asks for
    for (const d of done) expect(d.repository.startsWith(`${env.corpus.host}/`), d.repository).toBe(true);
    expect(plain.stdout).toMatch(new RegExp(`^${done.length} of ${done.length + skipped.length} images imported into docker-archive .*, ${skipped.length} skipped`, 'm'));
    for (const a of artifacts) expect(plain.stdout).toContain(`skipped ${a}: an `);
  });

  it('podman load takes the whole archive: each image under its full source name with the source config digest as ID', async () => {
    await emptyLoaders();
    const r = await podman.run(['load', '-i', plain.file]);
    expect(r.code, r.stderr).toBe(0);
    const images = await podman.images();
    const byName = new Map(images.flatMap((i) => i.names.map((n) => [n, `sha256:${i.id}`] as const)));
    expect(byName).toEqual(expectedNames());
    for (const c of configsOfDigestOnly()) expect(images.some((i) => `sha256:${i.id}` === c)).toBe(true);
    expect(images).toHaveLength(new Set(runnable.values()).size);
  });

  it('docker load (dockerd 20.10) takes the whole archive: same names, IDs are the source config digests', async () => {
    await emptyLoaders();
    const r = await dockerd.docker(['load', '-i', plain.file]);
    expect(r.code, r.stderr).toBe(0);
    const images = await dockerd.images();
    expect(new Map(images.flatMap((i) => i.repoTags.map((t) => [t, i.id] as const)))).toEqual(expectedNames());
    for (const c of configsOfDigestOnly()) expect(images.some((i) => i.id === c)).toBe(true);
    expect(images).toHaveLength(new Set(runnable.values()).size);
  });

  it('ctr images import takes every image: same names, each stored manifest pointing at the source config', async () => {
    const r = await containerd.ctr(['images', 'import', plain.file], { namespace: 'plain' });
    expect(r.code, r.stderr).toBe(0);
    expect(await ctrConfigs('plain')).toEqual(expectedNames());
  });

  it('--rename maps to docker.io and to a host:port registry; each loader shows the name it was given', async () => {
    const host = env.corpus.host;
    const { file, receipt } = await importArchive('renamed', ['--rename', `${host}=docker.io`, '--rename', `${host}/apps=127.0.0.1:5941/mirror`]);
    const rename = (n: string) => (n.startsWith(`${host}/apps/`) ? n.replace(`${host}/apps/`, '127.0.0.1:5941/mirror/') : n.replace(`${host}/`, 'docker.io/'));
    expect(receipt.images.find((i) => i.origin === q('library/base-os:1.0'))!.repository).toBe('docker.io/library/base-os');
    expect(receipt.images.find((i) => i.origin === q('apps/web:v1'))!.repository).toBe('127.0.0.1:5941/mirror/web');
    const want = expectedNames(rename);
    expect(want.has('docker.io/library/base-os:1.0') && want.has('127.0.0.1:5941/mirror/web:v1')).toBe(true);

    await emptyLoaders();
    await podman.ok(['load', '-i', file]);
    expect(new Map((await podman.images()).flatMap((i) => i.names.map((n) => [n, `sha256:${i.id}`] as const)))).toEqual(want);
    await dockerd.dockerOk(['load', '-i', file]);
    // docker shows Docker Hub names in their short form; it stores them as docker.io/…
    const familiar = (n: string) => n.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
    expect(new Map((await dockerd.images()).flatMap((i) => i.repoTags.map((t) => [t, i.id] as const))))
      .toEqual(new Map([...want].map(([n, c]) => [familiar(n), c])));
    await containerd.ctrOk(['images', 'import', file], { namespace: 'renamed' });
    expect(await ctrConfigs('renamed')).toEqual(want);
  });

  it('why names are written in full: docker save writes Docker Hub names short, and podman loads those as localhost/…', async () => {
    await emptyLoaders();
    await dockerd.dockerOk(['load', '-i', plain.file]);
    await dockerd.dockerOk(['tag', q('library/base-os:1.0'), 'docker.io/library/base-os:1.0']);
    const saved = join(env.path('docker-save'), 'saved.tar');
    await mkdir(dirname(saved));
    await dockerd.dockerOk(['save', '-o', saved, 'docker.io/library/base-os:1.0']);
    await podman.ok(['rmi', '--all', '--force']);
    await podman.ok(['load', '-i', saved]);
    expect((await podman.images()).flatMap((i) => i.names)).toEqual(['localhost/base-os:1.0']);
  });

  it('a --rename target must still be a name: a host:port alone for a whole repository is refused before anything is written', async () => {
    const out = env.path('bad-rename');
    const r = await runFerry(['import', bundle, '--to', 'docker-archive', join(out, 'x.tar'), '--rename', `${q('apps/web')}=127.0.0.1:5941`, '--receipt', env.path('bad-rename.json'), '--json']);
    expect(r.code).toBe(2);
    const doc = jsonOf<ErrorDoc>(r);
    expect(doc.error.code).toBe('E_NAME_UNSAFE');
    expect(doc.error.message).toContain(q('apps/web'));
    expect(existsSync(out)).toBe(false);
  });
});

describe('import --to docker-archive: the exit status when what was asked for cannot be loaded', () => {
  it('--image selecting only signatures fails with E_UNSUPPORTED_MEDIA_TYPE (exit 6), names them, and writes nothing', async () => {
    const out = env.path('only-sigs');
    const r = await runFerry(['import', bundle, '--to', 'docker-archive', join(out, 'x.tar'), '--image', '*.sig', '--receipt', join(out, 'r.json'), '--json']);
    expect(r.code).toBe(6);
    const doc = jsonOf<ErrorDoc>(r);
    expect(describeErrors(schemaErrors(cliSchemaRef('errorDocument'), doc))).toBe('');
    expect(doc.error.code).toBe('E_UNSUPPORTED_MEDIA_TYPE');
    expect(doc.error.message).toContain('"*.sig"');
    expect(doc.error.message).toContain(artifacts[0]);
    expect(doc.error.details['skipped']).toEqual([{ image: artifacts[0], reason: expect.stringContaining('simplesigning') }]);
    expect(doc.error.hint).toMatch(/--to oci/);
    expect(existsSync(out)).toBe(false);
  });

  it('an image named with --image that cannot be loaded fails the import even when others could go', async () => {
    const out = env.path('named-chart');
    const r = await runFerry(['import', bundle, '--to', 'docker-archive', join(out, 'x.tar'), '--image', q('apps/web:v1'), '--image', q('charts/web:0.1.0'), '--receipt', join(out, 'r.json')]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('[E_UNSUPPORTED_MEDIA_TYPE]');
    expect(r.stderr).toContain(`--image "${q('charts/web:0.1.0')}"`);
    expect(r.stderr).toContain('application/vnd.cncf.helm.config.v1+json');
    expect(existsSync(out)).toBe(false);
  });

  it('a glob that also matches artifacts imports the images it matches and skips the rest (exit 0)', async () => {
    const { receipt } = await importArchive('web-glob', ['--image', `${q('apps/web')}*`]);
    expect(receipt.images.filter((i) => i.status === 'done').map((i) => i.origin).sort()).toEqual([...runnable.keys()].filter((k) => k.startsWith(q('apps/web'))).sort());
    expect(receipt.images.filter((i) => i.status === 'skipped').map((i) => i.origin).sort()).toEqual(artifacts.filter((a) => a.startsWith(q('apps/web'))).sort());
  });

  it('an index without the chosen platform fails that image before the first byte (exit 5); the rest land; a rerun without it completes', async () => {
    const dir = env.path('platform');
    const file = join(dir, 'images.tar');
    const receiptFile = join(dir, 'receipt.json');
    const r = await runFerry(['import', bundle, '--to', 'docker-archive', file, '--platform', 'linux/s390x', '--receipt', receiptFile, '--json']);
    expect(r.code).toBe(5);
    const doc = jsonOf<ErrorDoc>(r);
    expect(doc.error.code).toBe('E_NOT_FOUND');
    const failures = doc.error.details['failures'] as { image: string; message: string }[];
    expect(failures.map((f) => f.image).sort()).toEqual([q('multi/arch:1.0'), q('multi/tools:2024.1')]);
    expect(failures[0]!.message).toMatch(/no linux\/s390x image in the index \(it has linux\/amd64, linux\/arm64\/v8\)/);
    const receipt = JSON.parse(await readFile(receiptFile, 'utf8')) as Receipt;
    expect(receipt.images.filter((i) => i.status === 'failed').map((i) => i.origin).sort()).toEqual([q('multi/arch:1.0'), q('multi/tools:2024.1')]);
    expect(receipt.images.filter((i) => i.status === 'done')).toHaveLength(runnable.size - 2);
    await podman.ok(['rmi', '--all', '--force']);
    expect((await podman.run(['load', '-i', file])).code).toBe(0);

    await ferryOk(['import', bundle, '--to', 'docker-archive', file, '--receipt', receiptFile]);
    const again = JSON.parse(await readFile(receiptFile, 'utf8')) as Receipt;
    expect(again.images.filter((i) => i.status === 'done')).toHaveLength(runnable.size);
    expect((await readdir(dir)).sort()).toEqual(['images.tar', 'receipt.json']);
  });
});

describe('zstd layers in a docker archive', () => {
  it('warns that docker before 23 cannot load them; podman and containerd load the image', async () => {
    const ref = q('built/zstd:1');
    const digest = await buildah.buildAndPush(ref, { name: 'z.txt', content: 'zstd layer\n'.repeat(100) }, 'oci', 'zstd');
    const manifest = JSON.parse((await skopeoInspectRaw(ref)).bytes.toString('utf8')) as { config: { digest: string }; layers: { mediaType: string }[] };
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+zstd']);
    const zbundle = env.path('zstd.tar');
    await ferryOk(['export', `${ref}@${digest}`, '-o', zbundle, '--cache', env.path('zcache'), ...env.net, '-q', '--no-referrers']);
    const { file, stderr } = await importArchive('zstd', [], zbundle);
    expect(stderr).toContain(`warning: ${ref}@${digest}: its layers are zstd-compressed; docker before 23.0 cannot load them`);
    await podman.ok(['rmi', '--all', '--force']);
    await podman.ok(['load', '-i', file]);
    expect((await podman.images()).map((i) => `sha256:${i.id}`)).toEqual([manifest.config.digest]);
    await containerd.ctrOk(['images', 'import', file], { namespace: 'zstd' });
    expect([...(await ctrConfigs('zstd')).values()]).toEqual([manifest.config.digest]);
  });
});

describe('import --to oci read by umoci, skopeo and podman (regression)', () => {
  it('umoci lists every ref and stats the images; skopeo reads the source digests; podman pulls an image with its config', async () => {
    const layout = env.path('oci');
    await ferryOk(['import', bundle, '--to', 'oci', layout, '--receipt', env.path('oci.json')]);
    const tags = await umociTags(layout);
    for (const e of env.corpus.entries) for (const t of e.tags) expect(tags).toContain(`${e.repo}:${t}`);
    expect(tags).toContain('charts/web:0.1.0');
    expect((await umociStat(layout, 'apps/web:v1')).history).toHaveLength(2);
    // skopeo 1.9 / podman 4.3 (containers/image 5.23) only match OCI-typed entries of an OCI layout: the corpus's
    // Docker schema 2 images are in index.json byte-exact, but invisible to them (see the report, not ferry's to change).
    const ociTyped = env.corpus.entries.filter((x) => x.tags.length > 0 && x.mediaType.startsWith('application/vnd.oci.'));
    expect(ociTyped.map((e) => e.repo).sort()).toEqual(['apps/web', 'multi/arch']);
    for (const e of ociTyped) expect(await runSkopeoOci(layout, `${e.repo}:${e.tags[0]}`), e.repo).toBe(e.digest);
    // podman 4.3 names an `oci:DIR:REF` pull `localhost/DIR` (not REF), so DIR must be a valid lowercase name.
    const lower = makeTempDir('ferry-oci-', { lowercase: true });
    try {
      await cp(layout, join(lower.path, 'layout'), { recursive: true });
      await podman.ok(['rmi', '--all', '--force']);
      await podman.ok(['pull', `oci:${join(lower.path, 'layout')}:apps/web:v1`]);
      expect((await podman.images()).map((i) => `sha256:${i.id}`)).toEqual([runnable.get(q('apps/web:v1'))]);
    } finally {
      await lower.cleanup();
    }
  });
});

async function runSkopeoOci(layout: string, ref: string): Promise<string> {
  const raw = await skopeoOk(['inspect', '--raw', `oci:${layout}:${ref}`]);
  return sha(raw.stdoutBytes);
}

describe('a registry layout served by docker-registry, pulled by podman, ctr and docker (regression)', () => {
  it('each client pulls the images with their source digests and configs', async () => {
    const root = env.path('layout');
    await ferryOk(['import', bundle, '--to', 'registry-layout', root]);
    const reg = await startRegistry({ storageDir: root });
    try {
      await emptyLoaders();
      const web = entry(env.corpus, 'apps/web');
      const multi = entry(env.corpus, 'multi/arch');
      for (const e of [web, multi]) {
        const ref = `${reg.host}/${e.repo}:${e.tags[0]}`;
        expect(await skopeoInspectDigest(ref)).toBe(e.digest);
        await podman.ok(['pull', '--tls-verify=false', `docker://${ref}`]);
        await containerd.ctrOk(['images', 'pull', '--plain-http', ref], { namespace: 'layout' });
        await dockerd.dockerOk(['pull', '-q', ref]);
      }
      const config = (e: typeof web) => amd64(e.artifact).config.digest;
      const pod = await podman.images();
      for (const e of [web, multi]) {
        const img = pod.find((i) => i.names.includes(`${reg.host}/${e.repo}:${e.tags[0]}`))!;
        expect(`sha256:${img.id}`).toBe(config(e));
        expect(img.repoDigests).toContain(`${reg.host}/${e.repo}@${e.digest}`);
      }
      const ctrImages = await containerd.images('layout');
      expect(new Map(ctrImages.map((i) => [i.name, i.digest]))).toEqual(new Map([web, multi].map((e) => [`${reg.host}/${e.repo}:${e.tags[0]}`, e.digest])));
      const dock = await dockerd.images();
      for (const e of [web, multi]) {
        const img = dock.find((i) => i.repoTags.includes(`${reg.host}/${e.repo}:${e.tags[0]}`))!;
        expect(img.id).toBe(config(e));
        expect(img.repoDigests).toContain(`${reg.host}/${e.repo}@${e.digest}`);
      }
    } finally {
      await reg.stop();
    }
  });
});

describe('a raw bundle is not a docker archive (what the README says)', () => {
  // The loaders' own limits, checked because the README states them: the archive written from
  // this same bundle loads in all three (the tests above).
  it('podman load and docker load refuse a multi-image bundle; ctr import stops at its referrers index', async () => {
    const p = await podman.run(['load', '-i', bundle]);
    expect(p.code).not.toBe(0);
    expect(p.stderr).toContain('more than one image in oci');
    const d = await dockerd.docker(['load', '-i', bundle]);
    expect(d.code).not.toBe(0);
    const ctr = await containerd.ctr(['images', 'import', bundle], { namespace: 'raw' });
    expect(ctr.code).not.toBe(0);
    expect(ctr.stderr).toContain('no match for platform');
  });
});
