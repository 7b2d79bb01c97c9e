import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RunQueue } from './run-queue.ts';
import { LoopGuard, LOOP_GRACE_MS, LOOP_LIMIT, LOOP_WINDOW_MS, causeOf } from './loop-guard.ts';
import { ManualClock } from '../core/clock.ts';

const queue = (mode: 'single' | 'restart' | 'queued' | 'parallel', max = 2, cooldownMs = 0) => {
  const cancelled: Array<[string, string]> = [];
  const q = new RunQueue<string, string>({ mode, max, cooldownMs, cancel: (r, why) => cancelled.push([r, why]) });
  return { q, cancelled };
};

test('run modes: single drops, restart cancels the active runs, queued waits up to max, parallel runs up to max', () => {
  const single = queue('single');
  assert.deepEqual(single.q.admit('r1'), { op: 'start' });
  single.q.active.add('r1');
  assert.deepEqual(single.q.admit('r2'), { op: 'drop', reason: 'a run is already active (mode single)' });

  const restart = queue('restart');
  restart.q.active.add('r1');
  assert.deepEqual(restart.q.admit('r2'), { op: 'start' });
  assert.deepEqual(restart.cancelled, [['r1', 'restarted by run r2 (mode restart)']]);

  const queued = queue('queued', 1);
  queued.q.active.add('r1');
  assert.deepEqual(queued.q.admit('r2'), { op: 'queue', reason: 'queued behind 1 active run(s)' });
  queued.q.waiting.push('r2');
  assert.equal(queued.q.admit('r3').op, 'drop', 'the queue holds max');
  assert.equal(queued.q.ended('r1', 1000), 'r2', 'the next one starts when a run ends');
  assert.equal(queued.q.lastEnd, 1000);

  const parallel = queue('parallel', 2);
  parallel.q.active.add('r1');
  assert.equal(parallel.q.admit('r2').op, 'start');
  parallel.q.active.add('r2');
  assert.deepEqual(parallel.q.admit('r3'), { op: 'drop', reason: '2 runs are active (mode parallel, max 2)' });
});

test('the cool-down drops firings right after a run ended, only while none is active', () => {
  const { q } = queue('parallel', 5, 10_000);
  assert.equal(q.coolingDown(500), undefined, 'no run yet');
  q.active.add('r1');
  q.ended('r1', 1000);
  assert.match(q.coolingDown(4000) ?? '', /cool-down: the last run ended 3000 ms ago/);
  assert.equal(q.coolingDown(11_000), undefined);
  const { q: q2, cancelled } = queue('queued', 5);
  q2.active.add('a');
  q2.waiting.push('b', 'c');
  assert.deepEqual(q2.cancelAll('bye'), ['b', 'c']);
  assert.deepEqual(cancelled, [['a', 'bye']]);
});

test('the loop guard counts only firings caused by what automations act on, and stops past the limit within the window', async () => {
  const clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
  const guard = new LoopGuard(clock);
  const h = { chained: [] as number[] };
  const fired = (device: string) => guard.firing(h, { type: 'property', data: { device } }, clock.now());
  assert.equal(fired('d_1'), false);
  assert.equal(h.chained.length, 0, 'a device nobody acts on is the outside world');
  await guard.acting(['d_1'], async () => {
    for (let i = 0; i < LOOP_LIMIT; i++) assert.equal(fired('d_1'), false);
    assert.equal(fired('d_1'), true, 'one past the limit while acting on it');
  });
  assert.match(guard.stop(h), new RegExp(`loop guard: ${LOOP_LIMIT + 1} firings within ${LOOP_WINDOW_MS / 1000} s`));
  assert.equal(h.chained.length, 0);
  fired('d_1');
  assert.equal(h.chained.length, 1, 'within the grace after the action');
  await clock.advance(LOOP_GRACE_MS + 1);
  fired('d_1');
  assert.equal(h.chained.length, 1, 'after the grace it is not chained');
  assert.equal(causeOf({ type: 'scene', data: { scene: 's_1' } }), 'scene:s_1');
  assert.equal(causeOf({ type: 'webhook', data: { fromAutomation: 'au_1' } }), 'automation:au_1');
  assert.equal(causeOf({ type: 'schedule', data: { scheduledAt: 'x' } }), undefined);
});
