import { Type, type Static } from 'typebox';
import { localDate } from '../../core/zoned-time.ts';
import { sunEvent } from '../../timers/timer-spec.ts';
import { OffsetSchema, parseDuration } from '../automation-values.ts';
import type { ConditionKind } from '../automation-plugins.ts';

const SunEventSchema = Type.Union([Type.Literal('sunrise'), Type.Literal('sunset')]);

export const SunConditionSchema = Type.Object(
  {
    type: Type.Literal('sun'),
    after: Type.Optional(SunEventSchema),
    afterOffset: Type.Optional(OffsetSchema),
    before: Type.Optional(SunEventSchema),
    beforeOffset: Type.Optional(OffsetSchema),
  },
  {
    additionalProperties: false,
    description: 'Sun position at the home, today: after and/or before sunrise or sunset (with offsets); after sunset and before sunrise: it is dark',
  },
);

/**
 * Sun position at the home: after sunrise/sunset (+ `afterOffset`) and/or before sunrise/sunset (+ `beforeOffset`), today.
 * When the `after` time comes later in the day than the `before` time (after sunset, before sunrise) either half suffices: it is dark.
 */
export type SunCondition = Static<typeof SunConditionSchema>;

/**
 * Today's (local date of `ms`) sunrise and sunset at a place; null on a polar day or night. The
 * same solar day as sun triggers use (timer-spec's `sunEvent`), so a condition and a trigger agree.
 */
export function sunTimes(ms: number, timezone: string, latitude: number, longitude: number): { sunrise: number | null; sunset: number | null } {
  const date = localDate(ms, timezone);
  return {
    sunrise: sunEvent({ event: 'sunrise', latitude, longitude, timezone }, date),
    sunset: sunEvent({ event: 'sunset', latitude, longitude, timezone }, date),
  };
}

export const sunCondition: ConditionKind<SunCondition> = {
  types: ['sun'],
  schema: SunConditionSchema,
  timeBased: true,

  check(c, path, v) {
    v.unknownKeys(c, path, SunConditionSchema);
    if (c.after === undefined && c.before === undefined) v.bad(path, 'needs after and/or before (sunrise or sunset)');
    if (c.after !== undefined && c.after !== 'sunrise' && c.after !== 'sunset') v.bad(`${path}.after`, 'must be "sunrise" or "sunset"');
    if (c.before !== undefined && c.before !== 'sunrise' && c.before !== 'sunset') v.bad(`${path}.before`, 'must be "sunrise" or "sunset"');
    v.duration(c.afterOffset, `${path}.afterOffset`, true);
    v.duration(c.beforeOffset, `${path}.beforeOffset`, true);
    v.needsLocation(path);
  },

  async evaluate(c, path, w) {
    if (w.latitude == null || w.longitude == null) return { path, type: c.type, result: false, reason: 'the home has no location' };
    const now = w.now();
    const sun = sunTimes(now, w.timezone, w.latitude, w.longitude);
    const at = (ev: 'sunrise' | 'sunset', off: unknown) => {
      const base = sun[ev];
      return base === null ? null : base + (parseDuration(off ?? 0, true) ?? 0);
    };
    const iso = (n: number | null) => (n === null ? null : new Date(n).toISOString());
    const values: Record<string, unknown> = { now: iso(now), sunrise: iso(sun.sunrise), sunset: iso(sun.sunset) };
    const a = c.after ? at(c.after, c.afterOffset) : undefined;
    const b = c.before ? at(c.before, c.beforeOffset) : undefined;
    if (a === null || b === null) return { path, type: c.type, result: false, values, reason: 'no sunrise or sunset today at the home (polar day or night)' };
    if (a !== undefined) values.after = iso(a);
    if (b !== undefined) values.before = iso(b);
    let result: boolean;
    if (a !== undefined && b !== undefined) result = a < b ? now >= a && now < b : now >= a || now < b;
    else if (a !== undefined) result = now >= a;
    else result = now < b!;
    return {
      path,
      type: c.type,
      result,
      values,
      ...(result
        ? {}
        : {
            reason: `not ${[c.after ? `after ${c.after}` : '', c.before ? `before ${c.before}` : ''].filter(Boolean).join(a !== undefined && b !== undefined && a >= b ? ' or ' : ' and ')}`,
          }),
    };
  },
};
