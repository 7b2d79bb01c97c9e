/**
 * The shape of an automation as people write it (JSON through the API) and of the traces its runs
 * leave. The parts are unions of the kinds in triggers/, conditions/ and actions/ (one file each,
 * with its TypeBox schema, checks and behaviour); the parsers are in automation-values.ts.
 */

export { parseDuration, parseTimeOfDay, WEEKDAYS, RUN_MODES, type Duration, type Weekday, type RunMode } from './automation-values.ts';
import type { Duration, RunMode } from './automation-values.ts';
import type { Trigger, TriggerType } from './triggers/index.ts';
import type { Condition } from './conditions/index.ts';
import type { Action } from './actions/index.ts';

// Each kind of trigger, condition and action is one file (triggers/, conditions/, actions/) with
// its TypeBox schema; the types here are their unions.
export type * from './triggers/index.ts';
export type * from './conditions/index.ts';
export type * from './actions/index.ts';

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
  | 'running'
  | 'completed'
  | 'failed'
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
