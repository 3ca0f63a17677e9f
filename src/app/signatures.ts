import type { KeyObject } from 'node:crypto';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { parseManifest } from '../oci/manifest.js';
import { checkSignature, type SignatureLayer, signatureLayers } from '../referrers/cosign.js';
import { cosignTag, parseSchemeTag } from '../referrers/scheme.js';
import type { BundleImage, BundleMetadata } from '../transports/bundle/metadata.js';
import type { ImageSource } from '../transports/types.js';

/** What `ferry verify --key` found for one image of the bundle. */
export interface SignatureCheck {
  image: string;
  digest: Digest;
  /** `verified`: at least one signature holds and none is bad; `invalid`: a signature is there and fails; `unsigned`: no `.sig` in the bundle. */
  status: 'verified' | 'unsigned' | 'invalid';
  /** Signatures that hold. */
  valid: number;
  problems: string[];
}

interface Pending {
  image: BundleImage;
  layers: SignatureLayer[];
}

/**
 * The images whose signatures `verify --key` checks: every image of the bundle
 * except the signatures, attestations, SBOMs and referrer lists themselves. Its
 * `.sig` is found by cosign's own naming (`sha256-<hex>.sig` in the same
 * repository), so no bundle field is needed for the link.
 */
export class SignatureChecks {
  private constructor(private readonly pending: Pending[]) {}

  static async plan(source: ImageSource, meta: BundleMetadata): Promise<SignatureChecks> {
    const byName = new Map(meta.images.filter((i) => i.tag !== undefined).map((i) => [`${i.repository}:${i.tag!}`, i]));
    const pending: Pending[] = [];
    for (const image of meta.images) {
      if (parseSchemeTag(image.tag)) continue;
      const top = await source.getManifest(image.repository, image.digest);
      if (parseManifest(top.bytes, top.mediaType, image.origin).subject) continue;
      const sig = byName.get(`${image.repository}:${cosignTag(image.digest, '.sig')}`);
      let layers: SignatureLayer[] = [];
      if (sig) {
        const m = await source.getManifest(sig.repository, sig.digest);
        layers = signatureLayers(parseManifest(m.bytes, m.mediaType, sig.origin));
      }
      pending.push({ image, layers });
    }
    return new SignatureChecks(pending);
  }

  /** Payload blobs to keep while the bundle is verified. */
  get payloads(): Set<Digest> {
    return new Set(this.pending.flatMap((p) => p.layers.map((l) => l.payload)));
  }

  check(key: KeyObject, payloads: ReadonlyMap<Digest, Buffer>): SignatureCheck[] {
    return this.pending.map(({ image, layers }) => {
      const problems: string[] = [];
      let valid = 0;
      for (const l of layers) {
        const why = checkSignature(l, payloads.get(l.payload), key, image.digest);
        if (why === undefined) valid++;
        else problems.push(why);
      }
      const status = layers.length === 0 ? 'unsigned' : problems.length === 0 ? 'verified' : 'invalid';
      return { image: image.origin, digest: image.digest, status, valid, problems };
    });
  }
}

/** The error for bad signatures (always) and unsigned images (with --require-signed); undefined when all is well. */
export function signatureError(bundle: string, checks: SignatureCheck[], requireSigned: boolean): FerryError | undefined {
  const failed = checks.filter((c) => c.status === 'invalid' || (requireSigned && c.status === 'unsigned'));
  if (failed.length === 0) return undefined;
  const lines = failed.slice(0, 20).map((c) => `  ${c.image} (${c.digest}): ${c.status === 'unsigned' ? 'not signed (no cosign .sig in the bundle)' : c.problems.join('; ')}`);
  if (failed.length > 20) lines.push(`  … and ${failed.length - 20} more`);
  return new FerryError('E_VERIFY_FAILED', `${bundle}: ${failed.length} of ${checks.length} images failed signature verification:\n${lines.join('\n')}`, {
    hint: failed.some((c) => c.status === 'invalid')
      ? 'a signature does not match this key or its image: check that --key is the signer\'s public key; otherwise do not use the image'
      : 'sign the image (cosign sign --key …) before exporting, or drop --require-signed',
    details: { bundle, images: failed.map((c) => ({ image: c.image, digest: c.digest, status: c.status, problems: c.problems })) },
  });
}
