import { PostgresAdapter, sql, type Kysely, type Migration } from 'kysely';

/**
 * Telemetry that stays affordable (docs/telemetry.md): rollups of history points computed as they
 * are stored, retention policies per product, and the indexes pruning needs.
 */
export const telemetry: Migration = {
  async up(db: Kysely<any>) {
    const pg = db.getExecutor().adapter instanceof PostgresAdapter;
    // A small integer per device and property, so that rollup rows repeat no text ids.
    await db.schema
      .createTable('history_series')
      .addColumn('id', 'integer', (c) => (pg ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey()))
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('property', 'text', (c) => c.notNull())
      .addColumn('product_key', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('history_series_key').on('history_series').columns(['device_id', 'property']).unique().execute();
    // Fleet analytics and pruning find a product's series.
    await db.schema.createIndex('history_series_product').on('history_series').columns(['product_key', 'property']).execute();
    // One row per series, tier (0: 1 minute, 1: 1 hour, 2: 1 day) and bucket start; state is ''
    // for the numeric aggregate and the value itself for booleans and enums (count per value).
    // The key is the table (SQLite: WITHOUT ROWID), and it serves every query: no other index.
    let rollups = db.schema
      .createTable('history_rollups')
      .addColumn('series', 'integer', (c) => c.notNull())
      .addColumn('tier', 'integer', (c) => c.notNull())
      .addColumn('bucket', 'bigint', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('count', 'bigint', (c) => c.notNull())
      .addColumn('sum', 'double precision')
      .addColumn('min', 'double precision')
      .addColumn('max', 'double precision')
      .addColumn('last', 'double precision')
      .addColumn('last_ts', 'bigint', (c) => c.notNull())
      // State rows of the 1h and 1d tiers: milliseconds spent in the state within the bucket.
      .addColumn('dur', 'bigint', (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('history_rollups_pk', ['series', 'tier', 'bucket', 'state']);
    if (!pg) rollups = rollups.modifyEnd(sql`without rowid`);
    await rollups.execute();
    // A product's retention as set through the API (JSON); absent: the configured defaults.
    await db.schema
      .createTable('retention_policies')
      .addColumn('product_key', 'text', (c) => c.primaryKey())
      .addColumn('policy', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    if (!pg) {
      // Raw points on SQLite: the key is the table (WITHOUT ROWID), so the device id, property,
      // time and message id are stored once instead of in the table and again in its unique index.
      // Key columns cannot be NULL there: points recorded without a message id keep '' (legacy rows
      // a unique one), so (device, property, ts, msg_id) stays what de-duplicates redeliveries.
      await sql`CREATE TABLE history_compact (
        device_id text NOT NULL, property text NOT NULL, ts bigint NOT NULL, num double precision, val text, msg_id text NOT NULL,
        PRIMARY KEY (device_id, property, ts, msg_id)) WITHOUT ROWID`.execute(db);
      await sql`INSERT INTO history_compact SELECT device_id, property, ts, num, val, COALESCE(msg_id, 'legacy-' || rowid) FROM history`.execute(db);
      await sql`DROP TABLE history`.execute(db);
      await sql`ALTER TABLE history_compact RENAME TO history`.execute(db);
    }
    // Pruning the ledger by age (the audit log has its `at` index already).
    await db.schema.createIndex('commands_accepted_at').on('commands').column('accepted_at').execute();
  },
};
