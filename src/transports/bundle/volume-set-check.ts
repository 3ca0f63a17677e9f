// The set check of a split bundle: which volumes were given, which are missing or damaged (against the sidecar and the set's metadata record), before any layer is read.
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { asFerryError, FerryError } from '../../errors.js';
import { type Digest, digestStream, sha256Digest } from '../../oci/digest.js';
import { type BundleBlob, type BundleMetadata, type BundlePart, METADATA_MAX_BYTES, parseMetadata } from './metadata.js';
import { BundleSource } from './reader.js';
import { parseSidecar, parseVolumeName, volumeName } from './volumes.js';

/** What a reader was given of a split bundle, for reports. */
export interface VolumeSetInfo {
  count: number;
  /** 1-based numbers and files of the volumes read. */
  given: { volume: number; file: string }[];
  /** Volumes neither given nor (with a sidecar) found; `file` is the expected name when known. */
  missing: { volume: number; file?: string }[];
  /** Volumes given that are not what was exported: the file does not match the sidecar's checksum, or its metadata not the set's record. */
  damaged: { volume: number; file: string }[];
  /** The set came from a `.sha256` list: every listed volume was asked for. */
  fromSidecar: boolean;
}

/** A given volume whose metadata could be read: what it holds, and whether it can be used. */
export interface CheckedVolume {
  index: number;
  file: string;
  /** Whole layers the file holds. */
  layers: BundleBlob[];
  /** Parts of layers cut across volumes that the file holds. */
  parts: BundlePart[];
  /** Set when the file cannot be used at all (checksum mismatch). */
  unusable?: FerryError;
}

/** The outcome of the set check: the volumes to read and what the report says of the set. */
export interface VolumeSetCheck {
  /** The given volumes whose metadata could be read, in volume order; a damaged one carries `unusable`. */
  members: CheckedVolume[];
  info: VolumeSetInfo;
  /** Given files that could not be read even as far as their metadata, by the volume index their names give. */
  unreadable: Map<number, { file: string; error: FerryError }>;
}

/**
 * Sorts what was given (volume files, a `.sha256` list) into the volumes of
 * one split bundle: refuses volumes of different bundles or one volume given
 * twice, places files cut inside their metadata by their names, checks each
 * volume against the sidecar's checksum and the set's metadata record, and
 * names the volumes missing.
 */
export async function checkVolumeSet(inputs: readonly string[]): Promise<VolumeSetCheck> {
  // File name → checksum expected by a sidecar, and the sidecar's own order (index order, as export writes it).
  const expected = new Map<string, string>();
  const listed: string[] = [];
  const files: string[] = [];
  let sidecar: string | undefined;
  for (const input of inputs) {
    if (input === '-') throw new FerryError('E_USAGE', 'volumes of a split bundle are read from files, not stdin', { hint: 'give the volume files or their .sha256 list' });
    if (input.endsWith('.sha256')) {
      const text = await readFile(input, 'utf8').catch((e: unknown) => { throw asIoError(e, input); });
      for (const e of parseSidecar(text, input)) {
        const p = resolve(e.path);
        expected.set(p, e.sha256);
        listed.push(p);
      }
      sidecar = input;
    } else {
      files.push(resolve(input));
    }
  }
  for (const p of listed) {
    if (!files.includes(p) && (await stat(p).then((s) => s.isFile(), () => false))) files.push(p);
  }

  const members = new Map<number, Peeked>();
  let ref: BundleMetadata | undefined;
  // A file cut (or damaged) before the end of its metadata cannot say which volume it is: its name may.
  const unread: { file: string; error: FerryError }[] = [];
  for (const file of files) {
    let meta: BundleMetadata;
    let whole: Digest;
    try {
      ({ metadata: meta, wholeMetadataDigest: whole } = await BundleSource.peek(file));
    } catch (e) {
      const error = asFerryError(e);
      if (!UNREADABLE_VOLUME.has(error.code)) throw e;
      unread.push({ file, error });
      continue;
    }
    const vol = meta.volume;
    if (!vol) {
      throw new FerryError('E_USAGE', `${file} is a whole bundle, not a volume of a split one`, { hint: 'give a whole bundle alone; give volumes only together with volumes of the same bundle', details: { file } });
    }
    if (ref && (meta.bundleId !== ref.bundleId || vol.count !== ref.volume!.count)) {
      throw new FerryError('E_USAGE', `${file} is volume ${vol.index + 1} of ${vol.count} of bundle ${meta.bundleId}, not of ${ref.bundleId} (${ref.volume!.count} volumes) like the others`, {
        hint: 'give the volumes of one bundle only', details: { file, bundleId: meta.bundleId },
      });
    }
    ref ??= meta;
    const dup = members.get(vol.index);
    if (dup) {
      throw new FerryError('E_USAGE', `volume ${vol.index + 1} of ${vol.count} was given twice: ${dup.file} and ${file}`, { hint: 'give each volume once', details: { files: [dup.file, file] } });
    }
    const held = new Set<string>(vol.blobs);
    members.set(vol.index, { index: vol.index, file, meta, whole, layers: meta.blobs.filter((b) => b.kind === 'layer' && held.has(b.digest)), parts: vol.parts ?? [] });
  }
  if (!ref) {
    if (unread[0]) throw unread[0].error;
    throw new FerryError('E_NOT_FOUND', `${sidecar ?? 'the volume list'}: none of the listed volumes is there`, {
      hint: 'copy the volume files next to their .sha256 list', details: { files: listed },
    });
  }
  const count = ref.volume!.count;
  const unreadable = new Map<number, { file: string; error: FerryError }>();
  const someMember = [...members.values()][0]!;
  for (const u of unread) {
    const index = listed.length === count && listed.includes(u.file) ? listed.indexOf(u.file) : volumeIndexByName(u.file, someMember.file, someMember.index, count);
    if (index === undefined || members.has(index) || unreadable.has(index)) throw u.error;
    unreadable.set(index, u);
  }

  // A sidecar is the sender's word on each file: check it before reading (a damaged volume fails its own layers only).
  const damaged: VolumeSetInfo['damaged'] = [];
  for (const m of members.values()) {
    const want = expected.get(m.file);
    if (want === undefined) continue;
    const have = await sha256File(m.file);
    if (have !== want) {
      damaged.push({ volume: m.index + 1, file: m.file });
      m.unusable = new FerryError('E_DIGEST_MISMATCH', `volume ${m.index + 1} of ${count} (${basename(m.file)}) does not match its sha256 in ${basename(sidecar!)}: the file is damaged`, {
        hint: 'copy this volume again from the exporting side', details: { file: m.file, volume: m.index + 1, expected: want, actual: have },
      });
    }
  }

  for (const m of await checkAgainstRecord(members, count, sidecar)) damaged.push({ volume: m.index + 1, file: m.file });

  const missing: VolumeSetInfo['missing'] = [];
  const known = [...members.values()][0]!;
  for (let i = 0; i < count; i++) {
    if (members.has(i)) continue;
    const fromList = listed.length === count ? listed[i] : undefined;
    const guess = unreadable.get(i)?.file ?? fromList ?? guessName(known.file, known.index, i, count);
    missing.push({ volume: i + 1, ...(guess !== undefined ? { file: guess } : {}) });
  }
  const ordered = [...members.values()].sort((a, b) => a.index - b.index);
  const info: VolumeSetInfo = {
    count, given: ordered.map((m) => ({ volume: m.index + 1, file: m.file })), missing, damaged, fromSidecar: sidecar !== undefined,
  };
  return { members: ordered, info, unreadable };
}

/** A given volume as its metadata describes it, before it is read. */
interface Peeked extends CheckedVolume {
  meta: BundleMetadata;
  /** sha256 of the whole bundle's metadata this volume carries (what STEM.ferry.json holds). */
  whole: Digest;
}

/**
 * Every volume carries the whole bundle's metadata, the record of the cut
 * (`split`) included, and checks its own part records against it when it is
 * parsed. That record is checked here against the set's: STEM.ferry.json beside
 * the volumes, else what the other volumes carry (beside a lone one too). A
 * volume whose metadata differs was altered: it is not read, and the images
 * that need its layers fail (spec/bundle.md §9.3).
 */
async function checkAgainstRecord(members: Map<number, Peeked>, count: number, sidecar: string | undefined): Promise<Peeked[]> {
  const given = [...members.values()];
  const first = given[0]!;
  const stemOf = parseVolumeName(first.file)?.stem;
  const stem = sidecar !== undefined ? resolve(sidecar).replace(/\.sha256$/, '') : stemOf;
  let record: { name: string; whole: Digest; meta: BundleMetadata } | undefined;
  if (stem !== undefined) record = await readRecord(`${stem}.ferry.json`, first.meta.bundleId);
  if (!record) {
    // No STEM.ferry.json: the metadata most volumes carry. Fewer than three given: the nearest other volumes
    // beside them vote too (their ferry.json only), so that one altered volume cannot tie with one intact.
    const voters: { file: string; whole: Digest; meta: BundleMetadata }[] = [...given];
    const byDistance = [...Array(count).keys()].sort((a, b) => Math.abs(a - first.index) - Math.abs(b - first.index) || a - b);
    for (const i of byDistance) {
      if (voters.length >= 3) break;
      const sibling = members.has(i) ? undefined : guessName(first.file, first.index, i, count);
      if (sibling === undefined || !(await stat(sibling).then((x) => x.isFile(), () => false))) continue;
      const peeked = await BundleSource.peek(sibling).catch(() => undefined);
      if (peeked?.metadata.bundleId === first.meta.bundleId) voters.push({ file: sibling, whole: peeked.wholeMetadataDigest, meta: peeked.metadata });
    }
    const tally = new Map<Digest, typeof voters>();
    for (const v of voters) tally.set(v.whole, [...(tally.get(v.whole) ?? []), v]);
    if (tally.size <= 1) return [];
    const ranked = [...tally.values()].sort((a, b) => b.length - a.length);
    if (ranked[0]!.length === ranked[1]!.length) {
      throw new FerryError('E_BUNDLE_INVALID', `the volumes disagree about the bundle's metadata (${voters.map((v) => `${basename(v.file)}: ${v.whole}`).join(', ')}), and ${stem !== undefined ? `${basename(stem)}.ferry.json` : 'STEM.ferry.json'} is not beside them to tell which was altered`, {
        hint: 'copy STEM.ferry.json (written beside the volumes by the export) next to them, or copy the volumes again from the exporting side',
        details: { files: voters.map((v) => v.file), digests: voters.map((v) => v.whole) },
      });
    }
    const most = ranked[0]!;
    record = { name: `the metadata of ${most.map((v) => basename(v.file)).join(', ')}`, whole: most[0]!.whole, meta: most[0]!.meta };
  }
  const altered: Peeked[] = [];
  for (const m of given) {
    if (m.whole === record.whole || m.unusable) continue;
    altered.push(m);
    const diff = firstPartDifference(m.meta, record.meta);
    m.unusable = new FerryError(diff ? 'E_DIGEST_MISMATCH' : 'E_BUNDLE_INVALID', `volume ${m.index + 1} of ${count} (${basename(m.file)}): its metadata is not the bundle's (${record.name})${diff ? `: ${diff.text}` : ''}; the volume was altered after export`, {
      hint: 'copy this volume again from the exporting side; the images that do not need its layers are not affected',
      details: { file: m.file, volume: m.index + 1, expected: record.whole, actual: m.whole, ...(diff ? { digest: diff.digest, part: diff.part } : {}) },
    });
  }
  return altered;
}

/** STEM.ferry.json, when it is there and names the same bundle: the exporter's record of the whole set. */
async function readRecord(path: string, bundleId: Digest): Promise<{ name: string; whole: Digest; meta: BundleMetadata } | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile() || st.size > METADATA_MAX_BYTES) return undefined;
  try {
    const bytes = await readFile(path);
    const meta = parseMetadata(bytes, path);
    // Another export's STEM.ferry.json (same name, other bundle) says nothing about these volumes.
    return meta.bundleId === bundleId && !meta.volume ? { name: basename(path), whole: sha256Digest(bytes), meta } : undefined;
  } catch {
    return undefined;
  }
}

/** The first part whose record in `meta` differs from the set's: what to name when a volume was altered. */
function firstPartDifference(meta: BundleMetadata, record: BundleMetadata): { text: string; digest: Digest; part: number } | undefined {
  const theirs = record.split?.parts ?? [];
  for (const p of meta.split?.parts ?? []) {
    const r = theirs.find((x) => x.digest === p.digest && x.index === p.index);
    if (r && r.partDigest === p.partDigest && r.size === p.size && r.offset === p.offset && r.volume === p.volume) continue;
    const says = r ? `its bytes hash to ${r.partDigest} (${r.size} bytes at ${r.offset}) by the set's record, ${p.partDigest} by this volume's` : 'the set\'s record has no such part';
    return { text: `part ${p.index + 1} of ${p.count} of layer ${p.digest}: ${says}`, digest: p.digest, part: p.index + 1 };
  }
  return undefined;
}

/** Errors that make one volume unreadable without saying anything about the others (each volume is checked on its own). */
const UNREADABLE_VOLUME = new Set(['E_BUNDLE_TRUNCATED', 'E_BUNDLE_CORRUPT', 'E_BUNDLE_INVALID', 'E_DIGEST_MISMATCH', 'E_SIZE_MISMATCH', 'E_MANIFEST_INVALID', 'E_BLOB_MISSING']);

/** An error that says a file cannot be read as a bundle (damaged, cut short), not that the reader cannot work at all. */
export function isUnreadableBundleError(e: unknown): boolean {
  return UNREADABLE_VOLUME.has(asFerryError(e).code);
}

/** The volume index in `file`'s name (`rel.002.tar` → 2), when it follows the naming of the known volume `other`. */
function volumeIndexByName(file: string, other: string, otherIndex: number, count: number): number | undefined {
  const a = parseVolumeName(file);
  const b = parseVolumeName(other);
  if (!a || !b || a.stem !== b.stem || a.compressed !== b.compressed || b.index !== otherIndex) return undefined;
  return a.index < count ? a.index : undefined;
}

/** The name volume `index` would have, from a given volume's name, when that follows export's naming. */
function guessName(file: string, fileIndex: number, index: number, count: number): string | undefined {
  const m = parseVolumeName(file);
  return m && m.index === fileIndex ? volumeName(m.stem, index, count, m.compressed) : undefined;
}

/** A whole volume's sha256 hex, for its sidecar line. */
async function sha256File(file: string): Promise<string> {
  const hashed = await digestStream(createReadStream(file, { highWaterMark: 1 << 20 })).catch((e: unknown) => { throw asIoError(e, file); });
  return hashed.digest.slice('sha256:'.length);
}

function asIoError(e: unknown, file: string): FerryError {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return new FerryError('E_NOT_FOUND', `${file}: no such file`, { hint: 'check the path', details: { file }, cause: e });
  return asFerryError(e, 'E_IO');
}
