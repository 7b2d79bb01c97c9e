import { Type, type Static } from 'typebox';
import { DurationSchema } from '../automation-values.ts';
import { forWindow } from './for-window.ts';
import type { TriggerKind } from '../automation-plugins.ts';

export const PresenceTriggerSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    device: Type.String({ description: 'A device of the home' }),
    for: Type.Optional(DurationSchema),
  },
  { additionalProperties: false, description: 'The device connects (online) or disconnects (offline), optionally staying so for `for`' },
);

/** The device connects (`online`) or disconnects (`offline`), optionally staying so for `for`. */
export type PresenceTrigger = Static<typeof PresenceTriggerSchema>;

export const presenceTrigger: TriggerKind<PresenceTrigger> = {
  types: ['online', 'offline'],
  schema: PresenceTriggerSchema,

  async check(t, path, v) {
    v.unknownKeys(t, path, PresenceTriggerSchema);
    await v.device(t, path);
    v.duration(t.for, `${path}.for`);
  },

  attach(t, ctx) {
    const want = t.type === 'online';
    let prev: boolean | undefined;
    let known = false;
    const { fire, cancel } = forWindow(t.for, ctx);
    const off = ctx.hub.on('presence', t.device, (ev) => {
      const was = known ? prev === want : false;
      prev = ev.online;
      known = true;
      if (ev.online !== want) return cancel();
      if (was) return;
      fire({ device: ev.deviceId, online: ev.online, reason: ev.reason });
    });
    // What it saw last when it loads: only a change from here on fires.
    ctx.online(t.device).then(
      (v) => {
        if (known || v === undefined) return;
        prev = v;
        known = true;
      },
      (err) => ctx.log.debug({ err, automationId: ctx.automationId }, 'automation trigger state not loaded'),
    );
    return () => {
      off();
      cancel();
    };
  },

  matches: (t, d) => d.device === undefined || d.device === t.device,

  describe: (type, d) => `${String(d.device)} went ${type}${d.forMs ? ` and stayed so for ${Number(d.forMs) / 1000} s` : ''}`,
};
