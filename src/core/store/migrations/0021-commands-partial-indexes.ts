import { sql, type Kysely, type Migration } from 'kysely';

/**
 * The queue's indexes of the command ledger (0013) hold queued commands only: a command sent at
 * once (`expires_at` null, no idempotency key) is never looked up through them, and keeping them
 * cost every such command five index writes (its insert and its answer). The queries of the queue
 * name `expires_at is not null` (or an idempotency key), which is what lets both engines use them.
 */
export const commandsPartialIndexes: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.dropIndex('commands_queue').execute();
    await db.schema.dropIndex('commands_expiry').execute();
    await db.schema.dropIndex('commands_idempotency').execute();
    await db.schema
      .createIndex('commands_queue')
      .on('commands')
      .columns(['device_id', 'status', 'queue_seq'])
      .where(sql.ref('expires_at'), 'is not', null)
      .execute();
    await db.schema.createIndex('commands_expiry').on('commands').columns(['status', 'expires_at']).where(sql.ref('expires_at'), 'is not', null).execute();
    await db.schema
      .createIndex('commands_idempotency')
      .on('commands')
      .columns(['device_id', 'idempotency_key'])
      .unique()
      .where(sql.ref('idempotency_key'), 'is not', null)
      .execute();
  },
  async down(db: Kysely<any>) {
    await db.schema.dropIndex('commands_queue').execute();
    await db.schema.dropIndex('commands_expiry').execute();
    await db.schema.dropIndex('commands_idempotency').execute();
    await db.schema.createIndex('commands_queue').on('commands').columns(['device_id', 'status', 'queue_seq']).execute();
    await db.schema.createIndex('commands_expiry').on('commands').columns(['status', 'expires_at']).execute();
    await db.schema.createIndex('commands_idempotency').on('commands').columns(['device_id', 'idempotency_key']).unique().execute();
  },
};
