import { Type, type Static } from 'typebox';
import { parseDateTime, specProblem } from '../../timers/timer-spec.ts';
import type { TriggerKind } from '../automation-plugins.ts';

export const ScheduleTriggerSchema = Type.Object(
  {
    type: Type.Literal('schedule'),
    cron: Type.Optional(Type.String({ description: "Cron, 5 fields (or 6 with seconds), in the home's time zone", examples: ['30 7 * * mon-fri'] })),
    at: Type.Optional(Type.String({ description: "Once, at this ISO 8601 date-time (without an offset: the home's time)", examples: ['2026-12-24T18:00'] })),
  },
  { additionalProperties: false, description: "Cron in the home's time zone, or once at `at`: one of the two" },
);

/** Cron (5 fields, or 6 with seconds) in the home's time zone, or once at `at` (ISO 8601). */
export type ScheduleTrigger = Static<typeof ScheduleTriggerSchema>;

export const scheduleTrigger: TriggerKind<ScheduleTrigger> = {
  types: ['schedule'],
  schema: ScheduleTriggerSchema,

  check(t, path, v) {
    v.unknownKeys(t, path, ScheduleTriggerSchema);
    if ((t.cron === undefined) === (t.at === undefined)) return v.bad(path, 'needs either "cron" or "at"');
    if (t.cron !== undefined && typeof t.cron !== 'string') return v.bad(`${path}.cron`, 'is not a cron expression: must be a string');
    const spec = scheduleTrigger.timer!(t, v.home);
    if (!spec) return v.bad(`${path}.at`, 'must be an ISO 8601 date-time such as "2026-12-24T18:00" (the home\'s time) or "2026-12-24T17:00:00Z"');
    // The TimerService's own check: what passes here is never refused there.
    const why = specProblem(spec, v.home.now);
    if (why)
      v.bad(
        `${path}.${spec.kind === 'cron' ? 'cron' : 'at'}`,
        spec.kind === 'cron' && !why.endsWith('matches no date') ? `is not a cron expression: ${why}` : why,
      );
  },

  attach: (_t, ctx) => ctx.hub.on('timer', ctx.timerKey, (f) => ctx.fire({ scheduledAt: new Date(f.scheduledAt).toISOString(), lateMs: f.lateMs })),

  timer(t, home) {
    if (typeof t.cron === 'string') return { kind: 'cron', cron: t.cron, timezone: home.timezone };
    const at = typeof t.at === 'string' ? parseDateTime(t.at, home.timezone) : undefined;
    return at === undefined ? undefined : { kind: 'at', at };
  },

  describe: (_type, d) => `the schedule due at ${String(d.scheduledAt)} fired${d.lateMs ? ` (${String(d.lateMs)} ms late)` : ''}`,
};
