import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { signupUser } from './helpers/people.ts';

/**
 * Connectivity analytics (docs/telemetry.md, `GET /api/v1/analytics/presence`) over real MQTT
 * connects and disconnects: devices online per bucket, disconnect reasons, flapping devices, the
 * state carried into a range from before it, retention of the record, and the 400s.
 */
let p: Platform;
const PRODUCT = 'connectivity_plug';
const HOUR = 3_600_000;

before(async () => {
  p = await startPlatform();
  const model = { properties: [{ id: 'on', type: 'boolean', access: 'rw' }], events: [], actions: [] };
  const r = await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'Connectivity plug', category: 'switch', model });
  assert.equal(r.status, 201, JSON.stringify(r.body));
});
after(async () => {
  await p.stop();
});

type Bucket = { ts: string; online: number; connects: number; disconnects: number };

const presenceOf = (q: string) => p.api('GET', `/api/v1/analytics/presence?product=${PRODUCT}&${q}`);

test('online devices per hour, disconnect reasons and flapping devices follow real connects and disconnects', async () => {
  const start = Date.now();
  const flappy = await p.provision(PRODUCT, 'flappy');
  const lost = await p.provision(PRODUCT, 'lost');
  const never = await p.provision(PRODUCT, 'never');
  // Three clean sessions (DISCONNECT: reason `disconnect`), then one that stays.
  for (let i = 0; i < 3; i++) {
    const c = await p.connect(flappy.id, flappy.secret);
    await c.endAsync();
    await p.until(flappy.id, (d) => d.online === false, 'flappy offline');
  }
  await p.connect(flappy.id, flappy.secret);
  // A connection that breaks without DISCONNECT: reason `connection-lost`.
  const c = await p.connect(lost.id, lost.secret);
  c.stream.destroy();
  await p.until(lost.id, (d) => d.online === false, 'lost offline');
  await p.until(flappy.id, (d) => d.online === true, 'flappy online');

  const from = Math.floor(start / HOUR) * HOUR;
  const r = await eventually(
    async () => {
      const res = await presenceOf(`from=${from}&to=${Date.now()}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const connects = (res.body.online as Bucket[]).reduce((n, b) => n + b.connects, 0);
      return connects === 5 ? res : undefined;
    },
    5000,
    'five connects recorded',
  );
  const buckets = r.body.online as Bucket[];
  assert.equal(r.body.bucket, '1h');
  assert.equal(buckets[0].ts, new Date(from).toISOString());
  assert.equal(
    buckets.reduce((n, b) => n + b.disconnects, 0),
    4,
  );
  // Both were online when the lost one connected; the one that never connected never counts.
  assert.ok(
    buckets.some((b) => b.online === 2),
    JSON.stringify(buckets),
  );
  assert.ok(buckets.every((b) => b.online <= 2));
  assert.deepEqual(r.body.disconnectReasons, { disconnect: 3, 'connection-lost': 1 });
  assert.deepEqual(r.body.flapping, [
    { deviceId: flappy.id, connects: 4, disconnects: 3, reasons: { disconnect: 3 } },
    { deviceId: lost.id, connects: 1, disconnects: 1, reasons: { 'connection-lost': 1 } },
  ]);
  const top1 = await presenceOf(`from=${from}&top=1`);
  assert.deepEqual(
    top1.body.flapping.map((f: { deviceId: string }) => f.deviceId),
    [flappy.id],
  );
  assert.ok(!JSON.stringify(r.body).includes(never.id));

  // A range after every change: the state it starts in comes from before it (the flappy one is still online).
  const later = Date.now() + 1;
  const after = await presenceOf(`from=${later}&to=${later + 2 * HOUR - 1}`);
  assert.equal(after.status, 200);
  assert.deepEqual(
    (after.body.online as Bucket[]).map((b) => [b.online, b.connects, b.disconnects]),
    (after.body.online as Bucket[]).map(() => [1, 0, 0]),
  );
  assert.deepEqual(after.body.disconnectReasons, {});
  assert.deepEqual(after.body.flapping, []);
});

test("retention prunes the record with the product's device events and keeps what is newer", async () => {
  const d = await p.provision(PRODUCT, 'retained');
  const c = await p.connect(d.id, d.secret);
  await c.endAsync();
  await p.until(d.id, (x) => x.online === false, 'offline');
  // A change recorded two days ago (as a node that ran then would have).
  const old = Date.now() - 2 * 86_400_000;
  (p.hearth.services.presence as any).changes.add({ deviceId: d.id, at: old, session: 0, online: true, reason: 'connect' });
  const range = `from=${old - HOUR}&to=${Date.now()}&bucket=1d&top=1000`;
  const mine = async () => (await presenceOf(range)).body.flapping.find((f: { deviceId: string }) => f.deviceId === d.id);
  assert.equal((await eventually(mine, 3000, 'recorded')).connects, 2);

  const put = await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, { events: '1d' });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const report = await p.hearth.services.retention.prune();
  assert.ok((report?.presence ?? 0) >= 1, JSON.stringify(report));
  assert.deepEqual(await mine(), { deviceId: d.id, connects: 1, disconnects: 1, reasons: { disconnect: 1 } });
  await p.api('PUT', `/api/v1/products/${PRODUCT}/retention`, {});
  // Deleted with its history: its presence changes go too.
  assert.equal((await p.api('DELETE', `/api/v1/devices/${d.id}?purge=true`)).status, 204);
  assert.equal(await mine(), undefined);
  // (The product no longer lists it; asked by its id, the record holds nothing of it either.)
  const left = { buckets: new Map(), reasons: {}, devices: new Map() };
  await p.hearth.services.presence.connectivity([d.id], old - HOUR, Date.now(), HOUR, left);
  assert.equal(left.devices.size, 0);
  assert.deepEqual(left.reasons, {});
});

test('connectivity questions are bounded: a 400 names the problem', async () => {
  const now = Date.now();
  const cases: Array<[string, RegExp]> = [
    [`to=${now}`, /from is required/],
    [`from=${now - 40 * 86_400_000}&to=${now}`, /at most 31 days/],
    [`from=${now - HOUR}&bucket=30m`, /whole hours/],
    [`from=${now - HOUR}&bucket=5x`, /bucket must look like/],
    [`from=${now}&to=${now - HOUR}`, /is after to/],
    [`from=yesterday`, /ISO 8601/],
    [`from=${now - HOUR}&top=0`, /top/],
  ];
  for (const [q, msg] of cases) {
    const r = await presenceOf(q);
    assert.equal(r.status, 400, `${q}: ${JSON.stringify(r.body)}`);
    assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.match(r.body.detail ?? r.body.title, msg, q);
  }
  const unknown = await p.api('GET', `/api/v1/analytics/presence?product=nope&from=${now - HOUR}`);
  assert.equal(unknown.status, 404);
});

test("a device's presence history: its connects and disconnects with their reasons, newest first, for whoever may see it", async () => {
  const start = Date.now();
  const d = await p.provision(PRODUCT, 'timeline');
  const clean = await p.connect(d.id, d.secret);
  await clean.endAsync();
  await p.until(d.id, (x) => x.online === false, 'offline after DISCONNECT');
  const dropped = await p.connect(d.id, d.secret);
  dropped.stream.destroy();
  await p.until(d.id, (x) => x.online === false, 'offline after the connection broke');
  const h = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/devices/${d.id}/presence/history?from=${start}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.items.length === 4 ? r.body.items : undefined;
    },
    5000,
    'four changes recorded',
  );
  assert.deepEqual(
    h.map((c: { online: boolean; reason: string }) => `${c.online ? 'on' : 'off'}:${c.reason}`),
    ['off:connection-lost', 'on:connect', 'off:disconnect', 'on:connect'],
    'newest first, with the reasons of docs/protocol.md',
  );
  const times = h.map((c: { at: string }) => Date.parse(c.at));
  assert.deepEqual(
    times,
    [...times].sort((a, b) => b - a),
  );
  assert.ok(times.every((t: number) => t >= start - 1000 && t <= Date.now()));
  assert.equal(h[0].session, h[1].session, 'a connect and its disconnect share the session');
  assert.notEqual(h[1].session, h[3].session);

  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}/presence/history?from=${start}&limit=1`)).body.items.length, 1);
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${d.id}/presence/history?to=${start - 60_000}`)).body.items, [], 'a range before it: none');
  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}/presence/history?from=yesterday`)).status, 400);
  const outsider = await signupUser(p, 'outsider.presence@example.com');
  assert.equal((await outsider.api('GET', `/devices/${d.id}/presence/history`)).status, 404, 'not theirs: not found');
});
