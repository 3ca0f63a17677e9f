/**
 * Lets at most `limit` requests run at once, however many callers want one
 * (every subject's lookups share one `--jobs` budget). After the first failure
 * (`close`), queued and later requests fail with that error instead of
 * starting: a run that is already lost does not keep asking the registry.
 */
export class Gate {
  private running = 0;
  private readonly queue: Array<() => void> = [];
  private closed: Error | undefined;

  constructor(private readonly limit: number, private readonly signal?: AbortSignal) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= Math.max(1, this.limit)) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.running++;
    try {
      if (this.closed !== undefined) throw this.closed;
      this.signal?.throwIfAborted();
      return await work();
    } finally {
      // The slot passes straight to the next waiter, so `running` stays exact.
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }

  close(reason: Error): void {
    if (this.closed === undefined) this.closed = reason;
  }
}
