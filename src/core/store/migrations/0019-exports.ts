import type { Kysely, Migration } from 'kysely';

/**
 * Fleet export jobs (docs/telemetry.md): one row per job, claimed by a node through `owner` and
 * `lease_until`; the file itself is in the exports directory.
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
  },
};
