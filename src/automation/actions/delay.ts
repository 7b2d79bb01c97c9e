import { Type, type Static } from 'typebox';
import { DurationSchema, parseDuration } from '../automation-values.ts';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry, sleep } from './common.ts';

export const DelayActionSchema = Type.Object(
  {
    type: Type.Literal('delay'),
    ...ActionBaseFields,
    duration: DurationSchema,
  },
  { additionalProperties: false, description: 'Waits this long' },
);

/** Waits this long (a cancelled run ends it). */
export type DelayAction = Static<typeof DelayActionSchema>;

export const delayAction: ActionKind<DelayAction> = {
  types: ['delay'],
  schema: DelayActionSchema,
  waits: true,

  check(a, path, v) {
    v.unknownKeys(a, path, DelayActionSchema);
    if (a.duration === undefined) v.bad(`${path}.duration`, 'is required');
    else v.duration(a.duration, `${path}.duration`);
  },

  async run(a, _path, fx, ctx, t) {
    const ms = parseDuration(a.duration)!;
    if (ctx.dryRun) return dry(t, { durationMs: ms });
    t.result = { durationMs: ms };
    if (ms > 0) await sleep(fx, ctx, ms);
  },
};
