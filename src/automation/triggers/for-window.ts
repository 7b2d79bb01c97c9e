import { parseDuration } from '../automation-values.ts';
import type { TriggerContext } from '../automation-plugins.ts';

/**
 * A trigger's optional `for`: `fire` fires at once without one; with one, it fires once the state
 * has held that long (with `forMs` in the data), unless `cancel` came first (the state left).
 * A window already running is not restarted.
 */
export function forWindow(
  duration: string | number | undefined,
  ctx: Pick<TriggerContext, 'clock' | 'fire'>,
): { fire(data: Record<string, unknown>): void; cancel(): void } {
  let pending: (() => void) | undefined;
  const cancel = () => {
    pending?.();
    pending = undefined;
  };
  const fire = (data: Record<string, unknown>) => {
    if (duration === undefined) return void ctx.fire(data);
    if (pending) return;
    const ms = parseDuration(duration)!;
    pending = ctx.clock.setTimer(() => {
      pending = undefined;
      void ctx.fire({ ...data, forMs: ms });
    }, ms);
  };
  return { fire, cancel };
}
