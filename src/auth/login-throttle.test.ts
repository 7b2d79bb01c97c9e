import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoginThrottle, sourceOf } from './login-throttle.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

/** One attempt that fails (or succeeds): admitted or not, and the seconds to wait when not. */
function attempt(t: LoginThrottle, c: { now: () => number }, account: string, source: string, ok = false): number | undefined {
  const wait = t.begin(account, source);
  if (wait !== undefined) return wait;
  t.end(account, source);
  t.learn({ account, source, ok, at: c.now() });
  return undefined;
}

test('login throttle: a pair waits 1 s, 2 s, 4 s … after its free failures, capped; other sources are untouched', () => {
  const c = clock();
  const t = new LoginThrottle({ freeFailures: 3, baseDelayMs: 1000, maxDelayMs: 8000, now: c.now });
  for (let i = 0; i < 3; i++) assert.equal(attempt(t, c, 'op@x', 'A'), undefined, `free failure ${i + 1}`);
  assert.equal(attempt(t, c, 'op@x', 'A'), undefined, 'the fourth is checked');
  const waits: number[] = [];
  for (let i = 0; i < 5; i++) {
    const w = t.begin('op@x', 'A');
    assert.ok(w !== undefined, 'a failure starts a delay');
    waits.push(w);
    c.advance(w * 1000);
    assert.equal(attempt(t, c, 'op@x', 'A'), undefined, 'admitted once the delay is over');
  }
  assert.deepEqual(waits, [1, 2, 4, 8, 8], 'doubling, capped');
  // The owner from another source, at once: no delay at all.
  assert.equal(t.begin('op@x', 'B'), undefined);
});

test('login throttle: the right password resets the pair, not the source', () => {
  const c = clock();
  const t = new LoginThrottle({ freeFailures: 1, sourceFailures: 3, now: c.now });
  attempt(t, c, 'me@x', 'S');
  attempt(t, c, 'me@x', 'S');
  assert.ok(t.begin('me@x', 'S') !== undefined);
  c.advance(1000);
  assert.equal(t.hasFailures('me@x', 'S'), true);
  assert.equal(attempt(t, c, 'me@x', 'S', true), undefined);
  assert.equal(t.hasFailures('me@x', 'S'), false, 'nothing for other nodes to forget after this');
  assert.equal(attempt(t, c, 'me@x', 'S'), undefined, 'a fresh start for the pair');
  // ...but the source has used its 3 failures (2 + 1): it may not try anyone now.
  assert.ok(t.begin('other@x', 'S') !== undefined, "signing in to one's own account does not refill the source");
});

test('login throttle: a source failing on many accounts runs out, and it comes back over the window', () => {
  const c = clock();
  const t = new LoginThrottle({ sourceFailures: 30, windowMs: 15 * 60_000, now: c.now });
  for (let i = 0; i < 30; i++) assert.equal(attempt(t, c, `u${i}@x`, 'S'), undefined, `account ${i}`);
  const w = t.begin('u99@x', 'S');
  assert.ok(w !== undefined && w > 0 && w <= 30, `the 31st account waits for one failure's refill (${w} s)`);
  assert.equal(t.begin('u99@x', 'T'), undefined, 'another source may');
  c.advance(w! * 1000);
  assert.equal(t.begin('u99@x', 'S'), undefined);
});

test('login throttle: a parallel burst cannot slip past the limits while attempts are in flight', () => {
  const c = clock();
  const t = new LoginThrottle({ freeFailures: 3, now: c.now });
  let admitted = 0;
  for (let i = 0; i < 50; i++) if (t.begin('k@x', 'S') === undefined) admitted++;
  assert.equal(admitted, 3);
});

test('login throttle: spraying is reported once per window, by source and by account', () => {
  const c = clock();
  const t = new LoginThrottle({ sprayAccounts: 5, spraySources: 4, windowMs: 60_000, now: c.now });
  const bySource = [];
  for (let i = 0; i < 12; i++) {
    attempt(t, c, `v${i}@x`, 'sprayer');
    bySource.push(...t.sprayAlerts(`v${i}@x`, 'sprayer'));
  }
  assert.deepEqual(bySource, [{ kind: 'source', subject: 'sprayer', distinct: 5, windowSeconds: 60 }]);
  const byAccount = [];
  for (let i = 0; i < 6; i++) {
    attempt(t, c, 'op@x', `10.0.0.${i}`);
    byAccount.push(...t.sprayAlerts('op@x', `10.0.0.${i}`));
  }
  assert.deepEqual(byAccount, [{ kind: 'account', subject: 'op@x', distinct: 4, windowSeconds: 60 }]);
  // The same account failing over and over from one source is no spraying.
  const t2 = new LoginThrottle({ sprayAccounts: 5, spraySources: 4, freeFailures: 100, now: c.now });
  for (let i = 0; i < 20; i++) attempt(t2, c, 'a@x', 'S');
  assert.deepEqual(t2.sprayAlerts('a@x', 'S'), []);
  c.advance(61_000);
  attempt(t, c, 'w0@x', 'sprayer');
  assert.deepEqual(t.sprayAlerts('w0@x', 'sprayer'), [], 'failures older than the window are forgotten');
});

test('login throttle: memory stays bounded under a flood of accounts and sources', () => {
  const c = clock();
  const t = new LoginThrottle({ maxKeys: 100, now: c.now });
  for (let i = 0; i < 5000; i++) attempt(t, c, `u${i}@x`, `10.${(i >> 8) & 255}.${i & 255}.1`);
  assert.ok(t.size <= 400, `${t.size} entries`);
});

test('sources: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
  assert.equal(sourceOf('127.0.0.7'), '127.0.0.7');
  assert.equal(sourceOf('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(sourceOf('2001:db8:aa:bb:1:2:3:4'), '2001:db8:aa:bb::/64');
  assert.equal(sourceOf('2001:db8:aa:bb::9'), '2001:db8:aa:bb::/64');
  assert.equal(sourceOf('2001:0db8::1'), '2001:db8:0:0::/64');
  assert.equal(sourceOf(undefined), 'unknown');
});
