import { readFileSync } from 'node:fs';
import type { Config } from './core/config/config-schema.ts';
import { createLogger, type Logger } from './core/logger.ts';
import { MemoryBus } from './core/bus/memory-bus.ts';
import type { Bus } from './core/bus/bus.ts';
import { migrate, openStore, type Db } from './core/store/db.ts';
import { SettingsStore } from './core/settings-store.ts';
import { AuthService } from './auth/auth-service.ts';
import { authRoutes } from './auth/auth-routes.ts';
import { RateLimiter } from './auth/rate-limiter.ts';
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
import { streamRoutes } from './stream/stream-routes.ts';
import { MqttGateway } from './transports/mqtt/mqtt-gateway.ts';
import { buildHttpServer, type HttpApp } from './transports/http/http-server.ts';

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
}

export interface StartInfo {
  operator: { email: string; generatedPassword?: string; created: boolean };
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
  http!: HttpApp;
  private ready = false;
  private readonly limiter: RateLimiter;
  private readonly mailer: Mailer;
  private stopping: Promise<void> | undefined;

  constructor(readonly config: Config, opts: { log?: Logger } = {}) {
    this.log = opts.log ?? createLogger(config.logLevel);
    const { db } = openStore({ dataDir: config.dataDir, databaseUrl: config.databaseUrl });
    this.db = db;
    const bus = (this.bus = new MemoryBus(this.log.child({ component: 'bus' })));
    const log = this.log;
    const settings = new SettingsStore(db);
    const mailer = (this.mailer = createMailer(config, log));
    const auth = new AuthService({ db, settings, log: log.child({ component: 'auth' }), mailer, ttlSeconds: config.tokenTtlSeconds, refreshTtlSeconds: config.refreshTtlSeconds });
    this.limiter = new RateLimiter({ perMinute: config.rateLimitPerMinute, burst: config.rateLimitBurst });
    const products = new ProductService({ db });
    const devices = new DeviceService({ db, products });
    const presence = new PresenceService({ db, bus, devices, log, nodeId: 'embedded' });
    const shadow = new ShadowService({ db, bus, log, devices, products, presence, flushMs: config.historyFlushMs });
    const history = new HistoryService({ db, log, flushMs: config.historyFlushMs });
    const commands = new CommandService({ db, bus, log, devices, products, presence, defaultTimeoutMs: config.commandTimeoutMs });
    const ingest = new IngestService({ bus, log, devices, products, presence, shadow, history, commands });
    const access = new AccessService({ db, devices });
    const audit = new AuditService({ db, log, flushMs: config.historyFlushMs });
    const views = new DeviceViews({ presence, shadow, access });
    const stream = new StreamService({ bus, access, devices, log: log.child({ component: 'stream' }) });
    const homes = new HomeService({
      db, access, devices, shadow, commands, audit, mailer, users: auth, publicUrl: config.publicUrl ?? `http://localhost:${config.httpPort}`,
      onPlacementChange: (deviceId) => stream.invalidate(deviceId),
    });
    this.services = { settings, auth, products, devices, presence, shadow, history, commands, ingest, access, audit, views, homes, stream };
    this.mqtt = new MqttGateway({ bus, devices, presence, log: log.child({ component: 'mqtt' }), config: { port: config.mqttPort, host: config.mqttHost, maxPayloadBytes: config.maxPayloadBytes } });
  }

  /** Migrates, starts every service, then opens the MQTT and HTTP ports. */
  async start(): Promise<StartInfo> {
    const { auth, products, presence, shadow, history, commands, ingest, settings, access, audit, views } = this.services;
    await migrate(this.db);
    const firstStart = (await settings.get('installedAt')) === undefined;
    await auth.start();
    await products.installCatalog();
    const operator = await auth.ensureOperator(this.config.adminEmail, this.config.adminPassword);
    if (firstStart) await settings.set('installedAt', new Date().toISOString());
    await presence.start();
    shadow.start();
    history.start();
    commands.start();
    ingest.start();
    audit.start();
    this.services.stream.start();
    await this.mqtt.start();

    this.http = await buildHttpServer({
      log: this.log,
      version: VERSION,
      authenticate: (authorization, apiKey) => auth.authenticate(authorization, apiKey),
      rateLimit: (p) => {
        const r = this.limiter.take(p.keyId ?? p.userId);
        return r.ok ? undefined : r.retryAfterSeconds;
      },
      isReady: () => this.ready,
      mqttStream: (stream, req) => this.mqtt.handleStream(stream, req),
    });
    const s = this.services;
    authRoutes(this.http, { auth, config: this.config, audit });
    productRoutes(this.http, { products });
    deviceRoutes(this.http, { devices: s.devices, access, views });
    shadowRoutes(this.http, { access, shadow, audit });
    commandRoutes(this.http, { access, commands, audit });
    historyRoutes(this.http, { access, products, history });
    auditRoutes(this.http, { audit });
    homeRoutes(this.http, { homes: s.homes, views });
    streamRoutes(this.http, { stream: s.stream, verifyPrincipal: (t) => auth.authenticate('Bearer ' + t) });
    await this.http.listen({ port: this.config.httpPort, host: this.config.httpHost });
    this.ready = true;
    return { operator, firstStart };
  }

  get httpPort(): number {
    const addr = this.http?.server.address();
    return typeof addr === 'object' && addr ? addr.port : this.config.httpPort;
  }

  get mqttPort(): number {
    return this.mqtt.port;
  }

  /**
   * Graceful stop: readiness turns false, in-flight HTTP requests finish, device connections
   * close, buffered writes are flushed, then the store closes. Safe to call twice.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.ready = false;
      const { presence, shadow, history, commands, ingest } = this.services;
      await this.http?.close();
      await this.mqtt.stop();
      await this.bus.flush();
      ingest.stop();
      this.services.stream.stop();
      commands.stop();
      await shadow.stop();
      await history.stop();
      await this.services.audit.stop();
      await this.services.auth.stop();
      this.mailer.close?.();
      await presence.stop();
      await this.bus.close();
      await this.db.destroy();
    })();
    return this.stopping;
  }
}
