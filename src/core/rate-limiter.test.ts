import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from './rate-limiter.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('token bucket: a burst, then the sustained rate, with the wait told', () => {
  const c = clock();
  const rl = new RateLimiter({ perMinute: 60, burst: 3, now: c.now });
  for (let i = 0; i < 3; i++) assert.deepEqual(rl.take('u'), { ok: true });
  assert.deepEqual(rl.take('u'), { ok: false, retryAfterSeconds: 1 });
  assert.deepEqual(rl.take('other'), { ok: true }, 'keys are independent');
  c.advance(1000);
  assert.deepEqual(rl.take('u'), { ok: true });
  assert.equal(rl.take('u').ok, false);
  c.advance(10_000);
  for (let i = 0; i < 3; i++) assert.equal(rl.take('u').ok, true, 'refills up to the burst only');
  assert.equal(rl.take('u').ok, false);
});

test('token bucket: slow rates report long waits', () => {
  const c = clock();
  const rl = new RateLimiter({ perMinute: 1, burst: 1, now: c.now });
  assert.equal(rl.take('k').ok, true);
  assert.deepEqual(rl.take('k'), { ok: false, retryAfterSeconds: 60 });
  c.advance(30_000);
  assert.deepEqual(rl.take('k'), { ok: false, retryAfterSeconds: 30 });
});

test('token bucket: memory stays bounded', () => {
  const c = clock();
  const rl = new RateLimiter({ perMinute: 600, burst: 10, maxKeys: 100, now: c.now });
  for (let i = 0; i < 1000; i++) rl.take(`k${i}`);
  assert.equal(rl.size, 100, 'least recently used buckets are dropped beyond maxKeys');
  c.advance(60_000);
  rl.take('fresh');
  assert.equal(rl.size, 1, 'refilled (idle) buckets are swept');
});
