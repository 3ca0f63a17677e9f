import { basename, dirname, join } from 'node:path';
import { FerryError } from '../errors.js';
import { INPUT, parseJsonInput, readInputFile } from '../input-limits.js';
import { writeDocument } from '../fsys/atomic.js';
import { type Digest, parseDigest } from '../oci/digest.js';
import { parseVolumeName, volumeStem } from '../transports/bundle/volumes.js';

/**
 * The repair report (spec/repair.md): what `ferry verify` found bad in a
 * bundle or volume set, small enough to carry back to the connected side,
 * where `ferry export --repair` turns it into a bundle of just those blobs.
 */
export type RepairProblem = 'missing' | 'digest-mismatch' | 'size-mismatch' | 'truncated';

export interface RepairBlob {
  digest: Digest;
  size: number;
  mediaType: string;
  problem: RepairProblem;
  images: string[];
}

export interface RepairReport {
  format: 'ferry-repair';
  version: 1;
  bundleId: Digest;
  /** Digest of the whole bundle's metadata (for a split bundle: its STEM.ferry.json), recorded as the repair bundle's delta base. */
  metadataDigest: Digest;
  /** 0-based volume indexes, as in the volume metadata and the NNN of the file names. */
  volumes?: { missing: number[]; damaged: number[] };
  blobs: RepairBlob[];
}

const PROBLEMS: readonly RepairProblem[] = ['missing', 'digest-mismatch', 'size-mismatch', 'truncated'];

/** The problem an error code stands for; anything unrecognised is a blob that could not be had, i.e. missing. */
export function problemOf(code: string): RepairProblem {
  switch (code) {
    case 'E_DIGEST_MISMATCH': return 'digest-mismatch';
    case 'E_SIZE_MISMATCH': return 'size-mismatch';
    case 'E_BUNDLE_TRUNCATED': return 'truncated';
    default: return 'missing';
  }
}

/** Where verify writes the report unless told: beside the bundle, `rel.tar.zst` / `rel.000.tar` / `rel.sha256` → `rel.repair.json`. */
export function defaultReportPath(input: string): string {
  const name = basename(input).replace(/\.sha256$/, '');
  const stem = parseVolumeName(name)?.stem ?? volumeStem(name);
  return join(dirname(input), `${stem}.repair.json`);
}

export async function writeRepairReport(path: string, report: RepairReport): Promise<void> {
  await writeDocument(path, `${JSON.stringify(report, null, 2)}\n`);
}

export async function readRepairReport(path: string): Promise<RepairReport> {
  let bytes: Buffer;
  try {
    bytes = await readInputFile(path, INPUT.repairReport);
  } catch (e) {
    if (e instanceof FerryError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new FerryError(code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `${path}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`, { hint: 'give the .repair.json file ferry verify wrote', details: { file: path } });
  }
  const bad = (why: string): FerryError => new FerryError('E_USAGE', `${path}: not a ferry repair report: ${why}`, {
    hint: 'give the .repair.json file ferry verify wrote (spec/repair.md), unedited', details: { file: path },
  });
  let doc: Record<string, unknown>;
  try {
    doc = parseJsonInput(bytes, path, INPUT.repairReport) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof FerryError) throw e;
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || doc.format !== 'ferry-repair') throw bad('"format" is not "ferry-repair"');
  if (doc.version !== 1) throw bad(`version ${JSON.stringify(doc.version)} is not supported (this ferry reads version 1)`);
  const bundleId = parseDigest(doc.bundleId, `${path}: bundleId`);
  const metadataDigest = parseDigest(doc.metadataDigest, `${path}: metadataDigest`);
  if (!Array.isArray(doc.blobs) || doc.blobs.length === 0) throw bad('"blobs" must list at least one blob');
  const seen = new Set<string>();
  const blobs = doc.blobs.map((v: unknown, i: number): RepairBlob => {
    const b = v as Record<string, unknown>;
    if (typeof b !== 'object' || b === null) throw bad(`blobs[${i}] is not an object`);
    const digest = parseDigest(b.digest, `${path}: blobs[${i}].digest`);
    if (seen.has(digest)) throw bad(`blobs[${i}]: ${digest} is listed twice`);
    seen.add(digest);
    if (typeof b.size !== 'number' || !Number.isSafeInteger(b.size) || b.size < 0) throw bad(`blobs[${i}].size is not a size`);
    if (typeof b.mediaType !== 'string') throw bad(`blobs[${i}].mediaType is not a string`);
    if (!PROBLEMS.includes(b.problem as RepairProblem)) throw bad(`blobs[${i}].problem is not one of ${PROBLEMS.join(', ')}`);
    const images = Array.isArray(b.images) ? b.images.filter((s): s is string => typeof s === 'string') : [];
    return { digest, size: b.size, mediaType: b.mediaType, problem: b.problem as RepairProblem, images };
  });
  return { format: 'ferry-repair', version: 1, bundleId, metadataDigest, blobs };
}
