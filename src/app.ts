import { UrlPolicy } from './core/url-policy.ts';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Config } from './core/config/config-schema.ts';
import { createLogger, type Logger } from './core/logger.ts';
import { MemoryBus } from './core/bus/memory-bus.ts';
import { SqliteStreamStorage } from './core/bus/sqlite-stream-storage.ts';
import type { Bus, BusEngine } from './core/bus/bus.ts';
import { NatsBus } from './core/bus/nats-bus.ts';
import { migrate, openStore, type Db } from './core/store/db.ts';
import { SettingsStore } from './core/settings-store.ts';
import { AuthService } from './auth/auth-service.ts';
import { authRoutes } from './auth/auth-routes.ts';
import { RateLimiter } from './core/rate-limiter.ts';
import { createMailer, type Mailer } from './core/mailer.ts';
import { ProductService } from './products/product-service.ts';
import { productRoutes } from './products/product-routes.ts';
import { DeviceService } from './devices/device-service.ts';
import { PresenceService } from './devices/presence-service.ts';
import { deviceRoutes } from './devices/device-routes.ts';
import { ShadowService } from './shadow/shadow-service.ts';
import { shadowRoutes } from './shadow/shadow-routes.ts';
import { HistoryService } from './history/history-service.ts';
import { historyRoutes } from './history/history-routes.ts';
import { CommandService } from './commands/command-service.ts';
import { commandRoutes } from './commands/command-routes.ts';
import { IngestService } from './ingest/ingest-service.ts';
import { AccessService } from './homes/access-service.ts';
import { AuditService } from './audit/audit-service.ts';
import { auditRoutes } from './audit/audit-routes.ts';
import { DeviceViews } from './devices/device-view.ts';
import { HomeService } from './homes/home-service.ts';
import { homeRoutes } from './homes/home-routes.ts';
import { StreamService } from './stream/stream-service.ts';
import { ShardManager } from './core/cluster/shards.ts';
import { broadcast, type Broadcast } from './core/cluster/broadcast.ts';
import { Metrics } from './core/observability/metrics.ts';
import { instrumentBus } from './core/observability/bus-metrics.ts';
import { streamRoutes } from './stream/stream-routes.ts';
import { DeliveryService } from './gateway/delivery-service.ts';
import { DeadLetterService, DeadLetterStore } from './gateway/dead-letters.ts';
import { deadLetterRoutes } from './gateway/dead-letter-routes.ts';
import { GatewayPipeline } from './gateway/pipeline.ts';
import { GatewayConfigService } from './gateway/config-service.ts';
import { gatewayRoutes } from './gateway/gateway-routes.ts';
import { MqttGateway } from './transports/mqtt/mqtt-gateway.ts';
import { buildHttpServer, type HttpApp } from './transports/http/http-server.ts';
import { pageRoutes } from './transports/http/pages.ts';
import { GatewayIngress } from './gateway/ingress.ts';
import { PartnerService } from './gateway/partner-service.ts';
import { partnerRoutes } from './gateway/partner-routes.ts';
import { deviceHttpRoutes } from './gateway/device-http-routes.ts';
import { AmqpSources } from './gateway/amqp-sources.ts';
import { systemClock, type Clock } from './core/clock.ts';
import { SceneService } from './scenes/scene-service.ts';
import { sceneRoutes } from './scenes/scene-routes.ts';
import { TimerService } from './timers/timer-service.ts';
import { NotificationService } from './notify/notify-service.ts';
import { notifyRoutes } from './notify/notify-routes.ts';
import { AutomationStore } from './automation/automation-store.ts';
import { AutomationService } from './automation/automation-service.ts';
import { AutomationEngine } from './automation/automation-engine.ts';
import { automationRoutes } from './automation/automation-routes.ts';
import { webhookCaller } from './automation/webhook-caller.ts';
import { shardOf } from './core/cluster/shards.ts';
import { DataDirLock } from './core/data-dir-lock.ts';
import { portProblem, reservePorts, type ListenerSpec } from './core/port-reservation.ts';
import { readInitialPassword, removeInitialPassword, writeInitialPassword } from './auth/initial-password.ts';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface Services {
  settings: SettingsStore;
  auth: AuthService;
  products: ProductService;
  devices: DeviceService;
  presence: PresenceService;
  shadow: ShadowService;
  history: HistoryService;
  commands: CommandService;
  ingest: IngestService;
  access: AccessService;
  audit: AuditService;
  views: DeviceViews;
  homes: HomeService;
  stream: StreamService;
  delivery: DeliveryService;
  deadLetters: DeadLetterService;
  partners: PartnerService;
  gateway: GatewayConfigService;
  scenes: SceneService;
  timers: TimerService;
  notify: NotificationService;
  automations: AutomationService;
  automationEngine: AutomationEngine;
}

export type Role = 'gateway' | 'api' | 'worker';

/** `all` or a comma-separated list (validated by the config schema). */
export function parseRoles(roles: string): Role[] {
  return roles === 'all' ? ['gateway', 'api', 'worker'] : ([...new Set(roles.split(','))] as Role[]);
}

export interface StartInfo {
  /** `initialPasswordFile`: where the generated password is kept until the operator first signs in. */
  operator: { email: string; generatedPassword?: string; created: boolean; initialPasswordFile?: string };
  firstStart: boolean;
}

/**
 * The composition root: the only place that constructs services and wires them together.
 * `createHearth` builds everything without I/O on the network; `start()` opens the ports.
 */
export class Hearth {
  readonly log: Logger;
  readonly bus: Bus;
  readonly db: Db;
  readonly services: Services;
  readonly mqtt: MqttGateway;
  readonly shards: ShardManager;
  readonly roles: Role[];
  /** Unique per process start in a cluster (presence and message ids name it); `embedded` otherwise. */
  readonly nodeId: string;
  /** This node's Prometheus metrics (served at /metrics). */
  readonly metrics: Metrics;
  http!: HttpApp;
  /** How the sources other than MQTT (device HTTP, partners) put messages into the pipeline. */
  readonly ingress: GatewayIngress;
  /** Partner AMQP queues, consumed on worker nodes. */
  readonly amqpSources: AmqpSources;
  private ready = false;
  /** Request rate limits per principal: app users (and their keys), the operator (and its keys). */
  private readonly limiter: RateLimiter;
  private readonly operatorLimiter: RateLimiter;
  private readonly mailer: Mailer;
  private stopping: Promise<void> | undefined;
  private readonly broadcasts: Array<Broadcast<any>> = [];
  /** Wall-clock time for schedules, timers and delays (a ManualClock in tests). */
  readonly clock: Clock;
  private readonly automationStore: AutomationStore;
  /** Embedded mode only: one server per data directory. */
  private lock: DataDirLock | undefined;

  /** Builds a node; in cluster mode (`natsUrl`) it connects to NATS first. */
  static async create(config: Config, opts: { log?: Logger; clock?: Clock } = {}): Promise<Hearth> {
    if (config.natsUrl === undefined) return new Hearth(config, opts);
    const log = opts.log ?? createLogger(config.logLevel);
    const bus = await NatsBus.connect({ servers: config.natsUrl, log: log.child({ component: 'bus' }), name: config.nodeName ?? hostname() });
    return new Hearth(config, { log, bus, clock: opts.clock });
  }

  constructor(readonly config: Config, opts: { log?: Logger; bus?: BusEngine; clock?: Clock } = {}) {
    this.clock = opts.clock ?? systemClock;
    const clustered = config.natsUrl !== undefined;
    if (clustered && !opts.bus) throw new Error('cluster mode: build the node with Hearth.create(config)');
    this.roles = parseRoles(config.roles);
    this.nodeId = clustered ? `${config.nodeName ?? hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 48)}-${randomBytes(3).toString('hex')}` : 'embedded';
    this.log = (opts.log ?? createLogger(config.logLevel)).child({ node: this.nodeId });
    const metrics = (this.metrics = new Metrics());
    metrics.setNodeInfo({ version: VERSION, node: config.nodeName ?? hostname(), roles: config.roles });
    metrics.setReadySource(() => this.ready);
    const { db } = openStore({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, synchronous: config.sqliteSynchronous, onQuery: (ms, sql) => metrics.observeQuery(ms, sql) });
    this.db = db;
    // Embedded: the bus's durable streams live in streams.sqlite, so a PUBACK (or a 202) means committed to disk.
    const embeddedBus = () => new MemoryBus(this.log.child({ component: 'bus' }), { storage: new SqliteStreamStorage({ dataDir: config.dataDir, synchronous: config.sqliteSynchronous }) });
    const bus = (this.bus = instrumentBus(opts.bus ?? embeddedBus(), metrics));
    const log = this.log;
    const settings = new SettingsStore(db);
    const publicUrl = config.publicUrl ?? `http://localhost:${config.httpPort}`;
    const mailer = (this.mailer = createMailer(config, log, metrics));
    // Caches every node keeps are kept coherent over the bus: revoked sessions, device placements.
    // A revoked session or key also ends its live streams on every node, at once.
    const revoked = broadcast(bus, 'cluster.auth.revoked', (r) => {
      auth.learnRevoked(r.sid, r.until);
      stream.endSession(r.sid, r.until);
    });
    const keyRevoked = broadcast(bus, 'cluster.auth.key-revoked', (r) => stream.endKey(r.keyId));
    // Every node counts every checked password, so the sign-in throttle holds across the cluster.
    const loginOutcomes = broadcast(bus, 'cluster.auth.login', (o) => auth.learnLoginOutcome(o));
    const placed = broadcast(bus, 'cluster.placement', (p) => stream.invalidate(p.deviceId));
    this.broadcasts.push(revoked, keyRevoked, placed, loginOutcomes);
    const auth = new AuthService({
      db, settings, log: log.child({ component: 'auth' }), mailer, ttlSeconds: config.tokenTtlSeconds, refreshTtlSeconds: config.refreshTtlSeconds,
      onRevoked: (sid, until) => revoked.send({ sid, until }),
      onKeyRevoked: (keyId) => void keyRevoked.send({ keyId }),
      onLoginOutcome: (o) => void loginOutcomes.send(o),
      observer: metrics,
      signups: { perHour: config.signupsPerHour, burst: config.signupBurst },
      onSpray: (a) => audit.record({
        actor: 'system', action: 'auth.login.spray', targetType: a.kind === 'source' ? 'source' : 'email', targetId: a.subject,
        details: { kind: a.kind, distinct: a.distinct, windowSeconds: a.windowSeconds },
      }),
    });
    // Limits are against abuse: the operator's account and keys (the platform's own scripts and
    // services) have their own, much higher ones, so that they never share the app users' defaults.
    this.limiter = new RateLimiter({ perMinute: config.rateLimitPerMinute, burst: config.rateLimitBurst });
    this.operatorLimiter = new RateLimiter({ perMinute: config.operatorRateLimitPerMinute, burst: config.operatorRateLimitBurst });
    const products = new ProductService({ db });
    const devices = new DeviceService({ db, products });
    const presence = new PresenceService({ db, bus, devices, log, nodeId: this.nodeId, observer: metrics });
    const shards = (this.shards = new ShardManager({
      db, log: log.child({ component: 'shards' }), nodeId: this.nodeId, roles: this.roles, shards: config.shards, single: !clustered, leaseMs: config.nodeTimeoutMs,
      onNodeLost: async (id) => void (await presence.nodeLost(id)),
      onOwnedChange: (n) => metrics.setShardsOwned(n),
    }));
    const shadow = new ShadowService({ db, bus, log, devices, products, presence, shards, flushMs: config.historyFlushMs });
    const history = new HistoryService({ db, log, flushMs: config.historyFlushMs });
    const ingress = (this.ingress = new GatewayIngress({ bus, shards: config.shards, nodeId: this.nodeId }));
    const commands = new CommandService({ db, bus, log, devices, products, presence, defaultTimeoutMs: config.commandTimeoutMs, observer: metrics, ingress, routesCommands: () => pipeline.routesCommands });
    const pipeline = new GatewayPipeline({ observer: metrics });
    const deadLetterStore = new DeadLetterStore(db);
    const delivery = new DeliveryService({ bus, log: log.child({ component: 'delivery' }), metrics, deadLetters: deadLetterStore });
    const deadLetters = new DeadLetterService({ store: deadLetterStore, queue: delivery });
    // Every node may enqueue deliveries (the ingest, replays); workers run the delivery consumers.
    const deliveries = this.has('worker') ? delivery : { enqueue: (d: Parameters<DeliveryService['enqueue']>[0]) => delivery.enqueue(d), reconcile: async () => {} };
    const gateway = new GatewayConfigService({ db, bus, log: log.child({ component: 'gateway' }), pipeline, devices, products, deliveries, file: config.gatewayConfig });
    const ingest = new IngestService({ bus, log, devices, products, presence, shadow, history, commands, flushMs: config.historyFlushMs, ackWaitMs: config.ackWaitMs, observer: metrics, gateway: pipeline, deliveries });
    // Released in reverse: the ingest settles its messages before the shadows are let go.
    shards.on(shadow);
    shards.on(ingest);
    // Timers run on the owners of their shards; listeners that set timers register after this one.
    const timers = new TimerService({ db, bus, log: log.child({ component: 'timers' }), clock: this.clock, shards, shardCount: config.shards });
    shards.on(timers);
    const access = new AccessService({ db, devices });
    const audit = new AuditService({ db, log, flushMs: config.historyFlushMs });
    const views = new DeviceViews({ presence, shadow, access });
    const stream = new StreamService({ bus, access, devices, log: log.child({ component: 'stream' }), maxPerUser: config.streamMaxPerUser });
    const homes = new HomeService({
      db, access, devices, shadow, commands, audit, mailer, users: auth, publicUrl,
      onPlacementChange: (deviceId) => placed.send(deviceId === undefined ? {} : { deviceId }),
      onAccessChange: () => placed.send({}),
      onLocationChange: (homeId): Promise<void> => automations.homeChanged(homeId),
      onHomeDeleted: async (homeId): Promise<void> => {
        await automations.homeDeleted(homeId);
        await scenes.homeDeleted(homeId);
        await notify.homeDeleted(homeId);
      },
    });
    const scenes = new SceneService({ db, bus, log: log.child({ component: 'scenes' }), clock: this.clock, access, devices, products, presence, shadow, commands, audit, stream });
    metrics.setStreamClientsSource(() => stream.connections);
    // Every node caches partners and the workers consume their queues: a change reaches them all.
    const partnersChanged = broadcast(bus, 'cluster.partners', () => {
      partners.invalidate();
      void this.amqpSources.reload();
    });
    this.broadcasts.push(partnersChanged);
    const partners = new PartnerService({ db, devices, products, onChange: () => partnersChanged.send({}) });
    this.amqpSources = new AmqpSources({ partners, ingress, log: log.child({ component: 'amqp-sources' }) });
    // URLs that people configure (not the operator's gateway targets) may be kept off private networks.
    const urls = new UrlPolicy(config.outboundPrivateNetworks);
    const notify = new NotificationService({
      db, clock: this.clock, log: log.child({ component: 'notify' }), stream, mailer, settings, access, homes, users: auth, metrics, urls,
      config: {
        dedupeWindowMs: config.notifyDedupeWindowMs,
        vapidSubject: config.vapidSubject ?? `mailto:${/<([^>]+)>/.exec(config.mailFrom)?.[1] ?? config.mailFrom}`,
        publicUrl,
        ...(config.fcmServiceAccountFile ? { fcm: { serviceAccountFile: config.fcmServiceAccountFile, baseUrl: config.fcmBaseUrl } } : {}),
        ...(config.apnsKeyFile && config.apnsKeyId && config.apnsTeamId && config.apnsTopic
          ? { apns: { keyFile: config.apnsKeyFile, keyId: config.apnsKeyId, teamId: config.apnsTeamId, topic: config.apnsTopic, baseUrl: config.apnsBaseUrl } } : {}),
      },
    });
    // Automations: stored and checked by the service on any node, run by the engine on the worker owning the home's shard.
    const automationStore = (this.automationStore = new AutomationStore({ db, log: log.child({ component: 'automations' }), flushMs: config.historyFlushMs }));
    // A change reloads the automation on every node; here it is awaited (a trigger right after the reply is seen).
    const automationsChanged = broadcast(bus, 'cluster.automations', (m) => automationEngine.reload(m.id));
    this.broadcasts.push(automationsChanged);
    const automations = new AutomationService({
      store: automationStore, access, devices, products, audit, homes, urls, clock: this.clock, log: log.child({ component: 'automations' }), shardCount: config.shards,
      timers, scenes, onChange: (id): Promise<void> => automationsChanged.send({ id }),
    });
    const automationEngine = new AutomationEngine({
      bus, log: log.child({ component: 'automations' }), clock: this.clock, store: automationStore, shards, shardCount: config.shards, control: automations,
      effects: {
        command: (id, input, source) => commands.send(id, input, source),
        setDesired: (id, values) => shadow.setDesired(id, values),
        groupDevices: (homeId, groupId) => homes.groupDevices(homeId, groupId),
        postJson: webhookCaller(metrics, urls),
        scenes,
        notify,
      },
      // A deleted home is undefined; a store error fails the run instead of running it in UTC.
      home: (homeId) => homes.info(homeId),
      reported: async (id) => (await shadow.view(id)).reported,
      online: async (id) => (await presence.get(id)).online,
      stream,
      timers,
    });
    shards.on(automationEngine);
    this.services = { settings, auth, products, devices, presence, shadow, history, commands, ingest, access, audit, views, homes, stream, delivery, deadLetters, partners, gateway, scenes, timers, notify, automations, automationEngine };
    this.mqtt = new MqttGateway({
      bus, devices, presence, log: log.child({ component: 'mqtt' }), observer: metrics,
      config: {
        port: config.mqttPort, host: config.mqttHost, maxPayloadBytes: config.maxPayloadBytes, shards: config.shards, nodeId: this.nodeId,
        connectMaxBytes: config.mqttConnectMaxBytes, connectTimeoutMs: config.mqttConnectTimeoutMs,
        connectRatePerSecond: config.connectRatePerSecond, connectBurst: config.connectBurst, disconnectRatePerSecond: config.disconnectRatePerSecond,
      },
    });
    metrics.setConnectedSource(() => this.mqtt.connectedClients);
  }

  has(role: Role): boolean {
    return this.roles.includes(role);
  }

  /**
   * Migrates, starts every service, takes this node's device shards, then opens the MQTT and
   * HTTP ports; readiness turns true only when all of that is up.
   */
  async start(): Promise<StartInfo> {
    // What can refuse a start comes before anything is written: the data directory's lock, then
    // every port this node listens on (held until its listener takes it over).
    if (this.config.databaseUrl === undefined) {
      this.lock = new DataDirLock(this.config.dataDir);
      this.lock.acquire();
    }
    const reservation = await reservePorts(this.listeners().filter((l) => l.port !== 0));
    try {
      return await this.startHeld(reservation.release);
    } finally {
      await reservation.releaseAll();
    }
  }

  /** The listeners this node opens (the HTTP one also carries MQTT over WebSocket). */
  private listeners(): ListenerSpec[] {
    const http: ListenerSpec = { name: 'http', port: this.config.httpPort, host: this.config.httpHost, portVariable: 'HEARTH_HTTP_PORT', hostVariable: 'HEARTH_HTTP_HOST' };
    const mqtt: ListenerSpec = { name: 'mqtt', port: this.config.mqttPort, host: this.config.mqttHost, portVariable: 'HEARTH_MQTT_PORT', hostVariable: 'HEARTH_MQTT_HOST' };
    return this.has('gateway') ? [http, mqtt] : [http];
  }

  private async startHeld(release: (listener: string) => Promise<void>): Promise<StartInfo> {
    const { auth, products, presence, shadow, history, commands, ingest, settings, audit } = this.services;
    await migrate(this.db);
    const firstStart = (await settings.get('installedAt')) === undefined;
    await auth.start();
    await products.installCatalog();
    await this.services.delivery.declare();
    await this.services.gateway.start();
    const operator: StartInfo['operator'] = await auth.ensureOperator(this.config.adminEmail, this.config.adminPassword);
    await this.keepInitialPassword(operator);
    if (firstStart) await settings.set('installedAt', new Date().toISOString());
    await presence.start();
    shadow.start();
    history.start();
    commands.start();
    await ingest.declare();
    ingest.start();
    audit.start();
    this.services.stream.start();
    this.services.timers.start();
    await this.services.notify.start();
    // Automations are stored with their home's shard: recomputed only when the shard count changed.
    if ((await settings.get('automations.shardCount')) !== String(this.config.shards)) {
      await this.automationStore.reshard((homeId) => shardOf(homeId, this.config.shards));
      await settings.set('automations.shardCount', String(this.config.shards));
    }
    this.automationStore.start();
    // Automations run where shards are owned: device messages reach workers only.
    if (this.has('worker')) this.services.automationEngine.start();
    await this.shards.start();
    await this.shards.settle();
    if (this.has('worker')) await this.amqpSources.start();
    if (this.has('gateway')) {
      await release('mqtt');
      await this.mqtt.start().catch((err: NodeJS.ErrnoException) => {
        throw portProblem(this.listeners()[1], err);
      });
    }

    this.http = await buildHttpServer({
      log: this.log,
      version: VERSION,
      authenticate: (authorization, apiKey) => auth.authenticate(authorization, apiKey),
      rateLimit: (p) => {
        const r = (p.role === 'operator' ? this.operatorLimiter : this.limiter).take(p.keyId ?? p.userId);
        return r.ok ? undefined : r.retryAfterSeconds;
      },
      isReady: () => this.ready,
      metrics: this.metrics,
      mqttStream: this.has('gateway') ? (stream, req) => this.mqtt.handleStream(stream, req) : undefined,
    });
    if (this.has('api')) this.apiRoutes();
    await release('http');
    await this.http.listen({ port: this.config.httpPort, host: this.config.httpHost }).catch((err: NodeJS.ErrnoException) => {
      throw portProblem(this.listeners()[0], err);
    });
    this.lock?.update({ httpPort: this.httpPort, ...(this.has('gateway') ? { mqttPort: this.mqttPort } : {}) });
    this.ready = true;
    return { operator, firstStart };
  }

  /**
   * A generated operator password is also written to the data directory (mode 0600) until the
   * operator first signs in, so that it is never lost with a scrolled-away banner; a file whose
   * password was used or changed since is removed.
   */
  private async keepInitialPassword(operator: StartInfo['operator']): Promise<void> {
    const dir = this.config.dataDir;
    if (operator.generatedPassword) {
      try {
        writeInitialPassword(dir, operator.generatedPassword);
        operator.initialPasswordFile = `${dir.replace(/\/+$/, '')}/initial-operator-password`;
      } catch (err) {
        this.log.warn({ err }, 'could not keep the generated operator password in the data directory; note it from the banner');
      }
      return;
    }
    const kept = readInitialPassword(dir);
    if (kept === undefined) return;
    if ((await this.services.auth.operatorFirstPassword(kept))?.pending) operator.initialPasswordFile = `${dir.replace(/\/+$/, '')}/initial-operator-password`;
    else removeInitialPassword(dir);
  }

  private apiRoutes(): void {
    const { auth, products, access, audit, commands, shadow, history, views } = this.services;
    const s = this.services;
    // An answer leaves only once the audit entries recorded before it are committed: answered means audited.
    this.http.addHook('onSend', async (_req, _reply, payload) => {
      await audit.committed();
      return payload;
    });
    authRoutes(this.http, { auth, config: this.config, audit });
    productRoutes(this.http, { products });
    deviceRoutes(this.http, { devices: s.devices, access, views });
    shadowRoutes(this.http, { access, shadow, audit });
    commandRoutes(this.http, { access, commands, audit });
    historyRoutes(this.http, { access, products, history });
    auditRoutes(this.http, { audit });
    homeRoutes(this.http, { homes: s.homes, views });
    gatewayRoutes(this.http, { gateway: s.gateway, audit });
    streamRoutes(this.http, { stream: s.stream, verifyPrincipal: (t) => auth.authenticate('Bearer ' + t) });
    deadLetterRoutes(this.http, { deadLetters: s.deadLetters });
    deviceHttpRoutes(this.http, { devices: s.devices, products, ingress: this.ingress, maxPayloadBytes: this.config.maxPayloadBytes });
    partnerRoutes(this.http, { partners: s.partners, ingress: this.ingress, audit });
    sceneRoutes(this.http, { scenes: s.scenes });
    notifyRoutes(this.http, { notify: s.notify });
    automationRoutes(this.http, { automations: s.automations, engine: s.automationEngine });
    pageRoutes(this.http, { version: VERSION });
  }

  get httpPort(): number {
    const addr = this.http?.server.address();
    return typeof addr === 'object' && addr ? addr.port : this.config.httpPort;
  }

  get mqttPort(): number {
    return this.mqtt.port;
  }

  get isReady(): boolean {
    return this.ready;
  }

  /**
   * Graceful stop: readiness turns false, and after `drainDelayMs` (load balancers stop sending
   * new work) in-flight HTTP requests finish, device connections close at a pace so they
   * reconnect elsewhere, the node's shards are handed back with everything they accepted
   * stored, buffered writes are flushed, then the store closes. `shutdownGraceMs` bounds the
   * pacing. Safe to call twice.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const wasReady = this.ready;
      this.ready = false;
      const deadline = Date.now() + this.config.shutdownGraceMs;
      if (wasReady && this.config.drainDelayMs > 0) await new Promise((r) => setTimeout(r, this.config.drainDelayMs));
      const { presence, shadow, history, commands, ingest } = this.services;
      await this.http?.close();
      await this.amqpSources.stop();
      await this.mqtt.stop(deadline - 2000);
      await this.bus.flush();
      await this.shards.stop();
      await this.services.timers.stop();
      await this.services.automationEngine.stop();
      await this.automationStore.stop();
      await ingest.stop();
      await this.services.delivery.stop();
      this.services.stream.stop();
      this.services.notify.stop();
      commands.stop();
      await shadow.stop();
      await history.stop();
      await this.services.audit.stop();
      await this.services.auth.stop();
      this.mailer.close?.();
      await presence.stop();
      this.services.gateway.stop();
      for (const b of this.broadcasts) b.close();
      await this.bus.close();
      await this.db.destroy();
      this.lock?.release();
    })();
    return this.stopping;
  }
}
