import { createReadStream } from 'node:fs';
import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { actorOf } from '../access/principal.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import type { ProductService } from '../products/product-service.ts';
import { MAX_EXPORT_DAYS, parseTime, checkRange } from '../history/history-routes.ts';
import { CONTENT_TYPES } from './export-writers.ts';
import type { ExportJobs } from './export-jobs.ts';

const Format = Type.Union([Type.Literal('csv'), Type.Literal('ndjson'), Type.Literal('parquet')]);

const ExportView = Type.Object(
  {
    id: Type.String(),
    product: Type.String(),
    properties: Type.Array(Type.String()),
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time' }),
    format: Format,
    status: Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
    progress: Type.Object({
      devices: Type.Integer({ description: 'Devices of the product (counted when the job starts)' }),
      devicesDone: Type.Integer(),
      rows: Type.Integer({ description: 'Points written so far' }),
      bytes: Type.Integer({ description: 'Size of the file so far' }),
    }),
    error: Type.Union([Type.String(), Type.Null()]),
    createdBy: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'When the file and the job are deleted' }),
    downloadUrl: Type.Union([Type.String(), Type.Null()], { description: 'Once done: GET it with the same authorization' }),
  },
  {
    examples: [
      {
        id: 'exp_9x2k7m4p1q8r0t',
        product: 'acme-thermostat',
        properties: ['temperature'],
        from: '2026-11-01T00:00:00.000Z',
        to: '2026-12-01T00:00:00.000Z',
        format: 'parquet',
        status: 'done',
        progress: { devices: 1200, devicesDone: 1200, rows: 10368000, bytes: 48210344 },
        error: null,
        createdBy: 'user:u_1',
        createdAt: '2026-12-01T08:00:00.000Z',
        startedAt: '2026-12-01T08:00:01.000Z',
        finishedAt: '2026-12-01T08:03:12.000Z',
        expiresAt: '2026-12-08T08:03:12.000Z',
        downloadUrl: '/api/v1/exports/exp_9x2k7m4p1q8r0t/download',
      },
    ],
  },
);

const Params = Type.Object({ id: Type.String() });

/** Fleet export jobs (docs/telemetry.md#fleet-export-jobs). */
export async function exportRoutes(app: HttpApp, deps: { exports: ExportJobs; products: ProductService }): Promise<void> {
  app.post(
    '/api/v1/exports',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: "Start a fleet export: a product's raw points over a range, to one file",
        ...AuthHeader,
        description: `Writes the raw points of the named properties (default: every property with history) of every device of the product in the range (at most ${MAX_EXPORT_DAYS} days) to one CSV, NDJSON or Parquet file, in the background. Answers 202 with the job; \`GET /api/v1/exports/{id}\` shows its progress and, once done, its \`downloadUrl\`.`,
        body: Type.Object(
          {
            product: Type.String(),
            properties: Type.Optional(Type.Array(Type.String(), { minItems: 1, maxItems: 100 })),
            from: Type.String({ description: 'ISO 8601 or epoch ms' }),
            to: Type.Optional(Type.String({ description: 'ISO 8601 or epoch ms; default now' })),
            format: Type.Optional(Format),
          },
          {
            additionalProperties: false,
            examples: [
              { product: 'acme-thermostat', properties: ['temperature'], from: '2026-11-01T00:00:00Z', to: '2026-12-01T00:00:00Z', format: 'parquet' },
            ],
          },
        ),
        response: { 202: ExportView, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req, reply) => {
      const b = req.body;
      await deps.products.require(b.product);
      const model = await deps.products.model(b.product);
      const withHistory = [...(model?.properties.values() ?? [])].filter((s) => s.history).map((s) => s.id);
      const properties = b.properties ?? withHistory;
      const unknown = properties.filter((x) => !model?.properties.has(x));
      if (unknown.length)
        throw new HearthError('E_VALIDATION', `product "${b.product}" has no property ${unknown.map((u) => `"${u}"`).join(', ')}`, {
          field: 'body.properties',
        });
      const noHistory = properties.filter((x) => !withHistory.includes(x));
      if (noHistory.length)
        throw new HearthError(
          'E_VALIDATION',
          `property ${noHistory.map((u) => `"${u}"`).join(', ')} keeps no history (its model does not say "history": true)`,
          {
            field: 'body.properties',
          },
        );
      if (properties.length === 0)
        throw new HearthError('E_VALIDATION', `product "${b.product}" has no property that keeps history`, { field: 'body.properties' });
      const to = parseTime(b.to, Date.now(), 'to');
      const from = parseTime(b.from, 0, 'from');
      checkRange(from, to);
      if (to - from > MAX_EXPORT_DAYS * 86_400_000)
        throw new HearthError('E_VALIDATION', `an export spans at most ${MAX_EXPORT_DAYS} days`, { field: 'body.from' });
      const job = await deps.exports.create(actorOf(principal(req)), {
        product: b.product,
        properties: [...new Set(properties)],
        from,
        to,
        format: b.format ?? 'ndjson',
      });
      return reply.code(202).send(job);
    },
  );

  app.get(
    '/api/v1/exports',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: 'Fleet export jobs, the newest first',
        ...AuthHeader,
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }) }),
        response: { 200: Type.Object({ items: Type.Array(ExportView) }), ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => ({ items: await deps.exports.list(req.query.limit) }),
  );

  app.get(
    '/api/v1/exports/:id',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: 'A fleet export job: status, progress, download URL',
        ...AuthHeader,
        params: Params,
        response: { 200: ExportView, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND') },
      },
    },
    async (req) => deps.exports.get(req.params.id),
  );

  app.get(
    '/api/v1/exports/:id/download',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['telemetry'],
        summary: "A finished fleet export's file",
        ...AuthHeader,
        params: Params,
        response: {
          200: {
            description:
              'The file: CSV (`text/csv`, header `ts,deviceId,property,value`), NDJSON (`application/x-ndjson`) or Parquet (`application/vnd.apache.parquet`)',
            content: {
              'application/json': {
                schema: Type.Object(
                  { ts: Type.String({ format: 'date-time' }), deviceId: Type.String(), property: Type.String(), value: Type.Unknown() },
                  {
                    description: 'One line of an NDJSON file',
                    examples: [{ ts: '2026-11-23T00:10:00.000Z', deviceId: 'd_9x2k7m4p1q8r0t', property: 'temperature', value: 21.5 }],
                  },
                ),
              },
              'text/csv': { schema: Type.String({ examples: ['ts,deviceId,property,value\n2026-11-23T00:10:00.000Z,d_9x2k7m4p1q8r0t,temperature,21.5\n'] }) },
              'application/vnd.apache.parquet': { schema: Type.String({ format: 'binary' }) },
            },
          },
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND', 'E_CONFLICT'),
        },
      },
    },
    async (req, reply) => {
      const f = await deps.exports.file(req.params.id);
      reply.header('content-type', CONTENT_TYPES[f.format]);
      reply.header('content-length', String(f.size));
      reply.header('content-disposition', `attachment; filename="${f.name}"`);
      return reply.send(createReadStream(f.path) as never);
    },
  );
}
