import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from './rate-limiter.ts';
import { LoginThrottle } from '../auth/login-throttle.ts';

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

test('login throttle: 5 failures lock the key, lockouts double, success forgets', () => {
  const c = clock();
  const window = 15 * 60_000;
  const t = new LoginThrottle({ maxFailures: 5, windowMs: window, now: c.now });
  for (let i = 0; i < 4; i++) assert.equal(t.fail('a@x'), undefined);
  assert.equal(t.check('a@x'), undefined);
  assert.equal(t.fail('a@x'), 900);
  assert.equal(t.check('a@x'), 900);
  assert.equal(t.check('b@x'), undefined);
  c.advance(window);
  assert.equal(t.check('a@x'), undefined);
  for (let i = 0; i < 4; i++) t.fail('a@x');
  assert.equal(t.fail('a@x'), 1800, 'the second lockout in a row lasts twice as long');
  t.reset('a@x');
  assert.equal(t.check('a@x'), undefined);
});

test('login throttle: failures outside the window do not add up', () => {
  const c = clock();
  const t = new LoginThrottle({ maxFailures: 3, windowMs: 60_000, now: c.now });
  t.fail('k');
  t.fail('k');
  c.advance(61_000);
  assert.equal(t.fail('k'), undefined);
  assert.equal(t.check('k'), undefined);
});

test('login throttle: a parallel burst cannot slip past the limit while attempts are in flight', () => {
  const c = clock();
  const t = new LoginThrottle({ maxFailures: 5, windowMs: 60_000, now: c.now });
  const admitted: number[] = [];
  for (let i = 0; i < 50; i++) if (t.begin('k') === undefined) admitted.push(i);
  assert.equal(admitted.length, 5);
  for (let i = 0; i < 4; i++) t.end('k', true);
  t.end('k', false); // the fifth was right: it does not count
  assert.equal(t.check('k'), undefined);
  assert.equal(t.begin('k'), undefined);
  t.end('k', true);
  assert.equal(t.check('k'), 60, 'the fifth failure locks');
});
