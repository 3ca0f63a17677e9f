import type { Digest } from '../oci/digest.js';
import { shortDigest } from '../oci/digest.js';
import { splitQualifiedName } from '../oci/reference.js';
import { formatBytes, table } from '../format.js';
import type { Inventory } from './inventory.js';

/**
 * What changed between two inventories (each may stand for a bundle, its
 * metadata, a live target or an image list): images by repository and tag,
 * blobs by digest, with the bytes each way — the bytes only-in-B are what a
 * delta from A to B carries.
 */

export interface DiffSide {
  where: string;
  kind: string;
  id: string;
  images: number;
  blobs: number;
  bytes: number;
}

export interface ImageChange {
  image: string;
  from?: Digest;
  to?: Digest;
}

export interface BlobTotals {
  count: number;
  bytes: number;
}

export interface DiffResult {
  a: DiffSide;
  b: DiffSide;
  /** True when one side names repositories with their registry and the other without: hosts were dropped to compare. */
  hostsDropped: boolean;
  images: { added: ImageChange[]; removed: ImageChange[]; changed: ImageChange[]; unchanged: number };
  blobs: { onlyA: BlobTotals; onlyB: BlobTotals; both: BlobTotals; addedDigests: Digest[]; removedDigests: Digest[] };
}

function qualified(inv: Inventory): boolean {
  return inv.images.some((i) => splitQualifiedName(i.repository).registry !== undefined);
}

function imageKeys(inv: Inventory, dropHost: boolean): Map<string, Digest> {
  const out = new Map<string, Digest>();
  for (const i of inv.images) {
    const repo = dropHost ? splitQualifiedName(i.repository).repository : i.repository;
    // A digest-only image is its own key: it can be added or removed, never changed.
    out.set(i.tag !== undefined ? `${repo}:${i.tag}` : `${repo}@${i.digest}`, i.digest);
  }
  return out;
}

function side(where: string, kind: string, inv: Inventory): DiffSide {
  return { where, kind, id: inv.id, images: inv.images.length, blobs: inv.blobs.length, bytes: inv.blobs.reduce((n, b) => n + b.size, 0) };
}

export function diffInventories(a: { where: string; kind: string; inventory: Inventory }, b: { where: string; kind: string; inventory: Inventory }): DiffResult {
  const hostsDropped = a.inventory.images.length > 0 && b.inventory.images.length > 0 && qualified(a.inventory) !== qualified(b.inventory);
  const ia = imageKeys(a.inventory, hostsDropped);
  const ib = imageKeys(b.inventory, hostsDropped);
  const added: ImageChange[] = [];
  const removed: ImageChange[] = [];
  const changed: ImageChange[] = [];
  let unchanged = 0;
  for (const [k, d] of ia) {
    const other = ib.get(k);
    if (other === undefined) removed.push({ image: k, from: d });
    else if (other !== d) changed.push({ image: k, from: d, to: other });
    else unchanged++;
  }
  for (const [k, d] of ib) if (!ia.has(k)) added.push({ image: k, to: d });
  const ba = new Map(a.inventory.blobs.map((x) => [x.digest, x.size]));
  const bb = new Map(b.inventory.blobs.map((x) => [x.digest, x.size]));
  const onlyA: BlobTotals = { count: 0, bytes: 0 };
  const onlyB: BlobTotals = { count: 0, bytes: 0 };
  const both: BlobTotals = { count: 0, bytes: 0 };
  const removedDigests: Digest[] = [];
  const addedDigests: Digest[] = [];
  for (const [d, s] of ba) {
    if (bb.has(d)) { both.count++; both.bytes += s; } else { onlyA.count++; onlyA.bytes += s; removedDigests.push(d); }
  }
  for (const [d, s] of bb) if (!ba.has(d)) { onlyB.count++; onlyB.bytes += s; addedDigests.push(d); }
  const byName = (x: ImageChange, y: ImageChange) => (x.image < y.image ? -1 : x.image > y.image ? 1 : 0);
  return {
    a: side(a.where, a.kind, a.inventory),
    b: side(b.where, b.kind, b.inventory),
    hostsDropped,
    images: { added: added.sort(byName), removed: removed.sort(byName), changed: changed.sort(byName), unchanged },
    blobs: { onlyA, onlyB, both, addedDigests: addedDigests.sort(), removedDigests: removedDigests.sort() },
  };
}

export function renderDiff(d: DiffResult): string {
  const head = (label: string, s: DiffSide) => `${label}: ${s.where} (${s.kind}; ${s.images} images, ${s.blobs} blobs, ${formatBytes(s.bytes)})`;
  const lines = [head('A', d.a), head('B', d.b)];
  if (d.hostsDropped) lines.push('(one side names repositories without their registry: compared without registry hosts)');
  const rows: string[][] = [];
  for (const c of d.images.changed) rows.push([c.image, 'changed', shortDigest(c.from!), '→', shortDigest(c.to!)]);
  for (const c of d.images.added) rows.push([c.image, 'added', '', '', shortDigest(c.to!)]);
  for (const c of d.images.removed) rows.push([c.image, 'removed', shortDigest(c.from!), '', '']);
  lines.push('');
  if (rows.length > 0) lines.push(table([['IMAGE', 'CHANGE', 'A', '', 'B'], ...rows]));
  else lines.push('no image added, removed or changed');
  lines.push(`${d.images.unchanged} image(s) unchanged`);
  lines.push('');
  lines.push(table([
    ['BLOBS', 'COUNT', 'BYTES'],
    ['only in A (B lacks)', String(d.blobs.onlyA.count), formatBytes(d.blobs.onlyA.bytes)],
    ['only in B (a delta A→B carries)', String(d.blobs.onlyB.count), formatBytes(d.blobs.onlyB.bytes)],
    ['in both', String(d.blobs.both.count), formatBytes(d.blobs.both.bytes)],
  ]));
  return lines.join('\n');
}
