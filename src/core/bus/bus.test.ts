import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePattern, subjectMatches } from './bus.ts';

test('compiled patterns match exactly what subjectMatches does', () => {
  const patterns = ['a', 'a.b', 'a.*', '*.b', 'a.>', '>', '*', 'a.*.c', 'a.*.>', '*.*', 'device.*.presence', 'ab.>', 'a.b.>', 'uplink.3.>'];
  const subjects = [
    'a',
    'b',
    'a.b',
    'a.c',
    'a.b.c',
    'a.bb.c',
    'ab',
    'ab.c',
    'x.b',
    'device.d1.presence',
    'device.d1.presence.x',
    'a.b.c.d',
    'uplink.3.d.x',
    'uplink.31.d.x',
    'uplink.3',
  ];
  for (const p of patterns) {
    const match = compilePattern(p);
    for (const s of subjects) assert.equal(match(s), subjectMatches(p, s), `${p} vs ${s}`);
  }
  assert.equal(compilePattern('uplink.3.>')('uplink.31.d.x'), false);
  assert.equal(compilePattern('device.*.presence')('device.d1.presence'), true);
});
