// Deep validators, independent of src/: walk an image (manifest → children → config and
// layers) in a registry over HTTP or in a skopeo dir: tree, fetch every blob, and check
// sha256 and size against the descriptors. Any problem throws with the full list.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { clientFor, type RegistryClient, type RegistryTarget } from './http.js';

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const IMAGE_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
}

interface ParsedManifest {
  mediaType?: string;
  manifests?: Descriptor[];
  config?: Descriptor;
  layers?: Descriptor[];
}

export interface Walked {
  /** Digest of the top manifest. */
  digest: string;
  mediaType: string;
  /** All manifests seen (top and children). */
  manifests: Set<string>;
  /** All config and layer blobs seen. */
  blobs: Set<string>;
  /** manifests ∪ blobs. */
  digests: Set<string>;
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function kindOf(m: ParsedManifest, headerType?: string): 'index' | 'image' | undefined {
  const mt = m.mediaType ?? headerType;
  if (mt !== undefined && INDEX_TYPES.has(mt)) return 'index';
  if (mt !== undefined && IMAGE_TYPES.has(mt)) return 'image';
  // OCI allows mediaType to be absent: decide by shape.
  if (Array.isArray(m.manifests)) return 'index';
  if (m.config !== undefined) return 'image';
  return undefined;
}

function checkDescriptor(d: unknown, where: string, problems: string[]): d is Descriptor {
  const x = d as Partial<Descriptor> | undefined;
  if (x === undefined || typeof x.digest !== 'string' || !DIGEST_RE.test(x.digest) || typeof x.size !== 'number' || x.size < 0) {
    problems.push(`${where}: malformed descriptor ${JSON.stringify(d)}`);
    return false;
  }
  return true;
}

/** Shared walk over a manifest graph; `getManifest`/`hashBlob` abstract where bytes come from. */
async function walk(
  top: { bytes: Buffer; contentType?: string; expectDigest?: string },
  label: string,
  getManifest: (d: Descriptor) => Promise<{ bytes: Buffer; contentType?: string } | undefined>,
  hashBlob: (d: Descriptor) => Promise<{ digest: string; size: number } | undefined>,
  opts: { requireAllChildren: boolean },
): Promise<Walked> {
  const problems: string[] = [];
  const manifests = new Set<string>();
  const blobs = new Set<string>();
  const topDigest = sha256(top.bytes);
  if (top.expectDigest !== undefined && top.expectDigest !== topDigest) {
    problems.push(`${label}: top manifest hashes to ${topDigest}, expected ${top.expectDigest}`);
  }

  const visitImage = async (bytes: Buffer, where: string): Promise<void> => {
    const m = JSON.parse(bytes.toString('utf8')) as ParsedManifest;
    const descs: Descriptor[] = [];
    if (checkDescriptor(m.config, `${where} config`, problems)) descs.push(m.config);
    if (!Array.isArray(m.layers)) problems.push(`${where}: no layers array`);
    else m.layers.forEach((l, i) => checkDescriptor(l, `${where} layer ${i}`, problems) && descs.push(l));
    for (const d of descs) {
      if (blobs.has(d.digest)) continue;
      const got = await hashBlob(d);
      if (got === undefined) {
        problems.push(`${where}: blob ${d.digest} missing`);
        continue;
      }
      if (got.digest !== d.digest) problems.push(`${where}: blob ${d.digest} hashes to ${got.digest}`);
      if (got.size !== d.size) problems.push(`${where}: blob ${d.digest} has ${got.size} bytes, descriptor says ${d.size}`);
      blobs.add(d.digest);
    }
  };

  const visit = async (bytes: Buffer, contentType: string | undefined, digest: string, where: string): Promise<string> => {
    manifests.add(digest);
    let m: ParsedManifest;
    try {
      m = JSON.parse(bytes.toString('utf8')) as ParsedManifest;
    } catch {
      problems.push(`${where}: manifest ${digest} is not JSON`);
      return contentType ?? '';
    }
    if (contentType !== undefined && m.mediaType !== undefined && contentType !== m.mediaType) {
      problems.push(`${where}: served as ${contentType} but its mediaType is ${m.mediaType}`);
    }
    const kind = kindOf(m, contentType);
    if (kind === 'image') await visitImage(bytes, where);
    else if (kind === 'index') {
      for (const [i, d] of (m.manifests ?? []).entries()) {
        if (!checkDescriptor(d, `${where} manifests[${i}]`, problems)) continue;
        const child = await getManifest(d);
        if (child === undefined) {
          if (opts.requireAllChildren) problems.push(`${where}: child manifest ${d.digest} missing`);
          continue;
        }
        const cd = sha256(child.bytes);
        if (cd !== d.digest) problems.push(`${where}: child ${d.digest} hashes to ${cd}`);
        if (child.bytes.length !== d.size) problems.push(`${where}: child ${d.digest} has ${child.bytes.length} bytes, descriptor says ${d.size}`);
        await visit(child.bytes, child.contentType ?? d.mediaType, d.digest, `${label}@${d.digest}`);
      }
    } else problems.push(`${where}: unknown manifest kind (mediaType ${m.mediaType ?? contentType ?? 'absent'})`);
    return m.mediaType ?? contentType ?? '';
  };

  const mediaType = await visit(top.bytes, top.contentType, topDigest, label);
  if (problems.length > 0) throw new Error(`validation of ${label} failed:\n  ${problems.join('\n  ')}`);
  return { digest: topDigest, mediaType, manifests, blobs, digests: new Set([...manifests, ...blobs]) };
}

/** Walks `repo:ref` (tag or digest) in a registry and checks every manifest and blob. */
export async function validateRegistryImage(
  registry: string | RegistryTarget | RegistryClient,
  repo: string,
  ref: string,
  opts: { requireAllChildren?: boolean } = {},
): Promise<Walked> {
  const c = typeof registry === 'object' && 'request' in registry ? registry : clientFor(registry);
  const getManifest = async (r: string): Promise<{ bytes: Buffer; contentType?: string } | undefined> => {
    const res = await c.request('GET', `/v2/${repo}/manifests/${r}`, { repo, headers: { Accept: MANIFEST_ACCEPT } });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`GET manifest ${repo}:${r}: HTTP ${res.status} ${res.body.subarray(0, 300).toString('utf8')}`);
    const ct = res.headers['content-type'];
    return { bytes: res.body, ...(ct !== undefined ? { contentType: ct.split(';')[0]!.trim() } : {}) };
  };
  const hashBlob = async (d: Descriptor): Promise<{ digest: string; size: number } | undefined> => {
    const res = await c.open('GET', `/v2/${repo}/blobs/${d.digest}`, { repo });
    if (res.statusCode === 404) {
      res.resume();
      return undefined;
    }
    if (res.statusCode !== 200) {
      res.resume();
      throw new Error(`GET blob ${repo}@${d.digest}: HTTP ${res.statusCode}`);
    }
    const h = createHash('sha256');
    let size = 0;
    for await (const chunk of res) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { digest: `sha256:${h.digest('hex')}`, size };
  };
  const top = await getManifest(ref);
  if (top === undefined) throw new Error(`validation of ${repo}:${ref} failed: manifest not found`);
  return walk(
    { ...top, ...(DIGEST_RE.test(ref) ? { expectDigest: ref } : {}) },
    `${repo}${DIGEST_RE.test(ref) ? '@' : ':'}${ref}`,
    (d) => getManifest(d.digest),
    hashBlob,
    { requireAllChildren: opts.requireAllChildren ?? true },
  );
}

export const DIR_VERSION = 'Directory Transport Version: 1.1\n';

async function hashFile(path: string): Promise<{ digest: string; size: number } | undefined> {
  try {
    await stat(path);
  } catch {
    return undefined;
  }
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Walks a skopeo `dir:` tree: exact `version` file, `manifest.json`, `<hex>.manifest.json`
 * per index child (skopeo copy --all), blobs named by bare hex. Also rejects stray files.
 */
export async function validateDirImage(dir: string, opts: { requireAllChildren?: boolean; expectDigest?: string } = {}): Promise<Walked> {
  const version = await readIfExists(join(dir, 'version'));
  if (version === undefined || version.toString('utf8') !== DIR_VERSION) {
    throw new Error(`validation of dir:${dir} failed: version file is ${version === undefined ? 'missing' : JSON.stringify(version.toString('utf8'))}`);
  }
  const top = await readIfExists(join(dir, 'manifest.json'));
  if (top === undefined) throw new Error(`validation of dir:${dir} failed: manifest.json missing`);
  const hex = (d: string): string => d.slice('sha256:'.length);
  const res = await walk(
    { bytes: top, ...(opts.expectDigest !== undefined ? { expectDigest: opts.expectDigest } : {}) },
    `dir:${dir}`,
    async (d) => {
      const bytes = await readIfExists(join(dir, `${hex(d.digest)}.manifest.json`));
      return bytes === undefined ? undefined : { bytes };
    },
    (d) => hashFile(join(dir, hex(d.digest))),
    { requireAllChildren: opts.requireAllChildren ?? true },
  );
  const expected = new Set(['version', 'manifest.json']);
  for (const m of res.manifests) if (m !== res.digest) expected.add(`${hex(m)}.manifest.json`);
  for (const b of res.blobs) expected.add(hex(b));
  const stray = (await readdir(dir)).filter((f) => !expected.has(f));
  if (stray.length > 0) throw new Error(`validation of dir:${dir} failed: unexpected files ${stray.join(', ')}`);
  return res;
}

/**
 * Walks every image an OCI image layout's `index.json` names (`blobs/sha256/<hex>`),
 * checking every manifest and blob as the other validators do. Returns each walk by
 * its `org.opencontainers.image.ref.name` (or digest, for an entry without one).
 */
export async function validateOciLayout(dir: string): Promise<Map<string, Walked>> {
  const layout = await readIfExists(join(dir, 'oci-layout'));
  if (layout === undefined || (JSON.parse(layout.toString('utf8')) as { imageLayoutVersion?: string }).imageLayoutVersion !== '1.0.0') {
    throw new Error(`validation of oci:${dir} failed: oci-layout is ${layout === undefined ? 'missing' : JSON.stringify(layout.toString('utf8'))}`);
  }
  const index = JSON.parse((await readFile(join(dir, 'index.json'))).toString('utf8')) as { manifests?: (Descriptor & { annotations?: Record<string, string> })[] };
  const blob = (d: { digest: string }): string => join(dir, 'blobs', 'sha256', d.digest.slice('sha256:'.length));
  const out = new Map<string, Walked>();
  for (const entry of index.manifests ?? []) {
    const bytes = await readIfExists(blob(entry));
    const name = entry.annotations?.['org.opencontainers.image.ref.name'] ?? entry.digest;
    if (bytes === undefined) throw new Error(`validation of oci:${dir} failed: index.json names ${name} (${entry.digest}) but its manifest blob is missing`);
    out.set(name, await walk(
      { bytes, ...(entry.mediaType !== undefined ? { contentType: entry.mediaType } : {}), expectDigest: entry.digest },
      `oci:${dir}:${name}`,
      async (d) => {
        const b = await readIfExists(blob(d));
        return b === undefined ? undefined : { bytes: b };
      },
      (d) => hashFile(blob(d)),
      { requireAllChildren: true },
    ));
  }
  return out;
}
