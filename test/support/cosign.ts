// A test-side producer of cosign-format signatures, attestations and OCI 1.1
// referrers, byte-for-byte in the shapes cosign and oras write (compact Go JSON),
// signed with node:crypto. Independent of src/: what ferry verifies must come
// from an outside producer.
import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Image, Index } from './images.js';
import { pushArtifact, pushBlob, pushManifest, type PushTarget } from './push.js';

export const COSIGN_MT = {
  simpleSigning: 'application/vnd.dev.cosign.simplesigning.v1+json',
  dsse: 'application/vnd.dsse.envelope.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  empty: 'application/vnd.oci.empty.v1+json',
  spdx: 'application/spdx+json',
} as const;

export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';

export interface KeyPair {
  privateKey: KeyObject;
  /** PEM SubjectPublicKeyInfo, what `cosign generate-key-pair` writes to cosign.pub. */
  publicPem: string;
}

/** An ECDSA P-256 key pair, as `cosign generate-key-pair` makes. */
export function generateCosignKeys(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

function digestOf(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function blob(mediaType: string, bytes: Buffer): Image['config'] {
  return { mediaType, bytes, digest: digestOf(bytes), size: bytes.length, open: () => Readable.from([bytes]) };
}

/** `sha256-<hex>` plus cosign's suffix. */
export function cosignTag(digest: string, suffix: '.sig' | '.att' | '.sbom' | '' = '.sig'): string {
  return `${digest.replace(':', '-')}${suffix}`;
}

/** cosign's simple-signing payload, exactly as `cosign sign` marshals it. */
export function simpleSigningPayload(dockerReference: string, digest: string): Buffer {
  return Buffer.from(JSON.stringify({
    critical: { identity: { 'docker-reference': dockerReference }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
    optional: null,
  }));
}

/** cosign's signature-image config: an empty image whose one diff_id is the payload's digest. */
function signatureConfig(layerDigests: string[]): Buffer {
  return Buffer.from(JSON.stringify({
    architecture: '', created: '0001-01-01T00:00:00Z', history: layerDigests.map(() => ({ created: '0001-01-01T00:00:00Z' })),
    os: '', rootfs: { type: 'layers', diff_ids: layerDigests }, config: {},
  }));
}

function ociImage(config: Image['config'], layers: (Image['config'] & { annotations?: Record<string, string> })[], extra: Record<string, unknown> = {}, artifactType?: string): Image {
  const desc = (b: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }) => ({
    mediaType: b.mediaType, size: b.size, digest: b.digest, ...(b.annotations ? { annotations: b.annotations } : {}),
  });
  const manifest = { schemaVersion: 2, mediaType: COSIGN_MT.ociManifest, ...(artifactType ? { artifactType } : {}), config: desc(config), layers: layers.map(desc), ...extra };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return {
    kind: 'manifest', mediaType: COSIGN_MT.ociManifest, bytes, digest: digestOf(bytes), size: bytes.length,
    platform: { os: '', architecture: '' }, config, layers, blobs: [config, ...layers],
  };
}

export interface SignOptions {
  /** Put these bytes in the layer instead of the payload that was signed (a tampered payload). */
  tamper?: (payload: Buffer) => Buffer;
  /** Sign the payload naming this digest instead (a signature replayed onto another image). */
  claimDigest?: string;
}

export interface Signature {
  manifest: Image;
  payload: Buffer;
  tag: string;
}

/** The `.sig` image cosign writes for `digest`: one simple-signing layer per key, each with its base64 ECDSA signature. */
export function makeSignature(dockerReference: string, digest: string, keys: KeyObject[], opts: SignOptions = {}): Signature {
  const payload = simpleSigningPayload(dockerReference, opts.claimDigest ?? digest);
  const layers = keys.map((k) => {
    const signature = sign('sha256', payload, k).toString('base64');
    const stored = opts.tamper ? opts.tamper(payload) : payload;
    return { ...blob(COSIGN_MT.simpleSigning, stored), annotations: { [SIGNATURE_ANNOTATION]: signature } };
  });
  const config = blob(COSIGN_MT.ociConfig, signatureConfig(layers.map((l) => l.digest)));
  return { manifest: ociImage(config, layers), payload, tag: cosignTag(digest, '.sig') };
}

/** DSSE pre-authentication encoding (what the envelope's signature covers). */
function pae(type: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(type)} ${type} ${body.length} `), body]);
}

/** The `.att` image `cosign attest` writes: one in-toto statement in a signed DSSE envelope. */
export function makeAttestation(name: string, digest: string, key: KeyObject): { manifest: Image; tag: string } {
  const predicateType = 'https://slsa.dev/provenance/v0.2';
  const statement = Buffer.from(JSON.stringify({
    _type: 'https://in-toto.io/Statement/v0.1', predicateType,
    subject: [{ name, digest: { sha256: digest.slice(7) } }],
    predicate: { builder: { id: 'https://ferry.test/builder' }, buildType: 'https://ferry.test/build' },
  }));
  const type = 'application/vnd.in-toto+json';
  const envelope = Buffer.from(JSON.stringify({
    payloadType: type, payload: statement.toString('base64'),
    signatures: [{ keyid: '', sig: sign('sha256', pae(type, statement), key).toString('base64') }],
  }));
  const layer = { ...blob(COSIGN_MT.dsse, envelope), annotations: { predicateType } };
  const config = blob(COSIGN_MT.ociConfig, signatureConfig([layer.digest]));
  return { manifest: ociImage(config, [layer]), tag: cosignTag(digest, '.att') };
}

/** An OCI 1.1 artifact (an SPDX SBOM) whose `subject` is the image, as `oras attach` writes it. */
export function makeSubjectArtifact(subject: { mediaType: string; digest: string; size: number }, seed: string): Image {
  const sbom = blob(COSIGN_MT.spdx, Buffer.from(JSON.stringify({ spdxVersion: 'SPDX-2.3', name: `sbom-${seed}`, packages: [{ name: seed, versionInfo: '1.0' }] })));
  const config = blob(COSIGN_MT.empty, Buffer.from('{}'));
  return ociImage(config, [sbom], { subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size }, annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' } }, COSIGN_MT.spdx);
}

/** The OCI 1.1 fallback for registries without the referrers API: an index tagged `sha256-<hex>` listing the referrers. */
export function makeReferrersIndex(referrers: Image[], artifactType: string): Index {
  const bytes = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: COSIGN_MT.ociIndex,
    manifests: referrers.map((r) => ({ mediaType: r.mediaType, digest: r.digest, size: r.size, artifactType })),
  }));
  return { kind: 'index', mediaType: COSIGN_MT.ociIndex, bytes, digest: digestOf(bytes), size: bytes.length, manifests: referrers };
}

/** Pushes a `.sig` / `.att` image under its cosign tag. */
export async function pushTagged(target: PushTarget, repo: string, made: { manifest: Image; tag: string }): Promise<void> {
  await pushArtifact(target, repo, made.manifest, [made.tag]);
}

/** Pushes a subject artifact by digest, then the fallback referrers index under `sha256-<hex>` (what oras does on a registry without the API). */
export async function pushReferrer(target: PushTarget, repo: string, artifact: Image, subjectDigest: string): Promise<Index> {
  for (const b of artifact.blobs) await pushBlob(target, repo, b);
  await pushManifest(target, repo, artifact.digest, artifact.bytes, artifact.mediaType);
  const index = makeReferrersIndex([artifact], COSIGN_MT.spdx);
  await pushManifest(target, repo, cosignTag(subjectDigest, ''), index.bytes, index.mediaType);
  return index;
}
