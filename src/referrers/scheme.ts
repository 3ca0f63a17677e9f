import { type Digest, parseDigest } from '../oci/digest.js';

/**
 * How signatures, attestations and SBOMs are found next to an image. Two
 * conventions coexist: cosign's tags (`sha256-<hex>.sig|.att|.sbom` in the
 * image's repository, which every registry can hold) and OCI 1.1 referrers
 * (manifests with a `subject`, listed by the referrers API or, on registries
 * without it, by an index tagged `sha256-<hex>`).
 */

export type ReferrerKind = 'signature' | 'attestation' | 'sbom' | 'referrers-index' | 'referrer';

/** cosign's tag suffixes and what each holds. */
export const COSIGN_SUFFIXES: readonly (readonly [suffix: string, kind: ReferrerKind])[] = [
  ['.sig', 'signature'],
  ['.att', 'attestation'],
  ['.sbom', 'sbom'],
];

export const COSIGN_SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json';

/** `sha256-<hex>`: the OCI 1.1 referrers fallback tag; cosign appends its suffix to it. */
export function referrersTag(digest: Digest): string {
  return digest.replace(':', '-');
}

export function cosignTag(digest: Digest, suffix: '.sig' | '.att' | '.sbom' | string): string {
  return `${referrersTag(digest)}${suffix}`;
}

const TAG_RE = /^sha256-([a-f0-9]{64})(\.sig|\.att|\.sbom)?$/;

/** The subject digest and kind a scheme tag names, or undefined for an ordinary tag. */
export function parseSchemeTag(tag: string | undefined): { subject: Digest; kind: ReferrerKind } | undefined {
  const m = tag === undefined ? null : TAG_RE.exec(tag);
  if (!m) return undefined;
  const subject = parseDigest(`sha256:${m[1]!}`, tag);
  if (m[2] === undefined) return { subject, kind: 'referrers-index' };
  const kind = COSIGN_SUFFIXES.find(([s]) => s === m[2])![1];
  return { subject, kind };
}
