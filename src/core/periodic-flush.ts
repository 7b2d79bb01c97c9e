import { isRecordError } from './store/db.ts';

/**
 * Write-behind timing shared by the services that batch their store writes: runs `write`
 * every `intervalMs` and whenever asked, never two at a time, and once more on stop so that
 * a graceful shutdown loses nothing. `write` must take what is pending and handle its own
 * retry; a throw is reported to `onError` and does not stop later flushes.
 */
export class PeriodicFlush {
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** The run that has not started yet: later callers share it instead of queueing more runs. */
  private queued: { run: Promise<void>; settled: Promise<void> } | undefined;

  constructor(
    private readonly write: () => Promise<void>,
    private readonly intervalMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

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
    if (!this.queued) {
      // Once the run starts it takes what is pending; what comes after needs the next run.
      const run = this.chain.then(() => {
        this.queued = undefined;
        return this.write();
      });
      const settled = run.catch(this.onError);
      this.chain = settled;
      this.queued = { run, settled };
    }
    return strict ? this.queued.run : this.queued.settled;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

/** How a batch writer stores its records: all at once, or one alone. */
export interface IsolatedWrite<T> {
  /** Writes every record in one transaction (all or nothing). */
  batch(records: T[]): Promise<void>;
  /** Writes one record by itself. */
  one(record: T): Promise<void>;
  /** A record the store refused for what it is: it is dropped, and this says so. */
  onBad(record: T, err: unknown): void;
}

/**
 * Writes a batch so that one bad record never takes the others with it. The batch goes in one
 * transaction; if the store refuses it because of a record (`isRecordError`: a constraint, a value
 * the column cannot hold), the records are written one by one and those refused are reported and
 * dropped alone. If the store itself fails (connection, disk, busy), nothing is dropped: the
 * records not written are returned with the error, for the caller to keep and try again.
 */
export async function writeIsolated<T>(records: T[], io: IsolatedWrite<T>): Promise<{ retry: T[]; error?: unknown }> {
  if (records.length === 0) return { retry: [] };
  try {
    await io.batch(records);
    return { retry: [] };
  } catch (err) {
    if (!isRecordError(err)) return { retry: records, error: err };
  }
  for (let i = 0; i < records.length; i++) {
    try {
      await io.one(records[i]);
    } catch (err) {
      if (!isRecordError(err)) return { retry: records.slice(i), error: err };
      io.onBad(records[i], err);
    }
  }
  return { retry: [] };
}
