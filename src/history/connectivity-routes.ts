import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import type { ProductService } from '../products/product-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { PresenceService } from '../devices/presence-service.ts';
import type { ConnectivityReport } from '../devices/presence-log.ts';
import { parseBucket, parseTime, checkBuckets, checkRange } from './history-routes.ts';

/** Longest range of a connectivity question (it reads the recorded presence changes). */
const MAX_RANGE_DAYS = 31;
/** Devices per query when the question walks a product's devices. */
const DEVICE_PAGE = 500;
const HOUR = 3_600_000;

/** Connectivity analytics of a product (docs/telemetry.md): online devices per bucket, disconnect reasons, flapping devices. */
export async function connectivityRoutes(app: HttpApp, deps: { products: ProductService; devices: DeviceService; presence: PresenceService }): Promise<void> {
  app.get(
    '/api/v1/analytics/presence',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: "A product's connectivity: devices online per bucket, disconnect reasons, flapping devices",
        ...AuthHeader,
        description:
          `From the recorded presence changes of the product's devices in the range (at most ${MAX_RANGE_DAYS} days; \`from\` is required): ` +
          'per bucket of whole hours (default `1h`, aligned on UTC) the devices online at any time in it and the connects and disconnects; ' +
          'the disconnects per reason; and the `top` devices by connects (flapping), with their disconnect reasons.',
        querystring: Type.Object({
          product: Type.String(),
          from: Type.Optional(Type.String({ description: 'Required: ISO 8601 or epoch ms' })),
          to: Type.Optional(Type.String({ description: 'ISO 8601 or epoch ms; default now' })),
          bucket: Type.String({ default: '1h', description: 'Whole hours: 1h, 6h, 1d' }),
          top: Type.Integer({ minimum: 1, maximum: 1000, default: 10 }),
        }),
        response: {
          200: Type.Object(
            {
              product: Type.String(),
              from: Type.String(),
              to: Type.String(),
              bucket: Type.String(),
              online: Type.Array(
                Type.Object({
                  ts: Type.String({ format: 'date-time' }),
                  online: Type.Integer({ description: 'Devices online at any time in the bucket' }),
                  connects: Type.Integer(),
                  disconnects: Type.Integer(),
                }),
              ),
              disconnectReasons: Type.Record(Type.String(), Type.Integer()),
              flapping: Type.Array(
                Type.Object({
                  deviceId: Type.String(),
                  connects: Type.Integer(),
                  disconnects: Type.Integer(),
                  reasons: Type.Record(Type.String(), Type.Integer()),
                }),
              ),
            },
            {
              examples: [
                {
                  product: 'acme-plug',
                  from: '2026-11-01T00:00:00.000Z',
                  to: '2026-11-01T01:59:59.999Z',
                  bucket: '1h',
                  online: [
                    { ts: '2026-11-01T00:00:00.000Z', online: 9120, connects: 130, disconnects: 118 },
                    { ts: '2026-11-01T01:00:00.000Z', online: 9088, connects: 96, disconnects: 101 },
                  ],
                  disconnectReasons: { 'keepalive-timeout': 160, disconnect: 41, 'connection-lost': 18 },
                  flapping: [{ deviceId: 'd_9x2k7m4p1q8r0t', connects: 37, disconnects: 37, reasons: { 'keepalive-timeout': 37 } }],
                },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const q = req.query;
      await deps.products.require(q.product);
      if (q.from === undefined) throw new HearthError('E_VALIDATION', 'querystring.from is required: fleet queries are bounded', { field: 'querystring.from' });
      const to = parseTime(q.to, Date.now(), 'to');
      const from = parseTime(q.from, 0, 'from');
      checkRange(from, to);
      if (to - from > MAX_RANGE_DAYS * 86_400_000)
        throw new HearthError('E_VALIDATION', `this range spans at most ${MAX_RANGE_DAYS} days`, { field: 'querystring.from' });
      const bucketMs = parseBucket(q.bucket);
      if (bucketMs % HOUR !== 0)
        throw new HearthError('E_VALIDATION', `connectivity is counted per hour: bucket must be whole hours (1h, 6h, 1d), got "${q.bucket}"`, {
          field: 'querystring.bucket',
        });
      checkBuckets(from, to, bucketMs, q.bucket);
      const report: ConnectivityReport = { buckets: new Map(), reasons: {}, devices: new Map() };
      for (let after = ''; ; ) {
        const ids = await deps.devices.idsOfProduct(q.product, after, DEVICE_PAGE);
        if (ids.length === 0) break;
        await deps.presence.connectivity(ids, from, to, bucketMs, report);
        after = ids[ids.length - 1];
      }
      const online = [];
      for (let b = Math.floor(from / bucketMs) * bucketMs; b <= to; b += bucketMs) {
        const e = report.buckets.get(b) ?? { online: 0, connects: 0, disconnects: 0 };
        online.push({ ts: new Date(b).toISOString(), ...e });
      }
      const flapping = [...report.devices.entries()]
        .filter(([, d]) => d.connects > 0)
        .map(([deviceId, d]) => ({ deviceId, ...d }))
        .sort((a, b) => b.connects - a.connects || b.disconnects - a.disconnects || a.deviceId.localeCompare(b.deviceId))
        .slice(0, q.top);
      return {
        product: q.product,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        bucket: q.bucket,
        online,
        disconnectReasons: report.reasons,
        flapping,
      };
    },
  );
}
