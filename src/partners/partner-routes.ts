import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { checkInput, checkJsonText } from '../transports/http/input-bounds.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import { actorOf } from '../access/principal.ts';
import type { AuditService } from '../audit/audit-service.ts';
import { injectTrace } from '../core/observability/tracing.ts';
import type { UplinkIngress, Submission } from '../ingress/ingress.ts';
import { redactUrl, type Partner, type PartnerService } from './partner-service.ts';

const EXAMPLE_ID = 'pt_7m4p1q8r0t2k9x';

const AmqpSchema = Type.Object(
  {
    url: Type.String({
      description: "amqp:// or amqps:// URL of the partner's broker (its password is shown as ***)",
      examples: ['amqp://hearth:secret@mq.partner.example:5672/%2F'],
    }),
    queue: Type.String({
      minLength: 1,
      maxLength: 255,
      description: 'The queue Hearth consumes (declared by the partner, ideally with a dead-letter exchange: refused messages are rejected without requeue)',
    }),
    prefetch: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, description: 'Unacknowledged messages Hearth holds at once; default 50' })),
  },
  { additionalProperties: false },
);

const EXAMPLE = {
  id: EXAMPLE_ID,
  name: 'Acme Cloud',
  products: ['light', 'plug'],
  amqp: { url: 'amqp://hearth:***@mq.partner.example:5672/%2F', queue: 'hearth-in', prefetch: 50 },
  createdAt: '2026-11-23T08:00:00.000Z',
};

const PartnerSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    products: Type.Array(Type.String(), { description: 'Product keys whose devices the partner may send messages for' }),
    amqp: Type.Union([AmqpSchema, Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { examples: [EXAMPLE] },
);

const SECRET_DESCRIPTION =
  'The partner secret, shown once: the partner signs every push with it (x-hearth-signature: sha256=<hex HMAC-SHA256 of the raw body>). Hearth stores it as it is, because checking an HMAC needs it: treat the database accordingly, and rotate it with POST /api/v1/partners/{id}/secret.';

const CreatedSchema = Type.Object(
  {
    ...PartnerSchema.properties,
    secret: Type.String({ description: SECRET_DESCRIPTION }),
  },
  { examples: [{ ...EXAMPLE, secret: 'kQ3v9Zx1mW7pL0aT5nR8yB2cD4eF6gH1' }] },
);

const CreateBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    products: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 1000 }),
    amqp: Type.Optional(AmqpSchema),
  },
  {
    additionalProperties: false,
    examples: [{ name: 'Acme Cloud', products: ['light', 'plug'], amqp: { url: 'amqp://hearth:secret@mq.partner.example:5672/%2F', queue: 'hearth-in' } }],
  },
);

const PartnerParams = Type.Object({ id: Type.String() });

const MessageSchema = Type.Object(
  {
    deviceId: Type.String({ minLength: 1 }),
    kind: Type.Union([Type.Literal('properties'), Type.Literal('events')]),
    payload: Type.Unknown({ description: 'The same JSON a device publishes on devices/{id}/properties or devices/{id}/events (docs/protocol.md)' }),
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Your message id: a repeat is stored once' })),
  },
  { additionalProperties: false },
);

const PushBody = Type.Object(
  {
    messages: Type.Array(MessageSchema, { minItems: 1, maxItems: 500 }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        messages: [
          { deviceId: 'd_9x2k7m4p1q8r0t', kind: 'properties', payload: { on: true, brightness: 80 }, id: 'acme-81723' },
          { deviceId: 'd_4p1q8r0t9x2k7m', kind: 'events', payload: { event: 'motion' }, id: 'acme-81724' },
        ],
      },
    ],
  },
);

const PushAccepted = Type.Object(
  {
    accepted: Type.Integer(),
    ids: Type.Array(Type.String(), { description: "Hearth's message ids, in the order of the messages" }),
  },
  { examples: [{ accepted: 2, ids: ['embedded.4f', 'embedded.4g'] }] },
);

function view(p: Partner) {
  return {
    id: p.id,
    name: p.name,
    products: p.products,
    amqp: p.amqp && { ...p.amqp, url: redactUrl(p.amqp.url) },
    createdAt: new Date(p.createdAt).toISOString(),
  };
}

/** The raw bodies of partner pushes, kept by the push scope's parser for the signature check. */
const rawBodies = new WeakMap<FastifyRequest, Buffer>();

/**
 * The operator's partner registry, and the partners' HTTP push: a batch of device messages,
 * signed with the partner's secret, all checked before any is stored and acknowledged (202)
 * only once all are stored.
 */
export async function partnerRoutes(app: HttpApp, deps: { partners: PartnerService; ingress: UplinkIngress; audit?: AuditService }): Promise<void> {
  const { partners, ingress, audit } = deps;

  app.post(
    '/api/v1/partners',
    {
      config: { auth: Auth.operator('partners:manage') },
      schema: {
        tags: ['partners'],
        summary: 'Register a partner cloud; returns its signing secret once (operator)',
        ...AuthHeader,
        body: CreateBody,
        response: { 201: CreatedSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      const created = await partners.create(req.body);
      audit?.record({
        actor: actorOf(p),
        action: 'partner.create',
        targetType: 'partner',
        targetId: created.id,
        details: { name: created.name, products: created.products },
      });
      return reply.status(201).send({ ...view(created), secret: created.secret });
    },
  );

  app.get(
    '/api/v1/partners',
    {
      config: { auth: Auth.operator('partners:manage') },
      schema: {
        tags: ['partners'],
        summary: 'The partner clouds (operator)',
        ...AuthHeader,
        response: { 200: Type.Object({ items: Type.Array(PartnerSchema) }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (_req) => {
      return { items: (await partners.list()).map(view) };
    },
  );

  app.get(
    '/api/v1/partners/:id',
    {
      config: { auth: Auth.operator('partners:manage') },
      schema: {
        tags: ['partners'],
        summary: 'One partner (operator)',
        ...AuthHeader,
        params: PartnerParams,
        response: { 200: PartnerSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PARTNER_NOT_FOUND') },
      },
    },
    async (req) => {
      return view(await partners.require(req.params.id));
    },
  );

  app.delete(
    '/api/v1/partners/:id',
    {
      config: { auth: Auth.operator('partners:manage') },
      schema: {
        tags: ['partners'],
        summary: 'Remove a partner: its pushes are refused and its AMQP queue is no longer consumed (operator)',
        ...AuthHeader,
        params: PartnerParams,
        response: { 204: Type.Null({ description: 'Removed' }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PARTNER_NOT_FOUND') },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      await partners.delete(req.params.id);
      audit?.record({ actor: actorOf(p), action: 'partner.delete', targetType: 'partner', targetId: req.params.id });
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/partners/:id/secret',
    {
      config: { auth: Auth.operator('partners:manage') },
      schema: {
        tags: ['partners'],
        summary: "Rotate a partner's secret: the new one is shown once, the old one stops working at once (operator)",
        ...AuthHeader,
        params: PartnerParams,
        response: {
          200: Type.Object(
            { id: Type.String(), secret: Type.String({ description: SECRET_DESCRIPTION }) },
            { examples: [{ id: EXAMPLE_ID, secret: 'Vt8nQ2xL5mK9pR1wZ3bC7dF0gH4jA6sE' }] },
          ),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PARTNER_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const p = principal(req);
      const secret = await partners.rotateSecret(req.params.id);
      audit?.record({ actor: actorOf(p), action: 'partner.secret.rotate', targetType: 'partner', targetId: req.params.id });
      return { id: req.params.id, secret };
    },
  );

  // The push needs the exact bytes that were signed: its own scope parses JSON keeping them.
  void app.register(async (plain) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
    // Bounded like every JSON body of the API (depth, lone surrogates, non-finite numbers).
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
      rawBodies.set(req, body as Buffer);
      const text = (body as Buffer).toString('utf8');
      let parsed: unknown;
      try {
        checkJsonText(text);
      } catch (err) {
        return done(err as Error, undefined);
      }
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        return done(new HearthError('E_VALIDATION', `the body is not valid JSON: ${(err as Error).message}`), undefined);
      }
      try {
        checkInput(parsed, 'body');
      } catch (err) {
        return done(err as Error, undefined);
      }
      done(null, parsed);
    });

    scope.post(
      '/api/v1/partners/:id/messages',
      {
        config: { auth: Auth.self("the partner's signature: x-hearth-signature: sha256=<HMAC-SHA256 of the raw body>") },
        schema: {
          tags: ['partners'],
          summary: 'A partner pushes device messages (signed with its secret)',
          description:
            'Authenticated by `x-hearth-signature: sha256=<hex HMAC-SHA256 of the raw request body with the partner secret>` (no bearer token). ' +
            "Every message is checked first (the device must be of one of the partner's products, the payload must fit its thing model): one bad message refuses the whole batch, " +
            'and the problem names its index. 202 means every message is stored; after an error, send the batch again with the same message ids (repeats are stored once).',
          params: PartnerParams,
          headers: Type.Object({ 'x-hearth-signature': Type.Optional(Type.String({ examples: ['sha256=3f1c…'] })) }),
          body: PushBody,
          response: {
            202: PushAccepted,
            ...problems('E_VALIDATION', 'E_BAD_SIGNATURE', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_MODEL_MISMATCH', 'E_PAYLOAD_TOO_LARGE'),
          },
        },
        // Before schema validation: a caller without the secret learns nothing about the body.
        preValidation: async (req) => {
          const sig = req.headers['x-hearth-signature'];
          await partners.verify((req.params as { id: string }).id, rawBodies.get(req) ?? Buffer.alloc(0), typeof sig === 'string' ? sig : undefined);
        },
      },
      async (req, reply) => {
        const partner = await partners.require(req.params.id);
        const source = `partner:${partner.id}` as const;
        const trace = req.span ? injectTrace({}, req.span) : undefined;
        const subs: Submission[] = [];
        for (const [i, m] of req.body.messages.entries()) {
          try {
            subs.push({ ...(await partners.admit(partner, m, source)), ...(trace ? { trace } : {}) });
          } catch (err) {
            if (!isHearthError(err)) throw err;
            const field = `body.messages[${i}]${err.extras?.field ? `.${String(err.extras.field)}` : ''}`;
            throw new HearthError(err.code, `messages[${i}]: ${err.message}; nothing was stored`, { ...err.extras, index: i, field });
          }
        }
        const ids = await Promise.all(subs.map((s) => ingress.submit(s)));
        return reply.status(202).send({ accepted: ids.length, ids });
      },
    );
  });
}
