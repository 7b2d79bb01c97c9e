import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient, Packet } from 'mqtt';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

type Box = ReturnType<typeof inbox>;

/** A connected hub listening on its joined and errors topics. */
async function hub() {
  const h = await p.provision('hub');
  const c = await p.connect(h.id, h.secret);
  const box = inbox(c);
  await c.subscribeAsync([`devices/${h.id}/children/joined`, `devices/${h.id}/errors`], { qos: 1 });
  return { ...h, c, box };
}

async function join(h: { id: string; c: MqttClient; box: Box }, product: string, hwid: string): Promise<string> {
  await h.c.publishAsync(`devices/${h.id}/children/join`, JSON.stringify({ product, hwid }), { qos: 1 });
  const m = await h.box.next((x) => x.topic === `devices/${h.id}/children/joined` && x.payload.hwid === hwid);
  assert.equal(m.payload.product, product);
  assert.match(m.payload.id, /^d_/);
  return m.payload.id;
}

const device = (id: string) => p.device(id);

/** Reads the granted codes of one SUBSCRIBE (mqtt.js rejects subscribeAsync when any is 128). */
function grantedFor(c: MqttClient, topics: string[]): Promise<number[]> {
  return new Promise((resolve) => {
    const onPacket = (packet: Packet) => {
      if (packet.cmd !== 'suback') return;
      c.off('packetreceive', onPacket);
      resolve(packet.granted as number[]);
    };
    c.on('packetreceive', onPacket);
    c.subscribe(topics, { qos: 1 }, () => undefined);
  });
}

test('a hub joins sub-devices by hardware id; joining again returns the same id', async () => {
  const h = await hub();
  const lightId = await join(h, 'light', '00:12:4b:00:00:00:00:01');
  const plugId = await join(h, 'plug', '00:12:4b:00:00:00:00:02');
  assert.notEqual(lightId, plugId);
  assert.equal(await join(h, 'light', '00:12:4b:00:00:00:00:01'), lightId);
  // the same hwid under another hub is another device
  const h2 = await hub();
  const other = await join(h2, 'light', '00:12:4b:00:00:00:00:01');
  assert.notEqual(other, lightId);

  const child = await device(lightId);
  assert.equal(child.product, 'light');
  assert.equal(child.parentId, h.id);
  assert.equal(child.hwid, '00:12:4b:00:00:00:00:01');
  assert.equal(child.online, false, 'joining alone does not make the child online');

  const list = await p.api('GET', `/api/v1/devices/${h.id}/children`);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.items.map((d: { id: string }) => d.id).sort(), [lightId, plugId].sort());
  const byId = new Map(list.body.items.map((d: { id: string; product: string }) => [d.id, d.product]));
  assert.equal(byId.get(lightId), 'light');
  assert.equal(byId.get(plugId), 'plug');
  const viaFilter = await p.api('GET', `/api/v1/devices?parentId=${h.id}`);
  assert.equal(viaFilter.body.total, 2);
  const none = await p.api('GET', `/api/v1/devices/${h2.id}/children`);
  assert.deepEqual(
    none.body.items.map((d: { id: string }) => d.id),
    [other],
  );
  const missing = await p.api('GET', '/api/v1/devices/d_doesnotexist00/children');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.code, 'E_DEVICE_NOT_FOUND');
});

test("bad join requests get an error on the hub's error topic", async () => {
  const h = await hub();
  const cases: Array<[unknown, string, RegExp]> = [
    [{ product: 'toaster', hwid: 'aa:bb' }, 'E_PRODUCT_NOT_FOUND', /product "toaster" does not exist/],
    [{ product: 'light' }, 'E_BAD_MESSAGE', /hwid/],
    [{ product: 'light', hwid: '' }, 'E_BAD_MESSAGE', /hwid/],
    [{ product: 'light', hwid: 'x'.repeat(65) }, 'E_BAD_MESSAGE', /64/],
  ];
  for (const [payload, code, message] of cases) {
    await h.c.publishAsync(`devices/${h.id}/children/join`, JSON.stringify(payload), { qos: 1 });
    const err = await h.box.next((m) => m.topic === `devices/${h.id}/errors`);
    assert.equal(err.payload.code, code, JSON.stringify(payload));
    assert.match(err.payload.message, message);
    assert.equal(err.payload.topic, `devices/${h.id}/children/join`);
  }
  assert.equal(h.box.messages.filter((m) => m.topic.endsWith('/children/joined')).length, 0);
  const list = await p.api('GET', `/api/v1/devices/${h.id}/children`);
  assert.deepEqual(list.body.items, []);
  assert.equal((await device(h.id)).online, true, 'the hub stays connected');
});

test('a hub reports for its child: shadow, presence and history', async () => {
  const h = await hub();
  const childId = await join(h, 'temp-humidity-sensor', 'sensor-1');
  await h.c.publishAsync(`devices/${childId}/properties`, JSON.stringify({ temperature: 21.5, humidity: 40, battery: 90 }), { qos: 1 });
  const child = await eventually(async () => {
    const d = await device(childId);
    return d.shadow.reported.temperature === 21.5 ? d : undefined;
  });
  assert.equal(child.online, true);
  assert.equal(child.presence.reason, 'hub-reported');
  assert.ok(child.lastSeen);
  assert.deepEqual(child.shadow.reported, { temperature: 21.5, humidity: 40, battery: 90 });
  const hist = await p.api('GET', `/api/v1/devices/${childId}/history?property=temperature`);
  assert.deepEqual(
    hist.body.points.map((x: { value: number }) => x.value),
    [21.5],
  );
  // the hub's own shadow is untouched
  assert.deepEqual((await device(h.id)).shadow.reported, {});

  // a rejected report for the child is told on the child's error topic, which the hub may hear
  await h.c.subscribeAsync(`devices/${childId}/errors`, { qos: 1 });
  await h.c.publishAsync(`devices/${childId}/properties`, JSON.stringify({ temperature: 200 }), { qos: 1 });
  const err = await h.box.next((m) => m.topic === `devices/${childId}/errors`);
  assert.equal(err.payload.code, 'E_MODEL_MISMATCH');
  assert.equal(err.payload.topic, `devices/${childId}/properties`);
  assert.equal((await device(childId)).shadow.reported.temperature, 21.5);

  // events for the child
  const sensor = await join(h, 'motion-sensor', 'motion-1');
  await h.c.publishAsync(`devices/${sensor}/events`, JSON.stringify({ event: 'motion' }), { qos: 1 });
  const events = await eventually(async () => {
    const r = await p.api('GET', `/api/v1/devices/${sensor}/events`);
    return r.body.items.length === 1 ? r.body.items : undefined;
  });
  assert.equal(events[0].event, 'motion');
  assert.equal((await device(sensor)).online, true);
});

test('a hub answers commands sent to its child through the REST API', async () => {
  const h = await hub();
  const lightId = await join(h, 'light', 'light-cmd');
  const offline = await p.api('POST', `/api/v1/devices/${lightId}/commands`, { action: 'toggle' });
  assert.equal(offline.status, 409, 'a joined child is offline until its hub reports for it');
  await h.c.publishAsync(`devices/${lightId}/presence`, JSON.stringify({ online: true }), { qos: 1 });
  await eventually(async () => (await device(lightId)).online === true, 3000, 'child online');
  await h.c.subscribeAsync(`devices/${lightId}/commands`, { qos: 1 });
  const call = p.api('POST', `/api/v1/devices/${lightId}/commands`, { action: 'blink', params: { times: 3 } });
  const cmd = await h.box.next((m) => m.topic === `devices/${lightId}/commands`);
  assert.equal(cmd.payload.action, 'blink');
  assert.deepEqual(cmd.payload.params, { times: 3 });
  await h.c.publishAsync(`devices/${lightId}/commands/result`, JSON.stringify({ id: cmd.payload.id, ok: true }), { qos: 1 });
  const res = await call;
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.ok, true);
  assert.equal(res.body.id, cmd.payload.id);
  const ledger = await p.api('GET', `/api/v1/devices/${lightId}/commands`);
  assert.equal(ledger.body.items[0].status, 'answered');
  // the hub's own ledger is empty
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${h.id}/commands`)).body.items, []);

  // desired state for the child reaches the hub too
  await h.c.subscribeAsync(`devices/${lightId}/desired`, { qos: 1 });
  const patch = await p.api('PATCH', `/api/v1/devices/${lightId}/shadow`, { desired: { brightness: 25 } });
  assert.equal(patch.status, 200);
  const desired = await h.box.next((m) => m.topic === `devices/${lightId}/desired`);
  assert.deepEqual(desired.payload, { state: { brightness: 25 }, version: patch.body.version });
});

test("hub-reported presence and hub disconnects drive the children's presence", async () => {
  const h = await hub();
  const a = await join(h, 'plug', 'plug-a');
  const b = await join(h, 'contact-sensor', 'contact-b');
  const c = await join(h, 'water-leak-sensor', 'leak-c');
  await h.c.publishAsync(`devices/${a}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await h.c.publishAsync(`devices/${b}/presence`, JSON.stringify({ online: true }), { qos: 1 });
  await eventually(async () => (await device(a)).online && (await device(b)).online, 3000, 'children online');
  const cd = await device(c);
  assert.equal(cd.online, false);
  assert.equal(cd.presence.reason, 'never-connected');

  await h.c.publishAsync(`devices/${b}/presence`, JSON.stringify({ online: false }), { qos: 1 });
  const bOff = await eventually(
    async () => {
      const d = await device(b);
      return d.online === false ? d : undefined;
    },
    3000,
    'child b offline',
  );
  assert.equal(bOff.presence.reason, 'hub-reported');
  assert.equal((await device(a)).online, true);
  assert.equal((await device(h.id)).online, true, 'the hub itself stays online');

  // a malformed presence message
  await h.c.subscribeAsync(`devices/${a}/errors`, { qos: 1 });
  await h.c.publishAsync(`devices/${a}/presence`, JSON.stringify({ online: 'no' }), { qos: 1 });
  const err = await h.box.next((m) => m.topic === `devices/${a}/errors`);
  assert.equal(err.payload.code, 'E_BAD_MESSAGE');
  assert.equal((await device(a)).online, true);

  await h.c.endAsync();
  const aOff = await eventually(
    async () => {
      const d = await device(a);
      return d.online === false ? d : undefined;
    },
    3000,
    'child a offline after the hub left',
  );
  assert.equal(aOff.presence.reason, 'hub-offline');
  const hubDev = await device(h.id);
  assert.equal(hubDev.online, false);
  assert.equal(hubDev.presence.reason, 'disconnect');
  // children that were already offline keep their reason
  assert.equal((await device(b)).presence.reason, 'hub-reported');
  assert.equal((await device(c)).presence.reason, 'never-connected');
  const children = await p.api('GET', `/api/v1/devices/${h.id}/children`);
  assert.ok(children.body.items.every((d: { online: boolean }) => d.online === false));

  // the hub comes back and reports for one child again
  const c2 = await p.connect(h.id, h.secret);
  await c2.publishAsync(`devices/${a}/properties`, JSON.stringify({ on: false }), { qos: 1 });
  const aBack = await eventually(
    async () => {
      const d = await device(a);
      return d.online ? d : undefined;
    },
    3000,
    'child a back',
  );
  assert.equal(aBack.presence.reason, 'hub-reported');
  assert.equal(aBack.shadow.reported.on, false);
});

test('a device provisioned with a parent can be served by that hub', async () => {
  const h = await hub();
  const child = await p.provision('plug', 'wired plug', h.id);
  const rec = await device(child.id);
  assert.equal(rec.parentId, h.id);
  await h.c.publishAsync(`devices/${child.id}/properties`, JSON.stringify({ on: true, power: 5 }), { qos: 1 });
  await eventually(async () => (await device(child.id)).shadow.reported.power === 5);
  const list = await p.api('GET', `/api/v1/devices/${h.id}/children`);
  assert.deepEqual(
    list.body.items.map((d: { id: string }) => d.id),
    [child.id],
  );

  const bad = await p.api('POST', '/api/v1/devices', { product: 'plug', name: 'orphan', parentId: 'd_doesnotexist00' });
  assert.equal(bad.status, 404);
  assert.equal(bad.body.code, 'E_DEVICE_NOT_FOUND');
  assert.match(bad.body.detail, /d_doesnotexist00/);
  const badProduct = await p.api('POST', '/api/v1/devices', { product: 'toaster', name: 'x', parentId: h.id });
  assert.equal(badProduct.status, 404);
  assert.equal(badProduct.body.code, 'E_PRODUCT_NOT_FOUND');
  const all = await p.api('GET', `/api/v1/devices/${h.id}/children`);
  assert.equal(all.body.items.length, 1, 'nothing was created by the failed calls');
});

test('a hub cannot publish or subscribe for devices that are not its children', async () => {
  const h = await hub();
  const mine = await join(h, 'light', 'mine-1');
  const other = await hub();
  const theirs = await join(other, 'light', 'theirs-1');
  const plain = await p.provision('light');
  await other.c.publishAsync(`devices/${theirs}/properties`, JSON.stringify({ on: false }), { qos: 1 });
  await eventually(async () => (await device(theirs)).shadow.reported.on === false);

  const granted = await grantedFor(h.c, [
    `devices/${theirs}/commands`,
    `devices/${plain.id}/desired`,
    `devices/${other.id}/#`,
    `devices/${mine}/commands`,
    `devices/${mine}/desired`,
  ]);
  assert.deepEqual(granted, [128, 128, 128, 1, 1]);

  // publishing for someone else's child closes the connection and changes nothing
  for (const [target, suffix, payload] of [
    [theirs, 'properties', { on: true }],
    [theirs, 'presence', { online: false }],
    [plain.id, 'properties', { on: true }],
    [other.id, 'children/join', { product: 'plug', hwid: 'stolen' }],
  ] as const) {
    const c = await p.connect(h.id, h.secret);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.publish(`devices/${target}/${suffix}`, JSON.stringify(payload), { qos: 1 });
    await closed;
  }
  // the real hub's later report for its child is applied after anything that got in before the closes
  await other.c.publishAsync(`devices/${theirs}/properties`, JSON.stringify({ brightness: 42 }), { qos: 1 });
  const t = await eventually(
    async () => {
      const d = await device(theirs);
      return d.shadow.reported.brightness === 42 ? d : undefined;
    },
    3000,
    "the real hub's later report",
  );
  assert.equal(t.shadow.reported.on, false, 'the forged report changed nothing');
  assert.equal(t.online, true, 'the forged presence changed nothing');
  const pl = await device(plain.id);
  assert.deepEqual(pl.shadow.reported, {});
  assert.equal(pl.online, false);
  assert.equal((await p.api('GET', `/api/v1/devices/${other.id}/children`)).body.items.length, 1);

  // a hub cannot join on a child's topic, and a child topic is not a hub topic
  const c = await p.connect(h.id, h.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${mine}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${mine}/children/join`, JSON.stringify({ product: 'plug', hwid: 'nested' }), { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${mine}/errors`);
  assert.equal(err.payload.code, 'E_BAD_MESSAGE');
  assert.match(err.payload.message, /only a hub joins/);
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${mine}/children`)).body.items, []);
});

test('a device reporting presence for itself is refused', async () => {
  const d = await p.provision('plug');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${d.id}/presence`, JSON.stringify({ online: false }), { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${d.id}/errors`);
  assert.equal(err.payload.code, 'E_BAD_MESSAGE');
  assert.match(err.payload.message, /only a hub reports presence/);
  assert.equal((await device(d.id)).online, true);
});

test('only hubs have sub-devices: a device of another product cannot join any, nothing is created', async () => {
  const plug = await p.provision('plug');
  const c = await p.connect(plug.id, plug.secret);
  const box = inbox(c);
  await c.subscribeAsync([`devices/${plug.id}/errors`, `devices/${plug.id}/children/joined`], { qos: 1 });
  await c.publishAsync(`devices/${plug.id}/children/join`, JSON.stringify({ product: 'light', hwid: 'not-a-hub-1' }), { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${plug.id}/errors`);
  assert.equal(err.payload.code, 'E_FORBIDDEN');
  assert.match(err.payload.message, /not a hub/);
  assert.equal(err.payload.topic, `devices/${plug.id}/children/join`);
  assert.equal(box.messages.filter((m) => m.topic.endsWith('/children/joined')).length, 0);
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${plug.id}/children`)).body.items, []);
  assert.equal((await p.api('GET', `/api/v1/devices?parentId=${plug.id}`)).body.total, 0);

  // the REST API keeps the same rule
  const viaApi = await p.api('POST', '/api/v1/devices', { product: 'light', name: 'under a plug', parentId: plug.id });
  assert.equal(viaApi.status, 400);
  assert.equal(viaApi.body.code, 'E_VALIDATION');
  assert.equal(viaApi.body.field, 'parentId');
  assert.match(viaApi.body.detail, /not a hub/);
  const bulk = await p.api('POST', '/api/v1/devices/bulk', {
    items: [
      { product: 'light', name: 'fine' },
      { product: 'light', name: 'under a plug', parentId: plug.id },
    ],
  });
  assert.equal(bulk.status, 400);
  assert.equal(bulk.body.field, 'items[1].parentId');
  assert.equal((await p.api('GET', `/api/v1/devices?parentId=${plug.id}`)).body.total, 0);

  // a hub is recognised by its product's category, not by the catalog's key
  const key = `acme-bridge-${Date.now()}`;
  const created = await p.api('POST', '/api/v1/products', {
    key,
    name: 'ACME bridge',
    category: 'gateway',
    model: { properties: [], events: [], actions: [] },
  });
  assert.equal(created.status, 201);
  const bridge = await p.provision(key);
  const bc = await p.connect(bridge.id, bridge.secret);
  const bbox = inbox(bc);
  await bc.subscribeAsync(`devices/${bridge.id}/children/joined`, { qos: 1 });
  await bc.publishAsync(`devices/${bridge.id}/children/join`, JSON.stringify({ product: 'light', hwid: 'bridged-1' }), { qos: 1 });
  assert.match((await bbox.next((m) => m.topic === `devices/${bridge.id}/children/joined`)).payload.id, /^d_/);
});

test('a sub-device cannot have sub-devices, nor speak for its hub', async () => {
  const h = await hub();
  // a sub-device provisioned through the API has a secret and may connect by itself
  const nested = await p.provision('hub', 'hub under a hub', h.id);
  const c = await p.connect(nested.id, nested.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${nested.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${nested.id}/children/join`, JSON.stringify({ product: 'plug', hwid: 'grandchild' }), { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${nested.id}/errors`);
  assert.equal(err.payload.code, 'E_FORBIDDEN');
  assert.match(err.payload.message, /sub-device/);
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${nested.id}/children`)).body.items, []);
  const viaApi = await p.api('POST', '/api/v1/devices', { product: 'plug', name: 'grandchild', parentId: nested.id });
  assert.equal(viaApi.status, 400);
  assert.equal(viaApi.body.field, 'parentId');

  // nor publish, join or report presence for its hub: the connection is closed, nothing changes
  for (const [suffix, payload] of [
    ['properties', { permitJoin: true }],
    ['children/join', { product: 'plug', hwid: 'via-child' }],
    ['presence', { online: false }],
  ] as const) {
    const cc = await p.connect(nested.id, nested.secret);
    const closed = new Promise<void>((resolve) => cc.once('close', () => resolve()));
    cc.publish(`devices/${h.id}/${suffix}`, JSON.stringify(payload), { qos: 1 });
    await closed;
  }
  // the hub's own later report is applied after anything that got in before the closes
  await h.c.publishAsync(`devices/${h.id}/properties`, JSON.stringify({ uptime: 7 }), { qos: 1 });
  const hubNow = await eventually(
    async () => {
      const d = await device(h.id);
      return d.shadow.reported.uptime === 7 ? d : undefined;
    },
    3000,
    "the hub's own later report",
  );
  assert.deepEqual(hubNow.shadow.reported, { uptime: 7 });
  assert.equal(hubNow.online, true);
  assert.deepEqual(
    (await p.api('GET', `/api/v1/devices/${h.id}/children`)).body.items.map((d: { id: string }) => d.id),
    [nested.id],
  );
});
