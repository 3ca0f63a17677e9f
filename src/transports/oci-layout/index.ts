import { OciLayoutDestination, type OciLayoutDestinationOptions } from './destination.js';
import { OciLayoutSource, type OciLayoutSourceOptions } from './source.js';

export { OciLayoutDestination, type OciLayoutDestinationOptions } from './destination.js';
export { OciLayoutSource, type OciLayoutSourceOptions } from './source.js';

export function openOciLayout(root: string, opts: OciLayoutDestinationOptions = {}): OciLayoutDestination {
  return new OciLayoutDestination(root, opts);
}

export function openOciLayoutSource(root: string, opts: OciLayoutSourceOptions = {}): OciLayoutSource {
  return new OciLayoutSource(root, opts);
}
