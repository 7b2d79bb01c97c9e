import { test } from 'node:test';
import assert from 'node:assert/strict';
import { changed, fieldKind, initialValue, toParams, type ModelField } from '../web/src/lib/thing-form.ts';
import { SNIPPET_KINDS, samplePayload, snippet } from '../web/src/lib/snippets.ts';
import { metricSum, ratePerSecond } from '../web/src/lib/metrics.ts';
import { asDeviceId, narrow, parseTags, quoteValue, tagChanges } from '../web/src/lib/fleet-query.ts';
import { EMPTY_DRAFT, actionOf, draftText, parseDraft, triggerOf, typedValue } from '../web/src/lib/automation-draft.ts';

// Unit tests of the console's pure logic (the browser suite is test/console.test.ts).

const fields: ModelField[] = [
  { id: 'on', type: 'boolean' },
  { id: 'times', type: 'integer', min: 1, max: 10, required: true },
  { id: 'level', type: 'number', min: 0, max: 1 },
  { id: 'mode', type: 'enum', values: ['eco', 'boost'] },
  { id: 'label', type: 'string', max: 4 },
  { id: 'extra', type: 'object' },
];

test('thing-model forms: a control per type, and the JSON the API takes', () => {
  assert.deepEqual(fields.map(fieldKind), ['switch', 'number', 'number', 'select', 'text', 'json']);
  assert.deepEqual(toParams(fields, { on: true, times: 3, level: 0.5, mode: 'eco', label: 'ab', extra: '{"a":1}' }), {
    params: { on: true, times: 3, level: 0.5, mode: 'eco', label: 'ab', extra: { a: 1 } },
    problems: {},
  });
  // Blank optional fields are left out; a blank required one is a problem.
  assert.deepEqual(toParams(fields, { on: false }), { params: { on: false }, problems: { times: 'required' } });
  assert.deepEqual(toParams(fields, { times: 2.5 }).problems, { times: 'integer' });
  assert.deepEqual(toParams(fields, { times: 11 }).problems, { times: 'max' });
  assert.deepEqual(toParams(fields, { times: 0 }).problems, { times: 'min' });
  assert.deepEqual(toParams(fields, { times: 1, mode: 'turbo' }).problems, { mode: 'enum' });
  assert.deepEqual(toParams(fields, { times: 1, label: 'too long' }).problems, { label: 'maxLength' });
  assert.deepEqual(toParams(fields, { times: 1, extra: '{' }).problems, { extra: 'json' });
  assert.deepEqual(toParams(fields, { times: 1, extra: '[1]' }).problems, { extra: 'object' });
  assert.equal(initialValue(fields[0]), false);
  assert.equal(initialValue(fields[5], { a: 1 }), '{"a":1}');
  assert.deepEqual(changed({ on: true, b: 5 }, { on: true, b: 6 }), { b: 6 });
});

test('connection snippets carry the credentials, quoted for their language', () => {
  const c = { id: 'd_1', secret: "it's-secret", host: 'hearth.example', port: 1883, wsUrl: 'wss://hearth.example/mqtt', payload: '{"on":true}' };
  for (const kind of SNIPPET_KINDS) {
    const s = snippet(kind, c);
    assert.ok(s.includes('devices/d_1/properties'), `${kind}: the properties topic`);
  }
  assert.ok(snippet('mosquitto', c).includes(`-P 'it'\\''s-secret'`), 'shell quoting');
  assert.ok(snippet('mqttjs', c).includes('"wss://hearth.example/mqtt"'));
  assert.ok(snippet('paho', c).includes('client.connect("hearth.example", 1883)'));
  assert.ok(snippet('esp32', c).includes('mqtt.connect("d_1", "d_1", "it\'s-secret")'));
  assert.equal(
    samplePayload([
      { id: 'on', type: 'boolean' },
      { id: 'brightness', type: 'integer', min: 0 },
      { id: 'mode', type: 'enum', values: ['a'] },
    ]),
    '{"on":true,"brightness":0,"mode":"a"}',
  );
});

test('metrics: sums over label sets, rates between samples', () => {
  const text = [
    '# HELP hearth_device_messages_total Messages',
    '# TYPE hearth_device_messages_total counter',
    'hearth_device_messages_total{kind="properties"} 10',
    'hearth_device_messages_total{kind="events"} 5',
    'hearth_device_messages_total_extra 99',
    'hearth_devices_connected 3',
  ].join('\n');
  assert.equal(metricSum(text, 'hearth_device_messages_total'), 15);
  assert.equal(metricSum(text, 'hearth_devices_connected'), 3);
  assert.equal(metricSum(text, 'hearth_nothing'), undefined);
  assert.equal(ratePerSecond(undefined, { value: 1, at: 0 }), undefined);
  assert.equal(ratePerSecond({ value: 10, at: 0 }, { value: 30, at: 2000 }), 10);
  assert.equal(ratePerSecond({ value: 10, at: 0 }, { value: 3, at: 1000 }), 0, 'a restart reads as 0');
});

test('automation drafts: the JSON box is the truth, the forms add to it', () => {
  assert.deepEqual(parseDraft('{"triggers":[{"type":"manual"}]}').draft, { triggers: [{ type: 'manual' }], conditions: [], actions: [] });
  assert.ok(parseDraft('{').error);
  assert.equal(parseDraft('[]').error, 'object');
  assert.equal(parseDraft('{"actions":{}}').error, 'actions');
  assert.deepEqual(triggerOf({ type: 'property', device: 'd_1', property: 'on', to: 'true' }), { type: 'property', device: 'd_1', property: 'on', to: true });
  assert.deepEqual(triggerOf({ type: 'property', device: 'd_1', property: 'mode', to: 'eco' }), {
    type: 'property',
    device: 'd_1',
    property: 'mode',
    to: 'eco',
  });
  assert.deepEqual(triggerOf({ type: 'property', device: 'd_1', property: 'on' }), { type: 'property', device: 'd_1', property: 'on' });
  assert.deepEqual(triggerOf({ type: 'offline', device: 'd_1' }), { type: 'offline', device: 'd_1' });
  assert.deepEqual(actionOf({ type: 'set', device: 'd_2', property: 'brightness', value: '70' }), {
    type: 'set',
    device: 'd_2',
    properties: { brightness: 70 },
  });
  assert.deepEqual(actionOf({ type: 'command', device: 'd_2', action: 'toggle' }), { type: 'command', device: 'd_2', action: 'toggle' });
  assert.equal(typedValue('  '), undefined);
  assert.equal(draftText(EMPTY_DRAFT), '{\n  "triggers": [],\n  "conditions": [],\n  "actions": []\n}');
});

test('fleet search helpers: a count narrows the query, an ID opens the device, tag edits become a PATCH', () => {
  assert.equal(narrow(undefined, 'tag.site', 'berlin'), 'tag.site:berlin');
  assert.equal(narrow('product:plug', 'online', true), 'product:plug AND online:true');
  assert.equal(narrow('product:plug OR product:light', 'firmware', null), '(product:plug OR product:light) AND firmware:none');
  assert.equal(narrow('', 'name', 'Hall "big" light'), 'name:"Hall \\"big\\" light"');
  assert.equal(quoteValue('1.2.0'), '1.2.0');
  assert.equal(asDeviceId(' d_9x2k7m4p1q8r0t '), 'd_9x2k7m4p1q8r0t');
  assert.equal(asDeviceId('product:light'), undefined);
  assert.deepEqual(tagChanges({ site: 'berlin', batch: 'b7' }, { site: 'paris', floor: '2' }), { site: 'paris', floor: '2', batch: null });
  assert.deepEqual(parseTags('site=berlin, batch = b7'), { site: 'berlin', batch: 'b7' });
  assert.equal(parseTags('  '), undefined);
  assert.ok(parseTags('site') instanceof Error);
});
