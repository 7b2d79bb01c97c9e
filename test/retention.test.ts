import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';

/**
 * Retention (docs/telemetry.md) through real MQTT and HTTP: a product's policy set and read back,
 * the background pass deleting what is older and keeping what is not (per property, events, rollup
 * tiers), and pruning while ingesting losing no fresh point.
 */
let p: Platform;
const PRODUCT = 'retention_sensor';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

before(async () => {
  // A pass every 150 ms, 100 rows per delete: a pass over thousands of rows takes many batches.
  p = await startPlatform({ env: { HEARTH_RETENTION_INTERVAL_MS: '150', HEARTH_RETENTION_BATCH: '100' } });
  const model = {
    properties: [
      { id: 'temperature', type: 'number', access: 'r', history: true },
      { id: 'on', type: 'boolean', access: 'rw', history: true },
    ],
    events: [{ id: 'alarm' }],
    actions: [],
  };
  const r = await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'Retention sensor', category: 'sensor', model });
  assert.equal(r.status, 201, JSON.stringify(r.body));
});
after(async () => {
  await p.stop();
});

const history = async (id: string, q: string, days = 30) =>
  (await p.api('GET', `/api/v1/devices/${id}/history?${q}&from=${Date.now() - days * DAY}&limit=10000`)).body;

test("a product's retention is set and read back in the same shape, over the defaults", async () => {
  const fresh = await p.api('GET', `/api/v1/products/${PRODUCT}/retention`);
  assert.equal(fresh.status, 200);
  assert.deepEqual(fresh.body, { product: PRODUCT, raw: '30d', events: '90d', rollups: { '1m': '7d', '1h': '365d', '1d': null }, properties: {}, custom: [] });
  const bad: Array<[unknown, RegExp]> = [
    [{ raw: '3w' }, /raw/],
    [{ properties: { nope: { raw: '1d' } } }, /no property "nope"/],
    [{ rollups: { '5m': '1d' } }, /5m|additional/i],
    [{ raw: '0d' }, /raw/],
  ];
  for (const [body, message] of bad) {
    const r = await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(`${r.body.detail} ${r.body.field ?? ''}`, message);
  }
  assert.equal((await p.api('GET', '/api/v1/products/nope/retention')).status, 404);
  const set = await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, {
    raw: '90d',
    rollups: { '1d': '3650d' },
    properties: { temperature: { raw: null } },
  });
  assert.equal(set.status, 200);
  assert.deepEqual(set.body, {
    product: PRODUCT,
    raw: '90d',
    events: '90d',
    rollups: { '1m': '7d', '1h': '365d', '1d': '3650d' },
    properties: { temperature: { raw: null } },
    custom: ['raw', 'rollups.1d', 'properties.temperature'],
  });
  assert.deepEqual((await p.api('GET', `/api/v1/products/${PRODUCT}/retention`)).body, set.body);
});

test('the background pass removes what is older and keeps what is not: raw per property, events, rollup tiers', async () => {
  const d = await p.provision(PRODUCT);
  const c = await p.connect(d.id, d.secret);
  const now = Date.now();
  const ages = [12 * HOUR, 36 * HOUR, 60 * HOUR, 100 * HOUR];
  for (const age of ages) await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: now - age, temperature: age / HOUR, on: true }), { qos: 1 });
  for (const age of [1 * HOUR, 3 * DAY]) await c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'alarm', ts: now - age }), { qos: 1 });
  await eventually(async () => (await history(d.id, 'property=on')).points.length === 4, 5000, 'points stored');
  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}/events?from=${now - 10 * DAY}`)).body.items.length, 2);

  const r = await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, {
    raw: '3d',
    events: '2d',
    rollups: { '1m': '2d', '1h': '90h' },
    properties: { temperature: { raw: '1d' } },
  });
  assert.equal(r.status, 200);
  await eventually(async () => (await history(d.id, 'property=temperature')).points.length === 1, 5000, 'temperature kept 1 day');
  await eventually(async () => (await history(d.id, 'property=on')).points.length === 3, 5000, 'on kept 3 days');
  assert.deepEqual(
    (await history(d.id, 'property=temperature')).points.map((x: any) => x.value),
    [12],
  );
  assert.deepEqual(
    (await history(d.id, 'property=on')).points.map((x: any) => Date.parse(x.ts)),
    [now - 60 * HOUR, now - 36 * HOUR, now - 12 * HOUR],
  );
  await eventually(
    async () => (await p.api('GET', `/api/v1/devices/${d.id}/events?from=${now - 10 * DAY}`)).body.items.length === 1,
    5000,
    'events kept 2 days',
  );
  // Minute rollups keep 2 days (12 h and 36 h), hour rollups 90 hours (all but the 100-hour-old point), days forever.
  const tier = async (t: string, bucket: string) =>
    (await history(d.id, `property=temperature&bucket=${bucket}&tier=${t}`, 5)).buckets.reduce((n: number, b: any) => n + b.count, 0);
  await eventually(async () => (await tier('1m', '1m')) === 2, 5000, 'minute rollups kept 2 days');
  await eventually(async () => (await tier('1h', '1h')) === 3, 5000, 'hour rollups kept 90 hours');
  assert.equal(await tier('1d', '1d'), 4);
  // Reports still arrive and are kept.
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ temperature: 21 }), { qos: 1 });
  await eventually(async () => (await history(d.id, 'property=temperature')).points.length === 2, 5000, 'a fresh point');
});

test('pruning while ingesting loses no fresh point', async () => {
  const d = await p.provision(PRODUCT);
  const c = await p.connect(d.id, d.secret);
  const now = Date.now();
  // 2000 points older than the 1-day retention of temperature, then 300 fresh ones while the pass deletes.
  const old = 2000;
  for (let i = 0; i < old; i += 100) {
    await Promise.all(
      Array.from({ length: 100 }, (_, k) =>
        c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: now - 2 * DAY - (i + k) * 1000, temperature: i + k }), { qos: 1 }),
      ),
    );
  }
  const fresh = Array.from({ length: 300 }, (_, k) => now - 10 * HOUR + k * 1000);
  await Promise.all(fresh.map((ts, k) => c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts, temperature: 1000 + k }), { qos: 1 })));
  const kept = await eventually(
    async () => {
      const h = await history(d.id, 'property=temperature');
      return h.points.length === fresh.length ? h.points : undefined;
    },
    15_000,
    'only the fresh points left',
  );
  assert.deepEqual(
    kept.map((x: any) => Date.parse(x.ts)),
    fresh,
  );
  // Their day rollups keep every point, old ones included (1d is kept forever).
  const days = (await history(d.id, 'property=temperature&bucket=1d')).buckets.reduce((n: number, b: any) => n + b.count, 0);
  assert.equal(days, old + fresh.length);
});

test('the command ledger and the audit log are pruned by age, in batches', async () => {
  // Entries older than "now + 1 ms" are all of them: the services' prune deletes them 2 by 2.
  await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, { raw: '30d' });
  await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, { raw: '31d' });
  const audit = await p.api('GET', '/api/v1/audit?limit=100');
  assert.ok(audit.body.items.length >= 2);
  const n = await p.hearth.services.audit.pruneBefore(Date.now() + 1, 2);
  assert.ok(n >= audit.body.items.length);
  assert.equal((await p.api('GET', '/api/v1/audit?limit=100')).body.items.length, 0);
  assert.equal((await p.hearth.services.commands.pruneBefore(Date.now() + 1, 2)) >= 0, true);
});
