import { Type, type Static } from 'typebox';
import { checkValue } from '../../products/thing-model.ts';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry, isObject } from './common.ts';

export const SetActionSchema = Type.Object(
  {
    type: Type.Literal('set'),
    ...ActionBaseFields,
    device: Type.String({ description: 'A device of the home' }),
    properties: Type.Record(Type.String(), Type.Unknown(), { minProperties: 1, description: 'Writable properties and their desired values' }),
  },
  { additionalProperties: false, description: 'Desired state through the shadow (delivered when the device is online)' },
);

/** Desired state through the shadow (delivered when the device is online). */
export type SetAction = Static<typeof SetActionSchema>;

export const setAction: ActionKind<SetAction> = {
  types: ['set'],
  schema: SetActionSchema,

  async check(a, path, v) {
    v.unknownKeys(a, path, SetActionSchema);
    const m = await v.device(a, path);
    if (!isObject(a.properties) || Object.keys(a.properties).length === 0) v.bad(`${path}.properties`, 'must be an object with at least one property');
    else if (m) {
      for (const [k, x] of Object.entries(a.properties)) {
        const spec = m.properties.get(k);
        if (!spec) v.bad(`${path}.properties.${k}`, `device "${a.device}" has no property "${k}"`);
        else if (spec.access !== 'rw') v.bad(`${path}.properties.${k}`, `property "${k}" is read-only`);
        else {
          const why = checkValue(spec, x);
          if (why) v.bad(`${path}.properties.${k}`, why);
        }
      }
    }
  },

  async run(a, _path, fx, ctx, t) {
    if (ctx.dryRun) return dry(t, { device: a.device, properties: a.properties });
    await fx.setDesired(a.device, a.properties);
    t.result = { device: a.device, properties: a.properties };
  },
};
