// A one-step lookahead over an async iterator: the sequential volume reader peeks at the next entry to join a layer cut across volumes.

/** An async iterator read one step ahead when asked; a failure stays the answer to every later call. */
export class Lookahead<T> {
  private buffered: IteratorResult<T> | undefined;
  private failure: { error: unknown } | undefined;

  constructor(private readonly it: AsyncGenerator<T>) {}

  async peek(): Promise<T | undefined> {
    if (this.failure) throw this.failure.error;
    if (!this.buffered) {
      try {
        this.buffered = await this.it.next();
      } catch (e) {
        this.failure = { error: e };
        throw e;
      }
    }
    return this.buffered.done ? undefined : this.buffered.value;
  }

  async next(): Promise<T | undefined> {
    const v = await this.peek();
    if (v !== undefined) this.buffered = undefined;
    return v;
  }

  async close(): Promise<void> {
    await this.it.return(undefined);
  }
}
