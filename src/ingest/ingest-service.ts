import type { Bus, Consumer, DurableMessage } from '../core/bus/bus.ts';
import { subjects, UPLINK_STREAM, type DeviceErrorPayload, type DownlinkMessage, type UplinkBatch, type UplinkMessage } from '../core/bus/subjects.ts';
import type { DeviceEvent, ReportedEvent } from '../core/bus/events.ts';
import { shardOf, type ShardListener } from '../core/cluster/shards.ts';
import { PeriodicFlush } from '../core/periodic-flush.ts';
import type { Logger } from '../core/logger.ts';
import { isHearthError } from '../core/errors.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { PresenceService } from '../devices/presence-service.ts';
import type { ProductService } from '../products/product-service.ts';
import type { ShadowService } from '../shadow/shadow-service.ts';
import type { HistoryService } from '../history/history-service.ts';
import type { CommandService } from '../commands/command-service.ts';
import type { DeviceRecord } from '../devices/device-service.ts';
import type { CompiledModel } from '../products/thing-model.ts';
import type { RoutingPipeline } from '../routing/pipeline.ts';
import type { DeliveryQueue } from '../routing/envelope.ts';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/** The last millisecond a Date can hold. Device times are rounded to whole milliseconds: they go to bigint columns. */
const MAX_EPOCH_MS = 8.64e15;

/** What the ingest reports (the metrics module implements it). */
export interface IngestObserver {
  /** A message was handled; the gateway received it at `receivedAt`. */
  ingestLag(receivedAt: number): void;
  messageRejected(code: string): void;
}

/** Deliveries after which a message that keeps failing on our side is given up (and the device told). */
const MAX_ATTEMPTS = 5;

/**
 * Stream messages a node holds unacknowledged at most, when it owns every shard: what is handed
 * out must be handled and stored well within ackWait even on a saturated node, or JetStream
 * delivers it again and the node does the work twice (the backlog waits in the stream instead).
 * Each shard's consumer gets its share, so a node owning fewer shards holds fewer. A stream
 * message is one uplink or a batch of up to 32 (`HEARTH_UPLINK_BATCH_MAX`, at most 64): by
 * default at most 64,000 uplinks on a node owning every shard, a few seconds of its work.
 */
export const INGEST_WINDOW = 2000;
/** The smallest window of one shard's consumer (many shards). */
const MIN_SHARD_WINDOW = 16;

/**
 * What handling a message asks of its consumer: `DONE` (acknowledge once its writes are stored),
 * `FAILED` (it failed on our side: deliver it again, with backoff), or a number of milliseconds
 * after which to deliver it again (a rate limit put it off; not a failure).
 */
export type Handled = number;
export const DONE = 0;
export const FAILED = -1;

/** `ref`: what the error refers to (an OTA job id), passed on to the device. */
type Problem = { code: string; message: string; ref?: string };

/** What the ingest asks of the OTA capability (src/ota/campaign-service.ts implements it). */
export interface OtaDevices {
  /** Progress on `devices/{id}/ota/progress`; the problem the device hears, if any. */
  handleProgress(deviceId: string, payload: unknown, receivedAt: number): Promise<Problem | undefined>;
  /** The device (or hub) subscribed to its OTA topic: send what waits for it. */
  resend(deviceId: string): Promise<void>;
}

/**
 * The device core's handling of uplink messages: validates each against its product's
 * thing model and hands it to the capability that owns it. A rejected message changes
 * nothing and the device hears why on its error topic.
 *
 * Every message first goes through the message gateway's pipeline (filters, lanes, routes): it
 * may be refused or put off there; the routes decide whether the device core handles it (the
 * `builtin` target) and which external targets get it, as delivery jobs stored before the
 * message is acknowledged.
 *
 * Uplinks arrive on a durable stream, one consumer per device shard, consumed by the worker
 * that owns the shard. A message is acknowledged only after what it changed is in the store
 * (the shadow and history flush), so a worker dying at any point loses nothing: the next owner
 * gets the unacknowledged messages again, and handling them twice changes nothing more.
 */
export class IngestService implements ShardListener {
  readonly name = 'ingest';
  private readonly consumers = new Map<number, Consumer>();
  /** Per-device chains so that one device's messages are handled in arrival order. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Handled messages waiting for their writes to be stored before they are acknowledged. */
  private toAck: DurableMessage[] = [];
  private readonly acker: PeriodicFlush;

  constructor(
    private readonly deps: {
      bus: Bus;
      log: Logger;
      devices: DeviceService;
      products: ProductService;
      presence: PresenceService;
      shadow: ShadowService;
      history: HistoryService;
      commands: CommandService;
      flushMs: number;
      ackWaitMs: number;
      /** The cluster's device shards (`HEARTH_SHARDS`): a node's window is divided among the shards it owns. */
      shardCount: number;
      observer?: IngestObserver;
      /** The message gateway; without it every message goes to the device core only. */
      routing: RoutingPipeline;
      /** Where the gateway's delivery jobs are stored (needed when routes have external targets). */
      deliveries?: DeliveryQueue;
      /** Firmware updates (src/ota/): device progress, and jobs waiting for a device that starts listening. */
      ota?: OtaDevices;
      /** A factory reset sent by a device (`devices/{id}/reset`): the fleet lifecycle handles it. */
      reset?: (deviceId: string, via: string) => Promise<void>;
    },
  ) {
    this.acker = new PeriodicFlush(
      () => this.settle(),
      deps.flushMs,
      (err) => deps.log.error({ err }, 'ingest writes failed; messages stay unacknowledged and come again'),
    );
  }

  /** Declares the uplink stream; call on every node before anything publishes to it. */
  async declare(): Promise<void> {
    // The gateway's message ids are unique; de-duplication only catches the bus client's own
    // retries during a reconnect, so a short window keeps its memory small at high rates.
    await this.deps.bus.ensureStream({ name: UPLINK_STREAM, subjects: [subjects.allUp], duplicateWindowMs: 10_000 });
  }

  start(): void {
    this.acker.start();
  }

  /** Stops consuming (shards are released first by the shard manager) and settles what was handled. */
  async stop(): Promise<void> {
    for (const shard of [...this.consumers.keys()]) await this.release(shard);
    await this.acker.stop();
  }

  async acquire(shard: number): Promise<void> {
    if (this.consumers.has(shard)) return;
    const consumer = await this.deps.bus.consume(
      // A bounded window (INGEST_WINDOW divided among the shards): the backlog waits in the stream,
      // not in this process, so what is handed out is handled well within ackWait even when the
      // node is saturated.
      {
        stream: UPLINK_STREAM,
        durable: `ingest-${shard}`,
        filter: subjects.shardUp(shard),
        ackWaitMs: this.deps.ackWaitMs,
        maxInFlight: Math.max(MIN_SHARD_WINDOW, Math.ceil(INGEST_WINDOW / this.deps.shardCount)),
      },
      (m) => this.receive(m),
    );
    this.consumers.set(shard, consumer);
  }

  /** Stops the shard's consumer, finishes what is under way and acknowledges it once stored. */
  async release(shard: number): Promise<void> {
    const consumer = this.consumers.get(shard);
    if (!consumer) return;
    this.consumers.delete(shard);
    await consumer.stop();
    await Promise.all([...this.chains.values()]);
    await this.acker.flush();
  }

  private receive(m: DurableMessage<UplinkMessage | UplinkBatch>): Promise<void> {
    const data = m.data;
    if ('batch' in data) return this.receiveBatch(m, data.batch);
    const attempts = m.deliveryCount + (data.attempt ?? 0);
    return this.enqueue(data, attempts >= MAX_ATTEMPTS).then((handled) => {
      if (handled === FAILED) return m.nak(500 * attempts);
      if (handled > 0) return m.nak(handled);
      this.deps.observer?.ingestLag(data.receivedAt);
      this.toAck.push(m);
    });
  }

  /**
   * A batch is acknowledged whole, once every message of it was handled and stored. A message that
   * must go again (a failure, or a route's delay) goes as a message of its own, published before
   * the batch is acknowledged (after its delay, up to a third of ackWait), with its count of
   * deliveries; if that fails, the whole batch goes again (handling is idempotent).
   */
  private async receiveBatch(m: DurableMessage<UplinkMessage | UplinkBatch>, batch: UplinkMessage[]): Promise<void> {
    try {
      await Promise.all(
        batch.map(async (msg) => {
          const attempts = m.deliveryCount + (msg.attempt ?? 0);
          const handled = await this.enqueue(msg, attempts >= MAX_ATTEMPTS);
          if (handled === DONE) {
            this.deps.observer?.ingestLag(msg.receivedAt);
            return;
          }
          const delayMs = Math.min(handled === FAILED ? 500 * attempts : handled, this.deps.ackWaitMs / 3);
          await new Promise((resolve) => setTimeout(resolve, delayMs));
          await this.deps.bus.publishDurable(
            subjects.up(shardOf(msg.deviceId, this.deps.shardCount), msg.deviceId, msg.kind),
            { ...msg, attempt: attempts },
            {
              msgId: `${msg.id}.${attempts}`,
            },
          );
        }),
      );
    } catch (err) {
      this.deps.log.warn({ err, seq: m.seq }, 'a message of an uplink batch could not be published again; the batch will be delivered again');
      m.nak(500 * m.deliveryCount);
      return;
    }
    this.toAck.push(m);
  }

  /** Stores what the handled messages changed, then acknowledges them. */
  private async settle(): Promise<void> {
    if (this.toAck.length === 0) return;
    const acks = this.toAck;
    this.toAck = [];
    try {
      await Promise.all([this.deps.shadow.flush(true), this.deps.history.flush(true)]);
    } catch (err) {
      // Not acknowledged: they are delivered again after ackWait, by us or by the shard's next owner.
      for (const m of acks) m.nak(this.deps.ackWaitMs);
      throw err;
    }
    for (const m of acks) m.ack();
  }

  private enqueue(msg: UplinkMessage, lastAttempt: boolean): Promise<Handled> {
    const prev = this.chains.get(msg.deviceId);
    const next = prev ? prev.then(() => this.handle(msg, lastAttempt)) : this.handle(msg, lastAttempt);
    const done = next.then(() => undefined);
    this.chains.set(msg.deviceId, done);
    void done.then(() => {
      if (this.chains.get(msg.deviceId) === done) this.chains.delete(msg.deviceId);
    });
    return next;
  }

  /** Handles one message (see `Handled`). */
  async handle(msg: UplinkMessage, lastAttempt = false): Promise<Handled> {
    try {
      const outcome = await this.dispatch(msg);
      if (typeof outcome === 'number') return outcome;
      if (outcome) this.reject(msg, outcome.code, outcome.message, outcome.ref);
      return DONE;
    } catch (err) {
      if (isHearthError(err)) {
        this.reject(msg, err.code, err.message);
        return DONE;
      }
      this.deps.log.error({ err, deviceId: msg.deviceId, topic: msg.topic }, 'uplink handling failed');
      if (!lastAttempt) return FAILED;
      this.reject(msg, 'E_INTERNAL', 'the message could not be processed');
      return DONE;
    }
  }

  /** The gateway's pipeline, then the device core when a route sends the message there. A number: deliver again after so many ms. */
  private async dispatch(msg: UplinkMessage): Promise<Problem | number | undefined> {
    const { devices, products, presence } = this.deps;
    const device = await devices.get(msg.deviceId);
    if (!device) return { code: 'E_DEVICE_NOT_FOUND', message: `device "${msg.deviceId}" does not exist` };
    // Not a device message: the gateway saw the device subscribe to its desired state or its
    // commands (payload `{desired, commands}`; null from gateways before queued commands: desired).
    if (msg.kind === 'subscribed') {
      const covers = isObject(msg.payload) ? msg.payload : { desired: true };
      if (covers.desired === true) await this.deps.shadow.resend(msg.deviceId);
      if (covers.commands === true) await this.deps.commands.subscribed(msg.deviceId);
      if (covers.ota === true) await this.deps.ota?.resend(msg.deviceId);
      return undefined;
    }
    // A hub speaking for a sub-device the operator disabled (a disabled device itself is not connected).
    if (msg.kind !== 'command' && (await devices.isDisabled(msg.deviceId)))
      return { code: 'E_DEVICE_DISABLED', message: `device "${msg.deviceId}" is disabled; its messages are not applied` };
    if (msg.kind === 'reset') {
      if (!isObject(msg.payload)) return { code: 'E_BAD_MESSAGE', message: 'a factory reset is a JSON object, e.g. {}' };
      if (!this.deps.reset) return { code: 'E_INTERNAL', message: 'factory resets are not handled here' };
      presence.seen(msg.via, msg.receivedAt);
      await this.deps.reset(msg.deviceId, msg.via);
      return undefined;
    }
    if (msg.kind !== 'command') presence.seen(msg.via, msg.receivedAt);
    const model = await products.model(device.productKey);
    const routing = this.deps.routing;
    if (routing === undefined) return this.deviceCore(msg, device, model);
    const r = routing.process(msg, device, model);
    if (r.action === 'drop') return r.code !== undefined ? { code: r.code, message: r.reason ?? r.code } : undefined;
    if (r.action === 'delay') return Math.max(1, r.delayMs ?? 1);
    // The device core first: it is idempotent, so a failure in between and a retry change nothing twice.
    if (r.builtin && msg.kind !== 'command') {
      const problem = await this.deviceCore(msg, device, model);
      if (problem) return problem;
    }
    if (r.deliveries.length !== 0) {
      const queue = this.deps.deliveries;
      if (queue === undefined) throw new Error('a route has external targets but this node has no delivery queue');
      await (r.deliveries.length === 1 ? queue.enqueue(r.deliveries[0]) : Promise.all(r.deliveries.map((d) => queue.enqueue(d))));
    }
    return undefined;
  }

  /** The device core's handling: shadow, history, command results, joins, hubs' presence reports. */
  private async deviceCore(msg: UplinkMessage, device: DeviceRecord, model: CompiledModel | undefined): Promise<Problem | undefined> {
    const { devices, presence } = this.deps;
    if (msg.via !== msg.deviceId) {
      if (msg.kind === 'presence') {
        if (!isObject(msg.payload) || typeof msg.payload.online !== 'boolean')
          return { code: 'E_BAD_MESSAGE', message: 'a presence message is {"online": true|false}' };
        await presence.setChild(msg.deviceId, msg.payload.online, 'hub-reported');
        return undefined;
      }
      await presence.setChild(msg.deviceId, true, 'hub-reported');
      presence.seen(msg.deviceId, msg.receivedAt);
    } else if (msg.kind === 'presence') {
      return { code: 'E_BAD_MESSAGE', message: 'only a hub reports presence, for its sub-devices' };
    }
    if (!model) return { code: 'E_PRODUCT_NOT_FOUND', message: `product "${device.productKey}" does not exist` };

    switch (msg.kind) {
      case 'properties': {
        if (!isObject(msg.payload)) return { code: 'E_BAD_MESSAGE', message: 'a property report must be a JSON object' };
        const { ts, ...values } = msg.payload;
        if (ts !== undefined && (typeof ts !== 'number' || !(ts > 0 && ts <= MAX_EPOCH_MS)))
          return { code: 'E_BAD_MESSAGE', message: '"ts" must be a positive epoch time in milliseconds' };
        const check = model.checkReport(values);
        if (!check.ok) return { code: 'E_MODEL_MISMATCH', message: check.problems.join('; ') };
        const at = ts !== undefined ? Math.round(ts as number) : msg.receivedAt;
        const outcome = await this.deps.shadow.report(msg.deviceId, values, at);
        for (const key in values) {
          const spec = model.properties.get(key)!;
          if (spec.history)
            this.deps.history.record(msg.deviceId, key, values[key], at, msg.id, { product: device.productKey, enumerated: spec.type === 'enum' });
        }
        const ev: ReportedEvent = { deviceId: msg.deviceId, values, changed: outcome.changed, version: outcome.version, at, receivedAt: msg.receivedAt };
        this.deps.bus.publish(subjects.reported(msg.deviceId), ev);
        return undefined;
      }
      case 'events': {
        if (!isObject(msg.payload) || typeof msg.payload.event !== 'string')
          return { code: 'E_BAD_MESSAGE', message: 'an event is {"event": "<id>", "params": {...}}' };
        const params = msg.payload.params ?? {};
        if (!isObject(params)) return { code: 'E_BAD_MESSAGE', message: '"params" must be an object' };
        const check = model.checkEvent(msg.payload.event, params);
        if (!check.ok) return { code: 'E_MODEL_MISMATCH', message: check.problems.join('; ') };
        const at = typeof msg.payload.ts === 'number' && msg.payload.ts > 0 && msg.payload.ts <= MAX_EPOCH_MS ? Math.round(msg.payload.ts) : msg.receivedAt;
        const id = this.deps.history.recordEvent(msg.deviceId, msg.payload.event, params, at, `e_${msg.id}`);
        const ev: DeviceEvent = { id, deviceId: msg.deviceId, event: msg.payload.event, params, at, receivedAt: msg.receivedAt };
        this.deps.bus.publish(subjects.event(msg.deviceId), ev);
        return undefined;
      }
      case 'result': {
        return this.deps.commands.handleResult(msg.deviceId, msg.payload, msg.receivedAt);
      }
      case 'ota': {
        if (!this.deps.ota) return { code: 'E_BAD_MESSAGE', message: 'firmware updates are not available on this server' };
        return this.deps.ota.handleProgress(msg.deviceId, msg.payload, msg.receivedAt);
      }
      case 'join': {
        if (msg.via !== msg.deviceId) return { code: 'E_BAD_MESSAGE', message: 'only a hub joins sub-devices, on its own topic' };
        const p = msg.payload;
        if (!isObject(p) || typeof p.product !== 'string' || typeof p.hwid !== 'string' || p.hwid.length === 0 || p.hwid.length > 64) {
          return { code: 'E_BAD_MESSAGE', message: 'a join request is {"product": "<key>", "hwid": "<hardware id, at most 64 characters>"}' };
        }
        const child = await devices.join(msg.deviceId, p.product, p.hwid);
        const down: DownlinkMessage = { deviceId: msg.deviceId, kind: 'children/joined', payload: { hwid: p.hwid, id: child.id, product: child.productKey } };
        this.deps.bus.publish(subjects.down(msg.deviceId), down);
        return undefined;
      }
      default:
        return { code: 'E_BAD_MESSAGE', message: `unexpected message kind ${msg.kind}` };
    }
  }

  private reject(msg: UplinkMessage, code: string, message: string, ref?: string): void {
    this.deps.observer?.messageRejected(code);
    // Partners and the API have acknowledged their senders already; only devices have an error topic.
    if (msg.source !== undefined && msg.source !== 'mqtt' && msg.source !== 'http') {
      this.deps.log.info({ deviceId: msg.deviceId, source: msg.source, code, reason: message }, 'message refused');
      return;
    }
    const payload: DeviceErrorPayload = { code, message, topic: msg.topic, ...(ref !== undefined ? { ref } : {}) };
    // A hub hears about its sub-devices' rejected messages on the sub-device's error topic, which it may subscribe to.
    const down: DownlinkMessage = { deviceId: msg.deviceId, kind: 'errors', payload };
    this.deps.bus.publish(subjects.down(msg.deviceId), down);
  }
}
