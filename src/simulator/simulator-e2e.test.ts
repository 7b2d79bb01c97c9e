/**
 * The simulator against the real platform: it must speak protocol v1 well enough that every
 * message is accepted (no errors), commands and desired state round-trip through the REST API,
 * and presence follows the hub.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, type Platform } from '../../test/helpers/platform.ts';
import { DEMO_CHILDREN, startSimulator, type RunningSimulator } from './simulator.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

const device = async (id: string) => (await p.api('GET', `/api/v1/devices/${id}`)).body;

test('the demo hub joins, reports and answers through the real platform', async () => {
  const hub = await p.provision('hub', 'Simulated hub');
  const logs: string[] = [];
  let sim: RunningSimulator | undefined = startSimulator({ mqttUrl: p.mqttUrl, hubId: hub.id, hubSecret: hub.secret, children: DEMO_CHILDREN, intervalMs: 100, log: (m) => logs.push(m) });
  try {
    await sim.ready;
    const ids = new Map(DEMO_CHILDREN.map((c) => [c.product, sim!.children.get(c.hwid)!.id]));
    const kids = (await p.api('GET', `/api/v1/devices/${hub.id}/children`)).body.items as Array<{ id: string; online: boolean }>;
    assert.deepEqual(kids.map((k) => k.id).sort(), [...ids.values()].sort());

    // Every child is online with a full shadow; the hub counts its children.
    for (const [product, id] of ids) {
      const d = await eventually(async () => {
        const x = await device(id);
        return x.online && Object.keys(x.shadow.reported).length > 0 ? x : undefined;
      }, 3000, `${product} online with a shadow`);
      assert.equal(d.product, product);
    }
    await eventually(async () => (await device(hub.id)).shadow.reported.children === DEMO_CHILDREN.length, 3000, 'hub children count');

    // Commands.
    const light = ids.get('light')!;
    const on = (await device(light)).shadow.reported.on;
    const r = await p.api('POST', `/api/v1/devices/${light}/commands`, { action: 'toggle', timeoutMs: 3000 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.ok, true);
    await eventually(async () => (await device(light)).shadow.reported.on === !on, 3000, 'light toggled');

    const curtain = ids.get('curtain')!;
    assert.equal((await p.api('POST', `/api/v1/devices/${curtain}/commands`, { action: 'open' })).body.ok, true);
    await eventually(async () => (await device(curtain)).shadow.reported.position === 100, 3000, 'curtain open');
    await eventually(async () => (await device(curtain)).shadow.reported.moving === 'stopped', 3000, 'curtain settled');

    const hubCmd = await p.api('POST', `/api/v1/devices/${hub.id}/commands`, { action: 'permitJoin', params: { seconds: 30 } });
    assert.equal(hubCmd.body.ok, true);

    // Desired state: applied, reported, fulfilled.
    const lock = ids.get('door-lock')!;
    const patch = await p.api('PATCH', `/api/v1/devices/${lock}/shadow`, { desired: { locked: false } });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    await eventually(async () => {
      const s = (await device(lock)).shadow;
      return s.reported.locked === false && Object.keys(s.desired).length === 0;
    }, 3000, 'desired lock state fulfilled');

    // Nothing the simulator sent was rejected.
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(logs.filter((l) => l.startsWith('error from the cloud')), []);

    // Stopping the hub takes the children offline.
    await sim.stop();
    sim = undefined;
    await eventually(async () => (await device(hub.id)).online === false, 3000, 'hub offline');
    const child = await eventually(async () => {
      const x = await device(light);
      return x.online === false ? x : undefined;
    }, 3000, 'child offline');
    assert.equal(child.presence.reason, 'hub-offline');

    // A restarted simulator gets the same ids back.
    sim = startSimulator({ mqttUrl: p.mqttUrl, hubId: hub.id, hubSecret: hub.secret, children: DEMO_CHILDREN, intervalMs: 1000 });
    await sim.ready;
    for (const c of DEMO_CHILDREN) assert.equal(sim.children.get(c.hwid)!.id, ids.get(c.product));
  } finally {
    await sim?.stop();
  }
});
