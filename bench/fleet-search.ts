/**
 * `BENCH_MODE=fleet npm run bench`: fleet search (docs/fleet.md) over a large fleet, through HTTP
 * against a Hearth running on each store. The fleet is written straight into the store (a million
 * provisioning calls would measure provisioning): devices of four products with firmware versions,
 * presence (10 % online, last seen over the past 30 days), two tags each (site, batch) and a
 * numeric attribute (floor, 0 to 19).
 * Prints p50/p95/p99 per query and store, and appends them to docs/benchmarks.md unless
 * BENCH_WRITE_DOCS=0.
 *
 *   BENCH_FLEET_DEVICES   devices (1000000; BENCH_QUICK=1: 20000)
 *   BENCH_FLEET_RUNS      timed requests per query (60; quick: 15), after 5 warm-up requests
 *   BENCH_FLEET_STORES    sqlite,postgres (default both)
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { Hearth } from '../src/app.ts';
import { loadConfig } from '../src/core/config/config-schema.ts';
import { createLogger } from '../src/core/logger.ts';
import { firmwareKey } from '../src/devices/device-tags.ts';
import { parseQuery } from '../src/devices/fleet-query.ts';
import type { SortField } from '../src/devices/device-search.ts';
import type { Database } from '../src/core/store/schema.ts';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.ts';
import { BENCH_ADMIN, ROOT } from './procs.ts';
import { fmt, percentiles, type Percentiles } from './stats.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const N = Number(process.env.BENCH_FLEET_DEVICES ?? (QUICK ? 20_000 : 1_000_000));
const RUNS = Number(process.env.BENCH_FLEET_RUNS ?? (QUICK ? 15 : 60));
const STORES = (process.env.BENCH_FLEET_STORES ?? 'sqlite,postgres').split(',') as Array<'sqlite' | 'postgres'>;
const WRITE_DOCS = process.env.BENCH_WRITE_DOCS ? process.env.BENCH_WRITE_DOCS === '1' : !QUICK;

const PRODUCTS = ['light', 'light', 'light', 'light', 'plug', 'plug', 'plug', 'temp-humidity-sensor', 'temp-humidity-sensor', 'hub'];
const FIRMWARE = ['1.0', '1.1', '1.2', '1.10', '2.0'];
const SITES = ['berlin', 'paris', 'madrid', 'rome', 'oslo'];

/** The queries timed, as the query string of GET /api/v1/devices. */
const ISSUE = encodeURIComponent('product:light AND online:false AND firmware<1.2 AND tag.site:berlin AND lastSeen<-7d');
/** A bounded total (`totalLimit`, docs/fleet.md): what the console asks. */
const TOTAL_LIMIT = Number(process.env.BENCH_FLEET_TOTAL_LIMIT ?? 1000);
const BOUND = `totalLimit=${TOTAL_LIMIT}`;
const UPTO = `its total up to ${TOTAL_LIMIT.toLocaleString('en-US')}`;
/** `exact`: the request counts every match (the default `total`), which the goal of 100 ms does not cover at this size. */
const QUERIES: Array<{ name: string; qs: string; exact?: boolean }> = [
  { name: "the issue's query, a page of 50", qs: `q=${ISSUE}&limit=50&total=false` },
  { name: "the issue's query, with its total", qs: `q=${ISSUE}&limit=50`, exact: true },
  { name: `the issue's query, with ${UPTO}`, qs: `q=${ISSUE}&limit=50&${BOUND}` },
  { name: 'one product, a page', qs: `q=${encodeURIComponent('product:plug')}&limit=50&total=false` },
  { name: `one product, with ${UPTO}`, qs: `q=${encodeURIComponent('product:plug')}&limit=50&${BOUND}` },
  { name: 'a tag and offline, with its total', qs: `q=${encodeURIComponent('tag.batch:b42 AND online:false')}&limit=50`, exact: true },
  { name: `a tag and offline, with ${UPTO}`, qs: `q=${encodeURIComponent('tag.batch:b42 AND online:false')}&limit=50&${BOUND}` },
  { name: 'not seen for 25 days, a page', qs: `q=${encodeURIComponent('lastSeen<-25d')}&limit=50&total=false` },
  { name: 'old firmware, newest first, a page', qs: `q=${encodeURIComponent('firmware<1.1')}&sort=-createdAt&limit=50&total=false` },
  { name: 'count by firmware of one batch', qs: `q=${encodeURIComponent('tag.batch:b7')}&countBy=firmware&limit=10&total=false` },
  { name: 'a numeric attribute and offline, with its total', qs: `q=${encodeURIComponent('attr.floor>=19 AND online:false')}&limit=50`, exact: true },
  { name: `a numeric attribute and offline, with ${UPTO}`, qs: `q=${encodeURIComponent('attr.floor>=19 AND online:false')}&limit=50&${BOUND}` },
  { name: `not seen for 25 days, with ${UPTO}`, qs: `q=${encodeURIComponent('lastSeen<-25d')}&limit=50&${BOUND}` },
  { name: 'a page deep in the fleet (cursor)', qs: 'CURSOR' },
];

/** A small deterministic generator, so both stores hold the same fleet. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export async function fill(h: Hearth, n: number, store: 'sqlite' | 'postgres' = 'sqlite'): Promise<number> {
  const t0 = performance.now();
  const rand = rng(16);
  const now = Date.now();
  const base = now - 400 * 86_400_000;
  const db = h.db;
  const chunk = 500;
  for (let i = 0; i < n; i += chunk) {
    const devices: Array<Database['devices']> = [];
    const presence: Array<Database['presence']> = [];
    const tags: Array<Database['device_tags']> = [];
    const attributes: Array<Database['device_attributes']> = [];
    for (let j = i; j < Math.min(n, i + chunk); j++) {
      const id = `d_f${j.toString(36).padStart(8, '0')}`;
      const fw = FIRMWARE[Math.floor(rand() * FIRMWARE.length)];
      devices.push({
        id,
        product_key: PRODUCTS[j % PRODUCTS.length],
        name: `device ${j}`,
        parent_id: null,
        hwid: null,
        secret_hash: null,
        pairing_code: null,
        created_at: base + j * 10,
        firmware: fw,
        firmware_key: firmwareKey(fw),
        disabled_at: null,
        deleted_at: null,
        attributes: `{"floor":${j % 20}}`,
      });
      attributes.push({ device_id: id, key: 'floor', value: String(j % 20), num: j % 20 });
      const online = rand() < 0.1;
      presence.push({
        device_id: id,
        online: online ? 1 : 0,
        session: 1,
        reason: online ? 'connect' : 'disconnect',
        changed_at: now,
        last_seen: now - Math.floor(rand() * 30 * 86_400_000),
        node: 'bench',
        listening: 0,
      });
      tags.push(
        { device_id: id, key: 'site', value: SITES[Math.floor(rand() * SITES.length)] },
        { device_id: id, key: 'batch', value: `b${Math.floor(rand() * 100)}` },
      );
    }
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('devices').values(devices).execute();
      await trx.insertInto('presence').values(presence).execute();
      await trx.insertInto('device_tags').values(tags).execute();
      await trx.insertInto('device_attributes').values(attributes).execute();
    });
    if (i % 100_000 === 0 && i > 0) process.stdout.write(`  ${i.toLocaleString('en-US')} devices\n`);
  }
  // PostgreSQL: vacuumed as well, as autovacuum would have done after such a load (index-only scans need it).
  await sql`${sql.raw(store === 'postgres' ? 'vacuum analyze' : 'analyze')}`.execute(db);
  return (performance.now() - t0) / 1000;
}

/** The same queries through the search service alone (the store's share of the time). */
async function timeStore(h: Hearth): Promise<Percentiles[]> {
  const out: Percentiles[] = [];
  for (const q of QUERIES) {
    if (q.qs === 'CURSOR') {
      out.push(percentiles([]));
      continue;
    }
    const params = new URLSearchParams(q.qs);
    const input = {
      expr: parseQuery(params.get('q')!),
      sort: (params.get('sort')?.replace('-', '') ?? 'createdAt') as SortField,
      desc: params.get('sort')?.startsWith('-') ?? false,
      limit: Number(params.get('limit')),
      total: params.get('total') !== 'false',
      totalLimit: params.has('totalLimit') ? Number(params.get('totalLimit')) : undefined,
      countBy: params.get('countBy') ?? undefined,
    };
    for (let i = 0; i < 3; i++) await h.services.deviceSearch.search(input);
    const samples: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      await h.services.deviceSearch.search(input);
      samples.push(performance.now() - t);
    }
    out.push(percentiles(samples));
  }
  return out;
}

type Row = { name: string; p: Percentiles; total: number; capped: boolean };

async function timeQueries(url: string, signIn: () => Promise<string>): Promise<Row[]> {
  // A fresh access token for each query: counting on SQLite at this size outlasts one.
  let token = '';
  const get = async (qs: string) => {
    const t = performance.now();
    const res = await fetch(`${url}/api/v1/devices?${qs}`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.json()) as { total?: number; totalCapped?: boolean; nextCursor: string | null };
    if (res.status !== 200) throw new Error(`${qs}: ${res.status} ${JSON.stringify(body)}`);
    return { ms: performance.now() - t, body };
  };
  // A cursor half-way through the product:light pages (by id, so it is one we can make).
  let deep = `q=${encodeURIComponent('product:light')}&sort=id&limit=50&total=false`;
  const mid = `d_f${Math.floor(N / 2)
    .toString(36)
    .padStart(8, '0')}`;
  deep += `&cursor=${Buffer.from(JSON.stringify({ s: 'id', v: mid, i: mid })).toString('base64url')}`;
  const out = [];
  for (const q of QUERIES) {
    token = await signIn();
    const qs = q.qs === 'CURSOR' ? deep : q.qs;
    let total = 0;
    let capped = false;
    for (let i = 0; i < 5; i++) {
      const { body } = await get(qs);
      total = body.total ?? NaN;
      capped = body.totalCapped === true;
    }
    const samples: number[] = [];
    for (let i = 0; i < RUNS; i++) samples.push((await get(qs)).ms);
    out.push({ name: q.name, p: percentiles(samples), total, capped });
  }
  return out;
}

async function benchStore(
  store: 'sqlite' | 'postgres',
  pgServer: () => Promise<PostgresServer>,
): Promise<{ store: string; fillS: number; rows: Row[]; storeOnly: Percentiles[] }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-fleet-bench-'));
  const env: Record<string, string> = { HEARTH_OPERATOR_RATE_LIMIT_PER_MINUTE: '10000000', HEARTH_OPERATOR_RATE_LIMIT_BURST: '1000000' };
  if (store === 'postgres') env.HEARTH_DATABASE_URL = await (await pgServer()).createDatabase();
  const config = loadConfig(env, {
    httpPort: 0,
    mqttPort: 0,
    httpHost: '127.0.0.1',
    mqttHost: '127.0.0.1',
    dataDir,
    demo: false,
    adminEmail: BENCH_ADMIN.email,
    adminPassword: BENCH_ADMIN.password,
    logLevel: 'warn',
  });
  const h = new Hearth(config, { log: createLogger('warn') });
  await h.start();
  try {
    process.stdout.write(`${store}: writing ${N.toLocaleString('en-US')} devices…\n`);
    const fillS = await fill(h, N, store);
    const url = `http://127.0.0.1:${h.httpPort}`;
    const signIn = async () => {
      const login = await fetch(`${url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(BENCH_ADMIN),
      });
      return ((await login.json()) as { token: string }).token;
    };
    const rows = await timeQueries(url, signIn);
    const storeOnly = await timeStore(h);
    process.stdout.write(
      `${store}, the search service alone (p50 / p95 ms): ${storeOnly.map((p, i) => `${QUERIES[i].name}: ${fmt(p.p50)} / ${fmt(p.p95)}`).join('; ')}\n`,
    );
    return { store, fillS, rows, storeOnly };
  } finally {
    await h.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function main(): Promise<number> {
  let pg: Promise<PostgresServer> | undefined;
  const results: Array<Awaited<ReturnType<typeof benchStore>>> = [];
  try {
    for (const store of STORES) results.push(await benchStore(store, () => (pg ??= startPostgres())));
  } finally {
    await (await pg)?.stop();
  }
  const lines = [
    `Fleet search over ${N.toLocaleString('en-US')} devices (two tags each), through HTTP (GET /api/v1/devices, ${RUNS} timed requests per query, one at a time; ${cpus().length} cores):`,
    '',
    `| Query | ${results.map((r) => `${r.store} p50 / p95 / p99 (ms)`).join(' | ')} | matches |`,
    `|---|${results.map(() => '---|').join('')}---|`,
    ...QUERIES.map(
      (q, i) =>
        `| ${q.name} | ${results.map((r) => `${fmt(r.rows[i].p.p50)} / ${fmt(r.rows[i].p.p95)} / ${fmt(r.rows[i].p.p99)}`).join(' | ')} | ${matches(results[0]?.rows[i])} |`,
    ),
    '',
    `The search service alone (the store's share: the query, its total and counts), p50 / p95 ms: ${results
      .map(
        (r) =>
          `${r.store}: ${r.storeOnly
            .map((p, i) => `${QUERIES[i].name} ${fmt(p.p50)} / ${fmt(p.p95)}`)
            .filter((_, i) => QUERIES[i].qs !== 'CURSOR')
            .join('; ')}`,
      )
      .join('. ')}.`,
    '',
    `Writing the fleet into the store took ${results.map((r) => `${r.fillS.toFixed(0)} s (${r.store})`).join(', ')}.`,
  ];
  process.stdout.write(`\n${lines.join('\n')}\n`);
  // The goal (under 100 ms at p95) is for pages and bounded totals; exact totals of broad queries are shown beside them.
  const worst = Math.max(...results.flatMap((r) => r.rows.filter((_, i) => !QUERIES[i].exact).map((x) => x.p.p95)));
  const worstExact = Math.max(...results.flatMap((r) => r.rows.filter((_, i) => QUERIES[i].exact).map((x) => x.p.p95)));
  if (WRITE_DOCS) {
    // Between its markers, so that the main run (bench/run.ts) keeps it when it rewrites the file.
    const file = join(ROOT, 'docs', 'benchmarks.md');
    const doc = readFileSync(file, 'utf8');
    const block = `<!-- fleet:begin -->\n## Fleet search\n\n\`BENCH_MODE=fleet npm run bench\` (bench/fleet-search.ts), ${new Date().toISOString().slice(0, 10)}, load average at the end ${loadavg()[0].toFixed(1)}.\n\n${lines.join('\n')}\n<!-- fleet:end -->\n`;
    const m = /<!-- fleet:begin -->[\s\S]*<!-- fleet:end -->\n?/.exec(doc);
    writeFileSync(file, m ? doc.replace(m[0], () => block) : `${doc.trimEnd()}\n\n${block}`);
  }
  process.stdout.write(`worst p95 of pages and bounded totals: ${fmt(worst)} ms (goal: under 100 ms); of exact totals: ${fmt(worstExact)} ms\n`);
  return worst < 100 ? 0 : 1;
}

/** The matches column: the total, `n+` when it was capped at n, empty for a page. */
function matches(r: Row | undefined): string {
  if (!r || Number.isNaN(r.total)) return '';
  return `${r.total.toLocaleString('en-US')}${r.capped ? '+' : ''}`;
}
