import { stat } from 'node:fs/promises';
import { warmHashPool } from '../stream/hash-pool.js';

/** Bundle bytes from which the hashing workers are started before the bundle is opened: ~40 ms of one core's sha256. */
const WARM_MIN_BYTES = 64 * 1024 * 1024;

/**
 * Starts the sha256 workers while the bundle is opened and the copy planned,
 * when the files given are large enough that their blobs will be hashed off
 * the main thread (hash-pool.ts). Their start-up then no longer delays the
 * first blob: on a 2-core machine it was ~0.1 s of a 1 s verify. Small
 * bundles (and stdin, whose size is unknown) start them on first need, as
 * before: an idle worker costs memory a bundle of small blobs does not use.
 */
export async function warmHashingFor(paths: readonly string[]): Promise<void> {
  let bytes = 0;
  for (const path of paths) {
    if (path === '-') continue;
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile()) bytes += st.size;
  }
  if (bytes >= WARM_MIN_BYTES) warmHashPool();
}
