import { FerryError } from '../errors.js';
import { type Digest, parseDigest, sha256Digest } from './digest.js';
import { FOREIGN_LAYER_MEDIA_TYPES, IMAGE_MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES, MT, sharedMediaType } from './media-types.js';
import type { Platform } from './platform.js';
import { JSON_MAX_DEPTH, jsonDepth } from './json-depth.js';

/** What one content-addressed object is: the OCI descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  artifactType?: string;
  urls?: string[];
}

/**
 * A manifest exactly as its source holds it, and the digest of those bytes. The
 * bytes are the identity: re-serialising the JSON would change the digest, so
 * they are never rebuilt or changed. Built only by manifestFromBytes (which
 * hashes) or manifestWithDigest (which hashes and holds the bytes to a claimed
 * digest), so whoever holds a Manifest can trust that `digest` is its bytes'
 * hash without hashing again.
 */
export interface Manifest {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export interface ParsedManifest {
  kind: 'image' | 'index';
  mediaType: string;
  /** Image manifests: the config blob. */
  config?: Descriptor;
  /** Image manifests: the layers, in order. */
  layers: Descriptor[];
  /** Indexes: the child manifests. */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** Manifests above this size are refused: they are JSON documents, and a hostile one could be huge. Same cap as distribution. */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

function invalid(where: string, why: string): FerryError {
  return new FerryError('E_MANIFEST_INVALID', `${where}: ${why}`, {
    hint: 'the manifest is damaged or not an OCI/Docker v2 manifest; re-export it from its registry',
    details: { where },
  });
}

function parseDescriptor(v: unknown, where: string): Descriptor {
  if (typeof v !== 'object' || v === null) throw invalid(where, 'descriptor is not an object');
  const o = v as Record<string, unknown>;
  if (typeof o.mediaType !== 'string' || o.mediaType.length > 255) throw invalid(where, 'descriptor has no mediaType');
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0) throw invalid(where, 'descriptor size is not a non-negative integer');
  const d: Descriptor = { mediaType: sharedMediaType(o.mediaType), digest: parseDigest(o.digest, `${where}.digest`), size: o.size };
  if (o.platform && typeof o.platform === 'object') {
    const p = o.platform as Record<string, unknown>;
    if (typeof p.os === 'string' && typeof p.architecture === 'string') {
      d.platform = { os: p.os, architecture: p.architecture };
      if (typeof p.variant === 'string') d.platform.variant = p.variant;
      if (typeof p['os.version'] === 'string') d.platform['os.version'] = p['os.version'];
    }
  }
  if (o.annotations && typeof o.annotations === 'object') d.annotations = o.annotations as Record<string, string>;
  if (typeof o.artifactType === 'string') d.artifactType = o.artifactType;
  if (Array.isArray(o.urls)) d.urls = o.urls.filter((u): u is string => typeof u === 'string');
  return d;
}

/**
 * Parses manifest bytes. `declaredMediaType` is what the registry's Content-Type
 * or the parent descriptor said; the document's own `mediaType` field wins when present.
 */
export function parseManifest(bytes: Uint8Array, declaredMediaType: string | undefined, where = 'manifest'): ParsedManifest {
  if (bytes.length > MANIFEST_MAX_BYTES) throw invalid(where, `manifest is ${bytes.length} bytes, more than the ${MANIFEST_MAX_BYTES} allowed`);
  let doc: unknown;
  // A view, not a copy: Buffer.from(bytes) would copy the whole document first.
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw invalid(where, `not JSON (${(e as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid(where, 'not a JSON object');
  if (jsonDepth(text) > JSON_MAX_DEPTH) throw invalid(where, `nests deeper than ${JSON_MAX_DEPTH} levels`);
  const o = doc as Record<string, unknown>;
  if (o.schemaVersion === 1) {
    throw new FerryError('E_UNSUPPORTED_MEDIA_TYPE', `${where}: Docker schema 1 manifests are not supported`, {
      hint: 'schema 1 is deprecated and unsigned; rebuild or re-push the image with a current client', details: { where },
    });
  }
  let mediaType = typeof o.mediaType === 'string' ? sharedMediaType(o.mediaType) : declaredMediaType;
  if (mediaType === undefined || mediaType === '' || mediaType === 'application/json') {
    if (Array.isArray(o.manifests)) mediaType = MT.ociIndex;
    else if (o.config !== undefined) mediaType = MT.ociManifest;
  }
  if (mediaType === undefined) throw invalid(where, 'no mediaType and neither config nor manifests');

  if (INDEX_MEDIA_TYPES.includes(mediaType)) {
    if (!Array.isArray(o.manifests)) throw invalid(where, 'index has no manifests array');
    const parsed: ParsedManifest = {
      kind: 'index', mediaType, layers: [],
      manifests: o.manifests.map((m, i) => parseDescriptor(m, `${where}.manifests[${i}]`)),
    };
    addCommon(parsed, o, where);
    return parsed;
  }
  if (IMAGE_MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    if (o.config === undefined) throw invalid(where, 'image manifest has no config');
    const layers = o.layers === undefined ? [] : o.layers;
    if (!Array.isArray(layers)) throw invalid(where, 'layers is not an array');
    const parsed: ParsedManifest = {
      kind: 'image', mediaType, manifests: [],
      config: parseDescriptor(o.config, `${where}.config`),
      layers: layers.map((l, i) => parseDescriptor(l, `${where}.layers[${i}]`)),
    };
    addCommon(parsed, o, where);
    return parsed;
  }
  throw new FerryError('E_UNSUPPORTED_MEDIA_TYPE', `${where}: unsupported manifest media type ${JSON.stringify(mediaType.slice(0, 100))}`, {
    hint: 'ferry carries OCI image manifests and indexes and Docker schema 2 manifests and manifest lists', details: { where, mediaType },
  });
}

function addCommon(parsed: ParsedManifest, o: Record<string, unknown>, where: string): void {
  if (o.subject !== undefined) parsed.subject = parseDescriptor(o.subject, `${where}.subject`);
  if (typeof o.artifactType === 'string') parsed.artifactType = o.artifactType;
  if (o.annotations && typeof o.annotations === 'object') parsed.annotations = o.annotations as Record<string, string>;
}

/** The blobs (config first, then layers) an image manifest needs; empty for an index. */
export function blobsOf(m: ParsedManifest): Descriptor[] {
  return m.kind === 'image' && m.config ? [m.config, ...m.layers] : [];
}

/**
 * A foreign (non-distributable) layer: a foreign media type and `urls` to fetch it
 * from. Registries do not hold its bytes; ferry carries its descriptor and, unless
 * asked (`--include-foreign`), not its bytes.
 */
export function isForeignLayer(d: Pick<Descriptor, 'mediaType' | 'urls'>): boolean {
  return FOREIGN_LAYER_MEDIA_TYPES.includes(d.mediaType) && (d.urls?.length ?? 0) > 0;
}

/**
 * The manifest of exact bytes, with their digest. `mediaType` is what the source
 * said (Content-Type, a descriptor); undefined takes it from the document itself.
 */
export function manifestFromBytes(bytes: Buffer, mediaType: string | undefined, where = 'manifest'): Manifest {
  return { bytes, digest: sha256Digest(bytes), mediaType: mediaType ?? parseManifest(bytes, undefined, where).mediaType };
}

export interface ClaimedDigest {
  /** The digest the bytes were asked for or stored under. */
  digest: Digest;
  /** What held them (the image, the file), for the message. */
  where: string;
  /** What to do about a mismatch, which depends on who altered the bytes. */
  hint: string;
  details?: Record<string, unknown>;
}

/**
 * manifestFromBytes for bytes that must hash to `claimed.digest` (fetched by
 * digest, stored under it): E_DIGEST_MISMATCH when they do not, checked before
 * the document is read at all.
 */
export function manifestWithDigest(bytes: Buffer, mediaType: string | undefined, claimed: ClaimedDigest): Manifest {
  const actual = sha256Digest(bytes);
  if (actual !== claimed.digest) {
    throw new FerryError('E_DIGEST_MISMATCH', `${claimed.where}: manifest hashes to ${actual}, not the ${claimed.digest} it was asked for or stored under`, {
      hint: claimed.hint, details: { where: claimed.where, ...claimed.details, expected: claimed.digest, actual },
    });
  }
  return { bytes, digest: actual, mediaType: mediaType ?? parseManifest(bytes, undefined, claimed.where).mediaType };
}

/** Checks that a manifest fetched for `expected` is that manifest (a source may answer with another one). */
export function checkManifestDigest(m: { readonly digest: Digest }, expected: Digest, where: string): void {
  if (m.digest !== expected) {
    throw new FerryError('E_DIGEST_MISMATCH', `${where}: manifest content hashes to ${m.digest}, not the ${expected} that was asked for`, {
      hint: 'the source (a registry, or something between it and you) altered the manifest; do not trust it',
      details: { where, expected, actual: m.digest },
    });
  }
}
