import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { AuthHeader, JsonObject, problems } from '../transports/http/http-schemas.ts';
import { DeviceParams, ShadowSchema } from '../devices/device-schema.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { ShadowService } from './shadow-service.ts';

export function shadowRoutes(app: HttpApp, deps: { devices: DeviceService; shadow: ShadowService }): void {
  app.get('/api/v1/devices/:id/shadow', {
    schema: { tags: ['shadow'], summary: 'Reported, desired and delta state', ...AuthHeader, params: DeviceParams, response: { 200: ShadowSchema, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') } },
  }, async (req) => {
    await deps.devices.require(req.params.id);
    return deps.shadow.view(req.params.id);
  });

  app.patch('/api/v1/devices/:id/shadow', {
    schema: {
      tags: ['shadow'], summary: 'Set desired state (null removes a key); an offline device receives it when it reconnects', ...AuthHeader,
      params: DeviceParams,
      body: Type.Object({ desired: JsonObject }, { examples: [{ desired: { on: true, brightness: 60 } }] }),
      response: { 200: ShadowSchema, ...problems('E_VALIDATION', 'E_MODEL_MISMATCH', 'E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') },
    },
  }, async (req) => {
    await deps.devices.require(req.params.id);
    return deps.shadow.setDesired(req.params.id, req.body.desired);
  });
}
