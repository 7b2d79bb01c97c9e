import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Aedes, type Client, type AuthenticateError, type PublishPacket } from 'aedes';
import type { Bus, Unsubscribe } from '../../core/bus/bus.ts';
import { subjects, type DownlinkMessage, type DeviceErrorPayload, type UplinkKind, type UplinkMessage } from '../../core/bus/subjects.ts';
import { shardOf } from '../../core/cluster/shards.ts';
import { broadcast, type Broadcast } from '../../core/cluster/broadcast.ts';
import { RateLimiter } from '../../core/rate-limiter.ts';
import { MessageIds } from '../../core/ids.ts';
import { injectTrace, recordError, runWithSpan, SpanKind, startSpan, tracingEnabled } from '../../core/observability/tracing.ts';
import type { Logger } from '../../core/logger.ts';
import type { DeviceService } from '../../devices/device-service.ts';
import type { PresenceReason, PresenceService } from '../../devices/presence-service.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../../core/json-limits.ts';
import { UplinkBatcher } from './uplink-batcher.ts';
import { leanMqttParsers } from './lean-parser.ts';
import { guardOf, guardSocket, PacketGuard, PacketRefusedError, type PacketLimits, type Refusal, type TruncatedPublish } from './packet-guard.ts';
import type { TlsMaterial } from '../tls/tls-material.ts';
import type { X509Certificate } from 'node:crypto';
import { digestToken } from '../../core/secrets.ts';
import {
  downlinkTopic,
  filterCoversCommands,
  filterCoversDesired,
  filterCoversOta,
  isAllowedSubscriptionSuffix,
  parseDeviceTopic,
  uplinkKind,
} from './topic-codec.ts';

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
  /** Uplinks of a shard stored as one batch at most (default MAX_BATCH; 1: each alone). */
  uplinkBatchMax?: number;
  /** MQTT over TLS on this port when `tls` material is given (0: a free port). */
  tlsPort?: number;
  /** Whether the plain TCP port is opened (default true). */
  plain?: boolean;
}

/**
 * Why a connection was refused: bad credentials, over the connect rate, shutting down, a protocol
 * other than MQTT 3.1.1, a packet over the size limit or with a malformed header before CONNACK,
 * or a CONNECT that did not arrive in time.
 */
export type ConnectionRefusal = 'auth' | 'admission' | 'shutdown' | 'protocol' | 'too-large' | 'malformed' | 'timeout';

/** Counters the gateway reports (the metrics module implements them). */
export interface MqttObserver {
  messageIn(kind: string): void;
  messageOut(kind: string): void;
  messageRejected(code: string): void;
  connectionRefused(reason: ConnectionRefusal): void;
}

/** How a session authenticated, kept to check it again when credentials change (rotation, revocation). */
export interface SessionCredential {
  /** A secret's digest (never the secret). */
  secretDigest?: string;
  certificate?: { fingerprint: string; caId: string };
}

/** Device identity beyond a secret (client certificates, provisioning): decided outside the transport. */
export interface DeviceIdentityHooks {
  /** Who a TLS client certificate is; `name` is the MQTT client id the device sent. */
  authenticateCertificate(
    name: string,
    cert: X509Certificate,
  ): Promise<({ ok: true; deviceId: string } & SessionCredential['certificate']) | { ok: false; reason: string }>;
  /** Whether a session's credential still holds. */
  stillValid(deviceId: string, credential: SessionCredential): Promise<boolean>;
  /** A zero-touch provisioning request over MQTT (`provision/{hwid}/request`): the answer to send back. */
  provision(hwid: string, payload: unknown): Promise<unknown>;
}

/** The user name of a provisioning session (no device yet; it may only use `provision/{client id}/…`). */
export const PROVISION_USERNAME = 'provision';
/** A hardware id as a provisioning session's client id: one MQTT topic level, no wildcards. */
const HWID = /^[A-Za-z0-9._:@-]{1,128}$/;

/** Identity state of a connection: its credential, and the name it connected with when that is not its device id. */
interface IdentityState {
  credential?: SessionCredential;
  /** A certificate session named by a hardware id, or a provisioning session (`provisioning`). */
  name?: string;
  provisioning?: boolean;
}

/** Per-connection state, kept off Aedes' own fields. */
interface ConnState {
  session: Promise<number>;
  reason?: PresenceReason;
}

const CONN = Symbol('hearth.conn');
const IDENTITY = Symbol('hearth.identity');
type HearthClient = Client & { [CONN]?: ConnState; [IDENTITY]?: IdentityState; _disconnected?: boolean };

function authError(code: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode: code }) as AuthenticateError;
}

/**
 * Aedes' message emitter (mqemitter) holds messages beyond `concurrency` deliveries in flight in a
 * queue, and drains it recursively: each queued message that completes at once (an uplink nobody
 * subscribes to: all of them) releases the next on the same stack. A burst of thousands of
 * downlinks (a firmware wave's jobs) with uplinks arriving behind them overflowed the stack and
 * crashed the process. 0 turns the limit off: the messages were in memory either way.
 */
export const BROKER_CONCURRENCY = 0;

/**
 * The device edge: an embedded Aedes broker (MQTT 3.1.1 over TCP and WebSocket) that
 * authenticates devices, enforces per-device topic ACLs, turns device publishes into bus
 * uplink messages and bus downlink messages into publishes. It decides nothing else.
 */
export class MqttGateway {
  private broker!: Aedes;
  private server: Server | undefined;
  private tlsServer: TlsServer | undefined;
  private readonly unsubs: Unsubscribe[] = [];
  private shuttingDown = false;
  private readonly sockets = new Set<Socket>();
  /** Presence updates still being written; stop() waits for them before the store closes. */
  private readonly presenceWrites = new Set<Promise<unknown>>();
  private readonly admission: RateLimiter;
  private readonly ids: MessageIds;
  /** Uplinks received in the same turn go to the stream together (see UplinkBatcher). */
  private readonly uplinks: UplinkBatcher;
  private readonly limits: PacketLimits;
  private sessionMoved: Broadcast<{ clientId: string }> | undefined;
  /** The client certificate of each TLS connection that presented one (keyed by the guarded stream Aedes sees). */
  private readonly peerCerts = new WeakMap<Duplex, X509Certificate>();
  /** Re-checks of sessions due when a rotated secret's grace ends. */
  private readonly rechecks = new Set<NodeJS.Timeout>();

  constructor(
    private readonly deps: {
      bus: Bus;
      devices: DeviceService;
      presence: PresenceService;
      log: Logger;
      config: MqttGatewayConfig;
      observer?: MqttObserver;
      tls?: TlsMaterial;
      identity?: DeviceIdentityHooks;
      /** Where sessions with clean=false live (store-persistence.ts); Aedes' in-memory one without it. */
      persistence?: object & { forget?(clientId: string): Promise<void> };
    },
  ) {
    this.admission = new RateLimiter({ perMinute: deps.config.connectRatePerSecond * 60, burst: deps.config.connectBurst });
    this.ids = new MessageIds(deps.config.nodeId, 'm');
    this.uplinks = new UplinkBatcher(deps.bus, deps.config.uplinkBatchMax);
    const { maxPayloadBytes, connectMaxBytes } = deps.config;
    // Other packets (a hub's SUBSCRIBE of all its children's topics) get at least 64 KiB.
    this.limits = { beforeConnack: connectMaxBytes, payload: maxPayloadBytes, packet: Math.max(maxPayloadBytes, 65_536) };
  }

  async start(): Promise<void> {
    const { devices, log } = this.deps;
    leanMqttParsers();
    this.broker = await Aedes.createBroker({
      id: 'hearth',
      concurrency: BROKER_CONCURRENCY,
      connectTimeout: this.deps.config.connectTimeoutMs,
      ...(this.deps.persistence ? { persistence: this.deps.persistence } : {}),
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
        const identity = this.deps.identity;
        if (identity && (username === PROVISION_USERNAME || (!password && this.peerCerts.has(client.conn as Duplex)))) {
          this.authenticateIdentity(identity, client as HearthClient, username, done);
          return;
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
        const secret = password.toString('utf8');
        const secretDigest = digestToken(secret);
        devices.authenticate(username, secret, secretDigest).then(
          async (ok) => {
            if (!ok) this.deps.observer?.connectionRefused('auth');
            else (client as HearthClient)[IDENTITY] = { credential: { secretDigest } };
            // A disabled device with the right secret hears why (CONNACK 5); anyone else learns nothing.
            const disabled = !ok && (await devices.secretMatches(username, secret).catch(() => false));
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
        if ((client as HearthClient)[IDENTITY]?.provisioning) return this.provisionRequest(client as HearthClient, packet, done);
        const parsed = parseDeviceTopic(packet.topic);
        const kind = parsed && uplinkKind(parsed.suffix);
        if (!parsed || !kind) return done(new Error(`publish to ${packet.topic} not allowed`));
        devices.mayActFor(client.id, parsed.deviceId).then(
          (ok) => {
            if (!ok) return done(new Error(`publish to ${packet.topic} not allowed`));
            const truncated =
              packet.payload.length === 0 ? guardOf(client.conn)?.takeTruncated(packet.topic, packet.qos > 0 ? packet.messageId : undefined) : undefined;
            if (packet.retain) {
              // Retained messages are not part of the protocol: refused like any bad message, and
              // never stored by the broker (a retained publish would otherwise be kept in its
              // memory and replayed to every later subscriber, whatever the ingest decided).
              packet.retain = false;
              this.error(parsed.deviceId, {
                code: 'E_RETAIN_NOT_SUPPORTED',
                message: 'retained messages are not supported: publish with the retain flag off',
                topic: packet.topic,
              });
              return done(null);
            }
            const stored = this.ingest(client as HearthClient, parsed.deviceId, kind, packet, truncated);
            if (!stored) return done(null);
            stored.then(
              () => done(null),
              (err) => {
                log.warn({ err, deviceId: parsed.deviceId }, 'uplink could not be stored; closing the connection so the device retries');
                done(err as Error);
              },
            );
          },
          (err) => done(err as Error),
        );
      },
      // A refused filter is granted 0x80 (done(null, null)); an error would close the connection.
      authorizeSubscribe: (client, sub, done) => {
        const named = (client as HearthClient)[IDENTITY];
        if (named?.name !== undefined && sub.topic === provisionTopic(named.name, 'response')) return done(null, { ...sub, qos: 1 });
        if (named?.provisioning) return done(null, null);
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
      guardOf(client.conn)?.admit();
      // A provisioning session is no device: no presence.
      if (client[IDENTITY]?.provisioning) return;
      const state: ConnState = { session: this.deps.presence.connected(client.id) };
      client[CONN] = state;
      if (!client.clean) {
        // A session with clean=false came back with its subscriptions: as good as subscribing again.
        this.subscribed(client, Object.keys((client as unknown as { subscriptions: Record<string, unknown> }).subscriptions ?? {}));
        // The node it was on before stops keeping (and storing messages for) its copy.
        void this.sessionMoved?.send({ clientId: client.id });
      }
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
      const reason: PresenceReason = this.shuttingDown ? 'server-shutdown' : (state.reason ?? (client._disconnected ? 'disconnect' : 'connection-lost'));
      this.track(
        state.session
          .then((session) => this.deps.presence.disconnected(client.id, session, reason))
          .catch((err) => log.error({ err, deviceId: client.id }, 'presence update on disconnect failed')),
      );
    });
    this.broker.on('subscribe', (subs, client) => {
      if (!client) return;
      // A certificate session named by its hardware id learns its device id on its provisioning topic.
      const named = (client as HearthClient)[IDENTITY];
      if (named?.name !== undefined && !named.provisioning && subs.some((s) => s.topic === provisionTopic(named.name!, 'response'))) {
        this.publishTo(provisionTopic(named.name, 'response'), { id: client.id, hwid: named.name });
      }
      this.subscribed(
        client,
        subs.map((s) => s.topic),
      );
    });

    this.unsubs.push(this.deps.bus.subscribe(subjects.allDown, (msg) => this.deliver(msg.data), { name: 'mqtt-gateway.downlink' }));
    const forget = this.deps.persistence?.forget?.bind(this.deps.persistence);
    if (forget) {
      const moved = broadcast(this.deps.bus, 'cluster.mqtt.session', ({ clientId }) => {
        const here = (this.broker as unknown as { clients: Record<string, Client | undefined> }).clients[clientId];
        if (!here) return forget(clientId).catch((err) => log.warn({ err, deviceId: clientId }, 'session copy could not be forgotten'));
      });
      moved.open();
      this.sessionMoved = moved;
      this.unsubs.push(() => moved.close());
    }

    if (this.deps.config.plain !== false) {
      const server = createServer({ noDelay: true }, (socket) => {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        this.broker.handle(this.guardSocket(socket));
      });
      this.server = server;
      await listen(server, this.deps.config.port, this.deps.config.host);
    }
  }

  /**
   * Opens MQTT over TLS (TLS 1.2 at least) when TLS material and a port are configured. A client
   * certificate is asked for but not required (devices with a secret connect without one); it is
   * checked when the device authenticates. The handshake must end within the CONNECT timeout, and
   * the packet guard sits behind the TLS layer as on the plain port. A reloaded certificate is
   * served to the connections that come after it.
   */
  async startTls(): Promise<void> {
    const tls = this.deps.tls;
    const port = this.deps.config.tlsPort;
    if (!tls || port === undefined) return;
    const server = createTlsServer(
      {
        ...tls.serverOptions(),
        noDelay: true,
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: this.deps.config.connectTimeoutMs,
      },
      (socket: TLSSocket) => {
        const guarded = this.guardSocket(socket);
        const cert = socket.getPeerX509Certificate();
        if (cert) this.peerCerts.set(guarded, cert);
        this.broker.handle(guarded);
      },
    );
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('tlsClientError', (err: Error) => {
      this.deps.log.debug({ err: err.message }, 'mqtt tls handshake failed');
      this.deps.observer?.connectionRefused('protocol');
    });
    this.unsubs.push(tls.onChange(() => server.setSecureContext(tls.serverOptions())));
    this.tlsServer = server;
    await listen(server, port, this.deps.config.host);
  }

  /** The bound TLS port (undefined without TLS). */
  get tlsPort(): number | undefined {
    const addr = this.tlsServer?.address();
    return typeof addr === 'object' && addr ? addr.port : undefined;
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

  /** The same guard on a TCP or TLS socket itself (no stream in between); the broker reads the socket. */
  private guardSocket(socket: Socket): Socket {
    guardSocket(socket, this.limits, this.guardHooks);
    return socket;
  }

  private readonly guardHooks = { refused: (r: Refusal) => this.refused(r) };

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
    for (const t of this.rechecks) clearTimeout(t);
    this.rechecks.clear();
    const closed = Promise.all(
      [this.server, this.tlsServer].map((srv) => new Promise<void>((resolve) => (srv?.listening ? srv.close(() => resolve()) : resolve()))),
    );
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

  /** Tells the shard owner which waiting downlinks (desired state, queued commands) the client can now take. */
  private subscribed(client: Client, topics: string[]): void {
    for (const topic of topics) {
      const parsed = parseDeviceTopic(topic);
      if (!parsed) continue;
      const desired = filterCoversDesired(parsed.suffix);
      const commands = filterCoversCommands(parsed.suffix);
      const ota = filterCoversOta(parsed.suffix);
      if (desired || commands || ota) {
        this.publishUp({
          id: this.ids.next(),
          deviceId: parsed.deviceId,
          via: client.id,
          kind: 'subscribed',
          topic,
          payload: { desired, commands, ota },
          receivedAt: Date.now(),
        }).catch((err) => this.deps.log.warn({ err, deviceId: parsed.deviceId }, 'subscription notice could not be stored'));
      }
    }
  }

  /**
   * A client certificate (without a password) or a provisioning session. A certificate session's
   * client id is the name in its certificate: a device id, or a hardware id (then the session
   * becomes its device's, and the device learns its id on `provision/{name}/response`). A
   * provisioning session (user name `provision`, client id a hardware id) may only send a request
   * and hear its answer; it gets its own client id space, so it can never take over a device's session.
   */
  private authenticateIdentity(
    identity: DeviceIdentityHooks,
    client: HearthClient,
    username: string | undefined,
    done: (err: AuthenticateError | null, ok: boolean) => void,
  ): void {
    if (!this.admission.take('connect').ok) {
      this.deps.observer?.connectionRefused('admission');
      return done(authError(3, 'server busy, retry later'), false);
    }
    const name = client.id;
    if (username === PROVISION_USERNAME) {
      if (!HWID.test(name)) {
        this.deps.observer?.connectionRefused('auth');
        return done(authError(2, "a provisioning session's client id is the hardware id (letters, digits, . _ : @ -, up to 128)"), false);
      }
      client[IDENTITY] = { name, provisioning: true };
      client.id = `provision:${name}`;
      return done(null, true);
    }
    const cert = this.peerCerts.get(client.conn as Duplex)!;
    if (!name || (username !== undefined && username !== name)) {
      this.deps.observer?.connectionRefused('auth');
      return done(authError(2, 'with a client certificate the client id (and the user name, if any) is a name in the certificate'), false);
    }
    identity.authenticateCertificate(name, cert).then(
      (r) => {
        if (!r.ok) {
          this.deps.observer?.connectionRefused('auth');
          this.deps.log.info({ clientId: name, fingerprint: cert.fingerprint256, reason: r.reason }, 'device certificate refused');
          return done(authError(5, r.reason), false);
        }
        client[IDENTITY] = { credential: { certificate: { fingerprint: r.fingerprint, caId: r.caId } }, ...(r.deviceId !== name ? { name } : {}) };
        client.id = r.deviceId;
        done(null, true);
      },
      (err) => {
        this.deps.log.error({ err }, 'device certificate authentication failed');
        done(authError(3, 'server unavailable'), false);
      },
    );
  }

  /** A provisioning session's publish: only its request topic; the answer goes to its response topic. */
  private provisionRequest(client: HearthClient, packet: PublishPacket, done: (err?: Error | null) => void): void {
    const name = client[IDENTITY]!.name!;
    if (packet.topic !== provisionTopic(name, 'request')) return done(new Error(`publish to ${packet.topic} not allowed`));
    packet.retain = false;
    let payload: unknown;
    try {
      payload = JSON.parse((packet.payload as Buffer).toString('utf8'));
    } catch {
      payload = undefined;
    }
    this.deps.identity!.provision(name, payload).then(
      (answer) => {
        done(null);
        this.publishTo(provisionTopic(name, 'response'), answer);
      },
      (err) => {
        this.deps.log.error({ err, hwid: name }, 'provisioning over MQTT failed');
        done(null);
        this.publishTo(provisionTopic(name, 'response'), { error: { code: 'E_INTERNAL', message: 'the request could not be completed' } });
      },
    );
  }

  private publishTo(topic: string, payload: unknown): void {
    this.broker.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(payload)), qos: 1, retain: false, dup: false }, (err) => {
      if (err) this.deps.log.warn({ err, topic }, 'publish failed');
    });
  }

  /**
   * Checks the sessions of these devices (all devices: undefined) against their credentials now,
   * or at `at` (epoch ms: when a rotated secret's grace ends), and closes those whose credential
   * no longer holds (presence reason `credentials-revoked`). `only` limits it to sessions opened
   * with a certificate (a CA or revocation changed) or a secret.
   */
  recheckSessions(deviceIds?: readonly string[], at?: number, only?: 'certificate' | 'secret'): void {
    const identity = this.deps.identity;
    if (!identity || !this.broker) return;
    const wait = at === undefined ? 0 : Math.max(0, at - Date.now());
    if (wait > 0) {
      const t = setTimeout(
        () => {
          this.rechecks.delete(t);
          this.recheckSessions(deviceIds, undefined, only);
        },
        Math.min(wait, 2 ** 31 - 1) + 5,
      );
      t.unref();
      this.rechecks.add(t);
      return;
    }
    const all = (this.broker as unknown as { clients: Record<string, HearthClient> }).clients;
    const clients = deviceIds ? deviceIds.flatMap((id) => (all[id] ? [all[id]] : [])) : Object.values(all);
    for (const client of clients) {
      const credential = client[IDENTITY]?.credential;
      if (!credential || (only === 'certificate' && !credential.certificate) || (only === 'secret' && !credential.secretDigest)) continue;
      identity.stillValid(client.id, credential).then(
        (ok) => {
          if (ok || client.closed) return;
          if (client[CONN]) client[CONN].reason = 'credentials-revoked';
          this.deps.log.info({ deviceId: client.id }, 'session closed: its credential was revoked or rotated out');
          client.close();
        },
        (err) => this.deps.log.warn({ err, deviceId: client.id }, 'session credential check failed'),
      );
    }
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
      this.error(deviceId, {
        code: 'E_PAYLOAD_TOO_LARGE',
        message: `payload of ${size} bytes exceeds the limit of ${this.deps.config.maxPayloadBytes}`,
        topic: packet.topic,
      });
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
    const span = startSpan(
      `mqtt receive ${kind}`,
      { 'hearth.device.id': deviceId, 'messaging.system': 'mqtt', 'messaging.destination.name': packet.topic },
      carrier,
      SpanKind.PRODUCER,
    );
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
    return this.uplinks.add(shardOf(msg.deviceId, this.deps.config.shards), msg);
  }

  private error(deviceId: string, payload: DeviceErrorPayload): void {
    this.deps.observer?.messageRejected(payload.code);
    this.deliver({ deviceId, kind: 'errors', payload });
  }
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** `provision/{name}/request` (device → Hearth) and `provision/{name}/response` (Hearth → device). */
export function provisionTopic(name: string, dir: 'request' | 'response'): string {
  return `provision/${name}/${dir}`;
}
