// The one manifest-tree walker (src/oci/walk.ts): order, once per digest, the depth cap, and a
// loader that answers with the wrong manifest; then the planner, which walks through it, held
// to the same cap.
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { planCopy } from '../../../src/copy/plan.js';
import { FerryError, isFerryError } from '../../../src/errors.js';
import { type Digest, sha256Digest } from '../../../src/oci/digest.js';
import { type Descriptor, type Manifest, manifestFromBytes, parseManifest } from '../../../src/oci/manifest.js';
import { MANIFEST_DEPTH_MAX, walkManifests, walkManifestsSync, type WalkNode } from '../../../src/oci/walk.js';
import type { ImageSource } from '../../../src/transports/types.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A tiny manifest store: images with one config, indexes over earlier entries. */
class Tree {
  readonly manifests = new Map<Digest, Manifest>();

  image(label: string): Manifest {
    const config = Buffer.from(JSON.stringify({ label }));
    return this.add(OCI_MANIFEST, { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Digest(config), size: config.length }, layers: [] });
  }

  index(children: Manifest[]): Manifest {
    return this.add(OCI_INDEX, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map((c) => ({ mediaType: c.mediaType, digest: c.digest, size: c.bytes.length })) });
  }

  /** Indexes nested `levels` deep above one image: levels 0 is the image itself. */
  chain(levels: number, label = 'deep'): Manifest {
    let m = this.image(label);
    for (let i = 0; i < levels; i++) m = this.index([m]);
    return m;
  }

  node(d: Digest): WalkNode {
    const m = this.manifests.get(d);
    if (!m) throw new Error(`no manifest ${d}`);
    return { digest: d, parsed: parseManifest(m.bytes, m.mediaType) };
  }

  private add(mediaType: string, doc: unknown): Manifest {
    const m = manifestFromBytes(Buffer.from(JSON.stringify(doc)), mediaType);
    this.manifests.set(m.digest, m);
    return m;
  }
}

function errorOf(fn: () => unknown): FerryError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FerryError) return e;
    throw e;
  }
  throw new Error('did not throw');
}

describe('walkManifests', () => {
  it('visits each manifest once, children before parents, the root last', async () => {
    const t = new Tree();
    const [one, two, three] = [t.image('1'), t.image('2'), t.image('3')];
    const a = t.index([one, two]);
    const b = t.index([two, three]);
    const root = t.index([a, b, one]);
    const asked: Digest[] = [];
    const load = (d: Descriptor): WalkNode => {
      asked.push(d.digest);
      return t.node(d.digest);
    };
    const walked = await walkManifests(t.node(root.digest), load, 'diamond');
    expect(walked.map((w) => w.node.digest)).toEqual([one.digest, two.digest, a.digest, three.digest, b.digest, root.digest]);
    expect(walked.map((w) => w.depth)).toEqual([2, 2, 1, 2, 1, 0]);
    expect(asked, 'a shared child is loaded once').toEqual([a.digest, one.digest, two.digest, b.digest, three.digest]);
    expect(walkManifestsSync(t.node(root.digest), (d) => t.node(d.digest), 'diamond')).toEqual(walked);
  });

  it(`takes indexes ${MANIFEST_DEPTH_MAX} levels deep and refuses one more, before loading it`, async () => {
    const t = new Tree();
    const deepest = t.chain(MANIFEST_DEPTH_MAX);
    expect(walkManifestsSync(t.node(deepest.digest), (d) => t.node(d.digest), 'ok').map((w) => w.depth)).toEqual([4, 3, 2, 1, 0]);

    const tooDeep = t.chain(MANIFEST_DEPTH_MAX + 1, 'too deep');
    const asked: number[] = [];
    const err = errorOf(() => walkManifestsSync(t.node(tooDeep.digest), (d) => {
      asked.push(1);
      return t.node(d.digest);
    }, 'registry.example/deep:1'));
    expect(err.code).toBe('E_MANIFEST_INVALID');
    expect(err.message).toBe(`registry.example/deep:1: manifests nest deeper than ${MANIFEST_DEPTH_MAX} levels`);
    expect(asked).toHaveLength(MANIFEST_DEPTH_MAX);
    await expect(walkManifests(t.node(tooDeep.digest), async (d) => t.node(d.digest), 'async')).rejects.toSatisfy((e) => isFerryError(e, 'E_MANIFEST_INVALID'));
  });

  it('refuses a child the loader answers with another manifest (a source that lies about a digest)', () => {
    const t = new Tree();
    const [wanted, other] = [t.image('wanted'), t.image('other')];
    const root = t.index([wanted]);
    const err = errorOf(() => walkManifestsSync(t.node(root.digest), () => t.node(other.digest), 'liar'));
    expect(err.code).toBe('E_DIGEST_MISMATCH');
    expect(err.message).toContain(wanted.digest);
    expect(err.message).toContain(other.digest);
  });
});

/** An ImageSource over a Tree: tags in `tags`, manifests by digest, no blobs. */
function treeSource(t: Tree, tags: Record<string, Manifest>): ImageSource {
  return {
    description: 'tree',
    async getManifest(repository: string, reference: string): Promise<Manifest> {
      const m = t.manifests.get(reference as Digest) ?? tags[`${repository}:${reference}`];
      if (!m) throw new FerryError('E_NOT_FOUND', `${repository}:${reference} not found`);
      return m;
    },
    getBlob(): Promise<Readable> {
      throw new Error('no blobs here');
    },
    async close(): Promise<void> {},
  };
}

describe('the planner walks with it', () => {
  it('planCopy fails the too-deep image alone, with every manifest of the others children-first', async () => {
    const t = new Tree();
    const ok = t.chain(MANIFEST_DEPTH_MAX, 'ok');
    const deep = t.chain(MANIFEST_DEPTH_MAX + 1, 'deep');
    const source = treeSource(t, { 'a:ok': ok, 'a:deep': deep });
    const request = (tag: string) => ({ sourceRepository: 'a', sourceReference: tag, targetRepository: 'a', targetTag: tag, origin: `a:${tag}` });
    const plan = await planCopy(source, [request('ok'), request('deep')]);
    expect(plan.failures.map((f) => [f.request.origin, f.error.code])).toEqual([['a:deep', 'E_MANIFEST_INVALID']]);
    const planned = plan.images[0]!;
    expect(planned.manifests.at(-1)!.digest).toBe(ok.digest);
    expect(planned.manifests).toHaveLength(MANIFEST_DEPTH_MAX + 1);
    expect(planned.blobs).toHaveLength(1);
  });
});
