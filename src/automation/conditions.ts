import { conditionKinds } from './conditions/index.ts';
import type { Condition, ConditionTrace } from './automation-types.ts';

export { localTime } from './conditions/time.ts';
export { sunTimes } from './conditions/sun.ts';
export { WEEKDAYS } from './automation-values.ts';

/** What conditions read: the clock, the home's zone and place, devices' reported state and presence. */
export interface World {
  now(): number;
  timezone: string;
  latitude: number | null;
  longitude: number | null;
  reported(deviceId: string): Promise<Record<string, unknown>>;
  online(deviceId: string): Promise<boolean>;
}

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

/** One condition, by its kind (conditions/<kind>.ts). */
export async function evaluate(c: Condition, path: string, w: World): Promise<ConditionTrace> {
  try {
    const kind = conditionKinds.of(c.type);
    if (!kind) throw new Error(`unknown condition type "${String(c.type)}"`);
    return await kind.evaluate(c, path, w, (child, p) => evaluate(child, p, w));
  } catch (err) {
    return { path, type: c.type, result: false, reason: `could not be evaluated: ${(err as Error).message}` };
  }
}

/** The conditions nested in one (groups). */
export function childConditions(c: Condition): Condition[] {
  return conditionKinds.of(c.type)?.children?.(c) ?? [];
}

/** Whether a condition depends on the time of day (a wait on it re-evaluates every minute). */
export function isTimeBased(c: Condition): boolean {
  return conditionKinds.of(c.type)?.timeBased === true || childConditions(c).some(isTimeBased);
}

/** Devices a condition list reads (a wait re-evaluates when one of them reports). */
export function conditionDevices(list: Condition[], out = new Set<string>()): Set<string> {
  for (const c of list) {
    if ('device' in c && typeof c.device === 'string') out.add(c.device);
    conditionDevices(childConditions(c), out);
  }
  return out;
}
