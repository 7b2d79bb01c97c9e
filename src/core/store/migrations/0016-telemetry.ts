import type { Kysely, Migration } from 'kysely';

/**
 * Telemetry that stays affordable (docs/telemetry.md): rollups of history points computed as they
 * are stored, retention policies per product, and the indexes pruning needs.
 */
export const telemetry: Migration = {
  async up(db: Kysely<any>) {
    // One row per device, property, tier (0: 1 minute, 1: 1 hour, 2: 1 day) and bucket start; state
    // is '' for the numeric aggregate and the value itself for booleans and enums (count per value).
    await db.schema.createTable('history_rollups')
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('property', 'text', (c) => c.notNull())
      .addColumn('tier', 'integer', (c) => c.notNull())
      .addColumn('bucket', 'bigint', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('count', 'bigint', (c) => c.notNull())
      .addColumn('sum', 'double precision')
      .addColumn('min', 'double precision')
      .addColumn('max', 'double precision')
      .addColumn('last', 'double precision')
      .addColumn('last_ts', 'bigint', (c) => c.notNull())
      // State rows of the 1h and 1d tiers: milliseconds spent in the state within the bucket.
      .addColumn('dur', 'bigint', (c) => c.notNull().defaultTo(0))
      .addPrimaryKeyConstraint('history_rollups_pk', ['device_id', 'property', 'tier', 'bucket', 'state'])
      .execute();
    // Fleet analytics and pruning read a product's tier by time.
    await db.schema.createIndex('history_rollups_product').on('history_rollups').columns(['product_key', 'tier', 'bucket']).execute();
    // A product's retention as set through the API (JSON); absent: the configured defaults.
    await db.schema.createTable('retention_policies')
      .addColumn('product_key', 'text', (c) => c.primaryKey())
      .addColumn('policy', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    // Pruning the ledger by age (the audit log has its `at` index already).
    await db.schema.createIndex('commands_accepted_at').on('commands').column('accepted_at').execute();
  },
};
