import { DockerArchiveDestination, type DockerArchiveDestinationOptions } from './destination.js';

export { DockerArchiveDestination, type DockerArchiveDestinationOptions } from './destination.js';

export function openDockerArchive(file: string, opts: DockerArchiveDestinationOptions = {}): DockerArchiveDestination {
  return new DockerArchiveDestination(file, opts);
}
