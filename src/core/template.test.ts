import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileTemplate } from './template.ts';

const env = { id: 'm1', deviceId: 'd_1', receivedAt: 1700000000000, payload: { temperature: 21.5, nested: { a: [1, 2] } }, tags: { lane: 'gray' } };

test('a whole "{{path}}" keeps the value\'s type; inside text it is interpolated', () => {
  const t = compileTemplate({
    device: '{{deviceId}}',
    temp: '{{ payload.temperature }}',
    at: '{{receivedAt}}',
    nested: '{{payload.nested}}',
    text: 'device {{deviceId}} is at {{payload.temperature}} °C in lane {{tags.lane}}',
    json: 'n={{payload.nested}}',
    missing: '{{payload.nope}}',
    missingText: '[{{payload.nope}}]',
    list: ['{{payload.nested.a.1}}', 'fixed', 3, null, true],
    constant: { kind: 'reading' },
  });
  assert.deepEqual(t(env), {
    device: 'd_1',
    temp: 21.5,
    at: 1700000000000,
    nested: { a: [1, 2] },
    text: 'device d_1 is at 21.5 °C in lane gray',
    json: 'n={"a":[1,2]}',
    missing: undefined,
    missingText: '[]',
    list: [2, 'fixed', 3, null, true],
    constant: { kind: 'reading' },
  });
  assert.equal(JSON.stringify(t(env)).includes('missing"'), false, 'a missing value leaves its key out of the JSON');
});

test('a template can be a single value, and never reaches prototypes', () => {
  assert.equal(compileTemplate('{{payload.temperature}}')(env), 21.5);
  assert.equal(compileTemplate(42)(env), 42);
  assert.equal(compileTemplate('{{payload.__proto__}}')(env), undefined);
  assert.equal(compileTemplate('{{payload.constructor}}')(env), undefined);
});

test('rendering builds new objects each time', () => {
  const t = compileTemplate({ a: { b: '{{deviceId}}' } });
  const x = t(env) as { a: object };
  assert.notEqual(x.a, (t(env) as { a: object }).a);
});
