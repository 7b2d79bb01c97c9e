import { describe, test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { migrate, openSqlite, type Db } from '../../src/core/store/db.ts';
import { createLogger } from '../../src/core/logger.ts';
import { writeIsolated } from '../../src/core/periodic-flush.ts';
import { HistoryService } from '../../src/history/history-service.ts';
import { AuditService } from '../../src/audit/audit-service.ts';
import { AutomationStore } from '../../src/automation/automation-store.ts';
import type { Trace } from '../../src/automation/automation-types.ts';
import { startPlatform, eventually, type Platform } from '../helpers/platform.ts';
import { signupUser, type TestUser } from '../helpers/people.ts';

/**
 * One bad record never takes the others with it: every batch writer (history points and events,
 * audit entries, automation runs) stores the rest of its batch when the store refuses a record or
 * a record cannot be serialised, and keeps everything for the next try when the store itself fails.
 */

/** A log whose records the test reads. */
function capturingLog() {
  const lines: Array<{ msg: string; level: number }> = [];
  return { lines, log: createLogger('info', {}, { write: (l: string) => void lines.push(JSON.parse(l)) }) };
}

async function memoryDb(): Promise<Db> {
  const { db } = openSqlite({ dataDir: '', file: ':memory:' });
  await migrate(db);
  return db;
}

/** A 20,000-deep object: JSON.stringify gives up on it (RangeError), like the body of the issue. */
function deep(levels = 20_000): unknown {
  let v: unknown = 'bottom';
  for (let i = 0; i < levels; i++) v = { d: v };
  return v;
}

const refused = (code: string) => Object.assign(new Error('refused'), { code });

describe('writeIsolated', () => {
  test('a record the store refuses is dropped alone; the others are written', async () => {
    const written: number[] = [];
    const bad: number[] = [];
    const r = await writeIsolated([1, 2, 3, 4], {
      batch: async () => {
        throw refused('SQLITE_CONSTRAINT_CHECK');
      },
      one: async (n) => {
        if (n === 3) throw refused('23514');
        written.push(n);
      },
      onBad: (n) => void bad.push(n),
    });
    assert.deepEqual(r, { retry: [] });
    assert.deepEqual(written, [1, 2, 4]);
    assert.deepEqual(bad, [3]);
  });

  test('when the store fails (not a record), nothing is dropped: the records not written come back with the error', async () => {
    const down = refused('SQLITE_BUSY');
    const r1 = await writeIsolated([1, 2], {
      batch: async () => {
        throw down;
      },
      one: async () => undefined,
      onBad: () => assert.fail('nothing is bad'),
    });
    assert.deepEqual(r1.retry, [1, 2]);
    assert.equal(r1.error, down);
    // The batch was refused for a record, then the store went down half way through the singles.
    const written: number[] = [];
    const r2 = await writeIsolated([1, 2, 3], {
      batch: async () => {
        throw refused('23505');
      },
      one: async (n) => {
        if (n === 2) throw Object.assign(new Error('connection terminated'), { code: '57P01' });
        written.push(n);
      },
      onBad: () => assert.fail('a store failure is not a bad record'),
    });
    assert.deepEqual(written, [1]);
    assert.deepEqual(r2.retry, [2, 3]);
  });
});

describe('batch writers on a real store', () => {
  let db: Db;
  before(async () => {
    db = await memoryDb();
  });
  after(async () => {
    await db.destroy();
  });

  test("history: a point the store refuses is dropped alone; the batch's other points and events are stored, and the flush succeeds", async () => {
    // Stands in for any row the store cannot take (a constraint, a value out of range on PostgreSQL).
    await sql`CREATE TRIGGER refuse_poison BEFORE INSERT ON history WHEN NEW.property = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END`.execute(db);
    const { log, lines } = capturingLog();
    const history = new HistoryService({ db, log, flushMs: 60_000 });
    for (let i = 0; i < 50; i++) history.record(`d_${i % 5}`, 'temperature', 20 + i, 1000 + i, `m${i}`);
    history.record('d_bad', 'poison', 1, 1000, 'mp');
    history.recordEvent('d_1', 'beep', {}, 1000, 'e_1');
    await history.flush(true);
    const points = await db.selectFrom('history').select(['device_id']).execute();
    assert.equal(points.length, 50, 'every good point is stored');
    assert.equal((await history.deviceEvents('d_1', 0, 2000, 10)).length, 1, 'and the event');
    assert.ok(
      lines.some((l) => l.msg.startsWith('history record refused')),
      'the dropped point is logged',
    );
    await history.stop();
  });

  test('audit: an entry the store refuses is dropped alone; unserialisable details keep their entry', async () => {
    await sql`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log WHEN NEW.action = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END`.execute(db);
    const { log } = capturingLog();
    const audit = new AuditService({ db, log, flushMs: 60_000 });
    audit.record({ actor: 'user:u_a', action: 'key.create', targetId: 'k_1' });
    audit.record({ actor: 'user:u_b', action: 'poison', targetId: 'k_2' });
    audit.record({ actor: 'user:u_c', action: 'device.desired', targetId: 'd_1', details: { desired: deep() as Record<string, unknown> } });
    audit.record({ actor: 'user:u_d', action: 'key.revoke', targetId: 'k_3' });
    await audit.committed();
    const got = await audit.list({ limit: 10 });
    assert.deepEqual(got.map((e) => e.action).sort(), ['device.desired', 'key.create', 'key.revoke']);
    assert.deepEqual(got.find((e) => e.action === 'device.desired')!.details, { unrecorded: 'the details could not be serialised' });
    await audit.stop();
  });

  test("automation runs: an unserialisable trace is stored without its data, and the other homes' runs of the batch are stored", async () => {
    const { log } = capturingLog();
    const store = new AutomationStore({ db, log, flushMs: 60_000 });
    const trace = (data: Record<string, unknown>): Trace => ({
      trigger: { index: 0, type: 'webhook', data, at: new Date(1000).toISOString(), description: 'incoming webhook' },
      conditions: [],
      actions: [],
    });
    const run = (id: string, homeId: string, data: Record<string, unknown>) =>
      store.recordRun({ id, automationId: `au_${homeId}`, homeId, status: 'completed', reason: null, startedAt: 1000, finishedAt: 1010, trace: trace(data) });
    run('ar_good1', 'h_other1', { body: { n: 1 } });
    run('ar_deep', 'h_attacker', { body: deep() });
    run('ar_good2', 'h_other2', { body: { n: 2 } });
    await store.flush();
    const [good1] = await store.listRuns('au_h_other1', { limit: 5 });
    const [good2] = await store.listRuns('au_h_other2', { limit: 5 });
    assert.deepEqual(good1?.trace.trigger.data, { body: { n: 1 } }, "another home's run is stored");
    assert.deepEqual(good2?.trace.trigger.data, { body: { n: 2 } });
    const [bad] = await store.listRuns('au_h_attacker', { limit: 5 });
    assert.equal(bad?.status, 'completed', 'the run with the deep body is stored too');
    assert.match(String(bad.trace.trigger.data.unrecorded), /could not be stored/);
    await store.stop();
  });
});

describe('end to end: a 20,000-deep body sent to your own incoming webhook', () => {
  let p: Platform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p.stop();
  });

  async function webhookAutomation(u: TestUser): Promise<{ id: string; webhookId: string }> {
    const home = await u.api('POST', '/homes', { name: 'Home', timezone: 'Europe/Berlin', latitude: 52.52, longitude: 13.405 });
    assert.equal(home.status, 201, JSON.stringify(home.body));
    const a = await u.api('POST', `/homes/${home.body.id}/automations`, {
      name: 'Hook',
      triggers: [{ type: 'webhook' }],
      actions: [{ type: 'delay', duration: 0 }],
    });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    return a.body;
  }

  test("other homes' runs written in the same batch are stored", async () => {
    const attacker = await signupUser(p, 'attacker@durability.test');
    const others = [await signupUser(p, 'neighbour-1@durability.test'), await signupUser(p, 'neighbour-2@durability.test')];
    const bad = await webhookAutomation(attacker);
    const good = await Promise.all(others.map(webhookAutomation));
    const body = '{"d":'.repeat(20_000) + '0' + '}'.repeat(20_000);
    // Fired together, so their runs fall into one batch of the run writer.
    const [attack, ...fired] = await Promise.all([
      fetch(`${p.httpUrl}/api/v1/hooks/${bad.webhookId}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }),
      ...good.map((a, i) => p.api('POST', `/api/v1/hooks/${a.webhookId}`, { neighbour: i }, null)),
    ]);
    await attack.text();
    // Refused at the HTTP edge (a depth limit) or accepted: either way the neighbours' runs must be stored.
    assert.ok(attack.status === 202 || (attack.status >= 400 && attack.status < 500), `the deep body is accepted or refused, not a crash (${attack.status})`);
    for (const f of fired) assert.equal(f.status, 202, JSON.stringify(f.body));
    for (const [i, a] of good.entries()) {
      const runs = await eventually(
        async () => {
          const r = await others[i].api('GET', `/automations/${a.id}/runs`);
          return r.body.items?.some((x: { status: string }) => x.status === 'completed') ? r.body.items : undefined;
        },
        3000,
        `neighbour ${i}'s run`,
      );
      assert.deepEqual(runs[0].trace.trigger.data.body, { neighbour: i });
    }
    if (attack.status === 202) {
      const runs = (await attacker.api('GET', `/automations/${bad.id}/runs`)).body.items;
      assert.equal(runs.length, 1, "the deep body's own run is recorded, without what could not be stored");
    }
  });
});
