import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpiringKeys } from './expiring-keys.ts';

test('keys are remembered for the window and forgotten after it', () => {
  const k = new ExpiringKeys<string>(100);
  k.set('a', 'first', 0);
  k.set('b', 'second', 50);
  assert.equal(k.get('a', 99), 'first');
  assert.equal(k.get('a', 100), undefined);
  assert.equal(k.get('b', 149), 'second');
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
  assert.equal(k.get('a', 1), undefined);
  assert.equal(k.get('d', 1), true);
});

test('deleted keys are gone, and their slots do not pile up', () => {
  const k = new ExpiringKeys(Infinity, 10);
  for (let i = 0; i <= 100_000; i++) {
    k.set(`m${i}`, true, i);
    if (i % 10 !== 0) k.delete(`m${i}`);
  }
  assert.equal(k.get('m99999', 100_000), undefined);
  assert.equal(k.get('m99990', 100_000), true);
  assert.equal(k.get('m100000', 100_000), true);
  assert.equal(k.size, 10, 'at most max, the newest');
  assert.ok((k as unknown as { queue: unknown[] }).queue.length <= 2048, 'the queue is compacted');
});

test('a changed ttl applies to keys set afterwards', () => {
  const k = new ExpiringKeys(100);
  k.set('a', true, 0);
  k.ttlMs = 1000;
  k.set('b', true, 0);
  assert.equal(k.get('a', 500), undefined);
  assert.equal(k.get('b', 500), true);
});
