import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retryDelay } from './delivery-service.ts';

test('retry delays double from the initial step up to the cap, with 50–100 % jitter', () => {
  const opts = { initialMs: 500, maxMs: 30_000 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 8].map((n) => retryDelay(n, opts, () => 1)),
    [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000],
  );
  assert.equal(
    retryDelay(1, opts, () => 0),
    250,
  );
  assert.equal(
    retryDelay(1000, opts, () => 0),
    15_000,
    'no overflow for a job retried for ever',
  );
  for (let i = 0; i < 100; i++) {
    const d = retryDelay(3, opts);
    assert.ok(d >= 1000 && d <= 2000, String(d));
  }
});
