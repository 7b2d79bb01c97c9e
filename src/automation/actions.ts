import type { Logger } from '../core/logger.ts';
import type { Clock } from '../core/clock.ts';
import { isHearthError } from '../core/errors.ts';
import { conditionDevices, type World } from './conditions.ts';
import { actionKinds } from './actions/index.ts';
import { errorText, StopRun } from './actions/common.ts';
import type { Action, ActionTrace, Condition, TriggerTrace } from './automation-types.ts';

export { StopRun };

/** Fields every action has. */
export interface ActionBase {
  /** Shown in the trace. */
  alias?: string;
  /** A failure is recorded and the run goes on (default: the run stops, status `failed`). */
  continueOnError?: boolean;
}

/** The slice of the scene service automations use (src/scenes/scene-service.ts). */
export interface SceneRunner {
  activateAs(
    source: string,
    homeId: string,
    sceneId: string,
  ): Promise<{ id: string; ok: boolean; results: Array<{ device: string; ok: boolean; status: string; error?: string; ms: number }> }>;
}

/** The slice of the notification service automations use (src/notify/notify-service.ts). */
export interface Notifier {
  send(req: {
    homeId: string;
    kind: string;
    severity: 'info' | 'warning' | 'alarm';
    title: string;
    body: string;
    users?: string[];
    data?: Record<string, unknown>;
    dedupeKey?: string;
    source?: string;
  }): Promise<{ id: string; results: Array<{ userId: string | null; channel: string; status: string; reason?: string }> }>;
}

/** What actions do in the world. All of it is someone else's service; tests may pass fakes. */
export interface ActionEffects {
  clock: Clock;
  log?: Pick<Logger, 'warn'>;
  command(
    deviceId: string,
    input: { action: string; params?: Record<string, unknown>; timeoutMs?: number },
    source: string,
  ): Promise<{ id: string; ok: boolean; result?: Record<string, unknown>; error?: string; latencyMs: number }>;
  setDesired(deviceId: string, values: Record<string, unknown>): Promise<unknown>;
  /** The devices of a group of the home (undefined when it is gone). */
  groupDevices(homeId: string, groupId: string): Promise<string[] | undefined>;
  scenes?: SceneRunner;
  notify?: Notifier;
  /** POSTs JSON (through the outbound policy); throws on failure. */
  postJson(url: string, body: unknown, headers: Record<string, string>): Promise<{ status: number }>;
  /** Enables or disables another automation of the home (by the automation, not a person). */
  setEnabled(homeId: string, automationId: string, enabled: boolean, by: string): Promise<void>;
  /**
   * Calls `onChange` whenever one of `devices` reports or changes presence, until the undo is
   * called: a wait re-evaluates its condition then instead of polling.
   */
  watch(devices: Set<string>, onChange: () => void): () => void;
}

/** One run's state while its actions execute. */
export interface RunContext {
  automationId: string;
  automationName: string;
  homeId: string;
  runId: string;
  trigger: TriggerTrace;
  dryRun: boolean;
  world: World;
  /** Set when the run must end (restart, disable, delete); pending waits end at once. */
  cancelled: string | undefined;
  cancelHooks: Set<() => void>;
}

export function cancelRun(ctx: RunContext, reason: string): void {
  if (ctx.cancelled) return;
  ctx.cancelled = reason;
  for (const h of [...ctx.cancelHooks]) h();
  ctx.cancelHooks.clear();
}

/**
 * Runs a list of actions in order, appending one trace per action. A failed action ends the list
 * (StopRun 'failed') unless it has `continueOnError`; a cancelled run ends at the next action.
 */
export async function runActions(list: Action[], path: string, fx: ActionEffects, ctx: RunContext, out: ActionTrace[]): Promise<void> {
  for (let i = 0; i < list.length; i++) {
    const a = list[i];
    const p = `${path}[${i}]`;
    if (ctx.cancelled) {
      out.push({
        path: p,
        type: a.type,
        ...(a.alias ? { alias: a.alias } : {}),
        status: 'cancelled',
        startedAt: new Date(fx.clock.now()).toISOString(),
        ms: 0,
        error: ctx.cancelled,
      });
      throw new StopRun('cancelled', ctx.cancelled);
    }
    const started = fx.clock.now();
    const t: ActionTrace = { path: p, type: a.type, ...(a.alias ? { alias: a.alias } : {}), status: 'ok', startedAt: new Date(started).toISOString(), ms: 0 };
    out.push(t);
    try {
      const kind = actionKinds.of(a.type);
      if (!kind) throw new Error(`unknown action type "${String(a.type)}"`);
      await kind.run(a, p, fx, ctx, t, (branch, at) => runActions(branch, at, fx, ctx, (t.actions ??= [])));
    } catch (err) {
      if (err instanceof StopRun) {
        t.ms = fx.clock.now() - started;
        if (t.status === 'ok') t.status = err.status === 'cancelled' ? 'cancelled' : 'failed';
        throw err;
      }
      t.status = isHearthError(err) && err.code === 'E_COMMAND_TIMEOUT' ? 'timeout' : 'failed';
      t.error = errorText(err);
    }
    t.ms = fx.clock.now() - started;
    if (ctx.cancelled && t.status === 'ok' && actionKinds.of(a.type)?.waits) {
      t.status = 'cancelled';
      t.error = ctx.cancelled;
      throw new StopRun('cancelled', ctx.cancelled);
    }
    if ((t.status === 'failed' || t.status === 'timeout') && !a.continueOnError) throw new StopRun('failed', `${p} (${a.type}) failed: ${t.error}`);
  }
}

/** The devices an automation names anywhere (triggers, conditions, actions), for the index of references. */
export function devicesOf(a: { triggers: Array<{ type: string }>; conditions: Condition[]; actions: Action[] }): Set<string> {
  const out = new Set<string>();
  for (const t of a.triggers) if ('device' in t && typeof t.device === 'string') out.add(t.device);
  conditionDevices(a.conditions, out);
  const act = (x: Action) => {
    if ('device' in x && typeof x.device === 'string') out.add(x.device);
    const nested = actionKinds.of(x.type)?.nested?.(x);
    if (nested) {
      conditionDevices(nested.conditions, out);
      nested.actions.forEach(act);
    }
  };
  a.actions.forEach(act);
  return out;
}
