import { FerryError } from '../errors.js';
import { openBundleInput } from '../transports/bundle/volume-set.js';
import { openSkopeoDirSource } from '../transports/dir/index.js';
import { openOciLayoutSource } from '../transports/oci-layout/index.js';
import { openRegistrySource } from '../transports/registry/open.js';
import { openStorageLayoutSource } from '../transports/storage/index.js';
import { MultiRegistrySource } from '../transports/multi-registry.js';
import type { ImageSource } from '../transports/types.js';
import { pullConnectionFor, type RegistryAccess } from './registry-access.js';

/** Where `--from KIND:PATH` can read images from. */
export const SOURCE_KINDS = ['registry-layout', 'skopeo-dir', 'oci', 'bundle'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

export function parseSourceSpec(spec: string): { kind: SourceKind; path: string } {
  const colon = spec.indexOf(':');
  const kind = spec.slice(0, colon) as SourceKind;
  const path = spec.slice(colon + 1);
  if (colon <= 0 || !SOURCE_KINDS.includes(kind) || path === '') {
    throw new FerryError('E_USAGE', `--from ${JSON.stringify(spec)}: expected KIND:PATH with KIND one of ${SOURCE_KINDS.join(', ')}`, {
      hint: 'e.g. --from registry-layout:/var/lib/registry or --from skopeo-dir:./images',
    });
  }
  return { kind, path };
}

export async function openSource(spec: string, signal?: AbortSignal): Promise<ImageSource> {
  const { kind, path } = parseSourceSpec(spec);
  signal?.throwIfAborted();
  switch (kind) {
    case 'registry-layout': return openStorageLayoutSource(path);
    case 'skopeo-dir': return openSkopeoDirSource(path);
    case 'oci': return openOciLayoutSource(path);
    // A split bundle comes as its .sha256 list or its volumes' set; joined here into one source.
    case 'bundle': return openBundleInput([path]);
  }
}

/** Every registry an image list names, behind one source; connections follow the user's TLS/HTTP/credential flags. */
export function openRegistries(access: RegistryAccess): MultiRegistrySource {
  return new MultiRegistrySource((registry) => openRegistrySource(pullConnectionFor(access, registry)));
}
