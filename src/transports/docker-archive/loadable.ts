import { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import type { Descriptor, ParsedManifest } from '../../oci/manifest.js';
import { MT } from '../../oci/media-types.js';
import { formatPlatform, type Platform, platformMatches } from '../../oci/platform.js';

/**
 * What a docker archive can hold: runnable images only. `docker load`, `podman load`
 * and `ctr import` read every entry of manifest.json as an image (config = image
 * config, layers = filesystem tars); one entry that is not — a cosign signature, an
 * SBOM, a Helm chart — makes docker and podman reject the whole archive and ctr
 * stop at it. So such manifests are left out, each with the reason, before the
 * first byte is written.
 */

/** Image configs the loaders understand. */
export const IMAGE_CONFIG_MEDIA_TYPES: readonly string[] = [MT.dockerConfig, MT.ociConfig];

/** Filesystem layers (tar, plain or compressed; non-distributable and foreign ones are tars too). */
export const FILESYSTEM_LAYER_MEDIA_TYPES: readonly string[] = [
  MT.dockerLayerGzip, 'application/vnd.docker.image.rootfs.diff.tar', MT.dockerForeignLayerGzip,
  MT.ociLayer, MT.ociLayerGzip, MT.ociLayerZstd,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
];

const ZSTD_LAYER_MEDIA_TYPES: readonly string[] = [MT.ociLayerZstd, 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'];

/** The one image manifest an archive entry is made of. */
export interface ArchiveImage {
  /** The image manifest (the top one, or the platform's child of an index). */
  manifest: Digest;
  config: Descriptor;
  layers: Descriptor[];
  /** Some layer is zstd-compressed: docker before 23.0 cannot load it. */
  zstd: boolean;
}

export type ArchiveChoice = { load: true; image: ArchiveImage } | { load: false; reason: string };

const short = (t: string) => JSON.stringify(t.slice(0, 100));

/** Why an image manifest is not a runnable image, or undefined when it is one. */
export function notAnImage(m: ParsedManifest): string | undefined {
  if (m.artifactType !== undefined) return `an artifact (artifactType ${short(m.artifactType)}), not an image`;
  const config = m.config?.mediaType ?? '';
  if (!IMAGE_CONFIG_MEDIA_TYPES.includes(config)) return `an artifact (config ${short(config)}), not an image`;
  if (m.layers.length === 0) return 'an image with no layers: there is nothing to load';
  const odd = m.layers.findIndex((l) => !FILESYSTEM_LAYER_MEDIA_TYPES.includes(l.mediaType));
  if (odd >= 0) return `an artifact (layer ${odd} is ${short(m.layers[odd]!.mediaType)}, not a filesystem layer), not an image`;
  return undefined;
}

/**
 * Picks what goes into the archive for one image: the manifest itself, or the
 * `platform` child of an index. An index with no runnable image at all (a
 * referrers index, an attestation list) is left out like any artifact; an index
 * of images that lacks `platform` is an error of that image (E_NOT_FOUND), since
 * the user's platform choice, not the content, is what does not fit.
 */
export function chooseArchiveImage(top: Digest, parsed: ReadonlyMap<Digest, ParsedManifest>, platform: Platform, where: string): ArchiveChoice {
  const m = parsed.get(top);
  if (!m) throw missingManifest(where, top);
  if (m.kind === 'image') return imageChoice(top, m);
  const images = m.manifests.filter((d) => {
    const child = parsed.get(d.digest);
    return child !== undefined && child.kind === 'image' && notAnImage(child) === undefined;
  });
  if (images.length === 0) {
    const kinds = [...new Set(m.manifests.map((d) => d.artifactType ?? parsed.get(d.digest)?.artifactType ?? parsed.get(d.digest)?.config?.mediaType ?? d.mediaType))];
    return { load: false, reason: `an index of ${m.manifests.length} artifact${m.manifests.length === 1 ? '' : 's'}${kinds.length > 0 ? ` (${kinds.slice(0, 3).join(', ')})` : ''}, no image` };
  }
  const chosen = images.find((d) => platformMatches(d.platform, platform));
  if (!chosen) {
    const have = images.map((d) => (d.platform ? formatPlatform(d.platform) : 'no platform')).join(', ');
    throw new FerryError('E_NOT_FOUND', `${where}: no ${formatPlatform(platform)} image in the index (it has ${have})`, {
      hint: 'a docker archive holds one platform per image; choose one with --platform', details: { image: where },
    });
  }
  return imageChoice(chosen.digest, parsed.get(chosen.digest)!);
}

function imageChoice(digest: Digest, m: ParsedManifest): ArchiveChoice {
  const why = notAnImage(m);
  if (why !== undefined) return { load: false, reason: why };
  return { load: true, image: { manifest: digest, config: m.config!, layers: m.layers, zstd: m.layers.some((l) => ZSTD_LAYER_MEDIA_TYPES.includes(l.mediaType)) } };
}

function missingManifest(where: string, digest: Digest): FerryError {
  return new FerryError('E_BLOB_MISSING', `${where}: manifest ${digest} has not been written yet`, {
    hint: 'manifests must be written before the images that reference them; this is a bug in the caller', details: { digest },
  });
}
