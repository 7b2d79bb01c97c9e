import type { Logger } from '../core/logger.ts';
import type { Clock } from '../core/clock.ts';
import { isHearthError } from '../core/errors.ts';
import { compileTemplate } from '../gateway/template.ts';
import { signBody } from '../gateway/delivery-service.ts';
import { evaluateAll, type World } from './conditions.ts';
import { conditionDevices, parseDuration, type Action, type ActionTrace, type Condition, type ConditionTrace, type TriggerTrace } from './automation-types.ts';

/** The slice of the scene service automations use (src/scenes/scene-service.ts). */
export interface SceneRunner {
  activateAs(source: string, homeId: string, sceneId: string): Promise<{ id: string; ok: boolean; results: Array<{ device: string; ok: boolean; status: string; error?: string; ms: number }> }>;
}

/** The slice of the notification service automations use (src/notify/notify-service.ts). */
export interface Notifier {
  send(req: {
    homeId: string; kind: string; severity: 'info' | 'warning' | 'alarm'; title: string; body: string; users?: string[];
    data?: Record<string, unknown>; dedupeKey?: string; source?: string;
  }): Promise<{ id: string; results: Array<{ userId: string | null; channel: string; status: string; reason?: string }> }>;
}

/** What actions do in the world. All of it is someone else's service; tests may pass fakes. */
export interface ActionEffects {
  clock: Clock;
  log?: Pick<Logger, 'warn'>;
  command(deviceId: string, input: { action: string; params?: Record<string, unknown>; timeoutMs?: number }, source: string): Promise<{ id: string; ok: boolean; result?: Record<string, unknown>; error?: string; latencyMs: number }>;
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

/** Thrown to end a run early: `status` becomes the run's status. */
export class StopRun extends Error {
  constructor(readonly status: 'failed' | 'cancelled', message: string) {
    super(message);
  }
}

export function cancelRun(ctx: RunContext, reason: string): void {
  if (ctx.cancelled) return;
  ctx.cancelled = reason;
  for (const h of [...ctx.cancelHooks]) h();
  ctx.cancelHooks.clear();
}

/** Sleeps on the run's clock; resolves false when the run was cancelled meanwhile. */
function sleep(fx: ActionEffects, ctx: RunContext, ms: number): Promise<boolean> {
  if (ctx.cancelled) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      ctx.cancelHooks.delete(onCancel);
      undo();
      resolve(v);
    };
    const onCancel = () => done(false);
    const undo = fx.clock.setTimer(() => done(true), ms);
    ctx.cancelHooks.add(onCancel);
  });
}

const errorText = (err: unknown) => (isHearthError(err) ? `${err.code}: ${err.message}` : (err as Error)?.message ?? String(err));

/** The values `{{…}}` placeholders of notify and webhook actions can use. */
function templateEnv(ctx: RunContext): object {
  return { trigger: { type: ctx.trigger.type, ...ctx.trigger.data, at: ctx.trigger.at, description: ctx.trigger.description }, automation: { id: ctx.automationId, name: ctx.automationName }, home: { id: ctx.homeId }, run: { id: ctx.runId } };
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
      out.push({ path: p, type: a.type, ...(a.alias ? { alias: a.alias } : {}), status: 'cancelled', startedAt: new Date(fx.clock.now()).toISOString(), ms: 0, error: ctx.cancelled });
      throw new StopRun('cancelled', ctx.cancelled);
    }
    const started = fx.clock.now();
    const t: ActionTrace = { path: p, type: a.type, ...(a.alias ? { alias: a.alias } : {}), status: 'ok', startedAt: new Date(started).toISOString(), ms: 0 };
    out.push(t);
    try {
      await runOne(a, p, fx, ctx, t);
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
    if (ctx.cancelled && t.status === 'ok' && (a.type === 'delay' || a.type === 'wait')) {
      t.status = 'cancelled';
      t.error = ctx.cancelled;
      throw new StopRun('cancelled', ctx.cancelled);
    }
    if ((t.status === 'failed' || t.status === 'timeout') && !a.continueOnError) throw new StopRun('failed', `${p} (${a.type}) failed: ${t.error}`);
  }
}

async function runOne(a: Action, path: string, fx: ActionEffects, ctx: RunContext, t: ActionTrace): Promise<void> {
  const source = `automation:${ctx.automationId}`;
  switch (a.type) {
    case 'command': {
      if (ctx.dryRun) return dry(t, { device: a.device, action: a.action, params: a.params ?? {} });
      const out = await fx.command(a.device, { action: a.action, ...(a.params ? { params: a.params } : {}), ...(a.timeoutMs ? { timeoutMs: a.timeoutMs } : {}) }, source);
      t.result = { device: a.device, commandId: out.id, ok: out.ok, latencyMs: out.latencyMs, ...(out.result !== undefined ? { result: out.result } : {}) };
      if (!out.ok) {
        t.status = 'failed';
        t.error = `the device answered: ${out.error ?? 'not ok'}`;
      }
      return;
    }
    case 'set':
      if (ctx.dryRun) return dry(t, { device: a.device, properties: a.properties });
      await fx.setDesired(a.device, a.properties);
      t.result = { device: a.device, properties: a.properties };
      return;
    case 'scene': {
      if (!fx.scenes) throw new Error('scenes are not available');
      if (ctx.dryRun) return dry(t, { scene: a.scene });
      const act = await fx.scenes.activateAs(source, ctx.homeId, a.scene);
      t.result = { scene: a.scene, activationId: act.id, ok: act.ok, results: act.results };
      if (!act.ok) {
        t.status = 'failed';
        t.error = `${act.results.filter((r) => !r.ok).length} of ${act.results.length} devices failed`;
      }
      return;
    }
    case 'group': {
      const ids = await fx.groupDevices(ctx.homeId, a.group);
      if (!ids) throw new Error(`group "${a.group}" is no longer in this home`);
      if (ctx.dryRun) return dry(t, { group: a.group, devices: ids, action: a.action, params: a.params ?? {} });
      const results = await Promise.all(ids.map(async (device) => {
        try {
          const o = await fx.command(device, { action: a.action, ...(a.params ? { params: a.params } : {}) }, source);
          return { device, ok: o.ok, commandId: o.id, ...(o.error ? { error: o.error } : {}) };
        } catch (err) {
          return { device, ok: false, error: errorText(err) };
        }
      }));
      t.result = { group: a.group, results };
      const failed = results.filter((r) => !r.ok).length;
      if (failed) {
        t.status = 'failed';
        t.error = `${failed} of ${results.length} devices failed`;
      }
      return;
    }
    case 'notify': {
      if (!fx.notify) throw new Error('notifications are not available');
      const env = templateEnv(ctx);
      const title = String(compileTemplate(a.title)(env) ?? '');
      const body = String(compileTemplate(a.message)(env) ?? '');
      if (ctx.dryRun) return dry(t, { title, message: body, severity: a.severity ?? 'info', ...(a.users ? { users: a.users } : {}) });
      const sent = await fx.notify.send({
        homeId: ctx.homeId, kind: a.kind ?? 'automation', severity: a.severity ?? 'info', title, body, ...(a.users ? { users: a.users } : {}),
        source, data: { automationId: ctx.automationId, runId: ctx.runId },
      });
      t.result = { notificationId: sent.id, title, results: sent.results };
      return;
    }
    case 'webhook': {
      const env = templateEnv(ctx);
      const body = a.body === undefined ? { automation: { id: ctx.automationId, name: ctx.automationName }, homeId: ctx.homeId, runId: ctx.runId, trigger: ctx.trigger } : compileTemplate(a.body)(env);
      if (ctx.dryRun) return dry(t, { url: redact(a.url), body });
      const text = JSON.stringify(body);
      const headers: Record<string, string> = { 'x-hearth-automation': ctx.automationId, 'x-hearth-run': ctx.runId };
      if (a.secret) headers['x-hearth-signature'] = signBody(a.secret, text);
      const r = await fx.postJson(a.url, body, headers);
      t.result = { url: redact(a.url), status: r.status };
      return;
    }
    case 'delay': {
      const ms = parseDuration(a.duration)!;
      if (ctx.dryRun) return dry(t, { durationMs: ms });
      t.result = { durationMs: ms };
      if (ms > 0) await sleep(fx, ctx, ms);
      return;
    }
    case 'wait':
      return wait(a.until, a.timeout, a.onTimeout ?? 'continue', path, fx, ctx, t);
    case 'choose': {
      const tried: ConditionTrace[] = [];
      let chosen: number | 'default' | null = null;
      for (let i = 0; i < a.choices.length; i++) {
        const r = await evaluateAll(a.choices[i].conditions, `${path}.choices[${i}].conditions`, ctx.world);
        tried.push(...r.traces);
        if (r.ok) {
          chosen = i;
          break;
        }
      }
      if (chosen === null && a.default) chosen = 'default';
      t.conditions = tried;
      t.chosen = chosen;
      t.actions = [];
      if (chosen === null) return;
      const branch = chosen === 'default' ? a.default! : a.choices[chosen].actions;
      await runActions(branch, chosen === 'default' ? `${path}.default` : `${path}.choices[${chosen}].actions`, fx, ctx, t.actions);
      return;
    }
    case 'enable':
    case 'disable':
      if (ctx.dryRun) return dry(t, { automation: a.automation, enabled: a.type === 'enable' });
      await fx.setEnabled(ctx.homeId, a.automation, a.type === 'enable', source);
      t.result = { automation: a.automation, enabled: a.type === 'enable' };
      return;
  }
}

function dry(t: ActionTrace, wouldDo: Record<string, unknown>): void {
  t.status = 'dry-run';
  t.result = { wouldDo };
}

/** Webhook URLs often carry their secret: traces show the origin and path only. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

/**
 * Waits until the conditions hold: evaluated now, then again whenever a device they name reports
 * (or changes presence) and when time-based parts may have changed (every minute), at most `timeout`.
 */
async function wait(until: Condition | Condition[], timeout: unknown, onTimeout: 'continue' | 'stop', path: string, fx: ActionEffects, ctx: RunContext, t: ActionTrace): Promise<void> {
  const list = Array.isArray(until) ? until : [until];
  const timeoutMs = timeout === undefined ? undefined : parseDuration(timeout)!;
  const check = () => evaluateAll(list, `${path}.until`, ctx.world);
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
    const unwatch = fx.watch(conditionDevices(list), () => void recheck());
    let stopTick: (() => void) | undefined;
    if (list.some(hasTimePart)) {
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
}

function hasTimePart(c: Condition): boolean {
  if (c.type === 'time' || c.type === 'sun') return true;
  if (c.type === 'and' || c.type === 'or' || c.type === 'not') return c.conditions.some(hasTimePart);
  return false;
}
