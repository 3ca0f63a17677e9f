/**
 * A `Range: bytes=…` header for a blob of `size` bytes (RFC 9110 §14): one
 * range (`a-b`, `a-`, `-n`) → inclusive bounds, clipped to the blob; a range
 * that starts beyond the end (or a suffix of 0) → unsatisfiable (416). No
 * header, a unit other than bytes, a malformed header, or several ranges →
 * undefined: the whole blob is served (200), which RFC 9110 allows and which
 * every registry client accepts.
 */
export type RangeAnswer = { start: number; end: number } | 'unsatisfiable' | undefined;

export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  // Past 15 digits a number only means "more than any blob": Infinity keeps the comparisons right.
  const num = (t: string): number => (t.length > 15 ? Infinity : Number(t));
  const [a, b] = [m[1]!, m[2]!];
  if (a === '') {
    const n = num(b);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = num(a);
  if (b !== '' && num(b) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  const end = b === '' ? size - 1 : Math.min(num(b), size - 1);
  return { start, end };
}
