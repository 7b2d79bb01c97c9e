import { BusError, type Bus, type Unsubscribe } from '../core/bus/bus.ts';
import { subjects } from '../core/bus/subjects.ts';
import { shardOf, type ShardListener } from '../core/cluster/shards.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError, isHearthError, type ErrorCode } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { sameValue } from '../shadow/shadow-state.ts';
import type { AutomationRpc as Rpc, AutomationRpcReply as RpcReply, DeviceEvent, PresenceEvent, ReportedEvent, SceneActivation } from '../core/bus/events.ts';
import { evaluateAll, type World } from './conditions.ts';
import { cancelRun, runActions, StopRun, type ActionEffects, type RunContext } from './actions.ts';
import { toAutomation, type AutomationStore } from './automation-store.ts';
import {
  devicesOf, parseDuration, type Automation, type EventTrigger, type PresenceTrigger, type PropertyTrigger, type Run, type RunStatus,
  type Trace, type Trigger, type TriggerTrace, type TriggerType,
} from './automation-types.ts';

/**
 * The loop guard's rule: a firing is *chained* when what fired it — the device that reported, sent
 * the event or changed presence, or the scene that was activated — was being acted on by an
 * automation of its home (a command, desired state, a group command, a scene activation) or was
 * within {@link LOOP_GRACE_MS} after such an action: an automation's own work caused it. More than
 * {@link LOOP_LIMIT} chained firings of one automation within {@link LOOP_WINDOW_MS} stop it: it is
 * disabled with status `stopped`, its runs are cancelled, a run with status `stopped` says why, the
 * live stream announces it and the home's owner is notified. Firings from people and the outside
 * world (a sensor reporting fast, schedules, webhooks, manual runs) never count.
 */
export const LOOP_LIMIT = 10;
export const LOOP_WINDOW_MS = 10_000;
export const LOOP_GRACE_MS = 1_000;

/** What the engine needs to know about a home (cached for a short while). */
export interface HomeInfo {
  timezone: string;
  latitude: number | null;
  longitude: number | null;
  ownerId: string;
}

/** The slice of the TimerService (src/timers/timer-service.ts) the engine listens to. */
export interface TimerFirings {
  onFire(owner: string, fire: (f: { key: string; payload: unknown; scheduledAt: number; firedAt: number; lateMs: number }) => Promise<void> | void,
    skipped?: (s: { key: string; payload: unknown; scheduledAt: number; reason: string }) => void): () => void;
}

/** Ways the engine changes an automation's stored state (the AutomationService does it, so every node hears). */
export interface AutomationControl {
  setEnabledBySystem(id: string, enabled: boolean, by: string, status?: { status: 'ok' | 'stopped' | 'unavailable'; reason: string | null }): Promise<Automation | undefined>;
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

interface TriggerState {
  c: Loaded;
  index: number;
  t: Trigger;
  /** The last value seen (property) or presence (online/offline); undefined until known. */
  prev: unknown;
  known: boolean;
  /** A pending `for` timer. */
  pending?: () => void;
}

interface ActiveRun {
  ctx: RunContext;
  done: Promise<void>;
}

interface Loaded {
  a: Automation;
  /** The stored row as JSON: a reload that finds it unchanged does nothing. */
  version: string;
  /** Every device it names (triggers, conditions, actions): a device that moves re-checks it. */
  devices: Set<string>;
  states: TriggerState[];
  active: Set<ActiveRun>;
  queue: Array<{ trigger: TriggerTrace; conditions: Trace['conditions']; runId: string }>;
  lastEnd: number;
  chained: number[];
  unindexed: boolean;
}

type DeviceIndex = { property: TriggerState[]; event: TriggerState[]; presence: TriggerState[] };


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
  private readonly byDevice = new Map<string, DeviceIndex>();
  private readonly byScene = new Map<string, TriggerState[]>();
  /** Waits watching devices: deviceId → callbacks. */
  private readonly watchers = new Map<string, Set<() => void>>();
  private readonly homes = new Map<string, { info: HomeInfo | undefined; at: number }>();
  private readonly rpc = new Map<number, Unsubscribe>();
  private readonly unsubs: Unsubscribe[] = [];
  private readonly fx: ActionEffects;
  private started = false;
  private stopped = false;
  /** Devices (and `scene:{id}`) automations act on: actions under way, and when the last one ended. */
  private readonly touched = new Map<string, { inflight: number; last: number }>();

  constructor(private readonly deps: AutomationEngineDeps) {
    const touching = async <T>(keys: string[], fn: () => Promise<T>, after?: (r: T) => string[]): Promise<T> => {
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
    };
    const { scenes } = deps.effects;
    this.fx = {
      ...deps.effects,
      log: deps.log,
      command: (device, input, source) => touching([device], () => deps.effects.command(device, input, source)),
      setDesired: (device, values) => touching([device], () => deps.effects.setDesired(device, values)),
      // A webhook action may call an incoming webhook of this platform (its own, even): marked as a cause.
      postJson: (url, body, headers) => touching([`automation:${headers['x-hearth-automation']}`], () => deps.effects.postJson(url, body, headers)),
      ...(scenes ? {
        scenes: {
          activateAs: (source: string, homeId: string, sceneId: string) => touching([`scene:${sceneId}`], () => scenes.activateAs(source, homeId, sceneId), (act) => act.results.map((r) => r.device)),
        },
      } : {}),
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
      bus.subscribe(subjects.sceneActivated('*'), (m) => this.onScene(m.data), { name: 'automations.scene' }),
      // A device that changes home may break automations naming it (see HomeService.onPlacementChange).
      bus.subscribe('cluster.placement', (m) => void this.recheck(m.data.deviceId), { name: 'automations.placement' }),
    );
    if (this.deps.timers) this.unsubs.push(this.deps.timers.onFire('automation', (f) => this.onTimer(f.key, { scheduledAt: f.scheduledAt, lateMs: f.lateMs }), (s) => this.onTimerSkipped(s.key, s.scheduledAt)));
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
      const runs = [...this.loaded.values()].flatMap((c) => [...c.active]);
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
    this.rpc.set(shard, this.deps.bus.subscribe(subjects.automationRpc(shard), (m) => this.serve(shard, m.data).then((r) => m.respond?.(r)), { name: 'automations.rpc' }));
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
    const c: Loaded = { a, version, devices: devicesOf(a), states: [], active: new Set(), queue: [], lastEnd: 0, chained: [], unindexed: false };
    this.loaded.set(a.id, c);
    if (!a.enabled || a.status !== 'ok') return;
    a.triggers.forEach((t, index) => {
      const st: TriggerState = { c, index, t, prev: undefined, known: false };
      c.states.push(st);
      if (t.type === 'property' || t.type === 'event' || t.type === 'online' || t.type === 'offline') {
        let ix = this.byDevice.get(t.device);
        if (!ix) this.byDevice.set(t.device, (ix = { property: [], event: [], presence: [] }));
        (t.type === 'property' ? ix.property : t.type === 'event' ? ix.event : ix.presence).push(st);
        if (t.type !== 'event') void this.initState(st);
      } else if (t.type === 'scene') {
        const list = this.byScene.get(t.scene) ?? [];
        list.push(st);
        this.byScene.set(t.scene, list);
      }
    });
  }

  /** What a property or presence trigger saw last, so that the next report is a crossing or not. */
  private async initState(st: TriggerState): Promise<void> {
    const t = st.t as PropertyTrigger | PresenceTrigger;
    try {
      const v = t.type === 'property' ? (await this.deps.reported(t.device))[t.property] : await this.deps.online(t.device);
      if (st.known || v === undefined) return;
      // Only a change seen from here on fires, `for` included: a value that is already so when the
      // automation loads (saved, edited, a node restart or a shard moving) does not fire it again.
      st.prev = v;
      st.known = true;
    } catch (err) {
      this.deps.log.debug({ err, automationId: st.c.a.id }, 'automation trigger state not loaded');
    }
  }

  private unload(c: Loaded, why: string): void {
    if (this.loaded.get(c.a.id) === c) this.loaded.delete(c.a.id);
    c.unindexed = true;
    for (const st of c.states) {
      st.pending?.();
      st.pending = undefined;
      const t = st.t;
      if (t.type === 'property' || t.type === 'event' || t.type === 'online' || t.type === 'offline') {
        const ix = this.byDevice.get(t.device);
        if (ix) {
          for (const k of ['property', 'event', 'presence'] as const) ix[k] = ix[k].filter((x) => x !== st);
          if (!ix.property.length && !ix.event.length && !ix.presence.length) this.byDevice.delete(t.device);
        }
      } else if (t.type === 'scene') {
        const list = (this.byScene.get(t.scene) ?? []).filter((x) => x !== st);
        if (list.length) this.byScene.set(t.scene, list);
        else this.byScene.delete(t.scene);
      }
    }
    for (const q of c.queue.splice(0)) this.record(c, q.runId, 'cancelled', why, this.deps.clock.now(), { trigger: q.trigger, conditions: q.conditions, actions: [] });
    for (const r of c.active) cancelRun(r.ctx, why);
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
    const ix = this.byDevice.get(ev.deviceId);
    if (!ix) return;
    for (const st of ix.property) {
      const t = st.t as PropertyTrigger;
      if (!(t.property in ev.values)) continue;
      const v = ev.values[t.property];
      const changed = ev.changed.includes(t.property);
      const prev = st.prev;
      const known = st.known;
      st.prev = v;
      st.known = true;
      const data = { device: t.device, property: t.property, from: known ? prev : null, to: v };
      if (!hasRange(t)) {
        // Any change of the value (from the given one, if any); a change ends a `for` window.
        if (!changed) continue;
        st.pending?.();
        st.pending = undefined;
        if (t.from !== undefined && !(known && sameValue(prev, t.from))) continue;
        if (t.for !== undefined) this.startFor(st, data);
        else this.fire(st, data);
        continue;
      }
      const now = propertyMatches(t, v);
      if (!now) {
        st.pending?.();
        st.pending = undefined;
        continue;
      }
      const was = known ? propertyMatches(t, prev) : !changed;
      if (was) continue;
      if (t.from !== undefined && !(known && sameValue(prev, t.from))) continue;
      if (t.for !== undefined) this.startFor(st, data);
      else this.fire(st, data);
    }
  }

  private onEvent(ev: DeviceEvent): void {
    const ix = this.byDevice.get(ev.deviceId);
    if (!ix) return;
    for (const st of ix.event) {
      const t = st.t as EventTrigger;
      if (t.event !== ev.event) continue;
      if (t.params && !Object.entries(t.params).every(([k, v]) => sameValue(ev.params?.[k], v))) continue;
      this.fire(st, { device: ev.deviceId, event: ev.event, params: ev.params ?? {}, eventId: ev.id });
    }
  }

  private onPresence(ev: PresenceEvent): void {
    this.notifyWatchers(ev.deviceId);
    const ix = this.byDevice.get(ev.deviceId);
    if (!ix) return;
    for (const st of ix.presence) {
      const t = st.t as PresenceTrigger;
      const want = t.type === 'online';
      const was = st.known ? st.prev === want : false;
      st.prev = ev.online;
      st.known = true;
      if (ev.online !== want) {
        st.pending?.();
        st.pending = undefined;
        continue;
      }
      if (was) continue;
      const data = { device: ev.deviceId, online: ev.online, reason: ev.reason };
      if (t.for !== undefined) this.startFor(st, data);
      else this.fire(st, data);
    }
  }

  private onScene(act: SceneActivation): void {
    for (const st of this.byScene.get(act.sceneId) ?? []) {
      if (st.c.a.homeId !== act.homeId) continue;
      this.fire(st, { scene: act.sceneId, activationId: act.id, source: act.source, ok: act.ok });
    }
  }

  /** The automation and trigger index of an `automation:{id}:{triggerIndex}` timer (the key says it all; the timer has no payload). */
  private async timerTarget(key: string): Promise<{ c: Loaded; index: number } | undefined> {
    const m = /^automation:([^:]+):(\d+)$/.exec(key);
    if (!m) return undefined;
    const c = this.loaded.get(m[1]) ?? (await this.reloadFor(m[1]));
    return c && { c, index: Number(m[2]) };
  }

  /** Schedule and sun timers, fired on this node because it owns the home. */
  private async onTimer(key: string, data: { scheduledAt: number; lateMs: number }): Promise<void> {
    const target = await this.timerTarget(key);
    const st = target?.c.states[target.index];
    if (!st) return;
    await this.fire(st, { scheduledAt: new Date(data.scheduledAt).toISOString(), lateMs: data.lateMs, ...('event' in st.t ? { event: st.t.event } : {}) });
  }

  private async onTimerSkipped(key: string, scheduledAt: number): Promise<void> {
    const target = await this.timerTarget(key);
    const t = target?.c.a.triggers[target.index];
    if (!target || !t) return;
    const c = target.c;
    const trigger = this.triggerTrace(target.index, t.type, { scheduledAt: new Date(scheduledAt).toISOString() });
    this.record(c, newId('ar'), 'skipped', `the ${t.type} firing due at ${new Date(scheduledAt).toISOString()} was missed by more than its grace window (the node was down)`, this.deps.clock.now(), { trigger, conditions: [], actions: [] });
  }

  private async reloadFor(id: string): Promise<Loaded | undefined> {
    await this.reload(id);
    return this.loaded.get(id);
  }

  private startFor(st: TriggerState, data: Record<string, unknown>): void {
    if (st.pending) return;
    const ms = parseDuration((st.t as PropertyTrigger).for)!;
    st.pending = this.deps.clock.setTimer(() => {
      st.pending = undefined;
      if (!st.c.unindexed) void this.fire(st, { ...data, forMs: ms });
    }, ms);
  }

  /** An automation starts (+1), ends (-1) or just did (0) an action on a device or scene. */
  private touch(key: string, delta: number): void {
    const now = this.deps.clock.now();
    let t = this.touched.get(key);
    if (!t) {
      if (this.touched.size > 10_000) for (const [k, v] of this.touched) if (v.inflight === 0 && now - v.last > LOOP_GRACE_MS) this.touched.delete(k);
      this.touched.set(key, (t = { inflight: 0, last: now }));
    }
    t.inflight = Math.max(0, t.inflight + delta);
    t.last = now;
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
    return { now: () => this.deps.clock.now(), timezone: info.timezone, latitude: info.latitude, longitude: info.longitude, reported: this.deps.reported, online: this.deps.online };
  }

  /** A trigger fired: loop guard, cool-down, conditions, run mode, run. */
  private async fire(st: TriggerState, data: Record<string, unknown>): Promise<Run | undefined> {
    try {
      return await this.dispatch(st.c, this.triggerTrace(st.index, st.t.type, data), { counts: true });
    } catch (err) {
      this.deps.log.error({ err, automationId: st.c.a.id }, 'automation run failed to start');
      return undefined;
    }
  }

  private async dispatch(c: Loaded, trigger: TriggerTrace, opts: { counts: boolean; skipConditions?: boolean }): Promise<Run> {
    const now = this.deps.clock.now();
    const runId = newId('ar');
    const empty = (): Trace => ({ trigger, conditions: [], actions: [] });
    if (c.unindexed && opts.counts) return this.record(c, runId, 'dropped', 'the automation was unloaded', now, empty());

    if (opts.counts) {
      const cause = typeof trigger.data.device === 'string' ? trigger.data.device
        : trigger.type === 'scene' ? `scene:${String(trigger.data.scene)}`
          : trigger.type === 'webhook' && typeof trigger.data.fromAutomation === 'string' ? `automation:${trigger.data.fromAutomation}` : undefined;
      const t = cause === undefined ? undefined : this.touched.get(cause);
      const chained = t !== undefined && (t.inflight > 0 || now - t.last <= LOOP_GRACE_MS);
      if (chained) {
        c.chained.push(now);
        while (c.chained.length && c.chained[0] < now - LOOP_WINDOW_MS) c.chained.shift();
        if (c.chained.length > LOOP_LIMIT) return this.loopGuard(c, runId, trigger);
      }
    }
    if (c.a.cooldownMs > 0 && c.active.size === 0 && c.lastEnd > 0 && now - c.lastEnd < c.a.cooldownMs) {
      return this.record(c, runId, 'dropped', `cool-down: the last run ended ${now - c.lastEnd} ms ago (cool-down ${c.a.cooldownMs} ms)`, now, empty());
    }

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
      return this.record(c, runId, 'condition-failed', `a condition did not hold: ${failed.join('; ')}`, now, { trigger, conditions: cond.traces, actions: [] });
    }

    const mode = c.a.mode;
    if (c.active.size > 0) {
      if (mode === 'single') return this.record(c, runId, 'dropped', 'a run is already active (mode single)', now, { trigger, conditions: cond.traces, actions: [] });
      if (mode === 'restart') for (const r of c.active) cancelRun(r.ctx, `restarted by run ${runId} (mode restart)`);
      if (mode === 'queued') {
        if (c.queue.length >= c.a.max) return this.record(c, runId, 'dropped', `the queue is full (mode queued, max ${c.a.max})`, now, { trigger, conditions: cond.traces, actions: [] });
        c.queue.push({ trigger, conditions: cond.traces, runId });
        return this.record(c, runId, 'running', `queued behind ${c.active.size} active run(s)`, now, { trigger, conditions: cond.traces, actions: [] }, null);
      }
      if (mode === 'parallel' && c.active.size >= c.a.max) return this.record(c, runId, 'dropped', `${c.active.size} runs are active (mode parallel, max ${c.a.max})`, now, { trigger, conditions: cond.traces, actions: [] });
    }
    // The automation may have been changed, deleted or moved while its conditions were read.
    if (c.unindexed || this.loaded.get(c.a.id) !== c) return this.record(c, runId, 'dropped', 'the automation was changed or unloaded meanwhile', now, { trigger, conditions: cond.traces, actions: [] });
    return this.begin(c, runId, trigger, cond.traces, world);
  }

  private begin(c: Loaded, runId: string, trigger: TriggerTrace, conditions: Trace['conditions'], world: World): Run {
    const startedAt = this.deps.clock.now();
    const trace: Trace = { trigger, conditions, actions: [] };
    const ctx: RunContext = {
      automationId: c.a.id, automationName: c.a.name, homeId: c.a.homeId, runId, trigger, dryRun: false, world, cancelled: undefined, cancelHooks: new Set(),
    };
    const run = this.record(c, runId, 'running', null, startedAt, trace, null);
    this.announce(c, run);
    const active: ActiveRun = { ctx, done: Promise.resolve() };
    c.active.add(active);
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
      c.active.delete(active);
      c.lastEnd = this.deps.clock.now();
      this.record(c, runId, status, reason, startedAt, trace);
      const next = c.queue.shift();
      if (next && !c.unindexed) this.begin(c, next.runId, next.trigger, next.conditions, world);
    })();
    return run;
  }

  private async loopGuard(c: Loaded, runId: string, trigger: TriggerTrace): Promise<Run> {
    const reason = `loop guard: ${c.chained.length} firings within ${LOOP_WINDOW_MS / 1000} s were caused by automations acting on the device or scene that fired it (limit ${LOOP_LIMIT}); its actions seem to trigger it again. It was disabled; fix it and enable it again.`;
    const now = this.deps.clock.now();
    c.chained = [];
    for (const r of c.active) cancelRun(r.ctx, 'stopped by the loop guard');
    c.queue.splice(0);
    const run = this.record(c, runId, 'stopped', reason, now, { trigger, conditions: [], actions: [] });
    this.deps.log.warn({ automationId: c.a.id, homeId: c.a.homeId }, 'automation stopped by the loop guard');
    this.deps.stream?.publish('automation', null, c.a.homeId, { event: 'stopped', automationId: c.a.id, name: c.a.name, runId, status: 'stopped', reason }, now);
    try {
      await this.deps.control.setEnabledBySystem(c.a.id, false, 'loop-guard', { status: 'stopped', reason });
    } catch (err) {
      this.deps.log.error({ err, automationId: c.a.id }, 'could not disable a looping automation');
    }
    const notify = this.deps.effects.notify;
    if (notify) {
      const home = await this.deps.home(c.a.homeId).catch(() => undefined);
      notify.send({
        homeId: c.a.homeId, kind: 'automation', severity: 'warning', title: `Automation "${c.a.name}" was stopped`, body: reason,
        ...(home?.ownerId ? { users: [home.ownerId] } : {}), source: `automation:${c.a.id}`, dedupeKey: `loop-guard:${c.a.id}`, data: { automationId: c.a.id, runId },
      }).catch((err) => this.deps.log.warn({ err, automationId: c.a.id }, 'loop guard notification failed'));
    }
    return run;
  }

  private record(c: Loaded, runId: string, status: RunStatus, reason: string | null, startedAt: number, trace: Trace, finishedAt: number | null = this.deps.clock.now()): Run {
    this.deps.store.recordRun({ id: runId, automationId: c.a.id, homeId: c.a.homeId, status, reason, startedAt, finishedAt, trace });
    const run: Run = {
      id: runId, automationId: c.a.id, homeId: c.a.homeId, status, reason, startedAt: new Date(startedAt).toISOString(),
      finishedAt: finishedAt === null ? null : new Date(finishedAt).toISOString(), ms: finishedAt === null ? null : finishedAt - startedAt, trace,
    };
    if (status !== 'running') this.announce(c, run);
    return run;
  }

  private announce(c: Loaded, run: Run): void {
    this.deps.stream?.publish('automation', null, c.a.homeId, {
      event: run.status === 'running' ? 'run-started' : 'run-finished', automationId: c.a.id, name: c.a.name, runId: run.id, status: run.status, reason: run.reason,
      trigger: { type: run.trace.trigger.type, description: run.trace.trigger.description }, ms: run.ms,
    });
  }

  // ------------------------------------------------------------------ manual runs, webhooks, dry runs

  /** A manual run (or a webhook firing) on the node that owns the home; returns the run as it started. */
  async manual(a: Automation, req: { data?: Record<string, unknown>; skipConditions?: boolean; source: string }): Promise<Run> {
    return this.route(a, { op: 'run', id: a.id, source: req.source, ...(req.data ? { data: req.data } : {}), ...(req.skipConditions ? { skipConditions: true } : {}) });
  }

  async webhook(a: Automation, data: Record<string, unknown>): Promise<Run> {
    return this.route(a, { op: 'fire', id: a.id, type: 'webhook', data });
  }

  private async route(a: Automation, req: Rpc): Promise<Run> {
    if (this.owns(a.homeId)) return this.local(req);
    const shard = this.shardOf(a.homeId);
    const deadline = Date.now() + 10_000;
    for (let attempt = 0; ; attempt++) {
      let reply: RpcReply | undefined;
      try {
        reply = await this.deps.bus.request(subjects.automationRpc(shard), req, { timeoutMs: 5000 });
      } catch (err) {
        if (!(err instanceof BusError) || err.code === 'CLOSED') throw err;
      }
      if (reply?.ok) return reply.run;
      if (reply && reply.code !== 'E_NOT_OWNER') throw new HearthError(reply.code as ErrorCode, reply.message);
      if (Date.now() >= deadline) throw new HearthError('E_UNAVAILABLE', `no worker runs the automations of shard ${shard}; try again`);
      if (this.owns(a.homeId)) return this.local(req);
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 500)));
    }
  }

  private async serve(shard: number, req: Rpc): Promise<RpcReply> {
    if (!this.deps.shards.owns(shard)) return { ok: false, code: 'E_NOT_OWNER', message: 'shard moved' };
    try {
      return { ok: true, run: await this.local(req) };
    } catch (err) {
      if (isHearthError(err)) return { ok: false, code: err.code, message: err.message };
      this.deps.log.error({ err, automationId: req.id }, 'automation request failed');
      return { ok: false, code: 'E_INTERNAL', message: 'automation request failed' };
    }
  }

  private async local(req: Rpc): Promise<Run> {
    const c = this.loaded.get(req.id) ?? (await this.reloadFor(req.id));
    if (!c) throw new HearthError('E_AUTOMATION_NOT_FOUND', `automation "${req.id}" does not exist`);
    if (c.a.status === 'unavailable') throw new HearthError('E_CONFLICT', `the automation is unavailable: ${c.a.statusReason}`);
    if (req.op === 'run') {
      const index = c.a.triggers.findIndex((t) => t.type === 'manual');
      return this.dispatch(c, this.triggerTrace(index >= 0 ? index : null, 'manual', { by: req.source, ...(req.data ?? {}) }), { counts: false, skipConditions: req.skipConditions });
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
  async test(a: Automation, event: { type: TriggerType; data?: Record<string, unknown> }): Promise<{ matched: boolean; matchedTrigger: number | null; wouldRun: boolean; why: string; trace: Trace }> {
    const data = event.data ?? {};
    const index = a.triggers.findIndex((t) => triggerMatchesEvent(t, event.type, data));
    const trigger = this.triggerTrace(index >= 0 ? index : null, event.type, data);
    const trace: Trace = { trigger, conditions: [], actions: [], dryRun: true };
    const world = await this.world(a.homeId);
    const cond = await evaluateAll(a.conditions, 'conditions', world);
    trace.conditions = cond.traces;
    if (index < 0) {
      return { matched: false, matchedTrigger: null, wouldRun: false, why: `the event matches none of the triggers (${a.triggers.map((t, i) => `triggers[${i}] ${t.type}`).join(', ')})`, trace };
    }
    if (!cond.ok) return { matched: true, matchedTrigger: index, wouldRun: false, why: 'a condition does not hold', trace };
    const ctx: RunContext = { automationId: a.id, automationName: a.name, homeId: a.homeId, runId: 'dry-run', trigger, dryRun: true, world, cancelled: undefined, cancelHooks: new Set() };
    try {
      await runActions(a.actions, 'actions', this.fx, ctx, trace.actions);
    } catch (err) {
      if (!(err instanceof StopRun)) throw err;
    }
    const why = !a.enabled ? 'it would run if it were enabled' : a.status !== 'ok' ? `it would run, but the automation is ${a.status}` : 'it would run';
    return { matched: true, matchedTrigger: index, wouldRun: a.enabled && a.status === 'ok', why, trace };
  }
}

function hasRange(t: PropertyTrigger): boolean {
  return t.to !== undefined || t.above !== undefined || t.below !== undefined;
}

/** Whether a value is in a property trigger's target (to / above / below). */
function propertyMatches(t: PropertyTrigger, v: unknown): boolean {
  if (t.to !== undefined && !sameValue(v, t.to)) return false;
  if (t.above !== undefined && !(typeof v === 'number' && v > t.above)) return false;
  if (t.below !== undefined && !(typeof v === 'number' && v < t.below)) return false;
  return true;
}

/** For dry runs: whether a described event would fire this trigger. */
function triggerMatchesEvent(t: Trigger, type: TriggerType, d: Record<string, unknown>): boolean {
  if (t.type !== type) return false;
  switch (t.type) {
    case 'property': {
      if (d.device !== undefined && d.device !== t.device) return false;
      if (d.property !== undefined && d.property !== t.property) return false;
      if (!('to' in d)) return true;
      if (!hasRange(t)) return !('from' in d) || !sameValue(d.from, d.to);
      return propertyMatches(t, d.to) && (!('from' in d) || !propertyMatches(t, d.from)) && (t.from === undefined || sameValue(d.from, t.from));
    }
    case 'event':
      return (d.device === undefined || d.device === t.device) && (d.event === undefined || d.event === t.event) &&
        (!t.params || Object.entries(t.params).every(([k, v]) => sameValue((d.params as Record<string, unknown> | undefined)?.[k], v)));
    case 'online':
    case 'offline':
      return d.device === undefined || d.device === t.device;
    case 'scene':
      return d.scene === undefined || d.scene === t.scene;
    case 'sun':
      return d.event === undefined || d.event === t.event;
    default:
      return true;
  }
}

const j = (v: unknown) => JSON.stringify(v);

/** The trigger in words, for traces and the live stream. */
export function describeTrigger(type: TriggerType, d: Record<string, unknown>): string {
  switch (type) {
    case 'property':
      return `property ${String(d.property)} of ${String(d.device)} became ${j(d.to)}${d.from !== undefined && d.from !== null ? ` (was ${j(d.from)})` : ''}${d.forMs ? ` and stayed so for ${Number(d.forMs) / 1000} s` : ''}`;
    case 'event':
      return `${String(d.device)} sent event ${String(d.event)}${d.params && Object.keys(d.params).length ? ` ${j(d.params)}` : ''}`;
    case 'online':
    case 'offline':
      return `${String(d.device)} went ${type}${d.forMs ? ` and stayed so for ${Number(d.forMs) / 1000} s` : ''}`;
    case 'schedule':
      return `the schedule due at ${String(d.scheduledAt)} fired${d.lateMs ? ` (${String(d.lateMs)} ms late)` : ''}`;
    case 'sun':
      return `${String(d.event ?? 'sun')} (due at ${String(d.scheduledAt)})`;
    case 'scene':
      return `scene ${String(d.scene)} was activated`;
    case 'manual':
      return `run by hand${d.by ? ` (${String(d.by)})` : ''}`;
    case 'webhook':
      return 'the webhook was called';
  }
}
