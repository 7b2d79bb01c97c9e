import { Type } from 'typebox';
import { isHearthError } from '../../core/errors.ts';
import type { ActionTrace } from '../automation-types.ts';
import type { ActionEffects, RunContext } from '../actions.ts';

/** Fields every action has, spread into each kind's schema. */
export const ActionBaseFields = {
  alias: Type.Optional(Type.String({ maxLength: 200, description: 'Shown in the trace' })),
  continueOnError: Type.Optional(Type.Boolean({ description: 'A failure is recorded and the run goes on (default: the run stops, status failed)' })),
};

/** Thrown to end a run early: `status` becomes the run's status. */
export class StopRun extends Error {
  constructor(
    readonly status: 'failed' | 'cancelled',
    message: string,
  ) {
    super(message);
  }
}

export const errorText = (err: unknown) => (isHearthError(err) ? `${err.code}: ${err.message}` : ((err as Error)?.message ?? String(err)));

/** A dry run's trace: what the action would have done. */
export function dry(t: ActionTrace, wouldDo: Record<string, unknown>): void {
  t.status = 'dry-run';
  t.result = { wouldDo };
}

/** The values `{{…}}` placeholders of notify and webhook actions can use. */
export function templateEnv(ctx: RunContext): object {
  return {
    trigger: { type: ctx.trigger.type, ...ctx.trigger.data, at: ctx.trigger.at, description: ctx.trigger.description },
    automation: { id: ctx.automationId, name: ctx.automationName },
    home: { id: ctx.homeId },
    run: { id: ctx.runId },
  };
}

/** Sleeps on the run's clock; resolves false when the run was cancelled meanwhile. */
export function sleep(fx: ActionEffects, ctx: RunContext, ms: number): Promise<boolean> {
  if (ctx.cancelled) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      ctx.cancelHooks.delete(onCancel);
      undo();
      resolve(v);
    };
    const onCancel = () => done(false);
    const undo = fx.clock.setTimer(() => done(true), ms);
    ctx.cancelHooks.add(onCancel);
  });
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
