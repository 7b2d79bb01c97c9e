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
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../../core/json-limits.ts';
import { PacketGuard, PacketRefusedError, type PacketLimits, type Refusal, type TruncatedPublish } from './packet-guard.ts';
import { downlinkTopic, filterCoversDesired, isAllowedSubscriptionSuffix, parseDeviceTopic, uplinkKind } from './topic-codec.ts';

export interface MqttGatewayConfig {
  port: number;
  host: string;
  maxPayloadBytes: number;
  /** Largest packet before CONNACK (the CONNECT with its credentials and will). */
  connectMaxBytes: number;
  /** A CONNECT that has not fully arrived after this long closes the connection (slow-loris). */
  connectTimeoutMs: number;
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

/**
 * Why a connection was refused: bad credentials, over the connect rate, shutting down, a protocol
 * other than MQTT 3.1.1, a packet over the size limit or with a malformed header before CONNACK,
 * or a CONNECT that did not arrive in time.
 */
export type ConnectionRefusal = 'auth' | 'admission' | 'shutdown' | 'protocol' | 'too-large' | 'malformed' | 'timeout';

/** Counters the gateway reports (the metrics module implements them). */
export interface GatewayObserver {
  messageIn(kind: string): void;
  messageOut(kind: string): void;
  messageRejected(code: string): void;
  connectionRefused(reason: ConnectionRefusal): void;
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
  private readonly limits: PacketLimits;

  constructor(private readonly deps: { bus: Bus; devices: DeviceService; presence: PresenceService; log: Logger; config: MqttGatewayConfig; observer?: GatewayObserver }) {
    this.admission = new RateLimiter({ perMinute: deps.config.connectRatePerSecond * 60, burst: deps.config.connectBurst });
    this.ids = new MessageIds(deps.config.nodeId, 'm');
    const { maxPayloadBytes, connectMaxBytes } = deps.config;
    // Other packets (a hub's SUBSCRIBE of all its children's topics) get at least 64 KiB.
    this.limits = { beforeConnack: connectMaxBytes, payload: maxPayloadBytes, packet: Math.max(maxPayloadBytes, 65_536) };
  }

  async start(): Promise<void> {
    const { devices, log } = this.deps;
    this.broker = await Aedes.createBroker({
      id: 'hearth',
      connectTimeout: this.deps.config.connectTimeoutMs,
      // Only MQTT 3.1.1 (protocol name "MQTT", level 4). Aedes itself refuses levels outside 3..4
      // with CONNACK 1 (unacceptable protocol version) but takes MQTT 3.1 ("MQIsdp", level 3) and
      // bridge mode (level 0x84); moving those out of its range gets them the same CONNACK 1.
      preConnect: (_client, packet, done) => {
        if (packet.protocolId !== 'MQTT' || packet.protocolVersion !== 4 || (packet as { bridgeMode?: boolean }).bridgeMode) {
          this.deps.observer?.connectionRefused('protocol');
          packet.protocolVersion = 0 as 4;
        }
        done(null, true);
      },
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
          async (ok) => {
            if (!ok) this.deps.observer?.connectionRefused('auth');
            // A disabled device with the right secret hears why (CONNACK 5); anyone else learns nothing.
            const disabled = !ok && (await devices.secretMatches(username, password.toString('utf8')).catch(() => false));
            done(ok ? null : disabled ? authError(5, 'device disabled') : authError(4, 'bad device id or secret'), ok);
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
            const truncated = packet.payload.length === 0 && client.conn instanceof PacketGuard
              ? client.conn.takeTruncated(packet.topic, packet.qos > 0 ? packet.messageId : undefined)
              : undefined;
            if (packet.retain) {
              // Retained messages are not part of the protocol: refused like any bad message, and
              // never stored by the broker (a retained publish would otherwise be kept in its
              // memory and replayed to every later subscriber, whatever the ingest decided).
              packet.retain = false;
              this.error(parsed.deviceId, { code: 'E_RETAIN_NOT_SUPPORTED', message: 'retained messages are not supported: publish with the retain flag off', topic: packet.topic });
              return done(null);
            }
            const stored = this.ingest(client as HearthClient, parsed.deviceId, kind, packet, truncated);
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
    // No path may store a retained message (authorizePublish clears the flag; this is the floor under it).
    (this.broker as unknown as { persistence: { storeRetained(packet: unknown): Promise<void> } }).persistence.storeRetained = async () => undefined;

    this.broker.on('connectionError', (_client: Client, err: Error) => {
      if (err.message === 'connect did not arrive in time') this.deps.observer?.connectionRefused('timeout');
    });

    this.broker.on('client', (client: HearthClient) => {
      // Emitted just before the CONNACK: from the next packet on, the admitted limits apply.
      if (client.conn instanceof PacketGuard) client.conn.admit();
      const state: ConnState = { session: this.deps.presence.connected(client.id) };
      client[CONN] = state;
      this.track(state.session.catch((err) => log.error({ err, deviceId: client.id }, 'presence update on connect failed')));
    });
    this.broker.on('keepaliveTimeout', (client: HearthClient) => {
      if (client[CONN]) client[CONN].reason ??= 'keepalive-timeout';
    });
    this.broker.on('clientError', (client: HearthClient, err: Error) => {
      log.debug({ deviceId: client.id, err: err.message }, 'mqtt client error');
      if (client[CONN]) client[CONN].reason ??= err instanceof PacketRefusedError || err.message.includes('not allowed') ? 'client-error' : 'connection-lost';
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

    this.unsubs.push(this.deps.bus.subscribe(subjects.allDown, (msg) => this.deliver(msg.data), { name: 'mqtt-gateway.downlink' }));

    const server = createServer({ noDelay: true }, (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      this.broker.handle(this.guard(socket));
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
    this.broker.handle(this.guard(stream), req);
  }

  /** Puts the packet guard between a connection and the broker's parser. */
  private guard(conn: Duplex): PacketGuard {
    return new PacketGuard(conn, this.limits, { refused: (r) => this.refused(r) });
  }

  private refused(r: Refusal): void {
    this.deps.log.info({ reason: r.reason, packetType: r.type, remaining: r.remaining, admitted: r.admitted }, 'mqtt connection cut off by the packet guard');
    if (r.admitted) this.deps.observer?.messageRejected(r.reason === 'too-large' ? 'E_PAYLOAD_TOO_LARGE' : 'E_BAD_MESSAGE');
    else this.deps.observer?.connectionRefused(r.reason === 'too-large' ? 'too-large' : 'malformed');
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
   * Closes the connections of these devices held by this node (a device disabled or deleted by
   * the operator); their presence changes with `reason`. Devices not connected here are skipped.
   */
  disconnect(deviceIds: readonly string[], reason: 'disabled' | 'deleted'): void {
    const clients = (this.broker as unknown as { clients: Record<string, HearthClient> } | undefined)?.clients;
    if (!clients) return;
    for (const id of deviceIds) {
      const c = clients[id];
      if (!c) continue;
      if (c[CONN]) c[CONN].reason = reason;
      c.close();
    }
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
  private ingest(client: HearthClient, deviceId: string, kind: UplinkKind, packet: PublishPacket, truncated?: TruncatedPublish): Promise<void> | undefined {
    this.deps.observer?.messageIn(kind);
    const raw = packet.payload as Buffer;
    // A payload over the limit was skipped by the packet guard as it arrived (`truncated`); the check on `raw` covers wills.
    const size = truncated?.payloadBytes ?? raw.length;
    if (size > this.deps.config.maxPayloadBytes) {
      this.error(deviceId, { code: 'E_PAYLOAD_TOO_LARGE', message: `payload of ${size} bytes exceeds the limit of ${this.deps.config.maxPayloadBytes}`, topic: packet.topic });
      return undefined;
    }
    let payload: unknown;
    try {
      payload = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      this.error(deviceId, { code: 'E_BAD_JSON', message: `payload is not valid JSON: ${(err as Error).message}`, topic: packet.topic });
      return undefined;
    }
    if (jsonDepthExceeds(payload, MAX_JSON_DEPTH)) {
      this.error(deviceId, { code: 'E_BAD_MESSAGE', message: `payload nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`, topic: packet.topic });
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
