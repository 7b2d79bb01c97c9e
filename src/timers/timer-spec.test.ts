import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { localDate, nextTime, nextTimes, parseDateTime, specKey, specProblem, zonedTime, type TimerSpec } from './timer-spec.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const iso = (ms: number) => new Date(ms).toISOString();
const utc = (s: string) => Date.parse(s);
/** Wall-clock text of an instant in a zone, e.g. "2026-03-29 03:00:00". */
const wall = (ms: number, tz: string) => new Date(ms).toLocaleString('sv', { timeZone: tz });
const cron = (pattern: string, timezone: string): TimerSpec => ({ kind: 'cron', cron: pattern, timezone });

const BERLIN = { latitude: 52.52, longitude: 13.405, timezone: 'Europe/Berlin' };
const NEW_YORK = { latitude: 40.7128, longitude: -74.006, timezone: 'America/New_York' };
const SYDNEY = { latitude: -33.8688, longitude: 151.2093, timezone: 'Australia/Sydney' };
const REYKJAVIK = { latitude: 64.1466, longitude: -21.9426, timezone: 'Atlantic/Reykjavik' };
const TROMSO = { latitude: 69.6492, longitude: 18.9553, timezone: 'Europe/Oslo' };
const sun = (event: 'sunrise' | 'sunset', place: typeof BERLIN, offsetMs = 0): TimerSpec => ({ kind: 'sun', event, offsetMs, ...place });

/**
 * An independent reference for sun times: the equations of NOAA's Solar Calculator spreadsheet
 * (Meeus, with the standard -0.833° altitude for refraction and the sun's radius), solved at the
 * event's own time. Agrees with the published NOAA/timeanddate times to the minute at mid latitudes.
 */
function noaa(date: { y: number; m: number; d: number }, lat: number, lng: number, event: 'sunrise' | 'sunset'): number | null {
  const rad = Math.PI / 180;
  const midnight = Date.UTC(date.y, date.m - 1, date.d);
  let min = 720 - 4 * lng;
  for (let i = 0; i < 4; i++) {
    const T = ((midnight + min * MIN) / DAY + 2440587.5 - 2451545) / 36525;
    const L0 = (280.46646 + T * (36000.76983 + T * 0.0003032)) % 360;
    const M = 357.52911 + T * (35999.05029 - 0.0001537 * T);
    const e = 0.016708634 - T * (0.000042037 + 0.0000001267 * T);
    const C =
      Math.sin(M * rad) * (1.914602 - T * (0.004817 + 0.000014 * T)) + Math.sin(2 * M * rad) * (0.019993 - 0.000101 * T) + Math.sin(3 * M * rad) * 0.000289;
    const omega = 125.04 - 1934.136 * T;
    const apparent = L0 + C - 0.00569 - 0.00478 * Math.sin(omega * rad);
    const obliq = 23 + (26 + (21.448 - T * (46.815 + T * (0.00059 - T * 0.001813))) / 60) / 60 + 0.00256 * Math.cos(omega * rad);
    const decl = Math.asin(Math.sin(obliq * rad) * Math.sin(apparent * rad));
    const y = Math.tan((obliq / 2) * rad) ** 2;
    const eqTime =
      (4 / rad) *
      (y * Math.sin(2 * L0 * rad) -
        2 * e * Math.sin(M * rad) +
        4 * e * y * Math.sin(M * rad) * Math.cos(2 * L0 * rad) -
        0.5 * y * y * Math.sin(4 * L0 * rad) -
        1.25 * e * e * Math.sin(2 * M * rad));
    const c = Math.cos(90.833 * rad) / (Math.cos(lat * rad) * Math.cos(decl)) - Math.tan(lat * rad) * Math.tan(decl);
    if (c < -1 || c > 1) return null;
    const ha = Math.acos(c) / rad;
    min = 720 - 4 * (lng + (event === 'sunrise' ? ha : -ha)) - eqTime;
  }
  return midnight + min * MIN;
}

function near(actual: number | undefined, expected: number, tolMs: number, what: string): void {
  assert.ok(actual !== undefined, `${what}: no time`);
  assert.ok(Math.abs(actual - expected) <= tolMs, `${what}: ${iso(actual)} is not within ${tolMs / 1000}s of ${iso(expected)}`);
}

describe('cron in a time zone, across DST changes', () => {
  // Berlin: spring forward 29 Mar 2026 and 28 Mar 2027 (02:00 CET → 03:00 CEST), fall back 25 Oct 2026 and 31 Oct 2027 (03:00 CEST → 02:00 CET).
  test('02:30 daily in Berlin on the spring-forward days of 2026 and 2027 fires once, at 03:00 CEST (the instant the clock jumps)', () => {
    assert.deepEqual(nextTimes(cron('30 2 * * *', 'Europe/Berlin'), utc('2026-03-28T12:00:00Z'), 3).map(iso), [
      '2026-03-29T01:00:00.000Z', // 03:00 CEST: 02:30 does not exist that day
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
      '2026-03-31T00:30:00.000Z',
    ]);
    assert.deepEqual(nextTimes(cron('30 2 * * *', 'Europe/Berlin'), utc('2027-03-27T12:00:00Z'), 3).map(iso), [
      '2027-03-28T01:00:00.000Z', // 03:00 CEST
      '2027-03-29T00:30:00.000Z',
      '2027-03-30T00:30:00.000Z',
    ]);
  });

  test('02:30 daily in Berlin on the fall-back days of 2026 and 2027 fires once, at the first 02:30 (CEST)', () => {
    assert.deepEqual(nextTimes(cron('30 2 * * *', 'Europe/Berlin'), utc('2026-10-24T12:00:00Z'), 3).map(iso), [
      '2026-10-25T00:30:00.000Z', // 02:30 CEST; the second 02:30 (CET, 01:30Z) is not a run
      '2026-10-26T01:30:00.000Z', // 02:30 CET
      '2026-10-27T01:30:00.000Z',
    ]);
    assert.deepEqual(nextTimes(cron('30 2 * * *', 'Europe/Berlin'), utc('2027-10-30T12:00:00Z'), 2).map(iso), [
      '2027-10-31T00:30:00.000Z',
      '2027-11-01T01:30:00.000Z',
    ]);
    // from inside the repeated hour (after the first 02:30, before the second) the next is the next day's
    assert.equal(iso(nextTime(cron('30 2 * * *', 'Europe/Berlin'), utc('2026-10-25T01:10:00Z'))!), '2026-10-26T01:30:00.000Z');
  });

  test('New York 2026 and 2027: 02:30 on the spring-forward day at 03:00 EDT, 01:30 on the fall-back day once (EDT)', () => {
    // spring forward 8 Mar 2026 and 14 Mar 2027; fall back 1 Nov 2026 and 7 Nov 2027
    assert.deepEqual(nextTimes(cron('30 2 * * *', 'America/New_York'), utc('2026-03-07T12:00:00Z'), 3).map(iso), [
      '2026-03-08T07:00:00.000Z',
      '2026-03-09T06:30:00.000Z',
      '2026-03-10T06:30:00.000Z',
    ]);
    assert.deepEqual(nextTimes(cron('30 2 * * *', 'America/New_York'), utc('2027-03-13T12:00:00Z'), 2).map(iso), [
      '2027-03-14T07:00:00.000Z',
      '2027-03-15T06:30:00.000Z',
    ]);
    assert.deepEqual(nextTimes(cron('30 1 * * *', 'America/New_York'), utc('2026-10-31T12:00:00Z'), 3).map(iso), [
      '2026-11-01T05:30:00.000Z',
      '2026-11-02T06:30:00.000Z',
      '2026-11-03T06:30:00.000Z',
    ]);
    assert.deepEqual(nextTimes(cron('30 1 * * *', 'America/New_York'), utc('2027-11-06T12:00:00Z'), 2).map(iso), [
      '2027-11-07T05:30:00.000Z',
      '2027-11-08T06:30:00.000Z',
    ]);
  });

  test('a daily local time keeps its wall-clock time across the change (the UTC time moves by an hour)', () => {
    const runs = nextTimes(cron('0 7 * * *', 'Europe/Berlin'), utc('2026-03-27T12:00:00Z'), 4);
    assert.deepEqual(
      runs.map((t) => wall(t, 'Europe/Berlin')),
      ['2026-03-28 07:00:00', '2026-03-29 07:00:00', '2026-03-30 07:00:00', '2026-03-31 07:00:00'],
    );
    assert.deepEqual(runs.map(iso), ['2026-03-28T06:00:00.000Z', '2026-03-29T05:00:00.000Z', '2026-03-30T05:00:00.000Z', '2026-03-31T05:00:00.000Z']);
    // the day of the change is 23 hours long
    assert.equal(runs[2] - runs[1], 24 * HOUR);
    assert.equal(runs[1] - runs[0], 23 * HOUR);
  });

  test('a list of hours counts as fixed times: a repeated 02:30 fires once', () => {
    const runs = nextTimes(cron('30 2,14 * * *', 'Europe/Berlin'), utc('2026-10-24T12:00:00Z'), 4);
    assert.deepEqual(
      runs.map((t) => wall(t, 'Europe/Berlin')),
      ['2026-10-24 14:30:00', '2026-10-25 02:30:00', '2026-10-25 14:30:00', '2026-10-26 02:30:00'],
    );
  });

  test('an interval keeps its pace in real time: skips the missing hour, runs through the repeated one', () => {
    const back = nextTimes(cron('*/30 * * * *', 'Europe/Berlin'), utc('2026-10-25T00:10:00Z'), 5);
    assert.deepEqual(back.map(iso), [
      '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:00:00.000Z',
      '2026-10-25T01:30:00.000Z',
      '2026-10-25T02:00:00.000Z',
      '2026-10-25T02:30:00.000Z',
    ]);
    const forward = nextTimes(cron('*/30 * * * *', 'Europe/Berlin'), utc('2026-03-29T00:10:00Z'), 3);
    assert.deepEqual(
      forward.map((t) => wall(t, 'Europe/Berlin')),
      ['2026-03-29 01:30:00', '2026-03-29 03:00:00', '2026-03-29 03:30:00'],
    );
  });

  test('weekdays, seconds, and strictly after `from`', () => {
    // Friday 2026-11-27 07:00 Berlin is a run; from exactly then the next is Monday's
    const friday = utc('2026-11-27T06:00:00Z');
    assert.equal(wall(nextTime(cron('0 7 * * 1-5', 'Europe/Berlin'), friday - 1)!, 'Europe/Berlin'), '2026-11-27 07:00:00');
    assert.equal(wall(nextTime(cron('0 7 * * 1-5', 'Europe/Berlin'), friday)!, 'Europe/Berlin'), '2026-11-30 07:00:00');
    assert.deepEqual(nextTimes(cron('*/20 * * * * *', 'UTC'), utc('2026-01-01T00:00:00.500Z'), 3).map(iso), [
      '2026-01-01T00:00:20.000Z',
      '2026-01-01T00:00:40.000Z',
      '2026-01-01T00:01:00.000Z',
    ]);
  });

  test('a pattern that never matches has no next time', () => {
    assert.deepEqual(nextTimes(cron('0 0 31 2 *', 'UTC'), utc('2026-01-01T00:00:00Z'), 2), []);
    assert.equal(nextTime(cron('0 0 31 2 *', 'UTC'), 0), null);
  });
});

describe('one-off', () => {
  test('an instant in the future is the only time; at or before `from` there is none', () => {
    const at = utc('2026-05-01T10:00:00Z');
    assert.deepEqual(nextTimes({ kind: 'at', at }, at - 1, 3), [at]);
    assert.deepEqual(nextTimes({ kind: 'at', at }, at, 3), []);
    assert.deepEqual(nextTimes({ kind: 'at', at }, at + DAY, 1), []);
  });
});

describe('sunrise and sunset', () => {
  test('Berlin and New York at the 2026 solstices: within 2 minutes of the published times', () => {
    // timeanddate.com / NOAA, to the minute (local time)
    const published: Array<[typeof BERLIN, 'sunrise' | 'sunset', string, string]> = [
      [BERLIN, 'sunrise', '2026-06-21', '2026-06-21 04:43'],
      [BERLIN, 'sunset', '2026-06-21', '2026-06-21 21:33'],
      [BERLIN, 'sunrise', '2026-12-21', '2026-12-21 08:15'],
      [BERLIN, 'sunset', '2026-12-21', '2026-12-21 15:54'],
      [NEW_YORK, 'sunrise', '2026-06-21', '2026-06-21 05:25'],
      [NEW_YORK, 'sunset', '2026-06-21', '2026-06-21 20:31'],
      [NEW_YORK, 'sunrise', '2026-12-21', '2026-12-21 07:17'],
      [NEW_YORK, 'sunset', '2026-12-21', '2026-12-21 16:32'],
    ];
    for (const [place, event, day, local] of published) {
      const [y, m, d] = day.split('-').map(Number);
      const from = zonedTime({ y, m, d }, 0, place.timezone);
      const got = nextTime(sun(event, place), from)!;
      const [hh, mm] = local.slice(11).split(':').map(Number);
      const expected = zonedTime({ y, m, d }, 0, place.timezone) + hh * HOUR + mm * MIN; // no DST change on these dates
      near(got, expected, 2 * MIN, `${place.timezone} ${event} ${day}`);
    }
  });

  test('every day of 2026 and 2027, in four places, within a minute of the NOAA equations', () => {
    for (const place of [BERLIN, NEW_YORK, SYDNEY, REYKJAVIK]) {
      for (const event of ['sunrise', 'sunset'] as const) {
        const spec = sun(event, place);
        let from = zonedTime({ y: 2026, m: 1, d: 1 }, 0, place.timezone);
        // one call for the whole run: consecutive events, each checked against the reference for its local date
        for (const t of nextTimes(spec, from, 730)) {
          // Reykjavik's June sunsets come after local midnight: they belong to the day before
          const date = localDate(t - 6 * HOUR * (event === 'sunset' ? 1 : 0), place.timezone);
          near(t, noaa(date, place.latitude, place.longitude, event)!, MIN, `${place.timezone} ${event} ${wall(t, place.timezone)}`);
          assert.ok(t > from, 'ascending');
          from = t;
        }
      }
    }
  });

  test('one per day across DST changes (no day lost or doubled), 23 to 25 hours apart', () => {
    for (const [place, start] of [
      [BERLIN, '2026-03-25'],
      [BERLIN, '2026-10-22'],
      [NEW_YORK, '2027-03-11'],
      [NEW_YORK, '2027-11-04'],
    ] as const) {
      const [y, m, d] = start.split('-').map(Number);
      const times = nextTimes(sun('sunset', place), zonedTime({ y, m, d }, 0, place.timezone), 8);
      const days = times.map((t) => wall(t, place.timezone).slice(0, 10));
      assert.equal(new Set(days).size, 8, days.join());
      for (let i = 1; i < times.length; i++) {
        const gap = times[i] - times[i - 1];
        assert.ok(gap > 23 * HOUR - 5 * MIN && gap < 25 * HOUR + 5 * MIN, `gap ${gap / HOUR} h`);
      }
    }
    // on the spring-forward day itself: 19:35 CEST (the day before: 18:33 CET)
    assert.equal(wall(nextTime(sun('sunset', BERLIN), utc('2026-03-29T00:00:00Z'))!, 'Europe/Berlin').slice(0, 16), '2026-03-29 19:35');
    assert.equal(wall(nextTime(sun('sunset', BERLIN), utc('2026-03-28T00:00:00Z'))!, 'Europe/Berlin').slice(0, 16), '2026-03-28 18:33');
  });

  test('an offset shifts the event; an offset across midnight still gives one per day', () => {
    const from = utc('2026-06-20T22:00:00Z');
    const sunset = nextTime(sun('sunset', BERLIN), from)!;
    assert.equal(nextTime(sun('sunset', BERLIN, -30 * MIN), from), sunset - 30 * MIN);
    assert.equal(nextTime(sun('sunset', BERLIN, 90 * MIN), from), sunset + 90 * MIN);
    // sunrise at 04:43 minus 6 h is 22:43 the evening before
    const early = nextTimes(sun('sunrise', BERLIN, -6 * HOUR), from, 4);
    assert.deepEqual(
      early.map((t) => wall(t, 'Europe/Berlin').slice(0, 13)),
      ['2026-06-21 22', '2026-06-22 22', '2026-06-23 22', '2026-06-24 22'],
    );
    // from just before an offset time: it is the next
    assert.equal(nextTime(sun('sunrise', BERLIN, -6 * HOUR), early[0] - 1), early[0]);
  });

  test("strictly after `from`: from the very instant of a sunset, the next is the next day's", () => {
    const first = nextTime(sun('sunset', NEW_YORK), utc('2026-07-01T12:00:00Z'))!;
    const second = nextTime(sun('sunset', NEW_YORK), first)!;
    assert.ok(second - first > 23 * HOUR && second - first < 25 * HOUR);
    assert.equal(nextTime(sun('sunset', NEW_YORK), first - 1), first);
  });

  test('midnight sun and polar night: days without the event are skipped to the next day that has one', () => {
    // Tromsø: no sunset from about 18 May to 26 July, no sunrise from about 27 November to 15 January
    const sunsets = nextTimes(sun('sunset', TROMSO), utc('2026-06-01T00:00:00Z'), 3);
    const first = wall(sunsets[0], TROMSO.timezone);
    assert.ok(first >= '2026-07-24' && first <= '2026-07-29', first);
    const sunrises = nextTimes(sun('sunrise', TROMSO), utc('2026-12-01T00:00:00Z'), 3);
    const dawn = wall(sunrises[0], TROMSO.timezone);
    assert.ok(dawn >= '2027-01-13' && dawn <= '2027-01-17', dawn);
    // NOAA agrees there is none in between (checked at noon-anchored dates)
    for (let d = 1; d <= 31; d++) assert.equal(noaa({ y: 2026, m: 12, d }, TROMSO.latitude, TROMSO.longitude, 'sunrise'), null, `Dec ${d}`);
    // and the days after follow one a day
    for (const times of [sunsets, sunrises]) for (let i = 1; i < times.length; i++) assert.ok(Math.abs(times[i] - times[i - 1] - DAY) < HOUR);
  });

  test('a sunset after local midnight (Reykjavik in June) is one per day, none lost', () => {
    const times = nextTimes(sun('sunset', REYKJAVIK), utc('2026-06-18T12:00:00Z'), 6);
    assert.deepEqual(
      times.map((t) => wall(t, REYKJAVIK.timezone).slice(0, 13)),
      ['2026-06-19 00', '2026-06-20 00', '2026-06-21 00', '2026-06-22 00', '2026-06-23 00', '2026-06-24 00'],
    );
  });
});

describe('spec checks', () => {
  test('problems are named; good specs pass', () => {
    const bad: Array<[unknown, RegExp]> = [
      [null, /object/],
      [{ kind: 'weekly' }, /"kind"/],
      [{ kind: 'at', at: -1 }, /"at"/],
      [{ kind: 'at', at: 1.5 }, /"at"/],
      [{ kind: 'cron', cron: '* * *', timezone: 'UTC' }, /invalid cron pattern "\* \* \*"/],
      [{ kind: 'cron', cron: '61 * * * *', timezone: 'UTC' }, /minute/],
      [{ kind: 'cron', cron: '0 0 0 * * * 2030', timezone: 'UTC' }, /invalid cron pattern/],
      [{ kind: 'cron', cron: '0 7 * * *', timezone: 'Mars/Olympus_Mons' }, /unknown time zone "Mars\/Olympus_Mons"/],
      [{ kind: 'cron', cron: '0 7 * * *' }, /"timezone"/],
      [{ kind: 'sun', event: 'noon', offsetMs: 0, ...BERLIN }, /"event"/],
      [{ kind: 'sun', event: 'sunset', offsetMs: 0, ...BERLIN, latitude: 91 }, /"latitude"/],
      [{ kind: 'sun', event: 'sunset', offsetMs: 0, ...BERLIN, longitude: -181 }, /"longitude"/],
      [{ kind: 'sun', event: 'sunset', offsetMs: 13 * HOUR, ...BERLIN }, /"offsetMs"/],
      [{ kind: 'sun', event: 'sunset', offsetMs: Number.NaN, ...BERLIN }, /"offsetMs"/],
    ];
    for (const [spec, re] of bad) assert.match(specProblem(spec) ?? 'no problem', re, JSON.stringify(spec));
    assert.match(specProblem(cron('0 0 31 2 *', 'UTC'), 0) ?? 'no problem', /matches no date/);
    assert.equal(specProblem(cron('0 0 31 2 *', 'UTC')), undefined, 'without `from`, only the syntax');
    for (const good of [cron('0 7 * * 1-5', 'Europe/Berlin'), cron('*/5 * * * * *', 'UTC'), { kind: 'at', at: 0 }, sun('sunrise', TROMSO, -HOUR)]) {
      assert.equal(specProblem(good, 0), undefined, JSON.stringify(good));
    }
    assert.throws(() => nextTimes({ kind: 'cron', cron: 'nope', timezone: 'UTC' }, 0), TypeError);
  });

  test('specKey ignores key order and extra fields', () => {
    const a = specKey({ timezone: 'UTC', cron: '0 7 * * *', kind: 'cron' } as TimerSpec);
    assert.equal(a, specKey(cron('0 7 * * *', 'UTC')));
    assert.notEqual(a, specKey(cron('0 8 * * *', 'UTC')));
    assert.equal(specKey({ ...sun('sunset', BERLIN), extra: 1 } as unknown as TimerSpec), specKey(sun('sunset', BERLIN)));
  });
});

describe('parseDateTime', () => {
  test('without an offset it is the wall-clock time of the zone, DST included', () => {
    assert.equal(iso(parseDateTime('2026-12-24T18:00', 'Europe/Berlin')!), '2026-12-24T17:00:00.000Z');
    assert.equal(iso(parseDateTime('2026-07-01T08:30:15', 'Europe/Berlin')!), '2026-07-01T06:30:15.000Z');
    assert.equal(iso(parseDateTime('2026-07-01T08:30:15.5', 'Asia/Tokyo')!), '2026-06-30T23:30:15.500Z');
    // 02:30 does not exist on 2026-03-29 in Berlin: the instant after the gap
    assert.equal(wall(parseDateTime('2026-03-29T02:30', 'Europe/Berlin')!, 'Europe/Berlin'), '2026-03-29 03:30:00');
  });
  test('with Z or an offset it is that instant, whatever the zone', () => {
    assert.equal(iso(parseDateTime('2026-12-24T18:00:00Z', 'Asia/Tokyo')!), '2026-12-24T18:00:00.000Z');
    assert.equal(iso(parseDateTime('2026-12-24T18:00+05:30', 'UTC')!), '2026-12-24T12:30:00.000Z');
    assert.equal(iso(parseDateTime('2026-12-24T18:00-03:00', 'UTC')!), '2026-12-24T21:00:00.000Z');
  });
  test('loose or impossible text is refused', () => {
    for (const bad of ['March 7', '2026-12-24', '2026-12-24 18:00', '2026-02-30T10:00', '2026-12-24T25:00', '2026-13-01T10:00', '1735000000000', '']) {
      assert.equal(parseDateTime(bad, 'UTC'), undefined, bad);
    }
  });
});
