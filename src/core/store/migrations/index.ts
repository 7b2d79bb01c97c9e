import { type Kysely, type Migration } from 'kysely';

/**
 * The one set of migrations, for SQLite and PostgreSQL alike: only portable column types
 * (text, integer, bigint, double precision) and no dialect-specific SQL.
 */
export const migrations: Record<string, Migration> = {
  '0001-foundation': {
    async up(db: Kysely<any>) {
      await db.schema.createTable('settings')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('email', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('name', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('products')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('category', 'text', (c) => c.notNull())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('builtin', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('devices')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('product_key', 'text', (c) => c.notNull().references('products.key'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('parent_id', 'text', (c) => c.references('devices.id'))
        .addColumn('hwid', 'text')
        .addColumn('secret_hash', 'text')
        .addColumn('pairing_code', 'text', (c) => c.unique())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('devices_parent_hwid').on('devices').columns(['parent_id', 'hwid']).unique().execute();
      await db.schema.createTable('presence')
        .addColumn('device_id', 'text', (c) => c.primaryKey())
        .addColumn('online', 'integer', (c) => c.notNull())
        .addColumn('session', 'bigint', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('changed_at', 'bigint', (c) => c.notNull())
        .addColumn('last_seen', 'bigint')
        .addColumn('node', 'text')
        .execute();
      await db.schema.createTable('shadows')
        .addColumn('device_id', 'text', (c) => c.primaryKey())
        .addColumn('reported', 'text', (c) => c.notNull())
        .addColumn('desired', 'text', (c) => c.notNull())
        .addColumn('metadata', 'text', (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('history')
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('property', 'text', (c) => c.notNull())
        .addColumn('ts', 'bigint', (c) => c.notNull())
        .addColumn('num', 'double precision')
        .addColumn('val', 'text')
        .execute();
      await db.schema.createIndex('history_device_property_ts').on('history').columns(['device_id', 'property', 'ts']).execute();
      await db.schema.createTable('device_events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('event', 'text', (c) => c.notNull())
        .addColumn('params', 'text', (c) => c.notNull())
        .addColumn('ts', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('device_events_device_ts').on('device_events').columns(['device_id', 'ts']).execute();
      await db.schema.createTable('commands')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('params', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('accepted_at', 'bigint', (c) => c.notNull())
        .addColumn('sent_at', 'bigint')
        .addColumn('answered_at', 'bigint')
        .addColumn('timed_out_at', 'bigint')
        .addColumn('ok', 'integer')
        .addColumn('result', 'text')
        .addColumn('error', 'text')
        .addColumn('latency_ms', 'double precision')
        .execute();
      await db.schema.createIndex('commands_device_accepted').on('commands').columns(['device_id', 'accepted_at']).execute();
    },
  },
};
