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
import type { PresenceService } from '../devices/presence-service.ts';
import { pickTier, tierByName } from './rollups.ts';
import { Readable } from 'node:stream';

/** Longest range one export streams. */
export const MAX_EXPORT_DAYS = 366;

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
  if (!Number.isFinite(n))
    throw new HearthError('E_VALIDATION', `${field} must be an ISO 8601 time or epoch milliseconds, got "${s}"`, { field: `querystring.${field}` });
  return n;
}

const TimeRange = {
  from: Type.Optional(Type.String({ description: 'ISO 8601 or epoch ms; default 24 h before `to`', examples: ['2026-11-23T00:00:00Z'] })),
  to: Type.Optional(Type.String({ description: 'ISO 8601 or epoch ms; default now' })),
};

const Point = Type.Object({ ts: Type.String({ format: 'date-time' }), value: Type.Unknown() });
const Num = Type.Union([Type.Number(), Type.Null()]);
const Bucket = Type.Object({
  ts: Type.String({ format: 'date-time' }),
  min: Num,
  max: Num,
  avg: Num,
  count: Type.Integer(),
  sum: Type.Optional(Num),
  last: Type.Optional(
    Type.Union([Type.Number(), Type.String(), Type.Boolean(), Type.Null()], { description: 'Rollup tiers: the value of the latest point in the bucket' }),
  ),
  counts: Type.Optional(Type.Record(Type.String(), Type.Integer(), { description: 'Rollup tiers, booleans and enums: points per value' })),
  durations: Type.Optional(
    Type.Record(Type.String(), Type.Integer(), { description: 'Tiers 1h and 1d, booleans and enums: milliseconds in each value, between consecutive points' }),
  ),
});
const TierName = Type.Union([Type.Literal('raw'), Type.Literal('1m'), Type.Literal('1h'), Type.Literal('1d')]);

/** Most buckets one aggregate query may answer. */
export const MAX_BUCKETS = 10_000;
/** Longest range aggregated from raw points (buckets that no rollup tier divides). */
export const MAX_RAW_AGGREGATE_MS = 31 * 86_400_000;

/** The range of a query, or a 400 naming what is wrong with it. */
export function checkRange(from: number, to: number): void {
  if (from > to)
    throw new HearthError('E_VALIDATION', `from (${new Date(from).toISOString()}) is after to (${new Date(to).toISOString()})`, { field: 'querystring.from' });
}

/** The number of buckets a range gives, or a 400 when there would be more than MAX_BUCKETS. */
export function checkBuckets(from: number, to: number, bucketMs: number, bucket: string): void {
  const n = Math.floor(to / bucketMs) - Math.floor(from / bucketMs) + 1;
  if (n > MAX_BUCKETS)
    throw new HearthError(
      'E_VALIDATION',
      `bucket ${bucket} over this range gives ${n} buckets, at most ${MAX_BUCKETS}: use a larger bucket or a shorter range`,
      { field: 'querystring.bucket' },
    );
}

/** End users see a device's past only since it joined their home; the operator sees all of it. */
async function earliestVisible(access: AccessService, p: Principal, deviceId: string): Promise<number> {
  if (p.role === 'operator') return 0;
  return (await access.placement(deviceId))?.boundAt ?? Number.MAX_SAFE_INTEGER;
}

/**
 * For a caller allowed to view the device: the asked range (default the last 24 hours), starting
 * no earlier than the caller may see the device's past.
 */
async function visibleRange(access: AccessService, p: Principal, deviceId: string, q: { from?: string; to?: string }): Promise<{ from: number; to: number }> {
  await access.requireDevice(p, deviceId, 'view');
  const to = parseTime(q.to, Date.now(), 'to');
  return { from: Math.max(parseTime(q.from, to - 86_400_000, 'from'), await earliestVisible(access, p, deviceId)), to };
}

/** A CSV field: numbers and booleans as they are, text quoted when it must be, anything else as JSON. */
function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const t = typeof v === 'string' ? v : JSON.stringify(v);
  return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

export async function historyRoutes(
  app: HttpApp,
  deps: { access: AccessService; products: ProductService; history: HistoryService; presence: PresenceService },
): Promise<void> {
  app.get(
    '/api/v1/devices/:id/history',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['history'],
        summary: 'Raw points of a property, or aggregates per time bucket from the right tier',
        ...AuthHeader,
        description:
          'Only properties whose model says `history: true` are recorded. Without `bucket` returns raw points (oldest first, at most `limit`); with `bucket` (e.g. `5m`) returns one row per bucket. ' +
          'A bucket that is a whole number of minutes is read from the coarsest rollup tier that divides it (1m, 1h or 1d: min, max, avg, sum, count, last, and counts per value of booleans and enums; buckets are UTC-aligned and the range widens to whole tier buckets); other buckets are computed from raw points (at most 31 days). ' +
          '`tier` forces one (it must divide the bucket); the answer says which it used. Booleans count as 0/1 in numeric aggregates. At most 10000 buckets per query.',
        params: DeviceParams,
        querystring: Type.Object({
          property: Type.Optional(Type.String({ description: 'Required: the property to read', examples: ['brightness'] })),
          ...TimeRange,
          bucket: Type.Optional(Type.String({ examples: ['5m'] })),
          tier: Type.Optional(TierName),
          limit: Type.Integer({ minimum: 1, maximum: 10000, default: 1000 }),
        }),
        response: {
          200: Type.Object(
            {
              deviceId: Type.String(),
              property: Type.String(),
              from: Type.String(),
              to: Type.String(),
              bucket: Type.Optional(Type.String()),
              tier: Type.Optional(TierName),
              points: Type.Optional(Type.Array(Point)),
              buckets: Type.Optional(Type.Array(Bucket)),
            },
            {
              examples: [
                {
                  deviceId: 'd_9x2k7m4p1q8r0t',
                  property: 'brightness',
                  from: '2026-11-23T00:00:00.000Z',
                  to: '2026-11-23T01:00:00.000Z',
                  tier: 'raw',
                  points: [{ ts: '2026-11-23T00:10:00.000Z', value: 80 }],
                },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const p = principal(req);
      const device = await deps.access.requireDevice(p, req.params.id, 'view');
      const model = await deps.products.model(device.productKey);
      if (!req.query.property) throw new HearthError('E_VALIDATION', 'querystring.property is required', { field: 'querystring.property' });
      const spec = model?.properties.get(req.query.property);
      if (!spec)
        throw new HearthError('E_VALIDATION', `product "${device.productKey}" has no property "${req.query.property}"`, { field: 'querystring.property' });
      const to = parseTime(req.query.to, Date.now(), 'to');
      const asked = parseTime(req.query.from, to - 86_400_000, 'from');
      checkRange(asked, to);
      const from = Math.max(asked, await earliestVisible(deps.access, p, device.id));
      const range = { deviceId: device.id, property: spec.id, from: new Date(from).toISOString(), to: new Date(to).toISOString() };
      if (req.query.bucket) {
        const bucketMs = parseBucket(req.query.bucket);
        checkBuckets(from, to, bucketMs, req.query.bucket);
        const tier = req.query.tier === undefined ? pickTier(bucketMs) : req.query.tier === 'raw' ? undefined : tierByName(req.query.tier);
        if (tier && bucketMs % tier.ms !== 0)
          throw new HearthError('E_VALIDATION', `tier ${tier.name} does not divide bucket ${req.query.bucket}`, { field: 'querystring.tier' });
        if (!tier) {
          if (to - from > MAX_RAW_AGGREGATE_MS) {
            throw new HearthError(
              'E_VALIDATION',
              `bucket ${req.query.bucket} is aggregated from raw points, over at most 31 days: use a bucket of whole minutes (read from rollups) or a shorter range`,
              { field: 'querystring.bucket' },
            );
          }
          return { ...range, bucket: req.query.bucket, tier: 'raw' as const, buckets: await deps.history.buckets(device.id, spec.id, from, to, bucketMs) };
        }
        const buckets = await deps.history.rollupBuckets(device.id, spec.id, from, to, bucketMs, tier);
        if (spec.type === 'boolean') for (const b of buckets) if (typeof b.last === 'number') b.last = b.last === 1;
        return { ...range, bucket: req.query.bucket, tier: tier.name, buckets };
      }
      if (req.query.tier !== undefined && req.query.tier !== 'raw')
        throw new HearthError('E_VALIDATION', 'a rollup tier needs a bucket', { field: 'querystring.tier' });
      return { ...range, tier: 'raw' as const, points: await deps.history.points(device.id, spec.id, from, to, req.query.limit) };
    },
  );

  app.get(
    '/api/v1/devices/:id/history/export',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['history'],
        summary: 'Stream raw points of a device as CSV or NDJSON',
        ...AuthHeader,
        description:
          'Streams every stored point of the given properties (default: all properties with history) in time order: CSV with a header `ts,property,value`, or one JSON object per line. ' +
          `The range (default the last 24 h) may span at most ${MAX_EXPORT_DAYS} days.`,
        params: DeviceParams,
        querystring: Type.Object({
          format: Type.Union([Type.Literal('csv'), Type.Literal('ndjson')], { default: 'ndjson' }),
          property: Type.Optional(Type.String({ description: 'Comma-separated properties; default all with history', examples: ['temperature,humidity'] })),
          ...TimeRange,
        }),
        response: {
          200: {
            description: 'The points, streamed: NDJSON (`application/x-ndjson`, one object per line, as below) or CSV (`text/csv`)',
            content: {
              'application/json': {
                schema: Type.Object(
                  { ts: Type.String({ format: 'date-time' }), property: Type.String(), value: Type.Unknown() },
                  { examples: [{ ts: '2026-11-23T00:10:00.000Z', property: 'brightness', value: 80 }] },
                ),
              },
              'text/csv': { schema: Type.String({ examples: ['ts,property,value\n2026-11-23T00:10:00.000Z,brightness,80\n'] }) },
            },
          },
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND'),
        },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      const device = await deps.access.requireDevice(p, req.params.id, 'view');
      const model = await deps.products.model(device.productKey);
      const all = [...(model?.properties.values() ?? [])].filter((s) => s.history).map((s) => s.id);
      let props = all;
      if (req.query.property !== undefined) {
        props = req.query.property
          .split(',')
          .map((x) => x.trim())
          .filter((x) => x !== '');
        const unknown = props.filter((x) => !model?.properties.has(x));
        if (props.length === 0 || unknown.length)
          throw new HearthError('E_VALIDATION', `product "${device.productKey}" has no property ${unknown.map((u) => `"${u}"`).join(', ') || '(none named)'}`, {
            field: 'querystring.property',
          });
      }
      const to = parseTime(req.query.to, Date.now(), 'to');
      const asked = parseTime(req.query.from, to - 86_400_000, 'from');
      checkRange(asked, to);
      if (to - asked > MAX_EXPORT_DAYS * 86_400_000)
        throw new HearthError('E_VALIDATION', `an export spans at most ${MAX_EXPORT_DAYS} days`, { field: 'querystring.from' });
      const from = Math.max(asked, await earliestVisible(deps.access, p, device.id));
      const csv = req.query.format === 'csv';
      const points = deps.history.exportPoints(device.id, props, from, to);
      async function* lines(): AsyncGenerator<string> {
        if (csv) yield 'ts,property,value\n';
        for await (const pt of points) {
          const ts = new Date(pt.ts).toISOString();
          yield csv ? `${ts},${csvField(pt.property)},${csvField(pt.value)}\n` : JSON.stringify({ ts, property: pt.property, value: pt.value }) + '\n';
        }
      }
      reply.header('content-type', csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
      reply.header('content-disposition', `attachment; filename="${device.id}-history.${csv ? 'csv' : 'ndjson'}"`);
      // A stream is sent as it is: the 200 schemas above document it, nothing serialises it.
      return reply.send(Readable.from(lines()) as never);
    },
  );

  app.get(
    '/api/v1/devices/:id/events',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['history'],
        summary: 'Events the device reported, newest first',
        ...AuthHeader,
        params: DeviceParams,
        querystring: Type.Object({ ...TimeRange, limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) }),
        response: {
          200: Type.Object(
            { items: Type.Array(Type.Object({ id: Type.String(), event: Type.String(), params: JsonObject, ts: Type.String({ format: 'date-time' }) })) },
            {
              examples: [{ items: [{ id: 'e_2k9x4p1q8r0t7m', event: 'unlock', params: { method: 'keypad', user: 'alice' }, ts: '2026-11-23T08:00:00.000Z' }] }],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const { from, to } = await visibleRange(deps.access, principal(req), req.params.id, req.query);
      return { items: await deps.history.deviceEvents(req.params.id, from, to, req.query.limit) };
    },
  );

  app.get(
    '/api/v1/devices/:id/presence/history',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['history'],
        summary: "The device's connects and disconnects with their reasons, newest first",
        description:
          'Every recorded presence change in the range (default the last 24 hours), as the live stream told it: `online`, the `reason` ' +
          '(connect, disconnect, keepalive-timeout, connection-lost, …: the reasons of docs/protocol.md#presence) and the MQTT `session` it belongs to. Kept as long as the product keeps its device events.',
        ...AuthHeader,
        params: DeviceParams,
        querystring: Type.Object({ ...TimeRange, limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) }),
        response: {
          200: Type.Object(
            {
              items: Type.Array(
                Type.Object({ at: Type.String({ format: 'date-time' }), online: Type.Boolean(), reason: Type.String(), session: Type.Integer() }),
              ),
            },
            {
              examples: [
                {
                  items: [
                    { at: '2026-11-23T08:05:00.000Z', online: false, reason: 'keepalive-timeout', session: 1796550000000 },
                    { at: '2026-11-23T08:00:00.000Z', online: true, reason: 'connect', session: 1796550000000 },
                  ],
                },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const { from, to } = await visibleRange(deps.access, principal(req), req.params.id, req.query);
      const changes = from > to ? [] : await deps.presence.history(req.params.id, from, to, req.query.limit);
      return { items: changes.map((c) => ({ at: new Date(c.at).toISOString(), online: c.online, reason: c.reason, session: c.session })) };
    },
  );
}
