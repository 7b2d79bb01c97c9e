import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Envelope } from './envelope.ts';
import type { Route } from './config-schema.ts';
import { Router, compileTags, compileTopic } from './router.ts';

function env(over: Partial<Envelope> = {}): Envelope {
  return {
    id: 'm1',
    source: 'mqtt',
    deviceId: 'd_1',
    product: 'lamp',
    kind: 'properties',
    topic: 'devices/d_1/properties',
    payload: {},
    receivedAt: 0,
    tags: {},
    ...over,
  };
}

const hook = (url: string, lane?: string) => ({ type: 'webhook' as const, url, ...(lane ? { lane } : {}) });

test('topic patterns: MQTT wildcards and regular expressions', () => {
  const m = (p: string, t: string) => compileTopic(p)(t);
  assert.ok(m('devices/+/events', 'devices/d_1/events'));
  assert.ok(!m('devices/+/events', 'devices/d_1/properties'));
  assert.ok(!m('devices/+/events', 'devices/d_1/events/x'));
  assert.ok(!m('devices/+/events', 'devices//x'));
  assert.ok(m('devices/+', 'devices/'), 'an empty level is a level');
  assert.ok(m('devices/#', 'devices/d_1/commands/result'));
  assert.ok(m('devices/#', 'devices'), '# also matches the parent');
  assert.ok(!m('devices/#', 'devicesX/a'));
  assert.ok(m('+/+/commands/#', 'devices/d_1/commands/result'));
  assert.ok(!m('+/+/commands/#', 'devices/d_1/events'));
  assert.ok(m('#', 'anything/at/all'));
  assert.ok(m('devices/d_1/events', 'devices/d_1/events'));
  assert.ok(!m('devices/d_1/events', 'devices/d_1/event'));
  assert.ok(m('/^devices\\/d_[0-9]+\\/(events|properties)$/', 'devices/d_42/events'));
  assert.ok(m('/EVENTS$/i', 'devices/d_1/events'));
  assert.throws(() => compileTopic('devices/#/x'), /"#" must be a whole level and the last one/);
  assert.throws(() => compileTopic('devices/a+'), /"\+" must be a whole level/);
  assert.throws(() => compileTopic('/(unclosed/'), /not a valid regular expression/);
  assert.throws(() => compileTopic('/a/g'), /stateful/);
});

test('tag conditions: value, !value, *', () => {
  const t = compileTags({ class: 'alarm', lane: '!gray', site: '*' });
  assert.ok(t({ class: 'alarm', site: 'x' }));
  assert.ok(t({ class: 'alarm', site: 'x', lane: 'blue' }));
  assert.ok(!t({ class: 'alarm', site: 'x', lane: 'gray' }));
  assert.ok(!t({ class: 'alarm' }), 'site must be present');
  assert.ok(!t({ class: 'info', site: 'x' }));
});

test('routes by kind, product, topic and tags, in configuration order; disabled routes match nothing', () => {
  const routes: Route[] = [
    { id: 'core', name: 'core', match: {}, targets: [{ type: 'builtin', handler: 'device' }] },
    { id: 'ev', name: 'events', match: { kind: 'events' }, targets: [hook('http://a/ev')] },
    { id: 'lamps', name: 'lamps', match: { product: ['lamp', 'plug'], kind: ['properties', 'events'] }, targets: [hook('http://a/lamps')] },
    { id: 'alarm', name: 'alarms', match: { topic: 'devices/+/events', tags: { class: 'alarm' } }, targets: [hook('http://a/alarm')] },
    { id: 'off', name: 'off', enabled: false, match: {}, targets: [hook('http://a/off')] },
  ];
  const r = new Router(routes);
  const ids = (e: Envelope) => r.match(e).map((h) => h.route.id);
  assert.deepEqual(ids(env()), ['core', 'lamps']);
  assert.deepEqual(ids(env({ product: 'sensor' })), ['core']);
  assert.deepEqual(ids(env({ product: undefined })), ['core']);
  assert.deepEqual(ids(env({ kind: 'events', topic: 'devices/d_1/events' })), ['core', 'ev', 'lamps']);
  assert.deepEqual(ids(env({ kind: 'events', topic: 'devices/d_1/events', product: 'sensor', tags: { class: 'alarm' } })), ['core', 'ev', 'alarm']);
  assert.deepEqual(ids(env({ kind: 'result' })), ['core']);
});

test("lanes: a lane's targets replace the baseline for its messages; nobody else reaches them", () => {
  const routes: Route[] = [
    {
      id: 'p',
      name: 'partner',
      match: {},
      targets: [hook('http://base/1'), hook('http://gray/1', 'gray'), hook('http://base/2'), hook('http://gray/2', 'gray')],
    },
    { id: 'q', name: 'baseline only', match: {}, targets: [hook('http://base/q')] },
    { id: 'g', name: 'gray only', match: {}, targets: [hook('http://gray/g', 'gray')] },
  ];
  const r = new Router(routes);
  const urls = (e: Envelope) => r.match(e).flatMap((h) => h.targets.map((t) => `${h.route.id}:${t.index}:${(t.target as { url: string }).url}`));
  assert.deepEqual(urls(env()), ['p:0:http://base/1', 'p:2:http://base/2', 'q:0:http://base/q']);
  assert.deepEqual(urls(env({ tags: { lane: 'gray' } })), ['p:1:http://gray/1', 'p:3:http://gray/2', 'q:0:http://base/q', 'g:0:http://gray/g']);
  assert.deepEqual(
    urls(env({ tags: { lane: 'blue' } })),
    ['p:0:http://base/1', 'p:2:http://base/2', 'q:0:http://base/q'],
    'a lane without targets takes the baseline',
  );
});

test('the index keeps routes for products and kinds it has not seen', () => {
  const many: Route[] = Array.from({ length: 50 }, (_, i) => ({
    id: `r${i}`,
    name: `r${i}`,
    match: { product: `p${i}`, kind: 'events' as const },
    targets: [hook(`http://x/${i}`)],
  }));
  many.push({ id: 'all', name: 'all', match: {}, targets: [{ type: 'builtin', handler: 'device' }] });
  const r = new Router(many);
  assert.deepEqual(
    r.match(env({ product: 'p7', kind: 'events' })).map((h) => h.route.id),
    ['r7', 'all'],
  );
  assert.deepEqual(
    r.match(env({ product: 'p7', kind: 'join' })).map((h) => h.route.id),
    ['all'],
  );
  assert.deepEqual(
    r.match(env({ product: 'zzz', kind: 'events' })).map((h) => h.route.id),
    ['all'],
  );
});
