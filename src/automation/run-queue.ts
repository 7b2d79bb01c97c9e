import type { RunMode } from './automation-values.ts';

/** What the run mode decides for a new run: start it, drop it (why), or queue it (why). */
export type Admission = { op: 'start' } | { op: 'drop'; reason: string } | { op: 'queue'; reason: string };

/**
 * One automation's runs under its run mode and cool-down: the active runs, the queued ones, and
 * when the last one ended. `single` drops a run while one is active; `restart` cancels the active
 * ones; `queued` queues up to `max` behind them; `parallel` runs up to `max` at once.
 */
export class RunQueue<R, Q> {
  readonly active = new Set<R>();
  readonly waiting: Q[] = [];
  /** When the last run ended (epoch ms; 0: none yet). */
  lastEnd = 0;

  constructor(private readonly opts: { mode: RunMode; max: number; cooldownMs: number; cancel(run: R, reason: string): void }) {}

  /** Why a firing now is dropped by the cool-down (after a run ended, while none is active), or undefined. */
  coolingDown(now: number): string | undefined {
    const { cooldownMs } = this.opts;
    if (cooldownMs > 0 && this.active.size === 0 && this.lastEnd > 0 && now - this.lastEnd < cooldownMs) {
      return `cool-down: the last run ended ${now - this.lastEnd} ms ago (cool-down ${cooldownMs} ms)`;
    }
    return undefined;
  }

  /** The mode's decision for run `runId`; `restart` cancels the active runs here. A queued run is the caller's to `waiting.push`. */
  admit(runId: string): Admission {
    const { mode, max } = this.opts;
    if (this.active.size === 0) return { op: 'start' };
    if (mode === 'single') return { op: 'drop', reason: 'a run is already active (mode single)' };
    if (mode === 'restart') for (const r of this.active) this.opts.cancel(r, `restarted by run ${runId} (mode restart)`);
    if (mode === 'queued') {
      if (this.waiting.length >= max) return { op: 'drop', reason: `the queue is full (mode queued, max ${max})` };
      return { op: 'queue', reason: `queued behind ${this.active.size} active run(s)` };
    }
    if (mode === 'parallel' && this.active.size >= max) return { op: 'drop', reason: `${this.active.size} runs are active (mode parallel, max ${max})` };
    return { op: 'start' };
  }

  /** A run ended at `now`: the next queued one, if any. */
  ended(run: R, now: number): Q | undefined {
    this.active.delete(run);
    this.lastEnd = now;
    return this.waiting.shift();
  }

  /** Cancels every run, active and (returned, for the caller to record) queued. */
  cancelAll(reason: string): Q[] {
    for (const r of this.active) this.opts.cancel(r, reason);
    return this.waiting.splice(0);
  }
}
