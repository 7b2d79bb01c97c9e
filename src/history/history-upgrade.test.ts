import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Migrator, type MigrationProvider } from 'kysely';
import { openSqlite } from '../core/store/db.ts';
import { migrations } from '../core/store/migrations/index.ts';
import { HistoryService } from './history-service.ts';
import { createLogger } from '../core/logger.ts';

test('upgrading SQLite to the compact history table keeps every point, legacy ones without a message id included', async () => {
  const { db } = openSqlite({ dataDir: '', file: ':memory:' });
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const migrator = new Migrator({ db, provider });
  assert.equal((await migrator.migrateTo('0011-member-rights-since')).error, undefined);
  // Points as earlier versions stored them: two without a message id at the same time, one with.
  await db
    .insertInto('history')
    .values([
      { device_id: 'd_1', property: 'temperature', ts: 1000, num: 20, val: null, msg_id: null },
      { device_id: 'd_1', property: 'temperature', ts: 1000, num: 21, val: null, msg_id: null },
      { device_id: 'd_1', property: 'mode', ts: 2000, num: null, val: '"eco"', msg_id: 'm_1' },
    ])
    .execute();
  assert.equal((await migrator.migrateToLatest()).error, undefined);
  const history = new HistoryService({ db, log: createLogger('silent'), flushMs: 60_000 });
  assert.deepEqual((await history.points('d_1', 'temperature', 0, 5000, 10)).map((p) => p.value).sort(), [20, 21]);
  assert.deepEqual(
    (await history.points('d_1', 'mode', 0, 5000, 10)).map((p) => p.value),
    ['eco'],
  );
  // The same message recorded again is still a no-op.
  history.record('d_1', 'mode', 'off', 2000, 'm_1');
  await history.flush(true);
  assert.deepEqual(
    (await history.points('d_1', 'mode', 0, 5000, 10)).map((p) => p.value),
    ['eco'],
  );
  await history.stop();
  await db.destroy();
});
