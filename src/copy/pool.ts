/**
 * Runs `work` over `items` with at most `limit` in flight. Rejections are
 * collected by the callers' own try/catch; this only bounds concurrency, and
 * stops starting new items once `signal` aborts.
 */
export async function forEachLimited<T>(items: Iterable<T>, limit: number, work: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const iterator = items[Symbol.iterator]();
  const lanes: Promise<void>[] = [];
  const next = async (): Promise<void> => {
    for (let r = iterator.next(); !r.done; r = iterator.next()) {
      signal?.throwIfAborted();
      await work(r.value);
    }
  };
  for (let i = 0; i < Math.max(1, limit); i++) lanes.push(next());
  await Promise.all(lanes);
}
