import { Type } from 'typebox';

/**
 * Values that parts of automations share: durations, times of day, weekdays. Their schemas (for
 * the parts' TypeBox schemas, hence the OpenAPI document) and their parsers.
 */

/** A duration: seconds as a number, or text: `"90s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2d"`, `"00:05:00"`. Offsets may start with `-`. */
export type Duration = number | string;
export const DurationSchema = Type.Union([Type.Number(), Type.String({ maxLength: 32 })], {
  description: 'Seconds, or "500ms", "90s", "5m", "1h30m", "2d", "00:05:00"',
});
/** A duration that may be negative: an offset before a sun event. */
export const OffsetSchema = Type.Union([Type.Number(), Type.String({ maxLength: 32 })], { description: 'Seconds, or "-30m", "45m", "-1h"' });

export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun';
export const WEEKDAYS: readonly Weekday[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export type RunMode = 'single' | 'restart' | 'queued' | 'parallel';
export const RUN_MODES: readonly RunMode[] = ['single', 'restart', 'queued', 'parallel'];

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of a duration, or undefined when it cannot be read. Negative only with `signed`. */
export function parseDuration(v: unknown, signed = false): number | undefined {
  let ms: number | undefined;
  if (typeof v === 'number' && Number.isFinite(v)) ms = Math.round(v * 1000);
  else if (typeof v === 'string') {
    const s = v.trim();
    const neg = s.startsWith('-');
    const body = s.replace(/^[-+]/, '');
    const clock = /^(\d{1,3}):([0-5]\d)(?::([0-5]\d))?$/.exec(body);
    if (clock) ms = clock[3] !== undefined ? (+clock[1] * 3600 + +clock[2] * 60 + +clock[3]) * 1000 : (+clock[1] * 3600 + +clock[2] * 60) * 1000;
    else if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(body)) {
      ms = 0;
      for (const m of body.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNITS[m[2]];
      ms = Math.round(ms);
    }
    if (ms !== undefined && neg) ms = -ms;
  }
  if (ms === undefined || (!signed && ms < 0) || Math.abs(ms) > 366 * UNITS.d) return undefined;
  return ms;
}

/** Seconds since local midnight of "HH:MM" or "HH:MM:SS", or undefined. */
export function parseTimeOfDay(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/.exec(v.trim());
  if (!m) return undefined;
  return +m[1] * 3600 + +m[2] * 60 + (m[3] ? +m[3] : 0);
}
