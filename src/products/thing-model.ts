/**
 * Thing models: what a product's devices report (properties), announce (events) and do
 * (actions). Pure logic, no I/O: checking a model itself, compiling it, and validating
 * device messages and commands against it.
 */
export type ValueType = 'boolean' | 'integer' | 'number' | 'string' | 'enum' | 'object';

export interface ValueSpec {
  id: string;
  type: ValueType;
  unit?: string;
  min?: number;
  max?: number;
  step?: number;
  values?: string[];
  description?: string;
  required?: boolean;
}

export interface PropertySpec extends ValueSpec {
  access: 'r' | 'rw';
  history?: boolean;
}

export interface EventSpec {
  id: string;
  params?: ValueSpec[];
  description?: string;
}

export interface ActionSpec {
  id: string;
  params?: ValueSpec[];
  result?: ValueSpec[];
  description?: string;
}

export interface ThingModel {
  properties: PropertySpec[];
  events: EventSpec[];
  actions: ActionSpec[];
  /** TTL of a command sent with `"queue": true` (docs/api.md, queued commands); unset: HEARTH_COMMAND_QUEUE_DEFAULT_TTL_MS. */
  commandTtlMs?: number;
}

export interface ModelProblem {
  /** Path of the bad field, e.g. `model.properties[1].values`. */
  field: string;
  message: string;
}

const ID_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const TYPES: readonly ValueType[] = ['boolean', 'integer', 'number', 'string', 'enum', 'object'];

function checkValueSpec(spec: ValueSpec, path: string, problems: ModelProblem[], isProperty: boolean): void {
  if (typeof spec !== 'object' || spec === null) {
    problems.push({ field: path, message: 'must be an object' });
    return;
  }
  if (typeof spec.id !== 'string' || !ID_RE.test(spec.id))
    problems.push({ field: `${path}.id`, message: 'must be an identifier (letter, then letters, digits or _; at most 64)' });
  if (!TYPES.includes(spec.type)) problems.push({ field: `${path}.type`, message: `must be one of ${TYPES.join(', ')}` });
  if (isProperty) {
    const access = (spec as PropertySpec).access;
    if (access !== 'r' && access !== 'rw') problems.push({ field: `${path}.access`, message: 'must be "r" or "rw"' });
  }
  const numeric = spec.type === 'integer' || spec.type === 'number';
  for (const k of ['min', 'max', 'step'] as const) {
    const v = spec[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) problems.push({ field: `${path}.${k}`, message: 'must be a finite number' });
    else if (!numeric && !(spec.type === 'string' && k === 'max'))
      problems.push({ field: `${path}.${k}`, message: `is only allowed for integer and number${k === 'max' ? ' (and string, as maximum length)' : ''}` });
  }
  if (typeof spec.min === 'number' && typeof spec.max === 'number' && spec.min > spec.max)
    problems.push({ field: `${path}.min`, message: 'must not be greater than max' });
  if (spec.step !== undefined && typeof spec.step === 'number' && spec.step <= 0) problems.push({ field: `${path}.step`, message: 'must be positive' });
  if (spec.type === 'enum') {
    if (!Array.isArray(spec.values) || spec.values.length === 0 || spec.values.some((v) => typeof v !== 'string')) {
      problems.push({ field: `${path}.values`, message: 'an enum needs a non-empty list of string values' });
    } else if (new Set(spec.values).size !== spec.values.length) {
      problems.push({ field: `${path}.values`, message: 'must not repeat a value' });
    }
  } else if (spec.values !== undefined) {
    problems.push({ field: `${path}.values`, message: 'is only allowed for enum' });
  }
}

function checkList<T extends { id: string }>(list: T[] | undefined, path: string, problems: ModelProblem[], each: (item: T, p: string) => void): void {
  if (list === undefined) return;
  if (!Array.isArray(list)) {
    problems.push({ field: path, message: 'must be an array' });
    return;
  }
  const seen = new Set<string>();
  list.forEach((item, i) => {
    const p = `${path}[${i}]`;
    each(item, p);
    if (item && typeof item.id === 'string') {
      if (seen.has(item.id)) problems.push({ field: `${p}.id`, message: `duplicate id "${item.id}"` });
      seen.add(item.id);
    }
  });
}

/** Checks a model for internal consistency. Returns every problem found (empty when valid). */
export function checkModel(model: ThingModel, base = 'model'): ModelProblem[] {
  const problems: ModelProblem[] = [];
  if (typeof model !== 'object' || model === null) return [{ field: base, message: 'must be an object' }];
  checkList(model.properties, `${base}.properties`, problems, (p, path) => checkValueSpec(p, path, problems, true));
  checkList(model.events, `${base}.events`, problems, (e, path) => {
    if (typeof e.id !== 'string' || !ID_RE.test(e.id)) problems.push({ field: `${path}.id`, message: 'must be an identifier' });
    checkList(e.params, `${path}.params`, problems, (p, pp) => checkValueSpec(p, pp, problems, false));
  });
  checkList(model.actions, `${base}.actions`, problems, (a, path) => {
    if (typeof a.id !== 'string' || !ID_RE.test(a.id)) problems.push({ field: `${path}.id`, message: 'must be an identifier' });
    checkList(a.params, `${path}.params`, problems, (p, pp) => checkValueSpec(p, pp, problems, false));
    checkList(a.result, `${path}.result`, problems, (p, pp) => checkValueSpec(p, pp, problems, false));
  });
  return problems;
}

/** Returns why `value` breaks `spec`, or undefined when it fits. */
export function checkValue(spec: ValueSpec, value: unknown): string | undefined {
  switch (spec.type) {
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `expected a boolean, got ${describe(value)}`;
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return `expected a number, got ${describe(value)}`;
      if (spec.type === 'integer' && !Number.isInteger(value)) return `expected an integer, got ${value}`;
      if (spec.min !== undefined && value < spec.min) return `${value} is below the minimum ${spec.min}`;
      if (spec.max !== undefined && value > spec.max) return `${value} is above the maximum ${spec.max}`;
      if (spec.step !== undefined) {
        const q = (value - (spec.min ?? 0)) / spec.step;
        if (Math.abs(q - Math.round(q)) > 1e-9) return `${value} is not a multiple of the step ${spec.step}`;
      }
      return undefined;
    }
    case 'string':
      if (typeof value !== 'string') return `expected a string, got ${describe(value)}`;
      if (spec.max !== undefined && value.length > spec.max) return `longer than ${spec.max} characters`;
      return undefined;
    case 'enum':
      return typeof value === 'string' && spec.values!.includes(value)
        ? undefined
        : `expected one of ${spec.values!.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(value)}`;
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value) ? undefined : `expected an object, got ${describe(value)}`;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'object') return 'an object';
  return String(v);
}

export interface ValidationResult {
  ok: boolean;
  /** One line per problem, each naming the offending key. */
  problems: string[];
}

/** The property every product has: the firmware version the device runs (a semantic version). */
export const FIRMWARE_PROPERTY: PropertySpec = Object.freeze({
  id: 'firmware',
  type: 'string',
  access: 'r',
  description: 'Firmware version the device runs (semantic version)',
}) as PropertySpec;

const OK: ValidationResult = Object.freeze({ ok: true, problems: [] }) as ValidationResult;

/** A model with its lists indexed by id, so that validating a message is O(keys in the message). */
export class CompiledModel {
  readonly properties = new Map<string, PropertySpec>();
  readonly events = new Map<string, EventSpec>();
  readonly actions = new Map<string, ActionSpec>();

  constructor(readonly model: ThingModel) {
    for (const p of model.properties ?? []) this.properties.set(p.id, p);
    for (const e of model.events ?? []) this.events.set(e.id, e);
    for (const a of model.actions ?? []) this.actions.set(a.id, a);
    // Every product reports its firmware version this way (docs/ota.md), unless its model says otherwise.
    if (!this.properties.has('firmware')) this.properties.set('firmware', FIRMWARE_PROPERTY);
  }

  /** A property report: every key must be a known property with a fitting value. */
  checkReport(values: Record<string, unknown>): ValidationResult {
    const problems: string[] = [];
    for (const key in values) {
      const spec = this.properties.get(key);
      if (!spec) {
        problems.push(`unknown property "${key}"`);
        continue;
      }
      const why = checkValue(spec, values[key]);
      if (why) problems.push(`property "${key}": ${why}`);
    }
    return problems.length ? { ok: false, problems } : OK;
  }

  /** Desired state: like a report, but only writable ("rw") properties; null clears a key. */
  checkDesired(values: Record<string, unknown>): ValidationResult {
    const problems: string[] = [];
    for (const key in values) {
      const spec = this.properties.get(key);
      if (!spec) problems.push(`unknown property "${key}"`);
      else if (spec.access !== 'rw') problems.push(`property "${key}" is read-only`);
      else if (values[key] !== null) {
        const why = checkValue(spec, values[key]);
        if (why) problems.push(`property "${key}": ${why}`);
      }
    }
    return problems.length ? { ok: false, problems } : OK;
  }

  checkEvent(event: string, params: Record<string, unknown>): ValidationResult {
    const spec = this.events.get(event);
    if (!spec) return { ok: false, problems: [`unknown event "${event}"`] };
    return checkParams(spec.params, params, `event "${event}"`);
  }

  checkAction(action: string, params: Record<string, unknown>): ValidationResult {
    const spec = this.actions.get(action);
    if (!spec) return { ok: false, problems: [`unknown action "${action}"`] };
    return checkParams(spec.params, params, `action "${action}"`);
  }
}

function checkParams(specs: ValueSpec[] | undefined, params: Record<string, unknown>, what: string): ValidationResult {
  const problems: string[] = [];
  const byId = new Map((specs ?? []).map((s) => [s.id, s]));
  for (const key in params) {
    const spec = byId.get(key);
    if (!spec) {
      problems.push(`${what}: unknown parameter "${key}"`);
      continue;
    }
    const why = checkValue(spec, params[key]);
    if (why) problems.push(`${what}: parameter "${key}": ${why}`);
  }
  for (const spec of specs ?? []) {
    if (spec.required && !(spec.id in params)) problems.push(`${what}: missing required parameter "${spec.id}"`);
  }
  return problems.length ? { ok: false, problems } : OK;
}
