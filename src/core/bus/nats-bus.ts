import {
  connect,
  headers as natsHeaders,
  nanos,
  ClosedConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
} from '@nats-io/transport-node';
import {
  jetstreamManager,
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  StorageType,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { Logger } from '../logger.ts';
import {
  BusError,
  type Bus,
  type BusEngine,
  type BusHandler,
  type BusMessage,
  type Consumer,
  type ConsumerOptions,
  type DurableHandler,
  type DurableMessage,
  type DurablePublishOptions,
  type PublishOptions,
  type RequestOptions,
  type StreamConfig,
  type SubscribeOptions,
  type Unsubscribe,
} from './bus.ts';

const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** JetStream API error codes the bus reacts to. */
const STREAM_NAME_IN_USE = 10058;
const CONSUMER_NAME_IN_USE = 10013;
const CONSUMER_EXISTS = 10148;
/** How long `publishDurable` waits for a lost connection to come back before it gives up. */
const RECONNECT_WAIT_MS = 10_000;
/** How long `close()` waits for the connection to drain before cutting it (the server may be unreachable). */
const DRAIN_TIMEOUT_MS = 5_000;
/** A consume loop that died (consumer deleted, server lost its store) is restarted after this. */
const RESTART_DELAY_MS = 1_000;
/** Messages asked for per pull request; capped by maxInFlight. Not a delay: the server sends each as soon as it is stored. */
const PULL_BATCH = 100;
/** Rounds of `flush()` while handlers keep publishing, so a steady publisher cannot hold it forever. */
const FLUSH_ROUNDS = 10;

/** What `NatsBus.connect` needs; in the app these come from the `natsUrl` and `nodeName` config keys. */
export interface NatsBusOptions {
  /** Comma-separated server URLs (`nats://host:4222,nats://other:4222`). */
  servers: string;
  log: Logger;
  /** Connection name shown by the server (`nats server report connections`); the node name is a good one. */
  name?: string;
}

function encode(data: unknown): string | undefined {
  return data === undefined ? undefined : JSON.stringify(data);
}

function decode(msg: Msg | JsMsg): unknown {
  return msg.data.length === 0 ? undefined : msg.json();
}

function toNatsHeaders(h: Record<string, string> | undefined): MsgHdrs | undefined {
  if (!h) return undefined;
  const out = natsHeaders();
  for (const k in h) out.set(k, h[k]);
  return out;
}

/** `Nats-*` headers are the server's own (message ids, status); the bus keeps them to itself. */
function fromNatsHeaders(h: MsgHdrs | undefined): Readonly<Record<string, string>> {
  if (!h) return EMPTY_HEADERS;
  let out: Record<string, string> | undefined;
  for (const k of h.keys()) {
    if (k.startsWith('Nats-')) continue;
    (out ??= {})[k] = h.get(k);
  }
  return out ?? EMPTY_HEADERS;
}

function isNoResponders(err: unknown): boolean {
  return err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders());
}

function isClosedError(err: unknown): boolean {
  return err instanceof ClosedConnectionError || err instanceof DrainingConnectionError;
}

/**
 * The bus of cluster mode: core subjects are plain NATS subscriptions (queue groups included),
 * durable streams and consumers are JetStream (file storage, pull consumers with explicit acks).
 * Data travels as JSON; headers are NATS headers, except `Nats-*` ones, which NATS reserves.
 *
 * The connection reconnects forever and consume loops resume after a server restart (a consumer
 * or stream the server lost is declared again), so a NATS outage delays durable messages but
 * never ends a subscription. Core messages published during an outage are lost, as NATS core is
 * at most once: what must arrive goes through `publishDurable`. Handlers' errors are logged with
 * the subscriber's name and never reach NATS, as with MemoryBus.
 */
export class NatsBus implements BusEngine, Bus {
  private pending = 0;
  private idleWaiters: Array<() => void> = [];
  /** Bumped by every publish of this process, so `flush()` sees handlers that published more. */
  private published = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly loops = new Set<Consumer>();
  /** Kept to declare a stream again should the server lose its store. */
  private readonly streams = new Map<string, StreamConfig>();
  /** Set while the connection is lost; resolves when it is back. */
  private reconnected: { promise: Promise<void>; resolve: () => void } | undefined;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    private readonly log: Logger,
  ) {}

  /** Connects and checks that JetStream is enabled; rejects when the servers cannot be reached. */
  static async connect(opts: NatsBusOptions): Promise<NatsBus> {
    const log = opts.log;
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: opts.servers.split(',').map((s) => s.trim()),
        name: opts.name,
        maxReconnectAttempts: -1,
        // No stack captured at every request (each durable publish is one) for an error that
        // almost never comes: a tenth of a node's CPU under ingest load.
        noAsyncTraces: true,
      });
    } catch (err) {
      throw new Error(`cannot connect to NATS at ${opts.servers}: ${(err as Error).message}`, { cause: err });
    }
    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(nc);
    } catch (err) {
      await nc.close();
      throw new Error(`NATS at ${opts.servers} has no JetStream (start nats-server with -js): ${(err as Error).message}`, { cause: err });
    }
    const bus = new NatsBus(nc, jsm, jsm.jetstream(), log);
    void bus.watchConnection();
    return bus;
  }

  private async watchConnection(): Promise<void> {
    for await (const s of this.nc.status()) {
      switch (s.type) {
        case 'disconnect': {
          this.log.warn({ server: s.server }, 'NATS disconnected; reconnecting');
          let resolve!: () => void;
          this.reconnected ??= { promise: new Promise<void>((r) => (resolve = r)), resolve };
          break;
        }
        case 'reconnect':
          this.log.warn({ server: s.server }, 'NATS reconnected');
          this.reconnected?.resolve();
          this.reconnected = undefined;
          break;
        case 'ldm':
          this.log.warn({ server: s.server }, 'NATS server is entering lame duck mode');
          break;
        case 'slowConsumer':
          this.log.warn({ subject: s.sub.getSubject() }, 'NATS subscription is a slow consumer: messages are being dropped');
          break;
        case 'error':
          this.log.error({ err: s.error }, 'NATS connection error');
          break;
      }
    }
  }

  publish(subject: string, data: unknown, opts?: PublishOptions): void {
    this.send(subject, data, opts?.headers);
  }

  private send(subject: string, data: unknown, headers: Record<string, string> | undefined, reply?: string): void {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    try {
      this.nc.publish(subject, encode(data), { headers: toNatsHeaders(headers), reply });
    } catch (err) {
      if (isClosedError(err)) throw new BusError('CLOSED', 'bus is closed');
      throw err;
    }
    this.published++;
  }

  subscribe<T>(pattern: string, handler: BusHandler<T>, opts: SubscribeOptions = {}): Unsubscribe {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    const name = opts.name ?? pattern;
    const sub = this.nc.subscribe(pattern, {
      queue: opts.queue,
      callback: (err, msg) => {
        if (err) {
          this.log.error({ err, subscriber: name }, 'bus subscription failed');
          return;
        }
        this.run(name, msg.subject, () => {
          const reply = msg.reply;
          const m: BusMessage<T> = {
            subject: msg.subject,
            data: decode(msg) as T,
            headers: fromNatsHeaders(msg.headers),
            respond: reply ? (data, headers) => this.send(reply, data, headers) : undefined,
          };
          return handler(m);
        });
      },
    });
    return () => {
      if (!sub.isClosed()) sub.unsubscribe();
    };
  }

  async request<R>(subject: string, data: unknown, opts: RequestOptions = {}): Promise<R> {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    const timeoutMs = opts.timeoutMs ?? 5000;
    try {
      const reply = await this.nc.request(subject, encode(data), { timeout: timeoutMs, headers: toNatsHeaders(opts.headers) });
      return decode(reply) as R;
    } catch (err) {
      if (err instanceof TimeoutError) throw new BusError('TIMEOUT', `request to ${subject} timed out after ${timeoutMs} ms`);
      if (isNoResponders(err)) {
        throw new BusError('NO_RESPONDERS', `no responders for ${subject}`);
      }
      if (isClosedError(err)) throw new BusError('CLOSED', 'bus is closed');
      throw err;
    }
  }

  async ensureStream(cfg: StreamConfig): Promise<void> {
    this.streams.set(cfg.name, cfg);
    const sc = {
      name: cfg.name,
      subjects: cfg.subjects,
      storage: StorageType.File,
      max_age: nanos(cfg.maxAgeMs ?? 24 * 3600_000),
      duplicate_window: nanos(cfg.duplicateWindowMs ?? 120_000),
    };
    try {
      await this.jsm.streams.add(sc);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === STREAM_NAME_IN_USE)) throw err;
      await this.jsm.streams.update(cfg.name, sc);
    }
  }

  /**
   * Waits out a lost connection (up to RECONNECT_WAIT_MS): the client drops what is written while
   * it is disconnected, so publishing then would only time out. A TIMEOUT error means the server
   * may or may not have stored the message; publishing again with the same `msgId` is safe.
   */
  async publishDurable(subject: string, data: unknown, opts: DurablePublishOptions = {}): Promise<void> {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    if (this.reconnected) {
      let timer: NodeJS.Timeout | undefined;
      const back = await Promise.race([
        this.reconnected.promise.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(resolve, RECONNECT_WAIT_MS, false))),
      ]);
      clearTimeout(timer);
      if (!back) throw new BusError('TIMEOUT', `NATS is disconnected: ${subject} not stored within ${RECONNECT_WAIT_MS} ms`);
    }
    try {
      await this.js.publish(subject, encode(data), { msgID: opts.msgId, headers: toNatsHeaders(opts.headers) });
    } catch (err) {
      // JetStream answers "no responders" for a subject no stream stores.
      if (isNoResponders((err as Error).cause)) throw new BusError('NO_RESPONDERS', `no stream stores ${subject}`);
      if (err instanceof TimeoutError) throw new BusError('TIMEOUT', `${subject}: no acknowledgement from JetStream`);
      if (isClosedError(err)) throw new BusError('CLOSED', 'bus is closed');
      throw err;
    }
  }

  /**
   * Creates or updates the durable pull consumer and runs a consume loop on it. Messages are
   * handed to the handler as they arrive (the server holds back more than `maxInFlight`
   * unacknowledged ones); if the loop ends on its own (consumer or stream deleted, the server
   * lost its store), both are declared again and the loop restarts.
   */
  async consume<T>(opts: ConsumerOptions, handler: DurableHandler<T>): Promise<Consumer> {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    const cfg: Partial<ConsumerConfig> = {
      durable_name: opts.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: opts.filter,
      ack_wait: nanos(opts.ackWaitMs ?? 30_000),
      max_ack_pending: opts.maxInFlight ?? 1000,
    };
    const name = `durable ${opts.stream}/${opts.durable}`;
    const where = { stream: opts.stream, durable: opts.durable };
    await this.ensureConsumer(opts.stream, cfg);
    let stopped = false;
    let messages: ConsumerMessages | undefined;
    let retry: NodeJS.Timeout | undefined;

    const start = async (): Promise<void> => {
      const consumer = await this.js.consumers.get(opts.stream, opts.durable);
      const msgs = await consumer.consume({
        max_messages: Math.min(cfg.max_ack_pending!, PULL_BATCH),
        callback: (m) => this.deliverDurable(m, handler as DurableHandler<any>, name),
      });
      if (stopped) {
        await msgs.close();
        return;
      }
      messages = msgs;
      void this.watchConsumer(msgs, where);
      void msgs.closed().then((err) => {
        if (stopped || this.closed) return;
        this.log.warn({ err, ...where }, 'durable consume loop ended; restarting it');
        restart();
      });
    };
    const restart = (): void => {
      retry = setTimeout(() => {
        retry = undefined;
        if (stopped || this.closed) return;
        this.ensureConsumer(opts.stream, cfg)
          .then(start)
          .catch((err: unknown) => {
            this.log.warn({ err, ...where }, 'cannot restart durable consumer; trying again');
            restart();
          });
      }, RESTART_DELAY_MS);
    };

    await start();
    const handle: Consumer = {
      stop: async () => {
        if (stopped) return;
        stopped = true;
        clearTimeout(retry);
        this.loops.delete(handle);
        await messages?.close();
      },
    };
    this.loops.add(handle);
    return handle;
  }

  private async watchConsumer(msgs: ConsumerMessages, where: { stream: string; durable: string }): Promise<void> {
    for await (const s of msgs.status()) {
      switch (s.type) {
        case 'heartbeats_missed':
        case 'consumer_not_found':
        case 'stream_not_found':
        case 'consumer_deleted':
        case 'exceeded_limits':
          this.log.warn({ ...where, status: s }, `durable consumer: ${s.type.replaceAll('_', ' ')}`);
          // The client would only poll for the consumer to come back; declare it again instead.
          if (s.type !== 'heartbeats_missed' && s.type !== 'exceeded_limits') void msgs.close();
          break;
      }
    }
  }

  /** Creates the consumer, or updates it when one of that name exists with other settings. */
  private async ensureConsumer(stream: string, cfg: Partial<ConsumerConfig>): Promise<void> {
    try {
      await this.jsm.consumers.add(stream, cfg);
    } catch (err) {
      if (err instanceof JetStreamApiError && (err.code === CONSUMER_NAME_IN_USE || err.code === CONSUMER_EXISTS)) {
        await this.jsm.consumers.update(stream, cfg.durable_name!, {
          ack_wait: cfg.ack_wait,
          max_ack_pending: cfg.max_ack_pending,
          filter_subject: cfg.filter_subject,
        });
        return;
      }
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
        const known = this.streams.get(stream);
        if (!known) throw new BusError('NO_RESPONDERS', `stream ${stream} does not exist`);
        await this.ensureStream(known);
        await this.jsm.consumers.add(stream, cfg);
        return;
      }
      throw err;
    }
  }

  private deliverDurable(m: JsMsg, handler: DurableHandler<any>, name: string): void {
    this.run(name, m.subject, () => {
      let settled = false;
      const settle = (how: () => void) => {
        if (settled) return;
        settled = true;
        try {
          how();
        } catch (err) {
          // Lost acks are safe: the message is delivered again after ackWait.
          this.log.warn({ err, subscriber: name, subject: m.subject }, 'durable ack lost; the message will be delivered again');
        }
      };
      let data: unknown;
      try {
        data = decode(m);
      } catch (err) {
        this.log.error({ err, subscriber: name, subject: m.subject, seq: m.seq }, 'durable message is not JSON; dropped');
        settle(() => m.term('not JSON'));
        return;
      }
      const dm: DurableMessage = {
        subject: m.subject,
        data,
        headers: fromNatsHeaders(m.headers),
        deliveryCount: m.info.deliveryCount,
        seq: m.seq,
        ack: () => settle(() => m.ack()),
        nak: (delayMs?: number) => settle(() => m.nak(delayMs)),
      };
      return handler(dm);
    });
  }

  async flush(): Promise<void> {
    if (this.closed) return;
    for (let round = 0; round < FLUSH_ROUNDS; round++) {
      const before = this.published;
      // Fails only when the connection is lost or closed: then nothing more is coming either.
      await this.nc.flush().catch(() => undefined);
      await this.idle();
      if (this.published === before) return;
    }
  }

  private idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops the consume loops, lets running handlers finish, then drains the connection. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const c of [...this.loops]) await c.stop();
      await this.closingStep(this.flush(), 'flush');
      this.closed = true;
      await this.closingStep(this.nc.drain(), 'drain');
      if (!this.nc.isClosed()) await this.nc.close();
      await this.idle();
    })();
    return this.closing;
  }

  /** Waits for a step of `close()`, at most DRAIN_TIMEOUT_MS (NATS may be unreachable); closing goes on regardless. */
  private async closingStep(p: Promise<unknown>, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((resolve) => (timer = setTimeout(resolve, DRAIN_TIMEOUT_MS, `did not finish within ${DRAIN_TIMEOUT_MS} ms`)));
    const failed = await Promise.race([
      p.then(
        () => undefined,
        (err: unknown) => (isClosedError(err) ? undefined : String(err)),
      ),
      late,
    ]);
    clearTimeout(timer);
    if (failed) this.log.warn(`NATS ${what} on close: ${failed}; closing anyway`);
  }

  private run(name: string, subject: string, fn: () => void | Promise<void>): void {
    this.pending++;
    try {
      const r = fn();
      if (r && typeof (r as Promise<void>).then === 'function') {
        (r as Promise<void>).then(this.done, (err: unknown) => {
          this.log.error({ err, subscriber: name, subject }, 'bus handler failed');
          this.done();
        });
        return;
      }
    } catch (err) {
      this.log.error({ err, subscriber: name, subject }, 'bus handler failed');
    }
    this.done();
  }

  private readonly done = (): void => {
    if (--this.pending === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  };
}
