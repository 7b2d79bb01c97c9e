import { Type, type Static } from 'typebox';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry, isObject } from './common.ts';

export const CommandActionSchema = Type.Object(
  {
    type: Type.Literal('command'),
    ...ActionBaseFields,
    device: Type.String({ description: 'A device of the home' }),
    action: Type.String({ description: "One of the device's actions" }),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 120_000 })),
  },
  { additionalProperties: false, description: "A command, waiting for the device's answer (an answer ok: false is a failure)" },
);

/** A command, waiting for the device's answer (an answer `ok: false` is a failure). */
export type CommandAction = Static<typeof CommandActionSchema>;

export const commandAction: ActionKind<CommandAction> = {
  types: ['command'],
  schema: CommandActionSchema,

  async check(a, path, v) {
    v.unknownKeys(a, path, CommandActionSchema);
    const m = await v.device(a, path);
    if (typeof a.action !== 'string') v.bad(`${path}.action`, "is required: the name of one of the device's actions");
    else if (m) {
      const spec = m.actions.get(a.action);
      if (!spec) v.bad(`${path}.action`, `device "${a.device}" has no action "${a.action}" (it has: ${[...m.actions.keys()].join(', ') || 'none'})`);
      else if (a.params !== undefined && !isObject(a.params)) v.bad(`${path}.params`, 'must be an object');
      else {
        v.params(spec.params, a.params ?? {}, `${path}.params`, `action "${a.action}"`, true);
        // the model's own check, so that nothing it would refuse at run time passes here
        const checked = m.checkAction(a.action, a.params ?? {});
        if (!checked.ok && !v.hasProblemUnder(`${path}.params`)) v.bad(`${path}.params`, checked.problems.join('; '));
      }
    }
    if (a.timeoutMs !== undefined && (!Number.isInteger(a.timeoutMs) || a.timeoutMs < 100 || a.timeoutMs > 120_000))
      v.bad(`${path}.timeoutMs`, 'must be an integer from 100 to 120000');
  },

  async run(a, _path, fx, ctx, t) {
    if (ctx.dryRun) return dry(t, { device: a.device, action: a.action, params: a.params ?? {} });
    const out = await fx.command(
      a.device,
      { action: a.action, ...(a.params ? { params: a.params } : {}), ...(a.timeoutMs ? { timeoutMs: a.timeoutMs } : {}) },
      `automation:${ctx.automationId}`,
    );
    t.result = { device: a.device, commandId: out.id, ok: out.ok, latencyMs: out.latencyMs, ...(out.result !== undefined ? { result: out.result } : {}) };
    if (!out.ok) {
      t.status = 'failed';
      t.error = `the device answered: ${out.error ?? 'not ok'}`;
    }
  },
};
