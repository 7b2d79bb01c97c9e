import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompiledModel } from '../products/thing-model.ts';
import type { Envelope } from './envelope.ts';
import type { Filter } from './config-schema.ts';
import { FilterChain, type FilterStep } from './filters.ts';

const model = new CompiledModel({
  properties: [{ id: 'temperature', type: 'number', access: 'r', min: -40, max: 80 }],
  events: [{ id: 'smoke' }, { id: 'selfTest', params: [{ id: 'ok', type: 'boolean' }] }],
  actions: [],
});

let seq = 0;
function env(over: Partial<Envelope> = {}): Envelope {
  return {
    id: `m${++seq}`,
    source: 'mqtt',
    deviceId: 'd_1',
    product: 'sensor',
    kind: 'properties',
    topic: 'devices/d_1/properties',
    payload: { temperature: 20 },
    receivedAt: 0,
    tags: {},
    ...over,
  };
}

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

test('source: deny and allow patterns with a trailing *', () => {
  const chain = new FilterChain([{ type: 'source', allow: ['mqtt', 'partner:*'], deny: ['partner:evil'] }]);
  assert.equal(chain.run(env(), model).effect, 'pass');
  assert.equal(chain.run(env({ source: 'partner:acme' }), model).effect, 'pass');
  const denied = chain.run(env({ source: 'partner:evil' }), model);
  assert.equal(denied.effect, 'drop');
  assert.equal(denied.code, 'E_FILTERED');
  assert.match(denied.reason!, /partner:evil/);
  assert.equal(chain.run(env({ source: 'amqp:acme' }), model).code, 'E_FILTERED', 'not on the allow-list');
});

test('validate: reports and events against the thing model; other kinds pass', () => {
  const chain = new FilterChain([{ type: 'validate' }]);
  assert.equal(chain.run(env({ payload: { temperature: 21.5, ts: 1_700_000_000_000 } }), model).effect, 'pass');
  const bad = chain.run(env({ payload: { temperature: 200 } }), model);
  assert.equal(bad.code, 'E_MODEL_MISMATCH');
  assert.match(bad.reason!, /temperature/);
  assert.equal(chain.run(env({ payload: { humidity: 3 } }), model).code, 'E_MODEL_MISMATCH');
  assert.equal(chain.run(env({ payload: [1] }), model).code, 'E_BAD_MESSAGE');
  assert.equal(chain.run(env({ payload: { temperature: 1, ts: -5 } }), model).code, 'E_BAD_MESSAGE');
  assert.equal(chain.run(env({ kind: 'events', payload: { event: 'smoke' } }), model).effect, 'pass');
  assert.equal(chain.run(env({ kind: 'events', payload: { event: 'fire' } }), model).code, 'E_MODEL_MISMATCH');
  assert.equal(chain.run(env({ kind: 'events', payload: { event: 'selfTest', params: { ok: 'yes' } } }), model).code, 'E_MODEL_MISMATCH');
  assert.equal(chain.run(env({ kind: 'events', payload: { params: {} } }), model).code, 'E_BAD_MESSAGE');
  assert.equal(chain.run(env({ kind: 'result', payload: 'anything' }), model).effect, 'pass');
});

test('dedupe: the same sender id from the same device within the window is dropped silently; a redelivery is not', () => {
  const c = clock();
  const chain = new FilterChain([{ type: 'dedupe', windowMs: 1000 }], { now: c.now });
  const first = env({ sourceId: 'p-1' });
  assert.equal(chain.run(first, model).effect, 'pass');
  assert.equal(chain.run(first, model).effect, 'pass', 'the same message again (a redelivery) passes');
  const dup = chain.run(env({ sourceId: 'p-1' }), model);
  assert.equal(dup.effect, 'drop');
  assert.equal(dup.code, undefined, 'a duplicate is not an error the device hears about');
  assert.equal(chain.run(env({ sourceId: 'p-1', deviceId: 'd_2' }), model).effect, 'pass', 'per device');
  assert.equal(chain.run(env(), model).effect, 'pass', 'no sender id, nothing to compare');
  c.t += 1000;
  assert.equal(chain.run(env({ sourceId: 'p-1' }), model).effect, 'pass', 'after the window');
});

test('rateLimit drop: a burst, then the sustained rate, per device', () => {
  const c = clock();
  const chain = new FilterChain([{ type: 'rateLimit', scope: 'device', perSecond: 2, burst: 3, action: 'drop' }], { now: c.now });
  const effects = Array.from({ length: 5 }, () => chain.run(env(), model).effect);
  assert.deepEqual(effects, ['pass', 'pass', 'pass', 'drop', 'drop']);
  assert.equal(chain.run(env({ deviceId: 'd_other' }), model).effect, 'pass', 'another device has its own bucket');
  const d = chain.run(env(), model);
  assert.equal(d.code, 'E_RATE_LIMITED');
  assert.match(d.reason!, /device "d_1"/);
  c.t += 500; // one token back
  assert.equal(chain.run(env(), model).effect, 'pass');
  assert.equal(chain.run(env(), model).effect, 'drop');
});

test('rateLimit tag: over the limit lets through with the tag', () => {
  const chain = new FilterChain([{ type: 'rateLimit', scope: 'product', perSecond: 1, burst: 1, action: 'tag', tag: 'overload=yes' }], { now: clock().now });
  const a = env();
  assert.equal(chain.run(a, model).effect, 'pass');
  assert.deepEqual(a.tags, {});
  const b = env({ deviceId: 'd_2' });
  assert.equal(chain.run(b, model).effect, 'pass', 'same product, same bucket: let through');
  assert.deepEqual(b.tags, { overload: 'yes' });
});

test('rateLimit delay: each message over the limit reserves a later token, and passes when it comes back', () => {
  const c = clock();
  const chain = new FilterChain([{ type: 'rateLimit', scope: 'source', perSecond: 10, burst: 2, action: 'delay' }], { now: c.now });
  const msgs = Array.from({ length: 5 }, () => env());
  const verdicts = msgs.map((m) => chain.run(m, model));
  assert.deepEqual(
    verdicts.map((v) => v.effect),
    ['pass', 'pass', 'delay', 'delay', 'delay'],
  );
  assert.deepEqual(
    verdicts.slice(2).map((v) => v.delayMs),
    [100, 200, 300],
    'spread at the sustained rate',
  );
  // They come back (redelivered with the same id) and pass without taking another token.
  for (const m of msgs.slice(2)) assert.equal(chain.run(m, model).effect, 'pass');
  c.t += 300;
  assert.equal(chain.run(env(), model).effect, 'delay', 'the reserved tokens are spent');
  c.t += 200;
  assert.equal(chain.run(env(), model).effect, 'pass');
});

test('list: allow-lists and deny-lists by product and device', () => {
  const deny = new FilterChain([{ type: 'list', mode: 'deny', devices: ['d_bad'], products: ['legacy'] }]);
  assert.equal(deny.run(env(), model).effect, 'pass');
  assert.match(deny.run(env({ deviceId: 'd_bad' }), model).reason!, /device "d_bad" is on the deny-list/);
  assert.equal(deny.run(env({ product: 'legacy' }), model).code, 'E_FILTERED');
  const allow = new FilterChain([{ type: 'list', mode: 'allow', products: ['sensor'] }]);
  assert.equal(allow.run(env(), model).effect, 'pass');
  assert.equal(allow.run(env({ product: 'lamp' }), model).code, 'E_FILTERED');
});

test('classify: rules by kind, product, event and topic set tags', () => {
  const chain = new FilterChain([
    {
      type: 'classify',
      rules: [
        { when: { kind: 'events', event: ['smoke', 'leak'] }, set: { class: 'alarm' } },
        { when: { product: 'sensor', topic: 'devices/+/properties' }, set: { class: 'telemetry', site: 'home' } },
      ],
    },
  ]);
  const smoke = env({ kind: 'events', topic: 'devices/d_1/events', payload: { event: 'smoke' } });
  assert.equal(chain.run(smoke, model).effect, 'pass');
  assert.deepEqual(smoke.tags, { class: 'alarm' });
  const clear = env({ kind: 'events', topic: 'devices/d_1/events', payload: { event: 'clear' } });
  assert.equal(chain.run(clear, model).effect, 'pass');
  assert.deepEqual(clear.tags, {});
  const report = env();
  chain.run(report, model);
  assert.deepEqual(report.tags, { class: 'telemetry', site: 'home' });
});

test('the chain stops at the first drop; a dry run records every step and remembers nothing', () => {
  const filters: Filter[] = [
    { type: 'validate' },
    { type: 'rateLimit', scope: 'device', perSecond: 1, burst: 1, action: 'drop' },
    { type: 'classify', rules: [{ when: { kind: 'properties' }, set: { seen: 'yes' } }] },
  ];
  const counted: string[] = [];
  const chain = new FilterChain(filters, { now: clock().now, observer: { filterCounter: (f, e) => ({ inc: () => counted.push(`${f}:${e}`) }) } });
  const steps: FilterStep[] = [];
  chain.run(env(), model, steps);
  assert.deepEqual(steps, [
    { filter: 'validate', effect: 'pass' },
    { filter: 'rateLimit', effect: 'pass' },
    { filter: 'classify', effect: 'tagged', detail: 'seen=yes' },
  ]);
  assert.deepEqual(counted, [], 'a dry run counts nothing');
  assert.equal(chain.run(env(), model).effect, 'pass', 'the dry run took no token');
  assert.deepEqual(counted, ['validate:pass', 'rateLimit:pass', 'classify:tagged']);
  const v = chain.run(env(), model);
  assert.equal(v.code, 'E_RATE_LIMITED');
  assert.deepEqual(counted.slice(3), ['validate:pass', 'rateLimit:drop'], 'classify never ran');
  const dry: FilterStep[] = [];
  chain.run(env({ payload: { temperature: 'hot' } }), model, dry);
  assert.deepEqual(
    dry.map((s) => s.effect),
    ['drop'],
  );
  assert.match(dry[0].detail!, /temperature/);
});

test('filters of the same type are named apart; unchanged filters keep their state across versions', () => {
  const c = clock();
  const limit: Filter = { type: 'rateLimit', scope: 'device', perSecond: 1, burst: 1, action: 'drop' };
  const v1 = new FilterChain([limit, { type: 'rateLimit', scope: 'product', perSecond: 100, burst: 100, action: 'drop' }], { now: c.now });
  assert.deepEqual(v1.names, ['rateLimit', 'rateLimit-2']);
  assert.equal(v1.run(env(), model).effect, 'pass');
  const v2 = new FilterChain([limit, { type: 'rateLimit', scope: 'product', perSecond: 50, burst: 100, action: 'drop' }], { now: c.now, previous: v1 });
  assert.equal(v2.run(env(), model).code, 'E_RATE_LIMITED', 'the unchanged device limit kept its empty bucket');
  const v3 = new FilterChain([{ ...limit, burst: 2 }], { now: c.now, previous: v2 });
  assert.equal(v3.run(env(), model).effect, 'pass', 'a changed filter starts afresh');
});
