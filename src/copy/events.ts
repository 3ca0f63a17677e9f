import type { FerryError } from '../errors.js';
import type { Descriptor } from '../oci/manifest.js';
import type { PlannedImage } from './plan.js';

export type BlobOutcome = 'copied' | 'skipped' | 'mounted' | 'present-in-base';

/** Typed progress of a copy, fed to the progress display and to --json reports. Every method is optional. */
export interface CopyObserver {
  planned?(totals: { images: number; blobs: number; bytes: number }): void;
  blobStarted?(desc: Descriptor): void;
  bytes?(n: number): void;
  blobDone?(desc: Descriptor, outcome: BlobOutcome): void;
  imageDone?(image: PlannedImage): void;
  imageFailed?(label: string, error: FerryError): void;
  warning?(message: string): void;
}
