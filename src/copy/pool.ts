/**
 * Runs `work` over `items` with at most `limit` in flight. Rejections are
 * collected by the callers' own try/catch; this only bounds concurrency. No new
 * item starts once `signal` aborts or an item's work has rejected (the caller
 * has its answer by then: work started after it would run for nobody).
 */
export async function forEachLimited<T>(items: Iterable<T>, limit: number, work: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failed = false;
  const next = async (): Promise<void> => {
    for (let r = iterator.next(); !r.done && !failed; r = iterator.next()) {
      signal?.throwIfAborted();
      try {
        await work(r.value);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.max(1, limit); i++) lanes.push(next());
  await Promise.all(lanes);
}
