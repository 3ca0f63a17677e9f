// What a docker archive can hold: the rule on the manifest shapes that reach it (images,
// indexes, cosign signatures, SBOM referrers, Helm charts, artifactType artifacts, zstd
// layers), and the destination's own refusal of a non-image handed to it directly.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { type Digest, sha256Digest } from '../../../src/oci/digest.js';
import { manifestFromBytes, parseManifest, type ParsedManifest } from '../../../src/oci/manifest.js';
import { chooseArchiveImage, notAnImage, openDockerArchive } from '../../../src/transports/docker-archive/index.js';
import { makeTempDir } from '../../support/tmp.js';

const AMD64 = { os: 'linux', architecture: 'amd64' };
const d = (s: string) => sha256Digest(Buffer.from(s));
const desc = (mediaType: string, seed: string, extra: Record<string, unknown> = {}) => ({ mediaType, digest: d(seed), size: seed.length, ...extra });

function manifest(config: string, layers: string[], extra: Record<string, unknown> = {}): { bytes: Buffer; digest: Digest; parsed: ParsedManifest } {
  const bytes = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', ...extra,
    config: desc(config, `config-${config}`), layers: layers.map((l, i) => desc(l, `layer-${i}-${l}`)),
  }));
  return { bytes, digest: sha256Digest(bytes), parsed: parseManifest(bytes, undefined) };
}

const GZ = 'application/vnd.oci.image.layer.v1.tar+gzip';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

describe('notAnImage', () => {
  it('takes Docker and OCI images with filesystem layers of any compression', () => {
    expect(notAnImage(manifest(OCI_CONFIG, [GZ, 'application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar']).parsed)).toBeUndefined();
    expect(notAnImage(manifest('application/vnd.docker.container.image.v1+json', ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip']).parsed)).toBeUndefined();
  });

  it('says why each kind of artifact is not an image', () => {
    expect(notAnImage(manifest(OCI_CONFIG, ['application/vnd.dev.cosign.simplesigning.v1+json']).parsed)).toMatch(/layer 0 is "application\/vnd\.dev\.cosign\.simplesigning\.v1\+json"/);
    expect(notAnImage(manifest('application/vnd.cncf.helm.config.v1+json', ['application/vnd.cncf.helm.chart.content.v1.tar+gzip']).parsed)).toMatch(/config "application\/vnd\.cncf\.helm\.config\.v1\+json"/);
    expect(notAnImage(manifest('application/vnd.oci.empty.v1+json', ['application/spdx+json']).parsed)).toMatch(/config "application\/vnd\.oci\.empty\.v1\+json"/);
    // an artifactType says "artifact" even over an image config and tar layers
    expect(notAnImage(manifest(OCI_CONFIG, [GZ], { artifactType: 'application/vnd.example+type' }).parsed)).toMatch(/artifactType "application\/vnd\.example\+type"/);
    expect(notAnImage(manifest(OCI_CONFIG, []).parsed)).toMatch(/no layers/);
    expect(notAnImage(manifest(OCI_CONFIG, [GZ, 'application/vnd.in-toto+json']).parsed)).toMatch(/layer 1/);
  });
});

describe('chooseArchiveImage', () => {
  const amd = manifest(OCI_CONFIG, [GZ], {});
  const arm = manifest(OCI_CONFIG, ['application/vnd.oci.image.layer.v1.tar+zstd'], { annotations: { arch: 'arm64' } });
  const sbom = manifest('application/vnd.oci.empty.v1+json', ['application/spdx+json'], { artifactType: 'application/spdx+json' });
  const attestation = manifest(OCI_CONFIG, ['application/vnd.in-toto+json']);
  const index = (children: { digest: Digest; bytes: Buffer; platform?: object; artifactType?: string }[]) => {
    const bytes = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: children.map((c) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: c.digest, size: c.bytes.length, ...(c.platform ? { platform: c.platform } : {}), ...(c.artifactType ? { artifactType: c.artifactType } : {}) })),
    }));
    return { bytes, digest: sha256Digest(bytes), parsed: parseManifest(bytes, undefined) };
  };
  const known = (...ms: { digest: Digest; parsed: ParsedManifest }[]) => new Map(ms.map((m) => [m.digest, m.parsed]));

  it('an image is itself; zstd layers are flagged', () => {
    const c = chooseArchiveImage(amd.digest, known(amd), AMD64, 'x');
    expect(c).toMatchObject({ load: true, image: { manifest: amd.digest, zstd: false } });
    expect(chooseArchiveImage(arm.digest, known(arm), AMD64, 'x')).toMatchObject({ load: true, image: { zstd: true } });
  });

  it('an index gives its platform child, skipping buildx-style attestation entries', () => {
    const idx = index([{ ...attestation, platform: { os: 'unknown', architecture: 'unknown' } }, { ...arm, platform: { os: 'linux', architecture: 'arm64' } }, { ...amd, platform: AMD64 }]);
    const c = chooseArchiveImage(idx.digest, known(idx, amd, arm, attestation), AMD64, 'x');
    expect(c).toMatchObject({ load: true, image: { manifest: amd.digest } });
  });

  it('a referrers index (artifacts only, no platforms) is left out with its reason, not an error', () => {
    const idx = index([{ ...sbom, artifactType: 'application/spdx+json' }]);
    expect(chooseArchiveImage(idx.digest, known(idx, sbom), AMD64, 'x')).toEqual({ load: false, reason: 'an index of 1 artifact (application/spdx+json), no image' });
  });

  it('an index of images without the platform is E_NOT_FOUND listing the platforms it has', () => {
    const idx = index([{ ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }, { ...sbom }]);
    let err: unknown;
    try {
      chooseArchiveImage(idx.digest, known(idx, arm, sbom), AMD64, 'web:1');
    } catch (e) {
      err = e;
    }
    expect(isFerryError(err, 'E_NOT_FOUND')).toBe(true);
    expect((err as Error).message).toBe('web:1: no linux/amd64 image in the index (it has linux/arm64/v8)');
  });
});

describe('docker archive destination', () => {
  it('refuses a non-image handed to putImage (E_UNSUPPORTED_MEDIA_TYPE) and writes no archive', async () => {
    const dir = makeTempDir('ferry-darchive-refuse-');
    try {
      const dest = openDockerArchive(join(dir.path, 'x.tar'));
      const sig = manifest(OCI_CONFIG, ['application/vnd.dev.cosign.simplesigning.v1+json']);
      const m = manifestFromBytes(sig.bytes, 'application/vnd.oci.image.manifest.v1+json');
      await dest.putManifest('quay.io/a/b', m);
      await expect(dest.putImage({ repository: 'quay.io/a/b', tag: 'sha256-x.sig', manifest: m })).rejects.toSatisfy((e) =>
        isFerryError(e, 'E_UNSUPPORTED_MEDIA_TYPE') && /quay\.io\/a\/b:sha256-x\.sig: an artifact .*simplesigning/.test((e as Error).message));
      await dest.close();
      expect(await readdir(dir.path)).toEqual([]);
    } finally {
      await dir.cleanup();
    }
  });

  it('takes full names with a registry and port, and refuses names that are not references', async () => {
    const dir = makeTempDir('ferry-darchive-names-');
    try {
      const dest = openDockerArchive(join(dir.path, 'x.tar'));
      const img = manifest(OCI_CONFIG, []);
      const m = manifestFromBytes(img.bytes, 'application/vnd.oci.image.manifest.v1+json');
      await dest.putManifest('x', m);
      await expect(dest.putImage({ repository: '../etc', tag: '1', manifest: m })).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE'));
      await expect(dest.putImage({ repository: 'Bad:host/x', tag: '1', manifest: m })).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE'));
      // a valid name reaches the image check (this one has no layers)
      await expect(dest.putImage({ repository: '127.0.0.1:5941/calico/node', tag: 'v3', manifest: m })).rejects.toSatisfy((e) => isFerryError(e, 'E_UNSUPPORTED_MEDIA_TYPE'));
      await dest.close();
    } finally {
      await dir.cleanup();
    }
  });
});
