import { Registry, Gauge, collectDefaultMetrics, type Metric } from 'prom-client';
import { METRIC_PREFIX, METRIC_TYPES, type MetricName } from './metric-names.ts';

/** 1 ms … 30 s: device round trips (ingest lag, commands). */
const ROUND_TRIP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** 100 µs … 30 s: requests served in-process or nearby (HTTP, bus requests, queries). */
const REQUEST_BUCKETS = [0.0001, 0.00025, 0.0005, ...ROUND_TRIP_BUCKETS];
/** 10 µs … 1 s: a core publish is a few microseconds in-process; a durable one waits for a store. */
const PUBLISH_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

type Labels = Record<string, string>;

/** One series of a counter. */
class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(): void {
    this.value++;
  }
}

/** One series of a histogram: per-bucket (not cumulative) counts; the +Inf bucket is `count`. */
class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]) i++;
    if (i < b.length) this.counts[i]++;
    this.sum += seconds;
    this.count++;
  }
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/**
 * A counter or histogram whose series are plain objects, so that counting on a hot path is a
 * field increment: prom-client's own counters and histograms hash the label values on every call.
 * Registered in a prom-client Registry, which only calls `get()` and reads the fields below.
 */
abstract class FastMetric<S extends { readonly labels: Labels }> {
  readonly aggregator = 'sum';
  protected readonly series = new Map<string, S>();
  constructor(
    readonly name: MetricName,
    readonly help: string,
    private readonly labelNames: readonly string[],
  ) {}

  /** The series of these label values (in `labelNames` order); callers on hot paths keep it. */
  of(...values: string[]): S {
    const key = values.join('\u0000');
    let s = this.series.get(key);
    if (!s) {
      const labels: Labels = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]));
      this.series.set(key, (s = this.create(labels)));
    }
    return s;
  }

  protected abstract create(labels: Labels): S;
}

class FastCounter extends FastMetric<CounterSeries> {
  readonly type = 'counter';
  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
  async get() {
    const values: MetricValue[] = [];
    for (const s of this.series.values()) values.push({ value: s.value, labels: s.labels });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

class FastHistogram extends FastMetric<HistogramSeries> {
  readonly type = 'histogram';
  constructor(
    name: MetricName,
    help: string,
    labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    super(name, help, labelNames);
  }
  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
  async get() {
    const values: MetricValue[] = [];
    for (const s of this.series.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += s.counts[i];
        values.push({ metricName: `${this.name}_bucket`, value: acc, labels: { ...s.labels, le } });
      });
      values.push({ metricName: `${this.name}_bucket`, value: s.count, labels: { ...s.labels, le: '+Inf' } });
      values.push({ metricName: `${this.name}_sum`, value: s.sum, labels: s.labels });
      values.push({ metricName: `${this.name}_count`, value: s.count, labels: s.labels });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** Series keyed by the one label value that varies: once a value has been seen, a lookup allocates nothing. */
function byValue<S>(make: (value: string) => S): (value: string) => S {
  const seen = new Map<string, S>();
  return (value) => {
    let s = seen.get(value);
    if (s === undefined) seen.set(value, (s = make(value)));
    return s;
  };
}

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** True when `sql` has `word` (lower case) at `i`, in any case. */
function keywordAt(sql: string, i: number, word: string): boolean {
  if (sql.length < i + word.length) return false;
  for (let k = 0; k < word.length; k++) if ((sql.charCodeAt(i + k) | 0x20) !== word.charCodeAt(k)) return false;
  return true;
}

/** The statement's kind from its first keyword, without copying the text. */
export function sqlOp(sql: string): 'select' | 'insert' | 'update' | 'delete' | 'other' {
  let i = 0;
  while (i < sql.length && sql.charCodeAt(i) <= 32) i++;
  if (sql.length === i) return 'other';
  for (const op of ['select', 'insert', 'update', 'delete'] as const) if (keywordAt(sql, i, op)) return op;
  return 'other';
}

export type CommandOutcome = 'ok' | 'error' | 'timeout' | 'offline';
export type RefusalReason = 'auth' | 'admission' | 'shutdown' | 'protocol' | 'too-large' | 'malformed' | 'timeout';
export type BreakerState = 'closed' | 'half-open' | 'open';
export type OutboundOutcome = 'ok' | 'error' | 'timeout' | 'rejected';
export type DeliveryOutcome = 'ok' | 'retry' | 'dead';

const BREAKER_VALUES: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

/**
 * The Prometheus metrics of one Hearth node (see metric-names.ts for the names). Each instance
 * has its own registry, so that several platforms in one process (tests) do not mix their numbers.
 * Services get typed methods rather than prom-client objects: the ones on the device path
 * (`messageIn`, `ingestLag`, `observeBusPublish` …) do no label hashing and no allocation once a
 * label value has been seen. Label values must come from fixed sets (kinds, error codes,
 * reasons), never from ids or payloads.
 */
export class Metrics {
  /** The Content-Type of `text()`. */
  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;
  private readonly registry = new Registry();

  private readonly messages = this.counter(
    'hearth_device_messages_total',
    'Device messages through this node, by direction (in: from devices, out: to devices) and kind',
    ['direction', 'kind'],
  );
  private readonly rejected = this.counter(
    'hearth_device_messages_rejected_total',
    'Device messages refused, by error code (the device hears it on its error topic)',
    ['code'],
  );
  private readonly presence = this.counter('hearth_presence_changes_total', 'Devices going online or offline, by reason', ['online', 'reason']);
  private readonly refused = this.counter(
    'hearth_connections_refused_total',
    'Device connections refused, by reason (auth: bad credentials; admission: over the connect rate; shutdown: node stopping)',
    ['reason'],
  );
  private readonly outbound = this.counter(
    'hearth_outbound_requests_total',
    'Calls to outside services (webhooks, partner APIs, notification channels): one per attempt; rejected: refused by an open circuit breaker without trying',
    ['target', 'outcome'],
  );
  private readonly deliveries = this.counter(
    'hearth_gateway_deliveries_total',
    'Attempts to deliver routed messages to external targets, by target type (webhook, nats, amqp) and outcome (ok: delivered; retry: failed, tried again later; dead: failed for good, kept as a dead letter)',
    ['target_type', 'outcome'],
  );
  private readonly deadLetters = this.counter(
    'hearth_dead_letters_total',
    'Routed messages whose delivery finally failed and that were kept as dead letters, by target type',
    ['target_type'],
  );
  private readonly lag = this.histogram(
    'hearth_ingest_lag_seconds',
    'From a device message reaching the gateway to a worker handling it',
    [],
    ROUND_TRIP_BUCKETS,
  ).of();
  private readonly resultWarnings = this.counter(
    'hearth_command_result_warnings_total',
    'Command results that did not fit the model without failing the command, by kind (undeclared-field: a result field the action does not declare; recorded, the command keeps its ok)',
    ['kind'],
  );
  private readonly queueEvents = this.counter(
    'hearth_command_queue_events_total',
    'Queued commands (ttlMs or queue), by event: queued, sent, resent (again on a subscription, not answered yet), expired, cancelled',
    ['event'],
  );
  private readonly sessionDrops = this.counter(
    'hearth_mqtt_session_messages_dropped_total',
    'QoS 1 messages dropped from full clean=false sessions (the oldest goes; HEARTH_MQTT_SESSION_MAX_MESSAGES)',
    [],
  ).of();
  private readonly commands = this.histogram(
    'hearth_command_duration_seconds',
    'From a command being accepted to its outcome',
    ['outcome'],
    ROUND_TRIP_BUCKETS,
  );
  private readonly publishes = this.histogram(
    'hearth_bus_publish_duration_seconds',
    'Time to publish on the bus (core: fire and forget; durable: until stored)',
    ['kind'],
    PUBLISH_BUCKETS,
  );
  private readonly requests = this.histogram('hearth_bus_request_duration_seconds', 'Bus requests until the reply (or the failure)', [], REQUEST_BUCKETS).of();
  private readonly queries = this.histogram('hearth_db_query_duration_seconds', 'Database statements, by kind', ['op'], REQUEST_BUCKETS);
  private readonly gatewayFilters = this.counter(
    'hearth_gateway_filter_total',
    'Messages through each filter of the message gateway, by effect (pass, drop, delay, tagged)',
    ['filter', 'effect'],
  );
  private readonly routingRoutes = this.counter('hearth_gateway_routed_total', 'Messages the message gateway routed, by route name', ['route']);
  private readonly loginFailures = this.counter(
    'hearth_login_failures_total',
    'Failed password checks (sign-in, password change), by reason: wrong_password, unknown_account, throttled (refused unchecked while the client address is slowed down)',
    ['reason'],
  );
  private readonly loginSprays = this.counter(
    'hearth_login_spray_detected_total',
    'Password spraying noticed, by kind: source (one client address failing on many accounts), account (one account failing from many addresses)',
    ['kind'],
  );
  private readonly partitionsDropped = this.counter(
    'hearth_history_partitions_dropped_total',
    'Day partitions of raw history dropped whole by retention (PostgreSQL): their days were older than every raw retention',
    [],
  ).of();
  private readonly otaJobs = this.counter(
    'hearth_ota_jobs_total',
    'Firmware update jobs entering each state (queued: campaigns created, counted once per campaign; sent, downloading, verifying, installing, rebooting, succeeded, failed, cancelled)',
    ['state'],
  );
  private readonly http = this.histogram(
    'hearth_http_request_duration_seconds',
    'HTTP requests, by method, route pattern and status class (streams excluded)',
    ['method', 'route', 'status'],
    REQUEST_BUCKETS,
  );

  private readonly msgIn = byValue((kind) => this.messages.of('in', kind));
  private readonly msgOut = byValue((kind) => this.messages.of('out', kind));
  private readonly rejectedBy = byValue((code) => this.rejected.of(code));
  private readonly online = byValue((reason) => this.presence.of('true', reason));
  private readonly offline = byValue((reason) => this.presence.of('false', reason));
  private readonly refusedBy = byValue((reason) => this.refused.of(reason));
  private readonly commandsBy = byValue((outcome) => this.commands.of(outcome));
  private readonly queriesBy = byValue((op) => this.queries.of(op));
  private readonly deliveriesBy = byValue((type) => ({
    ok: this.deliveries.of(type, 'ok'),
    retry: this.deliveries.of(type, 'retry'),
    dead: this.deliveries.of(type, 'dead'),
  }));
  private readonly deadLettersBy = byValue((type) => this.deadLetters.of(type));
  private readonly corePublish = this.publishes.of('core');
  private readonly durablePublish = this.publishes.of('durable');

  private connected: () => number = () => 0;
  private streamClients: () => number = () => 0;
  private ready: () => boolean = () => false;
  private readonly breakers: Gauge<'target'>;
  private readonly shards: Gauge;
  private readonly info: Gauge<'version' | 'node' | 'roles'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    const registers = [this.registry];
    const metrics = this;
    new Gauge({
      name: this.name('hearth_devices_connected', 'gauge'),
      help: 'Devices connected to this node',
      registers,
      collect() {
        this.set(metrics.connected());
      },
    });
    new Gauge({
      name: this.name('hearth_stream_clients', 'gauge'),
      help: 'Live-event stream clients (WebSocket and SSE) on this node',
      registers,
      collect() {
        this.set(metrics.streamClients());
      },
    });
    this.breakers = new Gauge({
      name: this.name('hearth_circuit_breaker_state', 'gauge'),
      help: 'Circuit breaker of each outside service: 0 closed, 1 half-open, 2 open',
      labelNames: ['target'],
      registers,
    });
    this.shards = new Gauge({ name: this.name('hearth_shards_owned', 'gauge'), help: 'Device shards this node works on', registers });
    new Gauge({
      name: this.name('hearth_node_ready', 'gauge'),
      help: '1 while the node takes traffic (its readiness probe), else 0',
      registers,
      collect() {
        this.set(metrics.ready() ? 1 : 0);
      },
    });
    this.info = new Gauge({
      name: this.name('hearth_node_info', 'gauge'),
      help: 'Always 1; the labels say what runs here',
      labelNames: ['version', 'node', 'roles'],
      registers,
    });
  }

  /** A device message arrived (`kind`: properties, events, result, join, presence, …). */
  messageIn(kind: string): void {
    this.msgIn(kind).inc();
  }

  /** A message went to a device (`kind`: commands, desired, errors, …). */
  messageOut(kind: string): void {
    this.msgOut(kind).inc();
  }

  /** A device message was refused with this error code (E_BAD_JSON, E_MODEL_MISMATCH, …). */
  messageRejected(code: string): void {
    this.rejectedBy(code).inc();
  }

  /** A worker handles a device message the gateway received at `receivedAt` (epoch ms). */
  ingestLag(receivedAt: number): void {
    this.lag.observe(Math.max(0, Date.now() - receivedAt) / 1000);
  }

  /** A command ended `ms` after it was accepted. */
  commandFinished(outcome: CommandOutcome, ms: number): void {
    this.commandsBy(outcome).observe(ms / 1000);
  }

  /** A queued command changed state (or was sent again). */
  commandQueue(event: 'queued' | 'sent' | 'resent' | 'expired' | 'cancelled' | 'duplicate-answer'): void {
    this.queueEvents.of(event).inc();
  }

  /** Messages dropped from a full persistent session. */
  sessionMessagesDropped(count: number): void {
    this.sessionDrops.value += count;
  }

  /** A device's command result did not fit the model in a way that is a warning, not a failure. */
  commandResultWarning(kind: 'undeclared-field'): void {
    this.resultWarnings.of(kind).inc();
  }

  presenceChanged(online: boolean, reason: string): void {
    (online ? this.online : this.offline)(reason).inc();
  }

  connectionRefused(reason: RefusalReason): void {
    this.refusedBy(reason).inc();
  }

  /** The store's `onQuery` hook: one statement took `ms`. */
  observeQuery(ms: number, sql: string): void {
    this.queriesBy(sqlOp(sql)).observe(ms / 1000);
  }

  observeBusPublish(kind: 'core' | 'durable', ms: number): void {
    (kind === 'core' ? this.corePublish : this.durablePublish).observe(ms / 1000);
  }

  observeBusRequest(ms: number): void {
    this.requests.observe(ms / 1000);
  }

  /** `route` is the route pattern (`/api/v1/devices/:id`), never the URL: URLs carry ids. */
  observeHttp(method: string, route: string, statusCode: number, ms: number): void {
    this.http.of(method, route, STATUS_CLASSES[Math.floor(statusCode / 100) - 1] ?? 'other').observe(ms / 1000);
  }

  /** One attempt of a call to an outside service, or its rejection by the breaker. */
  outboundRequest(target: string, outcome: OutboundOutcome): void {
    this.outbound.of(target, outcome).inc();
  }

  /** One attempt to deliver a routed message to a target of this type (`webhook`, `nats`, `amqp`). */
  delivery(targetType: string, outcome: DeliveryOutcome): void {
    this.deliveriesBy(targetType)[outcome].inc();
  }

  /** A delivery failed for good and was kept as a dead letter. */
  deadLetter(targetType: string): void {
    this.deadLettersBy(targetType).inc();
  }

  /** The counter of one filter's effect; the gateway keeps it, so counting a message is a field increment. */
  filterCounter(filter: string, effect: string): { inc(): void } {
    return this.gatewayFilters.of(filter, effect);
  }

  /** The counter of messages a route took; kept by the compiled route. */
  routedCounter(route: string): { inc(): void } {
    return this.routingRoutes.of(route);
  }

  /** A password check failed, or was refused unchecked (`throttled`). */
  loginFailure(reason: 'wrong_password' | 'unknown_account' | 'throttled'): void {
    this.loginFailures.of(reason).inc();
  }

  /** Retention dropped day partitions of raw history whole (PostgreSQL). */
  historyPartitionsDropped(count: number): void {
    this.partitionsDropped.value += count;
  }

  /** Spraying was noticed (the auth log has a warning with the details). */
  loginSpray(kind: 'source' | 'account'): void {
    this.loginSprays.of(kind).inc();
  }

  breakerState(target: string, state: BreakerState): void {
    this.breakers.set({ target }, BREAKER_VALUES[state]);
  }

  /** Where `hearth_devices_connected` is read from at each scrape. */
  /** A firmware update job entered `state` (OtaObserver). */
  otaJob(state: string): void {
    this.otaJobs.of(state).inc();
  }

  setConnectedSource(count: () => number): void {
    this.connected = count;
  }

  /** Where `hearth_stream_clients` is read from at each scrape. */
  setStreamClientsSource(count: () => number): void {
    this.streamClients = count;
  }

  setShardsOwned(n: number): void {
    this.shards.set(n);
  }

  /** Where `hearth_node_ready` is read from at each scrape: the readiness probe's own answer. */
  setReadySource(ready: () => boolean): void {
    this.ready = ready;
  }

  setNodeInfo(info: { version: string; node: string; roles: string }): void {
    this.info.reset();
    this.info.set(info, 1);
  }

  /** The scrape: Prometheus text format (`contentType`). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Every series name a scrape can contain, histograms' `_bucket`, `_sum` and `_count` included. */
  seriesNames(): string[] {
    return this.registry.getMetricsAsArray().flatMap((m) => {
      const { name, type } = m as unknown as { name: string; type: string };
      if (type === 'histogram') return [`${name}_bucket`, `${name}_sum`, `${name}_count`];
      if (type === 'summary') return [name, `${name}_sum`, `${name}_count`];
      return [name];
    });
  }

  /** Checks a name against metric-names.ts, the contract with dashboards. */
  private name(name: MetricName, type: string): MetricName {
    if (METRIC_TYPES[name] !== type) throw new Error(`metric ${name} is declared as a ${METRIC_TYPES[name]} in metric-names.ts, not a ${type}`);
    return name;
  }

  private counter(name: MetricName, help: string, labelNames: string[]): FastCounter {
    const c = new FastCounter(this.name(name, 'counter'), help, labelNames);
    this.registry.registerMetric(c as unknown as Metric);
    return c;
  }

  private histogram(name: MetricName, help: string, labelNames: string[], buckets: number[]): FastHistogram {
    const h = new FastHistogram(this.name(name, 'histogram'), help, labelNames, buckets);
    this.registry.registerMetric(h as unknown as Metric);
    return h;
  }
}
