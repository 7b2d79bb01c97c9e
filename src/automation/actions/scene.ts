import { Type, type Static } from 'typebox';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry } from './common.ts';

export const SceneActionSchema = Type.Object(
  {
    type: Type.Literal('scene'),
    ...ActionBaseFields,
    scene: Type.String({ description: 'A scene of the home' }),
  },
  { additionalProperties: false, description: 'Activates a scene of the home' },
);

/** Activates a scene of the home. */
export type SceneAction = Static<typeof SceneActionSchema>;

export const sceneAction: ActionKind<SceneAction> = {
  types: ['scene'],
  schema: SceneActionSchema,

  async check(a, path, v) {
    v.unknownKeys(a, path, SceneActionSchema);
    await v.scene(a.scene, `${path}.scene`);
  },

  async run(a, _path, fx, ctx, t) {
    if (!fx.scenes) throw new Error('scenes are not available');
    if (ctx.dryRun) return dry(t, { scene: a.scene });
    const act = await fx.scenes.activateAs(`automation:${ctx.automationId}`, ctx.homeId, a.scene);
    t.result = { scene: a.scene, activationId: act.id, ok: act.ok, results: act.results };
    if (!act.ok) {
      t.status = 'failed';
      t.error = `${act.results.filter((r) => !r.ok).length} of ${act.results.length} devices failed`;
    }
  },
};
