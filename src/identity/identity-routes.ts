import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { principal } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, Pagination, problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import { RateLimiter } from '../core/rate-limiter.ts';
import { actorOf } from '../access/principal.ts';
import type { AuditService } from '../audit/audit-service.ts';
import { ProductKey } from '../products/product-schema.ts';
import { DeviceParams } from '../devices/device-schema.ts';
import type { IdentityService } from './identity-service.ts';
import type { ProvisioningService } from './provisioning-service.ts';

const Time = Type.String({ format: 'date-time' });
const FP_TEXT = '69:43:06:FC:2F:B1:BA:53:CB:DD:DB:4B:55:32:B4:D7:F3:44:0B:C5:22:F3:7E:7F:DA:84:08:40:8B:41:FE:74';
const CA_EXAMPLE = {
  id: 'ca_7k2m9x4p1q8r0t',
  product: 'acme-lamp',
  fingerprint: FP_TEXT,
  subject: 'CN=Acme devices',
  notAfter: '2030-01-01T00:00:00.000Z',
  jit: false,
  createdAt: '2026-12-06T08:00:00.000Z',
  revokedAt: null,
};
const REVOKED_EXAMPLE = { fingerprint: FP_TEXT, reason: 'device stolen', revokedAt: '2026-12-06T08:00:00.000Z' };

const Fingerprint = Type.String({
  description: 'SHA-256 fingerprint of the DER certificate: 64 hex digits, colons allowed',
  examples: ['69:43:06:FC:2F:B1:BA:53:CB:DD:DB:4B:55:32:B4:D7:F3:44:0B:C5:22:F3:7E:7F:DA:84:08:40:8B:41:FE:74'],
});
const CaSchema = Type.Object(
  {
    id: Type.String(),
    product: Type.String(),
    fingerprint: Type.String(),
    subject: Type.String(),
    notAfter: Time,
    jit: Type.Boolean({ description: 'Just-in-time registration: an unknown hardware id with a certificate of this CA becomes a device on its first connect' }),
    createdAt: Time,
    revokedAt: Type.Union([Time, Type.Null()]),
  },
  { examples: [CA_EXAMPLE] },
);
const CRL_EXAMPLE = {
  caId: 'ca_7k2m9x4p1q8r0t',
  number: '2A',
  thisUpdate: '2026-12-06T08:00:00.000Z',
  nextUpdate: '2026-12-13T08:00:00.000Z',
  serials: ['3F9A2C7B11D04E5A'],
  uploadedAt: '2026-12-06T08:05:00.000Z',
};
const CrlSchema = Type.Object(
  {
    caId: Type.String(),
    number: Type.Union([Type.String(), Type.Null()], { description: 'The cRLNumber (hex), when the list has one' }),
    thisUpdate: Time,
    nextUpdate: Type.Union([Time, Type.Null()]),
    serials: Type.Array(Type.String(), { description: 'Serial numbers of the revoked certificates (upper-case hex)' }),
    uploadedAt: Time,
  },
  { examples: [CRL_EXAMPLE] },
);
const CaParams = Type.Object({ key: ProductKey, id: Type.String({ maxLength: 64 }) });
const RevokedSchema = Type.Object(
  { fingerprint: Type.String(), reason: Type.Union([Type.String(), Type.Null()]), revokedAt: Time },
  { examples: [REVOKED_EXAMPLE] },
);
const ProvisioningSchema = Type.Object(
  {
    product: Type.String(),
    secret: Type.Optional(Type.String({ description: 'The provisioning secret (for the firmware); shown once, when made or rotated' })),
    limit: Type.Union([Type.Integer(), Type.Null()], { description: 'Most devices provisioning may make for the product; null: no limit' }),
    allowListOnly: Type.Boolean({ description: 'Only hardware ids on the factory records may provision' }),
    provisioned: Type.Integer({ description: 'Devices made by provisioning so far' }),
    createdAt: Time,
    updatedAt: Time,
  },
  {
    examples: [
      {
        product: 'acme-lamp',
        secret: 'pV3q…(shown once)',
        limit: 50000,
        allowListOnly: true,
        provisioned: 0,
        createdAt: '2026-12-06T08:00:00.000Z',
        updatedAt: '2026-12-06T08:00:00.000Z',
      },
    ],
  },
);
const ProductParams = Type.Object({ key: ProductKey });
const DeviceCertSchema = Type.Object(
  {
    fingerprint: Type.String(),
    deviceId: Type.String(),
    caId: Type.String({ description: 'The CA that issued it, or "registered" (registered for this device)' }),
    subject: Type.String(),
    notAfter: Time,
    firstSeenAt: Time,
    revoked: Type.Boolean(),
  },
  {
    examples: [
      {
        fingerprint: FP_TEXT,
        deviceId: 'd_9x2k7m4p1q8r0t',
        caId: 'ca_7k2m9x4p1q8r0t',
        subject: 'CN=d_9x2k7m4p1q8r0t',
        notAfter: '2028-01-01T00:00:00.000Z',
        firstSeenAt: '2026-12-06T08:00:00.000Z',
        revoked: false,
      },
    ],
  },
);

/**
 * Device identity over HTTP: product CAs and revoked certificates (operator, products:manage),
 * a device's certificates, zero-touch provisioning settings and factory records, and the public
 * `POST /api/v1/provision` a device calls itself (signed; limited per source address).
 */
export async function identityRoutes(app: HttpApp, deps: { identity: IdentityService; provisioning: ProvisioningService; audit: AuditService }): Promise<void> {
  const { identity, provisioning, audit } = deps;
  // Factory records come as CSV (up to 10 MiB: 100,000 records).
  app.addContentTypeParser('text/csv', { parseAs: 'string', bodyLimit: 10 * 1024 * 1024 }, (_req, body, done) => done(null, body));

  app.post(
    '/api/v1/products/:key/cas',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: 'Register a CA for a product: device certificates it issues authenticate on the MQTT TLS port',
        ...AuthHeader,
        params: ProductParams,
        body: Type.Object(
          {
            pem: Type.String({ minLength: 1, maxLength: 65536, description: 'The CA certificate, PEM (one certificate)' }),
            jit: Type.Optional(Type.Boolean({ default: false, description: 'Just-in-time registration of unknown hardware ids' })),
          },
          { additionalProperties: false, examples: [{ pem: '-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n', jit: true }] },
        ),
        response: { 201: CaSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req, reply) => {
      const ca = await identity.addCa(req.params.key, req.body);
      audit.record({
        actor: actorOf(principal(req)),
        action: 'product.ca.add',
        targetType: 'product',
        targetId: req.params.key,
        details: { ca: ca.id, fingerprint: ca.fingerprint, subject: ca.subject, jit: ca.jit },
      });
      return reply.status(201).send(ca);
    },
  );

  app.get(
    '/api/v1/products/:key/cas',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: 'The CAs of a product (revoked ones included)',
        ...AuthHeader,
        params: ProductParams,
        response: {
          200: Type.Object({ items: Type.Array(CaSchema) }, { examples: [{ items: [CA_EXAMPLE] }] }),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req) => ({ items: await identity.listCas(req.params.key) }),
  );

  app.delete(
    '/api/v1/products/:key/cas/:id',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: 'Revoke a CA: its certificates are refused and their sessions closed on every node',
        ...AuthHeader,
        params: Type.Object({ key: ProductKey, id: Type.String({ maxLength: 64 }) }),
        response: { 200: CaSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND') },
      },
    },
    async (req) => {
      const ca = await identity.revokeCa(req.params.key, req.params.id);
      audit.record({
        actor: actorOf(principal(req)),
        action: 'product.ca.revoke',
        targetType: 'product',
        targetId: req.params.key,
        details: { ca: ca.id, fingerprint: ca.fingerprint },
      });
      return ca;
    },
  );

  app.put(
    '/api/v1/products/:key/cas/:id/crl',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: "Set a CA's certificate revocation list: the certificates it lists are refused and their sessions closed on every node",
        description:
          'The CRL must be signed by this CA; one older than the current list (a lower cRLNumber, or an earlier thisUpdate) is refused with 409. A list past its nextUpdate still applies until a newer one is uploaded.',
        ...AuthHeader,
        params: CaParams,
        body: Type.Object(
          {
            pem: Type.String({ minLength: 1, maxLength: 1_000_000, description: 'The CRL, PEM (-----BEGIN X509 CRL-----); the request body is at most 1 MiB' }),
          },
          { additionalProperties: false, examples: [{ pem: '-----BEGIN X509 CRL-----\nMIIB…\n-----END X509 CRL-----\n' }] },
        ),
        response: { 200: CrlSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => {
      const crl = await identity.setCrl(req.params.key, req.params.id, req.body.pem);
      audit.record({
        actor: actorOf(principal(req)),
        action: 'product.ca.crl',
        targetType: 'product',
        targetId: req.params.key,
        details: { ca: crl.caId, number: crl.number, thisUpdate: crl.thisUpdate, revoked: crl.serials.length },
      });
      return crl;
    },
  );

  app.get(
    '/api/v1/products/:key/cas/:id/crl',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: "A CA's current certificate revocation list (404 when none was uploaded)",
        ...AuthHeader,
        params: CaParams,
        response: { 200: CrlSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND') },
      },
    },
    async (req) => identity.getCrl(req.params.key, req.params.id),
  );

  app.post(
    '/api/v1/certificates/revoked',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['identity'],
        summary: 'Revoke one device certificate by fingerprint: refused from now on, its sessions closed on every node',
        ...AuthHeader,
        body: Type.Object(
          { fingerprint: Fingerprint, reason: Type.Optional(Type.String({ maxLength: 500 })) },
          { additionalProperties: false, examples: [{ fingerprint: FP_TEXT, reason: 'device stolen' }] },
        ),
        response: {
          201: Type.Object(
            {
              ...RevokedSchema.properties,
              deviceId: Type.Union([Type.String(), Type.Null()], { description: 'The device the certificate is bound to, if it connected' }),
            },
            { examples: [{ fingerprint: FP_TEXT, reason: 'device stolen', revokedAt: '2026-12-06T08:00:00.000Z', deviceId: 'd_9x2k7m4p1q8r0t' }] },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN'),
        },
      },
    },
    async (req, reply) => {
      const r = await identity.revokeCertificate(req.body.fingerprint, req.body.reason);
      audit.record({
        actor: actorOf(principal(req)),
        action: 'certificate.revoke',
        targetType: 'certificate',
        targetId: r.fingerprint,
        details: { deviceId: r.deviceId, reason: r.reason },
      });
      return reply.status(201).send(r);
    },
  );

  app.get(
    '/api/v1/certificates/revoked',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['identity'],
        summary: 'Revoked certificates',
        ...AuthHeader,
        response: {
          200: Type.Object({ items: Type.Array(RevokedSchema) }, { examples: [{ items: [REVOKED_EXAMPLE] }] }),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN'),
        },
      },
    },
    async () => ({ items: await identity.listRevoked() }),
  );

  app.get(
    '/api/v1/devices/:id/certificates',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['identity'],
        summary: 'The client certificates a device authenticated with',
        ...AuthHeader,
        params: DeviceParams,
        response: {
          200: Type.Object(
            { items: Type.Array(DeviceCertSchema) },
            {
              examples: [
                {
                  items: [
                    {
                      fingerprint: FP_TEXT,
                      deviceId: 'd_9x2k7m4p1q8r0t',
                      caId: 'ca_7k2m9x4p1q8r0t',
                      subject: 'CN=d_9x2k7m4p1q8r0t',
                      notAfter: '2028-01-01T00:00:00.000Z',
                      firstSeenAt: '2026-12-06T08:00:00.000Z',
                      revoked: false,
                    },
                  ],
                },
              ],
            },
          ),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN'),
        },
      },
    },
    async (req) => ({ items: await identity.deviceCertificates(req.params.id) }),
  );

  app.post(
    '/api/v1/devices/:id/certificates',
    {
      config: { auth: Auth.operator('devices:manage') },
      schema: {
        tags: ['identity'],
        ...AuthHeader,
        summary:
          'Register one client certificate for one device (issued by any CA, or self-signed): it must carry the device id or hardware id as its CN or a SAN',
        params: DeviceParams,
        body: Type.Object(
          { pem: Type.String({ minLength: 1, maxLength: 65536, description: 'The device certificate, PEM' }) },
          { additionalProperties: false, examples: [{ pem: '-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n' }] },
        ),
        response: { 201: DeviceCertSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req, reply) => {
      const c = await identity.registerDeviceCertificate(req.params.id, req.body.pem);
      audit.record({
        actor: actorOf(principal(req)),
        action: 'device.certificate.register',
        targetType: 'device',
        targetId: req.params.id,
        details: { fingerprint: c.fingerprint, subject: c.subject },
      });
      return reply.status(201).send(c);
    },
  );

  app.put(
    '/api/v1/products/:key/provisioning',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: 'Turn on or change zero-touch provisioning for a product; the provisioning secret is returned once (when made or rotated)',
        ...AuthHeader,
        params: ProductParams,
        body: Type.Object(
          {
            limit: Type.Optional(
              Type.Union([Type.Integer({ minimum: 0, maximum: 100_000_000 }), Type.Null()], {
                description: 'Most devices provisioning may make; null: no limit',
              }),
            ),
            allowListOnly: Type.Optional(Type.Boolean({ description: 'Only hardware ids on the factory records may provision' })),
            rotateSecret: Type.Optional(Type.Boolean({ description: 'Make a new provisioning secret (the old one stops working at once)' })),
          },
          { additionalProperties: false, examples: [{ limit: 50000, allowListOnly: true }] },
        ),
        response: { 200: ProvisioningSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req) => {
      const c = await provisioning.configure(req.params.key, req.body);
      audit.record({
        actor: actorOf(principal(req)),
        action: 'product.provisioning.configure',
        targetType: 'product',
        targetId: req.params.key,
        details: { limit: c.limit, allowListOnly: c.allowListOnly, secretMade: c.secret !== undefined },
      });
      return c;
    },
  );

  app.get(
    '/api/v1/products/:key/provisioning',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: 'Zero-touch provisioning settings of a product (without the secret)',
        ...AuthHeader,
        params: ProductParams,
        response: { 200: ProvisioningSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND', 'E_NOT_FOUND') },
      },
    },
    async (req) => provisioning.require(req.params.key),
  );

  app.post(
    '/api/v1/products/:key/factory-records',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        ...AuthHeader,
        summary:
          'Import factory records from CSV (text/csv; a header line with hwid and optionally serial, mac and more columns): the allow-list of hardware ids. All or none; a known hwid is updated',
        params: ProductParams,
        consumes: ['text/csv'],
        querystring: Type.Object(
          {
            provision: Type.Optional(
              Type.Boolean({
                default: false,
                description: 'Also make a device, with its secret (returned once, for flashing), for every hardware id that has none yet',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        body: Type.String({ description: 'CSV: a header line, then one record a line', examples: ['hwid,serial,mac\nAB-0001,SN-1,00:11:22:33:44:01\n'] }),
        response: {
          200: Type.Object(
            {
              imported: Type.Integer(),
              total: Type.Integer({ description: 'Factory records of the product now' }),
              devices: Type.Optional(
                Type.Array(Type.Object({ hwid: Type.String(), id: Type.String(), secret: Type.String({ description: 'Shown once' }) }), {
                  description: 'With ?provision=true: the devices made',
                }),
              ),
              existing: Type.Optional(Type.Array(Type.String(), { description: 'With ?provision=true: hardware ids that had a device already' })),
            },
            {
              examples: [
                { imported: 2, total: 2 },
                { imported: 2, total: 2, devices: [{ hwid: 'AB-0001', id: 'd_9x2k7m4p1q8r0t', secret: 'q3VZ0m1oQ2d3bU8p…' }], existing: ['AB-0002'] },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND', 'E_PAYLOAD_TOO_LARGE'),
        },
      },
    },
    async (req) => {
      if (typeof req.body !== 'string') throw new HearthError('E_VALIDATION', 'send the records as text/csv', { field: 'body' });
      if (req.query.provision) {
        const r = await provisioning.importAndProvision(req.params.key, req.body);
        audit.record({
          actor: actorOf(principal(req)),
          action: 'product.factory-records.import',
          targetType: 'product',
          targetId: req.params.key,
          details: { imported: r.imported, total: r.total, provisioned: r.devices.length },
        });
        return r;
      }
      const r = await provisioning.importFactoryRecords(req.params.key, req.body);
      audit.record({ actor: actorOf(principal(req)), action: 'product.factory-records.import', targetType: 'product', targetId: req.params.key, details: r });
      return r;
    },
  );

  app.get(
    '/api/v1/products/:key/factory-records',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['identity'],
        summary: 'Factory records of a product, with the device each provisioned',
        ...AuthHeader,
        params: ProductParams,
        querystring: Type.Object({ ...Pagination }),
        response: {
          200: Type.Object(
            {
              items: Type.Array(
                Type.Object({
                  hwid: Type.String(),
                  serial: Type.Union([Type.String(), Type.Null()]),
                  mac: Type.Union([Type.String(), Type.Null()]),
                  attributes: Type.Record(Type.String(), Type.String()),
                  deviceId: Type.Union([Type.String(), Type.Null()]),
                  provisionedAt: Type.Union([Time, Type.Null()]),
                }),
              ),
              total: Type.Integer(),
            },
            {
              examples: [
                {
                  items: [
                    {
                      hwid: 'AB-0001',
                      serial: 'SN-1',
                      mac: '00:11:22:33:44:01',
                      attributes: { batch: '7' },
                      deviceId: 'd_9x2k7m4p1q8r0t',
                      provisionedAt: '2026-12-06T08:00:00.000Z',
                    },
                  ],
                  total: 1,
                },
              ],
            },
          ),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req) => provisioning.listFactoryRecords(req.params.key, req.query),
  );

  // Devices call this themselves: no account, so a limit per source address instead.
  const perSource = new RateLimiter({ perMinute: 120, burst: 30 });
  app.post(
    '/api/v1/provision',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['identity'],
        summary:
          "Zero-touch provisioning: a device registers itself with a request signed by its product's provisioning secret and gets its id and secret once",
        body: Type.Object(
          {
            product: ProductKey,
            hwid: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:@-]+$' }),
            timestamp: Type.Integer({ minimum: 0, description: "Seconds since the epoch when signed; within 300 s of the server's time" }),
            nonce: Type.String({ minLength: 8, maxLength: 64, description: 'Unique per request: a repeated nonce is refused as a replay' }),
            signature: Type.String({
              minLength: 64,
              maxLength: 64,
              pattern: '^[0-9a-fA-F]+$',
              description: 'hex HMAC-SHA256 of "product\\nhwid\\ntimestamp\\nnonce" with the provisioning secret',
            }),
          },
          {
            additionalProperties: false,
            examples: [{ product: 'acme-lamp', hwid: 'AB-0001', timestamp: 1796544000, nonce: '9f2c4e1a7b3d5f60a1b2c3d4', signature: '5b7f…(64 hex digits)' }],
          },
        ),
        response: {
          201: Type.Object(
            {
              id: Type.String(),
              product: Type.String(),
              hwid: Type.String(),
              secret: Type.String({ description: 'Shown once' }),
              mqtt: Type.Object({ clientId: Type.String(), username: Type.String() }),
            },
            {
              examples: [
                {
                  id: 'd_9x2k7m4p1q8r0t',
                  product: 'acme-lamp',
                  hwid: 'AB-0001',
                  secret: 'q3VZ0m1oQ2d3bU8p…',
                  mqtt: { clientId: 'd_9x2k7m4p1q8r0t', username: 'd_9x2k7m4p1q8r0t' },
                },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_BAD_SIGNATURE', 'E_FORBIDDEN', 'E_CONFLICT', 'E_REPLAYED', 'E_RATE_LIMITED'),
        },
      },
    },
    async (req, reply) => {
      const r = perSource.take(req.ip);
      if (!r.ok)
        throw new HearthError('E_RATE_LIMITED', `too many provisioning requests from this address; retry in ${r.retryAfterSeconds} s`, {
          retryAfter: r.retryAfterSeconds,
        });
      const id = await provisioning.provision(req.body, 'http');
      return reply.status(201).send({ ...id, mqtt: { clientId: id.id, username: id.id } });
    },
  );
}
