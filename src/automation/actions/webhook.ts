import { Type, type Static } from 'typebox';
import { compileTemplate } from '../../core/template.ts';
import { signBody } from '../../core/signing.ts';
import type { ActionKind } from '../automation-plugins.ts';
import { ActionBaseFields, dry, templateEnv } from './common.ts';

export const WebhookActionSchema = Type.Object(
  {
    type: Type.Literal('webhook'),
    ...ActionBaseFields,
    url: Type.String({ description: 'http(s) URL allowed by the outbound policy' }),
    secret: Type.Optional(Type.String({ minLength: 8, maxLength: 256, description: 'Signs the body: x-hearth-signature: sha256=<hex HMAC-SHA256>' })),
    body: Type.Optional(Type.Unknown({ description: 'JSON with {{…}} placeholders (default: the automation, run and trigger)' })),
  },
  { additionalProperties: false, description: 'POSTs JSON to url' },
);

/** POSTs JSON to `url`; with `secret`, `x-hearth-signature: sha256=<hex HMAC-SHA256 of the body>`. */
export type WebhookAction = Static<typeof WebhookActionSchema>;

/** Webhook URLs often carry their secret: traces show the origin and path only. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}

export const webhookAction: ActionKind<WebhookAction> = {
  types: ['webhook'],
  schema: WebhookActionSchema,

  check(a, path, v) {
    v.unknownKeys(a, path, WebhookActionSchema);
    let url: URL | undefined;
    try {
      url = new URL(String(a.url));
    } catch {
      /* below */
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) v.bad(`${path}.url`, 'must be an http(s) URL');
    else {
      const problem = v.home.urlProblem?.(url.href);
      if (problem) v.bad(`${path}.url`, problem);
    }
    if (a.secret !== undefined && (typeof a.secret !== 'string' || a.secret.length < 8 || a.secret.length > 256))
      v.bad(`${path}.secret`, 'must be a string of 8 to 256 characters');
  },

  async run(a, _path, fx, ctx, t) {
    const env = templateEnv(ctx);
    const body =
      a.body === undefined
        ? { automation: { id: ctx.automationId, name: ctx.automationName }, homeId: ctx.homeId, runId: ctx.runId, trigger: ctx.trigger }
        : compileTemplate(a.body)(env);
    if (ctx.dryRun) return dry(t, { url: redact(a.url), body });
    const text = JSON.stringify(body);
    const headers: Record<string, string> = { 'x-hearth-automation': ctx.automationId, 'x-hearth-run': ctx.runId };
    if (a.secret) headers['x-hearth-signature'] = signBody(a.secret, text);
    const r = await fx.postJson(a.url, body, headers);
    t.result = { url: redact(a.url), status: r.status };
  },
};
