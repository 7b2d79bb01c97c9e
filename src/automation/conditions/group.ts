import { Type } from 'typebox';
import type { ConditionKind } from '../automation-plugins.ts';
import type { Condition, ConditionTrace } from '../automation-types.ts';

/** Nesting limit of groups (and of choose and wait in actions). */
export const MAX_DEPTH = 6;

export const GroupConditionSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('and'), Type.Literal('or'), Type.Literal('not')]),
    conditions: Type.Array(Type.Object({ type: Type.String() }, { additionalProperties: true, description: 'A condition of any type' }), { minItems: 1 }),
  },
  { additionalProperties: false, description: 'and: all hold; or: one holds; not: none holds' },
);

/** and: all hold; or: one holds; not: none holds. (Written by hand: a recursive type.) */
export interface GroupCondition {
  type: 'and' | 'or' | 'not';
  conditions: Condition[];
}

export const groupCondition: ConditionKind<GroupCondition> = {
  types: ['and', 'or', 'not'],
  schema: GroupConditionSchema,

  async check(c, path, v, depth) {
    v.unknownKeys(c, path, GroupConditionSchema);
    if (depth >= MAX_DEPTH) return v.bad(path, `conditions nest at most ${MAX_DEPTH} deep`);
    if (!Array.isArray(c.conditions) || c.conditions.length === 0) return v.bad(`${path}.conditions`, 'needs at least one condition');
    await v.conditions(c.conditions, `${path}.conditions`, depth + 1);
  },

  async evaluate(c, path, _w, nested) {
    const children: ConditionTrace[] = [];
    for (let i = 0; i < c.conditions.length; i++) children.push(await nested(c.conditions[i], `${path}.conditions[${i}]`));
    const trues = children.filter((x) => x.result).length;
    const result = c.type === 'and' ? trues === children.length : c.type === 'or' ? trues > 0 : trues === 0;
    const reason = result
      ? undefined
      : c.type === 'and'
        ? `${children.length - trues} of ${children.length} do not hold`
        : c.type === 'or'
          ? 'none of them holds'
          : `${trues} of them ${trues === 1 ? 'holds' : 'hold'}`;
    return { path, type: c.type, result, children, ...(reason ? { reason } : {}) };
  },

  children: (c) => (Array.isArray(c.conditions) ? c.conditions : []),
};
