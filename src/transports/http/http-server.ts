import Fastify, { LogController, type FastifyInstance, type FastifyRequest, type FastifyBaseLogger, type RawServerDefault } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import websocket from '@fastify/websocket';
import { createWebSocketStream } from 'ws';
import type { Duplex } from 'node:stream';
import { HearthError, ERRORS, isHearthError, type ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { Metrics } from '../../core/observability/metrics.ts';
import { runWithSpan, startSpan, tracingEnabled, SpanKind, SpanStatusCode, type Span } from '../../core/observability/tracing.ts';
import type { Principal } from '../../auth/auth-service.ts';
import { ProblemSchema } from './http-schemas.ts';

export type HttpApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every authenticated /api/v1 route. */
    principal?: Principal;
    /** The request's server span while tracing is on. */
    span?: Span;
  }
  interface FastifyContextConfig {
    /** Routes that need no bearer token. */
    public?: boolean;
  }
}

export interface HttpServerDeps {
  log: Logger;
  version: string;
  /**
   * Establishes the caller from the `Authorization` header (bearer token or API key) or the
   * `X-Api-Key` header; throws a HearthError when neither is valid.
   */
  authenticate: (authorization: string | undefined, apiKey: string | undefined) => Principal | Promise<Principal>;
  /** Applied to every authenticated request; returns the seconds to wait when over the limit. */
  rateLimit?: (p: Principal) => number | undefined;
  /** Health: is the process alive; readiness: should it get traffic. */
  isReady: () => boolean;
  /** MQTT over WebSocket connections are handed here. */
  mqttStream?: (stream: Duplex, req: IncomingMessage) => void;
  /** Request durations go here, and `GET /metrics` serves it. */
  metrics?: Metrics;
}

/** Probes and scrapes come every few seconds: their request log lines are debug. */
const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * WebSocket upgrades and Server-Sent Events are connections that last minutes, not requests: they
 * get no request span, no request duration and no request log line.
 */
function isStream(req: FastifyRequest): boolean {
  return req.headers.upgrade !== undefined || (req.headers.accept?.includes('text/event-stream') ?? false);
}

/** The signed-in principal of a route that went through the auth hook. */
export function principal(req: FastifyRequest): Principal {
  if (!req.principal) throw new HearthError('E_UNAUTHENTICATED');
  return req.principal;
}

export function requireOperator(req: FastifyRequest): Principal {
  const p = principal(req);
  if (p.role !== 'operator') throw new HearthError('E_FORBIDDEN', 'this action is for the operator');
  return p;
}

function problem(code: ErrorCode, detail: string, instance: string, extras?: Record<string, unknown>) {
  const { status, title } = ERRORS[code];
  return { type: `urn:hearth:error:${code}`, title, status, detail, code, instance, ...extras };
}

/**
 * Builds the Fastify root: error handling as problem+json, bearer-token auth for /api/v1,
 * the OpenAPI document and UI at /docs, probes, Prometheus metrics at /metrics, a span, a
 * duration and a log line per request, and MQTT over WebSocket at /mqtt.
 * Capabilities register their routes on the returned app; `listen()` is the caller's.
 */
export async function buildHttpServer(deps: HttpServerDeps): Promise<HttpApp> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true } },
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addSchema(ProblemSchema);

  app.setErrorHandler((err: unknown, req, reply) => {
    let body;
    if (isHearthError(err)) {
      body = problem(err.code, err.message, req.url, err.extras);
    } else {
      const e = err as { validation?: Array<{ instancePath: string; message?: string; params?: Record<string, unknown> }>; validationContext?: string; statusCode?: number; message: string; code?: string };
      if (e.validation) {
        const errors = e.validation.map((v) => {
          const missing = v.params?.missingProperty as string | undefined;
          const extra = v.params?.additionalProperty as string | undefined;
          const path = `${e.validationContext ?? 'body'}${v.instancePath.replace(/\//g, '.')}${missing ? `.${missing}` : ''}${extra ? `.${extra}` : ''}`;
          return { field: path, message: extra ? 'is not allowed' : v.message ?? 'is invalid' };
        });
        body = problem('E_VALIDATION', errors.map((x) => `${x.field} ${x.message}`).join('; '), req.url, { field: errors[0]?.field, errors });
      } else if (e.statusCode === 413 || e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        body = problem('E_PAYLOAD_TOO_LARGE', e.message, req.url);
      } else if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
        body = { ...problem('E_VALIDATION', e.message, req.url), status: e.statusCode, title: 'Bad request' };
      } else {
        req.log.error({ err }, 'request failed');
        body = problem('E_INTERNAL', 'the request could not be completed', req.url);
      }
    }
    const retryAfter = (body as { retryAfter?: unknown }).retryAfter;
    if (typeof retryAfter === 'number') reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfter))));
    reply.status(body.status).type('application/problem+json').send(body);
  });

  app.setNotFoundHandler((req, reply) => {
    reply.status(404).type('application/problem+json').send(problem('E_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`, req.url));
  });

  // Observability first, so that the span covers the other hooks. Each request continues the
  // caller's trace (W3C traceparent); the span is made active again before the handler, because
  // body parsing runs outside it.
  app.decorateRequest('span', undefined);
  app.addHook('onRequest', (req, _reply, done) => {
    if (!tracingEnabled() || isStream(req)) return done();
    const route = req.routeOptions.url ?? 'unmatched';
    const span = startSpan(`${req.method} ${route}`, {
      'http.request.method': req.method, 'http.route': route, 'url.path': req.url.split('?')[0],
    }, req.headers as Record<string, string>, SpanKind.SERVER);
    req.span = span;
    runWithSpan(span, done);
  });
  app.addHook('preHandler', (req, _reply, done) => {
    if (req.span) runWithSpan(req.span, done);
    else done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    if (isStream(req)) return done();
    const route = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    const ms = reply.elapsedTime;
    deps.metrics?.observeHttp(req.method, route, status, ms);
    const fields = { method: req.method, route, path: req.url.split('?')[0], status, ms: Math.round(ms * 10) / 10 };
    const write = () => (QUIET_ROUTES.has(route) ? req.log.debug(fields, 'request') : req.log.info(fields, 'request'));
    const span = req.span;
    if (span) {
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      runWithSpan(span, write); // the line carries the trace id
      span.end();
    } else write();
    done();
  });

  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith('/api/')) return;
    if (req.routeOptions.config?.public) return;
    const apiKey = req.headers['x-api-key'];
    const p = await deps.authenticate(req.headers.authorization, typeof apiKey === 'string' ? apiKey : undefined);
    req.principal = p;
    const wait = deps.rateLimit?.(p);
    if (wait !== undefined) throw new HearthError('E_RATE_LIMITED', `too many requests; retry in ${wait} s`, { retryAfter: wait });
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Hearth API',
        version: deps.version,
        description: 'The REST API of Hearth, an open-source device cloud. Errors are application/problem+json (see docs/errors.md). The device side is MQTT: see docs/protocol.md.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      components: { securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'Access token from POST /api/v1/auth/login, or an API key (hk_…)' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key', description: 'An API key (hk_…) from POST /api/v1/keys' },
      } },
      tags: [
        { name: 'auth', description: 'Sign-in and tokens' },
        { name: 'products', description: 'Device types and their thing models' },
        { name: 'devices', description: 'Provisioning, state, presence' },
        { name: 'shadow', description: 'Reported and desired state' },
        { name: 'commands', description: 'Commands with acknowledgements' },
        { name: 'history', description: 'Property time series and device events' },
        { name: 'homes', description: 'Homes and their people' },
        { name: 'rooms', description: 'Rooms of a home' },
        { name: 'members', description: 'Members, invitations, ownership' },
        { name: 'sharing', description: 'One device shared outside its home' },
        { name: 'groups', description: 'Device groups with one command for all' },
        { name: 'keys', description: 'API keys for server-to-server integrations' },
        { name: 'gateway', description: 'Message gateway: routes, filters, lanes, dry runs, dead letters' },
        { name: 'partners', description: 'Partner clouds pushing device messages (HTTP with a signature, AMQP)' },
        { name: 'stream', description: 'Live events over WebSocket or Server-Sent Events' },
        { name: 'audit', description: 'Who did what and when' },
        { name: 'scenes', description: 'Scenes: device states and actions applied together' },
        { name: 'automations', description: 'Automations: triggers, conditions, actions; runs with traces' },
        { name: 'notifications', description: 'Inbox, push subscriptions, preferences and notification channels' },
        { name: 'system', description: 'Probes' },
      ],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(websocket, { options: { maxPayload: 1024 * 1024 } });

  app.get('/healthz', { schema: { tags: ['system'], summary: 'Liveness: the process is running', response: { 200: { type: 'object', properties: { status: { type: 'string' } } } } }, config: { public: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { tags: ['system'], summary: 'Readiness: the node takes traffic', response: { 200: { type: 'object', properties: { status: { type: 'string' } } }, 503: { type: 'object', properties: { status: { type: 'string' } } } } }, config: { public: true } }, async (_req, reply) => {
    if (deps.isReady()) return { status: 'ready' };
    return reply.status(503).send({ status: 'not-ready' });
  });

  if (deps.metrics) {
    const metrics = deps.metrics;
    // Unauthenticated like the probes, and outside /api so the rate limit does not apply.
    app.get('/metrics', { schema: { hide: true }, config: { public: true } }, async (_req, reply) => reply.type(metrics.contentType).send(await metrics.text()));
  }

  if (deps.mqttStream) {
    const mqttStream = deps.mqttStream;
    app.get('/mqtt', { websocket: true, schema: { hide: true }, config: { public: true } }, (socket, req) => {
      mqttStream(createWebSocketStream(socket), req.raw);
    });
  }
  return app;
}
