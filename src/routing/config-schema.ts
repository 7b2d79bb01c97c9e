import { Type, type Static, type TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { HearthError } from '../core/errors.ts';
import { compileTopic } from './router.ts';

/**
 * The message gateway's configuration: routes, the filter chain and the lanes, as one document
 * (stored as versions in `gateway_config`). One schema per part feeds the HTTP validation, the
 * TypeScript types and the OpenAPI document; `validateGatewayConfig` adds the checks a schema
 * cannot express (unique ids, patterns that compile, lanes that exist).
 */

const LaneName = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,31}$', description: 'Lane name (lower case, digits, - and _)', examples: ['gray'] });
const Kind = Type.Union([
  Type.Literal('properties'),
  Type.Literal('events'),
  Type.Literal('result'),
  Type.Literal('join'),
  Type.Literal('presence'),
  Type.Literal('command'),
]);
const OneOrMany = <T extends TSchema>(t: T) => Type.Union([t, Type.Array(t, { minItems: 1, maxItems: 100 })]);
const Template = Type.Unknown({
  description:
    'Reshapes the message for this target: a string that is exactly "{{path}}" becomes the value at that path of the envelope, other {{path}} inside strings are interpolated (paths: deviceId, payload.temperature, tags.lane, receivedAt …)',
});

export const BuiltinTargetSchema = Type.Object(
  {
    type: Type.Literal('builtin'),
    handler: Type.Literal('device', { description: 'The device core: shadow, history, command results, joins, presence' }),
  },
  { additionalProperties: false },
);

export const WebhookTargetSchema = Type.Object(
  {
    type: Type.Literal('webhook'),
    url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2048 }),
    secret: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Signs each body: x-hearth-signature: sha256=<hex HMAC-SHA256>' })),
    lane: Type.Optional(LaneName),
    concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, default: 4, description: 'Deliveries in flight at once (default 4)' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, default: 5000, description: 'Per attempt (default 5000)' })),
    retries: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 20,
        default: 5,
        description: 'Attempts after the first, with backoff; then the message becomes a dead letter (default 5)',
      }),
    ),
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    template: Type.Optional(Template),
  },
  { additionalProperties: false },
);

export const NatsTargetSchema = Type.Object(
  {
    type: Type.Literal('nats'),
    subject: Type.String({ pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$', maxLength: 255, description: 'A subject without wildcards' }),
    lane: Type.Optional(LaneName),
    template: Type.Optional(Template),
  },
  { additionalProperties: false },
);

export const AmqpTargetSchema = Type.Object(
  {
    type: Type.Literal('amqp'),
    url: Type.String({ pattern: '^amqps?://[^\\s]+$', maxLength: 2048 }),
    exchange: Type.String({ maxLength: 255 }),
    routingKey: Type.Optional(Type.String({ maxLength: 255 })),
    lane: Type.Optional(LaneName),
    template: Type.Optional(Template),
  },
  { additionalProperties: false },
);

export const FileTargetSchema = Type.Object(
  {
    type: Type.Literal('file'),
    directory: Type.String({
      pattern: '^[A-Za-z0-9_-]{1,64}$',
      description: 'A directory under the gateway files root (HEARTH_GATEWAY_FILES_DIR), by name: files go nowhere else',
    }),
    maxBytes: Type.Optional(
      Type.Integer({
        minimum: 1024,
        maximum: 1_073_741_824,
        default: 67_108_864,
        description: 'A file is closed (renamed from .part) once this big (default 64 MiB)',
      }),
    ),
    maxAgeMs: Type.Optional(
      Type.Integer({
        minimum: 1000,
        maximum: 86_400_000,
        default: 300_000,
        description: 'A file is closed this long after it was opened, messages or not (default 5 minutes)',
      }),
    ),
    gzip: Type.Optional(Type.Boolean({ default: true, description: 'Gzip the files (default true): .ndjson.gz, else .ndjson' })),
    upload: Type.Optional(
      Type.Object(
        {
          bucket: Type.String({
            pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
            description: 'An S3 bucket (on AWS, or on the S3-compatible store at HEARTH_GATEWAY_S3_ENDPOINT)',
          }),
          prefix: Type.Optional(
            Type.String({ pattern: "^[A-Za-z0-9!_.*'()/-]{0,256}$", description: 'Put before each file name in the object key, e.g. `hearth/telemetry/`' }),
          ),
        },
        {
          additionalProperties: false,
          description:
            'Upload each closed file to this bucket, then remove it from the directory; a failed upload is tried again (backing off to a minute), also after a restart',
        },
      ),
    ),
    concurrency: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, default: 256, description: 'Messages in flight, batched into one write (default 256)' }),
    ),
    retries: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 20, default: 5, description: 'Attempts after the first when a write fails; then a dead letter (default 5)' }),
    ),
    lane: Type.Optional(LaneName),
    template: Type.Optional(Template),
  },
  { additionalProperties: false },
);

const TARGETS = { builtin: BuiltinTargetSchema, webhook: WebhookTargetSchema, nats: NatsTargetSchema, amqp: AmqpTargetSchema, file: FileTargetSchema };
export const TargetSchema = Type.Union([BuiltinTargetSchema, WebhookTargetSchema, NatsTargetSchema, AmqpTargetSchema, FileTargetSchema]);

export const RouteMatchSchema = Type.Object(
  {
    topic: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        description: 'MQTT topic filter (devices/+/events, devices/#) or a regular expression written as /…/',
        examples: ['devices/+/events'],
      }),
    ),
    kind: Type.Optional(OneOrMany(Kind)),
    product: Type.Optional(OneOrMany(Type.String({ minLength: 1, maxLength: 64 }))),
    tags: Type.Optional(
      Type.Record(Type.String(), Type.String(), { description: 'Every tag must match: a value, "!value" (anything else or absent) or "*" (present)' }),
    ),
  },
  { additionalProperties: false, description: 'Every given criterion must hold; {} matches every message' },
);

const routeFields = {
  name: Type.String({ minLength: 1, maxLength: 100 }),
  enabled: Type.Optional(Type.Boolean({ default: true, description: 'A disabled route matches nothing (default true)' })),
  match: RouteMatchSchema,
  targets: Type.Array(TargetSchema, { minItems: 1, maxItems: 10 }),
};

const ROUTE_EXAMPLE = {
  name: 'alarms to partner',
  match: { topic: 'devices/+/events', tags: { class: 'alarm' } },
  targets: [{ type: 'webhook', url: 'https://partner.example/hooks/hearth', secret: 'shared-secret' }],
};

/** A route as the API takes it (the id is generated). */
export const RouteInputSchema = Type.Object(routeFields, { additionalProperties: false, examples: [ROUTE_EXAMPLE] });

export const RouteSchema = Type.Object(
  {
    id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: ['rt_9x2k7m4p1q8r0t'] }),
    ...routeFields,
  },
  { additionalProperties: false, examples: [{ id: 'rt_9x2k7m4p1q8r0t', enabled: true, ...ROUTE_EXAMPLE }] },
);

const FILTERS = {
  source: Type.Object(
    {
      type: Type.Literal('source'),
      allow: Type.Optional(
        Type.Array(Type.String({ minLength: 1 }), {
          description: 'Sources let through: mqtt, http, api, partner:<id>, amqp:<id>; a trailing * matches any suffix',
        }),
      ),
      deny: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    },
    { additionalProperties: false },
  ),
  validate: Type.Object(
    { type: Type.Literal('validate') },
    { additionalProperties: false, description: "Property reports and events must fit the product's thing model" },
  ),
  dedupe: Type.Object(
    {
      type: Type.Literal('dedupe'),
      windowMs: Type.Integer({
        minimum: 1,
        maximum: 86_400_000,
        description: 'A message with the same sender id (sourceId) from the same device within this window is dropped',
      }),
    },
    { additionalProperties: false },
  ),
  rateLimit: Type.Object(
    {
      type: Type.Literal('rateLimit'),
      scope: Type.Union([Type.Literal('device'), Type.Literal('product'), Type.Literal('source')]),
      perSecond: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 }),
      burst: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
      action: Type.Union([Type.Literal('drop'), Type.Literal('delay'), Type.Literal('tag')], {
        description: 'drop: refused (E_RATE_LIMITED); delay: handled later, when the bucket allows; tag: let through with `tag`',
      }),
      tag: Type.Optional(Type.String({ pattern: '^[^=]+=.*$', description: 'key=value set by action tag (default rate=exceeded)' })),
    },
    { additionalProperties: false },
  ),
  list: Type.Object(
    {
      type: Type.Literal('list'),
      mode: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
      products: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
      devices: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    },
    { additionalProperties: false },
  ),
  classify: Type.Object(
    {
      type: Type.Literal('classify'),
      rules: Type.Array(
        Type.Object(
          {
            when: Type.Object(
              {
                kind: Type.Optional(OneOrMany(Kind)),
                product: Type.Optional(OneOrMany(Type.String({ minLength: 1 }))),
                event: Type.Optional(OneOrMany(Type.String({ minLength: 1 }))),
                topic: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
              },
              { additionalProperties: false },
            ),
            set: Type.Record(Type.String({ minLength: 1 }), Type.String()),
          },
          { additionalProperties: false },
        ),
        { minItems: 1, maxItems: 200 },
      ),
    },
    { additionalProperties: false },
  ),
};

/** One filter of the ordered chain (see filters.ts for what each does). */
export const FilterSchema = Type.Union([FILTERS.source, FILTERS.validate, FILTERS.dedupe, FILTERS.rateLimit, FILTERS.list, FILTERS.classify]);

export const FiltersSchema = Type.Array(FilterSchema, {
  maxItems: 50,
  examples: [
    [
      { type: 'source', deny: ['partner:acme'] },
      { type: 'validate' },
      { type: 'rateLimit', scope: 'device', perSecond: 5, burst: 20, action: 'drop' },
      { type: 'classify', rules: [{ when: { kind: 'events', event: ['smoke', 'leak'] }, set: { class: 'alarm' } }] },
    ],
  ],
});

export const LaneSchema = Type.Object(
  {
    name: LaneName,
    percent: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: 'This share of all devices (a stable hash of the device id)' })),
    devices: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    users: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'API calls of these users (commands) go to the lane' })),
    products: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  },
  { additionalProperties: false },
);

export const LanesSchema = Type.Array(LaneSchema, {
  maxItems: 20,
  examples: [[{ name: 'gray', percent: 5, devices: ['d_9x2k7m4p1q8r0t'], users: ['u_4k2m9x7p1q8r0t'] }]],
});

export const GatewayConfigSchema = Type.Object(
  {
    routes: Type.Array(RouteSchema, { maxItems: 500 }),
    filters: FiltersSchema,
    lanes: LanesSchema,
  },
  { additionalProperties: false },
);

export type Route = Static<typeof RouteSchema>;
export type RouteInput = Static<typeof RouteInputSchema>;
export type RouteMatch = Static<typeof RouteMatchSchema>;
export type Filter = Static<typeof FilterSchema>;
export type Lane = Static<typeof LaneSchema>;
export type GatewayConfig = Static<typeof GatewayConfigSchema>;

/** Without configuration every message goes to the device core, checked against its thing model: Hearth's behaviour before the gateway. */
export function defaultGatewayConfig(): GatewayConfig {
  return {
    routes: [{ id: 'device-core', name: 'device-core', enabled: true, match: {}, targets: [{ type: 'builtin', handler: 'device' }] }],
    filters: [{ type: 'validate' }],
    lanes: [],
  };
}

/** `/targets/0/url` under `routes[2]` → `routes[2].targets[0].url` */
function fieldOf(base: string, pointer: string): string {
  let out = base;
  for (const seg of pointer.split('/').slice(1)) out += /^\d+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  return out;
}

function invalid(field: string, message: string): HearthError {
  return new HearthError('E_VALIDATION', `${field}: ${message}`, { field, errors: [{ field, message }] });
}

/** Applies the schema's defaults to `value` (in place) and throws on its first problem, naming the field. */
function check(schema: TSchema, value: unknown, field: string): void {
  Value.Default(schema, value);
  for (const e of Value.Errors(schema, value)) {
    const params = e.params as { requiredProperties?: string[]; additionalProperties?: string[] };
    if (e.keyword === 'boolean') continue; // reported again by its additionalProperties error, with the name
    let at = fieldOf(field, e.instancePath);
    let message = e.message;
    if (params.requiredProperties?.length) (at = fieldOf(at, `/${params.requiredProperties[0]}`)), (message = 'is required');
    else if (params.additionalProperties?.length) (at = fieldOf(at, `/${params.additionalProperties[0]}`)), (message = 'is not allowed');
    throw invalid(at || 'config', message);
  }
}

/** Checks an item of a union by its `type`, so that the error speaks of the kind the author meant. */
function checkTyped(kinds: Record<string, TSchema>, value: unknown, field: string): void {
  const type = (value as { type?: unknown } | null)?.type;
  const schema = typeof type === 'string' && Object.hasOwn(kinds, type) ? kinds[type] : undefined;
  if (!schema) throw invalid(`${field}.type`, `must be one of ${Object.keys(kinds).join(', ')}`);
  check(schema, value, field);
}

function checkPattern(topic: string | undefined, field: string): void {
  if (topic === undefined) return;
  try {
    compileTopic(topic);
  } catch (err) {
    throw invalid(field, (err as Error).message);
  }
}

const Shape = Type.Object(
  {
    routes: Type.Array(Type.Object({ targets: Type.Array(Type.Unknown(), { minItems: 1, maxItems: 10 }) }), { maxItems: 500 }),
    filters: Type.Array(Type.Unknown(), { maxItems: 50 }),
    lanes: Type.Array(Type.Unknown(), { maxItems: 20 }),
  },
  { additionalProperties: false },
);
const RouteShape = Type.Object(
  { ...RouteSchema.properties, targets: Type.Array(Type.Unknown(), { minItems: 1, maxItems: 10 }) },
  { additionalProperties: false },
);

/**
 * Validates a whole configuration and returns a copy with the defaults applied; throws
 * E_VALIDATION whose `field` names the first bad part (e.g. `routes[1].targets[0].url`).
 */
export function validateGatewayConfig(doc: unknown): GatewayConfig {
  const cfg = structuredClone(doc) as GatewayConfig;
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw invalid('config', 'must be an object with routes, filters and lanes');
  check(Shape, cfg, '');
  cfg.lanes.forEach((l, i) => check(LaneSchema, l, `lanes[${i}]`));
  const lanes = new Set<string>();
  cfg.lanes.forEach((l, i) => {
    if (lanes.has(l.name)) throw invalid(`lanes[${i}].name`, `lane "${l.name}" is defined twice`);
    lanes.add(l.name);
  });
  const ids = new Set<string>();
  cfg.routes.forEach((r, i) => {
    const at = `routes[${i}]`;
    check(RouteShape, r, at);
    r.targets.forEach((t, j) => checkTyped(TARGETS, t, `${at}.targets[${j}]`));
    if (ids.has(r.id)) throw invalid(`${at}.id`, `route id "${r.id}" is used twice`);
    ids.add(r.id);
    checkPattern(r.match.topic, `${at}.match.topic`);
    r.targets.forEach((t, j) => {
      if (t.type !== 'builtin' && t.lane !== undefined && !lanes.has(t.lane))
        throw invalid(`${at}.targets[${j}].lane`, `no lane "${t.lane}" is defined (lanes: ${[...lanes].join(', ') || 'none'})`);
    });
  });
  cfg.filters.forEach((f, i) => {
    checkTyped(FILTERS, f, `filters[${i}]`);
    if (f.type === 'classify') f.rules.forEach((rule, k) => checkPattern(rule.when.topic, `filters[${i}].rules[${k}].when.topic`));
  });
  return cfg;
}

/** Checks one route as the API takes it (before it gets its id), applying its defaults. */
export function validateRouteInput(input: unknown, field = 'body'): RouteInput {
  const r = structuredClone(input) as RouteInput;
  check(
    Type.Object({ ...RouteInputSchema.properties, targets: Type.Array(Type.Unknown(), { minItems: 1, maxItems: 10 }) }, { additionalProperties: false }),
    r,
    field,
  );
  r.targets.forEach((t, j) => checkTyped(TARGETS, t, `${field}.targets[${j}]`));
  checkPattern(r.match.topic, `${field}.match.topic`);
  return r;
}
