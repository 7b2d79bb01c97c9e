import { Type, type TSchema } from 'typebox';
import { RUN_MODES } from './automation-values.ts';
import { triggerKinds, TriggerSchema } from './triggers/index.ts';
import { ConditionSchema } from './conditions/index.ts';
import { ActionSchema } from './actions/index.ts';
export { DeletedSchema, HomeParams } from '../homes/home-schema.ts';

/**
 * Request and response schemas of the automation routes. The parts (triggers, conditions,
 * actions) are checked here only for their shape (objects with a `type`); the AutomationService
 * checks them against the home and the thing models and answers with every problem and its path.
 * The OpenAPI document shows them with every kind's own schema ({@link documented}).
 */

const Id = (example: string) => Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: [example] });
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Part = (what: string, example: Record<string, unknown>) =>
  Type.Object(
    { type: Type.String({ description: `The kind of ${what}` }) },
    { additionalProperties: true, examples: [example], description: `A ${what}; see docs/automations.md for every type` },
  );
/** Any JSON object (parts of automations, trace entries), serialised as it is. */
const Json = Type.Unsafe<any>({ type: 'object', additionalProperties: true });
const Duration = Type.Union([Type.Number({ minimum: 0 }), Type.String({ maxLength: 32 })], {
  description: 'Seconds, or "500ms", "90s", "5m", "1h30m", "2d", "00:05:00"',
});

export const AutomationParams = Type.Object({ automationId: Id('au_5t2k9x4p1q8r0m') });
export const RunParams = Type.Object({ automationId: Id('au_5t2k9x4p1q8r0m'), runId: Id('ar_8m2k9x4p1q8r0t') });
export const HookParams = Type.Object({ webhookId: Type.String({ maxLength: 80, examples: ['wh_Zx8kq2M1n4Vb7Tq0pL3s9a'] }) });

const Mode = Type.Union(
  RUN_MODES.map((m) => Type.Literal(m)),
  { description: 'What a trigger does while a run is active (default single)' },
);

const motionExample = {
  name: 'Hall light on motion after sunset',
  triggers: [{ type: 'property', device: 'd_motion00000001', property: 'occupancy', to: true }],
  conditions: [{ type: 'sun', after: 'sunset', afterOffset: '-30m', before: 'sunrise' }],
  actions: [
    { type: 'command', device: 'd_light000000001', action: 'toggle' },
    { type: 'set', device: 'd_light000000001', properties: { brightness: 80 } },
  ],
  mode: 'restart',
};

const fields = {
  name: Type.String({ minLength: 1, maxLength: 200, examples: ['Hall light on motion'] }),
  description: Type.Optional(Type.String({ maxLength: 2000 })),
  enabled: Type.Optional(Type.Boolean({ description: 'Default true' })),
  triggers: Type.Array(Part('trigger', motionExample.triggers[0]), { minItems: 1, maxItems: 50 }),
  conditions: Type.Optional(Type.Array(Part('condition', motionExample.conditions[0]), { maxItems: 50 })),
  actions: Type.Array(Part('action', motionExample.actions[0]), { minItems: 1, maxItems: 50 }),
  mode: Type.Optional(Mode),
  max: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'queued: waiting runs at most; parallel: runs at once at most (default 10)' })),
  cooldown: Type.Optional(Duration),
};

export const CreateAutomationBody = Type.Object(fields, { additionalProperties: false, examples: [motionExample] });

export const UpdateAutomationBody = Type.Object(
  {
    name: Type.Optional(fields.name),
    description: Type.Optional(fields.description),
    enabled: Type.Optional(Type.Boolean()),
    triggers: Type.Optional(fields.triggers),
    conditions: Type.Optional(Type.Array(Part('condition', motionExample.conditions[0]), { maxItems: 50 })),
    actions: Type.Optional(fields.actions),
    mode: Type.Optional(Mode),
    max: fields.max,
    cooldown: fields.cooldown,
  },
  { additionalProperties: false, minProperties: 1, examples: [{ enabled: false }] },
);

const automationExample = {
  id: 'au_5t2k9x4p1q8r0m',
  homeId: 'h_5t2k9x4p1q8r0m',
  ...motionExample,
  description: null,
  enabled: true,
  max: 10,
  cooldownMs: 0,
  webhookId: null,
  status: 'ok',
  statusReason: null,
  createdBy: 'user:u_4k2m9x7p1q8r0t',
  createdAt: '2026-11-23T08:00:00.000Z',
  updatedAt: '2026-11-23T08:00:00.000Z',
};

export const AutomationSchema = Type.Object(
  {
    id: Type.String(),
    homeId: Type.String(),
    name: Type.String(),
    description: nullable(Type.String()),
    enabled: Type.Boolean(),
    mode: Type.String(),
    max: Type.Integer(),
    cooldownMs: Type.Integer(),
    triggers: Type.Array(Json),
    conditions: Type.Array(Json),
    actions: Type.Array(Json),
    webhookId: nullable(Type.String({ description: 'With a webhook trigger: POST /api/v1/hooks/{webhookId} runs it (a secret; shown to owners and admins)' })),
    webhookUrl: Type.Optional(Type.String()),
    status: Type.String({ description: 'ok; unavailable (it no longer fits its home: statusReason says why); stopped (the loop guard disabled it)' }),
    statusReason: nullable(Type.String()),
    createdBy: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { examples: [automationExample] },
);

export const AutomationListSchema = Type.Object({ items: Type.Array(AutomationSchema) }, { examples: [{ items: [automationExample] }] });

const runExample = {
  id: 'ar_8m2k9x4p1q8r0t',
  automationId: 'au_5t2k9x4p1q8r0m',
  homeId: 'h_5t2k9x4p1q8r0m',
  status: 'completed',
  reason: null,
  startedAt: '2026-11-23T18:02:11.000Z',
  finishedAt: '2026-11-23T18:02:11.041Z',
  ms: 41,
  trace: {
    trigger: {
      index: 0,
      type: 'property',
      data: { device: 'd_motion00000001', property: 'occupancy', from: false, to: true },
      at: '2026-11-23T18:02:11.000Z',
      description: 'property occupancy of d_motion00000001 became true (was false)',
    },
    conditions: [
      {
        path: 'conditions[0]',
        type: 'sun',
        result: true,
        values: { now: '2026-11-23T18:02:11.000Z', sunset: '2026-11-23T15:58:00.000Z', after: '2026-11-23T15:28:00.000Z' },
      },
    ],
    actions: [
      {
        path: 'actions[0]',
        type: 'command',
        status: 'ok',
        startedAt: '2026-11-23T18:02:11.002Z',
        ms: 37,
        result: { device: 'd_light000000001', commandId: 'c_7m2k9x4p1q8r0t', ok: true, latencyMs: 36 },
      },
    ],
  },
};

export const RunSchema = Type.Object(
  {
    id: Type.String(),
    automationId: Type.String(),
    homeId: Type.String(),
    status: Type.String({ description: 'running, completed, failed, condition-failed, dropped, cancelled, stopped, skipped' }),
    reason: nullable(Type.String()),
    startedAt: Type.String({ format: 'date-time' }),
    finishedAt: nullable(Type.String({ format: 'date-time' })),
    ms: nullable(Type.Number()),
    trace: Type.Object({ trigger: Json, conditions: Type.Array(Json), actions: Type.Array(Json), dryRun: Type.Optional(Type.Boolean()) }),
  },
  { examples: [runExample] },
);

export const RunListSchema = Type.Object({ items: Type.Array(RunSchema) }, { examples: [{ items: [runExample] }] });

export const RunsQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  before: Type.Optional(Type.String({ format: 'date-time', description: 'Only runs started before this' })),
  status: Type.Optional(Type.String({ maxLength: 32, description: 'Only runs with this status' })),
});

export const ManualRunBody = Type.Object(
  {
    data: Type.Optional(Json),
    skipConditions: Type.Optional(Type.Boolean({ description: 'Run the actions even if the conditions do not hold (default false)' })),
  },
  { additionalProperties: false, examples: [{ skipConditions: true }] },
);

const TriggerTypeSchema = Type.Union(triggerKinds.types.map((t) => Type.Literal(t)));

export const TestBody = Type.Object(
  {
    trigger: Type.Object(
      {
        type: TriggerTypeSchema,
        data: Type.Optional(Json),
      },
      { description: 'The trigger event to evaluate against, e.g. {type: "property", data: {device, property, from, to}}' },
    ),
  },
  {
    additionalProperties: false,
    examples: [{ trigger: { type: 'property', data: { device: 'd_motion00000001', property: 'occupancy', from: false, to: true } } }],
  },
);

export const TestResultSchema = Type.Object(
  {
    matched: Type.Boolean({ description: 'The event matches one of the triggers' }),
    matchedTrigger: nullable(Type.Integer()),
    wouldRun: Type.Boolean(),
    why: Type.String(),
    trace: RunSchema.properties.trace,
  },
  { examples: [{ matched: true, matchedTrigger: 0, wouldRun: true, why: 'it would run', trace: { ...runExample.trace, dryRun: true } }] },
);

export const HookAcceptedSchema = Type.Object(
  { runId: Type.String(), status: Type.String() },
  { examples: [{ runId: 'ar_8m2k9x4p1q8r0t', status: 'running' }] },
);

// ------------------------------------------------------------------ the OpenAPI document

const documentedFields = {
  ...fields,
  triggers: Type.Array(TriggerSchema, { minItems: 1, maxItems: 50 }),
  conditions: Type.Optional(Type.Array(ConditionSchema, { maxItems: 50 })),
  actions: Type.Array(ActionSchema, { minItems: 1, maxItems: 50 }),
};
const DocumentedAutomation = Type.Object(
  {
    ...AutomationSchema.properties,
    triggers: Type.Array(TriggerSchema),
    conditions: Type.Array(ConditionSchema),
    actions: Type.Array(ActionSchema),
  },
  { examples: [automationExample] },
);

/**
 * The automation bodies and answers as the OpenAPI document shows them: the parts as the union of
 * their kinds' schemas (triggers/, conditions/, actions/). Requests are still checked by the
 * route schemas above and then by the AutomationService, whose answer names every problem with
 * its path; these describe the same JSON more closely.
 */
export const documented = {
  create: Type.Object(documentedFields, { additionalProperties: false, examples: [motionExample] }),
  update: Type.Object(
    {
      name: Type.Optional(fields.name),
      description: Type.Optional(fields.description),
      enabled: Type.Optional(Type.Boolean()),
      triggers: Type.Optional(documentedFields.triggers),
      conditions: documentedFields.conditions,
      actions: Type.Optional(documentedFields.actions),
      mode: Type.Optional(Mode),
      max: fields.max,
      cooldown: fields.cooldown,
    },
    { additionalProperties: false, minProperties: 1, examples: [{ enabled: false }] },
  ),
  automation: DocumentedAutomation,
  list: Type.Object({ items: Type.Array(DocumentedAutomation) }, { examples: [{ items: [automationExample] }] }),
};
