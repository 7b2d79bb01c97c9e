import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import type { MqttClient } from 'mqtt';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser as User } from './helpers/people.ts';
import { ManualClock } from '../src/core/clock.ts';

/**
 * Automations end to end: people create them over HTTP, simulated devices report and answer
 * commands over real MQTT, and the platform's clock is a ManualClock that the tests move, so
 * delays, waits, timeouts and cool-downs take no real time.
 */
let p: Platform;
const clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));

let owner: User;
let home: string;
before(async () => {
  // Webhook actions call a local server: a home lab's setting.
  p = await startPlatform({ clock, env: { HEARTH_OUTBOUND_PRIVATE_NETWORKS: 'allow' } });
  owner = await signup('owner');
  home = await newHome(owner);
});
after(async () => {
  await p.stop();
});

let seq = 0;
const signup = (name: string): Promise<User> => signupUser(p, `${name}-${++seq}@auto.test`);

async function newHome(u: User, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await u.api('POST', '/homes', { name: 'Home', timezone: 'Europe/Berlin', latitude: 52.52, longitude: 13.405, ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

interface Sim {
  id: string;
  pairingCode: string;
  c: MqttClient;
  box: ReturnType<typeof inbox>;
  report(values: Record<string, unknown>): Promise<void>;
  event(event: string, params?: Record<string, unknown>): Promise<void>;
  /** Commands received so far. */
  commands: any[];
}

/**
 * A device claimed into the home and connected. It answers every command ok (a light's `toggle`
 * flips `on` and reports it, like a real lamp) unless `answer` says otherwise.
 */
async function device(u: User, homeId: string, product: string, opts: { answer?: (cmd: any) => { ok: boolean; error?: string } | null } = {}): Promise<Sim> {
  const d = await p.provision(product);
  const claim = await u.api('POST', `/homes/${homeId}/devices`, { pairingCode: d.pairingCode });
  assert.equal(claim.status, 201, JSON.stringify(claim.body));
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  const commands: any[] = [];
  let on = false;
  c.on('message', (topic, buf) => {
    if (topic !== `devices/${d.id}/commands`) return;
    const cmd = JSON.parse(buf.toString());
    commands.push(cmd);
    const ans = opts.answer ? opts.answer(cmd) : { ok: true };
    if (!ans) return;
    void c
      .publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.id, ...ans }), { qos: 1 })
      .then(() => {
        if (cmd.action === 'toggle' && ans.ok) {
          on = !on;
          return c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on }), { qos: 1 });
        }
      })
      .catch(() => undefined);
  });
  await c.subscribeAsync([`devices/${d.id}/commands`, `devices/${d.id}/desired`], { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.online === true, 3000, 'device online');
  return {
    id: d.id,
    pairingCode: d.pairingCode,
    c,
    box,
    commands,
    report: async (values) => void (await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify(values), { qos: 1 })),
    event: async (event, params) => void (await c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event, ...(params ? { params } : {}) }), { qos: 1 })),
  };
}

async function create(u: User, homeId: string, body: Record<string, unknown>): Promise<any> {
  const r = await u.api('POST', `/homes/${homeId}/automations`, body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

async function runs(u: User, id: string): Promise<any[]> {
  const r = await u.api('GET', `/automations/${id}/runs`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.items;
}

/** Waits until the automation has a run matching `pred`. */
function runWhere(u: User, id: string, pred: (r: any) => boolean, what: string): Promise<any> {
  return eventually(async () => (await runs(u, id)).find(pred), 4000, what);
}

/** Lets the engine see what is on the bus, then moves the clock (a run's delay, a wait's timeout). */
async function advance(ms: number): Promise<void> {
  await p.hearth.bus.flush();
  await clock.advance(ms);
}

/** Moves the clock beyond the loop guard's grace, so the next firing counts as independent. */
const apart = () => advance(5_000);

test('a motion report turns on a light through a real device round trip; the trace shows the command outcome', async () => {
  const motion = await device(owner, home, 'motion-sensor');
  const light = await device(owner, home, 'light');
  const a = await create(owner, home, {
    name: 'Light on motion',
    triggers: [{ type: 'property', device: motion.id, property: 'occupancy', to: true }],
    actions: [{ type: 'command', device: light.id, action: 'toggle' }],
  });
  assert.match(a.id, /^au_/);
  assert.equal(a.mode, 'single');
  assert.equal(a.enabled, true);
  assert.equal(a.status, 'ok');

  await motion.report({ occupancy: true });
  const cmd = await light.box.next((m) => m.topic === `devices/${light.id}/commands`);
  assert.equal(cmd.payload.action, 'toggle');
  const run = await runWhere(owner, a.id, (r) => r.status === 'completed', 'a completed run');
  assert.equal(run.trace.trigger.type, 'property');
  assert.equal(run.trace.trigger.index, 0);
  assert.deepEqual(
    { device: run.trace.trigger.data.device, property: run.trace.trigger.data.property, to: run.trace.trigger.data.to },
    { device: motion.id, property: 'occupancy', to: true },
  );
  assert.match(run.trace.trigger.description, /occupancy .* became true/);
  const [act] = run.trace.actions;
  assert.equal(act.path, 'actions[0]');
  assert.equal(act.type, 'command');
  assert.equal(act.status, 'ok');
  assert.equal(act.result.commandId, cmd.payload.id);
  assert.equal(act.result.ok, true);
  assert.equal(typeof act.ms, 'number');
  assert.ok(!Number.isNaN(Date.parse(act.startedAt)));
  // the light's ledger says who sent it
  const ledger = await owner.api('GET', `/devices/${light.id}/commands`);
  assert.equal(ledger.body.items[0].source, `automation:${a.id}`);

  // Still occupied: no crossing, no run. Then it clears and comes back: a second run.
  await apart();
  await motion.report({ occupancy: true, illuminance: 5 });
  await motion.report({ occupancy: false });
  await p.hearth.bus.flush();
  assert.equal((await runs(owner, a.id)).length, 1, 'a report while still occupied does not fire');
  await motion.report({ occupancy: true });
  await light.box.next((m) => m.topic === `devices/${light.id}/commands`);
  await eventually(async () => (await runs(owner, a.id)).filter((r) => r.status === 'completed').length === 2, 3000, 'a second run');
});

test('a condition that does not hold blocks the actions; the trace shows the values it compared', async () => {
  const motion = await device(owner, home, 'motion-sensor');
  const light = await device(owner, home, 'light');
  await light.report({ on: true, brightness: 70 });
  const a = await create(owner, home, {
    name: 'Only when the light is off',
    triggers: [{ type: 'event', device: motion.id, event: 'motion' }],
    conditions: [
      { type: 'property', device: light.id, property: 'on', equals: false },
      { type: 'property', device: light.id, property: 'brightness', below: 90 },
    ],
    actions: [{ type: 'command', device: light.id, action: 'toggle' }],
  });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${light.id}/shadow`)).body.reported?.on === true, 3000, 'light reported on');
  await motion.event('motion');
  const run = await runWhere(owner, a.id, (r) => r.status === 'condition-failed', 'a blocked run');
  assert.equal(run.trace.actions.length, 0);
  const [c0, c1] = run.trace.conditions;
  assert.equal(c0.path, 'conditions[0]');
  assert.equal(c0.result, false);
  assert.deepEqual({ actual: c0.values.actual, equals: c0.values.equals }, { actual: true, equals: false });
  assert.match(c0.reason, /true is not false/);
  assert.equal(c1.result, true, 'every condition is evaluated and shown');
  assert.match(run.reason, /conditions\[0\]/);
  assert.equal(light.commands.length, 0, 'no command was sent');

  // the light goes off: the next motion passes
  await apart();
  await light.report({ on: false });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${light.id}/shadow`)).body.reported?.on === false, 3000, 'light reported off');
  await motion.event('motion');
  await runWhere(owner, a.id, (r) => r.status === 'completed', 'a run that passed');
  assert.equal(light.commands.length, 1);
});

test('delay: the action after it waits for the clock', async () => {
  const light = await device(owner, home, 'light');
  const a = await create(owner, home, {
    name: 'Delayed',
    triggers: [{ type: 'manual' }],
    actions: [
      { type: 'delay', duration: '5m' },
      { type: 'command', device: light.id, action: 'blink', params: { times: 2 } },
    ],
  });
  const start = await owner.api('POST', `/automations/${a.id}/run`, {});
  assert.equal(start.status, 202, JSON.stringify(start.body));
  assert.equal(start.body.status, 'running');
  await advance(4 * 60_000);
  assert.equal(light.commands.length, 0, 'not before 5 minutes');
  await advance(60_000);
  await eventually(() => light.commands.length === 1, 3000, 'the command after the delay');
  const run = await runWhere(owner, a.id, (r) => r.status === 'completed', 'completed');
  assert.equal(run.id, start.body.id);
  assert.equal(run.trace.actions[0].type, 'delay');
  assert.equal(run.trace.actions[0].ms, 5 * 60_000, 'the delay took 5 minutes of the clock');
  assert.deepEqual(light.commands[0].params, { times: 2 });
});

test('wait until: goes on when the device reports, or after the timeout (continue or stop)', async () => {
  const door = await device(owner, home, 'contact-sensor');
  const light = await device(owner, home, 'light');
  await door.report({ contact: false });
  const waitFor = (onTimeout: string) =>
    create(owner, home, {
      name: `Wait ${onTimeout}`,
      triggers: [{ type: 'manual' }],
      mode: 'parallel',
      actions: [
        { type: 'wait', until: { type: 'property', device: door.id, property: 'contact', equals: true }, timeout: '10m', onTimeout },
        { type: 'command', device: light.id, action: 'toggle' },
      ],
    });
  const cont = await waitFor('continue');
  const stop = await waitFor('stop');
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${door.id}/shadow`)).body.reported?.contact === false, 3000, 'door open');

  // 1. the door closes within the timeout: the wait ends at once
  const r1 = await owner.api('POST', `/automations/${cont.id}/run`, {});
  await advance(60_000);
  assert.equal(light.commands.length, 0);
  await door.report({ contact: true });
  await eventually(() => light.commands.length === 1, 3000, 'the command after the wait');
  const held = await runWhere(owner, cont.id, (r) => r.id === r1.body.id && r.status === 'completed', 'completed');
  assert.equal(held.trace.actions[0].result.outcome, 'held');
  assert.equal(held.trace.actions[0].result.waitedMs, 60_000);
  assert.equal(held.trace.actions[0].conditions[0].result, true);

  // 2. it stays open: after 10 minutes the run goes on (continue) …
  await door.report({ contact: false });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${door.id}/shadow`)).body.reported?.contact === false, 3000, 'door open');
  await apart();
  const r2 = await owner.api('POST', `/automations/${cont.id}/run`, {});
  // … or ends there (stop)
  const r3 = await owner.api('POST', `/automations/${stop.id}/run`, {});
  await advance(9 * 60_000);
  assert.equal(light.commands.length, 1);
  await advance(60_000);
  const timedOut = await runWhere(owner, cont.id, (r) => r.id === r2.body.id && r.status === 'completed', 'completed after timeout');
  assert.equal(timedOut.trace.actions[0].result.outcome, 'timeout');
  assert.equal(timedOut.trace.actions[0].status, 'ok');
  assert.equal(timedOut.trace.actions[1].status, 'ok');
  const stopped = await runWhere(owner, stop.id, (r) => r.id === r3.body.id && r.status !== 'running', 'ended after timeout');
  assert.equal(stopped.status, 'cancelled');
  assert.match(stopped.reason, /timed out/);
  assert.equal(stopped.trace.actions[0].status, 'timeout');
  assert.equal(stopped.trace.actions[0].conditions[0].values.actual, false, 'the last evaluation is in the trace');
  assert.equal(stopped.trace.actions.length, 1, 'nothing after the wait ran');
  await eventually(() => light.commands.length === 2, 3000, 'only the continuing run sent a command');
});

/** An automation whose runs take a minute of the clock. */
function slow(mode: string, extra: Record<string, unknown> = {}) {
  return create(owner, home, { name: `Mode ${mode}`, triggers: [{ type: 'manual' }], actions: [{ type: 'delay', duration: '1m' }], mode, ...extra });
}
const run = async (id: string) => {
  const r = await owner.api('POST', `/automations/${id}/run`, {});
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body;
};
const byId = async (id: string) => new Map((await runs(owner, id)).map((r) => [r.id, r]));

test('mode single: a trigger while a run is active is dropped and recorded', async () => {
  const a = await slow('single');
  const first = await run(a.id);
  const second = await run(a.id);
  assert.equal(first.status, 'running');
  assert.equal(second.status, 'dropped');
  assert.match(second.reason, /already active \(mode single\)/);
  await advance(60_000);
  await eventually(async () => (await byId(a.id)).get(first.id)?.status === 'completed', 3000, 'first completed');
  assert.equal((await byId(a.id)).get(second.id)!.status, 'dropped');
});

test('mode restart: a new trigger cancels the active run and starts again', async () => {
  const a = await slow('restart');
  const first = await run(a.id);
  await advance(30_000);
  const second = await run(a.id);
  assert.equal(second.status, 'running');
  const m = await eventually(
    async () => {
      const r = await byId(a.id);
      return r.get(first.id)?.status === 'cancelled' ? r : undefined;
    },
    3000,
    'first cancelled',
  );
  assert.match(m.get(first.id)!.reason, /restarted by run/);
  assert.equal(m.get(first.id)!.trace.actions[0].status, 'cancelled');
  await advance(60_000);
  await eventually(async () => (await byId(a.id)).get(second.id)?.status === 'completed', 3000, 'second completed');
});

test('mode queued: runs wait their turn, up to max; more are dropped', async () => {
  const a = await slow('queued', { max: 1 });
  const first = await run(a.id);
  const second = await run(a.id);
  const third = await run(a.id);
  assert.equal(first.status, 'running');
  assert.equal(second.status, 'running');
  assert.match(second.reason, /queued/);
  assert.equal(third.status, 'dropped');
  assert.match(third.reason, /queue is full/);
  await advance(60_000);
  await eventually(async () => (await byId(a.id)).get(first.id)?.status === 'completed', 3000, 'first completed');
  assert.equal((await byId(a.id)).get(second.id)!.status, 'running', 'the second starts after the first');
  await advance(60_000);
  const done = await eventually(
    async () => {
      const r = (await byId(a.id)).get(second.id);
      return r?.status === 'completed' ? r : undefined;
    },
    3000,
    'second completed',
  );
  assert.ok(Date.parse(done.startedAt) >= Date.parse((await byId(a.id)).get(first.id)!.finishedAt), 'one after the other');
});

test('mode parallel: runs at once up to max; cool-down drops triggers right after a run', async () => {
  const a = await slow('parallel', { max: 2 });
  const [r1, r2, r3] = [await run(a.id), await run(a.id), await run(a.id)];
  assert.deepEqual([r1.status, r2.status, r3.status], ['running', 'running', 'dropped']);
  assert.match(r3.reason, /mode parallel, max 2/);
  await advance(60_000);
  await eventually(
    async () => {
      const m = await byId(a.id);
      return m.get(r1.id)?.status === 'completed' && m.get(r2.id)?.status === 'completed';
    },
    3000,
    'both completed',
  );

  const cool = await create(owner, home, { name: 'Cool-down', triggers: [{ type: 'manual' }], actions: [{ type: 'delay', duration: '1s' }], cooldown: '30s' });
  const c1 = await run(cool.id);
  await advance(1_000);
  await eventually(async () => (await byId(cool.id)).get(c1.id)?.status === 'completed', 3000, 'completed');
  await advance(10_000);
  const c2 = await run(cool.id);
  assert.equal(c2.status, 'dropped');
  assert.match(c2.reason, /cool-down/);
  await advance(25_000);
  assert.equal((await run(cool.id)).status, 'running', 'after the cool-down it runs again');
  await advance(1_000);
});

test('the loop guard stops an automation that keeps triggering itself, says why, and announces it', async () => {
  const light = await device(owner, home, 'light');
  const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream?types=automation`, { headers: { authorization: `Bearer ${owner.token}` } });
  const events: any[] = [];
  ws.on('message', (b) => events.push(JSON.parse(b.toString())));
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  try {
    // Every change of `on` toggles the light again: the light reports, the automation fires, forever.
    const a = await create(owner, home, {
      name: 'Flip-flop',
      triggers: [{ type: 'property', device: light.id, property: 'on' }],
      actions: [{ type: 'command', device: light.id, action: 'toggle' }],
    });
    await run(a.id);
    const stopped = await runWhere(owner, a.id, (r) => r.status === 'stopped', 'a stopped run');
    assert.match(stopped.reason, /loop guard/);
    const after = await eventually(
      async () => {
        const r = await owner.api('GET', `/automations/${a.id}`);
        return r.body.enabled === false ? r.body : undefined;
      },
      3000,
      'disabled',
    );
    assert.equal(after.status, 'stopped');
    assert.match(after.statusReason, /loop guard/);
    const count = light.commands.length;
    assert.ok(count >= 10 && count <= 13, `about the limit of commands went out: ${count}`);
    await p.hearth.bus.flush();
    // a command sent now reaches the light after any the automation had sent before its stop
    const later = owner.api('POST', `/devices/${light.id}/commands`, { action: 'blink', params: { times: 1 } });
    await eventually(() => light.commands.some((c) => c.action === 'blink'), 3000, 'a command sent after the stop');
    assert.equal((await later).status, 200);
    assert.equal(
      light.commands.findIndex((c) => c.action === 'blink'),
      count,
      'no more commands after the stop',
    );
    await eventually(
      () => events.some((e) => e.type === 'automation' && e.data.automationId === a.id && e.data.status === 'stopped'),
      3000,
      'stream announcement',
    );
    assert.ok(
      events.some((e) => e.data.event === 'run-finished' && e.data.automationId === a.id && e.data.status === 'completed'),
      'runs are announced too',
    );
    assert.equal(events.find((e) => e.type === 'automation').homeId, home);

    // fixed and enabled again: it works normally
    const fixed = await owner.api('PATCH', `/automations/${a.id}`, { enabled: true, triggers: [{ type: 'manual' }] });
    assert.equal(fixed.status, 200, JSON.stringify(fixed.body));
    assert.equal(fixed.body.status, 'ok');
    assert.equal(fixed.body.statusReason, null);
  } finally {
    ws.terminate();
  }
});

test('the loop guard leaves alone an automation fired fast by the outside world', async () => {
  const motion = await device(owner, home, 'motion-sensor');
  const light = await device(owner, home, 'light');
  const a = await create(owner, home, {
    name: 'Busy hallway',
    mode: 'parallel',
    max: 50,
    triggers: [{ type: 'property', device: motion.id, property: 'occupancy' }],
    actions: [{ type: 'command', device: light.id, action: 'blink', params: { times: 1 } }],
  });
  // 15 changes with the clock standing still: all well within any window, none caused by an automation
  for (let i = 0; i < 15; i++) await motion.report({ occupancy: i % 2 === 0 });
  await eventually(async () => (await runs(owner, a.id)).filter((r) => r.status === 'completed').length === 15, 5000, '15 completed runs');
  const after = (await owner.api('GET', `/automations/${a.id}`)).body;
  assert.equal(after.enabled, true);
  assert.equal(after.status, 'ok');
});

test('the loop guard stops an automation whose webhook action calls its own incoming webhook', async () => {
  const a = await create(owner, home, {
    name: 'Echo',
    mode: 'queued',
    triggers: [{ type: 'webhook' }],
    actions: [{ type: 'delay', duration: 0 }],
  });
  const hook = `${p.httpUrl}/api/v1/hooks/${a.webhookId}`;
  assert.equal((await owner.api('PATCH', `/automations/${a.id}`, { actions: [{ type: 'webhook', url: hook, body: { again: true } }] })).status, 200);
  await apart();
  assert.equal((await p.api('POST', `/api/v1/hooks/${a.webhookId}`, { first: true }, null)).status, 202);
  const stopped = await runWhere(owner, a.id, (r) => r.status === 'stopped', 'stopped by the loop guard');
  assert.match(stopped.reason, /loop guard/);
  assert.equal((await owner.api('GET', `/automations/${a.id}`)).body.enabled, false);
  const count = (await runs(owner, a.id)).length;
  assert.ok(count <= 14, `about the limit of runs: ${count}`);
});

test('validation names every bad part with its path', async () => {
  const light = await device(owner, home, 'light');
  const motion = await device(owner, home, 'motion-sensor');
  const other = await signup('stranger');
  const otherHome = await newHome(other);
  const foreign = await device(other, otherHome, 'plug');
  const r = await owner.api('POST', `/homes/${home}/automations`, {
    name: 'Broken',
    triggers: [
      { type: 'property', device: motion.id, property: 'occupancy', to: 'yes' },
      { type: 'property', device: motion.id, property: 'temperature', above: 3 },
      { type: 'property', device: light.id, property: 'on', above: 3 },
      { type: 'event', device: motion.id, event: 'explode' },
      { type: 'schedule', cron: 'every morning' },
      { type: 'teleport' },
    ],
    conditions: [
      { type: 'time', after: '25:00', weekdays: ['mon', 'caturday'] },
      { type: 'or', conditions: [{ type: 'presence', device: foreign.id }] },
    ],
    actions: [
      { type: 'command', device: light.id, action: 'blink', params: { times: 99 } },
      { type: 'command', device: light.id, action: 'dance' },
      { type: 'set', device: light.id, properties: { brightness: 150, rssi: -50, warp: 1 } },
      { type: 'command', device: foreign.id, action: 'toggle' },
      {
        type: 'choose',
        choices: [{ conditions: [{ type: 'property', device: light.id, property: 'on', equals: 1 }], actions: [{ type: 'delay', duration: 'soon' }] }],
      },
      { type: 'group', group: 'g_nothere', action: 'toggle' },
      { type: 'disable', automation: 'au_nothere' },
    ],
    cooldown: 'a while',
  });
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  assert.equal(r.body.code, 'E_AUTOMATION_INVALID');
  const fields = Object.fromEntries(r.body.errors.map((e: any) => [e.field, e.message]));
  const expect: Record<string, RegExp> = {
    cooldown: /must be a duration/,
    'triggers[0].to': /expected a boolean/,
    'triggers[1].property': /no property "temperature"/,
    'triggers[2].above': /need a number property/,
    'triggers[3].event': /no event "explode"/,
    'triggers[4].cron': /not a cron expression/,
    'triggers[5].type': /must be one of/,
    'conditions[0].after': /HH:MM/,
    'conditions[0].weekdays[1]': /must be one of/,
    'conditions[1].conditions[0].device': /not in this home/,
    'actions[0].params.times': /above the maximum 10/,
    'actions[1].action': /no action "dance"/,
    'actions[2].properties.brightness': /above the maximum 100/,
    'actions[2].properties.rssi': /read-only/,
    'actions[2].properties.warp': /no property "warp"/,
    'actions[3].device': /not in this home/,
    'actions[4].choices[0].conditions[0].equals': /expected a boolean/,
    'actions[4].choices[0].actions[0].duration': /duration/,
    'actions[5].group': /not in this home/,
    'actions[6].automation': /not in this home/,
  };
  for (const [field, re] of Object.entries(expect)) {
    assert.ok(fields[field], `an error at ${field}; got ${JSON.stringify(r.body.errors)}`);
    assert.match(fields[field], re, field);
  }
  assert.equal(r.body.errors.length, Object.keys(expect).length, JSON.stringify(r.body.errors, null, 1));
  assert.match(r.body.detail, /actions\[0\]\.params\.times: 99 is above the maximum 10/);
  // the shape itself is the schema's: a missing actions list
  const shape = await owner.api('POST', `/homes/${home}/automations`, { name: 'x', triggers: [{ type: 'manual' }] });
  assert.equal(shape.status, 400);
  assert.equal(shape.body.code, 'E_VALIDATION');
  // a sun trigger needs the home's location
  const noPlace = await newHome(owner, { latitude: undefined, longitude: undefined });
  const sun = await owner.api('POST', `/homes/${noPlace}/automations`, {
    name: 'x',
    triggers: [{ type: 'sun', event: 'sunset', offset: '-15m' }],
    actions: [{ type: 'delay', duration: 1 }],
  });
  assert.equal(sun.status, 400);
  assert.match(sun.body.errors[0].message, /no location/);
});

test('schedules the timers would refuse are refused when saved (with the trigger path), and nothing is stored', async () => {
  const names = async () => ((await owner.api('GET', `/homes/${home}/automations`)).body.items as any[]).map((a) => a.name);
  const bad: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['Never', { type: 'schedule', cron: '0 0 31 2 *' }, 'triggers[0].cron', /matches no date/],
    ['Seven fields', { type: 'schedule', cron: '0 0 0 1 1 * 2030' }, 'triggers[0].cron', /not a cron expression/],
    ['Far from sunset', { type: 'sun', event: 'sunset', offset: '13h' }, 'triggers[0].offset', /within 12h/],
  ];
  for (const [name, trigger, field, re] of bad) {
    const r = await owner.api('POST', `/homes/${home}/automations`, { name, triggers: [trigger], actions: [{ type: 'delay', duration: 1 }] });
    assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.code, 'E_AUTOMATION_INVALID');
    assert.deepEqual(
      r.body.errors.map((e: any) => e.field),
      [field],
      name,
    );
    assert.match(r.body.errors[0].message, re, name);
    assert.ok(!(await names()).includes(name), `${name} was not stored`);
  }
  // a change to such a trigger is refused too, and the automation stays as it was
  const a = await create(owner, home, { name: 'Morning', triggers: [{ type: 'schedule', cron: '0 7 * * *' }], actions: [{ type: 'delay', duration: 1 }] });
  const patch = await owner.api('PATCH', `/automations/${a.id}`, { triggers: [{ type: 'sun', event: 'sunrise', offset: '-13h' }] });
  assert.equal(patch.status, 400, JSON.stringify(patch.body));
  assert.equal(patch.body.errors[0].field, 'triggers[0].offset');
  assert.deepEqual((await owner.api('GET', `/automations/${a.id}`)).body.triggers, [{ type: 'schedule', cron: '0 7 * * *' }]);
  const ok = await create(owner, home, {
    name: 'Before sunrise',
    triggers: [{ type: 'sun', event: 'sunrise', offset: '-12h' }],
    actions: [{ type: 'delay', duration: 1 }],
  });
  assert.equal(
    Number(
      (await p.hearth.db.selectFrom('timers').select(p.hearth.db.fn.countAll().as('n')).where('key', '=', `automation:${ok.id}:0`).executeTakeFirstOrThrow()).n,
    ),
    1,
    '12 h is fine',
  );
  for (const id of [a.id, ok.id]) assert.equal((await owner.api('DELETE', `/automations/${id}`)).status, 200);
});

test("permissions: members list and run, owners and admins change, other homes' users get 404, guests see nothing", async () => {
  const member = await signup('member');
  const admin = await signup('admin');
  const outsider = await signup('outsider');
  const guest = await signup('guest');
  const h = await newHome(owner);
  for (const [u, role] of [
    [member, 'member'],
    [admin, 'admin'],
    [guest, 'guest'],
  ] as const) {
    const email = (await p.api('GET', '/api/v1/auth/me', undefined, u.token)).body.email;
    const inv = await owner.api('POST', `/homes/${h}/invitations`, { email, role });
    assert.equal(inv.status, 201, JSON.stringify(inv.body));
    const mail = [...p.logs].reverse().find((l) => l.mail?.to === email).mail;
    const token = /token=([A-Za-z0-9_-]+)/.exec(mail.text)![1];
    assert.equal((await u.api('POST', '/invitations/accept', { token })).status, 200);
  }
  const body = { name: 'Manual', triggers: [{ type: 'manual' }, { type: 'webhook' }], actions: [{ type: 'delay', duration: 1 }] };
  assert.equal((await member.api('POST', `/homes/${h}/automations`, body)).status, 403);
  assert.equal((await guest.api('POST', `/homes/${h}/automations`, body)).status, 403);
  assert.equal((await outsider.api('POST', `/homes/${h}/automations`, body)).status, 404);
  const created = await admin.api('POST', `/homes/${h}/automations`, body);
  assert.equal(created.status, 201);
  const id = created.body.id;
  assert.match(created.body.webhookId, /^wh_/);

  const list = await member.api('GET', `/homes/${h}/automations`);
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.items.map((x: any) => x.id),
    [id],
  );
  assert.equal(list.body.items[0].webhookId, '(hidden)', 'the webhook secret is for those who configure');
  assert.equal((await member.api('GET', `/automations/${id}`)).status, 200);
  // Members hear runs on the live stream; guests do not (a home event they do get marks the end).
  const streams = await Promise.all(
    [member, guest].map(async (u) => {
      const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream?types=automation,scene`, { headers: { authorization: `Bearer ${u.token}` } });
      const events: any[] = [];
      ws.on('message', (b) => events.push(JSON.parse(b.toString())));
      await new Promise((r, j) => {
        ws.once('open', r);
        ws.once('error', j);
      });
      return { ws, events };
    }),
  );
  assert.equal((await member.api('POST', `/automations/${id}/run`, {})).status, 202);
  await eventually(() => streams[0].events.some((e) => e.type === 'automation' && e.data.event === 'run-started'), 3000, 'the member hears the run');
  p.hearth.services.stream.publish('scene', null, h, { marker: true });
  await eventually(() => streams[1].events.some((e) => e.type === 'scene'), 3000, 'the guest hears home events');
  assert.deepEqual(
    streams[1].events.filter((e) => e.type === 'automation'),
    [],
    'but not automation runs',
  );
  for (const s of streams) s.ws.close();
  assert.equal((await member.api('GET', `/automations/${id}/runs`)).status, 200);
  assert.equal((await member.api('PATCH', `/automations/${id}`, { enabled: false })).status, 403);
  assert.equal((await member.api('DELETE', `/automations/${id}`)).status, 403);
  assert.equal((await member.api('POST', `/automations/${id}/test`, { trigger: { type: 'manual' } })).status, 403);
  assert.equal((await guest.api('GET', `/homes/${h}/automations`)).status, 403);
  assert.equal((await guest.api('GET', `/automations/${id}`)).status, 403);
  for (const [m, path, b] of [
    ['GET', `/automations/${id}`],
    ['PATCH', `/automations/${id}`, { enabled: false }],
    ['DELETE', `/automations/${id}`],
    ['POST', `/automations/${id}/run`, {}],
    ['POST', `/automations/${id}/test`, { trigger: { type: 'manual' } }],
    ['GET', `/automations/${id}/runs`],
    ['GET', `/homes/${h}/automations`],
  ] as const) {
    const r = await outsider.api(m, path, b);
    assert.equal(r.status, 404, `${m} ${path} → ${r.status}`);
  }
  // API keys: automations:manage (or homes:manage) changes automations; a read-only key does not
  const manage = await owner.api('POST', '/keys', { name: 'automation bot', scopes: ['automations:manage'], homeIds: [h] });
  const read = await owner.api('POST', '/keys', { name: 'reader', scopes: ['devices:read'] });
  assert.equal((await p.api('POST', `/api/v1/homes/${h}/automations`, body, manage.body.key)).status, 201);
  assert.equal((await p.api('GET', `/api/v1/homes/${h}/automations`, undefined, manage.body.key)).status, 200);
  assert.equal((await p.api('POST', `/api/v1/homes/${h}/automations`, body, read.body.key)).status, 403);
  assert.equal((await p.api('GET', `/api/v1/automations/${id}`, undefined, read.body.key)).status, 200);
  assert.equal((await admin.api('PATCH', `/automations/${id}`, { enabled: false })).status, 200);
  assert.equal((await owner.api('DELETE', `/automations/${id}`)).status, 200);
  assert.equal((await owner.api('GET', `/automations/${id}`)).status, 404);
});

test('dry run: evaluates a given trigger event without acting and returns the would-be trace', async () => {
  const motion = await device(owner, home, 'motion-sensor');
  const light = await device(owner, home, 'light');
  await light.report({ on: false, brightness: 20 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${light.id}/shadow`)).body.reported?.brightness === 20, 3000, 'light state');
  const a = await create(owner, home, {
    name: 'Dry',
    triggers: [{ type: 'property', device: motion.id, property: 'illuminance', below: 50 }],
    conditions: [{ type: 'property', device: light.id, property: 'on', equals: false }],
    actions: [
      {
        type: 'choose',
        choices: [
          {
            conditions: [{ type: 'property', device: light.id, property: 'brightness', above: 50 }],
            actions: [{ type: 'command', device: light.id, action: 'toggle' }],
          },
        ],
        default: [{ type: 'set', device: light.id, properties: { brightness: 80 } }],
      },
      { type: 'delay', duration: '10m' },
      { type: 'command', device: light.id, action: 'toggle' },
    ],
  });
  const r = await owner.api('POST', `/automations/${a.id}/test`, {
    trigger: { type: 'property', data: { device: motion.id, property: 'illuminance', from: 300, to: 12 } },
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.matched, true);
  assert.equal(r.body.matchedTrigger, 0);
  assert.equal(r.body.wouldRun, true);
  assert.equal(r.body.trace.dryRun, true);
  assert.equal(r.body.trace.conditions[0].result, true);
  const [choose, delay, cmd] = r.body.trace.actions;
  assert.equal(choose.chosen, 'default');
  assert.equal(choose.conditions[0].result, false);
  assert.equal(choose.actions[0].status, 'dry-run');
  assert.deepEqual(choose.actions[0].result.wouldDo, { device: light.id, properties: { brightness: 80 } });
  assert.equal(delay.status, 'dry-run');
  assert.equal(delay.result.wouldDo.durationMs, 600_000);
  assert.equal(cmd.status, 'dry-run');
  assert.equal(light.commands.length, 0, 'nothing was sent');
  assert.deepEqual(await runs(owner, a.id), [], 'nothing was recorded');
  assert.equal((await p.api('GET', `/api/v1/devices/${light.id}/shadow`)).body.desired.brightness, undefined, 'no desired state was set');

  const miss = await owner.api('POST', `/automations/${a.id}/test`, {
    trigger: { type: 'property', data: { device: motion.id, property: 'illuminance', from: 10, to: 12 } },
  });
  assert.equal(miss.body.matched, false, 'already below 50: not a crossing');
  assert.match(miss.body.why, /none of the triggers/);
});

test('runs are listed newest first with their traces; one run by id', async () => {
  const a = await create(owner, home, { name: 'Many', triggers: [{ type: 'manual' }], actions: [{ type: 'delay', duration: 0 }] });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    ids.push((await run(a.id)).id);
    await apart();
  }
  const list = await eventually(
    async () => {
      const l = await runs(owner, a.id);
      return l.length === 3 && l.every((r) => r.status === 'completed') ? l : undefined;
    },
    3000,
    'three runs',
  );
  assert.deepEqual(
    list.map((r: any) => r.id),
    [...ids].reverse(),
  );
  for (const r of list) {
    assert.equal(r.trace.trigger.type, 'manual');
    assert.equal(r.trace.actions[0].type, 'delay');
    assert.equal(r.automationId, a.id);
    assert.equal(r.homeId, home);
  }
  const one = await owner.api('GET', `/automations/${a.id}/runs/${ids[1]}`);
  assert.equal(one.status, 200);
  assert.equal(one.body.id, ids[1]);
  assert.equal((await owner.api('GET', `/automations/${a.id}/runs/ar_nothere`)).status, 404);
  const limited = await owner.api('GET', `/automations/${a.id}/runs?limit=1`);
  assert.deepEqual(
    limited.body.items.map((r: any) => r.id),
    [ids[2]],
  );
});

test('an automation whose device leaves the home becomes unavailable with the reason, and the engine goes on', async () => {
  const plug = await device(owner, home, 'plug');
  const light = await device(owner, home, 'light');
  const a = await create(owner, home, {
    name: 'Plug overload',
    triggers: [{ type: 'event', device: plug.id, event: 'overload' }],
    actions: [{ type: 'command', device: light.id, action: 'blink' }],
  });
  const other = await create(owner, home, {
    name: 'Unaffected',
    triggers: [{ type: 'manual' }],
    actions: [{ type: 'command', device: light.id, action: 'blink' }],
  });
  assert.equal((await owner.api('DELETE', `/homes/${home}/devices/${plug.id}`)).status, 200);
  const gone = await eventually(
    async () => {
      const r = await owner.api('GET', `/automations/${a.id}`);
      return r.body.status === 'unavailable' ? r.body : undefined;
    },
    3000,
    'unavailable',
  );
  assert.match(gone.statusReason, new RegExp(`triggers\\[0\\]\\.device: device "${plug.id}" is not in this home`));
  await plug.event('overload', { power: 4100 });
  await p.hearth.bus.flush();
  assert.equal((await runs(owner, a.id)).length, 0, 'it does not run');
  const manual = await owner.api('POST', `/automations/${a.id}/run`, {});
  assert.equal(manual.status, 409);
  assert.equal((await run(other.id)).status, 'running');
  await eventually(() => light.commands.length === 1, 3000, 'others still run');
  // back in the home: available again, and it fires
  assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: plug.pairingCode })).status, 201);
  await eventually(async () => (await owner.api('GET', `/automations/${a.id}`)).body.status === 'ok', 3000, 'ok again');
  await apart();
  await plug.event('overload', { power: 4200 });
  await runWhere(owner, a.id, (r) => r.status === 'completed', 'it runs again');
});

test('event and presence triggers: params must match; offline for a while', async () => {
  const lock = await device(owner, home, 'door-lock');
  const light = await device(owner, home, 'light');
  const a = await create(owner, home, {
    name: 'Keypad unlock',
    triggers: [{ type: 'event', device: lock.id, event: 'unlock', params: { method: 'keypad' } }],
    actions: [{ type: 'command', device: light.id, action: 'blink', params: { times: 1 } }],
  });
  await lock.event('unlock', { method: 'app' });
  await lock.event('unlock', { method: 'keypad', user: 'ana' });
  const r = await runWhere(owner, a.id, (x) => x.status === 'completed', 'a run');
  assert.deepEqual(r.trace.trigger.data.params, { method: 'keypad', user: 'ana' });
  assert.equal((await runs(owner, a.id)).length, 1, 'the app unlock did not match');

  const off = await create(owner, home, {
    name: 'Lock offline 5 min',
    triggers: [{ type: 'offline', device: lock.id, for: '5m' }],
    actions: [{ type: 'command', device: light.id, action: 'blink', params: { times: 3 } }],
  });
  await apart();
  await lock.c.endAsync(true);
  await eventually(async () => (await p.device(lock.id)).online === false, 3000, 'lock offline');
  await advance(4 * 60_000);
  assert.equal((await runs(owner, off.id)).length, 0);
  await advance(60_000);
  const fired = await runWhere(owner, off.id, (x) => x.status === 'completed', 'offline for 5 minutes');
  assert.equal(fired.trace.trigger.type, 'offline');
  assert.equal(fired.trace.trigger.data.forMs, 300_000);
});

test('property above with "for": fires only if it stays above; a drop cancels', async () => {
  const sensor = await device(owner, home, 'temp-humidity-sensor');
  const plug = await device(owner, home, 'plug');
  await sensor.report({ temperature: 20 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${sensor.id}/shadow`)).body.reported?.temperature === 20, 3000, 'reported');
  const a = await create(owner, home, {
    name: 'Hot for 10 minutes',
    triggers: [{ type: 'property', device: sensor.id, property: 'temperature', above: 30, for: '10m' }],
    actions: [{ type: 'command', device: plug.id, action: 'toggle' }],
  });
  await p.hearth.bus.flush();
  await sensor.report({ temperature: 31 });
  await p.hearth.bus.flush();
  await advance(5 * 60_000);
  await sensor.report({ temperature: 29 });
  await p.hearth.bus.flush();
  await advance(6 * 60_000);
  assert.equal((await runs(owner, a.id)).length, 0, 'the drop cancelled it');
  await sensor.report({ temperature: 32 });
  await p.hearth.bus.flush();
  await sensor.report({ temperature: 33 });
  await p.hearth.bus.flush();
  await advance(10 * 60_000);
  const r = await runWhere(owner, a.id, (x) => x.status === 'completed', 'fired after 10 minutes above');
  assert.equal(r.trace.trigger.data.to, 32);
  assert.match(r.trace.trigger.description, /stayed so for 600 s/);
  assert.equal(plug.commands.length, 1);

  // Still above when the automation is edited (reloaded): no second firing without a new crossing.
  assert.equal((await owner.api('PATCH', `/automations/${a.id}`, { name: 'Hot for ten minutes' })).status, 200);
  await advance(11 * 60_000);
  assert.equal((await runs(owner, a.id)).length, 1, 'an edit does not fire it again');

  // Without a range, any change ends the window, also one that does not come "from" the value.
  const lamp = await device(owner, home, 'light');
  await lamp.report({ brightness: 10 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${lamp.id}/shadow`)).body.reported?.brightness === 10, 3000, 'reported');
  const dim = await create(owner, home, {
    name: 'Left at a new level',
    triggers: [{ type: 'property', device: lamp.id, property: 'brightness', from: 10, for: '5m' }],
    actions: [{ type: 'command', device: plug.id, action: 'toggle' }],
  });
  await lamp.report({ brightness: 50 });
  await p.hearth.bus.flush();
  await advance(60_000);
  await lamp.report({ brightness: 80 });
  await p.hearth.bus.flush();
  await advance(5 * 60_000);
  assert.equal((await runs(owner, dim.id)).length, 0, 'the change to 80 ended the window');
});

test('incoming webhook fires its automation; a webhook action POSTs a signed body to a local server', async () => {
  const { createServer } = await import('node:http');
  const { createHmac } = await import('node:crypto');
  const got: Array<{ headers: Record<string, unknown>; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const a = await create(owner, home, {
      name: 'Doorbell relay',
      triggers: [{ type: 'webhook' }],
      actions: [
        {
          type: 'webhook',
          url: `http://127.0.0.1:${port}/hook?token=secret-in-url`,
          secret: 'shared-secret-1',
          body: { who: '{{trigger.body.who}}', text: 'ring from {{trigger.body.who}}', automation: '{{automation.name}}' },
        },
      ],
    });
    assert.match(a.webhookId, /^wh_[A-Za-z0-9_-]{20,}$/);
    assert.equal(a.webhookUrl, `/api/v1/hooks/${a.webhookId}`);
    const fired = await p.api('POST', `/api/v1/hooks/${a.webhookId}`, { who: 'ana' }, null);
    assert.equal(fired.status, 202, JSON.stringify(fired.body));
    await eventually(() => got.length === 1, 3000, 'the webhook call');
    const body = JSON.parse(got[0].body);
    assert.deepEqual(body, { who: 'ana', text: 'ring from ana', automation: 'Doorbell relay' });
    const expected = 'sha256=' + createHmac('sha256', 'shared-secret-1').update(got[0].body).digest('hex');
    assert.equal(got[0].headers['x-hearth-signature'], expected);
    assert.equal(got[0].headers['x-hearth-automation'], a.id);
    const run = await runWhere(owner, a.id, (r) => r.status === 'completed', 'completed');
    assert.equal(run.id, fired.body.runId);
    assert.deepEqual(run.trace.trigger.data.body, { who: 'ana' });
    assert.equal(run.trace.actions[0].result.status, 200);
    assert.equal(run.trace.actions[0].result.url, `http://127.0.0.1:${port}/hook`, "the URL's query (often a secret) is not in the trace");

    assert.equal((await p.api('POST', '/api/v1/hooks/wh_notarealwebhookid00000', {}, null)).status, 404);
    await owner.api('PATCH', `/automations/${a.id}`, { enabled: false });
    assert.equal((await p.api('POST', `/api/v1/hooks/${a.webhookId}`, {}, null)).status, 404, "a disabled automation's hook does not exist");
  } finally {
    server.close();
  }
});

test('enable/disable actions and a failing command with continueOnError', async () => {
  const light = await device(owner, home, 'light', { answer: (cmd) => (cmd.action === 'blink' ? { ok: false, error: 'bulb broken' } : { ok: true }) });
  const target = await create(owner, home, { name: 'Target', enabled: false, triggers: [{ type: 'manual' }], actions: [{ type: 'delay', duration: 0 }] });
  const a = await create(owner, home, {
    name: 'Switcher',
    triggers: [{ type: 'manual' }],
    actions: [
      { type: 'command', device: light.id, action: 'blink', continueOnError: true, alias: 'Blink (may fail)' },
      { type: 'enable', automation: target.id },
      { type: 'command', device: light.id, action: 'blink' },
      { type: 'command', device: light.id, action: 'toggle' },
    ],
  });
  await run(a.id);
  const r = await runWhere(owner, a.id, (x) => x.status !== 'running', 'ended');
  assert.equal(r.status, 'failed');
  assert.match(r.reason, /actions\[2\] \(command\) failed: the device answered: bulb broken/);
  assert.deepEqual(
    r.trace.actions.map((x: any) => x.status),
    ['failed', 'ok', 'failed'],
  );
  assert.equal(r.trace.actions[0].alias, 'Blink (may fail)');
  assert.equal(light.commands.filter((c) => c.action === 'toggle').length, 0, 'the run stopped at the failure');
  assert.equal((await owner.api('GET', `/automations/${target.id}`)).body.enabled, true);
});

test('group action: one command to every device of a group; per-device results, failed when one fails', async () => {
  const l1 = await device(owner, home, 'light');
  const l2 = await device(owner, home, 'light');
  const g = await owner.api('POST', `/homes/${home}/groups`, { name: 'Downstairs', deviceIds: [l1.id, l2.id] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
  const a = await create(owner, home, {
    name: 'All blink',
    triggers: [{ type: 'manual' }],
    actions: [{ type: 'group', group: g.body.id, action: 'blink', params: { times: 2 } }],
  });
  await apart();
  await run(a.id);
  const ok = await runWhere(owner, a.id, (r) => r.status === 'completed', 'completed');
  assert.deepEqual(
    ok.trace.actions[0].result.results.map((r: any) => [r.device, r.ok]).sort(),
    [
      [l1.id, true],
      [l2.id, true],
    ].sort(),
  );
  assert.deepEqual([l1.commands.length, l2.commands.length], [1, 1]);
  await l2.c.endAsync(true);
  await eventually(async () => (await p.device(l2.id)).online === false, 3000, 'l2 offline');
  await apart();
  const second = await run(a.id);
  const failed = await runWhere(owner, a.id, (r) => r.id === second.id && r.status !== 'running', 'ended');
  assert.equal(failed.status, 'failed');
  const byDevice = Object.fromEntries(failed.trace.actions[0].result.results.map((r: any) => [r.device, r]));
  assert.equal(byDevice[l1.id].ok, true);
  assert.equal(byDevice[l2.id].ok, false);
  assert.match(byDevice[l2.id].error, /E_DEVICE_OFFLINE/);
  assert.match(failed.trace.actions[0].error, /1 of 2 devices failed/);
});

test('deleting a home takes its automations (runs, timers), scenes, notification channels, preferences and inbox items with it', async () => {
  const h = await newHome(owner);
  const light = await device(owner, h, 'light');
  const a = await create(owner, h, {
    name: 'Nightly',
    triggers: [{ type: 'schedule', cron: '0 22 * * *' }, { type: 'manual' }],
    actions: [{ type: 'command', device: light.id, action: 'toggle' }],
  });
  await run(a.id);
  const sent = await owner.api('POST', `/homes/${h}/notifications`, {
    kind: 'security',
    severity: 'info',
    title: 'Water leak',
    body: 'The sensor under the sink reports water.',
  });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  const scene = await owner.api('POST', `/homes/${h}/scenes`, { name: 'Off', states: [{ device: light.id, properties: { on: false } }] });
  assert.equal(scene.status, 201, JSON.stringify(scene.body));
  assert.equal((await owner.api('POST', `/homes/${h}/notification-channels`, { type: 'webhook', name: 'Hook', url: 'http://127.0.0.1:9/hook' })).status, 201);
  assert.equal((await owner.api('PUT', `/homes/${h}/notification-preferences`, { quietHours: { start: '22:00', end: '07:00' } })).status, 200);
  const db = p.hearth.db;
  const count = async (
    table: 'automations' | 'automation_runs' | 'timers' | 'scenes' | 'notification_channels' | 'notification_preferences' | 'notification_inbox',
    column: string,
    value: string,
  ) =>
    Number(
      (
        await db
          .selectFrom(table)
          .select(db.fn.countAll().as('n'))
          .where(column as never, '=', value as never)
          .executeTakeFirstOrThrow()
      ).n,
    );
  assert.equal((await runs(owner, a.id)).length, 1); // also writes the runs
  assert.equal(await count('automation_runs', 'automation_id', a.id), 1);
  assert.equal(await count('timers', 'key', `automation:${a.id}:0`), 1);
  assert.equal(await count('notification_inbox', 'home_id', h), 1, 'the owner has it in the inbox');

  assert.equal((await owner.api('DELETE', `/homes/${h}`)).status, 200);
  for (const [table, column] of [
    ['automations', 'home_id'],
    ['scenes', 'home_id'],
    ['notification_channels', 'home_id'],
    ['notification_preferences', 'home_id'],
    ['notification_inbox', 'home_id'],
  ] as const) {
    assert.equal(await count(table, column, h), 0, table);
  }
  assert.equal(await count('automation_runs', 'automation_id', a.id), 0, 'runs');
  assert.equal(await count('timers', 'key', `automation:${a.id}:0`), 0, 'timers');
  assert.equal(
    p.hearth.services.automationEngine.loadedCount,
    (await p.hearth.db.selectFrom('automations').select('id').execute()).length,
    'the engine let it go',
  );
});

test('the OpenAPI document describes automations with every trigger, condition and action kind and its fields', async () => {
  const doc = (await p.api('GET', '/docs/json', undefined, null)).body;
  const typesIn = (s: any): string[] =>
    (s.anyOf ?? []).flatMap((k: any) => (k.properties.type.anyOf ?? [k.properties.type]).map((t: any) => t.const ?? t.enum?.[0])).sort();
  const create = doc.paths['/api/v1/homes/{homeId}/automations'].post;
  const body = create.requestBody.content['application/json'].schema;
  assert.deepEqual(typesIn(body.properties.triggers.items), ['event', 'manual', 'offline', 'online', 'property', 'scene', 'schedule', 'sun', 'webhook']);
  assert.deepEqual(typesIn(body.properties.conditions.items), ['and', 'not', 'or', 'presence', 'property', 'sun', 'time']);
  assert.deepEqual(typesIn(body.properties.actions.items), [
    'choose',
    'command',
    'delay',
    'disable',
    'enable',
    'group',
    'notify',
    'scene',
    'set',
    'wait',
    'webhook',
  ]);
  const sun = body.properties.triggers.items.anyOf.find((k: any) => (k.properties.type.const ?? k.properties.type.enum?.[0]) === 'sun');
  assert.deepEqual(Object.keys(sun.properties).sort(), ['event', 'offset', 'type']);
  const patch = doc.paths['/api/v1/automations/{automationId}'].patch.requestBody.content['application/json'].schema;
  assert.ok(patch.properties.actions.items.anyOf.length >= 10);
  const answer = doc.paths['/api/v1/automations/{automationId}'].get.responses['200'].content['application/json'].schema;
  assert.ok(answer.properties.triggers.items.anyOf.length >= 8, 'answers show the kinds too');
  assert.ok(create['x-hearth-auth'], "the route's auth declaration is still documented");
});
