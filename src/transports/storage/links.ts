import { open } from 'node:fs/promises';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import { writeFileAtomic } from '../../fsys/atomic.js';
import { isMissing } from '../../fsys/files.js';

/** A link file: exactly `sha256:<hex>`, no newline (distribution parses it strictly). Written atomically. */
export async function writeLink(path: string, digest: Digest): Promise<void> {
  await writeFileAtomic(path, digest);
}

const LINK_MAX = 256;

/** Reads a link file strictly; undefined when it does not exist. The content is untrusted. */
export async function readLink(path: string): Promise<Digest | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
  try {
    const buf = Buffer.alloc(LINK_MAX + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    if (!isDigest(text)) {
      throw new FerryError('E_MANIFEST_INVALID', `${path}: link file does not hold a sha256 digest (${JSON.stringify(text.slice(0, 80))})`, {
        hint: 'the storage layout is damaged; run `docker-registry garbage-collect` or re-import the images',
        details: { file: path },
      });
    }
    return text;
  } finally {
    await fh.close();
  }
}
