import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import type { Bus } from '../core/bus/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { DeviceService } from './device-service.ts';
import { PeriodicFlush } from '../core/periodic-flush.ts';

/** Why a device's presence last changed. */
export type PresenceReason =
  | 'connect' | 'disconnect' | 'keepalive-timeout' | 'connection-lost' | 'client-error' | 'server-shutdown' | 'server-restart'
  | 'hub-reported' | 'hub-offline' | 'never-connected';

export interface Presence {
  online: boolean;
  reason: PresenceReason;
  /** When `online` last changed (epoch ms). */
  changedAt: number | null;
  /** Last message or connection event (epoch ms). */
  lastSeen: number | null;
  session: number;
}

/** Bus event published on `device.{id}.presence`. */
export interface PresenceEvent {
  deviceId: string;
  online: boolean;
  reason: PresenceReason;
  session: number;
  at: number;
}

const NEVER: Presence = Object.freeze({ online: false, reason: 'never-connected', changedAt: null, lastSeen: null, session: 0 });

/**
 * Online/offline state and last-seen times. Each connection gets a session number from an
 * atomic counter in the store; a disconnect only counts if it belongs to the current
 * session, so a late disconnect of a replaced connection cannot mark a reconnected device offline.
 */
export class PresenceService {
  private readonly state = new Map<string, Presence>();
  private readonly dirtySeen = new Set<string>();
  private readonly writer: PeriodicFlush;

  constructor(private readonly deps: { db: Db; bus: Bus; devices: DeviceService; log: Logger; nodeId: string; flushMs?: number }) {
    this.writer = new PeriodicFlush(() => this.writeSeen(), deps.flushMs ?? 1000, (err) => deps.log.error({ err }, 'presence flush failed'));
  }

  /** Devices that this node believed online when it last ran cannot be connected now. */
  async start(): Promise<void> {
    await this.deps.db.updateTable('presence')
      .set({ online: 0, reason: 'server-restart', changed_at: Date.now() })
      .where('node', '=', this.deps.nodeId).where('online', '=', 1)
      .execute();
    this.writer.start();
  }

  stop(): Promise<void> {
    return this.writer.stop();
  }

  async get(deviceId: string): Promise<Presence> {
    const hit = this.state.get(deviceId);
    if (hit) return hit;
    const row = await this.deps.db.selectFrom('presence').selectAll().where('device_id', '=', deviceId).executeTakeFirst();
    const p: Presence = row
      ? { online: row.online === 1, reason: row.reason as PresenceReason, changedAt: Number(row.changed_at), lastSeen: row.last_seen == null ? null : Number(row.last_seen), session: Number(row.session) }
      : { ...NEVER };
    if (!this.state.has(deviceId)) this.state.set(deviceId, p);
    return this.state.get(deviceId)!;
  }

  /** A device's connection was accepted; returns its new session number. */
  async connected(deviceId: string): Promise<number> {
    const now = Date.now();
    const row = await this.deps.db.insertInto('presence')
      .values({ device_id: deviceId, online: 1, session: 1, reason: 'connect', changed_at: now, last_seen: now, node: this.deps.nodeId })
      .onConflict((oc) => oc.column('device_id').doUpdateSet({ online: 1, session: sql`presence.session + 1`, reason: 'connect', changed_at: now, last_seen: now, node: this.deps.nodeId }))
      .returning('session')
      .executeTakeFirstOrThrow();
    const session = Number(row.session);
    this.state.set(deviceId, { online: true, reason: 'connect', changedAt: now, lastSeen: now, session });
    this.announce({ deviceId, online: true, reason: 'connect', session, at: now });
    return session;
  }

  /** The connection of `session` ended. Ignored when a newer session has taken over. */
  async disconnected(deviceId: string, session: number, reason: PresenceReason): Promise<void> {
    const now = Date.now();
    const res = await this.deps.db.updateTable('presence')
      .set({ online: 0, reason, changed_at: now, last_seen: now })
      .where('device_id', '=', deviceId).where('session', '=', session).where('online', '=', 1)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) return;
    const cur = await this.get(deviceId);
    if (cur.session === session) this.state.set(deviceId, { ...cur, online: false, reason, changedAt: now, lastSeen: now });
    this.announce({ deviceId, online: false, reason, session, at: now });
    for (const child of await this.deps.devices.children(deviceId)) await this.setChild(child.id, false, 'hub-offline');
  }

  /** Presence of a sub-device as its hub reports it (explicitly or by publishing for it). */
  async setChild(deviceId: string, online: boolean, reason: PresenceReason): Promise<void> {
    const cur = await this.get(deviceId);
    if (cur.online === online) return;
    const now = Date.now();
    await this.deps.db.insertInto('presence')
      .values({ device_id: deviceId, online: online ? 1 : 0, session: cur.session, reason, changed_at: now, last_seen: online ? now : cur.lastSeen, node: this.deps.nodeId })
      .onConflict((oc) => oc.column('device_id').doUpdateSet({ online: online ? 1 : 0, reason, changed_at: now, node: this.deps.nodeId }))
      .execute();
    this.state.set(deviceId, { ...cur, online, reason, changedAt: now, lastSeen: online ? now : cur.lastSeen });
    this.announce({ deviceId, online, reason, session: cur.session, at: now });
  }

  /** Records traffic from a device; written to the store in batches. */
  seen(deviceId: string, at = Date.now()): void {
    const cur = this.state.get(deviceId);
    if (cur) cur.lastSeen = at;
    this.dirtySeen.add(deviceId);
  }

  /** Resolves when every last-seen time recorded so far is in the store. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /** Last-seen times in one transaction; they are advisory, so a failed batch is not retried. */
  private async writeSeen(): Promise<void> {
    if (this.dirtySeen.size === 0) return;
    const ids = [...this.dirtySeen];
    this.dirtySeen.clear();
    await this.deps.db.transaction().execute(async (trx) => {
      for (const id of ids) {
        const p = this.state.get(id);
        if (p?.lastSeen != null) await trx.updateTable('presence').set({ last_seen: p.lastSeen }).where('device_id', '=', id).execute();
      }
    });
  }

  private announce(ev: PresenceEvent): void {
    this.deps.bus.publish(`device.${ev.deviceId}.presence`, ev);
  }
}
