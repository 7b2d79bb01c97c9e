import { Type } from 'typebox';
import type { Readable } from 'node:stream';
import type { RouteShorthandOptions } from 'fastify';
import type { HttpApp } from '../transports/http/http-server.ts';
import { principal } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, Pagination, problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import { actorOf } from '../access/principal.ts';
import type { AuditService } from '../audit/audit-service.ts';
import type { AccessService } from '../access/access-service.ts';
import type { Firmware, FirmwareService } from './firmware-service.ts';
import type { CampaignService } from './campaign-service.ts';
import {
  CampaignListSchema,
  CampaignSchema,
  CreateCampaignBody,
  DeviceFirmwareSchema,
  FirmwareKeySchema,
  FirmwareSchema,
  ImageSchema,
  JobListSchema,
  UploadQuery,
  VersionsSchema,
} from './ota-schema.ts';

const ProductParams = Type.Object({ key: Type.String({ minLength: 1, maxLength: 64 }) });
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` of a `size`-byte image: the inclusive range, 'unsatisfiable', or undefined (whole image). */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Several ranges, other units or nonsense: serve the whole image (RFC 9110 lets a server ignore Range).
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * Firmware packages, downloads, campaigns and inventory. Packages and campaigns are the
 * operator's (`products:manage`, `devices:manage`); the download is authorised by the token in its
 * URL (small firmware HTTP clients cannot set a header); the product key is public.
 */
export async function otaRoutes(
  app: HttpApp,
  deps: { firmware: FirmwareService; campaigns: CampaignService; audit: AuditService; access: AccessService },
): Promise<void> {
  const { firmware, campaigns, audit } = deps;

  // The image is the raw body, passed on as a stream: never held whole in memory, bounded by the service.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  app.post(
    '/api/v1/products/:key/firmware',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['ota'],
        summary: 'Upload a firmware package (the image as the raw body)',
        ...AuthHeader,
        description:
          "Send the image as `application/octet-stream`; it is streamed to storage, hashed and signed with the product's Ed25519 key (made on first use). Size limit: `HEARTH_OTA_MAX_FIRMWARE_BYTES`.",
        params: ProductParams,
        querystring: UploadQuery,
        response: {
          201: FirmwareSchema,
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND', 'E_CONFLICT', 'E_PAYLOAD_TOO_LARGE'),
        },
      },
    },
    async (req, reply) => {
      const body = req.body as Readable | undefined;
      if (!body || typeof (body as Readable).pipe !== 'function')
        throw new HearthError('E_VALIDATION', 'send the image as the request body with content-type application/octet-stream');
      const actor = actorOf(principal(req));
      let fw: Firmware;
      try {
        fw = await firmware.upload(
          {
            product: req.params.key,
            version: req.query.version,
            notes: req.query.notes,
            minVersion: req.query.minVersion,
            makerSignature: req.query.signature,
            sha256: req.query.sha256,
          },
          body,
          actor,
        );
      } catch (err) {
        // What is left of a refused body is read and dropped, so the client reads the answer instead of a reset.
        body.resume();
        throw err;
      }
      audit.record({
        actor,
        action: 'ota.firmware.upload',
        targetType: 'firmware',
        targetId: fw.id,
        details: { product: fw.product, version: fw.version, size: fw.size, sha256: fw.sha256 },
      });
      return reply.status(201).send(fw);
    },
  );

  app.get(
    '/api/v1/products/:key/firmware',
    {
      config: { auth: Auth.operator('products:manage', 'devices:manage') },
      schema: {
        tags: ['ota'],
        summary: "A product's firmware packages, newest version first",
        ...AuthHeader,
        params: ProductParams,
        response: { 200: Type.Object({ items: Type.Array(FirmwareSchema) }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await firmware.list(req.params.key) }),
  );

  app.get(
    '/api/v1/products/:key/firmware-key',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['ota'],
        summary: "The product's public key that firmware signatures verify with",
        description: 'Ed25519. `publicKey` is PEM (SPKI); `publicKeyRaw` the 32 raw bytes in base64. The key pair is made on first use.',
        params: ProductParams,
        response: { 200: FirmwareKeySchema, ...problems('E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req) => firmware.publicKey(req.params.key),
  );

  app.get(
    '/api/v1/products/:key/firmware-versions',
    {
      config: { auth: Auth.operator('products:manage', 'devices:manage') },
      schema: {
        tags: ['ota'],
        summary: 'Inventory: devices per firmware version',
        ...AuthHeader,
        params: ProductParams,
        response: { 200: VersionsSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req) => campaigns.versions(req.params.key),
  );

  app.get(
    '/api/v1/firmware/:id',
    {
      config: { auth: Auth.operator('products:manage', 'devices:manage') },
      schema: {
        tags: ['ota'],
        summary: 'Read a firmware package',
        ...AuthHeader,
        params: IdParams,
        response: { 200: FirmwareSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FIRMWARE_NOT_FOUND') },
      },
    },
    async (req) => firmware.require(req.params.id),
  );

  app.delete(
    '/api/v1/firmware/:id',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['ota'],
        summary: 'Delete a firmware package (409 while a live campaign uses it)',
        ...AuthHeader,
        params: IdParams,
        response: { 204: Type.Null(), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FIRMWARE_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req, reply) => {
      const fw = await firmware.remove(req.params.id);
      audit.record({
        actor: actorOf(principal(req)),
        action: 'ota.firmware.delete',
        targetType: 'firmware',
        targetId: fw.id,
        details: { product: fw.product, version: fw.version },
      });
      return reply.status(204).send(null);
    },
  );

  // The image is a stream, not the JSON its 200 schema describes for the OpenAPI document: typed loosely.
  const download: RouteShorthandOptions = {
    config: { auth: Auth.self("the download token in the URL, from the device's OTA job") },
    schema: {
      tags: ['ota'],
      summary: 'Download a firmware image (the URL of an OTA job)',
      description:
        'Supports `Range` (one range: resume after a dropped link) with `206`, `ETag` (the SHA-256) with `If-None-Match` and `If-Range`. At most `HEARTH_OTA_MAX_CONCURRENT_DOWNLOADS` at once per node: beyond, `503` with `Retry-After`.',
      params: IdParams,
      querystring: Type.Object({ token: Type.String({ minLength: 1, maxLength: 2048 }) }),
      response: { 200: ImageSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FIRMWARE_NOT_FOUND', 'E_UNAVAILABLE') },
    },
  };
  const serve = async (
    req: { params: { id: string }; query: { token: string }; headers: Record<string, string | string[] | undefined>; method: string; raw: unknown },
    reply: import('fastify').FastifyReply,
  ): Promise<unknown> => {
    await firmware.checkToken(req.params.id, req.query.token);
    const fw = await firmware.require(req.params.id);
    const etag = `"${fw.sha256}"`;
    reply.header('etag', etag).header('accept-ranges', 'bytes').header('cache-control', 'private, max-age=0');
    if (req.headers['if-none-match'] === etag) return reply.status(304).send(null);
    const ifRange = req.headers['if-range'];
    const range = ifRange === undefined || ifRange === etag ? parseRange(req.headers.range as string | undefined, fw.size) : undefined;
    if (range === 'unsatisfiable') {
      // 416 is HTTP's own answer here (not a catalogue code): a resuming client knows it.
      return reply
        .status(416)
        .header('content-range', `bytes */${fw.size}`)
        .type('application/problem+json')
        .send({ type: 'about:blank', title: 'Range Not Satisfiable', status: 416, detail: `the range is outside the image (${fw.size} bytes)` });
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? fw.size - 1;
    const release = req.method === 'HEAD' ? () => undefined : firmware.takeDownloadSlot();
    if (!release) {
      reply.header('retry-after', '5');
      throw new HearthError('E_UNAVAILABLE', 'too many firmware downloads at once on this node; retry after the Retry-After seconds');
    }
    reply.header('content-type', 'application/octet-stream').header('content-length', String(end - start + 1));
    if (range) reply.status(206).header('content-range', `bytes ${start}-${end}/${fw.size}`);
    if (req.method === 'HEAD') return reply.send(null);
    const stream = firmware.open(fw.id, start, end);
    stream.once('close', release);
    stream.once('error', release);
    // A device that drops the link ends the transfer: the image stream and the connection go with it.
    reply.raw.once('close', () => {
      release();
      if (!reply.raw.writableFinished) {
        stream.destroy();
        reply.raw.socket?.destroy();
      }
    });
    return reply.send(stream);
  };
  app.get('/api/v1/firmware/:id/download', download, (req, reply) => serve(req as unknown as Parameters<typeof serve>[0], reply));

  app.post(
    '/api/v1/ota/campaigns',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['ota'],
        summary: 'Start an update campaign',
        ...AuthHeader,
        body: CreateCampaignBody,
        description:
          'The target is frozen now: one job per device, each in a wave by a stable hash of the product and device id. A rollback is a campaign to an older package with `allowDowngrade: true`.',
        response: { 201: CampaignSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FIRMWARE_NOT_FOUND', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req, reply) => reply.status(201).send(await campaigns.create(req.body, actorOf(principal(req)))),
  );

  app.get(
    '/api/v1/ota/campaigns',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['ota'],
        summary: 'List update campaigns, newest first',
        ...AuthHeader,
        querystring: Type.Object({
          product: Type.Optional(Type.String({ maxLength: 64 })),
          state: Type.Optional(Type.String({ maxLength: 16 })),
          ...Pagination,
        }),
        response: { 200: CampaignListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => campaigns.list(req.query),
  );

  app.get(
    '/api/v1/ota/campaigns/:id',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['ota'],
        summary: 'Read a campaign with its counts',
        ...AuthHeader,
        params: IdParams,
        response: { 200: CampaignSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_CAMPAIGN_NOT_FOUND') },
      },
    },
    async (req) => campaigns.require(req.params.id),
  );

  app.get(
    '/api/v1/ota/campaigns/:id/devices',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['ota'],
        summary: "A campaign's jobs: every device with its wave, state and error",
        ...AuthHeader,
        params: IdParams,
        querystring: Type.Object({ state: Type.Optional(Type.String({ maxLength: 16 })), ...Pagination }),
        response: { 200: JobListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_CAMPAIGN_NOT_FOUND') },
      },
    },
    async (req) => campaigns.jobs(req.params.id, req.query),
  );

  for (const op of ['pause', 'resume', 'cancel'] as const) {
    app.post(
      `/api/v1/ota/campaigns/:id/${op}`,
      {
        config: { auth: Auth.operator('devices:manage') },
        schema: {
          tags: ['ota'],
          summary: {
            pause: 'Pause: no job is sent and no wave starts (sent jobs go on)',
            resume: 'Resume a paused campaign',
            cancel: 'Cancel: jobs not sent are cancelled (sent ones finish)',
          }[op],
          ...AuthHeader,
          params: IdParams,
          response: { 200: CampaignSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_CAMPAIGN_NOT_FOUND', 'E_CONFLICT') },
        },
      },
      async (req) => campaigns[op](req.params.id, actorOf(principal(req))),
    );
  }

  app.get(
    '/api/v1/devices/:id/firmware',
    {
      config: { auth: Auth.caller('devices:read') },
      schema: {
        tags: ['ota'],
        summary: "A device's firmware version and its last OTA job",
        ...AuthHeader,
        params: IdParams,
        response: { 200: DeviceFirmwareSchema, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req) => {
      await deps.access.requireDevice(principal(req), req.params.id, 'view');
      return campaigns.deviceFirmware(req.params.id);
    },
  );
}
