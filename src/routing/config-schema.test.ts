import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HearthError } from '../core/errors.ts';
import { defaultGatewayConfig, validateGatewayConfig, validateRouteInput } from './config-schema.ts';

function refused(doc: unknown, field: string, message: RegExp): void {
  assert.throws(
    () => validateGatewayConfig(doc),
    (err: unknown) => {
      assert.ok(err instanceof HearthError);
      assert.equal(err.code, 'E_VALIDATION');
      assert.equal(err.extras?.field, field, err.message);
      assert.match(err.message, message);
      return true;
    },
  );
}

const base = () => defaultGatewayConfig();

test('the default configuration is valid, and defaults are applied to a copy', () => {
  assert.deepEqual(validateGatewayConfig(base()), base());
  const doc = { ...base(), routes: [{ id: 'r', name: 'r', match: {}, targets: [{ type: 'webhook', url: 'https://x.example/h' }] }] };
  const v = validateGatewayConfig(doc);
  assert.deepEqual(v.routes[0], {
    id: 'r',
    name: 'r',
    enabled: true,
    match: {},
    targets: [{ type: 'webhook', url: 'https://x.example/h', concurrency: 4, timeoutMs: 5000, retries: 5 }],
  });
  assert.equal((doc.routes[0] as { enabled?: boolean }).enabled, undefined, 'the input is untouched');
});

test('a bad part is named: targets, filters, lanes, patterns, references', () => {
  const route = (over: object) => ({ ...base(), routes: [{ id: 'r', name: 'r', match: {}, targets: [{ type: 'builtin', handler: 'device' }], ...over }] });
  refused(
    route({
      targets: [
        { type: 'builtin', handler: 'device' },
        { type: 'webhook', url: 'ftp://x' },
      ],
    }),
    'routes[0].targets[1].url',
    /pattern/,
  );
  refused(route({ targets: [{ type: 'carrier-pigeon' }] }), 'routes[0].targets[0].type', /must be one of builtin, webhook, nats, amqp/);
  refused(route({ targets: [] }), 'routes[0].targets', /1/);
  refused(route({ targets: [{ type: 'webhook', url: 'http://x', concurrency: 100 }] }), 'routes[0].targets[0].concurrency', /64/);
  refused(route({ targets: [{ type: 'webhook', url: 'http://x', lane: 'gray' }] }), 'routes[0].targets[0].lane', /no lane "gray" is defined/);
  refused(route({ match: { topic: 'devices/#/x' } }), 'routes[0].match.topic', /"#" must be/);
  refused(route({ match: { colour: 'red' } }), 'routes[0].match.colour', /not allowed/);
  const unnamed = route({});
  delete (unnamed.routes[0] as { name?: string }).name;
  refused(unnamed, 'routes[0].name', /required/);
  refused({ ...base(), routes: [...base().routes, ...base().routes] }, 'routes[1].id', /used twice/);
  refused({ ...base(), filters: [{ type: 'rateLimit', scope: 'device', perSecond: 0, burst: 1, action: 'drop' }] }, 'filters[0].perSecond', /0/);
  refused(
    { ...base(), filters: [{ type: 'validate' }, { type: 'rateLimit', scope: 'home', perSecond: 1, burst: 1, action: 'drop' }] },
    'filters[1].scope',
    /./,
  );
  refused({ ...base(), filters: [{ type: 'magic' }] }, 'filters[0].type', /must be one of source, validate, dedupe, rateLimit, list, classify/);
  refused(
    { ...base(), filters: [{ type: 'classify', rules: [{ when: { topic: 'a/b+' }, set: { a: 'b' } }] }] },
    'filters[0].rules[0].when.topic',
    /whole level/,
  );
  refused({ ...base(), lanes: [{ name: 'gray', percent: 101 }] }, 'lanes[0].percent', /100/);
  refused({ ...base(), lanes: [{ name: 'gray' }, { name: 'gray' }] }, 'lanes[1].name', /twice/);
  refused({ ...base(), extra: 1 }, 'extra', /not allowed/);
  refused({ routes: [] }, 'filters', /required/);
  refused([], 'config', /object/);
});

test('a route as the API takes it', () => {
  const r = validateRouteInput({ name: 'n', match: { kind: ['events'], tags: { class: 'alarm' } }, targets: [{ type: 'nats', subject: 'partner.alarms' }] });
  assert.equal(r.enabled, true);
  assert.throws(() => validateRouteInput({ name: 'n', match: {}, targets: [{ type: 'nats', subject: 'a.*' }] }), /body.targets\[0\].subject/);
});
