import { Type, type Static } from 'typebox';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry, errorText, isObject } from './common.ts';

export const GroupActionSchema = Type.Object(
  {
    type: Type.Literal('group'),
    ...ActionBaseFields,
    group: Type.String({ description: 'A device group of the home' }),
    action: Type.String(),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false, description: 'One command to every device of a group, in parallel; failures per device are in the trace' },
);

/** One command to every device of a group, in parallel; failures per device are in the trace. */
export type GroupAction = Static<typeof GroupActionSchema>;

export const groupAction: ActionKind<GroupAction> = {
  types: ['group'],
  schema: GroupActionSchema,

  async check(a, path, v) {
    v.unknownKeys(a, path, GroupActionSchema);
    if (typeof a.group !== 'string' || !(await v.home.groupExists(a.group))) v.bad(`${path}.group`, `group "${String(a.group)}" is not in this home`);
    if (typeof a.action !== 'string' || !a.action) v.bad(`${path}.action`, 'is required');
    if (a.params !== undefined && !isObject(a.params)) v.bad(`${path}.params`, 'must be an object');
  },

  async run(a, _path, fx, ctx, t) {
    const ids = await fx.groupDevices(ctx.homeId, a.group);
    if (!ids) throw new Error(`group "${a.group}" is no longer in this home`);
    if (ctx.dryRun) return dry(t, { group: a.group, devices: ids, action: a.action, params: a.params ?? {} });
    const source = `automation:${ctx.automationId}`;
    const results = await Promise.all(
      ids.map(async (device) => {
        try {
          const o = await fx.command(device, { action: a.action, ...(a.params ? { params: a.params } : {}) }, source);
          return { device, ok: o.ok, commandId: o.id, ...(o.error ? { error: o.error } : {}) };
        } catch (err) {
          return { device, ok: false, error: errorText(err) };
        }
      }),
    );
    t.result = { group: a.group, results };
    const failed = results.filter((r) => !r.ok).length;
    if (failed) {
      t.status = 'failed';
      t.error = `${failed} of ${results.length} devices failed`;
    }
  },
};
