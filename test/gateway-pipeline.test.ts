import { test, before, after, beforeEach } from 'node:test';
import { foreignSubject } from '../src/core/bus/events.ts';
import { subjects, type UplinkMessage } from '../src/core/bus/subjects.ts';
import assert from 'node:assert/strict';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';

/**
 * The message gateway's controller and router, end to end: devices over real MQTT, the
 * configuration over the REST API, and routed messages observed where a NATS target sends them
 * (the platform's bus).
 */
let p: Platform;
/** Messages published on `partner.*` subjects by NATS targets. */
const seen: Array<{ subject: string; data: any; headers: Record<string, string> }> = [];

before(async () => {
  p = await startPlatform();
  p.hearth.bus.subscribe(foreignSubject('partner.>'), (m) => void seen.push({ subject: m.subject, data: m.data, headers: { ...m.headers } }));
});
after(async () => {
  await p.stop();
});
/** Each test starts from the default filters, no lanes and only the device core's route. */
beforeEach(async () => {
  for (const r of (await p.api('GET', '/api/v1/routes')).body.items) if (r.id !== 'device-core') await p.api('DELETE', `/api/v1/routes/${r.id}`);
  assert.equal((await p.api('PUT', '/api/v1/gateway/filters', { filters: [{ type: 'validate' }] })).status, 200);
  assert.equal((await p.api('PUT', '/api/v1/gateway/lanes', { lanes: [] })).status, 200);
  seen.length = 0;
});

async function setFilters(filters: unknown[]): Promise<void> {
  const r = await p.api('PUT', '/api/v1/gateway/filters', { filters });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

async function addRoute(route: object): Promise<any> {
  const r = await p.api('POST', '/api/v1/routes', route);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

async function device(product: string) {
  const d = await p.provision(product);
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  return { ...d, c, box };
}

async function historyCount(id: string, property: string): Promise<number> {
  return (await p.api('GET', `/api/v1/devices/${id}/history?property=${property}&limit=1000`)).body.points.length;
}

test("the default configuration keeps today's behaviour, and the gateway is counted", async () => {
  const cfg = await p.api('GET', '/api/v1/gateway/config');
  assert.equal(cfg.status, 200);
  assert.deepEqual(cfg.body.routes, [{ id: 'device-core', name: 'device-core', enabled: true, match: {}, targets: [{ type: 'builtin', handler: 'device' }] }]);
  assert.deepEqual(cfg.body.filters, [{ type: 'validate' }]);
  const d = await device('light');
  await d.c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true, brightness: 30 }), { qos: 1 });
  await p.until(d.id, (x) => x.shadow.reported.brightness === 30, 'the report');
  await d.c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: 300 }), { qos: 1 });
  const err = await d.box.next((m) => m.topic.endsWith('/errors'));
  assert.equal(err.payload.code, 'E_MODEL_MISMATCH');
  assert.match(err.payload.message, /brightness/);
  const metrics = await (await fetch(`${p.httpUrl}/metrics`)).text();
  assert.match(metrics, /^hearth_gateway_filter_total\{filter="validate",effect="pass"\} [1-9]/m);
  assert.match(metrics, /^hearth_gateway_filter_total\{filter="validate",effect="drop"\} [1-9]/m);
  assert.match(metrics, /^hearth_gateway_routed_total\{route="device-core"\} [1-9]/m);
});

test("a deny-list refuses a device's reports and the device hears why on its error topic", async () => {
  const bad = await device('light');
  const good = await device('light');
  await setFilters([{ type: 'validate' }, { type: 'list', mode: 'deny', devices: [bad.id] }]);
  await bad.c.publishAsync(`devices/${bad.id}/properties`, JSON.stringify({ brightness: 10 }), { qos: 1 });
  const err = await bad.box.next((m) => m.topic.endsWith('/errors'));
  assert.equal(err.payload.code, 'E_FILTERED');
  assert.match(err.payload.message, new RegExp(`device "${bad.id}" is on the deny-list`));
  assert.equal(err.payload.topic, `devices/${bad.id}/properties`);
  await good.c.publishAsync(`devices/${good.id}/properties`, JSON.stringify({ brightness: 11 }), { qos: 1 });
  await p.until(good.id, (x) => x.shadow.reported.brightness === 11, "the other device's report");
  assert.deepEqual((await p.device(bad.id)).shadow.reported, {}, 'nothing of the denied device was applied');
});

test('a rate limit holds under a burst: drop refuses the excess, tag marks it', async () => {
  await setFilters([{ type: 'validate' }, { type: 'rateLimit', scope: 'device', perSecond: 1, burst: 3, action: 'drop' }]);
  const d = await device('light');
  await Promise.all(Array.from({ length: 10 }, (_, i) => d.c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: i + 1 }), { qos: 1 })));
  const refusals = () => d.box.messages.filter((m) => m.topic.endsWith('/errors'));
  // Every message is either applied or refused.
  const points = await eventually(
    async () => {
      const n = await historyCount(d.id, 'brightness');
      return n + refusals().length === 10 ? n : undefined;
    },
    3000,
    'every message applied or refused',
  );
  assert.ok(points >= 3 && points <= 5, `3 in the burst, one more per second: ${points}`);
  assert.ok(
    refusals().every((m) => m.payload.code === 'E_RATE_LIMITED'),
    refusals()
      .map((m) => m.payload.code)
      .join(),
  );
  assert.match(refusals()[0].payload.message, /over 1\/s \(burst 3\) for device/);

  await setFilters([{ type: 'validate' }, { type: 'rateLimit', scope: 'device', perSecond: 1, burst: 2, action: 'tag', tag: 'rate=exceeded' }]);
  await addRoute({ name: 'throttled', match: { tags: { rate: 'exceeded' } }, targets: [{ type: 'nats', subject: 'partner.throttled' }] });
  const t = await device('light');
  await Promise.all(Array.from({ length: 6 }, (_, i) => t.c.publishAsync(`devices/${t.id}/properties`, JSON.stringify({ brightness: i + 1 }), { qos: 1 })));
  await eventually(async () => (await historyCount(t.id, 'brightness')) === 6, 3000, 'every tagged report applied too');
  const tagged = seen.filter((m) => m.subject === 'partner.throttled' && m.data.deviceId === t.id);
  assert.ok(tagged.length >= 2 && tagged.length <= 4, `the excess went to the route for tagged messages: ${tagged.length}`);
  assert.ok(tagged.every((m) => m.data.tags.rate === 'exceeded'));
  assert.equal(t.box.messages.filter((m) => m.topic.endsWith('/errors')).length, 0);
});

test("a rate limit with delay applies every message, at the limit's pace", async () => {
  await setFilters([{ type: 'validate' }, { type: 'rateLimit', scope: 'device', perSecond: 10, burst: 2, action: 'delay' }]);
  const d = await device('light');
  const started = Date.now();
  await Promise.all(Array.from({ length: 8 }, (_, i) => d.c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: i + 1 }), { qos: 1 })));
  await eventually(async () => (await historyCount(d.id, 'brightness')) === 8, 5000, 'all eight applied');
  assert.ok(Date.now() - started >= 500, 'six messages over the burst at 10/s take at least 0.5 s');
  assert.equal(d.box.messages.filter((m) => m.topic.endsWith('/errors')).length, 0, 'none refused');
  const metrics = await (await fetch(`${p.httpUrl}/metrics`)).text();
  assert.match(metrics, /^hearth_gateway_filter_total\{filter="rateLimit",effect="delay"\} [1-9]/m);
});

test('a batch of uplinks whose messages a rate limit delays: those go again alone, none is handled twice', async () => {
  await setFilters([{ type: 'validate' }, { type: 'rateLimit', scope: 'source', perSecond: 10, burst: 2, action: 'delay' }]);
  const devices = await Promise.all(Array.from({ length: 6 }, () => p.provision('light')));
  const handled = async () => Number(/^hearth_ingest_lag_seconds_count (\d+)/m.exec(await (await fetch(`${p.httpUrl}/metrics`)).text())?.[1] ?? 0);
  const before = await handled();
  // As a gateway stores the reports of one shard received together (MQTT clients' turns are not ours to arrange).
  const shard = 7;
  const batch: UplinkMessage[] = devices.map((d, i) => ({
    id: `m_batchtest_${i}`,
    deviceId: d.id,
    via: d.id,
    kind: 'properties',
    topic: `devices/${d.id}/properties`,
    payload: { brightness: i + 1 },
    receivedAt: Date.now(),
  }));
  await p.hearth.bus.publishDurable(subjects.upBatch(shard), { batch }, { msgId: 'batch.m_batchtest_0' });
  for (const d of devices) await eventually(async () => (await historyCount(d.id, 'brightness')) === 1, 5000, `${d.id} applied`);
  // Nothing more comes: a batch handled again whole would handle its two undelayed reports twice.
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal((await handled()) - before, 6, 'each report handled once');
  const metrics = await (await fetch(`${p.httpUrl}/metrics`)).text();
  assert.match(metrics, /^hearth_gateway_filter_total\{filter="rateLimit",effect="delay"\} [1-9]/m);
});

test('classification tags a smoke event class=alarm, and a route takes the alarms', async () => {
  await setFilters([{ type: 'validate' }, { type: 'classify', rules: [{ when: { kind: 'events', event: ['smoke', 'leak'] }, set: { class: 'alarm' } }] }]);
  const route = await addRoute({
    name: 'alarms',
    match: { topic: 'devices/+/events', tags: { class: 'alarm' } },
    targets: [{ type: 'nats', subject: 'partner.alarms', template: { alarm: '{{payload.event}}', device: '{{deviceId}}', class: '{{tags.class}}' } }],
  });
  assert.match(route.id, /^rt_/);
  const d = await device('smoke-sensor');
  await d.c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'clear' }), { qos: 1 });
  await d.c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'smoke' }), { qos: 1 });
  await eventually(() => seen.find((m) => m.subject === 'partner.alarms'), 3000, 'the alarm');
  assert.deepEqual(
    seen.filter((m) => m.subject === 'partner.alarms').map((m) => m.data),
    [{ alarm: 'smoke', device: d.id, class: 'alarm' }],
  );
  // The device core still got both.
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}/events`)).body.items.length === 2, 3000, 'both events in the log');
});

test('a dry run shows the steps, tags, lane and targets, and changes nothing', async () => {
  await setFilters([
    { type: 'validate' },
    { type: 'rateLimit', scope: 'device', perSecond: 1, burst: 1, action: 'drop' },
    { type: 'classify', rules: [{ when: { event: 'smoke' }, set: { class: 'alarm' } }] },
  ]);
  assert.equal((await p.api('PUT', '/api/v1/gateway/lanes', { lanes: [{ name: 'gray', devices: ['d_graytester0000'] }] })).status, 200);
  const r = await addRoute({
    name: 'alarms',
    match: { tags: { class: 'alarm' } },
    targets: [
      { type: 'webhook', url: 'https://partner.example/alarms', secret: 's' },
      { type: 'webhook', url: 'https://gray.partner.example/alarms', lane: 'gray' },
    ],
  });
  const d = await p.provision('smoke-sensor');
  const sample = { deviceId: d.id, kind: 'events', payload: { event: 'smoke' } };
  for (let i = 0; i < 2; i++) {
    const dry = await p.api('POST', '/api/v1/gateway/dry-run', sample);
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual(dry.body.filters, [
      { filter: 'validate', effect: 'pass' },
      { filter: 'rateLimit', effect: 'pass' },
      { filter: 'classify', effect: 'tagged', detail: 'class=alarm' },
    ]);
    assert.equal(dry.body.action, 'pass');
    assert.deepEqual(dry.body.tags, { class: 'alarm' });
    assert.equal(dry.body.lane, null);
    assert.deepEqual(
      dry.body.routes.map((x: any) => [x.id, x.targets.map((t: any) => (t.target.type === 'builtin' ? 'builtin' : t.target.url))]),
      [
        ['device-core', ['builtin']],
        [r.id, ['https://partner.example/alarms']],
      ],
    );
    assert.equal(dry.body.routes[1].targets[0].body.payload.event, 'smoke');
  }
  const gray = await p.api('POST', '/api/v1/gateway/dry-run', { ...sample, deviceId: 'd_graytester0000', product: 'smoke-sensor' });
  assert.equal(gray.body.lane, 'gray');
  assert.deepEqual(
    gray.body.routes[1].targets.map((t: any) => t.target.url),
    ['https://gray.partner.example/alarms'],
  );
  const bad = await p.api('POST', '/api/v1/gateway/dry-run', { ...sample, payload: { event: 'explode' } });
  assert.equal(bad.body.action, 'drop');
  assert.equal(bad.body.code, 'E_MODEL_MISMATCH');
  assert.deepEqual(bad.body.routes, []);
  assert.equal((await p.api('POST', '/api/v1/gateway/dry-run', { deviceId: 'd_nobody000000', kind: 'events', payload: {} })).body.code, 'E_DEVICE_NOT_FOUND');
});

test('configuration changes apply live: routes, lanes shifted by percentage, versions kept', async () => {
  const before = (await p.api('GET', '/api/v1/gateway/config')).body.version;
  const d = await device('light');
  const send = async (brightness: number) => {
    await d.c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness }), { qos: 1 });
    await p.until(d.id, (x) => x.shadow.reported.brightness === brightness, `brightness ${brightness}`);
  };
  await send(1);
  assert.equal(seen.length, 0);
  const copy = {
    name: 'copy',
    match: { kind: 'properties', product: 'light' },
    targets: [
      { type: 'nats', subject: 'partner.base' },
      { type: 'nats', subject: 'partner.gray', lane: 'gray' },
    ],
  };
  // The lane a target names must exist: refused first, accepted once the lane is there.
  assert.equal((await p.api('POST', '/api/v1/routes', copy)).status, 400);
  assert.equal((await p.api('PUT', '/api/v1/gateway/lanes', { lanes: [{ name: 'gray', percent: 0 }] })).status, 200);
  const route = await addRoute(copy);
  assert.ok(route.version > before);
  await send(2);
  await eventually(() => seen.find((m) => m.subject === 'partner.base' && m.data.payload.brightness === 2), 3000, 'the baseline copy');
  assert.equal(seen.filter((m) => m.subject === 'partner.gray').length, 0);
  assert.equal((await p.api('PUT', '/api/v1/gateway/lanes', { lanes: [{ name: 'gray', percent: 100 }] })).status, 200);
  await send(3);
  const gray = await eventually(() => seen.find((m) => m.subject === 'partner.gray'), 3000, 'the gray copy');
  assert.equal(gray.data.tags.lane, 'gray');
  assert.equal(gray.headers['x-hearth-lane'], 'gray');
  assert.equal(seen.filter((m) => m.subject === 'partner.base' && m.data.payload.brightness === 3).length, 0, "the baseline no longer gets the lane's devices");
  // Disabled, the route takes nothing.
  const upd = await p.api('PUT', `/api/v1/routes/${route.id}`, {
    name: 'copy',
    enabled: false,
    match: { kind: 'properties' },
    targets: [{ type: 'nats', subject: 'partner.base' }],
  });
  assert.equal(upd.status, 200, JSON.stringify(upd.body));
  assert.equal(upd.body.enabled, false);
  await send(4);
  assert.equal(seen.filter((m) => m.data.payload?.brightness === 4).length, 0);
  assert.equal((await p.api('GET', `/api/v1/routes/${route.id}`)).body.enabled, false);
  const versions = (await p.api('GET', '/api/v1/gateway/config/versions')).body.items;
  assert.ok(versions[0].version >= route.version + 2);
  assert.match(versions[0].createdBy, /^user:u_/);
  assert.equal((await p.api('DELETE', `/api/v1/routes/${route.id}`)).status, 200);
  assert.equal((await p.api('GET', `/api/v1/routes/${route.id}`)).status, 404);
});

test('invalid configuration is refused with a message naming the bad part; only the operator may change it', async () => {
  const version = (await p.api('GET', '/api/v1/gateway/config')).body.version;
  const url = await p.api('POST', '/api/v1/routes', { name: 'x', match: {}, targets: [{ type: 'webhook', url: 'ftp://partner.example' }] });
  assert.equal(url.status, 400);
  assert.equal(url.body.code, 'E_VALIDATION');
  assert.equal(url.body.field, 'body.targets[0].url');
  const kind = await p.api('POST', '/api/v1/routes', { name: 'x', match: {}, targets: [{ type: 'smtp', to: 'x' }] });
  assert.equal(kind.body.field, 'body.targets[0].type');
  assert.match(kind.body.detail, /must be one of builtin, webhook, nats, amqp/);
  const topic = await p.api('POST', '/api/v1/routes', { name: 'x', match: { topic: 'devices/#/events' }, targets: [{ type: 'builtin', handler: 'device' }] });
  assert.equal(topic.body.field, 'body.match.topic');
  const lane = await p.api('POST', '/api/v1/routes', { name: 'x', match: {}, targets: [{ type: 'nats', subject: 'a.b', lane: 'gray' }] });
  assert.equal(lane.status, 400);
  assert.equal(lane.body.field, 'body.targets[0].lane');
  assert.match(lane.body.detail, /no lane "gray" is defined/);
  const filter = await p.api('PUT', '/api/v1/gateway/filters', {
    filters: [{ type: 'validate' }, { type: 'rateLimit', scope: 'device', perSecond: 0, burst: 1, action: 'drop' }],
  });
  assert.equal(filter.status, 400);
  assert.equal(filter.body.field, 'filters[1].perSecond');
  const lanes = await p.api('PUT', '/api/v1/gateway/lanes', { lanes: [{ name: 'gray', percent: 140 }] });
  assert.equal(lanes.body.field, 'lanes[0].percent');
  assert.equal((await p.api('GET', '/api/v1/gateway/config')).body.version, version, 'nothing was stored');
  assert.equal((await p.api('GET', '/api/v1/routes/rt_nothing')).status, 404);

  const s = await p.api('POST', '/api/v1/auth/signup', { email: 'gw-user@example.test', password: 'password-of-gw-user' }, null);
  assert.equal(s.status, 201);
  const user = (await p.api('POST', '/api/v1/auth/login', { email: 'gw-user@example.test', password: 'password-of-gw-user' }, null)).body.token;
  assert.equal((await p.api('GET', '/api/v1/routes', undefined, user)).status, 403);
  assert.equal((await p.api('POST', '/api/v1/routes', { name: 'x', match: {}, targets: [{ type: 'builtin', handler: 'device' }] }, user)).status, 403);
  assert.equal((await p.api('PUT', '/api/v1/gateway/filters', { filters: [] }, user)).status, 403);
});
