import { Type, type Static } from 'typebox';
import { zonedFields } from '../../core/zoned-time.ts';
import { parseTimeOfDay, WEEKDAYS, type Weekday } from '../automation-values.ts';
import type { ConditionKind } from '../automation-plugins.ts';

const TimeOfDay = Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d(:[0-5]\\d)?$', description: 'Local time "HH:MM" or "HH:MM:SS"' });
const WeekdaySchema = Type.Union(WEEKDAYS.map((d) => Type.Literal(d))) as unknown as ReturnType<typeof Type.Unsafe<Weekday>>;

export const TimeConditionSchema = Type.Object(
  {
    type: Type.Literal('time'),
    after: Type.Optional(TimeOfDay),
    before: Type.Optional(TimeOfDay),
    weekdays: Type.Optional(Type.Array(WeekdaySchema, { minItems: 1 })),
  },
  { additionalProperties: false, description: "Local time in the home's zone: after ≤ now < before (a window may cross midnight), on weekdays" },
);

/** Local time in the home's zone: `after` ≤ now < `before` ("HH:MM[:SS]"; a window may cross midnight), on `weekdays`. */
export type TimeCondition = Static<typeof TimeConditionSchema>;

/** Local wall-clock time in a zone: seconds since local midnight, weekday, and the date. */
export function localTime(ms: number, timezone: string): { seconds: number; weekday: Weekday; date: string; text: string } {
  const f = zonedFields(ms, timezone);
  const two = (n: number) => String(n).padStart(2, '0');
  return { seconds: f.h * 3600 + f.mi * 60 + f.s, weekday: f.weekday, date: `${f.y}-${two(f.m)}-${two(f.d)}`, text: `${two(f.h)}:${two(f.mi)}:${two(f.s)}` };
}

const hhmm = (s: number) =>
  `${String(Math.floor(s / 3600)).padStart(2, '0')}:${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}${s % 60 ? `:${String(s % 60).padStart(2, '0')}` : ''}`;

export const timeCondition: ConditionKind<TimeCondition> = {
  types: ['time'],
  schema: TimeConditionSchema,
  timeBased: true,

  check(c, path, v) {
    v.unknownKeys(c, path, TimeConditionSchema);
    if (c.after === undefined && c.before === undefined && c.weekdays === undefined) v.bad(path, 'needs after, before or weekdays');
    if (c.after !== undefined && parseTimeOfDay(c.after) === undefined) v.bad(`${path}.after`, 'must be a local time "HH:MM" or "HH:MM:SS"');
    if (c.before !== undefined && parseTimeOfDay(c.before) === undefined) v.bad(`${path}.before`, 'must be a local time "HH:MM" or "HH:MM:SS"');
    if (c.weekdays !== undefined) {
      if (!Array.isArray(c.weekdays) || c.weekdays.length === 0) v.bad(`${path}.weekdays`, 'must be a non-empty list like ["mon", "tue"]');
      else
        c.weekdays.forEach((d, i) => {
          if (!WEEKDAYS.includes(d)) v.bad(`${path}.weekdays[${i}]`, `must be one of ${WEEKDAYS.join(', ')}`);
        });
    }
  },

  async evaluate(c, path, w) {
    const now = localTime(w.now(), w.timezone);
    const values: Record<string, unknown> = { localTime: now.text, weekday: now.weekday, timezone: w.timezone };
    const fails: string[] = [];
    const after = c.after !== undefined ? parseTimeOfDay(c.after)! : undefined;
    const before = c.before !== undefined ? parseTimeOfDay(c.before)! : undefined;
    if (after !== undefined) values.after = c.after;
    if (before !== undefined) values.before = c.before;
    let inWindow = true;
    if (after !== undefined && before !== undefined) {
      // A window whose end comes before its start crosses midnight: 22:00–06:00.
      inWindow = after <= before ? now.seconds >= after && now.seconds < before : now.seconds >= after || now.seconds < before;
    } else if (after !== undefined) inWindow = now.seconds >= after;
    else if (before !== undefined) inWindow = now.seconds < before;
    if (!inWindow) fails.push(`${now.text} is outside ${after !== undefined ? hhmm(after) : '00:00'}–${before !== undefined ? hhmm(before) : '24:00'}`);
    if (c.weekdays) {
      values.weekdays = c.weekdays;
      if (!c.weekdays.includes(now.weekday)) fails.push(`${now.weekday} is not one of ${c.weekdays.join(', ')}`);
    }
    return { path, type: c.type, result: fails.length === 0, values, ...(fails.length ? { reason: fails.join('; ') } : {}) };
  },
};
