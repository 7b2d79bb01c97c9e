import { Type, type Static } from 'typebox';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry } from './common.ts';

export const ToggleAutomationActionSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('enable'), Type.Literal('disable')]),
    ...ActionBaseFields,
    automation: Type.String({ description: 'An automation of the home' }),
  },
  { additionalProperties: false, description: 'Enables or disables another automation of the home' },
);

/** Enables or disables another automation of the home. */
export type ToggleAutomationAction = Static<typeof ToggleAutomationActionSchema>;

export const toggleAutomationAction: ActionKind<ToggleAutomationAction> = {
  types: ['enable', 'disable'],
  schema: ToggleAutomationActionSchema,

  async check(a, path, v) {
    v.unknownKeys(a, path, ToggleAutomationActionSchema);
    if (typeof a.automation !== 'string' || !(await v.home.automationExists(a.automation)))
      v.bad(`${path}.automation`, `automation "${String(a.automation)}" is not in this home`);
  },

  async run(a, _path, fx, ctx, t) {
    const enabled = a.type === 'enable';
    if (ctx.dryRun) return dry(t, { automation: a.automation, enabled });
    await fx.setEnabled(ctx.homeId, a.automation, enabled, `automation:${ctx.automationId}`);
    t.result = { automation: a.automation, enabled };
  },
};
