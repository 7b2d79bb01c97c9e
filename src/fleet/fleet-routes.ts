import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { actorOf } from '../auth/auth-service.ts';
import type { DeviceViews } from '../devices/device-view.ts';
import { DeviceId, DeviceListSchema } from '../devices/device-schema.ts';
import type { FleetGroups } from './fleet-groups.ts';

const Id = (example: string) => Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: [example] });
const GroupParams = Type.Object({ groupId: Id('fg_4m2k9x4p1q8r0t') });
const GroupDeviceParams = Type.Object({ groupId: Id('fg_4m2k9x4p1q8r0t'), deviceId: DeviceId });
const Query = Type.String({ minLength: 1, maxLength: 2000, description: 'A fleet query (docs/fleet.md): a dynamic group holds the devices it matches', examples: ['product:light AND tag.site:berlin'] });

const GroupSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  type: Type.Union([Type.Literal('static'), Type.Literal('dynamic')]),
  query: Type.Union([Type.String(), Type.Null()]),
  parentId: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
}, { examples: [{ id: 'fg_4m2k9x4p1q8r0t', name: 'Berlin lights', description: null, type: 'dynamic', query: 'product:light AND tag.site:berlin', parentId: null, createdAt: '2026-12-06T08:00:00.000Z', updatedAt: '2026-12-06T08:00:00.000Z' }] });

const CreateGroupBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  description: Type.Optional(Type.String({ maxLength: 1000 })),
  parentId: Type.Optional(Id('fg_1a2b3c4d5e6f7g')),
  query: Type.Optional(Query),
}, { additionalProperties: false, examples: [{ name: 'Berlin lights', query: 'product:light AND tag.site:berlin' }, { name: 'Pilot customers' }] });

const PatchGroupBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  description: Type.Optional(Type.Union([Type.String({ maxLength: 1000 }), Type.Null()])),
  parentId: Type.Optional(Type.Union([Id('fg_1a2b3c4d5e6f7g'), Type.Null()])),
  query: Type.Optional(Query),
}, { additionalProperties: false, minProperties: 1, examples: [{ name: 'Berlin lights (all)' }] });

const AddDevicesBody = Type.Object({
  deviceIds: Type.Array(DeviceId, { minItems: 1, maxItems: 1000 }),
}, { additionalProperties: false, examples: [{ deviceIds: ['d_9x2k7m4p1q8r0t'] }] });

const PageQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  cursor: Type.Optional(Type.String({ maxLength: 1000 })),
});

/** How a device looks to a caller (DeviceViews.summary). */
type Summaries = Pick<DeviceViews, 'summary'>;

/** The operator's fleet groups and bulk jobs (docs/fleet.md). */
export async function fleetRoutes(app: HttpApp, deps: { groups: FleetGroups; views: Summaries }): Promise<void> {
  const { groups, views } = deps;
  const manage = { auth: Auth.operator('devices:manage') };

  app.post('/api/v1/fleet/groups', {
    config: manage,
    schema: {
      tags: ['fleet'], summary: 'Create a fleet group: static (add devices by id) or dynamic (a saved query); parentId nests it in a static group, one level', ...AuthHeader,
      body: CreateGroupBody, response: { 201: GroupSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_CONFLICT') },
    },
  }, async (req, reply) => reply.status(201).send(await groups.create(actorOf(principal(req)), req.body)));

  app.get('/api/v1/fleet/groups', {
    config: manage,
    schema: { tags: ['fleet'], summary: 'Fleet groups', ...AuthHeader, response: { 200: Type.Object({ items: Type.Array(GroupSchema) }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') } },
  }, async () => ({ items: await groups.list() }));

  app.get('/api/v1/fleet/groups/:groupId', {
    config: manage,
    schema: { tags: ['fleet'], summary: 'A fleet group', ...AuthHeader, params: GroupParams, response: { 200: GroupSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND') } },
  }, async (req) => groups.get(req.params.groupId));

  app.patch('/api/v1/fleet/groups/:groupId', {
    config: manage,
    schema: {
      tags: ['fleet'], summary: "Rename a group, move it, or change a dynamic group's query", ...AuthHeader, params: GroupParams, body: PatchGroupBody,
      response: { 200: GroupSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_CONFLICT') },
    },
  }, async (req) => groups.update(actorOf(principal(req)), req.params.groupId, req.body));

  app.delete('/api/v1/fleet/groups/:groupId', {
    config: manage,
    schema: {
      tags: ['fleet'], summary: 'Delete a group (its devices stay); a group with subgroups must lose them first', ...AuthHeader, params: GroupParams,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_CONFLICT') },
    },
  }, async (req, reply) => {
    await groups.delete(actorOf(principal(req)), req.params.groupId);
    return reply.status(204).send(null);
  });

  app.get('/api/v1/fleet/groups/:groupId/devices', {
    config: manage,
    schema: {
      tags: ['fleet'], summary: "The group's devices (with its subgroups'), by id, paged by cursor", ...AuthHeader, params: GroupParams, querystring: PageQuery,
      response: { 200: DeviceListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND') },
    },
  }, async (req) => {
    const p = principal(req);
    const r = await groups.devices(req.params.groupId, req.query);
    return { items: await Promise.all(r.items.map((d) => views.summary(d, p))), total: r.total, nextCursor: r.nextCursor };
  });

  app.post('/api/v1/fleet/groups/:groupId/devices', {
    config: manage,
    schema: {
      tags: ['fleet'], summary: 'Add devices to a static group (a device may be in many groups)', ...AuthHeader, params: GroupParams, body: AddDevicesBody,
      response: { 200: Type.Object({ added: Type.Integer({ description: 'How many were not in it yet' }) }), ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_DEVICE_NOT_FOUND', 'E_CONFLICT') },
    },
  }, async (req) => groups.addDevices(actorOf(principal(req)), req.params.groupId, req.body.deviceIds));

  app.delete('/api/v1/fleet/groups/:groupId/devices/:deviceId', {
    config: manage,
    schema: {
      tags: ['fleet'], summary: 'Take a device out of a static group', ...AuthHeader, params: GroupDeviceParams,
      response: { 204: Type.Null({ description: 'Removed' }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_DEVICE_NOT_FOUND') },
    },
  }, async (req, reply) => {
    await groups.removeDevice(actorOf(principal(req)), req.params.groupId, req.params.deviceId);
    return reply.status(204).send(null);
  });
}
