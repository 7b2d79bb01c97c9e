import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompiledModel, checkModel, checkValue, type ThingModel } from './thing-model.ts';
import { CATALOG } from './catalog.ts';

test('every catalog model is valid', () => {
  for (const p of CATALOG) assert.deepEqual(checkModel(p.model), [], p.key);
});

test('checkModel names the bad field', () => {
  const bad = {
    properties: [
      { id: 'ok', type: 'boolean', access: 'rw' },
      { id: 'mode', type: 'enum', access: 'rw' },
      { id: '9lives', type: 'integer', access: 'r' },
      { id: 'level', type: 'integer', access: 'x', min: 10, max: 1 },
      { id: 'ok', type: 'string', access: 'r' },
      { id: 'flag', type: 'boolean', access: 'r', min: 0 },
    ],
    events: [{ id: 'e', params: [{ id: 'p', type: 'float' }] }],
    actions: [{ id: 'a', result: [{ id: 'r', type: 'enum', values: ['x', 'x'] }] }],
  } as unknown as ThingModel;
  const fields = checkModel(bad).map((p) => p.field);
  assert.deepEqual(fields, [
    'model.properties[1].values',
    'model.properties[2].id',
    'model.properties[3].access',
    'model.properties[3].min',
    'model.properties[4].id',
    'model.properties[5].min',
    'model.events[0].params[0].type',
    'model.actions[0].result[0].values',
  ]);
});

test('checkValue enforces types, ranges, steps and enums', () => {
  assert.equal(checkValue({ id: 'b', type: 'boolean' }, true), undefined);
  assert.match(checkValue({ id: 'b', type: 'boolean' }, 1)!, /boolean/);
  assert.match(checkValue({ id: 'i', type: 'integer' }, 1.5)!, /integer/);
  assert.match(checkValue({ id: 'n', type: 'number', min: 0, max: 10 }, -1)!, /below the minimum 0/);
  assert.match(checkValue({ id: 'n', type: 'number', min: 0, max: 10 }, 11)!, /above the maximum 10/);
  assert.match(checkValue({ id: 'n', type: 'number' }, Number.NaN)!, /number/);
  assert.equal(checkValue({ id: 't', type: 'number', min: 5, step: 0.5 }, 21.5), undefined);
  assert.match(checkValue({ id: 't', type: 'number', min: 5, step: 0.5 }, 21.3)!, /step/);
  assert.match(checkValue({ id: 's', type: 'string', max: 3 }, 'abcd')!, /longer than 3/);
  assert.match(checkValue({ id: 'e', type: 'enum', values: ['a', 'b'] }, 'c')!, /one of "a", "b"/);
  assert.match(checkValue({ id: 'o', type: 'object' }, [1])!, /object/);
  assert.equal(checkValue({ id: 'o', type: 'object' }, { a: 1 }), undefined);
});

test('compiled models check reports, desired state, events and actions', () => {
  const light = new CompiledModel(CATALOG.find((p) => p.key === 'light')!.model);
  assert.deepEqual(light.checkReport({ on: true, brightness: 50 }), { ok: true, problems: [] });
  assert.deepEqual(light.checkReport({ brightness: 500, hue: 1 }).problems, ['property "brightness": 500 is above the maximum 100', 'unknown property "hue"']);
  assert.deepEqual(light.checkDesired({ rssi: -40 }).problems, ['property "rssi" is read-only']);
  assert.equal(light.checkDesired({ on: null }).ok, true, 'null clears a desired key');
  assert.deepEqual(light.checkAction('blink', { times: 20 }).problems, ['action "blink": parameter "times": 20 is above the maximum 10']);
  assert.deepEqual(light.checkAction('explode', {}).problems, ['unknown action "explode"']);
  const printer = new CompiledModel(CATALOG.find((p) => p.key === 'cloud-printer')!.model);
  assert.deepEqual(printer.checkAction('print', {}).problems, ['action "print": missing required parameter "content"']);
  const lock = new CompiledModel(CATALOG.find((p) => p.key === 'door-lock')!.model);
  assert.equal(lock.checkEvent('unlock', { method: 'keypad' }).ok, true);
  assert.deepEqual(lock.checkEvent('unlock', { method: 'telepathy' }).problems.length, 1);
});
