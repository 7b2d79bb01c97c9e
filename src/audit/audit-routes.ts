import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, JsonObject, problems } from '../transports/http/http-schemas.ts';
import type { AuditService } from './audit-service.ts';

export const AuditRecordSchema = Type.Object({
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  actor: Type.String({ description: 'user:u_…, key:k_… or system' }),
  action: Type.String({ examples: ['device.command'] }),
  homeId: Type.Union([Type.String(), Type.Null()]),
  targetType: Type.String(),
  targetId: Type.String(),
  details: Type.Union([JsonObject, Type.Null()]),
});

export const AuditListSchema = Type.Object(
  { items: Type.Array(AuditRecordSchema) },
  {
    examples: [
      {
        items: [
          {
            id: 'a_2k9x4p1q8r0t7m',
            at: '2026-11-23T08:00:00.000Z',
            actor: 'user:u_4k2m9x7p1q8r0t',
            action: 'device.command',
            homeId: 'h_5t2k9x4p1q8r0m',
            targetType: 'device',
            targetId: 'd_9x2k7m4p1q8r0t',
            details: { action: 'toggle', params: {} },
          },
        ],
      },
    ],
  },
);

export const AuditQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  before: Type.Optional(Type.String({ format: 'date-time', description: 'Page backwards: entries older than this' })),
  action: Type.Optional(Type.String()),
});

/** The operator's view of the whole audit log. Home owners read theirs at /homes/{homeId}/audit. */
export async function auditRoutes(app: HttpApp, deps: { audit: AuditService }): Promise<void> {
  app.get(
    '/api/v1/audit',
    {
      config: { auth: Auth.operator('audit:read') },
      schema: {
        tags: ['audit'],
        summary: 'The audit log, newest first (operator)',
        ...AuthHeader,
        querystring: Type.Object({ ...AuditQuery.properties, homeId: Type.Optional(Type.String()) }),
        response: { 200: AuditListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => {
      const q = req.query;
      return { items: await deps.audit.list({ homeId: q.homeId, limit: q.limit, action: q.action, before: q.before ? Date.parse(q.before) : undefined }) };
    },
  );
}
