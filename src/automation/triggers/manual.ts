import { Type, type Static } from 'typebox';
import type { TriggerKind } from '../automation-plugins.ts';

export const ManualTriggerSchema = Type.Object(
  { type: Type.Literal('manual') },
  { additionalProperties: false, description: 'POST /api/v1/automations/{id}/run' },
);

/** `POST /api/v1/automations/{id}/run`: fired by the engine's manual runs, nothing to attach. */
export type ManualTrigger = Static<typeof ManualTriggerSchema>;

export const manualTrigger: TriggerKind<ManualTrigger> = {
  types: ['manual'],
  schema: ManualTriggerSchema,
  check: (t, path, v) => v.unknownKeys(t, path, ManualTriggerSchema),
  describe: (_type, d) => `run by hand${d.by ? ` (${String(d.by)})` : ''}`,
};
