import { localDate, zonedFields } from '../core/zoned-time.ts';
import { sunEvent } from '../timers/timer-spec.ts';
import { sameValue } from '../shadow/shadow-state.ts';
import { WEEKDAYS, parseDuration, parseTimeOfDay, type Condition, type ConditionTrace, type Weekday } from './automation-types.ts';

/** What conditions read: the clock, the home's zone and place, devices' reported state and presence. */
export interface World {
  now(): number;
  timezone: string;
  latitude: number | null;
  longitude: number | null;
  reported(deviceId: string): Promise<Record<string, unknown>>;
  online(deviceId: string): Promise<boolean>;
}

/** Local wall-clock time in a zone: seconds since local midnight, weekday, and the date. */
export function localTime(ms: number, timezone: string): { seconds: number; weekday: Weekday; date: string; text: string } {
  const f = zonedFields(ms, timezone);
  const two = (n: number) => String(n).padStart(2, '0');
  return { seconds: f.h * 3600 + f.mi * 60 + f.s, weekday: f.weekday, date: `${f.y}-${two(f.m)}-${two(f.d)}`, text: `${two(f.h)}:${two(f.mi)}:${two(f.s)}` };
}

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

const hhmm = (s: number) => `${String(Math.floor(s / 3600)).padStart(2, '0')}:${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}${s % 60 ? `:${String(s % 60).padStart(2, '0')}` : ''}`;

/**
 * Evaluates a list of conditions (all must hold), recording each with its result and the values
 * it compared. Every condition is evaluated, also after one failed, so the trace shows them all.
 * A condition that cannot be evaluated (no location, a store error) is false with its reason.
 */
export async function evaluateAll(list: Condition[], path: string, w: World): Promise<{ ok: boolean; traces: ConditionTrace[] }> {
  const traces: ConditionTrace[] = [];
  let ok = true;
  for (let i = 0; i < list.length; i++) {
    const t = await evaluate(list[i], `${path}[${i}]`, w);
    traces.push(t);
    if (!t.result) ok = false;
  }
  return { ok, traces };
}

export async function evaluate(c: Condition, path: string, w: World): Promise<ConditionTrace> {
  try {
    return await evaluateUnsafe(c, path, w);
  } catch (err) {
    return { path, type: c.type, result: false, reason: `could not be evaluated: ${(err as Error).message}` };
  }
}

async function evaluateUnsafe(c: Condition, path: string, w: World): Promise<ConditionTrace> {
  switch (c.type) {
    case 'property': {
      const reported = await w.reported(c.device);
      const actual = reported[c.property];
      const values: Record<string, unknown> = { device: c.device, property: c.property, actual: actual ?? null };
      const fails: string[] = [];
      if (actual === undefined) fails.push('the device has not reported it');
      else {
        if (c.equals !== undefined) {
          values.equals = c.equals;
          if (!sameValue(actual, c.equals)) fails.push(`${JSON.stringify(actual)} is not ${JSON.stringify(c.equals)}`);
        }
        if (c.notEquals !== undefined) {
          values.notEquals = c.notEquals;
          if (sameValue(actual, c.notEquals)) fails.push(`it is ${JSON.stringify(actual)}`);
        }
        if (c.oneOf !== undefined) {
          values.oneOf = c.oneOf;
          if (!c.oneOf.some((v) => sameValue(v, actual))) fails.push(`${JSON.stringify(actual)} is none of ${JSON.stringify(c.oneOf)}`);
        }
        if (c.above !== undefined) {
          values.above = c.above;
          if (!(typeof actual === 'number' && actual > c.above)) fails.push(`${JSON.stringify(actual)} is not above ${c.above}`);
        }
        if (c.below !== undefined) {
          values.below = c.below;
          if (!(typeof actual === 'number' && actual < c.below)) fails.push(`${JSON.stringify(actual)} is not below ${c.below}`);
        }
      }
      return { path, type: c.type, result: fails.length === 0, values, ...(fails.length ? { reason: fails.join('; ') } : {}) };
    }
    case 'time': {
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
    }
    case 'sun': {
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
      return { path, type: c.type, result, values, ...(result ? {} : { reason: `not ${[c.after ? `after ${c.after}` : '', c.before ? `before ${c.before}` : ''].filter(Boolean).join(a !== undefined && b !== undefined && a >= b ? ' or ' : ' and ')}` }) };
    }
    case 'presence': {
      const want = c.online ?? true;
      const online = await w.online(c.device);
      return { path, type: c.type, result: online === want, values: { device: c.device, online, expected: want }, ...(online === want ? {} : { reason: `the device is ${online ? 'online' : 'offline'}` }) };
    }
    case 'and':
    case 'or':
    case 'not': {
      const children: ConditionTrace[] = [];
      for (let i = 0; i < c.conditions.length; i++) children.push(await evaluate(c.conditions[i], `${path}.conditions[${i}]`, w));
      const trues = children.filter((x) => x.result).length;
      const result = c.type === 'and' ? trues === children.length : c.type === 'or' ? trues > 0 : trues === 0;
      const reason = result ? undefined : c.type === 'and' ? `${children.length - trues} of ${children.length} do not hold` : c.type === 'or' ? 'none of them holds' : `${trues} of them ${trues === 1 ? 'holds' : 'hold'}`;
      return { path, type: c.type, result, children, ...(reason ? { reason } : {}) };
    }
  }
}

export { WEEKDAYS };
