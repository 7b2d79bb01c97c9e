export type TakeResult = { ok: true } | { ok: false; retryAfterSeconds: number };

export interface RateLimiterOptions {
  /** Sustained rate: tokens added to every bucket per minute. */
  perMinute: number;
  /** Bucket size: how many requests may come at once. */
  burst: number;
  /** Most buckets kept; beyond it the least recently used are dropped (default 100 000). */
  maxKeys?: number;
  /** The clock, in milliseconds (tests). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets keyed by string (a user id, an API key id, an address). Each bucket holds up to
 * `burst` tokens and refills at `perMinute`; a request takes one. Memory stays bounded: a bucket
 * that has refilled completely is the same as no bucket and is swept away, and beyond `maxKeys`
 * the least recently used bucket is dropped (at worst that key gets a fresh burst).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly burst: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  /** How long an untouched bucket takes to refill completely; after that it can be forgotten. */
  private readonly idleMs: number;
  private lastSweep: number;

  constructor(opts: RateLimiterOptions) {
    if (!(opts.perMinute > 0) || !(opts.burst >= 1)) throw new RangeError('RateLimiter needs perMinute > 0 and burst >= 1');
    this.perMs = opts.perMinute / 60_000;
    this.burst = opts.burst;
    this.maxKeys = Math.max(1, opts.maxKeys ?? 100_000);
    this.now = opts.now ?? Date.now;
    this.idleMs = Math.ceil(this.burst / this.perMs);
    this.lastSweep = this.now();
  }

  /** Takes `cost` tokens (default 1) from the key's bucket, or says how long to wait for them. */
  take(key: string, cost = 1): TakeResult {
    const now = this.now();
    this.sweep(now);
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
      // Map order is insertion order: move the key to the end so the front is least recently used.
      this.buckets.delete(key);
    } else {
      b = { tokens: this.burst, at: now };
    }
    this.buckets.set(key, b);
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((cost - b.tokens) / this.perMs / 1000)) };
  }

  /** Forgets a key (e.g. after a successful sign-in). */
  reset(key: string): void {
    this.buckets.delete(key);
  }

  /** Buckets currently held (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  /** At most once per refill period, drops the buckets that have refilled completely. */
  private sweep(now: number): void {
    if (now - this.lastSweep < Math.min(this.idleMs, 60_000)) return;
    this.lastSweep = now;
    for (const [key, b] of this.buckets) {
      if (now - b.at >= this.idleMs) this.buckets.delete(key);
      else break; // ordered by last use: the rest are more recent
    }
  }
}
