import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, type Platform } from './helpers/platform.ts';
import { signupUser } from './helpers/people.ts';

const platforms: Platform[] = [];
after(async () => {
  for (const p of platforms) await p.stop();
});

async function platform(env: Record<string, string>): Promise<Platform> {
  const p = await startPlatform({ env });
  platforms.push(p);
  return p;
}

test('each app user and API key has a request rate limit: the burst passes, then 429 with Retry-After; others are unaffected', async () => {
  const p = await platform({ HEARTH_RATE_LIMIT_PER_MINUTE: '60', HEARTH_RATE_LIMIT_BURST: '10' });
  const user = await signupUser(p, 'limited@example.test');
  const statuses: number[] = [];
  for (let i = 0; i < 14; i++) statuses.push((await user.api('GET', '/auth/me')).status);
  assert.deepEqual(statuses.slice(0, 9), Array(9).fill(200), `the burst passes: ${statuses}`);
  const limited = await user.api('GET', '/devices');
  assert.equal(limited.status, 429);
  assert.equal(limited.body.code, 'E_RATE_LIMITED');
  assert.equal(limited.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  const wait = Number(limited.headers.get('retry-after'));
  assert.ok(wait >= 1 && wait <= 60, `Retry-After ${wait}`);
  // another user has a bucket of their own
  const other = await signupUser(p, 'other@example.test');
  assert.equal((await other.api('GET', '/auth/me')).status, 200);
});

test('opening live streams counts against the same limit (SSE), and a filter naming too many things is refused', async () => {
  const p = await platform({ HEARTH_RATE_LIMIT_PER_MINUTE: '60', HEARTH_RATE_LIMIT_BURST: '5' });
  const user = await signupUser(p, 'streams@example.test');
  const open = async () => {
    const ac = new AbortController();
    const res = await fetch(`${p.httpUrl}/api/v1/stream`, {
      headers: { authorization: `Bearer ${user.token}`, accept: 'text/event-stream' },
      signal: ac.signal,
    });
    const status = res.status;
    ac.abort();
    return status;
  };
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push(await open());
  assert.ok(statuses.includes(429), `a caller opening streams in a loop is held up: ${statuses}`);
  // 3 × 70 ids, each list within its own length limit: 210 in all
  const many = [0, 1, 2].map((k) => `deviceId=${Array.from({ length: 70 }, (_, i) => `d_${String(k * 70 + i).padStart(14, '0')}`).join(',')}`).join('&');
  const fresh = await signupUser(p, 'filters@example.test');
  const res = await fetch(`${p.httpUrl}/api/v1/stream?${many}`, { headers: { authorization: `Bearer ${fresh.token}`, accept: 'text/event-stream' } });
  assert.equal(res.status, 400);
  assert.match(((await res.json()) as { detail: string }).detail, /at most 200/);
});

test('with the default limits, the operator and its API keys send 300 requests in a row; an app user is limited', async () => {
  // the defaults, not the suites' raised ones
  const p = await platform({ HEARTH_RATE_LIMIT_PER_MINUTE: '600', HEARTH_RATE_LIMIT_BURST: '100' });
  const user = await signupUser(p, 'app-user@example.test');
  const key = await p.api('POST', '/api/v1/keys', { name: 'fleet script', scopes: ['devices:read', 'devices:control'] });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  const count = async (call: () => Promise<{ status: number }>) => {
    const seen: Record<number, number> = {};
    for (let i = 0; i < 300; i++) {
      const s = (await call()).status;
      seen[s] = (seen[s] ?? 0) + 1;
    }
    return seen;
  };
  assert.deepEqual(await count(() => p.api('GET', '/api/v1/devices')), { 200: 300 }, 'the operator');
  assert.deepEqual(await count(() => p.api('GET', '/api/v1/devices', undefined, key.body.key)), { 200: 300 }, "the operator's API key");
  const app = await count(() => user.api('GET', '/devices'));
  assert.ok((app[429] ?? 0) > 0, `the app user is limited: ${JSON.stringify(app)}`);
});

test("the operator's limits are settings of their own", async () => {
  const p = await platform({ HEARTH_OPERATOR_RATE_LIMIT_PER_MINUTE: '60', HEARTH_OPERATOR_RATE_LIMIT_BURST: '5' });
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await p.api('GET', '/api/v1/devices')).status);
  assert.deepEqual(statuses.slice(0, 4), [200, 200, 200, 200]);
  assert.equal(statuses.at(-1), 429);
  // app users keep theirs (the suites' raised ones here)
  const user = await signupUser(p, 'unaffected@example.test');
  for (let i = 0; i < 8; i++) assert.equal((await user.api('GET', '/auth/me')).status, 200);
});
