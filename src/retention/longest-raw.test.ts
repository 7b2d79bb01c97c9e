import { test } from 'node:test';
import assert from 'node:assert/strict';
import { longestRaw } from './retention-service.ts';
import { effectivePolicy, type RetentionDefaults } from './retention-policy.ts';

const DAY = 86_400_000;
const defaults: RetentionDefaults = { raw: '30d', events: '90d', commands: '30d', audit: '365d', rollup1m: '7d', rollup1h: '365d', rollup1d: 'forever' };

test('the longest raw retention: over every product and property, null when one keeps forever, the default without products', () => {
  assert.equal(longestRaw([], defaults), 30 * DAY);
  assert.equal(longestRaw([], { ...defaults, raw: 'forever' }), null);
  assert.equal(longestRaw([effectivePolicy({}, defaults)], defaults), 30 * DAY);
  assert.equal(longestRaw([effectivePolicy({ raw: '7d' }, defaults), effectivePolicy({ raw: '2d' }, defaults)], defaults), 7 * DAY);
  // A property kept longer than its product's points, or than the default, sets the longest.
  assert.equal(longestRaw([effectivePolicy({ raw: '7d', properties: { t: { raw: '60d' } } }, defaults), effectivePolicy({}, defaults)], defaults), 60 * DAY);
  assert.equal(longestRaw([effectivePolicy({ raw: '12h' }, defaults)], defaults), 12 * 3_600_000);
  assert.equal(longestRaw([effectivePolicy({ properties: { t: { raw: null } } }, defaults)], defaults), null);
  assert.equal(longestRaw([effectivePolicy({ raw: null }, defaults), effectivePolicy({ raw: '1d' }, defaults)], defaults), null);
});
