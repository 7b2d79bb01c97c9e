import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, JsonObject, problems } from '../transports/http/http-schemas.ts';
import { DeviceParams } from '../devices/device-schema.ts';
import type { AccessService } from '../access/access-service.ts';
import type { AuditService } from '../audit/audit-service.ts';
import { actorOf } from '../access/principal.ts';
import type { CommandService } from './command-service.ts';
import { HearthError } from '../core/errors.ts';

const CommandBody = Type.Object(
  {
    action: Type.String({ minLength: 1, examples: ['toggle'] }),
    params: Type.Optional(JsonObject),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 300000, description: 'How long to wait for the device (default 10000)' })),
    ttlMs: Type.Optional(
      Type.Integer({
        minimum: 1000,
        maximum: 2592000000,
        description:
          'Queue the command: it waits this long for the device (stored, sent in order when the device is online) and answers 202 instead of 409 when the device is offline. At most HEARTH_COMMAND_QUEUE_MAX_TTL_MS (7 days by default).',
      }),
    ),
    queue: Type.Optional(
      Type.Boolean({ description: "Queue the command with its product's TTL (the model's commandTtlMs, else HEARTH_COMMAND_QUEUE_DEFAULT_TTL_MS)" }),
    ),
  },
  { examples: [{ action: 'blink', params: { times: 3 }, timeoutMs: 5000 }] },
);

const QueuedCommand = Type.Object(
  {
    id: Type.String(),
    state: Type.String({ description: 'queued (waiting for the device), sent (sent, not answered yet), expired or cancelled' }),
    expiresAt: Type.String({ format: 'date-time', description: 'When the command expires if the device has not answered it' }),
  },
  { examples: [{ id: 'c_7m2k9x4p1q8r0t', state: 'queued', expiresAt: '2026-11-24T08:00:00.000Z' }] },
);

const CommandOutcome = Type.Object(
  {
    id: Type.String(),
    ok: Type.Boolean(),
    result: Type.Optional(JsonObject),
    error: Type.Optional(Type.String()),
    warnings: Type.Optional(
      Type.Array(Type.String(), {
        description:
          'How the answer did not fit the model without failing the command, e.g. a result field the action does not declare (kept in result as the device sent it)',
      }),
    ),
    latencyMs: Type.Number({ description: 'From acceptance to the device answer' }),
  },
  { examples: [{ id: 'c_7m2k9x4p1q8r0t', ok: true, result: {}, latencyMs: 3 }] },
);

const nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

const CommandRecord = Type.Object({
  id: Type.String(),
  deviceId: Type.String(),
  action: Type.String(),
  params: JsonObject,
  source: Type.String({ description: 'Who or what sent it: user:u_…, key:k_… (an API key), or automation:…' }),
  status: Type.String({
    description: 'sent, answered or timeout; for a queued command queued, sent, answered, failed (answered with ok false), expired or cancelled',
  }),
  acceptedAt: Type.String({ format: 'date-time' }),
  sentAt: nullable(Type.String({ format: 'date-time' })),
  answeredAt: nullable(Type.String({ format: 'date-time' })),
  timedOutAt: nullable(Type.String({ format: 'date-time' })),
  ok: Type.Union([Type.Boolean(), Type.Null()]),
  result: Type.Union([JsonObject, Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  warnings: Type.Array(Type.String(), { description: 'How the answer did not fit the model without failing the command; empty when it fit' }),
  latencyMs: Type.Union([Type.Number(), Type.Null()]),
  expiresAt: Type.Optional(
    Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: 'A queued command: when it expires unless answered; null for a command sent at once',
    }),
  ),
});

const CommandParams = Type.Object({ id: DeviceParams.properties.id, commandId: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });

export async function commandRoutes(app: HttpApp, deps: { access: AccessService; commands: CommandService; audit: AuditService }): Promise<void> {
  app.post(
    '/api/v1/devices/:id/commands',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['commands'],
        summary: 'Send a command and wait for the device result',
        ...AuthHeader,
        description:
          "The command also goes through the message gateway (kind `command`), so routes can pass it to partners. With `x-hearth-lane` (or when the caller is in a gray lane) it travels in that lane: see docs/message-gateway.md.\n\nWith `ttlMs` or `queue` the command is queued (docs/api.md, queued commands): 202 with its state when the device is offline or does not answer within `timeoutMs`, 200 with the outcome when it answers in time; `Idempotency-Key` makes a retried POST return the first one's command.",
        params: DeviceParams,
        body: CommandBody,
        headers: Type.Object({
          'x-hearth-lane': Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$', description: "Gray lane of this request (a tester's app traffic)" })),
          'idempotency-key': Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 200,
              description:
                'Queued commands: a retried POST with the same key (and caller) returns the command the first one queued instead of queueing another',
            }),
          ),
        }),
        response: {
          200: CommandOutcome,
          202: QueuedCommand,
          ...problems(
            'E_VALIDATION',
            'E_MODEL_MISMATCH',
            'E_UNAUTHENTICATED',
            'E_FORBIDDEN',
            'E_DEVICE_NOT_FOUND',
            'E_DEVICE_OFFLINE',
            'E_COMMAND_TIMEOUT',
            'E_RATE_LIMITED',
            'E_COMMAND_QUEUE_FULL',
          ),
        },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      const { placement } = await deps.access.requirePlacedDevice(p, req.params.id, 'control');
      const actor = actorOf(p);
      const lane = req.headers['x-hearth-lane'];
      const key = req.headers['idempotency-key'];
      const queued = req.body.ttlMs !== undefined || req.body.queue === true;
      if (key !== undefined && !queued)
        throw new HearthError('E_VALIDATION', 'Idempotency-Key applies to queued commands: add ttlMs or "queue": true', { field: 'headers.idempotency-key' });
      const entry = {
        actor,
        action: 'device.command',
        homeId: placement?.homeId,
        targetType: 'device',
        targetId: req.params.id,
        details: { action: req.body.action, params: req.body.params ?? {}, ...(queued ? { queued: true } : {}) },
      };
      const route = { userId: p.userId, lane: typeof lane === 'string' ? lane : undefined };
      // A command sent at once: its audit entry is committed with its ledger entry (or alone if it is not sent).
      if (!queued) return deps.commands.send(req.params.id, req.body, actor, route, entry);
      deps.audit.record(entry);
      const r = await deps.commands.enqueue(req.params.id, req.body, actor, { ...route, ...(typeof key === 'string' ? { idempotencyKey: key } : {}) });
      reply.code(r.status);
      return r.body;
    },
  );

  app.get(
    '/api/v1/devices/:id/commands/:commandId',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['commands'],
        summary: 'One command of the ledger, with its state',
        ...AuthHeader,
        params: CommandParams,
        response: { 200: CommandRecord, ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND', 'E_COMMAND_NOT_FOUND') },
      },
    },
    async (req) => {
      await deps.access.requireDevice(principal(req), req.params.id, 'view');
      return deps.commands.get(req.params.id, req.params.commandId);
    },
  );

  app.delete(
    '/api/v1/devices/:id/commands/:commandId',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['commands'],
        summary: 'Cancel a queued command that has not been sent yet',
        ...AuthHeader,
        description: 'The command becomes `cancelled` and is never sent. A command already sent, answered, expired or cancelled is a 409 naming its state.',
        params: CommandParams,
        response: { 200: CommandRecord, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_COMMAND_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => {
      const p = principal(req);
      const { placement } = await deps.access.requirePlacedDevice(p, req.params.id, 'control');
      const cancelled = await deps.commands.cancel(req.params.id, req.params.commandId);
      deps.audit.record({
        actor: actorOf(p),
        action: 'device.command.cancel',
        homeId: placement?.homeId,
        targetType: 'device',
        targetId: req.params.id,
        details: { commandId: req.params.commandId, action: cancelled.action },
      });
      return cancelled;
    },
  );

  app.get(
    '/api/v1/devices/:id/commands',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['commands'],
        summary: 'The command ledger of a device, newest first',
        ...AuthHeader,
        params: DeviceParams,
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
          before: Type.Optional(Type.String({ format: 'date-time' })),
        }),
        response: {
          200: Type.Object(
            { items: Type.Array(CommandRecord) },
            {
              examples: [
                {
                  items: [
                    {
                      id: 'c_7m2k9x4p1q8r0t',
                      deviceId: 'd_9x2k7m4p1q8r0t',
                      action: 'toggle',
                      params: {},
                      source: 'user:u_4k2m9x7p1q8r0t',
                      status: 'answered',
                      acceptedAt: '2026-11-23T08:00:00.000Z',
                      sentAt: '2026-11-23T08:00:00.001Z',
                      answeredAt: '2026-11-23T08:00:00.004Z',
                      timedOutAt: null,
                      ok: true,
                      result: {},
                      error: null,
                      warnings: [],
                      latencyMs: 4,
                    },
                  ],
                },
              ],
            },
          ),
          ...problems('E_UNAUTHENTICATED', 'E_DEVICE_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      await deps.access.requireDevice(principal(req), req.params.id, 'view');
      return { items: await deps.commands.list(req.params.id, req.query.limit, req.query.before ? Date.parse(req.query.before) : undefined) };
    },
  );
}
