import type { Kysely, Migration } from 'kysely';

/**
 * Queued commands (issue 17) live in the command ledger: a command with `expires_at` is a queued
 * one, sent in `queue_seq` order when its device subscribes to its commands topic.
 */
export const commandQueue: Migration = {
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
  },
};
