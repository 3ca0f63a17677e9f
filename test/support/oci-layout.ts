// An OCI image layout written by test code, not by ferry: the input other tools'
// layouts stand for (skopeo, umoci and buildah write the same structure).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blobsOf, manifestsOf, type Artifact } from './images.js';

/** Writes the images as an OCI layout, each under its ref name (`name:tag`, the form ferry writes). */
export async function writeOciLayout(dir: string, images: { artifact: Artifact; ref: string }[]): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (digest: string, bytes: Buffer) => writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
  for (const { artifact } of images) {
    for (const b of blobsOf(artifact)) {
      const chunks: Buffer[] = [];
      for await (const c of b.open()) chunks.push(c as Buffer);
      await put(b.digest, Buffer.concat(chunks));
    }
    for (const m of manifestsOf(artifact)) await put(m.digest, m.bytes);
  }
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: images.map(({ artifact, ref }) => ({ mediaType: artifact.mediaType, digest: artifact.digest, size: artifact.size, annotations: { 'org.opencontainers.image.ref.name': ref } })),
  }));
}
