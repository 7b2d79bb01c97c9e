/**
 * The automation editor's model: the form adds common triggers and actions to a JSON draft that
 * stays the source of truth (everything the API accepts can be written in it). Pure, unit-tested.
 */
export interface Draft {
  triggers: unknown[];
  conditions: unknown[];
  actions: unknown[];
}

export const EMPTY_DRAFT: Draft = { triggers: [], conditions: [], actions: [] };

export function draftText(d: Draft): string {
  return JSON.stringify(d, null, 2);
}

/** The draft in the JSON box, or why it is not one. */
export function parseDraft(text: string): { draft?: Draft; error?: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { error: (e as Error).message };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { error: 'object' };
  const o = v as Record<string, unknown>;
  for (const k of ['triggers', 'conditions', 'actions'] as const) if (o[k] !== undefined && !Array.isArray(o[k])) return { error: k };
  return { draft: { triggers: (o.triggers as unknown[]) ?? [], conditions: (o.conditions as unknown[]) ?? [], actions: (o.actions as unknown[]) ?? [] } };
}

/** A value typed in the form, as JSON when it reads as JSON (true, 30, "x"), else as a string. */
export function typedValue(raw: string): unknown {
  const s = raw.trim();
  if (s === '') return undefined;
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

export type TriggerInput =
  | { type: 'property'; device: string; property: string; to?: string }
  | { type: 'online' | 'offline'; device: string }
  | { type: 'schedule'; cron: string };
export type ActionInput =
  | { type: 'set'; device: string; property: string; value: string }
  | { type: 'command'; device: string; action: string }
  | { type: 'notify'; title: string; message: string };

export function triggerOf(t: TriggerInput): Record<string, unknown> {
  if (t.type === 'property') {
    const to = t.to === undefined ? undefined : typedValue(t.to);
    return { type: 'property', device: t.device, property: t.property, ...(to === undefined ? {} : { to }) };
  }
  if (t.type === 'schedule') return { type: 'schedule', cron: t.cron };
  return { type: t.type, device: t.device };
}

export function actionOf(a: ActionInput): Record<string, unknown> {
  if (a.type === 'set') return { type: 'set', device: a.device, properties: { [a.property]: typedValue(a.value) } };
  if (a.type === 'command') return { type: 'command', device: a.device, action: a.action };
  return { type: 'notify', title: a.title, message: a.message };
}
