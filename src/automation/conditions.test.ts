import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluate, evaluateAll, localTime, sunTimes, type World } from './conditions.ts';
import { parseDuration, parseTimeOfDay, type Condition } from './automation-types.ts';
import { nextTime } from '../timers/timer-spec.ts';

function world(iso: string, state: Record<string, Record<string, unknown>> = {}, online: Record<string, boolean> = {}): World {
  return {
    now: () => Date.parse(iso),
    timezone: 'Europe/Berlin',
    latitude: 52.52,
    longitude: 13.405,
    reported: async (id) => state[id] ?? {},
    online: async (id) => online[id] ?? false,
  };
}

test('durations: seconds, units, clock notation, signs', () => {
  assert.equal(parseDuration(90), 90_000);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('00:05:00'), 300_000);
  assert.equal(parseDuration('-30m'), undefined, 'negative only where signed');
  assert.equal(parseDuration('-30m', true), -1_800_000);
  assert.equal(parseDuration('soon'), undefined);
  assert.equal(parseDuration('400d'), undefined, 'at most a year');
  assert.equal(parseTimeOfDay('07:30'), 27_000);
  assert.equal(parseTimeOfDay('24:00'), undefined);
});

test("local time is the home zone's, across DST", () => {
  assert.deepEqual(localTime(Date.parse('2026-03-29T00:30:00Z'), 'Europe/Berlin').text, '01:30:00');
  assert.deepEqual(localTime(Date.parse('2026-03-29T01:30:00Z'), 'Europe/Berlin').text, '03:30:00', 'after the spring-forward');
  assert.equal(localTime(Date.parse('2026-11-23T23:30:00Z'), 'Europe/Berlin').weekday, 'tue', 'already Tuesday in Berlin');
});

test('time windows, also across midnight, and weekdays', async () => {
  const night = { type: 'time', after: '22:00', before: '06:00' } as const;
  assert.equal((await evaluate(night, 'c', world('2026-11-23T22:30:00Z'))).result, true, '23:30 local');
  assert.equal((await evaluate(night, 'c', world('2026-11-24T04:00:00Z'))).result, true, '05:00 local');
  const day = await evaluate(night, 'c', world('2026-11-24T11:00:00Z'));
  assert.equal(day.result, false);
  assert.equal(day.values!.localTime, '12:00:00');
  assert.match(day.reason!, /outside 22:00–06:00/);
  const weekdays: Condition = { type: 'time', after: '07:00', weekdays: ['mon', 'tue', 'wed', 'thu', 'fri'] };
  assert.equal((await evaluate(weekdays, 'c', world('2026-11-23T07:00:00Z'))).result, true, 'Monday 08:00');
  const sat = await evaluate(weekdays, 'c', world('2026-11-28T07:00:00Z'));
  assert.equal(sat.result, false);
  assert.match(sat.reason!, /sat is not one of/);
});

test('sun: after sunset or before sunrise is "dark", with offsets', async () => {
  const t = sunTimes(Date.parse('2026-11-23T12:00:00Z'), 'Europe/Berlin', 52.52, 13.405);
  assert.ok(t.sunset! > Date.parse('2026-11-23T14:30:00Z') && t.sunset! < Date.parse('2026-11-23T15:30:00Z'), new Date(t.sunset!).toISOString());
  const dark = { type: 'sun', after: 'sunset', before: 'sunrise' } as const;
  assert.equal((await evaluate(dark, 'c', world('2026-11-23T20:00:00Z'))).result, true);
  assert.equal((await evaluate(dark, 'c', world('2026-11-23T05:00:00Z'))).result, true, 'before sunrise');
  assert.equal((await evaluate(dark, 'c', world('2026-11-23T12:00:00Z'))).result, false);
  const early = { type: 'sun', after: 'sunset', afterOffset: '-1h' } as const;
  const r = await evaluate(early, 'c', world(new Date(t.sunset! - 30 * 60_000).toISOString()));
  assert.equal(r.result, true, 'half an hour before sunset is after sunset - 1 h');
  const noPlace = await evaluate(dark, 'c', { ...world('2026-11-23T20:00:00Z'), latitude: null });
  assert.equal(noPlace.result, false);
  assert.match(noPlace.reason!, /no location/);
});

test('sun: on DST-change days, before the clocks change, a sun condition agrees with the sun trigger', async () => {
  // 00:30 local on the spring-forward and fall-back days in Berlin: the offset still changes later that day.
  for (const iso of ['2026-03-28T23:30:00Z', '2026-10-24T22:30:00Z']) {
    const at = Date.parse(iso);
    const sun = sunTimes(at, 'Europe/Berlin', 52.52, 13.405);
    for (const event of ['sunrise', 'sunset'] as const) {
      const trigger = nextTime({ kind: 'sun', event, offsetMs: 0, latitude: 52.52, longitude: 13.405, timezone: 'Europe/Berlin' }, at);
      assert.equal(sun[event], trigger, `${event} on ${iso}`);
      const after: Condition = { type: 'sun', after: event };
      assert.equal((await evaluate(after, 'c', world(new Date(trigger! - 1000).toISOString()))).result, false, `a second before the ${event} trigger`);
      assert.equal((await evaluate(after, 'c', world(new Date(trigger!).toISOString()))).result, true, `when the ${event} trigger fires`);
    }
  }
});

test('property, presence and and/or/not, each with its values', async () => {
  const w = world('2026-11-23T12:00:00Z', { d1: { temperature: 21.5, mode: 'heat' } }, { d1: true });
  const all = await evaluateAll(
    [
      { type: 'property', device: 'd1', property: 'temperature', above: 20, below: 25 },
      { type: 'property', device: 'd1', property: 'mode', oneOf: ['cool', 'auto'] },
      { type: 'not', conditions: [{ type: 'presence', device: 'd1' }] },
      {
        type: 'or',
        conditions: [
          { type: 'presence', device: 'd1', online: false },
          { type: 'property', device: 'd1', property: 'mode', notEquals: 'off' },
        ],
      },
      { type: 'property', device: 'd1', property: 'humidity', equals: 40 },
    ],
    'conditions',
    w,
  );
  assert.equal(all.ok, false);
  assert.deepEqual(
    all.traces.map((t) => t.result),
    [true, false, false, true, false],
  );
  assert.deepEqual(all.traces[0].values, { device: 'd1', property: 'temperature', actual: 21.5, above: 20, below: 25 });
  assert.match(all.traces[1].reason!, /none of/);
  assert.equal(all.traces[2].children![0].path, 'conditions[2].conditions[0]');
  assert.match(all.traces[2].reason!, /1 of them holds/);
  assert.match(all.traces[4].reason!, /has not reported it/);
});
