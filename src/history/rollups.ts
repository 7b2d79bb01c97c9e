/**
 * Rollups of history points: pure bucket arithmetic, shared by the writer (which turns stored
 * points into deltas and adds them to their buckets) and the readers (which pick a tier).
 */

/** The rollup tiers, finest first; `code` is what the `tier` column holds. */
export const TIERS = [
  { name: '1m', ms: 60_000, code: 0 },
  { name: '1h', ms: 3_600_000, code: 1 },
  { name: '1d', ms: 86_400_000, code: 2 },
] as const;

export type Tier = (typeof TIERS)[number];
export type TierName = Tier['name'];

export const tierByName = (name: string): Tier | undefined => TIERS.find((t) => t.name === name);

/** Start of the UTC-aligned bucket of `bucketMs` holding `ts` (also for times before 1970). */
export const bucketStart = (ts: number, bucketMs: number): number => Math.floor(ts / bucketMs) * bucketMs;

/**
 * The tier an aggregate of `bucketMs` buckets reads: the coarsest rollup tier that divides the
 * bucket (fewest rows read), or undefined when none does (sub-minute or odd buckets: raw points).
 */
export function pickTier(bucketMs: number): Tier | undefined {
  for (let i = TIERS.length - 1; i >= 0; i--) if (bucketMs % TIERS[i].ms === 0) return TIERS[i];
  return undefined;
}

/** A point as the rollups see it: `num` for numbers and booleans (0/1), `state` for booleans and enums. */
export interface RollupPoint {
  deviceId: string;
  property: string;
  /** The id of (deviceId, property) in history_series. */
  series: number;
  ts: number;
  num: number | null;
  state: string | null;
}

/** One row of `history_rollups`, or a delta to add to one. */
export interface RollupRow {
  series: number;
  tier: number;
  bucket: number;
  state: string;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  last: number | null;
  last_ts: number;
  /** State rows of the 1h and 1d tiers: milliseconds in the state within the bucket. */
  dur: number;
}

/** The tiers that keep time in state (a minute tier would write a row for every minute of every state). */
export const DURATION_TIERS: readonly Tier[] = TIERS.filter((t) => t.name !== '1m');

/** Earlier than any point: a row made only of time in state never holds `last`. */
export const NO_TS = -8.64e15;

/** Time a series spent in `state` over [from, to): added (`sign` 1) or taken back (-1, a late point split it). */
export interface StateSegment {
  series: number;
  state: string;
  from: number;
  to: number;
  sign: 1 | -1;
}

/**
 * The deltas a set of newly stored points adds: one row per (series, tier, bucket, state)
 * so that each row of the store is touched once per batch. `state` '' is the numeric aggregate.
 */
export function rollupDeltas(points: Iterable<RollupPoint>, segments: Iterable<StateSegment> = []): RollupRow[] {
  const rows = new Map<string, RollupRow>();
  const keyOf = (series: number, tier: Tier, bucket: number, state: string) => `${series}\u0000${tier.code}\u0000${bucket}\u0000${state}`;
  const add = (p: RollupPoint, tier: Tier, state: string, num: number | null): void => {
    const bucket = bucketStart(p.ts, tier.ms);
    const key = keyOf(p.series, tier, bucket, state);
    const r = rows.get(key);
    if (!r) {
      rows.set(key, { series: p.series, tier: tier.code, bucket, state, count: 1, sum: num, min: num, max: num, last: num, last_ts: p.ts, dur: 0 });
      return;
    }
    if (r.count === 0) {
      // A row that so far held only time in state.
      Object.assign(r, { count: 1, sum: num, min: num, max: num, last: num, last_ts: p.ts });
      return;
    }
    r.count++;
    if (num !== null) {
      r.sum = (r.sum ?? 0) + num;
      r.min = r.min === null || num < r.min ? num : r.min;
      r.max = r.max === null || num > r.max ? num : r.max;
    }
    // Equal times: the later recorded wins, as the store's upsert does.
    if (p.ts >= r.last_ts) {
      r.last_ts = p.ts;
      r.last = num;
    }
  };
  for (const p of points) {
    for (const tier of TIERS) {
      if (p.num !== null) add(p, tier, '', p.num);
      if (p.state !== null) add(p, tier, p.state, null);
    }
  }
  for (const s of segments) {
    if (s.to <= s.from) continue;
    for (const tier of DURATION_TIERS) {
      for (let b = bucketStart(s.from, tier.ms); b < s.to; b += tier.ms) {
        const ms = (Math.min(s.to, b + tier.ms) - Math.max(s.from, b)) * s.sign;
        const key = keyOf(s.series, tier, b, s.state);
        const r = rows.get(key);
        if (r) r.dur += ms;
        else
          rows.set(key, {
            series: s.series,
            tier: tier.code,
            bucket: b,
            state: s.state,
            count: 0,
            sum: null,
            min: null,
            max: null,
            last: null,
            last_ts: NO_TS,
            dur: ms,
          });
      }
    }
  }
  return [...rows.values()];
}

/** An aggregate bucket as the API answers it. */
export interface AggregateBucket {
  ts: string;
  min: number | null;
  max: number | null;
  avg: number | null;
  count: number;
  sum?: number | null;
  last?: number | string | boolean | null;
  /** Booleans and enums: points per value. */
  counts?: Record<string, number>;
  /** Booleans and enums on the 1h and 1d tiers: milliseconds in each value (between consecutive points). */
  durations?: Record<string, number>;
}

/** Folds rollup rows (of one device and property, any order) into buckets of `bucketMs`, oldest first. */
export function foldRollups(
  rows: Iterable<Pick<RollupRow, 'bucket' | 'state' | 'count' | 'sum' | 'min' | 'max' | 'last' | 'last_ts' | 'dur'>>,
  bucketMs: number,
  withDurations = false,
): AggregateBucket[] {
  type Acc = {
    count: number;
    sum: number | null;
    min: number | null;
    max: number | null;
    numCount: number;
    last: number | string | null;
    lastTs: number;
    counts?: Record<string, number>;
    durations?: Record<string, number>;
    stateCount: number;
  };
  const out = new Map<number, Acc>();
  for (const r of rows) {
    const b = bucketStart(Number(r.bucket), bucketMs);
    let a = out.get(b);
    if (!a) out.set(b, (a = { count: 0, sum: null, min: null, max: null, numCount: 0, last: null, lastTs: -Infinity, stateCount: 0 }));
    const count = Number(r.count);
    const lastTs = Number(r.last_ts);
    if (r.state === '') {
      a.numCount += count;
      if (r.sum !== null) a.sum = (a.sum ?? 0) + Number(r.sum);
      if (r.min !== null) a.min = a.min === null ? Number(r.min) : Math.min(a.min, Number(r.min));
      if (r.max !== null) a.max = a.max === null ? Number(r.max) : Math.max(a.max, Number(r.max));
      // A boolean's state rows carry the same times; its numeric `last` is the one kept.
      if (lastTs >= a.lastTs && (typeof a.last !== 'number' || lastTs > a.lastTs)) {
        a.lastTs = lastTs;
        a.last = r.last === null ? null : Number(r.last);
      }
    } else {
      a.stateCount += count;
      if (count > 0) (a.counts ??= {})[r.state] = (a.counts[r.state] ?? 0) + count;
      const dur = Number(r.dur);
      if (withDurations && dur !== 0) (a.durations ??= {})[r.state] = (a.durations[r.state] ?? 0) + dur;
      if (count > 0 && lastTs > a.lastTs) {
        a.lastTs = lastTs;
        a.last = r.state;
      }
    }
  }
  return [...out.entries()]
    .sort((x, y) => x[0] - y[0])
    .map(([b, a]) => {
      const count = a.numCount > 0 ? a.numCount : a.stateCount;
      const bucket: AggregateBucket = {
        ts: new Date(b).toISOString(),
        min: a.min,
        max: a.max,
        avg: a.sum !== null && a.numCount > 0 ? a.sum / a.numCount : null,
        count,
        sum: a.sum,
        last: a.last,
      };
      if (a.counts) bucket.counts = a.counts;
      if (a.durations) bucket.durations = a.durations;
      return bucket;
    });
}
