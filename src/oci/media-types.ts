/** Media types ferry understands, and what each one is. */

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/**
 * Layers their publisher may forbid registries to store (Windows base layers): the
 * manifest carries their descriptor with `urls` to fetch them from, and registries
 * accept the manifest without the blob (spec/bundle.md §2.2).
 */
export const FOREIGN_LAYER_MEDIA_TYPES: readonly string[] = [
  MT.dockerForeignLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
];

export const INDEX_MEDIA_TYPES: readonly string[] = [MT.ociIndex, MT.dockerManifestList];
export const IMAGE_MANIFEST_MEDIA_TYPES: readonly string[] = [MT.ociManifest, MT.dockerManifest];
export const MANIFEST_MEDIA_TYPES: readonly string[] = [...IMAGE_MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES];

/** The Accept header for manifest GETs: every manifest kind we can carry, so registries do not convert. */
export const MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');

export function isIndexMediaType(mt: string): boolean {
  return INDEX_MEDIA_TYPES.includes(mt);
}

export function isManifestMediaType(mt: string): boolean {
  return MANIFEST_MEDIA_TYPES.includes(mt);
}

const KNOWN_MEDIA_TYPES = new Map<string, string>([...Object.values(MT), ...FOREIGN_LAYER_MEDIA_TYPES].map((m) => [m, m]));

/**
 * The one shared copy of a well-known media type, else `mt` itself. JSON.parse
 * makes a fresh string for every occurrence: a plan of 10,000 images held
 * 50,000 copies of four media types (~3 MB).
 */
export function sharedMediaType(mt: string): string {
  return KNOWN_MEDIA_TYPES.get(mt) ?? mt;
}
