import { Type, type Static } from 'typebox';
import type { TriggerKind } from '../automation-plugins.ts';

export const WebhookTriggerSchema = Type.Object(
  { type: Type.Literal('webhook') },
  { additionalProperties: false, description: "POST /api/v1/hooks/{webhookId} (the automation's webhookId, an unguessable secret)" },
);

/** `POST /api/v1/hooks/{webhookId}`: fired by the engine's webhook requests, nothing to attach. */
export type WebhookTrigger = Static<typeof WebhookTriggerSchema>;

export const webhookTrigger: TriggerKind<WebhookTrigger> = {
  types: ['webhook'],
  schema: WebhookTriggerSchema,
  check: (t, path, v) => v.unknownKeys(t, path, WebhookTriggerSchema),
  describe: () => 'the webhook was called',
  // A webhook action of an automation calling this platform's own webhook marks itself.
  cause: (d) => (typeof d.fromAutomation === 'string' ? `automation:${d.fromAutomation}` : undefined),
};
