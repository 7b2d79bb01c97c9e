import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Migrator, sql, type MigrationProvider } from 'kysely';
import { startPlatform, storeEnv, TEST_STORE, eventually, type Platform } from './helpers/platform.ts';
import { migrate, openPostgres, type Db } from '../src/core/store/db.ts';
import { migrations } from '../src/core/store/migrations/index.ts';
import { dayOf, partitionName } from '../src/history/partitions.ts';

/**
 * Raw history on PostgreSQL partitioned by day (docs/telemetry.md, "Partitions on PostgreSQL"),
 * through real MQTT and HTTP: points on several days (late ones for old days included) each land
 * in their day's partition, made on demand; the retention pass drops whole the partitions older
 * than the longest raw retention and still deletes row by row what shorter retentions expire;
 * history and exports see every kept point; and migration 0020 moves an existing table into
 * partitions keeping every row. SQLite has no partitions: the suite runs in the PostgreSQL pass.
 */
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const PRODUCT = 'partition_meter';

/** The day partitions of `history`, by name (pg_inherits). */
async function partitions(db: Db): Promise<string[]> {
  const r = await sql<{ name: string }>`
    SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'history'::regclass ORDER BY c.relname`.execute(db);
  return r.rows.map((x) => x.name);
}
const nameOf = (ts: number) => `history_${new Date(ts).toISOString().slice(0, 10).replaceAll('-', '')}`;

describe('raw history partitioned by day on PostgreSQL', {
  skip: TEST_STORE !== 'postgres' ? 'PostgreSQL only (SQLite prunes by batched deletes): runs in the PostgreSQL pass' : false,
}, () => {
  let p: Platform;
  before(async () => {
    // Raw points are kept 7 days by default: every product but this one's (5 days, humidity 2).
    // The pass is run by the test (retention.prune()), not by the interval.
    p = await startPlatform({ env: { HEARTH_RETENTION_RAW: '7d', HEARTH_RETENTION_INTERVAL_MS: '3600000', HEARTH_HISTORY_FLUSH_MS: '50' } });
    const model = {
      properties: [
        { id: 'temperature', type: 'number', access: 'r', history: true },
        { id: 'humidity', type: 'number', access: 'r', history: true },
      ],
      events: [],
      actions: [],
    };
    const r = await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'Partition meter', category: 'sensor', model });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });
  after(async () => {
    await p?.stop();
  });

  const points = async (id: string, property: string) =>
    (
      (await p.api('GET', `/api/v1/devices/${id}/history?property=${property}&from=${Date.now() - 60 * DAY}&limit=10000`)).body.points as Array<{
        ts: string;
        value: number;
      }>
    ).map((x) => Date.parse(x.ts));
  const exported = async (id: string) => {
    const r = await fetch(`${p.httpUrl}/api/v1/devices/${id}/history/export?format=ndjson&from=${Date.now() - 60 * DAY}`, {
      headers: { authorization: `Bearer ${p.token}` },
    });
    assert.equal(r.status, 200);
    return (await r.text())
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { ts: string; property: string; value: number });
  };

  test('points of several days, a late one for an old day included, land in day partitions made on demand; retention drops the expired days whole and deletes the shorter retentions row by row', async () => {
    const db = p.hearth.db;
    const d = await p.provision(PRODUCT);
    const c = await p.connect(d.id, d.secret);
    const now = Date.now();
    const ages = [1 * HOUR, 3 * DAY, 6 * DAY, 9 * DAY];
    for (const age of ages)
      await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: now - age, temperature: age / HOUR, humidity: 50 }), { qos: 1 });
    // A late point: a hub flushing its buffer, forty days after the fact.
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: now - 40 * DAY, temperature: -1 }), { qos: 1 });
    await eventually(async () => (await points(d.id, 'temperature')).length === 5, 10_000, 'five points stored');
    const made = await partitions(db);
    for (const age of [...ages, 40 * DAY]) assert.ok(made.includes(nameOf(now - age)), `${nameOf(now - age)} in ${made}`);
    assert.equal((await exported(d.id)).length, 9);

    assert.equal((await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, { raw: '5d', properties: { humidity: { raw: '2d' } } })).status, 200);
    const report = await p.hearth.services.retention.prune();
    assert.ok(report, 'a pass ran');
    // Older than the longest raw retention (7 days, the default of the other products): dropped whole.
    const left = await partitions(db);
    assert.ok(!left.includes(nameOf(now - 9 * DAY)), `${nameOf(now - 9 * DAY)} dropped: ${left}`);
    assert.ok(!left.includes(nameOf(now - 40 * DAY)), `${nameOf(now - 40 * DAY)} dropped: ${left}`);
    assert.ok(report.partitions >= 2, JSON.stringify(report));
    // Younger: the partitions stay, their expired rows are deleted (humidity after 2 days, temperature after 5).
    for (const age of [1 * HOUR, 3 * DAY, 6 * DAY]) assert.ok(left.includes(nameOf(now - age)), `${nameOf(now - age)} kept: ${left}`);
    assert.ok(report.points >= 3, JSON.stringify(report));
    // Made ahead: today and the next two days.
    for (let i = 0; i <= 2; i++) assert.ok(left.includes(nameOf(now + i * DAY)), `${nameOf(now + i * DAY)} made ahead: ${left}`);
    assert.deepEqual(await points(d.id, 'temperature'), [now - 3 * DAY, now - HOUR]);
    assert.deepEqual(await points(d.id, 'humidity'), [now - HOUR]);
    assert.deepEqual(
      (await exported(d.id)).map((x) => `${x.property}@${Date.parse(x.ts)}`),
      [`temperature@${now - 3 * DAY}`, `humidity@${now - HOUR}`, `temperature@${now - HOUR}`],
    );
    // The rollups were not touched: the day tier still counts every point.
    const days = await p.api('GET', `/api/v1/devices/${d.id}/history?property=temperature&from=${now - 41 * DAY}&bucket=1d&tier=1d`);
    assert.equal(
      days.body.buckets.reduce((n: number, b: { count: number }) => n + b.count, 0),
      5,
    );

    // A late point for a day whose partition was dropped: made again, stored, dropped again by the next pass.
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: now - 9 * DAY + 1, temperature: 9 }), { qos: 1 });
    await eventually(async () => (await points(d.id, 'temperature')).includes(now - 9 * DAY + 1), 10_000, 'the late point stored');
    assert.ok((await partitions(db)).includes(nameOf(now - 9 * DAY)));
    const again = await p.hearth.services.retention.prune();
    assert.equal(again?.partitions, 1);
    assert.ok(!(await partitions(db)).includes(nameOf(now - 9 * DAY)));
    assert.deepEqual(await points(d.id, 'temperature'), [now - 3 * DAY, now - HOUR]);
    // Counted for the operator: every partition the passes dropped.
    const metrics = await (await fetch(`${p.httpUrl}/metrics`)).text();
    const counted = /^hearth_history_partitions_dropped_total (\d+)$/m.exec(metrics);
    assert.equal(Number(counted?.[1]), report.partitions + 1);
    await c.endAsync();
  });

  test('a partition another node dropped, or left detached, is made again before the write that needs it: no point is lost', async () => {
    const db = p.hearth.db;
    const d = await p.provision(PRODUCT);
    const c = await p.connect(d.id, d.secret);
    const now = Date.now();
    const at = now - 4 * DAY;
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: at, temperature: 1 }), { qos: 1 });
    await eventually(async () => (await points(d.id, 'temperature')).length === 1, 10_000, 'first point');
    // As the pruning node of a cluster would (this node still believes the partition exists).
    await sql`DROP TABLE ${sql.id(nameOf(at))}`.execute(db);
    assert.deepEqual(await points(d.id, 'temperature'), []);
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: at + 1000, temperature: 2 }), { qos: 1 });
    await eventually(async () => (await points(d.id, 'temperature')).length === 1, 10_000, 'the point after the drop stored');
    assert.ok((await partitions(db)).includes(nameOf(at)));
    assert.ok(!p.logs.some((l) => /refused by the store/.test(l.msg ?? '')), 'no point dropped as refused');

    // A drop cut short between its detach and its drop leaves the day's table, no longer a partition:
    // the next point of that day replaces it with a partition.
    const late = now - 5 * DAY;
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: late, temperature: 3 }), { qos: 1 });
    await eventually(async () => (await points(d.id, 'temperature')).length === 2, 10_000, 'a point of another day');
    await sql`ALTER TABLE history DETACH PARTITION ${sql.id(nameOf(late))}`.execute(db);
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: late + 1000, temperature: 4 }), { qos: 1 });
    await eventually(async () => (await points(d.id, 'temperature')).includes(late + 1000), 10_000, 'the point after the detach stored');
    assert.ok((await partitions(db)).includes(nameOf(late)));
    assert.ok(!p.logs.some((l) => /refused by the store/.test(l.msg ?? '')), 'no point dropped as refused');
    await c.endAsync();
  });

  test('a longest raw retention of forever drops no partition; rows are still deleted by the shorter ones', async () => {
    const db = p.hearth.db;
    assert.equal((await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, { raw: '1d', properties: { humidity: { raw: null } } })).status, 200);
    const d = await p.provision(PRODUCT);
    const c = await p.connect(d.id, d.secret);
    const now = Date.now();
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: now - 20 * DAY, temperature: 1, humidity: 1 }), { qos: 1 });
    await eventually(async () => (await points(d.id, 'humidity')).length === 1, 10_000, 'stored');
    const report = await p.hearth.services.retention.prune();
    assert.equal(report?.partitions, 0);
    assert.ok((await partitions(db)).includes(nameOf(now - 20 * DAY)));
    assert.deepEqual(await points(d.id, 'temperature'), []);
    assert.deepEqual(await points(d.id, 'humidity'), [now - 20 * DAY]);
    await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, {});
    await c.endAsync();
  });

  test('migration 0020 moves an existing unpartitioned history into day partitions, keeping every row and the key', async () => {
    const { HEARTH_DATABASE_URL: url } = await storeEnv(mkdtempSync(join(tmpdir(), 'hearth-partitions-')));
    const { db } = openPostgres({ url });
    try {
      const provider: MigrationProvider = { getMigrations: async () => migrations };
      assert.equal((await new Migrator({ db, provider }).migrateTo('0019-exports-fleet-rollups')).error, undefined);
      const t0 = Date.UTC(2026, 10, 28, 23, 59, 59, 999);
      const rows = [];
      for (let i = 0; i < 3000; i++)
        rows.push({
          device_id: `d_${i % 7}`,
          property: i % 2 ? 'temperature' : 'mode',
          ts: t0 + (i % 5) * DAY + i,
          num: i % 2 ? i / 10 : null,
          val: i % 2 ? null : JSON.stringify(`m${i}`),
          msg_id: i % 11 === 0 ? null : `m_${i}`,
        });
      // Legacy points of earlier versions: no message id, two at the same time.
      rows.push({ device_id: 'd_0', property: 'temperature', ts: 1000, num: 1, val: null, msg_id: null });
      rows.push({ device_id: 'd_0', property: 'temperature', ts: 1000, num: 2, val: null, msg_id: null });
      // Far in the future (a device's clock gone wrong): two days of year 253,000, each its own partition.
      rows.push({ device_id: 'd_1', property: 'temperature', ts: 8e15, num: 3, val: null, msg_id: 'm_far1' });
      rows.push({ device_id: 'd_1', property: 'temperature', ts: 8e15 + DAY, num: 4, val: null, msg_id: 'm_far2' });
      for (let i = 0; i < rows.length; i += 500)
        await db
          .insertInto('history')
          .values(rows.slice(i, i + 500))
          .execute();
      const before = await sql<Record<string, unknown>>`SELECT * FROM history ORDER BY device_id, property, ts, num, msg_id`.execute(db);

      // 0020 and the migrations after it (those of other tables).
      assert.equal((await migrate(db))[0], '0020-history-partitions');
      const kind = await sql<{ relkind: string }>`SELECT relkind FROM pg_class WHERE oid = 'history'::regclass`.execute(db);
      assert.equal(kind.rows[0].relkind, 'p');
      const after = await sql<Record<string, unknown>>`SELECT * FROM history ORDER BY device_id, property, ts, num, msg_id`.execute(db);
      assert.equal(after.rows.length, rows.length);
      assert.deepEqual(after.rows, before.rows);
      // One partition per day present: 1970-01-01, the six days the points span and the two far ones.
      const names = await partitions(db);
      assert.deepEqual(
        names,
        ['history_19700101', ...Array.from({ length: 6 }, (_, k) => nameOf(t0 + k * DAY)), partitionName(dayOf(8e15)), partitionName(dayOf(8e15 + DAY))].sort(),
      );
      // Each row is in its day's partition, and the key still de-duplicates a redelivered point.
      const misplaced = await sql<{ n: string }>`
        SELECT count(*) AS n FROM history WHERE tableoid::regclass::text <> 'history_' || to_char(to_timestamp(ts / 1000.0) AT TIME ZONE 'UTC', 'YYYYMMDD')`.execute(
        db,
      );
      assert.equal(Number(misplaced.rows[0].n), 0);
      const again = await db
        .insertInto('history')
        .values(rows[1])
        .onConflict((oc) => oc.columns(['device_id', 'property', 'ts', 'msg_id']).doNothing())
        .executeTakeFirst();
      assert.equal(Number(again.numInsertedOrUpdatedRows), 0);
      assert.deepEqual(await migrate(db), []);
    } finally {
      await db.destroy();
    }
  });
});
