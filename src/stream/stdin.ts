// The standard input of the running invocation. The CLI runs each invocation with
// its own streams (tests run it in process, many times over), so code that reads
// `-` asks here rather than taking process.stdin, which belongs to the process.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Readable } from 'node:stream';

const current = new AsyncLocalStorage<Readable>();

/**
 * Runs `run` with `stdin` as what `-` reads, for everything it starts. The
 * process's own stdin needs no context (it is the fallback): entering an
 * AsyncLocalStorage turns on Node 20's promise hooks for every later promise.
 */
export function withStdin<T>(stdin: Readable, run: () => T): T {
  return stdin === process.stdin ? run() : current.run(stdin, run);
}

/** What `-` reads: the invocation's stdin, or the process's outside any invocation. */
export function invocationStdin(): Readable {
  return current.getStore() ?? process.stdin;
}
