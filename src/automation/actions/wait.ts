import { Type } from 'typebox';
import { DurationSchema, parseDuration } from '../automation-values.ts';
import { conditionDevices, evaluateAll, isTimeBased } from '../conditions.ts';
import type { ActionKind } from '../automation-plugins.ts';
import type { ActionBase } from '../actions.ts';
import type { Condition } from '../automation-types.ts';
import { ActionBaseFields, dry, StopRun } from './common.ts';

const AnyCondition = Type.Object({ type: Type.String() }, { additionalProperties: true, description: 'A condition of any type' });

export const WaitActionSchema = Type.Object(
  {
    type: Type.Literal('wait'),
    ...ActionBaseFields,
    until: Type.Union([AnyCondition, Type.Array(AnyCondition, { minItems: 1 })]),
    timeout: Type.Optional(DurationSchema),
    onTimeout: Type.Optional(Type.Union([Type.Literal('continue'), Type.Literal('stop')], { description: 'Default continue' })),
  },
  { additionalProperties: false, description: 'Waits until the condition holds (re-evaluated when a device it names reports), at most timeout' },
);

/**
 * Waits until the condition holds (re-evaluated when a device it names reports or changes presence, and every
 * minute when it has time or sun parts), at most `timeout`; then goes on (`onTimeout: "continue"`, the default) or stops the run (`"stop"`).
 * (Written by hand: a recursive type.)
 */
export interface WaitAction extends ActionBase {
  type: 'wait';
  until: Condition | Condition[];
  timeout?: number | string;
  onTimeout?: 'continue' | 'stop';
}

const list = (a: WaitAction) => (Array.isArray(a.until) ? a.until : [a.until]);

export const waitAction: ActionKind<WaitAction> = {
  types: ['wait'],
  schema: WaitActionSchema,
  waits: true,

  async check(a, path, v, depth) {
    v.unknownKeys(a, path, WaitActionSchema);
    if (a.until === undefined) v.bad(`${path}.until`, 'is required: a condition (or a list of them) to wait for');
    else await v.conditions(list(a), `${path}.until`, depth + 1);
    v.duration(a.timeout, `${path}.timeout`);
    if (a.onTimeout !== undefined && a.onTimeout !== 'continue' && a.onTimeout !== 'stop') v.bad(`${path}.onTimeout`, 'must be "continue" or "stop"');
  },

  nested: (a) => ({ conditions: a.until === undefined ? [] : list(a), actions: [] }),

  /**
   * Evaluated now, then again whenever a device the conditions name reports (or changes presence)
   * and when time-based parts may have changed (every minute), at most `timeout`.
   */
  async run(a, path, fx, ctx, t) {
    const conditions = list(a);
    const onTimeout = a.onTimeout ?? 'continue';
    const timeoutMs = a.timeout === undefined ? undefined : parseDuration(a.timeout)!;
    const check = () => evaluateAll(conditions, `${path}.until`, ctx.world);
    let last = await check();
    t.conditions = last.traces;
    if (last.ok) {
      t.result = { waitedMs: 0, outcome: 'held' };
      return;
    }
    if (ctx.dryRun) return dry(t, { wait: 'the condition does not hold now', timeoutMs: timeoutMs ?? null });
    const started = fx.clock.now();
    const outcome = await new Promise<'held' | 'timeout' | 'cancelled'>((resolve) => {
      let settled = false;
      let checking = false;
      let again = false;
      const timers: Array<() => void> = [];
      const finish = (o: 'held' | 'timeout' | 'cancelled') => {
        if (settled) return;
        settled = true;
        unwatch();
        for (const u of timers) u();
        ctx.cancelHooks.delete(onCancel);
        resolve(o);
      };
      const recheck = async () => {
        if (settled) return;
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        try {
          do {
            again = false;
            last = await check();
          } while (again && !last.ok);
        } catch (err) {
          // The store could not be read: the wait goes on (the next report, minute or the timeout decides).
          fx.log?.warn({ err, automationId: ctx.automationId }, 'a wait could not check its condition');
        } finally {
          checking = false;
        }
        if (last.ok) finish('held');
      };
      const onCancel = () => finish('cancelled');
      ctx.cancelHooks.add(onCancel);
      const unwatch = fx.watch(conditionDevices(conditions), () => void recheck());
      let stopTick: (() => void) | undefined;
      if (conditions.some(isTimeBased)) {
        // One minute timer at a time (a wait may last months).
        const tick = () => {
          stopTick = fx.clock.setTimer(() => {
            void recheck();
            if (!settled) tick();
          }, 60_000);
        };
        tick();
        timers.push(() => stopTick?.());
      }
      if (timeoutMs !== undefined) timers.push(fx.clock.setTimer(() => finish('timeout'), timeoutMs));
    });
    t.conditions = last.traces;
    t.result = { waitedMs: fx.clock.now() - started, outcome };
    if (outcome === 'timeout') {
      t.status = onTimeout === 'stop' ? 'timeout' : 'ok';
      if (onTimeout === 'stop') {
        t.error = `the condition did not hold within ${timeoutMs} ms`;
        throw new StopRun('cancelled', `${path}: the wait timed out (onTimeout: stop)`);
      }
    }
  },
};
