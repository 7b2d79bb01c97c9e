import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import type { PresenceEvent } from '../core/bus/events.ts';
import { writeIsolated } from '../core/periodic-flush.ts';

/** One recorded presence change (a row of `presence_log`). */
export interface PresenceChange {
  deviceId: string;
  at: number;
  session: number;
  online: boolean;
  reason: string;
}

/** What the connectivity analytics of a range found (docs/telemetry.md). */
export interface ConnectivityReport {
  /** Per bucket start: devices online at some time in it, connects and disconnects in it. */
  buckets: Map<number, { online: number; connects: number; disconnects: number }>;
  /** Disconnects in the range per reason. */
  reasons: Record<string, number>;
  /** Per device with any change in the range: connects, disconnects and their reasons. */
  devices: Map<string, { connects: number; disconnects: number; reasons: Record<string, number> }>;
}

/** Rows per insert statement of a flush. */
const INSERT_CHUNK = 500;
/** Pending changes kept while the store refuses them, at most (the oldest go first). */
const MAX_PENDING = 100_000;

/**
 * The record of presence changes that connectivity analytics read: one compact row per change
 * (device, time, session, online, reason), keyed by those columns (SQLite: WITHOUT ROWID, no
 * second index). Changes are written behind, with the last-seen times; retention prunes them with
 * the product's device events.
 */
export class PresenceLog {
  private pending: PresenceChange[] = [];

  constructor(private readonly deps: { db: Db; log: Logger }) {}

  add(ev: PresenceEvent | PresenceChange): void {
    this.pending.push({ deviceId: ev.deviceId, at: ev.at, session: ev.session, online: ev.online, reason: ev.reason });
    if (this.pending.length > MAX_PENDING) this.pending.splice(0, this.pending.length - MAX_PENDING);
  }

  /** Writes what is pending; a batch the store fails stays pending for the next flush. */
  async write(): Promise<void> {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    this.pending = [];
    const { db, log } = this.deps;
    const insert = (rs: PresenceChange[]) =>
      db
        .insertInto('presence_log')
        .values(rs.map((r) => ({ device_id: r.deviceId, at: r.at, session: r.session, online: r.online ? 1 : 0, reason: r.reason })))
        .onConflict((oc) => oc.doNothing())
        .execute();
    for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
      const { retry, error } = await writeIsolated(rows.slice(i, i + INSERT_CHUNK), {
        batch: async (rs) => void (await insert(rs)),
        one: async (r) => void (await insert([r])),
        onBad: (r, err) => log.error({ err, deviceId: r.deviceId }, 'presence change refused by the store; dropped'),
      });
      if (error !== undefined) {
        this.pending = [...retry, ...rows.slice(i + INSERT_CHUNK), ...this.pending];
        throw error;
      }
    }
  }

  /** One device's recorded changes in [from, to], newest first, at most `limit`. */
  async history(deviceId: string, from: number, to: number, limit: number): Promise<PresenceChange[]> {
    const rows = await this.deps.db
      .selectFrom('presence_log')
      .select(['at', 'session', 'online', 'reason'])
      .where('device_id', '=', deviceId)
      .where('at', '>=', from)
      .where('at', '<=', to)
      .orderBy('at', 'desc')
      .orderBy('session', 'desc')
      // within one session and millisecond, the disconnect came after the connect
      .orderBy('online', 'asc')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ deviceId, at: Number(r.at), session: Number(r.session), online: r.online === 1, reason: r.reason }));
  }

  /**
   * Connectivity of these devices over [from, to] in buckets of `bucketMs` (aligned on UTC): a
   * device counts as online in a bucket when it was online at any time in it, from its last
   * recorded change before `from` (a device with none and none in the range: its presence now, if
   * it last changed before `from`) and its changes in the range.
   */
  async connectivity(deviceIds: readonly string[], from: number, to: number, bucketMs: number, report: ConnectivityReport): Promise<void> {
    if (deviceIds.length === 0) return;
    const { db } = this.deps;
    const ids = [...deviceIds];
    const latest = db
      .selectFrom('presence_log')
      .select(['device_id', (eb) => eb.fn.max('at').as('at')])
      .where('device_id', 'in', ids)
      .where('at', '<', from)
      .groupBy('device_id')
      .as('m');
    const before = await db
      .selectFrom('presence_log as l')
      .innerJoin(latest, (j) => j.onRef('l.device_id', '=', 'm.device_id').onRef('l.at', '=', 'm.at'))
      .select(['l.device_id', 'l.session', 'l.online'])
      .execute();
    const startState = new Map<string, { session: number; online: boolean }>();
    for (const r of before) {
      const s = startState.get(r.device_id);
      // Two changes in one millisecond: the later session, and offline after online within one.
      if (!s || Number(r.session) > s.session || (Number(r.session) === s.session && r.online === 0))
        startState.set(r.device_id, { session: Number(r.session), online: r.online === 1 });
    }
    const changes = await db
      .selectFrom('presence_log')
      .select(['device_id', 'at', 'session', 'online', 'reason'])
      .where('device_id', 'in', ids)
      .where('at', '>=', from)
      .where('at', '<=', to)
      .orderBy('device_id')
      .orderBy('at')
      .orderBy('session')
      .orderBy('online', 'desc')
      .execute();
    const byDevice = new Map<string, typeof changes>();
    for (const c of changes) {
      let list = byDevice.get(c.device_id);
      if (!list) byDevice.set(c.device_id, (list = []));
      list.push(c);
    }
    // Devices with no recorded change before or in the range (changes recorded before this version do not exist): their presence now.
    const unknown = ids.filter((id) => !startState.has(id) && !byDevice.has(id));
    const current = new Map<string, boolean>();
    if (unknown.length) {
      const rows = await db.selectFrom('presence').select(['device_id', 'online', 'changed_at']).where('device_id', 'in', unknown).execute();
      for (const r of rows) current.set(r.device_id, r.online === 1 && Number(r.changed_at) < from);
    }
    const bucketOf = (t: number) => Math.floor(t / bucketMs) * bucketMs;
    const at = (b: number) => {
      let e = report.buckets.get(b);
      if (!e) report.buckets.set(b, (e = { online: 0, connects: 0, disconnects: 0 }));
      return e;
    };
    for (const id of ids) {
      const list = byDevice.get(id) ?? [];
      let online = startState.get(id)?.online;
      if (online === undefined) online = list.length ? list[0].online !== 1 : (current.get(id) ?? false);
      const marked = new Set<number>();
      const mark = (a: number, b: number) => {
        for (let k = bucketOf(a); k <= bucketOf(b); k += bucketMs) {
          if (marked.has(k)) continue;
          marked.add(k);
          at(k).online++;
        }
      };
      let since = from;
      for (const c of list) {
        const t = Number(c.at);
        if (c.online === 1) {
          if (!online) since = t;
          online = true;
          mark(t, t);
          at(bucketOf(t)).connects++;
        } else {
          if (online) mark(since, t);
          online = false;
          at(bucketOf(t)).disconnects++;
          report.reasons[c.reason] = (report.reasons[c.reason] ?? 0) + 1;
        }
        let d = report.devices.get(id);
        if (!d) report.devices.set(id, (d = { connects: 0, disconnects: 0, reasons: {} }));
        if (c.online === 1) d.connects++;
        else {
          d.disconnects++;
          d.reasons[c.reason] = (d.reasons[c.reason] ?? 0) + 1;
        }
      }
      if (online) mark(since, to);
    }
  }

  /** Deletes every recorded change of a device (deleted with `?purge=true`). */
  async purge(deviceId: string): Promise<void> {
    await this.deps.db.deleteFrom('presence_log').where('device_id', '=', deviceId).execute();
  }

  /** Deletes these devices' changes older than `before`, `batch` rows per statement by their key. */
  async prune(deviceIds: readonly string[], before: number, batch: number): Promise<number> {
    if (deviceIds.length === 0) return 0;
    const { db } = this.deps;
    let total = 0;
    for (;;) {
      const started = performance.now();
      const keys = db
        .selectFrom('presence_log')
        .select(['device_id', 'at', 'session', 'online'])
        .where('device_id', 'in', [...deviceIds])
        .where('at', '<', before)
        .limit(batch);
      const r = await db.deleteFrom('presence_log').where(sql<boolean>`(device_id, at, session, online) IN (${keys})`).executeTakeFirst();
      const n = Number(r.numDeletedRows);
      total += n;
      if (n < batch) return total;
      // Pruning holds the store at most a quarter of the time (as the history's).
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, Math.max(1, (performance.now() - started) * 3))));
    }
  }
}
