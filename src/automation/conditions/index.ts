import { Type } from 'typebox';
import { registry, type ConditionKind } from '../automation-plugins.ts';
import { propertyCondition, PropertyConditionSchema, type PropertyCondition } from './property.ts';
import { timeCondition, TimeConditionSchema, type TimeCondition } from './time.ts';
import { sunCondition, SunConditionSchema, type SunCondition } from './sun.ts';
import { presenceCondition, PresenceConditionSchema, type PresenceCondition } from './presence.ts';
import { groupCondition, GroupConditionSchema, type GroupCondition } from './group.ts';

export type { PropertyCondition, TimeCondition, SunCondition, PresenceCondition, GroupCondition };

/** Every condition kind; a new kind is one file here and one line in this list (and in the union below). */
export const conditionKinds = registry<ConditionKind>([propertyCondition, timeCondition, sunCondition, presenceCondition, groupCondition]);

export const ConditionSchema = Type.Union([PropertyConditionSchema, TimeConditionSchema, SunConditionSchema, PresenceConditionSchema, GroupConditionSchema], {
  description: "A condition; all of an automation's conditions must hold. See docs/automations.md",
});

export type Condition = PropertyCondition | TimeCondition | SunCondition | PresenceCondition | GroupCondition;
