/**
 * Write-behind timing shared by the services that batch their store writes: runs `write`
 * every `intervalMs` and whenever asked, never two at a time, and once more on stop so that
 * a graceful shutdown loses nothing. `write` must take what is pending and handle its own
 * retry; a throw is reported to `onError` and does not stop later flushes.
 */
export class PeriodicFlush {
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly write: () => Promise<void>, private readonly intervalMs: number, private readonly onError: (err: unknown) => void) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * Resolves when everything pending at the time of the call is written (or the write failed
   * and was reported). With `strict`, a failed write rejects instead: for callers that may only
   * acknowledge work once it is stored.
   */
  flush(strict = false): Promise<void> {
    const run = this.chain.then(() => this.write());
    this.chain = run.catch(this.onError);
    return strict ? run : this.chain;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
