import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import type { AccessService } from '../access/access-service.ts';
import type { ProductService } from '../products/product-service.ts';
import type { HistoryService } from './history-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { CommandService } from '../commands/command-service.ts';
import { parseBucket, parseTime, checkBuckets, checkRange } from './history-routes.ts';
import { pickTier } from './rollups.ts';

const Agg = Type.Union([Type.Literal('avg'), Type.Literal('min'), Type.Literal('max'), Type.Literal('count'), Type.Literal('sum')], { default: 'avg' });
type AggName = 'avg' | 'min' | 'max' | 'count' | 'sum';
type Acc = { count: number; sum: number | null; min: number | null; max: number | null };

/** What `groupBy` takes: a home, a device, the firmware version, or the value of an operator's tag. */
const GROUP_BY_PATTERN = '^(home|device|firmware|tag\\.[A-Za-z0-9_-]{1,64})$';

/** Longest range of one fleet query, per tier read: rows read grow with devices × range / tier. */
const MAX_RANGE_DAYS: Record<string, number> = { '1m': 7, '1h': 400, '1d': 3660 };

function value(a: Acc, agg: AggName): number | null {
  switch (agg) {
    case 'count':
      return a.count;
    case 'sum':
      return a.sum;
    case 'min':
      return a.min;
    case 'max':
      return a.max;
    default:
      return a.sum !== null && a.count > 0 ? a.sum / a.count : null;
  }
}

function merge(into: Acc, r: Acc): void {
  into.count += r.count;
  if (r.sum !== null) into.sum = (into.sum ?? 0) + r.sum;
  if (r.min !== null) into.min = into.min === null ? r.min : Math.min(into.min, r.min);
  if (r.max !== null) into.max = into.max === null ? r.max : Math.max(into.max, r.max);
}

/** Fleet analytics over the rollup tiers (docs/telemetry.md). */
/** Longest range of the per-device event counts and command outcomes (they read raw rows). */
const MAX_RAW_RANGE_DAYS = 31;
/** Devices per query when a fleet question walks a product's devices. */
const DEVICE_PAGE = 500;

/** `from` (required) and `to` of a fleet question over raw rows, or a 400. */
function rawRange(q: { from?: string; to?: string }): { from: number; to: number } {
  if (q.from === undefined) throw new HearthError('E_VALIDATION', 'querystring.from is required: fleet queries are bounded', { field: 'querystring.from' });
  const to = parseTime(q.to, Date.now(), 'to');
  const from = parseTime(q.from, 0, 'from');
  checkRange(from, to);
  if (to - from > MAX_RAW_RANGE_DAYS * 86_400_000)
    throw new HearthError('E_VALIDATION', `this range spans at most ${MAX_RAW_RANGE_DAYS} days`, { field: 'querystring.from' });
  return { from, to };
}

export async function analyticsRoutes(
  app: HttpApp,
  deps: {
    access: AccessService;
    products: ProductService;
    history: HistoryService;
    devices: DeviceService;
    commands: CommandService;
    /** The operator's tags (`groupBy=tag.<key>`) and the firmware versions of the OTA view (`groupBy=firmware`). */
    tags?: { valuesOf(ids: readonly string[], key: string): Promise<Map<string, string>> };
    firmware?: { deviceVersions(ids: readonly string[]): Promise<Map<string, string>> };
  },
): Promise<void> {
  /** Calls `each` with the product's device ids, a page at a time. */
  const eachPage = async (product: string, each: (ids: string[]) => Promise<void>): Promise<void> => {
    for (let after = ''; ; ) {
      const ids = await deps.devices.idsOfProduct(product, after, DEVICE_PAGE);
      if (ids.length === 0) return;
      await each(ids);
      after = ids[ids.length - 1];
    }
  };

  app.get(
    '/api/v1/analytics/events',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: 'Event counts per device of a product, the busiest first',
        ...AuthHeader,
        description: `Counts the events each device of the product reported in the range (at most ${MAX_RAW_RANGE_DAYS} days; \`from\` is required), per event; the \`top\` devices with the most.`,
        querystring: Type.Object({
          product: Type.String(),
          from: Type.Optional(Type.String({ description: 'Required' })),
          to: Type.Optional(Type.String()),
          top: Type.Integer({ minimum: 1, maximum: 1000, default: 20 }),
        }),
        response: {
          200: Type.Object(
            {
              product: Type.String(),
              from: Type.String(),
              to: Type.String(),
              items: Type.Array(Type.Object({ deviceId: Type.String(), total: Type.Integer(), events: Type.Record(Type.String(), Type.Integer()) })),
            },
            {
              examples: [
                {
                  product: 'door-lock',
                  from: '2026-11-01T00:00:00.000Z',
                  to: '2026-11-08T00:00:00.000Z',
                  items: [{ deviceId: 'd_9x2k7m4p1q8r0t', total: 42, events: { unlock: 40, jammed: 2 } }],
                },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      await deps.products.require(req.query.product);
      const { from, to } = rawRange(req.query);
      const byDevice = new Map<string, { total: number; events: Record<string, number> }>();
      await eachPage(req.query.product, async (ids) => {
        for (const r of await deps.history.eventCounts(ids, from, to)) {
          let d = byDevice.get(r.deviceId);
          if (!d) byDevice.set(r.deviceId, (d = { total: 0, events: {} }));
          d.total += r.count;
          d.events[r.event] = r.count;
        }
      });
      const items = [...byDevice.entries()]
        .map(([deviceId, d]) => ({ deviceId, ...d }))
        .sort((a, b) => b.total - a.total || a.deviceId.localeCompare(b.deviceId))
        .slice(0, req.query.top);
      return { product: req.query.product, from: new Date(from).toISOString(), to: new Date(to).toISOString(), items };
    },
  );

  app.get(
    '/api/v1/analytics/commands',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: "A product's commands per action, the most failing first",
        ...AuthHeader,
        description: `Commands sent to the product's devices in the range (at most ${MAX_RAW_RANGE_DAYS} days; \`from\` is required), per action: how many, how many the device answered with a failure, how many timed out; the \`top\` actions by failures and timeouts.`,
        querystring: Type.Object({
          product: Type.String(),
          from: Type.Optional(Type.String({ description: 'Required' })),
          to: Type.Optional(Type.String()),
          top: Type.Integer({ minimum: 1, maximum: 1000, default: 10 }),
        }),
        response: {
          200: Type.Object(
            {
              product: Type.String(),
              from: Type.String(),
              to: Type.String(),
              items: Type.Array(
                Type.Object({ action: Type.String(), total: Type.Integer(), failed: Type.Integer(), timeouts: Type.Integer(), failureRate: Type.Number() }),
              ),
            },
            {
              examples: [
                {
                  product: 'door-lock',
                  from: '2026-11-01T00:00:00.000Z',
                  to: '2026-11-08T00:00:00.000Z',
                  items: [{ action: 'unlock', total: 1200, failed: 30, timeouts: 6, failureRate: 0.03 }],
                },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      await deps.products.require(req.query.product);
      const { from, to } = rawRange(req.query);
      const byAction = new Map<string, { total: number; failed: number; timeouts: number }>();
      await eachPage(req.query.product, async (ids) => {
        for (const r of await deps.commands.outcomes(ids, from, to)) {
          const a = byAction.get(r.action) ?? { total: 0, failed: 0, timeouts: 0 };
          byAction.set(r.action, { total: a.total + r.total, failed: a.failed + r.failed, timeouts: a.timeouts + r.timeouts });
        }
      });
      const items = [...byAction.entries()]
        .map(([action, a]) => ({ action, ...a, failureRate: a.total ? (a.failed + a.timeouts) / a.total : 0 }))
        .sort((x, y) => y.failed + y.timeouts - (x.failed + x.timeouts) || x.action.localeCompare(y.action))
        .slice(0, req.query.top);
      return { product: req.query.product, from: new Date(from).toISOString(), to: new Date(to).toISOString(), items };
    },
  );

  app.get(
    '/api/v1/analytics/timeseries',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: "A product's property across the fleet, per time bucket, from the rollups",
        ...AuthHeader,
        description:
          'Aggregates (`avg`, `min`, `max`, `count`, `sum`) of a numeric or boolean property over every device of a product, per bucket of whole minutes, read from the coarsest rollup tier that divides the bucket; ' +
          "`groupBy=home`, `groupBy=device`, `groupBy=tag.<key>` or `groupBy=firmware` gives one series per home, device, value of the operator's tag or firmware version the device last reported (devices in no home, without the tag or that never reported a version: `null`). `from` is required; at most 10000 buckets, and a range of at most 7 days on the 1-minute tier, 400 days on the hourly one.",
        querystring: Type.Object({
          product: Type.String({ examples: ['acme-thermostat'] }),
          property: Type.String({ examples: ['temperature'] }),
          agg: Agg,
          bucket: Type.String({ default: '1h', examples: ['1h'] }),
          from: Type.Optional(Type.String({ description: 'Required: ISO 8601 or epoch ms' })),
          to: Type.Optional(Type.String({ description: 'ISO 8601 or epoch ms; default now' })),
          groupBy: Type.Optional(
            Type.String({
              pattern: GROUP_BY_PATTERN,
              description: '`home`, `device`, `firmware` or `tag.<key>`',
              examples: ['home', 'tag.site', 'firmware'],
            }),
          ),
        }),
        response: {
          200: Type.Object(
            {
              product: Type.String(),
              property: Type.String(),
              agg: Agg,
              bucket: Type.String(),
              tier: Type.String(),
              from: Type.String(),
              to: Type.String(),
              groupBy: Type.Optional(Type.String()),
              series: Type.Array(
                Type.Object({
                  group: Type.Optional(Type.Union([Type.String(), Type.Null()])),
                  points: Type.Array(
                    Type.Object({
                      ts: Type.String({ format: 'date-time' }),
                      value: Type.Union([Type.Number(), Type.Null()]),
                      count: Type.Integer({ description: 'Points aggregated' }),
                    }),
                  ),
                }),
              ),
            },
            {
              examples: [
                {
                  product: 'acme-thermostat',
                  property: 'temperature',
                  agg: 'avg',
                  bucket: '1h',
                  tier: '1h',
                  from: '2026-11-01T00:00:00.000Z',
                  to: '2026-11-02T00:00:00.000Z',
                  series: [{ points: [{ ts: '2026-11-01T00:00:00.000Z', value: 20.4, count: 5832 }] }],
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
      const spec = (await deps.products.model(q.product))?.properties.get(q.property);
      if (!spec) throw new HearthError('E_VALIDATION', `product "${q.product}" has no property "${q.property}"`, { field: 'querystring.property' });
      if (spec.type !== 'number' && spec.type !== 'integer' && spec.type !== 'boolean') {
        throw new HearthError(
          'E_VALIDATION',
          `property "${q.property}" is ${spec.type === 'enum' ? 'an enum' : `of type ${spec.type}`}: fleet analytics aggregate numbers and booleans`,
          { field: 'querystring.property' },
        );
      }
      if (!spec.history)
        throw new HearthError('E_VALIDATION', `property "${q.property}" keeps no history (its model does not say "history": true)`, {
          field: 'querystring.property',
        });
      if (q.from === undefined) throw new HearthError('E_VALIDATION', 'querystring.from is required: fleet queries are bounded', { field: 'querystring.from' });
      const to = parseTime(q.to, Date.now(), 'to');
      const from = parseTime(q.from, 0, 'from');
      checkRange(from, to);
      const bucketMs = parseBucket(q.bucket);
      const tier = pickTier(bucketMs);
      if (!tier)
        throw new HearthError('E_VALIDATION', `fleet analytics read the rollups: bucket must be whole minutes, got "${q.bucket}"`, {
          field: 'querystring.bucket',
        });
      checkBuckets(from, to, bucketMs, q.bucket);
      if (to - from > MAX_RANGE_DAYS[tier.name] * 86_400_000) {
        throw new HearthError(
          'E_VALIDATION',
          `a range read from the ${tier.name} tier spans at most ${MAX_RANGE_DAYS[tier.name]} days: use a larger bucket or a shorter range`,
          { field: 'querystring.from' },
        );
      }
      const agg = q.agg as AggName;
      const rows = await deps.history.fleetBuckets({ product: q.product, property: q.property, from, to, bucketMs, tier, perDevice: q.groupBy !== undefined });
      // group → bucket → aggregate
      const groups = new Map<string | null, Map<number, Acc>>();
      const homeOf = new Map<string, string | null>();
      // Tag values and firmware versions of the devices in the answer, looked up a page at a time.
      let groupOf: Map<string, string> | undefined;
      if (q.groupBy === 'firmware' || q.groupBy?.startsWith('tag.')) {
        const ids = [...new Set(rows.map((r) => r.deviceId!))];
        if (q.groupBy === 'firmware') {
          if (!deps.firmware) throw new HearthError('E_VALIDATION', 'groupBy=firmware needs the OTA service', { field: 'querystring.groupBy' });
          groupOf = await deps.firmware.deviceVersions(ids);
        } else {
          if (!deps.tags) throw new HearthError('E_VALIDATION', 'groupBy=tag.<key> needs the fleet tags', { field: 'querystring.groupBy' });
          groupOf = await deps.tags.valuesOf(ids, q.groupBy!.slice(4));
        }
      }
      for (const r of rows) {
        let group: string | null = null;
        if (q.groupBy === 'device') group = r.deviceId!;
        else if (q.groupBy === 'home') {
          if (!homeOf.has(r.deviceId!)) homeOf.set(r.deviceId!, (await deps.access.placement(r.deviceId!))?.homeId ?? null);
          group = homeOf.get(r.deviceId!)!;
        } else if (groupOf) group = groupOf.get(r.deviceId!) ?? null;
        let g = groups.get(group);
        if (!g) groups.set(group, (g = new Map()));
        let a = g.get(r.bucket);
        if (!a) g.set(r.bucket, (a = { count: 0, sum: null, min: null, max: null }));
        merge(a, r);
      }
      const series = [...groups.entries()]
        .sort(([a], [b]) => String(a).localeCompare(String(b)))
        .map(([group, buckets]) => ({
          ...(q.groupBy ? { group } : {}),
          points: [...buckets.entries()].sort((x, y) => x[0] - y[0]).map(([b, a]) => ({ ts: new Date(b).toISOString(), value: value(a, agg), count: a.count })),
        }));
      return {
        product: q.product,
        property: q.property,
        agg,
        bucket: q.bucket,
        tier: tier.name,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        ...(q.groupBy ? { groupBy: q.groupBy } : {}),
        series: q.groupBy ? series : series.length ? series : [{ points: [] }],
      };
    },
  );
}
