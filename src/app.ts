import { join } from 'node:path';
import { UrlPolicy } from './core/url-policy.ts';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Config } from './core/config/config-schema.ts';
import { createLogger, type Logger } from './core/logger.ts';
import { MemoryBus } from './core/bus/memory-bus.ts';
import { SqliteStreamStorage } from './core/bus/sqlite-stream-storage.ts';
import type { Bus, BusEngine } from './core/bus/bus.ts';
import type { FleetJobStreamData } from './core/bus/events.ts';
import { migrate, openStore, type Db } from './core/store/db.ts';
import { SettingsStore } from './core/settings-store.ts';
import { AuthService } from './auth/auth-service.ts';
import type { Principal } from './access/principal.ts';
import { authRoutes } from './auth/auth-routes.ts';
import { userRoutes } from './auth/user-routes.ts';
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
import { analyticsRoutes } from './history/analytics-routes.ts';
import { connectivityRoutes } from './history/connectivity-routes.ts';
import { CommandService } from './commands/command-service.ts';
import { commandRoutes } from './commands/command-routes.ts';
import { CommandQueue } from './commands/command-queue.ts';
import { SessionStore } from './sessions/session-store.ts';
import { StorePersistence } from './transports/mqtt/store-persistence.ts';
import { IngestService } from './ingest/ingest-service.ts';
import { AccessService } from './access/access-service.ts';
import { AuditService } from './audit/audit-service.ts';
import { auditRoutes } from './audit/audit-routes.ts';
import { DeviceViews } from './devices/device-view.ts';
import { HomeService } from './homes/home-service.ts';
import { HomeDirectory } from './homes/home-directory.ts';
import { MembershipService } from './homes/membership-service.ts';
import { BindingService } from './homes/binding-service.ts';
import { GroupService } from './homes/group-service.ts';
import type { HomesDeps } from './homes/home-types.ts';
import { homeRoutes } from './homes/home-routes.ts';
import { StreamService } from './stream/stream-service.ts';
import { ShardManager } from './core/cluster/shards.ts';
import { broadcast, type Broadcast } from './core/cluster/broadcast.ts';
import { Metrics } from './core/observability/metrics.ts';
import { instrumentBus } from './core/observability/bus-metrics.ts';
import { streamRoutes } from './stream/stream-routes.ts';
import { DeliveryService } from './delivery/delivery-service.ts';
import { DeadLetterService, DeadLetterStore } from './delivery/dead-letters.ts';
import { deadLetterRoutes } from './delivery/dead-letter-routes.ts';
import { RoutingPipeline } from './routing/pipeline.ts';
import { RoutingConfigService } from './routing/config-service.ts';
import { routingRoutes } from './routing/routing-routes.ts';
import { MqttGateway } from './transports/mqtt/mqtt-gateway.ts';
import { buildHttpServer, type HttpApp } from './transports/http/http-server.ts';
import { pageRoutes } from './transports/http/pages.ts';
import { consoleRoutes } from './transports/http/console-routes.ts';
import { OperatorSetup } from './auth/operator-setup.ts';
import { setupRoutes } from './auth/setup-routes.ts';
import { UplinkIngress } from './ingress/ingress.ts';
import { PartnerService } from './partners/partner-service.ts';
import { partnerRoutes } from './partners/partner-routes.ts';
import { deviceHttpRoutes } from './ingress/device-http-routes.ts';
import { AmqpSources } from './partners/amqp-sources.ts';
import { systemClock, type Clock } from './core/clock.ts';
import { SceneService } from './scenes/scene-service.ts';
import { sceneRoutes } from './scenes/scene-routes.ts';
import { TimerService } from './timers/timer-service.ts';
import { forgetPushTargets, NotificationService } from './notify/notify-service.ts';
import { notifyRoutes } from './notify/notify-routes.ts';
import { AutomationStore } from './automation/automation-store.ts';
import { AutomationService } from './automation/automation-service.ts';
import { AutomationEngine } from './automation/automation-engine.ts';
import { automationRoutes } from './automation/automation-routes.ts';
import { webhookCaller } from './automation/webhook-caller.ts';
import { DataDirLock } from './core/data-dir-lock.ts';
import { portProblem, reservePorts, type ListenerSpec, type PortReservation } from './core/port-reservation.ts';
import { Lifecycles, type Lifecycle } from './core/lifecycle.ts';
import { TlsMaterial } from './transports/tls/tls-material.ts';
import { DeviceCredentials } from './devices/device-credentials.ts';
import { deviceCredentialRoutes } from './devices/device-credential-routes.ts';
import { IdentityService } from './identity/identity-service.ts';
import { ProvisioningService } from './identity/provisioning-service.ts';
import { identityRoutes } from './identity/identity-routes.ts';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { StartupError } from './core/startup-error.ts';
import { RetentionService } from './retention/retention-service.ts';
import { retentionRoutes } from './retention/retention-routes.ts';
import { ExportJobs } from './exports/export-jobs.ts';
import { FileTargets } from './delivery/file-target.ts';
import { S3Uploader } from './delivery/s3-upload.ts';
import { exportRoutes } from './exports/export-routes.ts';
import { durationMs } from './retention/retention-policy.ts';
import { FirmwareService } from './ota/firmware-service.ts';
import { FileFirmwareStorage, StoreFirmwareStorage } from './ota/firmware-storage.ts';
import { CampaignService } from './ota/campaign-service.ts';
import { otaRoutes } from './ota/ota-routes.ts';
import { initialPasswordPath, readInitialPassword, removeInitialPassword, writeInitialPassword } from './auth/initial-password.ts';
import { DeviceLifecycle } from './devices/device-lifecycle.ts';
import { DeviceTags } from './devices/device-tags.ts';
import { DeviceSearch, type GroupMatch } from './devices/device-search.ts';
import { FleetGroups } from './fleet/fleet-groups.ts';
import { fleetRoutes } from './fleet/fleet-routes.ts';
import { FleetJobs } from './fleet/fleet-jobs.ts';
import { deviceLifecycleRoutes } from './devices/device-lifecycle-routes.ts';
import { HomeDeviceRemoval } from './homes/home-device-removal.ts';
import { PACKAGE_ROOT } from './core/package-root.ts';

export const VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

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
  members: MembershipService;
  bindings: BindingService;
  groups: GroupService;
  stream: StreamService;
  delivery: DeliveryService;
  deadLetters: DeadLetterService;
  partners: PartnerService;
  routing: RoutingConfigService;
  scenes: SceneService;
  timers: TimerService;
  notify: NotificationService;
  automations: AutomationService;
  automationEngine: AutomationEngine;
  credentials: DeviceCredentials;
  identity: IdentityService;
  provisioning: ProvisioningService;
  retention: RetentionService;
  /** Fleet export jobs (docs/telemetry.md). */
  exports: ExportJobs;
  firmware: FirmwareService;
  campaigns: CampaignService;
  /** Fleet lifecycle (disable, delete, factory reset) and the operator's tags and attributes (docs/fleet.md). */
  lifecycle: DeviceLifecycle;
  deviceTags: DeviceTags;
  deviceSearch: DeviceSearch;
  fleetGroups: FleetGroups;
  fleetJobs: FleetJobs;
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
 * The constructor builds everything without I/O (no port, no bus subscription, no write);
 * `start()` runs the node's lifecycle units (see `units()`) in the order their dependencies give,
 * and `stop()` runs it backwards.
 */
export class Hearth {
  readonly log: Logger;
  readonly bus: Bus;
  readonly db: Db;
  readonly services: Services;
  /** First-run setup: the operator chooses its own e-mail and password in the console (embedded mode). */
  readonly setup: OperatorSetup;
  readonly mqtt: MqttGateway;
  readonly shards: ShardManager;
  readonly roles: Role[];
  /** Unique per process start in a cluster (presence and message ids name it); `embedded` otherwise. */
  readonly nodeId: string;
  /** This node's Prometheus metrics (served at /metrics). */
  readonly metrics: Metrics;
  /** The listening HTTP app, once started (`buildApp()` makes one that does not listen). */
  http!: HttpApp;
  /** How the sources other than MQTT (device HTTP, partners) put messages into the pipeline. */
  readonly ingress: UplinkIngress;
  /** Partner AMQP queues, consumed on worker nodes. */
  readonly amqpSources: AmqpSources;
  /** Wall-clock time for schedules, timers and delays (a ManualClock in tests). */
  readonly clock: Clock;
  /** Every part of the node with a start and a stop, in start order (computed at construction). */
  readonly lifecycle: Lifecycles;
  private ready = false;
  /** Request rate limits per principal: app users (and their keys), the operator (and its keys). */
  private readonly limiter: RateLimiter;
  private readonly operatorLimiter: RateLimiter;
  private readonly mailer: Mailer;
  private stopping: Promise<void> | undefined;
  /** Per-node caches kept coherent over the bus; they start hearing other nodes in `start()`. */
  private readonly broadcasts: Array<Broadcast<any>> = [];
  private readonly automationStore: AutomationStore;
  /** Embedded mode only: one server per data directory. */
  private lock: DataDirLock | undefined;
  /** The ports held from the start's first step until each real listener takes its own over. */
  private reservation: PortReservation | undefined;
  /** What the start tells its caller (set by the `operator` unit). */
  private startInfo: StartInfo | undefined;
  /** When the paced MQTT close must be done by (set by `stop()`). */
  private stopDeadline = Infinity;
  /** The certificate of the TLS listeners (MQTT over TLS, HTTPS/WSS); undefined without TLS. */
  readonly tls: TlsMaterial | undefined;
  /** HTTPS (and WSS) in front of the same routes as the plain HTTP port. */
  private https: HttpsServer | undefined;
  private httpsUnwatch: (() => void) | undefined;

  /** Builds a node; in cluster mode (`natsUrl`) it connects to NATS first. */
  static async create(config: Config, opts: { log?: Logger; clock?: Clock } = {}): Promise<Hearth> {
    if (config.natsUrl === undefined) return new Hearth(config, opts);
    const log = opts.log ?? createLogger(config.logLevel);
    // Loaded only in cluster mode: an embedded node never holds the NATS client.
    const { NatsBus } = await import('./core/bus/nats-bus.ts');
    const bus = await NatsBus.connect({ servers: config.natsUrl, log: log.child({ component: 'bus' }), name: config.nodeName ?? hostname() });
    return new Hearth(config, { log, bus, clock: opts.clock });
  }

  constructor(
    readonly config: Config,
    opts: { log?: Logger; bus?: BusEngine; clock?: Clock } = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    const clustered = config.natsUrl !== undefined;
    if (clustered && !opts.bus) throw new Error('cluster mode: build the node with Hearth.create(config)');
    this.roles = parseRoles(config.roles);
    this.nodeId = clustered
      ? `${
          config.nodeName ??
          hostname()
            .replace(/[^A-Za-z0-9_-]/g, '-')
            .slice(0, 48)
        }-${randomBytes(3).toString('hex')}`
      : 'embedded';
    this.log = (opts.log ?? createLogger(config.logLevel)).child({ node: this.nodeId });
    const metrics = (this.metrics = new Metrics());
    metrics.setNodeInfo({ version: VERSION, node: config.nodeName ?? hostname(), roles: config.roles });
    metrics.setReadySource(() => this.ready);
    const { db } = openStore({
      dataDir: config.dataDir,
      databaseUrl: config.databaseUrl,
      synchronous: config.sqliteSynchronous,
      onQuery: (ms, sql) => metrics.observeQuery(ms, sql),
    });
    this.db = db;
    // Embedded: the bus's durable streams live in streams.sqlite, so a PUBACK (or a 202) means committed to disk.
    const embeddedBus = () =>
      new MemoryBus(this.log.child({ component: 'bus' }), {
        storage: new SqliteStreamStorage({ dataDir: config.dataDir, synchronous: config.sqliteSynchronous }),
      });
    const bus = (this.bus = instrumentBus(opts.bus ?? embeddedBus(), metrics));
    const log = this.log;
    const settings = new SettingsStore(db);
    const publicUrl = config.publicUrl ?? `http://localhost:${config.httpPort}`;
    const mailer = (this.mailer = createMailer(config, log, metrics));
    const audit = new AuditService({ db, log, flushMs: config.historyFlushMs });
    const products = new ProductService({ db });
    const devices = new DeviceService({ db, products });
    const access = new AccessService({ directory: new HomeDirectory(db), devices });
    const stream = new StreamService({ bus, access, devices, log: log.child({ component: 'stream' }), maxPerUser: config.streamMaxPerUser });
    // Caches every node keeps are kept coherent over the bus: revoked sessions, device placements.
    // A revoked session or key also ends its live streams on every node, at once. (Sessions are
    // AuthService's, built next: it sends these and applies them.)
    const revoked = broadcast(bus, 'cluster.auth.revoked', (r) => {
      auth.learnRevoked(r.sid, r.until);
      stream.endSession(r.sid, r.until);
    });
    const keyRevoked = broadcast(bus, 'cluster.auth.key-revoked', (r) => stream.endKey(r.keyId));
    // Every node counts every checked password, so the sign-in throttle holds across the cluster.
    const loginOutcomes = broadcast(bus, 'cluster.auth.login', (o) => auth.learnLoginOutcome(o));
    const placed = broadcast(bus, 'cluster.placement', (p) => stream.invalidate(p.deviceId));
    const accessChanged = broadcast(bus, 'cluster.access', (a) => stream.invalidateUser(a.userId));
    this.broadcasts.push(revoked, keyRevoked, placed, accessChanged, loginOutcomes);
    const auth = new AuthService({
      db,
      settings,
      log: log.child({ component: 'auth' }),
      mailer,
      ttlSeconds: config.tokenTtlSeconds,
      refreshTtlSeconds: config.refreshTtlSeconds,
      onRevoked: (sid, until) => revoked.send({ sid, until }),
      onKeyRevoked: (keyId) => void keyRevoked.send({ keyId }),
      onOperatorSignIn: () => removeInitialPassword(config.dataDir),
      onLoginOutcome: (o) => void loginOutcomes.send(o),
      onAccountReclaimed: forgetPushTargets,
      observer: metrics,
      signups: { perHour: config.signupsPerHour, burst: config.signupBurst },
      onSpray: (a) =>
        audit.record({
          actor: 'system',
          action: 'auth.login.spray',
          targetType: a.kind === 'source' ? 'source' : 'email',
          targetId: a.subject,
          details: { kind: a.kind, distinct: a.distinct, windowSeconds: a.windowSeconds },
        }),
    });
    // Limits are against abuse: the operator's account and keys (the platform's own scripts and
    // services) have their own, much higher ones, so that they never share the app users' defaults.
    this.limiter = new RateLimiter({ perMinute: config.rateLimitPerMinute, burst: config.rateLimitBurst });
    this.operatorLimiter = new RateLimiter({ perMinute: config.operatorRateLimitPerMinute, burst: config.operatorRateLimitBurst });
    const presence = new PresenceService({ db, bus, devices, log, nodeId: this.nodeId, observer: metrics });
    const shards = (this.shards = new ShardManager({
      db,
      log: log.child({ component: 'shards' }),
      nodeId: this.nodeId,
      roles: this.roles,
      shards: config.shards,
      single: !clustered,
      leaseMs: config.nodeTimeoutMs,
      onNodeLost: async (id) => void (await presence.nodeLost(id)),
      onOwnedChange: (n) => metrics.setShardsOwned(n),
    }));
    const shadow = new ShadowService({ db, bus, log, devices, products, presence, shards, flushMs: config.historyFlushMs });
    const history = new HistoryService({ db, log, flushMs: config.historyFlushMs, onPartitionsDropped: (n) => metrics.historyPartitionsDropped(n) });
    const ingress = (this.ingress = new UplinkIngress({ bus, shards: config.shards, nodeId: this.nodeId }));
    const pipeline = new RoutingPipeline({ observer: metrics });
    const commandQueue = new CommandQueue({
      db,
      bus,
      log: log.child({ component: 'command-queue' }),
      presence,
      owns: (id) => shards.ownsDevice(id),
      limits: { maxQueued: config.commandQueueMax, maxInFlight: config.commandQueueMaxInFlight },
      observer: metrics,
    });
    const commands = new CommandService({
      db,
      bus,
      log,
      devices,
      products,
      presence,
      defaultTimeoutMs: config.commandTimeoutMs,
      observer: metrics,
      ingress,
      routesCommands: () => pipeline.routesCommands,
      queue: commandQueue,
      queueSettings: { defaultTtlMs: config.commandQueueDefaultTtlMs, maxTtlMs: config.commandQueueMaxTtlMs },
      audit,
    });
    const deadLetterStore = new DeadLetterStore(db);
    const delivery = new DeliveryService({
      bus,
      log: log.child({ component: 'delivery' }),
      metrics,
      deadLetters: deadLetterStore,
      files: new FileTargets({
        root: config.gatewayFilesDir ?? join(config.dataDir, 'gateway-files'),
        nodeId: this.nodeId,
        log: log.child({ component: 'delivery' }),
        uploader: new S3Uploader({ endpoint: config.gatewayS3Endpoint, region: config.gatewayS3Region }),
      }),
    });
    const deadLetters = new DeadLetterService({ store: deadLetterStore, queue: delivery });
    // Every node may enqueue deliveries (the ingest, replays); workers run the delivery consumers.
    const deliveries = this.has('worker')
      ? delivery
      : { enqueue: (d: Parameters<DeliveryService['enqueue']>[0]) => delivery.enqueue(d), reconcile: async () => {} };
    const routing = new RoutingConfigService({
      db,
      bus,
      log: log.child({ component: 'routing' }),
      pipeline,
      devices,
      products,
      deliveries,
      file: config.gatewayConfig,
    });
    const ingest = new IngestService({
      bus,
      log,
      devices,
      products,
      presence,
      shadow,
      history,
      commands,
      flushMs: config.historyFlushMs,
      ackWaitMs: config.ackWaitMs,
      shardCount: config.shards,
      observer: metrics,
      routing: pipeline,
      deliveries,
      ota: { handleProgress: (id, payload, at) => campaigns.handleProgress(id, payload, at), resend: (id) => campaigns.resend(id) },
      reset: (id, via) => lifecycle.reset(id, via),
    });
    // Released in reverse: the ingest settles its messages before the shadows are let go.
    shards.on(shadow);
    shards.on(ingest);
    // Timers run on the owners of their shards; listeners that set timers register after this one.
    const timers = new TimerService({ db, bus, log: log.child({ component: 'timers' }), clock: this.clock, shards, shardCount: config.shards });
    shards.on(timers);
    const deviceTags = new DeviceTags({ db, bus, log: log.child({ component: 'devices' }), ownsDevice: (id) => shards.ownsDevice(id) });
    const views = new DeviceViews({
      presence,
      shadow,
      access,
      tags: deviceTags,
      isDisabled: (id) => devices.isDisabled(id),
      hubs: (ids) => devices.getMany(ids),
      firmware: (id) => campaigns.deviceFirmware(id),
    });
    const scenes = new SceneService({
      db,
      bus,
      log: log.child({ component: 'scenes' }),
      clock: this.clock,
      access,
      devices,
      products,
      presence,
      shadow,
      commands,
      audit,
      stream,
    });
    // Homes tell the capabilities that keep per-home state (automations and notify are built below: they read homes).
    const homesDeps: HomesDeps = {
      db,
      access,
      devices,
      shadow,
      commands,
      audit,
      mailer,
      users: auth,
      publicUrl,
      onPlacementChange: (deviceId) => {
        void placed.send(deviceId === undefined ? {} : { deviceId });
        // A device out of every home drops its command queue: nothing queued reaches a next owner.
        if (deviceId !== undefined) {
          void access
            .placement(deviceId)
            .then((home) => (home ? undefined : commands.dropQueue(deviceId)))
            .catch((err) => log.warn({ err, deviceId }, 'command queue could not be dropped'));
        }
      },
      onAccessChange: (userId) => accessChanged.send({ userId }),
      onLocationChange: (homeId): Promise<void> => automations.homeChanged(homeId),
      onHomeDeleted: async (homeId): Promise<void> => {
        await automations.homeDeleted(homeId);
        await scenes.homeDeleted(homeId);
        await notify.homeDeleted(homeId);
      },
    };
    const homes = new HomeService(homesDeps);
    const members = new MembershipService(homesDeps);
    const bindings = new BindingService(homesDeps);
    const groups = new GroupService(homesDeps);
    metrics.setStreamClientsSource(() => stream.connections);
    // Every node caches partners and the workers consume their queues: a change reaches them all.
    const partnersChanged = broadcast(bus, 'cluster.partners', () => {
      partners.invalidate();
      void amqpSources.reload();
    });
    this.broadcasts.push(partnersChanged);
    const partners = new PartnerService({ db, devices, products, onChange: () => partnersChanged.send({}) });
    const amqpSources = (this.amqpSources = new AmqpSources({ partners, ingress, log: log.child({ component: 'amqp-sources' }) }));
    // URLs that people configure (not the operator's gateway targets) may be kept off private networks.
    const urls = new UrlPolicy(config.outboundPrivateNetworks);
    const notify = new NotificationService({
      db,
      clock: this.clock,
      log: log.child({ component: 'notify' }),
      stream,
      mailer,
      settings,
      access,
      homes,
      users: auth,
      metrics,
      urls,
      config: {
        dedupeWindowMs: config.notifyDedupeWindowMs,
        vapidSubject: config.vapidSubject,
        mailFrom: config.mailFrom,
        publicUrl,
        ...(config.fcmServiceAccountFile ? { fcm: { serviceAccountFile: config.fcmServiceAccountFile, baseUrl: config.fcmBaseUrl } } : {}),
        ...(config.apnsKeyFile && config.apnsKeyId && config.apnsTeamId && config.apnsTopic
          ? { apns: { keyFile: config.apnsKeyFile, keyId: config.apnsKeyId, teamId: config.apnsTeamId, topic: config.apnsTopic, baseUrl: config.apnsBaseUrl } }
          : {}),
      },
    });
    // Automations: stored and checked by the service on any node, run by the engine on the worker owning the home's shard.
    const automationStore = (this.automationStore = new AutomationStore({
      db,
      log: log.child({ component: 'automations' }),
      flushMs: config.historyFlushMs,
      sharding: { shardCount: config.shards, settings },
    }));
    // A change reloads the automation on every node; here it is awaited (a trigger right after the reply is seen).
    const automationsChanged = broadcast(bus, 'cluster.automations', (m) => automationEngine.reload(m.id));
    const productsChanged = broadcast(bus, 'cluster.products', (c) => products.forget(c.key));
    products.onChanged = (key) => productsChanged.send({ key });
    this.broadcasts.push(productsChanged);
    this.broadcasts.push(automationsChanged);
    const automations = new AutomationService({
      store: automationStore,
      access,
      devices,
      products,
      audit,
      homes,
      groups,
      urls,
      clock: this.clock,
      log: log.child({ component: 'automations' }),
      shardCount: config.shards,
      timers,
      scenes,
      onChange: (id): Promise<void> => automationsChanged.send({ id }),
    });
    const automationEngine = new AutomationEngine({
      bus,
      log: log.child({ component: 'automations' }),
      clock: this.clock,
      store: automationStore,
      shards,
      shardCount: config.shards,
      control: automations,
      effects: {
        command: (id, input, source) => commands.send(id, input, source),
        setDesired: (id, values) => shadow.setDesired(id, values),
        groupDevices: (homeId, groupId) => groups.groupDevices(homeId, groupId),
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
    // Device identity: a rotated secret or a changed CA/revocation reaches every node's caches and sessions.
    const secretRotated = broadcast(bus, 'cluster.identity.secret', (m) => {
      credentials.forget(m.deviceId);
      this.mqtt?.recheckSessions([m.deviceId], m.previousValidUntil ?? undefined, 'secret');
    });
    const certificatesChanged = broadcast(bus, 'cluster.identity.certificates', () => {
      identity.reload();
      this.mqtt?.recheckSessions(undefined, undefined, 'certificate');
    });
    this.broadcasts.push(secretRotated, certificatesChanged);
    const credentials = new DeviceCredentials({
      db,
      devices,
      onRotated: (deviceId, previousValidUntil) => secretRotated.send({ deviceId, previousValidUntil }),
    });
    devices.attachCredentials(credentials);
    const identity = new IdentityService({
      db,
      log: log.child({ component: 'identity' }),
      products,
      devices,
      credentials,
      onChange: () => certificatesChanged.send({}),
    });
    const provisioning = new ProvisioningService({ db, log: log.child({ component: 'provisioning' }), products, credentials, audit });
    // Pruning by age runs on one node: the worker holding shard 0's lease (every shard is this node's when embedded).
    const retention = new RetentionService({
      db,
      log: log.child({ component: 'retention' }),
      products,
      devices,
      history,
      commands,
      audit,
      presence,
      intervalMs: config.retentionIntervalMs,
      batch: config.retentionBatch,
      isPruner: () => this.has('worker') && shards.owns(0),
      defaults: {
        raw: config.retentionRaw,
        events: config.retentionEvents,
        commands: config.retentionCommands,
        audit: config.retentionAudit,
        rollup1m: config.retentionMinuteRollups,
        rollup1h: config.retentionHourRollups,
        rollup1d: config.retentionDayRollups,
      },
    });
    // Fleet exports: written by one worker each (a lease in the store), files in the exports directory.
    const exportJobs = new ExportJobs({
      db,
      log: log.child({ component: 'exports' }),
      dir: config.exportsDir ?? join(config.dataDir, 'exports'),
      nodeId: this.nodeId,
      runs: () => this.has('worker'),
      devices,
      history,
      booleans: async (product) =>
        new Set([...((await products.model(product))?.properties.values() ?? [])].filter((x) => x.type === 'boolean').map((x) => x.id)),
      ttlMs: durationMs(config.exportsTtl) ?? 7 * 86_400_000,
      pollMs: config.exportsPollMs,
      audit,
    });
    // Firmware updates: images in the data directory (embedded) or in the store (PostgreSQL: every node serves every package).
    const firmware = new FirmwareService({
      db,
      log: log.child({ component: 'ota' }),
      products,
      storage: config.databaseUrl === undefined ? new FileFirmwareStorage(config.dataDir) : new StoreFirmwareStorage(db),
      tokenSecret: () => settings.getOrCreate('otaDownloadKey', () => randomBytes(32).toString('base64url')),
      baseUrl: () =>
        config.otaDownloadUrl ?? config.publicUrl ?? `http://${['0.0.0.0', '::'].includes(config.httpHost) ? 'localhost' : config.httpHost}:${this.httpPort}`,
      maxBytes: config.otaMaxFirmwareBytes,
      downloadTtlSeconds: config.otaDownloadTtlSeconds,
      maxConcurrentDownloads: config.otaMaxConcurrentDownloads,
    });
    const campaigns = new CampaignService({
      db,
      bus,
      log: log.child({ component: 'ota' }),
      clock: this.clock,
      timers,
      shards,
      devices,
      presence,
      access,
      firmware,
      audit,
      stream,
      home: async (homeId) => {
        const h = await homes.info(homeId);
        return h && { timezone: h.timezone, ownerId: h.ownerId };
      },
      notify: (req) => notify.send(req),
      tagsOf: async (id) => (await deviceTags.get(id)).tags,
      observer: metrics,
      tickMs: config.otaTickMs,
    });
    // Fleet lifecycle: a change reaches every node's caches, and the node holding the connection closes it.
    const devicesChanged = broadcast(bus, 'cluster.devices', (c) => {
      devices.forget(c.deviceIds);
      for (const id of c.deviceIds) stream.invalidate(id);
      if (c.disconnect && this.has('gateway')) this.mqtt.disconnect(c.deviceIds, c.disconnect);
    });
    this.broadcasts.push(devicesChanged);
    // `group:` in a fleet query asks the fleet groups (made just below) what a group stands for.
    const deviceSearch: DeviceSearch = new DeviceSearch({
      db,
      engine: config.databaseUrl ? 'postgres' : 'sqlite',
      groups: (ref): Promise<GroupMatch | undefined> => fleetGroups.forSearch(ref),
    });
    const fleetGroups = new FleetGroups({ db, audit, devices, search: deviceSearch });
    const lifecycle = new DeviceLifecycle({
      devices,
      presence,
      tags: deviceTags,
      shadow,
      commands,
      history,
      homes: new HomeDeviceRemoval({ db }),
      placement: (id) => access.placement(id),
      audit,
      stream,
      log: log.child({ component: 'devices' }),
      announce: (c) => devicesChanged.send(c),
      placementChanged: (ids) => ids.forEach((deviceId) => void placed.send({ deviceId })),
      accessChanged: (userIds) => userIds.forEach((userId) => void accessChanged.send({ userId })),
      onDeleted: (ids) => fleetGroups.forgetDevices(ids),
    });
    // Bulk jobs run on the worker owning the job's shard; a new job is announced to it.
    const jobsAnnounced = broadcast(bus, 'cluster.fleet.jobs', (j): void => fleetJobs.heard(j));
    this.broadcasts.push(jobsAnnounced);
    const fleetJobs = new FleetJobs({
      db,
      log: log.child({ component: 'fleet-jobs' }),
      shardCount: config.shards,
      groups: fleetGroups,
      devices,
      audit,
      announce: (j): Promise<void> => jobsAnnounced.send(j),
      // The live stream's `job` events (the operator's: neither a device nor a home).
      changed: (change, j) => {
        const data: FleetJobStreamData = { job: j.id, change, kind: j.kind, status: j.status, total: j.total, progress: j.progress, createdBy: j.createdBy };
        stream.publish('job', null, null, { ...data });
      },
      effects: {
        command: (id, input, source) => commands.send(id, input, source),
        setDesired: (id, values) => shadow.setDesired(id, values),
        setTags: async (id, tags) => {
          await devices.require(id);
          await deviceTags.setTags(id, tags);
        },
        setDisabled: (actor, id, disabled) => lifecycle.setDisabled(actor, id, disabled),
        delete: (actor, id, opts) => lifecycle.delete(actor, id, opts),
      },
    });
    shards.on(fleetJobs);
    this.services = {
      settings,
      auth,
      products,
      devices,
      presence,
      shadow,
      history,
      commands,
      ingest,
      access,
      audit,
      views,
      homes,
      members,
      bindings,
      groups,
      stream,
      delivery,
      deadLetters,
      partners,
      routing,
      scenes,
      timers,
      notify,
      automations,
      automationEngine,
      credentials,
      identity,
      provisioning,
      retention,
      exports: exportJobs,
      firmware,
      campaigns,
      lifecycle,
      deviceTags,
      deviceSearch,
      fleetGroups,
      fleetJobs,
    };
    const sessions = new SessionStore({ db });
    this.tls = TlsMaterial.configured({ certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, selfSigned: config.tlsSelfSigned })
      ? new TlsMaterial(
          {
            certFile: config.tlsCertFile,
            keyFile: config.tlsKeyFile,
            selfSigned: config.tlsSelfSigned,
            dataDir: config.dataDir,
            watchIntervalMs: config.tlsWatchIntervalMs,
          },
          log.child({ component: 'tls' }),
        )
      : undefined;
    this.setup = new OperatorSetup({
      auth,
      initialPassword: () => readInitialPassword(config.dataDir),
      onDone: () => removeInitialPassword(config.dataDir),
    });
    this.mqtt = new MqttGateway({
      bus,
      devices,
      presence,
      log: log.child({ component: 'mqtt' }),
      observer: metrics,
      tls: this.tls,
      persistence: new StorePersistence({
        store: sessions,
        log: log.child({ component: 'mqtt-sessions' }),
        maxMessages: config.mqttSessionMaxMessages,
        loadAll: !clustered,
        onDropped: (clientId, n) => {
          metrics.sessionMessagesDropped(n);
          log.warn({ deviceId: clientId, dropped: n }, 'persistent MQTT session full: oldest message dropped');
        },
      }),
      identity: {
        authenticateCertificate: (name, cert) => identity.authenticateCertificate(name, cert),
        stillValid: async (deviceId, c) =>
          c.certificate
            ? identity.certificateStillValid(c.certificate.fingerprint, c.certificate.caId)
            : c.secretDigest
              ? (await credentials.checkDigest(deviceId, c.secretDigest)) !== false
              : true,
        provision: (hwid, payload) => provisioning.provisionOverMqtt(hwid, payload),
      },
      config: {
        tlsPort: this.tls ? (config.mqttTlsPort ?? 8883) : undefined,
        plain: config.plainPorts,
        port: config.mqttPort,
        host: config.mqttHost,
        maxPayloadBytes: config.maxPayloadBytes,
        shards: config.shards,
        nodeId: this.nodeId,
        connectMaxBytes: config.mqttConnectMaxBytes,
        connectTimeoutMs: config.mqttConnectTimeoutMs,
        connectRatePerSecond: config.connectRatePerSecond,
        connectBurst: config.connectBurst,
        disconnectRatePerSecond: config.disconnectRatePerSecond,
        uplinkBatchMax: config.uplinkBatchMax,
      },
    });
    metrics.setConnectedSource(() => this.mqtt.connectedClients);
    this.lifecycle = new Lifecycles(this.units(), (unit, ms) => {
      if (ms >= 1000) this.log.warn({ unit, ms }, 'a unit was slow to stop');
      else this.log.debug({ unit, ms }, 'unit stopped');
    });
  }

  has(role: Role): boolean {
    return this.roles.includes(role);
  }

  /**
   * Every part of the node that starts and stops, each with the units it needs started first.
   * Listed in a good start order already; the dependencies are what the order must keep (a cycle
   * or an unknown name throws at construction). Stopping runs the order backwards, which is the
   * graceful stop: HTTP closes first, then the MQTT connections at a pace, then the shards are
   * handed back with every message they accepted stored, buffered writes are flushed, and the
   * bus and the store close last. A stop runs whether or not its start did (a failed start lets
   * go of everything), so each must be safe then.
   */
  private units(): Lifecycle[] {
    const s = this.services;
    const worker = this.has('worker');
    return [
      { name: 'store', start: async () => void (await migrate(this.db)), stop: () => this.db.destroy() },
      { name: 'bus', stop: () => this.bus.close() },
      {
        name: 'broadcasts',
        after: ['bus'],
        start: () => this.broadcasts.forEach((b) => b.open()),
        stop: () => this.broadcasts.forEach((b) => b.close()),
      },
      { name: 'routing-config', after: ['store', 'bus', 'delivery', 'products'], start: () => s.routing.start(), stop: () => s.routing.stop() },
      { name: 'presence', after: ['store', 'bus'], start: () => s.presence.start(), stop: () => s.presence.stop() },
      { name: 'mailer', stop: () => this.mailer.close?.() },
      { name: 'audit', after: ['store'], start: () => s.audit.start(), stop: () => s.audit.stop() },
      { name: 'auth', after: ['store', 'broadcasts', 'mailer', 'audit'], start: () => s.auth.start(), stop: () => s.auth.stop() },
      { name: 'products', after: ['store'], start: () => s.products.installCatalog() },
      // Every node may enqueue deliveries; the streams exist before anything publishes to them.
      { name: 'delivery', after: ['bus'], start: () => s.delivery.declare(), stop: () => s.delivery.stop() },
      { name: 'operator', after: ['auth'], start: () => this.prepareOperator() },
      { name: 'history', after: ['store'], start: () => s.history.start(), stop: () => s.history.stop() },
      { name: 'device-tags', after: ['store', 'bus'], start: () => s.deviceTags.start(), stop: () => s.deviceTags.stop() },
      // Jobs resume when the shards are taken (after this); stopping lets the batches under way finish.
      { name: 'fleet-jobs', after: ['store', 'broadcasts', 'commands', 'shadow', 'audit'], stop: () => s.fleetJobs.stop() },
      { name: 'shadow', after: ['presence'], start: () => s.shadow.start(), stop: () => s.shadow.stop() },
      { name: 'commands', after: ['presence', 'audit'], start: () => s.commands.start(), stop: () => s.commands.stop() },
      { name: 'notify', after: ['store', 'mailer'], start: () => s.notify.start(), stop: () => s.notify.stop() },
      { name: 'stream', after: ['bus', 'broadcasts'], start: () => s.stream.start(), stop: () => s.stream.stop() },
      {
        name: 'ingest',
        after: ['shadow', 'history', 'commands', 'delivery', 'routing-config'],
        start: async () => {
          await s.ingest.declare();
          s.ingest.start();
        },
        stop: () => s.ingest.stop(),
      },
      { name: 'automation-store', after: ['store'], start: () => this.automationStore.start(), stop: () => this.automationStore.stop() },
      { name: 'timers', after: ['store', 'bus'], start: () => s.timers.start(), stop: () => s.timers.stop() },
      // Automations run where shards are owned: device messages reach workers only.
      {
        name: 'automation-engine',
        after: ['automation-store', 'timers', 'stream', 'notify', 'commands', 'shadow'],
        start: () => (worker ? s.automationEngine.start() : undefined),
        stop: () => s.automationEngine.stop(),
      },
      // Firmware campaigns advance on timers and follow presence: on workers, like the automations.
      { name: 'ota', after: ['timers', 'stream', 'notify', 'audit'], start: () => (worker ? s.campaigns.start() : undefined), stop: () => s.campaigns.stop() },
      {
        // Taking shards calls the listeners above (shadow, ingest, timers, engine); giving them back
        // waits until everything the bus delivered so far was handled.
        name: 'shards',
        after: ['shadow', 'ingest', 'timers', 'automation-engine', 'ota', 'fleet-jobs'],
        start: async () => {
          await this.shards.start();
          await this.shards.settle();
        },
        stop: async () => {
          await this.bus.flush();
          await this.shards.stop();
        },
      },
      // Loaded by start() before any port is taken (a bad certificate refuses the start); here it stops watching.
      { name: 'tls', stop: () => this.tls?.stop() },
      {
        name: 'mqtt',
        after: ['shards', 'tls'],
        start: async () => {
          if (!this.has('gateway')) return;
          await this.reservation?.release('mqtt');
          await this.mqtt.start().catch((err: NodeJS.ErrnoException) => {
            throw portProblem(this.listener('mqtt'), err);
          });
          await this.reservation?.release('mqtts');
          await this.mqtt.startTls().catch((err: NodeJS.ErrnoException) => {
            throw portProblem(this.listener('mqtts'), err);
          });
        },
        stop: () => this.mqtt.stop(this.stopDeadline - 2000),
      },
      { name: 'retention', after: ['shards', 'history', 'commands', 'audit', 'products'], start: () => s.retention.start(), stop: () => s.retention.stop() },
      { name: 'exports', after: ['store', 'history', 'audit'], start: () => s.exports.start(), stop: () => s.exports.stop() },
      { name: 'amqp-sources', after: ['shards'], start: () => (worker ? this.amqpSources.start() : undefined), stop: () => this.amqpSources.stop() },
      {
        name: 'http',
        after: ['mqtt', 'amqp-sources', 'operator', 'tls'],
        start: async () => {
          this.http = await this.buildApp();
          await this.reservation?.release('http');
          if (this.config.plainPorts) {
            await this.http.listen({ port: this.config.httpPort, host: this.config.httpHost }).catch((err: NodeJS.ErrnoException) => {
              throw portProblem(this.listener('http'), err);
            });
          } else await this.http.ready();
          await this.reservation?.release('https');
          await this.startHttps().catch((err: NodeJS.ErrnoException) => {
            throw portProblem(this.listener('https'), err);
          });
        },
        stop: async () => {
          await this.stopHttps();
          await this.http?.close();
        },
      },
    ];
  }

  /**
   * Takes the data directory's lock and every port this node listens on, then starts every unit
   * (migrations first, the HTTP port last); readiness turns true only when all of that is up.
   */
  async start(): Promise<StartInfo> {
    // What can refuse a start comes before anything is written: the data directory's lock, then
    // every port this node listens on (held until its listener takes it over).
    // Embedded parts keep files in the data directory: the SQLite store, and the bus's stream log
    // whenever there is no NATS (also beside PostgreSQL), so either one takes the lock.
    if (!this.config.plainPorts && !this.tls) {
      throw new StartupError(
        'HEARTH_PLAIN_PORTS=0 turns the plain ports off, but no certificate is configured: set HEARTH_TLS_CERT_FILE and HEARTH_TLS_KEY_FILE (or HEARTH_TLS_SELF_SIGNED=1)',
        'HEARTH_PLAIN_PORTS',
      );
    }
    if (this.config.databaseUrl === undefined || this.config.natsUrl === undefined) {
      this.lock = new DataDirLock(this.config.dataDir);
      this.lock.acquire();
    }
    this.tls?.start();
    const reservation = (this.reservation = await reservePorts(this.listeners().filter((l) => l.port !== 0)));
    try {
      await this.lifecycle.start();
    } finally {
      this.reservation = undefined;
      await reservation.releaseAll();
    }
    this.lock?.update({ httpPort: this.httpPort, ...(this.has('gateway') ? { mqttPort: this.mqttPort } : {}) });
    this.ready = true;
    return this.startInfo!;
  }

  /**
   * The listeners this node opens (HTTP also carries MQTT over WebSocket, HTTPS over WSS): the
   * plain ones unless `plainPorts` is off, the TLS ones when a certificate is configured.
   */
  private listeners(): ListenerSpec[] {
    const c = this.config;
    const http: ListenerSpec = { name: 'http', port: c.httpPort, host: c.httpHost, portVariable: 'HEARTH_HTTP_PORT', hostVariable: 'HEARTH_HTTP_HOST' };
    const mqtt: ListenerSpec = { name: 'mqtt', port: c.mqttPort, host: c.mqttHost, portVariable: 'HEARTH_MQTT_PORT', hostVariable: 'HEARTH_MQTT_HOST' };
    const https: ListenerSpec = {
      name: 'https',
      port: c.httpsPort ?? 8443,
      host: c.httpHost,
      portVariable: 'HEARTH_HTTPS_PORT',
      hostVariable: 'HEARTH_HTTP_HOST',
    };
    const mqtts: ListenerSpec = {
      name: 'mqtts',
      port: c.mqttTlsPort ?? 8883,
      host: c.mqttHost,
      portVariable: 'HEARTH_MQTT_TLS_PORT',
      hostVariable: 'HEARTH_MQTT_HOST',
    };
    const gateway = this.has('gateway');
    return [...(c.plainPorts ? [http, ...(gateway ? [mqtt] : [])] : []), ...(this.tls ? [https, ...(gateway ? [mqtts] : [])] : [])];
  }

  private listener(name: string): ListenerSpec {
    return this.listeners().find((l) => l.name === name)!;
  }

  /**
   * HTTPS and WSS: a TLS server (TLS 1.2 at least) in front of the same Fastify routes as the
   * plain port; WebSocket upgrades (MQTT at /mqtt, the live stream) are handed to the same
   * handler. A reloaded certificate is served to the connections that come after it.
   */
  private async startHttps(): Promise<void> {
    const tls = this.tls;
    if (!tls) return;
    const app = this.http;
    const server = createHttpsServer({ ...tls.serverOptions(), noDelay: true }, (req, res) => app.routing(req, res));
    server.on('upgrade', (req, socket, head) => app.server.emit('upgrade', req, socket, head));
    this.httpsUnwatch = tls.onChange(() => server.setSecureContext(tls.serverOptions()));
    this.https = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.httpsPort ?? 8443, this.config.httpHost, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  private async stopHttps(): Promise<void> {
    this.httpsUnwatch?.();
    const server = this.https;
    if (!server?.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    // Upgraded connections (WSS) are the WebSocket plugin's, closed by Fastify's close.
    setTimeout(() => server.closeAllConnections(), 1000).unref();
    await closed;
  }

  /** The operator's account (made on the first start), and whether this is the first start. */
  private async prepareOperator(): Promise<void> {
    const { settings, auth } = this.services;
    const firstStart = (await settings.get('installedAt')) === undefined;
    const operator: StartInfo['operator'] = await auth.ensureOperator(this.config.adminEmail, this.config.adminPassword);
    await this.keepInitialPassword(operator);
    if (firstStart) await settings.set('installedAt', new Date().toISOString());
    this.startInfo = { operator, firstStart };
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
        operator.initialPasswordFile = initialPasswordPath(dir);
      } catch (err) {
        this.log.warn({ err }, 'could not keep the generated operator password in the data directory; note it from the banner');
      }
      return;
    }
    const kept = readInitialPassword(dir);
    if (kept === undefined) return;
    if ((await this.services.auth.operatorFirstPassword(kept))?.pending) operator.initialPasswordFile = initialPasswordPath(dir);
    else removeInitialPassword(dir);
  }

  /**
   * The HTTP app with every route of this node's roles registered, not listening: `start()`
   * listens on it, and tests may `inject()` requests into one built on its own (its answers use
   * the services as they are, so a node that was not started has no migrated store).
   */
  async buildApp(): Promise<HttpApp> {
    const { auth } = this.services;
    const app = await buildHttpServer({
      log: this.log,
      version: VERSION,
      trustedProxies: this.config.trustedProxies,
      authenticate: (authorization, apiKey) => auth.authenticate(authorization, apiKey),
      rateLimit: (p) => this.rateLimitWait(p),
      isReady: () => this.ready,
      metrics: this.metrics,
      mqttStream: this.has('gateway') ? (stream, req) => this.mqtt.handleStream(stream, req) : undefined,
    });
    if (this.has('api')) this.registerApi(app);
    return app;
  }

  /** The request limit of a caller (operators and their keys have their own): seconds to wait, or undefined. */
  private rateLimitWait(p: Principal): number | undefined {
    const r = (p.role === 'operator' ? this.operatorLimiter : this.limiter).take(p.keyId ?? p.userId);
    return r.ok ? undefined : r.retryAfterSeconds;
  }

  /** Each capability's routes are one Fastify plugin, given only the services it uses. */
  private registerApi(app: HttpApp): void {
    const { auth, products, access, audit, commands, shadow, history, views } = this.services;
    const s = this.services;
    // An answer to a change leaves only once the audit entries recorded before it are committed:
    // answered means audited. Reads (probes, scrapes, lists) record nothing and never wait.
    app.addHook('onSend', async (req, _reply, payload) => {
      if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') await audit.committed();
      return payload;
    });
    app.register(authRoutes, { auth, config: this.config, audit });
    app.register(userRoutes, { auth });
    app.register(productRoutes, { products });
    app.register(deviceRoutes, { devices: s.devices, access, views, search: s.deviceSearch, tags: s.deviceTags });
    app.register(fleetRoutes, { groups: s.fleetGroups, jobs: s.fleetJobs, views });
    app.register(shadowRoutes, { access, shadow, audit });
    app.register(commandRoutes, { access, commands, audit });
    app.register(historyRoutes, { access, products, history, presence: s.presence });
    app.register(auditRoutes, { audit });
    app.register(homeRoutes, {
      homes: s.homes,
      members: s.members,
      bindings: s.bindings,
      groups: s.groups,
      views,
      fleetPatch: (p, id, patch) => s.lifecycle.patch(p, id, patch, (q, d) => access.requireDevice(q, d, 'view')),
    });
    app.register(deviceLifecycleRoutes, { lifecycle: s.lifecycle });
    app.register(routingRoutes, { routing: s.routing, audit });
    app.register(streamRoutes, { stream: s.stream, verifyPrincipal: (t) => auth.authenticate('Bearer ' + t), rateLimit: (p) => this.rateLimitWait(p) });
    app.register(deadLetterRoutes, { deadLetters: s.deadLetters });
    app.register(deviceHttpRoutes, { devices: s.devices, products, ingress: this.ingress, maxPayloadBytes: this.config.maxPayloadBytes });
    app.register(partnerRoutes, { partners: s.partners, ingress: this.ingress, audit });
    app.register(sceneRoutes, { scenes: s.scenes });
    app.register(notifyRoutes, { notify: s.notify });
    app.register(automationRoutes, { automations: s.automations, engine: s.automationEngine });
    app.register(retentionRoutes, { retention: s.retention, audit });
    app.register(analyticsRoutes, { access, products, history, devices: s.devices, commands, tags: s.deviceTags, firmware: s.campaigns });
    app.register(connectivityRoutes, { products, devices: s.devices, presence: s.presence });
    app.register(exportRoutes, { exports: s.exports, products });
    app.register(otaRoutes, { firmware: s.firmware, campaigns: s.campaigns, audit, access });
    app.register(pageRoutes, { version: VERSION });
    app.register(deviceCredentialRoutes, { credentials: s.credentials, audit });
    app.register(identityRoutes, { identity: s.identity, provisioning: s.provisioning, audit });
    app.register(setupRoutes, { setup: this.setup });
    app.register(consoleRoutes, { version: VERSION });
  }

  get httpPort(): number {
    const addr = this.http?.server.address();
    return typeof addr === 'object' && addr ? addr.port : this.config.httpPort;
  }

  get mqttPort(): number {
    return this.mqtt.port;
  }

  /** The bound HTTPS port (undefined without TLS). */
  get httpsPort(): number | undefined {
    const addr = this.https?.address();
    return typeof addr === 'object' && addr ? addr.port : undefined;
  }

  /** The bound MQTT over TLS port (undefined without TLS). */
  get mqttTlsPort(): number | undefined {
    return this.mqtt.tlsPort;
  }

  get isReady(): boolean {
    return this.ready;
  }

  /**
   * Graceful stop: readiness turns false, and after `drainDelayMs` (load balancers stop sending
   * new work) every unit stops in the reverse of the start order (see `units()`), then the data
   * directory's lock is let go. `shutdownGraceMs` bounds the MQTT pacing. Safe to call twice.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const wasReady = this.ready;
      this.ready = false;
      this.stopDeadline = Date.now() + this.config.shutdownGraceMs;
      if (wasReady && this.config.drainDelayMs > 0) await new Promise((r) => setTimeout(r, this.config.drainDelayMs));
      await this.lifecycle.stop();
      this.lock?.release();
    })();
    return this.stopping;
  }
}
