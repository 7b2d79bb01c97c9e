import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';

const running: Platform[] = [];
const dataDirs = new Set<string>();
after(async () => {
  for (const p of running) await p.stop(false).catch(() => undefined);
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

async function start(dataDir?: string): Promise<Platform> {
  const p = await startPlatform(dataDir ? { dataDir } : {});
  running.push(p);
  dataDirs.add(p.dataDir);
  return p;
}

async function stop(p: Platform): Promise<void> {
  running.splice(running.indexOf(p), 1);
  await p.stop(false);
}

/** A device connection the platform helper does not manage (so it is still open when the platform stops). */
function rawDevice(p: Platform, id: string, secret: string): Promise<MqttClient> {
  const c = mqtt.connect(p.mqttUrl, { clientId: id, username: id, password: secret, reconnectPeriod: 0, connectTimeout: 5000 });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

const ACME_MODEL = {
  properties: [{ id: 'level', type: 'integer', min: 0, max: 10, access: 'rw', history: true }],
  events: [{ id: 'beep' }],
  actions: [{ id: 'ping' }],
};

test('everything survives a restart on the same data directory', async () => {
  const p1 = await start();
  const dataDir = p1.dataDir;
  const oldToken = p1.token;

  // a product of our own, and devices
  const created = await p1.api('POST', '/api/v1/products', { key: 'acme-gauge', name: 'ACME gauge', category: 'sensor', model: ACME_MODEL });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const light = await p1.provision('light', 'Hall light');
  const lock = await p1.provision('door-lock', 'Front door');
  const gauge = await p1.provision('acme-gauge', 'Gauge');
  const hub = await p1.provision('hub', 'Hub');

  // reports with history, events, a command, desired state
  const lc = await p1.connect(light.id, light.secret);
  const lbox = inbox(lc);
  await lc.subscribeAsync(`devices/${light.id}/commands`, { qos: 1 });
  const t0 = Date.now() - 60_000;
  await lc.publishAsync(`devices/${light.id}/properties`, JSON.stringify({ on: true, brightness: 40, colorTemp: 3000, ts: t0 }), { qos: 1 });
  await lc.publishAsync(`devices/${light.id}/properties`, JSON.stringify({ brightness: 55, ts: t0 + 1000 }), { qos: 1 });
  await lc.publishAsync(`devices/${light.id}/properties`, JSON.stringify({ brightness: 70, ts: t0 + 2000 }), { qos: 1 });
  const call = p1.api('POST', `/api/v1/devices/${light.id}/commands`, { action: 'blink', params: { times: 2 } });
  const cmd = await lbox.next((m) => m.topic === `devices/${light.id}/commands`);
  await lc.publishAsync(`devices/${light.id}/commands/result`, JSON.stringify({ id: cmd.payload.id, ok: true }), { qos: 1 });
  assert.equal((await call).status, 200);
  const timedOut = await p1.api('POST', `/api/v1/devices/${light.id}/commands`, { action: 'toggle', timeoutMs: 150 });
  assert.equal(timedOut.status, 504);

  const kc = await p1.connect(lock.id, lock.secret);
  await kc.publishAsync(`devices/${lock.id}/properties`, JSON.stringify({ locked: true, battery: 77 }), { qos: 1 });
  await kc.publishAsync(`devices/${lock.id}/events`, JSON.stringify({ event: 'unlock', params: { method: 'keypad', user: 'bob' } }), { qos: 1 });
  await kc.publishAsync(`devices/${lock.id}/events`, JSON.stringify({ event: 'tamper' }), { qos: 1 });

  const gc = await p1.connect(gauge.id, gauge.secret);
  await gc.publishAsync(`devices/${gauge.id}/properties`, JSON.stringify({ level: 3 }), { qos: 1 });

  const hc = await p1.connect(hub.id, hub.secret);
  const hbox = inbox(hc);
  await hc.subscribeAsync(`devices/${hub.id}/children/joined`, { qos: 1 });
  await hc.publishAsync(`devices/${hub.id}/children/join`, JSON.stringify({ product: 'plug', hwid: 'plug-1' }), { qos: 1 });
  const childId = (await hbox.next((m) => m.topic === `devices/${hub.id}/children/joined`)).payload.id as string;

  const desired = await p1.api('PATCH', `/api/v1/devices/${light.id}/shadow`, { desired: { colorTemp: 5000 } });
  assert.equal(desired.status, 200);
  // wait for everything to be applied
  const before = await eventually(
    async () => {
      const [l, k, g, ev] = await Promise.all([
        p1.api('GET', `/api/v1/devices/${light.id}`),
        p1.api('GET', `/api/v1/devices/${lock.id}`),
        p1.api('GET', `/api/v1/devices/${gauge.id}`),
        p1.api('GET', `/api/v1/devices/${lock.id}/events`),
      ]);
      return l.body.shadow.reported.brightness === 70 &&
        k.body.shadow.reported.battery === 77 &&
        g.body.shadow.reported.level === 3 &&
        ev.body.items.length === 2
        ? { light: l.body, lock: k.body, events: ev.body.items }
        : undefined;
    },
    3000,
    'state before the restart',
  );
  const ledgerBefore = (await p1.api('GET', `/api/v1/devices/${light.id}/commands`)).body.items;
  assert.equal(ledgerBefore.length, 2);

  await stop(p1);

  const p2 = await start(dataDir);

  // the token issued before the restart is still valid
  const me = await p2.api('GET', '/api/v1/auth/me', undefined, oldToken);
  assert.equal(me.status, 200, JSON.stringify(me.body));
  const listed = await p2.api('GET', '/api/v1/devices', undefined, oldToken);
  assert.equal(listed.status, 200);
  assert.deepEqual(listed.body.items.map((d: { id: string }) => d.id).sort(), [light.id, lock.id, gauge.id, hub.id, childId].sort());

  // the product of our own
  const product = await p2.api('GET', '/api/v1/products/acme-gauge');
  assert.equal(product.status, 200);
  assert.equal(product.body.builtin, false);
  assert.equal(product.body.name, 'ACME gauge');
  assert.deepEqual(
    product.body.model.properties.map((x: { id: string }) => x.id),
    ['level'],
  );

  // devices and shadows
  const l = (await p2.api('GET', `/api/v1/devices/${light.id}`)).body;
  assert.equal(l.name, 'Hall light');
  assert.deepEqual(l.shadow.reported, before.light.shadow.reported);
  assert.deepEqual(l.shadow.desired, { colorTemp: 5000 });
  assert.deepEqual(l.shadow.delta, { colorTemp: 5000 });
  assert.equal(l.shadow.version, before.light.shadow.version);
  const k = (await p2.api('GET', `/api/v1/devices/${lock.id}`)).body;
  assert.deepEqual(k.shadow.reported, { locked: true, battery: 77 });
  assert.equal(k.shadow.version, before.lock.shadow.version);
  const child = (await p2.api('GET', `/api/v1/devices/${childId}`)).body;
  assert.equal(child.parentId, hub.id);
  assert.equal(child.hwid, 'plug-1');

  // presence: nobody is connected to the new platform
  for (const id of [light.id, lock.id, gauge.id, hub.id]) {
    const d = (await p2.api('GET', `/api/v1/devices/${id}`)).body;
    assert.equal(d.online, false, `${id} offline`);
  }
  assert.equal(k.presence.session, 1);

  // history and events
  const hist = await p2.api('GET', `/api/v1/devices/${light.id}/history?property=brightness`);
  assert.deepEqual(
    hist.body.points.map((x: { value: number }) => x.value),
    [40, 55, 70],
  );
  assert.equal(Date.parse(hist.body.points[0].ts), t0);
  const events = (await p2.api('GET', `/api/v1/devices/${lock.id}/events`)).body.items;
  assert.deepEqual(events, before.events);

  // the command ledger
  const ledger = (await p2.api('GET', `/api/v1/devices/${light.id}/commands`)).body.items;
  assert.deepEqual(ledger, ledgerBefore);
  assert.deepEqual(
    ledger.map((c: { status: string }) => c.status),
    ['timeout', 'answered'],
  );
  assert.equal(ledger[1].id, cmd.payload.id);

  // the old secrets still work, and the desired state is delivered on subscribe
  const lc2 = await p2.connect(light.id, light.secret);
  const box2 = inbox(lc2);
  await lc2.subscribeAsync(`devices/${light.id}/desired`, { qos: 1 });
  const msg = await box2.next((m) => m.topic === `devices/${light.id}/desired`);
  assert.deepEqual(msg.payload.state, { colorTemp: 5000 });
  assert.ok(msg.payload.version >= before.light.shadow.version);
  await lc2.publishAsync(`devices/${light.id}/properties`, JSON.stringify({ colorTemp: 5000 }), { qos: 1 });
  const after = await eventually(async () => {
    const r = await p2.api('GET', `/api/v1/devices/${light.id}`);
    return r.body.shadow.reported.colorTemp === 5000 ? r.body : undefined;
  });
  assert.deepEqual(after.shadow.desired, {});
  assert.ok(after.shadow.version > before.light.shadow.version, 'the version keeps counting');
  assert.equal(after.online, true);
  assert.equal(after.presence.session, 2, 'the session counter keeps counting');
  const kc2 = await p2.connect(lock.id, lock.secret);
  assert.ok(kc2.connected);
  // a device of the custom product still validates against its model
  const gc2 = await p2.connect(gauge.id, gauge.secret);
  const gbox = inbox(gc2);
  await gc2.subscribeAsync(`devices/${gauge.id}/errors`, { qos: 1 });
  await gc2.publishAsync(`devices/${gauge.id}/properties`, JSON.stringify({ level: 11 }), { qos: 1 });
  const err = await gbox.next((m) => m.topic === `devices/${gauge.id}/errors`);
  assert.equal(err.payload.code, 'E_MODEL_MISMATCH');
  // a wrong secret is still refused
  const refused = await new Promise<Error | undefined>((resolve) => {
    const c = mqtt.connect(p2.mqttUrl, { clientId: light.id, username: light.id, password: 'wrong', reconnectPeriod: 0 });
    c.once('connect', () => {
      c.end(true);
      resolve(undefined);
    });
    c.once('error', (e) => {
      c.end(true);
      resolve(e);
    });
  });
  assert.ok(refused, 'a wrong secret is refused');
});

test('devices still connected when the platform stops are disconnected and offline after the restart', async () => {
  const p1 = await start();
  const d = await p1.provision('plug');
  const c = await rawDevice(p1, d.id, d.secret);
  await eventually(async () => (await p1.api('GET', `/api/v1/devices/${d.id}`)).body.online === true);
  const gone = new Promise<void>((resolve) => c.once('close', () => resolve()));
  const stopping = stop(p1);
  const stoppedInTime = await Promise.race([stopping.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
  if (!stoppedInTime) c.end(true); // unblock the stop so that the rest can be checked
  await stopping;
  await gone;
  const p2 = await start(p1.dataDir);
  const dev = (await p2.api('GET', `/api/v1/devices/${d.id}`)).body;
  assert.equal(dev.online, false);
  assert.ok(['server-shutdown', 'server-restart'].includes(dev.presence.reason), `reason ${dev.presence.reason}`);
  // a command to it is refused as offline, not lost
  const r = await p2.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle' });
  assert.equal(r.status, 409);
  assert.ok(stoppedInTime, 'Hearth.stop() finished within 3 s while a device was connected (the platform closes device connections itself)');
});

test('a token signed by another installation is refused', async () => {
  const a = await start();
  const b = await start();
  const r = await b.api('GET', '/api/v1/auth/me', undefined, a.token);
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'E_UNAUTHENTICATED');
});
