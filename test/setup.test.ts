import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exitWithin, startServer } from './helpers/cli.ts';

/**
 * First-run setup (docs/console.md): a fresh `hearth start` without HEARTH_ADMIN_PASSWORD lets the
 * operator choose its e-mail and password once, from the server itself or with the setup code of
 * the banner from elsewhere (the test stands "elsewhere" behind a trusted proxy).
 */
const servers: Array<Awaited<ReturnType<typeof startServer>>> = [];
after(async () => {
  await Promise.all(
    servers.map((s) => {
      s.proc.child.kill('SIGTERM');
      return exitWithin(s.proc, 15_000);
    }),
  );
});

const json = (base: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  fetch(
    base + path,
    body === undefined ? { headers } : { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) },
  ).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

test('a fresh server asks for the operator once from its own machine, signs it in, then setup is closed', async () => {
  const s = await startServer({ HEARTH_DEMO: '0' }, { until: /First-run setup:.*\n/ });
  servers.push(s);
  const code = /setup code (\S+)\)/.exec(s.banner)?.[1];
  assert.ok(code, `the banner prints the setup code:\n${s.banner}`);
  assert.match(s.banner, /Console\s+http:\/\/\S+\//);

  assert.deepEqual((await json(s.base, '/api/v1/setup')).body, { needed: true, codeRequired: false });
  // Bad input: a clear problem, nothing changed.
  const short = await json(s.base, '/api/v1/setup', { email: 'me@example.com', password: 'short' });
  assert.equal(short.status, 400);
  assert.equal(short.body.code, 'E_VALIDATION');

  const done = await json(s.base, '/api/v1/setup', { email: 'Me@Example.com', password: 'my-long-password' });
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.equal(done.body.user.email, 'me@example.com');
  assert.equal(done.body.user.role, 'operator');
  const me = (await fetch(`${s.base}/api/v1/auth/me`, { headers: { authorization: `Bearer ${done.body.token}` } }).then((r) => r.json())) as { email: string };
  assert.equal(me.email, 'me@example.com');
  assert.ok(!existsSync(join(s.dataDir, 'initial-operator-password')), 'the generated password is forgotten');

  // Closed now: no second setup, even with the code.
  assert.deepEqual((await json(s.base, '/api/v1/setup')).body, { needed: false, codeRequired: false });
  const again = await json(s.base, '/api/v1/setup', { email: 'other@example.com', password: 'another-password', code });
  assert.equal(again.status, 409);
  assert.equal(again.body.code, 'E_CONFLICT');
  const login = await json(s.base, '/api/v1/auth/login', { email: 'me@example.com', password: 'my-long-password' });
  assert.equal(login.status, 200);
});

test('with the code from the banner, setup works from another machine; a server whose operator signed in has no setup', async () => {
  const s = await startServer({ HEARTH_DEMO: '0', HEARTH_TRUSTED_PROXIES: '127.0.0.1' }, { until: /First-run setup:.*\n/ });
  servers.push(s);
  const code = /setup code (\S+)\)/.exec(s.banner)![1];
  const remote = { 'x-forwarded-for': '203.0.113.7' };
  assert.deepEqual((await json(s.base, '/api/v1/setup', undefined, remote)).body, { needed: true, codeRequired: true });
  const wrong = await json(s.base, '/api/v1/setup', { email: 'me@example.com', password: 'my-long-password', code: 'WRONG' }, remote);
  assert.equal(wrong.status, 403);
  const ok = await json(s.base, '/api/v1/setup', { email: 'me@example.com', password: 'my-long-password', code: code.toLowerCase() }, remote);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));

  // Signing in with the generated password also ends the setup.
  const t = await startServer({ HEARTH_DEMO: '0' }, { until: /First-run setup:.*\n/ });
  servers.push(t);
  const op = /Operator login:\s+(\S+)\s+password: (\S+)/.exec(t.banner)!;
  assert.equal((await json(t.base, '/api/v1/auth/login', { email: op[1], password: op[2] })).status, 200);
  assert.equal((await json(t.base, '/api/v1/setup')).body.needed, false);
});
