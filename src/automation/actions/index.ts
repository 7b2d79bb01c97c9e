import { Type } from 'typebox';
import { registry, type ActionKind } from '../automation-plugins.ts';
import { commandAction, CommandActionSchema, type CommandAction } from './command.ts';
import { setAction, SetActionSchema, type SetAction } from './set.ts';
import { sceneAction, SceneActionSchema, type SceneAction } from './scene.ts';
import { groupAction, GroupActionSchema, type GroupAction } from './group.ts';
import { notifyAction, NotifyActionSchema, type NotifyAction } from './notify.ts';
import { webhookAction, WebhookActionSchema, type WebhookAction } from './webhook.ts';
import { delayAction, DelayActionSchema, type DelayAction } from './delay.ts';
import { waitAction, WaitActionSchema, type WaitAction } from './wait.ts';
import { chooseAction, ChooseActionSchema, type ChooseAction } from './choose.ts';
import { toggleAutomationAction, ToggleAutomationActionSchema, type ToggleAutomationAction } from './toggle-automation.ts';

export type { CommandAction, SetAction, SceneAction, GroupAction, NotifyAction, WebhookAction, DelayAction, WaitAction, ChooseAction, ToggleAutomationAction };

/** Every action kind; a new kind is one file here and one line in this list (and in the union below). */
export const actionKinds = registry<ActionKind>([
  commandAction,
  setAction,
  sceneAction,
  groupAction,
  notifyAction,
  webhookAction,
  delayAction,
  waitAction,
  chooseAction,
  toggleAutomationAction,
]);

export const ActionSchema = Type.Union(
  [
    CommandActionSchema,
    SetActionSchema,
    SceneActionSchema,
    GroupActionSchema,
    NotifyActionSchema,
    WebhookActionSchema,
    DelayActionSchema,
    WaitActionSchema,
    ChooseActionSchema,
    ToggleAutomationActionSchema,
  ],
  { description: 'An action; they run in order. See docs/automations.md' },
);

export type Action =
  | CommandAction
  | SetAction
  | SceneAction
  | GroupAction
  | NotifyAction
  | WebhookAction
  | DelayAction
  | WaitAction
  | ChooseAction
  | ToggleAutomationAction;
