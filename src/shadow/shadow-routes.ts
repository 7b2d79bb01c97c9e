import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, JsonObject, problems } from '../transports/http/http-schemas.ts';
import { DeviceParams, ShadowSchema } from '../devices/device-schema.ts';
import type { AccessService } from '../access/access-service.ts';
import type { AuditService } from '../audit/audit-service.ts';
import { actorOf } from '../access/principal.ts';
import { principal } from '../transports/http/http-server.ts';
import type { ShadowService } from './shadow-service.ts';

export async function shadowRoutes(app: HttpApp, deps: { access: AccessService; shadow: ShadowService; audit: AuditService }): Promise<void> {
  app.get(
    '/api/v1/devices/:id/shadow',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['shadow'],
        summary: 'Reported, desired and delta state',
        ...AuthHeader,
        params: DeviceParams,
        response: { 200: ShadowSchema, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req) => {
      await deps.access.requireDevice(principal(req), req.params.id, 'view');
      return deps.shadow.view(req.params.id);
    },
  );

  app.patch(
    '/api/v1/devices/:id/shadow',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['shadow'],
        summary: 'Set desired state (null removes a key); an offline device receives it when it reconnects',
        ...AuthHeader,
        params: DeviceParams,
        body: Type.Object({ desired: JsonObject }, { examples: [{ desired: { on: true, brightness: 60 } }] }),
        response: { 200: ShadowSchema, ...problems('E_VALIDATION', 'E_MODEL_MISMATCH', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req) => {
      const p = principal(req);
      const { placement } = await deps.access.requirePlacedDevice(p, req.params.id, 'control');
      const view = await deps.shadow.setDesired(req.params.id, req.body.desired);
      deps.audit.record({
        actor: actorOf(p),
        action: 'device.desired',
        homeId: placement?.homeId,
        targetType: 'device',
        targetId: req.params.id,
        details: { desired: req.body.desired },
      });
      return view;
    },
  );
}
