import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { DEMO_CHILDREN, startSimulator, type RunningSimulator } from '../src/simulator/simulator.ts';

let p: Platform;
const sims: RunningSimulator[] = [];
before(async () => {
  p = await startPlatform();
});
after(async () => {
  for (const s of sims) await s.stop();
  await p.stop();
});

function simulate(hub: { id: string; secret: string }, log?: (m: string) => void): RunningSimulator {
  const sim = startSimulator({ mqttUrl: p.mqttUrl, hubId: hub.id, hubSecret: hub.secret, children: DEMO_CHILDREN, intervalMs: 200, log });
  sims.push(sim);
  return sim;
}

const device = (id: string) => p.device(id);

const until = (id: string, pred: (d: any) => boolean, what: string, timeoutMs?: number) => p.until(id, pred, what, timeoutMs);

function childOf(sim: RunningSimulator, product: string): string {
  const hwid = DEMO_CHILDREN.find((c) => c.product === product)!.hwid;
  const c = sim.children.get(hwid);
  assert.ok(c, `${product} joined`);
  return c.id;
}

test('a simulated hub with its children, driven through the REST API', async () => {
  const hub = await p.provision('hub', 'Simulated hub');
  const sim = simulate(hub);
  await sim.ready;
  assert.equal(sim.children.size, DEMO_CHILDREN.length);

  // the children appear with their products and hardware ids
  const list = await p.api('GET', `/api/v1/devices/${hub.id}/children`);
  assert.equal(list.status, 200);
  const got = list.body.items.map((d: { product: string; hwid: string }) => `${d.product} ${d.hwid}`).sort();
  assert.deepEqual(got, DEMO_CHILDREN.map((c) => `${c.product} ${c.hwid}`).sort());
  for (const d of list.body.items) assert.equal(sim.children.get(d.hwid)?.id, d.id);
  const hubDev = await until(hub.id, (d) => d.online && d.shadow.reported.children === DEMO_CHILDREN.length, 'hub reports its children');
  assert.equal(hubDev.presence.reason, 'connect');
  assert.equal(hubDev.shadow.reported.firmware, '2.4.1');
  for (const c of sim.children.values()) {
    const d = await until(c.id, (x) => x.online, `${c.product} online`);
    assert.equal(d.presence.reason, 'hub-reported');
    assert.equal(d.parentId, hub.id);
    assert.ok(Object.keys(d.shadow.reported).length > 0, `${c.product} reported its state`);
  }

  // the light answers a toggle and its shadow follows
  const light = childOf(sim, 'light');
  const on = (await until(light, (d) => typeof d.shadow.reported.on === 'boolean', 'light state')).shadow.reported.on as boolean;
  const res = await p.api('POST', `/api/v1/devices/${light}/commands`, { action: 'toggle', timeoutMs: 3000 });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.ok, true);
  await until(light, (d) => d.shadow.reported.on === !on, 'light toggled');
  const ledger = (await p.api('GET', `/api/v1/devices/${light}/commands`)).body.items;
  assert.equal(ledger[0].status, 'answered');
  // an action the light's model has but with bad params never reaches it
  const bad = await p.api('POST', `/api/v1/devices/${light}/commands`, { action: 'blink', params: { times: 99 } });
  assert.equal(bad.status, 400);

  // desired brightness is applied and reported
  const current = (await device(light)).shadow.reported.brightness as number;
  const target = current === 33 ? 34 : 33;
  const patch = await p.api('PATCH', `/api/v1/devices/${light}/shadow`, { desired: { brightness: target } });
  assert.equal(patch.status, 200);
  assert.deepEqual(patch.body.delta, { brightness: target });
  const applied = await until(light, (d) => d.shadow.reported.brightness === target, 'desired brightness reported');
  const settled = await until(light, (d) => Object.keys(d.shadow.delta).length === 0, 'delta empty');
  assert.deepEqual(settled.shadow.desired, {});
  assert.ok(applied.shadow.version > patch.body.version);

  // the lock answers unlock with a property change and an event
  const lock = childOf(sim, 'door-lock');
  await until(lock, (d) => d.shadow.reported.locked === true, 'lock locked');
  const unlock = await p.api('POST', `/api/v1/devices/${lock}/commands`, { action: 'unlock' });
  assert.equal(unlock.body.ok, true);
  await until(lock, (d) => d.shadow.reported.locked === false, 'lock unlocked');
  const events = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/devices/${lock}/events`);
      return r.body.items.find((e: { event: string }) => e.event === 'unlock');
    },
    3000,
    'unlock event',
  );
  assert.equal(events.params.method, 'app');

  // sensors change over time
  const sensor = childOf(sim, 'temp-humidity-sensor');
  const v0 = (await device(sensor)).shadow.version;
  const later = await until(sensor, (d) => d.shadow.version >= v0 + 3, 'sensor reports keep coming', 4000);
  assert.ok(typeof later.shadow.reported.temperature === 'number');
  const hist = await p.api('GET', `/api/v1/devices/${sensor}/history?property=temperature`);
  assert.ok(hist.body.points.length >= 2, `temperature history has ${hist.body.points.length} points`);

  // stop: the hub disconnects cleanly and its children go offline with it
  await sim.stop();
  const hubOff = await until(hub.id, (d) => !d.online, 'hub offline');
  assert.equal(hubOff.presence.reason, 'disconnect');
  for (const c of sim.children.values()) {
    const d = await until(c.id, (x) => !x.online, `${c.product} offline`);
    assert.equal(d.presence.reason, 'hub-offline', `${c.product}`);
  }
});

test('a restarted simulator keeps its children and applies desired state set while it was away', async () => {
  const hub = await p.provision('hub', 'Simulated hub 2');
  const first = simulate(hub);
  await first.ready;
  const ids = new Map([...first.children].map(([hwid, c]) => [hwid, c.id]));
  const lock = childOf(first, 'door-lock');
  const curtain = childOf(first, 'curtain');
  await until(lock, (d) => d.shadow.reported.locked === true, 'lock locked');
  await first.stop();
  await until(lock, (d) => !d.online, 'lock offline');

  const pos = (await device(curtain)).shadow.reported.position as number;
  const target = pos === 40 ? 60 : 40;
  const patch = await p.api('PATCH', `/api/v1/devices/${lock}/shadow`, { desired: { locked: false } });
  assert.equal(patch.status, 200);
  assert.equal((await p.api('PATCH', `/api/v1/devices/${curtain}/shadow`, { desired: { position: target } })).status, 200);

  const second = simulate(hub);
  await second.ready;
  assert.deepEqual(new Map([...second.children].map(([hwid, c]) => [hwid, c.id])), ids, 'the same hwids map to the same devices');
  const l = await until(lock, (d) => d.shadow.reported.locked === false && Object.keys(d.shadow.desired).length === 0, 'lock applied the desired state');
  assert.equal(l.online, true);
  assert.deepEqual(l.shadow.delta, {});
  const c = await until(curtain, (d) => d.shadow.reported.position === target, 'curtain moved');
  assert.deepEqual(c.shadow.desired, {});
  await until(curtain, (d) => d.shadow.reported.moving === 'stopped', 'curtain settled', 3000);
  await second.stop();
  await until(hub.id, (d) => !d.online && d.presence.reason === 'disconnect', 'hub offline');
});

test('a simulator with wrong hub credentials fails ready', async () => {
  const hub = await p.provision('hub');
  const sim = simulate({ id: hub.id, secret: 'not-the-secret' });
  await assert.rejects(sim.ready, /Bad username or password|Not authorized|bad device id/i);
  assert.equal((await device(hub.id)).online, false);
});
