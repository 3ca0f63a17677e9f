import { StorageLayoutDestination, type StorageLayoutDestinationOptions } from './destination.js';
import { StorageLayoutSource } from './source.js';

export { StorageLayoutDestination, type StorageLayoutDestinationOptions } from './destination.js';
export { StorageLayoutSource } from './source.js';
export { pruneLayout, type KeepImage, type PruneReport } from './prune.js';

/** `root` is the registry's `rootdirectory` (the directory that holds `docker/registry/v2`). */
export function openStorageLayout(root: string, opts: StorageLayoutDestinationOptions = {}): StorageLayoutDestination {
  return new StorageLayoutDestination(root, opts);
}

export function openStorageLayoutSource(root: string): StorageLayoutSource {
  return new StorageLayoutSource(root);
}
