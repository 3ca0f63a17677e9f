import { SkopeoDirDestination, type SkopeoDirDestinationOptions } from './destination.js';
import { SkopeoDirSource } from './source.js';

export { SkopeoDirDestination, type SkopeoDirDestinationOptions } from './destination.js';
export { SkopeoDirSource } from './source.js';
export { imageDirName } from './paths.js';

export function openSkopeoDir(out: string, opts: SkopeoDirDestinationOptions = {}): SkopeoDirDestination {
  return new SkopeoDirDestination(out, opts);
}

export function openSkopeoDirSource(root: string): SkopeoDirSource {
  return new SkopeoDirSource(root);
}
