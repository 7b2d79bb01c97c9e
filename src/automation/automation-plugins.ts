import type { TObject, TSchema } from 'typebox';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { CompiledModel, ValueSpec } from '../products/thing-model.ts';
import type { TimerSpec } from '../timers/timer-spec.ts';
import type { DeviceEvent, PresenceEvent, ReportedEvent, SceneActivation } from '../core/bus/events.ts';
import type { HomeContext } from './automation-validate.ts';
import type { World } from './conditions.ts';
import type { ActionEffects, RunContext } from './actions.ts';
import type { Action, ActionTrace, Condition, ConditionTrace, Trigger } from './automation-types.ts';

/**
 * The plug-in contracts of automations. A trigger, condition or action kind is one file in
 * `triggers/`, `conditions/` or `actions/` with its TypeBox schema (its TS type, the field list
 * validation allows, and the OpenAPI document), its checks against the home and the thing
 * models, and its behaviour; the registries (`<folder>/index.ts`) list them. The engine, the
 * validator and the evaluators look kinds up there and never switch on a type.
 */

/** What a kind's checks use: the home, and the validator's shared checks (each problem recorded with its path). */
export interface Checker {
  readonly home: HomeContext;
  bad(field: string, message: string): void;
  /** Whether a problem was already recorded at or under `prefix`. */
  hasProblemUnder(prefix: string): boolean;
  /** Problems for fields of `x` that `schema` does not declare. */
  unknownKeys(x: object, path: string, schema: TObject): void;
  /** The model of `x.device`, or a problem at `path.device`. */
  device(x: object, path: string): Promise<CompiledModel | undefined>;
  property(m: CompiledModel, id: unknown, path: string, device: string): ValueSpec | undefined;
  value(spec: ValueSpec, v: unknown, path: string): void;
  range(spec: ValueSpec, above: unknown, below: unknown, path: string): void;
  params(specs: ValueSpec[] | undefined, params: Record<string, unknown>, path: string, what: string, requireAll?: boolean): void;
  scene(id: unknown, path: string): Promise<void>;
  duration(v: unknown, path: string, signed?: boolean): void;
  needsLocation(path: string): void;
  /** Nested parts (groups, waits, choices). */
  conditions(list: unknown, path: string, depth: number): Promise<void>;
  actions(list: unknown, path: string, depth: number): Promise<void>;
}

/** A scene activation as the bus announces it on `home.{id}.scene`. */
/** What a scene trigger hears: the bus's scene activation. */
export type SceneActivated = SceneActivation;
/** A schedule or sun timer of a trigger firing. */
export interface TimerFiring {
  scheduledAt: number;
  lateMs: number;
}

/** What triggers can listen to, each keyed so that a message costs one map lookup. */
export interface TriggerChannels {
  /** Keyed by device id. */
  reported: ReportedEvent;
  /** Keyed by device id. */
  event: DeviceEvent;
  /** Keyed by device id. */
  presence: PresenceEvent;
  /** Keyed by scene id. */
  scene: SceneActivated;
  /** Keyed by the trigger's timer key, `automation:{id}:{index}`. */
  timer: TimerFiring;
}

/** The engine's indexes of attached triggers. */
export interface TriggerHub {
  on<C extends keyof TriggerChannels>(channel: C, key: string, fn: (m: TriggerChannels[C]) => unknown): () => void;
}

/** What an attached trigger gets: where to listen, and how to fire. */
export interface TriggerContext {
  hub: TriggerHub;
  clock: Clock;
  log: Pick<Logger, 'debug'>;
  automationId: string;
  homeId: string;
  /** The key of this trigger's timer (schedule, sun). */
  timerKey: string;
  /** The trigger fired with what it saw: loop guard, cool-down, conditions, run mode, run. */
  fire(data: Record<string, unknown>): Promise<unknown>;
  reported(deviceId: string): Promise<Record<string, unknown>>;
  online(deviceId: string): Promise<boolean>;
}

/** Where a schedule or sun trigger's timer is set: the home's zone and place. */
export interface TimerHome {
  timezone: string;
  latitude: number | null;
  longitude: number | null;
}

/** A trigger kind (Home Assistant's trigger platforms): its schema, checks, and `attach` → detach. */
export interface TriggerKind<T extends Trigger = any> {
  /** The `type` values it handles (presence handles `online` and `offline`). */
  readonly types: readonly T['type'][];
  readonly schema: TObject;
  check(t: T, path: string, v: Checker): Promise<void> | void;
  /** Starts listening for the trigger; returns what stops it. Kinds fired from outside (manual, webhook) have none. */
  attach?(t: T, ctx: TriggerContext): () => void;
  /** For dry runs: whether a described event would fire it (default: the type matches). */
  matches?(t: T, data: Record<string, unknown>): boolean;
  /** What fired it, in words, for traces and the live stream. */
  describe(type: T['type'], data: Record<string, unknown>): string;
  /** The timer it needs in its home (schedule, sun); the AutomationService sets it. */
  timer?(t: T, home: TimerHome): TimerSpec | undefined;
  /** The loop guard: the device or scene whose activity fired it (default: `data.device`). */
  cause?(data: Record<string, unknown>): string | undefined;
}

/** Evaluates a nested condition (groups). */
export type Evaluate = (c: Condition, path: string) => Promise<ConditionTrace>;

/** A condition kind: its schema, checks, and evaluation to a trace. */
export interface ConditionKind<C extends Condition = any> {
  readonly types: readonly C['type'][];
  readonly schema: TObject;
  check(c: C, path: string, v: Checker, depth: number): Promise<void> | void;
  evaluate(c: C, path: string, w: World, nested: Evaluate): Promise<ConditionTrace>;
  /** Nested conditions (groups). */
  children?(c: C): Condition[];
  /** It depends on the time of day: a wait on it re-evaluates every minute. */
  readonly timeBased?: boolean;
}

/** Runs a nested list of actions (choose). */
export type RunNested = (list: Action[], path: string) => Promise<void>;

/** An action kind: its schema, checks, and what it does (or would do, in a dry run). */
export interface ActionKind<A extends Action = any> {
  readonly types: readonly A['type'][];
  readonly schema: TObject;
  check(a: A, path: string, v: Checker, depth: number): Promise<void> | void;
  run(a: A, path: string, fx: ActionEffects, ctx: RunContext, t: ActionTrace, nested: RunNested): Promise<void>;
  /** It waits (delay, wait): a run cancelled meanwhile ends with it as `cancelled`. */
  readonly waits?: boolean;
  /** The parts it nests, for the devices an automation names. */
  nested?(a: A): { conditions: Condition[]; actions: Action[] };
}

/** The registry of one folder: kinds by type, in the order the docs list them. */
export function registry<K extends { types: readonly string[] }>(
  kinds: readonly K[],
): { types: readonly string[]; of(type: string): K | undefined; schemas: K[] } {
  const byType = new Map<string, K>();
  for (const k of kinds)
    for (const t of k.types) {
      if (byType.has(t)) throw new Error(`two kinds declare the type "${t}"`);
      byType.set(t, k);
    }
  return { types: [...byType.keys()], of: (type) => (typeof type === 'string' ? byType.get(type) : undefined), schemas: [...kinds] };
}

/** The fields a part's schema declares (the others are refused with their path). */
export function fieldsOf(schema: TSchema): string[] {
  return Object.keys((schema as TObject).properties ?? {});
}
