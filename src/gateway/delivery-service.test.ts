import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retryDelay, signBody } from './delivery-service.ts';

test('the signature is the hex HMAC-SHA256 of the exact body (RFC 4231 test case 2)', () => {
  assert.equal(signBody('Jefe', 'what do ya want for nothing?'), 'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  assert.notEqual(signBody('Jefe', '{"a":1}'), signBody('Jefe', '{"a": 1}'), 'whitespace is part of the signed bytes');
});

test('retry delays double from the initial step up to the cap, with 50–100 % jitter', () => {
  const opts = { initialMs: 500, maxMs: 30_000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => retryDelay(n, opts, () => 1)), [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(retryDelay(1, opts, () => 0), 250);
  assert.equal(retryDelay(1000, opts, () => 0), 15_000, 'no overflow for a job retried for ever');
  for (let i = 0; i < 100; i++) {
    const d = retryDelay(3, opts);
    assert.ok(d >= 1000 && d <= 2000, String(d));
  }
});
