import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyBaseLogger, type RawServerDefault } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import websocket from '@fastify/websocket';
import helmet from 'helmet';
import { createWebSocketStream } from 'ws';
import type { Duplex } from 'node:stream';
import { HearthError, ERRORS, isHearthError, type ErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { Metrics } from '../../core/observability/metrics.ts';
import { runWithSpan, startSpan, tracingEnabled, SpanKind, SpanStatusCode, type Span } from '../../core/observability/tracing.ts';
import type { Principal } from '../../access/principal.ts';
import { ProblemSchema } from './http-schemas.ts';
import { lazySchemaCompilers } from './lazy-schemas.ts';
import { Auth, authorize, declarationProblem, needsPrincipal, securityOf, type RouteAuth } from './route-auth.ts';
import { checkInput, checkJsonText } from './input-bounds.ts';

export type HttpApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every authenticated /api/v1 route. */
    principal?: Principal;
    /** The request's server span while tracing is on. */
    span?: Span;
  }
  interface FastifyContextConfig {
    /** Who may call the route (see route-auth.ts). Every route declares it; none is public by default. */
    auth?: RouteAuth;
  }
}

export interface HttpServerDeps {
  log: Logger;
  version: string;
  /** Reverse proxies trusted to name the client in X-Forwarded-For (Fastify's trustProxy); none by default. */
  trustedProxies?: string;
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
  // Decided by the route, not by headers alone: any call could say `Upgrade: x` to go unlogged.
  if (!STREAM_ROUTES.has(req.routeOptions.url ?? '')) return false;
  return req.headers.upgrade !== undefined || (req.headers.accept?.includes('text/event-stream') ?? false);
}

/** The routes that hold a connection open (the live stream, MQTT over WebSocket). */
const STREAM_ROUTES = new Set(['/api/v1/stream', '/mqtt']);

/** The signed-in principal of a route that went through the auth hook. */
export function principal(req: FastifyRequest): Principal {
  if (!req.principal) throw new HearthError('E_UNAUTHENTICATED');
  return req.principal;
}

/** `instance` is the request's path: never its query, which may carry an `access_token`. */
function problem(code: ErrorCode, detail: string, url: string, extras?: Record<string, unknown>) {
  const { status, title } = ERRORS[code];
  return { type: `urn:hearth:error:${code}`, title, status, detail, code, instance: url.split('?')[0], ...extras };
}

/**
 * Builds the Fastify root: error handling as problem+json, authentication and scopes attached to
 * every route from its `config.auth` declaration, bounded input (JSON depth and size, finite
 * numbers, well-formed strings), security headers, the OpenAPI document and UI at /docs, probes,
 * Prometheus metrics at /metrics, a span, a duration and a log line per request, and MQTT over
 * WebSocket at /mqtt. Capabilities register their routes on the returned app; `listen()` is the
 * caller's, and it fails when a route declares no `config.auth`.
 */
export async function buildHttpServer(deps: HttpServerDeps): Promise<HttpApp> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true } },
    schemaController: { compilersFactory: lazySchemaCompilers() },
    return503OnClosing: true,
    ...(deps.trustedProxies
      ? {
          trustProxy: deps.trustedProxies
            .split(',')
            .map((a) => a.trim())
            .filter(Boolean),
        }
      : {}),
    // A path the router cannot decode (`%ED%A0%80`) ends before any hook: answer it as a problem too.
    frameworkErrors: (err, req, res) => {
      const reply = res as unknown as FastifyReply;
      reply
        .status(400)
        .headers({ 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' })
        .type('application/problem+json')
        .send(problem('E_VALIDATION', err.message, req.url));
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addSchema(ProblemSchema);

  app.setErrorHandler((err: unknown, req, reply) => {
    let body: Record<string, unknown> & { status: number };
    if (isHearthError(err)) {
      body = problem(err.code, err.message, req.url, err.extras);
    } else {
      const e = err as {
        validation?: Array<{ instancePath: string; message?: string; params?: Record<string, unknown> }>;
        validationContext?: string;
        statusCode?: number;
        message: string;
        code?: string;
      };
      if (e.validation) {
        const errors = e.validation.map((v) => {
          const missing = v.params?.missingProperty as string | undefined;
          const extra = v.params?.additionalProperty as string | undefined;
          const path = `${e.validationContext ?? 'body'}${v.instancePath.replace(/\//g, '.')}${missing ? `.${missing}` : ''}${extra ? `.${extra}` : ''}`;
          return { field: path, message: extra ? 'is not allowed' : (v.message ?? 'is invalid') };
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
    reply
      .status(404)
      .type('application/problem+json')
      .send(problem('E_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`, req.url));
  });

  // Observability first, so that the span covers the other hooks. Each request continues the
  // caller's trace (W3C traceparent); the span is made active again before the handler, because
  // body parsing runs outside it.
  app.decorateRequest('span', undefined);
  app.addHook('onRequest', (req, _reply, done) => {
    if (!tracingEnabled() || isStream(req)) return done();
    const route = req.routeOptions.url ?? 'unmatched';
    const span = startSpan(
      `${req.method} ${route}`,
      {
        'http.request.method': req.method,
        'http.route': route,
        'url.path': req.url.split('?')[0],
      },
      req.headers as Record<string, string>,
      SpanKind.SERVER,
    );
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

  // Authentication is a stage of each route, never a test of the URL: the route found by the
  // router carries its declaration, however the path was spelled. It runs first among the route's
  // own hooks and reads the declaration as finally registered (the docs plugin declares its
  // routes after this hook has seen them). The rate limit applies to every authenticated caller.
  const authenticateRoute = async (req: FastifyRequest): Promise<void> => {
    const auth = req.routeOptions.config?.auth;
    if (!needsPrincipal(auth)) return;
    const apiKey = req.headers['x-api-key'];
    const p = await deps.authenticate(req.headers.authorization, typeof apiKey === 'string' ? apiKey : undefined);
    req.principal = p;
    const wait = deps.rateLimit?.(p);
    if (wait !== undefined) throw new HearthError('E_RATE_LIMITED', `too many requests; retry in ${wait} s`, { retryAfter: wait });
    authorize(p, auth);
  };
  const routes: Array<{ method: string | string[]; url: string; config?: { auth?: unknown } }> = [];
  app.addHook('onRoute', (route) => {
    routes.push(route);
    const own = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    route.onRequest = [authenticateRoute, ...own] as typeof route.onRequest;
    const auth = route.config?.auth;
    if (auth && declarationProblem(auth) === undefined && route.schema && !route.schema.hide) {
      const scopes = auth.who === 'caller' || auth.who === 'operator' ? auth.scopes : undefined;
      const security = securityOf(auth);
      // For the OpenAPI document: `security` with the scopes a key needs, and the declaration itself.
      const documented: Record<string, unknown> = {
        ...route.schema,
        ...(security ? { security } : {}),
        'x-hearth-auth': { who: auth.who, ...(scopes ? { scopes: [...scopes] } : {}), ...(auth.who === 'self' ? { how: auth.how } : {}) },
      };
      route.schema = documented;
    }
  });
  // Fail closed: a route that does not say who may call it keeps the server from starting.
  app.addHook('onReady', async () => {
    const bad = routes.flatMap((r) => {
      const why = declarationProblem(r.config?.auth);
      return why ? [`${String(r.method)} ${r.url} ${why}`] : [];
    });
    if (bad.length) throw new Error(`every route must declare who may call it (config.auth, see route-auth.ts): ${bad.join('; ')}`);
  });

  // Bounded input. JSON bodies: at most MAX_BODY_JSON_DEPTH levels (checked on the text, before
  // parsing), no lone surrogates, no non-finite numbers; the body size limit is `bodyLimit`.
  // Query and path parameters: the same, after the schema's coercion (Ajv turns "1e400" into
  // Infinity and lets it past `maximum`).
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    try {
      checkJsonText(body as string);
    } catch (err) {
      return done(err as Error, undefined);
    }
    defaultJson(req, body as string, (err, parsed) => {
      if (err) return done(err, undefined);
      try {
        checkInput(parsed, 'body');
      } catch (e) {
        return done(e as Error, undefined);
      }
      done(null, parsed);
    });
  });
  app.addHook('preHandler', async (req) => {
    checkInput(req.params, 'params');
    checkInput(req.query, 'querystring');
  });

  // Security headers on every response. The CSP allows what the Swagger UI at /docs needs (its
  // own scripts and styles, data: images) and nothing else; no page may be framed (the docs, the
  // console to come). HSTS is the TLS terminator's to send. Responses are not stored by caches
  // unless a route says otherwise: they carry tokens, secrets and people's data.
  const securityHeaders = staticHelmetHeaders({
    contentSecurityPolicy: {
      useDefaults: true,
      directives: { frameAncestors: ["'none'"], upgradeInsecureRequests: null, imgSrc: ["'self'", 'data:'] },
    },
    frameguard: { action: 'deny' },
    hsts: false,
  });
  app.addHook('onRequest', (_req, reply, done) => {
    for (const [name, value] of securityHeaders) reply.raw.setHeader(name, value);
    done();
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    return payload;
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Hearth API',
        version: deps.version,
        description:
          'The REST API of Hearth, an open-source device cloud. Errors are application/problem+json (see docs/errors.md). The device side is MQTT: see docs/protocol.md.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            description:
              'Access token from POST /api/v1/auth/login, or an API key (hk_…). The scopes listed on an operation are what an API key needs (one of them); password sign-ins are not limited by scopes. Each operation also says who may call it in `x-hearth-auth` (public, self, caller, password, operator).',
          },
          apiKey: {
            type: 'apiKey',
            in: 'header',
            name: 'X-Api-Key',
            description: 'An API key (hk_…) from POST /api/v1/keys; it needs one of the scopes listed on the operation',
          },
        },
      },
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
        { name: 'fleet', description: "The operator's fleet: groups (static, dynamic) and bulk jobs (docs/fleet.md)" },
        { name: 'notifications', description: 'Inbox, push subscriptions, preferences and notification channels' },
        { name: 'ota', description: 'Firmware updates: signed packages, downloads, campaigns with waves and abort gates, inventory' },
        { name: 'system', description: 'Probes' },
        { name: 'identity', description: 'Device identity: product CAs and certificates (mutual TLS), revocation, zero-touch provisioning, factory records' },
        { name: 'telemetry', description: 'Retention, fleet analytics and exports of history' },
      ],
    },
  });
  // The OpenAPI document and its UI are public: declared so for every route the plugin adds.
  await app.register(async (docs) => {
    docs.addHook('onRoute', (route) => {
      route.config = { ...route.config, auth: Auth.public };
    });
    await docs.register(swaggerUi, { routePrefix: '/docs', uiConfig: { validatorUrl: null } });
  });
  await app.register(websocket, { options: { maxPayload: 1024 * 1024 } });

  app.get(
    '/healthz',
    {
      schema: {
        tags: ['system'],
        summary: 'Liveness: the process is running',
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
      },
      config: { auth: Auth.public },
    },
    async () => ({ status: 'ok' }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        tags: ['system'],
        summary: 'Readiness: the node takes traffic',
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } }, 503: { type: 'object', properties: { status: { type: 'string' } } } },
      },
      config: { auth: Auth.public },
    },
    async (_req, reply) => {
      if (deps.isReady()) return { status: 'ready' };
      return reply.status(503).send({ status: 'not-ready' });
    },
  );

  if (deps.metrics) {
    const metrics = deps.metrics;
    // Public like the probes: no caller, so no rate limit either.
    app.get('/metrics', { schema: { hide: true }, config: { auth: Auth.public } }, async (_req, reply) =>
      reply.type(metrics.contentType).send(await metrics.text()),
    );
  }

  if (deps.mqttStream) {
    const mqttStream = deps.mqttStream;
    app.get('/mqtt', { websocket: true, schema: { hide: true }, config: { auth: Auth.public } }, (socket, req) => {
      mqttStream(createWebSocketStream(socket), req.raw);
    });
  }
  return app;
}

/**
 * The headers Helmet sets for these options. They do not depend on the request (no CSP nonces),
 * so Helmet runs once here and each response gets the list; @fastify/helmet built Helmet's whole
 * middleware chain again for every request.
 */
function staticHelmetHeaders(options: Parameters<typeof helmet>[0]): Array<[string, string]> {
  const headers: Array<[string, string]> = [];
  const res = {
    setHeader: (name: string, value: string | number) => void headers.push([name, String(value)]),
    removeHeader: () => undefined,
  };
  helmet(options)({} as never, res as never, (err?: unknown) => {
    if (err) throw err;
  });
  return headers;
}
