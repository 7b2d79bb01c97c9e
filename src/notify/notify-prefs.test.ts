import { test } from 'node:test';
import assert from 'node:assert/strict';
import { channelEnabled, inQuietHours, kindEnabled, localMinutes, severityAtLeast, withDefaults } from './notify-prefs.ts';

test('defaults: inbox, push and mobile on; e-mail only for alarms', () => {
  const p = withDefaults(undefined);
  assert.equal(channelEnabled(p, 'device', 'info', 'inbox'), true);
  assert.equal(channelEnabled(p, 'device', 'warning', 'email'), false);
  assert.equal(channelEnabled(p, 'device', 'alarm', 'email'), true);
  assert.equal(kindEnabled(p, 'anything'), true);
});

test('a kind wins over a severity, which wins over the general switch', () => {
  const p = withDefaults({ channels: { push: false }, kinds: { security: { channels: { push: true, email: false } }, energy: { enabled: false } } });
  assert.equal(channelEnabled(p, 'security', 'info', 'push'), true);
  assert.equal(channelEnabled(p, 'security', 'alarm', 'email'), false, 'the kind turned e-mail off even for alarms');
  assert.equal(channelEnabled(p, 'device', 'info', 'push'), false);
  assert.equal(channelEnabled(p, 'device', 'alarm', 'email'), true, 'the default alarm rule stays when severities are left out');
  assert.equal(kindEnabled(p, 'energy'), false);
  assert.equal(channelEnabled(withDefaults({ severities: {} }), 'device', 'alarm', 'email'), false, 'severities given: no default alarm rule');
});

test('quiet hours are read in the zone and may cross midnight; start inside, end outside', () => {
  const q = { start: '22:00', end: '07:00' };
  // 2026-07-01: Berlin is UTC+2.
  assert.equal(localMinutes(Date.parse('2026-07-01T20:00:00Z'), 'Europe/Berlin'), 22 * 60);
  assert.equal(inQuietHours(q, Date.parse('2026-07-01T20:00:00Z'), 'Europe/Berlin'), true);
  assert.equal(inQuietHours(q, Date.parse('2026-07-01T19:59:00Z'), 'Europe/Berlin'), false);
  assert.equal(inQuietHours(q, Date.parse('2026-07-02T04:59:00Z'), 'Europe/Berlin'), true);
  assert.equal(inQuietHours(q, Date.parse('2026-07-02T05:00:00Z'), 'Europe/Berlin'), false);
  assert.equal(inQuietHours({ start: '13:00', end: '15:00' }, Date.parse('2026-07-01T04:30:00Z'), 'Asia/Tokyo'), true);
  assert.equal(inQuietHours({ start: '08:00', end: '08:00' }, Date.parse('2026-07-01T06:00:00Z'), 'Europe/Berlin'), false, 'equal ends: none');
  assert.equal(inQuietHours(null, 0, 'UTC'), false);
});

test('severity order', () => {
  assert.equal(severityAtLeast('alarm', 'warning'), true);
  assert.equal(severityAtLeast('info', 'warning'), false);
  assert.equal(severityAtLeast('warning', 'warning'), true);
});
