import { PostgresAdapter, sql, type Kysely, type Migration } from 'kysely';

/**
 * Fleet export jobs (docs/telemetry.md): one row per job, claimed by a node through `owner` and
 * `lease_until`; the file itself is in the exports directory. And the fleet tier of the rollups:
 * per product, property, tier and bucket, the numeric aggregates of all its devices together
 * (fleet analytics without a group read these, not a row per device).
 */
export const exportJobs: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('export_jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('properties', 'text', (c) => c.notNull())
      .addColumn('from_ts', 'bigint', (c) => c.notNull())
      .addColumn('to_ts', 'bigint', (c) => c.notNull())
      .addColumn('format', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('devices_total', 'bigint', (c) => c.notNull())
      .addColumn('devices_done', 'bigint', (c) => c.notNull())
      .addColumn('rows', 'bigint', (c) => c.notNull())
      .addColumn('bytes', 'bigint', (c) => c.notNull())
      .addColumn('error', 'text')
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('started_at', 'bigint')
      .addColumn('finished_at', 'bigint')
      .addColumn('expires_at', 'bigint')
      .addColumn('owner', 'text')
      .addColumn('lease_until', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('export_jobs_status').on('export_jobs').columns(['status', 'lease_until']).execute();
    await db.schema.createIndex('export_jobs_created').on('export_jobs').column('created_at').execute();
    const pg = db.getExecutor().adapter instanceof PostgresAdapter;
    let fleet = db.schema
      .createTable('fleet_rollups')
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('property', 'text', (c) => c.notNull())
      .addColumn('tier', 'integer', (c) => c.notNull())
      .addColumn('bucket', 'bigint', (c) => c.notNull())
      .addColumn('count', 'bigint', (c) => c.notNull())
      .addColumn('sum', 'double precision')
      .addColumn('min', 'double precision')
      .addColumn('max', 'double precision')
      .addPrimaryKeyConstraint('fleet_rollups_pk', ['product_key', 'property', 'tier', 'bucket']);
    if (!pg) fleet = fleet.modifyEnd(sql`without rowid`);
    await fleet.execute();
    // What the device rollups hold already, summed up once: one statement over every rollup row,
    // which may take longer than the store's statement timeout (migrations run in one transaction on PostgreSQL).
    if (pg) await sql`SET LOCAL statement_timeout = 0`.execute(db);
    await sql`INSERT INTO fleet_rollups (product_key, property, tier, bucket, count, sum, min, max)
      SELECT s.product_key, s.property, r.tier, r.bucket, SUM(r.count), SUM(r.sum), MIN(r.min), MAX(r.max)
      FROM history_rollups r JOIN history_series s ON s.id = r.series WHERE r.state = ''
      GROUP BY s.product_key, s.property, r.tier, r.bucket`.execute(db);
  },
};
