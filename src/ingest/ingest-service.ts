import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import { subjects, type DeviceErrorPayload, type DownlinkMessage, type UplinkMessage } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';
import { isHearthError } from '../core/errors.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { PresenceService } from '../devices/presence-service.ts';
import type { ProductService } from '../products/product-service.ts';
import type { ShadowService } from '../shadow/shadow-service.ts';
import type { HistoryService } from '../history/history-service.ts';
import type { CommandService } from '../commands/command-service.ts';

/** Bus event on `device.{id}.reported`. */
export interface ReportedEvent {
  deviceId: string;
  values: Record<string, unknown>;
  changed: string[];
  version: number;
  at: number;
}

/** Bus event on `device.{id}.event`. */
export interface DeviceEvent {
  id: string;
  deviceId: string;
  event: string;
  params: Record<string, unknown>;
  at: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/** The last millisecond a Date can hold. Device times are rounded to whole milliseconds: they go to bigint columns. */
const MAX_EPOCH_MS = 8.64e15;

/**
 * The device core's handling of uplink messages: validates each against its product's
 * thing model and hands it to the capability that owns it. A rejected message changes
 * nothing and the device hears why on its error topic.
 */
export class IngestService {
  private unsub: Unsubscribe | undefined;
  /** Per-device chains so that one device's messages are handled in arrival order. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly deps: {
    bus: Bus; log: Logger; devices: DeviceService; products: ProductService; presence: PresenceService;
    shadow: ShadowService; history: HistoryService; commands: CommandService;
  }) {}

  start(): void {
    this.unsub = this.deps.bus.subscribe<UplinkMessage>(subjects.allUp, (msg) => this.enqueue(msg.data), { queue: 'ingest', name: 'ingest' });
  }

  stop(): void {
    this.unsub?.();
  }

  private enqueue(msg: UplinkMessage): Promise<void> {
    const prev = this.chains.get(msg.deviceId);
    const next = prev ? prev.then(() => this.handle(msg)) : this.handle(msg);
    this.chains.set(msg.deviceId, next);
    void next.then(() => {
      if (this.chains.get(msg.deviceId) === next) this.chains.delete(msg.deviceId);
    });
    return next;
  }

  async handle(msg: UplinkMessage): Promise<void> {
    try {
      const problem = await this.dispatch(msg);
      if (problem) this.reject(msg, problem.code, problem.message);
    } catch (err) {
      if (isHearthError(err)) return this.reject(msg, err.code, err.message);
      this.deps.log.error({ err, deviceId: msg.deviceId, topic: msg.topic }, 'uplink handling failed');
      this.reject(msg, 'E_INTERNAL', 'the message could not be processed');
    }
  }

  private async dispatch(msg: UplinkMessage): Promise<{ code: string; message: string } | undefined> {
    const { devices, products, presence } = this.deps;
    const device = await devices.get(msg.deviceId);
    if (!device) return { code: 'E_DEVICE_NOT_FOUND', message: `device "${msg.deviceId}" does not exist` };
    if (msg.kind === 'subscribed') {
      await this.deps.shadow.resend(msg.deviceId);
      return undefined;
    }
    presence.seen(msg.via, msg.receivedAt);
    if (msg.via !== msg.deviceId) {
      if (msg.kind === 'presence') {
        if (!isObject(msg.payload) || typeof msg.payload.online !== 'boolean') return { code: 'E_BAD_MESSAGE', message: 'a presence message is {"online": true|false}' };
        await presence.setChild(msg.deviceId, msg.payload.online, 'hub-reported');
        return undefined;
      }
      await presence.setChild(msg.deviceId, true, 'hub-reported');
      presence.seen(msg.deviceId, msg.receivedAt);
    } else if (msg.kind === 'presence') {
      return { code: 'E_BAD_MESSAGE', message: 'only a hub reports presence, for its sub-devices' };
    }
    const model = await products.model(device.productKey);
    if (!model) return { code: 'E_PRODUCT_NOT_FOUND', message: `product "${device.productKey}" does not exist` };

    switch (msg.kind) {
      case 'properties': {
        if (!isObject(msg.payload)) return { code: 'E_BAD_MESSAGE', message: 'a property report must be a JSON object' };
        const { ts, ...values } = msg.payload;
        if (ts !== undefined && (typeof ts !== 'number' || !(ts > 0 && ts <= MAX_EPOCH_MS))) return { code: 'E_BAD_MESSAGE', message: '"ts" must be a positive epoch time in milliseconds' };
        const check = model.checkReport(values);
        if (!check.ok) return { code: 'E_MODEL_MISMATCH', message: check.problems.join('; ') };
        const at = ts !== undefined ? Math.round(ts as number) : msg.receivedAt;
        const outcome = await this.deps.shadow.report(msg.deviceId, values, at);
        for (const key in values) if (model.properties.get(key)!.history) this.deps.history.record(msg.deviceId, key, values[key], at);
        const ev: ReportedEvent = { deviceId: msg.deviceId, values, changed: outcome.changed, version: outcome.version, at };
        this.deps.bus.publish(subjects.reported(msg.deviceId), ev);
        return undefined;
      }
      case 'events': {
        if (!isObject(msg.payload) || typeof msg.payload.event !== 'string') return { code: 'E_BAD_MESSAGE', message: 'an event is {"event": "<id>", "params": {...}}' };
        const params = msg.payload.params ?? {};
        if (!isObject(params)) return { code: 'E_BAD_MESSAGE', message: '"params" must be an object' };
        const check = model.checkEvent(msg.payload.event, params);
        if (!check.ok) return { code: 'E_MODEL_MISMATCH', message: check.problems.join('; ') };
        const at = typeof msg.payload.ts === 'number' && msg.payload.ts > 0 && msg.payload.ts <= MAX_EPOCH_MS ? Math.round(msg.payload.ts) : msg.receivedAt;
        const id = this.deps.history.recordEvent(msg.deviceId, msg.payload.event, params, at);
        const ev: DeviceEvent = { id, deviceId: msg.deviceId, event: msg.payload.event, params, at };
        this.deps.bus.publish(subjects.event(msg.deviceId), ev);
        return undefined;
      }
      case 'result': {
        return this.deps.commands.handleResult(msg.deviceId, msg.payload, msg.receivedAt);
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

  private reject(msg: UplinkMessage, code: string, message: string): void {
    const payload: DeviceErrorPayload = { code, message, topic: msg.topic };
    // A hub hears about its sub-devices' rejected messages on the sub-device's error topic, which it may subscribe to.
    const down: DownlinkMessage = { deviceId: msg.deviceId, kind: 'errors', payload };
    this.deps.bus.publish(subjects.down(msg.deviceId), down);
  }
}
