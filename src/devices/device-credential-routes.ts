import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { principal } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { actorOf } from '../access/principal.ts';
import type { AuditService } from '../audit/audit-service.ts';
import { MAX_GRACE_SECONDS, type DeviceCredentials } from './device-credentials.ts';
import { DeviceParams } from './device-schema.ts';

/** Secret rotation: `POST /api/v1/devices/{id}/secret`. */
export async function deviceCredentialRoutes(app: HttpApp, deps: { credentials: DeviceCredentials; audit: AuditService }): Promise<void> {
  app.post(
    '/api/v1/devices/:id/secret',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['devices'],
        ...AuthHeader,
        summary:
          "Rotate a device's MQTT secret; the new one is shown once, the old one is accepted for graceSeconds (default 0), then refused and its sessions closed",
        params: DeviceParams,
        body: Type.Optional(
          Type.Object(
            {
              graceSeconds: Type.Optional(
                Type.Integer({
                  minimum: 0,
                  maximum: MAX_GRACE_SECONDS,
                  default: 0,
                  description: 'How long the old secret keeps working (seconds); 0: refused at once',
                }),
              ),
            },
            { additionalProperties: false, examples: [{ graceSeconds: 3600 }] },
          ),
        ),
        response: {
          200: Type.Object(
            {
              secret: Type.String({ description: 'The new secret; shown once' }),
              previousSecretValidUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
                description: 'Until when the old secret is accepted; null: not at all',
              }),
            },
            { examples: [{ secret: 'q3VZ0m1oQ2d3bU8pX1c2V3d4…', previousSecretValidUntil: '2026-12-06T09:00:00.000Z' }] },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const grace = req.body?.graceSeconds ?? 0;
      const r = await deps.credentials.rotate(req.params.id, grace);
      deps.audit.record({
        actor: actorOf(principal(req)),
        action: 'device.secret.rotate',
        targetType: 'device',
        targetId: req.params.id,
        details: { graceSeconds: grace },
      });
      return { secret: r.secret, previousSecretValidUntil: r.previousValidUntil === null ? null : new Date(r.previousValidUntil).toISOString() };
    },
  );
}
