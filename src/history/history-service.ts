import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import { newId } from '../core/ids.ts';
import { PeriodicFlush, writeIsolated } from '../core/periodic-flush.ts';

type HistoryRow = { device_id: string; property: string; ts: number; num: number | null; val: string | null; msg_id: string | null };
type EventRow = { id: string; device_id: string; event: string; params: string; ts: number };
/** One buffered write: a point or an event. */
type Pending = { point: HistoryRow; event?: undefined } | { event: EventRow; point?: undefined };

export interface HistoryPoint {
  ts: string;
  value: unknown;
}

export interface HistoryBucket {
  ts: string;
  min: number | null;
  max: number | null;
  avg: number | null;
  count: number;
}

export interface DeviceEventRecord {
  id: string;
  event: string;
  params: Record<string, unknown>;
  ts: string;
}

/** Largest batch per INSERT: 5 columns × 400 rows stays far below every engine's parameter limit. */
const CHUNK = 400;

/**
 * Time series of properties marked `history: true`, and the log of device events.
 * Writes are buffered and flushed as multi-row inserts every `flushMs` (or when a buffer
 * fills); reads flush first, so a caller always sees what was accepted before it asked.
 */
export class HistoryService {
  private pendingPoints: HistoryRow[] = [];
  private pendingEvents: EventRow[] = [];
  private readonly writer: PeriodicFlush;

  constructor(private readonly deps: { db: Db; log: Logger; flushMs: number; maxBuffered?: number }) {
    this.writer = new PeriodicFlush(() => this.write(), deps.flushMs, (err) => deps.log.error({ err }, 'history flush failed; will retry'));
  }

  start(): void {
    this.writer.start();
  }

  stop(): Promise<void> {
    return this.writer.stop();
  }

  /** Records a point; `msgId` (the message that carried it) makes a repeated recording a no-op. */
  record(deviceId: string, property: string, value: unknown, ts: number, msgId: string | null = null): void {
    const isNum = typeof value === 'number' || typeof value === 'boolean';
    this.pendingPoints.push({ device_id: deviceId, property, ts, num: isNum ? Number(value) : null, val: isNum ? null : toJson(value), msg_id: msgId });
    if (this.pendingPoints.length >= (this.deps.maxBuffered ?? 2000)) void this.flush();
  }

  /** Records a device event; `id` makes a repeated recording of the same event a no-op. */
  recordEvent(deviceId: string, event: string, params: Record<string, unknown>, ts: number, id = newId('e')): string {
    this.pendingEvents.push({ id, device_id: deviceId, event, params: toJson(params), ts });
    if (this.pendingEvents.length >= (this.deps.maxBuffered ?? 2000)) void this.flush();
    return id;
  }

  /** Resolves when everything recorded so far is in the store; `strict` rejects if the write failed. */
  flush(strict = false): Promise<void> {
    return this.writer.flush(strict);
  }

  /**
   * Multi-row inserts in one transaction. A row the store refuses is dropped alone (logged) and
   * the others are stored; when the store fails, the rows go back to the front of the buffers.
   */
  private async write(): Promise<void> {
    if (this.pendingPoints.length === 0 && this.pendingEvents.length === 0) return;
    const records: Pending[] = [];
    for (const point of this.pendingPoints) records.push({ point });
    for (const event of this.pendingEvents) records.push({ event });
    this.pendingPoints = [];
    this.pendingEvents = [];
    const { db, log } = this.deps;
    const { retry, error } = await writeIsolated(records, {
      batch: (rs) => db.transaction().execute(async (trx) => {
        const points = rs.flatMap((r) => (r.point ? [r.point] : []));
        const events = rs.flatMap((r) => (r.event ? [r.event] : []));
        // Redelivered messages repeat points and events: the unique keys make them no-ops.
        for (let i = 0; i < points.length; i += CHUNK) await insertPoints(trx, points.slice(i, i + CHUNK));
        for (let i = 0; i < events.length; i += CHUNK) await insertEvents(trx, events.slice(i, i + CHUNK));
      }),
      one: async (r) => void (await (r.point ? insertPoints(db, [r.point]) : insertEvents(db, [r.event!]))),
      onBad: (r, err) => log.error({ err, deviceId: (r.point ?? r.event)!.device_id, record: r.point ? 'point' : 'event' }, 'history record refused by the store; dropped, the rest of its batch is stored'),
    });
    if (error === undefined) return;
    this.pendingPoints = retry.flatMap((r) => (r.point ? [r.point] : [])).concat(this.pendingPoints);
    this.pendingEvents = retry.flatMap((r) => (r.event ? [r.event] : [])).concat(this.pendingEvents);
    throw error;
  }

  /** Removes a deleted device's history: its property time series and its events (`DELETE …?purge=true`). */
  async purge(deviceId: string): Promise<void> {
    await this.flush();
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('history').where('device_id', '=', deviceId).execute();
      await trx.deleteFrom('device_events').where('device_id', '=', deviceId).execute();
    });
  }

  async points(deviceId: string, property: string, from: number, to: number, limit: number): Promise<HistoryPoint[]> {
    await this.flush();
    const rows = await this.deps.db.selectFrom('history').select(['ts', 'num', 'val'])
      .where('device_id', '=', deviceId).where('property', '=', property)
      .where('ts', '>=', from).where('ts', '<=', to)
      .orderBy('ts').limit(limit).execute();
    return rows.map((r) => ({ ts: new Date(Number(r.ts)).toISOString(), value: r.val !== null ? fromJson(r.val) : r.num }));
  }

  async buckets(deviceId: string, property: string, from: number, to: number, bucketMs: number): Promise<HistoryBucket[]> {
    await this.flush();
    const bucket = sql<number>`(ts / ${sql.lit(bucketMs)}) * ${sql.lit(bucketMs)}`;
    const rows = await this.deps.db.selectFrom('history')
      .select([
        bucket.as('bucket'),
        (eb) => eb.fn.min('num').as('min'),
        (eb) => eb.fn.max('num').as('max'),
        (eb) => eb.fn.avg('num').as('avg'),
        (eb) => eb.fn.countAll().as('count'),
      ])
      .where('device_id', '=', deviceId).where('property', '=', property)
      .where('ts', '>=', from).where('ts', '<=', to)
      .groupBy(bucket).orderBy(bucket).execute();
    return rows.map((r) => ({
      ts: new Date(Number(r.bucket)).toISOString(),
      min: r.min == null ? null : Number(r.min),
      max: r.max == null ? null : Number(r.max),
      avg: r.avg == null ? null : Number(r.avg),
      count: Number(r.count),
    }));
  }

  async deviceEvents(deviceId: string, from: number, to: number, limit: number): Promise<DeviceEventRecord[]> {
    await this.flush();
    const rows = await this.deps.db.selectFrom('device_events').selectAll()
      .where('device_id', '=', deviceId).where('ts', '>=', from).where('ts', '<=', to)
      .orderBy('ts', 'desc').limit(limit).execute();
    return rows.map((r) => ({ id: r.id, event: r.event, params: fromJson(r.params), ts: new Date(Number(r.ts)).toISOString() }));
  }
}

const insertPoints = (db: Db, rows: HistoryRow[]) =>
  db.insertInto('history').values(rows).onConflict((oc) => oc.columns(['device_id', 'property', 'ts', 'msg_id']).doNothing()).execute();
const insertEvents = (db: Db, rows: EventRow[]) =>
  db.insertInto('device_events').values(rows).onConflict((oc) => oc.column('id').doNothing()).execute();
