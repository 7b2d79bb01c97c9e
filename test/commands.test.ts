import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

/** Connects a device that listens on its commands topic (and errors topic). */
async function device(product: string) {
  const d = await p.provision(product);
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync([`devices/${d.id}/commands`, `devices/${d.id}/errors`], { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.online === true, 3000, 'device online');
  return { ...d, c, box };
}

function answer(c: MqttClient, id: string, result: unknown): Promise<unknown> {
  return c.publishAsync(`devices/${id}/commands/result`, JSON.stringify(result), { qos: 1 });
}

async function ledger(id: string): Promise<any[]> {
  const r = await p.api('GET', `/api/v1/devices/${id}/commands`);
  assert.equal(r.status, 200);
  return r.body.items;
}

test('a command round trip returns the device result and is recorded in the ledger', async () => {
  const cam = await device('camera');
  const call = p.api('POST', `/api/v1/devices/${cam.id}/commands`, { action: 'snapshot', timeoutMs: 3000 });
  const cmd = await cam.box.next((m) => m.topic === `devices/${cam.id}/commands`);
  assert.equal(cmd.payload.action, 'snapshot');
  // protocol.md: `params` is present only when the command has parameters
  assert.deepEqual(cmd.payload, { id: cmd.payload.id, action: 'snapshot' });
  assert.match(cmd.payload.id, /^c_/);
  await answer(cam.c, cam.id, { id: cmd.payload.id, ok: true, result: { url: 'https://cam.example/snap/1.jpg' } });
  const res = await call;
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.id, cmd.payload.id);
  assert.equal(res.body.ok, true);
  assert.deepEqual(res.body.result, { url: 'https://cam.example/snap/1.jpg' });
  assert.equal(typeof res.body.latencyMs, 'number');
  assert.ok(res.body.latencyMs >= 0);

  const printer = await device('cloud-printer');
  const call2 = p.api('POST', `/api/v1/devices/${printer.id}/commands`, { action: 'print', params: { content: 'Order #17', copies: 2 } });
  const cmd2 = await printer.box.next((m) => m.topic === `devices/${printer.id}/commands`);
  assert.deepEqual(cmd2.payload, { id: cmd2.payload.id, action: 'print', params: { content: 'Order #17', copies: 2 } });
  await answer(printer.c, printer.id, { id: cmd2.payload.id, ok: true, result: { jobId: 'job-42' } });
  const res2 = await call2;
  assert.equal(res2.status, 200, JSON.stringify(res2.body));
  assert.deepEqual(res2.body.result, { jobId: 'job-42' });

  const me = await p.api('GET', '/api/v1/auth/me');
  const items = await ledger(cam.id);
  assert.equal(items.length, 1);
  const rec = items[0];
  assert.equal(rec.id, cmd.payload.id);
  assert.equal(rec.deviceId, cam.id);
  assert.equal(rec.action, 'snapshot');
  assert.equal(rec.status, 'answered');
  assert.equal(rec.ok, true);
  assert.deepEqual(rec.result, { url: 'https://cam.example/snap/1.jpg' });
  assert.equal(rec.error, null);
  assert.match(rec.source, /^user:u_/);
  assert.equal(me.status, 200);
  assert.equal(rec.source, `user:${me.body.id}`);
  for (const k of ['acceptedAt', 'sentAt', 'answeredAt']) assert.ok(!Number.isNaN(Date.parse(rec[k])), `${k} is a timestamp: ${rec[k]}`);
  assert.equal(rec.timedOutAt, null);
  assert.ok(Date.parse(rec.acceptedAt) <= Date.parse(rec.sentAt));
  assert.ok(Date.parse(rec.sentAt) <= Date.parse(rec.answeredAt));
  assert.equal(typeof rec.latencyMs, 'number');

  const pitems = await ledger(printer.id);
  assert.equal(pitems[0].status, 'answered');
  assert.deepEqual(pitems[0].params, { content: 'Order #17', copies: 2 });
  assert.deepEqual(pitems[0].result, { jobId: 'job-42' });
});

test('the ledger lists commands newest first', async () => {
  const light = await device('light');
  const ids: string[] = [];
  for (const action of ['toggle', 'blink']) {
    const call = p.api('POST', `/api/v1/devices/${light.id}/commands`, { action });
    const cmd = await light.box.next((m) => m.topic === `devices/${light.id}/commands`);
    ids.push(cmd.payload.id);
    await answer(light.c, light.id, { id: cmd.payload.id, ok: true });
    assert.equal((await call).status, 200);
    const t = Date.now();
    await eventually(() => Date.now() > t, 1000, 'the next millisecond'); // distinct acceptance times
  }
  const items = await ledger(light.id);
  assert.deepEqual(
    items.map((i) => i.id),
    [ids[1], ids[0]],
  );
  assert.deepEqual(
    items.map((i) => i.action),
    ['blink', 'toggle'],
  );
});

test('a device answering ok:false gives 200 with ok false and the error', async () => {
  const lock = await device('door-lock');
  const call = p.api('POST', `/api/v1/devices/${lock.id}/commands`, { action: 'unlock' });
  const cmd = await lock.box.next((m) => m.topic === `devices/${lock.id}/commands`);
  await answer(lock.c, lock.id, { id: cmd.payload.id, ok: false, error: 'jammed' });
  const res = await call;
  assert.equal(res.status, 200);
  assert.equal(res.body.ok, false);
  assert.equal(res.body.error, 'jammed');
  assert.equal(res.body.result, undefined);
  const [rec] = await ledger(lock.id);
  assert.equal(rec.status, 'answered');
  assert.equal(rec.ok, false);
  assert.equal(rec.error, 'jammed');
});

test('a command the device does not answer times out with 504 and the ledger says timeout', async () => {
  const light = await device('light');
  const started = Date.now();
  const res = await p.api('POST', `/api/v1/devices/${light.id}/commands`, { action: 'toggle', timeoutMs: 300 });
  const took = Date.now() - started;
  assert.equal(res.status, 504, JSON.stringify(res.body));
  assert.equal(res.headers.get('content-type'), PROBLEM_JSON);
  assert.equal(res.body.code, 'E_COMMAND_TIMEOUT');
  assert.ok(took >= 280 && took < 3000, `took ${took} ms`);
  // the device did receive it
  const cmd = await light.box.next((m) => m.topic === `devices/${light.id}/commands`);
  const [rec] = await ledger(light.id);
  assert.equal(rec.id, cmd.payload.id);
  assert.equal(rec.status, 'timeout');
  assert.ok(!Number.isNaN(Date.parse(rec.timedOutAt)), `timedOutAt ${rec.timedOutAt}`);
  assert.equal(rec.answeredAt, null);
  assert.ok(Date.parse(rec.timedOutAt) - Date.parse(rec.acceptedAt) >= 250);
});

test('a command to an offline device is refused with 409 and nothing is sent', async () => {
  const d = await p.provision('plug');
  const never = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle' });
  assert.equal(never.status, 409);
  assert.equal(never.body.code, 'E_DEVICE_OFFLINE');
  assert.equal(never.headers.get('content-type'), PROBLEM_JSON);

  // online once, then disconnected
  const c = await p.connect(d.id, d.secret);
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.online === true);
  await c.endAsync();
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.online === false);
  const gone = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle' });
  assert.equal(gone.status, 409);
  assert.equal(gone.body.code, 'E_DEVICE_OFFLINE');

  // reconnecting does not deliver the refused commands
  const c2 = await p.connect(d.id, d.secret);
  const box = inbox(c2);
  await c2.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  // A command sent now arrives; a refused one, had it been kept, would have come first.
  const now = p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle' });
  const delivered = await box.next((m) => m.topic === `devices/${d.id}/commands`);
  await answer(c2, d.id, { id: delivered.payload.id, ok: true });
  assert.equal((await now).status, 200);
  assert.deepEqual(box.messages, [], 'only the command sent after the reconnect');
  assert.deepEqual(
    (await ledger(d.id)).map((x) => x.id),
    [delivered.payload.id],
  );
});

test('unknown actions and bad parameters are refused with 400 naming the problem', async () => {
  const light = await device('light');
  const printer = await device('cloud-printer');
  const cases: Array<[string, unknown, RegExp]> = [
    [light.id, { action: 'dance' }, /unknown action "dance"/],
    [light.id, { action: 'blink', params: { times: 99 } }, /"times".*above the maximum 10/],
    [light.id, { action: 'blink', params: { times: 'often' } }, /"times".*expected a number/],
    [light.id, { action: 'toggle', params: { force: true } }, /unknown parameter "force"/],
    [printer.id, { action: 'print', params: { copies: 1 } }, /missing required parameter "content"/],
    [printer.id, { action: 'print', params: { content: 'x', copies: 0 } }, /"copies".*below the minimum 1/],
  ];
  for (const [id, body, message] of cases) {
    const r = await p.api('POST', `/api/v1/devices/${id}/commands`, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.body.code, 'E_MODEL_MISMATCH', JSON.stringify(body));
    assert.equal(r.headers.get('content-type'), PROBLEM_JSON);
    assert.match(r.body.detail, message);
  }
  // request-level validation
  const noAction = await p.api('POST', `/api/v1/devices/${light.id}/commands`, { params: {} });
  assert.equal(noAction.status, 400);
  assert.equal(noAction.body.code, 'E_VALIDATION');
  assert.match(noAction.body.detail, /action/);
  const tinyTimeout = await p.api('POST', `/api/v1/devices/${light.id}/commands`, { action: 'toggle', timeoutMs: 5 });
  assert.equal(tinyTimeout.status, 400);
  assert.equal(tinyTimeout.body.code, 'E_VALIDATION');
  assert.match(tinyTimeout.body.detail, /timeoutMs/);
  // nothing reached the devices, nothing was recorded: a valid command sent last is the first
  // (and only) one each device gets
  for (const [dev, body] of [
    [light, { action: 'toggle' }],
    [printer, { action: 'print', params: { content: 'x' } }],
  ] as const) {
    const call = p.api('POST', `/api/v1/devices/${dev.id}/commands`, body);
    const cmd = await dev.box.next((m) => m.topic === `devices/${dev.id}/commands`);
    await answer(dev.c, dev.id, { id: cmd.payload.id, ok: true });
    assert.equal((await call).status, 200);
    assert.equal(dev.box.messages.filter((m) => m.topic.endsWith('/commands')).length, 0);
    assert.deepEqual(
      (await ledger(dev.id)).map((x) => x.id),
      [cmd.payload.id],
    );
  }
});

test("a result with a field the model does not declare keeps the device's ok: recorded, with a warning in the ledger and the metrics", async () => {
  const cam = await device('camera');
  const warningsBefore = await warningCount();
  const call = p.api('POST', `/api/v1/devices/${cam.id}/commands`, { action: 'snapshot' });
  const cmd = await cam.box.next((m) => m.topic === `devices/${cam.id}/commands`);
  await answer(cam.c, cam.id, { id: cmd.payload.id, ok: true, result: { url: 'https://cam.example/1.jpg', size: 3 } });
  const res = await call;
  assert.equal(res.status, 200);
  assert.equal(res.body.ok, true, 'the device did it');
  assert.equal(res.body.error, undefined);
  assert.deepEqual(res.body.result, { url: 'https://cam.example/1.jpg', size: 3 }, 'recorded as the device sent it');
  assert.equal(res.body.warnings.length, 1);
  assert.match(res.body.warnings[0], /result field "size" is not declared by action "snapshot"/);
  const [rec] = await ledger(cam.id);
  assert.equal(rec.ok, true);
  assert.equal(rec.error, null);
  assert.deepEqual(rec.warnings, res.body.warnings);
  assert.equal(await warningCount(), warningsBefore + 1);
  // a warning, not a rejection: nothing on the device's errors topic. A later result that is
  // refused (an unknown id) takes the same path, so its error comes after any for the first.
  await answer(cam.c, cam.id, { id: 'c_unknown0000000', ok: true });
  const refused = await cam.box.next((m) => m.topic === `devices/${cam.id}/errors`);
  assert.equal(refused.payload.code, 'E_UNKNOWN_COMMAND', JSON.stringify(refused.payload));
  assert.equal(cam.box.messages.filter((m) => m.topic.endsWith('/errors')).length, 0);
  // an answer that fits has no warnings
  const call2 = p.api('POST', `/api/v1/devices/${cam.id}/commands`, { action: 'snapshot' });
  const cmd2 = await cam.box.next((m) => m.topic === `devices/${cam.id}/commands`);
  await answer(cam.c, cam.id, { id: cmd2.payload.id, ok: true, result: { url: 'https://cam.example/2.jpg' } });
  assert.equal((await call2).body.warnings, undefined);
  assert.deepEqual((await ledger(cam.id))[0].warnings, []);
});

async function warningCount(): Promise<number> {
  const text = await (await fetch(`${p.httpUrl}/metrics`)).text();
  const m = /^hearth_command_result_warnings_total\{kind="undeclared-field"\} (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

test('commands to an unknown device are 404', async () => {
  const r = await p.api('POST', '/api/v1/devices/d_doesnotexist00/commands', { action: 'toggle' });
  assert.equal(r.status, 404);
  assert.equal(r.body.code, 'E_DEVICE_NOT_FOUND');
  assert.equal(r.headers.get('content-type'), PROBLEM_JSON);
  const l = await p.api('GET', '/api/v1/devices/d_doesnotexist00/commands');
  assert.equal(l.status, 404);
  assert.equal(l.body.code, 'E_DEVICE_NOT_FOUND');
});

test('a result that breaks the model is turned into ok:false and the device hears why', async () => {
  const cam = await device('camera');
  const call = p.api('POST', `/api/v1/devices/${cam.id}/commands`, { action: 'snapshot' });
  const cmd = await cam.box.next((m) => m.topic === `devices/${cam.id}/commands`);
  await answer(cam.c, cam.id, { id: cmd.payload.id, ok: true, result: { url: 42 } });
  const res = await call;
  assert.equal(res.status, 200);
  assert.equal(res.body.ok, false);
  assert.match(res.body.error, /invalid result/);
  assert.match(res.body.error, /"url"/);
  const err = await cam.box.next((m) => m.topic === `devices/${cam.id}/errors`);
  assert.equal(err.payload.topic, `devices/${cam.id}/commands/result`);
  assert.match(err.payload.message, /"url"/);
  const [rec] = await ledger(cam.id);
  assert.equal(rec.status, 'answered');
  assert.equal(rec.ok, false);
  assert.match(rec.error, /invalid result/);

  // a malformed result (result not an object) is rejected and the caller keeps waiting
  const call3 = p.api('POST', `/api/v1/devices/${cam.id}/commands`, { action: 'snapshot', timeoutMs: 2000 });
  const cmd3 = await cam.box.next((m) => m.topic === `devices/${cam.id}/commands`);
  await answer(cam.c, cam.id, { id: cmd3.payload.id, ok: true, result: 'a string' });
  const err3 = await cam.box.next((m) => m.topic === `devices/${cam.id}/errors`);
  assert.equal(err3.payload.code, 'E_BAD_MESSAGE');
  assert.match(err3.payload.message, /"result" must be an object/);
  await answer(cam.c, cam.id, { id: cmd3.payload.id, ok: true, result: { url: 'fine' } });
  const res3 = await call3;
  assert.equal(res3.status, 200);
  assert.equal(res3.body.ok, true);
  assert.deepEqual(res3.body.result, { url: 'fine' });
});

test('desired state set while offline is delivered on subscribe and cleared when fulfilled', async () => {
  const d = await p.provision('light');
  const patch = await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { brightness: 70, on: true } });
  assert.equal(patch.status, 200, JSON.stringify(patch.body));
  assert.deepEqual(patch.body.desired, { brightness: 70, on: true });
  assert.deepEqual(patch.body.delta, { brightness: 70, on: true });
  const version = patch.body.version;
  assert.ok(version >= 1);

  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/desired`, { qos: 1 });
  const msg = await box.next((m) => m.topic === `devices/${d.id}/desired`);
  assert.deepEqual(msg.payload, { state: { brightness: 70, on: true }, version });

  // partially fulfilled
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: 70, on: false }), { qos: 1 });
  const half = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${d.id}`);
    return r.body.shadow.reported.brightness === 70 ? r.body.shadow : undefined;
  });
  assert.equal(half.desired.brightness, undefined, 'brightness was fulfilled');
  // "on" was delivered and then reported differently: it is stale, not pending
  assert.deepEqual(half.delta, {});
  assert.deepEqual(half.desired, {});

  // a fresh desired value while online is sent at once, then fulfilled
  const p2 = await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { colorTemp: 4000 } });
  assert.equal(p2.status, 200);
  const msg2 = await box.next((m) => m.topic === `devices/${d.id}/desired`);
  assert.deepEqual(msg2.payload, { state: { colorTemp: 4000 }, version: p2.body.version });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ colorTemp: 4000 }), { qos: 1 });
  const done = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${d.id}/shadow`);
    return r.body.reported.colorTemp === 4000 ? r.body : undefined;
  });
  assert.deepEqual(done.desired, {});
  assert.deepEqual(done.delta, {});
});

test('a desired value reported before delivery stays pending only when it differs', async () => {
  const d = await p.provision('light');
  await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { brightness: 30 } });
  const c = await p.connect(d.id, d.secret);
  // reports before subscribing: the value was never delivered, so it stays desired
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: 90 }), { qos: 1 });
  const s = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${d.id}/shadow`);
    return r.body.reported.brightness === 90 ? r.body : undefined;
  });
  assert.deepEqual(s.desired, { brightness: 30 });
  assert.deepEqual(s.delta, { brightness: 30 });
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/desired`, { qos: 1 });
  const msg = await box.next((m) => m.topic === `devices/${d.id}/desired`);
  assert.deepEqual(msg.payload.state, { brightness: 30 });
  // clearing with null
  const cleared = await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { brightness: null } });
  assert.equal(cleared.status, 200);
  assert.deepEqual(cleared.body.desired, {});
  assert.deepEqual(cleared.body.delta, {});
});

test('a stale desired value (lock turned by hand) is dropped and not sent again', async () => {
  const d = await p.provision('door-lock');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync([`devices/${d.id}/desired`, `devices/${d.id}/errors`], { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ locked: false, battery: 80 }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.shadow.reported.locked === false);
  const patch = await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { locked: true } });
  assert.equal(patch.status, 200);
  const msg = await box.next((m) => m.topic === `devices/${d.id}/desired`);
  assert.deepEqual(msg.payload, { state: { locked: true }, version: patch.body.version });
  // someone turned the lock by hand after the cloud's request arrived
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ locked: false }), { qos: 1 });
  const s = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${d.id}/shadow`);
    return r.body.version > patch.body.version ? r.body : undefined;
  });
  assert.deepEqual(s.desired, {});
  assert.deepEqual(s.delta, {});
  assert.equal(s.reported.locked, false);

  // a new connection subscribing to desired gets nothing
  await c.endAsync();
  const c2 = await p.connect(d.id, d.secret);
  const box2 = inbox(c2);
  await c2.subscribeAsync([`devices/${d.id}/desired`, `devices/${d.id}/errors`], { qos: 1 });
  // a rejected report goes through the same per-device queue as the resend: once its error is
  // back, any resend would have arrived before it
  await c2.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ battery: 101 }), { qos: 1 });
  await box2.next((m) => m.topic === `devices/${d.id}/errors`);
  assert.deepEqual(
    box2.messages.filter((m) => m.topic === `devices/${d.id}/desired`),
    [],
  );
  const after = await p.api('GET', `/api/v1/devices/${d.id}/shadow`);
  assert.equal(after.body.reported.locked, false);
});

test('desired state is validated against the model', async () => {
  const lock = await p.provision('door-lock');
  const light = await p.provision('light');
  const cases: Array<[string, unknown, RegExp]> = [
    [lock.id, { battery: 50 }, /property "battery" is read-only/],
    [lock.id, { locked: 'yes' }, /property "locked": expected a boolean/],
    [light.id, { brightness: 150 }, /property "brightness": 150 is above the maximum 100/],
    [light.id, { colorTemp: 1000 }, /below the minimum 2700/],
    [light.id, { sparkle: true }, /unknown property "sparkle"/],
  ];
  for (const [id, desired, message] of cases) {
    const r = await p.api('PATCH', `/api/v1/devices/${id}/shadow`, { desired });
    assert.equal(r.status, 400, JSON.stringify(desired));
    assert.equal(r.body.code, 'E_MODEL_MISMATCH');
    assert.equal(r.headers.get('content-type'), PROBLEM_JSON);
    assert.match(r.body.detail, message);
  }
  // a mixed request is all or nothing
  const mixed = await p.api('PATCH', `/api/v1/devices/${light.id}/shadow`, { desired: { on: true, brightness: 101 } });
  assert.equal(mixed.status, 400);
  const s = await p.api('GET', `/api/v1/devices/${light.id}/shadow`);
  assert.deepEqual(s.body.desired, {});
  assert.equal(s.body.version, 0);
  const notObject = await p.api('PATCH', `/api/v1/devices/${light.id}/shadow`, { desired: 'on' });
  assert.equal(notObject.status, 400);
  assert.equal(notObject.body.code, 'E_VALIDATION');
  const missing = await p.api('PATCH', '/api/v1/devices/d_doesnotexist00/shadow', { desired: { on: true } });
  assert.equal(missing.status, 404);
  assert.equal(missing.body.code, 'E_DEVICE_NOT_FOUND');
});

test('desired state set while the device is connected but not yet subscribed is not dropped by its next report', async () => {
  const d = await p.provision('door-lock');
  const c = await p.connect(d.id, d.secret);
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.online === true);
  // the documented start-up order of a device: report the current state, then subscribe
  const patch = await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { locked: true } });
  assert.equal(patch.status, 200);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ locked: false, battery: 50 }), { qos: 1 });
  const s = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${d.id}/shadow`);
    return r.body.reported.locked === false ? r.body : undefined;
  });
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/desired`, { qos: 1 });
  const got = await box.next((m) => m.topic === `devices/${d.id}/desired`, 1000).catch(() => undefined);
  assert.deepEqual(s.desired, { locked: true }, 'the desired value the device never received is still pending');
  assert.deepEqual(got?.payload.state, { locked: true }, 'the device receives it when it subscribes');
});
