/**
 * The fleet analytics benchmark (docs/benchmarks.md, section "Fleet analytics"): a product of
 * BENCH_FLEET_DEVICES devices (default 100000) with BENCH_FLEET_DAYS (30) days of hourly rollups of
 * one property, then `GET /api/v1/analytics/timeseries`'s read (HistoryService.fleetBuckets) over
 * the whole range in hourly buckets: from the fleet tier (what the route reads without groupBy), and
 * once from the devices' rows (what it read before the fleet tier, and still reads per group).
 *
 * The rows are generated in SQL, not ingested (72 million points through MQTT would take hours
 * here); the fleet tier is then summed from them as migration 0019 does, and checked against the
 * devices' rows bucket by bucket.
 *
 *   npm run bench:telemetry-fleet                    # BENCH_WRITE_DOCS=1 also writes its section
 *   BENCH_FLEET_DEVICES=10000 BENCH_FLEET_PG=0 npm run bench:telemetry-fleet   # BENCH_FLEET_SQLITE=0: PostgreSQL only
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { migrate, openPostgres, openSqlite, type Db } from '../src/core/store/db.ts';
import { HistoryService } from '../src/history/history-service.ts';
import { tierByName } from '../src/history/rollups.ts';
import { createLogger } from '../src/core/logger.ts';
import { startPostgres } from '../test/helpers/postgres.ts';

const DEVICES = Number(process.env.BENCH_FLEET_DEVICES ?? 100_000);
const DAYS = Number(process.env.BENCH_FLEET_DAYS ?? 30);
const PG = process.env.BENCH_FLEET_PG !== '0';
const SQLITE = process.env.BENCH_FLEET_SQLITE !== '0';
const WRITE_DOCS = process.env.BENCH_WRITE_DOCS === '1';
const HOURS = DAYS * 24;
const T0 = Date.UTC(2026, 9, 1);
const H = 3_600_000;
const RUNS = 5;

/** Series, the devices' hourly rows (generated in SQL, in key order) and the fleet tier summed from them. */
async function fill(db: Db, log: (s: string) => void): Promise<void> {
  const started = performance.now();
  const step = 5000;
  for (let from = 0; from < DEVICES; from += step) {
    const to = Math.min(DEVICES, from + step);
    await sql`INSERT INTO history_series (id, device_id, property, product_key)
      WITH RECURSIVE d(i) AS (SELECT ${sql.lit(from)} UNION ALL SELECT i + 1 FROM d WHERE i < ${sql.lit(to - 1)})
      SELECT i + 1, 'd_' || i, 'temperature', 'fleet' FROM d`.execute(db);
    await sql`INSERT INTO history_rollups (series, tier, bucket, state, count, sum, min, max, last, last_ts, dur)
      WITH RECURSIVE h(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM h WHERE j < ${sql.lit(HOURS - 1)})
      SELECT s.id, 1, ${sql.lit(T0)} + CAST(h.j AS BIGINT) * ${sql.lit(H)}, '', 60, 60 * (20 + (s.id % 10)), 15 + (s.id % 5), 25 + (h.j % 7), 21, ${sql.lit(T0)} + CAST(h.j AS BIGINT) * ${sql.lit(H)} + 3540000, 0
      FROM history_series s, h WHERE s.id > ${sql.lit(from)} AND s.id <= ${sql.lit(to)} ORDER BY s.id, h.j`.execute(db);
    if (to % 20_000 === 0 || to === DEVICES) log(`  ${to} devices, ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
  await sql`INSERT INTO fleet_rollups (product_key, property, tier, bucket, count, sum, min, max)
    SELECT s.product_key, s.property, r.tier, r.bucket, SUM(r.count), SUM(r.sum), MIN(r.min), MAX(r.max)
    FROM history_rollups r JOIN history_series s ON s.id = r.series WHERE r.state = ''
    GROUP BY s.product_key, s.property, r.tier, r.bucket`.execute(db);
}

type Row = { bucket: number; count: number; sum: number | null; min: number | null; max: number | null };

/** The fleet read over the whole range, hourly: median of RUNS runs from the fleet tier, one from the devices' rows. */
async function measure(db: Db): Promise<{ fleetMs: number; devicesMs: number; buckets: number }> {
  const history = new HistoryService({ db, log: createLogger('silent'), flushMs: 60_000 });
  const q = { product: 'fleet', property: 'temperature', from: T0, to: T0 + HOURS * H - 1, bucketMs: H, tier: tierByName('1h')! };
  const times: number[] = [];
  let fleet: Row[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    fleet = await history.fleetBuckets({ ...q, perDevice: false });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  // The devices' rows, summed per bucket as the route read them before the fleet tier.
  const t = performance.now();
  const rows = await db
    .selectFrom('history_rollups as r')
    .select([
      'r.bucket',
      (eb) => eb.fn.sum<number>('r.count').as('count'),
      (eb) => eb.fn.sum<number>('r.sum').as('sum'),
      (eb) => eb.fn.min('r.min').as('min'),
      (eb) => eb.fn.max('r.max').as('max'),
    ])
    .where('r.series', 'in', db.selectFrom('history_series').select('id').where('product_key', '=', 'fleet').where('property', '=', 'temperature'))
    .where('r.tier', '=', 1)
    .where('r.bucket', '>=', q.from)
    .where('r.bucket', '<=', q.to)
    .where('r.state', '=', '')
    .groupBy('r.bucket')
    .orderBy('r.bucket')
    .execute();
  const devicesMs = performance.now() - t;
  await history.stop();
  if (fleet.length !== HOURS || rows.length !== HOURS) throw new Error(`expected ${HOURS} buckets, got ${fleet.length} and ${rows.length}`);
  rows.forEach((r, i) => {
    const f = fleet[i];
    if (Number(r.count) !== f.count || Number(r.sum) !== f.sum || Number(r.min) !== f.min || Number(r.max) !== f.max)
      throw new Error(`bucket ${i}: the fleet tier ${JSON.stringify(f)} differs from the devices' rows ${JSON.stringify(r)}`);
  });
  return { fleetMs: times[Math.floor(RUNS / 2)], devicesMs, buckets: HOURS };
}

const results: string[] = [];
const log = (s: string) => console.log(s);

async function sqlite(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-fleet-bench-'));
  const { db, raw } = openSqlite({ dataDir: dir });
  try {
    await migrate(db);
    log(`SQLite: filling ${DEVICES} devices × ${DAYS} days of hourly rollups (${DEVICES * HOURS} rows)`);
    const t = performance.now();
    await fill(db, log);
    raw.pragma('wal_checkpoint(TRUNCATE)');
    const fillS = (performance.now() - t) / 1000;
    const m = await measure(db);
    log(
      `SQLite: ${m.buckets} hourly buckets: ${m.fleetMs.toFixed(1)} ms from the fleet tier (median of ${RUNS}), ${m.devicesMs.toFixed(0)} ms from the devices' rows (filled in ${fillS.toFixed(0)} s)`,
    );
    results.push(`| SQLite | ${DEVICES} × ${DAYS} d | ${m.buckets} | ${m.fleetMs.toFixed(1)} ms | ${(m.devicesMs / 1000).toFixed(1)} s |`);
  } finally {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgres(): Promise<void> {
  let server: Awaited<ReturnType<typeof startPostgres>>;
  try {
    server = await startPostgres();
  } catch (err) {
    log(`PostgreSQL: skipped (${(err as Error).message.split('\n')[0]})`);
    return;
  }
  // Filling and the devices' rows' read take minutes: no statement timeout.
  const { db } = openPostgres({ url: await server.createDatabase(), statementTimeoutMs: 0 });
  try {
    await migrate(db);
    log(`PostgreSQL: filling ${DEVICES} devices × ${DAYS} days of hourly rollups (${DEVICES * HOURS} rows)`);
    const t = performance.now();
    await fill(db, log);
    await sql`ANALYZE`.execute(db);
    const fillS = (performance.now() - t) / 1000;
    const m = await measure(db);
    log(
      `PostgreSQL: ${m.buckets} hourly buckets: ${m.fleetMs.toFixed(1)} ms from the fleet tier (median of ${RUNS}), ${m.devicesMs.toFixed(0)} ms from the devices' rows (filled in ${fillS.toFixed(0)} s)`,
    );
    results.push(`| PostgreSQL | ${DEVICES} × ${DAYS} d | ${m.buckets} | ${m.fleetMs.toFixed(1)} ms | ${(m.devicesMs / 1000).toFixed(1)} s |`);
  } finally {
    await db.destroy();
    await server.stop();
  }
}

if (SQLITE) await sqlite();
if (PG) await postgres();

if (WRITE_DOCS) {
  const file = new URL('../docs/benchmarks.md', import.meta.url);
  const section = `<!-- telemetry-fleet:begin -->
### Fleet analytics

\`npm run bench:telemetry-fleet\` (bench/telemetry-fleet.ts; \`BENCH_WRITE_DOCS=1\` writes this section). A product of
${DEVICES} devices with ${DAYS} days of hourly rollups of one numeric property (${DEVICES * HOURS} device rows,
generated in SQL rather than ingested), then the read behind \`GET /api/v1/analytics/timeseries?bucket=1h\`
over the whole range (HistoryService.fleetBuckets, in process): from the fleet tier (one row per
product, property, tier and bucket, kept up to date by the ingest in the points' transaction; what
an answer without \`groupBy\` reads), median of ${RUNS} runs; and once from the devices' rows (what that
answer read before the fleet tier, and what an answer with \`groupBy\` still reads). The bench checks
that both give the same count, sum, min and max in every bucket. On this shared 2-core machine.

| Store | Devices × range | Buckets | From the fleet tier | From the devices' rows |
|---|---|---|---|---|
${results.join('\n')}

The fleet tier's answer does not grow with the devices (a row per bucket); with \`groupBy\` (home,
device, tag, firmware) the answer reads the devices' rows and grows with devices × range.
<!-- telemetry-fleet:end -->
`;
  const doc = readFileSync(file, 'utf8');
  const next = /<!-- telemetry-fleet:begin -->[\s\S]*<!-- telemetry-fleet:end -->\n?/.test(doc)
    ? doc.replace(/<!-- telemetry-fleet:begin -->[\s\S]*<!-- telemetry-fleet:end -->\n?/, section)
    : doc.replace('<!-- telemetry:end -->\n', `<!-- telemetry:end -->\n\n${section}`);
  writeFileSync(file, next);
  log('wrote the fleet analytics section of docs/benchmarks.md');
}
