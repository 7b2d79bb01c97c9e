import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KyselyPlugin } from 'kysely';
import { openStore, migrate, type Store } from '../src/core/store/db.ts';
import { MemoryBus } from '../src/core/bus/memory-bus.ts';
import type { Bus } from '../src/core/bus/bus.ts';
import type { TimerChange } from '../src/core/bus/events.ts';
import { ManualClock } from '../src/core/clock.ts';
import { ShardManager } from '../src/core/cluster/shards.ts';
import { createLogger } from '../src/core/logger.ts';
import { isHearthError } from '../src/core/errors.ts';
import { TimerService, type SkippedFiring, type TimerFiring, type TimerSpec } from '../src/timers/timer-service.ts';
import { startPlatform, storeEnv, TEST_STORE } from './helpers/platform.ts';

/**
 * The timer service over a real store (SQLite, or PostgreSQL with HEARTH_TEST_STORE=postgres)
 * and a manual clock: firing on time, restarts within and beyond the grace, two nodes that
 * both believe they own every shard, and changes made on another node.
 */
const MIN = 60_000;
const HOUR = 60 * MIN;
const SHARDS = 8;
const dirs: string[] = [];
const stores: Store[] = [];
after(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh, migrated database; `connect()` opens another connection (pool) to it, as a second node would. */
async function database(): Promise<{ connect(): Store }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-timers-'));
  dirs.push(dataDir);
  const url = (await storeEnv(dataDir)).HEARTH_DATABASE_URL;
  const connect = () => {
    const s = openStore({ dataDir, databaseUrl: url });
    stores.push(s);
    return s;
  };
  await migrate(connect().db);
  return { connect };
}

interface Node {
  timers: TimerService;
  store: Store;
  fired: TimerFiring[];
  skipped: SkippedFiring[];
  logs: any[];
  stop(): Promise<void>;
}

/**
 * A node: its own store connection, a shard manager (embedded: it owns every shard, unless
 * `worker` is false) and a timer service whose firings of owner "test" are collected.
 */
async function node(
  db: { connect(): Store },
  clock: ManualClock,
  opts: { bus?: Bus; pollMs?: number; worker?: boolean; onFire?: (f: TimerFiring) => void; latencySeed?: number } = {},
): Promise<Node> {
  const store = db.connect();
  const timersDb = opts.latencySeed === undefined ? store.db : store.db.withPlugin(latency(opts.latencySeed));
  const logs: any[] = [];
  const log = createLogger('info', {}, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const bus = opts.bus ?? new MemoryBus(log);
  const shards = new ShardManager({ db: store.db, log, nodeId: 'embedded', roles: opts.worker === false ? ['api'] : ['worker'], shards: SHARDS, single: true });
  const timers = new TimerService({ db: timersDb, bus, log, clock, shards, shardCount: SHARDS, pollMs: opts.pollMs });
  const fired: TimerFiring[] = [];
  const skipped: SkippedFiring[] = [];
  timers.onFire(
    'test',
    (f) => {
      fired.push(f);
      opts.onFire?.(f);
    },
    (s) => void skipped.push(s),
  );
  shards.on(timers);
  timers.start();
  await shards.start();
  return {
    timers,
    store,
    fired,
    skipped,
    logs,
    async stop() {
      await shards.stop();
      await timers.stop();
    },
  };
}

/**
 * Answers each query after a few turns of the event loop (0 to 3, pseudo-random), as a database
 * across a network would: two nodes' reads and claims then interleave even on SQLite, whose
 * driver otherwise answers before the other node gets a turn.
 */
function latency(seed: number): KyselyPlugin {
  let s = seed;
  return {
    transformQuery: (args) => args.node,
    async transformResult(args) {
      s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
      for (let i = s % 4; i > 0; i--) await new Promise((r) => setImmediate(r));
      return args.result;
    },
  };
}

const daily = (hhmm: string, timezone = 'Europe/Berlin'): TimerSpec => ({
  kind: 'cron',
  cron: `${Number(hhmm.slice(3))} ${Number(hhmm.slice(0, 2))} * * *`,
  timezone,
});
const iso = (ms: number) => new Date(ms).toISOString();

async function nextAtOf(store: Store, key: string): Promise<number | null | undefined> {
  const row = await store.db.selectFrom('timers').select('next_at').where('key', '=', key).executeTakeFirst();
  return row === undefined ? undefined : row.next_at === null ? null : Number(row.next_at);
}

describe(`timer service on ${TEST_STORE}`, () => {
  test('fires at the due time with its payload, then at the next occurrence (across the spring-forward day)', async () => {
    const clock = new ManualClock(Date.parse('2026-03-27T12:00:00Z'));
    const n = await node(await database(), clock);
    try {
      const { nextAt } = await n.timers.upsert({ key: 'a:1:wake', owner: 'test', shardKey: 'home-1', spec: daily('07:00'), payload: { automation: 'a1' } });
      assert.equal(iso(nextAt!), '2026-03-28T06:00:00.000Z');
      await n.timers.settled();
      assert.equal(n.timers.pending, 1);

      await clock.set(nextAt! - 1);
      await n.timers.settled();
      assert.equal(n.fired.length, 0, 'not before its time');
      await clock.set(nextAt!);
      await n.timers.settled();
      assert.equal(n.fired.length, 1);
      assert.deepEqual(n.fired[0], { key: 'a:1:wake', owner: 'test', payload: { automation: 'a1' }, scheduledAt: nextAt, firedAt: nextAt, lateMs: 0 });
      // 07:00 CEST on the day the clocks go forward: 23 hours later
      assert.equal(iso((await nextAtOf(n.store, 'a:1:wake'))!), '2026-03-29T05:00:00.000Z');

      await clock.set(Date.parse('2026-03-29T05:00:00Z'));
      await n.timers.settled();
      assert.deepEqual(
        n.fired.map((f) => iso(f.scheduledAt)),
        ['2026-03-28T06:00:00.000Z', '2026-03-29T05:00:00.000Z'],
      );
      assert.ok(n.fired.every((f) => f.lateMs === 0));
      assert.equal(n.skipped.length, 0);
    } finally {
      await n.stop();
    }
  });

  test('02:30 on the fall-back day fires once; on the spring-forward day once, at 03:00', async () => {
    const clock = new ManualClock(Date.parse('2026-10-24T12:00:00Z'));
    // months pass in one step below: a re-scan every 30 s of them would take a while
    const n = await node(await database(), clock, { pollMs: 24 * HOUR });
    try {
      await n.timers.upsert({ key: 'dst', owner: 'test', shardKey: 'home-1', spec: daily('02:30') });
      // walk through the night in 10-minute steps, as time passes
      for (let t = Date.parse('2026-10-24T22:00:00Z'); t <= Date.parse('2026-10-25T04:00:00Z'); t += 10 * MIN) {
        await clock.set(t);
        await n.timers.settled();
      }
      assert.deepEqual(
        n.fired.map((f) => iso(f.scheduledAt)),
        ['2026-10-25T00:30:00.000Z'],
      );
      await clock.set(Date.parse('2027-03-27T12:00:00Z'));
      await n.timers.settled();
      n.fired.length = 0;
      n.skipped.length = 0;
      // re-saved with a changed spec (computed from now), then the spring-forward night
      await n.timers.upsert({ key: 'dst', owner: 'test', shardKey: 'home-1', spec: { kind: 'cron', cron: '30 2 * * *', timezone: 'Europe/Berlin' } });
      for (let t = Date.parse('2027-03-27T22:00:00Z'); t <= Date.parse('2027-03-28T04:00:00Z'); t += 10 * MIN) {
        await clock.set(t);
        await n.timers.settled();
      }
      assert.deepEqual(
        n.fired.map((f) => iso(f.scheduledAt)),
        ['2027-03-28T01:00:00.000Z'],
      );
    } finally {
      await n.stop();
    }
  });

  test('a one-off fires once and is done; cancel and cancelPrefix remove timers (exact, case-sensitive prefix)', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T00:00:00Z'));
    const n = await node(await database(), clock);
    try {
      const at = clock.now() + 10 * MIN;
      const keys = ['auto:1:a', 'auto:1:b', 'auto:10:a', 'AUTO:1:c', 'auto_1:d', 'single'];
      for (const key of keys) await n.timers.upsert({ key, owner: 'test', shardKey: key, spec: { kind: 'at', at } });
      await n.timers.cancelPrefix('auto:1:');
      await n.timers.cancel('single');
      await n.timers.settled();
      assert.equal(await nextAtOf(n.store, 'auto:1:a'), undefined);
      assert.equal(await nextAtOf(n.store, 'single'), undefined);
      await clock.advance(10 * MIN);
      await n.timers.settled();
      assert.deepEqual(n.fired.map((f) => f.key).sort(), ['AUTO:1:c', 'auto:10:a', 'auto_1:d']);
      assert.equal(await nextAtOf(n.store, 'auto:10:a'), null, 'a fired one-off has no next time');
      await clock.advance(HOUR);
      await n.timers.settled();
      assert.equal(n.fired.length, 3);
      assert.equal(n.timers.pending, 0);
      await assert.rejects(n.timers.cancelPrefix(''), /prefix/);
    } finally {
      await n.stop();
    }
  });

  test('upsert: the same spec keeps the due time (new payload used), a new spec starts over; a bad spec is refused', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T06:30:00Z'));
    const n = await node(await database(), clock);
    try {
      const first = await n.timers.upsert({ key: 'k', owner: 'test', shardKey: 'h', spec: { kind: 'cron', cron: '0 * * * *', timezone: 'UTC' }, payload: 1 });
      assert.equal(iso(first.nextAt!), '2026-05-01T07:00:00.000Z');
      // the due time passes while the node is busy elsewhere… then the owner re-saves it: still due, not pushed to 08:00
      for (let s = 0; s < SHARDS; s++) await n.timers.release(s);
      await clock.set(Date.parse('2026-05-01T07:01:00Z'));
      const again = await n.timers.upsert({ key: 'k', owner: 'test', shardKey: 'h', spec: { timezone: 'UTC', cron: '0 * * * *', kind: 'cron' }, payload: 2 });
      assert.equal(again.nextAt, first.nextAt);
      for (let s = 0; s < SHARDS; s++) await n.timers.acquire(s);
      await n.timers.settled();
      assert.deepEqual(
        n.fired.map((f) => [iso(f.scheduledAt), f.lateMs, f.payload]),
        [['2026-05-01T07:00:00.000Z', MIN, 2]],
      );
      const changed = await n.timers.upsert({
        key: 'k',
        owner: 'test',
        shardKey: 'h',
        spec: { kind: 'cron', cron: '30 * * * *', timezone: 'UTC' },
        payload: 3,
      });
      assert.equal(iso(changed.nextAt!), '2026-05-01T07:30:00.000Z');

      for (const spec of [
        { kind: 'cron', cron: '* * *', timezone: 'UTC' },
        { kind: 'cron', cron: '0 0 31 2 *', timezone: 'UTC' },
        { kind: 'at', at: -5 },
      ]) {
        await assert.rejects(
          n.timers.upsert({ key: 'bad', owner: 'test', shardKey: 'h', spec: spec as TimerSpec }),
          (err) => isHearthError(err) && err.code === 'E_VALIDATION' && /timer bad: /.test(err.message),
        );
      }
      assert.equal(await nextAtOf(n.store, 'bad'), undefined);
      // a one-off just past (within the grace) fires at once; one long past never
      assert.equal(
        (await n.timers.upsert({ key: 'late', owner: 'test', shardKey: 'h', spec: { kind: 'at', at: clock.now() - 1000 } })).nextAt,
        clock.now() - 1000,
      );
      assert.equal((await n.timers.upsert({ key: 'old', owner: 'test', shardKey: 'h', spec: { kind: 'at', at: clock.now() - HOUR } })).nextAt, null);
      await n.timers.settled();
      assert.deepEqual(
        n.fired.slice(1).map((f) => [f.key, f.lateMs]),
        [['late', 1000]],
      );
    } finally {
      await n.stop();
    }
  });

  test('a restart within the grace fires once, late; then on time again', async () => {
    const db = await database();
    const clock = new ManualClock(Date.parse('2026-05-01T06:00:00Z'));
    const a = await node(db, clock);
    await a.timers.upsert({ key: 'r', owner: 'test', shardKey: 'h', spec: daily('09:00'), graceMs: 5 * MIN });
    await a.stop();
    await clock.set(Date.parse('2026-05-01T07:03:00Z')); // down over 09:00 CEST (07:00Z)
    await a.timers.settled();
    assert.equal(a.fired.length, 0, 'a stopped service fires nothing');

    const b = await node(db, clock);
    try {
      await b.timers.settled();
      assert.deepEqual(
        b.fired.map((f) => [iso(f.scheduledAt), f.lateMs]),
        [['2026-05-01T07:00:00.000Z', 3 * MIN]],
      );
      assert.equal(b.skipped.length, 0);
      assert.equal(iso((await nextAtOf(b.store, 'r'))!), '2026-05-02T07:00:00.000Z');
      await clock.set(Date.parse('2026-05-02T07:00:00Z'));
      await b.timers.settled();
      assert.equal(b.fired.length, 2);
      assert.equal(b.fired[1].lateMs, 0);
    } finally {
      await b.stop();
    }
  });

  test('a restart beyond the grace reports the missed firing once and moves on; a later due time within the grace still runs', async () => {
    const db = await database();
    const clock = new ManualClock(Date.parse('2026-05-01T10:00:30Z'));
    const a = await node(db, clock);
    await a.timers.upsert({
      key: 'every10',
      owner: 'test',
      shardKey: 'h',
      spec: { kind: 'cron', cron: '*/10 * * * *', timezone: 'UTC' },
      graceMs: 5 * MIN,
      payload: 'p',
    });
    await a.timers.upsert({ key: 'hourly', owner: 'test', shardKey: 'h2', spec: { kind: 'cron', cron: '0 * * * *', timezone: 'UTC' }, graceMs: 5 * MIN });
    await a.stop();

    // Down from 10:00:30 to 11:07: every10 missed 10:10 … 11:00 (11:00 is 7 minutes ago, beyond the grace), hourly missed 11:00.
    await clock.set(Date.parse('2026-05-01T11:07:00Z'));
    const b = await node(db, clock);
    await b.timers.settled();
    assert.deepEqual(b.skipped.map((s) => [s.key, iso(s.scheduledAt), s.reason, s.payload]).sort(), [
      ['every10', '2026-05-01T10:10:00.000Z', 'missed', 'p'],
      ['hourly', '2026-05-01T11:00:00.000Z', 'missed', null],
    ]);
    assert.equal(b.fired.length, 0);
    assert.equal(iso((await nextAtOf(b.store, 'every10'))!), '2026-05-01T11:10:00.000Z');
    assert.equal(iso((await nextAtOf(b.store, 'hourly'))!), '2026-05-01T12:00:00.000Z');
    assert.ok(b.logs.some((l) => l.msg.includes('skipped') && l.key === 'every10'));
    await clock.set(Date.parse('2026-05-01T11:10:00Z'));
    await b.timers.settled();
    assert.deepEqual(
      b.fired.map((f) => [f.key, iso(f.scheduledAt), f.lateMs]),
      [['every10', '2026-05-01T11:10:00.000Z', 0]],
    );
    await b.stop();

    // Down from 11:10 to 12:03: every10 missed 11:20 … 12:00; 12:00 is within the grace and runs, late.
    await clock.set(Date.parse('2026-05-01T12:03:00Z'));
    const c = await node(db, clock);
    try {
      await c.timers.settled();
      assert.deepEqual(
        c.skipped.map((s) => [s.key, iso(s.scheduledAt)]),
        [['every10', '2026-05-01T11:20:00.000Z']],
      );
      assert.deepEqual(c.fired.map((f) => [f.key, iso(f.scheduledAt), f.lateMs]).sort(), [
        ['every10', '2026-05-01T12:00:00.000Z', 3 * MIN],
        ['hourly', '2026-05-01T12:00:00.000Z', 3 * MIN],
      ]);
      assert.equal(iso((await nextAtOf(c.store, 'every10'))!), '2026-05-01T12:10:00.000Z');
    } finally {
      await c.stop();
    }
  });

  test('two nodes that both own every shard fire each of 200 due timers exactly once, over several rounds', async () => {
    const db = await database();
    const clock = new ManualClock(Date.parse('2026-05-01T10:00:30Z'));
    const bus = new MemoryBus(createLogger('silent'));
    const counts = new Map<string, number>();
    const count = (f: TimerFiring) => counts.set(`${f.key}@${f.scheduledAt}`, (counts.get(`${f.key}@${f.scheduledAt}`) ?? 0) + 1);
    const a = await node(db, clock, { bus, onFire: count, latencySeed: 1 });
    const b = await node(db, clock, { bus, onFire: count, latencySeed: 2 });
    try {
      const start = clock.now();
      for (let i = 0; i < 200; i++) {
        const spec: TimerSpec = i % 2 === 0 ? { kind: 'cron', cron: '* * * * *', timezone: 'UTC' } : { kind: 'at', at: start + (1 + (i % 5)) * MIN - 30_000 };
        await (i % 3 === 0 ? b : a).timers.upsert({ key: `t${i}`, owner: 'test', shardKey: `home-${i}`, spec });
      }
      await Promise.all([a.timers.settled(), b.timers.settled()]);
      assert.equal(a.timers.pending, 200);
      assert.equal(b.timers.pending, 200);
      for (let m = 1; m <= 6; m++) {
        await clock.set(start - 30_000 + m * MIN);
        await Promise.all([a.timers.settled(), b.timers.settled()]);
      }
      // 100 crons × 6 minutes + 100 one-offs
      assert.equal(counts.size, 700);
      const twice = [...counts].filter(([, c]) => c !== 1);
      assert.deepEqual(twice, [], 'fired more than once');
      assert.equal(a.fired.length + b.fired.length, 700);
      assert.ok(a.fired.every((f) => f.lateMs === 0) && b.fired.every((f) => f.lateMs === 0));
      // both took part (and so competed for the same rows)
      assert.ok(a.fired.length > 50 && b.fired.length > 50, `a fired ${a.fired.length}, b ${b.fired.length}`);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('a handler that throws is logged and stops neither the other timers nor its own next firing', async () => {
    const clock = new ManualClock(Date.parse('2026-05-01T10:00:30Z'));
    const n = await node(await database(), clock);
    try {
      let calls = 0;
      n.timers.onFire('broken', () => {
        calls++;
        throw new Error('boom');
      });
      let asyncCalls = 0;
      n.timers.onFire('broken-async', async () => {
        asyncCalls++;
        throw new Error('async boom');
      });
      await n.timers.upsert({ key: 'bad', owner: 'broken', shardKey: 'h', spec: { kind: 'cron', cron: '* * * * *', timezone: 'UTC' } });
      await n.timers.upsert({ key: 'bad2', owner: 'broken-async', shardKey: 'h', spec: { kind: 'cron', cron: '* * * * *', timezone: 'UTC' } });
      await n.timers.upsert({ key: 'good', owner: 'test', shardKey: 'h', spec: { kind: 'cron', cron: '* * * * *', timezone: 'UTC' } });
      await n.timers.upsert({ key: 'orphan', owner: 'nobody', shardKey: 'h', spec: { kind: 'cron', cron: '* * * * *', timezone: 'UTC' } });
      for (let m = 1; m <= 3; m++) {
        await clock.advance(MIN);
        await n.timers.settled();
      }
      assert.equal(calls, 3);
      assert.equal(asyncCalls, 3);
      assert.equal(n.fired.length, 3);
      assert.equal(n.logs.filter((l) => l.msg === 'timer handler failed' && l.key === 'bad' && l.err?.message === 'boom').length, 3);
      assert.equal(n.logs.filter((l) => l.msg === 'timer handler failed' && l.key === 'bad2').length, 3);
      assert.ok(n.logs.some((l) => l.key === 'orphan' && /no handler/.test(l.msg)));
    } finally {
      await n.stop();
    }
  });

  test('a timer saved on another node reaches the shard owner over the bus at once; a cancel there stops it', async () => {
    const db = await database();
    const clock = new ManualClock(Date.parse('2026-05-01T10:00:00Z'));
    const bus = new MemoryBus(createLogger('silent'));
    // a poll far beyond the test: only the bus can tell the worker
    const worker = await node(db, clock, { bus, pollMs: 24 * HOUR });
    const api = await node(db, clock, { bus, pollMs: 24 * HOUR, worker: false });
    try {
      await api.timers.upsert({ key: 'x', owner: 'test', shardKey: 'h', spec: { kind: 'at', at: clock.now() + MIN } });
      await api.timers.upsert({ key: 'y', owner: 'test', shardKey: 'h', spec: { kind: 'at', at: clock.now() + MIN } });
      await bus.flush();
      await worker.timers.settled();
      assert.equal(worker.timers.pending, 2);
      assert.equal(api.timers.pending, 0, 'a node without shards runs nothing');
      await api.timers.cancel('y');
      await bus.flush();
      await worker.timers.settled();
      await clock.advance(MIN);
      await worker.timers.settled();
      assert.deepEqual(
        worker.fired.map((f) => [f.key, f.lateMs]),
        [['x', 0]],
      );
      assert.equal(api.fired.length, 0);
    } finally {
      await api.stop();
      await worker.stop();
    }
  });

  test('a notice that arrives after a newer one (an older version) does not move the due time back', async () => {
    const db = await database();
    const clock = new ManualClock(Date.parse('2026-05-01T10:00:00Z'));
    const bus: Bus = new MemoryBus(createLogger('silent'));
    const worker = await node(db, clock, { bus, pollMs: 24 * HOUR });
    const api = await node(db, clock, { bus, pollMs: 24 * HOUR, worker: false });
    const notices: TimerChange[] = [];
    bus.subscribe('cluster.timers', (m) => void notices.push(m.data));
    try {
      await api.timers.upsert({ key: 'x', owner: 'test', shardKey: 'h', spec: { kind: 'at', at: clock.now() + 2 * MIN } });
      await bus.flush();
      await api.timers.upsert({ key: 'x', owner: 'test', shardKey: 'h', spec: { kind: 'at', at: clock.now() + MIN } });
      await bus.flush();
      assert.equal(notices.length, 2);
      bus.publish('cluster.timers', notices[0]); // the first notice again, late
      await bus.flush();
      await worker.timers.settled();
      assert.equal(worker.timers.pending, 1);
      await clock.advance(MIN);
      await worker.timers.settled();
      assert.deepEqual(
        worker.fired.map((f) => [f.key, f.lateMs]),
        [['x', 0]],
        'on time, at the newer due time',
      );
    } finally {
      await api.stop();
      await worker.stop();
    }
  });

  test('without a change notice, the periodic re-scan finds the timer (late, within the grace)', async () => {
    const db = await database();
    const clock = new ManualClock(Date.parse('2026-05-01T10:00:00Z'));
    // separate buses: the notice is lost
    const worker = await node(db, clock, { pollMs: 30_000 });
    const api = await node(db, clock, { worker: false });
    try {
      await clock.advance(1000);
      await api.timers.upsert({ key: 'z', owner: 'test', shardKey: 'h', spec: { kind: 'at', at: clock.now() + 10_000 } });
      await clock.advance(10_000);
      await worker.timers.settled();
      assert.equal(worker.fired.length, 0, 'not known yet');
      await clock.advance(19_000); // the re-scan at 30 s
      await worker.timers.settled();
      assert.deepEqual(
        worker.fired.map((f) => [f.key, f.lateMs]),
        [['z', 19_000]],
      );
    } finally {
      await api.stop();
      await worker.stop();
    }
  });

  test('static next previews due times', () => {
    assert.deepEqual(TimerService.next({ kind: 'cron', cron: '0 12 * * *', timezone: 'UTC' }, Date.parse('2026-01-01T00:00:00Z'), 2).map(iso), [
      '2026-01-01T12:00:00.000Z',
      '2026-01-02T12:00:00.000Z',
    ]);
  });

  test('wired into the platform: the node owns the shards, fires on its clock, and stops cleanly', async () => {
    const clock = new ManualClock(Date.parse('2026-06-01T08:00:00Z'));
    const p = await startPlatform({ clock });
    try {
      const { timers } = p.hearth.services;
      const fired: TimerFiring[] = [];
      const undo = timers.onFire('platform-test', (f) => void fired.push(f));
      const { nextAt } = await timers.upsert({
        key: 'p:1',
        owner: 'platform-test',
        shardKey: 'home-x',
        spec: { kind: 'sun', event: 'sunset', offsetMs: -30 * MIN, latitude: 52.52, longitude: 13.405, timezone: 'Europe/Berlin' },
      });
      assert.equal(
        new Date(nextAt!).toLocaleString('sv', { timeZone: 'Europe/Berlin' }).slice(0, 16),
        '2026-06-01 20:49',
        'sunset 21:19 CEST, half an hour before',
      );
      await timers.settled();
      await clock.set(nextAt!);
      await timers.settled();
      assert.deepEqual(
        fired.map((f) => [f.key, f.scheduledAt, f.lateMs]),
        [['p:1', nextAt, 0]],
      );
      undo();
    } finally {
      await p.stop(true);
    }
  });
});
