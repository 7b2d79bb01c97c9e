import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import { askShardOwner, serveShard } from '../core/cluster/shard-rpc.ts';
import { subjects } from '../core/bus/subjects.ts';
import { shardOf, type ShardListener } from '../core/cluster/shards.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { AutomationRpc as Rpc, AutomationRpcReply as RpcReply, DeviceEvent, PresenceEvent, ReportedEvent } from '../core/bus/events.ts';
import { evaluateAll, type World } from './conditions.ts';
import { cancelRun, devicesOf, runActions, StopRun, type ActionEffects, type RunContext } from './actions.ts';
import { toAutomation, type AutomationStore } from './automation-store.ts';
import type { Automation, Run, RunStatus, Trace, Trigger, TriggerTrace, TriggerType } from './automation-types.ts';
import type { TriggerChannels, TriggerHub } from './automation-plugins.ts';
import { triggerKinds } from './triggers/index.ts';
import { LoopGuard, type LoopHistory } from './loop-guard.ts';
import { RunQueue } from './run-queue.ts';

export { LOOP_GRACE_MS, LOOP_LIMIT, LOOP_WINDOW_MS } from './loop-guard.ts';

/** What the engine needs to know about a home (cached for a short while). */
export interface HomeInfo {
  timezone: string;
  latitude: number | null;
  longitude: number | null;
  ownerId: string;
}

/** The slice of the TimerService (src/timers/timer-service.ts) the engine listens to. */
export interface TimerFirings {
  onFire(
    owner: string,
    fire: (f: { key: string; payload: unknown; scheduledAt: number; firedAt: number; lateMs: number }) => Promise<void> | void,
    skipped?: (s: { key: string; payload: unknown; scheduledAt: number; reason: string }) => void,
  ): () => void;
}

/** Ways the engine changes an automation's stored state (the AutomationService does it, so every node hears). */
export interface AutomationControl {
  setEnabledBySystem(
    id: string,
    enabled: boolean,
    by: string,
    status?: { status: 'ok' | 'stopped' | 'unavailable'; reason: string | null },
  ): Promise<Automation | undefined>;
  /** Re-checks an automation against its home; the problems, or [] when it is fine. */
  problems(a: Automation): Promise<Array<{ field: string; message: string }>>;
}

export interface AutomationEngineDeps {
  bus: Bus;
  log: Logger;
  clock: Clock;
  store: AutomationStore;
  shards: { owns(shard: number): boolean };
  shardCount: number;
  effects: Omit<ActionEffects, 'watch' | 'setEnabled' | 'clock'>;
  control: AutomationControl;
  home(homeId: string): Promise<HomeInfo | undefined>;
  reported(deviceId: string): Promise<Record<string, unknown>>;
  online(deviceId: string): Promise<boolean>;
  stream?: { publish(type: 'automation', deviceId: string | null, homeId: string | null, data: Record<string, unknown>, at?: number): void };
  timers?: TimerFirings;
}

interface ActiveRun {
  ctx: RunContext;
  done: Promise<void>;
}

interface QueuedRun {
  trigger: TriggerTrace;
  conditions: Trace['conditions'];
  runId: string;
}

interface Loaded extends LoopHistory {
  a: Automation;
  /** The stored row as JSON: a reload that finds it unchanged does nothing. */
  version: string;
  /** Every device it names (triggers, conditions, actions): a device that moves re-checks it. */
  devices: Set<string>;
  /** What stops each attached trigger. */
  detach: Array<() => void>;
  runs: RunQueue<ActiveRun, QueuedRun>;
  unindexed: boolean;
}

const HOME_TTL_MS = 30_000;

/**
 * Runs the automations of the homes whose shard this node owns. Triggers are indexed by device
 * (and by scene, webhook, timer key), so a device message costs a map lookup plus the triggers on
 * that device, whatever the number of automations elsewhere. Each firing goes through the loop
 * guard, the cool-down, the conditions and the run mode, and every outcome is recorded as a run
 * with its trace.
 */
export class AutomationEngine implements ShardListener {
  readonly name = 'automations';
  private readonly loaded = new Map<string, Loaded>();
  /** Attached triggers by channel and key (device, scene, timer key): a message costs a map lookup. */
  private readonly listeners = new Map<keyof TriggerChannels, Map<string, Set<(m: never) => unknown>>>();
  private readonly hub: TriggerHub = { on: (channel, key, fn) => this.listen(channel, key, fn) };
  /** Waits watching devices: deviceId → callbacks. */
  private readonly watchers = new Map<string, Set<() => void>>();
  private readonly homes = new Map<string, { info: HomeInfo | undefined; at: number }>();
  private readonly rpc = new Map<number, Unsubscribe>();
  private readonly unsubs: Unsubscribe[] = [];
  private readonly fx: ActionEffects;
  private readonly guard: LoopGuard;
  private started = false;
  private stopped = false;

  constructor(private readonly deps: AutomationEngineDeps) {
    this.guard = new LoopGuard(deps.clock);
    const touching = this.guard.acting.bind(this.guard);
    const { scenes } = deps.effects;
    this.fx = {
      ...deps.effects,
      log: deps.log,
      command: (device, input, source) => touching([device], () => deps.effects.command(device, input, source)),
      setDesired: (device, values) => touching([device], () => deps.effects.setDesired(device, values)),
      // A webhook action may call an incoming webhook of this platform (its own, even): marked as a cause.
      postJson: (url, body, headers) => touching([`automation:${headers['x-hearth-automation']}`], () => deps.effects.postJson(url, body, headers)),
      ...(scenes
        ? {
            scenes: {
              activateAs: (source: string, homeId: string, sceneId: string) =>
                touching(
                  [`scene:${sceneId}`],
                  () => scenes.activateAs(source, homeId, sceneId),
                  (act) => act.results.map((r) => r.device),
                ),
            },
          }
        : {}),
      clock: deps.clock,
      watch: (devices, fn) => this.watch(devices, fn),
      setEnabled: async (homeId, id, enabled, by) => {
        const target = await deps.store.get(id);
        if (!target || target.homeId !== homeId) throw new HearthError('E_AUTOMATION_NOT_FOUND', `automation "${id}" is not in this home`);
        await deps.control.setEnabledBySystem(id, enabled, by, enabled ? { status: 'ok', reason: null } : undefined);
      },
    };
  }

  /** Subscribes to device reports, events, presence and scene activations, and timer firings. */
  start(): void {
    this.started = true;
    const { bus } = this.deps;
    this.unsubs.push(
      bus.subscribe(subjects.reported('*'), (m) => this.onReported(m.data), { name: 'automations.reported' }),
      bus.subscribe(subjects.event('*'), (m) => this.onEvent(m.data), { name: 'automations.event' }),
      bus.subscribe(subjects.presence('*'), (m) => this.onPresence(m.data), { name: 'automations.presence' }),
      bus.subscribe(subjects.sceneActivated('*'), (m) => void this.emit('scene', m.data.sceneId, m.data), { name: 'automations.scene' }),
      // A device that changes home may break automations naming it (see HomeService.onPlacementChange).
      bus.subscribe('cluster.placement', (m) => void this.recheck(m.data.deviceId), { name: 'automations.placement' }),
    );
    if (this.deps.timers)
      this.unsubs.push(
        this.deps.timers.onFire(
          'automation',
          (f) => this.onTimer(f.key, { scheduledAt: f.scheduledAt, lateMs: f.lateMs }),
          (s) => this.onTimerSkipped(s.key, s.scheduledAt),
        ),
      );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const u of this.unsubs.splice(0)) u();
    for (const shard of [...this.rpc.keys()]) await this.release(shard);
    for (const c of [...this.loaded.values()]) this.unload(c, 'the node is stopping');
    await this.settle();
  }

  /** Resolves when every active run has ended (tests, shutdown). */
  async settle(): Promise<void> {
    for (;;) {
      const runs = [...this.loaded.values()].flatMap((c) => [...c.runs.active]);
      if (runs.length === 0) return;
      await Promise.all(runs.map((r) => r.done));
    }
  }

  get loadedCount(): number {
    return this.loaded.size;
  }

  // ------------------------------------------------------------------ shards

  async acquire(shard: number): Promise<void> {
    if (this.rpc.has(shard)) return;
    this.rpc.set(
      shard,
      this.deps.bus.subscribe(subjects.automationRpc(shard), (m) => this.serve(shard, m.data).then((r) => m.respond?.(r)), { name: 'automations.rpc' }),
    );
    for (const row of await this.deps.store.rowsOfShard(shard)) {
      const version = JSON.stringify(row);
      const cur = this.loaded.get(row.id);
      if (cur?.version === version) continue;
      if (cur) this.unload(cur, 'the automation was changed');
      this.load(toAutomation(row), version);
    }
  }

  async release(shard: number): Promise<void> {
    this.rpc.get(shard)?.();
    this.rpc.delete(shard);
    for (const c of [...this.loaded.values()]) if (this.shardOf(c.a.homeId) === shard) this.unload(c, 'the home moved to another node');
    for (const homeId of [...this.homes.keys()]) if (this.shardOf(homeId) === shard) this.homes.delete(homeId);
  }

  private shardOf(homeId: string): number {
    return shardOf(homeId, this.deps.shardCount);
  }

  private owns(homeId: string): boolean {
    return this.deps.shards.owns(this.shardOf(homeId));
  }

  /** The automation changed in the store (any node): load it anew here if this node runs its home. */
  async reload(id: string): Promise<void> {
    // Nodes that run no automations (not workers) never start the engine: nothing to reload.
    if (!this.started || this.stopped) return;
    let row: Awaited<ReturnType<AutomationStore['row']>>;
    try {
      row = await this.deps.store.row(id);
    } catch (err) {
      // A broadcast's reload: the store is down for a moment. The next change or shard move loads it.
      this.deps.log.error({ err, automationId: id }, 'automation could not be reloaded');
      return;
    }
    if (this.stopped) return;
    const cur = this.loaded.get(id);
    // Reloads may overtake each other: never go back to an older version.
    if (row && cur && Number(row.updated_at) < Date.parse(cur.a.updatedAt)) return;
    if (!row || !this.owns(row.home_id)) {
      if (cur) this.unload(cur, row ? 'the home moved to another node' : 'the automation was deleted');
      return;
    }
    const version = JSON.stringify(row);
    if (cur?.version === version) return;
    const a = toAutomation(row);
    if (cur) {
      const why = !a.enabled ? 'the automation was disabled' : a.status !== 'ok' ? `the automation is ${a.status}` : 'the automation was changed';
      this.unload(cur, why);
    }
    this.homes.delete(a.homeId);
    this.load(a, version);
  }

  private load(a: Automation, version: string): void {
    const runs = new RunQueue<ActiveRun, QueuedRun>({ mode: a.mode, max: a.max, cooldownMs: a.cooldownMs, cancel: (r, why) => cancelRun(r.ctx, why) });
    const c: Loaded = { a, version, devices: devicesOf(a), detach: [], runs, chained: [], unindexed: false };
    this.loaded.set(a.id, c);
    if (!a.enabled || a.status !== 'ok') return;
    a.triggers.forEach((t, index) => {
      const attach = triggerKinds.of(t.type)?.attach;
      if (!attach) return;
      c.detach.push(
        attach(t, {
          hub: this.hub,
          clock: this.deps.clock,
          log: this.deps.log,
          automationId: a.id,
          homeId: a.homeId,
          timerKey: `automation:${a.id}:${index}`,
          fire: (data) => this.fire(c, index, t, data),
          reported: this.deps.reported,
          online: this.deps.online,
        }),
      );
    });
  }

  private unload(c: Loaded, why: string): void {
    if (this.loaded.get(c.a.id) === c) this.loaded.delete(c.a.id);
    c.unindexed = true;
    for (const detach of c.detach.splice(0)) detach();
    const now = this.deps.clock.now();
    for (const q of c.runs.cancelAll(why)) this.record(c, q.runId, 'cancelled', why, now, { trigger: q.trigger, conditions: q.conditions, actions: [] });
  }

  /** Adds a trigger's listener to the index; returns what removes it. */
  private listen<C extends keyof TriggerChannels>(channel: C, key: string, fn: (m: TriggerChannels[C]) => unknown): () => void {
    let byKey = this.listeners.get(channel);
    if (!byKey) this.listeners.set(channel, (byKey = new Map()));
    let set = byKey.get(key);
    if (!set) byKey.set(key, (set = new Set()));
    set.add(fn as (m: never) => unknown);
    return () => {
      set.delete(fn as (m: never) => unknown);
      if (set.size === 0 && byKey.get(key) === set) byKey.delete(key);
    };
  }

  /** Hands a message to the triggers listening on its channel and key, in the order they attached. */
  private emit<C extends keyof TriggerChannels>(channel: C, key: string, m: TriggerChannels[C]): Promise<unknown> {
    const set = this.listeners.get(channel)?.get(key);
    if (!set) return Promise.resolve();
    return Promise.all([...set].map((fn) => (fn as (m: TriggerChannels[C]) => unknown)(m)));
  }

  /** Re-checks automations naming a device that moved (or all, when which one is not known). */
  private async recheck(deviceId: string | undefined): Promise<void> {
    for (const c of [...this.loaded.values()]) {
      if (deviceId !== undefined && !c.devices.has(deviceId)) continue;
      try {
        const problems = await this.deps.control.problems(c.a);
        if (problems.length && c.a.status === 'ok') {
          const reason = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
          this.deps.log.info({ automationId: c.a.id, reason }, 'automation unavailable');
          await this.deps.control.setEnabledBySystem(c.a.id, c.a.enabled, 'system', { status: 'unavailable', reason });
        } else if (!problems.length && c.a.status === 'unavailable') {
          await this.deps.control.setEnabledBySystem(c.a.id, c.a.enabled, 'system', { status: 'ok', reason: null });
        }
      } catch (err) {
        this.deps.log.warn({ err, automationId: c.a.id }, 'automation re-check failed');
      }
    }
  }

  // ------------------------------------------------------------------ triggers

  private onReported(ev: ReportedEvent): void {
    this.notifyWatchers(ev.deviceId);
    void this.emit('reported', ev.deviceId, ev);
  }

  private onEvent(ev: DeviceEvent): void {
    void this.emit('event', ev.deviceId, ev);
  }

  private onPresence(ev: PresenceEvent): void {
    this.notifyWatchers(ev.deviceId);
    void this.emit('presence', ev.deviceId, ev);
  }

  /** The automation of an `automation:{id}:{triggerIndex}` timer (the key says it all; the timer has no payload), loaded if need be. */
  private async timerTarget(key: string): Promise<{ c: Loaded; index: number } | undefined> {
    const m = /^automation:([^:]+):(\d+)$/.exec(key);
    if (!m) return undefined;
    const c = this.loaded.get(m[1]) ?? (await this.reloadFor(m[1]));
    return c && { c, index: Number(m[2]) };
  }

  /** Schedule and sun timers, fired on this node because it owns the home: the trigger attached on the key fires. */
  private async onTimer(key: string, data: { scheduledAt: number; lateMs: number }): Promise<void> {
    if (!(await this.timerTarget(key))) return;
    await this.emit('timer', key, data);
  }

  private async onTimerSkipped(key: string, scheduledAt: number): Promise<void> {
    const target = await this.timerTarget(key);
    const t = target?.c.a.triggers[target.index];
    if (!target || !t) return;
    const c = target.c;
    const trigger = this.triggerTrace(target.index, t.type, { scheduledAt: new Date(scheduledAt).toISOString() });
    this.record(
      c,
      newId('ar'),
      'skipped',
      `the ${t.type} firing due at ${new Date(scheduledAt).toISOString()} was missed by more than its grace window (the node was down)`,
      this.deps.clock.now(),
      { trigger, conditions: [], actions: [] },
    );
  }

  private async reloadFor(id: string): Promise<Loaded | undefined> {
    await this.reload(id);
    return this.loaded.get(id);
  }

  private watch(devices: Set<string>, fn: () => void): () => void {
    for (const d of devices) {
      let set = this.watchers.get(d);
      if (!set) this.watchers.set(d, (set = new Set()));
      set.add(fn);
    }
    return () => {
      for (const d of devices) {
        const set = this.watchers.get(d);
        set?.delete(fn);
        if (set?.size === 0) this.watchers.delete(d);
      }
    };
  }

  private notifyWatchers(deviceId: string): void {
    const set = this.watchers.get(deviceId);
    if (set) for (const fn of [...set]) fn();
  }

  // ------------------------------------------------------------------ runs

  private triggerTrace(index: number | null, type: TriggerType, data: Record<string, unknown>): TriggerTrace {
    return { index, type, data, at: new Date(this.deps.clock.now()).toISOString(), description: describeTrigger(type, data) };
  }

  private async world(homeId: string): Promise<World> {
    const now = this.deps.clock.now();
    let h = this.homes.get(homeId);
    if (!h || now - h.at > HOME_TTL_MS || Date.now() - h.at > HOME_TTL_MS) {
      h = { info: await this.deps.home(homeId), at: now };
      this.homes.set(homeId, h);
    }
    const info = h.info ?? { timezone: 'UTC', latitude: null, longitude: null, ownerId: '' };
    return {
      now: () => this.deps.clock.now(),
      timezone: info.timezone,
      latitude: info.latitude,
      longitude: info.longitude,
      reported: this.deps.reported,
      online: this.deps.online,
    };
  }

  /** A trigger fired: loop guard, cool-down, conditions, run mode, run. */
  private async fire(c: Loaded, index: number, t: Trigger, data: Record<string, unknown>): Promise<Run | undefined> {
    try {
      return await this.dispatch(c, this.triggerTrace(index, t.type, data), { counts: true });
    } catch (err) {
      this.deps.log.error({ err, automationId: c.a.id }, 'automation run failed to start');
      return undefined;
    }
  }

  private async dispatch(c: Loaded, trigger: TriggerTrace, opts: { counts: boolean; skipConditions?: boolean }): Promise<Run> {
    const now = this.deps.clock.now();
    const runId = newId('ar');
    const empty = (): Trace => ({ trigger, conditions: [], actions: [] });
    if (c.unindexed && opts.counts) return this.record(c, runId, 'dropped', 'the automation was unloaded', now, empty());

    if (opts.counts && this.guard.firing(c, trigger, now)) return this.loopGuard(c, runId, trigger);
    const cooling = c.runs.coolingDown(now);
    if (cooling) return this.record(c, runId, 'dropped', cooling, now, empty());

    let world: World;
    try {
      world = await this.world(c.a.homeId);
    } catch (err) {
      this.deps.log.error({ err, automationId: c.a.id }, 'automation run could not read its home');
      return this.record(c, runId, 'failed', `the home could not be read: ${(err as Error).message}`, now, empty());
    }
    const cond = opts.skipConditions ? { ok: true, traces: [] } : await evaluateAll(c.a.conditions, 'conditions', world);
    if (!cond.ok) {
      const failed = cond.traces.filter((t) => !t.result).map((t) => `${t.path} (${t.type})${t.reason ? `: ${t.reason}` : ''}`);
      return this.record(c, runId, 'condition-failed', `a condition did not hold: ${failed.join('; ')}`, now, {
        trigger,
        conditions: cond.traces,
        actions: [],
      });
    }

    const admission = c.runs.admit(runId);
    if (admission.op === 'drop') return this.record(c, runId, 'dropped', admission.reason, now, { trigger, conditions: cond.traces, actions: [] });
    if (admission.op === 'queue') {
      c.runs.waiting.push({ trigger, conditions: cond.traces, runId });
      return this.record(c, runId, 'running', admission.reason, now, { trigger, conditions: cond.traces, actions: [] }, null);
    }
    // The automation may have been changed, deleted or moved while its conditions were read.
    if (c.unindexed || this.loaded.get(c.a.id) !== c)
      return this.record(c, runId, 'dropped', 'the automation was changed or unloaded meanwhile', now, { trigger, conditions: cond.traces, actions: [] });
    return this.begin(c, runId, trigger, cond.traces, world);
  }

  private begin(c: Loaded, runId: string, trigger: TriggerTrace, conditions: Trace['conditions'], world: World): Run {
    const startedAt = this.deps.clock.now();
    const trace: Trace = { trigger, conditions, actions: [] };
    const ctx: RunContext = {
      automationId: c.a.id,
      automationName: c.a.name,
      homeId: c.a.homeId,
      runId,
      trigger,
      dryRun: false,
      world,
      cancelled: undefined,
      cancelHooks: new Set(),
    };
    const run = this.record(c, runId, 'running', null, startedAt, trace, null);
    this.announce(c, run);
    const active: ActiveRun = { ctx, done: Promise.resolve() };
    c.runs.active.add(active);
    active.done = (async () => {
      let status: RunStatus = 'completed';
      let reason: string | null = null;
      try {
        await runActions(c.a.actions, 'actions', this.fx, ctx, trace.actions);
        if (ctx.cancelled) {
          status = 'cancelled';
          reason = ctx.cancelled;
        }
      } catch (err) {
        if (err instanceof StopRun) {
          status = err.status;
          reason = err.message;
        } else {
          status = 'failed';
          reason = (err as Error).message;
          this.deps.log.error({ err, automationId: c.a.id }, 'automation run failed');
        }
      }
      if (reason === null && !ctx.cancelled) {
        const soft = trace.actions.filter((t) => t.status === 'failed' || t.status === 'timeout');
        if (soft.length) reason = `${soft.length} action(s) failed and were passed over (continueOnError)`;
      }
      const next = c.runs.ended(active, this.deps.clock.now());
      this.record(c, runId, status, reason, startedAt, trace);
      if (next && !c.unindexed) this.begin(c, next.runId, next.trigger, next.conditions, world);
    })();
    return run;
  }

  private async loopGuard(c: Loaded, runId: string, trigger: TriggerTrace): Promise<Run> {
    const reason = this.guard.stop(c);
    const now = this.deps.clock.now();
    c.runs.cancelAll('stopped by the loop guard');
    const run = this.record(c, runId, 'stopped', reason, now, { trigger, conditions: [], actions: [] });
    this.deps.log.warn({ automationId: c.a.id, homeId: c.a.homeId }, 'automation stopped by the loop guard');
    this.deps.stream?.publish(
      'automation',
      null,
      c.a.homeId,
      { event: 'stopped', automationId: c.a.id, name: c.a.name, runId, status: 'stopped', reason },
      now,
    );
    try {
      await this.deps.control.setEnabledBySystem(c.a.id, false, 'loop-guard', { status: 'stopped', reason });
    } catch (err) {
      this.deps.log.error({ err, automationId: c.a.id }, 'could not disable a looping automation');
    }
    const notify = this.deps.effects.notify;
    if (notify) {
      const home = await this.deps.home(c.a.homeId).catch(() => undefined);
      notify
        .send({
          homeId: c.a.homeId,
          kind: 'automation',
          severity: 'warning',
          title: `Automation "${c.a.name}" was stopped`,
          body: reason,
          ...(home?.ownerId ? { users: [home.ownerId] } : {}),
          source: `automation:${c.a.id}`,
          dedupeKey: `loop-guard:${c.a.id}`,
          data: { automationId: c.a.id, runId },
        })
        .catch((err) => this.deps.log.warn({ err, automationId: c.a.id }, 'loop guard notification failed'));
    }
    return run;
  }

  private record(
    c: Loaded,
    runId: string,
    status: RunStatus,
    reason: string | null,
    startedAt: number,
    trace: Trace,
    finishedAt: number | null = this.deps.clock.now(),
  ): Run {
    this.deps.store.recordRun({ id: runId, automationId: c.a.id, homeId: c.a.homeId, status, reason, startedAt, finishedAt, trace });
    const run: Run = {
      id: runId,
      automationId: c.a.id,
      homeId: c.a.homeId,
      status,
      reason,
      startedAt: new Date(startedAt).toISOString(),
      finishedAt: finishedAt === null ? null : new Date(finishedAt).toISOString(),
      ms: finishedAt === null ? null : finishedAt - startedAt,
      trace,
    };
    if (status !== 'running') this.announce(c, run);
    return run;
  }

  private announce(c: Loaded, run: Run): void {
    this.deps.stream?.publish('automation', null, c.a.homeId, {
      event: run.status === 'running' ? 'run-started' : 'run-finished',
      automationId: c.a.id,
      name: c.a.name,
      runId: run.id,
      status: run.status,
      reason: run.reason,
      trigger: { type: run.trace.trigger.type, description: run.trace.trigger.description },
      ms: run.ms,
    });
  }

  // ------------------------------------------------------------------ manual runs, webhooks, dry runs

  /** A manual run (or a webhook firing) on the node that owns the home; returns the run as it started. */
  async manual(a: Automation, req: { data?: Record<string, unknown>; skipConditions?: boolean; source: string }): Promise<Run> {
    return this.route(a, {
      op: 'run',
      id: a.id,
      source: req.source,
      ...(req.data ? { data: req.data } : {}),
      ...(req.skipConditions ? { skipConditions: true } : {}),
    });
  }

  async webhook(a: Automation, data: Record<string, unknown>): Promise<Run> {
    return this.route(a, { op: 'fire', id: a.id, type: 'webhook', data });
  }

  private async route(a: Automation, req: Rpc): Promise<Run> {
    if (this.owns(a.homeId)) return this.local(req);
    const shard = this.shardOf(a.homeId);
    return askShardOwner({
      send: () => this.deps.bus.request(subjects.automationRpc(shard), req, { timeoutMs: 5000 }),
      take: (reply) => reply.run,
      owns: () => this.owns(a.homeId),
      local: () => this.local(req),
      patienceMs: 10_000,
      unavailable: `no worker runs the automations of shard ${shard}; try again`,
    });
  }

  private serve(shard: number, req: Rpc): Promise<RpcReply> {
    return serveShard({
      owns: this.deps.shards.owns(shard),
      log: this.deps.log,
      context: { automationId: req.id },
      what: 'automation request',
      run: async () => ({ ok: true as const, run: await this.local(req) }),
    });
  }

  private async local(req: Rpc): Promise<Run> {
    const c = this.loaded.get(req.id) ?? (await this.reloadFor(req.id));
    if (!c) throw new HearthError('E_AUTOMATION_NOT_FOUND', `automation "${req.id}" does not exist`);
    if (c.a.status === 'unavailable') throw new HearthError('E_CONFLICT', `the automation is unavailable: ${c.a.statusReason}`);
    if (req.op === 'run') {
      const index = c.a.triggers.findIndex((t) => t.type === 'manual');
      return this.dispatch(c, this.triggerTrace(index >= 0 ? index : null, 'manual', { by: req.source, ...(req.data ?? {}) }), {
        counts: false,
        skipConditions: req.skipConditions,
      });
    }
    if (!c.a.enabled) throw new HearthError('E_CONFLICT', 'the automation is disabled');
    const index = c.a.triggers.findIndex((t) => t.type === req.type);
    if (index < 0) throw new HearthError('E_WEBHOOK_NOT_FOUND', 'the automation has no webhook trigger');
    return this.dispatch(c, this.triggerTrace(index, req.type, req.data), { counts: true });
  }

  /**
   * Dry run: evaluates the automation against a trigger event without acting. The trigger is
   * checked against the automation's triggers (does it match one, which), the conditions are
   * evaluated on the current state, and the actions are walked (choose branches decided, waits
   * checked once) with each would-be effect in the trace.
   */
  async test(
    a: Automation,
    event: { type: TriggerType; data?: Record<string, unknown> },
  ): Promise<{ matched: boolean; matchedTrigger: number | null; wouldRun: boolean; why: string; trace: Trace }> {
    const data = event.data ?? {};
    const index = a.triggers.findIndex((t) => t.type === event.type && (triggerKinds.of(t.type)?.matches?.(t, data) ?? true));
    const trigger = this.triggerTrace(index >= 0 ? index : null, event.type, data);
    const trace: Trace = { trigger, conditions: [], actions: [], dryRun: true };
    const world = await this.world(a.homeId);
    const cond = await evaluateAll(a.conditions, 'conditions', world);
    trace.conditions = cond.traces;
    if (index < 0) {
      return {
        matched: false,
        matchedTrigger: null,
        wouldRun: false,
        why: `the event matches none of the triggers (${a.triggers.map((t, i) => `triggers[${i}] ${t.type}`).join(', ')})`,
        trace,
      };
    }
    if (!cond.ok) return { matched: true, matchedTrigger: index, wouldRun: false, why: 'a condition does not hold', trace };
    const ctx: RunContext = {
      automationId: a.id,
      automationName: a.name,
      homeId: a.homeId,
      runId: 'dry-run',
      trigger,
      dryRun: true,
      world,
      cancelled: undefined,
      cancelHooks: new Set(),
    };
    try {
      await runActions(a.actions, 'actions', this.fx, ctx, trace.actions);
    } catch (err) {
      if (!(err instanceof StopRun)) throw err;
    }
    const why = !a.enabled ? 'it would run if it were enabled' : a.status !== 'ok' ? `it would run, but the automation is ${a.status}` : 'it would run';
    return { matched: true, matchedTrigger: index, wouldRun: a.enabled && a.status === 'ok', why, trace };
  }
}

/** The trigger in words, for traces and the live stream (by its kind, triggers/<kind>.ts). */
export function describeTrigger(type: TriggerType, d: Record<string, unknown>): string {
  return triggerKinds.of(type)?.describe(type, d) ?? type;
}
