import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';

/**
 * Raw history on PostgreSQL is partitioned by RANGE on its time (migration 0020): one partition
 * per UTC day, `history_YYYYMMDD`, holding [day start, next day start). There is no default
 * partition: a partition is made on demand before the first point of its day is written (the
 * batch writer asks `ensure` for the days of each batch, a Set lookup when they exist), ahead of
 * time by the retention pass (today and the next two days), and dropped whole by the retention
 * pass once its end is older than the longest raw retention of any product and property.
 * SQLite keeps one table (pruned by batched deletes); nothing here runs there.
 */

export const DAY_MS = 86_400_000;

/** The UTC day number of a time in milliseconds. */
export const dayOf = (ts: number): number => Math.floor(ts / DAY_MS);

/** `history_20261206`: the partition of a day. */
export function partitionName(day: number): string {
  const d = new Date(day * DAY_MS);
  return `history_${String(d.getUTCFullYear()).padStart(4, '0')}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}`;
}

/** The SQL that makes a day's partition if it does not exist. */
const createPartitionSql = (day: number) =>
  sql`CREATE TABLE IF NOT EXISTS ${sql.id(partitionName(day))} PARTITION OF history FOR VALUES FROM (${sql.lit(day * DAY_MS)}) TO (${sql.lit((day + 1) * DAY_MS)})`;

/** Serialises the nodes making partitions (two nodes racing for the same day make it once). */
const LOCK_KEY = sql.lit(0x6865_6172); // 'hear'
/** Partition DDL waits at most this long for its lock, so that a long reader never stalls ingest behind it. */
const LOCK_TIMEOUT = sql.lit('2s');

/** A partition of the history table and the days it holds. */
export interface HistoryPartition {
  name: string;
  /** First time it holds (inclusive) and its end (exclusive), in ms. */
  from: number;
  to: number;
  /** PostgreSQL's estimate of its rows (from the last ANALYZE or VACUUM; -1 when never counted). */
  rows: number;
}

/** No partition for a row's time (PostgreSQL 23514 "no partition of relation … found for row"). */
export const isMissingPartition = (err: unknown): boolean =>
  (err as { code?: unknown } | null)?.code === '23514' && /no partition of relation/.test(String((err as Error).message));

export class HistoryPartitions {
  /** Days whose partition this node knows to exist. */
  private readonly known = new Set<number>();
  /** Whether the history table is partitioned (undefined until first asked). */
  private partitioned: boolean | undefined;

  constructor(private readonly deps: { db: Db; log: Logger; onDropped?: (n: number) => void }) {}

  /** PostgreSQL 14 and later detach a partition concurrently (before: dropped under a short lock of the table). */
  private concurrentDetach = false;

  private async isPartitioned(): Promise<boolean> {
    if (this.partitioned === undefined) {
      const r = await sql<{ relkind: string | null; version: string }>`
        SELECT (SELECT relkind FROM pg_class WHERE oid = to_regclass('history')) AS relkind, current_setting('server_version_num') AS version`.execute(
        this.deps.db,
      );
      this.partitioned = r.rows[0]?.relkind === 'p';
      this.concurrentDetach = Number(r.rows[0]?.version) >= 140000;
    }
    return this.partitioned;
  }

  /**
   * Makes sure the partitions of these points' days exist. The hot path: when every day is known,
   * one Set lookup per run of points of the same day, no query.
   */
  async ensureFor(points: ReadonlyArray<{ ts: number }>): Promise<void> {
    let missing: number[] | undefined;
    let last = Number.NaN;
    for (const p of points) {
      const day = dayOf(p.ts);
      if (day === last) continue;
      last = day;
      if (!this.known.has(day)) (missing ??= []).includes(day) || missing.push(day);
    }
    if (missing) await this.ensure(missing);
  }

  /** Makes the partitions of these days (those not known to exist), each once across nodes. */
  async ensure(days: readonly number[]): Promise<void> {
    const todo = days.filter((d) => !this.known.has(d));
    if (todo.length === 0) return;
    if (!(await this.isPartitioned())) {
      for (const d of todo) this.known.add(d);
      return;
    }
    const made = await this.deps.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL lock_timeout = ${LOCK_TIMEOUT}`.execute(trx);
      await sql`SELECT pg_advisory_xact_lock(${LOCK_KEY})`.execute(trx);
      const existing = new Set((await listPartitions(trx)).map((p) => dayOf(p.from)));
      const wanted = todo.filter((d) => !existing.has(d));
      if (wanted.length === 0) return [];
      // A table of that name that is no longer a partition was detached by a drop cut short: its
      // points were expired, and the name is the new partition's.
      const orphans = await sql<{ name: string }>`
        SELECT relname AS name FROM pg_class WHERE relname = ANY(${wanted.map(partitionName)}) AND relkind = 'r' AND NOT relispartition
          AND relnamespace = current_schema()::regnamespace`.execute(trx);
      for (const o of orphans.rows) await sql`DROP TABLE ${sql.id(o.name)}`.execute(trx);
      const made: string[] = [];
      for (const d of wanted) {
        await createPartitionSql(d).execute(trx);
        made.push(partitionName(d));
      }
      return made;
    });
    for (const d of todo) this.known.add(d);
    if (made.length) {
      this.deps.log.info({ partitions: made }, 'history partitions made');
    }
  }

  /** Forgets what this node knew of these days' partitions (another node dropped one): the next ensure looks again. */
  forget(points: ReadonlyArray<{ ts: number }>): void {
    for (const p of points) this.known.delete(dayOf(p.ts));
  }

  /**
   * Drops whole every partition that ends at or before `cutoff`: detached CONCURRENTLY first (the
   * inserts and reads of the other partitions go on meanwhile), then dropped. A detach cut short
   * (a timeout, a crash) is finished here on the next pass, and a table detached but not dropped
   * is dropped. Returns the partitions dropped.
   */
  async dropBefore(cutoff: number): Promise<HistoryPartition[]> {
    if (!(await this.isPartitioned())) return [];
    const { db, log } = this.deps;
    const dropped: HistoryPartition[] = [];
    let took = 0;
    // Tables of an interrupted drop: detached (no longer partitions) but still there.
    const orphans = await sql<{ name: string }>`
      SELECT c.relname AS name FROM pg_class c
      WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace AND NOT c.relispartition
        AND c.relname ~ '^history_[0-9]{8}$'`.execute(db);
    for (const o of orphans.rows) {
      const day = parseDay(o.name);
      if (day !== undefined && (day + 1) * DAY_MS <= cutoff) await dropTable(db, o.name);
    }
    for (const p of await listPartitions(db, this.concurrentDetach)) {
      if (p.to > cutoff) continue;
      // Between two drops, three times as long as the last took (as pruning batches do): the
      // catalog work of many drops never takes the store from ingest for long.
      if (dropped.length) await new Promise((resolve) => setTimeout(resolve, Math.min(1000, Math.max(1, took * 3))));
      const started = performance.now();
      try {
        if (p.pending) await sql`ALTER TABLE history DETACH PARTITION ${sql.id(p.name)} FINALIZE`.execute(db);
        else if (this.concurrentDetach) await sql`ALTER TABLE history DETACH PARTITION ${sql.id(p.name)} CONCURRENTLY`.execute(db);
        await dropTable(db, p.name);
      } catch (err) {
        log.warn({ err, partition: p.name }, 'history partition not dropped; the next pass tries again');
        continue;
      }
      took = performance.now() - started;
      this.known.delete(dayOf(p.from));
      dropped.push({ name: p.name, from: p.from, to: p.to, rows: p.rows });
    }
    if (dropped.length) this.deps.onDropped?.(dropped.length);
    return dropped;
  }
}

function parseDay(name: string): number | undefined {
  const m = /^history_(\d{4})(\d{2})(\d{2})$/.exec(name);
  return m ? dayOf(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
}

async function dropTable(db: Db, name: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`SET LOCAL lock_timeout = ${LOCK_TIMEOUT}`.execute(trx);
    await sql`DROP TABLE IF EXISTS ${sql.id(name)}`.execute(trx);
  });
}

/** The partitions of `history` with their bounds, oldest first (and whether a detach of each is pending). */
async function listPartitions(db: Db, withPending = false): Promise<Array<HistoryPartition & { pending: boolean }>> {
  const r = await sql<{ name: string; bound: string; rows: number; pending: boolean }>`
    SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound, c.reltuples AS rows, ${withPending ? sql`i.inhdetachpending` : sql`false`} AS pending
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass('history')`.execute(db);
  const out: Array<HistoryPartition & { pending: boolean }> = [];
  for (const row of r.rows) {
    const m = /FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)/.exec(row.bound);
    if (!m) continue;
    out.push({ name: row.name, from: Number(m[1]), to: Number(m[2]), rows: Number(row.rows), pending: Boolean(row.pending) });
  }
  return out.sort((a, b) => a.from - b.from);
}
