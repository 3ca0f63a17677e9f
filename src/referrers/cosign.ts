import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { ParsedManifest } from '../oci/manifest.js';
import { COSIGN_SIGNATURE_ANNOTATION, COSIGN_SIMPLESIGNING } from './scheme.js';

/**
 * Offline checking of cosign key-pair signatures: a `.sig` manifest's layers
 * are "simple signing" payloads naming the signed manifest digest, each with a
 * base64 signature over the payload bytes in an annotation. No transparency
 * log or certificate (keyless) checks: across an air gap there is no Rekor.
 */

/** cosign payloads are a few hundred bytes; anything larger is not one. */
export const PAYLOAD_MAX_BYTES = 1024 * 1024;

export async function loadPublicKey(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (e) {
    throw new FerryError('E_CONFIG', `cannot read public key ${path}: ${(e as Error).message}`, { hint: 'pass --key the cosign.pub file (PEM "PUBLIC KEY")', cause: e, details: { file: path } });
  }
  try {
    const key = createPublicKey({ key: pem, format: 'pem' });
    if (!['ec', 'rsa', 'ed25519'].includes(key.asymmetricKeyType ?? '')) throw new Error(`unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`);
    return key;
  } catch (e) {
    throw new FerryError('E_CONFIG', `${path} is not a usable public key: ${(e as Error).message}`, {
      hint: 'pass the public half of the signing key as a PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----"), e.g. cosign.pub', cause: e, details: { file: path },
    });
  }
}

/** One signature layer of a `.sig` manifest: the payload digest (to fetch) and the signature. */
export interface SignatureLayer {
  payload: Digest;
  size: number;
  /** Base64 as cosign writes it; undefined when the layer lacks the annotation. */
  signature?: string | undefined;
  mediaType: string;
}

export function signatureLayers(sig: ParsedManifest): SignatureLayer[] {
  return sig.layers.map((l) => {
    const s: SignatureLayer = { payload: l.digest, size: l.size, mediaType: l.mediaType };
    const a = l.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
    if (typeof a === 'string') s.signature = a;
    return s;
  });
}

/** Checks one signature layer against the image digest; returns undefined when it holds, else why not. */
export function checkSignature(layer: SignatureLayer, payload: Buffer | undefined, key: KeyObject, image: Digest): string | undefined {
  if (layer.mediaType !== COSIGN_SIMPLESIGNING) return `layer ${layer.payload} is ${layer.mediaType}, not a cosign simple-signing payload`;
  if (layer.signature === undefined) return `layer ${layer.payload} has no ${COSIGN_SIGNATURE_ANNOTATION} annotation`;
  if (payload === undefined) return `payload ${layer.payload} is not in this bundle`;
  const sig = Buffer.from(layer.signature, 'base64');
  let ok = false;
  try {
    // ECDSA and RSA keys sign SHA-256 digests (DER signatures for ECDSA); Ed25519 signs the message itself.
    ok = verify(key.asymmetricKeyType === 'ed25519' ? null : 'sha256', payload, key, sig);
  } catch {
    ok = false;
  }
  if (!ok) return `signature over payload ${layer.payload} does not verify with the key`;
  let named: unknown;
  let type: unknown;
  try {
    const doc = JSON.parse(payload.toString('utf8')) as { critical?: { image?: Record<string, unknown>; type?: unknown } };
    named = doc.critical?.image?.['docker-manifest-digest'];
    type = doc.critical?.type;
  } catch {
    return `payload ${layer.payload} is not JSON`;
  }
  if (type !== 'cosign container image signature') return `payload ${layer.payload} is not a cosign container image signature (type ${JSON.stringify(type)})`;
  if (named !== image) return `payload ${layer.payload} signs ${typeof named === 'string' ? named : JSON.stringify(named)}, not ${image}`;
  return undefined;
}
