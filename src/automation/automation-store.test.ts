import { test } from 'node:test';
import assert from 'node:assert/strict';
import { migrate, openSqlite } from '../core/store/db.ts';
import { createLogger } from '../core/logger.ts';
import { AutomationStore, RUNS_KEPT } from './automation-store.ts';
import type { Trace } from './automation-types.ts';
import { SettingsStore } from '../core/settings-store.ts';
import { shardOf } from '../core/cluster/shards.ts';

const trace = (i: number): Trace => ({
  trigger: { index: 0, type: 'manual', data: { i }, at: new Date(i).toISOString(), description: 'run by hand' },
  conditions: [],
  actions: [],
});

test('runs: a start and an end in one batch make one row; each automation keeps its newest runs', async () => {
  const { db } = openSqlite({ dataDir: '', file: ':memory:' });
  await migrate(db);
  const store = new AutomationStore({ db, log: createLogger('silent'), flushMs: 60_000 });
  try {
    store.recordRun({
      id: 'ar_1',
      automationId: 'au_a',
      homeId: 'h_1',
      status: 'running',
      reason: null,
      startedAt: 1000,
      finishedAt: null,
      trace: trace(1000),
    });
    store.recordRun({
      id: 'ar_1',
      automationId: 'au_a',
      homeId: 'h_1',
      status: 'completed',
      reason: null,
      startedAt: 1000,
      finishedAt: 1040,
      trace: trace(1000),
    });
    const [one] = await store.listRuns('au_a', { limit: 10 });
    assert.equal(one.status, 'completed');
    assert.equal(one.ms, 40);
    assert.equal((await db.selectFrom('automation_runs').select('id').execute()).length, 1);

    for (let i = 0; i < RUNS_KEPT + 30; i++)
      store.recordRun({
        id: `ar_b${i}`,
        automationId: 'au_b',
        homeId: 'h_1',
        status: 'completed',
        reason: null,
        startedAt: 10_000 + i,
        finishedAt: 10_000 + i,
        trace: trace(i),
      });
    const runs = await store.listRuns('au_b', { limit: 1000 });
    assert.equal(runs.length, RUNS_KEPT);
    assert.equal(runs[0].id, `ar_b${RUNS_KEPT + 29}`, 'newest first');
    assert.equal(runs.at(-1)!.id, 'ar_b30', 'the oldest 30 went');
    assert.equal((await store.listRuns('au_a', { limit: 10 })).length, 1, 'other automations keep theirs');
    assert.equal((await store.listRuns('au_b', { limit: 5, before: 10_100 })).length, 5);
  } finally {
    await store.stop();
    await db.destroy();
  }
});

test("start: automations are re-placed in their home's shard when the configured shard count changed, and only then", async () => {
  const { db } = openSqlite({ dataDir: '', file: ':memory:' });
  await migrate(db);
  const settings = new SettingsStore(db);
  const row = (id: string, homeId: string) => ({
    id,
    home_id: homeId,
    shard: 0,
    name: id,
    description: null,
    enabled: 1,
    mode: 'single',
    max_runs: 1,
    cooldown_ms: 0,
    triggers: '[]',
    conditions: '[]',
    actions: '[]',
    webhook_id: null,
    status: 'ok',
    status_reason: null,
    created_by: 'u_1',
    created_at: 1,
    updated_at: 1,
  });
  const homes = Array.from({ length: 12 }, (_, i) => `h_${i}`);
  const shardsNow = async () =>
    Object.fromEntries((await db.selectFrom('automations').select(['home_id', 'shard']).execute()).map((r) => [r.home_id, r.shard]));
  const run = async (shardCount: number) => {
    const store = new AutomationStore({ db, log: createLogger('silent'), flushMs: 60_000, sharding: { shardCount, settings } });
    await store.start();
    await store.stop();
  };
  try {
    for (const h of homes) await new AutomationStore({ db, log: createLogger('silent'), flushMs: 60_000 }).insert(row(`au_${h}`, h));
    await run(8);
    assert.deepEqual(await shardsNow(), Object.fromEntries(homes.map((h) => [h, shardOf(h, 8)])));
    assert.equal(await settings.get('automations.shardCount'), '8');
    // Same count: the rows are not looked at again (a row moved by hand stays where it is).
    await db.updateTable('automations').set({ shard: 99 }).where('home_id', '=', 'h_0').execute();
    await run(8);
    assert.equal((await shardsNow()).h_0, 99);
    await run(3);
    assert.deepEqual(await shardsNow(), Object.fromEntries(homes.map((h) => [h, shardOf(h, 3)])));
    assert.equal(await settings.get('automations.shardCount'), '3');
  } finally {
    await db.destroy();
  }
});
