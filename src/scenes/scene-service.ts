import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import type { Bus } from '../core/bus/bus.ts';
import { subjects } from '../core/bus/subjects.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { actorOf, type Principal } from '../access/principal.ts';
import type { AuditService } from '../audit/audit-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { PresenceService } from '../devices/presence-service.ts';
import type { ProductService } from '../products/product-service.ts';
import type { ShadowService } from '../shadow/shadow-service.ts';
import type { CommandService } from '../commands/command-service.ts';
import type { AccessService, DeviceRight, HomeNeed } from '../access/access-service.ts';
import type { StreamService } from '../stream/stream-service.ts';
import type { DeviceResult, SceneActivation } from '../core/bus/events.ts';
import { sameValue } from '../core/values.ts';
import type { CompiledModel } from '../products/thing-model.ts';

/** One device's wished-for properties (writable ones, per its thing model). */
export interface SceneState {
  device: string;
  properties: Record<string, unknown>;
}
/** One command to a device. */
export interface SceneAction {
  device: string;
  action: string;
  params?: Record<string, unknown>;
}

/** One activation of a scene and its entries' outcomes (declared in the bus catalogue: they travel on `home.{id}.scene`). */
export type { DeviceResult, SceneActivation };

export interface SceneView {
  id: string;
  homeId: string;
  name: string;
  states: SceneState[];
  actions: SceneAction[];
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

export interface SceneInput {
  name: string;
  states: SceneState[];
  actions?: SceneAction[];
}

export interface ScenePatch {
  name?: string;
  states?: SceneState[];
  actions?: SceneAction[];
}

export interface SceneServiceDeps {
  db: Db;
  bus: Bus;
  log: Logger;
  clock: Clock;
  access: AccessService;
  devices: DeviceService;
  products: ProductService;
  presence: PresenceService;
  shadow: ShadowService;
  commands: CommandService;
  audit: AuditService;
  stream: Pick<StreamService, 'publish'>;
  /** How long an activation waits for each device by default (5 s). */
  defaultTimeoutMs?: number;
  /** Activations kept per scene (50). */
  keepActivations?: number;
}

type SceneRow = Database['scenes'];
type Problem = { field: string; message: string };
/** Thing models of devices in a home (undefined: not in it), looked up once per request. */
type Models = Map<string, Promise<CompiledModel | undefined>>;

const isoOf = (n: number | string) => new Date(Number(n)).toISOString();
const OFFLINE_NOTE = 'the device is offline; the desired state stays set and applies when it reconnects';

/**
 * Scenes: named sets of device states and actions in a home. Saving validates every entry
 * against the devices' thing models; activating applies all devices in parallel (states through
 * the shadow's desired state, waiting until the device reports them; actions as commands) and
 * records one result per entry. An entry's failure is a result, never an exception.
 *
 * A device that left the home is not applied any more: entries of devices that are not in the
 * home now, or joined it again after the scene was last saved, are skipped at activation and
 * left out of views (the next save drops them for good).
 */
export class SceneService {
  private readonly timeoutMs: number;
  private readonly keep: number;

  constructor(private readonly deps: SceneServiceDeps) {
    this.timeoutMs = deps.defaultTimeoutMs ?? 5000;
    this.keep = deps.keepActivations ?? 50;
  }

  // ------------------------------------------------------------------ user-facing

  async create(p: Principal, homeId: string, input: SceneInput): Promise<SceneView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    return this.insert(p, homeId, input);
  }

  /** Validates (with models already looked up, if any) and saves a new scene. */
  private async insert(p: Principal, homeId: string, input: SceneInput, models: Models = new Map()): Promise<SceneView> {
    const { states, actions } = await this.validate(homeId, input.states, input.actions ?? [], undefined, models);
    const now = Date.now();
    const row: SceneRow = {
      id: newId('s'),
      home_id: homeId,
      name: input.name.trim(),
      states: toJson(states),
      actions: toJson(actions),
      created_by: actorOf(p),
      created_at: now,
      updated_at: now,
    };
    await this.deps.db.insertInto('scenes').values(row).execute();
    this.audit(actorOf(p), 'scene.create', row, { name: row.name, states, actions });
    return this.view(p, row);
  }

  /**
   * A scene from the devices' current reported state: every writable property they reported
   * (only those named in `properties`, when given).
   */
  async capture(p: Principal, homeId: string, input: { name: string; devices: string[]; properties?: string[] }): Promise<SceneView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const problems: Problem[] = [];
    const states: SceneState[] = [];
    const only = input.properties ? new Set(input.properties) : undefined;
    const ids = [...new Set(input.devices)];
    const models: Models = new Map();
    for (const id of ids) {
      const field = `body.devices[${input.devices.indexOf(id)}]`;
      const model = await this.modelInHome(homeId, id, models);
      if (!model) {
        problems.push({ field, message: `device "${id}" is not in this home` });
        continue;
      }
      const reported = (await this.deps.shadow.view(id)).reported;
      const properties: Record<string, unknown> = {};
      for (const [key, spec] of model.properties) {
        if (spec.access === 'rw' && key in reported && (!only || only.has(key))) properties[key] = reported[key];
      }
      if (Object.keys(properties).length === 0)
        problems.push({ field, message: `device "${id}" has reported no writable property${only ? ' of those named' : ''}` });
      else states.push({ device: id, properties });
    }
    fail(problems);
    return this.insert(p, homeId, { name: input.name, states }, models);
  }

  async list(p: Principal, homeId: string): Promise<SceneView[]> {
    await this.deps.access.requireHome(p, homeId, 'view');
    const rows = await this.deps.db.selectFrom('scenes').selectAll().where('home_id', '=', homeId).orderBy('created_at').orderBy('id').execute();
    return Promise.all(rows.map((r) => this.view(p, r)));
  }

  async get(p: Principal, sceneId: string): Promise<SceneView> {
    return this.view(p, await this.scene(p, sceneId, 'view'));
  }

  async update(p: Principal, sceneId: string, patch: ScenePatch): Promise<SceneView> {
    const row = await this.scene(p, sceneId, 'configure');
    const current = await this.current(row);
    const { states, actions } = await this.validate(row.home_id, patch.states ?? current.states, patch.actions ?? current.actions, {
      states: patch.states !== undefined,
      actions: patch.actions !== undefined,
    });
    const set = {
      name: patch.name?.trim() ?? row.name,
      states: toJson(states),
      actions: toJson(actions),
      updated_at: Math.max(Date.now(), Number(row.updated_at)),
    };
    await this.deps.db.updateTable('scenes').set(set).where('id', '=', sceneId).execute();
    this.audit(actorOf(p), 'scene.update', row, {
      ...(patch.name !== undefined ? { name: set.name } : {}),
      ...(patch.states !== undefined ? { states } : {}),
      ...(patch.actions !== undefined ? { actions } : {}),
    });
    return this.view(p, { ...row, ...set });
  }

  /** The home was deleted: its scenes and their activations go. */
  async homeDeleted(homeId: string): Promise<void> {
    await this.deps.db.transaction().execute(async (trx) => {
      await trx
        .deleteFrom('scene_activations')
        .where('scene_id', 'in', trx.selectFrom('scenes').select('id').where('home_id', '=', homeId))
        .execute();
      await trx.deleteFrom('scenes').where('home_id', '=', homeId).execute();
    });
  }

  async delete(p: Principal, sceneId: string): Promise<void> {
    const row = await this.scene(p, sceneId, 'configure');
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('scene_activations').where('scene_id', '=', sceneId).execute();
      await trx.deleteFrom('scenes').where('id', '=', sceneId).execute();
    });
    this.audit(actorOf(p), 'scene.delete', row, { name: row.name });
  }

  /**
   * Activates a scene for a member who may control the home. Devices the caller may not
   * control are reported as failed and never touched. The result shows only devices the caller
   * may see (the stored activation has them all).
   */
  async activate(p: Principal, sceneId: string, opts: { timeoutMs?: number } = {}): Promise<SceneActivation> {
    const row = await this.scene(p, sceneId, 'control');
    const rights = new Map<string, Promise<DeviceRight>>();
    const a = await this.run(row, actorOf(p), { p, rights }, opts.timeoutMs);
    return this.activationView(p, a, rights);
  }

  /** The scene's recent activations, newest first. */
  async activations(p: Principal, sceneId: string, limit = 50): Promise<SceneActivation[]> {
    await this.scene(p, sceneId, 'view');
    const rows = await this.deps.db.selectFrom('scene_activations').selectAll().where('scene_id', '=', sceneId).orderBy('seq', 'desc').limit(limit).execute();
    return Promise.all(
      rows.map((r) =>
        this.activationView(p, {
          id: r.id,
          sceneId: r.scene_id,
          homeId: r.home_id,
          source: r.source,
          at: Number(r.at),
          ok: Number(r.ok) === 1,
          results: fromJson<DeviceResult[]>(r.results),
        }),
      ),
    );
  }

  // ------------------------------------------------------------------ for automations

  /** For automations: activates without a principal (the caller already checked the home). */
  async activateAs(source: string, homeId: string, sceneId: string, opts: { timeoutMs?: number } = {}): Promise<SceneActivation> {
    const row = await this.deps.db.selectFrom('scenes').selectAll().where('id', '=', sceneId).where('home_id', '=', homeId).executeTakeFirst();
    if (!row) throw new HearthError('E_SCENE_NOT_FOUND', `scene "${sceneId}" does not exist`);
    return this.run(row, source, undefined, opts.timeoutMs);
  }

  /** For automations' validation: the scene exists in this home. */
  async exists(homeId: string, sceneId: string): Promise<boolean> {
    const row = await this.deps.db.selectFrom('scenes').select('id').where('id', '=', sceneId).where('home_id', '=', homeId).executeTakeFirst();
    return row !== undefined;
  }

  // ------------------------------------------------------------------ activation

  /** `caller`: the principal activating it (devices they may not control are refused) and their rights, memoised. */
  private async run(
    row: SceneRow,
    source: string,
    caller: { p: Principal; rights: Map<string, Promise<DeviceRight>> } | undefined,
    timeoutMs = this.timeoutMs,
  ): Promise<SceneActivation> {
    const at = this.deps.clock.now();
    const { states, actions } = await this.current(row);
    const byDevice = new Map<string, { state?: SceneState; actions: SceneAction[] }>();
    const entry = (id: string) => byDevice.get(id) ?? byDevice.set(id, { actions: [] }).get(id)!;
    for (const s of states) entry(s.device).state = s;
    for (const a of actions) entry(a.device).actions.push(a);
    // Devices in parallel; a device's state before its actions.
    const perDevice = await Promise.all(
      [...byDevice].map(async ([device, e]) => {
        const out: DeviceResult[] = [];
        const refused = caller ? refusal(device, await this.right(caller.p, device, caller.rights)) : undefined;
        if (e.state) out.push(refused ? failed(device, 'state', refused) : await this.applyState(e.state, timeoutMs));
        for (const a of e.actions)
          out.push(refused ? { ...failed(device, 'action', refused), action: a.action } : await this.applyAction(a, source, timeoutMs));
        return out;
      }),
    );
    const results = perDevice.flat();
    const activation: SceneActivation = { id: newId('sa'), sceneId: row.id, homeId: row.home_id, source, at, ok: results.every((r) => r.ok), results };
    try {
      await this.deps.db.transaction().execute(async (trx) => {
        const last = await trx
          .selectFrom('scene_activations')
          .select((eb) => eb.fn.max('seq').as('seq'))
          .where('scene_id', '=', row.id)
          .executeTakeFirst();
        await trx
          .insertInto('scene_activations')
          .values({
            id: activation.id,
            scene_id: row.id,
            seq: Number(last?.seq ?? 0) + 1,
            home_id: row.home_id,
            source,
            at,
            ok: activation.ok ? 1 : 0,
            results: toJson(results),
          })
          .execute();
        const old = await trx
          .selectFrom('scene_activations')
          .select('id')
          .where('scene_id', '=', row.id)
          .orderBy('seq', 'desc')
          .offset(this.keep)
          .limit(1000)
          .execute();
        if (old.length)
          await trx
            .deleteFrom('scene_activations')
            .where(
              'id',
              'in',
              old.map((o) => o.id),
            )
            .execute();
      });
    } catch (err) {
      // The devices were acted on already: the activation is still announced and answered.
      this.deps.log.error({ err, sceneId: row.id }, 'scene activation could not be recorded');
    }
    this.deps.bus.publish(subjects.sceneActivated(row.home_id), activation);
    // Everyone who may view the home gets the stream event, guests too: counts only, no device ids
    // (GET /scenes/{id}/activations shows each caller the devices they may see).
    const counts: Partial<Record<DeviceResult['status'], number>> = {};
    for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
    this.deps.stream.publish('scene', null, row.home_id, { id: activation.id, sceneId: row.id, name: row.name, source, ok: activation.ok, counts }, at);
    this.audit(source, 'scene.activate', row, {
      activationId: activation.id,
      ok: activation.ok,
      results: results.map((r) => ({ device: r.device, kind: r.kind, status: r.status })),
    });
    return activation;
  }

  private async applyState(s: SceneState, timeoutMs: number): Promise<DeviceResult> {
    const { clock, bus, shadow, presence } = this.deps;
    const started = clock.now();
    const ms = () => clock.now() - started;
    const want = s.properties;
    const reached = (reported: Record<string, unknown>) => Object.keys(want).every((k) => sameValue(reported[k], want[k]));
    let resolveReached!: () => void;
    const done = new Promise<void>((r) => (resolveReached = r));
    const seen: Record<string, unknown> = {};
    // Listen before setting: the device may answer before setDesired returns.
    const unsub = bus.subscribe(
      subjects.reported(s.device),
      (msg) => {
        Object.assign(seen, msg.data.values);
        if (reached(seen)) resolveReached();
      },
      { name: 'scenes.reported' },
    );
    let cancel: (() => void) | undefined;
    try {
      const view = await shadow.setDesired(s.device, want);
      Object.assign(seen, { ...view.reported, ...seen });
      if (reached(seen)) return { device: s.device, ok: true, status: 'applied', ms: ms(), kind: 'state' };
      if (!(await presence.get(s.device)).online) {
        return { device: s.device, ok: false, status: 'offline', ms: ms(), kind: 'state', note: OFFLINE_NOTE };
      }
      const timedOut = new Promise<'timeout'>((r) => (cancel = clock.setTimer(() => r('timeout'), timeoutMs)));
      const outcome = await Promise.race([done.then(() => 'applied' as const), timedOut]);
      // A report may have come before the subscription was in place (a bus between nodes): the shadow knows.
      if (outcome === 'applied' || reached({ ...(await shadow.view(s.device)).reported }))
        return { device: s.device, ok: true, status: 'applied', ms: ms(), kind: 'state' };
      const missing = Object.keys(want).filter((k) => !sameValue(seen[k], want[k]));
      return {
        device: s.device,
        ok: false,
        status: 'timeout',
        ms: ms(),
        kind: 'state',
        error: `the device did not report ${missing.join(', ')} within ${timeoutMs} ms`,
      };
    } catch (err) {
      if (!isHearthError(err)) this.deps.log.error({ err, deviceId: s.device }, 'scene state could not be applied');
      return { ...failed(s.device, 'state', errorText(err)), ms: ms() };
    } finally {
      cancel?.();
      unsub();
    }
  }

  private async applyAction(a: SceneAction, source: string, timeoutMs: number): Promise<DeviceResult> {
    const started = this.deps.clock.now();
    const base = { device: a.device, kind: 'action' as const, action: a.action };
    try {
      const out = await this.deps.commands.send(a.device, { action: a.action, ...(a.params ? { params: a.params } : {}), timeoutMs }, source);
      const ms = this.deps.clock.now() - started;
      return out.ok
        ? { ...base, ok: true, status: 'applied', ms }
        : { ...base, ok: false, status: 'failed', ms, error: out.error ?? 'the device answered not ok' };
    } catch (err) {
      if (!isHearthError(err)) this.deps.log.error({ err, deviceId: a.device }, 'scene action could not be sent');
      const ms = this.deps.clock.now() - started;
      const status =
        isHearthError(err) && err.code === 'E_DEVICE_OFFLINE' ? 'offline' : isHearthError(err) && err.code === 'E_COMMAND_TIMEOUT' ? 'timeout' : 'failed';
      return { ...base, ok: false, status, ms, error: errorText(err) };
    }
  }

  // ------------------------------------------------------------------ validation

  /**
   * Checks every entry (the device is in the home; properties exist, are writable and fit;
   * actions and their parameters fit) and throws one E_VALIDATION naming every bad part.
   * `checked` says which lists came with the request (so their problems are named as body
   * fields); entries kept from the stored scene are only pruned of devices that left.
   */
  private async validate(
    homeId: string,
    states: SceneState[],
    actions: SceneAction[],
    given = { states: true, actions: true },
    models: Models = new Map(),
  ): Promise<{ states: SceneState[]; actions: SceneAction[] }> {
    const problems: Problem[] = [];
    const seen = new Set<string>();
    for (const [i, s] of states.entries()) {
      const field = `body.states[${i}]`;
      if (seen.has(s.device))
        problems.push({
          field: `${field}.device`,
          message: `device "${s.device}" has a state already (states[${states.findIndex((x) => x.device === s.device)}])`,
        });
      seen.add(s.device);
      const model = await this.modelInHome(homeId, s.device, models);
      if (!model) {
        problems.push({ field: `${field}.device`, message: `device "${s.device}" is not in this home` });
        continue;
      }
      if (Object.keys(s.properties).length === 0) problems.push({ field: `${field}.properties`, message: 'names no property' });
      for (const [key, value] of Object.entries(s.properties)) {
        const why = model.checkDesired({ [key]: value });
        if (!why.ok) problems.push({ field: `${field}.properties.${key}`, message: why.problems.map((x) => x.replace(`property "${key}": `, '')).join('; ') });
        else if (value === null) problems.push({ field: `${field}.properties.${key}`, message: 'a scene sets values; null is not one' });
      }
    }
    for (const [i, a] of actions.entries()) {
      const field = `body.actions[${i}]`;
      const model = await this.modelInHome(homeId, a.device, models);
      if (!model) {
        problems.push({ field: `${field}.device`, message: `device "${a.device}" is not in this home` });
        continue;
      }
      const why = model.checkAction(a.action, a.params ?? {});
      if (!why.ok) problems.push({ field: model.actions.has(a.action) ? `${field}.params` : `${field}.action`, message: why.problems.join('; ') });
    }
    if ((given.states || given.actions) && states.length === 0 && actions.length === 0) {
      problems.push({ field: given.states ? 'body.states' : 'body.actions', message: 'a scene needs at least one state or action' });
    }
    // Only the lists that came with the request can be wrong; stored entries of devices gone are dropped.
    const mine = problems.filter((x) => (x.field.startsWith('body.states') ? given.states : given.actions));
    fail(mine);
    const bad = new Set(problems.map((x) => x.field.replace(/\].*$/, ']')));
    return {
      states: states.filter((_, i) => !bad.has(`body.states[${i}]`)),
      actions: actions
        .filter((_, i) => !bad.has(`body.actions[${i}]`))
        .map((a) => ({ device: a.device, action: a.action, ...(a.params && Object.keys(a.params).length ? { params: a.params } : {}) })),
    };
  }

  /** The thing model of a device in the home, or undefined when it is not in the home; memoised in `models`. */
  private modelInHome(homeId: string, deviceId: string, models: Models): Promise<CompiledModel | undefined> {
    let m = models.get(deviceId);
    if (!m) {
      m = (async () => {
        if ((await this.deps.access.placement(deviceId))?.homeId !== homeId) return undefined;
        const device = await this.deps.devices.get(deviceId);
        return device ? this.deps.products.model(device.productKey) : undefined;
      })();
      models.set(deviceId, m);
    }
    return m;
  }

  /** The stored entries that still apply: of devices in the home since before the scene was last saved. */
  private async current(row: SceneRow): Promise<{ states: SceneState[]; actions: SceneAction[] }> {
    const still = new Map<string, boolean>();
    const applies = async (id: string) => {
      let v = still.get(id);
      if (v === undefined) {
        const place = await this.deps.access.placement(id);
        v = place?.homeId === row.home_id && place.boundAt <= Number(row.updated_at);
        still.set(id, v);
      }
      return v;
    };
    const states: SceneState[] = [];
    for (const s of fromJson<SceneState[]>(row.states)) if (await applies(s.device)) states.push(s);
    const actions: SceneAction[] = [];
    for (const a of fromJson<SceneAction[]>(row.actions)) if (await applies(a.device)) actions.push(a);
    return { states, actions };
  }

  // ------------------------------------------------------------------ helpers

  /** A scene the caller may use as `need` requires; scenes of homes they cannot see do not exist. */
  private async scene(p: Principal, sceneId: string, need: HomeNeed): Promise<SceneRow> {
    const row = await this.deps.db.selectFrom('scenes').selectAll().where('id', '=', sceneId).executeTakeFirst();
    const notFound = () => new HearthError('E_SCENE_NOT_FOUND', `scene "${sceneId}" does not exist`);
    if (!row) throw notFound();
    await this.deps.access.requireHomeOf(p, row.home_id, need, notFound);
    return row;
  }

  private async view(p: Principal, row: SceneRow): Promise<SceneView> {
    const { states, actions } = await this.current(row);
    const visible = await this.visible(p, [...states.map((s) => s.device), ...actions.map((a) => a.device)]);
    return {
      id: row.id,
      homeId: row.home_id,
      name: row.name,
      states: states.filter((s) => visible.has(s.device)),
      actions: actions.filter((a) => visible.has(a.device)),
      createdBy: row.created_by,
      createdAt: isoOf(row.created_at),
      updatedAt: isoOf(row.updated_at),
    };
  }

  private async activationView(p: Principal, a: SceneActivation, rights = new Map<string, Promise<DeviceRight>>()): Promise<SceneActivation> {
    const visible = await this.visible(
      p,
      a.results.map((r) => r.device),
      rights,
    );
    return { ...a, results: a.results.filter((r) => visible.has(r.device)) };
  }

  /** The devices the caller has any right on (a guest sees only their own). */
  private async visible(p: Principal, ids: string[], rights = new Map<string, Promise<DeviceRight>>()): Promise<Set<string>> {
    const out = new Set<string>();
    for (const id of new Set(ids)) if ((await this.right(p, id, rights)) !== 'none') out.add(id);
    return out;
  }

  /** The caller's right on a device ('none' when it does not exist), memoised in `rights` for one request. */
  private right(p: Principal, id: string, rights: Map<string, Promise<DeviceRight>>): Promise<DeviceRight> {
    let r = rights.get(id);
    if (!r) {
      r = (async () => {
        const d = await this.deps.devices.get(id);
        return d ? this.deps.access.deviceRight(p, d) : 'none';
      })();
      rights.set(id, r);
    }
    return r;
  }

  private audit(actor: string, action: string, row: SceneRow, details: Record<string, unknown>): void {
    this.deps.audit.record({ actor, action, homeId: row.home_id, targetType: 'scene', targetId: row.id, details });
  }
}

/** Why a caller with `right` on the device may not control it (as AccessService.requireDevice words it), or undefined when they may. */
function refusal(device: string, right: DeviceRight): string | undefined {
  if (right === 'none') return `not allowed: device "${device}" does not exist`;
  if (right === 'view') return 'not allowed: control on this device needs more than your view access';
  return undefined;
}

function failed(device: string, kind: 'state' | 'action', error: string): DeviceResult {
  return { device, ok: false, status: 'failed', ms: 0, kind, error };
}

function errorText(err: unknown): string {
  return isHearthError(err) ? err.message : 'the device could not be reached';
}

/** Throws one E_VALIDATION naming every problem (the first as `field`). */
function fail(problems: Problem[]): void {
  if (problems.length === 0) return;
  throw new HearthError('E_VALIDATION', problems.map((x) => `${x.field}: ${x.message}`).join('; '), { field: problems[0]!.field, errors: problems });
}
