import type { Kysely, Migration } from 'kysely';

/**
 * Nothing lost while a device is offline (issue 17). Queued commands live in the command ledger:
 * a command with `expires_at` is a queued one, sent in `queue_seq` order when its device
 * subscribes to its commands topic. MQTT sessions with clean=false keep their subscriptions and
 * undelivered QoS 1 messages in `mqtt_subscriptions` and `mqtt_outgoing` (src/sessions/).
 */
export const offline: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('commands').addColumn('expires_at', 'bigint').execute();
    await db.schema.alterTable('commands').addColumn('queue_seq', 'bigint').execute();
    await db.schema.alterTable('commands').addColumn('idempotency_key', 'text').execute();
    await db.schema.alterTable('commands').addColumn('attempts', 'integer').execute();
    await db.schema.alterTable('commands').addColumn('cancelled_at', 'bigint').execute();
    // The pump: a device's queued and in-flight commands in order.
    await db.schema.createIndex('commands_queue').on('commands').columns(['device_id', 'status', 'queue_seq']).execute();
    // The sweeper: what expires next.
    await db.schema.createIndex('commands_expiry').on('commands').columns(['status', 'expires_at']).execute();
    // A retried POST with the same Idempotency-Key finds its command (NULLs never collide).
    await db.schema.createIndex('commands_idempotency').on('commands').columns(['device_id', 'idempotency_key']).unique().execute();

    await db.schema
      .createTable('mqtt_subscriptions')
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('topic', 'text', (c) => c.notNull())
      .addColumn('qos', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('mqtt_subscriptions_pk', ['client_id', 'topic'])
      .execute();
    await db.schema
      .createTable('mqtt_outgoing')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('client_id', 'text', (c) => c.notNull())
      .addColumn('seq', 'bigint', (c) => c.notNull())
      .addColumn('topic', 'text', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('qos', 'integer', (c) => c.notNull())
      .addColumn('message_id', 'integer')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('mqtt_outgoing_client').on('mqtt_outgoing').columns(['client_id', 'seq']).execute();
  },
};
