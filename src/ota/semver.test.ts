import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareSemVer, inRange, isSemVer, parseSemVer } from './semver.ts';

test('semantic versions parse, and other strings do not', () => {
  assert.deepEqual(parseSemVer('1.2.3'), { major: 1, minor: 2, patch: 3, pre: [] });
  assert.deepEqual(parseSemVer('2.0.0-rc.1+build.5'), { major: 2, minor: 0, patch: 0, pre: ['rc', 1] });
  for (const bad of ['1.2', '1.2.3.4', 'v1.2.3', '01.2.3', '1.2.3-', '1.2.3-01', '', ' 1.2.3', '1.2.x', 'x'.repeat(70)])
    assert.equal(isSemVer(bad), false, bad);
});

test('versions compare by precedence: numbers as numbers, pre-releases before their release', () => {
  const sorted = [
    '1.0.0-alpha',
    '1.0.0-alpha.1',
    '1.0.0-alpha.beta',
    '1.0.0-beta',
    '1.0.0-beta.2',
    '1.0.0-beta.11',
    '1.0.0-rc.1',
    '1.0.0',
    '1.2.0',
    '1.10.0',
    '2.0.0',
  ];
  for (let i = 0; i < sorted.length - 1; i++) {
    assert.ok(compareSemVer(sorted[i], sorted[i + 1]) < 0, `${sorted[i]} < ${sorted[i + 1]}`);
    assert.ok(compareSemVer(sorted[i + 1], sorted[i]) > 0, `${sorted[i + 1]} > ${sorted[i]}`);
  }
  assert.equal(compareSemVer('1.2.3+a', '1.2.3+b'), 0, 'build metadata does not order');
  assert.throws(() => compareSemVer('1.2', '1.2.0'));
});

test('ranges: min inclusive, below exclusive; an unknown version is only in the unbounded range', () => {
  assert.ok(inRange('1.5.0', { min: '1.0.0', below: '2.0.0' }));
  assert.ok(inRange('1.0.0', { min: '1.0.0' }));
  assert.ok(!inRange('2.0.0', { below: '2.0.0' }));
  assert.ok(!inRange(null, { min: '1.0.0' }));
  assert.ok(inRange(null, {}));
  assert.ok(!inRange('garbage', { below: '9.0.0' }));
});
