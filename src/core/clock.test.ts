import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from './clock.ts';

test('a manual clock runs due timers in order, including those set while advancing', async () => {
  const clock = new ManualClock(1000);
  const seen: string[] = [];
  clock.setTimer(() => seen.push(`b@${clock.now()}`), 200);
  clock.setTimer(() => {
    seen.push(`a@${clock.now()}`);
    clock.setTimer(() => seen.push(`c@${clock.now()}`), 50);
  }, 100);
  const cancel = clock.setTimer(() => seen.push('never'), 150);
  cancel();
  await clock.advance(120);
  assert.deepEqual(seen, ['a@1100']);
  await clock.advance(1000);
  assert.deepEqual(seen, ['a@1100', 'c@1150', 'b@1200']);
  assert.equal(clock.now(), 2120);
  assert.equal(clock.pending, 0);
});

test('awaiting code between timers sees time move as it would in real time', async () => {
  const clock = new ManualClock(0);
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimer(r, ms));
  const stamps: number[] = [];
  const run = (async () => {
    for (let i = 0; i < 3; i++) {
      await sleep(10);
      stamps.push(clock.now());
    }
  })();
  await clock.advance(100);
  await run;
  assert.deepEqual(stamps, [10, 20, 30]);
});
