import { Type, type Static } from 'typebox';
import { MAX_SUN_OFFSET_MS, specProblem } from '../../timers/timer-spec.ts';
import { OffsetSchema, parseDuration } from '../automation-values.ts';
import type { TriggerKind } from '../automation-plugins.ts';

export const SunTriggerSchema = Type.Object(
  {
    type: Type.Literal('sun'),
    event: Type.Union([Type.Literal('sunrise'), Type.Literal('sunset')]),
    offset: Type.Optional(OffsetSchema),
  },
  { additionalProperties: false, description: 'Sunrise or sunset at the home\'s location, shifted by `offset` (e.g. "-30m")' },
);

/** Sunrise or sunset at the home's location, shifted by `offset` (e.g. `"-30m"`). */
export type SunTrigger = Static<typeof SunTriggerSchema>;

export const sunTrigger: TriggerKind<SunTrigger> = {
  types: ['sun'],
  schema: SunTriggerSchema,

  check(t, path, v) {
    v.unknownKeys(t, path, SunTriggerSchema);
    if (t.event !== 'sunrise' && t.event !== 'sunset') v.bad(`${path}.event`, 'must be "sunrise" or "sunset"');
    v.duration(t.offset, `${path}.offset`, true);
    v.needsLocation(path);
    const spec = t.event === 'sunrise' || t.event === 'sunset' ? sunTrigger.timer!(t, v.home) : undefined;
    const why = spec && specProblem(spec, v.home.now);
    if (why && spec?.kind === 'sun' && Math.abs(spec.offsetMs) > MAX_SUN_OFFSET_MS)
      v.bad(`${path}.offset`, `must be within ${MAX_SUN_OFFSET_MS / 3_600_000}h before or after ${t.event}`);
    else if (why) v.bad(path, why);
  },

  attach: (t, ctx) =>
    ctx.hub.on('timer', ctx.timerKey, (f) => ctx.fire({ scheduledAt: new Date(f.scheduledAt).toISOString(), lateMs: f.lateMs, event: t.event })),

  /** Undefined for a home without a location or an unreadable offset. */
  timer(t, home) {
    if (home.latitude == null || home.longitude == null) return undefined;
    const offsetMs = parseDuration(t.offset ?? 0, true);
    if (offsetMs === undefined) return undefined;
    return { kind: 'sun', event: t.event, offsetMs, latitude: home.latitude, longitude: home.longitude, timezone: home.timezone };
  },

  matches: (t, d) => d.event === undefined || d.event === t.event,

  describe: (_type, d) => `${String(d.event ?? 'sun')} (due at ${String(d.scheduledAt)})`,
};
