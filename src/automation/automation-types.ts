/**
 * The shape of an automation as people write it (JSON through the API) and of the traces its runs
 * leave. Pure types and small parsers; the checks against homes and thing models are in
 * automation-validate.ts.
 */

/** A duration: seconds as a number, or text: `"90s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2d"`, `"00:05:00"`. Offsets may start with `-`. */
export type Duration = number | string;

export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun';
export const WEEKDAYS: readonly Weekday[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

// ---------------------------------------------------------------- triggers

/**
 * A property report. Without `to`/`above`/`below` it fires on every change of the value. With them it
 * fires when the value *becomes* so (crossing into the range), not on every report while it stays so.
 * `from` also asks the previous value to be this. `for`: it must stay so this long (a change cancels).
 */
export interface PropertyTrigger { type: 'property'; device: string; property: string; to?: unknown; from?: unknown; above?: number; below?: number; for?: Duration }
/** A device event, optionally only with these parameter values. */
export interface EventTrigger { type: 'event'; device: string; event: string; params?: Record<string, unknown> }
/** The device connects (`online`) or disconnects (`offline`), optionally staying so for `for`. */
export interface PresenceTrigger { type: 'online' | 'offline'; device: string; for?: Duration }
/** Cron (5 fields, or 6 with seconds) in the home's time zone, or once at `at` (ISO 8601). */
export interface ScheduleTrigger { type: 'schedule'; cron?: string; at?: string }
/** Sunrise or sunset at the home's location, shifted by `offset` (e.g. `"-30m"`). */
export interface SunTrigger { type: 'sun'; event: 'sunrise' | 'sunset'; offset?: Duration }
/** A scene of the home was activated. */
export interface SceneTrigger { type: 'scene'; scene: string }
/** `POST /api/v1/automations/{id}/run`. */
export interface ManualTrigger { type: 'manual' }
/** `POST /api/v1/hooks/{webhookId}` (the automation's `webhookId`, an unguessable secret). */
export interface WebhookTrigger { type: 'webhook' }

export type Trigger = PropertyTrigger | EventTrigger | PresenceTrigger | ScheduleTrigger | SunTrigger | SceneTrigger | ManualTrigger | WebhookTrigger;
export type TriggerType = Trigger['type'];
export const TRIGGER_TYPES: readonly TriggerType[] = ['property', 'event', 'online', 'offline', 'schedule', 'sun', 'scene', 'manual', 'webhook'];

// ---------------------------------------------------------------- conditions

/** The device's current reported value compared; several comparisons must all hold. A missing value fails every comparison. */
export interface PropertyCondition { type: 'property'; device: string; property: string; equals?: unknown; notEquals?: unknown; above?: number; below?: number; oneOf?: unknown[] }
/** Local time in the home's zone: `after` ≤ now < `before` ("HH:MM[:SS]"; a window may cross midnight), on `weekdays`. */
export interface TimeCondition { type: 'time'; after?: string; before?: string; weekdays?: Weekday[] }
/**
 * Sun position at the home: after sunrise/sunset (+ `afterOffset`) and/or before sunrise/sunset (+ `beforeOffset`), today.
 * When the `after` time comes later in the day than the `before` time (after sunset, before sunrise) either half suffices: it is dark.
 */
export interface SunCondition { type: 'sun'; after?: 'sunrise' | 'sunset'; afterOffset?: Duration; before?: 'sunrise' | 'sunset'; beforeOffset?: Duration }
/** The device is online (`online: true`, the default) or offline. */
export interface PresenceCondition { type: 'presence'; device: string; online?: boolean }
export interface GroupCondition { type: 'and' | 'or' | 'not'; conditions: Condition[] }

export type Condition = PropertyCondition | TimeCondition | SunCondition | PresenceCondition | GroupCondition;
export const CONDITION_TYPES: readonly Condition['type'][] = ['property', 'time', 'sun', 'presence', 'and', 'or', 'not'];

// ---------------------------------------------------------------- actions

interface ActionBase {
  /** Shown in the trace. */
  alias?: string;
  /** A failure is recorded and the run goes on (default: the run stops, status `failed`). */
  continueOnError?: boolean;
}
/** A command, waiting for the device's answer (an answer `ok: false` is a failure). */
export interface CommandAction extends ActionBase { type: 'command'; device: string; action: string; params?: Record<string, unknown>; timeoutMs?: number }
/** Desired state through the shadow (delivered when the device is online). */
export interface SetAction extends ActionBase { type: 'set'; device: string; properties: Record<string, unknown> }
export interface SceneAction extends ActionBase { type: 'scene'; scene: string }
/** One command to every device of a group, in parallel; failures per device are in the trace. */
export interface GroupAction extends ActionBase { type: 'group'; group: string; action: string; params?: Record<string, unknown> }
/** A notification to the home's people (`users`: some of them). `{{trigger.…}}` placeholders are filled in. */
export interface NotifyAction extends ActionBase { type: 'notify'; title: string; message: string; severity?: 'info' | 'warning' | 'alarm'; users?: string[]; kind?: string }
/** POSTs JSON to `url`; with `secret`, `x-hearth-signature: sha256=<hex HMAC-SHA256 of the body>`. */
export interface WebhookAction extends ActionBase { type: 'webhook'; url: string; secret?: string; body?: unknown }
export interface DelayAction extends ActionBase { type: 'delay'; duration: Duration }
/**
 * Waits until the condition holds (re-evaluated when a device it names reports or changes presence, and every
 * minute when it has time or sun parts), at most `timeout`; then goes on (`onTimeout: "continue"`, the default) or stops the run (`"stop"`).
 */
export interface WaitAction extends ActionBase { type: 'wait'; until: Condition | Condition[]; timeout?: Duration; onTimeout?: 'continue' | 'stop' }
/** The first choice whose conditions all hold runs its actions; none: `default`. */
export interface ChooseAction extends ActionBase { type: 'choose'; choices: Array<{ conditions: Condition[]; actions: Action[] }>; default?: Action[] }
/** Enables or disables another automation of the home. */
export interface ToggleAutomationAction extends ActionBase { type: 'enable' | 'disable'; automation: string }

export type Action = CommandAction | SetAction | SceneAction | GroupAction | NotifyAction | WebhookAction | DelayAction | WaitAction | ChooseAction | ToggleAutomationAction;
export const ACTION_TYPES: readonly Action['type'][] = ['command', 'set', 'scene', 'group', 'notify', 'webhook', 'delay', 'wait', 'choose', 'enable', 'disable'];

export type RunMode = 'single' | 'restart' | 'queued' | 'parallel';
export const RUN_MODES: readonly RunMode[] = ['single', 'restart', 'queued', 'parallel'];

/** What people send (create) — the stored automation adds id, status and times. */
export interface AutomationInput {
  name: string;
  description?: string;
  enabled?: boolean;
  triggers: Trigger[];
  conditions?: Condition[];
  actions: Action[];
  mode?: RunMode;
  /** queued: runs waiting at most; parallel: runs at once at most (default 10). */
  max?: number;
  /** After a run ends, triggers within this time are dropped (recorded). */
  cooldown?: Duration;
}

/** `ok`; `unavailable`: it no longer fits its home (a device left), see `statusReason`; `stopped`: the loop guard disabled it. */
export type AutomationStatus = 'ok' | 'unavailable' | 'stopped';

export interface Automation {
  id: string;
  homeId: string;
  name: string;
  description: string | null;
  enabled: boolean;
  mode: RunMode;
  max: number;
  /** Milliseconds. */
  cooldownMs: number;
  triggers: Trigger[];
  conditions: Condition[];
  actions: Action[];
  /** Present when a trigger is a webhook: POST /api/v1/hooks/{webhookId}. */
  webhookId: string | null;
  status: AutomationStatus;
  statusReason: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

// ---------------------------------------------------------------- runs and traces

export type RunStatus =
  | 'running' | 'completed' | 'failed'
  /** The conditions did not hold: nothing was done. */
  | 'condition-failed'
  /** Not started: the mode (single busy, queue full, parallel limit) or the cool-down. */
  | 'dropped'
  /** Ended early: a newer run took over (restart), the automation was disabled or changed, or a wait timed out with onTimeout "stop". */
  | 'cancelled'
  /** The loop guard stopped the automation. */
  | 'stopped'
  /** A scheduled firing missed beyond its grace window. */
  | 'skipped';

/** What fired: the trigger's position and type, and what it saw. */
export interface TriggerTrace {
  index: number | null;
  type: TriggerType;
  /** e.g. `{device, property, from, to}`, `{device, event, params}`, `{scheduledAt, lateMs}`, `{body}`. */
  data: Record<string, unknown>;
  at: string;
  /** In words: "property temperature of d_… became 31 (was 24), above 30". */
  description: string;
}

export interface ConditionTrace {
  /** Path in the automation, e.g. `conditions[1]` or `actions[2].choices[0].conditions[0]`. */
  path: string;
  type: Condition['type'];
  result: boolean;
  /** What was compared: `{actual, equals}`, `{localTime, after, before}`, `{now, sunset}`, … */
  values?: Record<string, unknown>;
  /** Why it failed (or could not be evaluated), in words. */
  reason?: string;
  children?: ConditionTrace[];
}

export type ActionStatus = 'ok' | 'failed' | 'timeout' | 'cancelled' | 'dry-run';

export interface ActionTrace {
  path: string;
  type: Action['type'];
  alias?: string;
  status: ActionStatus;
  startedAt: string;
  ms: number;
  /** What the action did: the command's id and answer, the scene's per-device results, the wait's outcome. */
  result?: Record<string, unknown>;
  error?: string;
  /** choose: the conditions tried; wait: the last evaluation. */
  conditions?: ConditionTrace[];
  /** choose: the index of the choice taken (`"default"`, or null for none). */
  chosen?: number | 'default' | null;
  /** choose: the actions of the branch taken. */
  actions?: ActionTrace[];
}

export interface Trace {
  trigger: TriggerTrace;
  conditions: ConditionTrace[];
  actions: ActionTrace[];
  /** Dry run: evaluated without acting. */
  dryRun?: boolean;
}

export interface Run {
  id: string;
  automationId: string;
  homeId: string;
  status: RunStatus;
  /** Why it ended as it did (dropped, failed, cancelled, stopped), in words. */
  reason: string | null;
  startedAt: string;
  finishedAt: string | null;
  ms: number | null;
  trace: Trace;
}

// ---------------------------------------------------------------- parsers

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of a duration, or undefined when it cannot be read. Negative only with `signed`. */
export function parseDuration(v: unknown, signed = false): number | undefined {
  let ms: number | undefined;
  if (typeof v === 'number' && Number.isFinite(v)) ms = Math.round(v * 1000);
  else if (typeof v === 'string') {
    const s = v.trim();
    const neg = s.startsWith('-');
    const body = s.replace(/^[-+]/, '');
    const clock = /^(\d{1,3}):([0-5]\d)(?::([0-5]\d))?$/.exec(body);
    if (clock) ms = clock[3] !== undefined ? (+clock[1] * 3600 + +clock[2] * 60 + +clock[3]) * 1000 : (+clock[1] * 3600 + +clock[2] * 60) * 1000;
    else if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(body)) {
      ms = 0;
      for (const m of body.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNITS[m[2]];
      ms = Math.round(ms);
    }
    if (ms !== undefined && neg) ms = -ms;
  }
  if (ms === undefined || (!signed && ms < 0) || Math.abs(ms) > 366 * UNITS.d) return undefined;
  return ms;
}

/** Seconds since local midnight of "HH:MM" or "HH:MM:SS", or undefined. */
export function parseTimeOfDay(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/.exec(v.trim());
  if (!m) return undefined;
  return +m[1] * 3600 + +m[2] * 60 + (m[3] ? +m[3] : 0);
}

/** The devices an automation names anywhere (triggers, conditions, actions), for the index of references. */
export function devicesOf(a: { triggers: Trigger[]; conditions: Condition[]; actions: Action[] }): Set<string> {
  const out = new Set<string>();
  for (const t of a.triggers) if ('device' in t && typeof t.device === 'string') out.add(t.device);
  const cond = (c: Condition) => {
    if ('device' in c && typeof c.device === 'string') out.add(c.device);
    if ('conditions' in c && Array.isArray(c.conditions)) c.conditions.forEach(cond);
  };
  const act = (x: Action) => {
    if ('device' in x && typeof x.device === 'string') out.add(x.device);
    if (x.type === 'wait') (Array.isArray(x.until) ? x.until : [x.until]).forEach(cond);
    if (x.type === 'choose') {
      for (const ch of x.choices ?? []) {
        (ch.conditions ?? []).forEach(cond);
        (ch.actions ?? []).forEach(act);
      }
      (x.default ?? []).forEach(act);
    }
  };
  a.conditions.forEach(cond);
  a.actions.forEach(act);
  return out;
}

/** Devices a condition list reads (a wait re-evaluates when one of them reports). */
export function conditionDevices(list: Condition[]): Set<string> {
  return devicesOf({ triggers: [], conditions: list, actions: [] });
}
