/**
 * What the device edge accepts besides sizes: only MQTT 3.1.1, no retained messages, no JSON
 * nested without bound.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { startPlatform, inbox, eventually, type Platform } from '../helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

/** Sends one CONNECT and returns every byte the server answered until it closed the connection. */
function rawConnect(bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const s = tcpConnect(Number(new URL(p.mqttUrl).port), '127.0.0.1', () => s.write(bytes));
    s.on('data', (b) => got.push(b));
    s.on('error', () => undefined);
    s.once('close', () => resolve(Buffer.concat(got)));
    setTimeout(() => {
      s.destroy();
      reject(new Error(`not closed; got ${Buffer.concat(got).toString('hex')}`));
    }, 5000);
  });
}

function connectBytes(protocolId: 'MQTT' | 'MQIsdp', level: number, id: string, secret: string): Buffer {
  const b = mqttPacket.generate({
    cmd: 'connect',
    protocolId,
    protocolVersion: 4,
    clientId: id,
    username: id,
    password: Buffer.from(secret),
    clean: true,
    keepalive: 30,
  });
  // The level byte follows the protocol name (2-byte length + name) after the 2-byte fixed header.
  b[2 + 2 + protocolId.length] = level;
  return b;
}

test('only MQTT 3.1.1 is spoken: MQTT 3.1, MQTT 5 and bridge mode get CONNACK 1 (unacceptable protocol version), even with good credentials', async () => {
  const d = await p.provision('plug');
  const refused = Buffer.from([0x20, 0x02, 0x00, 0x01]);
  for (const [name, protocolId, level] of [
    ['MQTT 3.1', 'MQIsdp', 3],
    ['level 3 named MQTT', 'MQTT', 3],
    ['MQTT 3.1.1 named MQIsdp', 'MQIsdp', 4],
    ['bridge mode', 'MQTT', 0x84],
  ] as const) {
    assert.deepEqual(await rawConnect(connectBytes(protocolId, level, d.id, d.secret)), refused, name);
  }
  const v5 = mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 5,
    clientId: d.id,
    username: d.id,
    password: Buffer.from(d.secret),
    clean: true,
    keepalive: 30,
  });
  assert.deepEqual(await rawConnect(v5), refused, 'MQTT 5');
  assert.equal((await p.device(d.id)).online, false, 'none of them connected');
  // the same credentials at level 4 are accepted
  const ok = await rawConnect(Buffer.concat([connectBytes('MQTT', 4, d.id, d.secret), mqttPacket.generate({ cmd: 'disconnect' })]));
  assert.deepEqual(ok, Buffer.from([0x20, 0x02, 0x00, 0x00]));
});

test('retained publishes are refused with E_RETAIN_NOT_SUPPORTED, change nothing, and are never kept or replayed', async () => {
  const d = await p.provision('light');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: 5 }), { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: 90 }), { qos: 1, retain: true });
  const err = await box.next((m) => m.topic === `devices/${d.id}/errors`);
  assert.equal(err.payload.code, 'E_RETAIN_NOT_SUPPORTED');
  assert.equal(err.payload.topic, `devices/${d.id}/properties`);
  // over the size limit as well: refused, not stored either
  for (let i = 0; i < 3; i++) await c.publishAsync(`devices/${d.id}/events`, Buffer.alloc(200 * 1024, 0x20), { qos: 1, retain: true });
  for (let i = 0; i < 3; i++) assert.equal((await box.next((m) => m.topic === `devices/${d.id}/errors`)).payload.code, 'E_RETAIN_NOT_SUPPORTED');
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 0, retain: true });
  assert.equal((await box.next((m) => m.topic === `devices/${d.id}/errors`)).payload.code, 'E_RETAIN_NOT_SUPPORTED');
  await c.endAsync();

  const dev = await p.device(d.id);
  assert.deepEqual(dev.shadow.reported, { brightness: 5 });
  // a later subscriber of every topic of the device gets nothing replayed
  const later = await p.connect(d.id, d.secret);
  const replayed: string[] = [];
  later.on('message', (topic, _payload, packet) => {
    if (packet.retain) replayed.push(topic);
  });
  await later.subscribeAsync(`devices/${d.id}/#`, { qos: 1 });
  await afterReplay(later, d.id);
  assert.deepEqual(replayed, []);
});

/**
 * Returns once anything the broker would replay on a subscription has arrived: a bad message the
 * client sends after subscribing is answered on its errors topic (which the subscription covers),
 * and that answer comes after the replay.
 */
async function afterReplay(c: import('mqtt').MqttClient, deviceId: string): Promise<void> {
  const answered = new Promise<void>((resolve) =>
    c.on('message', (topic, payload) => {
      if (topic === `devices/${deviceId}/errors` && JSON.parse(payload.toString()).code === 'E_BAD_JSON') resolve();
    }),
  );
  await c.publishAsync(`devices/${deviceId}/properties`, 'not json', { qos: 1 });
  await answered;
}

test('a will with the retain flag is refused like any retained publish, never stored', async () => {
  const d = await p.provision('plug');
  const c = await p.connect(d.id, d.secret, {
    will: { topic: `devices/${d.id}/properties`, payload: Buffer.from(JSON.stringify({ on: false })), qos: 1, retain: true },
  });
  (c.stream as import('node:net').Socket).destroy();
  await p.until(d.id, (x) => !x.online, 'offline');
  const later = await p.connect(d.id, d.secret);
  const replayed: string[] = [];
  later.on('message', (topic, _payload, packet) => {
    if (packet.retain) replayed.push(topic);
  });
  await later.subscribeAsync(`devices/${d.id}/#`, { qos: 1 });
  await afterReplay(later, d.id);
  assert.deepEqual(replayed, []);
  assert.deepEqual((await p.device(d.id)).shadow.reported, {});
});

test('JSON nested deeper than 32 levels is refused with E_BAD_MESSAGE; 32 levels are fine', async () => {
  const d = await p.provision('light');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  const deep = `{"brightness":1,"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
  await c.publishAsync(`devices/${d.id}/properties`, deep, { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${d.id}/errors`);
  assert.equal(err.payload.code, 'E_BAD_MESSAGE');
  assert.match(err.payload.message, /deeper than 32 levels/);
  // at the limit it reaches the model check (which refuses the unknown property, not the depth)
  const atLimit = `{"x":${'['.repeat(31)}${']'.repeat(31)}}`;
  await c.publishAsync(`devices/${d.id}/properties`, atLimit, { qos: 1 });
  assert.equal((await box.next((m) => m.topic === `devices/${d.id}/errors`)).payload.code, 'E_MODEL_MISMATCH');
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: 7 }), { qos: 1 });
  await eventually(async () => (await p.device(d.id)).shadow.reported.brightness === 7);
  assert.equal((await p.device(d.id)).shadow.version, 1);
});
