import { Type, type TSchema } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { actorOf } from '../access/principal.ts';
import { HearthError } from '../core/errors.ts';
import type { AuditService } from '../audit/audit-service.ts';
import * as S from './config-schema.ts';
import type { GatewayConfig, Route } from './config-schema.ts';
import type { RoutingConfigService, GatewayConfigVersion } from './config-service.ts';

/**
 * The schema as the HTTP layer sees it: without `default`s, which Ajv refuses inside unions (the
 * gateway's validator applies them).
 */
function documented<T extends TSchema>(schema: T): T {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (typeof v !== 'object' || v === null) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (k !== 'default') out[k] = k === 'examples' ? x : strip(x);
    return out;
  };
  return strip(schema) as T;
}

const RouteSchema = documented(S.RouteSchema);
const RouteInputSchema = documented(S.RouteInputSchema);
const FiltersSchema = documented(S.FiltersSchema);
const LanesSchema = documented(S.LanesSchema);
const Version = Type.Integer({ minimum: 0, description: 'The configuration version this answer reflects (0: the built-in default)', examples: [7] });
const RouteExample = (RouteSchema as unknown as { examples: object[] }).examples[0];
const RouteWithVersion = Type.Object({ ...RouteSchema.properties, version: Version }, { examples: [{ ...RouteExample, version: 7 }] });
const RouteParams = Type.Object({ id: Type.String() });
const FiltersBody = Type.Object(
  { filters: FiltersSchema },
  { additionalProperties: false, examples: [{ filters: (FiltersSchema as unknown as { examples: unknown[] }).examples[0] }] },
);
const LanesBody = Type.Object(
  { lanes: LanesSchema },
  { additionalProperties: false, examples: [{ lanes: (LanesSchema as unknown as { examples: unknown[] }).examples[0] }] },
);
const FiltersAnswer = Type.Object({ filters: FiltersSchema, version: Version }, { examples: [{ filters: [{ type: 'validate' }], version: 7 }] });
const LanesAnswer = Type.Object({ lanes: LanesSchema, version: Version }, { examples: [{ lanes: [{ name: 'gray', percent: 5 }], version: 7 }] });
const ConfigAnswer = Type.Object(
  {
    version: Version,
    createdAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    createdBy: Type.String({ description: 'user:u_…, key:k_…, file:<path>, or default' }),
    routes: Type.Array(RouteSchema),
    filters: FiltersSchema,
    lanes: LanesSchema,
  },
  {
    examples: [
      {
        version: 7,
        createdAt: '2026-11-23T08:00:00.000Z',
        createdBy: 'user:u_4k2m9x7p1q8r0t',
        routes: [{ id: 'device-core', name: 'device-core', enabled: true, match: {}, targets: [{ type: 'builtin', handler: 'device' }] }],
        filters: [{ type: 'validate' }],
        lanes: [],
      },
    ],
  },
);
const VersionsAnswer = Type.Object(
  {
    items: Type.Array(Type.Object({ version: Version, createdAt: Type.String({ format: 'date-time' }), createdBy: Type.String() })),
  },
  { examples: [{ items: [{ version: 7, createdAt: '2026-11-23T08:00:00.000Z', createdBy: 'user:u_4k2m9x7p1q8r0t' }] }] },
);

const Kind = Type.Union([
  Type.Literal('properties'),
  Type.Literal('events'),
  Type.Literal('result'),
  Type.Literal('join'),
  Type.Literal('presence'),
  Type.Literal('command'),
]);
const DryRunBody = Type.Object(
  {
    deviceId: Type.String({ minLength: 1 }),
    kind: Kind,
    payload: Type.Unknown(),
    source: Type.Optional(Type.String({ description: 'mqtt (default), http, api, partner:<id>, amqp:<id>' })),
    sourceId: Type.Optional(Type.String()),
    tags: Type.Optional(Type.Record(Type.String(), Type.String())),
    userId: Type.Optional(Type.String()),
    product: Type.Optional(Type.String({ description: 'For a device that does not exist yet' })),
  },
  { additionalProperties: false, examples: [{ deviceId: 'd_9x2k7m4p1q8r0t', kind: 'events', payload: { event: 'smoke', params: {} } }] },
);
const DryRunAnswer = Type.Object(
  {
    filters: Type.Array(
      Type.Object({ filter: Type.String(), effect: Type.String({ description: 'pass, drop, delay or tagged' }), detail: Type.Optional(Type.String()) }),
    ),
    action: Type.String({ description: 'pass, drop or delay' }),
    code: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String()),
    delayMs: Type.Optional(Type.Integer()),
    tags: Type.Record(Type.String(), Type.String()),
    lane: Type.Union([Type.String(), Type.Null()]),
    routes: Type.Array(
      Type.Object({
        id: Type.String(),
        name: Type.String(),
        targets: Type.Array(
          Type.Object({
            index: Type.Integer(),
            target: Type.Record(Type.String(), Type.Unknown()),
            body: Type.Optional(Type.Unknown({ description: 'What the target would get (after its template)' })),
          }),
        ),
      }),
    ),
  },
  {
    examples: [
      {
        filters: [
          { filter: 'validate', effect: 'pass' },
          { filter: 'classify', effect: 'tagged', detail: 'class=alarm' },
        ],
        action: 'pass',
        tags: { class: 'alarm' },
        lane: null,
        routes: [{ id: 'device-core', name: 'device-core', targets: [{ index: 0, target: { type: 'builtin', handler: 'device' } }] }],
      },
    ],
  },
);

function configAnswer(v: GatewayConfigVersion) {
  const c: GatewayConfig = v.config;
  return {
    version: v.version,
    createdAt: v.createdAt ? new Date(v.createdAt).toISOString() : null,
    createdBy: v.createdBy,
    routes: c.routes,
    filters: c.filters,
    lanes: c.lanes,
  };
}

const withVersion = (route: Route, version: number) => ({ ...route, version });

/**
 * The message gateway's configuration over REST, for the operator: routes, the filter chain,
 * lanes, the versions, and a dry run. Bodies are checked by the gateway's own validator (the
 * HTTP schema only documents them), so that a bad route or filter is refused with a message
 * naming the part, e.g. `routes[0].targets[1].url` — not every branch of a union.
 */
export async function routingRoutes(app: HttpApp, deps: { routing: RoutingConfigService; audit?: AuditService }): Promise<void> {
  const { routing: gateway, audit } = deps;
  const changed = (actor: string, what: string, version: number, targetId = 'gateway') =>
    audit?.record({ actor, action: `gateway.${what}`, targetType: 'gateway', targetId, details: { version } });

  app.post(
    '/api/v1/routes',
    {
      config: { auth: Auth.operator('gateway:manage') },
      attachValidation: true,
      schema: {
        tags: ['gateway'],
        summary: 'Add a route (operator); applied live on every node',
        ...AuthHeader,
        body: RouteInputSchema,
        response: { 201: RouteWithVersion, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      const { route, version } = await gateway.addRoute(req.body, actorOf(p));
      changed(actorOf(p), 'route.create', version, route.id);
      return reply.status(201).send(withVersion(route, version));
    },
  );

  app.get(
    '/api/v1/routes',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'The routes, in the order they are tried (operator)',
        ...AuthHeader,
        response: {
          200: Type.Object({ items: Type.Array(RouteSchema), version: Version }, { examples: [{ items: [RouteExample], version: 7 }] }),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN'),
        },
      },
    },
    async (_req) => {
      const v = gateway.current;
      return { items: v.config.routes, version: v.version };
    },
  );

  app.get(
    '/api/v1/routes/:id',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'A route (operator)',
        ...AuthHeader,
        params: RouteParams,
        response: { 200: RouteWithVersion, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND') },
      },
    },
    async (req) => {
      return withVersion(gateway.route(req.params.id), gateway.current.version);
    },
  );

  app.put(
    '/api/v1/routes/:id',
    {
      config: { auth: Auth.operator('gateway:manage') },
      attachValidation: true,
      schema: {
        tags: ['gateway'],
        summary: 'Replace a route (operator)',
        ...AuthHeader,
        params: RouteParams,
        body: RouteInputSchema,
        response: { 200: RouteWithVersion, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND') },
      },
    },
    async (req) => {
      const p = principal(req);
      const { route, version } = await gateway.updateRoute(req.params.id, req.body, actorOf(p));
      changed(actorOf(p), 'route.update', version, route.id);
      return withVersion(route, version);
    },
  );

  app.delete(
    '/api/v1/routes/:id',
    {
      config: { auth: Auth.operator('gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'Remove a route (operator)',
        ...AuthHeader,
        params: RouteParams,
        response: {
          200: Type.Object({ id: Type.String(), version: Version }, { examples: [{ id: 'rt_9x2k7m4p1q8r0t', version: 8 }] }),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const p = principal(req);
      const { version } = await gateway.removeRoute(req.params.id, actorOf(p));
      changed(actorOf(p), 'route.delete', version, req.params.id);
      return { id: req.params.id, version };
    },
  );

  app.get(
    '/api/v1/gateway/filters',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'The filter chain, in order (operator)',
        ...AuthHeader,
        response: { 200: FiltersAnswer, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (_req) => {
      return { filters: gateway.current.config.filters, version: gateway.current.version };
    },
  );

  app.put(
    '/api/v1/gateway/filters',
    {
      config: { auth: Auth.operator('gateway:manage') },
      attachValidation: true,
      schema: {
        tags: ['gateway'],
        summary: 'Replace the filter chain (operator); applied live on every node',
        ...AuthHeader,
        body: FiltersBody,
        response: { 200: FiltersAnswer, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => {
      const p = principal(req);
      const v = await gateway.setFilters(bodyList(req.body, 'filters'), actorOf(p));
      changed(actorOf(p), 'filters.update', v.version);
      return { filters: v.config.filters, version: v.version };
    },
  );

  app.get(
    '/api/v1/gateway/lanes',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'The lanes (operator)',
        ...AuthHeader,
        response: { 200: LanesAnswer, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (_req) => {
      return { lanes: gateway.current.config.lanes, version: gateway.current.version };
    },
  );

  app.put(
    '/api/v1/gateway/lanes',
    {
      config: { auth: Auth.operator('gateway:manage') },
      attachValidation: true,
      schema: {
        tags: ['gateway'],
        summary: "Replace the lanes (operator), e.g. to shift a lane's percentage; applied live on every node",
        ...AuthHeader,
        body: LanesBody,
        response: { 200: LanesAnswer, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => {
      const p = principal(req);
      const v = await gateway.setLanes(bodyList(req.body, 'lanes'), actorOf(p));
      changed(actorOf(p), 'lanes.update', v.version);
      return { lanes: v.config.lanes, version: v.version };
    },
  );

  app.get(
    '/api/v1/gateway/config',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'The whole live configuration with its version (operator)',
        ...AuthHeader,
        response: { 200: ConfigAnswer, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (_req) => {
      return configAnswer(gateway.current);
    },
  );

  app.get(
    '/api/v1/gateway/config/versions',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'Stored configuration versions, newest first (operator)',
        ...AuthHeader,
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) }),
        response: { 200: VersionsAnswer, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => {
      const items = await gateway.versions(req.query.limit);
      return { items: items.map((v) => ({ version: v.version, createdAt: new Date(v.createdAt).toISOString(), createdBy: v.createdBy })) };
    },
  );

  app.post(
    '/api/v1/gateway/dry-run',
    {
      config: { auth: Auth.operator('gateway:read', 'gateway:manage') },
      schema: {
        tags: ['gateway'],
        summary: 'What the pipeline would do with a sample message: filters, tags, lane, routes and targets; changes nothing (operator)',
        ...AuthHeader,
        body: DryRunBody,
        response: { 200: DryRunAnswer, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req) => {
      return gateway.dryRun(req.body);
    },
  );
}

/** `{filters: [...]}` → the list; the gateway's validator checks the items. */
function bodyList<T>(body: unknown, key: string): T[] {
  const list = (body as Record<string, unknown> | null)?.[key];
  if (!Array.isArray(list)) throw new HearthError('E_VALIDATION', `body.${key}: must be an array`, { field: `body.${key}` });
  return list as T[];
}
