import { MAX_SUN_OFFSET_MS, parseDateTime, specProblem, type TimerSpec } from '../timers/timer-spec.ts';
import { checkValue, type CompiledModel, type ValueSpec } from '../products/thing-model.ts';
import {
  ACTION_TYPES, CONDITION_TYPES, RUN_MODES, TRIGGER_TYPES, WEEKDAYS, parseDuration, parseTimeOfDay,
  type Action, type AutomationInput, type Condition, type Trigger,
} from './automation-types.ts';

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
export function triggerTimerSpec(t: Trigger, home: { timezone: string; latitude: number | null; longitude: number | null }): TimerSpec | undefined {
  if (t.type === 'schedule') {
    if (typeof t.cron === 'string') return { kind: 'cron', cron: t.cron, timezone: home.timezone };
    const at = typeof t.at === 'string' ? parseDateTime(t.at, home.timezone) : undefined;
    return at === undefined ? undefined : { kind: 'at', at };
  }
  if (t.type === 'sun' && home.latitude != null && home.longitude != null) {
    const offsetMs = parseDuration(t.offset ?? 0, true);
    if (offsetMs === undefined) return undefined;
    return { kind: 'sun', event: t.event, offsetMs, latitude: home.latitude, longitude: home.longitude, timezone: home.timezone };
  }
  return undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const MAX_LIST = 50;
const MAX_DEPTH = 6;

/**
 * Checks an automation against its home and the thing models, collecting every problem (not only
 * the first), each with the path of the bad part: `actions[2].params.brightness: 150 is above the maximum 100`.
 */
export async function validateAutomation(a: AutomationInput, ctx: HomeContext): Promise<Problem[]> {
  const v = new Validator(ctx);
  await v.automation(a);
  return v.problems;
}

class Validator {
  readonly problems: Problem[] = [];
  private readonly models = new Map<string, Promise<CompiledModel | undefined>>();

  constructor(private readonly ctx: HomeContext) {}

  private bad(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  private model(id: string): Promise<CompiledModel | undefined> {
    let m = this.models.get(id);
    if (!m) this.models.set(id, (m = this.ctx.deviceModel(id)));
    return m;
  }

  /** The device's model, or a problem at `path.device`. */
  private async device(x: Record<string, unknown>, path: string): Promise<CompiledModel | undefined> {
    if (typeof x.device !== 'string' || !x.device) {
      this.bad(`${path}.device`, 'is required: the id of a device of this home');
      return undefined;
    }
    const m = await this.model(x.device);
    if (!m) this.bad(`${path}.device`, `device "${x.device}" is not in this home`);
    return m;
  }

  private duration(v: unknown, path: string, signed = false): void {
    if (v !== undefined && parseDuration(v, signed) === undefined) this.bad(path, 'must be a duration: seconds, or text like "90s", "5m", "1h30m", "00:05:00"');
  }

  private needsLocation(path: string): void {
    if (this.ctx.latitude == null || this.ctx.longitude == null) this.bad(path, 'the home has no location (set latitude and longitude on the home) for sun times');
  }

  private unknownKeys(x: Record<string, unknown>, path: string, allowed: string[]): void {
    for (const k of Object.keys(x)) if (!allowed.includes(k)) this.bad(`${path}.${k}`, `is not a field of a ${String(x.type)} ${path.split('[')[0].replace(/s$/, '')}`);
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
    const x = t as unknown as Record<string, unknown>;
    if (!TRIGGER_TYPES.includes(t.type)) return this.bad(`${path}.type`, `must be one of ${TRIGGER_TYPES.join(', ')}`);
    switch (t.type) {
      case 'property': {
        this.unknownKeys(x, path, ['type', 'device', 'property', 'to', 'from', 'above', 'below', 'for']);
        const m = await this.device(x, path);
        const spec = m ? this.property(m, t.property, `${path}.property`, t.device) : undefined;
        if (spec) {
          if (t.to !== undefined) this.value(spec, t.to, `${path}.to`);
          if (t.from !== undefined) this.value(spec, t.from, `${path}.from`);
          this.range(spec, t.above, t.below, path);
        }
        this.duration(t.for, `${path}.for`);
        break;
      }
      case 'event': {
        this.unknownKeys(x, path, ['type', 'device', 'event', 'params']);
        const m = await this.device(x, path);
        if (typeof t.event !== 'string') this.bad(`${path}.event`, 'is required: the name of one of the device\'s events');
        else if (m) {
          const spec = m.events.get(t.event);
          if (!spec) this.bad(`${path}.event`, `device "${t.device}" has no event "${t.event}" (it has: ${[...m.events.keys()].join(', ') || 'none'})`);
          else if (t.params !== undefined) {
            if (!isObject(t.params)) this.bad(`${path}.params`, 'must be an object');
            else this.params(spec.params, t.params, `${path}.params`, `event "${t.event}"`);
          }
        }
        break;
      }
      case 'online':
      case 'offline':
        this.unknownKeys(x, path, ['type', 'device', 'for']);
        await this.device(x, path);
        this.duration(t.for, `${path}.for`);
        break;
      case 'schedule': {
        this.unknownKeys(x, path, ['type', 'cron', 'at']);
        if ((t.cron === undefined) === (t.at === undefined)) return this.bad(path, 'needs either "cron" or "at"');
        if (t.cron !== undefined && typeof t.cron !== 'string') return this.bad(`${path}.cron`, 'is not a cron expression: must be a string');
        const spec = triggerTimerSpec(t, this.ctx);
        if (!spec) return this.bad(`${path}.at`, 'must be an ISO 8601 date-time such as "2026-12-24T18:00" (the home\'s time) or "2026-12-24T17:00:00Z"');
        const why = specProblem(spec, this.ctx.now);
        if (why) this.bad(`${path}.${spec.kind === 'cron' ? 'cron' : 'at'}`, spec.kind === 'cron' && !why.endsWith('matches no date') ? `is not a cron expression: ${why}` : why);
        break;
      }
      case 'sun': {
        this.unknownKeys(x, path, ['type', 'event', 'offset']);
        if (t.event !== 'sunrise' && t.event !== 'sunset') this.bad(`${path}.event`, 'must be "sunrise" or "sunset"');
        this.duration(t.offset, `${path}.offset`, true);
        this.needsLocation(path);
        const spec = t.event === 'sunrise' || t.event === 'sunset' ? triggerTimerSpec(t, this.ctx) : undefined;
        const why = spec && specProblem(spec, this.ctx.now);
        if (why && spec?.kind === 'sun' && Math.abs(spec.offsetMs) > MAX_SUN_OFFSET_MS) this.bad(`${path}.offset`, `must be within ${MAX_SUN_OFFSET_MS / 3_600_000}h before or after ${t.event}`);
        else if (why) this.bad(path, why);
        break;
      }
      case 'scene':
        this.unknownKeys(x, path, ['type', 'scene']);
        await this.scene(t.scene, `${path}.scene`);
        break;
      case 'manual':
      case 'webhook':
        this.unknownKeys(x, path, ['type']);
        break;
    }
  }

  private property(m: CompiledModel, id: unknown, path: string, device: string): ValueSpec | undefined {
    if (typeof id !== 'string') {
      this.bad(path, 'is required: the name of one of the device\'s properties');
      return undefined;
    }
    const spec = m.properties.get(id);
    if (!spec) this.bad(path, `device "${device}" has no property "${id}" (it has: ${[...m.properties.keys()].join(', ')})`);
    return spec;
  }

  private value(spec: ValueSpec, v: unknown, path: string): void {
    const why = checkValue(spec, v);
    if (why) this.bad(path, `${why} (property "${spec.id}" is ${spec.type}${spec.values ? ` of ${spec.values.join(', ')}` : ''})`);
  }

  private range(spec: ValueSpec, above: unknown, below: unknown, path: string): void {
    if (above === undefined && below === undefined) return;
    if (spec.type !== 'integer' && spec.type !== 'number') {
      this.bad(`${path}.${above !== undefined ? 'above' : 'below'}`, `property "${spec.id}" is ${spec.type}: above/below need a number property`);
      return;
    }
    if (above !== undefined && (typeof above !== 'number' || !Number.isFinite(above))) this.bad(`${path}.above`, 'must be a number');
    if (below !== undefined && (typeof below !== 'number' || !Number.isFinite(below))) this.bad(`${path}.below`, 'must be a number');
    if (typeof above === 'number' && typeof below === 'number' && above >= below) this.bad(`${path}.above`, `must be less than below (${below}): nothing is above ${above} and below ${below}`);
  }

  private params(specs: ValueSpec[] | undefined, params: Record<string, unknown>, path: string, what: string, requireAll = false): void {
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

  private async scene(id: unknown, path: string): Promise<void> {
    if (typeof id !== 'string' || !id) return this.bad(path, 'is required: the id of a scene of this home');
    if (!this.ctx.sceneExists) return this.bad(path, 'scenes are not available on this installation');
    if (!(await this.ctx.sceneExists(id))) this.bad(path, `scene "${id}" is not in this home`);
  }

  private async conditions(list: unknown, path: string, depth: number): Promise<void> {
    if (!Array.isArray(list)) return this.bad(path, 'must be a list of conditions');
    if (list.length > MAX_LIST) return this.bad(path, `at most ${MAX_LIST}`);
    for (let i = 0; i < list.length; i++) await this.condition(list[i] as Condition, `${path}[${i}]`, depth);
  }

  private async condition(c: Condition, path: string, depth: number): Promise<void> {
    if (!isObject(c)) return this.bad(path, 'must be an object with a "type"');
    const x = c as unknown as Record<string, unknown>;
    if (!CONDITION_TYPES.includes(c.type)) return this.bad(`${path}.type`, `must be one of ${CONDITION_TYPES.join(', ')}`);
    switch (c.type) {
      case 'property': {
        this.unknownKeys(x, path, ['type', 'device', 'property', 'equals', 'notEquals', 'above', 'below', 'oneOf']);
        const m = await this.device(x, path);
        const spec = m ? this.property(m, c.property, `${path}.property`, c.device) : undefined;
        if (c.equals === undefined && c.notEquals === undefined && c.above === undefined && c.below === undefined && c.oneOf === undefined) {
          this.bad(path, 'needs a comparison: equals, notEquals, above, below or oneOf');
        }
        if (spec) {
          if (c.equals !== undefined) this.value(spec, c.equals, `${path}.equals`);
          if (c.notEquals !== undefined) this.value(spec, c.notEquals, `${path}.notEquals`);
          if (c.oneOf !== undefined) {
            if (!Array.isArray(c.oneOf) || c.oneOf.length === 0) this.bad(`${path}.oneOf`, 'must be a non-empty list of values');
            else c.oneOf.forEach((v, i) => this.value(spec, v, `${path}.oneOf[${i}]`));
          }
          this.range(spec, c.above, c.below, path);
        }
        break;
      }
      case 'time':
        this.unknownKeys(x, path, ['type', 'after', 'before', 'weekdays']);
        if (c.after === undefined && c.before === undefined && c.weekdays === undefined) this.bad(path, 'needs after, before or weekdays');
        if (c.after !== undefined && parseTimeOfDay(c.after) === undefined) this.bad(`${path}.after`, 'must be a local time "HH:MM" or "HH:MM:SS"');
        if (c.before !== undefined && parseTimeOfDay(c.before) === undefined) this.bad(`${path}.before`, 'must be a local time "HH:MM" or "HH:MM:SS"');
        if (c.weekdays !== undefined) {
          if (!Array.isArray(c.weekdays) || c.weekdays.length === 0) this.bad(`${path}.weekdays`, 'must be a non-empty list like ["mon", "tue"]');
          else c.weekdays.forEach((d, i) => { if (!WEEKDAYS.includes(d)) this.bad(`${path}.weekdays[${i}]`, `must be one of ${WEEKDAYS.join(', ')}`); });
        }
        break;
      case 'sun':
        this.unknownKeys(x, path, ['type', 'after', 'afterOffset', 'before', 'beforeOffset']);
        if (c.after === undefined && c.before === undefined) this.bad(path, 'needs after and/or before (sunrise or sunset)');
        if (c.after !== undefined && c.after !== 'sunrise' && c.after !== 'sunset') this.bad(`${path}.after`, 'must be "sunrise" or "sunset"');
        if (c.before !== undefined && c.before !== 'sunrise' && c.before !== 'sunset') this.bad(`${path}.before`, 'must be "sunrise" or "sunset"');
        this.duration(c.afterOffset, `${path}.afterOffset`, true);
        this.duration(c.beforeOffset, `${path}.beforeOffset`, true);
        this.needsLocation(path);
        break;
      case 'presence':
        this.unknownKeys(x, path, ['type', 'device', 'online']);
        await this.device(x, path);
        if (c.online !== undefined && typeof c.online !== 'boolean') this.bad(`${path}.online`, 'must be true or false');
        break;
      case 'and':
      case 'or':
      case 'not':
        this.unknownKeys(x, path, ['type', 'conditions']);
        if (depth >= MAX_DEPTH) return this.bad(path, `conditions nest at most ${MAX_DEPTH} deep`);
        if (!Array.isArray(c.conditions) || c.conditions.length === 0) return this.bad(`${path}.conditions`, 'needs at least one condition');
        await this.conditions(c.conditions, `${path}.conditions`, depth + 1);
        break;
    }
  }

  private async actions(list: unknown, path: string, depth: number): Promise<void> {
    if (!Array.isArray(list)) return this.bad(path, 'must be a list of actions');
    if (list.length > MAX_LIST) return this.bad(path, `at most ${MAX_LIST}`);
    for (let i = 0; i < list.length; i++) await this.action(list[i] as Action, `${path}[${i}]`, depth);
  }

  private async action(a: Action, path: string, depth: number): Promise<void> {
    if (!isObject(a)) return this.bad(path, 'must be an object with a "type"');
    const x = a as unknown as Record<string, unknown>;
    if (!ACTION_TYPES.includes(a.type)) return this.bad(`${path}.type`, `must be one of ${ACTION_TYPES.join(', ')}`);
    const common = ['type', 'alias', 'continueOnError'];
    if (a.alias !== undefined && (typeof a.alias !== 'string' || a.alias.length > 200)) this.bad(`${path}.alias`, 'must be a string of at most 200 characters');
    if (a.continueOnError !== undefined && typeof a.continueOnError !== 'boolean') this.bad(`${path}.continueOnError`, 'must be true or false');
    switch (a.type) {
      case 'command': {
        this.unknownKeys(x, path, [...common, 'device', 'action', 'params', 'timeoutMs']);
        const m = await this.device(x, path);
        if (typeof a.action !== 'string') this.bad(`${path}.action`, 'is required: the name of one of the device\'s actions');
        else if (m) {
          const spec = m.actions.get(a.action);
          if (!spec) this.bad(`${path}.action`, `device "${a.device}" has no action "${a.action}" (it has: ${[...m.actions.keys()].join(', ') || 'none'})`);
          else if (a.params !== undefined && !isObject(a.params)) this.bad(`${path}.params`, 'must be an object');
          else {
            this.params(spec.params, a.params ?? {}, `${path}.params`, `action "${a.action}"`, true);
            // the model's own check, so that nothing it would refuse at run time passes here
            const checked = m.checkAction(a.action, a.params ?? {});
            if (!checked.ok && !this.problems.some((p) => p.field.startsWith(`${path}.params`))) this.bad(`${path}.params`, checked.problems.join('; '));
          }
        }
        if (a.timeoutMs !== undefined && (!Number.isInteger(a.timeoutMs) || a.timeoutMs < 100 || a.timeoutMs > 120_000)) this.bad(`${path}.timeoutMs`, 'must be an integer from 100 to 120000');
        break;
      }
      case 'set': {
        this.unknownKeys(x, path, [...common, 'device', 'properties']);
        const m = await this.device(x, path);
        if (!isObject(a.properties) || Object.keys(a.properties).length === 0) this.bad(`${path}.properties`, 'must be an object with at least one property');
        else if (m) {
          for (const [k, v] of Object.entries(a.properties)) {
            const spec = m.properties.get(k);
            if (!spec) this.bad(`${path}.properties.${k}`, `device "${a.device}" has no property "${k}"`);
            else if (spec.access !== 'rw') this.bad(`${path}.properties.${k}`, `property "${k}" is read-only`);
            else {
              const why = checkValue(spec, v);
              if (why) this.bad(`${path}.properties.${k}`, why);
            }
          }
        }
        break;
      }
      case 'scene':
        this.unknownKeys(x, path, [...common, 'scene']);
        await this.scene(a.scene, `${path}.scene`);
        break;
      case 'group':
        this.unknownKeys(x, path, [...common, 'group', 'action', 'params']);
        if (typeof a.group !== 'string' || !(await this.ctx.groupExists(a.group))) this.bad(`${path}.group`, `group "${String(a.group)}" is not in this home`);
        if (typeof a.action !== 'string' || !a.action) this.bad(`${path}.action`, 'is required');
        if (a.params !== undefined && !isObject(a.params)) this.bad(`${path}.params`, 'must be an object');
        break;
      case 'notify':
        this.unknownKeys(x, path, [...common, 'title', 'message', 'severity', 'users', 'kind']);
        if (typeof a.title !== 'string' || !a.title || a.title.length > 200) this.bad(`${path}.title`, 'is required (at most 200 characters)');
        if (typeof a.message !== 'string' || a.message.length > 2000) this.bad(`${path}.message`, 'is required (at most 2000 characters)');
        if (a.severity !== undefined && !['info', 'warning', 'alarm'].includes(a.severity)) this.bad(`${path}.severity`, 'must be info, warning or alarm');
        if (a.kind !== undefined && (typeof a.kind !== 'string' || !/^[a-z][a-z0-9_-]{0,31}$/.test(a.kind))) this.bad(`${path}.kind`, 'must be a short lowercase name like "security"');
        if (a.users !== undefined) {
          if (!Array.isArray(a.users) || a.users.length === 0) this.bad(`${path}.users`, 'must be a non-empty list of user ids');
          else for (let i = 0; i < a.users.length; i++) if (typeof a.users[i] !== 'string' || !(await this.ctx.isMember(a.users[i]))) this.bad(`${path}.users[${i}]`, `user "${String(a.users[i])}" is not a member of this home`);
        }
        break;
      case 'webhook': {
        this.unknownKeys(x, path, [...common, 'url', 'secret', 'body']);
        let url: URL | undefined;
        try {
          url = new URL(String(a.url));
        } catch {
          /* below */
        }
        if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) this.bad(`${path}.url`, 'must be an http(s) URL');
        else {
          const problem = this.ctx.urlProblem?.(url.href);
          if (problem) this.bad(`${path}.url`, problem);
        }
        if (a.secret !== undefined && (typeof a.secret !== 'string' || a.secret.length < 8 || a.secret.length > 256)) this.bad(`${path}.secret`, 'must be a string of 8 to 256 characters');
        break;
      }
      case 'delay':
        this.unknownKeys(x, path, [...common, 'duration']);
        if (a.duration === undefined) this.bad(`${path}.duration`, 'is required');
        else this.duration(a.duration, `${path}.duration`);
        break;
      case 'wait':
        this.unknownKeys(x, path, [...common, 'until', 'timeout', 'onTimeout']);
        if (a.until === undefined) this.bad(`${path}.until`, 'is required: a condition (or a list of them) to wait for');
        else await this.conditions(Array.isArray(a.until) ? a.until : [a.until], `${path}.until`, depth + 1);
        this.duration(a.timeout, `${path}.timeout`);
        if (a.onTimeout !== undefined && a.onTimeout !== 'continue' && a.onTimeout !== 'stop') this.bad(`${path}.onTimeout`, 'must be "continue" or "stop"');
        break;
      case 'choose':
        this.unknownKeys(x, path, [...common, 'choices', 'default']);
        if (depth >= MAX_DEPTH) return this.bad(path, `choose nests at most ${MAX_DEPTH} deep`);
        if (!Array.isArray(a.choices) || a.choices.length === 0) this.bad(`${path}.choices`, 'needs at least one choice {conditions, actions}');
        else for (let i = 0; i < a.choices.length; i++) {
          const ch = a.choices[i];
          const cp = `${path}.choices[${i}]`;
          if (!isObject(ch)) {
            this.bad(cp, 'must be {conditions, actions}');
            continue;
          }
          await this.conditions(ch.conditions, `${cp}.conditions`, depth + 1);
          if (!Array.isArray(ch.actions) || ch.actions.length === 0) this.bad(`${cp}.actions`, 'needs at least one action');
          else await this.actions(ch.actions, `${cp}.actions`, depth + 1);
        }
        if (a.default !== undefined) await this.actions(a.default, `${path}.default`, depth + 1);
        break;
      case 'enable':
      case 'disable':
        this.unknownKeys(x, path, [...common, 'automation']);
        if (typeof a.automation !== 'string' || !(await this.ctx.automationExists(a.automation))) this.bad(`${path}.automation`, `automation "${String(a.automation)}" is not in this home`);
        break;
    }
  }
}
