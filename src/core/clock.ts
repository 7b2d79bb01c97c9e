/**
 * Wall-clock time and timers for the capabilities where time is part of the behaviour
 * (schedules, sun triggers, delays in automation runs, "for" durations, quiet hours). The
 * composition root passes one clock to all of them; tests pass a {@link ManualClock} and move
 * time forward themselves, so a schedule across a DST change runs in milliseconds.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once `ms` have passed on this clock; the returned function cancels it. */
  setTimer(fn: () => void, ms: number): () => void;
}

/** The real clock: `Date.now()` and unref'd `setTimeout` (a pending timer never keeps the process alive). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    // setTimeout overflows past 2^31-1 ms (~24.8 days); re-arm in steps for far-away times.
    const MAX = 2_147_000_000;
    let t: NodeJS.Timeout;
    const arm = (left: number) => {
      t = setTimeout(() => (left > MAX ? arm(left - MAX) : fn()), Math.min(Math.max(0, left), MAX));
      t.unref();
    };
    arm(ms);
    return () => clearTimeout(t);
  },
};

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that moves only when told to. `advance(ms)` runs every timer that falls due in order,
 * letting promise callbacks settle between them, so code that awaits between timers behaves as
 * it would in real time.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: PendingTimer[] = [];

  constructor(start: number | Date = Date.now()) {
    this.t = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const timer: PendingTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      const i = this.timers.indexOf(timer);
      if (i >= 0) this.timers.splice(i, 1);
    };
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, running due timers in order (and those they set that fall due). */
  async advance(ms: number): Promise<void> {
    await this.set(this.t + ms);
  }

  /** Moves time forward to `to` (never backwards), running due timers in order. */
  async set(to: number | Date): Promise<void> {
    const end = typeof to === 'number' ? to : to.getTime();
    for (;;) {
      await settle();
      let next: PendingTimer | undefined;
      for (const x of this.timers) if (x.at <= end && (!next || x.at < next.at || (x.at === next.at && x.seq < next.seq))) next = x;
      if (!next) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = Math.max(this.t, end);
    await settle();
  }
}

/** Lets pending promise callbacks and I/O callbacks already queued run. */
function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
