import { Type, type Static } from 'typebox';
import { sameValue } from '../../core/values.ts';
import type { TriggerKind } from '../automation-plugins.ts';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export const EventTriggerSchema = Type.Object(
  {
    type: Type.Literal('event'),
    device: Type.String({ description: 'A device of the home' }),
    event: Type.String({ description: "One of the device's events" }),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Only with these parameter values' })),
  },
  { additionalProperties: false, description: 'A device event, optionally only with these parameter values' },
);

/** A device event, optionally only with these parameter values. */
export type EventTrigger = Static<typeof EventTriggerSchema>;

const paramsMatch = (t: EventTrigger, params: Record<string, unknown> | undefined) =>
  !t.params || Object.entries(t.params).every(([k, v]) => sameValue(params?.[k], v));

export const eventTrigger: TriggerKind<EventTrigger> = {
  types: ['event'],
  schema: EventTriggerSchema,

  async check(t, path, v) {
    v.unknownKeys(t, path, EventTriggerSchema);
    const m = await v.device(t, path);
    if (typeof t.event !== 'string') v.bad(`${path}.event`, "is required: the name of one of the device's events");
    else if (m) {
      const spec = m.events.get(t.event);
      if (!spec) v.bad(`${path}.event`, `device "${t.device}" has no event "${t.event}" (it has: ${[...m.events.keys()].join(', ') || 'none'})`);
      else if (t.params !== undefined) {
        if (!isObject(t.params)) v.bad(`${path}.params`, 'must be an object');
        else v.params(spec.params, t.params, `${path}.params`, `event "${t.event}"`);
      }
    }
  },

  attach(t, ctx) {
    return ctx.hub.on('event', t.device, (ev) => {
      if (t.event !== ev.event || !paramsMatch(t, ev.params)) return;
      void ctx.fire({ device: ev.deviceId, event: ev.event, params: ev.params ?? {}, eventId: ev.id });
    });
  },

  matches: (t, d) =>
    (d.device === undefined || d.device === t.device) &&
    (d.event === undefined || d.event === t.event) &&
    paramsMatch(t, d.params as Record<string, unknown> | undefined),

  describe: (_type, d) => `${String(d.device)} sent event ${String(d.event)}${d.params && Object.keys(d.params).length ? ` ${JSON.stringify(d.params)}` : ''}`,
};
