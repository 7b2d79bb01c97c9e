import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, type Platform } from './helpers/platform.ts';

let p: Platform | undefined;
after(async () => {
  await p?.stop();
});

test('each user and API key has a request rate limit: the burst passes, then 429 with Retry-After; others are unaffected', async () => {
  p = await startPlatform({ env: { HEARTH_RATE_LIMIT_PER_MINUTE: '60', HEARTH_RATE_LIMIT_BURST: '10' } });
  const statuses: number[] = [];
  for (let i = 0; i < 14; i++) statuses.push((await p.api('GET', '/api/v1/auth/me')).status);
  assert.deepEqual(statuses.slice(0, 9), Array(9).fill(200), `the burst passes: ${statuses}`);
  const limited = await p.api('GET', '/api/v1/devices');
  assert.equal(limited.status, 429);
  assert.equal(limited.body.code, 'E_RATE_LIMITED');
  assert.equal(limited.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  const wait = Number(limited.headers.get('retry-after'));
  assert.ok(wait >= 1 && wait <= 60, `Retry-After ${wait}`);
  // another user has a bucket of their own
  await p.api('POST', '/api/v1/auth/signup', { email: 'other@example.test', password: 'other-password' }, null);
  const other = await p.api('POST', '/api/v1/auth/login', { email: 'other@example.test', password: 'other-password' }, null);
  assert.equal((await p.api('GET', '/api/v1/auth/me', undefined, other.body.token)).status, 200);
});
