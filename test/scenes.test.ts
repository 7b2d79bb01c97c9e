import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { WebSocket } from 'ws';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';
import { joinHome, signupUser, type TestUser as User } from './helpers/people.ts';
import { subjects } from '../src/core/bus/subjects.ts';
import type { SceneActivation } from '../src/core/bus/events.ts';

/**
 * Scenes end to end: people over HTTP, simulated lights over real MQTT that apply the desired
 * state they receive and report it back, and answer commands.
 */
let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

let seq = 0;
const signup = (name: string): Promise<User> => signupUser(p, `${name}-${++seq}@scenes.test`);

async function newHome(u: User): Promise<string> {
  const r = await u.api('POST', '/homes', { name: 'Scene home', timezone: 'Europe/Berlin' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

async function claim(u: User, homeId: string, product = 'light') {
  const d = await p.provision(product);
  const r = await u.api('POST', `/homes/${homeId}/devices`, { pairingCode: d.pairingCode });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return d;
}

interface SimLight {
  id: string;
  secret: string;
  c: MqttClient;
  box: ReturnType<typeof inbox>;
  /** Whether it reports the desired state back (a stuck device does not). */
  applies: boolean;
  /** What a device that does not apply the state reports instead. */
  instead?: Record<string, unknown>;
  /** How it answers commands (undefined: not at all). */
  answer: { ok: boolean; error?: string } | undefined;
}

/**
 * Connects a simulated light: it applies every desired state it receives and reports it, and
 * answers commands. Resolves once the platform sends it desired state (so it is listening).
 */
async function connectLight(d: { id: string; secret: string }): Promise<SimLight> {
  // Something to receive on subscribing: proof that the platform knows the device listens.
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { colorTemp: 2700 } })).status, 200);
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  const sim: SimLight = { ...d, c, box, applies: true, answer: { ok: true } };
  c.on('message', (topic, buf) => {
    const msg = JSON.parse(buf.toString());
    if (topic === `devices/${d.id}/desired` && (sim.applies || sim.instead))
      void c.publishAsync(`devices/${d.id}/properties`, JSON.stringify(sim.applies ? msg.state : sim.instead), { qos: 1 });
    if (topic === `devices/${d.id}/commands` && sim.answer)
      void c.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: msg.id, ...sim.answer }), { qos: 1 });
  });
  await c.subscribeAsync([`devices/${d.id}/desired`, `devices/${d.id}/commands`], { qos: 1 });
  await box.next((m) => m.topic === `devices/${d.id}/desired`);
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}/shadow`)).body.reported.colorTemp === 2700, 3000, 'first report');
  return sim;
}

async function reported(id: string): Promise<Record<string, unknown>> {
  return (await p.api('GET', `/api/v1/devices/${id}/shadow`)).body.reported;
}

/** Opens the live stream of a home's scene events. */
async function sceneStream(u: User, homeId: string) {
  const events: any[] = [];
  const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream?homeId=${homeId}&types=scene`, {
    headers: { authorization: `Bearer ${u.token}` },
  });
  ws.on('message', (buf) => events.push(JSON.parse(buf.toString())));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { events, close: () => ws.terminate() };
}

const byDevice = (results: any[], kind = 'state') => Object.fromEntries(results.filter((r) => r.kind === kind).map((r) => [r.device, r]));

test('create and activate: two lights apply the desired state and report back, an action is answered; the stream and the audit trail show it', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const l1 = await connectLight(await claim(ana, home));
  const l2 = await connectLight(await claim(ana, home));
  const live = await sceneStream(ana, home);

  const created = await ana.api('POST', `/homes/${home}/scenes`, {
    name: 'Movie night',
    states: [
      { device: l1.id, properties: { on: true, brightness: 30 } },
      { device: l2.id, properties: { on: false, brightness: 5, colorTemp: 3000 } },
    ],
    actions: [{ device: l1.id, action: 'blink', params: { times: 2 } }],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const scene = created.body;
  assert.match(scene.id, /^s_/);
  assert.equal(scene.homeId, home);
  assert.equal(scene.name, 'Movie night');
  assert.equal(scene.createdBy, `user:${ana.id}`);
  assert.deepEqual(scene.actions, [{ device: l1.id, action: 'blink', params: { times: 2 } }]);
  assert.deepEqual(
    (await ana.api('GET', `/homes/${home}/scenes`)).body.items.map((s: any) => s.id),
    [scene.id],
  );
  assert.deepEqual((await ana.api('GET', `/scenes/${scene.id}`)).body, scene);

  const started = Date.now();
  const act = await ana.api('POST', `/scenes/${scene.id}/activate`, {});
  assert.equal(act.status, 200, JSON.stringify(act.body));
  assert.ok(Date.now() - started < 4000, 'the lights answered long before the 5 s timeout');
  const a = act.body;
  assert.match(a.id, /^sa_/);
  assert.equal(a.sceneId, scene.id);
  assert.equal(a.homeId, home);
  assert.equal(a.source, `user:${ana.id}`);
  assert.equal(a.ok, true, JSON.stringify(a.results));
  assert.equal(a.results.length, 3);
  const states = byDevice(a.results);
  for (const id of [l1.id, l2.id]) {
    assert.equal(states[id].status, 'applied');
    assert.equal(states[id].ok, true);
    assert.equal(typeof states[id].ms, 'number');
  }
  const blink = byDevice(a.results, 'action')[l1.id];
  assert.deepEqual([blink.action, blink.status, blink.ok], ['blink', 'applied', true]);
  assert.deepEqual(await reported(l1.id), { on: true, brightness: 30, colorTemp: 2700 });
  assert.deepEqual(await reported(l2.id), { on: false, brightness: 5, colorTemp: 3000 });
  const cmd = l1.box.messages.find((m) => m.topic === `devices/${l1.id}/commands`);
  assert.deepEqual([cmd?.payload.action, cmd?.payload.params], ['blink', { times: 2 }]);

  // The same again: nothing to change, both applied at once.
  const again = await ana.api('POST', `/scenes/${scene.id}/activate`, { timeoutMs: 1000 });
  assert.equal(again.body.ok, true, JSON.stringify(again.body));

  const ev = await eventually(() => live.events.find((e) => e.type === 'scene' && e.data.id === a.id), 3000, 'scene stream event');
  live.close();
  assert.equal(ev.homeId, home);
  assert.equal(ev.deviceId, null);
  assert.equal(ev.data.sceneId, scene.id);
  assert.equal(ev.data.name, 'Movie night');
  assert.equal(ev.data.ok, true);
  assert.equal(ev.data.source, `user:${ana.id}`);
  assert.deepEqual(ev.data.counts, { applied: 3 });
  assert.equal(ev.data.results, undefined, 'no device ids for everyone who views the home');

  const audit = (await ana.api('GET', `/homes/${home}/audit?limit=100`)).body.items.filter((x: any) => x.targetType === 'scene');
  assert.deepEqual(audit.map((x: any) => x.action).sort(), ['scene.activate', 'scene.activate', 'scene.create']);
  assert.ok(audit.every((x: any) => x.actor === `user:${ana.id}` && x.targetId === scene.id));
});

test('one device offline: it is reported offline (its desired state applies when it returns) while the other applies', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const on = await connectLight(await claim(ana, home));
  const off = await claim(ana, home);
  const scene = (
    await ana.api('POST', `/homes/${home}/scenes`, {
      name: 'Evening',
      states: [
        { device: on.id, properties: { brightness: 60 } },
        { device: off.id, properties: { on: true, brightness: 40 } },
      ],
    })
  ).body;
  const act = await ana.api('POST', `/scenes/${scene.id}/activate`, {});
  assert.equal(act.status, 200, JSON.stringify(act.body));
  assert.equal(act.body.ok, false);
  const r = byDevice(act.body.results);
  assert.equal(r[on.id].status, 'applied');
  assert.equal(r[off.id].status, 'offline');
  assert.equal(r[off.id].ok, false);
  assert.match(r[off.id].note, /applies when it reconnects/);
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${off.id}/shadow`)).body.desired, { on: true, brightness: 40 }, 'the desired state stays set');

  // The device comes back and gets the scene's state.
  const c = await p.connect(off.id, off.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${off.id}/desired`, { qos: 1 });
  const msg = await box.next((m) => m.topic === `devices/${off.id}/desired`);
  assert.deepEqual(msg.payload.state, { on: true, brightness: 40 });
});

test('a device that does not report in time is a timeout; an action the device refuses fails with its error; neither stops the others', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const stuck = await connectLight(await claim(ana, home));
  const good = await connectLight(await claim(ana, home));
  stuck.applies = false;
  stuck.instead = { brightness: 50 }; // its own idea: reports are not enough, they must be the scene's values
  stuck.answer = { ok: false, error: 'bulb missing' };
  const scene = (
    await ana.api('POST', `/homes/${home}/scenes`, {
      name: 'Bright',
      states: [
        { device: stuck.id, properties: { brightness: 90 } },
        { device: good.id, properties: { brightness: 90 } },
      ],
      actions: [
        { device: stuck.id, action: 'toggle' },
        { device: good.id, action: 'toggle' },
      ],
    })
  ).body;
  const started = Date.now();
  const act = await ana.api('POST', `/scenes/${scene.id}/activate`, { timeoutMs: 300 });
  assert.equal(act.status, 200, JSON.stringify(act.body));
  assert.ok(Date.now() - started < 3000, 'the timeout is the per-call one');
  const s = byDevice(act.body.results);
  const a = byDevice(act.body.results, 'action');
  assert.equal(s[stuck.id].status, 'timeout');
  assert.match(s[stuck.id].error, /brightness/);
  assert.ok(s[stuck.id].ms >= 290, `waited the timeout: ${s[stuck.id].ms}`);
  assert.equal((await reported(stuck.id)).brightness, 50);
  assert.equal(s[good.id].status, 'applied');
  assert.deepEqual([a[stuck.id].status, a[stuck.id].error], ['failed', 'bulb missing']);
  assert.equal(a[good.id].status, 'applied');
  assert.equal(act.body.ok, false);
});

test('capture: a scene from the current reported state, writable properties only', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const l1 = await connectLight(await claim(ana, home));
  const plug = await claim(ana, home, 'plug');
  const pc = await p.connect(plug.id, plug.secret);
  await l1.c.publishAsync(`devices/${l1.id}/properties`, JSON.stringify({ on: true, brightness: 55, rssi: -60 }), { qos: 1 });
  await pc.publishAsync(`devices/${plug.id}/properties`, JSON.stringify({ on: false, power: 0, energy: 12.5 }), { qos: 1 });
  await eventually(async () => (await reported(l1.id)).rssi === -60 && (await reported(plug.id)).energy === 12.5, 3000, 'reports');

  const cap = await ana.api('POST', `/homes/${home}/scenes/capture`, { name: 'As it is', devices: [l1.id, plug.id] });
  assert.equal(cap.status, 201, JSON.stringify(cap.body));
  assert.deepEqual(cap.body.states, [
    { device: l1.id, properties: { on: true, brightness: 55, colorTemp: 2700 } },
    { device: plug.id, properties: { on: false } },
  ]);
  assert.deepEqual(cap.body.actions, []);
  const only = await ana.api('POST', `/homes/${home}/scenes/capture`, { name: 'Just on', devices: [l1.id], properties: ['on'] });
  assert.deepEqual(only.body.states, [{ device: l1.id, properties: { on: true } }]);

  // Nothing writable reported, or not in the home: named.
  const silent = await claim(ana, home);
  const outside = await p.provision('light');
  const bad = await ana.api('POST', `/homes/${home}/scenes/capture`, { name: 'Nope', devices: [l1.id, silent.id, outside.id] });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'E_VALIDATION');
  assert.deepEqual(
    bad.body.errors.map((e: any) => e.field),
    ['body.devices[1]', 'body.devices[2]'],
  );
  assert.match(bad.body.detail, /not in this home/);

  // Capturing then activating brings the state back.
  await l1.c.publishAsync(`devices/${l1.id}/properties`, JSON.stringify({ brightness: 10 }), { qos: 1 });
  await eventually(async () => (await reported(l1.id)).brightness === 10, 3000, 'changed');
  const act = await ana.api('POST', `/scenes/${only.body.id}/activate`, {});
  assert.equal(act.body.ok, true, JSON.stringify(act.body));
  const back = await ana.api('POST', `/scenes/${cap.body.id}/activate`, { timeoutMs: 2000 });
  assert.equal(byDevice(back.body.results)[l1.id].status, 'applied');
  assert.equal((await reported(l1.id)).brightness, 55);
});

test('validation names every bad part of states and actions', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const l1 = await claim(ana, home);
  const lock = await claim(ana, home, 'door-lock');
  const elsewhere = await p.provision('light');
  const bad = await ana.api('POST', `/homes/${home}/scenes`, {
    name: 'Broken',
    states: [
      { device: l1.id, properties: { on: true } },
      { device: l1.id, properties: { brightness: 120, rssi: -50, hue: 3 } },
      { device: elsewhere.id, properties: { on: true } },
    ],
    actions: [
      { device: lock.id, action: 'launch' },
      { device: l1.id, action: 'blink', params: { times: 'twice' } },
    ],
  });
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
  assert.equal(bad.body.code, 'E_VALIDATION');
  assert.equal(bad.body.field, 'body.states[1].device');
  const errors = Object.fromEntries(bad.body.errors.map((e: any) => [e.field, e.message]));
  assert.deepEqual(Object.keys(errors), [
    'body.states[1].device',
    'body.states[1].properties.brightness',
    'body.states[1].properties.rssi',
    'body.states[1].properties.hue',
    'body.states[2].device',
    'body.actions[0].action',
    'body.actions[1].params',
  ]);
  assert.match(errors['body.states[1].properties.brightness'], /above the maximum 100/);
  assert.match(errors['body.states[1].properties.rssi'], /read-only/);
  assert.match(errors['body.states[1].properties.hue'], /unknown property/);
  assert.match(errors['body.states[2].device'], /not in this home/);
  assert.match(errors['body.actions[0].action'], /unknown action "launch"/);
  assert.match(errors['body.actions[1].params'], /times/);
  assert.match(bad.body.detail, /body\.states\[1\]\.properties\.brightness: 120 is above the maximum 100/);
  assert.deepEqual((await ana.api('GET', `/homes/${home}/scenes`)).body.items, [], 'nothing saved');

  const empty = await ana.api('POST', `/homes/${home}/scenes`, { name: 'Nothing', states: [] });
  assert.deepEqual([empty.status, empty.body.field], [400, 'body.states']);
  assert.match(empty.body.detail, /at least one state or action/);

  // The schema itself: a state needs its properties.
  assert.equal((await ana.api('POST', `/homes/${home}/scenes`, { name: 'x', states: [{ device: l1.id }] })).status, 400);

  // Updating checks the new lists the same way and keeps the rest.
  const ok = await ana.api('POST', `/homes/${home}/scenes`, {
    name: 'Fine',
    states: [{ device: l1.id, properties: { on: true } }],
    actions: [{ device: lock.id, action: 'lock' }],
  });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  const patchBad = await ana.api('PATCH', `/scenes/${ok.body.id}`, { states: [{ device: lock.id, properties: { locked: 'yes' } }] });
  assert.equal(patchBad.status, 400);
  assert.equal(patchBad.body.field, 'body.states[0].properties.locked');
  const patched = await ana.api('PATCH', `/scenes/${ok.body.id}`, { name: 'Finer', states: [{ device: l1.id, properties: { on: false, brightness: 20 } }] });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.equal(patched.body.name, 'Finer');
  assert.deepEqual(patched.body.states, [{ device: l1.id, properties: { on: false, brightness: 20 } }]);
  assert.deepEqual(patched.body.actions, [{ device: lock.id, action: 'lock' }]);
  assert.equal((await ana.api('DELETE', `/scenes/${ok.body.id}`)).status, 200);
  const gone = await ana.api('GET', `/scenes/${ok.body.id}`);
  assert.deepEqual([gone.status, gone.body.code], [404, 'E_SCENE_NOT_FOUND']);
});

test('permissions: members activate, only owners and admins configure, guests act on their devices only, other homes see nothing', async () => {
  const ana = await signup('ana');
  const mo = await signup('mo');
  const gus = await signup('gus');
  const bob = await signup('bob');
  const home = await newHome(ana);
  await newHome(bob);
  const mine = await connectLight(await claim(ana, home));
  const notGuests = await connectLight(await claim(ana, home));
  await joinHome(p, ana, home, mo, 'member');
  await joinHome(p, ana, home, gus, 'guest', { deviceIds: [mine.id] });
  const scene = (
    await ana.api('POST', `/homes/${home}/scenes`, {
      name: 'Both',
      states: [
        { device: mine.id, properties: { brightness: 33 } },
        { device: notGuests.id, properties: { brightness: 33 } },
      ],
    })
  ).body;
  const body = { name: 'x', states: [{ device: mine.id, properties: { on: true } }] };

  // A member activates but does not configure.
  assert.equal((await mo.api('POST', `/homes/${home}/scenes`, body)).status, 403);
  assert.equal((await mo.api('PATCH', `/scenes/${scene.id}`, { name: 'Mine' })).status, 403);
  assert.equal((await mo.api('DELETE', `/scenes/${scene.id}`)).status, 403);
  const byMo = await mo.api('POST', `/scenes/${scene.id}/activate`, {});
  assert.equal(byMo.status, 200);
  assert.equal(byMo.body.ok, true, JSON.stringify(byMo.body));
  assert.equal(byMo.body.source, `user:${mo.id}`);

  // A guest sees and applies only their device; the other fails untouched.
  assert.equal((await gus.api('POST', `/homes/${home}/scenes`, body)).status, 403);
  assert.equal((await gus.api('POST', `/homes/${home}/scenes/capture`, { name: 'x', devices: [mine.id] })).status, 403);
  assert.equal((await gus.api('PATCH', `/scenes/${scene.id}`, { name: 'Mine' })).status, 403);
  assert.equal((await gus.api('DELETE', `/scenes/${scene.id}`)).status, 403);
  assert.deepEqual(
    (await gus.api('GET', `/scenes/${scene.id}`)).body.states.map((s: any) => s.device),
    [mine.id],
  );
  notGuests.box.messages.length = 0;
  const byGus = await gus.api('POST', `/scenes/${scene.id}/activate`, { timeoutMs: 2000 });
  assert.equal(byGus.status, 200, JSON.stringify(byGus.body));
  assert.deepEqual(
    byGus.body.results.map((r: any) => [r.device, r.status]),
    [[mine.id, 'applied']],
    'only what the guest may see',
  );
  assert.equal(byGus.body.ok, false);
  const recorded = (await ana.api('GET', `/scenes/${scene.id}/activations`)).body.items[0];
  assert.equal(recorded.id, byGus.body.id);
  const refused = byDevice(recorded.results)[notGuests.id];
  assert.equal(refused.status, 'failed');
  assert.match(refused.error, /not allowed/);
  assert.ok(!notGuests.box.messages.some((m) => m.topic.endsWith('/desired')), 'never touched');

  // Another home's user: the scene does not exist.
  for (const [method, path, b] of [
    ['GET', `/scenes/${scene.id}`],
    ['PATCH', `/scenes/${scene.id}`, { name: 'Mine' }],
    ['DELETE', `/scenes/${scene.id}`],
    ['POST', `/scenes/${scene.id}/activate`, {}],
    ['GET', `/scenes/${scene.id}/activations`],
  ] as const) {
    const r = await bob.api(method, path, b);
    assert.deepEqual([r.status, r.body.code], [404, 'E_SCENE_NOT_FOUND'], `${method} ${path}`);
  }
  for (const [method, path, b] of [
    ['GET', `/homes/${home}/scenes`],
    ['POST', `/homes/${home}/scenes`, body],
    ['POST', `/homes/${home}/scenes/capture`, { name: 'x', devices: [mine.id] }],
  ] as const) {
    const r = await bob.api(method, path, b);
    assert.deepEqual([r.status, r.body.code], [404, 'E_HOME_NOT_FOUND'], `${method} ${path}`);
  }
  // Nor may a scene of one's own home name another home's device.
  const bobHome = (await bob.api('GET', '/homes')).body.items[0].id;
  const steal = await bob.api('POST', `/homes/${bobHome}/scenes`, body);
  assert.deepEqual([steal.status, steal.body.field], [400, 'body.states[0].device']);
});

test('activations: newest first, the last 50 kept; a device removed from the home is no longer applied', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const l1 = await connectLight(await claim(ana, home));
  const off = await claim(ana, home);
  const scene = (
    await ana.api('POST', `/homes/${home}/scenes`, {
      name: 'Many',
      states: [
        { device: l1.id, properties: { on: true } },
        { device: off.id, properties: { on: true } },
      ],
      actions: [{ device: off.id, action: 'toggle' }],
    })
  ).body;
  const ids: string[] = [];
  for (let i = 0; i < 52; i++) {
    const r = await ana.api('POST', `/scenes/${scene.id}/activate`, {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    ids.push(r.body.id);
  }
  const list = await ana.api('GET', `/scenes/${scene.id}/activations`);
  assert.equal(list.status, 200);
  assert.equal(list.body.items.length, 50);
  assert.deepEqual(
    list.body.items.map((a: any) => a.id),
    ids.slice(2).reverse(),
  );
  const newest = list.body.items[0];
  assert.deepEqual(
    newest.results.map((r: any) => [r.device, r.kind, r.status]),
    [
      [l1.id, 'state', 'applied'],
      [off.id, 'state', 'offline'],
      [off.id, 'action', 'offline'],
    ],
  );
  assert.deepEqual(
    (await ana.api('GET', `/scenes/${scene.id}/activations?limit=2`)).body.items.map((a: any) => a.id),
    [ids[51], ids[50]],
  );

  // The offline light leaves the home: the scene no longer shows or applies it, even if it comes back later.
  assert.equal((await ana.api('DELETE', `/homes/${home}/devices/${off.id}`)).status, 200);
  const after = await ana.api('GET', `/scenes/${scene.id}`);
  assert.deepEqual(
    after.body.states.map((s: any) => s.device),
    [l1.id],
  );
  assert.deepEqual(after.body.actions, []);
  const act = await ana.api('POST', `/scenes/${scene.id}/activate`, {});
  assert.deepEqual(
    act.body.results.map((r: any) => r.device),
    [l1.id],
  );
  assert.equal(act.body.ok, true);
  assert.equal((await ana.api('POST', `/homes/${home}/devices`, { pairingCode: off.pairingCode })).status, 201);
  assert.deepEqual(
    (await ana.api('GET', `/scenes/${scene.id}`)).body.states.map((s: any) => s.device),
    [l1.id],
    'rejoining does not revive old entries',
  );
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${off.id}/shadow`)).body.desired, {});

  // Deleting the scene deletes its activations.
  assert.equal((await ana.api('DELETE', `/scenes/${scene.id}`)).status, 200);
  assert.equal((await ana.api('GET', `/scenes/${scene.id}/activations`)).status, 404);
});

test('for automations: exists, and activateAs with a source; every activation is published on home.{id}.scene', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const other = await newHome(ana);
  const l1 = await connectLight(await claim(ana, home));
  const scene = (await ana.api('POST', `/homes/${home}/scenes`, { name: 'Auto', states: [{ device: l1.id, properties: { brightness: 77 } }] })).body;
  const scenes = p.hearth.services.scenes;
  assert.equal(await scenes.exists(home, scene.id), true);
  assert.equal(await scenes.exists(other, scene.id), false);
  assert.equal(await scenes.exists(home, 's_nope'), false);
  await assert.rejects(scenes.activateAs('automation:a_test', other, scene.id), (e: any) => e.code === 'E_SCENE_NOT_FOUND');

  const heard: SceneActivation[] = [];
  const unsub = p.hearth.bus.subscribe(subjects.sceneActivated(home), (m) => void heard.push(m.data), { name: 'test.scenes' });
  try {
    const a = await scenes.activateAs('automation:a_test', home, scene.id);
    assert.equal(a.source, 'automation:a_test');
    assert.equal(a.ok, true, JSON.stringify(a.results));
    assert.equal((await reported(l1.id)).brightness, 77);
    const byUser = await ana.api('POST', `/scenes/${scene.id}/activate`, {});
    await eventually(() => heard.length === 2, 3000, 'two bus messages');
    assert.deepEqual(
      heard.map((h) => [h.id, h.source, h.homeId, h.sceneId]),
      [
        [a.id, 'automation:a_test', home, scene.id],
        [byUser.body.id, `user:${ana.id}`, home, scene.id],
      ],
    );
    const audit = (await ana.api('GET', `/homes/${home}/audit?limit=100`)).body.items.find(
      (x: any) => x.action === 'scene.activate' && x.actor === 'automation:a_test',
    );
    assert.ok(audit, 'the automation activation is audited with its source');
  } finally {
    unsub();
  }
});
