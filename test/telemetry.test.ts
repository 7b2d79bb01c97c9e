import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { signupUser } from './helpers/people.ts';

/**
 * Telemetry (docs/telemetry.md) through real MQTT and HTTP: rollups against a brute-force
 * computation over the raw points, late points, the tier the history answer says it used, and the
 * 400s of bad ranges and buckets.
 */
let p: Platform;
const PRODUCT = 'telemetry_sensor';
const DAY = 86_400_000;

before(async () => {
  p = await startPlatform();
  const model = {
    properties: [
      { id: 'temperature', type: 'number', access: 'r', history: true },
      { id: 'on', type: 'boolean', access: 'rw', history: true },
      { id: 'mode', type: 'enum', values: ['eco', 'comfort', 'off'], access: 'rw', history: true },
      { id: 'label', type: 'string', access: 'rw', history: true },
      { id: 'noHistory', type: 'number', access: 'r' },
    ],
    events: [{ id: 'alarm' }],
    actions: [],
  };
  const r = await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'Telemetry sensor', category: 'sensor', model });
  assert.equal(r.status, 201, JSON.stringify(r.body));
});
after(async () => {
  await p.stop();
});

type Sent = { ts: number; temperature?: number; on?: boolean; mode?: string };

/** Provisions a device, sends the reports over MQTT and waits until every point is stored. */
async function deviceWith(reports: Sent[]): Promise<{ id: string; secret: string }> {
  const d = await p.provision(PRODUCT);
  const c = await p.connect(d.id, d.secret);
  for (const r of reports) await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify(r), { qos: 1 });
  const expected = reports.filter((r) => r.temperature !== undefined).length;
  const from = Math.min(...reports.map((r) => r.ts));
  const to = Math.max(...reports.map((r) => r.ts));
  await eventually(
    async () => {
      const h = await p.api('GET', `/api/v1/devices/${d.id}/history?property=temperature&from=${from}&to=${to}&limit=10000`);
      return h.body.points?.length === expected;
    },
    10_000,
    `${expected} points stored`,
  );
  await c.endAsync();
  return d;
}

/**
 * The aggregates of raw points per UTC bucket, computed the obvious way; with `durations`, the time
 * between consecutive points credited to the earlier one's value, cut at bucket edges.
 */
function bruteForce(points: Array<{ ts: number; value: unknown }>, bucketMs: number, durations = false) {
  type Acc = {
    count: number;
    sum: number;
    min: number;
    max: number;
    last: unknown;
    lastTs: number;
    counts: Record<string, number>;
    durations: Record<string, number>;
  };
  const out = new Map<number, Acc>();
  const at = (b: number): Acc => {
    const a = out.get(b) ?? { count: 0, sum: 0, min: Infinity, max: -Infinity, last: undefined, lastTs: -Infinity, counts: {}, durations: {} };
    out.set(b, a);
    return a;
  };
  if (durations) {
    const sorted = [...points].sort((x, y) => x.ts - y.ts);
    for (let i = 0; i + 1 < sorted.length; i++) {
      for (let t = sorted[i].ts; t < sorted[i + 1].ts; ) {
        const b = Math.floor(t / bucketMs) * bucketMs;
        const end = Math.min(sorted[i + 1].ts, b + bucketMs);
        const a = at(b);
        a.durations[String(sorted[i].value)] = (a.durations[String(sorted[i].value)] ?? 0) + end - t;
        t = end;
      }
    }
  }
  for (const pt of points) {
    const b = Math.floor(pt.ts / bucketMs) * bucketMs;
    const a = at(b);
    a.count++;
    if (typeof pt.value === 'number' || typeof pt.value === 'boolean') {
      const n = Number(pt.value);
      a.sum += n;
      a.min = Math.min(a.min, n);
      a.max = Math.max(a.max, n);
    }
    if (typeof pt.value !== 'number') a.counts[String(pt.value)] = (a.counts[String(pt.value)] ?? 0) + 1;
    if (pt.ts >= a.lastTs) {
      a.lastTs = pt.ts;
      a.last = pt.value;
    }
  }
  return [...out.entries()].sort((x, y) => x[0] - y[0]).map(([b, a]) => ({ ts: new Date(b).toISOString(), ...a }));
}

const close = (a: number | null, b: number, what: string) =>
  assert.ok(a !== null && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} ≠ ${b}`);

test('rollups match a brute-force computation over the raw points, late points included', async () => {
  // Ten days ago at midnight UTC: points spread over three days, sent in any order (late ones too).
  const base = Math.floor((Date.now() - 10 * DAY) / DAY) * DAY;
  const report = fc.record({
    offset: fc.integer({ min: 0, max: 3 * DAY - 1 }),
    temperature: fc.double({ min: -40, max: 60, noNaN: true, noDefaultInfinity: true }),
    on: fc.boolean(),
    mode: fc.constantFrom('eco', 'comfort', 'off'),
  });
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(report, { minLength: 1, maxLength: 60, selector: (r) => r.offset }), async (reports) => {
      // JSON has no -0: what the device sends is 0 (`+ 0` turns -0 into 0).
      const sent: Sent[] = reports.map((r) => ({ ts: base + r.offset, temperature: r.temperature + 0, on: r.on, mode: r.mode }));
      const { id } = await deviceWith(sent);
      const range = `from=${base}&to=${base + 3 * DAY - 1}`;
      for (const [bucket, bucketMs, tier] of [
        ['1m', 60_000, '1m'],
        ['7m', 420_000, '1m'],
        ['1h', 3_600_000, '1h'],
        ['6h', 21_600_000, '1h'],
        ['1d', DAY, '1d'],
      ] as const) {
        for (const property of ['temperature', 'on', 'mode'] as const) {
          const r = await p.api('GET', `/api/v1/devices/${id}/history?property=${property}&bucket=${bucket}&${range}`);
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(r.body.tier, tier, `bucket ${bucket} reads tier ${tier}`);
          const timed = property !== 'temperature' && tier !== '1m';
          const expected = bruteForce(
            sent.map((s) => ({ ts: s.ts, value: s[property] })),
            bucketMs,
            timed,
          );
          assert.deepEqual(
            r.body.buckets.map((b: { ts: string }) => b.ts),
            expected.map((e) => e.ts),
            `${property} ${bucket}: the same buckets`,
          );
          r.body.buckets.forEach((b: any, i: number) => {
            const e = expected[i];
            assert.equal(b.count, e.count, `${property} ${bucket} ${b.ts}: count`);
            if (timed) assert.deepEqual(b.durations, Object.keys(e.durations).length ? e.durations : undefined, `${property} ${bucket} ${b.ts}: time in state`);
            else assert.equal(b.durations, undefined);
            if (e.count === 0) {
              // Only time in state: the value held through a bucket without points.
              assert.deepEqual([b.min, b.max, b.last, b.counts], [null, null, null, undefined]);
              return;
            }
            assert.deepEqual(b.last, e.last, `${property} ${bucket} ${b.ts}: last`);
            if (property === 'mode') {
              assert.equal(b.min, null);
              assert.deepEqual(b.counts, e.counts);
              return;
            }
            close(b.min, e.min, 'min');
            close(b.max, e.max, 'max');
            close(b.sum, e.sum, 'sum');
            close(b.avg, e.sum / e.count, 'avg');
            if (property === 'on') assert.deepEqual(b.counts, e.counts);
          });
          // The raw tier agrees on what both compute.
          if (property === 'temperature') {
            const raw = await p.api('GET', `/api/v1/devices/${id}/history?property=${property}&bucket=${bucket}&tier=raw&${range}`);
            assert.equal(raw.body.tier, 'raw');
            assert.deepEqual(
              raw.body.buckets.map((b: any) => [b.ts, b.count]),
              r.body.buckets.map((b: any) => [b.ts, b.count]),
            );
          }
        }
      }
    }),
    { numRuns: 8 },
  );
});

test('a late point fixes its bucket, and the answer says which tier it used', async () => {
  const hour = Math.floor((Date.now() - 5 * DAY) / 3_600_000) * 3_600_000;
  const d = await deviceWith([
    { ts: hour + 1000, temperature: 10 },
    { ts: hour + 3_600_000 + 1000, temperature: 20 },
  ]);
  const q = `property=temperature&bucket=1h&from=${hour}&to=${hour + 2 * 3_600_000 - 1}`;
  const first = await p.api('GET', `/api/v1/devices/${d.id}/history?${q}`);
  assert.equal(first.body.tier, '1h');
  assert.deepEqual(
    first.body.buckets.map((b: any) => [b.count, b.max, b.last]),
    [
      [1, 10, 10],
      [1, 20, 20],
    ],
  );
  // After the second hour's point, the device sends two from the first hour: one later, one earlier than what it had.
  const c = await p.connect(d.id, d.secret);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: hour + 2000, temperature: 30 }), { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: hour + 500, temperature: -5 }), { qos: 1 });
  const fixed = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/devices/${d.id}/history?${q}`);
      return r.body.buckets[0].count === 3 ? r.body : undefined;
    },
    5000,
    'the first hour counts the late points',
  );
  assert.deepEqual(
    fixed.buckets.map((b: any) => [b.count, b.min, b.max, b.last]),
    [
      [3, -5, 30, 30],
      [1, 20, 20, 20],
    ],
  );
  close(fixed.buckets[0].avg, 35 / 3, 'avg');
  // The minute and day tiers were fixed too.
  const day = await p.api('GET', `/api/v1/devices/${d.id}/history?property=temperature&bucket=1d&from=${hour}&to=${hour + 1}`);
  assert.equal(day.body.tier, '1d');
  assert.equal(day.body.buckets[0].count >= 4, true);
  const raw = await p.api('GET', `/api/v1/devices/${d.id}/history?${q.replace('bucket=1h&', '')}`);
  assert.equal(raw.body.tier, 'raw');
  assert.deepEqual(
    raw.body.points.map((x: any) => x.value),
    [-5, 10, 30, 20],
  );
});

test('a point at the same millisecond as one stored before counts no time twice', async () => {
  // Each report waits for the one before to be stored, so they reach the store in separate batches.
  const hour = Math.floor((Date.now() - 6 * DAY) / 3_600_000) * 3_600_000;
  const d = await p.provision(PRODUCT);
  const c = await p.connect(d.id, d.secret);
  const sent = [
    { ts: hour, on: true },
    { ts: hour + 10_000, on: false },
    { ts: hour + 10_000, on: true },
    { ts: hour + 30_000, on: false },
  ];
  for (const [i, r] of sent.entries()) {
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify(r), { qos: 1 });
    await eventually(
      async () => (await p.api('GET', `/api/v1/devices/${d.id}/history?property=on&from=${hour}&to=${hour + 60_000}`)).body.points?.length === i + 1,
      10_000,
      `point ${i + 1} stored`,
    );
  }
  await c.endAsync();
  const r = await p.api('GET', `/api/v1/devices/${d.id}/history?property=on&bucket=1h&from=${hour}&to=${hour + 3_600_000 - 1}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // true from 0 to 10 s, then (the second point of 10 s, recorded last) from 10 to 30 s: 30 s in all;
  // false held no time. Each interval once: before, the 0-10 s interval was counted again.
  assert.deepEqual(r.body.buckets[0].durations, { true: 30_000 });
});

test('bad ranges, unknown properties and huge buckets get a 400 naming the problem', async () => {
  const d = await p.provision(PRODUCT);
  const get = (q: string) => p.api('GET', `/api/v1/devices/${d.id}/history?${q}`);
  const cases: Array<[string, RegExp]> = [
    ['property=temperature&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', /from .* is after to/],
    ['property=nope', /no property "nope"/],
    ['property=temperature&bucket=1s&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z', /86401 buckets, at most 10000/],
    ['property=temperature&bucket=30s&from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', /buckets, at most 10000/],
    ['property=temperature&bucket=630s&from=2025-11-01T00:00:00Z&to=2026-01-01T00:00:00Z', /raw points, over at most 31 days/],
    ['property=temperature&bucket=1h&tier=1d', /tier 1d does not divide bucket 1h/],
    ['property=temperature&tier=1h', /a rollup tier needs a bucket/],
    ['property=temperature&bucket=5x', /bucket must look like/],
    ['property=temperature&from=yesterday', /from must be an ISO 8601 time/],
  ];
  for (const [q, message] of cases) {
    const r = await get(q);
    assert.equal(r.status, 400, q);
    assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.match(r.body.detail, message, q);
  }
});

test('an export streams every point as CSV or NDJSON, and round-trips', async () => {
  const t0 = Math.floor((Date.now() - 3 * DAY) / 1000) * 1000;
  const reports: Sent[] = [];
  for (let i = 0; i < 2500; i++) reports.push({ ts: t0 + i * 1000, temperature: i / 10, ...(i === 0 || i === 1000 || i === 1996 ? { mode: 'eco' } : {}) });
  // Pages hold 2000 points: the two of i = 1996 (with the label before them) straddle the first page's end.
  const d = await deviceWith(reports);
  const c = await p.connect(d.id, d.secret);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: t0 + 5, label: 'he said "hi", then left\nbye' }), { qos: 1 });
  const range = `from=${t0}&to=${t0 + 2500 * 1000}`;
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}/history?property=label&${range}`)).body.points?.length === 1, 5000, 'label stored');

  const nd = await fetch(`${p.httpUrl}/api/v1/devices/${d.id}/history/export?format=ndjson&${range}`, { headers: { authorization: `Bearer ${p.token}` } });
  assert.equal(nd.status, 200);
  assert.match(nd.headers.get('content-type') ?? '', /application\/x-ndjson/);
  const lines = (await nd.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, 2500 + 3 + 1);
  assert.deepEqual(
    lines.filter((l) => l.property === 'temperature').map((l) => l.value),
    reports.map((r) => r.temperature),
  );
  assert.ok(
    lines.every((l, i) => i === 0 || Date.parse(l.ts) >= Date.parse(lines[i - 1].ts)),
    'in time order',
  );
  assert.deepEqual(lines.find((l) => l.property === 'label').value, 'he said "hi", then left\nbye');

  const csv = await fetch(`${p.httpUrl}/api/v1/devices/${d.id}/history/export?format=csv&property=temperature,label&${range}`, {
    headers: { authorization: `Bearer ${p.token}` },
  });
  assert.match(csv.headers.get('content-type') ?? '', /text\/csv/);
  const text = await csv.text();
  assert.ok(text.startsWith('ts,property,value\n'));
  assert.ok(text.includes(',label,"he said ""hi"", then left\nbye"\n'));
  assert.equal(text.split('\n').filter((l) => l.includes(',temperature,')).length, 2500);

  const bad = await p.api('GET', `/api/v1/devices/${d.id}/history/export?property=nope`);
  assert.equal(bad.status, 400);
  assert.match(bad.body.detail, /no property "nope"/);
  const long = await p.api('GET', `/api/v1/devices/${d.id}/history/export?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z`);
  assert.equal(long.status, 400);
  assert.match(long.body.detail, /at most 366 days/);
});

test('fleet analytics over the rollups match the raw data, per home and per device', async () => {
  const product = 'fleet_meter';
  const model = {
    properties: [
      { id: 'power', type: 'number', access: 'r', history: true },
      { id: 'mode', type: 'enum', values: ['a', 'b'], access: 'r', history: true },
      { id: 'note', type: 'string', access: 'r' },
      { id: 'firmware', type: 'string', access: 'r' },
    ],
    events: [],
    actions: [],
  };
  assert.equal((await p.api('POST', '/api/v1/products', { key: product, name: 'Fleet meter', category: 'sensor', model })).status, 201);
  const day = Math.floor((Date.now() - 4 * DAY) / DAY) * DAY;
  const owner = await signupUser(p, 'fleet-owner@test.local');
  const home = (await owner.api('POST', '/homes', { name: 'Fleet home', timezone: 'UTC' })).body.id as string;
  const raw: Array<{ device: string; home: string | null; ts: number; power: number }> = [];
  const devices: string[] = [];
  for (let i = 0; i < 4; i++) {
    const d = await p.provision(product);
    devices.push(d.id);
    if (i < 2) assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: d.pairingCode })).status, 201);
    const c = await p.connect(d.id, d.secret);
    for (let k = 0; k < 30; k++) {
      const ts = day + ((k * 7919 + i * 104729) % (2 * DAY));
      const power = (k * 13 + i * 17) % 100;
      raw.push({ device: d.id, home: i < 2 ? home : null, ts, power });
      await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts, power }), { qos: 1 });
    }
    // Firmware versions (the OTA view's) and the operator's tags: 1.0.0/berlin, 1.1.0/berlin, 1.0.0/paris, none.
    if (i < 3) await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ firmware: i === 1 ? '1.1.0' : '1.0.0' }), { qos: 1 });
    if (i < 3) assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: { site: i < 2 ? 'berlin' : 'paris' } })).status, 200);
    await c.endAsync();
  }
  const from = day;
  const to = day + 2 * DAY - 1;
  const ask = (q: string) => p.api('GET', `/api/v1/analytics/timeseries?product=${product}&property=power&from=${from}&to=${to}&${q}`);
  await eventually(
    async () => (await ask('agg=count&bucket=1d')).body.series[0].points.reduce((n: number, x: any) => n + x.value, 0) === raw.length,
    5000,
    'every point counted',
  );

  const expect = (rows: typeof raw, bucketMs: number, agg: string) => {
    const by = new Map<number, number[]>();
    for (const r of rows) {
      const b = Math.floor(r.ts / bucketMs) * bucketMs;
      by.set(b, [...(by.get(b) ?? []), r.power]);
    }
    return [...by.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([b, v]) => {
        const sum = v.reduce((x, y) => x + y, 0);
        const value = agg === 'avg' ? sum / v.length : agg === 'sum' ? sum : agg === 'min' ? Math.min(...v) : agg === 'max' ? Math.max(...v) : v.length;
        return { ts: new Date(b).toISOString(), value, count: v.length };
      });
  };
  const near = (a: any[], b: any[]) => {
    assert.deepEqual(
      a.map((x) => [x.ts, x.count]),
      b.map((x) => [x.ts, x.count]),
    );
    a.forEach((x, i) => assert.ok(Math.abs(x.value - b[i].value) < 1e-9, `${x.ts}: ${x.value} ≠ ${b[i].value}`));
  };
  for (const agg of ['avg', 'min', 'max', 'count', 'sum']) {
    for (const [bucket, ms, tier] of [
      ['1h', 3_600_000, '1h'],
      ['6h', 21_600_000, '1h'],
      ['1d', DAY, '1d'],
      ['30m', 1_800_000, '1m'],
    ] as const) {
      const r = await ask(`agg=${agg}&bucket=${bucket}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.tier, tier);
      near(r.body.series[0].points, expect(raw, ms, agg));
    }
  }
  const byHome = await ask('agg=avg&bucket=1d&groupBy=home');
  assert.deepEqual(
    byHome.body.series.map((s: any) => s.group),
    [home, null],
  );
  near(
    byHome.body.series[0].points,
    expect(
      raw.filter((r) => r.home === home),
      DAY,
      'avg',
    ),
  );
  near(
    byHome.body.series[1].points,
    expect(
      raw.filter((r) => r.home === null),
      DAY,
      'avg',
    ),
  );
  const byDevice = await ask('agg=max&bucket=1d&groupBy=device');
  assert.deepEqual(
    byDevice.body.series.map((s: any) => s.group),
    [...devices].sort(),
  );
  for (const s of byDevice.body.series)
    near(
      s.points,
      expect(
        raw.filter((r) => r.device === s.group),
        DAY,
        'max',
      ),
    );

  // Per value of an operator's tag and per firmware version (devices without one: null).
  const groupedBy = (key: (r: (typeof raw)[number]) => string | null) => {
    const out = new Map<string | null, typeof raw>();
    for (const r of raw) out.set(key(r), [...(out.get(key(r)) ?? []), r]);
    return out;
  };
  const index = (device: string) => devices.indexOf(device);
  for (const [groupBy, key] of [
    ['tag.site', (r: (typeof raw)[number]) => [`berlin`, 'berlin', 'paris', null][index(r.device)]],
    ['firmware', (r: (typeof raw)[number]) => ['1.0.0', '1.1.0', '1.0.0', null][index(r.device)]],
  ] as const) {
    const want = groupedBy(key);
    const r = await eventually(
      async () => {
        const res = await ask(`agg=sum&bucket=1d&groupBy=${groupBy}`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        return res.body.series.length === want.size ? res : undefined;
      },
      5000,
      `a series per ${groupBy}`,
    );
    assert.equal(r.body.groupBy, groupBy);
    assert.deepEqual(
      r.body.series.map((x: any) => x.group),
      [...want.keys()].sort((a, b) => String(a).localeCompare(String(b))),
    );
    for (const x of r.body.series) near(x.points, expect(want.get(x.group)!, DAY, 'sum'));
  }
  assert.deepEqual(
    (await ask('agg=sum&bucket=1d&groupBy=tag.nothing')).body.series.map((x: any) => x.group),
    [null],
  );

  const bad: Array<[string, number, RegExp]> = [
    [`product=${product}&property=power&bucket=1h`, 400, /from is required/],
    [`product=${product}&property=power&bucket=30s&from=${from}`, 400, /bucket must be whole minutes/],
    [`product=${product}&property=power&bucket=1m&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z`, 400, /buckets, at most 10000/],
    [`product=${product}&property=power&bucket=5m&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z`, 400, /1m tier spans at most 7 days/],
    [`product=${product}&property=nope&from=${from}`, 400, /no property "nope"/],
    [`product=${product}&property=mode&from=${from}`, 400, /is an enum/],
    [`product=${product}&property=note&from=${from}`, 400, /of type string/],
    [`product=${product}&property=power&from=${to}&to=${from}`, 400, /is after to/],
    [`product=${product}&property=power&from=${from}&groupBy=room`, 400, /groupBy/],
    [`product=${product}&property=power&from=${from}&groupBy=tag.`, 400, /groupBy/],
    [`product=nope&property=power&from=${from}`, 404, /nope/],
  ];
  for (const [q, status, message] of bad) {
    const r = await p.api('GET', `/api/v1/analytics/timeseries?${q}`);
    assert.equal(r.status, status, q);
    assert.match(`${r.body.detail} ${r.body.field ?? ''}`, message, q);
  }
  // Fleet-wide: not for app users.
  assert.equal((await owner.api('GET', `/analytics/timeseries?product=${product}&property=power&from=${from}`)).status, 403);
});

test('fleet event counts per device and the most failing commands of a product', async () => {
  const product = 'fleet_lock';
  const model = { properties: [], events: [{ id: 'unlock' }, { id: 'jammed' }], actions: [{ id: 'open' }, { id: 'lock' }, { id: 'slow' }] };
  assert.equal((await p.api('POST', '/api/v1/products', { key: product, name: 'Fleet lock', category: 'lock', model })).status, 201);
  const [x, y] = [await p.provision(product), await p.provision(product)];
  const cx = await p.connect(x.id, x.secret);
  const cy = await p.connect(y.id, y.secret);
  const now = Date.now();
  for (let i = 0; i < 5; i++) await cx.publishAsync(`devices/${x.id}/events`, JSON.stringify({ event: 'unlock', ts: now - 1000 - i }), { qos: 1 });
  await cx.publishAsync(`devices/${x.id}/events`, JSON.stringify({ event: 'jammed', ts: now - 500 }), { qos: 1 });
  await cy.publishAsync(`devices/${y.id}/events`, JSON.stringify({ event: 'unlock', ts: now - 900 }), { qos: 1 });
  // An event from before the range is not counted.
  await cy.publishAsync(`devices/${y.id}/events`, JSON.stringify({ event: 'unlock', ts: now - 3 * DAY }), { qos: 1 });
  const from = now - DAY;
  const events = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/analytics/events?product=${product}&from=${from}`);
      return r.body.items?.[0]?.total === 6 && r.body.items.length === 2 ? r.body : undefined;
    },
    5000,
    'events counted',
  );
  assert.deepEqual(events.items, [
    { deviceId: x.id, total: 6, events: { unlock: 5, jammed: 1 } },
    { deviceId: y.id, total: 1, events: { unlock: 1 } },
  ]);
  assert.equal((await p.api('GET', `/api/v1/analytics/events?product=${product}&from=${from}&top=1`)).body.items.length, 1);

  // The locks answer "open" with a failure one time in two, "lock" always well, and never "slow".
  let opens = 0;
  for (const [c, d] of [
    [cx, x],
    [cy, y],
  ] as const) {
    await c.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
    c.on('message', (_t, buf) => {
      const cmd = JSON.parse(buf.toString());
      if (cmd.action === 'slow') return;
      const ok = cmd.action !== 'open' || opens++ % 2 === 0;
      c.publish(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.id, ok, ...(ok ? {} : { error: 'jammed' }) }), { qos: 1 });
    });
  }
  await eventually(async () => (await p.device(x.id)).online && (await p.device(y.id)).online, 3000, 'online');
  for (const d of [x, y]) {
    for (let i = 0; i < 2; i++) assert.equal((await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'open' })).status === 504, false);
    assert.equal((await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'lock' })).body.ok, true);
  }
  assert.equal((await p.api('POST', `/api/v1/devices/${x.id}/commands`, { action: 'slow', timeoutMs: 200 })).status, 504);
  const commands = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/analytics/commands?product=${product}&from=${from}`);
      return r.body.items?.find((i: any) => i.action === 'slow')?.timeouts === 1 ? r.body : undefined;
    },
    5000,
    'the timeout is in the ledger',
  );
  assert.deepEqual(commands.items, [
    { action: 'open', total: 4, failed: 2, timeouts: 0, failureRate: 0.5 },
    { action: 'slow', total: 1, failed: 0, timeouts: 1, failureRate: 1 },
    { action: 'lock', total: 2, failed: 0, timeouts: 0, failureRate: 0 },
  ]);
  const bad = await p.api('GET', `/api/v1/analytics/commands?product=${product}&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z`);
  assert.equal(bad.status, 400);
  assert.match(bad.body.detail, /at most 31 days/);
  assert.match((await p.api('GET', `/api/v1/analytics/events?product=${product}`)).body.detail, /from is required/);
});
