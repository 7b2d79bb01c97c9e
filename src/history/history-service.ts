import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import { newId } from '../core/ids.ts';
import { PeriodicFlush, writeIsolated } from '../core/periodic-flush.ts';
import { PostgresAdapter } from 'kysely';
import { BulkInsert, placeholderOf, runSql, TextCache } from '../core/store/bulk.ts';
import { DURATION_TIERS, foldRollups, rollupDeltas, TIERS, type StateSegment, type AggregateBucket, type RollupPoint, type Tier } from './rollups.ts';
import { HistoryPartitions, isMissingPartition, type HistoryPartition } from './partitions.ts';

type HistoryRow = { device_id: string; property: string; ts: number; num: number | null; val: string | null; msg_id: string | null };
/** What the rollups need of a buffered point beyond its row: its product, and its state (booleans, enums). */
type PointMeta = { product: string; state: string | null; series?: number };
type PendingPoint = HistoryRow & { meta?: PointMeta };
type EventRow = { id: string; device_id: string; event: string; params: string; ts: number };
/** One buffered write: a point or an event. */
type Pending = { point: PendingPoint; event?: undefined } | { event: EventRow; point?: undefined };

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

/** Largest batch per INSERT: 6 columns × 400 rows stays far below every engine's parameter limit. */
const CHUNK = 400;

/**
 * Time series of properties marked `history: true`, and the log of device events.
 * Writes are buffered and flushed as multi-row inserts every `flushMs` (or when a buffer
 * fills); reads flush first, so a caller always sees what was accepted before it asked.
 */
export class HistoryService {
  private pendingPoints: PendingPoint[] = [];
  private pendingEvents: EventRow[] = [];
  private readonly writer: PeriodicFlush;
  /** Series ids by device and property (immutable once assigned). */
  private readonly series = new Map<string, number>();
  /** PostgreSQL: the day partitions of raw history (made on demand, dropped by retention). */
  private readonly partitions: HistoryPartitions | undefined;

  constructor(private readonly deps: { db: Db; log: Logger; flushMs: number; maxBuffered?: number; onPartitionsDropped?: (n: number) => void }) {
    if (deps.db.getExecutor().adapter instanceof PostgresAdapter)
      this.partitions = new HistoryPartitions({ db: deps.db, log: deps.log, onDropped: deps.onPartitionsDropped });
    this.writer = new PeriodicFlush(
      () => this.write(),
      deps.flushMs,
      (err) => deps.log.error({ err }, 'history flush failed; will retry'),
    );
  }

  start(): void {
    this.writer.start();
  }

  stop(): Promise<void> {
    return this.writer.stop();
  }

  /**
   * Records a point; `msgId` (the message that carried it) makes a repeated recording a no-op.
   * With `rollup` (the device's product; `enumerated` for enum properties) the point also adds to
   * its 1-minute, 1-hour and 1-day rollups once it is stored: numbers and booleans (as 0/1) to the
   * numeric aggregate, booleans and enum values to their count per value.
   */
  record(
    deviceId: string,
    property: string,
    value: unknown,
    ts: number,
    msgId: string | null = null,
    rollup?: { product: string; enumerated?: boolean },
  ): void {
    const isNum = typeof value === 'number' || typeof value === 'boolean';
    // '' rather than NULL: on SQLite the message id is part of the table's key (see migration 0016).
    const point: PendingPoint = {
      device_id: deviceId,
      property,
      ts,
      num: isNum ? Number(value) : null,
      val: isNum ? null : toJson(value),
      msg_id: msgId ?? '',
    };
    if (rollup) {
      const state = typeof value === 'boolean' ? String(value) : rollup.enumerated && typeof value === 'string' ? value : null;
      if (isNum || state !== null) point.meta = { product: rollup.product, state };
    }
    this.pendingPoints.push(point);
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
    const points = this.pendingPoints;
    const records: Pending[] = [];
    for (const point of points) records.push({ point });
    for (const event of this.pendingEvents) records.push({ event });
    this.pendingPoints = [];
    this.pendingEvents = [];
    const { db, log } = this.deps;
    try {
      await this.resolveSeries(records.flatMap((r) => (r.point?.meta ? [r.point] : [])));
      // The partitions of the points' days (a Set lookup when they exist; PostgreSQL only).
      await this.partitions?.ensureFor(points);
    } catch (err) {
      this.pendingPoints = records.flatMap((r) => (r.point ? [r.point] : [])).concat(this.pendingPoints);
      this.pendingEvents = records.flatMap((r) => (r.event ? [r.event] : [])).concat(this.pendingEvents);
      throw err;
    }
    const { retry, error } = await writeIsolated(records, {
      batch: (rs) => {
        const points = rs.flatMap((r) => (r.point ? [r.point] : []));
        const events = rs.flatMap((r) => (r.event ? [r.event] : []));
        return this.inPartitions(points, () =>
          db.transaction().execute(async (trx) => {
            // Redelivered messages repeat points and events: the unique keys make them no-ops.
            await insertPoints(trx, points);
            for (let i = 0; i < events.length; i += CHUNK) await INSERT_EVENTS.run(trx, events.slice(i, i + CHUNK));
          }),
        );
      },
      one: async (r) => void (await (r.point ? this.inPartitions([r.point], () => insertPoints(db, [r.point!])) : INSERT_EVENTS.run(db, [r.event!]))),
      onBad: (r, err) =>
        log.error(
          { err, deviceId: (r.point ?? r.event)!.device_id, record: r.point ? 'point' : 'event' },
          'history record refused by the store; dropped, the rest of its batch is stored',
        ),
    });
    if (error === undefined) return;
    this.pendingPoints = retry.flatMap((r) => (r.point ? [r.point] : [])).concat(this.pendingPoints);
    this.pendingEvents = retry.flatMap((r) => (r.event ? [r.event] : [])).concat(this.pendingEvents);
    throw error;
  }

  /**
   * Runs a write of these points; when another node dropped the partition of one of their days
   * since this node last made sure of it, makes it again and writes once more (late points for a
   * day past retention: the next pass drops it again).
   */
  private async inPartitions<T>(points: PendingPoint[], write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if (!this.partitions || !isMissingPartition(err)) throw err;
      this.partitions.forget(points);
      await this.partitions.ensureFor(points);
      return write();
    }
  }

  /**
   * PostgreSQL: makes the partitions of today and the next `ahead` days, so that the write path
   * rarely makes one itself. Nothing on SQLite.
   */
  async preparePartitions(now: number, ahead = 2): Promise<void> {
    if (!this.partitions) return;
    const today = Math.floor(now / 86_400_000);
    await this.partitions.ensure(Array.from({ length: ahead + 1 }, (_, i) => today + i));
  }

  /**
   * PostgreSQL: drops whole the day partitions of raw history that end at or before `before`
   * (every point in them is older than it). Returns those dropped; none on SQLite.
   */
  async dropPartitionsBefore(before: number): Promise<HistoryPartition[]> {
    if (!this.partitions) return [];
    return this.partitions.dropBefore(before);
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
    const rows = await this.deps.db
      .selectFrom('history')
      .select(['ts', 'num', 'val'])
      .where('device_id', '=', deviceId)
      .where('property', '=', property)
      .where('ts', '>=', from)
      .where('ts', '<=', to)
      .orderBy('ts')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ ts: new Date(Number(r.ts)).toISOString(), value: r.val !== null ? fromJson(r.val) : r.num }));
  }

  async buckets(deviceId: string, property: string, from: number, to: number, bucketMs: number): Promise<HistoryBucket[]> {
    await this.flush();
    const bucket = sql<number>`(ts / ${sql.lit(bucketMs)}) * ${sql.lit(bucketMs)}`;
    const rows = await this.deps.db
      .selectFrom('history')
      .select([
        bucket.as('bucket'),
        (eb) => eb.fn.min('num').as('min'),
        (eb) => eb.fn.max('num').as('max'),
        (eb) => eb.fn.avg('num').as('avg'),
        (eb) => eb.fn.countAll().as('count'),
      ])
      .where('device_id', '=', deviceId)
      .where('property', '=', property)
      .where('ts', '>=', from)
      .where('ts', '<=', to)
      .groupBy(bucket)
      .orderBy(bucket)
      .execute();
    return rows.map((r) => ({
      ts: new Date(Number(r.bucket)).toISOString(),
      min: r.min == null ? null : Number(r.min),
      max: r.max == null ? null : Number(r.max),
      avg: r.avg == null ? null : Number(r.avg),
      count: Number(r.count),
    }));
  }

  /**
   * Gives every point its series id, creating the series it is the first of. Outside the points'
   * transaction, so that an id in the cache is always committed.
   */
  private async resolveSeries(points: PendingPoint[]): Promise<void> {
    const missing = new Map<string, { device_id: string; property: string; product_key: string }>();
    for (const p of points) {
      const id = this.series.get(`${p.device_id}\u0000${p.property}`);
      if (id !== undefined) p.meta!.series = id;
      else missing.set(`${p.device_id}\u0000${p.property}`, { device_id: p.device_id, property: p.property, product_key: p.meta!.product });
    }
    if (missing.size === 0) return;
    const { db } = this.deps;
    const wanted = [...missing.values()];
    for (let i = 0; i < wanted.length; i += CHUNK) {
      const chunk = wanted.slice(i, i + CHUNK);
      await db
        .insertInto('history_series')
        .values(chunk)
        .onConflict((oc) => oc.columns(['device_id', 'property']).doNothing())
        .execute();
      const rows = await db
        .selectFrom('history_series')
        .select(['id', 'device_id', 'property'])
        .where('device_id', 'in', [...new Set(chunk.map((c) => c.device_id))])
        .where('property', 'in', [...new Set(chunk.map((c) => c.property))])
        .execute();
      for (const r of rows) this.series.set(`${r.device_id}\u0000${r.property}`, Number(r.id));
    }
    for (const p of points) p.meta!.series ??= this.series.get(`${p.device_id}\u0000${p.property}`);
  }

  /** The series id of a device's property (undefined: nothing was ever rolled up for it). */
  private async seriesOf(deviceId: string, property: string): Promise<number | undefined> {
    const key = `${deviceId}\u0000${property}`;
    const hit = this.series.get(key);
    if (hit !== undefined) return hit;
    const row = await this.deps.db
      .selectFrom('history_series')
      .select('id')
      .where('device_id', '=', deviceId)
      .where('property', '=', property)
      .executeTakeFirst();
    if (row) this.series.set(key, Number(row.id));
    return row ? Number(row.id) : undefined;
  }

  /**
   * Buckets of `bucketMs` read from a rollup tier that divides it: min, max, avg, sum, count and
   * the last value of numbers and booleans, the count per value of booleans and enums. Buckets are
   * UTC-aligned: the range widens to whole buckets of the tier.
   */
  async rollupBuckets(deviceId: string, property: string, from: number, to: number, bucketMs: number, tier: Tier): Promise<AggregateBucket[]> {
    await this.flush();
    const series = await this.seriesOf(deviceId, property);
    if (series === undefined) return [];
    const rows = await this.deps.db
      .selectFrom('history_rollups')
      .select(['bucket', 'state', 'count', 'sum', 'min', 'max', 'last', 'last_ts', 'dur'])
      .where('series', '=', series)
      .where('tier', '=', tier.code)
      .where('bucket', '>=', Math.floor(from / tier.ms) * tier.ms)
      .where('bucket', '<=', to)
      .execute();
    return foldRollups(rows, bucketMs, DURATION_TIERS.includes(tier));
  }

  /**
   * A device's points of some properties in time order, read page by page (for streaming
   * exports): memory stays bounded whatever the range.
   */
  async *exportPoints(
    deviceId: string,
    properties: readonly string[],
    from: number,
    to: number,
    pageSize = 2000,
  ): AsyncGenerator<{ ts: number; property: string; value: unknown }> {
    if (properties.length === 0) return;
    await this.flush();
    const { db } = this.deps;
    const base = () =>
      db
        .selectFrom('history')
        .select(['ts', 'property', 'num', 'val'])
        .where('device_id', '=', deviceId)
        .where('property', 'in', [...properties]);
    const out = (r: { ts: number; property: string; num: number | null; val: string | null }) => ({
      ts: Number(r.ts),
      property: r.property,
      value: r.val !== null ? fromJson(r.val) : r.num,
    });
    let after = from - 1;
    for (;;) {
      const page = await base().where('ts', '>', after).where('ts', '<=', to).orderBy('ts').orderBy('property').limit(pageSize).execute();
      if (page.length < pageSize) {
        for (const r of page) yield out(r);
        return;
      }
      // A full page may cut the points of its last millisecond in two: those are read whole next.
      const lastTs = Number(page[page.length - 1].ts);
      for (const r of page) if (Number(r.ts) < lastTs) yield out(r);
      for (const r of await base().where('ts', '=', lastTs).orderBy('property').execute()) yield out(r);
      after = lastTs;
    }
  }

  /**
   * Fleet aggregates over a rollup tier: per bucket of `bucketMs` (and per device when `perDevice`,
   * for the caller to group further) the count, sum, min and max of a product's property.
   */
  async fleetBuckets(q: {
    product: string;
    property: string;
    from: number;
    to: number;
    bucketMs: number;
    tier: Tier;
    perDevice: boolean;
  }): Promise<Array<{ bucket: number; deviceId?: string; count: number; sum: number | null; min: number | null; max: number | null }>> {
    await this.flush();
    const b = sql<number>`(bucket / ${sql.lit(q.bucketMs)}) * ${sql.lit(q.bucketMs)}`;
    if (!q.perDevice) {
      // The fleet tier: one row per bucket of the tier for the whole product.
      const rows = await this.deps.db
        .selectFrom('fleet_rollups')
        .select([
          b.as('b'),
          (eb) => eb.fn.sum<number>('count').as('count'),
          (eb) => eb.fn.sum<number | null>('sum').as('sum'),
          (eb) => eb.fn.min('min').as('min'),
          (eb) => eb.fn.max('max').as('max'),
        ])
        .where('product_key', '=', q.product)
        .where('property', '=', q.property)
        .where('tier', '=', q.tier.code)
        .where('bucket', '>=', Math.floor(q.from / q.tier.ms) * q.tier.ms)
        .where('bucket', '<=', q.to)
        .groupBy(b)
        .orderBy(b)
        .execute();
      return rows.map((r) => ({
        bucket: Number(r.b),
        count: Number(r.count),
        sum: r.sum == null ? null : Number(r.sum),
        min: r.min == null ? null : Number(r.min),
        max: r.max == null ? null : Number(r.max),
      }));
    }
    const series = this.deps.db.selectFrom('history_series').select('id').where('product_key', '=', q.product).where('property', '=', q.property);
    let query = this.deps.db
      .selectFrom('history_rollups as r')
      .select([
        b.as('b'),
        (eb) => eb.fn.sum<number>('r.count').as('count'),
        (eb) => eb.fn.sum<number | null>('r.sum').as('sum'),
        (eb) => eb.fn.min('r.min').as('min'),
        (eb) => eb.fn.max('r.max').as('max'),
      ])
      .where('r.series', 'in', series)
      .where('r.tier', '=', q.tier.code)
      .where('r.bucket', '>=', Math.floor(q.from / q.tier.ms) * q.tier.ms)
      .where('r.bucket', '<=', q.to)
      .where('r.state', '=', '');
    if (q.perDevice) query = query.innerJoin('history_series as s', 's.id', 'r.series').select('s.device_id').groupBy([b, 's.device_id']);
    else query = query.groupBy(b);
    const rows = await query.orderBy(b).execute();
    return rows.map((r) => ({
      bucket: Number(r.b),
      ...('device_id' in r ? { deviceId: r.device_id as string } : {}),
      count: Number(r.count),
      sum: r.sum == null ? null : Number(r.sum),
      min: r.min == null ? null : Number(r.min),
      max: r.max == null ? null : Number(r.max),
    }));
  }

  /** Events of these devices in [from, to], counted per device and event (fleet analytics). */
  async eventCounts(deviceIds: readonly string[], from: number, to: number): Promise<Array<{ deviceId: string; event: string; count: number }>> {
    if (deviceIds.length === 0) return [];
    await this.flush();
    const rows = await this.deps.db
      .selectFrom('device_events')
      .select(['device_id', 'event', (eb) => eb.fn.countAll<number>().as('n')])
      .where('device_id', 'in', [...deviceIds])
      .where('ts', '>=', from)
      .where('ts', '<=', to)
      .groupBy(['device_id', 'event'])
      .execute();
    return rows.map((r) => ({ deviceId: r.device_id, event: r.event, count: Number(r.n) }));
  }

  /**
   * Deletes the raw points of these devices older than `before` (only of `only`, or of all
   * properties but `except`), `batch` rows per statement with a turn of the event loop between
   * them, so that pruning never holds the store or the ingest for long. Returns the rows deleted.
   */
  prunePoints(deviceIds: readonly string[], before: number, props: { only?: readonly string[]; except?: readonly string[] }, batch: number): Promise<number> {
    if (deviceIds.length === 0 || props.only?.length === 0) return Promise.resolve(0);
    return this.deleteBatched(
      'history',
      (q) => {
        let w = q.where('device_id', 'in', [...deviceIds]).where('ts', '<', before);
        if (props.only) w = w.where('property', 'in', [...props.only]);
        if (props.except?.length) w = w.where('property', 'not in', [...props.except]);
        return w;
      },
      batch,
    );
  }

  /** Deletes the events of these devices older than `before`, in batches (see prunePoints). */
  pruneEvents(deviceIds: readonly string[], before: number, batch: number): Promise<number> {
    if (deviceIds.length === 0) return Promise.resolve(0);
    return this.deleteBatched('device_events', (q) => q.where('device_id', 'in', [...deviceIds]).where('ts', '<', before), batch);
  }

  /** Deletes a product's rollups of one tier (its devices' and its fleet tier's) whose buckets ended before `before`, in batches. */
  async pruneRollups(product: string, tierName: string, before: number, batch: number): Promise<number> {
    const tier = TIERS.find((t) => t.name === tierName);
    if (!tier) return 0;
    // The fleet tier has a row per bucket of the product (a few thousand at most): one statement.
    await this.deps.db
      .deleteFrom('fleet_rollups')
      .where('product_key', '=', product)
      .where('tier', '=', tier.code)
      .where('bucket', '<', before - tier.ms)
      .execute();
    return this.deleteRollups(
      (q) =>
        q
          .where('series', 'in', this.deps.db.selectFrom('history_series').select('id').where('product_key', '=', product))
          .where('tier', '=', tier.code)
          .where('bucket', '<', before - tier.ms),
      batch,
    );
  }

  /** Deletes the rollup rows `where` selects, `batch` at a time by their key (the table has no row id on SQLite). */
  private async deleteRollups(where: (q: any) => any, batch: number): Promise<number> {
    const { db } = this.deps;
    let total = 0;
    for (;;) {
      const started = performance.now();
      const keys = where(db.selectFrom('history_rollups')).select(['series', 'tier', 'bucket', 'state']).limit(batch);
      const r = await db.deleteFrom('history_rollups').where(sql<boolean>`(series, tier, bucket, state) IN (${keys})`).executeTakeFirst();
      const n = Number(r.numDeletedRows);
      total += n;
      if (n < batch) return total;
      await pause(performance.now() - started);
    }
  }

  /**
   * Deletes the rows `where` selects, `batch` at a time by their physical row id (PostgreSQL ctid,
   * SQLite rowid; SQLite's raw points have none, being keyed by their columns: by that key).
   */
  private async deleteBatched<T extends 'history' | 'device_events'>(table: T, where: (q: any) => any, batch: number): Promise<number> {
    const { db } = this.deps;
    const pg = db.getExecutor().adapter instanceof PostgresAdapter;
    const byKey = !pg && table === 'history';
    let total = 0;
    for (;;) {
      const started = performance.now();
      if (pg && table === 'history') {
        // Partitioned: a row id (ctid) is unique only within its partition, so the rows are
        // deleted from each partition by its own ids, and only if they still match.
        const found = await where(db.selectFrom('history'))
          .select([sql<string>`tableoid::regclass::text`.as('part'), sql<string>`ctid::text`.as('tid')])
          .limit(batch)
          .execute();
        const byPart = new Map<string, string[]>();
        for (const f of found as Array<{ part: string; tid: string }>) {
          const list = byPart.get(f.part);
          if (list) list.push(f.tid);
          else byPart.set(f.part, [f.tid]);
        }
        for (const [part, tids] of byPart) {
          const r = await where(db.deleteFrom(part as 'history'))
            .where(sql<boolean>`ctid = ANY(${tids}::tid[])`)
            .executeTakeFirst();
          total += Number(r.numDeletedRows);
        }
        if (found.length < batch) return total;
        await pause(performance.now() - started);
        continue;
      }
      const ids = byKey
        ? where(db.selectFrom('history')).select(['device_id', 'property', 'ts', 'msg_id']).limit(batch)
        : where(db.selectFrom(table as 'history'))
            .select(sql.raw(pg ? 'ctid' : 'rowid').as('r'))
            .limit(batch);
      const cond = pg
        ? sql<boolean>`ctid = ANY(ARRAY(${ids}))`
        : byKey
          ? sql<boolean>`(device_id, property, ts, msg_id) IN (${ids})`
          : sql<boolean>`rowid IN (${ids})`;
      const r = await db
        .deleteFrom(table as 'history')
        .where(cond)
        .executeTakeFirst();
      const n = Number(r.numDeletedRows);
      total += n;
      if (n < batch) return total;
      await pause(performance.now() - started);
    }
  }

  async deviceEvents(deviceId: string, from: number, to: number, limit: number): Promise<DeviceEventRecord[]> {
    await this.flush();
    const rows = await this.deps.db
      .selectFrom('device_events')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('ts', '>=', from)
      .where('ts', '<=', to)
      .orderBy('ts', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ id: r.id, event: r.event, params: fromJson(r.params), ts: new Date(Number(r.ts)).toISOString() }));
  }
}

/**
 * Between two pruning batches: PRUNE_PAUSE times as long as the batch took, so that pruning holds
 * the store (and, on SQLite, the event loop) at most a quarter of the time and ingest keeps pace.
 */
const PRUNE_PAUSE = 3;
const pause = (batchMs: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.min(1000, Math.max(1, batchMs * PRUNE_PAUSE))));

/** Rollup rows per upsert: 11 columns × 300 rows stays below every engine's parameter limit. */
const ROLLUP_CHUNK = 300;

/**
 * Inserts points (CHUNK a statement) and adds those actually stored to their rollups, in the
 * caller's transaction: a point stored before (a redelivered message) is neither stored nor
 * counted again. The rollups of the whole batch are summed first and upserted in key order.
 */
async function insertPoints(db: Db, points: PendingPoint[]): Promise<void> {
  const withMeta = points.filter((p) => p.meta !== undefined);
  if (withMeta.length === 0) {
    for (let i = 0; i < points.length; i += CHUNK) await INSERT_POINTS.run(db, points.slice(i, i + CHUNK));
    return;
  }
  // Time in state needs each series' neighbours of its new points: read before they are stored.
  const before = await neighbours(
    db,
    withMeta.filter((p) => p.meta!.state !== null && p.meta!.series !== undefined),
  );
  const stored: Array<{ device_id: string; property: string; ts: number | string; msg_id: string }> = [];
  for (let i = 0; i < points.length; i += CHUNK) stored.push(...(await INSERT_POINTS_RETURNING.run<(typeof stored)[number]>(db, points.slice(i, i + CHUNK))));
  // The rows the store took, matched to their buffered points (several may share a key when msg_id is null).
  const byKey = new Map<string, PendingPoint[]>();
  for (const p of withMeta) {
    const k = `${p.device_id}\u0000${p.property}\u0000${p.ts}\u0000${p.msg_id}`;
    const list = byKey.get(k);
    if (list) list.push(p);
    else byKey.set(k, [p]);
  }
  const added: RollupPoint[] = [];
  for (const r of stored) {
    const p = byKey.get(`${r.device_id}\u0000${r.property}\u0000${Number(r.ts)}\u0000${r.msg_id}`)?.shift();
    if (p && p.meta!.series !== undefined)
      added.push({ deviceId: p.device_id, property: p.property, series: p.meta!.series, ts: p.ts, num: p.num, state: p.meta!.state });
  }
  const deltas = rollupDeltas(
    added,
    await stateSegments(
      db,
      added.filter((a) => a.state !== null),
      before,
    ),
  );
  // The whole batch's rows in key order, as the fleet rows below: two nodes writing the same rows
  // (a shard changing owner; every node for the fleet tier) lock them in the same order, even
  // across statements, so they cannot deadlock.
  deltas.sort((a, b) => a.series - b.series || a.tier - b.tier || a.bucket - b.bucket || (a.state < b.state ? -1 : a.state > b.state ? 1 : 0));
  for (let i = 0; i < deltas.length; i += ROLLUP_CHUNK) await UPSERT_ROLLUPS.run(db, deltas.slice(i, i + ROLLUP_CHUNK));
  // The fleet tier: the numeric deltas of the batch summed per product, property, tier and bucket.
  const seriesOf = new Map<number, { product: string; property: string }>();
  for (const p of withMeta) if (p.meta!.series !== undefined) seriesOf.set(p.meta!.series, { product: p.meta!.product, property: p.property });
  const fleet = new Map<string, FleetRow>();
  for (const d of deltas) {
    const s = d.state === '' ? seriesOf.get(d.series) : undefined;
    if (!s || d.count === 0) continue;
    const k = `${s.product}\u0000${s.property}\u0000${d.tier}\u0000${d.bucket}`;
    const f = fleet.get(k);
    if (!f) fleet.set(k, { product_key: s.product, property: s.property, tier: d.tier, bucket: d.bucket, count: d.count, sum: d.sum, min: d.min, max: d.max });
    else {
      f.count += d.count;
      if (d.sum !== null) f.sum = (f.sum ?? 0) + d.sum;
      if (d.min !== null) f.min = f.min === null ? d.min : Math.min(f.min, d.min);
      if (d.max !== null) f.max = f.max === null ? d.max : Math.max(f.max, d.max);
    }
  }
  // In key order: nodes writing the same product's buckets at once lock them in the same order (no deadlock on PostgreSQL).
  const fleetRows = [...fleet.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
  for (let i = 0; i < fleetRows.length; i += ROLLUP_CHUNK) await UPSERT_FLEET.run(db, fleetRows.slice(i, i + ROLLUP_CHUNK));
}

type FleetRow = {
  product_key: string;
  property: string;
  tier: number;
  bucket: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
};

const POINT_COLUMNS = ['device_id', 'property', 'ts', 'num', 'val', 'msg_id'] as const;
/** Redelivered messages repeat points: the unique key makes them no-ops. */
const POINT_CONFLICT = 'on conflict ("device_id", "property", "ts", "msg_id") do nothing';
const INSERT_POINTS = new BulkInsert('history', POINT_COLUMNS, POINT_CONFLICT);
/** The points actually stored (not those stored before), for their rollups. */
const INSERT_POINTS_RETURNING = new BulkInsert('history', POINT_COLUMNS, `${POINT_CONFLICT} returning "device_id", "property", "ts", "msg_id"`);
const INSERT_EVENTS = new BulkInsert('device_events', ['id', 'device_id', 'event', 'params', 'ts'], 'on conflict ("id") do nothing');

/** Adds deltas to their rows: counts and sums add up, min and max widen, the latest point stays `last`. */
const UPSERT_ROLLUPS = new BulkInsert(
  'history_rollups',
  ['series', 'tier', 'bucket', 'state', 'count', 'sum', 'min', 'max', 'last', 'last_ts', 'dur'],
  `on conflict ("series", "tier", "bucket", "state") do update set
    "count" = history_rollups.count + excluded.count,
    "sum" = history_rollups.sum + excluded.sum,
    "min" = CASE WHEN history_rollups.min IS NULL OR excluded.min < history_rollups.min THEN excluded.min ELSE history_rollups.min END,
    "max" = CASE WHEN history_rollups.max IS NULL OR excluded.max > history_rollups.max THEN excluded.max ELSE history_rollups.max END,
    "dur" = history_rollups.dur + excluded.dur,
    "last" = CASE WHEN excluded.last_ts >= history_rollups.last_ts THEN excluded.last ELSE history_rollups.last END,
    "last_ts" = CASE WHEN excluded.last_ts >= history_rollups.last_ts THEN excluded.last_ts ELSE history_rollups.last_ts END`,
);

/** Adds a batch's sums to the fleet tier (counts and sums add up, min and max widen). */
const UPSERT_FLEET = new BulkInsert(
  'fleet_rollups',
  ['product_key', 'property', 'tier', 'bucket', 'count', 'sum', 'min', 'max'],
  `on conflict ("product_key", "property", "tier", "bucket") do update set
    "count" = fleet_rollups.count + excluded.count,
    "sum" = CASE WHEN excluded.sum IS NULL THEN fleet_rollups.sum ELSE COALESCE(fleet_rollups.sum, 0) + excluded.sum END,
    "min" = CASE WHEN fleet_rollups.min IS NULL OR excluded.min < fleet_rollups.min THEN excluded.min ELSE fleet_rollups.min END,
    "max" = CASE WHEN fleet_rollups.max IS NULL OR excluded.max > fleet_rollups.max THEN excluded.max ELSE fleet_rollups.max END`,
);

/** What a series' new points need of those stored before them (see `neighbours`). */
interface Neighbours {
  /** The batch's points of the series (stored or not). */
  count: number;
  /** The earliest of them. */
  first: number;
  /** Whether a point stored before lies after the earliest. */
  later: boolean;
  /** The stored point in effect at the earliest (the latest at or before it). */
  prev?: { ts: number; num: number | null; val: string | null };
}

/**
 * Time in state that newly stored points of booleans and enums change. A point splits the interval
 * between its neighbours (the stored points just before and after it): [prev, point) stays the
 * previous value's, [point, next) becomes the point's instead (taken back from the previous value
 * when the point is late and a next one existed).
 *
 * The common case, a series' points newer than any stored before (`before`, read before they were
 * stored): a walk from the point in effect before them. A point stored before at the same
 * millisecond as the first counts as earlier (its time in state is nil either way). Otherwise
 * (a late point, or some of the series' points were stored before: redelivered), the points are
 * applied one by one.
 */
async function stateSegments(db: Db, points: RollupPoint[], before: Map<string, Neighbours>): Promise<StateSegment[]> {
  if (points.length === 0) return [];
  const series = new Map<string, RollupPoint[]>();
  for (const p of points) {
    const k = `${p.deviceId}\u0000${p.property}`;
    const list = series.get(k);
    if (list) list.push(p);
    else series.set(k, [p]);
  }
  const out: StateSegment[] = [];
  for (const [key, list] of series) {
    // Stable: points of the same millisecond keep the order they were recorded in.
    list.sort((a, b) => a.ts - b.ts);
    const nb = before.get(key);
    if (!nb || nb.later || nb.count !== list.length || nb.first !== list[0].ts) {
      await lateSegments(db, list, out);
      continue;
    }
    let at = nb.prev?.ts;
    let state = nb.prev ? stateOf(nb.prev) : undefined;
    for (const p of list) {
      if (at !== undefined) out.push({ series: p.series, state: state!, from: at, to: p.ts, sign: 1 });
      at = p.ts;
      state = p.state!;
    }
  }
  return out;
}

const stateOf = (r: { num: number | null; val: string | null }): string => (r.val !== null ? String(fromJson(r.val)) : String(r.num === 1));

/** Series per neighbours query: 4 parameters each. */
const NEIGHBOUR_CHUNK = 250;
const NEIGHBOUR_TEXTS = new TextCache();

/**
 * For the series of these points (not yet stored), keyed by device and property: whether a stored
 * point lies after the earliest of them, and the stored point in effect at it. One query per
 * NEIGHBOUR_CHUNK series: correlated subqueries over a VALUES list, which SQLite and PostgreSQL
 * both run as lookups in the (device_id, property, ts) index. Of stored points at the same
 * millisecond, the one in effect is the last by message id (the store does not keep their order).
 */
async function neighbours(db: Db, points: PendingPoint[]): Promise<Map<string, Neighbours>> {
  const found = new Map<string, Neighbours & { deviceId: string; property: string }>();
  for (const p of points) {
    const key = `${p.device_id}\u0000${p.property}`;
    const nb = found.get(key);
    if (!nb) found.set(key, { deviceId: p.device_id, property: p.property, count: 1, first: p.ts, later: false });
    else {
      nb.count++;
      if (p.ts < nb.first) nb.first = p.ts;
    }
  }
  const all = [...found.values()];
  const ph = placeholderOf(db);
  for (let i = 0; i < all.length; i += NEIGHBOUR_CHUNK) {
    const chunk = all.slice(i, i + NEIGHBOUR_CHUNK);
    const text = NEIGHBOUR_TEXTS.get(`${ph(1)}${chunk.length}`, () => {
      const rows: string[] = [];
      for (let j = 0, n = 1; j < chunk.length; j++, n += 4) rows.push(`(CAST(${ph(n)} AS INTEGER), ${ph(n + 1)}, ${ph(n + 2)}, CAST(${ph(n + 3)} AS BIGINT))`);
      const same = 'h.device_id = b.device_id AND h.property = b.property';
      const prev = (col: string) => `(SELECT h.${col} FROM history h WHERE ${same} AND h.ts <= b.ts ORDER BY h.ts DESC, h.msg_id DESC LIMIT 1) AS prev_${col}`;
      return `WITH b (i, device_id, property, ts) AS (VALUES ${rows.join(', ')})
        SELECT b.i AS i, CASE WHEN EXISTS (SELECT 1 FROM history h WHERE ${same} AND h.ts > b.ts) THEN 1 ELSE 0 END AS later,
          ${prev('ts')}, ${prev('num')}, ${prev('val')}
        FROM b`;
    });
    const params: unknown[] = [];
    chunk.forEach((nb, j) => params.push(j, nb.deviceId, nb.property, nb.first));
    const rows = await runSql<{
      i: number | string;
      later: number | string;
      prev_ts: number | string | null;
      prev_num: number | null;
      prev_val: string | null;
    }>(db, text, params);
    for (const r of rows) {
      const nb = chunk[Number(r.i)];
      nb.later = Number(r.later) === 1;
      if (r.prev_ts !== null) nb.prev = { ts: Number(r.prev_ts), num: r.prev_num === null ? null : Number(r.prev_num), val: r.prev_val };
    }
  }
  return found;
}

/**
 * A series with a point at or before stored ones (late, or redelivered among newer): its points
 * are applied one by one in time order, each seeing those applied before it but not those after.
 */
async function lateSegments(db: Db, list: RollupPoint[], out: StateSegment[]): Promise<void> {
  for (let i = 0; i < list.length; i++) {
    const p = list[i];
    const q = () => db.selectFrom('history').select(['ts', 'num', 'val']).where('device_id', '=', p.deviceId).where('property', '=', p.property);
    const prev = await q().where('ts', '<', p.ts).orderBy('ts', 'desc').limit(1).executeTakeFirst();
    // The next stored point that is not one of this batch's still to be applied (those come later in `list`).
    const pending = list.length - i - 1;
    const after = await q()
      .where('ts', '>', p.ts)
      .orderBy('ts')
      .limit(pending + 1)
      .execute();
    const laterInBatch = new Map<number, number>();
    for (let j = i + 1; j < list.length; j++) laterInBatch.set(list[j].ts, (laterInBatch.get(list[j].ts) ?? 0) + 1);
    let next: { ts: number } | undefined;
    for (const r of after) {
      const ts = Number(r.ts);
      const n = laterInBatch.get(ts) ?? 0;
      if (n > 0) {
        laterInBatch.set(ts, n - 1);
        continue;
      }
      next = { ts };
      break;
    }
    const seg = { series: p.series };
    if (prev) {
      const prevState = stateOf(prev);
      if (next) out.push({ ...seg, state: prevState, from: p.ts, to: next.ts, sign: -1 });
      else out.push({ ...seg, state: prevState, from: Number(prev.ts), to: p.ts, sign: 1 });
    }
    if (next) out.push({ ...seg, state: p.state!, from: p.ts, to: next.ts, sign: 1 });
  }
}
