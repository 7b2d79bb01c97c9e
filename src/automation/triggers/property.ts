import { Type, type Static } from 'typebox';
import { sameValue } from '../../core/values.ts';
import { DurationSchema } from '../automation-values.ts';
import { forWindow } from './for-window.ts';
import type { TriggerKind } from '../automation-plugins.ts';

export const PropertyTriggerSchema = Type.Object(
  {
    type: Type.Literal('property'),
    device: Type.String({ description: 'A device of the home' }),
    property: Type.String({ description: "One of the device's properties" }),
    to: Type.Optional(Type.Unknown({ description: 'Fires when the value becomes this' })),
    from: Type.Optional(Type.Unknown({ description: 'And the previous value was this' })),
    above: Type.Optional(Type.Number({ description: 'Fires when the value rises above this' })),
    below: Type.Optional(Type.Number({ description: 'Fires when the value falls below this' })),
    for: Type.Optional(DurationSchema),
  },
  {
    additionalProperties: false,
    description:
      'A property report. Without to/above/below it fires on every change of the value; with them when the value *becomes* so. `for`: it must stay so this long.',
  },
);

/**
 * A property report. Without `to`/`above`/`below` it fires on every change of the value. With them it
 * fires when the value *becomes* so (crossing into the range), not on every report while it stays so.
 * `from` also asks the previous value to be this. `for`: it must stay so this long (a change cancels).
 */
export type PropertyTrigger = Static<typeof PropertyTriggerSchema>;

const hasRange = (t: PropertyTrigger) => t.to !== undefined || t.above !== undefined || t.below !== undefined;

/** Whether a value is in the trigger's target (to / above / below). */
function inTarget(t: PropertyTrigger, v: unknown): boolean {
  if (t.to !== undefined && !sameValue(v, t.to)) return false;
  if (t.above !== undefined && !(typeof v === 'number' && v > t.above)) return false;
  if (t.below !== undefined && !(typeof v === 'number' && v < t.below)) return false;
  return true;
}

const j = (v: unknown) => JSON.stringify(v);

export const propertyTrigger: TriggerKind<PropertyTrigger> = {
  types: ['property'],
  schema: PropertyTriggerSchema,

  async check(t, path, v) {
    v.unknownKeys(t, path, PropertyTriggerSchema);
    const m = await v.device(t, path);
    const spec = m ? v.property(m, t.property, `${path}.property`, t.device) : undefined;
    if (spec) {
      if (t.to !== undefined) v.value(spec, t.to, `${path}.to`);
      if (t.from !== undefined) v.value(spec, t.from, `${path}.from`);
      v.range(spec, t.above, t.below, path);
    }
    v.duration(t.for, `${path}.for`);
  },

  attach(t, ctx) {
    /** The last value seen; a report is a crossing or not against it. */
    let prev: unknown;
    let known = false;
    const { fire, cancel } = forWindow(t.for, ctx);
    const off = ctx.hub.on('reported', t.device, (ev) => {
      if (!(t.property in ev.values)) return;
      const v = ev.values[t.property];
      const changed = ev.changed.includes(t.property);
      const was = prev;
      const wasKnown = known;
      prev = v;
      known = true;
      const data = { device: t.device, property: t.property, from: wasKnown ? was : null, to: v };
      if (!hasRange(t)) {
        // Any change of the value (from the given one, if any); a change ends a `for` window.
        if (!changed) return;
        cancel();
        if (t.from !== undefined && !(wasKnown && sameValue(was, t.from))) return;
        return fire(data);
      }
      if (!inTarget(t, v)) return cancel();
      if (wasKnown ? inTarget(t, was) : !changed) return;
      if (t.from !== undefined && !(wasKnown && sameValue(was, t.from))) return;
      fire(data);
    });
    // Only a change seen from here on fires, `for` included: a value that is already so when the
    // automation loads (saved, edited, a node restart or a shard moving) does not fire it again.
    ctx.reported(t.device).then(
      (r) => {
        const v = r[t.property];
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

  matches(t, d) {
    if (d.device !== undefined && d.device !== t.device) return false;
    if (d.property !== undefined && d.property !== t.property) return false;
    if (!('to' in d)) return true;
    if (!hasRange(t)) return !('from' in d) || !sameValue(d.from, d.to);
    return inTarget(t, d.to) && (!('from' in d) || !inTarget(t, d.from)) && (t.from === undefined || sameValue(d.from, t.from));
  },

  describe: (_type, d) =>
    `property ${String(d.property)} of ${String(d.device)} became ${j(d.to)}${d.from !== undefined && d.from !== null ? ` (was ${j(d.from)})` : ''}${d.forMs ? ` and stayed so for ${Number(d.forMs) / 1000} s` : ''}`,
};
