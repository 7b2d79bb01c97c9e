import { Type, type Static } from 'typebox';
import { sameValue } from '../../core/values.ts';
import type { ConditionKind } from '../automation-plugins.ts';

export const PropertyConditionSchema = Type.Object(
  {
    type: Type.Literal('property'),
    device: Type.String({ description: 'A device of the home' }),
    property: Type.String({ description: "One of the device's properties" }),
    equals: Type.Optional(Type.Unknown()),
    notEquals: Type.Optional(Type.Unknown()),
    above: Type.Optional(Type.Number()),
    below: Type.Optional(Type.Number()),
    oneOf: Type.Optional(Type.Array(Type.Unknown(), { minItems: 1 })),
  },
  { additionalProperties: false, description: "The device's current reported value compared; every comparison given must hold" },
);

/** The device's current reported value compared; several comparisons must all hold. A missing value fails every comparison. */
export type PropertyCondition = Static<typeof PropertyConditionSchema>;

export const propertyCondition: ConditionKind<PropertyCondition> = {
  types: ['property'],
  schema: PropertyConditionSchema,

  async check(c, path, v) {
    v.unknownKeys(c, path, PropertyConditionSchema);
    const m = await v.device(c, path);
    const spec = m ? v.property(m, c.property, `${path}.property`, c.device) : undefined;
    if (c.equals === undefined && c.notEquals === undefined && c.above === undefined && c.below === undefined && c.oneOf === undefined) {
      v.bad(path, 'needs a comparison: equals, notEquals, above, below or oneOf');
    }
    if (spec) {
      if (c.equals !== undefined) v.value(spec, c.equals, `${path}.equals`);
      if (c.notEquals !== undefined) v.value(spec, c.notEquals, `${path}.notEquals`);
      if (c.oneOf !== undefined) {
        if (!Array.isArray(c.oneOf) || c.oneOf.length === 0) v.bad(`${path}.oneOf`, 'must be a non-empty list of values');
        else c.oneOf.forEach((x, i) => v.value(spec, x, `${path}.oneOf[${i}]`));
      }
      v.range(spec, c.above, c.below, path);
    }
  },

  async evaluate(c, path, w) {
    const reported = await w.reported(c.device);
    const actual = reported[c.property];
    const values: Record<string, unknown> = { device: c.device, property: c.property, actual: actual ?? null };
    const fails: string[] = [];
    if (actual === undefined) fails.push('the device has not reported it');
    else {
      if (c.equals !== undefined) {
        values.equals = c.equals;
        if (!sameValue(actual, c.equals)) fails.push(`${JSON.stringify(actual)} is not ${JSON.stringify(c.equals)}`);
      }
      if (c.notEquals !== undefined) {
        values.notEquals = c.notEquals;
        if (sameValue(actual, c.notEquals)) fails.push(`it is ${JSON.stringify(actual)}`);
      }
      if (c.oneOf !== undefined) {
        values.oneOf = c.oneOf;
        if (!c.oneOf.some((x) => sameValue(x, actual))) fails.push(`${JSON.stringify(actual)} is none of ${JSON.stringify(c.oneOf)}`);
      }
      if (c.above !== undefined) {
        values.above = c.above;
        if (!(typeof actual === 'number' && actual > c.above)) fails.push(`${JSON.stringify(actual)} is not above ${c.above}`);
      }
      if (c.below !== undefined) {
        values.below = c.below;
        if (!(typeof actual === 'number' && actual < c.below)) fails.push(`${JSON.stringify(actual)} is not below ${c.below}`);
      }
    }
    return { path, type: c.type, result: fails.length === 0, values, ...(fails.length ? { reason: fails.join('; ') } : {}) };
  },
};
