import { Type, type Static } from 'typebox';
import { registry, type TriggerKind } from '../automation-plugins.ts';
import { propertyTrigger, PropertyTriggerSchema } from './property.ts';
import { eventTrigger, EventTriggerSchema } from './event.ts';
import { presenceTrigger, PresenceTriggerSchema } from './presence.ts';
import { scheduleTrigger, ScheduleTriggerSchema } from './schedule.ts';
import { sunTrigger, SunTriggerSchema } from './sun.ts';
import { sceneTrigger, SceneTriggerSchema } from './scene.ts';
import { manualTrigger, ManualTriggerSchema } from './manual.ts';
import { webhookTrigger, WebhookTriggerSchema } from './webhook.ts';

export type { PropertyTrigger } from './property.ts';
export type { EventTrigger } from './event.ts';
export type { PresenceTrigger } from './presence.ts';
export type { ScheduleTrigger } from './schedule.ts';
export type { SunTrigger } from './sun.ts';
export type { SceneTrigger } from './scene.ts';
export type { ManualTrigger } from './manual.ts';
export type { WebhookTrigger } from './webhook.ts';

/** Every trigger kind; a new kind is one file here and one line in this list (and in the union below). */
export const triggerKinds = registry<TriggerKind>([
  propertyTrigger,
  eventTrigger,
  presenceTrigger,
  scheduleTrigger,
  sunTrigger,
  sceneTrigger,
  manualTrigger,
  webhookTrigger,
]);

export const TriggerSchema = Type.Union(
  [
    PropertyTriggerSchema,
    EventTriggerSchema,
    PresenceTriggerSchema,
    ScheduleTriggerSchema,
    SunTriggerSchema,
    SceneTriggerSchema,
    ManualTriggerSchema,
    WebhookTriggerSchema,
  ],
  { description: 'What starts the automation; see docs/automations.md' },
);

export type Trigger = Static<typeof TriggerSchema>;
export type TriggerType = Trigger['type'];
