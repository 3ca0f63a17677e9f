import { FerryError, isFerryError } from '../errors.js';
import { INPUT, readInputFile, readInputStream } from '../input-limits.js';
import { formatReference, parseReference, type Reference } from '../oci/reference.js';

export interface ListedImage {
  reference: Reference;
  /** `file:line`, for messages. */
  where: string;
}

/**
 * Parses an images.list: one reference a line, `#` starts a comment (whole
 * line or trailing), blank lines ignored — the format projects already publish.
 * Every bad line is reported at once, each with its file and line number.
 */
export function parseImageList(text: string, file: string): ListedImage[] {
  const images: ListedImage[] = [];
  const problems: string[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') return;
    const where = `${file}:${i + 1}`;
    try {
      const reference = parseReference(line, where);
      const key = formatReference(reference);
      if (seen.has(key)) return;
      seen.add(key);
      images.push({ reference, where });
    } catch (e) {
      if (!isFerryError(e)) throw e;
      problems.push(e.message);
    }
  });
  if (problems.length > 0) {
    throw new FerryError('E_LIST_SYNTAX', problems.length === 1 ? problems[0]! : `${problems.length} bad lines in ${file}:\n  ${problems.join('\n  ')}`, {
      hint: 'each line holds one image reference like nginx:1.25 or quay.io/calico/node:v3.26.1; put comments after #',
      details: { file, problems },
    });
  }
  return images;
}

export async function readImageList(file: string): Promise<ListedImage[]> {
  let text: string;
  try {
    text = (file === '-' ? await readInputStream(process.stdin, '<stdin>', INPUT.imageList) : await readInputFile(file, INPUT.imageList)).toString('utf8');
  } catch (e) {
    if (isFerryError(e)) throw e;
    throw new FerryError('E_USAGE', `cannot read image list ${file}: ${(e as Error).message}`, { hint: 'pass the path of an images.list file with -f', cause: e });
  }
  const images = parseImageList(text, file === '-' ? '<stdin>' : file);
  if (images.length === 0) throw new FerryError('E_LIST_SYNTAX', `${file} lists no images`, { hint: 'write one image reference per line' });
  return images;
}
