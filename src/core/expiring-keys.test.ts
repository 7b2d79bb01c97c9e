import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpiringKeys } from './expiring-keys.ts';

test('keys are remembered for the window and forgotten after it', () => {
  const k = new ExpiringKeys<string>(100);
  k.set('a', 'first', 0);
  k.set('b', 'second', 50);
  assert.equal(k.get('a', 99), 'first');
  assert.equal(k.get('a', 100), undefined);
  assert.equal(k.has('b', 149), true);
  k.set('c', 'third', 120); // trims a
  assert.equal(k.size, 2);
  k.set('b', 'again', 140); // b renewed: its old slot must not remove it
  k.trim(160);
  assert.equal(k.get('b', 200), 'again');
  assert.equal(k.size, 2);
  k.trim(225); // c (set at 120) is gone, b (renewed at 140) stays
  assert.equal(k.size, 1);
  assert.equal(k.get('b', 225), 'again');
  k.trim(240);
  assert.equal(k.size, 0);
});

test('at most `max` keys are kept, the oldest go first', () => {
  const k = new ExpiringKeys(1_000_000, 3);
  for (const id of ['a', 'b', 'c', 'd']) k.set(id, true, 0);
  assert.equal(k.size, 3);
  assert.equal(k.has('a', 1), false);
  assert.equal(k.has('d', 1), true);
});
