import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDesired, applyReport, delta, emptyShadow, markDelivered } from './shadow-state.ts';

test('a report merges into reported and bumps the version', () => {
  const s = emptyShadow();
  const r1 = applyReport(s, { on: true, brightness: 10 }, 1000);
  assert.deepEqual(r1.changed.sort(), ['brightness', 'on']);
  const r2 = applyReport(s, { brightness: 10 }, 2000);
  assert.deepEqual(r2.changed, []);
  assert.equal(r2.version, 2);
  assert.deepEqual(s.reported, { on: true, brightness: 10 });
  assert.equal(s.metadata.reported.brightness.at, 2000);
});

test('delta is desired minus reported; null removes a desired key', () => {
  const s = emptyShadow();
  applyReport(s, { on: false, brightness: 10 }, 1);
  applyDesired(s, { on: true, brightness: 10 }, 2);
  assert.deepEqual(delta(s), { on: true });
  applyDesired(s, { on: null }, 3);
  assert.deepEqual(s.desired, { brightness: 10 });
});

test('a matching report fulfils desired state', () => {
  const s = emptyShadow();
  applyDesired(s, { on: true }, 1);
  const out = applyReport(s, { on: true }, 2);
  assert.deepEqual(out.fulfilled, ['on']);
  assert.deepEqual(s.desired, {});
});

test('a different report before delivery keeps the desired value; after delivery it is stale and dropped', () => {
  const s = emptyShadow();
  applyDesired(s, { locked: true }, 1);
  let out = applyReport(s, { locked: false }, 2);
  assert.deepEqual(out.stale, []);
  assert.deepEqual(delta(s), { locked: true }, 'not delivered yet: still pending');
  markDelivered(s, ['locked'], 3);
  out = applyReport(s, { locked: false }, 4);
  assert.deepEqual(out.stale, ['locked']);
  assert.deepEqual(s.desired, {});
  assert.deepEqual(delta(s), {});
});

test('objects compare by value', () => {
  const s = emptyShadow();
  applyDesired(s, { cfg: { a: 1 } }, 1);
  applyReport(s, { cfg: { a: 1 } }, 2);
  assert.deepEqual(s.desired, {});
});

test('the same report twice, or an older value arriving late, changes nothing; newer keys of a mixed report still apply', () => {
  const s = emptyShadow();
  applyReport(s, { on: true, brightness: 10 }, 100);
  const again = applyReport(s, { on: true, brightness: 10 }, 100);
  assert.equal(again.version, 1, 'a redelivered report does not bump the version');
  assert.deepEqual(again.changed, []);
  applyReport(s, { brightness: 20 }, 200);
  const late = applyReport(s, { brightness: 15 }, 150);
  assert.equal(s.reported.brightness, 20, 'the late, older value is left out');
  assert.equal(late.version, 2);
  const mixed = applyReport(s, { on: false, brightness: 12 }, 180);
  assert.deepEqual(mixed.changed, ['on'], 'on is newer than its last report; brightness is not');
  assert.equal(s.reported.brightness, 20);
  assert.equal(mixed.version, 3);
  const sameMs = applyReport(s, { brightness: 21 }, 200);
  assert.deepEqual(sameMs.changed, ['brightness'], 'a different value in the same millisecond is a new report');
});
