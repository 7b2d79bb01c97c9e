import { Type } from 'typebox';
import { evaluateAll } from '../conditions.ts';
import { MAX_DEPTH } from '../conditions/group.ts';
import type { ActionKind } from '../automation-plugins.ts';
import type { ActionBase } from '../actions.ts';
import type { Action, Condition, ConditionTrace } from '../automation-types.ts';
import { ActionBaseFields, isObject } from './common.ts';

const AnyCondition = Type.Object({ type: Type.String() }, { additionalProperties: true, description: 'A condition of any type' });
const AnyAction = Type.Object({ type: Type.String() }, { additionalProperties: true, description: 'An action of any type' });

export const ChooseActionSchema = Type.Object(
  {
    type: Type.Literal('choose'),
    ...ActionBaseFields,
    choices: Type.Array(
      Type.Object(
        {
          conditions: Type.Array(AnyCondition),
          actions: Type.Array(AnyAction, { minItems: 1 }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    default: Type.Optional(Type.Array(AnyAction)),
  },
  { additionalProperties: false, description: 'The first choice whose conditions all hold runs its actions; none: default' },
);

/** The first choice whose conditions all hold runs its actions; none: `default`. (Written by hand: a recursive type.) */
export interface ChooseAction extends ActionBase {
  type: 'choose';
  choices: Array<{ conditions: Condition[]; actions: Action[] }>;
  default?: Action[];
}

export const chooseAction: ActionKind<ChooseAction> = {
  types: ['choose'],
  schema: ChooseActionSchema,

  async check(a, path, v, depth) {
    v.unknownKeys(a, path, ChooseActionSchema);
    if (depth >= MAX_DEPTH) return v.bad(path, `choose nests at most ${MAX_DEPTH} deep`);
    if (!Array.isArray(a.choices) || a.choices.length === 0) v.bad(`${path}.choices`, 'needs at least one choice {conditions, actions}');
    else
      for (let i = 0; i < a.choices.length; i++) {
        const ch = a.choices[i];
        const cp = `${path}.choices[${i}]`;
        if (!isObject(ch)) {
          v.bad(cp, 'must be {conditions, actions}');
          continue;
        }
        await v.conditions(ch.conditions, `${cp}.conditions`, depth + 1);
        if (!Array.isArray(ch.actions) || ch.actions.length === 0) v.bad(`${cp}.actions`, 'needs at least one action');
        else await v.actions(ch.actions, `${cp}.actions`, depth + 1);
      }
    if (a.default !== undefined) await v.actions(a.default, `${path}.default`, depth + 1);
  },

  nested: (a) => ({
    conditions: (a.choices ?? []).flatMap((ch) => ch.conditions ?? []),
    actions: [...(a.choices ?? []).flatMap((ch) => ch.actions ?? []), ...(a.default ?? [])],
  }),

  async run(a, path, _fx, ctx, t, nested) {
    const tried: ConditionTrace[] = [];
    let chosen: number | 'default' | null = null;
    for (let i = 0; i < a.choices.length; i++) {
      const r = await evaluateAll(a.choices[i].conditions, `${path}.choices[${i}].conditions`, ctx.world);
      tried.push(...r.traces);
      if (r.ok) {
        chosen = i;
        break;
      }
    }
    if (chosen === null && a.default) chosen = 'default';
    t.conditions = tried;
    t.chosen = chosen;
    t.actions = [];
    if (chosen === null) return;
    const branch = chosen === 'default' ? a.default! : a.choices[chosen].actions;
    await nested(branch, chosen === 'default' ? `${path}.default` : `${path}.choices[${chosen}].actions`);
  },
};
