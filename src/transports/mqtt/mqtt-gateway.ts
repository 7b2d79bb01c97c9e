import { createServer, type Server, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Aedes, type Client, type AuthenticateError, type PublishPacket } from 'aedes';
import type { Bus, Unsubscribe } from '../../core/bus/bus.ts';
import { subjects, type DownlinkMessage, type DeviceErrorPayload, type UplinkKind, type UplinkMessage } from '../../core/bus/subjects.ts';
import { shardOf } from '../../core/cluster/shards.ts';
import { RateLimiter } from '../../core/rate-limiter.ts';
import { MessageIds } from '../../core/ids.ts';
import { injectTrace, recordError, runWithSpan, SpanKind, startSpan, tracingEnabled } from '../../core/observability/tracing.ts';
import type { Logger } from '../../core/logger.ts';
import type { DeviceService } from '../../devices/device-service.ts';
import type { PresenceReason, PresenceService } from '../../devices/presence-service.ts';
import { downlinkTopic, filterCoversDesired, isAllowedSubscriptionSuffix, parseDeviceTopic, uplinkKind } from './topic-codec.ts';

export interface MqttGatewayConfig {
  port: number;
  host: string;
  maxPayloadBytes: number;
  /** Device shards (uplinks are published on their device's shard). */
  shards: number;
  /** This node's id: the prefix of the message ids it assigns. */
  nodeId: string;
  /** Admission: new connections per second, and how many at once. */
  connectRatePerSecond: number;
  connectBurst: number;
  /** Shutdown: connections closed per second. */
  disconnectRatePerSecond: number;
}

/** Counters the gateway reports (the metrics module implements them). */
export interface GatewayObserver {
  messageIn(kind: string): void;
  messageOut(kind: string): void;
  messageRejected(code: string): void;
  connectionRefused(reason: 'auth' | 'admission' | 'shutdown'): void;
}

/** Per-connection state, kept off Aedes' own fields. */
interface ConnState {
  session: Promise<number>;
  reason?: PresenceReason;
}

const CONN = Symbol('hearth.conn');
type HearthClient = Client & { [CONN]?: ConnState; _disconnected?: boolean };

function authError(code: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: code }) as AuthenticateError;
}

/**
 * The device edge: an embedded Aedes broker (MQTT 3.1.1 over TCP and WebSocket) that
 * authenticates devices, enforces per-device topic ACLs, turns device publishes into bus
 * uplink messages and bus downlink messages into publishes. It decides nothing else.
 */
export class MqttGateway {
  private broker!: Aedes;
  private server: Server | undefined;
  private readonly unsubs: Unsubscribe[] = [];
  private shuttingDown = false;
  private readonly sockets = new Set<Socket>();
  /** Presence updates still being written; stop() waits for them before the store closes. */
  private readonly presenceWrites = new Set<Promise<unknown>>();
  private readonly admission: RateLimiter;
  private readonly ids: MessageIds;

  constructor(private readonly deps: { bus: Bus; devices: DeviceService; presence: PresenceService; log: Logger; config: MqttGatewayConfig; observer?: GatewayObserver }) {
    this.admission = new RateLimiter({ perMinute: deps.config.connectRatePerSecond * 60, burst: deps.config.connectBurst });
    this.ids = new MessageIds(deps.config.nodeId, 'm');
  }

  async start(): Promise<void> {
    const { devices, log } = this.deps;
    this.broker = await Aedes.createBroker({
      id: 'hearth',
      authenticate: (client, username, password, done) => {
        if (this.shuttingDown) {
          this.deps.observer?.connectionRefused('shutdown');
          return done(authError(3, 'server shutting down'), false);
        }
        if (!client.id || username !== client.id || !password) {
          this.deps.observer?.connectionRefused('auth');
          done(authError(username && client.id && username !== client.id ? 2 : 4, 'client id and username must both be the device id'), false);
          return;
        }
        // Admission: after an outage every device reconnects at once; take them at a pace the node can serve.
        if (!this.admission.take('connect').ok) {
          this.deps.observer?.connectionRefused('admission');
          return done(authError(3, 'server busy, retry later'), false);
        }
        devices.authenticate(username, password.toString('utf8')).then(
          (ok) => {
            if (!ok) this.deps.observer?.connectionRefused('auth');
            done(ok ? null : authError(4, 'bad device id or secret'), ok);
          },
          (err) => {
            log.error({ err }, 'device authentication failed');
            done(authError(3, 'server unavailable'), false);
          },
        );
      },
      // Accepting a publish means storing it on the bus first: Aedes sends the PUBACK only after
      // this calls back, so an acknowledged message is never lost, even if this node dies next.
      authorizePublish: (client, packet, done) => {
        if (!client) return done(null);
        const parsed = parseDeviceTopic(packet.topic);
        const kind = parsed && uplinkKind(parsed.suffix);
        if (!parsed || !kind) return done(new Error(`publish to ${packet.topic} not allowed`));
        devices.mayActFor(client.id, parsed.deviceId).then(
          (ok) => {
            if (!ok) return done(new Error(`publish to ${packet.topic} not allowed`));
            const stored = this.ingest(client as HearthClient, parsed.deviceId, kind, packet);
            if (!stored) return done(null);
            stored.then(() => done(null), (err) => {
              log.warn({ err, deviceId: parsed.deviceId }, 'uplink could not be stored; closing the connection so the device retries');
              done(err as Error);
            });
          },
          (err) => done(err as Error),
        );
      },
      // A refused filter is granted 0x80 (done(null, null)); an error would close the connection.
      authorizeSubscribe: (client, sub, done) => {
        const parsed = parseDeviceTopic(sub.topic);
        if (!parsed || !isAllowedSubscriptionSuffix(parsed.suffix)) return done(null, null);
        devices.mayActFor(client.id, parsed.deviceId).then(
          (ok) => done(null, ok ? { ...sub, qos: Math.min(sub.qos, 1) as 0 | 1 } : null),
          (err) => done(err as Error),
        );
      },
      published: (_packet, _client, done) => done(null),
    });

    this.broker.on('client', (client: HearthClient) => {
      const state: ConnState = { session: this.deps.presence.connected(client.id) };
      client[CONN] = state;
      this.track(state.session.catch((err) => log.error({ err, deviceId: client.id }, 'presence update on connect failed')));
    });
    this.broker.on('keepaliveTimeout', (client: HearthClient) => {
      if (client[CONN]) client[CONN].reason ??= 'keepalive-timeout';
    });
    this.broker.on('clientError', (client: HearthClient, err: Error) => {
      log.debug({ deviceId: client.id, err: err.message }, 'mqtt client error');
      if (client[CONN]) client[CONN].reason ??= err.message.includes('not allowed') ? 'client-error' : 'connection-lost';
    });
    this.broker.on('clientDisconnect', (client: HearthClient) => {
      const state = client[CONN];
      if (!state) return;
      const reason: PresenceReason = this.shuttingDown ? 'server-shutdown' : state.reason ?? (client._disconnected ? 'disconnect' : 'connection-lost');
      this.track(state.session
        .then((session) => this.deps.presence.disconnected(client.id, session, reason))
        .catch((err) => log.error({ err, deviceId: client.id }, 'presence update on disconnect failed')));
    });
    this.broker.on('subscribe', (subs, client) => {
      if (!client) return;
      for (const s of subs) {
        const parsed = parseDeviceTopic(s.topic);
        if (parsed && filterCoversDesired(parsed.suffix)) {
          this.publishUp({ id: this.ids.next(), deviceId: parsed.deviceId, via: client.id, kind: 'subscribed', topic: s.topic, payload: null, receivedAt: Date.now() })
            .catch((err) => log.warn({ err, deviceId: parsed.deviceId }, 'subscription notice could not be stored'));
        }
      }
    });

    this.unsubs.push(this.deps.bus.subscribe<DownlinkMessage>(subjects.allDown, (msg) => this.deliver(msg.data), { name: 'mqtt-gateway.downlink' }));

    const server = createServer({ noDelay: true }, (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      this.broker.handle(socket);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.deps.config.port, this.deps.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** The bound TCP port (useful when configured as 0). */
  get port(): number {
    const addr = this.server?.address();
    return typeof addr === 'object' && addr ? addr.port : this.deps.config.port;
  }

  get connectedClients(): number {
    return this.broker?.connectedClients ?? 0;
  }

  /** Serves one MQTT-over-WebSocket connection. */
  handleStream(stream: Duplex, req?: IncomingMessage): void {
    this.broker.handle(stream, req);
  }

  /** Sends a message to a device if it holds a subscription here. */
  deliver(msg: DownlinkMessage): void {
    this.deps.observer?.messageOut(msg.kind);
    const packet: PublishPacket = {
      cmd: 'publish',
      topic: downlinkTopic(msg.deviceId, msg.kind),
      payload: Buffer.from(JSON.stringify(msg.payload)),
      qos: 1,
      retain: false,
      dup: false,
    };
    this.broker.publish(packet, (err) => {
      if (err) this.deps.log.warn({ err, deviceId: msg.deviceId }, 'downlink publish failed');
    });
  }

  /**
   * Stops taking connections, then closes device connections at `disconnectRatePerSecond`
   * (presence: `server-shutdown`) so that they reconnect to other nodes without a stampede,
   * and waits until their presence is written, so the store can close after this.
   * `deadline` (epoch ms) cuts the pacing short: whatever is left then is closed at once.
   */
  async stop(deadline = Infinity): Promise<void> {
    this.shuttingDown = true;
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    if (this.broker) {
      const clients = Object.values((this.broker as unknown as { clients: Record<string, Client> }).clients);
      const perTick = Math.max(1, Math.ceil(this.deps.config.disconnectRatePerSecond / 20));
      for (let i = 0; i < clients.length; i += perTick) {
        if (Date.now() >= deadline) break;
        for (const c of clients.slice(i, i + perTick)) c.close();
        if (i + perTick < clients.length) await new Promise((r) => setTimeout(r, 50));
      }
      // Downlinks are delivered until the last paced close; then the broker closes whatever is left.
      for (const u of this.unsubs.splice(0)) u();
      await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    }
    for (const u of this.unsubs.splice(0)) u();
    for (const s of this.sockets) s.destroy();
    await closed;
    while (this.presenceWrites.size) await Promise.all([...this.presenceWrites]);
  }

  private track(p: Promise<unknown>): void {
    this.presenceWrites.add(p);
    void p.finally(() => this.presenceWrites.delete(p));
  }

  /** Checks and stores one device publish; undefined when it was rejected (the device hears why). */
  private ingest(client: HearthClient, deviceId: string, kind: UplinkKind, packet: PublishPacket): Promise<void> | undefined {
    this.deps.observer?.messageIn(kind);
    const raw = packet.payload as Buffer;
    if (raw.length > this.deps.config.maxPayloadBytes) {
      this.error(deviceId, { code: 'E_PAYLOAD_TOO_LARGE', message: `payload of ${raw.length} bytes exceeds the limit of ${this.deps.config.maxPayloadBytes}`, topic: packet.topic });
      return undefined;
    }
    let payload: unknown;
    try {
      payload = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      this.error(deviceId, { code: 'E_BAD_JSON', message: `payload is not valid JSON: ${(err as Error).message}`, topic: packet.topic });
      return undefined;
    }
    // MQTT 3.1.1 has no headers: a device may put its W3C trace context in the JSON object itself.
    let carrier: Record<string, string> | undefined;
    if (typeof payload === 'object' && payload !== null && typeof (payload as { traceparent?: unknown }).traceparent === 'string') {
      const { traceparent, tracestate, ...rest } = payload as Record<string, unknown>;
      carrier = { traceparent: traceparent as string, ...(typeof tracestate === 'string' ? { tracestate } : {}) };
      payload = rest;
    }
    const msg: UplinkMessage = { id: this.ids.next(), deviceId, via: client.id, kind, topic: packet.topic, payload, receivedAt: Date.now() };
    if (!tracingEnabled()) return this.publishUp(msg);
    const span = startSpan(`mqtt receive ${kind}`, { 'hearth.device.id': deviceId, 'messaging.system': 'mqtt', 'messaging.destination.name': packet.topic }, carrier, SpanKind.PRODUCER);
    msg.trace = injectTrace({}, span);
    return runWithSpan(span, () => this.publishUp(msg)).then(
      () => span.end(),
      (err) => {
        recordError(span, err);
        span.end();
        throw err;
      },
    );
  }

  private publishUp(msg: UplinkMessage): Promise<void> {
    return this.deps.bus.publishDurable(subjects.up(shardOf(msg.deviceId, this.deps.config.shards), msg.deviceId, msg.kind), msg, { msgId: msg.id });
  }

  private error(deviceId: string, payload: DeviceErrorPayload): void {
    this.deps.observer?.messageRejected(payload.code);
    this.deliver({ deviceId, kind: 'errors', payload });
  }
}
