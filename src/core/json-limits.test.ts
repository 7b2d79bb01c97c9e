import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { jsonDepthExceeds } from './json-limits.ts';

function nest(depth: number, leaf: unknown = 1): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { k: v };
  return v;
}

test('depth counts nested objects and arrays; scalars are depth 0', () => {
  assert.equal(jsonDepthExceeds(5, 0), false);
  assert.equal(jsonDepthExceeds(null, 0), false);
  assert.equal(jsonDepthExceeds({}, 0), true);
  assert.equal(jsonDepthExceeds({}, 1), false);
  assert.equal(jsonDepthExceeds({ a: [1, { b: 2 }] }, 3), false);
  assert.equal(jsonDepthExceeds({ a: [1, { b: 2 }] }, 2), true);
  assert.equal(jsonDepthExceeds({ a: 1, deep: nest(5) }, 5), true, 'any one branch over the limit counts');
});

test('the depth of any generated value is found exactly', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 60 }), (depth, max) => {
      assert.equal(jsonDepthExceeds(nest(depth), max), depth > max);
    }),
    { seed: 7, numRuns: 300 },
  );
});

test('a value nested far deeper than the stack allows is checked without overflowing', () => {
  const text = '['.repeat(200_000) + ']'.repeat(200_000);
  assert.equal(jsonDepthExceeds(JSON.parse(text), 32), true);
});
