import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bucketOf, inWindow, trippedGate, waveOf, wavesProblem } from './ota-plan.ts';
import { parseRange } from './ota-routes.ts';

test('a device keeps its wave across campaigns of its product, and waves get their share', () => {
  const waves = [{ percent: 1 }, { percent: 10 }, { percent: 100 }];
  const ids = Array.from({ length: 20_000 }, (_, i) => `d_${i.toString(36).padStart(14, '0')}`);
  const counts = [0, 0, 0];
  for (const id of ids) {
    const w = waveOf(waves, 'light', id);
    assert.equal(waveOf(waves, 'light', id), w, 'stable');
    counts[w]++;
  }
  assert.ok(Math.abs(counts[0] / ids.length - 0.01) < 0.005, `wave 0 holds about 1 %: ${counts[0]}`);
  assert.ok(Math.abs((counts[0] + counts[1]) / ids.length - 0.1) < 0.01, `waves 0-1 hold about 10 %: ${counts[0] + counts[1]}`);
  // A canary of 1 % is inside every larger first wave: the same devices go first.
  for (const id of ids) if (waveOf(waves, 'light', id) === 0) assert.equal(waveOf([{ percent: 5 }, { percent: 100 }], 'light', id), 0);
  assert.notEqual(bucketOf('light', ids[0]), bucketOf('plug', ids[0]), 'products hash apart');
});

test('waves must rise to 100', () => {
  assert.equal(wavesProblem([{ percent: 10 }, { percent: 100 }]), undefined);
  assert.match(wavesProblem([{ percent: 50 }])!, /100/);
  assert.match(wavesProblem([{ percent: 50 }, { percent: 20 }, { percent: 100 }])!, /waves\[1\]/);
  assert.match(wavesProblem([])!, /at least one/);
});

test('gates trip on the failure rate and on updated devices gone offline, once enough jobs ended', () => {
  const gates = { maxFailureRate: 0.2, maxOfflineAfterUpdate: 0.1, minDevices: 5 };
  assert.equal(trippedGate(gates, { ended: 4, failed: 4, succeeded: 0, offlineAfterUpdate: 0 }), undefined, 'below minDevices');
  assert.equal(trippedGate(gates, { ended: 5, failed: 1, succeeded: 4, offlineAfterUpdate: 0 }), undefined, '20 % is not above 20 %');
  assert.equal(trippedGate(gates, { ended: 5, failed: 2, succeeded: 3, offlineAfterUpdate: 0 })?.gate, 'maxFailureRate');
  assert.equal(trippedGate(gates, { ended: 10, failed: 0, succeeded: 10, offlineAfterUpdate: 2 })?.gate, 'maxOfflineAfterUpdate');
  assert.equal(trippedGate(undefined, { ended: 10, failed: 10, succeeded: 0, offlineAfterUpdate: 0 }), undefined);
});

test('windows of local hours, wrapping midnight', () => {
  assert.ok(inWindow({ startHour: 2, endHour: 5 }, 2));
  assert.ok(!inWindow({ startHour: 2, endHour: 5 }, 5));
  assert.ok(inWindow({ startHour: 22, endHour: 4 }, 23));
  assert.ok(inWindow({ startHour: 22, endHour: 4 }, 3));
  assert.ok(!inWindow({ startHour: 22, endHour: 4 }, 12));
  assert.ok(inWindow(undefined, 12));
});

test('Range headers: one range, suffixes, open ends; outside the image is unsatisfiable', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=9-3', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-1,5-6', 100), undefined, 'several ranges: the whole image');
  assert.equal(parseRange('items=0-1', 100), undefined);
  assert.equal(parseRange(undefined, 100), undefined);
});
