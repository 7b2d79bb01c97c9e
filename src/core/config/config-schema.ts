import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import { readFileSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The one configuration schema. Each key maps to an environment variable `HEARTH_<SNAKE_CASE>`
 * and to the same key in the optional JSON config file (`HEARTH_CONFIG`, default
 * `<dataDir>/hearth.json` if present). Environment variables win over the file.
 */
export const ConfigSchema = Type.Object({
  httpPort: Type.Integer({
    minimum: 0,
    maximum: 65535,
    default: 8080,
    description: 'HTTP port (REST API, /docs, MQTT over WebSocket at /mqtt). 0 picks a free port.',
  }),
  httpHost: Type.String({ default: '0.0.0.0', description: 'HTTP listen address' }),
  trustedProxies: Type.Optional(
    Type.String({
      pattern: '^[0-9A-Fa-f.:/, ]+$',
      description:
        'Comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client (sign-in and sign-up limits count per client); unset: the TCP peer is the client, and no header is trusted',
    }),
  ),
  mqttPort: Type.Integer({ minimum: 0, maximum: 65535, default: 1883, description: 'MQTT TCP port. 0 picks a free port.' }),
  mqttHost: Type.String({ default: '0.0.0.0', description: 'MQTT listen address' }),
  dataDir: Type.String({ default: './data', description: 'Directory of the SQLite database and other state' }),
  sqliteSynchronous: Type.Union([Type.Literal('normal'), Type.Literal('full')], {
    default: 'normal',
    description:
      'Embedded mode: what a commit to the SQLite files in dataDir (the store, the stream log) survives before Hearth acknowledges it. normal: a crash or kill of Hearth at any moment; full: also an OS crash or power cut, at one fsync per commit',
  }),
  demo: Type.Boolean({ default: true, description: 'Load the demo (a hub with sub-devices) on first start and run the simulator in-process' }),
  adminEmail: Type.Optional(Type.String({ format: 'email', description: 'Operator account created on first start' })),
  adminPassword: Type.Optional(Type.String({ minLength: 8, description: 'Operator password; generated and printed once if unset' })),
  logLevel: Type.Union(
    [
      Type.Literal('fatal'),
      Type.Literal('error'),
      Type.Literal('warn'),
      Type.Literal('info'),
      Type.Literal('debug'),
      Type.Literal('trace'),
      Type.Literal('silent'),
    ],
    { default: 'info', description: 'Least severe log records written (JSON lines on stdout): fatal, error, warn, info, debug, trace, or silent for none' },
  ),
  tokenTtlSeconds: Type.Integer({ minimum: 60, default: 900, description: 'Lifetime of access tokens (renewed with a refresh token)' }),
  commandTimeoutMs: Type.Integer({ minimum: 100, maximum: 300000, default: 10000, description: 'Default wait for a command result' }),
  commandQueueMax: Type.Integer({
    minimum: 1,
    maximum: 100000,
    default: 1000,
    description: 'Queued commands (ttlMs or queue) a device may have waiting or in flight; one more is refused with 429 E_COMMAND_QUEUE_FULL',
  }),
  commandQueueMaxInFlight: Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: 10,
    description: 'Queued commands sent to a device and not yet answered at any time; the next is sent when one is answered',
  }),
  commandQueueDefaultTtlMs: Type.Integer({
    minimum: 1000,
    maximum: 2592000000,
    default: 86400000,
    description: 'TTL of a command sent with "queue": true when its product sets no commandTtlMs',
  }),
  mqttSessionMaxMessages: Type.Integer({
    minimum: 1,
    maximum: 100000,
    default: 100,
    description: 'QoS 1 messages kept per MQTT session with clean=false while the device is away; the oldest is dropped for a new one',
  }),
  commandQueueMaxTtlMs: Type.Integer({
    minimum: 1000,
    maximum: 2592000000,
    default: 604800000,
    description: 'Longest ttlMs a queued command may ask for (a longer one is refused with 400)',
  }),
  historyFlushMs: Type.Integer({ minimum: 1, maximum: 10000, default: 100, description: 'How long history and shadow writes are batched' }),
  maxPayloadBytes: Type.Integer({ minimum: 256, default: 65536, description: 'Largest MQTT payload accepted from a device' }),
  mqttConnectMaxBytes: Type.Integer({
    minimum: 512,
    maximum: 1048576,
    default: 8192,
    description:
      'Largest MQTT packet a device may send before CONNACK (its CONNECT: client id, user name, password, will topic and message); a longer one closes the connection before it is read',
  }),
  mqttConnectTimeoutMs: Type.Integer({
    minimum: 100,
    maximum: 120000,
    default: 10000,
    description: 'A connection whose CONNECT has not fully arrived within this time is closed',
  }),
  publicUrl: Type.Optional(
    Type.String({
      description:
        'Base URL of this Hearth as people reach it: printed in the start banner and used in e-mailed links (invitations, password resets); default http://localhost:<httpPort>',
    }),
  ),
  refreshTtlSeconds: Type.Integer({
    minimum: 300,
    default: 2592000,
    description: 'Lifetime of refresh tokens (a sign-in session lasts this long without use); 30 days by default',
  }),
  rateLimitPerMinute: Type.Integer({
    minimum: 1,
    default: 600,
    description: 'Sustained REST requests per minute allowed to one app user or one of their API keys',
  }),
  rateLimitBurst: Type.Integer({
    minimum: 1,
    default: 100,
    description: 'REST requests one app user or API key may make at once before the per-minute rate applies',
  }),
  operatorRateLimitPerMinute: Type.Integer({
    minimum: 1,
    default: 60000,
    description:
      "Sustained REST requests per minute allowed to the operator's account and to each API key of the operator (the platform's own scripts and services)",
  }),
  operatorRateLimitBurst: Type.Integer({
    minimum: 1,
    default: 5000,
    description: 'REST requests the operator or one of its API keys may make at once before operatorRateLimitPerMinute applies',
  }),
  smtpUrl: Type.Optional(
    Type.String({
      pattern: '^smtps?://',
      description: 'SMTP server for e-mail (password resets, invitations), e.g. smtp://user:pass@mail.example.com:587; unset: e-mails are written to the log',
    }),
  ),
  mailFrom: Type.String({ default: 'Hearth <no-reply@hearth.local>', description: 'Sender of the e-mails Hearth sends' }),
  passwordResetUrl: Type.Optional(Type.String({ description: 'Page that password-reset e-mails link to (with ?token=…); default <publicUrl>/reset-password' })),
  signupEnabled: Type.Boolean({ default: true, description: 'Whether anyone may create an account with POST /api/v1/auth/signup' }),
  signupsPerHour: Type.Integer({
    minimum: 1,
    default: 20,
    description: 'Sign-ups allowed from one client address per hour (refused ones included); more get 429 with Retry-After',
  }),
  signupBurst: Type.Integer({ minimum: 1, default: 5, description: 'Sign-ups one client address may make at once before signupsPerHour applies' }),
  databaseUrl: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'PostgreSQL connection URL (cluster mode); unset: SQLite in dataDir' })),
  natsUrl: Type.Optional(Type.String({ description: 'NATS server URL(s), comma-separated, with JetStream enabled (cluster mode); unset: in-process bus' })),
  roles: Type.String({
    pattern: '^(all|(gateway|api|worker)(,(gateway|api|worker))*)$',
    default: 'all',
    description:
      'What this node does: all, or a comma-separated subset of gateway (device connections), api (REST API), worker (ingest, shadows, background work)',
  }),
  nodeName: Type.Optional(
    Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'Name of this node in logs, metrics and presence; default: the host name' }),
  ),
  shards: Type.Integer({ minimum: 1, maximum: 1024, default: 32, description: 'Device shards that workers divide among themselves; the same on every node' }),
  nodeTimeoutMs: Type.Integer({
    minimum: 1000,
    maximum: 120000,
    default: 6000,
    description: 'A node silent for this long is declared lost: its devices are marked offline and its shards move to other workers',
  }),
  ackWaitMs: Type.Integer({
    minimum: 500,
    maximum: 600000,
    default: 10000,
    description: 'A device message not acknowledged by a worker within this time is handled again (by another worker if its own died)',
  }),
  shutdownGraceMs: Type.Integer({
    minimum: 0,
    maximum: 600000,
    default: 25000,
    description: 'Longest a graceful shutdown may take before the process exits anyway',
  }),
  drainDelayMs: Type.Integer({
    minimum: 0,
    maximum: 120000,
    default: 0,
    description: 'On SIGTERM, how long to keep serving after readiness turns false, so load balancers stop sending traffic first',
  }),
  uplinkBatchMax: Type.Integer({
    minimum: 1,
    maximum: 64,
    default: 32,
    description:
      'Device messages of a shard that a gateway stores on the stream as one batch, at most (1: each alone, as versions before batches did; set 1 while nodes of such a version still run workers)',
  }),
  disconnectRatePerSecond: Type.Integer({
    minimum: 1,
    default: 1000,
    description: 'On shutdown, device connections are closed at this pace so they reconnect elsewhere without a stampede',
  }),
  connectRatePerSecond: Type.Integer({
    minimum: 1,
    default: 2000,
    description: 'New device connections admitted per second (token bucket); the rest are refused with "server unavailable" and retry',
  }),
  connectBurst: Type.Integer({ minimum: 1, default: 500, description: 'Device connections admitted at once before connectRatePerSecond applies' }),
  gatewayConfig: Type.Optional(
    Type.String({
      description:
        'JSON file with message-gateway routes, filters and lanes, applied at start as a new configuration version when it differs from the live one',
    }),
  ),
  notifyDedupeWindowMs: Type.Integer({
    minimum: 0,
    maximum: 86400000,
    default: 300000,
    description: 'Notifications repeated to a user (same dedupeKey, or same kind, title and body) within this window are suppressed; 0: never',
  }),
  vapidSubject: Type.Optional(
    Type.String({
      pattern: '^(mailto:|https://)',
      description: 'Web Push: the contact in the VAPID token (mailto: or https: URL); default: mailto: the address of mailFrom',
    }),
  ),
  fcmServiceAccountFile: Type.Optional(
    Type.String({
      description: 'Mobile push (Android): Firebase service-account JSON file (project_id, client_email, private_key, token_uri); unset: FCM off',
    }),
  ),
  fcmBaseUrl: Type.String({ pattern: '^https?://', default: 'https://fcm.googleapis.com', description: 'FCM HTTP v1 API base URL (tests point it at a fake)' }),
  apnsKeyFile: Type.Optional(
    Type.String({ description: 'Mobile push (iOS): the APNs auth key (.p8); with apnsKeyId, apnsTeamId and apnsTopic; unset: APNs off' }),
  ),
  apnsKeyId: Type.Optional(Type.String({ description: 'APNs: the key id of apnsKeyFile' })),
  apnsTeamId: Type.Optional(Type.String({ description: 'APNs: the Apple developer team id' })),
  apnsTopic: Type.Optional(Type.String({ description: "APNs: the app's bundle id (apns-topic)" })),
  apnsBaseUrl: Type.String({
    pattern: '^https?://',
    default: 'https://api.push.apple.com',
    description: 'APNs base URL: https://api.sandbox.push.apple.com for development builds; http:// speaks HTTP/2 without TLS (tests)',
  }),
  outboundPrivateNetworks: Type.Union([Type.Literal('allow'), Type.Literal('deny')], {
    default: 'deny',
    description:
      "Whether URLs that people configure (automations' webhook actions, homes' notification channels, Web Push endpoints) may reach loopback, private, link-local and other non-public addresses. deny (the default) keeps anyone who can sign up away from the networks Hearth runs in; a home lab opts in with allow (call Home Assistant on the LAN)",
  }),
  streamMaxPerUser: Type.Integer({
    minimum: 1,
    maximum: 10000,
    default: 10,
    description: 'Live streams (GET /api/v1/stream) one user may hold open on one node, API keys included; more are refused with 429',
  }),
  otlpEndpoint: Type.Optional(
    Type.String({ pattern: '^https?://', description: 'OpenTelemetry collector (OTLP/HTTP) base URL, e.g. http://otel-collector:4318; unset: tracing off' }),
  ),
  tlsCertFile: Type.Optional(
    Type.String({
      description:
        'TLS: PEM file of the certificate the TLS listeners serve (a chain allowed, leaf first); with tlsKeyFile. Reloaded without a restart when the file changes (cert-manager). Turns on MQTT over TLS (mqttTlsPort) and HTTPS/WSS (httpsPort)',
    }),
  ),
  tlsKeyFile: Type.Optional(Type.String({ description: 'TLS: PEM file of the private key of tlsCertFile' })),
  tlsSelfSigned: Type.Boolean({
    default: false,
    description:
      'TLS without files: make a self-signed development certificate (kept in <dataDir>/tls/, its SHA-256 fingerprint printed at start) and serve it on the TLS listeners. For development only',
  }),
  mqttTlsPort: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 65535,
      description:
        'MQTT over TLS port (TLS 1.2 at least; devices may authenticate with a client certificate); default 8883 when a certificate is configured. 0 picks a free port',
    }),
  ),
  httpsPort: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 65535,
      description:
        'HTTPS port (the REST API, /docs, WSS for MQTT at /mqtt and the live stream); default 8443 when a certificate is configured. 0 picks a free port',
    }),
  ),
  plainPorts: Type.Boolean({
    default: true,
    description:
      'Whether the plain (unencrypted) HTTP and MQTT ports are opened. Keep them behind a load balancer that terminates TLS; set 0 to serve TLS only (needs a certificate)',
  }),
  tlsWatchIntervalMs: Type.Integer({
    minimum: 50,
    maximum: 3600000,
    default: 5000,
    description: 'How often the TLS certificate files are checked for a change',
  }),
  retentionIntervalMs: Type.Integer({
    minimum: 100,
    maximum: 86400000,
    default: 300000,
    description: 'Between two background pruning passes (history, device events, rollups, command ledger, audit log), run by one node of a cluster',
  }),
  retentionBatch: Type.Integer({
    minimum: 10,
    maximum: 100000,
    default: 1000,
    description: 'Rows one pruning statement deletes at most; the pass yields to other work between two',
  }),
  retentionRaw: Type.String({
    pattern: '^([1-9][0-9]{0,4}[dh]|forever)$',
    default: '30d',
    description: 'Default retention of raw history points (<n>d, <n>h or forever); products may set their own',
  }),
  retentionEvents: Type.String({ pattern: '^([1-9][0-9]{0,4}[dh]|forever)$', default: '90d', description: 'Default retention of device events' }),
  retentionCommands: Type.String({ pattern: '^([1-9][0-9]{0,4}[dh]|forever)$', default: '30d', description: 'Retention of the command ledger' }),
  retentionAudit: Type.String({ pattern: '^([1-9][0-9]{0,4}[dh]|forever)$', default: '365d', description: 'Retention of the audit log' }),
  retentionMinuteRollups: Type.String({ pattern: '^([1-9][0-9]{0,4}[dh]|forever)$', default: '7d', description: 'Default retention of 1-minute rollups' }),
  retentionHourRollups: Type.String({ pattern: '^([1-9][0-9]{0,4}[dh]|forever)$', default: '365d', description: 'Default retention of 1-hour rollups' }),
  retentionDayRollups: Type.String({ pattern: '^([1-9][0-9]{0,4}[dh]|forever)$', default: 'forever', description: 'Default retention of 1-day rollups' }),
  exportsDir: Type.Optional(Type.String({ description: 'Where fleet export files are written (default <dataDir>/exports); shared by the nodes of a cluster' })),
  exportsTtl: Type.String({ pattern: '^[1-9][0-9]{0,4}[dh]$', default: '7d', description: 'How long a finished fleet export (its file and job) is kept' }),
  gatewayS3Endpoint: Type.Optional(
    Type.String({
      format: 'uri',
      description:
        "The S3-compatible store of file targets with an upload bucket (e.g. http://minio:9000); unset: AWS S3. Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the pod's role",
    }),
  ),
  gatewayS3Region: Type.String({ default: 'us-east-1', description: 'The region of file targets with an upload bucket' }),
  gatewayFilesDir: Type.Optional(
    Type.String({ description: "Root of the message gateway's file targets (default <dataDir>/gateway-files); a target names a directory under it" }),
  ),
  exportsPollMs: Type.Integer({ minimum: 50, maximum: 600000, default: 2000, description: 'How often a node looks for fleet export jobs to run' }),
  otaMaxFirmwareBytes: Type.Integer({
    minimum: 1024,
    default: 536870912,
    description: 'Firmware updates: largest firmware image accepted by an upload (512 MiB by default)',
  }),
  otaMaxConcurrentDownloads: Type.Integer({
    minimum: 1,
    default: 200,
    description: 'Firmware updates: downloads one node serves at once; more are answered 503 with Retry-After',
  }),
  otaDownloadTtlSeconds: Type.Integer({
    minimum: 60,
    maximum: 604800,
    default: 86400,
    description: 'Firmware updates: how long the per-device download URL of a job works',
  }),
  otaTickMs: Type.Integer({
    minimum: 50,
    maximum: 600000,
    default: 5000,
    description: 'Firmware updates: how often a running campaign is advanced (timeouts, gates, next wave); the longest reaction time to a tripped gate',
  }),
  otaDownloadUrl: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: "Firmware updates: base URL devices download firmware from; default publicUrl, else http://<this node's address>:<httpPort>",
    }),
  ),
});

export type Config = Readonly<Static<typeof ConfigSchema>>;

/** Environment values are strings: each is coerced by the type its schema property declares. */
const typeOf = (key: string): unknown => (ConfigSchema.properties as Record<string, { type?: unknown }>)[key]?.type;

/** `httpPort` → `HEARTH_HTTP_PORT` */
export function envName(key: string): string {
  return 'HEARTH_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function coerce(key: string, raw: string, source: string): unknown {
  if (typeOf(key) === 'boolean') {
    if (['1', 'true', 'yes', 'on'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no', 'off'].includes(raw.toLowerCase())) return false;
    throw new ConfigError(`${source} must be 1 or 0 (true/false), got "${raw}"`);
  }
  if (typeOf(key) === 'integer') {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${source} must be an integer, got "${raw}"`);
    return Number(raw);
  }
  return raw;
}

/**
 * Builds the configuration from defaults, the optional config file and the environment,
 * validates it and freezes it. A bad value throws a ConfigError naming the variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Static<typeof ConfigSchema>> = {}): Config {
  const keys = Object.keys(ConfigSchema.properties);
  const fromEnv: Record<string, unknown> = {};
  for (const key of keys) {
    const raw = env[envName(key)];
    if (raw !== undefined && raw !== '') fromEnv[key] = coerce(key, raw, envName(key));
  }
  const dataDir = (overrides.dataDir ?? fromEnv.dataDir ?? './data') as string;
  const filePath = env.HEARTH_CONFIG ?? resolve(dataDir, 'hearth.json');
  let fromFile: Record<string, unknown> = {};
  if (env.HEARTH_CONFIG !== undefined || existsSync(filePath)) {
    try {
      fromFile = JSON.parse(readFileSync(filePath, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`config file ${filePath} could not be read: ${(err as Error).message}`);
    }
    const unknown = Object.keys(fromFile).filter((k) => !keys.includes(k));
    if (unknown.length) throw new ConfigError(`config file ${filePath} has unknown keys: ${unknown.join(', ')}`);
  }
  const merged = Value.Default(ConfigSchema, { ...fromFile, ...fromEnv, ...overrides }) as Record<string, unknown>;
  const errors = [...Value.Errors(ConfigSchema, merged)];
  if (errors.length) {
    // One line per variable: a union of literals lists its allowed values instead of one
    // "must be equal to constant" per alternative.
    const lines = new Map<string, string>();
    for (const e of errors) {
      const key = e.instancePath.replace(/^\//, '').split('/')[0] || (e.params as { requiredProperties?: string[] }).requiredProperties?.[0] || '';
      if (lines.has(key)) continue;
      const allowed = allowedValues((ConfigSchema.properties as Record<string, unknown>)[key]);
      const problem = allowed ? `must be one of ${allowed.join(', ')}` : e.message;
      lines.set(key, `  ${envName(key)} (${key}): ${problem}, got ${JSON.stringify(merged[key])}`);
    }
    throw new ConfigError(`invalid configuration:\n${[...lines.values()].join('\n')}`);
  }
  return Object.freeze(merged) as Config;
}

/** The values a union of literals (or an enum) allows; undefined for any other schema. */
function allowedValues(schema: unknown): string[] | undefined {
  const s = schema as { anyOf?: Array<{ const?: unknown }>; enum?: unknown[] } | undefined;
  const values = s?.enum ?? (s?.anyOf?.every((x) => 'const' in x) ? s.anyOf.map((x) => x.const) : undefined);
  return values?.map((v) => String(v));
}
