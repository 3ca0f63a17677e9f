import { readFileSync, statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

/**
 * How V8 sizes the heap for this run, chosen before anything else is loaded.
 *
 * By default V8 lets garbage grow to a few times the live heap before a full
 * collection. At 10,000 images and 50,000 blobs (per-blob metadata, plans,
 * jobs) that put every command over the 200 MiB budget (spec/robustness.md,
 * "Bundles of 10,000 images"); --optimize-for-size makes V8 collect sooner.
 * It has to be set before the heap grows: set once a large bundle is seen, it
 * changed nothing (measured). It costs CPU: +8 % for verify, +23 % for an
 * export of a few large images. So it is left off only where the run is known
 * to be small from the command line alone: an export from registries of a
 * list (and arguments) under MANY_IMAGES images. Everything else (bundles of
 * any size, --from, stdin lists) gets it.
 */
export const MANY_IMAGES = 1_000;

export function chooseHeapMode(args: readonly string[]): void {
  if (heapModeFor(args) === 'size') setFlagsFromString('--optimize-for-size');
}

/** 'speed': V8's defaults; 'size': collect sooner. */
export function heapModeFor(args: readonly string[]): 'speed' | 'size' {
  return smallExport(args) ? 'speed' : 'size';
}

function smallExport(args: readonly string[]): boolean {
  const command = args.find((a) => !a.startsWith('-'));
  if (command !== 'export' || args.some((a) => a === '--from' || a.startsWith('--from='))) return false;
  let images = 0;
  for (let i = args.indexOf(command) + 1; i < args.length; i++) {
    const a = args[i]!;
    const list = a === '-f' || a === '--file' ? args[++i] : a.startsWith('--file=') ? a.slice('--file='.length) : undefined;
    if (list !== undefined) {
      const lines = listLines(list);
      if (lines === undefined) return false;
      images += lines;
    } else if (!a.startsWith('-')) images++;
  }
  return images < MANY_IMAGES;
}

/** Lines of a list file that may name an image; undefined when it cannot be told cheaply (stdin, missing, huge). */
function listLines(path: string): number | undefined {
  if (path === '-') return undefined;
  try {
    if (statSync(path).size > 1024 * 1024) return undefined;
    return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#')).length;
  } catch {
    // The run itself reports a list it cannot read.
    return undefined;
  }
}
