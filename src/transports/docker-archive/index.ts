import { DockerArchiveDestination, type DockerArchiveDestinationOptions } from './destination.js';

export { DockerArchiveDestination, type DockerArchiveDestinationOptions } from './destination.js';
export { type ArchiveChoice, type ArchiveImage, chooseArchiveImage, notAnImage } from './loadable.js';

export function openDockerArchive(file: string, opts: DockerArchiveDestinationOptions = {}): DockerArchiveDestination {
  return new DockerArchiveDestination(file, opts);
}
