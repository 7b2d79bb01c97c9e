import { test } from 'node:test';
import assert from 'node:assert/strict';
import { migrate, openSqlite } from '../core/store/db.ts';
import { createLogger } from '../core/logger.ts';
import { AutomationStore, RUNS_KEPT } from './automation-store.ts';
import type { Trace } from './automation-types.ts';

const trace = (i: number): Trace => ({ trigger: { index: 0, type: 'manual', data: { i }, at: new Date(i).toISOString(), description: 'run by hand' }, conditions: [], actions: [] });

test('runs: a start and an end in one batch make one row; each automation keeps its newest runs', async () => {
  const { db } = openSqlite({ dataDir: '', file: ':memory:' });
  await migrate(db);
  const store = new AutomationStore({ db, log: createLogger('silent'), flushMs: 60_000 });
  try {
    store.recordRun({ id: 'ar_1', automationId: 'au_a', homeId: 'h_1', status: 'running', reason: null, startedAt: 1000, finishedAt: null, trace: trace(1000) });
    store.recordRun({ id: 'ar_1', automationId: 'au_a', homeId: 'h_1', status: 'completed', reason: null, startedAt: 1000, finishedAt: 1040, trace: trace(1000) });
    const [one] = await store.listRuns('au_a', { limit: 10 });
    assert.equal(one.status, 'completed');
    assert.equal(one.ms, 40);
    assert.equal((await db.selectFrom('automation_runs').select('id').execute()).length, 1);

    for (let i = 0; i < RUNS_KEPT + 30; i++) store.recordRun({ id: `ar_b${i}`, automationId: 'au_b', homeId: 'h_1', status: 'completed', reason: null, startedAt: 10_000 + i, finishedAt: 10_000 + i, trace: trace(i) });
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
