import { FerryError } from '../errors.js';
import type { Digest } from './digest.js';
import { checkManifestDigest, type Descriptor, type ParsedManifest } from './manifest.js';

/**
 * Indexes of indexes exist (attestation trees, an index of per-platform
 * indexes) but never deep: a tree deeper than this is a loop or an attack.
 * The one cap of every walk over a manifest tree.
 */
export const MANIFEST_DEPTH_MAX = 4;

/** A manifest a walk reaches: its digest and document, with whatever else the loader carries along. */
export interface WalkNode {
  digest: Digest;
  parsed: ParsedManifest;
}

export interface Walked<N extends WalkNode> {
  node: N;
  /** 0 for the root, 1 for its children… */
  depth: number;
}

/** Gives the walk an index's child, read from memory, a file or a registry. */
export type ChildLoader<N extends WalkNode, R> = (child: Descriptor, parent: N) => R;

/**
 * The manifests of the tree under `root`, each once, children before their
 * parents and the root last: the order a destination writes them in. `load`
 * is asked for each index child the first time the walk meets it; what it
 * returns must be that child (E_DIGEST_MISMATCH otherwise). A child deeper than
 * MANIFEST_DEPTH_MAX is E_MANIFEST_INVALID, named by `where`. Configs and
 * layers are the caller's: blobsOf(node.parsed).
 */
export async function walkManifests<N extends WalkNode>(root: N, load: ChildLoader<N, N | Promise<N>>, where: string): Promise<Walked<N>[]> {
  const walk = steps(root, where);
  let step = walk.next();
  while (!step.done) step = walk.next(await load(step.value.child, step.value.parent));
  return step.value;
}

/** walkManifests over manifests already in memory (a bundle's head, a served set). */
export function walkManifestsSync<N extends WalkNode>(root: N, load: ChildLoader<N, N>, where: string): Walked<N>[] {
  const walk = steps(root, where);
  let step = walk.next();
  while (!step.done) step = walk.next(load(step.value.child, step.value.parent));
  return step.value;
}

/**
 * The walk itself, written once for both drivers above: it yields each child
 * it needs and is resumed with the loaded manifest.
 */
function* steps<N extends WalkNode>(root: N, where: string): Generator<{ child: Descriptor; parent: N }, Walked<N>[], N> {
  const out: Walked<N>[] = [];
  const seen = new Set<Digest>([root.digest]);
  function* visit(node: N, depth: number): Generator<{ child: Descriptor; parent: N }, void, N> {
    for (const child of node.parsed.manifests) {
      if (seen.has(child.digest)) continue;
      if (depth + 1 > MANIFEST_DEPTH_MAX) {
        throw new FerryError('E_MANIFEST_INVALID', `${where}: manifests nest deeper than ${MANIFEST_DEPTH_MAX} levels`, {
          hint: 'the index refers to itself or is malformed', details: { where, digest: child.digest },
        });
      }
      seen.add(child.digest);
      const loaded = yield { child, parent: node };
      checkManifestDigest(loaded, child.digest, `${where}: child of ${node.digest}`);
      yield* visit(loaded, depth + 1);
    }
    out.push({ node, depth });
  }
  yield* visit(root, 0);
  return out;
}
