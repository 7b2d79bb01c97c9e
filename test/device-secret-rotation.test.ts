/**
 * Per-device secret rotation: POST /api/v1/devices/{id}/secret gives a new secret once; the old
 * one works for the grace period the caller chose (default 0), then is refused and the sessions
 * opened with it are closed. Through real MQTT and HTTP.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { connectDevice, eventually, startPlatform, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p?.stop();
});

function closed(c: import('mqtt').MqttClient): Promise<void> {
  return new Promise((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));
}

test('without a grace period the old secret is refused at once and its session closed; the new one works', async () => {
  const d = await p.provision('light');
  const old = await p.connect(d.id, d.secret);
  const gone = closed(old);
  const r = await p.api('POST', `/api/v1/devices/${d.id}/secret`, {});
  assert.equal(r.status, 200);
  assert.equal(r.body.previousSecretValidUntil, null);
  assert.notEqual(r.body.secret, d.secret);
  await gone;
  await p.until(d.id, (x) => x.online === false && x.presence?.reason === 'credentials-revoked', 'offline with reason credentials-revoked');
  await assert.rejects(connectDevice(p.mqttUrl, d.id, d.secret), /Bad username or password|Not authorized|bad device id/i);
  const fresh = await p.connect(d.id, r.body.secret);
  await fresh.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await p.until(d.id, (x) => x.shadow?.reported?.on === true, 'a report with the new secret');
  const audit = await p.api('GET', '/api/v1/audit?action=device.secret.rotate');
  assert.ok(JSON.stringify(audit.body).includes(d.id), 'the rotation is audited');
});

test('with a grace period the old secret keeps working until it ends, then is refused and its sessions closed', async () => {
  const d = await p.provision('light');
  const old = await p.connect(d.id, d.secret);
  const r = await p.api('POST', `/api/v1/devices/${d.id}/secret`, { graceSeconds: 2 });
  assert.equal(r.status, 200);
  const until = Date.parse(r.body.previousSecretValidUntil);
  assert.ok(until > Date.now() + 1000 && until <= Date.now() + 2100, `grace ends in about 2 s: ${r.body.previousSecretValidUntil}`);
  // During the grace: the open session stays, a new one with the old secret is taken, and the new secret works.
  const again = await connectDevice(p.mqttUrl, d.id, d.secret);
  assert.ok(again.connected);
  const gone = closed(again);
  const fresh = await connectDevice(p.mqttUrl, d.id, r.body.secret, { clientId: d.id });
  // The fresh connection took the client id over (one session per device): the old-secret one is gone.
  await gone;
  await eventually(() => Date.now() > until + 50, 3000, 'the grace to end');
  await assert.rejects(connectDevice(p.mqttUrl, d.id, d.secret), /Bad username or password|Not authorized|bad device id/i);
  assert.ok(fresh.connected, 'a session opened with the new secret stays after the grace');
  await fresh.endAsync();
  assert.ok(!old.connected);
});

test('a session opened with the old secret is closed when the grace ends', async () => {
  const d = await p.provision('light');
  const r = await p.api('POST', `/api/v1/devices/${d.id}/secret`, { graceSeconds: 1 });
  const old = await connectDevice(p.mqttUrl, d.id, d.secret);
  const t0 = Date.now();
  await closed(old);
  assert.ok(Date.now() >= Date.parse(r.body.previousSecretValidUntil) - 50, 'closed at the end of the grace, not before');
  assert.ok(Date.now() - t0 < 3000);
});

test('bad input is refused and changes nothing', async () => {
  const d = await p.provision('light');
  for (const body of [{ graceSeconds: -1 }, { graceSeconds: 1.5 }, { graceSeconds: 31 * 86400 }, { grace: 10 }]) {
    const r = await p.api('POST', `/api/v1/devices/${d.id}/secret`, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  }
  const c = await p.connect(d.id, d.secret);
  assert.ok(c.connected, 'the secret still works');
  assert.equal((await p.api('POST', '/api/v1/devices/d_doesnotexist00/secret', {})).status, 404);
  const hub = await p.provision('hub');
  const join = await p.api('GET', `/api/v1/devices/${hub.id}`);
  assert.equal(join.status, 200);
  // Only the operator rotates.
  const signup = await p.api('POST', '/api/v1/auth/signup', { email: 'rotator@test.local', password: 'a-long-password-1' }, null);
  const user =
    signup.body.token ?? (await p.api('POST', '/api/v1/auth/login', { email: 'rotator@test.local', password: 'a-long-password-1' }, null)).body.token;
  assert.equal((await p.api('POST', `/api/v1/devices/${d.id}/secret`, {}, user)).status, 403);
});
