import { Type, type Static } from 'typebox';
import { compileTemplate } from '../../core/template.ts';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry, templateEnv } from './common.ts';

export const NotifyActionSchema = Type.Object(
  {
    type: Type.Literal('notify'),
    ...ActionBaseFields,
    title: Type.String({ minLength: 1, maxLength: 200, description: '{{trigger.…}} placeholders are filled in' }),
    message: Type.String({ maxLength: 2000 }),
    severity: Type.Optional(Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('alarm')])),
    users: Type.Optional(Type.Array(Type.String(), { minItems: 1, description: 'Only these members of the home (default: all)' })),
    kind: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9_-]{0,31}$', description: "Notification kind for people's preferences (default automation)" })),
  },
  { additionalProperties: false, description: "A notification to the home's people" },
);

/** A notification to the home's people (`users`: some of them). `{{trigger.…}}` placeholders are filled in. */
export type NotifyAction = Static<typeof NotifyActionSchema>;

export const notifyAction: ActionKind<NotifyAction> = {
  types: ['notify'],
  schema: NotifyActionSchema,

  async check(a, path, v) {
    v.unknownKeys(a, path, NotifyActionSchema);
    if (typeof a.title !== 'string' || !a.title || a.title.length > 200) v.bad(`${path}.title`, 'is required (at most 200 characters)');
    if (typeof a.message !== 'string' || a.message.length > 2000) v.bad(`${path}.message`, 'is required (at most 2000 characters)');
    if (a.severity !== undefined && !['info', 'warning', 'alarm'].includes(a.severity)) v.bad(`${path}.severity`, 'must be info, warning or alarm');
    if (a.kind !== undefined && (typeof a.kind !== 'string' || !/^[a-z][a-z0-9_-]{0,31}$/.test(a.kind)))
      v.bad(`${path}.kind`, 'must be a short lowercase name like "security"');
    if (a.users !== undefined) {
      if (!Array.isArray(a.users) || a.users.length === 0) v.bad(`${path}.users`, 'must be a non-empty list of user ids');
      else
        for (let i = 0; i < a.users.length; i++)
          if (typeof a.users[i] !== 'string' || !(await v.home.isMember(a.users[i])))
            v.bad(`${path}.users[${i}]`, `user "${String(a.users[i])}" is not a member of this home`);
    }
  },

  async run(a, _path, fx, ctx, t) {
    if (!fx.notify) throw new Error('notifications are not available');
    const env = templateEnv(ctx);
    const title = String(compileTemplate(a.title)(env) ?? '');
    const body = String(compileTemplate(a.message)(env) ?? '');
    if (ctx.dryRun) return dry(t, { title, message: body, severity: a.severity ?? 'info', ...(a.users ? { users: a.users } : {}) });
    const sent = await fx.notify.send({
      homeId: ctx.homeId,
      kind: a.kind ?? 'automation',
      severity: a.severity ?? 'info',
      title,
      body,
      ...(a.users ? { users: a.users } : {}),
      source: `automation:${ctx.automationId}`,
      data: { automationId: ctx.automationId, runId: ctx.runId },
    });
    t.result = { notificationId: sent.id, title, results: sent.results };
  },
};
