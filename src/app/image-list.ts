import { FerryError, isFerryError } from '../errors.js';
import { INPUT, readInputFile, readInputStream } from '../input-limits.js';
import { formatPlatform, parsePlatforms, type Platform } from '../oci/platform.js';
import { formatReference, parseReference, type Reference } from '../oci/reference.js';
import { invocationStdin } from '../stream/stdin.js';

export interface ListedImage {
  reference: Reference;
  /** `file:line`, for messages. */
  where: string;
  /** `--platform` on the image's own line: the platforms to keep of this image (over the command's --platform). */
  platforms?: Platform[];
}

/** The options a line may carry after its reference (spec/image-list.md). */
const LINE_OPTIONS = ['--platform'];

/**
 * Parses an images.list: one reference a line, `#` starts a comment (whole
 * line or trailing), blank lines ignored — the format projects already publish.
 * After the reference a line may carry options, e.g.
 * `nginx:1.25  --platform linux/amd64,linux/arm64`: a plain list never holds a
 * second word on a line (a reference has no white space), so a plain list reads
 * as before. Every bad line is reported at once, each with its file and line number.
 */
export function parseImageList(text: string, file: string): ListedImage[] {
  const images: ListedImage[] = [];
  const problems: string[] = [];
  const seen = new Map<string, ListedImage>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') return;
    const where = `${file}:${i + 1}`;
    try {
      const [ref, ...words] = line.split(/\s+/);
      const reference = parseReference(ref!, where);
      const listed: ListedImage = { reference, where, ...lineOptions(words, where) };
      const key = formatReference(reference);
      const before = seen.get(key);
      if (before) {
        // The same image twice is one image; twice with different options is a list that contradicts itself.
        if (platformsText(before) !== platformsText(listed)) {
          throw new FerryError('E_LIST_SYNTAX', `${where}: ${key} is also on ${before.where} with other options (${platformsText(before) || 'none'} there, ${platformsText(listed) || 'none'} here)`);
        }
        return;
      }
      seen.set(key, listed);
      images.push(listed);
    } catch (e) {
      if (!isFerryError(e)) throw e;
      problems.push(e.message);
    }
  });
  if (problems.length > 0) {
    throw new FerryError('E_LIST_SYNTAX', problems.length === 1 ? problems[0]! : `${problems.length} bad lines in ${file}:\n  ${problems.join('\n  ')}`, {
      hint: 'each line holds one image reference like nginx:1.25 or quay.io/calico/node:v3.26.1, optionally followed by --platform os/arch[,os/arch…]; put comments after #',
      details: { file, problems },
    });
  }
  return images;
}

/** `--platform X` or `--platform=X` after a line's reference. */
function lineOptions(words: string[], where: string): Pick<ListedImage, 'platforms'> {
  const out: Pick<ListedImage, 'platforms'> = {};
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const [name, inline] = word.startsWith('--') && word.includes('=') ? [word.slice(0, word.indexOf('=')), word.slice(word.indexOf('=') + 1)] : [word, undefined];
    if (!LINE_OPTIONS.includes(name)) {
      throw new FerryError('E_LIST_SYNTAX', word.startsWith('-')
        ? `${where}: unknown option ${name} (a line takes ${LINE_OPTIONS.join(', ')})`
        : `${where}: "${word.slice(0, 60)}" after the reference: one image a line, options start with --`);
    }
    const value = inline ?? words[++i];
    if (value === undefined || value === '' || value.startsWith('--')) throw new FerryError('E_LIST_SYNTAX', `${where}: ${name} needs a value, e.g. ${name} linux/amd64,linux/arm64`);
    if (out.platforms) throw new FerryError('E_LIST_SYNTAX', `${where}: ${name} given twice; list the platforms once, separated by commas`);
    try {
      out.platforms = parsePlatforms(value, `${where}: ${name}`);
    } catch (e) {
      throw isFerryError(e) ? new FerryError('E_LIST_SYNTAX', e.message, { cause: e }) : e;
    }
  }
  return out;
}

function platformsText(l: ListedImage): string {
  return l.platforms ? `--platform ${l.platforms.map(formatPlatform).join(',')}` : '';
}

export async function readImageList(file: string): Promise<ListedImage[]> {
  let text: string;
  try {
    text = (file === '-' ? await readInputStream(invocationStdin(), '<stdin>', INPUT.imageList) : await readInputFile(file, INPUT.imageList)).toString('utf8');
  } catch (e) {
    if (isFerryError(e)) throw e;
    throw new FerryError('E_USAGE', `cannot read image list ${file}: ${(e as Error).message}`, { hint: 'pass the path of an images.list file with -f', cause: e });
  }
  const images = parseImageList(text, file === '-' ? '<stdin>' : file);
  if (images.length === 0) throw new FerryError('E_LIST_SYNTAX', `${file} lists no images`, { hint: 'write one image reference per line' });
  return images;
}
