import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, Pagination, problems } from '../transports/http/http-schemas.ts';
import type { DeviceRecord, DeviceService, ProvisionedDevice } from './device-service.ts';
import type { AccessService } from '../access/access-service.ts';
import type { DeviceViews } from './device-view.ts';
import { principal } from '../transports/http/http-server.ts';
import { BulkProvisionBody, ChildrenSchema, DeviceListSchema, DeviceParams, DeviceSchema, ProvisionBody, ProvisionedSchema } from './device-schema.ts';

function base(d: DeviceRecord) {
  return { id: d.id, product: d.productKey, name: d.name, parentId: d.parentId, hwid: d.hwid, pairingCode: d.pairingCode, createdAt: new Date(d.createdAt).toISOString() };
}

function provisioned(d: ProvisionedDevice) {
  return {
    ...base(d),
    secret: d.secret,
    mqtt: {
      clientId: d.id, username: d.id,
      topics: {
        properties: `devices/${d.id}/properties`, events: `devices/${d.id}/events`, commands: `devices/${d.id}/commands`,
        commandResults: `devices/${d.id}/commands/result`, desired: `devices/${d.id}/desired`, errors: `devices/${d.id}/errors`,
      },
    },
  };
}

export async function deviceRoutes(app: HttpApp, deps: { devices: DeviceService; access: AccessService; views: DeviceViews }): Promise<void> {
  const { devices, access, views } = deps;

  app.post('/api/v1/devices', {
    config: { auth: Auth.operator('devices:manage') },
    schema: {
      tags: ['devices'], summary: 'Provision a device; returns its MQTT secret once', ...AuthHeader,
      body: ProvisionBody,
      response: { 201: ProvisionedSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
    },
  }, async (req, reply) => {
    return reply.status(201).send(provisioned(await devices.provision(req.body)));
  });

  app.post('/api/v1/devices/bulk', {
    config: { auth: Auth.operator('devices:manage') },
    schema: {
      tags: ['devices'], summary: 'Provision up to 1000 devices at once (all or none)', ...AuthHeader,
      body: BulkProvisionBody,
      response: { 201: Type.Object({ items: Type.Array(ProvisionedSchema) }), ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
    },
  }, async (req, reply) => {
    const items = await devices.provisionMany(req.body.items);
    return reply.status(201).send({ items: items.map(provisioned) });
  });

  app.get('/api/v1/devices', {
    // The fleet for the operator, one's homes' devices for others: either way a key needs a device scope.
    config: { auth: Auth.caller('devices:read', 'devices:control') },
    schema: {
      tags: ['devices'], summary: 'List the devices the caller may see (the operator: all)', ...AuthHeader,
      querystring: Type.Object({ product: Type.Optional(Type.String()), parentId: Type.Optional(Type.String()), ...Pagination }),
      response: { 200: DeviceListSchema, ...problems('E_UNAUTHENTICATED') },
    },
  }, async (req) => {
    const p = principal(req);
    const { items, total } = await devices.list({ ...req.query, ids: await access.visibleDeviceIds(p) });
    return { items: await Promise.all(items.map((d) => views.summary(d, p))), total };
  });

  app.get('/api/v1/devices/:id', {
    config: { auth: Auth.caller() },
    schema: { tags: ['devices'], summary: 'A device with presence and shadow', ...AuthHeader, params: DeviceParams, response: { 200: DeviceSchema, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') } },
  }, async (req) => {
    const p = principal(req);
    return views.full(await access.requireDevice(p, req.params.id, 'view'), p);
  });

  app.get('/api/v1/devices/:id/children', {
    config: { auth: Auth.caller() },
    schema: { tags: ['devices'], summary: 'Sub-devices of a hub', ...AuthHeader, params: DeviceParams, response: { 200: ChildrenSchema, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') } },
  }, async (req) => {
    const p = principal(req);
    await access.requireDevice(p, req.params.id, 'view');
    return { items: await Promise.all((await devices.children(req.params.id)).map((d) => views.summary(d, p))) };
  });
}
