import { Type, type Static } from 'typebox';
import type { TriggerKind } from '../automation-plugins.ts';

export const SceneTriggerSchema = Type.Object(
  {
    type: Type.Literal('scene'),
    scene: Type.String({ description: 'A scene of the home' }),
  },
  { additionalProperties: false, description: 'A scene of the home was activated' },
);

/** A scene of the home was activated. */
export type SceneTrigger = Static<typeof SceneTriggerSchema>;

export const sceneTrigger: TriggerKind<SceneTrigger> = {
  types: ['scene'],
  schema: SceneTriggerSchema,

  async check(t, path, v) {
    v.unknownKeys(t, path, SceneTriggerSchema);
    await v.scene(t.scene, `${path}.scene`);
  },

  attach: (t, ctx) =>
    ctx.hub.on('scene', t.scene, (act) => {
      if (act.homeId !== ctx.homeId) return;
      void ctx.fire({ scene: act.sceneId, activationId: act.id, source: act.source, ok: act.ok });
    }),

  matches: (t, d) => d.scene === undefined || d.scene === t.scene,

  describe: (_type, d) => `scene ${String(d.scene)} was activated`,

  // An automation activating the scene (or within the grace after) makes this firing chained.
  cause: (d) => `scene:${String(d.scene)}`,
};
