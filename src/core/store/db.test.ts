import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CompiledQuery, Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { isRecordError, migrate, openSqliteFile, openStore, type Db, type Store, type StoreEngine } from './db.ts';
import { migrations } from './migrations/index.ts';
import type { Database } from './schema.ts';
import { HistoryService } from '../../history/history-service.ts';
import { createLogger } from '../logger.ts';
import { startPostgres, type PostgresServer } from '../../../test/helpers/postgres.ts';

const ALL = Object.keys(migrations);
const dirs: string[] = [];
let server: PostgresServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'hearth-store-'));
  dirs.push(d);
  return d;
}

/** Where a fresh, empty store of each engine lives. */
const engines: Array<{ engine: StoreEngine; fresh(): Promise<{ dataDir: string; databaseUrl?: string }> }> = [
  { engine: 'sqlite', fresh: async () => ({ dataDir: tempDir() }) },
  { engine: 'postgres', fresh: async () => ({ dataDir: tempDir(), databaseUrl: await server.createDatabase() }) },
];

for (const { engine, fresh } of engines) {
  describe(`store on ${engine}`, () => {
    test('openStore picks the engine; migrate applies every migration once', async () => {
      const store = openStore(await fresh());
      try {
        assert.equal(store.engine, engine);
        assert.deepEqual(await migrate(store.db), ALL);
        assert.deepEqual(await migrate(store.db), []);
        if (engine === 'postgres') {
          // a stuck statement cannot hold one of the pool's connections for ever
          const { rows } = await store.db.executeQuery<{ statement_timeout: string }>(CompiledQuery.raw('SHOW statement_timeout'));
          assert.equal(rows[0].statement_timeout, '30s');
        }
      } finally {
        await store.close();
      }
    });

    test('bigint columns, counts and averages come back as JS numbers', async () => {
      const store = openStore(await fresh());
      try {
        const { db } = store;
        await migrate(db);
        const at = 1_700_000_000_123;
        await db.insertInto('users').values({ id: 'u1', email: 'a@test.local', password_hash: 'x', role: 'user', name: null, created_at: at }).execute();
        await db
          .insertInto('presence')
          .values({ device_id: 'd1', online: 1, session: 2 ** 40, reason: 'connect', changed_at: at, last_seen: null, node: null, listening: 0 })
          .execute();
        await db
          .insertInto('commands')
          .values({
            id: 'c1',
            device_id: 'd1',
            action: 'a',
            params: '{}',
            source: 's',
            status: 'answered',
            accepted_at: at,
            sent_at: null,
            answered_at: null,
            timed_out_at: null,
            ok: 1,
            result: null,
            error: null,
            latency_ms: 12.5,
          })
          .execute();
        const user = await db.selectFrom('users').select('created_at').executeTakeFirstOrThrow();
        assert.equal(user.created_at, at);
        const presence = await db.selectFrom('presence').select(['session', 'online']).executeTakeFirstOrThrow();
        assert.deepEqual(presence, { session: 2 ** 40, online: 1 });
        const cmd = await db.selectFrom('commands').select(['ok', 'latency_ms', 'accepted_at']).executeTakeFirstOrThrow();
        assert.deepEqual(cmd, { ok: 1, latency_ms: 12.5, accepted_at: at });
        const agg = await db
          .selectFrom('presence')
          .select((eb) => [eb.fn.countAll().as('n'), eb.fn.avg('session').as('avg'), eb.fn.sum('session').as('sum'), eb.fn.max('changed_at').as('max')])
          .executeTakeFirstOrThrow();
        assert.deepEqual(agg, { n: 1, avg: 2 ** 40, sum: 2 ** 40, max: at });
        // the session counter is bumped in SQL (presence-service.ts); the result is still a number
        const bumped = await db
          .updateTable('presence')
          .set((eb) => ({ session: eb('session', '+', 1) }))
          .returning('session')
          .executeTakeFirstOrThrow();
        assert.equal(bumped.session, 2 ** 40 + 1);
      } finally {
        await store.close();
      }
    });

    test('the query hook gets every query with its duration', async () => {
      const seen: Array<{ ms: number; sql: string }> = [];
      const store = openStore({ ...(await fresh()), onQuery: (ms, sql) => seen.push({ ms, sql }) });
      try {
        await migrate(store.db);
        seen.length = 0;
        await store.db.selectFrom('settings').selectAll().where('key', '=', 'x').execute();
        await assert.rejects(
          store.db
            .selectFrom('no_such_table' as 'settings')
            .selectAll()
            .execute(),
        );
        assert.equal(seen.length, 2, 'failed queries are timed too');
        assert.match(seen[0].sql, /^select \* from "settings" where "key" = (\?|\$1)$/);
        assert.ok(seen.every((q) => typeof q.ms === 'number' && q.ms >= 0));
      } finally {
        await store.close();
      }
    });

    test('history: batched inserts are read back in order, and the reads use their indexes', async () => {
      const where = await fresh();
      const store = openStore(where);
      await migrate(store.db);
      await store.close();
      // A Kysely of its own that records the compiled queries, so that the service's very queries can be explained.
      const queries: CompiledQuery[] = [];
      const log = (e: { query: CompiledQuery }) => void queries.push(e.query);
      const db: Db = where.databaseUrl
        ? new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: where.databaseUrl, max: 2 }) }), log })
        : new Kysely<Database>({ dialect: new SqliteDialect({ database: new SQLite(join(where.dataDir, 'hearth.sqlite')) }), log });
      const history = new HistoryService({ db, log: createLogger('silent'), flushMs: 60_000, maxBuffered: 1_000_000 });
      try {
        const t0 = Date.UTC(2024, 0, 1);
        // 200 series of 100 points: enough rows for PostgreSQL's planner to prefer the index
        for (let d = 0; d < 50; d++) {
          for (const prop of ['temperature', 'humidity', 'on', 'mode']) {
            for (let i = 0; i < 100; i++) {
              const v = prop === 'on' ? i % 2 === 0 : prop === 'mode' ? `m${i % 3}` : d + i / 10;
              history.record(`d${d}`, prop, v, t0 + i * 60_000);
            }
          }
          for (let i = 0; i < 20; i++) history.recordEvent(`d${d}`, 'beep', { i }, t0 + i * 1000);
        }
        await history.flush();
        assert.equal(
          Number(
            (
              await db
                .selectFrom('history')
                .select((eb) => eb.fn.countAll().as('n'))
                .executeTakeFirstOrThrow()
            ).n,
          ),
          20_000,
        );
        assert.ok(
          queries.some((q) => /^insert into "history"/.test(q.sql) && q.parameters.length === 400 * 6),
          'multi-row inserts of 400 rows',
        );
        if (engine === 'postgres') await db.executeQuery(CompiledQuery.raw('ANALYZE'));

        queries.length = 0;
        const points = await history.points('d7', 'temperature', t0 + 10 * 60_000, t0 + 19 * 60_000, 1000);
        assert.deepEqual(
          points.map((p) => p.value),
          Array.from({ length: 10 }, (_, i) => 7 + (10 + i) / 10),
        );
        assert.equal(points[0].ts, new Date(t0 + 10 * 60_000).toISOString());
        const modes = await history.points('d7', 'mode', t0, t0 + 2 * 60_000, 1000);
        assert.deepEqual(
          modes.map((p) => p.value),
          ['m0', 'm1', 'm2'],
        );
        const buckets = await history.buckets('d3', 'humidity', t0, t0 + 100 * 60_000, 10 * 60_000);
        assert.equal(buckets.length, 10);
        assert.deepEqual(buckets[0], { ts: new Date(t0).toISOString(), min: 3, max: 3.9, avg: 3.45, count: 10 });
        const events = await history.deviceEvents('d9', t0, t0 + 5_000, 100);
        assert.deepEqual(
          events.map((e) => e.params.i),
          [5, 4, 3, 2, 1, 0],
        );

        const reads = queries.filter((q) => /^select/.test(q.sql));
        assert.equal(reads.length, 4);
        for (const q of reads) {
          // SQLite keeps raw points in their key (WITHOUT ROWID, migration 0016): that is the index.
          // PostgreSQL partitions raw points by day (migration 0020): each partition has its own copy of history_point.
          const index = /from "device_events"/.test(q.sql)
            ? 'device_events_device_ts'
            : engine === 'postgres'
              ? /history_\d{8}_device_id_property_ts_msg_id_idx/
              : 'PRIMARY KEY';
          const plan = await db.executeQuery<Record<string, string>>(
            CompiledQuery.raw(`${engine === 'postgres' ? 'EXPLAIN' : 'EXPLAIN QUERY PLAN'} ${q.sql}`, [...q.parameters]),
          );
          const text = plan.rows.map((r) => r['QUERY PLAN'] ?? r.detail).join('\n');
          assert.ok(typeof index === 'string' ? text.includes(index) : index.test(text), `${q.sql}\nuses ${index}:\n${text}`);
        }
      } finally {
        await db.destroy();
      }
    });
  });
}

describe('store on postgres: several nodes starting at once', () => {
  test('concurrent migrate() on one database: each migration runs once, every caller succeeds', async () => {
    const databaseUrl = await server.createDatabase();
    const stores: Store[] = Array.from({ length: 4 }, () => openStore({ dataDir: '', databaseUrl }));
    try {
      const applied = await Promise.all(stores.map((s) => migrate(s.db)));
      assert.deepEqual(applied.flat().sort(), ALL);
      assert.deepEqual(await migrate(stores[0].db), []);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  test('two `hearth migrate` processes at once both exit 0; one applies, the other finds it done', async () => {
    const databaseUrl = await server.createDatabase();
    const bin = fileURLToPath(new URL('../../../bin/hearth.js', import.meta.url));
    const runMigrate = () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, 'migrate'], {
          env: { ...process.env, HEARTH_DATABASE_URL: databaseUrl, HEARTH_DATA_DIR: tempDir() },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
        child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
        child.once('exit', (code) => resolve({ code, out }));
      });
    const results = await Promise.all([runMigrate(), runMigrate()]);
    for (const r of results) assert.equal(r.code, 0, r.out);
    const outs = results.map((r) => r.out).sort();
    assert.deepEqual(outs, [`applied: ${ALL.join(', ')}\n`, 'database is up to date\n']);
  });
});

describe('SQLite synchronous level (HEARTH_SQLITE_SYNCHRONOUS)', () => {
  test('normal by default, full when asked, for the store and the stream log alike; record errors tell a bad row from a failing store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hearth-sync-'));
    dirs.push(dir);
    const level = (raw: SQLite.Database) => raw.pragma('synchronous', { simple: true });
    const normal = openSqliteFile(dir, 'a.sqlite');
    const full = openSqliteFile(dir, 'b.sqlite', 'full');
    assert.equal(level(normal), 1, 'NORMAL');
    assert.equal(level(full), 2, 'FULL');
    assert.equal(normal.pragma('journal_mode', { simple: true }), 'wal');
    normal.close();
    full.close();
    for (const code of ['SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_CONSTRAINT_TRIGGER', '23505', '22P02', '54000'])
      assert.ok(isRecordError(Object.assign(new Error(), { code })), code);
    for (const code of ['SQLITE_BUSY', 'SQLITE_FULL', 'SQLITE_IOERR', '57P01', '08006', 'ECONNREFUSED'])
      assert.ok(!isRecordError(Object.assign(new Error(), { code })), code);
    assert.ok(isRecordError(new RangeError('Maximum call stack size exceeded')), 'a value that cannot be serialised');
  });
});
