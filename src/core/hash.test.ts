import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fnv1a, mix32, percentSpot } from './hash.ts';

test('FNV-1a matches the published 32-bit test vectors', () => {
  assert.equal(fnv1a(''), 0x811c9dc5);
  assert.equal(fnv1a('a'), 0xe40c292c);
  assert.equal(fnv1a('foobar'), 0xbf9cf968);
});

test('percent spots are stable, in [0, 100), spread out, and differ between salts', () => {
  const spots = Array.from({ length: 2000 }, (_, i) => percentSpot(`d_${i}`, 0x9e3779b9));
  assert.deepEqual(
    spots.slice(0, 5),
    Array.from({ length: 5 }, (_, i) => percentSpot(`d_${i}`, 0x9e3779b9)),
  );
  assert.ok(spots.every((s) => s >= 0 && s < 100));
  const under10 = spots.filter((s) => s < 10).length;
  assert.ok(under10 > 120 && under10 < 280, `about 10 % fall under 10 (got ${under10} of 2000)`);
  assert.notEqual(percentSpot('d_1', 1), percentSpot('d_1', 2));
  assert.notEqual(mix32(1), mix32(2));
});
