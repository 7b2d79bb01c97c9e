/**
 * Local (wall-clock) time in an IANA zone, without a dependency: one cached Intl formatter per
 * zone reads an instant's fields, and `fromWallClock` goes back from wall-clock time to an
 * instant. Timers, automation conditions and notification quiet hours all read time through here.
 */

export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun';

/** A calendar date (month and day from 1). */
export interface LocalDate {
  y: number;
  m: number;
  d: number;
}

/** The wall-clock fields of an instant in a zone. */
export interface ZonedFields extends LocalDate {
  h: number;
  mi: number;
  s: number;
  weekday: Weekday;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's formatter (cached); throws a RangeError on an unknown zone. */
function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      weekday: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(tz, f);
  }
  return f;
}

/** Whether `tz` is a time zone this runtime knows. */
export function isTimeZone(tz: string): boolean {
  try {
    formatter(tz);
    return true;
  } catch {
    return false;
  }
}

/** Wall-clock fields of an instant in a zone. */
export function zonedFields(at: number, tz: string): ZonedFields {
  let y = 0,
    m = 0,
    d = 0,
    h = 0,
    mi = 0,
    s = 0;
  let weekday = 'mon' as Weekday;
  for (const part of formatter(tz).formatToParts(new Date(at))) {
    switch (part.type) {
      case 'year':
        y = Number(part.value);
        break;
      case 'month':
        m = Number(part.value);
        break;
      case 'day':
        d = Number(part.value);
        break;
      case 'hour':
        h = Number(part.value) % 24;
        break;
      case 'minute':
        mi = Number(part.value);
        break;
      case 'second':
        s = Number(part.value);
        break;
      case 'weekday':
        weekday = part.value.slice(0, 3).toLowerCase() as Weekday;
        break;
    }
  }
  return { y, m, d, h, mi, s, weekday };
}

/** The local date of an instant in a zone. */
export function localDate(at: number, tz: string): LocalDate {
  const { y, m, d } = zonedFields(at, tz);
  return { y, m, d };
}

/** The date `days` after (or before) `date`. */
export function addDays(date: LocalDate, days: number): LocalDate {
  const t = new Date(Date.UTC(date.y, date.m - 1, date.d + days));
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate() };
}

/** The zone's UTC offset at an instant, in ms (east positive). */
export function offsetAt(at: number, tz: string): number {
  const f = zonedFields(at, tz);
  return Date.UTC(f.y, f.m - 1, f.d, f.h, f.mi, f.s) - Math.floor(at / 1000) * 1000;
}

/** The instant a zone's clocks show `wall` (its fields read as UTC); a skipped time gives the instant after the gap. */
export function fromWallClock(wall: number, tz: string): number {
  let at = wall - offsetAt(wall, tz);
  at = wall - offsetAt(at, tz);
  return at;
}

/**
 * The instant of a whole local hour on a date in a zone. Used at noon, which no zone's DST
 * change touches; for an hour that does not exist it gives the instant an hour later.
 */
export function zonedTime(date: LocalDate, hour: number, tz: string): number {
  return fromWallClock(Date.UTC(date.y, date.m - 1, date.d, hour), tz);
}
