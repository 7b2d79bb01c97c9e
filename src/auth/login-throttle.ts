import { isIPv6 } from 'node:net';
import type { LoginOutcome } from '../core/bus/events.ts';

export interface LoginThrottleOptions {
  /** Failures in a row of one account from one source before delays start (default 3). */
  freeFailures?: number;
  /** The first delay; each further failure of the pair doubles it (default 1 s). */
  baseDelayMs?: number;
  /** The longest delay of a pair (default 15 minutes). */
  maxDelayMs?: number;
  /** A pair quiet for this long after its last delay ended starts over (default 15 minutes). */
  windowMs?: number;
  /** Failures one source may have across all accounts at once; they come back at this many per `windowMs` (default 30). */
  sourceFailures?: number;
  /** Distinct accounts failing from one source within `windowMs` that count as spraying (default 10). */
  sprayAccounts?: number;
  /** Distinct sources failing on one account within `windowMs` that count as a distributed attack (default 10). */
  spraySources?: number;
  /** Most keys remembered per table; beyond it the least recently used are forgotten (default 100 000). */
  maxKeys?: number;
  now?: () => number;
}

/** The outcome of a checked password, as shared between nodes (and applied with `learn`); it travels on `cluster.auth.login`. */
export type { LoginOutcome };

/** Spraying noticed by `sprayAlerts`: one source failing on many accounts, or one account failing from many sources. */
export interface SprayAlert {
  kind: 'source' | 'account';
  /** The source (kind `source`) or the account (kind `account`) under suspicion. */
  subject: string;
  /** How many distinct accounts (kind `source`) or sources (kind `account`) failed within the window. */
  distinct: number;
  windowSeconds: number;
}

interface Pair {
  /** Failures in a row. */
  failures: number;
  /** No attempt before this (epoch ms). */
  until: number;
  lastAt: number;
  /** Attempts admitted and not yet decided. */
  inFlight: number;
}

interface Source {
  /** Failures the source may still have; refills at `sourceFailures` per window. */
  tokens: number;
  at: number;
  inFlight: number;
}

interface Distinct {
  /** Member → when it last failed. */
  seen: Map<string, number>;
  /** When an alert was last raised for this subject (0: never). */
  alertedAt: number;
}

/**
 * Throttles password attempts without letting an attacker lock anyone out.
 *
 * - **Per (account, source)**: after `freeFailures` failures in a row the pair waits 1 s, then
 *   2 s, 4 s … up to `maxDelayMs` before its next attempt. Only that pair: the same account from
 *   another source, and a right password there, are never held up. A success resets the pair.
 * - **Per source, across accounts**: each failure from a source takes a token from its bucket
 *   (`sourceFailures`, refilled over `windowMs`); an empty bucket stops the source trying any
 *   account, which is what stops a sprayer. A success does not refill it.
 * - **Spraying** is noticed (`sprayAlerts`) when one source fails on `sprayAccounts` accounts, or
 *   one account fails from `spraySources` sources, within the window; each is reported once per
 *   window.
 *
 * There is deliberately no lock of an account as a whole: that is what let anyone lock out anyone.
 * State is in memory; nodes of a cluster share it by passing each `LoginOutcome` to `learn`.
 */
export class LoginThrottle {
  private readonly pairs = new Map<string, Pair>();
  private readonly sources = new Map<string, Source>();
  /** Source → the accounts that failed from it. */
  private readonly accountsBySource = new Map<string, Distinct>();
  /** Account → the sources it failed from. */
  private readonly sourcesByAccount = new Map<string, Distinct>();
  private readonly o: Required<Omit<LoginThrottleOptions, 'now'>>;
  private readonly now: () => number;
  private lastSweep = 0;

  constructor(opts: LoginThrottleOptions = {}) {
    this.o = {
      freeFailures: opts.freeFailures ?? 3,
      baseDelayMs: opts.baseDelayMs ?? 1000,
      maxDelayMs: opts.maxDelayMs ?? 15 * 60_000,
      windowMs: opts.windowMs ?? 15 * 60_000,
      sourceFailures: opts.sourceFailures ?? 30,
      sprayAccounts: opts.sprayAccounts ?? 10,
      spraySources: opts.spraySources ?? 10,
      maxKeys: opts.maxKeys ?? 100_000,
    };
    this.now = opts.now ?? Date.now;
  }

  /**
   * Admits an attempt of `account` from `source`: returns the seconds to wait when it may not
   * try now; otherwise undefined, and the attempt is in flight until `end()`. Attempts in flight
   * count as failures until decided, so a burst of parallel guesses cannot slip past the limits.
   */
  begin(account: string, source: string): number | undefined {
    const now = this.now();
    this.sweep(now);
    const pair = this.pairs.get(pairKey(account, source));
    if (pair && !this.forgettable(pair, now)) {
      if (pair.until > now) return seconds(pair.until - now);
      if (pair.inFlight > 0 && pair.failures + pair.inFlight >= this.o.freeFailures) return 1;
    }
    const src = this.sources.get(source);
    if (src) {
      const tokens = this.refill(src, now);
      if (tokens < 1) return seconds((1 - tokens) / this.sourceRefillPerMs);
      if (tokens - src.inFlight < 1) return 1;
    }
    touch(this.pairs, pairKey(account, source), () => ({ failures: 0, until: 0, lastAt: now, inFlight: 0 }), this.o.maxKeys).inFlight++;
    touch(this.sources, source, () => ({ tokens: this.o.sourceFailures, at: now, inFlight: 0 }), this.o.maxKeys).inFlight++;
    return undefined;
  }

  /** Ends an attempt admitted by `begin()` (its outcome, if any, goes to `learn`). */
  end(account: string, source: string): void {
    const pair = this.pairs.get(pairKey(account, source));
    if (pair && pair.inFlight > 0) pair.inFlight--;
    const src = this.sources.get(source);
    if (src && src.inFlight > 0) src.inFlight--;
  }

  /** Whether the pair has failures that a success would reset (every node learns every failure). */
  hasFailures(account: string, source: string): boolean {
    const pair = this.pairs.get(pairKey(account, source));
    return pair !== undefined && (pair.failures > 0 || pair.until > 0);
  }

  /** Applies the outcome of a checked password, made on this node or another. */
  learn(o: LoginOutcome): void {
    const now = this.now();
    const key = pairKey(o.account, o.source);
    if (o.ok) {
      // The right password from here: this pair starts over. The source's bucket does not refill,
      // so signing in to one's own account between guesses at others does not help a sprayer.
      const pair = this.pairs.get(key);
      if (pair) {
        pair.failures = 0;
        pair.until = 0;
      }
      return;
    }
    const pair = touch(this.pairs, key, () => ({ failures: 0, until: 0, lastAt: now, inFlight: 0 }), this.o.maxKeys);
    if (this.forgettable(pair, now)) {
      pair.failures = 0;
      pair.until = 0;
    }
    pair.failures++;
    pair.lastAt = now;
    if (pair.failures > this.o.freeFailures) {
      const delay = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(40, pair.failures - this.o.freeFailures - 1));
      pair.until = Math.max(pair.until, o.at + delay);
    }
    const src = touch(this.sources, o.source, () => ({ tokens: this.o.sourceFailures, at: now, inFlight: 0 }), this.o.maxKeys);
    this.refill(src, now);
    src.tokens -= 1;
    note(this.accountsBySource, o.source, o.account, now, this.o.sprayAccounts * 4, this.o.maxKeys);
    note(this.sourcesByAccount, o.account, o.source, now, this.o.spraySources * 4, this.o.maxKeys);
  }

  /**
   * After a failure of `account` from `source`: the spraying it shows that has not been reported
   * within the window (each subject is reported at most once per window, per node).
   */
  sprayAlerts(account: string, source: string): SprayAlert[] {
    const now = this.now();
    const out: SprayAlert[] = [];
    const check = (table: Map<string, Distinct>, subject: string, threshold: number, kind: SprayAlert['kind']) => {
      const d = table.get(subject);
      if (!d) return;
      const distinct = countRecent(d, now, this.o.windowMs);
      if (distinct >= threshold && now - d.alertedAt >= this.o.windowMs) {
        d.alertedAt = now;
        out.push({ kind, subject, distinct, windowSeconds: Math.round(this.o.windowMs / 1000) });
      }
    };
    check(this.accountsBySource, source, this.o.sprayAccounts, 'source');
    check(this.sourcesByAccount, account, this.o.spraySources, 'account');
    return out;
  }

  /** Entries remembered in all tables (tests: memory stays bounded). */
  get size(): number {
    return this.pairs.size + this.sources.size + this.accountsBySource.size + this.sourcesByAccount.size;
  }

  private get sourceRefillPerMs(): number {
    return this.o.sourceFailures / this.o.windowMs;
  }

  private refill(src: Source, now: number): number {
    src.tokens = Math.min(this.o.sourceFailures, src.tokens + (now - src.at) * this.sourceRefillPerMs);
    src.at = now;
    return src.tokens;
  }

  /** A pair quiet for a window after its last delay ended is as good as new. */
  private forgettable(p: Pair, now: number): boolean {
    return p.inFlight === 0 && now - Math.max(p.lastAt, p.until) >= this.o.windowMs;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [k, p] of this.pairs) if (this.forgettable(p, now)) this.pairs.delete(k);
    for (const [k, s] of this.sources) if (s.inFlight === 0 && this.refill(s, now) >= this.o.sourceFailures) this.sources.delete(k);
    for (const table of [this.accountsBySource, this.sourcesByAccount]) {
      for (const [k, d] of table) if (countRecent(d, now, this.o.windowMs) === 0 && now - d.alertedAt >= this.o.windowMs) table.delete(k);
    }
  }
}

/**
 * The source a request counts against: its IPv4 address, or the /64 network of an IPv6 address
 * (one host usually holds a whole /64, so counting single IPv6 addresses would be no limit).
 */
export function sourceOf(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1];
  if (!isIPv6(ip)) return ip;
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

const pairKey = (account: string, source: string): string => `${account}\u0000${source}`;
const seconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));

/** The entry of `key`, created if need be, moved to the most recently used end; the oldest beyond `max` go. */
function touch<V>(table: Map<string, V>, key: string, make: () => V, max: number): V {
  let v = table.get(key);
  if (v !== undefined) table.delete(key);
  else v = make();
  table.set(key, v);
  if (table.size > max) table.delete(table.keys().next().value!);
  return v;
}

/** Records that `member` failed with `subject`, keeping at most `perSubject` members (the most recent). */
function note(table: Map<string, Distinct>, subject: string, member: string, now: number, perSubject: number, max: number): void {
  const d = touch(table, subject, () => ({ seen: new Map<string, number>(), alertedAt: 0 }), max);
  d.seen.delete(member);
  d.seen.set(member, now);
  if (d.seen.size > perSubject) d.seen.delete(d.seen.keys().next().value!);
}

function countRecent(d: Distinct, now: number, windowMs: number): number {
  let n = 0;
  for (const [member, at] of d.seen) {
    if (now - at < windowMs) n++;
    else d.seen.delete(member);
  }
  return n;
}
