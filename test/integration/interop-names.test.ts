// What other tools write, read by ferry, and what ferry writes from it, read by those tools:
// each producer's output (skopeo copy oci:/dir:, skopeo sync with and without --scoped,
// buildah push oci:, umoci new/insert/config, podman save --format oci-dir and podman push
// oci:, a real docker-registry storage holding one-component repositories) goes through
// `ferry export --from KIND:DIR` into a bundle, and from it into every output ferry writes
// (the bundle itself, a registry layout served by docker-registry, a skopeo dir tree, an
// OCI layout, a docker archive). Every consumer's answer is checked against the digest the
// producer wrote, and the names against spec/bundle.md §3.2. FERRY_INTEROP_REPORT=1 prints
// the matrix.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuildah, type BuildahHandle } from '../support/buildah.js';
import { runFerry } from '../support/cli.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { startPodman, type PodmanHandle } from '../support/podman.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry } from '../support/registry.js';
import { skopeo, skopeoInspectDigest, skopeoOk, srcFlags } from '../support/skopeo.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { umoci, umociStat } from '../support/umoci.js';
import { validateDirImage, validateRegistryImage } from '../support/validate.js';
import { type CliEnv, ferryOk, jsonOf, readBundleTar, startCliEnv } from './cli-fixture.js';
import { metadataOf, readMetadata } from '../support/bundle-metadata.js';

interface Expected {
  /** The name the bundle must record (spec/bundle.md §3.2). */
  repository: string;
  tag?: string;
  /** The top manifest digest the producer wrote. */
  digest: string;
  mediaType: string;
  /** The config digest (a loader's image ID). */
  config?: string;
}

interface Producer {
  label: string;
  /** `--from` value. */
  from: string;
  images: Expected[];
}

let env: CliEnv;
let lower: TempDir;
let buildah: BuildahHandle;
let podman: PodmanHandle;
const producers: Producer[] = [];
/** producer label → bundle file. */
const bundles = new Map<string, string>();
/** "producer|output" → pass / fail text, for the report. */
const matrix = new Map<string, string>();

const OCI_TYPES = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json'];
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const isOci = (x: Expected) => OCI_TYPES.includes(x.mediaType);
/** The name an import gives an image: the registry host dropped (README "Repository names at the target"). */
const targetName = (name: string) => {
  const slash = name.indexOf('/');
  const first = slash > 0 ? name.slice(0, slash) : '';
  return first.includes('.') || first.includes(':') || first === 'localhost' ? name.slice(slash + 1) : name;
};
const refOf = (x: { repository: string; tag?: string | undefined; digest: string }, name = x.repository) => (x.tag !== undefined ? `${name}:${x.tag}` : `${name}@${x.digest}`);

/** index.json entries of an OCI layout, read without ferry: ref name → descriptor. */
async function layoutEntries(dir: string): Promise<{ ref?: string; digest: string; mediaType: string }[]> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; mediaType: string; annotations?: Record<string, string> }[] };
  return index.manifests.map((m) => ({ ...(m.annotations?.['org.opencontainers.image.ref.name'] ? { ref: m.annotations['org.opencontainers.image.ref.name'] } : {}), digest: m.digest, mediaType: m.mediaType }));
}

async function configOf(manifestBytes: Buffer): Promise<string | undefined> {
  return (JSON.parse(manifestBytes.toString('utf8')) as { config?: { digest: string } }).config?.digest;
}

/** Expected images of an OCI layout a producer wrote: every ref name mapped to the name §3.2 gives it. */
async function fromLayout(dir: string, name: (ref: string) => { repository: string; tag: string }): Promise<Expected[]> {
  const out: Expected[] = [];
  for (const e of await layoutEntries(dir)) {
    const bytes = await readFile(join(dir, 'blobs', 'sha256', e.digest.slice(7)));
    expect(sha(bytes)).toBe(e.digest);
    const config = await configOf(bytes);
    out.push({ ...name(e.ref!), digest: e.digest, mediaType: e.mediaType, ...(config ? { config } : {}) });
  }
  return out;
}

async function fromDirImage(dir: string, repository: string, tag?: string): Promise<Expected> {
  const bytes = await readFile(join(dir, 'manifest.json'));
  const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType: string }).mediaType;
  const config = await configOf(bytes);
  return { repository, ...(tag !== undefined ? { tag } : {}), digest: sha(bytes), mediaType, ...(config ? { config } : {}) };
}

beforeAll(async () => {
  env = await startCliEnv(0x6a6e);
  lower = makeTempDir('ferry-names-', { lowercase: true });
  [buildah, podman] = await Promise.all([startBuildah(), startPodman()]);
  const h = env.reg.host;
  const dir = (name: string) => join(lower.path, name);

  // skopeo copy … oci:DIR:TAG — bare tags: the name is the directory's.
  await skopeoOk(['copy', ...srcFlags(), `docker://${h}/apps/web:v1`, `oci:${dir('sk-oci')}:v1`]);
  await skopeoOk(['copy', ...srcFlags(), `docker://${h}/library/base-os:1.0`, `oci:${dir('sk-oci')}:1.0`]);
  producers.push({ label: 'skopeo copy oci:DIR:TAG', from: `oci:${dir('sk-oci')}`, images: await fromLayout(dir('sk-oci'), (ref) => ({ repository: 'sk-oci', tag: ref })) });

  // skopeo copy … dir:DIR — one image in DIR itself, no tag: a digest-only image named after DIR.
  await skopeoOk(['copy', ...srcFlags(), `docker://${h}/a/b/c:stable`, `dir:${dir('plain')}`]);
  producers.push({ label: 'skopeo copy dir:DIR', from: `skopeo-dir:${dir('plain')}`, images: [await fromDirImage(dir('plain'), 'plain')] });

  // skopeo sync: the last path component only (`web:v1`).
  await skopeoOk(['sync', '--src', 'docker', '--dest', 'dir', '--src-tls-verify=false', `${h}/apps/web`, dir('sync')]);
  producers.push({ label: 'skopeo sync', from: `skopeo-dir:${dir('sync')}`, images: [await fromDirImage(join(dir('sync'), 'web:v1'), 'web', 'v1')] });

  // skopeo sync --scoped: registry first (`127.0.0.1:PORT/a/b/c:stable`); the Docker list becomes one platform's manifest.
  await skopeoOk(['sync', '--scoped', '--src', 'docker', '--dest', 'dir', '--src-tls-verify=false', `${h}/a/b/c`, dir('scoped')]);
  await skopeoOk(['sync', '--scoped', '--src', 'docker', '--dest', 'dir', '--src-tls-verify=false', `${h}/multi/tools`, dir('scoped')]);
  producers.push({
    label: 'skopeo sync --scoped', from: `skopeo-dir:${dir('scoped')}`,
    images: [await fromDirImage(join(dir('scoped'), h, 'a/b/c:stable'), `${h}/a/b/c`, 'stable'), await fromDirImage(join(dir('scoped'), h, 'multi/tools:2024.1'), `${h}/multi/tools`, '2024.1')],
  });

  // buildah from scratch + copy + commit, then buildah push IMG oci:DIR:TAG.
  await buildah.buildAndPush(`${h}/built/hello:1`, { name: 'hello.txt', content: 'hello from buildah\n' }, 'oci');
  await buildah.ok(['push', 'localhost/ferry-build:1', `oci:${dir('bu-oci')}:1.0`]);
  producers.push({ label: 'buildah push oci:DIR:TAG', from: `oci:${dir('bu-oci')}`, images: await fromLayout(dir('bu-oci'), (ref) => ({ repository: 'bu-oci', tag: ref })) });

  // umoci: an empty image, a layer inserted, a second tag with a command.
  const rootfs = dir('umoci-rootfs');
  mkdirSync(rootfs);
  writeFileSync(join(rootfs, 'motd'), 'inserted by umoci\n');
  for (const args of [['init', '--layout', dir('umo')], ['new', '--image', `${dir('umo')}:base`], ['insert', '--image', `${dir('umo')}:base`, rootfs, '/etc'], ['config', '--image', `${dir('umo')}:base`, '--tag', 'v2', '--config.cmd', '/bin/true']]) {
    const r = await umoci(args);
    if (r.code !== 0) throw new Error(`umoci ${args.join(' ')}: ${r.stderr}`);
  }
  producers.push({ label: 'umoci new/insert/config', from: `oci:${dir('umo')}`, images: await fromLayout(dir('umo'), (ref) => ({ repository: 'umo', tag: ref })) });

  // podman save --format oci-dir writes the full reference as the ref name; podman push oci:DIR:TAG a bare tag.
  await podman.ok(['pull', '--tls-verify=false', `${h}/apps/web:v1`]);
  await podman.ok(['save', '--format', 'oci-dir', '-o', dir('pod-save'), `${h}/apps/web:v1`]);
  producers.push({ label: 'podman save --format oci-dir', from: `oci:${dir('pod-save')}`, images: await fromLayout(dir('pod-save'), (ref) => ({ repository: ref.slice(0, ref.lastIndexOf(':')), tag: ref.slice(ref.lastIndexOf(':') + 1) })) });
  await podman.ok(['push', `${h}/apps/web:v1`, `oci:${dir('pod-push')}:2.0`]);
  producers.push({ label: 'podman push oci:DIR:TAG', from: `oci:${dir('pod-push')}`, images: await fromLayout(dir('pod-push'), (ref) => ({ repository: 'pod-push', tag: ref })) });

  // A real registry's storage holding one-component repositories, as `docker push python` makes them.
  const storage = dir('registry-storage');
  const reg = await startRegistry({ storageDir: storage });
  const rng = new Rng(0x707974);
  const python = makeImage({ layers: [await makeLayer(rng.fork('py'), { size: 40_000 })], mediaTypes: 'docker', labels: { name: 'python' } });
  const pause = makeImage({ layers: [await makeLayer(rng.fork('pause'), { size: 8_000 })], mediaTypes: 'oci', labels: { name: 'pause' } });
  try {
    await pushArtifact(reg.url, 'python', python, ['3.12']);
    await pushArtifact(reg.url, 'pause', pause, ['3.9']);
  } finally {
    await reg.stop();
  }
  const img = (i: Image, repository: string, tag: string): Expected => ({ repository, tag, digest: i.digest, mediaType: i.mediaType, config: i.config.digest });
  producers.push({ label: 'docker-registry storage, one-component names', from: `registry-layout:${storage}`, images: [img(python, 'python', '3.12'), img(pause, 'pause', '3.9')] });
}, 240_000);

afterAll(async () => {
  if (process.env['FERRY_INTEROP_REPORT'] === '1') {
    const outputs = [...new Set([...matrix.keys()].map((k) => k.split('|')[1]!))];
    const lines = [`| producer | ${outputs.join(' | ')} |`, `|---|${outputs.map(() => '---').join('|')}|`];
    for (const p of producers) lines.push(`| ${p.label} | ${outputs.map((o) => matrix.get(`${p.label}|${o}`) ?? '–').join(' | ')} |`);
    console.log(lines.join('\n'));
  }
  await Promise.all([buildah?.stop(), podman?.stop()]);
  await lower?.cleanup();
  await env?.stop();
});

describe('export --from what other tools write', () => {
  it('each producer\'s output becomes a bundle with the names of spec/bundle.md §3.2 and the producer\'s digests; verify passes', async () => {
    expect(producers.map((p) => p.label)).toHaveLength(9);
    for (const p of producers) {
      const out = env.path(`${p.label.replace(/[^a-z0-9]+/gi, '-')}.tar`);
      const r = await runFerry(['export', '--from', p.from, '-o', out, '--cache', env.path('cache'), '--json']);
      matrix.set(`${p.label}|ferry export --from`, r.code === 0 ? 'pass' : `exit ${r.code}`);
      if (r.code !== 0) { matrix.set(`${p.label}|ferry export --from`, `exit ${r.code} ${(JSON.parse(r.stdout) as {error:{code:string}}).error.code}`); continue; }
      bundles.set(p.label, out);
      const meta = metadataOf((await readBundleTar(out)).find((e) => e.name === 'ferry.json')!.body!);
      const got = meta.images.map((i) => ({ repository: i.repository, ...(i.tag !== undefined ? { tag: i.tag } : {}), digest: i.digest, mediaType: i.mediaType }));
      const want = p.images.map((x) => ({ repository: x.repository, ...(x.tag !== undefined ? { tag: x.tag } : {}), digest: x.digest, mediaType: x.mediaType }));
      const key = (x: { repository: string; tag?: string | undefined }) => `${x.repository}:${x.tag ?? ''}`;
      expect(got.sort((a, b) => key(a).localeCompare(key(b))), p.label).toEqual(want.sort((a, b) => key(a).localeCompare(key(b))));
      // The origin is the recorded name: no docker.io was made up for it.
      for (const i of meta.images) expect(i.origin, p.label).toBe(refOf(i));
      await ferryOk(['verify', out, '-q']);
    }
  });

  it('the raw bundle is read by skopeo (oci-archive:FILE:NAME:TAG) for OCI-typed images, with the producer\'s digest', async () => {
    for (const p of producers) {
      const results: boolean[] = [];
      for (const x of p.images.filter(isOci)) {
        const r = await skopeo(['inspect', '--raw', `oci-archive:${bundles.get(p.label)!}:${refOf(x)}`]);
        results.push(r.code === 0 && sha(r.stdoutBytes) === x.digest);
        expect(r.code, `${p.label} ${refOf(x)}: ${r.stderr}`).toBe(0);
        expect(sha(r.stdoutBytes)).toBe(x.digest);
      }
      matrix.set(`${p.label}|bundle → skopeo oci-archive:`, cell(results, p.images.length - p.images.filter(isOci).length));
    }
  });

  it('import --to registry-layout, served by docker-registry 2.8: skopeo and the deep validator see every image under its target name', async () => {
    const storage = env.path('layout');
    for (const p of producers) await ferryOk(['import', bundles.get(p.label)!, '--to', `registry-layout:${storage}`, '-q']);
    const reg = await startRegistry({ storageDir: storage });
    try {
      for (const p of producers) {
        const results: boolean[] = [];
        for (const x of p.images) {
          const name = targetName(x.repository);
          const ref = refOf(x, name);
          const walked = await validateRegistryImage(reg.url, name, x.tag ?? x.digest);
          const digest = x.tag !== undefined ? await skopeoInspectDigest(`${reg.host}/${ref}`) : walked.digest;
          expect(walked.digest, `${p.label} ${ref}`).toBe(x.digest);
          expect(digest, `${p.label} ${ref}`).toBe(x.digest);
          results.push(true);
        }
        matrix.set(`${p.label}|registry-layout → docker-registry + skopeo`, cell(results));
      }
    } finally {
      await reg.stop();
    }
  });

  it('import --to skopeo-dir: skopeo reads each image directory with the producer\'s digest', async () => {
    const tree = env.path('dirs');
    for (const p of producers) await ferryOk(['import', bundles.get(p.label)!, '--to', `skopeo-dir:${tree}`, '-q']);
    for (const p of producers) {
      const results: boolean[] = [];
      for (const x of p.images) {
        const name = targetName(x.repository);
        const imageDir = join(tree, x.tag !== undefined ? `${name}:${x.tag}` : `${name}@${x.digest}`);
        const r = await skopeoOk(['inspect', '--raw', `dir:${imageDir}`]);
        expect(sha(r.stdoutBytes), `${p.label} ${imageDir}`).toBe(x.digest);
        expect((await validateDirImage(imageDir, { requireAllChildren: false })).digest).toBe(x.digest);
        results.push(true);
      }
      matrix.set(`${p.label}|skopeo-dir → skopeo dir:`, cell(results));
    }
  });

  it('import --to oci: skopeo (oci:DIR:NAME:TAG) and umoci read the OCI-typed images with the producer\'s digests', async () => {
    const layout = join(lower.path, 'out-oci');
    for (const p of producers) await ferryOk(['import', bundles.get(p.label)!, '--to', `oci:${layout}`, '-q']);
    for (const p of producers) {
      const results: boolean[] = [];
      for (const x of p.images.filter((i) => isOci(i) && i.tag !== undefined)) {
        const ref = refOf(x, targetName(x.repository));
        const r = await skopeoOk(['inspect', '--raw', `oci:${layout}:${ref}`]);
        expect(sha(r.stdoutBytes), `${p.label} ${ref}`).toBe(x.digest);
        if (x.mediaType === OCI_TYPES[0]) expect((await umociStat(layout, ref)).history.length).toBeGreaterThanOrEqual(0);
        results.push(true);
      }
      matrix.set(`${p.label}|oci → skopeo oci: + umoci`, cell(results, p.images.filter((i) => !isOci(i) || i.tag === undefined).length));
    }
  });

  it('import --to docker-archive: podman load gives each runnable image its config digest as ID; names without a registry load as localhost/NAME', async () => {
    for (const p of producers) {
      const file = join(env.path(`archive-${producers.indexOf(p)}`), 'images.tar');
      const r = await runFerry(['import', bundles.get(p.label)!, '--to', `docker-archive:${file}`, '--json']);
      const receipt = jsonOf<{ images: { repository: string; tag?: string; status: string; reason?: string }[] }>(r);
      const loadable = p.images.filter((x) => receipt.images.some((i) => i.repository === x.repository && i.tag === x.tag && i.status !== 'skipped'));
      if (loadable.length === 0) {
        // umoci's `base` has no layers: nothing to load, refused before the first byte (spec/errors.md).
        matrix.set(`${p.label}|docker-archive → podman load`, `not loadable (${receipt.images.map((i) => i.reason).join('; ')})`);
        continue;
      }
      expect(r.code, r.stdout).toBe(0);
      await podman.ok(['rmi', '--all', '--force']);
      await podman.ok(['load', '-i', file]);
      const images = await podman.images();
      for (const x of loadable) {
        const loaded = images.find((i) => `sha256:${i.id}` === x.config);
        expect(loaded, `${p.label} ${refOf(x)}`).toBeDefined();
        if (x.tag !== undefined) {
          const first = x.repository.split('/')[0]!;
          const full = first.includes('.') || first.includes(':') || first === 'localhost' ? x.repository : `localhost/${x.repository}`;
          expect(loaded!.names, `${p.label}`).toContain(`${full}:${x.tag}`);
        }
      }
      matrix.set(`${p.label}|docker-archive → podman load`, cell(loadable.map(() => true), p.images.length - loadable.length));
    }
  });
});

describe('--registry-name', () => {
  it('names the registry of registry-less names only; two images it would record under one name are refused before the first byte', async () => {
    const src = join(lower.path, 'sk-oci');
    const entries = await layoutEntries(src);
    const dir = join(lower.path, 'clash');
    await cp(src, dir, { recursive: true });
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] };
    index.manifests[0]!.annotations['org.opencontainers.image.ref.name'] = 'python:1';
    index.manifests[1]!.annotations['org.opencontainers.image.ref.name'] = 'registry.corp.local/python:1';
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));

    const cache = env.path('cache-clash');
    const out = env.path('clash.tar');
    const r = await runFerry(['export', '--from', `oci:${dir}`, '--registry-name', 'registry.corp.local', '-o', out, '--cache', cache, '--json']);
    expect(r.code).toBe(2);
    const err = jsonOf<{ error: { code: string; message: string } }>(r).error;
    expect(err.code).toBe('E_USAGE');
    expect(err.message).toContain('registry.corp.local/python:1');
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(cache, 'blobs'))).toBe(false);

    // Without it, both are recorded as they are; with it and no clash, only the bare name gets the host.
    const plain = jsonOf<{ bundleId: string }>(await ferryOk(['export', '--from', `oci:${dir}`, '-o', out, '--cache', cache, '--json']));
    expect(plain.bundleId).toMatch(/^sha256:/);
    const names = async (file: string) => (await readMetadata(`${file}.ferry.json`)).images.map((i) => [i.repository, i.origin]);
    expect(await names(out)).toEqual([['python', 'python:1'], ['registry.corp.local/python', 'registry.corp.local/python:1']]);
    index.manifests[1]!.annotations['org.opencontainers.image.ref.name'] = 'quay.io/x/python:1';
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    const named = env.path('named.tar');
    await ferryOk(['export', '--from', `oci:${dir}`, '--registry-name', 'docker.io', '-o', named, '--cache', cache, '-q']);
    expect(await names(named)).toEqual([['docker.io/library/python', 'docker.io/library/python:1'], ['quay.io/x/python', 'quay.io/x/python:1']]);
    expect(entries).toHaveLength(2);
    const usage = await runFerry(['export', `${env.reg.host}/apps/web:v1`, '--registry-name', 'x.io', '-o', env.path('u.tar'), '--json']);
    expect(jsonOf<{ error: { code: string } }>(usage).error.code).toBe('E_USAGE');
    const notHost = await runFerry(['export', '--from', `oci:${dir}`, '--registry-name', 'myhost', '-o', env.path('v.tar'), '--json']);
    expect(jsonOf<{ error: { code: string; message: string } }>(notHost).error.message).toContain('myhost');
  });
});

describe('--convert-oci: Docker schema 2 images for OCI-only readers', () => {
  const dockerTagged = () => producers.flatMap((p) => p.images.filter((x) => !isOci(x) && x.tag !== undefined).map((x) => ({ p, x })));

  it('without it, an OCI layout keeps Docker types byte-exact, and skopeo cannot select them ("no descriptor found")', async () => {
    const layout = join(lower.path, 'out-oci-plain');
    const { p, x } = dockerTagged()[0]!;
    await ferryOk(['import', bundles.get(p.label)!, '--to', `oci:${layout}`, '-q']);
    const entry = (await layoutEntries(layout)).find((e) => e.ref === refOf(x, targetName(x.repository)))!;
    expect(entry.digest).toBe(x.digest);
    const r = await skopeo(['inspect', '--raw', `oci:${layout}:${entry.ref!}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no descriptor found/i);
  });

  it('import --to oci --convert-oci: skopeo, umoci and podman read every Docker-typed image; configs and layers keep their digests; old → new digests reported', async () => {
    const layout = join(lower.path, 'out-oci-converted');
    expect(dockerTagged().length).toBeGreaterThanOrEqual(3);
    for (const p of producers) {
      const todo = p.images.filter((x) => !isOci(x) && x.tag !== undefined);
      if (todo.length === 0) continue;
      const r = await runFerry(['import', bundles.get(p.label)!, '--to', `oci:${layout}`, '--convert-oci', '--json']);
      expect(r.code, r.stdout).toBe(0);
      const receipt = jsonOf<{ converted: { origin: string; from: string; to: string }[]; images: { digest: string; origin: string }[] }>(r);
      expect(describeErrors(schemaErrors(cliSchemaRef('importReceipt'), receipt))).toBe('');
      const results: boolean[] = [];
      for (const x of todo) {
        const conv = receipt.converted.find((c) => c.from === x.digest);
        expect(conv, `${p.label} ${refOf(x)}`).toBeDefined();
        const ref = refOf(x, targetName(x.repository));
        const raw = await skopeoOk(['inspect', '--raw', `oci:${layout}:${ref}`]);
        expect(sha(raw.stdoutBytes)).toBe(conv!.to);
        const m = JSON.parse(raw.stdoutBytes.toString('utf8')) as { mediaType: string; config: { mediaType: string; digest: string }; layers: { mediaType: string; digest: string }[] };
        expect(m.mediaType).toBe(OCI_TYPES[0]);
        expect(m.config).toMatchObject({ mediaType: 'application/vnd.oci.image.config.v1+json', digest: x.config });
        expect(m.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip')).toBe(true);
        expect((await umociStat(layout, ref)).history.length).toBeGreaterThan(0);
        // podman names an oci: image after the layout directory; its ID is the (unchanged) config digest.
        await podman.ok(['pull', `oci:${layout}:${ref}`]);
        expect((await podman.images()).some((i) => `sha256:${i.id}` === x.config), `${p.label} ${ref} in podman`).toBe(true);
        results.push(true);
      }
      matrix.set(`${p.label}|oci --convert-oci → skopeo + umoci + podman`, cell(results));
    }
  });

  it('export --convert-oci: the bundle stores OCI-typed images (sourceDigest = the producer\'s), read by skopeo oci-archive: and imported as they are', async () => {
    const p = producers.find((q) => q.from.startsWith('registry-layout:'))!;
    const x = p.images.find((i) => !isOci(i))!;
    const out = env.path('converted.tar');
    const r = await runFerry(['export', '--from', p.from, '--convert-oci', '-o', out, '--cache', env.path('cache'), '--json']);
    expect(r.code, r.stdout).toBe(0);
    const result = jsonOf<{ converted: { origin: string; from: string; to: string }[] }>(r);
    expect(describeErrors(schemaErrors(cliSchemaRef('exportResult'), result))).toBe('');
    expect(result.converted.map((c) => [c.origin, c.from])).toEqual([[refOf(x), x.digest]]);
    const meta = metadataOf((await readBundleTar(out)).find((e) => e.name === 'ferry.json')!.body!);
    const stored = meta.images.find((i) => i.repository === x.repository)!;
    expect(stored).toMatchObject({ digest: result.converted[0]!.to, mediaType: OCI_TYPES[0], sourceDigest: x.digest });
    // The OCI image of the same bundle is untouched.
    expect(meta.images.find((i) => i.repository !== x.repository)!.sourceDigest).toBeUndefined();
    const raw = await skopeoOk(['inspect', '--raw', `oci-archive:${out}:${refOf(x)}`]);
    expect(sha(raw.stdoutBytes)).toBe(stored.digest);
    await ferryOk(['verify', out, '-q']);
  });
});

function cell(results: boolean[], notApplicable = 0): string {
  const text = results.length === 0 ? 'n/a' : results.every(Boolean) ? `pass (${results.length})` : `FAIL ${results.filter((r) => !r).length}/${results.length}`;
  return notApplicable > 0 ? `${text}; ${notApplicable} Docker-typed or digest-only n/a` : text;
}
