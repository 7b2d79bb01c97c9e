import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import type { DeadLetterService } from './dead-letters.ts';

const T = '2026-11-23T08:00:00.000Z';
const Status = Type.Union([Type.Literal('waiting'), Type.Literal('replayed'), Type.Literal('discarded')], {
  description: 'waiting: kept for the operator; replayed: sent again; discarded: given up on',
});
const Tags = Type.Record(Type.String(), Type.String());
const Target = Type.Record(Type.String(), Type.Unknown(), { description: 'The route target, secrets, URL passwords and header values redacted' });

const envelopeSummaryExample = {
  id: 'gw-1a2b3c.4k',
  source: 'mqtt',
  deviceId: 'd_9x2k7m4p1q8r0t',
  product: 'water-leak-sensor',
  kind: 'events',
  topic: 'devices/d_9x2k7m4p1q8r0t/events',
  tags: { class: 'alarm' },
  receivedAt: T,
};
const letterExample = {
  id: 'dl_4k2m9x7p1q8r0t',
  routeId: 'r_7m4p1q8r0t2k9x',
  routeName: 'alarms-to-insurer',
  targetIndex: 0,
  target: { type: 'webhook', url: 'https://partner.example/hooks/hearth', secret: '[redacted]' },
  lane: null,
  reason: 'HTTP 503 after 6 attempts',
  attempts: 6,
  status: 'waiting',
  createdAt: T,
  updatedAt: T,
};

const EnvelopeSummary = Type.Object({
  id: Type.String(),
  source: Type.String(),
  deviceId: Type.String(),
  product: Type.Union([Type.String(), Type.Null()]),
  kind: Type.String(),
  topic: Type.String(),
  tags: Tags,
  receivedAt: Type.String({ format: 'date-time' }),
});

const Envelope = Type.Object({
  id: Type.String(),
  source: Type.String(),
  deviceId: Type.String(),
  product: Type.Optional(Type.String()),
  kind: Type.String(),
  topic: Type.String(),
  payload: Type.Unknown(),
  receivedAt: Type.Number({ description: 'epoch ms' }),
  sourceId: Type.Optional(Type.String()),
  tags: Tags,
  via: Type.Optional(Type.String()),
  userId: Type.Optional(Type.String()),
  trace: Type.Optional(Tags),
});

const common = {
  id: Type.String(),
  routeId: Type.String(),
  routeName: Type.String(),
  targetIndex: Type.Integer(),
  target: Target,
  lane: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String({ description: 'Why the last attempt failed' }),
  attempts: Type.Integer(),
  status: Status,
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
};

export const DeadLetterListSchema = Type.Object(
  { items: Type.Array(Type.Object({ ...common, envelope: EnvelopeSummary })) },
  {
    examples: [{ items: [{ ...letterExample, envelope: envelopeSummaryExample }] }],
  },
);

export const DeadLetterSchema = Type.Object(
  { ...common, envelope: Envelope, body: Type.String({ description: 'The body as the target was sent it (after the template)' }) },
  {
    examples: [
      {
        ...letterExample,
        envelope: { ...envelopeSummaryExample, product: 'water-leak-sensor', payload: { event: 'leak', params: {} }, receivedAt: 1795420800000 },
        body: '{"event":"leak","params":{}}',
      },
    ],
  },
);

const IdParams = Type.Object({ id: Type.String({ examples: ['dl_4k2m9x7p1q8r0t'] }) });
const NoContent = Type.Null({ description: 'Discarded; no content' });

/** Dead letters: deliveries that finally failed, for the operator to inspect, replay or discard. */
export async function deadLetterRoutes(app: HttpApp, deps: { deadLetters: DeadLetterService }): Promise<void> {
  const { deadLetters } = deps;
  app.get(
    '/api/v1/dead-letters',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'Dead letters, newest first (operator)',
        ...AuthHeader,
        querystring: Type.Object({
          status: Type.Optional(Status),
          routeId: Type.Optional(Type.String()),
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          before: Type.Optional(Type.String({ format: 'date-time', description: 'Page backwards: dead letters older than this' })),
        }),
        response: { 200: DeadLetterListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => {
      const q = req.query;
      return { items: await deadLetters.list({ status: q.status, routeId: q.routeId, limit: q.limit, before: q.before ? Date.parse(q.before) : undefined }) };
    },
  );

  app.get(
    '/api/v1/dead-letters/:id',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'One dead letter with its message and body (operator)',
        ...AuthHeader,
        params: IdParams,
        response: { 200: DeadLetterSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEAD_LETTER_NOT_FOUND') },
      },
    },
    async (req) => {
      return deadLetters.get(req.params.id);
    },
  );

  app.post(
    '/api/v1/dead-letters/:id/replay',
    {
      config: { auth: Auth.operator('gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'Deliver a dead letter again to its route target (operator)',
        ...AuthHeader,
        params: IdParams,
        description: 'The same body goes to the same target as a new delivery job, with retries; if it fails for good again, a new dead letter is kept.',
        response: { 202: DeadLetterSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEAD_LETTER_NOT_FOUND') },
      },
    },
    async (req, reply) => {
      return reply.status(202).send(await deadLetters.replay(req.params.id));
    },
  );

  app.delete(
    '/api/v1/dead-letters/:id',
    {
      config: { auth: Auth.operator('gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'Discard a dead letter (operator)',
        ...AuthHeader,
        params: IdParams,
        response: { 204: NoContent, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEAD_LETTER_NOT_FOUND') },
      },
    },
    async (req, reply) => {
      await deadLetters.discard(req.params.id);
      return reply.status(204).send(null);
    },
  );
}
