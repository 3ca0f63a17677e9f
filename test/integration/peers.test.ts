// Proves the launchers of the image consumers (podman, buildah, umoci, containerd, dockerd)
// against the real programs, with archives and layouts written by skopeo (an independent
// producer), before the interop tests build on them: each loads, shows the names and IDs
// the tests read, stays in its temp dir, and leaves nothing behind once stopped.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuildah } from '../support/buildah.js';
import { startContainerd } from '../support/containerd.js';
import { mountsUnder } from '../support/daemon.js';
import { startDockerd } from '../support/dockerd.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { startPodman } from '../support/podman.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeoOk } from '../support/skopeo.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { umociStat, umociTags } from '../support/umoci.js';

let reg: RegistryHandle;
let tmp: TempDir;
let img: Image;
/** A docker-archive skopeo wrote, naming the image `quay.io/peers/probe:1`. */
let archive: string;
/** Paths the peers would write to by default; none may appear (checked after each peer stops). */
const SYSTEM_PATHS = [
  '/etc/docker/key.json', '/opt/containerd', '/run/libpod', '/run/crun', '/run/containers', '/run/containerd', '/run/docker', '/run/docker.sock',
  '/var/lib/docker', '/var/lib/containerd', '/var/lib/containers/storage', '/var/tmp/storage',
];
let preexisting: Set<string>;

beforeAll(async () => {
  preexisting = new Set(SYSTEM_PATHS.filter((p) => existsSync(p)));
  tmp = makeTempDir('ferry-peers-');
  reg = await startRegistry();
  const layer = await makeLayer(new Rng(0x9ee5), { size: 40_000, compressible: true });
  img = makeImage({ layers: [layer], mediaTypes: 'docker', labels: { name: 'peers' } });
  await pushArtifact(reg.url, 'peers/probe', img, ['1']);
  archive = join(tmp.path, 'probe.tar');
  await skopeoOk(['copy', '--src-tls-verify=false', `docker://${reg.host}/peers/probe:1`, `docker-archive:${archive}:quay.io/peers/probe:1`]);
});
afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

function expectNoSystemLeftovers(): void {
  for (const p of SYSTEM_PATHS) if (!preexisting.has(p)) expect(existsSync(p), `${p} was created`).toBe(false);
}

const configHex = () => img.config.digest.slice(7);

describe('peer launchers', () => {
  it('podman: private store; load shows the archive name and the config digest as ID; stop removes the store', async () => {
    const podman = await startPodman();
    try {
      const r = await podman.ok(['load', '-i', archive]);
      expect(r.stdout).toContain('quay.io/peers/probe:1');
      const images = await podman.images();
      expect(images).toHaveLength(1);
      expect(images[0]!.id).toBe(configHex());
      expect(images[0]!.names).toEqual(['quay.io/peers/probe:1']);
      await podman.ok(['pull', '--tls-verify=false', `docker://${reg.host}/peers/probe:1`]);
      const pulled = await podman.images();
      expect(pulled).toHaveLength(1);
      expect(pulled[0]!.names).toEqual([`${reg.host}/peers/probe:1`, 'quay.io/peers/probe:1']);
      expect(pulled[0]!.repoDigests).toContain(`${reg.host}/peers/probe@${img.digest}`);
    } finally {
      await podman.stop();
    }
    expect(existsSync(podman.root)).toBe(false);
    expectNoSystemLeftovers();
  });

  it('buildah: builds an image from scratch (nothing executed) and pushes it; the registry serves that digest', async () => {
    const buildah = await startBuildah();
    try {
      const digest = await buildah.buildAndPush(`${reg.host}/peers/built:1`, { name: 'hello.txt', content: 'hello from buildah\n' });
      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      const raw = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/peers/built:1`]);
      expect(`sha256:${createHash('sha256').update(raw.stdoutBytes).digest('hex')}`).toBe(digest);
      await buildah.ok(['pull', `docker-archive:${archive}`]);
      expect((await buildah.images()).some((i) => i.id === configHex())).toBe(true);
    } finally {
      await buildah.stop();
    }
    expect(existsSync(buildah.root)).toBe(false);
  });

  it('umoci: lists and stats an OCI layout skopeo wrote', async () => {
    const layout = join(tmp.path, 'layout');
    await skopeoOk(['copy', '--src-tls-verify=false', `docker://${reg.host}/peers/probe:1`, `oci:${layout}:probe-1`]);
    expect(await umociTags(layout)).toEqual(['probe-1']);
    expect((await umociStat(layout, 'probe-1')).history).toHaveLength(1);
  });

  it('containerd: private socket and root; ctr import and ctr pull --plain-http; stop ends the daemon and removes its dirs', async () => {
    const cd = await startContainerd();
    let pid: number | undefined;
    try {
      const r = await cd.ctrOk(['images', 'import', archive]);
      expect(r.stdout).toContain('quay.io/peers/probe:1');
      await cd.ctrOk(['images', 'pull', '--plain-http', `${reg.host}/peers/probe:1`]);
      const images = await cd.images();
      expect(images.map((i) => i.name).sort()).toEqual([`${reg.host}/peers/probe:1`, 'quay.io/peers/probe:1']);
      expect(images.find((i) => i.name.startsWith(reg.host))!.digest).toBe(img.digest);
      // the archive's image is unpacked (its layer is in the native snapshotter), not just stored
      expect((await cd.ctrOk(['snapshots', '--snapshotter', 'native', 'ls'])).stdout).toContain('Committed');
      pid = cd.pid;
      expect(existsSync(`/proc/${pid}`)).toBe(true);
    } finally {
      await cd.stop();
    }
    expect(pid).toBeGreaterThan(0);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(cd.root)).toBe(false);
    expectNoSystemLeftovers();
  });

  it('dockerd: private socket, data root and exec root; docker load and docker pull; stop ends the daemon and removes its dirs', async () => {
    const dockerd = await startDockerd();
    const dir = dirname(dockerd.dataRoot);
    try {
      // dockerd makes its data root a (shared) mount point; stop() must leave none behind
      expect(mountsUnder(dir)).toEqual([dockerd.dataRoot]);
      const r = await dockerd.dockerOk(['load', '-i', archive]);
      expect(r.stdout).toContain('quay.io/peers/probe:1');
      await dockerd.dockerOk(['pull', '-q', `${reg.host}/peers/probe:1`]);
      const images = await dockerd.images();
      expect(images).toHaveLength(1);
      expect(images[0]!.id).toBe(img.config.digest);
      expect(images[0]!.repoTags.sort()).toEqual([`${reg.host}/peers/probe:1`, 'quay.io/peers/probe:1']);
      expect(images[0]!.repoDigests).toEqual([`${reg.host}/peers/probe@${img.digest}`]);
    } finally {
      await dockerd.stop();
    }
    expect(mountsUnder(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expectNoSystemLeftovers();
  });
});
