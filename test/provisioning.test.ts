/**
 * Zero-touch provisioning: a product's provisioning secret lets a device register itself over
 * HTTP (POST /api/v1/provision) or MQTT (provision/{hwid}/request) and get its id and secret once.
 * Replays, forged signatures, stale timestamps, hwids off the allow-list (CSV import) and the
 * product's limit are refused. Through real HTTP and MQTT.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { connectDevice, inbox, startPlatform, type Platform } from './helpers/platform.ts';
import { signProvisionRequest } from '../src/identity/provisioning-service.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p?.stop();
});

function signed(secret: string, product: string, hwid: string, over: { timestamp?: number; nonce?: string } = {}) {
  const body = { product, hwid, timestamp: over.timestamp ?? Math.floor(Date.now() / 1000), nonce: over.nonce ?? randomBytes(12).toString('hex') };
  return { ...body, signature: signProvisionRequest(secret, body) };
}

async function enable(product: string, settings: Record<string, unknown> = {}): Promise<string> {
  const r = await p.api('PUT', `/api/v1/products/${product}/provisioning`, settings);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.secret as string;
}

async function csv(product: string, text: string) {
  const res = await fetch(`${p.httpUrl}/api/v1/products/${product}/factory-records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${p.token}`, 'content-type': 'text/csv' },
    body: text,
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function makeProduct(key: string): Promise<void> {
  const r = await p.api('POST', '/api/v1/products', {
    key,
    name: key,
    category: 'sensor',
    model: { properties: [{ id: 'temp', type: 'number', access: 'r' }] },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

test('a device provisions itself over HTTP once; a replay, a forged signature and a stale timestamp are refused', async () => {
  await makeProduct('zt-a');
  const secret = await enable('zt-a');
  assert.ok(secret.length >= 40);
  const settings = await p.api('GET', '/api/v1/products/zt-a/provisioning');
  assert.equal(settings.body.secret, undefined, 'the secret is shown once');
  const req = signed(secret, 'zt-a', 'ZT-A-0001');
  const r = await p.api('POST', '/api/v1/provision', req, null);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.match(r.body.id, /^d_/);
  assert.equal(r.body.hwid, 'ZT-A-0001');
  const c = await connectDevice(p.mqttUrl, r.body.id, r.body.secret);
  await c.publishAsync(`devices/${r.body.id}/properties`, JSON.stringify({ temp: 21.5 }), { qos: 1 });
  await p.until(r.body.id, (x) => x.shadow?.reported?.temp === 21.5, 'the provisioned device reports');
  await c.endAsync();

  const replay = await p.api('POST', '/api/v1/provision', req, null);
  assert.equal(replay.status, 409);
  assert.equal(replay.body.code, 'E_REPLAYED');
  const forged = await p.api('POST', '/api/v1/provision', { ...signed('not-the-secret', 'zt-a', 'ZT-A-0002') }, null);
  assert.equal(forged.status, 401);
  assert.equal(forged.body.code, 'E_BAD_SIGNATURE');
  const tampered = { ...signed(secret, 'zt-a', 'ZT-A-0003'), hwid: 'ZT-A-0004' };
  assert.equal((await p.api('POST', '/api/v1/provision', tampered, null)).body.code, 'E_BAD_SIGNATURE');
  const stale = await p.api('POST', '/api/v1/provision', signed(secret, 'zt-a', 'ZT-A-0005', { timestamp: Math.floor(Date.now() / 1000) - 3600 }), null);
  assert.equal(stale.status, 401);
  assert.match(stale.body.detail, /timestamp/);
  const again = await p.api('POST', '/api/v1/provision', signed(secret, 'zt-a', 'ZT-A-0001'), null);
  assert.equal(again.status, 409);
  assert.equal(again.body.code, 'E_CONFLICT', 'an identity is given once');
  const unknown = await p.api('POST', '/api/v1/provision', signed(secret, 'zt-nope', 'X-1'), null);
  assert.equal(unknown.body.code, 'E_BAD_SIGNATURE', 'an unknown product looks like a wrong signature');
  for (const bad of [
    { ...req, nonce: 'short' },
    { ...req, hwid: 'a/b' },
    { ...req, extra: 1 },
    { ...req, signature: 'zz' },
  ]) {
    assert.equal((await p.api('POST', '/api/v1/provision', bad, null)).status, 400, JSON.stringify(bad));
  }
  const devices = await p.api('GET', '/api/v1/devices?product=zt-a');
  assert.equal(devices.body.total, 1, 'only the one device was made');
  // Rotating the provisioning secret: the old one stops working.
  const next = (await p.api('PUT', '/api/v1/products/zt-a/provisioning', { rotateSecret: true })).body.secret;
  assert.ok(next && next !== secret);
  assert.equal((await p.api('POST', '/api/v1/provision', signed(secret, 'zt-a', 'ZT-A-0010'), null)).status, 401);
  assert.equal((await p.api('POST', '/api/v1/provision', signed(next, 'zt-a', 'ZT-A-0010'), null)).status, 201);
});

test('the allow-list (factory records from CSV) and the product limit apply', async () => {
  await makeProduct('zt-b');
  const secret = await enable('zt-b', { allowListOnly: true, limit: 2 });
  // Bad CSVs say what is wrong and import nothing.
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['serial,mac\nS1,M1\n', /"hwid" column/],
    ['hwid,serial\nB-1,S1\nB-1,S2\n', /line 3: hwid "B-1" is also on line 2/],
    ['hwid,serial\nB-1\n', /line 2: 1 fields where the header has 2/],
    ['hwid\nbad/id\n', /line 2: hwid "bad\/id"/],
    ['hwid,serial\n"B-1,S1\n', /not closed/],
  ];
  for (const [text, re] of bad) {
    const r = await csv('zt-b', text);
    assert.equal(r.status, 400, text);
    assert.match(r.body.detail, re);
  }
  assert.equal((await p.api('GET', '/api/v1/products/zt-b/factory-records')).body.total, 0);
  const ok = await csv('zt-b', '\uFEFFhwid,serial,mac,batch\r\nB-1,SN-1,00:11:22:33:44:01,7\r\n"B-2","SN-2, rev ""b""",00:11:22:33:44:02,7\r\nB-3,SN-3,,\r\n');
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body, { imported: 3, total: 3 });
  const records = (await p.api('GET', '/api/v1/products/zt-b/factory-records')).body.items;
  assert.deepEqual(records[1], {
    hwid: 'B-2',
    serial: 'SN-2, rev "b"',
    mac: '00:11:22:33:44:02',
    attributes: { batch: '7' },
    deviceId: null,
    provisionedAt: null,
  });

  const off = await p.api('POST', '/api/v1/provision', signed(secret, 'zt-b', 'B-99'), null);
  assert.equal(off.status, 403);
  assert.match(off.body.detail, /allow-list/);
  const one = await p.api('POST', '/api/v1/provision', signed(secret, 'zt-b', 'B-1'), null);
  assert.equal(one.status, 201);
  assert.equal((await p.api('POST', '/api/v1/provision', signed(secret, 'zt-b', 'B-2'), null)).status, 201);
  const over = await p.api('POST', '/api/v1/provision', signed(secret, 'zt-b', 'B-3'), null);
  assert.equal(over.status, 403);
  assert.match(over.body.detail, /limit of 2/);
  const after = (await p.api('GET', '/api/v1/products/zt-b/factory-records')).body.items;
  assert.equal(after[0].deviceId, one.body.id);
  assert.equal((await p.api('GET', '/api/v1/products/zt-b/provisioning')).body.provisioned, 2);
  // Raising the limit lets the next one in.
  await p.api('PUT', '/api/v1/products/zt-b/provisioning', { limit: 3 });
  assert.equal((await p.api('POST', '/api/v1/provision', signed(secret, 'zt-b', 'B-3'), null)).status, 201);
});

function provisioningSession(hwid: string): Promise<MqttClient> {
  const c = mqtt.connect(p.mqttUrl, { clientId: hwid, username: 'provision', reconnectPeriod: 0, connectTimeout: 5000 });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

test('over MQTT: provision/{hwid}/request answered on provision/{hwid}/response; a replay gets an error there', async () => {
  await makeProduct('zt-c');
  const secret = await enable('zt-c');
  const hwid = 'C-0001';
  const c = await provisioningSession(hwid);
  const box = inbox(c);
  await c.subscribeAsync(`provision/${hwid}/response`, { qos: 1 });
  const { product: _p, hwid: _h, ...req } = signed(secret, 'zt-c', hwid);
  await c.publishAsync(`provision/${hwid}/request`, JSON.stringify({ product: 'zt-c', ...req }), { qos: 1 });
  const answer = (await box.next((m) => m.topic === `provision/${hwid}/response`)).payload;
  assert.match(answer.id, /^d_/);
  assert.ok(answer.secret);
  assert.deepEqual(answer.mqtt, { clientId: answer.id, username: answer.id });
  await c.publishAsync(`provision/${hwid}/request`, JSON.stringify({ product: 'zt-c', ...req }), { qos: 1 });
  assert.equal((await box.next((m) => m.topic === `provision/${hwid}/response`)).payload.error.code, 'E_REPLAYED');
  await c.publishAsync(`provision/${hwid}/request`, 'not json', { qos: 1 });
  assert.equal((await box.next((m) => m.topic === `provision/${hwid}/response`)).payload.error.code, 'E_VALIDATION');
  // A provisioning session may not touch device topics or other hardware ids.
  await assert.rejects(c.subscribeAsync(`devices/${answer.id}/commands`, { qos: 1 }), /Subscribe error/);
  await assert.rejects(c.subscribeAsync('provision/C-0002/response', { qos: 1 }), /Subscribe error/);
  await c.endAsync();
  // The device connects with what it was given.
  const d = await connectDevice(p.mqttUrl, answer.id, answer.secret);
  // A provisioning session named like the device id cannot take the device's session over.
  const squatter = await provisioningSession(answer.id);
  // A round trip on the device's session after the squatter's CONNACK: a taken-over session would fail it.
  await d.publishAsync(`devices/${answer.id}/properties`, JSON.stringify({ temp: 1 }), { qos: 1 });
  assert.ok(d.connected, 'the device session was not taken over');
  squatter.end(true);
  await d.endAsync();
  // Device presence never saw the provisioning session.
  const dev = await p.device(answer.id);
  assert.equal(dev.product, 'zt-c');
});

test('bulk factory import with ?provision=true makes a device and secret for each new hardware id, once', async () => {
  await makeProduct('zt-d');
  const secret = await enable('zt-d');
  const early = await p.api('POST', '/api/v1/provision', signed(secret, 'zt-d', 'D-2'), null);
  assert.equal(early.status, 201);
  const post = async (text: string) => {
    const res = await fetch(`${p.httpUrl}/api/v1/products/zt-d/factory-records?provision=true`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.token}`, 'content-type': 'text/csv' },
      body: text,
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const bad = await post('hwid,serial\nD-1,S1\nD-1,S2\n');
  assert.equal(bad.status, 400);
  assert.equal((await p.api('GET', '/api/v1/devices?product=zt-d')).body.total, 1, 'a bad file makes nothing');
  const r = await post('hwid,serial,mac\nD-1,S1,00:00:00:00:00:01\nD-2,S2,00:00:00:00:00:02\nD-3,S3,00:00:00:00:00:03\n');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.imported, 3);
  assert.deepEqual(r.body.existing, ['D-2']);
  assert.deepEqual(
    r.body.devices.map((d: any) => d.hwid),
    ['D-1', 'D-3'],
  );
  for (const d of r.body.devices) {
    const c = await connectDevice(p.mqttUrl, d.id, d.secret);
    await c.endAsync();
    assert.equal((await p.device(d.id)).hwid, d.hwid);
  }
  const records = (await p.api('GET', '/api/v1/products/zt-d/factory-records')).body.items;
  assert.deepEqual(
    records.map((x: any) => [x.hwid, x.deviceId]),
    [
      ['D-1', r.body.devices[0].id],
      ['D-2', early.body.id],
      ['D-3', r.body.devices[1].id],
    ],
  );
  assert.equal(records[1].serial, 'S2', 'the record of a provisioned device is updated, its device kept');
  // Again: nothing new is made, no secret is shown again.
  const again = await post('hwid\nD-1\nD-3\n');
  assert.deepEqual(again.body.devices, []);
  assert.deepEqual(again.body.existing, ['D-1', 'D-3']);
  // A device made in bulk cannot provision itself again.
  assert.equal((await p.api('POST', '/api/v1/provision', signed(secret, 'zt-d', 'D-1'), null)).status, 409);
  assert.equal((await p.api('GET', '/api/v1/devices?product=zt-d')).body.total, 3);
});
