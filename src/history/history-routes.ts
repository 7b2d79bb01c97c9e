import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, JsonObject, problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import { DeviceParams } from '../devices/device-schema.ts';
import type { AccessService } from '../access/access-service.ts';
import type { Principal } from '../access/principal.ts';
import { principal } from '../transports/http/http-server.ts';
import type { ProductService } from '../products/product-service.ts';
import type { HistoryService } from './history-service.ts';

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `5m` → 300000. */
export function parseBucket(s: string): number {
  const m = /^(\d{1,6})(s|m|h|d)$/.exec(s);
  if (!m || Number(m[1]) === 0) throw new HearthError('E_VALIDATION', `bucket must look like 30s, 5m, 1h or 1d, got "${s}"`, { field: 'querystring.bucket' });
  return Number(m[1]) * UNITS[m[2]];
}

/** Accepts an ISO 8601 time or epoch milliseconds. */
export function parseTime(s: string | undefined, fallback: number, field: string): number {
  if (s === undefined) return fallback;
  const n = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isFinite(n)) throw new HearthError('E_VALIDATION', `${field} must be an ISO 8601 time or epoch milliseconds, got "${s}"`, { field: `querystring.${field}` });
  return n;
}

const TimeRange = {
  from: Type.Optional(Type.String({ description: 'ISO 8601 or epoch ms; default 24 h before `to`', examples: ['2026-11-23T00:00:00Z'] })),
  to: Type.Optional(Type.String({ description: 'ISO 8601 or epoch ms; default now' })),
};

const Point = Type.Object({ ts: Type.String({ format: 'date-time' }), value: Type.Unknown() });
const Bucket = Type.Object({ ts: Type.String({ format: 'date-time' }), min: Type.Union([Type.Number(), Type.Null()]), max: Type.Union([Type.Number(), Type.Null()]), avg: Type.Union([Type.Number(), Type.Null()]), count: Type.Integer() });

/** End users see a device's past only since it joined their home; the operator sees all of it. */
async function earliestVisible(access: AccessService, p: Principal, deviceId: string): Promise<number> {
  if (p.role === 'operator') return 0;
  return (await access.placement(deviceId))?.boundAt ?? Number.MAX_SAFE_INTEGER;
}

export async function historyRoutes(app: HttpApp, deps: { access: AccessService; products: ProductService; history: HistoryService }): Promise<void> {
  app.get('/api/v1/devices/:id/history', {
    config: { auth: Auth.caller() },
    schema: {
      tags: ['history'], summary: 'Raw points of a property, or min/max/avg per time bucket', ...AuthHeader,
      description: 'Only properties whose model says `history: true` are recorded. Without `bucket` returns raw points (oldest first, at most `limit`); with `bucket` (e.g. `5m`) returns one row per bucket. Booleans count as 0/1 in aggregates.',
      params: DeviceParams,
      querystring: Type.Object({ property: Type.Optional(Type.String({ description: 'Required: the property to read', examples: ['brightness'] })), ...TimeRange, bucket: Type.Optional(Type.String({ examples: ['5m'] })), limit: Type.Integer({ minimum: 1, maximum: 10000, default: 1000 }) }),
      response: {
        200: Type.Object({ deviceId: Type.String(), property: Type.String(), from: Type.String(), to: Type.String(), bucket: Type.Optional(Type.String()), points: Type.Optional(Type.Array(Point)), buckets: Type.Optional(Type.Array(Bucket)) },
          { examples: [{ deviceId: 'd_9x2k7m4p1q8r0t', property: 'brightness', from: '2026-11-23T00:00:00.000Z', to: '2026-11-23T01:00:00.000Z', points: [{ ts: '2026-11-23T00:10:00.000Z', value: 80 }] }] }),
        ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND'),
      },
    },
  }, async (req) => {
    const p = principal(req);
    const device = await deps.access.requireDevice(p, req.params.id, 'view');
    const model = await deps.products.model(device.productKey);
    if (!req.query.property) throw new HearthError('E_VALIDATION', 'querystring.property is required', { field: 'querystring.property' });
    const spec = model?.properties.get(req.query.property);
    if (!spec) throw new HearthError('E_VALIDATION', `product "${device.productKey}" has no property "${req.query.property}"`, { field: 'querystring.property' });
    const to = parseTime(req.query.to, Date.now(), 'to');
    const from = Math.max(parseTime(req.query.from, to - 86_400_000, 'from'), await earliestVisible(deps.access, p, device.id));
    const range = { deviceId: device.id, property: spec.id, from: new Date(from).toISOString(), to: new Date(to).toISOString() };
    if (req.query.bucket) {
      const bucketMs = parseBucket(req.query.bucket);
      return { ...range, bucket: req.query.bucket, buckets: await deps.history.buckets(device.id, spec.id, from, to, bucketMs) };
    }
    return { ...range, points: await deps.history.points(device.id, spec.id, from, to, req.query.limit) };
  });

  app.get('/api/v1/devices/:id/events', {
    config: { auth: Auth.caller() },
    schema: {
      tags: ['history'], summary: 'Events the device reported, newest first', ...AuthHeader,
      params: DeviceParams,
      querystring: Type.Object({ ...TimeRange, limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) }),
      response: { 200: Type.Object({ items: Type.Array(Type.Object({ id: Type.String(), event: Type.String(), params: JsonObject, ts: Type.String({ format: 'date-time' }) })) }, { examples: [{ items: [{ id: 'e_2k9x4p1q8r0t7m', event: 'unlock', params: { method: 'keypad', user: 'alice' }, ts: '2026-11-23T08:00:00.000Z' }] }] }), ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') },
    },
  }, async (req) => {
    const p = principal(req);
    await deps.access.requireDevice(p, req.params.id, 'view');
    const to = parseTime(req.query.to, Date.now(), 'to');
    const from = Math.max(parseTime(req.query.from, to - 86_400_000, 'from'), await earliestVisible(deps.access, p, req.params.id));
    return { items: await deps.history.deviceEvents(req.params.id, from, to, req.query.limit) };
  });
}
