import { Type, type Static } from 'typebox';
import type { ConditionKind } from '../automation-plugins.ts';

export const PresenceConditionSchema = Type.Object(
  {
    type: Type.Literal('presence'),
    device: Type.String({ description: 'A device of the home' }),
    online: Type.Optional(Type.Boolean({ description: 'Default true' })),
  },
  { additionalProperties: false, description: 'The device is online (online: true, the default) or offline' },
);

/** The device is online (`online: true`, the default) or offline. */
export type PresenceCondition = Static<typeof PresenceConditionSchema>;

export const presenceCondition: ConditionKind<PresenceCondition> = {
  types: ['presence'],
  schema: PresenceConditionSchema,

  async check(c, path, v) {
    v.unknownKeys(c, path, PresenceConditionSchema);
    await v.device(c, path);
    if (c.online !== undefined && typeof c.online !== 'boolean') v.bad(`${path}.online`, 'must be true or false');
  },

  async evaluate(c, path, w) {
    const want = c.online ?? true;
    const online = await w.online(c.device);
    return {
      path,
      type: c.type,
      result: online === want,
      values: { device: c.device, online, expected: want },
      ...(online === want ? {} : { reason: `the device is ${online ? 'online' : 'offline'}` }),
    };
  },
};
