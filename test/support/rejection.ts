// Awaits a promise that must fail with a FerryError, and returns that error for assertions.
import { type FerryError, isFerryError } from '../../src/errors.js';

export async function rejection(p: Promise<unknown>): Promise<FerryError> {
  try {
    await p;
  } catch (e) {
    if (isFerryError(e)) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}
