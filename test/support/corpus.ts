// A small, realistic, seeded set of images pushed to a registry: shared base layer
// across repositories (one nested a/b/c), OCI and Docker schema2, a multi-arch OCI index
// and a Docker manifest list, two tags on one manifest, and one image reachable by digest only.
import { blobsOf, makeImage, makeIndex, makeLayer, manifestsOf, Rng, type Artifact } from './images.js';
import { clientFor, type RegistryTarget } from './http.js';
import { pushArtifact } from './push.js';

export interface CorpusEntry {
  repo: string;
  /** Tags pointing at this artifact (empty: digest-only). */
  tags: string[];
  artifact: Artifact;
  digest: string;
  mediaType: string;
  /** `repo:tag` for each tag, or `repo@digest` when there is none (no host: prefix it yourself). */
  refs: string[];
}

export interface DescriptorInfo {
  size: number;
  mediaType: string;
}

export interface Corpus {
  seed: number;
  entries: CorpusEntry[];
  /** Every unique config and layer blob, by digest. */
  blobs: Map<string, DescriptorInfo>;
  /** Every unique manifest (index children included), by digest. */
  manifests: Map<string, DescriptorInfo>;
  /** Per repository: the blobs and manifests it holds, and its tags. */
  repos: Map<string, { blobs: Set<string>; manifests: Set<string>; tags: Map<string, string> }>;
  /** Every ref, `repo:tag` or `repo@digest`. */
  refs: string[];
  /** Total bytes of unique blobs + manifests. */
  totalBytes: number;
}

export interface PushedCorpus extends Corpus {
  /** `127.0.0.1:PORT` */
  host: string;
  /** refs prefixed with the host, ready for `docker://`. */
  hostRefs: string[];
}

/** Builds (does not push) the corpus; same seed, same bytes. */
export async function buildCorpus(seed: number): Promise<Corpus> {
  const rng = new Rng(seed);
  const base = await makeLayer(rng.fork('base'), { size: 300_000, compressible: 'mixed', files: 3 });
  const layer = (label: string, size: number, compressible: boolean | 'mixed' = 'mixed') =>
    makeLayer(rng.fork(label), { size, compressible });
  const webLayer = await layer('web', 120_000);
  const cLayer = await layer('abc', 60_000, true);
  const toolsLayer = await layer('tools', 80_000, false);
  const amdLayer = await layer('amd64', 90_000);
  const armLayer = await layer('arm64', 90_000);
  const pinnedLayer = await layer('pinned', 40_000, false);

  const os = makeImage({ layers: [base], mediaTypes: 'docker', labels: { name: 'base-os' } });
  const web = makeImage({ layers: [base, webLayer], mediaTypes: 'oci', labels: { name: 'web' }, annotations: { 'org.opencontainers.image.title': 'web' } });
  const abc = makeImage({ layers: [base, cLayer], mediaTypes: 'docker', labels: { name: 'abc' } });
  const pinned = makeImage({ layers: [base, pinnedLayer], mediaTypes: 'oci', labels: { name: 'pinned' } });
  const amd = makeImage({ layers: [base, amdLayer], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'amd64' }, labels: { name: 'multi' } });
  const arm = makeImage({ layers: [armLayer, toolsLayer], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, labels: { name: 'multi' } });
  const multi = makeIndex([amd, arm], 'oci', { 'org.opencontainers.image.title': 'multi' });
  const dAmd = makeImage({ layers: [base, toolsLayer], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'amd64' }, labels: { name: 'tools' } });
  const dArm = makeImage({ layers: [armLayer, toolsLayer], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, labels: { name: 'tools' } });
  const tools = makeIndex([dAmd, dArm], 'docker');

  const spec: Array<{ repo: string; tags: string[]; artifact: Artifact }> = [
    { repo: 'library/base-os', tags: ['1.0', 'latest'], artifact: os },
    { repo: 'apps/web', tags: ['v1'], artifact: web },
    { repo: 'apps/web', tags: [], artifact: pinned },
    { repo: 'a/b/c', tags: ['stable'], artifact: abc },
    { repo: 'multi/arch', tags: ['1.0'], artifact: multi },
    { repo: 'multi/tools', tags: ['2024.1'], artifact: tools },
  ];

  const blobs = new Map<string, DescriptorInfo>();
  const manifests = new Map<string, DescriptorInfo>();
  const repos: Corpus['repos'] = new Map();
  const entries: CorpusEntry[] = [];
  for (const s of spec) {
    const r = repos.get(s.repo) ?? { blobs: new Set<string>(), manifests: new Set<string>(), tags: new Map<string, string>() };
    repos.set(s.repo, r);
    for (const b of blobsOf(s.artifact)) {
      blobs.set(b.digest, { size: b.size, mediaType: b.mediaType });
      r.blobs.add(b.digest);
    }
    for (const m of manifestsOf(s.artifact)) {
      manifests.set(m.digest, { size: m.size, mediaType: m.mediaType });
      r.manifests.add(m.digest);
    }
    for (const t of s.tags) r.tags.set(t, s.artifact.digest);
    const refs = s.tags.length > 0 ? s.tags.map((t) => `${s.repo}:${t}`) : [`${s.repo}@${s.artifact.digest}`];
    entries.push({ ...s, digest: s.artifact.digest, mediaType: s.artifact.mediaType, refs });
  }
  let totalBytes = 0;
  for (const v of blobs.values()) totalBytes += v.size;
  for (const v of manifests.values()) totalBytes += v.size;
  return { seed, entries, blobs, manifests, repos, refs: entries.flatMap((e) => e.refs), totalBytes };
}

/** Builds the corpus and pushes it (blobs, children, manifests, tags last) to the registry. */
export async function sampleCorpus(registry: string | RegistryTarget, seed: number): Promise<PushedCorpus> {
  const corpus = await buildCorpus(seed);
  const client = clientFor(registry);
  for (const e of corpus.entries) await pushArtifact(client, e.repo, e.artifact, e.tags);
  const host = new URL(client.target.url).host;
  return { ...corpus, host, hostRefs: corpus.refs.map((r) => `${host}/${r}`) };
}
