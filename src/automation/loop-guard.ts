import type { Clock } from '../core/clock.ts';
import { triggerKinds } from './triggers/index.ts';
import type { TriggerTrace } from './automation-types.ts';

/**
 * The loop guard's rule: a firing is *chained* when what fired it — the device that reported, sent
 * the event or changed presence, or the scene that was activated — was being acted on by an
 * automation of its home (a command, desired state, a group command, a scene activation) or was
 * within {@link LOOP_GRACE_MS} after such an action: an automation's own work caused it. More than
 * {@link LOOP_LIMIT} chained firings of one automation within {@link LOOP_WINDOW_MS} stop it: it is
 * disabled with status `stopped`, its runs are cancelled, a run with status `stopped` says why, the
 * live stream announces it and the home's owner is notified (the engine does that). Firings from
 * people and the outside world (a sensor reporting fast, schedules, webhooks, manual runs) never count.
 */
export const LOOP_LIMIT = 10;
export const LOOP_WINDOW_MS = 10_000;
export const LOOP_GRACE_MS = 1_000;

/** What the guard keeps per automation: when its chained firings happened. */
export interface LoopHistory {
  chained: number[];
}

/** The device, `scene:{id}` or `automation:{id}` whose activity fired a trigger, by its kind (default: `data.device`). */
export function causeOf(trigger: Pick<TriggerTrace, 'type' | 'data'>): string | undefined {
  const kind = triggerKinds.of(trigger.type);
  if (kind?.cause) return kind.cause(trigger.data);
  return typeof trigger.data.device === 'string' ? trigger.data.device : undefined;
}

export class LoopGuard {
  /** Devices (and `scene:{id}`, `automation:{id}`) automations act on: actions under way, and when the last one ended. */
  private readonly touched = new Map<string, { inflight: number; last: number }>();

  constructor(private readonly clock: Clock) {}

  /** Runs an action's effect marking `keys` as acted on meanwhile; `after` names more keys its result touched (a scene's devices). */
  async acting<T>(keys: string[], fn: () => Promise<T>, after?: (r: T) => string[]): Promise<T> {
    for (const k of keys) this.touch(k, +1);
    let extra: string[] = [];
    try {
      const r = await fn();
      extra = after?.(r) ?? [];
      return r;
    } finally {
      for (const k of keys) this.touch(k, -1);
      for (const k of extra) this.touch(k, 0);
    }
  }

  /**
   * Counts a firing: when its cause was being acted on by an automation (or just was), it is
   * chained and recorded in `h`. True when the automation crossed the limit and must stop.
   */
  firing(h: LoopHistory, trigger: Pick<TriggerTrace, 'type' | 'data'>, now: number): boolean {
    const cause = causeOf(trigger);
    const t = cause === undefined ? undefined : this.touched.get(cause);
    const chained = t !== undefined && (t.inflight > 0 || now - t.last <= LOOP_GRACE_MS);
    if (!chained) return false;
    h.chained.push(now);
    while (h.chained.length && h.chained[0] < now - LOOP_WINDOW_MS) h.chained.shift();
    return h.chained.length > LOOP_LIMIT;
  }

  /** Why the guard stopped an automation, in words (its run's reason and the owner's notification); clears the history. */
  stop(h: LoopHistory): string {
    const reason = `loop guard: ${h.chained.length} firings within ${LOOP_WINDOW_MS / 1000} s were caused by automations acting on the device or scene that fired it (limit ${LOOP_LIMIT}); its actions seem to trigger it again. It was disabled; fix it and enable it again.`;
    h.chained = [];
    return reason;
  }

  /** An automation starts (+1), ends (-1) or just did (0) an action on a device or scene. */
  private touch(key: string, delta: number): void {
    const now = this.clock.now();
    let t = this.touched.get(key);
    if (!t) {
      if (this.touched.size > 10_000) for (const [k, v] of this.touched) if (v.inflight === 0 && now - v.last > LOOP_GRACE_MS) this.touched.delete(k);
      this.touched.set(key, (t = { inflight: 0, last: now }));
    }
    t.inflight = Math.max(0, t.inflight + delta);
    t.last = now;
  }
}
