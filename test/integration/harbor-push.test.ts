// End to end through the Harbor fixture: generated images pushed with ferry's
// RegistryDestination via Harbor's origin (token realm /service/token) into the real
// registry behind it, read back by skopeo. A push into a project that does not exist
// fails as on Harbor, and succeeds once the preflight has created the project.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { preflightPush } from '../../src/harbor/preflight.js';
import { parseDigest } from '../../src/oci/digest.js';
import { type Descriptor, manifestFromBytes } from '../../src/oci/manifest.js';
import type { RegistryDestination } from '../../src/transports/registry/destination.js';
import { openRegistryDestination } from '../../src/transports/registry/open.js';
import { type HarborFixture, startHarborFixture } from '../support/harbor-fixture.js';
import { type Blob, type Image, type Index, makeImage, makeIndex, makeLayer, Rng } from '../support/images.js';
import { skopeo, skopeoInspectDigest, skopeoInspectRaw } from '../support/skopeo.js';
import { validateRegistryImage } from '../support/validate.js';

const DEV = { username: 'dev', password: 'dev-Pa55-word', source: 'test' };
const ROBOT = { username: 'robot$ci', password: 'robot-S3cret-value', source: 'test' };

let harbor: HarborFixture;
let image: Image;
let index: Index;

const descOf = (b: Blob): Descriptor => ({ mediaType: b.mediaType, digest: parseDigest(b.digest), size: b.size });
const bytesOf = (a: Image | Index): number => (a.kind === 'index' ? a.manifests : [a]).flatMap((m) => m.blobs).reduce((n, b) => n + b.size, 0);

/** The copy engine's order: blobs, child manifests, top manifest, tag last. */
async function push(dst: RegistryDestination, repo: string, artifact: Image | Index, tag: string): Promise<void> {
  const images = artifact.kind === 'index' ? artifact.manifests : [artifact];
  for (const img of images) {
    for (const b of img.blobs) if (!(await dst.hasBlob(repo, descOf(b)))) await dst.putBlob(repo, descOf(b), b.open());
    await dst.putManifest(repo, manifestFromBytes(img.bytes, img.mediaType));
  }
  const top = manifestFromBytes(artifact.bytes, artifact.mediaType);
  if (artifact.kind === 'index') await dst.putManifest(repo, top);
  await dst.putImage({ repository: repo, manifest: top, tag });
}

const target = (c: typeof DEV) => ({ url: harbor.url, username: c.username, password: c.password });
const destination = (c: typeof DEV): RegistryDestination => openRegistryDestination({ registry: harbor.host, plainHttp: true, credentials: c });

beforeAll(async () => {
  harbor = await startHarborFixture({
    users: {
      dev: { password: DEV.password, projects: { apps: 'developer', tools: 'developer' } },
      'robot$ci': { password: ROBOT.password, projects: { apps: 'developer', tools: 'guest' } },
    },
    projects: [{ name: 'apps' }, { name: 'tools' }],
  });
  const rng = new Rng(0x4a5b0);
  const base = await makeLayer(rng.fork('base'), { size: 60_000 });
  const app = await makeLayer(rng.fork('app'), { size: 30_000, compressible: false });
  image = makeImage({ layers: [base, app], mediaTypes: 'oci', labels: { which: 'single' } });
  const arm = makeImage({ layers: [base], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  const amd = makeImage({ layers: [base, app], mediaTypes: 'docker' });
  index = makeIndex([amd, arm], 'docker');
});

afterAll(async () => {
  await harbor?.stop();
});

describe('push through the Harbor fixture', () => {
  it('pushes an image and a manifest list into an existing project; skopeo reads the same digests back', async () => {
    const pre = await preflightPush({
      registry: { registry: harbor.host, plainHttp: true, credentials: DEV },
      repositories: [{ repository: 'apps/web', bytes: bytesOf(image) }, { repository: 'apps/multi', bytes: bytesOf(index) }],
    });
    pre.close();
    expect(pre.problems).toEqual([]);

    const dst = destination(DEV);
    try {
      await push(dst, 'apps/web', image, 'v1');
      await push(dst, 'apps/multi', index, 'latest');
    } finally {
      await dst.close();
    }
    expect(await skopeoInspectDigest(`${harbor.host}/apps/web:v1`, target(DEV))).toBe(image.digest);
    const raw = await skopeoInspectRaw(`${harbor.host}/apps/multi:latest`, target(DEV));
    expect(raw.digest).toBe(index.digest);
    expect(raw.bytes.equals(index.bytes)).toBe(true);
    const walked = await validateRegistryImage(target(DEV), 'apps/multi', 'latest');
    expect(walked.digest).toBe(index.digest);
  });

  it('a robot account ($ in its name) pushes where it may and is refused where it may only pull', async () => {
    const dst = destination(ROBOT);
    try {
      await push(dst, 'apps/robot', image, 'ci');
      const refused = await push(dst, 'tools/robot', image, 'ci').then(() => undefined, (e: unknown) => e);
      expect(isFerryError(refused, 'E_AUTH') || isFerryError(refused, 'E_DENIED')).toBe(true);
    } finally {
      await dst.close();
    }
    expect(await skopeoInspectDigest(`${harbor.host}/apps/robot:ci`, target(ROBOT))).toBe(image.digest);
    expect(existsSync(join(harbor.registry.v2Dir, 'repositories', 'tools', 'robot', '_manifests'))).toBe(false);
  });

  it('without --create-projects a push into a missing project fails as on Harbor; after createMissingProjects it succeeds', async () => {
    const repositories = [{ repository: 'fresh/app', bytes: bytesOf(image) }];
    // What a first run without --create-projects meets.
    const first = destination(DEV);
    try {
      const refused = await push(first, 'fresh/app', image, 'v1').then(() => undefined, (e: unknown) => e);
      expect(isFerryError(refused, 'E_AUTH') || isFerryError(refused, 'E_DENIED')).toBe(true);
    } finally {
      await first.close();
    }
    expect(existsSync(join(harbor.registry.v2Dir, 'repositories', 'fresh'))).toBe(false);
    const viaSkopeo = await skopeo(['inspect', '--tls-verify=false', '--creds', `dev:${DEV.password}`, `docker://${harbor.host}/fresh/app:v1`]);
    expect(viaSkopeo.code).not.toBe(0);

    const without = await preflightPush({ registry: { registry: harbor.host, plainHttp: true, credentials: DEV }, repositories });
    without.close();
    expect(without.problems.map((p) => p.code)).toEqual(['E_NOT_FOUND']);

    // The next run, with --create-projects: preflight, create, push.
    const pre = await preflightPush({ registry: { registry: harbor.host, plainHttp: true, credentials: DEV }, repositories, createProjects: true });
    try {
      expect(pre.problems).toEqual([]);
      expect(await pre.createMissingProjects()).toEqual({ created: ['fresh'], existed: [] });
    } finally {
      pre.close();
    }
    const second = destination(DEV);
    try {
      await push(second, 'fresh/app', image, 'v1');
    } finally {
      await second.close();
    }
    expect(await skopeoInspectDigest(`${harbor.host}/fresh/app:v1`, target(DEV))).toBe(image.digest);
  });
});
