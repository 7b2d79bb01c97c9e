/**
 * The fleet lifecycle through real MQTT and HTTP (docs/fleet.md): disable / enable, delete (with
 * its sub-devices or detaching them, history kept or purged), the factory reset a device sends,
 * and the audit log and live stream of every change.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser } from './helpers/people.ts';

let p: Platform;
let ana: TestUser;
let homeId: string;
const sockets: WebSocket[] = [];

before(async () => {
  p = await startPlatform();
  ana = await signupUser(p, 'ana@fleet.test');
  const h = await ana.api('POST', '/homes', { name: 'Flat', timezone: 'Europe/Berlin' });
  assert.equal(h.status, 201);
  homeId = h.body.id;
});
after(async () => {
  for (const s of sockets) s.terminate();
  await p.stop();
});

/** CONNACK refusal of a connection attempt (its error), or throws when it is accepted. */
function refusal(id: string, secret: string): Promise<Error & { code?: number }> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(p.mqttUrl, { clientId: id, username: id, password: secret, reconnectPeriod: 0, connectTimeout: 3000 });
    c.once('connect', () => {
      c.end(true);
      reject(new Error('connection was accepted'));
    });
    c.once('error', (err) => {
      c.end(true);
      resolve(err as Error & { code?: number });
    });
  });
}

function closed(c: MqttClient): Promise<void> {
  return new Promise((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));
}

/** A live stream (WebSocket) of one caller, collecting `lifecycle` events. */
async function lifecycleStream(token: string): Promise<{ events: any[] }> {
  const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream?types=lifecycle`, { headers: { authorization: `Bearer ${token}` } });
  sockets.push(ws);
  const events: any[] = [];
  ws.on('message', (buf) => {
    const e = JSON.parse(buf.toString());
    if (e.type === 'lifecycle') events.push(e);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { events };
}

async function audit(action: string, targetId: string): Promise<any> {
  return eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/audit?action=${action}&limit=50`);
      return r.body.items.find((e: any) => e.targetId === targetId);
    },
    3000,
    `audit entry ${action} of ${targetId}`,
  );
}

async function claim(pairingCode: string): Promise<void> {
  const r = await ana.api('POST', `/homes/${homeId}/devices`, { pairingCode });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

test('disabling closes the live session, refuses reconnects and API use; enabling lets it back', async () => {
  const operatorEvents = await lifecycleStream(p.token);
  const anaEvents = await lifecycleStream(ana.token);
  const d = await p.provision('light');
  await claim(d.pairingCode);
  const c = await p.connect(d.id, d.secret);
  await p.until(d.id, (x) => x.online, 'online');

  const r = await p.api('PATCH', `/api/v1/devices/${d.id}`, { disabled: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.disabled, true);
  await closed(c);
  const dev = await p.until(d.id, (x) => !x.online, 'offline');
  assert.equal(dev.presence.reason, 'disabled');
  assert.equal(dev.disabled, true);

  const refused = await refusal(d.id, d.secret);
  assert.equal(refused.code, 5, refused.message);
  // A wrong secret learns nothing about the device's state.
  assert.equal((await refusal(d.id, 'not-the-secret')).code, 4);

  const cmd = await ana.api('POST', `/devices/${d.id}/commands`, { action: 'toggle' });
  assert.equal(cmd.status, 409);
  assert.equal(cmd.body.code, 'E_DEVICE_DISABLED');
  const desired = await ana.api('PATCH', `/devices/${d.id}/shadow`, { desired: { on: true } });
  assert.equal(desired.status, 409);
  assert.equal(desired.body.code, 'E_DEVICE_DISABLED');
  // The device's own HTTP API refuses it too.
  const basic = Buffer.from(`${d.id}:${d.secret}`).toString('base64');
  const http = await fetch(`${p.httpUrl}/api/v1/devices/${d.id}/messages/properties`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/json' },
    body: '{"on":true}',
  });
  assert.equal(http.status, 401);

  // Disabling again changes nothing and records nothing more.
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}`, { disabled: true })).status, 200);
  await audit('device.disable', d.id);

  const en = await p.api('PATCH', `/api/v1/devices/${d.id}`, { disabled: false });
  assert.equal(en.status, 200);
  assert.equal(en.body.disabled, false);
  const again = await p.connect(d.id, d.secret);
  await p.until(d.id, (x) => x.online, 'online again');
  await again.endAsync();
  await audit('device.enable', d.id);
  const disables = (await p.api('GET', '/api/v1/audit?action=device.disable&limit=50')).body.items.filter((e: any) => e.targetId === d.id);
  assert.equal(disables.length, 1, 'a repeated disable is not audited again');

  for (const events of [operatorEvents.events, anaEvents.events]) {
    const mine = await eventually(
      () => {
        const m = events.filter((e) => e.data.deviceId === d.id).map((e) => e.data.change);
        return m.length >= 2 ? m : undefined;
      },
      3000,
      'lifecycle events',
    );
    assert.deepEqual(mine, ['disabled', 'enabled']);
  }
});

test('a disabled hub takes its sub-devices with it; a sub-device disabled alone is refused through its hub', async () => {
  const hub = await p.provision('hub');
  const hc = await p.connect(hub.id, hub.secret);
  const box = inbox(hc);
  await hc.subscribeAsync(`devices/${hub.id}/children/joined`, { qos: 1 });
  await hc.publishAsync(`devices/${hub.id}/children/join`, JSON.stringify({ product: 'light', hwid: 'aa:01' }), { qos: 1 });
  const childId = (await box.next((m) => m.topic.endsWith('children/joined'))).payload.id;
  await hc.subscribeAsync(`devices/${childId}/errors`, { qos: 1 });
  await hc.publishAsync(`devices/${childId}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await p.until(childId, (x) => x.online, 'child online');

  // The child alone: the hub's messages for it are refused, the hub stays connected.
  assert.equal((await p.api('PATCH', `/api/v1/devices/${childId}`, { disabled: true })).status, 200);
  await hc.publishAsync(`devices/${childId}/properties`, JSON.stringify({ on: false }), { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${childId}/errors`);
  assert.equal(err.payload.code, 'E_DEVICE_DISABLED');
  assert.ok(hc.connected);
  assert.equal((await p.device(childId)).shadow.reported.on, true);
  assert.equal((await p.api('PATCH', `/api/v1/devices/${childId}`, { disabled: false })).status, 200);

  // The hub: its connection closes, its children go offline and are refused too.
  assert.equal((await p.api('PATCH', `/api/v1/devices/${hub.id}`, { disabled: true })).status, 200);
  await closed(hc);
  const child = await p.until(childId, (x) => !x.online, 'child offline');
  assert.equal(child.presence.reason, 'hub-offline');
  assert.equal(child.disabled, true, "a hub's sub-device shows as disabled with it");
  const cmd = await p.api('POST', `/api/v1/devices/${childId}/commands`, { action: 'toggle' });
  assert.equal(cmd.status, 409);
  assert.equal(cmd.body.code, 'E_DEVICE_DISABLED');
  assert.equal((await refusal(hub.id, hub.secret)).code, 5);
});

test('delete: the session closes, nothing stays reachable, the id is gone for good; history kept or purged', async () => {
  const events = await lifecycleStream(ana.token);
  const d = await p.provision('light');
  await claim(d.pairingCode);
  const c = await p.connect(d.id, d.secret);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true, brightness: 30 }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}/history?property=brightness`)).body.points?.length === 1);

  const del = await p.api('DELETE', `/api/v1/devices/${d.id}`);
  assert.equal(del.status, 204);
  await closed(c);
  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}`)).status, 404);
  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}/shadow`)).status, 404);
  assert.equal((await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle' })).status, 404);
  assert.equal((await p.api('DELETE', `/api/v1/devices/${d.id}`)).status, 404);
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}`, { disabled: true })).status, 404);
  assert.equal((await refusal(d.id, d.secret)).code, 4);
  const list = await p.api('GET', '/api/v1/devices?limit=1000');
  assert.ok(!list.body.items.some((x: any) => x.id === d.id));
  const home = await ana.api('GET', `/homes/${homeId}/devices`);
  assert.ok(!home.body.items.some((x: any) => x.id === d.id), 'it left its home');
  // The pairing code no longer claims anything.
  assert.equal((await ana.api('POST', `/homes/${homeId}/devices`, { pairingCode: d.pairingCode })).status, 404);
  const entry = await audit('device.delete', d.id);
  assert.equal(entry.details.purge, false);
  await eventually(
    () => events.events.find((e) => e.data.deviceId === d.id && e.data.change === 'deleted' && e.homeId === homeId),
    3000,
    'the home hears of the deletion',
  );

  // purge: the history goes as well (checked in the store: the API no longer reaches it)
  const e = await p.provision('light');
  const ec = await p.connect(e.id, e.secret);
  await ec.publishAsync(`devices/${e.id}/properties`, JSON.stringify({ brightness: 70 }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${e.id}/history?property=brightness`)).body.points?.length === 1);
  assert.equal((await p.api('DELETE', `/api/v1/devices/${e.id}?purge=true`)).status, 204);
  const db = p.hearth.db;
  assert.equal((await db.selectFrom('history').select('device_id').where('device_id', '=', e.id).execute()).length, 0);
  assert.ok((await db.selectFrom('history').select('device_id').where('device_id', '=', d.id).execute()).length > 0, 'without purge the history stays');
  assert.equal((await db.selectFrom('shadows').select('device_id').where('device_id', 'in', [d.id, e.id]).execute()).length, 0, 'shadows go');

  assert.equal((await p.api('DELETE', `/api/v1/devices/${e.id}?purge=maybe`)).status, 400);
});

test('deleting a hub asks what happens to its sub-devices: delete them, or detach them', async () => {
  const hub = await p.provision('hub');
  await claim(hub.pairingCode);
  const hc = await p.connect(hub.id, hub.secret);
  const box = inbox(hc);
  await hc.subscribeAsync(`devices/${hub.id}/children/joined`, { qos: 1 });
  const join = async (hwid: string) => {
    await hc.publishAsync(`devices/${hub.id}/children/join`, JSON.stringify({ product: 'plug', hwid }), { qos: 1 });
    return (await box.next((m) => m.payload.hwid === hwid)).payload.id as string;
  };
  const a = await join('bb:01');
  const b = await join('bb:02');

  const ask = await p.api('DELETE', `/api/v1/devices/${hub.id}`);
  assert.equal(ask.status, 409);
  assert.equal(ask.body.code, 'E_CONFLICT');
  assert.match(ask.body.detail, /children=delete|children=detach/);
  assert.equal((await p.device(hub.id)).id, hub.id, 'nothing changed');
  assert.ok(hc.connected);

  assert.equal((await p.api('DELETE', `/api/v1/devices/${hub.id}?children=detach`)).status, 204);
  await closed(hc);
  for (const id of [a, b]) {
    const d = await p.device(id);
    assert.equal(d.parentId, null, 'a stand-alone device now');
    assert.equal(d.homeId, null, 'out of the home with its hub');
    assert.equal(d.online, false);
  }

  const hub2 = await p.provision('hub');
  const h2 = await p.connect(hub2.id, hub2.secret);
  const box2 = inbox(h2);
  await h2.subscribeAsync(`devices/${hub2.id}/children/joined`, { qos: 1 });
  await h2.publishAsync(`devices/${hub2.id}/children/join`, JSON.stringify({ product: 'plug', hwid: 'cc:01' }), { qos: 1 });
  const c1 = (await box2.next((m) => m.payload.hwid === 'cc:01')).payload.id;
  // A sub-device deleted alone: its hub, still speaking for it, hears why and stays connected.
  await h2.publishAsync(`devices/${hub2.id}/children/join`, JSON.stringify({ product: 'plug', hwid: 'cc:02' }), { qos: 1 });
  const c2 = (await box2.next((m) => m.payload.hwid === 'cc:02')).payload.id;
  await h2.subscribeAsync(`devices/${c2}/errors`, { qos: 1 });
  assert.equal((await p.api('DELETE', `/api/v1/devices/${c2}`)).status, 204);
  await h2.publishAsync(`devices/${c2}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  assert.equal((await box2.next((m) => m.topic === `devices/${c2}/errors`)).payload.code, 'E_DEVICE_NOT_FOUND');
  assert.ok(h2.connected);
  assert.deepEqual(
    (await p.api('GET', `/api/v1/devices/${hub2.id}/children`)).body.items.map((x: any) => x.id),
    [c1],
  );
  assert.equal((await p.api('DELETE', `/api/v1/devices/${hub2.id}?children=delete`)).status, 204);
  assert.equal((await p.api('GET', `/api/v1/devices/${c1}`)).status, 404);
  const entry = await audit('device.delete', hub2.id);
  assert.deepEqual(entry.details.deleted, [hub2.id, c1]);
});

test('a factory reset from the device unbinds it, clears its desired state and keeps its identity', async () => {
  const events = await lifecycleStream(ana.token);
  const d = await p.provision('light');
  await claim(d.pairingCode);
  const set = await ana.api('PATCH', `/devices/${d.id}/shadow`, { desired: { on: true } });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${d.id}/reset`, '[]', { qos: 1 });
  assert.equal((await box.next((m) => m.topic.endsWith('/errors'))).payload.code, 'E_BAD_MESSAGE');
  await c.publishAsync(`devices/${d.id}/reset`, '{}', { qos: 1 });
  const after = await p.until(d.id, (x) => x.homeId === null, 'unbound');
  assert.deepEqual(after.shadow.desired, {});
  assert.ok(c.connected, 'it stays connected: its identity is kept');
  assert.equal((await ana.api('GET', `/devices/${d.id}`)).status, 404, 'no longer the home’s');
  // The next owner claims it with the same pairing code.
  await claim(d.pairingCode);
  const entry = await audit('device.reset', d.id);
  assert.equal(entry.actor, `device:${d.id}`);
  assert.equal(entry.homeId, homeId);
  await eventually(() => events.events.find((e) => e.data.deviceId === d.id && e.data.change === 'reset'), 3000, 'the home hears of the reset');
});

test('only the operator disables, tags and deletes; bad input changes nothing', async () => {
  const d = await p.provision('plug');
  await claim(d.pairingCode);
  const byAna = await ana.api('PATCH', `/devices/${d.id}`, { disabled: true });
  assert.equal(byAna.status, 403);
  const other = await signupUser(p, 'bob@fleet.test');
  assert.equal((await other.api('PATCH', `/devices/${d.id}`, { disabled: true })).status, 404, 'another home’s device does not exist for him');
  assert.equal((await ana.api('DELETE', `/devices/${d.id}`)).status, 403);
  assert.equal((await p.device(d.id)).disabled, false);

  const badTag = await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: { 'no spaces': 'x' } });
  assert.equal(badTag.status, 400);
  const badType = await p.api('PATCH', `/api/v1/devices/${d.id}`, { disabled: 'yes' });
  assert.equal(badType.status, 400);
  const tooMany = await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) });
  assert.equal(tooMany.status, 400);

  const ok = await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: { site: 'berlin', batch: '7' }, attributes: { installer: 'ACME' } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const full = await p.device(d.id);
  assert.deepEqual(full.tags, { batch: '7', site: 'berlin' });
  assert.deepEqual(full.attributes, { installer: 'ACME' });
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: { batch: null } })).status, 200);
  assert.deepEqual((await p.device(d.id)).tags, { site: 'berlin' });
  // The home's people do not see the operator's data.
  const seen = await ana.api('GET', `/devices/${d.id}`);
  assert.equal(seen.body.tags, undefined);
});
