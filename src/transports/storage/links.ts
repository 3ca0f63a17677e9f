import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import { type FileSystemPort, localFileSystem } from '../../fsys/port.js';

/** A link file: exactly `sha256:<hex>`, no newline (distribution parses it strictly). Written atomically. */
export async function writeLink(path: string, digest: Digest, fs: FileSystemPort = localFileSystem): Promise<void> {
  await fs.writeFileAtomic(path, digest);
}

const LINK_MAX = 256;

/** Reads a link file strictly; undefined when it does not exist. The content is untrusted. */
export async function readLink(path: string, fs: FileSystemPort = localFileSystem): Promise<Digest | undefined> {
  const buf = await fs.readFileHead(path, LINK_MAX + 1);
  if (buf === undefined) return undefined;
  const text = buf.toString('utf8');
  if (!isDigest(text)) {
    throw new FerryError('E_MANIFEST_INVALID', `${path}: link file does not hold a sha256 digest (${JSON.stringify(text.slice(0, 80))})`, {
      hint: 'the storage layout is damaged; run `docker-registry garbage-collect` or re-import the images',
      details: { file: path },
    });
  }
  return text;
}
