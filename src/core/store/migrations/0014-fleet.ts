import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Fleet lifecycle and fleet management (docs/fleet.md): a device can be disabled and deleted (its
 * row stays as a tombstone so that its id is never reused), carries the operator's tags and
 * attributes and the firmware it last reported (with a sortable key, so `firmware<1.2` is an index
 * range); static and dynamic groups; bulk jobs with per-device results. The partial indexes
 * (`WHERE deleted_at IS NULL`) keep fleet search on live devices only; SQLite and PostgreSQL both
 * have them.
 */
export const fleetMigration: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('devices').addColumn('disabled_at', 'bigint').execute();
    await db.schema.alterTable('devices').addColumn('deleted_at', 'bigint').execute();
    await db.schema.alterTable('devices').addColumn('firmware', 'text').execute();
    await db.schema.alterTable('devices').addColumn('firmware_key', 'text').execute();
    await db.schema.alterTable('devices').addColumn('attributes', 'text').execute();
    const live = sql<boolean>`deleted_at is null`;
    await db.schema.createIndex('devices_live_created').on('devices').columns(['created_at', 'id']).where(live).execute();
    await db.schema.createIndex('devices_live_product').on('devices').columns(['product_key', 'created_at', 'id']).where(live).execute();
    await db.schema.createIndex('devices_live_firmware').on('devices').columns(['firmware_key', 'id']).where(live).execute();
    await db.schema.createIndex('devices_live_name').on('devices').columns(['name', 'id']).where(live).execute();
    await db.schema.createIndex('devices_parent').on('devices').column('parent_id').execute();
    await db.schema.createIndex('presence_last_seen').on('presence').columns(['last_seen', 'device_id']).execute();
    await db.schema.createIndex('presence_online').on('presence').columns(['online', 'device_id']).execute();
    await db.schema
      .createTable('device_tags')
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('value', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('device_tags_pk', ['device_id', 'key'])
      .execute();
    await db.schema.createIndex('device_tags_key_value').on('device_tags').columns(['key', 'value', 'device_id']).execute();
    await db.schema
      .createTable('fleet_groups')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('description', 'text')
      .addColumn('parent_id', 'text')
      .addColumn('query', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('fleet_group_members')
      .addColumn('group_id', 'text', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('added_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('fleet_group_members_pk', ['group_id', 'device_id'])
      .execute();
    await db.schema.createIndex('fleet_group_members_device').on('fleet_group_members').column('device_id').execute();
    await db.schema
      .createTable('fleet_jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('shard', 'integer', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('spec', 'text', (c) => c.notNull())
      .addColumn('target', 'text', (c) => c.notNull())
      .addColumn('rate', 'integer', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('total', 'integer', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('started_at', 'bigint')
      .addColumn('finished_at', 'bigint')
      .execute();
    await db.schema.createIndex('fleet_jobs_status').on('fleet_jobs').columns(['status', 'shard']).execute();
    await db.schema
      .createTable('fleet_job_targets')
      .addColumn('job_id', 'text', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('error', 'text')
      .addColumn('result', 'text')
      .addColumn('finished_at', 'bigint')
      .addPrimaryKeyConstraint('fleet_job_targets_pk', ['job_id', 'seq'])
      .execute();
    await db.schema.createIndex('fleet_job_targets_status').on('fleet_job_targets').columns(['job_id', 'status', 'seq']).execute();
  },
};
