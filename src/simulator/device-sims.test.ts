import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CATALOG } from '../products/catalog.ts';
import { CompiledModel } from '../products/thing-model.ts';
import { createDeviceSim, seededRng, type SimOutput } from './device-sims.ts';
import { DEMO_CHILDREN } from './simulator.ts';

const models = new Map(CATALOG.map((p) => [p.key, new CompiledModel(p.model)]));

function assertFits(product: string, out: SimOutput, what: string): void {
  const model = models.get(product)!;
  const r = model.checkReport(out.changed);
  assert.ok(r.ok, `${product} ${what}: ${r.problems.join('; ')}`);
  for (const ev of out.events) {
    const e = model.checkEvent(ev.event, ev.params ?? {});
    assert.ok(e.ok, `${product} ${what} event: ${e.problems.join('; ')}`);
  }
}

test('every catalog product has a full, valid initial snapshot and stays valid over many ticks', () => {
  for (const p of CATALOG) {
    const sim = createDeviceSim(p.key, '00:12:4b:00:00:00:00:01');
    assert.ok(sim.known, p.key);
    const snap = sim.snapshot();
    assert.deepEqual(Object.keys(snap).sort(), p.model.properties.map((x) => x.id).sort(), `${p.key} snapshot keys`);
    assert.ok(models.get(p.key)!.checkReport(snap).ok, `${p.key} snapshot`);
    let t = 1_700_000_000_000;
    const timed = createDeviceSim(p.key, 'aa:bb', { now: () => t, rng: seededRng(p.key) });
    for (let i = 0; i < 3000; i++) {
      t += 5000;
      const out = timed.tick(5000);
      assertFits(p.key, out, `tick ${i}`);
      for (const f of out.followUps) assertFits(p.key, f.run(), 'follow-up');
    }
    assert.ok(models.get(p.key)!.checkReport(timed.snapshot()).ok);
  }
});

test('the same product and hwid give the same simulated device', () => {
  const a = createDeviceSim('plug', '00:12:4b:00:1c:a5:00:02');
  const b = createDeviceSim('plug', '00:12:4b:00:1c:a5:00:02');
  assert.deepEqual(a.snapshot(), b.snapshot());
  assert.deepEqual(a.tick(5000).changed, b.tick(5000).changed);
});

test('temperature drifts by at most 0.3 per tick, battery never drops below 5', () => {
  const sim = createDeviceSim('temp-humidity-sensor', 'x');
  let temp = sim.snapshot().temperature as number;
  for (let i = 0; i < 20_000; i++) {
    sim.tick(5000);
    const s = sim.snapshot();
    assert.ok(Math.abs((s.temperature as number) - temp) <= 0.3 + 1e-9);
    temp = s.temperature as number;
    assert.ok((s.battery as number) >= 5);
    assert.ok(Number.isInteger(s.battery));
  }
  assert.equal(sim.snapshot().battery, 5);
});

test('plug: power around the base when on, 0 when off; energy accumulates', () => {
  const sim = createDeviceSim('plug', 'p', { rng: seededRng('no-spike') });
  const e0 = sim.snapshot().energy as number;
  for (let i = 0; i < 200; i++) sim.tick(60_000);
  const s = sim.snapshot();
  assert.ok((s.energy as number) > e0);
  assert.ok((s.power as number) > 0);
  const off = sim.command('toggle');
  assert.equal(off.ok, true);
  assert.deepEqual(off.changed, { on: false, power: 0 });
  sim.tick(5000);
  assert.equal(sim.snapshot().power, 0);
  const on = sim.command('toggle');
  assert.equal(on.changed.on, true);
  assert.ok((on.changed.power as number) > 0);
});

test('light toggle, blink and unknown actions', () => {
  const sim = createDeviceSim('light', 'l');
  const before = sim.snapshot().on;
  const t = sim.command('toggle', {});
  assert.equal(t.ok, true);
  assert.deepEqual(t.changed, { on: !before });
  assert.equal(t.result, undefined);
  assert.equal(sim.command('blink', { times: 3 }).ok, true);
  assert.deepEqual(sim.command('dance'), { changed: {}, events: [], followUps: [], cancel: [], ok: false, error: 'unsupported action' });
  assert.equal(sim.command('toString').error, 'unsupported action');
  const bad = sim.command('blink', { times: 99 });
  assert.equal(bad.ok, false);
  assert.match(bad.error!, /times/);
  assert.equal(sim.command('blink', 'x').ok, false);
});

test('door lock: lock/unlock set locked and emit events with method app', () => {
  const sim = createDeviceSim('door-lock', 'd');
  const u = sim.command('unlock');
  assert.deepEqual(u.changed, { locked: false });
  assert.deepEqual(u.events, [{ event: 'unlock', params: { method: 'app' } }]);
  const l = sim.command('lock');
  assert.deepEqual(l.changed, { locked: true });
  assert.deepEqual(l.events, [{ event: 'lock', params: { method: 'app' } }]);
});

test('curtain: open/close set position at once, moving settles via a follow-up, stop cancels it', () => {
  const sim = createDeviceSim('curtain', 'c', { rng: () => 0 }); // starts closed
  assert.equal(sim.snapshot().position, 0);
  const o = sim.command('open');
  assert.deepEqual(o.changed, { position: 100, moving: 'opening' });
  assert.equal(o.followUps.length, 1);
  assert.deepEqual(o.followUps[0].run().changed, { moving: 'stopped' });
  const c = sim.command('close');
  assert.deepEqual(c.changed, { position: 0, moving: 'closing' });
  const s = sim.command('stop');
  assert.deepEqual(s.changed, { moving: 'stopped' });
  assert.deepEqual(s.cancel, ['moving']);
});

test('hub: permitJoin needs seconds and switches itself off; reboot resets uptime', () => {
  let t = 1_000_000;
  const hub = createDeviceSim('hub', 'd_hub', { now: () => t });
  assert.equal(hub.command('permitJoin', {}).ok, false);
  const pj = hub.command('permitJoin', { seconds: 60 });
  assert.equal(pj.ok, true);
  assert.deepEqual(pj.changed, { permitJoin: true });
  assert.equal(pj.followUps[0].delayMs, 60_000);
  assert.deepEqual(pj.followUps[0].run().changed, { permitJoin: false });
  t += 10_000;
  assert.equal(hub.command('reboot').ok, true);
  assert.equal(hub.snapshot().uptime, 0);
  t += 7_000;
  assert.deepEqual(hub.tick(7000).changed, { uptime: 7 });
  assert.deepEqual(hub.patch({ children: 7 }).changed, { children: 7 });
});

test('desired: applies rw keys, reports them even when unchanged, ignores read-only and unknown keys', () => {
  const sim = createDeviceSim('light', 'l', { rng: () => 0.5 });
  const s0 = sim.snapshot();
  const d = sim.applyDesired({ on: s0.on, brightness: 42, rssi: -10, nope: 1 });
  assert.deepEqual(d.report, { on: s0.on, brightness: 42 });
  assert.equal(d.ignored.length, 2);
  assert.equal(sim.snapshot().brightness, 42);
  assert.equal(sim.snapshot().rssi, s0.rssi);
  // An impossible value is reported back as the current one, so that the cloud drops it.
  const bad = sim.applyDesired({ brightness: 150 });
  assert.deepEqual(bad.report, { brightness: 42 });
  assert.equal(bad.ignored.length, 1);
  assert.equal(sim.applyDesired('nope').ignored.length, 1);
  assert.deepEqual(sim.applyDesired(null).report, {});
});

test('desired with side effects: plug power, lock events, curtain moving', () => {
  const plug = createDeviceSim('plug', 'p');
  assert.deepEqual(plug.applyDesired({ on: false }).report, { on: false, power: 0 });
  const lock = createDeviceSim('door-lock', 'd');
  const l = lock.applyDesired({ locked: false });
  assert.deepEqual(l.report, { locked: false });
  assert.deepEqual(l.events, [{ event: 'unlock', params: { method: 'app' } }]);
  const curtain = createDeviceSim('curtain', 'c', { rng: () => 0 });
  assert.deepEqual(curtain.applyDesired({ position: 40 }).report, { position: 40, moving: 'opening' });
});

test('motion sensor emits motion when occupancy starts and clears later; contact sensor emits opened/closed', () => {
  const m = createDeviceSim('motion-sensor', 'm');
  let motions = 0;
  let clears = 0;
  for (let i = 0; i < 2000; i++) {
    const out = m.tick(5000);
    if (out.changed.occupancy === true) {
      motions++;
      assert.deepEqual(out.events, [{ event: 'motion' }]);
    } else if (out.changed.occupancy === false) clears++;
  }
  assert.ok(motions > 10);
  assert.ok(Math.abs(motions - clears) <= 1);
  const c = createDeviceSim('contact-sensor', 'c');
  let seen = 0;
  for (let i = 0; i < 2000; i++) {
    const out = c.tick(5000);
    if ('contact' in out.changed) {
      seen++;
      assert.deepEqual(out.events, [{ event: out.changed.contact ? 'closed' : 'opened' }]);
    }
  }
  assert.ok(seen > 10);
});

test('printer and camera results fit the model', () => {
  const pr = createDeviceSim('cloud-printer', 'p');
  const r = pr.command('print', { content: 'hello', copies: 2 });
  assert.equal(r.ok, true);
  assert.equal(typeof r.result!.jobId, 'string');
  assert.deepEqual(r.changed, { printed: 2 });
  assert.deepEqual(r.followUps[0].run().events, [{ event: 'jobDone', params: { jobId: r.result!.jobId } }]);
  assert.equal(pr.command('print', {}).ok, false); // content is required
  let last = r;
  for (let i = 0; i < 60 && last.ok; i++) last = pr.command('print', { content: 'x', copies: 10 });
  assert.equal(last.ok, false);
  assert.equal(pr.snapshot().paper, 'out');
  const cam = createDeviceSim('camera', 'c');
  const snap = cam.command('snapshot');
  assert.equal(snap.ok, true);
  assert.match(String(snap.result!.url), /^https:\/\//);
});

test('unknown products are inert but never throw', () => {
  const sim = createDeviceSim('custom-thing', 'x');
  assert.equal(sim.known, false);
  assert.deepEqual(sim.snapshot(), {});
  assert.deepEqual(sim.tick(5000).changed, {});
  assert.equal(sim.command('toggle').error, 'unsupported action');
  assert.equal(sim.applyDesired({ on: true }).ignored.length, 1);
});

test('DEMO_CHILDREN: one of each demo product, unique EUI-64 hwids', () => {
  assert.deepEqual(DEMO_CHILDREN.map((c) => c.product).sort(), [
    'contact-sensor',
    'curtain',
    'door-lock',
    'light',
    'motion-sensor',
    'plug',
    'temp-humidity-sensor',
  ]);
  assert.equal(new Set(DEMO_CHILDREN.map((c) => c.hwid)).size, DEMO_CHILDREN.length);
  for (const c of DEMO_CHILDREN) assert.match(c.hwid, /^00:12:4b:00(:[0-9a-f]{2}){4}$/);
});
