import { type Digest, isDigest } from './digest.js';
import type { Descriptor } from './manifest.js';
import { MT } from './media-types.js';

/**
 * Docker schema 2 media types and their OCI equivalents, for readers that select
 * OCI types only (skopeo, podman and umoci on `oci:` layouts). Layer and config
 * bytes are the same in both worlds (a gzip'd tar is a gzip'd tar; an image config
 * is the same JSON), so only the descriptors' labels change; a manifest or index
 * that names them is new bytes with a new digest.
 */
export const DOCKER_TO_OCI: Readonly<Record<string, string>> = {
  [MT.dockerManifest]: MT.ociManifest,
  [MT.dockerManifestList]: MT.ociIndex,
  [MT.dockerConfig]: MT.ociConfig,
  [MT.dockerLayerGzip]: MT.ociLayerGzip,
  'application/vnd.docker.image.rootfs.diff.tar': MT.ociLayer,
  [MT.dockerForeignLayerGzip]: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
};

export function ociMediaType(mediaType: string): string {
  return DOCKER_TO_OCI[mediaType] ?? mediaType;
}

type Doc = Record<string, unknown>;

function relabel(d: unknown, replaced: ReadonlyMap<Digest, { digest: Digest; size: number; mediaType: string }>): boolean {
  if (typeof d !== 'object' || d === null) return false;
  const o = d as Doc;
  let changed = false;
  const to = isDigest(o.digest) ? replaced.get(o.digest) : undefined;
  if (to) {
    o.mediaType = to.mediaType;
    o.digest = to.digest;
    o.size = to.size;
    return true;
  }
  if (typeof o.mediaType === 'string' && DOCKER_TO_OCI[o.mediaType] !== undefined) {
    o.mediaType = DOCKER_TO_OCI[o.mediaType];
    changed = true;
  }
  return changed;
}

/**
 * The OCI form of a manifest or index: its own media type, its config's and
 * layers' descriptors relabelled, index entries re-pointed at the converted
 * children (`replaced`: old child digest → the child's new descriptor). Every
 * other field is kept as it is, in its order. Undefined when nothing is Docker
 * about it (the bytes stay exact, and so does the digest).
 */
export function convertToOci(bytes: Buffer, mediaType: string, replaced: ReadonlyMap<Digest, Pick<Descriptor, 'digest' | 'size' | 'mediaType'>>): { bytes: Buffer; mediaType: string } | undefined {
  const doc = JSON.parse(bytes.toString('utf8')) as Doc;
  let changed = false;
  const own = DOCKER_TO_OCI[mediaType];
  if (own !== undefined) {
    // Docker manifests always carry their media type; an OCI one needs it too, or readers must guess.
    doc.mediaType = own;
    changed = true;
  }
  // `subject` is left alone: a referrer names the digest it was made for, and that digest still exists at the source.
  if (doc.config !== undefined) changed = relabel(doc.config, replaced) || changed;
  for (const key of ['layers', 'manifests']) {
    if (Array.isArray(doc[key])) for (const d of doc[key] as unknown[]) changed = relabel(d, replaced) || changed;
  }
  if (!changed) return undefined;
  return { bytes: Buffer.from(JSON.stringify(doc), 'utf8'), mediaType: own ?? mediaType };
}
