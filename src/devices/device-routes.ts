import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, Pagination, problems } from '../transports/http/http-schemas.ts';
import type { DeviceRecord, DeviceService, ProvisionedDevice } from './device-service.ts';
import type { AccessService } from '../access/access-service.ts';
import type { DeviceViews } from './device-view.ts';
import { principal } from '../transports/http/http-server.ts';
import {
  BulkProvisionBody,
  ChildrenSchema,
  DeviceListSchema,
  DeviceParams,
  DeviceSchema,
  DeviceSearchQuery,
  ProvisionBody,
  ProvisionedSchema,
} from './device-schema.ts';
import type { DeviceSearch, SortField } from './device-search.ts';
import type { DeviceTags } from './device-tags.ts';
import { HearthError } from '../core/errors.ts';
import { countByProblem, namesTags, parseQuery, QueryError, type Expr, type Term } from './fleet-query.ts';

function base(d: DeviceRecord) {
  return {
    id: d.id,
    product: d.productKey,
    name: d.name,
    parentId: d.parentId,
    hwid: d.hwid,
    pairingCode: d.pairingCode,
    createdAt: new Date(d.createdAt).toISOString(),
  };
}

function provisioned(d: ProvisionedDevice) {
  return {
    ...base(d),
    secret: d.secret,
    mqtt: {
      clientId: d.id,
      username: d.id,
      topics: {
        properties: `devices/${d.id}/properties`,
        events: `devices/${d.id}/events`,
        commands: `devices/${d.id}/commands`,
        commandResults: `devices/${d.id}/commands/result`,
        desired: `devices/${d.id}/desired`,
        errors: `devices/${d.id}/errors`,
      },
    },
  };
}

export async function deviceRoutes(
  app: HttpApp,
  deps: { devices: DeviceService; access: AccessService; views: DeviceViews; search?: DeviceSearch; tags?: DeviceTags },
): Promise<void> {
  const { devices, access, views } = deps;

  app.post(
    '/api/v1/devices',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['devices'],
        summary: 'Provision a device; returns its MQTT secret once',
        ...AuthHeader,
        body: ProvisionBody,
        response: { 201: ProvisionedSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req, reply) => {
      return reply.status(201).send(provisioned(await devices.provision(req.body)));
    },
  );

  app.post(
    '/api/v1/devices/bulk',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['devices'],
        summary: 'Provision up to 1000 devices at once (all or none)',
        ...AuthHeader,
        body: BulkProvisionBody,
        response: {
          201: Type.Object({ items: Type.Array(ProvisionedSchema) }),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req, reply) => {
      const items = await devices.provisionMany(req.body.items);
      return reply.status(201).send({ items: items.map(provisioned) });
    },
  );

  app.get(
    '/api/v1/devices',
    {
      // The fleet for the operator, one's homes' devices for others: either way a key needs a device scope.
      config: { auth: Auth.caller('devices:read', 'devices:control') },
      schema: {
        tags: ['devices'],
        summary: 'List the devices the caller may see (the operator: all); search the fleet with q, sort, cursor and countBy',
        ...AuthHeader,
        description:
          'With q, sort, cursor or countBy this is fleet search (docs/fleet.md): pages by cursor (nextCursor), and a query error answers 400 naming its position. totalLimit bounds the count of a broad query (totalCapped).',
        querystring: Type.Object({ product: Type.Optional(Type.String()), parentId: Type.Optional(Type.String()), ...Pagination, ...DeviceSearchQuery }),
        response: { 200: DeviceListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => {
      const p = principal(req);
      const { q, sort, cursor, countBy } = req.query;
      const { totalLimit } = req.query;
      if (
        (q !== undefined || sort !== undefined || cursor !== undefined || countBy !== undefined || req.query.total !== undefined || totalLimit !== undefined) &&
        deps.search
      ) {
        if (req.query.offset > 0)
          throw new HearthError('E_VALIDATION', 'querystring.offset does not go with fleet search (q, sort, cursor, countBy): page with cursor=<nextCursor>', {
            field: 'querystring.offset',
          });
        if (totalLimit !== undefined && req.query.total === false)
          throw new HearthError('E_VALIDATION', 'querystring.totalLimit bounds the total: it does not go with total=false', {
            field: 'querystring.totalLimit',
          });
        let expr: Expr | undefined;
        if (q !== undefined) {
          try {
            expr = parseQuery(q);
          } catch (err) {
            if (!(err instanceof QueryError)) throw err;
            throw new HearthError('E_VALIDATION', `querystring.q: ${err.message}`, { field: 'querystring.q', position: err.position, problem: err.problem });
          }
        }
        const extra: Term[] = [];
        if (req.query.product !== undefined)
          extra.push({ kind: 'term', field: 'product', op: '=', value: { type: 'string', value: req.query.product, prefix: false }, pos: 0 });
        if (req.query.parentId !== undefined)
          extra.push({ kind: 'term', field: 'parent', op: '=', value: { type: 'string', value: req.query.parentId, prefix: false }, pos: 0 });
        if (extra.length) expr = { kind: 'and', items: [...(expr ? [expr] : []), ...extra] };
        if (countBy !== undefined) {
          const problem = countByProblem(countBy);
          if (problem) throw new HearthError('E_VALIDATION', `querystring.${problem}`, { field: 'querystring.countBy' });
        }
        const ids = await access.visibleDeviceIds(p);
        const operator = ids === undefined;
        if (!operator && ((expr && namesTags(expr)) || countBy?.startsWith('tag.')))
          throw new HearthError(
            'E_FORBIDDEN',
            "tags, attributes and fleet groups are the operator's: tag.<key>, attr.<key> and group: are for the operator's fleet search",
          );
        const r = await deps.search.search({
          expr,
          ids,
          sort: (sort?.replace(/^-/, '') ?? 'createdAt') as SortField,
          desc: sort?.startsWith('-') ?? false,
          limit: req.query.limit,
          cursor,
          countBy,
          total: req.query.total !== false,
          totalLimit,
        });
        const fleet = operator && deps.tags ? await deps.tags.many(r.items.map((d) => d.id)) : undefined;
        const items = (await views.summaries(r.items, p)).map((s) => {
          const f = fleet?.get(s.id);
          return { ...s, ...(f ? { tags: f.tags, firmware: f.firmware } : {}) };
        });
        return {
          items,
          ...(r.total !== undefined ? { total: r.total } : {}),
          ...(r.totalCapped !== undefined ? { totalCapped: r.totalCapped } : {}),
          nextCursor: r.nextCursor,
          ...(r.counts ? { counts: r.counts } : {}),
        };
      }
      const { items, total } = await devices.list({ ...req.query, ids: await access.visibleDeviceIds(p) });
      return { items: await views.summaries(items, p), total };
    },
  );

  app.get(
    '/api/v1/devices/:id',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['devices'],
        summary: 'A device with presence and shadow',
        ...AuthHeader,
        params: DeviceParams,
        response: { 200: DeviceSchema, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req) => {
      const p = principal(req);
      return views.full(await access.requireDevice(p, req.params.id, 'view'), p);
    },
  );

  app.get(
    '/api/v1/devices/:id/children',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['devices'],
        summary: 'Sub-devices of a hub',
        ...AuthHeader,
        params: DeviceParams,
        response: { 200: ChildrenSchema, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req) => {
      const p = principal(req);
      await access.requireDevice(p, req.params.id, 'view');
      return { items: await views.summaries(await devices.children(req.params.id), p) };
    },
  );
}
