import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startPlatform, eventually, type ApiResponse, type Platform } from './helpers/platform.ts';
import { ManualClock } from '../src/core/clock.ts';
import { TimerService } from '../src/timers/timer-service.ts';

/**
 * Automations with the TimerService and the SceneService: schedules across a DST change and a
 * sunset trigger on a ManualClock, and scenes as trigger and action, with devices over real MQTT.
 */
let p: Platform;
const clock = new ManualClock(new Date('2026-10-23T12:00:00Z'));
let token = '';
let home = '';
const api = (method: string, path: string, body?: unknown): Promise<ApiResponse<any>> => p.api(method, `/api/v1${path}`, body, token);

before(async () => {
  p = await startPlatform({ clock });
  const s = await p.api('POST', '/api/v1/auth/signup', { email: 'time@auto.test', password: 'password-of-time' }, null);
  assert.equal(s.status, 201);
  token = (await p.api('POST', '/api/v1/auth/login', { email: 'time@auto.test', password: 'password-of-time' }, null)).body.token;
  const h = await api('POST', '/homes', { name: 'Berlin flat', timezone: 'Europe/Berlin', latitude: 52.52, longitude: 13.405 });
  assert.equal(h.status, 201);
  home = h.body.id;
});
after(async () => {
  await p.stop();
});

async function create(body: Record<string, unknown>): Promise<any> {
  const r = await api('POST', `/homes/${home}/automations`, body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}
async function runs(id: string): Promise<any[]> {
  return (await api('GET', `/automations/${id}/runs?limit=200`)).body.items;
}
/** Moves the clock in steps (the timers re-arm between them). */
async function advanceTo(iso: string, stepMs = 3600_000): Promise<void> {
  const end = Date.parse(iso);
  while (clock.now() < end) {
    await p.hearth.bus.flush();
    await clock.set(Math.min(end, clock.now() + stepMs));
    await p.hearth.services.timers.settled();
  }
  await p.hearth.bus.flush();
}

async function light(): Promise<{ id: string; c: MqttClient; commands: any[] }> {
  const d = await p.provision('light');
  assert.equal((await api('POST', `/homes/${home}/devices`, { pairingCode: d.pairingCode })).status, 201);
  const c = await p.connect(d.id, d.secret);
  const commands: any[] = [];
  c.on('message', (topic, buf) => {
    if (topic !== `devices/${d.id}/commands`) return;
    const cmd = JSON.parse(buf.toString());
    commands.push(cmd);
    void c.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 }).catch(() => undefined);
  });
  await c.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  await eventually(async () => (await p.device(d.id)).online === true, 3000, 'online');
  return { id: d.id, c, commands };
}

test('a daily 07:00 schedule fires at 07:00 local time on both sides of the end of summer time', async () => {
  const a = await create({ name: 'Curtains at seven', triggers: [{ type: 'schedule', cron: '0 7 * * *' }], actions: [{ type: 'delay', duration: 0 }] });
  // Berlin leaves summer time on Sunday 2026-10-25 (03:00 CEST → 02:00 CET): 07:00 local is 05:00 UTC
  // before, 06:00 UTC after. The clock goes to one second after each, and the run must be there.
  const expected = ['2026-10-24T05:00:00.000Z', '2026-10-25T06:00:00.000Z', '2026-10-26T06:00:00.000Z'];
  for (const [i, due] of expected.entries()) {
    await advanceTo(new Date(Date.parse(due) - 60_000).toISOString());
    assert.equal((await runs(a.id)).length, i, `nothing before ${due}`);
    await advanceTo(new Date(Date.parse(due) + 1000).toISOString());
    await eventually(async () => (await runs(a.id)).length === i + 1, 5000, `the firing at ${due}`);
  }
  const list = await runs(a.id);
  assert.deepEqual(list.map((r) => r.trace.trigger.data.scheduledAt).reverse(), expected, 'UTC+2 before, UTC+1 after');
  for (const r of list) {
    assert.equal(r.status, 'completed');
    assert.equal(r.trace.trigger.type, 'schedule');
    assert.equal(r.trace.trigger.index, 0);
  }
  // disabled: no more firings
  await api('PATCH', `/automations/${a.id}`, { enabled: false });
  await advanceTo('2026-10-27T12:00:00Z');
  assert.equal((await runs(a.id)).length, 3);
});

test("a sunset trigger with an offset fires at the home's sunset minus 15 minutes", async () => {
  const spec = { kind: 'sun' as const, event: 'sunset' as const, offsetMs: -15 * 60_000, latitude: 52.52, longitude: 13.405, timezone: 'Europe/Berlin' };
  const [due] = TimerService.next(spec, clock.now());
  const a = await create({
    name: 'Lights before sunset',
    triggers: [{ type: 'sun', event: 'sunset', offset: '-15m' }],
    actions: [{ type: 'delay', duration: 0 }],
  });
  await advanceTo(new Date(due - 1000).toISOString());
  assert.equal((await runs(a.id)).length, 0, 'not before');
  await advanceTo(new Date(due + 1000).toISOString());
  const [r] = await eventually(
    async () => {
      const l = await runs(a.id);
      return l.length ? l : undefined;
    },
    5000,
    'the sunset run',
  );
  assert.equal(r.trace.trigger.type, 'sun');
  assert.equal(r.trace.trigger.data.scheduledAt, new Date(due).toISOString());
  const local = new Date(due).toLocaleTimeString('en-GB', { timeZone: 'Europe/Berlin' });
  assert.ok(local > '16:00' && local < '17:30', `a late-October Berlin sunset minus 15 min: ${local}`);
  await api('DELETE', `/automations/${a.id}`);
});

test("an automation activates a scene; another is triggered by that scene's activation", async () => {
  const l1 = await light();
  const l2 = await light();
  const scene = await api('POST', `/homes/${home}/scenes`, {
    name: 'Evening',
    states: [],
    actions: [{ device: l1.id, action: 'blink', params: { times: 1 } }],
  });
  assert.equal(scene.status, 201, JSON.stringify(scene.body));
  const activator = await create({ name: 'Evening by hand', triggers: [{ type: 'manual' }], actions: [{ type: 'scene', scene: scene.body.id }] });
  const follower = await create({
    name: 'After evening',
    triggers: [{ type: 'scene', scene: scene.body.id }],
    actions: [{ type: 'command', device: l2.id, action: 'toggle' }],
  });
  const bad = await api('POST', `/homes/${home}/automations`, {
    name: 'x',
    triggers: [{ type: 'scene', scene: 's_nothere' }],
    actions: [{ type: 'scene', scene: 's_nothere' }],
  });
  assert.equal(bad.status, 400);
  assert.deepEqual(
    bad.body.errors.map((e: any) => e.field),
    ['triggers[0].scene', 'actions[0].scene'],
  );

  const start = await api('POST', `/automations/${activator.id}/run`, {});
  assert.equal(start.status, 202);
  await eventually(() => l1.commands.length === 1 && l2.commands.length === 1, 5000, "the scene's command and the follower's");
  const [ra] = await eventually(
    async () => {
      const l = await runs(activator.id);
      return l[0]?.status === 'completed' ? l : undefined;
    },
    5000,
    'activator completed',
  );
  assert.equal(ra.trace.actions[0].type, 'scene');
  assert.equal(ra.trace.actions[0].result.ok, true);
  assert.equal(ra.trace.actions[0].result.results[0].device, l1.id);
  const [rf] = await eventually(
    async () => {
      const l = await runs(follower.id);
      return l[0]?.status === 'completed' ? l : undefined;
    },
    5000,
    'follower completed',
  );
  assert.equal(rf.trace.trigger.type, 'scene');
  assert.equal(rf.trace.trigger.data.scene, scene.body.id);
  assert.equal(rf.trace.trigger.data.source, `automation:${activator.id}`);
  // activated by a person through the API: the follower fires too
  await clock.advance(5000);
  assert.equal((await api('POST', `/scenes/${scene.body.id}/activate`, {})).status, 200);
  await eventually(() => l2.commands.length === 2, 5000, 'the follower again');
});

test('a scheduled firing missed while the platform was down (beyond the grace) is recorded as skipped', async () => {
  const a = await create({ name: "Nine o'clock", triggers: [{ type: 'schedule', cron: '0 9 * * *' }], actions: [{ type: 'delay', duration: 0 }] });
  const startedRuns = (await runs(a.id)).length;
  const dataDir = p.dataDir;
  await p.stop(false);
  // Down for a day and a half: one 09:00 is missed by far more than the 5 min grace.
  const downAt = clock.now();
  await clock.set(downAt + 36 * 3600_000);
  p = await startPlatform({ dataDir, clock });
  const list = await eventually(
    async () => {
      const l = await runs(a.id);
      return l.some((r) => r.status === 'skipped') ? l : undefined;
    },
    5000,
    'a skipped run',
  );
  const skipped = list.find((r) => r.status === 'skipped');
  assert.match(skipped.reason, /missed by more than its grace window/);
  assert.equal(skipped.trace.trigger.type, 'schedule');
  assert.ok(Date.parse(skipped.trace.trigger.data.scheduledAt) > downAt, 'the firing that was missed');
  assert.equal(list.filter((r) => r.status === 'completed').length, startedRuns, 'nothing ran for it');
});

test('when the home moves to another time zone, its schedules follow', async () => {
  const h = await api('POST', '/homes', { name: 'Moving flat', timezone: 'Europe/Berlin' });
  const a = (
    await api('POST', `/homes/${h.body.id}/automations`, {
      name: 'Noon',
      triggers: [{ type: 'schedule', cron: '0 12 * * *' }],
      actions: [{ type: 'delay', duration: 0 }],
    })
  ).body;
  assert.equal((await api('PATCH', `/homes/${h.body.id}`, { timezone: 'Asia/Tokyo' })).status, 200);
  const day = new Date(clock.now() + 2 * 86_400_000).toISOString().slice(0, 10);
  await advanceTo(`${day}T02:59:00.000Z`);
  const before = (await runs(a.id)).length;
  await advanceTo(`${day}T03:00:01.000Z`);
  const list = await eventually(
    async () => {
      const l = await runs(a.id);
      return l.length > before ? l : undefined;
    },
    5000,
    'noon in Tokyo (03:00 UTC)',
  );
  assert.equal(list[0].trace.trigger.data.scheduledAt, `${day}T03:00:00.000Z`);
});

test('a sun trigger is unavailable while the home has no location, and works again when it gets one back', async () => {
  const h = await api('POST', '/homes', { name: 'Cabin', timezone: 'Europe/Oslo', latitude: 59.91, longitude: 10.75 });
  const a = (
    await api('POST', `/homes/${h.body.id}/automations`, {
      name: 'Dusk',
      triggers: [{ type: 'sun', event: 'sunset' }],
      actions: [{ type: 'delay', duration: 0 }],
    })
  ).body;
  assert.equal(a.status, 'ok');
  assert.equal((await api('PATCH', `/homes/${h.body.id}`, { latitude: null, longitude: null })).status, 200);
  const off = (await api('GET', `/automations/${a.id}`)).body;
  assert.equal(off.status, 'unavailable');
  assert.match(off.statusReason, /latitude|location/);
  assert.equal((await api('PATCH', `/homes/${h.body.id}`, { latitude: 59.91, longitude: 10.75 })).status, 200);
  const back = (await api('GET', `/automations/${a.id}`)).body;
  assert.equal(back.status, 'ok');
  assert.equal(back.statusReason, null);
  const day = new Date(clock.now() + 86_400_000).toISOString().slice(0, 10);
  const before = (await runs(a.id)).length;
  await advanceTo(`${day}T23:00:00.000Z`);
  await eventually(async () => (await runs(a.id)).length > before, 5000, 'the sunset fired again');
});

test('a one-off "at" without an offset is the home\'s wall-clock time; loose dates are refused', async () => {
  const day = new Date(clock.now() + 3 * 86_400_000).toISOString().slice(0, 10);
  const bad = await api('POST', `/homes/${home}/automations`, {
    name: 'Loose',
    triggers: [{ type: 'schedule', at: 'March 7' }],
    actions: [{ type: 'delay', duration: 0 }],
  });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /triggers\[0\]\.at/);
  const a = await create({ name: 'Once', triggers: [{ type: 'schedule', at: `${day}T09:00` }], actions: [{ type: 'delay', duration: 0 }] });
  // Berlin's offset that day (1 h in winter, 2 h in summer), whatever zone this machine is in
  const berlinNoon = Number(new Date(`${day}T12:00:00Z`).toLocaleString('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', hourCycle: 'h23' }));
  const due = Date.parse(`${day}T09:00:00Z`) - (berlinNoon - 12) * 3600_000;
  await advanceTo(new Date(due - 60_000).toISOString());
  assert.equal((await runs(a.id)).length, 0, 'not before 09:00 in Berlin');
  await advanceTo(new Date(due + 1000).toISOString());
  const list = await eventually(
    async () => {
      const l = await runs(a.id);
      return l.length ? l : undefined;
    },
    5000,
    'fired at 09:00 Berlin time',
  );
  assert.equal(list[0].trace.trigger.data.scheduledAt, new Date(due).toISOString());
});
