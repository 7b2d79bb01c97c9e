import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { UplinkMessage } from '../core/bus/subjects.ts';
import { CompiledModel } from '../products/thing-model.ts';
import { validateGatewayConfig } from './config-schema.ts';
import { RoutingPipeline } from './pipeline.ts';

const model = new CompiledModel({ properties: [{ id: 'temperature', type: 'number', access: 'r' }], events: [{ id: 'smoke' }], actions: [] });
const device = { productKey: 'sensor' };
let seq = 0;
function msg(over: Partial<UplinkMessage> = {}): UplinkMessage {
  const deviceId = over.deviceId ?? 'd_1';
  return {
    id: `m${++seq}`,
    deviceId,
    via: deviceId,
    kind: 'properties',
    topic: `devices/${deviceId}/properties`,
    payload: { temperature: 20 },
    receivedAt: 5,
    ...over,
  };
}

test('the default configuration sends everything to the device core and nowhere else', () => {
  const p = new RoutingPipeline();
  const r = p.process(msg(), device, model);
  assert.equal(r.action, 'pass');
  assert.equal(r.builtin, true);
  assert.deepEqual(r.deliveries, []);
  assert.equal(r.envelope.source, 'mqtt');
  assert.equal(r.envelope.product, 'sensor');
  assert.equal(p.process(msg({ payload: { temperature: 'x' } }), device, model).code, 'E_MODEL_MISMATCH');
});

test('deliveries: one per external target, bodies rendered once, lanes carried; counters counted', () => {
  const counts = new Map<string, number>();
  const counter = (k: string) => ({ inc: () => counts.set(k, (counts.get(k) ?? 0) + 1) });
  const p = new RoutingPipeline({ observer: { filterCounter: (f, e) => counter(`${f}:${e}`), routedCounter: (r) => counter(`route:${r}`) } });
  p.configure(
    validateGatewayConfig({
      routes: [
        { id: 'core', name: 'core', match: {}, targets: [{ type: 'builtin', handler: 'device' }] },
        {
          id: 'out',
          name: 'out',
          match: { kind: 'properties' },
          targets: [
            { type: 'nats', subject: 'partner.raw' },
            { type: 'webhook', url: 'http://x/h', template: { d: '{{deviceId}}', t: '{{payload.temperature}}', lane: '{{tags.lane}}' } },
            { type: 'nats', subject: 'partner.gray', lane: 'gray' },
          ],
        },
      ],
      filters: [{ type: 'validate' }],
      lanes: [{ name: 'gray', devices: ['d_gray'] }],
    }),
    3,
  );
  assert.equal(p.version, 3);
  const r = p.process(msg({ tags: { lane: 'nope' } }), device, model);
  assert.equal(r.builtin, true);
  assert.deepEqual(
    r.deliveries.map((d) => [d.routeId, d.targetIndex, d.lane]),
    [
      ['out', 0, undefined],
      ['out', 1, undefined],
    ],
  );
  assert.deepEqual(r.envelope.tags, {}, 'a lane tag naming no lane is removed');
  assert.deepEqual(JSON.parse(r.deliveries[0].body).payload, { temperature: 20 });
  assert.deepEqual(JSON.parse(r.deliveries[1].body), { d: 'd_1', t: 20 });
  const gray = p.process(msg({ deviceId: 'd_gray' }), device, model);
  assert.deepEqual(
    gray.deliveries.map((d) => [d.targetIndex, d.lane]),
    [[2, 'gray']],
  );
  assert.equal(JSON.parse(gray.deliveries[0].body).tags.lane, 'gray');
  assert.deepEqual(Object.fromEntries(counts), { 'validate:pass': 2, 'route:core': 2, 'route:out': 2 });
  assert.equal(p.process(msg({ kind: 'events', topic: 'devices/d_1/events', payload: { event: 'smoke' } }), device, model).deliveries.length, 0);
});

test('lanes: listed devices, users and products, an explicit tag, and a stable percentage', () => {
  const p = new RoutingPipeline();
  const lanes = (l: object[]) => p.configure(validateGatewayConfig({ routes: [], filters: [], lanes: l }), 1);
  lanes([
    { name: 'gray', users: ['u_tester'] },
    { name: 'beta', products: ['sensor'] },
  ]);
  assert.equal(p.process(msg({ kind: 'command', userId: 'u_tester' }), device, model).envelope.tags.lane, 'gray');
  assert.equal(p.process(msg(), device, model).envelope.tags.lane, 'beta');
  assert.equal(p.process(msg({ tags: { lane: 'gray' } }), device, model).envelope.tags.lane, 'gray', 'an explicit lane wins');
  lanes([{ name: 'gray', percent: 30 }]);
  const ids = Array.from({ length: 2000 }, (_, i) => `d_${i.toString(36)}`);
  const inLane = () => ids.filter((id) => p.process(msg({ deviceId: id }), device, model).envelope.tags.lane === 'gray');
  const at30 = inLane();
  assert.ok(at30.length > 500 && at30.length < 700, `about 30 %: ${at30.length}`);
  lanes([{ name: 'gray', percent: 50 }]);
  const at50 = inLane();
  assert.ok(
    at30.every((id) => at50.includes(id)),
    'shifting the percentage up keeps the devices already in the lane',
  );
  lanes([{ name: 'gray', percent: 0 }]);
  assert.deepEqual(inLane(), []);
});

test('a dry run shows the steps, tags, lane and targets and changes nothing', () => {
  const p = new RoutingPipeline();
  p.configure(
    validateGatewayConfig({
      routes: [
        { id: 'core', name: 'core', match: {}, targets: [{ type: 'builtin', handler: 'device' }] },
        { id: 'a', name: 'alarms', match: { tags: { class: 'alarm' } }, targets: [{ type: 'nats', subject: 'alarms', template: { who: '{{deviceId}}' } }] },
      ],
      filters: [
        { type: 'rateLimit', scope: 'device', perSecond: 1, burst: 1, action: 'drop' },
        { type: 'classify', rules: [{ when: { event: 'smoke' }, set: { class: 'alarm' } }] },
      ],
      lanes: [],
    }),
    1,
  );
  const smoke = msg({ kind: 'events', topic: 'devices/d_1/events', payload: { event: 'smoke' } });
  for (let i = 0; i < 3; i++) {
    const d = p.dryRun(smoke, 'sensor', model);
    assert.deepEqual(d, {
      filters: [
        { filter: 'rateLimit', effect: 'pass' },
        { filter: 'classify', effect: 'tagged', detail: 'class=alarm' },
      ],
      action: 'pass',
      tags: { class: 'alarm' },
      lane: null,
      routes: [
        { id: 'core', name: 'core', targets: [{ index: 0, target: { type: 'builtin', handler: 'device' } }] },
        {
          id: 'a',
          name: 'alarms',
          targets: [{ index: 0, target: { type: 'nats', subject: 'alarms', template: { who: '{{deviceId}}' } }, body: { who: 'd_1' } }],
        },
      ],
    });
  }
  assert.equal(p.process(smoke, device, model).action, 'pass', 'the dry runs took no token');
  assert.equal(p.dryRun(smoke, 'sensor', model).code, 'E_RATE_LIMITED');
});
