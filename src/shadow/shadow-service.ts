import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import { subjects, type DownlinkMessage } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import { PeriodicFlush } from '../core/periodic-flush.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { PresenceEvent, PresenceService } from '../devices/presence-service.ts';
import type { ProductService } from '../products/product-service.ts';
import { applyDesired, applyReport, delta, emptyShadow, markDelivered, type ReportOutcome, type ShadowState } from './shadow-state.ts';

/** What the API shows of a shadow. */
export interface ShadowView {
  reported: Record<string, unknown>;
  desired: Record<string, unknown>;
  delta: Record<string, unknown>;
  version: number;
  metadata: ShadowState['metadata'];
  updatedAt: string | null;
}

/**
 * Device shadows. Reports update an in-memory copy at once (so reads see them) and reach
 * the store in batched transactions every `flushMs`; desired-state changes are written
 * before the API call returns.
 */
export class ShadowService {
  private readonly cache = new Map<string, ShadowState>();
  private readonly loading = new Map<string, Promise<ShadowState>>();
  private readonly dirty = new Set<string>();
  private readonly writer: PeriodicFlush;
  /**
   * Devices whose desired topic has a subscriber (the device or its hub). Desired state is sent,
   * and counted as delivered, only to these; the others get it when they subscribe.
   */
  private readonly listening = new Set<string>();
  private unsub: Unsubscribe | undefined;

  constructor(private readonly deps: { db: Db; bus: Bus; log: Logger; devices: DeviceService; products: ProductService; presence: PresenceService; flushMs: number }) {
    this.writer = new PeriodicFlush(() => this.write(), deps.flushMs, (err) => deps.log.error({ err }, 'shadow flush failed'));
  }

  start(): void {
    this.writer.start();
    // A lost connection ends the subscription; a sub-device the hub reports offline keeps the hub's.
    // An offline event of an older session arriving after a reconnect changes nothing.
    this.unsub = this.deps.bus.subscribe<PresenceEvent>(subjects.presence('*'), async (msg) => {
      const ev = msg.data;
      if (ev.online || ev.reason === 'hub-reported') return;
      if ((await this.deps.presence.get(ev.deviceId)).session > ev.session) return;
      this.listening.delete(ev.deviceId);
    }, { name: 'shadow.presence' });
  }

  stop(): Promise<void> {
    this.unsub?.();
    return this.writer.stop();
  }

  async view(deviceId: string): Promise<ShadowView> {
    const s = await this.load(deviceId);
    return toView(s);
  }

  /** Applies an already validated property report. */
  async report(deviceId: string, values: Record<string, unknown>, at: number): Promise<ReportOutcome> {
    const s = await this.load(deviceId);
    const outcome = applyReport(s, values, at);
    this.dirty.add(deviceId);
    return outcome;
  }

  /** Validates and sets desired state; sends the delta at once when the device is online. */
  async setDesired(deviceId: string, values: Record<string, unknown>): Promise<ShadowView> {
    const device = await this.deps.devices.require(deviceId);
    const model = await this.deps.products.model(device.productKey);
    const check = model!.checkDesired(values);
    if (!check.ok) throw new HearthError('E_MODEL_MISMATCH', check.problems.join('; '), { problems: check.problems });
    const s = await this.load(deviceId);
    applyDesired(s, values, Date.now());
    if (this.listening.has(deviceId) && (await this.deps.presence.get(deviceId)).online) this.sendDelta(deviceId, s);
    this.dirty.add(deviceId);
    // the view of this change: the device may answer while the write is in flight
    const view = toView(s);
    await this.flush();
    return view;
  }

  /** Drops every desired value (a device leaving its home must not act on the old home's wishes). */
  async clearDesired(deviceId: string): Promise<void> {
    const s = await this.load(deviceId);
    const keys = Object.keys(s.desired);
    if (keys.length === 0) return;
    applyDesired(s, Object.fromEntries(keys.map((k) => [k, null])), Date.now());
    this.dirty.add(deviceId);
    await this.flush();
  }

  /** The device (or its hub) subscribed to its desired topic: send what is pending. */
  async resend(deviceId: string): Promise<void> {
    this.listening.add(deviceId);
    const s = await this.load(deviceId);
    if (Object.keys(s.desired).length === 0) return;
    this.sendDelta(deviceId, s);
    this.dirty.add(deviceId);
  }

  /** Resolves when every change made so far is in the store. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /** Writes dirty shadows in one transaction; on failure they stay dirty for the next flush. */
  private async write(): Promise<void> {
    if (this.dirty.size === 0) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    try {
      await this.deps.db.transaction().execute(async (trx) => {
        for (const id of ids) {
          const s = this.cache.get(id)!;
          const row = { reported: toJson(s.reported), desired: toJson(s.desired), metadata: toJson(s.metadata), version: s.version, updated_at: s.updatedAt };
          await trx.insertInto('shadows').values({ device_id: id, ...row })
            .onConflict((oc) => oc.column('device_id').doUpdateSet(row))
            .execute();
        }
      });
    } catch (err) {
      for (const id of ids) this.dirty.add(id);
      throw err;
    }
  }

  private sendDelta(deviceId: string, s: ShadowState): void {
    const d = delta(s);
    const keys = Object.keys(d);
    if (keys.length === 0) return;
    const msg: DownlinkMessage = { deviceId, kind: 'desired', payload: { state: d, version: s.version } };
    this.deps.bus.publish(subjects.down(deviceId), msg);
    markDelivered(s, keys, Date.now());
  }

  private load(deviceId: string): Promise<ShadowState> | ShadowState {
    const hit = this.cache.get(deviceId);
    if (hit) return hit;
    let p = this.loading.get(deviceId);
    if (!p) {
      p = (async () => {
        const row = await this.deps.db.selectFrom('shadows').selectAll().where('device_id', '=', deviceId).executeTakeFirst();
        const s: ShadowState = row
          ? { reported: fromJson(row.reported), desired: fromJson(row.desired), metadata: fromJson(row.metadata), version: Number(row.version), updatedAt: Number(row.updated_at) }
          : emptyShadow();
        this.cache.set(deviceId, s);
        this.loading.delete(deviceId);
        return s;
      })();
      this.loading.set(deviceId, p);
    }
    return p;
  }
}

function toView(s: ShadowState): ShadowView {
  return {
    reported: { ...s.reported },
    desired: { ...s.desired },
    delta: delta(s),
    version: s.version,
    metadata: structuredClone(s.metadata),
    updatedAt: s.updatedAt ? new Date(s.updatedAt).toISOString() : null,
  };
}
