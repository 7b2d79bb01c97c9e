export interface LoginThrottleOptions {
  /** Failures within `windowMs` that lock the key. */
  maxFailures: number;
  /** The window the failures are counted in, and the first lockout. */
  windowMs: number;
  /** Longest lockout; each lockout in a row doubles the previous one up to this. */
  maxLockoutMs?: number;
  /** Most keys remembered; beyond it the least recently failed are forgotten. */
  maxKeys?: number;
  now?: () => number;
}

interface Entry {
  /** Times of the failures in the current window, oldest first. */
  failures: number[];
  lockedUntil: number;
  /** Lockouts in a row; a lockout after a lockout lasts twice as long. */
  strikes: number;
  /** Attempts admitted and not yet decided. */
  inFlight: number;
  lastAt: number;
}

/**
 * Counts failed sign-ins per key (an e-mail, an address). After `maxFailures` within `windowMs`
 * the key is locked for `windowMs`, then twice that after the next run of failures, and so on up
 * to `maxLockoutMs`. A key forgets its strikes after a quiet day or a successful sign-in.
 */
export class LoginThrottle {
  private readonly entries = new Map<string, Entry>();
  private readonly maxLockoutMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private lastSweep = 0;

  constructor(private readonly opts: LoginThrottleOptions) {
    this.maxLockoutMs = opts.maxLockoutMs ?? 24 * 3600_000;
    this.maxKeys = opts.maxKeys ?? 100_000;
    this.now = opts.now ?? Date.now;
  }

  /** Seconds until the key may try again, or undefined when it may try now. */
  check(key: string): number | undefined {
    const e = this.entries.get(key);
    const now = this.now();
    if (!e) return undefined;
    if (e.lockedUntil > now) return Math.max(1, Math.ceil((e.lockedUntil - now) / 1000));
    // Attempts still being checked count as failures until they are known not to be.
    if (e.inFlight > 0 && this.recent(e, now) + e.inFlight >= this.opts.maxFailures) return 1;
    return undefined;
  }

  /**
   * Admits an attempt: returns the seconds to wait when the key may not try now, otherwise
   * undefined, and the attempt is in flight until `end()`.
   */
  begin(key: string): number | undefined {
    const wait = this.check(key);
    if (wait !== undefined) return wait;
    this.touch(key).inFlight++;
    return undefined;
  }

  /** Ends an attempt admitted by `begin()`; a failed one counts (and may start a lockout). */
  end(key: string, failed: boolean): void {
    const e = this.entries.get(key);
    if (e && e.inFlight > 0) e.inFlight--;
    if (failed) this.fail(key);
  }

  /** Records a failure; returns the seconds of the lockout it started, if it started one. */
  fail(key: string): number | undefined {
    const now = this.now();
    const e = this.touch(key);
    e.failures = e.failures.filter((t) => now - t < this.opts.windowMs);
    e.failures.push(now);
    if (e.failures.length < this.opts.maxFailures) return undefined;
    const lockMs = Math.min(this.maxLockoutMs, this.opts.windowMs * 2 ** e.strikes);
    e.strikes++;
    e.failures = [];
    e.lockedUntil = now + lockMs;
    return Math.ceil(lockMs / 1000);
  }

  /** Keys currently remembered (tests). */
  get size(): number {
    return this.entries.size;
  }

  private recent(e: Entry, now: number): number {
    let n = 0;
    for (const t of e.failures) if (now - t < this.opts.windowMs) n++;
    return n;
  }

  /** The key's entry, created if need be and moved to the most recently used end. */
  private touch(key: string): Entry {
    const now = this.now();
    this.sweep(now);
    let e = this.entries.get(key);
    if (e && e.inFlight === 0 && e.lockedUntil <= now && now - e.lastAt > this.quietMs) e = undefined;
    e ??= { failures: [], lockedUntil: 0, strikes: 0, inFlight: 0, lastAt: now };
    e.lastAt = now;
    this.entries.delete(key);
    this.entries.set(key, e);
    if (this.entries.size > this.maxKeys) this.entries.delete(this.entries.keys().next().value!);
    return e;
  }

  /** Forgets the key (a successful sign-in). */
  reset(key: string): void {
    this.entries.delete(key);
  }

  /** A key quiet for this long starts over, strikes and all. */
  private get quietMs(): number {
    return Math.max(24 * 3600_000, this.maxLockoutMs);
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [key, e] of this.entries) {
      const forgettable = e.inFlight === 0 && e.lockedUntil <= now && (e.strikes === 0 ? now - e.lastAt >= this.opts.windowMs : now - e.lastAt > this.quietMs);
      if (forgettable) this.entries.delete(key);
    }
  }
}
