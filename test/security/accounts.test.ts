/**
 * Accounts under attack, over real HTTP: address squatting, locking people out, password
 * spraying, and floods of sign-ups and e-mails. Attackers and victims differ by their client
 * address: requests leave from different loopback addresses (127.0.0.0/8), and the server trusts
 * no X-Forwarded-For.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { WebSocket } from 'ws';
import { startPlatform, eventually, ADMIN, type ApiResponse, type Platform } from '../helpers/platform.ts';
import { takeVerificationToken } from '../helpers/people.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p?.stop();
});

type Call = (method: string, path: string, body?: unknown, opts?: { token?: string; headers?: Record<string, string> }) => Promise<ApiResponse>;

/** An HTTP client whose requests leave from `address` (any of 127.0.0.0/8 on Linux). */
function from(platform: Platform, address: string): Call {
  const url = new URL(platform.httpUrl);
  return (method, path, body, opts = {}) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers: Record<string, string> = { ...opts.headers };
      if (payload !== undefined) headers['content-type'] = 'application/json';
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      const req = request({ host: url.hostname, port: url.port, method, path, headers, localAddress: address, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            /* keep text */
          }
          resolve({ status: res.statusCode!, headers: h, body: parsed });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
}

/** Signs `email` up from `call`'s address, unverified (the tests need not verify: they hold on older code too). */
async function signup(call: Call, email: string, password = `password-of-${email}`): Promise<void> {
  const r = await call('POST', '/api/v1/auth/signup', { email, password });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

const login = (call: Call, email: string, password: string, headers?: Record<string, string>) =>
  call('POST', '/api/v1/auth/login', { email, password }, { headers });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The value of one series in the platform's /metrics (0 when absent). */
async function metric(platform: Platform, series: string): Promise<number> {
  const text = await (await fetch(`${platform.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

test("a squatter who signs up with a colleague's address gets nothing addressed to it, and cannot verify it without the mailbox", async () => {
  // The owner is the operator here (verified from the start).
  const owner = { api: (method: string, path: string, body?: unknown) => p.api(method, `/api/v1${path}`, body) };
  const home = (await owner.api('POST', '/homes', { name: 'Office', timezone: 'Europe/Berlin' })).body.id as string;
  const lamp = await p.provision('plug');
  assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: lamp.pairingCode })).status, 201);

  // The squatter signs up with the colleague's address and signs in: the account works, unverified.
  const victim = 'colleague@corp.test';
  const squatter = from(p, '127.0.0.20');
  assert.equal((await squatter('POST', '/api/v1/auth/signup', { email: victim, password: 'squatter-password-1' })).status, 201);
  const s = await login(squatter, victim, 'squatter-password-1');
  assert.equal(s.status, 200);
  assert.equal(s.body.user.emailVerified, false);
  const squatToken = s.body.token as string;
  const key = (await squatter('POST', '/api/v1/keys', { name: 'kept', scopes: ['devices:read', 'homes:read'] }, { token: squatToken })).body.key as string;
  assert.equal((await squatter('POST', '/api/v1/push/tokens', { platform: 'fcm', token: 'squatters-phone' }, { token: squatToken })).status, 201);

  // The owner shares the lamp with the address, and invites it into the home.
  const share = await owner.api('POST', `/devices/${lamp.id}/shares`, { email: victim, permission: 'control' });
  assert.equal(share.status, 404, `an unverified account is nobody's address yet: ${JSON.stringify(share.body)}`);
  assert.equal(share.body.code, 'E_USER_NOT_FOUND');
  assert.equal((await owner.api('POST', `/homes/${home}/invitations`, { email: victim, role: 'member' })).status, 201);
  const invitation = await eventually(() => p.logs.find((l) => l.mail?.to === victim && /invited/.test(l.mail.subject))?.mail, 3000, 'the invitation mail');
  const invitationToken = /invitations\/accept\?token=([A-Za-z0-9_-]+)/.exec(invitation.text)![1];

  // Even with the invitation token (say the colleague forwarded the mail), the squatter cannot accept.
  const accept = await squatter('POST', '/api/v1/invitations/accept', { token: invitationToken }, { token: squatToken });
  assert.equal(accept.status, 403, JSON.stringify(accept.body));
  assert.equal(accept.body.code, 'E_EMAIL_NOT_VERIFIED');
  assert.equal((await squatter('GET', `/api/v1/devices/${lamp.id}`, undefined, { token: squatToken })).status, 404);
  assert.deepEqual((await squatter('GET', '/api/v1/homes', undefined, { token: squatToken })).body.items, []);
  assert.ok(!JSON.stringify((await squatter('GET', '/api/v1/devices', undefined, { token: squatToken })).body).includes(lamp.id));

  // Verifying takes the mailbox: guesses fail, and a new link goes to the colleague, not the squatter.
  const guess = await squatter('POST', '/api/v1/auth/verify-email', { token: 'A'.repeat(43) }, { token: squatToken });
  assert.equal(guess.body.code, 'E_VERIFICATION_TOKEN_INVALID');
  assert.equal((await squatter('POST', '/api/v1/auth/verify-email/resend', undefined, { token: squatToken })).status, 202);
  // The colleague reads the link in their mailbox; without the squatter's password it verifies nothing.
  const link = await takeVerificationToken(p, victim);
  const colleague = from(p, '127.0.0.21');
  assert.equal((await colleague('POST', '/api/v1/auth/verify-email', { token: link })).status, 401);
  assert.equal((await squatter('GET', '/api/v1/auth/me', undefined, { token: squatToken })).body.emailVerified, false);

  // The colleague takes the account over by resetting its password: now the address is verified,
  // and everything the squatter held is gone (sessions and API keys).
  // The squatter keeps a live stream open with the key: it must end with the key.
  const stream = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream`, { headers: { 'x-api-key': key } });
  const streamClosed = new Promise<number>((resolve) => stream.once('close', () => resolve(Date.now())));
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', reject);
  });
  assert.equal((await colleague('POST', '/api/v1/auth/password-reset', { email: victim })).status, 202);
  const reset = await eventually(() => p.logs.find((l) => l.mail?.to === victim && /reset/i.test(l.mail.subject))?.mail, 3000, 'the reset mail');
  const resetToken = /\?token=([A-Za-z0-9_-]+)/.exec(reset.text)![1];
  assert.equal((await colleague('POST', '/api/v1/auth/password-reset/confirm', { token: resetToken, newPassword: 'colleague-password-1' })).status, 204);
  assert.equal((await squatter('GET', '/api/v1/auth/me', undefined, { token: squatToken })).status, 401);
  assert.equal((await squatter('GET', '/api/v1/auth/me', undefined, { headers: { 'x-api-key': key } })).status, 401, "the squatter's API key is revoked");
  const resetAt = Date.now();
  const endedAt = await Promise.race([streamClosed, new Promise<number>((r) => setTimeout(() => r(Infinity), 2000))]);
  assert.ok(endedAt - resetAt < 1000, 'the stream opened with the revoked key ended within a second');
  const c = await login(colleague, victim, 'colleague-password-1');
  assert.equal(c.body.user.emailVerified, true);
  assert.deepEqual(
    (await colleague('GET', '/api/v1/push/tokens', undefined, { token: c.body.token })).body.items,
    [],
    "the squatter's phone gets no notifications of the colleague",
  );

  // From now on what is addressed to the colleague reaches them, and only them.
  assert.equal((await owner.api('POST', `/devices/${lamp.id}/shares`, { email: victim, permission: 'view' })).status, 201);
  assert.equal((await colleague('GET', `/api/v1/devices/${lamp.id}`, undefined, { token: c.body.token })).status, 200);
  assert.equal((await colleague('POST', '/api/v1/invitations/accept', { token: invitationToken }, { token: c.body.token })).status, 200);
  assert.equal((await squatter('GET', `/api/v1/devices/${lamp.id}`, undefined, { headers: { 'x-api-key': key } })).status, 401);
});

test('an unverified account cannot send invitations (they name the inviter by address)', async () => {
  const u = from(p, '127.0.0.22');
  assert.equal((await u('POST', '/api/v1/auth/signup', { email: 'boss@corp.test', password: 'pretender-password' })).status, 201);
  const t = (await login(u, 'boss@corp.test', 'pretender-password')).body.token as string;
  const home = (await u('POST', '/api/v1/homes', { name: 'Fake office', timezone: 'UTC' }, { token: t })).body.id as string;
  const inv = await u('POST', `/api/v1/homes/${home}/invitations`, { email: 'staff@corp.test', role: 'member' }, { token: t });
  assert.equal(inv.status, 403);
  assert.equal(inv.body.code, 'E_EMAIL_NOT_VERIFIED');
  assert.ok(!p.logs.some((l) => l.mail?.to === 'staff@corp.test'), 'no mail went out');
});

test('20 wrong passwords for the operator from one address do not keep the operator out from another', async () => {
  const attacker = from(p, '127.0.0.30');
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) {
    // Spoofed X-Forwarded-For headers change nothing: the server trusts no proxy.
    statuses.push((await login(attacker, ADMIN.email, `guess-${i}`, { 'x-forwarded-for': `10.9.${i}.1` })).status);
  }
  // The operator, from their own address, gets in at once.
  const operator = from(p, '127.0.0.31');
  const ok = await login(operator, ADMIN.email, ADMIN.password);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.user.role, 'operator');
  // The attacker's address is held up after 4 checked guesses, the right password too (it is not even checked).
  assert.deepEqual(statuses.slice(0, 4), [401, 401, 401, 401]);
  assert.ok(
    statuses.slice(4).every((s) => s === 429),
    `then the attacker's address is held up: ${statuses}`,
  );
  assert.equal((await login(attacker, ADMIN.email, ADMIN.password)).status, 429);
});

test("behind a trusted proxy (HEARTH_TRUSTED_PROXIES) each client counts by its forwarded address: one client's failures do not hold up another's sign-in", async () => {
  const q = await startPlatform({ env: { HEARTH_TRUSTED_PROXIES: '127.0.0.50' } });
  try {
    const proxy = from(q, '127.0.0.50');
    for (let i = 0; i < 40; i++) await login(proxy, ADMIN.email, `guess-${i}`, { 'x-forwarded-for': '203.0.113.9' });
    assert.equal((await login(proxy, ADMIN.email, 'another-guess', { 'x-forwarded-for': '203.0.113.9' })).status, 429, 'the attacking client is held up');
    const ok = await login(proxy, ADMIN.email, ADMIN.password, { 'x-forwarded-for': '198.51.100.7' });
    assert.equal(ok.status, 200, 'the operator behind the same proxy gets in');
    // A peer that is not the trusted proxy cannot choose its address with the header.
    const other = from(q, '127.0.0.51');
    for (let i = 0; i < 5; i++) await login(other, ADMIN.email, `guess-${i}`, { 'x-forwarded-for': `198.51.100.${i}` });
    assert.equal((await login(other, ADMIN.email, ADMIN.password, { 'x-forwarded-for': '198.51.100.99' })).status, 429);
  } finally {
    await q.stop();
  }
});

test('failures from one address against one account wait 1 s, 2 s, 4 s: growing delays with Retry-After', async () => {
  const victim = { email: 'grace@delay.test' };
  await signup(from(p, '127.0.0.41'), victim.email);
  const attacker = from(p, '127.0.0.40');
  for (let i = 0; i < 4; i++) assert.equal((await login(attacker, victim.email, `wrong-${i}`)).status, 401);
  const waits: number[] = [];
  for (let i = 0; i < 3; i++) {
    const held = await login(attacker, victim.email, `wrong-again-${i}`);
    assert.equal(held.status, 429);
    assert.equal(held.body.code, 'E_RATE_LIMITED');
    const retryAfter = Number(held.headers.get('retry-after'));
    assert.equal(held.body.retryAfter, retryAfter);
    waits.push(retryAfter);
    await sleep(retryAfter * 1000 + 50);
    assert.equal((await login(attacker, victim.email, `wrong-after-wait-${i}`)).status, 401, 'checked once the delay is over');
  }
  assert.deepEqual(waits, [1, 2, 4]);
  // The owner, elsewhere, is not held up at all.
  assert.equal((await login(from(p, '127.0.0.41'), victim.email, `password-of-${victim.email}`)).status, 200);
});

test('one address failing on many accounts is stopped, reported as spraying (metric, warning, audit), others are not', async () => {
  const sprayer = from(p, '127.0.0.50');
  const sprayBefore = await metric(p, 'hearth_login_spray_detected_total{kind="source"}');
  const unknownBefore = await metric(p, 'hearth_login_failures_total{reason="unknown_account"}');
  const statuses: number[] = [];
  for (let i = 0; i < 32; i++) statuses.push((await login(sprayer, `user${i}@spray.test`, 'Summer2026!')).status);
  assert.ok(
    statuses.slice(0, 30).every((s) => s === 401),
    `30 accounts tried: ${statuses}`,
  );
  assert.deepEqual(statuses.slice(30), [429, 429], 'then the address may try no account');
  assert.equal(await metric(p, 'hearth_login_spray_detected_total{kind="source"}'), sprayBefore + 1, 'reported once');
  assert.ok((await metric(p, 'hearth_login_failures_total{reason="unknown_account"}')) >= unknownBefore + 30);
  assert.ok((await metric(p, 'hearth_login_failures_total{reason="throttled"}')) >= 2);
  const warning = p.logs.find((l) => l.alert === 'login-spray' && l.kind === 'source');
  assert.ok(warning, 'a warning is logged');
  assert.equal(warning.level, 40);
  assert.equal(warning.source, '127.0.0.50');
  assert.ok(warning.accounts >= 10);
  const audit = await eventually(
    async () => (await p.api('GET', '/api/v1/audit?action=auth.login.spray')).body.items?.find((e: any) => e.targetId === '127.0.0.50'),
    3000,
    'the audit entry',
  );
  assert.equal(audit.details.kind, 'source');
  // Another address is not affected.
  assert.equal((await login(from(p, '127.0.0.51'), 'user0@spray.test', 'x')).status, 401);
});

test('one account failing from many addresses is reported as a distributed attack', async () => {
  const before = await metric(p, 'hearth_login_spray_detected_total{kind="account"}');
  for (let i = 1; i <= 10; i++) assert.equal((await login(from(p, `127.0.1.${i}`), 'target@botnet.test', `guess-${i}`)).status, 401);
  assert.equal(await metric(p, 'hearth_login_spray_detected_total{kind="account"}'), before + 1);
  const warning = p.logs.find((l) => l.alert === 'login-spray' && l.kind === 'account');
  assert.equal(warning?.account, 'target@botnet.test');
  assert.equal(warning?.sources, 10);
});

test('sign-ups are limited per address (failed ones count), with 429 and Retry-After', async () => {
  const q = await startPlatform({ env: { HEARTH_SIGNUPS_PER_HOUR: '20', HEARTH_SIGNUP_BURST: '5' } });
  try {
    const bot = from(q, '127.0.0.60');
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await bot('POST', '/api/v1/auth/signup', { email: `bot${i}@flood.test`, password: 'bot-password-1' })).status);
    assert.deepEqual(statuses.slice(0, 5), [201, 201, 201, 201, 201]);
    assert.ok(
      statuses.slice(5).every((s) => s === 429),
      `then refused: ${statuses}`,
    );
    const refused = await bot('POST', '/api/v1/auth/signup', { email: 'bot0@flood.test', password: 'bot-password-1' });
    assert.equal(refused.status, 429, 'an address already taken is not even looked up');
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(retryAfter > 60 && retryAfter <= 180, `Retry-After ${retryAfter}`);
    // Somebody else is not held up.
    assert.equal((await from(q, '127.0.0.61')('POST', '/api/v1/auth/signup', { email: 'person@flood.test', password: 'person-password' })).status, 201);
  } finally {
    await q.stop();
  }
});

test('password-reset requests are limited per address; e-mails per recipient stay at 5 an hour', async () => {
  const u = { email: 'rita@reset.test' };
  await signup(from(p, '127.0.0.71'), u.email);
  const asker = from(p, '127.0.0.70');
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await asker('POST', '/api/v1/auth/password-reset', { email: i % 2 ? u.email : `nobody${i}@reset.test` })).status);
  assert.deepEqual(statuses, [202, 202, 202, 202, 202, 429, 429, 429]);
  // Different askers, one recipient: at most 5 mails reach it.
  for (let i = 0; i < 8; i++) assert.equal((await from(p, `127.0.2.${i + 1}`)('POST', '/api/v1/auth/password-reset', { email: u.email })).status, 202);
  const resets = () => p.logs.filter((l) => l.mail?.to === u.email && /reset/i.test(l.mail.subject)).length;
  await eventually(() => resets() >= 5, 3000, 'five reset mails');
  await sleep(200); // bounded: a sixth would have been sent with the others
  assert.equal(resets(), 5);
});

test('invitation e-mails are limited per inviting user', async () => {
  const home = (await p.api('POST', '/api/v1/homes', { name: 'Hall', timezone: 'UTC' })).body.id as string;
  const statuses: number[] = [];
  for (let i = 0; i < 22; i++)
    statuses.push((await p.api('POST', `/api/v1/homes/${home}/invitations`, { email: `guest${i}@invites.test`, role: 'member' })).status);
  // The operator sent one invitation in an earlier test: 19 more at once, then 429. (The bucket
  // refills one a minute: when that test ran over a minute ago, a 20th may pass.)
  const sent = statuses.indexOf(429);
  assert.ok(sent === 19 || sent === 20, `19 (or 20) invitations pass, then 429: ${statuses.join(' ')}`);
  assert.deepEqual(statuses, [...Array(sent).fill(201), ...Array(22 - sent).fill(429)]);
});
