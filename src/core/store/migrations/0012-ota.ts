import type { Kysely, Migration } from 'kysely';

/**
 * Firmware updates (src/ota/): packages, their chunks (PostgreSQL storage: every node serves every
 * package without a shared disk), per-product signing keys, campaigns, jobs and the firmware
 * version each device last reported. Portable column types only (chunks are base64 text).
 */
export const otaMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('firmware')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('version', 'text', (c) => c.notNull())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('sha256', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addColumn('maker_signature', 'text')
      .addColumn('notes', 'text')
      .addColumn('min_version', 'text')
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addUniqueConstraint('firmware_product_version', ['product_key', 'version'])
      .execute();
    await db.schema
      .createTable('firmware_chunks')
      .addColumn('firmware_id', 'text', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('byte_offset', 'bigint', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('firmware_chunks_pk', ['firmware_id', 'seq'])
      .execute();
    await db.schema
      .createTable('ota_keys')
      .addColumn('product_key', 'text', (c) => c.primaryKey())
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('private_key', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('ota_campaigns')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('firmware_id', 'text', (c) => c.notNull())
      .addColumn('target', 'text', (c) => c.notNull())
      .addColumn('waves', 'text', (c) => c.notNull())
      .addColumn('abort', 'text')
      .addColumn('window', 'text')
      .addColumn('timeout_ms', 'bigint', (c) => c.notNull())
      .addColumn('allow_downgrade', 'integer', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('wave', 'integer', (c) => c.notNull())
      .addColumn('soak_until', 'bigint')
      .addColumn('reason', 'text')
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('finished_at', 'bigint')
      .execute();
    await db.schema.createIndex('ota_campaigns_firmware').on('ota_campaigns').column('firmware_id').execute();
    await db.schema
      .createTable('ota_jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('campaign_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('hub_id', 'text')
      .addColumn('wave', 'integer', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('progress', 'integer')
      .addColumn('error', 'text')
      .addColumn('from_version', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('sent_at', 'bigint')
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addColumn('finished_at', 'bigint')
      .addUniqueConstraint('ota_jobs_campaign_device', ['campaign_id', 'device_id'])
      .execute();
    await db.schema.createIndex('ota_jobs_device').on('ota_jobs').columns(['device_id', 'state']).execute();
    await db.schema.createIndex('ota_jobs_hub').on('ota_jobs').columns(['hub_id', 'state']).execute();
    await db.schema.createIndex('ota_jobs_campaign_wave').on('ota_jobs').columns(['campaign_id', 'wave', 'state']).execute();
    await db.schema
      .createTable('ota_device_versions')
      .addColumn('device_id', 'text', (c) => c.primaryKey())
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('version', 'text', (c) => c.notNull())
      .addColumn('reported_at', 'bigint', (c) => c.notNull())
      .addColumn('last_job_id', 'text')
      .execute();
    await db.schema.createIndex('ota_device_versions_product').on('ota_device_versions').columns(['product_key', 'version']).execute();
  },
};
