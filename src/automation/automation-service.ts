import type { UrlPolicy } from '../core/url-policy.ts';
import type { TimerSpec } from '../timers/timer-spec.ts';
import type { Clock } from '../core/clock.ts';
import { HearthError } from '../core/errors.ts';
import { newId, newSecret } from '../core/ids.ts';
import { toJson } from '../core/store/db.ts';
import { shardOf } from '../core/cluster/shards.ts';
import type { Logger } from '../core/logger.ts';
import { actorOf, type Principal } from '../access/principal.ts';
import type { AccessService, HomeNeed, HomeRole } from '../access/access-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { ProductService } from '../products/product-service.ts';
import type { AuditService } from '../audit/audit-service.ts';
import type { CompiledModel } from '../products/thing-model.ts';
import { toAutomation, type AutomationRow, type AutomationStore } from './automation-store.ts';
import { triggerKinds } from './triggers/index.ts';
import { triggerTimerSpec, validateAutomation, type HomeContext, type Problem } from './automation-validate.ts';
import type { HomeInfo } from './automation-engine.ts';
import type { HomeService } from '../homes/home-service.ts';
import type { GroupService } from '../homes/group-service.ts';
import { parseDuration, type Automation, type AutomationInput, type AutomationStatus, type Run, type Trigger } from './automation-types.ts';

/** The slice of the TimerService (src/timers/timer-service.ts) that schedules and sun triggers use. */
export interface TimerScheduler {
  upsert(t: { key: string; owner: string; shardKey: string; spec: TimerSpec; graceMs?: number; payload?: unknown }): Promise<{ nextAt: number | null }>;
  cancel(key: string): Promise<void>;
  cancelPrefix(prefix: string): Promise<void>;
}

export interface AutomationServiceDeps {
  store: AutomationStore;
  access: Pick<AccessService, 'requireHome' | 'requireHomeOf' | 'placement' | 'membership'>;
  devices: Pick<DeviceService, 'get'>;
  products: Pick<ProductService, 'model'>;
  audit: Pick<AuditService, 'record'>;
  homes: Pick<HomeService, 'info'>;
  groups: Pick<GroupService, 'groupDevices'>;
  clock: Clock;
  log: Logger;
  shardCount: number;
  timers?: TimerScheduler;
  scenes?: { exists(homeId: string, sceneId: string): Promise<boolean> };
  /** Where webhook actions may point. */
  urls?: Pick<UrlPolicy, 'problem'>;
  /**
   * An automation changed in the store: every node's engine reloads it (a broadcast in a cluster).
   * Resolves once this node's engine has it, so that a trigger right after the reply is seen.
   */
  onChange(id: string): void | Promise<void>;
}

/** What the API shows: the automation, without its webhook id for callers who may not configure it. */
export type AutomationView = Automation & { webhookUrl?: string };

export type AutomationPatch = Partial<AutomationInput>;

const DEFAULT_MAX = 10;

/**
 * Automations of a home: create, list, read, change, delete (owners and admins change; members
 * and admins read and run), every save validated against the home and its devices' thing models,
 * and their runs. The AutomationEngine runs them; this service only stores and checks.
 */
export class AutomationService {
  constructor(private readonly deps: AutomationServiceDeps) {}

  // ------------------------------------------------------------------ people's side

  async create(p: Principal, homeId: string, input: AutomationInput): Promise<AutomationView> {
    await this.viewer(p, homeId, 'configure');
    const home = await this.home(homeId);
    await this.check(input, homeId, home);
    const now = this.deps.clock.now();
    const id = newId('au');
    const row = {
      id,
      home_id: homeId,
      shard: shardOf(homeId, this.deps.shardCount),
      name: input.name.trim(),
      description: input.description ?? null,
      enabled: input.enabled === false ? 0 : 1,
      mode: input.mode ?? 'single',
      max_runs: input.max ?? DEFAULT_MAX,
      cooldown_ms: parseDuration(input.cooldown ?? 0) ?? 0,
      triggers: toJson(input.triggers),
      conditions: toJson(input.conditions ?? []),
      actions: toJson(input.actions),
      webhook_id: input.triggers.some((t) => t.type === 'webhook') ? `wh_${newSecret(18)}` : null,
      status: 'ok',
      status_reason: null,
      created_by: actorOf(p),
      created_at: now,
      updated_at: now,
    };
    await this.deps.store.insert(row);
    const a = toAutomation(row);
    await this.syncTimers(a, home, []);
    await this.deps.onChange(id);
    this.audit(p, 'automation.create', a, { name: a.name });
    return this.view(a, 'owner');
  }

  async list(p: Principal, homeId: string): Promise<AutomationView[]> {
    const role = await this.viewer(p, homeId);
    return (await this.deps.store.listHome(homeId)).map((a) => this.view(a, role));
  }

  async get(p: Principal, id: string): Promise<AutomationView> {
    const { a, role } = await this.require(p, id, 'view');
    return this.view(a, role);
  }

  async update(p: Principal, id: string, patch: AutomationPatch): Promise<AutomationView> {
    const { row, a: old } = await this.requireRow(p, id, 'configure');
    const home = await this.home(old.homeId);
    const next: AutomationInput = {
      name: patch.name ?? old.name,
      description: patch.description ?? old.description ?? undefined,
      enabled: patch.enabled ?? old.enabled,
      triggers: patch.triggers ?? old.triggers,
      conditions: patch.conditions ?? old.conditions,
      actions: patch.actions ?? old.actions,
      mode: patch.mode ?? old.mode,
      max: patch.max ?? old.max,
      cooldown: patch.cooldown ?? old.cooldownMs / 1000,
    };
    await this.check(next, old.homeId, home);
    const hasHook = next.triggers.some((t) => t.type === 'webhook');
    const set = {
      name: next.name.trim(),
      description: next.description ?? null,
      enabled: next.enabled ? 1 : 0,
      mode: next.mode!,
      max_runs: next.max!,
      cooldown_ms: parseDuration(next.cooldown ?? 0) ?? 0,
      triggers: toJson(next.triggers),
      conditions: toJson(next.conditions ?? []),
      actions: toJson(next.actions),
      webhook_id: hasHook ? (old.webhookId ?? `wh_${newSecret(18)}`) : null,
      // It was checked just now: whatever made it unavailable or stopped is over.
      status: 'ok' as AutomationStatus,
      status_reason: null,
      updated_at: Math.max(this.deps.clock.now(), Date.parse(old.updatedAt) + 1),
    };
    await this.deps.store.update(id, set);
    const a = toAutomation({ ...row, ...set });
    await this.syncTimers(a, home, old.triggers);
    await this.deps.onChange(id);
    this.audit(p, 'automation.update', a, { fields: Object.keys(patch) });
    return this.view(a, 'owner');
  }

  async delete(p: Principal, id: string): Promise<void> {
    const { a } = await this.require(p, id, 'configure');
    await this.remove(id);
    this.audit(p, 'automation.delete', a, { name: a.name });
  }

  /** The home was deleted: its automations, their runs and timers go (engines unload them). */
  async homeDeleted(homeId: string): Promise<void> {
    for (const a of await this.deps.store.listHome(homeId)) await this.remove(a.id);
  }

  async listRuns(p: Principal, id: string, q: { limit: number; before?: number; status?: string }): Promise<Run[]> {
    await this.require(p, id, 'view');
    return this.deps.store.listRuns(id, q);
  }

  async getRun(p: Principal, id: string, runId: string): Promise<Run> {
    await this.require(p, id, 'view');
    const run = await this.deps.store.getRun(id, runId);
    if (!run) throw new HearthError('E_RUN_NOT_FOUND', `automation "${id}" has no run "${runId}"`);
    return run;
  }

  /**
   * Loads an automation the caller may use as `need` requires. Automations of homes the caller
   * is not in do not exist; guests see none (they get the home's devices they were given, not its logic).
   */
  async require(p: Principal, id: string, need: HomeNeed): Promise<{ a: Automation; role: HomeRole | 'operator' }> {
    const { a, role } = await this.requireRow(p, id, need);
    return { a, role };
  }

  /** Records what a person did with an automation (a manual run, a change) in the audit trail. */
  audit(p: Principal, action: string, a: Automation, details?: Record<string, unknown>): void {
    this.deps.audit.record({ actor: actorOf(p), action, homeId: a.homeId, targetType: 'automation', targetId: a.id, ...(details ? { details } : {}) });
  }

  /** The automation with this webhook id (unauthenticated callers know only it). */
  async byWebhook(webhookId: string): Promise<Automation> {
    const a = /^wh_[A-Za-z0-9_-]{16,64}$/.test(webhookId) ? await this.deps.store.byWebhook(webhookId) : undefined;
    if (!a?.enabled || a.status !== 'ok') throw new HearthError('E_WEBHOOK_NOT_FOUND', 'no enabled automation has this webhook');
    return a;
  }

  // ------------------------------------------------------------------ the engine's side

  /** Enables or disables without a person (the loop guard, an automation's action, a re-check), optionally with a status. */
  async setEnabledBySystem(
    id: string,
    enabled: boolean,
    by: string,
    status?: { status: AutomationStatus; reason: string | null },
  ): Promise<Automation | undefined> {
    const row = await this.deps.store.row(id);
    if (!row) return undefined;
    const old = toAutomation(row);
    const set: { enabled: number; updated_at: number; status?: string; status_reason?: string | null } = {
      enabled: enabled ? 1 : 0,
      updated_at: Math.max(this.deps.clock.now(), Number(row.updated_at) + 1),
    };
    if (status) {
      set.status = status.status;
      set.status_reason = status.reason;
    }
    await this.deps.store.update(id, set);
    const a = toAutomation({ ...row, ...set });
    await this.syncTimers(a, await this.home(a.homeId).catch(() => undefined), old.triggers);
    await this.deps.onChange(id);
    this.deps.audit.record({
      actor: by.includes(':') ? by : `system:${by}`,
      action: enabled ? 'automation.enable' : 'automation.disable',
      homeId: a.homeId,
      targetType: 'automation',
      targetId: id,
      details: status ? { status: status.status, reason: status.reason } : {},
    });
    return a;
  }

  /**
   * The home's time zone or location changed: schedules and sun times of its automations are
   * computed anew, and the engines reload them. (For HomeService.updateHome to call.)
   */
  async homeChanged(homeId: string): Promise<void> {
    const home = await this.home(homeId).catch(() => undefined);
    for (const a of await this.deps.store.listHome(homeId)) {
      const problems = await this.problems(a);
      if (problems.length && a.status === 'ok') {
        await this.setEnabledBySystem(a.id, a.enabled, 'system', { status: 'unavailable', reason: problems.map((x) => `${x.field}: ${x.message}`).join('; ') });
        continue;
      }
      if (!problems.length && a.status === 'unavailable') {
        // Fits the home again (its location came back): timers are set anew with the status.
        await this.setEnabledBySystem(a.id, a.enabled, 'system', { status: 'ok', reason: null });
        continue;
      }
      if (home && a.triggers.some(hasTimer)) await this.syncTimers(a, home, a.triggers);
      await this.deps.onChange(a.id);
    }
  }

  /** What is wrong with a stored automation now (a device left the home, a scene was deleted); [] when nothing. */
  async problems(a: Automation): Promise<Problem[]> {
    let home: HomeInfo;
    try {
      home = await this.home(a.homeId);
    } catch {
      return [{ field: 'homeId', message: 'the home was deleted' }];
    }
    return validateAutomation(
      { name: a.name, triggers: a.triggers, conditions: a.conditions, actions: a.actions, mode: a.mode, max: a.max },
      this.context(a.homeId, home),
    );
  }

  /** The home's time zone, location and owner (for the engine's clocks and the loop guard's notice). */
  async home(homeId: string): Promise<HomeInfo> {
    const info = await this.deps.homes.info(homeId);
    if (!info) throw new HearthError('E_HOME_NOT_FOUND', `home "${homeId}" does not exist`);
    return info;
  }

  // ------------------------------------------------------------------ helpers

  /**
   * Loads an automation's row and the caller's role as `require` does: to a caller who may not
   * see its home, the automation does not exist.
   */
  private async requireRow(p: Principal, id: string, need: HomeNeed): Promise<{ row: AutomationRow; a: Automation; role: HomeRole | 'operator' }> {
    const notFound = () => new HearthError('E_AUTOMATION_NOT_FOUND', `automation "${id}" does not exist`);
    const row = await this.deps.store.row(id);
    if (!row) throw notFound();
    const role = this.notGuest(await this.deps.access.requireHomeOf(p, row.home_id, need, notFound, 'automations:manage'));
    return { row, a: toAutomation(row), role };
  }

  /**
   * The caller's role in the home. An API key with the automations:manage scope may do with
   * automations what homes:read and homes:manage allow (the role in the home still decides).
   */
  private async viewer(p: Principal, homeId: string, need: HomeNeed = 'view'): Promise<HomeRole | 'operator'> {
    return this.notGuest(await this.deps.access.requireHome(p, homeId, need, 'automations:manage'));
  }

  private notGuest(role: HomeRole | 'operator'): HomeRole | 'operator' {
    if (role === 'guest') throw new HearthError('E_FORBIDDEN', "a guest may not see the home's automations");
    return role;
  }

  /** Deletes an automation with its runs and timers; every engine unloads it. */
  private async remove(id: string): Promise<void> {
    await this.deps.store.delete(id);
    await this.deps.timers?.cancelPrefix(`automation:${id}:`);
    await this.deps.onChange(id);
  }

  private view(a: Automation, role: HomeRole | 'operator'): AutomationView {
    const mayConfigure = role === 'owner' || role === 'admin' || role === 'operator';
    if (mayConfigure) return a.webhookId ? { ...a, webhookUrl: `/api/v1/hooks/${a.webhookId}` } : a;
    return { ...a, webhookId: a.webhookId ? '(hidden)' : null };
  }

  private async check(input: AutomationInput, homeId: string, home: HomeInfo): Promise<void> {
    const problems = await validateAutomation(input, this.context(homeId, home));
    if (problems.length) {
      throw new HearthError('E_AUTOMATION_INVALID', problems.map((x) => `${x.field}: ${x.message}`).join('; '), { field: problems[0].field, errors: problems });
    }
  }

  private context(homeId: string, home: HomeInfo): HomeContext {
    const { access, devices, products, store, scenes } = this.deps;
    return {
      homeId,
      timezone: home.timezone,
      latitude: home.latitude,
      longitude: home.longitude,
      now: this.deps.clock.now(),
      urlProblem: (url) => this.deps.urls?.problem(url),
      deviceModel: async (id): Promise<CompiledModel | undefined> => {
        if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
        if ((await access.placement(id))?.homeId !== homeId) return undefined;
        const d = await devices.get(id);
        return d ? products.model(d.productKey) : undefined;
      },
      groupExists: async (id) => (await this.deps.groups.groupDevices(homeId, id)) !== undefined,
      automationExists: async (id) => (await store.get(id))?.homeId === homeId,
      isMember: async (userId) => {
        const m = await access.membership(userId, homeId);
        return m !== undefined && m.role !== 'guest';
      },
      ...(scenes ? { sceneExists: (id: string) => scenes.exists(homeId, id) } : {}),
    };
  }

  /**
   * Keeps the timers of schedule and sun triggers in step with the automation: one timer per
   * trigger (`automation:{id}:{index}`) while it is enabled and ok, none otherwise.
   */
  private async syncTimers(a: Automation, home: HomeInfo | undefined, before: Trigger[]): Promise<void> {
    const timers = this.deps.timers;
    if (!timers) return;
    const live = a.enabled && a.status === 'ok' && home !== undefined;
    const keep = new Set<number>();
    if (live) {
      for (let i = 0; i < a.triggers.length; i++) {
        const spec = triggerTimerSpec(a.triggers[i], home);
        if (!spec) continue;
        keep.add(i);
        await timers.upsert({ key: `automation:${a.id}:${i}`, owner: 'automation', shardKey: a.homeId, spec });
      }
    }
    const old = Math.max(before.length, a.triggers.length);
    for (let i = 0; i < old; i++) {
      const t = before[i] ?? a.triggers[i];
      if (keep.has(i) || !t || (!hasTimer(t) && !(a.triggers[i] && hasTimer(a.triggers[i])))) continue;
      await timers.cancel(`automation:${a.id}:${i}`);
    }
  }
}

/** A trigger whose kind sets a timer in the home (schedule, sun). */
function hasTimer(t: Trigger): boolean {
  return triggerKinds.of(t.type)?.timer !== undefined;
}
