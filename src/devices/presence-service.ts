import { sql } from 'kysely';
import { placeholderOf, runSql, TextCache } from '../core/store/bulk.ts';
import type { Db } from '../core/store/db.ts';
import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { DeviceService } from './device-service.ts';
import { subjects } from '../core/bus/subjects.ts';
import { PeriodicFlush, writeIsolated } from '../core/periodic-flush.ts';
import { PresenceLog, type ConnectivityReport, type PresenceChange } from './presence-log.ts';

import type { PresenceEvent, PresenceReason } from '../core/bus/events.ts';

/** Why a device's presence last changed; the bus event on `device.{id}.presence` (both declared in the bus catalogue). */
export type { PresenceEvent, PresenceReason };

export interface Presence {
  online: boolean;
  reason: PresenceReason;
  /** When `online` last changed (epoch ms). */
  changedAt: number | null;
  /** Last message or connection event (epoch ms). */
  lastSeen: number | null;
  session: number;
}

interface PendingConnect {
  deviceId: string;
  at: number;
  resolve(session: number): void;
  reject(err: unknown): void;
}

/** Rows of one presence upsert (8 values each, well under SQLite's 32,766 variables). */
const CONNECTS_PER_STATEMENT = 500;

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
  /** Every change, for connectivity analytics (written behind with the last-seen times). */
  private readonly changes: PresenceLog;
  private unsub: Unsubscribe | undefined;

  constructor(
    private readonly deps: {
      db: Db;
      bus: Bus;
      devices: DeviceService;
      log: Logger;
      nodeId: string;
      flushMs?: number;
      observer?: { presenceChanged(online: boolean, reason: string): void };
    },
  ) {
    this.changes = new PresenceLog({ db: deps.db, log: deps.log });
    this.writer = new PeriodicFlush(
      async () => {
        await this.writeSeen();
        await this.changes.write();
      },
      deps.flushMs ?? 1000,
      (err) => deps.log.error({ err }, 'presence flush failed'),
    );
  }

  /** Devices that this node believed online when it last ran cannot be connected now. */
  async start(): Promise<void> {
    const now = Date.now();
    const ended = await this.deps.db
      .updateTable('presence')
      .set({ online: 0, reason: 'server-restart', changed_at: now })
      .where('node', '=', this.deps.nodeId)
      .where('online', '=', 1)
      .returning(['device_id', 'session'])
      .execute();
    for (const r of ended) this.changes.add({ deviceId: r.device_id, at: now, session: Number(r.session), online: false, reason: 'server-restart' });
    // Other nodes change presence too (the gateway holding a connection, the worker handling a
    // hub's reports): their announcements keep this node's cache current.
    this.unsub = this.deps.bus.subscribe(subjects.presence('*'), (msg) => this.learn(msg.data), { name: 'presence.cache' });
    this.writer.start();
  }

  stop(): Promise<void> {
    this.unsub?.();
    return this.writer.stop();
  }

  private learn(ev: PresenceEvent): void {
    const cur = this.state.get(ev.deviceId);
    if (!cur || ev.session < cur.session || (ev.session === cur.session && cur.changedAt !== null && ev.at < cur.changedAt)) return;
    if (cur.online === ev.online && cur.session === ev.session && cur.reason === ev.reason) return;
    this.state.set(ev.deviceId, {
      ...cur,
      online: ev.online,
      reason: ev.reason,
      session: ev.session,
      changedAt: ev.at,
      lastSeen: Math.max(cur.lastSeen ?? 0, ev.at),
    });
  }

  /**
   * A node died without closing its connections: every device it held is offline now (and
   * hubs' sub-devices with them). Run by whichever node noticed.
   */
  async nodeLost(nodeId: string): Promise<number> {
    const now = Date.now();
    const rows = await this.deps.db
      .updateTable('presence')
      .set({ online: 0, reason: 'node-lost', changed_at: now, listening: 0 })
      .where('node', '=', nodeId)
      .where('online', '=', 1)
      .returning(['device_id', 'session'])
      .execute();
    for (const r of rows) {
      const session = Number(r.session);
      const cur = this.state.get(r.device_id);
      if (cur && cur.session <= session) this.state.set(r.device_id, { ...cur, online: false, reason: 'node-lost', changedAt: now });
      this.announce({ deviceId: r.device_id, online: false, reason: 'node-lost', session, at: now });
    }
    for (const r of rows) for (const child of await this.deps.devices.children(r.device_id)) await this.setChild(child.id, false, 'hub-offline');
    return rows.length;
  }

  /** The device (or its hub) subscribed to its desired topic; remembered until it goes offline. */
  async setListening(deviceId: string): Promise<void> {
    await this.deps.db.updateTable('presence').set({ listening: 1 }).where('device_id', '=', deviceId).where('online', '=', 1).execute();
  }

  /** Whether the device's current connection subscribed to its desired topic (from the store). */
  async isListening(deviceId: string): Promise<boolean> {
    const row = await this.deps.db.selectFrom('presence').select(['online', 'listening']).where('device_id', '=', deviceId).executeTakeFirst();
    return row?.online === 1 && row.listening === 1;
  }

  async get(deviceId: string): Promise<Presence> {
    const hit = this.state.get(deviceId);
    if (hit) return hit;
    const row = await this.deps.db.selectFrom('presence').selectAll().where('device_id', '=', deviceId).executeTakeFirst();
    const p: Presence = row
      ? {
          online: row.online === 1,
          reason: row.reason as PresenceReason,
          changedAt: Number(row.changed_at),
          lastSeen: row.last_seen == null ? null : Number(row.last_seen),
          session: Number(row.session),
        }
      : { ...NEVER };
    if (!this.state.has(deviceId)) this.state.set(deviceId, p);
    return this.state.get(deviceId)!;
  }

  /** `get` of many devices: the cached ones as they are, the others read in one query (a page of a list). */
  async many(deviceIds: readonly string[]): Promise<Map<string, Presence>> {
    const out = new Map<string, Presence>();
    const missing: string[] = [];
    for (const id of deviceIds) {
      const hit = this.state.get(id);
      if (hit) out.set(id, hit);
      else missing.push(id);
    }
    for (let i = 0; i < missing.length; i += 1000) {
      const chunk = missing.slice(i, i + 1000);
      const rows = await this.deps.db.selectFrom('presence').selectAll().where('device_id', 'in', chunk).execute();
      const read = new Map(rows.map((r) => [r.device_id, r]));
      for (const id of chunk) {
        const row = read.get(id);
        const p: Presence = row
          ? {
              online: row.online === 1,
              reason: row.reason as PresenceReason,
              changedAt: Number(row.changed_at),
              lastSeen: row.last_seen == null ? null : Number(row.last_seen),
              session: Number(row.session),
            }
          : { ...NEVER };
        // As `get`: a state learnt meanwhile (a connect) wins over what was read.
        if (!this.state.has(id)) this.state.set(id, p);
        out.set(id, this.state.get(id)!);
      }
    }
    return out;
  }

  /**
   * A device's connection was accepted; returns its new session number. The connects of one turn
   * of the event loop (a reconnect storm) are written in one statement, a device at most once.
   */
  connected(deviceId: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.connects.push({ deviceId, at: Date.now(), resolve, reject });
      if (this.connectsWriting || this.connects.length > 1) return;
      this.connectsWriting = true;
      // After this turn of the event loop: the connects a reconnect storm brought in it go together.
      setImmediate(() => void this.writeConnects());
    });
  }

  /** Connects not written yet, in arrival order. */
  private connects: PendingConnect[] = [];
  /** Whether `writeConnects` runs (or is about to): one statement at a time, so a device's sessions are numbered in connect order. */
  private connectsWriting = false;

  private async writeConnects(): Promise<void> {
    while (this.connects.length > 0) {
      // One row per device in a statement (an upsert may not touch a row twice); a second connect
      // of the same device waits for the next statement.
      const batch: PendingConnect[] = [];
      const later: PendingConnect[] = [];
      const ids = new Set<string>();
      for (const c of this.connects) {
        if (ids.has(c.deviceId) || batch.length >= CONNECTS_PER_STATEMENT) later.push(c);
        else {
          ids.add(c.deviceId);
          batch.push(c);
        }
      }
      this.connects = later;
      try {
        const sessions = await this.upsertConnects(batch);
        for (const c of batch) {
          const session = sessions.get(c.deviceId)!;
          this.state.set(c.deviceId, { online: true, reason: 'connect', changedAt: c.at, lastSeen: c.at, session });
          this.announce({ deviceId: c.deviceId, online: true, reason: 'connect', session, at: c.at });
          c.resolve(session);
        }
      } catch (err) {
        for (const c of batch) c.reject(err);
      }
    }
    this.connectsWriting = false;
  }

  private async upsertConnects(batch: PendingConnect[]): Promise<Map<string, number>> {
    const node = this.deps.nodeId;
    const rows = await this.deps.db
      .insertInto('presence')
      .values(batch.map((c) => ({ device_id: c.deviceId, online: 1, session: 1, reason: 'connect', changed_at: c.at, last_seen: c.at, node, listening: 0 })))
      .onConflict((oc) =>
        oc.column('device_id').doUpdateSet({
          online: 1,
          session: sql`presence.session + 1`,
          reason: 'connect',
          changed_at: sql`excluded.changed_at`,
          last_seen: sql`excluded.last_seen`,
          node,
        }),
      )
      .returning(['device_id', 'session'])
      .execute();
    const sessions = new Map(rows.map((r) => [r.device_id, Number(r.session)]));
    for (const c of batch) if (!sessions.has(c.deviceId)) throw new Error(`presence of ${c.deviceId} was not written`);
    return sessions;
  }

  /** The connection of `session` ended. Ignored when a newer session has taken over. */
  async disconnected(deviceId: string, session: number, reason: PresenceReason): Promise<void> {
    const now = Date.now();
    const res = await this.deps.db
      .updateTable('presence')
      .set({ online: 0, reason, changed_at: now, last_seen: now, listening: 0 })
      .where('device_id', '=', deviceId)
      .where('session', '=', session)
      .where('online', '=', 1)
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
    await this.deps.db
      .insertInto('presence')
      .values({
        device_id: deviceId,
        online: online ? 1 : 0,
        session: cur.session,
        reason,
        changed_at: now,
        last_seen: online ? now : cur.lastSeen,
        node: this.deps.nodeId,
        listening: 0,
      })
      .onConflict((oc) =>
        oc.column('device_id').doUpdateSet({
          online: online ? 1 : 0,
          reason,
          changed_at: now,
          node: this.deps.nodeId,
          ...(online || reason === 'hub-reported' ? {} : { listening: 0 }),
        }),
      )
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

  /**
   * Last-seen times in one transaction (an update the store refuses is dropped alone). They are
   * advisory and the next message sets them again, so a batch the store fails is not retried:
   * a crash or an outage loses at most the last `flushMs` (1 s) of last-seen times.
   */
  private async writeSeen(): Promise<void> {
    if (this.dirtySeen.size === 0) return;
    const seen: Array<{ id: string; at: number }> = [];
    for (const id of this.dirtySeen) {
      const at = this.state.get(id)?.lastSeen;
      if (at != null) seen.push({ id, at });
    }
    this.dirtySeen.clear();
    const { db, log } = this.deps;
    // In key order: two nodes writing the same devices' times (a hub's, from its sub-devices' shards) lock them in the same order.
    seen.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const { error } = await writeIsolated(seen, {
      batch: (rs) =>
        db.transaction().execute(async (trx) => {
          for (let i = 0; i < rs.length; i += SEEN_CHUNK) await updateSeen(trx, rs.slice(i, i + SEEN_CHUNK));
        }),
      one: (r) => updateSeen(db, [r]),
      onBad: (r, err) => log.error({ err, deviceId: r.id }, 'last-seen time refused by the store; dropped'),
    });
    if (error !== undefined) throw error;
  }

  /**
   * Connectivity of these devices over [from, to] in buckets of `bucketMs`, added to `report`
   * (online devices per bucket, connects, disconnects and their reasons); from the recorded changes.
   */
  async connectivity(deviceIds: readonly string[], from: number, to: number, bucketMs: number, report: ConnectivityReport): Promise<void> {
    await this.flush();
    await this.changes.connectivity(deviceIds, from, to, bucketMs, report);
  }

  /** A device's recorded presence changes in [from, to], newest first (the timeline of its connects and disconnects with their reasons). */
  async history(deviceId: string, from: number, to: number, limit: number): Promise<PresenceChange[]> {
    await this.flush();
    return this.changes.history(deviceId, from, to, limit);
  }

  /** Forgets a deleted device's recorded presence changes (`DELETE …?purge=true`). */
  async purge(deviceId: string): Promise<void> {
    await this.flush();
    await this.changes.purge(deviceId);
  }

  /** Deletes these devices' recorded presence changes older than `before` (retention), `batch` rows per statement. */
  prune(deviceIds: readonly string[], before: number, batch: number): Promise<number> {
    return this.changes.prune(deviceIds, before, batch);
  }

  private announce(ev: PresenceEvent): void {
    this.changes.add(ev);
    this.deps.observer?.presenceChanged(ev.online, ev.reason);
    this.deps.bus.publish(subjects.presence(ev.deviceId), ev);
  }
}

/** Devices per last-seen statement: 2 parameters each. */
const SEEN_CHUNK = 500;
const SEEN_TEXTS = new TextCache();

/** Sets the last-seen time of many devices in one statement (SQLite and PostgreSQL both run UPDATE … FROM a VALUES list). */
async function updateSeen(db: Db, rows: ReadonlyArray<{ id: string; at: number }>): Promise<void> {
  const ph = placeholderOf(db);
  const text = SEEN_TEXTS.get(`${ph(1)}${rows.length}`, () => {
    const values = rows.map((_, i) => `(${ph(2 * i + 1)}, CAST(${ph(2 * i + 2)} AS BIGINT))`);
    return `WITH v (id, at) AS (VALUES ${values.join(', ')}) UPDATE presence SET last_seen = v.at FROM v WHERE presence.device_id = v.id`;
  });
  await runSql(
    db,
    text,
    rows.flatMap((r) => [r.id, r.at]),
  );
}
