import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { startPlatform, eventually, ADMIN, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform({ env: { HEARTH_PUBLIC_URL: 'http://hearth.example' } });
});
after(async () => {
  await p.stop();
});

/** Runs the pages' script as a browser would on `url`, with the form's fields, against the platform. */
async function runPageScript(url: string, fields: Record<string, string>, endpoint: string): Promise<string> {
  const js = await (await fetch(`${p.httpUrl}/pages.js`)).text();
  const status = { textContent: '' };
  let onSubmit: ((e: { preventDefault(): void }) => void) | undefined;
  const inputs = Object.entries(fields).map(([name, value]) => ({ name, value }));
  const form = {
    hidden: false,
    dataset: { endpoint, done: 'DONE' } as Record<string, string>,
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

test('the e-mail verification page exists for the links of /api/v1/auth/verify-email', async () => {
  const res = await fetch(`${p.httpUrl}/verify-email?token=abc`);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /data-endpoint="\/api\/v1\/auth\/verify-email"/);
});
