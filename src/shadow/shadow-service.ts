import type { Db } from '../core/store/db.ts';
import { askShardOwner, serveShard } from '../core/cluster/shard-rpc.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import { BulkInsert } from '../core/store/bulk.ts';
import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import type { ShardListener, ShardManager } from '../core/cluster/shards.ts';
import { subjects, type DownlinkMessage } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import { PeriodicFlush, writeIsolated } from '../core/periodic-flush.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { PresenceService } from '../devices/presence-service.ts';
import type { ShadowReply, ShadowRequest } from '../core/bus/events.ts';
import type { ProductService } from '../products/product-service.ts';
import { applyDesired, applyReport, delta, emptyShadow, markDelivered, type ReportOutcome, type ShadowState, type ShadowView } from './shadow-state.ts';

export type { ShadowView } from './shadow-state.ts';

/** How long a caller keeps trying while a shard changes owner (a rolling deploy, a lost node). */
const HANDOFF_PATIENCE_MS = 15_000;

/**
 * Device shadows. Reports update an in-memory copy at once (so reads see them) and reach
 * the store in batched transactions every `flushMs`; desired-state changes are written
 * before the API call returns.
 *
 * Each shadow has one writer: the worker owning the device's shard (see ShardManager). Other
 * nodes send it their reads and desired-state changes over the bus; while a shard changes
 * owner, they retry until the new owner answers.
 */
export class ShadowService implements ShardListener {
  readonly name = 'shadow';
  private readonly cache = new Map<string, ShadowState>();
  private readonly loading = new Map<string, Promise<ShadowState>>();
  private readonly dirty = new Set<string>();
  private readonly writer: PeriodicFlush;
  /**
   * Whether a device's desired topic has a subscriber (the device or its hub). Desired state is
   * sent, and counted as delivered, only to these; the others get it when they subscribe. A
   * cache of the flag kept with presence, so a shard's next owner knows it too.
   */
  private readonly listening = new Map<string, boolean>();
  private unsub: Unsubscribe | undefined;
  private readonly rpc = new Map<number, Unsubscribe>();

  constructor(
    private readonly deps: {
      db: Db;
      bus: Bus;
      log: Logger;
      devices: DeviceService;
      products: ProductService;
      presence: PresenceService;
      shards: ShardManager;
      flushMs: number;
    },
  ) {
    this.writer = new PeriodicFlush(
      () => this.write(),
      deps.flushMs,
      (err) => deps.log.error({ err }, 'shadow flush failed'),
    );
  }

  start(): void {
    this.writer.start();
    // A lost connection ends the subscription; a sub-device the hub reports offline keeps the hub's.
    // An offline event of an older session arriving after a reconnect changes nothing.
    this.unsub = this.deps.bus.subscribe(
      subjects.presence('*'),
      async (msg) => {
        const ev = msg.data;
        if (ev.online || ev.reason === 'hub-reported') return;
        if ((await this.deps.presence.get(ev.deviceId)).session > ev.session) return;
        if (this.listening.has(ev.deviceId)) this.listening.set(ev.deviceId, false);
      },
      { name: 'shadow.presence' },
    );
  }

  async stop(): Promise<void> {
    this.unsub?.();
    for (const shard of [...this.rpc.keys()]) await this.release(shard);
    return this.writer.stop();
  }

  async acquire(shard: number): Promise<void> {
    if (this.rpc.has(shard)) return;
    this.rpc.set(
      shard,
      this.deps.bus.subscribe(subjects.shadowRpc(shard), (msg) => this.serve(shard, msg.data).then((r) => msg.respond?.(r)), { name: 'shadow.rpc' }),
    );
  }

  /** Stores the shard's shadows and forgets them: the next owner loads them from the store. */
  async release(shard: number): Promise<void> {
    this.rpc.get(shard)?.();
    this.rpc.delete(shard);
    await this.flush(true);
    const { shards } = this.deps;
    for (const id of this.cache.keys()) if (shards.shardOf(id) === shard && !this.dirty.has(id)) this.cache.delete(id);
    for (const id of this.listening.keys()) if (shards.shardOf(id) === shard) this.listening.delete(id);
  }

  private serve(shard: number, req: ShadowRequest): Promise<ShadowReply> {
    return serveShard({
      owns: this.deps.shards.owns(shard),
      log: this.deps.log,
      context: { deviceId: req.deviceId, op: req.op },
      what: 'shadow request',
      run: async () => {
        if (req.op === 'view') return { ok: true, view: await this.localView(req.deviceId) };
        if (req.op === 'setDesired') return { ok: true, view: await this.localSetDesired(req.deviceId, req.values) };
        if (req.op === 'forget') {
          await this.localForget(req.deviceId);
          return { ok: true };
        }
        await this.localClearDesired(req.deviceId);
        return { ok: true };
      },
    });
  }

  /** Sends an operation to the shard's owner, waiting through an ownership change. */
  private remote(req: ShadowRequest): Promise<ShadowView | undefined> {
    const shard = this.deps.shards.shardOf(req.deviceId);
    return askShardOwner({
      send: () => this.deps.bus.request(subjects.shadowRpc(shard), req, { timeoutMs: 5000 }),
      take: (reply) => reply.view,
      owns: () => this.deps.shards.owns(shard),
      local: () => this.local(req),
      patienceMs: HANDOFF_PATIENCE_MS,
      unavailable: `no worker answers for shard ${shard}; try again`,
    });
  }

  private local(req: ShadowRequest): Promise<ShadowView | undefined> {
    if (req.op === 'view') return this.localView(req.deviceId);
    if (req.op === 'setDesired') return this.localSetDesired(req.deviceId, req.values);
    if (req.op === 'forget') return this.localForget(req.deviceId).then(() => undefined);
    return this.localClearDesired(req.deviceId).then(() => undefined);
  }

  async view(deviceId: string): Promise<ShadowView> {
    if (this.deps.shards.ownsDevice(deviceId)) return this.localView(deviceId);
    return (await this.remote({ op: 'view', deviceId }))!;
  }

  /** Validates and sets desired state; sends the delta at once when the device is online. */
  async setDesired(deviceId: string, values: Record<string, unknown>): Promise<ShadowView> {
    if (this.deps.shards.ownsDevice(deviceId)) return this.localSetDesired(deviceId, values);
    return (await this.remote({ op: 'setDesired', deviceId, values }))!;
  }

  /** Drops every desired value (a device leaving its home must not act on the old home's wishes). */
  async clearDesired(deviceId: string): Promise<void> {
    if (this.deps.shards.ownsDevice(deviceId)) return this.localClearDesired(deviceId);
    await this.remote({ op: 'clearDesired', deviceId });
  }

  /** The device was deleted: its shadow goes, from the owner's memory and from the store. */
  async forget(deviceId: string): Promise<void> {
    if (this.deps.shards.ownsDevice(deviceId)) return this.localForget(deviceId);
    await this.remote({ op: 'forget', deviceId });
  }

  private async localForget(deviceId: string): Promise<void> {
    await this.loading.get(deviceId);
    await this.flush();
    this.dirty.delete(deviceId);
    this.cache.delete(deviceId);
    this.listening.delete(deviceId);
    await this.deps.db.deleteFrom('shadows').where('device_id', '=', deviceId).execute();
  }

  private async localView(deviceId: string): Promise<ShadowView> {
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

  private async localSetDesired(deviceId: string, values: Record<string, unknown>): Promise<ShadowView> {
    const device = await this.deps.devices.requireEnabled(deviceId);
    const model = await this.deps.products.model(device.productKey);
    const check = model!.checkDesired(values);
    if (!check.ok) throw new HearthError('E_MODEL_MISMATCH', check.problems.join('; '), { problems: check.problems });
    const s = await this.load(deviceId);
    applyDesired(s, values, Date.now());
    if ((await this.isListening(deviceId)) && (await this.deps.presence.get(deviceId)).online) this.sendDelta(deviceId, s);
    this.dirty.add(deviceId);
    // the view of this change: the device may answer while the write is in flight
    const view = toView(s);
    // Answered means stored: a failed write fails the call (the change stays dirty and is retried).
    await this.flush(true);
    return view;
  }

  private async localClearDesired(deviceId: string): Promise<void> {
    const s = await this.load(deviceId);
    const keys = Object.keys(s.desired);
    if (keys.length === 0) return;
    applyDesired(s, Object.fromEntries(keys.map((k) => [k, null])), Date.now());
    this.dirty.add(deviceId);
    await this.flush(true);
  }

  /** The device (or its hub) subscribed to its desired topic: send what is pending. */
  async resend(deviceId: string): Promise<void> {
    if (this.listening.get(deviceId) !== true) {
      this.listening.set(deviceId, true);
      await this.deps.presence.setListening(deviceId);
    }
    const s = await this.load(deviceId);
    if (Object.keys(s.desired).length === 0) return;
    this.sendDelta(deviceId, s);
    this.dirty.add(deviceId);
  }

  /** Resolves when every change made so far is in the store; `strict` rejects if the write failed. */
  flush(strict = false): Promise<void> {
    return this.writer.flush(strict);
  }

  /**
   * Writes dirty shadows in one transaction. A shadow that cannot be serialised or that the store
   * refuses is logged and left out (its previous stored version stays), never failing the others;
   * when the store fails, they stay dirty for the next flush.
   */
  private async write(): Promise<void> {
    if (this.dirty.size === 0) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    const { db, log } = this.deps;
    const rows: ShadowRow[] = [];
    for (const id of ids) {
      const s = this.cache.get(id)!;
      try {
        rows.push({
          device_id: id,
          reported: toJson(s.reported),
          desired: toJson(s.desired),
          metadata: toJson(s.metadata),
          version: s.version,
          updated_at: s.updatedAt,
        });
      } catch (err) {
        log.error({ err, deviceId: id }, 'shadow could not be serialised; not stored');
      }
    }
    // In key order: two writers of the same shadows (a shard changing owner) lock them in the same order.
    rows.sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
    const { retry, error } = await writeIsolated(rows, {
      batch: (rs) =>
        db.transaction().execute(async (trx) => {
          for (let i = 0; i < rs.length; i += SHADOW_CHUNK) await UPSERT_SHADOWS.run(trx, rs.slice(i, i + SHADOW_CHUNK));
        }),
      one: async (r) => void (await UPSERT_SHADOWS.run(db, [r])),
      onBad: (r, err) => log.error({ err, deviceId: r.device_id }, 'shadow refused by the store; not stored, the rest of its batch is'),
    });
    if (error === undefined) return;
    for (const r of retry) this.dirty.add(r.device_id);
    throw error;
  }

  private async isListening(deviceId: string): Promise<boolean> {
    let on = this.listening.get(deviceId);
    if (on === undefined) {
      on = await this.deps.presence.isListening(deviceId);
      if (!this.listening.has(deviceId)) this.listening.set(deviceId, on);
    }
    return on;
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
          ? {
              reported: fromJson(row.reported),
              desired: fromJson(row.desired),
              metadata: fromJson(row.metadata),
              version: Number(row.version),
              updatedAt: Number(row.updated_at),
            }
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

type ShadowRow = { device_id: string; reported: string; desired: string; metadata: string; version: number; updated_at: number };

/** Shadows per upsert: 6 parameters each. */
const SHADOW_CHUNK = 500;
/** One statement for a batch of shadows (ids are unique within a batch: they come from a Set). */
const UPSERT_SHADOWS = new BulkInsert(
  'shadows',
  ['device_id', 'reported', 'desired', 'metadata', 'version', 'updated_at'],
  `on conflict ("device_id") do update set "reported" = excluded.reported, "desired" = excluded.desired,
    "metadata" = excluded.metadata, "version" = excluded.version, "updated_at" = excluded.updated_at`,
);
