/**
 * Forms from a thing model (docs/protocol.md): the fields of an action's parameters or of the
 * writable properties, and the JSON the API takes from what was typed. Pure, so it is unit-tested
 * (test/console-units.test.ts) without a browser.
 */

/** A parameter or property of the thing model, as the API describes it. */
export interface ModelField {
  id: string;
  type: 'boolean' | 'integer' | 'number' | 'string' | 'enum' | 'object';
  unit?: string;
  min?: number;
  max?: number;
  step?: number;
  values?: string[];
  description?: string;
  required?: boolean;
}

/** A property of the thing model: `rw` ones can be set through desired state. */
export interface ModelProperty extends ModelField {
  access: 'r' | 'rw';
  history?: boolean;
}

/** An action of the thing model: what a command runs. */
export interface ModelAction {
  id: string;
  params?: ModelField[];
  description?: string;
}

/** What a form control shows: a switch, a number box, a select or a text box (objects: JSON text). */
export type FieldKind = 'switch' | 'number' | 'select' | 'text' | 'json';

export function fieldKind(f: ModelField): FieldKind {
  switch (f.type) {
    case 'boolean':
      return 'switch';
    case 'integer':
    case 'number':
      return 'number';
    case 'enum':
      return 'select';
    case 'object':
      return 'json';
    default:
      return 'text';
  }
}

/** The value a fresh form starts with (the current value when there is one). */
export function initialValue(f: ModelField, current?: unknown): unknown {
  if (current !== undefined) return f.type === 'object' ? JSON.stringify(current) : current;
  if (f.type === 'boolean') return false;
  return undefined;
}

/** Form values → the JSON object the API takes, or the problems, keyed by field id (i18n keys). */
export function toParams(fields: ModelField[], values: Record<string, unknown>): { params: Record<string, unknown>; problems: Record<string, string> } {
  const params: Record<string, unknown> = {};
  const problems: Record<string, string> = {};
  for (const f of fields) {
    const raw = values[f.id];
    const blank = raw === undefined || raw === null || raw === '';
    if (blank) {
      if (f.required) problems[f.id] = 'required';
      continue;
    }
    switch (f.type) {
      case 'boolean':
        params[f.id] = Boolean(raw);
        break;
      case 'integer':
      case 'number': {
        const n = typeof raw === 'number' ? raw : Number(raw);
        if (!Number.isFinite(n) || (f.type === 'integer' && !Number.isInteger(n))) problems[f.id] = f.type === 'integer' ? 'integer' : 'number';
        else if (f.min !== undefined && n < f.min) problems[f.id] = 'min';
        else if (f.max !== undefined && n > f.max) problems[f.id] = 'max';
        else params[f.id] = n;
        break;
      }
      case 'enum':
        if (f.values && !f.values.includes(String(raw))) problems[f.id] = 'enum';
        else params[f.id] = String(raw);
        break;
      case 'object':
        try {
          const v = typeof raw === 'string' ? JSON.parse(raw) : raw;
          if (typeof v !== 'object' || v === null || Array.isArray(v)) problems[f.id] = 'object';
          else params[f.id] = v;
        } catch {
          problems[f.id] = 'json';
        }
        break;
      default:
        if (f.max !== undefined && String(raw).length > f.max) problems[f.id] = 'maxLength';
        else params[f.id] = String(raw);
    }
  }
  return { params, problems };
}

/** Only the values that differ from the current ones (a desired-state patch changes what was edited). */
export function changed(current: Record<string, unknown>, next: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(next)) if (JSON.stringify(current[k]) !== JSON.stringify(v)) out[k] = v;
  return out;
}
