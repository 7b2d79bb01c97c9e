import { Type } from 'typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import { injectTrace } from '../core/observability/tracing.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { ProductService } from '../products/product-service.ts';
import { DeviceParams } from '../devices/device-schema.ts';
import type { UplinkIngress } from './ingress.ts';
import { checkReport, type ReportKind } from './source-check.ts';

const PropertiesBody = Type.Record(Type.String(), Type.Unknown(), {
  description: 'Property values, as on devices/{id}/properties: any subset of the model\'s properties, and an optional "ts" (epoch ms)',
  examples: [{ on: true, brightness: 80 }],
});

const EventBody = Type.Object(
  {
    event: Type.String({ minLength: 1 }),
    params: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    ts: Type.Optional(Type.Number({ description: 'When it happened (epoch ms); default: arrival' })),
  },
  {
    additionalProperties: false,
    description: 'One event, as on devices/{id}/events',
    examples: [{ event: 'unlock', params: { method: 'keypad', user: 'alice' } }],
  },
);

const Stored = Type.Object({ id: Type.String({ description: "Hearth's id of the stored message" }) }, { examples: [{ id: 'embedded.4f' }] });

const Headers = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({ minLength: 1, maxLength: 128, description: 'Your id for this message: a retry with the same key is stored once' }),
  ),
});

const DESCRIPTION =
  "For devices that cannot hold an MQTT connection. Authenticated with the device's own credentials, `Authorization: Basic base64(deviceId:secret)` (no bearer token); " +
  'a hub may post for its sub-devices with its own. The message is checked against the thing model at once (400 with the problems), ' +
  'and 202 means it is stored: it is then handled exactly like the same message over MQTT.';

/** Who posts: the device itself or its hub, from `Authorization: Basic base64(id:secret)`. */
async function authenticateDevice(devices: DeviceService, req: FastifyRequest, reply: FastifyReply): Promise<string> {
  const m = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(req.headers.authorization ?? '');
  const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
  const colon = decoded.indexOf(':');
  const id = decoded.slice(0, colon);
  if (colon <= 0 || !(await devices.authenticate(id, decoded.slice(colon + 1)))) {
    reply.header('www-authenticate', 'Basic realm="hearth-devices"');
    throw new HearthError('E_UNAUTHENTICATED', m ? 'wrong device id or secret' : 'device credentials required: Authorization: Basic base64(deviceId:secret)');
  }
  return id;
}

/**
 * Device HTTP: properties and events posted instead of published, into the same pipeline as
 * MQTT (source `http`). The routes are declared `self`: they authenticate the device.
 */
export async function deviceHttpRoutes(
  app: HttpApp,
  deps: { devices: DeviceService; products: ProductService; ingress: UplinkIngress; maxPayloadBytes: number },
): Promise<void> {
  const { devices, products, ingress } = deps;
  const sender = new WeakMap<FastifyRequest, string>();

  for (const kind of ['properties', 'events'] as const satisfies ReportKind[]) {
    app.post(
      `/api/v1/devices/:id/messages/${kind}`,
      {
        config: { auth: Auth.self("the device's own credentials: Authorization: Basic base64(deviceId:secret)") },
        bodyLimit: deps.maxPayloadBytes,
        schema: {
          tags: ['devices'],
          summary: kind === 'properties' ? 'A device reports property values over HTTP' : 'A device sends an event over HTTP',
          description: DESCRIPTION,
          params: DeviceParams,
          headers: Headers,
          body: kind === 'properties' ? PropertiesBody : EventBody,
          response: { 202: Stored, ...problems('E_VALIDATION', 'E_MODEL_MISMATCH', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PAYLOAD_TOO_LARGE') },
        },
        // Before the body is read: a caller without credentials costs no parsing.
        onRequest: async (req, reply) => {
          const via = await authenticateDevice(devices, req, reply);
          const { id } = req.params as { id: string };
          if (!(await devices.mayActFor(via, id)))
            throw new HearthError('E_FORBIDDEN', `device "${via}" may not send for device "${id}": only the device itself or its hub may`);
          sender.set(req, via);
        },
      },
      async (req, reply) => {
        const device = await devices.require(req.params.id);
        const problem = await checkReport(products, device, kind, req.body);
        if (problem) throw new HearthError(problem.code, problem.problems.join('; '), { problems: problem.problems });
        const key = req.headers['idempotency-key'];
        const id = await ingress.submit({
          source: 'http',
          deviceId: device.id,
          via: sender.get(req),
          kind,
          payload: req.body,
          ...(typeof key === 'string' ? { sourceId: key } : {}),
          ...(req.span ? { trace: injectTrace({}, req.span) } : {}),
        });
        return reply.status(202).send({ id });
      },
    );
  }
}
