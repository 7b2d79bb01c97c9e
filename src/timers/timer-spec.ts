import { Cron } from 'croner';
import { getTimes } from 'suncalc';
import { addDays, fromWallClock, isTimeZone, localDate, zonedTime, type LocalDate } from '../core/zoned-time.ts';

export { localDate, zonedTime, type LocalDate } from '../core/zoned-time.ts';

/**
 * When a timer is due: a cron pattern in an IANA zone, a one-off instant, or sunrise/sunset with
 * an offset at a place. Everything here is pure (no clock, no I/O): the timer service, previews
 * and tests call it with the instant to compute from.
 */
export type TimerSpec =
  /** 5-field (or 6 with seconds) cron, read in the IANA zone. */
  | { kind: 'cron'; cron: string; timezone: string }
  /** One-off, epoch ms. */
  | { kind: 'at'; at: number }
  /** Sunrise or sunset at the place, shifted by `offsetMs` (negative: before). */
  | { kind: 'sun'; event: 'sunrise' | 'sunset'; offsetMs: number; latitude: number; longitude: number; timezone: string };

const _DAY_MS = 86_400_000;
/** Sun offsets beyond this are more likely a unit mistake (seconds or minutes given as ms × 1000) than intended. */
export const MAX_SUN_OFFSET_MS = 12 * 3_600_000;
/**
 * How many local days a sun search looks ahead before giving up. Polar night or day lasts at
 * most about six months (at the poles), so a year and a bit always finds the next event.
 */
const SUN_SEARCH_DAYS = 400;

/**
 * Why the spec cannot be used, or undefined when it can. Checks the shape (it may come from
 * JSON), the cron pattern, the zone, coordinates and offset; given `from`, also that a cron
 * pattern matches some date after it (`0 0 31 2 *` never does).
 */
export function specProblem(spec: unknown, from?: number): string | undefined {
  if (typeof spec !== 'object' || spec === null) return 'a timer spec must be an object';
  const s = spec as Record<string, unknown>;
  switch (s.kind) {
    case 'at':
      return Number.isSafeInteger(s.at) && (s.at as number) >= 0 ? undefined : '"at" must be epoch milliseconds (a non-negative integer)';
    case 'cron': {
      if (typeof s.cron !== 'string' || s.cron.trim() === '') return '"cron" must be a cron pattern (5 fields, or 6 with seconds)';
      const tz = zoneProblem(s.timezone);
      if (tz) return tz;
      let cron: Cron;
      try {
        cron = cronOf(s.cron, s.timezone as string);
      } catch (err) {
        return `invalid cron pattern "${s.cron}": ${(err as Error).message.replace(/^CronPattern: /, '')}`;
      }
      if (from !== undefined && cron.nextRuns(1, new Date(from)).length === 0) return `the cron pattern "${s.cron}" matches no date`;
      return undefined;
    }
    case 'sun': {
      if (s.event !== 'sunrise' && s.event !== 'sunset') return '"event" must be "sunrise" or "sunset"';
      if (typeof s.latitude !== 'number' || !(s.latitude >= -90 && s.latitude <= 90)) return '"latitude" must be a number from -90 to 90';
      if (typeof s.longitude !== 'number' || !(s.longitude >= -180 && s.longitude <= 180)) return '"longitude" must be a number from -180 to 180';
      if (typeof s.offsetMs !== 'number' || !Number.isFinite(s.offsetMs) || Math.abs(s.offsetMs) > MAX_SUN_OFFSET_MS) {
        return `"offsetMs" must be a number of milliseconds within ±${MAX_SUN_OFFSET_MS}`;
      }
      return zoneProblem(s.timezone);
    }
    default:
      return '"kind" must be "cron", "at" or "sun"';
  }
}

function zoneProblem(tz: unknown): string | undefined {
  if (typeof tz !== 'string' || tz === '') return '"timezone" must be an IANA time zone name such as "Europe/Berlin"';
  return isTimeZone(tz) ? undefined : `unknown time zone "${tz}"`;
}

/**
 * The next `n` due times of `spec` strictly after `from` (epoch ms), ascending; fewer when the
 * spec has no more (a one-off in the past, a cron pattern of a date that never recurs). The spec
 * is not validated again here (callers check it once with `specProblem`); a bad pattern or zone
 * still throws.
 *
 * DST: cron times are wall-clock times in the zone. A time that does not exist on the
 * spring-forward day (02:30 in Berlin on 29 March 2026) fires once, at the instant the clock
 * jumps (03:00 local, 01:00 UTC), on that day only; a time that occurs twice on the fall-back
 * day fires once, at its first occurrence (02:30 CEST). Patterns whose second, minute and hour
 * fields have no wildcard or step (`30 2 * * *`, `0 7,19 * * 1-5`) count as such fixed times;
 * interval patterns (`*\/15 * * * *`) keep their pace in real time instead, skipping the
 * missing hour and running through the repeated one.
 *
 * Sun: for each local date in the zone, the event of the solar day whose noon is nearest to
 * that date's local noon (so a sunset just after local midnight, as in Reykjavik in June,
 * still belongs to the day before), plus the offset. A day without the event (polar day or
 * night) is skipped: the next is on the next day that has one.
 */
export function nextTimes(spec: TimerSpec, from: number, n = 1): number[] {
  if (n <= 0) return [];
  switch (spec.kind) {
    case 'at':
      return spec.at > from ? [spec.at] : [];
    case 'cron':
      return cronOf(spec.cron, spec.timezone)
        .nextRuns(n, new Date(from))
        .map((d) => d.getTime());
    case 'sun':
      return nextSun(spec, from, n);
    default:
      throw new TypeError(specProblem(spec) ?? 'not a timer spec');
  }
}

/** The first due time after `from`, or null when there is none. */
export function nextTime(spec: TimerSpec, from: number): number | null {
  return nextTimes(spec, from, 1)[0] ?? null;
}

/** A canonical text of a spec (fixed key order), to tell whether a spec changed. */
export function specKey(spec: TimerSpec): string {
  switch (spec.kind) {
    case 'at':
      return JSON.stringify({ kind: 'at', at: spec.at });
    case 'cron':
      return JSON.stringify({ kind: 'cron', cron: spec.cron, timezone: spec.timezone });
    case 'sun':
      return JSON.stringify({
        kind: 'sun',
        event: spec.event,
        offsetMs: spec.offsetMs,
        latitude: spec.latitude,
        longitude: spec.longitude,
        timezone: spec.timezone,
      });
  }
}

// ── cron ──────────────────────────────────────────────────────────────────────────────────

const crons = new Map<string, Cron>();

/** Parsed patterns by pattern and zone; bounded, since patterns come from users. */
function cronOf(pattern: string, timezone: string): Cron {
  const k = `${timezone} ${pattern}`;
  let c = crons.get(k);
  if (!c) {
    // no-wildcard: a list or range of hours (`0 7,19 * * *`) is a fixed time too, so it runs once on a fall-back day.
    c = new Cron(pattern, { timezone, paused: true, mode: '5-or-6-parts', fixedTimeRule: 'no-wildcard' });
    if (crons.size >= 1000) crons.delete(crons.keys().next().value!);
    crons.set(k, c);
  }
  return c;
}

// ── sun ───────────────────────────────────────────────────────────────────────────────────

function nextSun(spec: Extract<TimerSpec, { kind: 'sun' }>, from: number, n: number): number[] {
  const out: number[] = [];
  // Start a day before the date of the event that could be next (offset undone), so nothing is missed.
  let date = addDays(localDate(from - spec.offsetMs, spec.timezone), -1);
  for (let empty = 0; out.length < n && empty < SUN_SEARCH_DAYS; date = addDays(date, 1)) {
    const event = sunEvent(spec, date);
    if (event === null) {
      empty++;
      continue;
    }
    empty = 0;
    const at = event + spec.offsetMs;
    if (at > from) out.push(at);
  }
  return out;
}

/** The event (without offset) of the solar day of a local date, or null on a polar day or night. */
export function sunEvent(spec: { event: 'sunrise' | 'sunset'; latitude: number; longitude: number; timezone: string }, date: LocalDate): number | null {
  const noon = zonedTime(date, 12, spec.timezone);
  const t = getTimes(new Date(noon), spec.latitude, spec.longitude)[spec.event];
  return t && Number.isFinite(t.getTime()) ? Math.round(t.getTime()) : null;
}

// ── date-time text ────────────────────────────────────────────────────────────────────

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:\d{2})?$/;

/**
 * An ISO 8601 date-time (`2026-12-24T18:00`, with seconds, or with `Z`/an offset): with an offset it
 * is that instant; without one it is the wall-clock time in `tz`. Undefined when it is not one.
 */
export function parseDateTime(text: string, tz: string): number | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, sec, ms] = [1, 2, 3, 4, 5, 6, 7].map((i) => Number((m[i] ?? '0').padEnd(i === 7 ? 3 : 1, '0')));
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) return undefined;
  const wall = Date.UTC(y, mo - 1, d, h, mi, sec, ms);
  if (new Date(wall).getUTCDate() !== d) return undefined; // 2026-02-30
  if (m[8] === undefined) return fromWallClock(wall, tz);
  if (m[8] === 'Z') return wall;
  const sign = m[8][0] === '-' ? -1 : 1;
  return wall - sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6))) * 60_000;
}
