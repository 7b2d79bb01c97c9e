import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { startPlatform, eventually, ADMIN, type Platform } from './helpers/platform.ts';
import { signupUser } from './helpers/people.ts';

let p: Platform;
before(async () => {
  p = await startPlatform({ env: { HEARTH_PUBLIC_URL: 'http://hearth.example' } });
});
after(async () => {
  await p.stop();
});

/** Runs the pages' script as a browser would on `url`, with the form's fields, against the platform. */
async function runPageScript(url: string, fields: Record<string, string>, endpoint: string, dataset: Record<string, string> = {}): Promise<string> {
  const js = await (await fetch(`${p.httpUrl}/pages.js`)).text();
  const status = { textContent: '' };
  let onSubmit: ((e: { preventDefault(): void }) => void) | undefined;
  const inputs = Object.entries(fields).map(([name, value]) => ({ name, value }));
  const form = {
    hidden: false,
    dataset: { endpoint, done: 'DONE', ...dataset } as Record<string, string>,
    querySelectorAll: () => inputs,
    querySelector: (sel: string) => inputs.find((i) => sel.includes(`"${i.name}"`)) ?? null,
    addEventListener: (_: string, f: typeof onSubmit) => (onSubmit = f),
  };
  const u = new URL(url);
  let address = u.pathname + u.search;
  runInNewContext(js, {
    document: { getElementById: (id: string) => (id === 'form' ? form : status) },
    location: { search: u.search, pathname: u.pathname },
    history: { replaceState: (_s: unknown, _t: string, to: string) => (address = to) },
    URLSearchParams,
    JSON,
    fetch: (path: string, init: RequestInit) => fetch(p.httpUrl + path, init),
  });
  assert.equal(address, u.pathname, 'the token is taken out of the address');
  onSubmit!({ preventDefault() {} });
  return eventually(() => (status.textContent && status.textContent !== 'Sending…' ? status.textContent : undefined), 3000, 'the page answers');
}

test('GET / is a small landing page pointing to the docs, the probes and the API', async () => {
  const res = await fetch(`${p.httpUrl}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/html/);
  const body = await res.text();
  for (const href of ['/docs', '/docs/json', '/healthz', '/readyz']) assert.ok(body.includes(`href="${href}"`), href);
  assert.match(body, /\/api\/v1/);
});

test('the password-reset link of the e-mail opens a page whose form sets the new password', async () => {
  const asked = await p.api('POST', '/api/v1/auth/password-reset', { email: ADMIN.email }, null);
  assert.equal(asked.status, 202);
  const mail = await eventually(() => p.logs.find((l) => l.mail?.subject === 'Reset your Hearth password')?.mail, 3000, 'the reset e-mail');
  const link = /(http\S+reset-password\?token=\S+)/.exec(mail.text)![1];
  assert.ok(link.startsWith('http://hearth.example/reset-password?token='), link);
  const local = link.replace('http://hearth.example', p.httpUrl);

  const page = await fetch(local);
  assert.equal(page.status, 200, 'the link points to something that exists');
  assert.match(page.headers.get('content-type')!, /^text\/html/);
  assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
  const html = await page.text();
  assert.match(html, /data-endpoint="\/api\/v1\/auth\/password-reset\/confirm"/);
  assert.match(html, /<script src="\/pages.js"><\/script>/);
  assert.doesNotMatch(html, /<script>/, 'no inline script');

  const differ = await runPageScript(local, { newPassword: 'brand-new-password', again: 'another-password' }, '/api/v1/auth/password-reset/confirm');
  assert.match(differ, /differ/);
  const done = await runPageScript(local, { newPassword: 'brand-new-password', again: 'brand-new-password' }, '/api/v1/auth/password-reset/confirm');
  assert.equal(done, 'DONE');
  const login = await p.api('POST', '/api/v1/auth/login', { email: ADMIN.email, password: 'brand-new-password' }, null);
  assert.equal(login.status, 200);
  // the token is used up: the page says why
  const again = await runPageScript(local, { newPassword: 'third-password-x', again: 'third-password-x' }, '/api/v1/auth/password-reset/confirm');
  assert.notEqual(again, 'DONE');
  // a link without a token says so
  const bare = await fetch(`${p.httpUrl}/reset-password`);
  assert.equal(bare.status, 200);
});

test('the e-mail verification link opens a page that signs in and confirms the address; a wrong sign-in confirms nothing', async () => {
  const email = 'verify-page@pages.test';
  const password = 'password-of-verify-page';
  assert.equal((await p.api('POST', '/api/v1/auth/signup', { email, password }, null)).status, 201);
  const mail = await eventually(() => p.logs.find((l) => l.mail?.to === email && /confirm/i.test(l.mail.subject))?.mail, 3000, 'the verification e-mail');
  const link = /(http\S+\/verify-email\?token=\S+)/.exec(mail.text)![1];
  const local = link.replace('http://hearth.example', p.httpUrl);
  const page = await fetch(local);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /data-endpoint="\/api\/v1\/auth\/verify-email" data-signin="1"/);
  const dataset = { signin: '1' };
  const wrong = await runPageScript(local, { 'signin-email': email, 'signin-password': 'not-the-password' }, '/api/v1/auth/verify-email', dataset);
  assert.notEqual(wrong, 'DONE');
  const done = await runPageScript(local, { 'signin-email': email, 'signin-password': password }, '/api/v1/auth/verify-email', dataset);
  assert.equal(done, 'DONE');
  const token = (await p.api('POST', '/api/v1/auth/login', { email, password }, null)).body.token as string;
  assert.equal((await p.api('GET', '/api/v1/auth/me', undefined, token)).body.emailVerified, true);
});

test('the invitation link opens a page that signs in and accepts it', async () => {
  // (the operator's password changed in an earlier test: a user of its own invites)
  const inviter = await signupUser(p, 'inviter@pages.test');
  const owner = (await inviter.api('POST', '/homes', { name: 'Pages home', timezone: 'UTC' })).body.id as string;
  const email = 'invitee@pages.test';
  const invitee = await signupUser(p, email);
  assert.equal((await inviter.api('POST', `/homes/${owner}/invitations`, { email, role: 'member' })).status, 201);
  const mail = await eventually(
    () => [...p.logs].reverse().find((l) => l.mail?.to === email && /invitations\/accept/.test(l.mail.text ?? ''))?.mail,
    3000,
    'the invitation e-mail',
  );
  const link = /(http\S+\/invitations\/accept\?token=\S+)/.exec(mail.text)![1];
  const local = link.replace('http://hearth.example', p.httpUrl);
  assert.equal((await fetch(local)).status, 200, 'the link points to something that exists');
  const done = await runPageScript(local, { 'signin-email': email, 'signin-password': `password-of-${email}` }, '/api/v1/invitations/accept', { signin: '1' });
  assert.equal(done, 'DONE');
  const homes = await invitee.api('GET', '/homes');
  assert.ok(
    homes.body.items.some((h: { id: string }) => h.id === owner),
    'the invitee is a member',
  );
});
