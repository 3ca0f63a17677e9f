import { RegistryClient, type RegistryOptions } from './client.js';
import { RegistryDestination } from './destination.js';
import { RegistrySource } from './source.js';

export type { RegistryOptions } from './client.js';

/** A registry to pull from; credentials are looked up now (see net/credentials), the registry is first contacted on use. */
export function openRegistrySource(options: RegistryOptions): RegistrySource {
  return new RegistrySource(new RegistryClient(options));
}

/** A registry to push to; credentials are looked up now (see net/credentials), the registry is first contacted on use. */
export function openRegistryDestination(options: RegistryOptions): RegistryDestination {
  return new RegistryDestination(new RegistryClient(options));
}
