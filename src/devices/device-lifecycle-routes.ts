import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { actorOf } from '../access/principal.ts';
import type { DeviceLifecycle } from './device-lifecycle.ts';
import { DeleteDeviceQuery, DeviceParams } from './device-schema.ts';

/** The fleet lifecycle's routes (docs/fleet.md); disabling is `PATCH /api/v1/devices/{id}` (home-routes.ts). */
export async function deviceLifecycleRoutes(app: HttpApp, deps: { lifecycle: DeviceLifecycle }): Promise<void> {
  app.delete(
    '/api/v1/devices/:id',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['devices'],
        ...AuthHeader,
        summary: 'Delete a device: its connection is closed, it leaves its home, its shadow, pending commands, tags and groups go; its id is never reused',
        description: 'History stays unless `purge=true`. A hub with sub-devices needs `children=delete` or `children=detach` (409 otherwise).',
        params: DeviceParams,
        querystring: DeleteDeviceQuery,
        response: {
          204: Type.Null({ description: 'Deleted' }),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_CONFLICT'),
        },
      },
    },
    async (req, reply) => {
      await deps.lifecycle.delete(actorOf(principal(req)), req.params.id, req.query);
      return reply.status(204).send(null);
    },
  );
}
