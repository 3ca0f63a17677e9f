/**
 * Deepest nesting of arrays and objects in a JSON text, counted without
 * recursion. JSON.parse copes with a million nested brackets, but every
 * recursive walk after it (canonical serialisation for the bundle id,
 * JSON.stringify of annotations) overflows the stack: hostile documents are
 * refused on this number before anything walks them.
 */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** Far deeper than any manifest or bundle metadata has reason to be (they nest 4–6 levels), far shallower than the stack. */
export const JSON_MAX_DEPTH = 64;
