import { PostgresAdapter, sql, type Kysely, type Migration } from 'kysely';

/**
 * Raw history on PostgreSQL becomes a table partitioned by RANGE on its time, one partition per
 * UTC day (src/history/partitions.ts makes them on demand and the retention pass drops them whole;
 * docs/telemetry.md). An existing table is copied: the partitioned table is made beside it with a
 * partition per day present, the rows copied, the names swapped, in the one transaction the
 * migrations run in; a fresh install has no rows and no partition yet. SQLite keeps its table
 * (pruned by batched deletes through its key): nothing to do there.
 */
export const historyPartitions: Migration = {
  async up(db: Kysely<any>) {
    if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
    const kind = await sql<{ relkind: string }>`SELECT relkind FROM pg_class WHERE oid = to_regclass('history')`.execute(db);
    if (kind.rows[0]?.relkind === 'p') return;
    // Copying a large table may take longer than the store's statement timeout.
    await sql`SET LOCAL statement_timeout = 0`.execute(db);
    await sql`CREATE TABLE history_by_day (LIKE history INCLUDING DEFAULTS) PARTITION BY RANGE (ts)`.execute(db);
    const days = await sql<{ day: string }>`SELECT DISTINCT floor(ts / 86400000.0)::bigint AS day FROM history`.execute(db);
    for (const { day } of days.rows) {
      const from = Number(day) * DAY_MS;
      await sql`CREATE TABLE ${sql.id(partitionName(from))} PARTITION OF history_by_day FOR VALUES FROM (${sql.lit(from)}) TO (${sql.lit(from + DAY_MS)})`.execute(
        db,
      );
    }
    await sql`INSERT INTO history_by_day (device_id, property, ts, num, val, msg_id) SELECT device_id, property, ts, num, val, msg_id FROM history`.execute(db);
    await sql`DROP TABLE history`.execute(db);
    await sql`ALTER TABLE history_by_day RENAME TO history`.execute(db);
    // The key that de-duplicates redelivered points; it includes the partition key (ts), as a unique index of a partitioned table must.
    await sql`CREATE UNIQUE INDEX history_point ON history (device_id, property, ts, msg_id)`.execute(db);
  },
};

const DAY_MS = 86_400_000;
/** `history_20261206`, as src/history/partitions.ts names a day's partition (kept here: a migration stays as it ran). */
function partitionName(from: number): string {
  const d = new Date(from);
  const two = (n: number) => String(n).padStart(2, '0');
  return `history_${String(d.getUTCFullYear()).padStart(4, '0')}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}`;
}
