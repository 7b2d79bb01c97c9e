import { PostgresAdapter, sql, type Kysely, type Migration } from 'kysely';

/**
 * Connectivity analytics (docs/telemetry.md): every presence change of a device, compact (no
 * text beyond the device id and the reason), keyed by its columns so that it needs no second index
 * (SQLite: WITHOUT ROWID). Retention prunes it with the product's device events.
 */
export const presenceLog: Migration = {
  async up(db: Kysely<any>) {
    const pg = db.getExecutor().adapter instanceof PostgresAdapter;
    let t = db.schema
      .createTable('presence_log')
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('session', 'bigint', (c) => c.notNull())
      .addColumn('online', 'integer', (c) => c.notNull())
      .addColumn('reason', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('presence_log_pk', ['device_id', 'at', 'session', 'online']);
    if (!pg) t = t.modifyEnd(sql`without rowid`);
    await t.execute();
  },
};
