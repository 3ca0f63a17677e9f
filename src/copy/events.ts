import type { FerryError } from '../errors.js';
import type { Descriptor } from '../oci/manifest.js';
import type { PlannedImage } from './plan.js';

export type BlobOutcome = 'copied' | 'skipped' | 'mounted' | 'present-in-base';

/** Where a copy is: resolving manifests, moving blobs, writing manifests, setting tags (last). */
export type CopyPhase = 'planning' | 'blobs' | 'manifests' | 'tags';

/** Typed progress of a copy, fed to the progress display and to --json reports. Every method is optional. */
export interface CopyObserver {
  phase?(phase: CopyPhase): void;
  planned?(totals: { images: number; blobs: number; bytes: number }): void;
  blobStarted?(desc: Descriptor): void;
  /** Bytes of `desc` that went through the verifier: only bytes that moved (a skipped or mounted blob sends none). */
  bytes?(n: number, desc: Descriptor): void;
  blobDone?(desc: Descriptor, outcome: BlobOutcome): void;
  imageDone?(image: PlannedImage): void;
  imageFailed?(label: string, error: FerryError): void;
  warning?(message: string): void;
}
