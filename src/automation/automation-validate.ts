import type { TObject } from 'typebox';
import type { TimerSpec } from '../timers/timer-spec.ts';
import { checkValue, type CompiledModel, type ValueSpec } from '../products/thing-model.ts';
import { RUN_MODES, parseDuration } from './automation-values.ts';
import { fieldsOf, type Checker, type TimerHome } from './automation-plugins.ts';
import { triggerKinds } from './triggers/index.ts';
import { conditionKinds } from './conditions/index.ts';
import { actionKinds } from './actions/index.ts';
import type { Action, AutomationInput, Condition, Trigger } from './automation-types.ts';

/** One thing wrong with an automation: the path of the bad part and why. */
export interface Problem {
  field: string;
  message: string;
}

/** What validation needs to know about the automation's home. Every lookup is about this home only. */
export interface HomeContext {
  homeId: string;
  timezone: string;
  latitude: number | null;
  longitude: number | null;
  /** The compiled model of a device placed in this home; undefined when it is not in the home. */
  deviceModel(deviceId: string): Promise<CompiledModel | undefined>;
  /** undefined when scenes are not available on this installation. */
  sceneExists?: (sceneId: string) => Promise<boolean>;
  groupExists(groupId: string): Promise<boolean>;
  automationExists(automationId: string): Promise<boolean>;
  /** A member of the home (for notify `users`). */
  isMember(userId: string): Promise<boolean>;
  /** Now (epoch ms): a cron pattern must match a date after it. */
  now: number;
  /** What is wrong with a webhook URL's host on this installation (UrlPolicy.problem). */
  urlProblem?: (url: string) => string | undefined;
}

/**
 * The timer a schedule or sun trigger sets in the home (its time zone and place), or undefined
 * for other triggers and for what cannot be read (a sun trigger of a home without a location,
 * an unreadable "at" or offset). The AutomationService sets these timers; validation checks them
 * with the TimerService's own `specProblem`, so that what passes here is never refused there.
 */
export function triggerTimerSpec(t: Trigger, home: TimerHome): TimerSpec | undefined {
  return triggerKinds.of(t.type)?.timer?.(t, home);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const MAX_LIST = 50;

/**
 * Checks an automation against its home and the thing models, collecting every problem (not only
 * the first), each with the path of the bad part: `actions[2].params.brightness: 150 is above the maximum 100`.
 */
export async function validateAutomation(a: AutomationInput, ctx: HomeContext): Promise<Problem[]> {
  const v = new Validator(ctx);
  await v.automation(a);
  return v.problems;
}

class Validator implements Checker {
  readonly problems: Problem[] = [];
  private readonly models = new Map<string, Promise<CompiledModel | undefined>>();

  constructor(readonly home: HomeContext) {}

  bad(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  hasProblemUnder(prefix: string): boolean {
    return this.problems.some((p) => p.field.startsWith(prefix));
  }

  private model(id: string): Promise<CompiledModel | undefined> {
    let m = this.models.get(id);
    if (!m) this.models.set(id, (m = this.home.deviceModel(id)));
    return m;
  }

  /** The device's model, or a problem at `path.device`. */
  async device(o: object, path: string): Promise<CompiledModel | undefined> {
    const x = o as Record<string, unknown>;
    if (typeof x.device !== 'string' || !x.device) {
      this.bad(`${path}.device`, 'is required: the id of a device of this home');
      return undefined;
    }
    const m = await this.model(x.device);
    if (!m) this.bad(`${path}.device`, `device "${x.device}" is not in this home`);
    return m;
  }

  duration(v: unknown, path: string, signed = false): void {
    if (v !== undefined && parseDuration(v, signed) === undefined) this.bad(path, 'must be a duration: seconds, or text like "90s", "5m", "1h30m", "00:05:00"');
  }

  needsLocation(path: string): void {
    if (this.home.latitude == null || this.home.longitude == null)
      this.bad(path, 'the home has no location (set latitude and longitude on the home) for sun times');
  }

  unknownKeys(o: object, path: string, schema: TObject): void {
    const x = o as Record<string, unknown>;
    const allowed = fieldsOf(schema);
    for (const k of Object.keys(x))
      if (!allowed.includes(k)) this.bad(`${path}.${k}`, `is not a field of a ${String(x.type)} ${path.split('[')[0].replace(/s$/, '')}`);
  }

  async automation(a: AutomationInput): Promise<void> {
    if (a.mode !== undefined && !RUN_MODES.includes(a.mode)) this.bad('mode', `must be one of ${RUN_MODES.join(', ')}`);
    if (a.max !== undefined && (!Number.isInteger(a.max) || a.max < 1 || a.max > 100)) this.bad('max', 'must be an integer from 1 to 100');
    this.duration(a.cooldown, 'cooldown');
    if (!Array.isArray(a.triggers) || a.triggers.length === 0) this.bad('triggers', 'needs at least one trigger');
    else if (a.triggers.length > MAX_LIST) this.bad('triggers', `at most ${MAX_LIST}`);
    else for (let i = 0; i < a.triggers.length; i++) await this.trigger(a.triggers[i], `triggers[${i}]`);
    if (a.conditions !== undefined) await this.conditions(a.conditions, 'conditions', 0);
    if (!Array.isArray(a.actions) || a.actions.length === 0) this.bad('actions', 'needs at least one action');
    else await this.actions(a.actions, 'actions', 0);
  }

  private async trigger(t: Trigger, path: string): Promise<void> {
    if (!isObject(t)) return this.bad(path, 'must be an object with a "type"');
    const kind = triggerKinds.of(t.type);
    if (!kind) return this.bad(`${path}.type`, `must be one of ${triggerKinds.types.join(', ')}`);
    await kind.check(t, path, this);
  }

  property(m: CompiledModel, id: unknown, path: string, device: string): ValueSpec | undefined {
    if (typeof id !== 'string') {
      this.bad(path, "is required: the name of one of the device's properties");
      return undefined;
    }
    const spec = m.properties.get(id);
    if (!spec) this.bad(path, `device "${device}" has no property "${id}" (it has: ${[...m.properties.keys()].join(', ')})`);
    return spec;
  }

  value(spec: ValueSpec, v: unknown, path: string): void {
    const why = checkValue(spec, v);
    if (why) this.bad(path, `${why} (property "${spec.id}" is ${spec.type}${spec.values ? ` of ${spec.values.join(', ')}` : ''})`);
  }

  range(spec: ValueSpec, above: unknown, below: unknown, path: string): void {
    if (above === undefined && below === undefined) return;
    if (spec.type !== 'integer' && spec.type !== 'number') {
      this.bad(`${path}.${above !== undefined ? 'above' : 'below'}`, `property "${spec.id}" is ${spec.type}: above/below need a number property`);
      return;
    }
    if (above !== undefined && (typeof above !== 'number' || !Number.isFinite(above))) this.bad(`${path}.above`, 'must be a number');
    if (below !== undefined && (typeof below !== 'number' || !Number.isFinite(below))) this.bad(`${path}.below`, 'must be a number');
    if (typeof above === 'number' && typeof below === 'number' && above >= below)
      this.bad(`${path}.above`, `must be less than below (${below}): nothing is above ${above} and below ${below}`);
  }

  params(specs: ValueSpec[] | undefined, params: Record<string, unknown>, path: string, what: string, requireAll = false): void {
    const byId = new Map((specs ?? []).map((s) => [s.id, s]));
    for (const [k, v] of Object.entries(params)) {
      const spec = byId.get(k);
      if (!spec) this.bad(`${path}.${k}`, `${what} has no parameter "${k}"${byId.size ? ` (it has: ${[...byId.keys()].join(', ')})` : ''}`);
      else {
        const why = checkValue(spec, v);
        if (why) this.bad(`${path}.${k}`, why);
      }
    }
    if (requireAll) for (const s of specs ?? []) if (s.required && !(s.id in params)) this.bad(`${path}.${s.id}`, `is required by ${what}`);
  }

  async scene(id: unknown, path: string): Promise<void> {
    if (typeof id !== 'string' || !id) return this.bad(path, 'is required: the id of a scene of this home');
    if (!this.home.sceneExists) return this.bad(path, 'scenes are not available on this installation');
    if (!(await this.home.sceneExists(id))) this.bad(path, `scene "${id}" is not in this home`);
  }

  async conditions(list: unknown, path: string, depth: number): Promise<void> {
    if (!Array.isArray(list)) return this.bad(path, 'must be a list of conditions');
    if (list.length > MAX_LIST) return this.bad(path, `at most ${MAX_LIST}`);
    for (let i = 0; i < list.length; i++) await this.condition(list[i] as Condition, `${path}[${i}]`, depth);
  }

  private async condition(c: Condition, path: string, depth: number): Promise<void> {
    if (!isObject(c)) return this.bad(path, 'must be an object with a "type"');
    const kind = conditionKinds.of(c.type);
    if (!kind) return this.bad(`${path}.type`, `must be one of ${conditionKinds.types.join(', ')}`);
    await kind.check(c, path, this, depth);
  }

  async actions(list: unknown, path: string, depth: number): Promise<void> {
    if (!Array.isArray(list)) return this.bad(path, 'must be a list of actions');
    if (list.length > MAX_LIST) return this.bad(path, `at most ${MAX_LIST}`);
    for (let i = 0; i < list.length; i++) await this.action(list[i] as Action, `${path}[${i}]`, depth);
  }

  private async action(a: Action, path: string, depth: number): Promise<void> {
    if (!isObject(a)) return this.bad(path, 'must be an object with a "type"');
    const kind = actionKinds.of(a.type);
    if (!kind) return this.bad(`${path}.type`, `must be one of ${actionKinds.types.join(', ')}`);
    if (a.alias !== undefined && (typeof a.alias !== 'string' || a.alias.length > 200)) this.bad(`${path}.alias`, 'must be a string of at most 200 characters');
    if (a.continueOnError !== undefined && typeof a.continueOnError !== 'boolean') this.bad(`${path}.continueOnError`, 'must be true or false');
    await kind.check(a, path, this, depth);
  }
}
