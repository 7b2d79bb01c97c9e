import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addDays, fromWallClock, isTimeZone, localDate, offsetAt, zonedFields, zonedTime } from './zoned-time.ts';

test('fields of an instant in a zone, with the weekday, across DST', () => {
  assert.deepEqual(zonedFields(Date.parse('2026-03-29T00:30:00Z'), 'Europe/Berlin'), { y: 2026, m: 3, d: 29, h: 1, mi: 30, s: 0, weekday: 'sun' });
  assert.deepEqual(zonedFields(Date.parse('2026-03-29T01:30:00Z'), 'Europe/Berlin'), { y: 2026, m: 3, d: 29, h: 3, mi: 30, s: 0, weekday: 'sun' });
  assert.deepEqual(
    zonedFields(Date.parse('2026-11-23T23:00:00Z'), 'Europe/Berlin'),
    { y: 2026, m: 11, d: 24, h: 0, mi: 0, s: 0, weekday: 'tue' },
    'midnight is hour 0',
  );
  assert.deepEqual(localDate(Date.parse('2026-12-31T23:30:00Z'), 'Asia/Tokyo'), { y: 2027, m: 1, d: 1 });
  assert.equal(offsetAt(Date.parse('2026-07-01T00:00:00Z'), 'America/New_York'), -4 * 3_600_000);
});

test('from wall-clock time back to the instant; a skipped time gives the instant after the gap', () => {
  assert.equal(fromWallClock(Date.UTC(2026, 6, 1, 8, 30), 'Europe/Berlin'), Date.parse('2026-07-01T06:30:00Z'));
  assert.equal(fromWallClock(Date.UTC(2026, 2, 29, 2, 30), 'Europe/Berlin'), Date.parse('2026-03-29T01:30:00Z'));
  assert.equal(zonedTime({ y: 2026, m: 10, d: 25 }, 12, 'Europe/Berlin'), Date.parse('2026-10-25T11:00:00Z'), 'noon on the fall-back day is CET');
  assert.deepEqual(addDays({ y: 2026, m: 2, d: 28 }, 1), { y: 2026, m: 3, d: 1 });
});

test('unknown zones are told apart', () => {
  assert.equal(isTimeZone('Europe/Berlin'), true);
  assert.equal(isTimeZone('Mars/Olympus_Mons'), false);
});
