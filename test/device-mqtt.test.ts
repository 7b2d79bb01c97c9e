import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

function connectError(opts: mqtt.IClientOptions): Promise<Error> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(p.mqttUrl, { reconnectPeriod: 0, connectTimeout: 3000, ...opts });
    c.once('connect', () => {
      c.end(true);
      reject(new Error('connection was accepted'));
    });
    c.once('error', (err) => {
      c.end(true);
      resolve(err);
    });
  });
}

test('wrong credentials are refused at CONNACK', async () => {
  const d = await p.provision('plug');
  const wrongSecret = await connectError({ clientId: d.id, username: d.id, password: 'not-the-secret' });
  assert.match(wrongSecret.message, /Bad username or password|Not authorized/i);
  const unknown = await connectError({ clientId: 'd_doesnotexist00', username: 'd_doesnotexist00', password: d.secret });
  assert.match(unknown.message, /Bad username or password|Not authorized/i);
  const otherClientId = await connectError({ clientId: 'someone-else', username: d.id, password: d.secret });
  assert.match(otherClientId.message, /Identifier rejected|Bad username/i);
  const noPassword = await connectError({ clientId: d.id, username: d.id });
  assert.match(noPassword.message, /Bad username or password|Not authorized/i);
  const dev = await p.api('GET', `/api/v1/devices/${d.id}`);
  assert.equal(dev.body.online, false);
});

test('a property report updates the shadow and records history', async () => {
  const d = await p.provision('light');
  const c = await p.connect(d.id, d.secret);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true, brightness: 40, colorTemp: 3000 }), { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: 55, ts: Date.now() }), { qos: 1 });
  const dev = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${d.id}`);
    return r.body.shadow.reported.brightness === 55 ? r.body : undefined;
  });
  assert.equal(dev.online, true);
  assert.ok(dev.lastSeen);
  assert.deepEqual(dev.shadow.reported, { on: true, brightness: 55, colorTemp: 3000 });
  assert.equal(dev.shadow.version, 2);
  const hist = await p.api('GET', `/api/v1/devices/${d.id}/history?property=brightness`);
  assert.equal(hist.status, 200);
  assert.deepEqual(
    hist.body.points.map((x: { value: number }) => x.value),
    [40, 55],
  );
  const agg = await p.api('GET', `/api/v1/devices/${d.id}/history?property=brightness&bucket=1h`);
  assert.equal(
    agg.body.buckets.reduce((n: number, b: { count: number }) => n + b.count, 0),
    2,
  );
  const bucket = agg.body.buckets.find((b: { max: number }) => b.max === 55) ?? agg.body.buckets[0];
  assert.ok(bucket.min <= 40 || bucket.max === 55);
  // colorTemp has no history flag: nothing is stored for it
  const none = await p.api('GET', `/api/v1/devices/${d.id}/history?property=colorTemp`);
  assert.deepEqual(none.body.points, []);
  const bad = await p.api('GET', `/api/v1/devices/${d.id}/history?property=nope`);
  assert.equal(bad.status, 400);
  assert.equal(bad.headers.get('content-type'), 'application/problem+json; charset=utf-8');
});

test('device events are validated and listed', async () => {
  const d = await p.provision('door-lock');
  const c = await p.connect(d.id, d.secret);
  await c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'unlock', params: { method: 'keypad', user: 'alice' } }), { qos: 1 });
  await c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'tamper' }), { qos: 1 });
  const events = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${d.id}/events`);
    return r.body.items.length === 2 ? r.body.items : undefined;
  });
  assert.deepEqual(events.map((e: { event: string }) => e.event).sort(), ['tamper', 'unlock']);
  assert.deepEqual(events.find((e: { event: string }) => e.event === 'unlock').params, { method: 'keypad', user: 'alice' });
});

test('invalid payloads get an error on the error topic, change nothing and crash nothing', async () => {
  const d = await p.provision('light');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: false, brightness: 10 }), { qos: 1 });
  const cases: Array<[string, string | Buffer, string, RegExp]> = [
    ['properties', '{not json', 'E_BAD_JSON', /not valid JSON/],
    ['properties', JSON.stringify({ brightness: 101 }), 'E_MODEL_MISMATCH', /above the maximum 100/],
    ['properties', JSON.stringify({ brightness: 'bright' }), 'E_MODEL_MISMATCH', /expected a number/],
    ['properties', JSON.stringify({ volume: 3 }), 'E_MODEL_MISMATCH', /unknown property "volume"/],
    ['properties', JSON.stringify([1, 2]), 'E_BAD_MESSAGE', /JSON object/],
    ['properties', JSON.stringify({ on: true, ts: 'yesterday' }), 'E_BAD_MESSAGE', /"ts"/],
    ['events', JSON.stringify({ event: 'explode' }), 'E_MODEL_MISMATCH', /unknown event/],
    ['events', JSON.stringify({ params: {} }), 'E_BAD_MESSAGE', /"event"/],
    ['commands/result', JSON.stringify({ id: 'c_unknown', ok: true }), 'E_UNKNOWN_COMMAND', /unknown command/],
    ['commands/result', JSON.stringify({ ok: true }), 'E_BAD_MESSAGE', /"id"/],
    ['properties', Buffer.alloc(70 * 1024, 0x20), 'E_PAYLOAD_TOO_LARGE', /exceeds the limit/],
  ];
  for (const [suffix, payload, code, message] of cases) {
    await c.publishAsync(`devices/${d.id}/${suffix}`, payload, { qos: 1 });
    const err = await box.next((m) => m.topic === `devices/${d.id}/errors`);
    assert.equal(err.payload.code, code, `for ${payload.toString().slice(0, 40)}`);
    assert.match(err.payload.message, message);
    assert.equal(err.payload.topic, `devices/${d.id}/${suffix}`);
  }
  const dev = await p.api('GET', `/api/v1/devices/${d.id}`);
  assert.deepEqual(dev.body.shadow.reported, { on: false, brightness: 10 });
  assert.equal(dev.body.shadow.version, 1);
  assert.equal(dev.body.online, true, 'the device stays connected');
  assert.equal((await p.api('GET', '/healthz', undefined, null)).status, 200);
});

test("ACL: a device cannot subscribe to or publish on another device's topics", async () => {
  const a = await p.provision('plug');
  const b = await p.provision('plug');
  const ca = await p.connect(a.id, a.secret);
  const granted = await new Promise<number[]>((resolve) => {
    ca.once('packetreceive', (packet) => {
      if (packet.cmd === 'suback') resolve(packet.granted as number[]);
    });
    ca.subscribe([`devices/${b.id}/commands`, 'devices/+/commands', '#', `devices/${a.id}/commands`], () => undefined);
  });
  assert.deepEqual(granted, [128, 128, 128, 0]);
  const cb = await p.connect(b.id, b.secret);
  await cb.publishAsync(`devices/${b.id}/properties`, JSON.stringify({ on: false }), { qos: 1 });
  const closed = new Promise<void>((resolve) => ca.once('close', () => resolve()));
  ca.publish(`devices/${b.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await closed;
  // b's own later report is applied after anything that got in before the connection closed
  await cb.publishAsync(`devices/${b.id}/properties`, JSON.stringify({ power: 5 }), { qos: 1 });
  const devB = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/devices/${b.id}`);
      return r.body.shadow.reported.power === 5 ? r : undefined;
    },
    3000,
    "b's own later report",
  );
  assert.equal(devB.body.shadow.reported.on, false, 'the forged report changed nothing');
  // publishing to a topic outside the protocol is refused too
  const ca2 = await p.connect(a.id, a.secret);
  const closed2 = new Promise<void>((resolve) => ca2.once('close', () => resolve()));
  ca2.publish('random/topic', 'x', { qos: 1 });
  await closed2;
});

test('MQTT over WebSocket at /mqtt', async () => {
  const d = await p.provision('plug');
  const ws = mqtt.connect(`ws://127.0.0.1:${p.hearth.httpPort}/mqtt`, { clientId: d.id, username: d.id, password: d.secret, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    ws.once('connect', () => resolve());
    ws.once('error', reject);
  });
  await ws.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true, power: 12.5 }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.shadow.reported.power === 12.5);
  await ws.endAsync();
});

test('device times are kept in whole milliseconds, a time no date can hold is refused, and neither stops the writes', async () => {
  const d = await p.provision('plug');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ power: 1, ts: 1e300 }), { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${d.id}/errors`);
  assert.equal(err.payload.code, 'E_BAD_MESSAGE');
  assert.match(err.payload.message, /"ts"/);
  // what a device computing `time.time() * 1000` sends
  const t = Date.now() - 10_000;
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ power: 12.5, ts: t + 0.6 }), { qos: 1 });
  await c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'overload', params: { power: 4100 }, ts: t + 1000.4 }), { qos: 1 });
  // not a time: the event keeps the time it arrived
  await c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'overload', params: { power: 4200 }, ts: -5.5 }), { qos: 1 });
  const events = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/devices/${d.id}/events`);
      return r.body.items?.length === 2 ? r.body.items : undefined;
    },
    3000,
    'both events',
  );
  assert.deepEqual(
    events.map((e: { params: { power: number } }) => e.params.power),
    [4200, 4100],
  );
  assert.ok(Date.parse(events[0].ts) > t + 5000, events[0].ts);
  assert.equal(events[1].ts, new Date(t + 1000).toISOString());
  const hist = await p.api('GET', `/api/v1/devices/${d.id}/history?property=power`);
  assert.deepEqual(hist.body.points, [{ ts: new Date(t + 1).toISOString(), value: 12.5 }]);
  const dev = await p.device(d.id);
  assert.equal(dev.shadow.reported.power, 12.5);
  assert.equal(dev.shadow.updatedAt, new Date(t + 1).toISOString());
});
