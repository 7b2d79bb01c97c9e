import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSmtp, mailText } from './helpers/smtp.ts';
import { startPlatform, eventually, ADMIN, type Platform, type ApiResponse } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

let seq = 0;
/** A fresh address per test, so tests do not share accounts or throttles. */
const freshEmail = (tag: string) => `${tag}-${process.pid}-${seq++}@test.local`;
const PASSWORD = 'first-password-1';

interface Tokens {
  token: string;
  refreshToken: string;
  tokenType: string;
  expiresIn: number;
  user: { id: string; email: string; role: string; name: string | null; emailVerified: boolean };
}

async function signup(tag: string, password = PASSWORD): Promise<{ id: string; email: string }> {
  const email = freshEmail(tag);
  const r = await p.api('POST', '/api/v1/auth/signup', { email, password, name: `Tester ${tag}` }, null);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { id: r.body.id, email };
}

async function login(email: string, password = PASSWORD): Promise<Tokens> {
  const r = await p.api<Tokens>('POST', '/api/v1/auth/login', { email, password }, null);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

const refresh = (refreshToken: string) => p.api('POST', '/api/v1/auth/refresh', { refreshToken }, null);
const me = (token: string) => p.api('GET', '/api/v1/auth/me', undefined, token);

/** A request with an `X-Api-Key` header (the platform helper only sends bearer tokens). */
async function withApiKey(method: string, path: string, key: string): Promise<ApiResponse> {
  const res = await fetch(p.httpUrl + path, { method, headers: { 'x-api-key': key } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/** The e-mails the log mailer wrote for `to` (the platform runs without SMTP), of a subject when given. */
function mailsTo(to: string, subject?: RegExp): Array<{ to: string; subject: string; text: string }> {
  return p.logs.filter((l) => l.mail?.to === to && (!subject || subject.test(l.mail.subject))).map((l) => l.mail);
}

function resetTokenOf(text: string): string {
  const link = /\?token=([A-Za-z0-9_-]+)/.exec(text);
  assert.ok(link, `no reset link in: ${text}`);
  assert.ok(text.split('\n').includes(link[1]), 'the token itself is in the text too');
  return link[1];
}

test('sign-up creates a user; duplicates, short passwords and bad e-mails are refused', async () => {
  const email = freshEmail('Signup').toUpperCase();
  const created = await p.api('POST', '/api/v1/auth/signup', { email, password: PASSWORD, name: 'Ana' }, null);
  assert.equal(created.status, 201);
  assert.match(created.body.id, /^u_/);
  assert.equal(created.body.email, email.toLowerCase());
  assert.equal(created.body.role, 'user');
  assert.equal(created.body.name, 'Ana');
  assert.equal(created.body.emailVerified, false, 'nobody has confirmed the address yet');
  assert.equal(created.body.password, undefined);

  const dup = await p.api('POST', '/api/v1/auth/signup', { email: email.toLowerCase(), password: PASSWORD }, null);
  assert.equal(dup.status, 409);
  assert.equal(dup.body.code, 'E_EMAIL_TAKEN');
  const short = await p.api('POST', '/api/v1/auth/signup', { email: freshEmail('short'), password: 'short' }, null);
  assert.equal(short.status, 400);
  assert.equal(short.body.code, 'E_VALIDATION');
  assert.equal(short.body.field, 'body.password');
  const bad = await p.api('POST', '/api/v1/auth/signup', { email: 'not-an-address', password: PASSWORD }, null);
  assert.equal(bad.status, 400);

  const s = await login(email);
  assert.equal(s.tokenType, 'Bearer');
  assert.match(s.token, /^hth1\./);
  assert.match(s.refreshToken, /^hrt_/);
  assert.ok(s.expiresIn > 0);
  assert.deepEqual(s.user, { id: created.body.id, email: email.toLowerCase(), role: 'user', name: 'Ana', emailVerified: false });
  const who = await me(s.token);
  assert.equal(who.status, 200);
  assert.deepEqual(who.body, { id: created.body.id, email: email.toLowerCase(), role: 'user', name: 'Ana', emailVerified: false });
});

test('refresh rotates the pair; a reused refresh token ends the whole session', async () => {
  const u = await signup('rotate');
  const first = await login(u.email);
  const second = await refresh(first.refreshToken);
  assert.equal(second.status, 200);
  assert.notEqual(second.body.refreshToken, first.refreshToken);
  assert.equal(second.body.user.id, u.id);
  assert.equal((await me(second.body.token)).status, 200);
  const third = await refresh(second.body.refreshToken);
  assert.equal(third.status, 200);

  // Someone replays the first (used) refresh token: the family is revoked.
  const replay = await refresh(first.refreshToken);
  assert.equal(replay.status, 401);
  assert.equal(replay.body.code, 'E_UNAUTHENTICATED');
  assert.match(replay.body.detail, /already used/);
  // ...so the newest refresh token of the family no longer works either, nor its access tokens.
  assert.equal((await refresh(third.body.refreshToken)).status, 401);
  assert.equal((await me(third.body.token)).status, 401);
  assert.equal((await me(first.token)).status, 401);
  // Other sessions of the same user are untouched.
  const other = await login(u.email);
  assert.equal((await me(other.token)).status, 200);
  assert.equal((await refresh(other.refreshToken)).status, 200);

  assert.equal((await refresh('hrt_not-a-real-token')).status, 401);
  const asBearer = await me(other.refreshToken);
  assert.equal(asBearer.status, 401);
  assert.match(asBearer.body.detail, /refresh/);
});

test('logout ends the session: its refresh token and its access token stop working', async () => {
  const u = await signup('logout');
  const a = await login(u.email);
  const b = await login(u.email);
  const out = await p.api('POST', '/api/v1/auth/logout', undefined, a.token);
  assert.equal(out.status, 204);
  assert.equal((await me(a.token)).status, 401);
  const r = await refresh(a.refreshToken);
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'E_UNAUTHENTICATED');
  // The user's other session goes on.
  assert.equal((await me(b.token)).status, 200);
  assert.equal((await refresh(b.refreshToken)).status, 200);
  assert.equal((await p.api('POST', '/api/v1/auth/logout', undefined, null)).status, 401);
});

test('changing the password keeps this session and ends the others', async () => {
  const u = await signup('passwd');
  const here = await login(u.email);
  const elsewhere = await login(u.email);
  const wrong = await p.api('POST', '/api/v1/auth/password', { currentPassword: 'not-my-password', newPassword: 'second-password-2' }, here.token);
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.code, 'E_BAD_CREDENTIALS');
  const short = await p.api('POST', '/api/v1/auth/password', { currentPassword: PASSWORD, newPassword: 'short' }, here.token);
  assert.equal(short.status, 400);

  const ok = await p.api('POST', '/api/v1/auth/password', { currentPassword: PASSWORD, newPassword: 'second-password-2' }, here.token);
  assert.equal(ok.status, 204);
  assert.equal((await me(here.token)).status, 200);
  assert.equal((await me(elsewhere.token)).status, 401);
  assert.equal((await refresh(elsewhere.refreshToken)).status, 401);
  assert.equal((await refresh(here.refreshToken)).status, 200);
  assert.equal((await p.api('POST', '/api/v1/auth/login', { email: u.email, password: PASSWORD }, null)).status, 401);
  await login(u.email, 'second-password-2');
});

test('password reset: a one-time token by e-mail, no account enumeration, all sessions end', async () => {
  const u = await signup('reset');
  const session = await login(u.email);

  const unknown = await p.api('POST', '/api/v1/auth/password-reset', { email: freshEmail('nobody') }, null);
  const known = await p.api('POST', '/api/v1/auth/password-reset', { email: u.email.toUpperCase() }, null);
  assert.equal(unknown.status, 202);
  assert.equal(known.status, 202);
  assert.deepEqual(unknown.body, known.body);

  const mail = await eventually(() => mailsTo(u.email, /reset/i)[0], 3000, 'the reset e-mail');
  assert.match(mail.subject, /reset/i);
  const token = resetTokenOf(mail.text);

  const bogus = await p.api('POST', '/api/v1/auth/password-reset/confirm', { token: 'not-a-token', newPassword: 'reset-password-3' }, null);
  assert.equal(bogus.status, 400);
  assert.equal(bogus.body.code, 'E_RESET_TOKEN_INVALID');
  const short = await p.api('POST', '/api/v1/auth/password-reset/confirm', { token, newPassword: 'short' }, null);
  assert.equal(short.status, 400);
  assert.equal(short.body.code, 'E_VALIDATION');

  const done = await p.api('POST', '/api/v1/auth/password-reset/confirm', { token, newPassword: 'reset-password-3' }, null);
  assert.equal(done.status, 204);
  const again = await p.api('POST', '/api/v1/auth/password-reset/confirm', { token, newPassword: 'reset-password-4' }, null);
  assert.equal(again.status, 400);
  assert.equal(again.body.code, 'E_RESET_TOKEN_INVALID');

  assert.equal((await me(session.token)).status, 401);
  assert.equal((await refresh(session.refreshToken)).status, 401);
  assert.equal((await p.api('POST', '/api/v1/auth/login', { email: u.email, password: PASSWORD }, null)).status, 401);
  await login(u.email, 'reset-password-3');
});

test('sign-in throttling: after 3 failures in a row the e-mail waits from this address, with 429 and Retry-After', async () => {
  const u = await signup('throttle');
  const bystander = await signup('bystander');
  for (let i = 0; i < 4; i++) {
    const r = await p.api('POST', '/api/v1/auth/login', { email: u.email, password: `wrong-password-${i}` }, null);
    assert.equal(r.status, 401, `attempt ${i + 1}`);
  }
  // Slowed down: even the right password is refused from here until the delay is over, without being checked.
  const held = await p.api('POST', '/api/v1/auth/login', { email: u.email, password: PASSWORD }, null);
  assert.equal(held.status, 429);
  assert.equal(held.body.code, 'E_RATE_LIMITED');
  const retryAfter = Number(held.headers.get('retry-after'));
  assert.ok(retryAfter >= 1 && retryAfter <= 2, `Retry-After ${held.headers.get('retry-after')}`);
  assert.equal(typeof held.body.retryAfter, 'number');
  // The pair is slowed down, not everybody.
  await login(bystander.email);
  await new Promise((r) => setTimeout(r, retryAfter * 1000));
  await login(u.email);
});

test('e-mail verification: the sign-up mails a one-time link; the account confirms it signed in; resends are limited', async () => {
  const u = await signup('verify');
  const s1 = await login(u.email);
  assert.equal(s1.user.emailVerified, false);
  const mail = await eventually(() => mailsTo(u.email, /confirm/i)[0], 3000, 'the verification e-mail');
  const link = /(http:\/\/[^\s]+)\/verify-email\?token=([A-Za-z0-9_-]+)/.exec(mail.text);
  assert.ok(link, mail.text);
  assert.ok(mail.text.split('\n').includes(link[2]), 'the token itself is in the text too');
  assert.equal(link[1], `http://localhost:${new URL(p.httpUrl).port}`, 'the configured public URL (here its default), never the Host header');

  // The token needs the account's own sign-in: unauthenticated, with an API key or as somebody else, no.
  assert.equal((await p.api('POST', '/api/v1/auth/verify-email', { token: link[2] }, null)).status, 401);
  const key = await p.api('POST', '/api/v1/keys', { name: 'k', scopes: ['devices:read'] }, s1.token);
  assert.equal((await p.api('POST', '/api/v1/auth/verify-email', { token: link[2] }, key.body.key)).status, 403);
  const other = await signup('verify-other');
  const o = await login(other.email);
  const stranger = await p.api('POST', '/api/v1/auth/verify-email', { token: link[2] }, o.token);
  assert.equal(stranger.status, 400);
  assert.equal(stranger.body.code, 'E_VERIFICATION_TOKEN_INVALID');
  const bogus = await p.api('POST', '/api/v1/auth/verify-email', { token: 'not-a-token' }, s1.token);
  assert.equal(bogus.status, 400);
  assert.equal(bogus.body.code, 'E_VERIFICATION_TOKEN_INVALID');
  assert.equal((await me(s1.token)).body.emailVerified, false);

  // A resend mails a new link; both work until one is used, then neither.
  const resent = await p.api('POST', '/api/v1/auth/verify-email/resend', undefined, s1.token);
  assert.equal(resent.status, 202, JSON.stringify(resent.body));
  const second = await eventually(() => mailsTo(u.email, /confirm/i)[1], 3000, 'the second verification e-mail');
  const token2 = /verify-email\?token=([A-Za-z0-9_-]+)/.exec(second.text)![1];
  assert.notEqual(token2, link[2]);
  const ok = await p.api('POST', '/api/v1/auth/verify-email', { token: token2 }, s1.token);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body, { id: u.id, email: u.email, role: 'user', name: 'Tester verify', emailVerified: true });
  assert.equal((await me(s1.token)).body.emailVerified, true);
  assert.equal((await login(u.email)).user.emailVerified, true);
  assert.equal((await p.api('POST', '/api/v1/auth/verify-email', { token: token2 }, s1.token)).body.code, 'E_VERIFICATION_TOKEN_INVALID', 'one time');
  assert.equal(
    (await p.api('POST', '/api/v1/auth/verify-email', { token: link[2] }, s1.token)).body.code,
    'E_VERIFICATION_TOKEN_INVALID',
    'earlier links are spent too',
  );
  const again = await p.api('POST', '/api/v1/auth/verify-email/resend', undefined, s1.token);
  assert.equal(again.status, 409, 'nothing to resend once verified');

  // Resends are limited per account: 3 at once.
  const o2 = await login(other.email);
  const codes: number[] = [];
  for (let i = 0; i < 4; i++) codes.push((await p.api('POST', '/api/v1/auth/verify-email/resend', undefined, o2.token)).status);
  assert.deepEqual(codes, [202, 202, 202, 429]);
});

test('the operator made at first start has a verified address', async () => {
  const s = await login(ADMIN.email, ADMIN.password);
  assert.equal(s.user.emailVerified, true);
});

test('API keys: created once, usable as bearer or X-Api-Key, scoped, listed without the key, revocable', async () => {
  const u = await signup('keys');
  const s = await login(u.email);
  const created = await p.api('POST', '/api/v1/keys', { name: 'Home Assistant', scopes: ['devices:read'], homeIds: ['h_5t2k9x4p1q8r0m'] }, s.token);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.id, /^k_/);
  assert.match(created.body.key, /^hk_/);
  assert.deepEqual(created.body.scopes, ['devices:read']);
  assert.deepEqual(created.body.homeIds, ['h_5t2k9x4p1q8r0m']);
  const key: string = created.body.key;

  const listed = await p.api('GET', '/api/v1/keys', undefined, s.token);
  assert.equal(listed.status, 200);
  assert.equal(listed.body.items.length, 1);
  assert.equal(listed.body.items[0].id, created.body.id);
  assert.equal(listed.body.items[0].key, undefined);
  assert.ok(!JSON.stringify(listed.body).includes(key), 'the key is never shown again');
  assert.equal(listed.body.items[0].lastUsedAt, null);
  assert.equal(listed.body.items[0].revokedAt, null);

  const asBearer = await me(key);
  assert.equal(asBearer.status, 200);
  assert.equal(asBearer.body.id, u.id);
  assert.equal(asBearer.body.keyId, created.body.id);
  assert.deepEqual(asBearer.body.scopes, ['devices:read']);
  assert.deepEqual(asBearer.body.homeIds, ['h_5t2k9x4p1q8r0m']);
  const asHeader = await withApiKey('GET', '/api/v1/auth/me', key);
  assert.equal(asHeader.status, 200);
  assert.equal(asHeader.body.keyId, created.body.id);
  // A password sign-in has no scopes (it may do all its role allows).
  assert.equal((await me(s.token)).body.scopes, undefined);

  const used = await p.api('GET', '/api/v1/keys', undefined, s.token);
  assert.ok(Date.parse(used.body.items[0].lastUsedAt) > 0, 'lastUsedAt is recorded');

  // Keys do not manage keys or passwords.
  assert.equal((await p.api('GET', '/api/v1/keys', undefined, key)).status, 403);
  const mint = await p.api('POST', '/api/v1/keys', { name: 'child', scopes: ['devices:read'] }, key);
  assert.equal(mint.status, 403);
  assert.equal(mint.body.code, 'E_FORBIDDEN');
  assert.equal((await p.api('POST', '/api/v1/auth/password', { currentPassword: PASSWORD, newPassword: 'by-key-password' }, key)).status, 403);

  const badScope = await p.api('POST', '/api/v1/keys', { name: 'bad', scopes: ['everything'] }, s.token);
  assert.equal(badScope.status, 400);
  assert.equal(badScope.body.code, 'E_VALIDATION');

  // Somebody else's key is not found, and not in their list.
  const other = await signup('keys-other');
  const o = await login(other.email);
  const steal = await p.api('DELETE', `/api/v1/keys/${created.body.id}`, undefined, o.token);
  assert.equal(steal.status, 404);
  assert.equal(steal.body.code, 'E_KEY_NOT_FOUND');
  assert.deepEqual((await p.api('GET', '/api/v1/keys', undefined, o.token)).body.items, []);
  assert.equal((await me(key)).status, 200);

  const revoked = await p.api('DELETE', `/api/v1/keys/${created.body.id}`, undefined, s.token);
  assert.equal(revoked.status, 204);
  const dead = await me(key);
  assert.equal(dead.status, 401);
  assert.equal(dead.body.code, 'E_UNAUTHENTICATED');
  assert.equal((await withApiKey('GET', '/api/v1/auth/me', key)).status, 401);
  const after = await p.api('GET', '/api/v1/keys', undefined, s.token);
  assert.ok(Date.parse(after.body.items[0].revokedAt) > 0);
  assert.equal((await p.api('DELETE', '/api/v1/keys/k_doesnotexist00', undefined, s.token)).status, 404);

  assert.equal((await me('hk_made-up-key')).status, 401);
  assert.equal((await withApiKey('GET', '/api/v1/auth/me', 'not-a-key')).status, 401);
});

test('the operator signs in as before and sees its role', async () => {
  const s = await login(ADMIN.email, ADMIN.password);
  assert.equal(s.user.role, 'operator');
  assert.equal((await me(s.token)).body.role, 'operator');
});

test('with HEARTH_SMTP_URL the reset e-mail goes out over SMTP', async () => {
  const smtp = await startSmtp();
  const received = smtp.mails;
  const q = await startPlatform({ env: { HEARTH_SMTP_URL: smtp.url, HEARTH_MAIL_FROM: 'Hearth Test <hearth@test.local>' } });
  try {
    const email = freshEmail('smtp');
    assert.equal((await q.api('POST', '/api/v1/auth/signup', { email, password: PASSWORD }, null)).status, 201);
    assert.equal((await q.api('POST', '/api/v1/auth/password-reset', { email }, null)).status, 202);
    const mail = await eventually(() => received.find((m) => m.to.includes(email) && /^Subject: .*reset/im.test(m.raw)), 5000, 'the e-mail at the SMTP server');
    assert.match(mail.raw, /^From: Hearth Test <hearth@test\.local>/m);
    // The body may be quoted-printable: undo soft line breaks and =XX escapes before looking for the token.
    const body = mailText(mail.raw);
    const token = /\?token=([A-Za-z0-9_-]+)/.exec(body)?.[1];
    assert.ok(token, 'the e-mail carries the reset link');
    assert.equal((await q.api('POST', '/api/v1/auth/password-reset/confirm', { token, newPassword: 'smtp-password-2' }, null)).status, 204);
    assert.equal((await q.api('POST', '/api/v1/auth/login', { email, password: 'smtp-password-2' }, null)).status, 200);
  } finally {
    await q.stop();
    await smtp.close();
  }
});

test('a signed-out session stays signed out after a restart; other sessions survive it', async () => {
  const q = await startPlatform();
  const email = freshEmail('restart');
  assert.equal((await q.api('POST', '/api/v1/auth/signup', { email, password: PASSWORD }, null)).status, 201);
  const out = (await q.api<Tokens>('POST', '/api/v1/auth/login', { email, password: PASSWORD }, null)).body;
  const stay = (await q.api<Tokens>('POST', '/api/v1/auth/login', { email, password: PASSWORD }, null)).body;
  assert.equal((await q.api('POST', '/api/v1/auth/logout', undefined, out.token)).status, 204);
  await q.stop(false);
  const r = await startPlatform({ dataDir: q.dataDir });
  try {
    assert.equal((await r.api('GET', '/api/v1/auth/me', undefined, out.token)).status, 401);
    assert.equal((await r.api('GET', '/api/v1/auth/me', undefined, stay.token)).status, 200);
    assert.equal((await r.api('POST', '/api/v1/auth/refresh', { refreshToken: stay.refreshToken }, null)).status, 200);
  } finally {
    await r.stop();
  }
});
