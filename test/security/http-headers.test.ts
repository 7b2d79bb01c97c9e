import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { Type } from 'typebox';
import { startPlatform, type Platform } from '../helpers/platform.ts';
import { signupUser } from '../helpers/people.ts';
import { buildHttpServer } from '../../src/transports/http/http-server.ts';
import { Auth } from '../../src/transports/http/route-auth.ts';
import { HearthError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/core/logger.ts';

/**
 * Security headers on every response, Cache-Control: no-store on everything that carries a
 * token or a secret, the Swagger UI still working under its CSP, and routes that cannot be
 * public by accident.
 */
let p: Platform;

before(async () => {
  p = await startPlatform();
});

after(async () => {
  await p.stop();
});

function assertCommonHeaders(what: string, h: Headers): void {
  assert.equal(h.get('x-content-type-options'), 'nosniff', `${what}: X-Content-Type-Options`);
  assert.equal(h.get('x-frame-options'), 'DENY', `${what}: X-Frame-Options`);
  assert.match(h.get('content-security-policy') ?? '', /frame-ancestors 'none'/, `${what}: CSP frame-ancestors`);
}

test('every kind of response says nosniff and may not be framed: API answers, errors, probes, the docs and their assets', async () => {
  const docs = await fetch(`${p.httpUrl}/docs`);
  assert.equal(docs.status, 200);
  assert.match(docs.headers.get('content-type') ?? '', /text\/html/);
  const html = await docs.text();
  assertCommonHeaders('/docs', docs.headers);
  const assets = [...html.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map((m) => new URL(m[1], docs.url).pathname);
  assert.ok(assets.length >= 3, `assets of /docs: ${assets.join(', ')}`);
  for (const path of [...assets, '/docs/json', '/api/v1/products', '/api/v1/nothing-here', '/healthz', '/api/v1/devices/%ED%A0%80']) {
    const r = await fetch(p.httpUrl + path, { headers: { authorization: `Bearer ${p.token}` } });
    assert.ok(r.status === 200 || path.includes('nothing') || path.includes('%ED'), `${path} → ${r.status}`);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', `${path}: X-Content-Type-Options`);
    if (path.endsWith('.js')) assert.match(r.headers.get('content-type') ?? '', /javascript/, path);
    if (path.endsWith('.css')) assert.match(r.headers.get('content-type') ?? '', /text\/css/, path);
  }
  const unauthenticated = await fetch(`${p.httpUrl}/api/v1/products`);
  assert.equal(unauthenticated.status, 401);
  assertCommonHeaders('a 401', unauthenticated.headers);
  // The CSP lets the UI load its own scripts, styles and data: images, nothing from elsewhere.
  const csp = docs.headers.get('content-security-policy')!;
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /upgrade-insecure-requests/, 'plain-HTTP installs must keep loading their own assets');
});

test('the Swagger UI renders under its CSP in a real browser', { skip: !existsSync('/usr/bin/chromium') && 'no /usr/bin/chromium' }, async () => {
  // Past a number of operations the UI renders only those in the window (virtualized): a tall window shows the first tags'.
  const dom = await new Promise<string>((resolve, reject) => {
    execFile(
      '/usr/bin/chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', '--window-size=1280,4000', '--virtual-time-budget=15000', '--dump-dom', `${p.httpUrl}/docs`],
      { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
  assert.match(dom, /Hearth API/, 'the UI rendered the document title');
  assert.match(dom, /\/api\/v1\/products/, 'the UI rendered the operations');
});

test('answers carrying tokens or secrets are never stored: sign-up, login, refresh, keys, devices, partners', async () => {
  const noStore = (what: string, r: { status: number; headers: Headers }, status: number) => {
    assert.equal(r.status, status, what);
    assert.equal(r.headers.get('cache-control'), 'no-store', `${what}: Cache-Control`);
  };
  const signup = await p.api('POST', '/api/v1/auth/signup', { email: 'cache@example.test', password: 'a long password' }, null);
  noStore('sign-up', signup, 201);
  const login = await p.api('POST', '/api/v1/auth/login', { email: 'cache@example.test', password: 'a long password' }, null);
  noStore('login', login, 200);
  noStore('refresh', await p.api('POST', '/api/v1/auth/refresh', { refreshToken: login.body.refreshToken }, null), 200);
  noStore('key creation', await p.api('POST', '/api/v1/keys', { name: 'k', scopes: ['devices:read'] }), 201);
  noStore('device creation (its secret)', await p.api('POST', '/api/v1/devices', { product: 'light', name: 'L' }), 201);
  noStore('bulk provisioning', await p.api('POST', '/api/v1/devices/bulk', { items: [{ product: 'light', name: 'L2' }] }), 201);
  const partner = await p.api('POST', '/api/v1/partners', { name: 'P', products: ['light'] });
  noStore('partner creation (its secret)', partner, 201);
  noStore('partner secret rotation', await p.api('POST', `/api/v1/partners/${partner.body.id}/secret`), 200);
  noStore('who am I', await p.api('GET', '/api/v1/auth/me'), 200);
  noStore('a failed login', await p.api('POST', '/api/v1/auth/login', { email: 'cache@example.test', password: 'wrong password' }, null), 401);
});

test("an API key cannot create keys, and only the operator's keys may hold operator scopes", async () => {
  const u = await signupUser(p, 'keys@example.test');
  const k = await u.api('POST', '/keys', { name: 'k', scopes: ['devices:read', 'devices:control', 'homes:read', 'homes:manage', 'automations:manage'] });
  assert.equal(k.status, 201);
  const byKey = await p.api('POST', '/api/v1/keys', { name: 'more', scopes: ['devices:read'] }, k.body.key);
  assert.equal(byKey.status, 403, 'a key cannot make keys (so never one with more scopes than it has)');
  const opKey = await p.api('POST', '/api/v1/keys', { name: 'op', scopes: ['audit:read'] });
  assert.equal((await p.api('POST', '/api/v1/keys', { name: 'wider', scopes: ['gateway:manage'] }, opKey.body.key)).status, 403);
  const userOperatorScope = await u.api('POST', '/keys', { name: 'sneaky', scopes: ['devices:read', 'products:manage'] });
  assert.equal(userOperatorScope.status, 403);
  assert.match(userOperatorScope.body.detail, /operator/);
  // An operator key without device scopes does not list the fleet (nor its pairing codes).
  assert.equal((await p.api('GET', '/api/v1/devices', undefined, opKey.body.key)).status, 403);
  const reader = await p.api('POST', '/api/v1/keys', { name: 'reader', scopes: ['devices:read'] });
  assert.equal((await p.api('GET', '/api/v1/devices', undefined, reader.body.key)).status, 200);
  assert.equal((await p.api('GET', '/api/v1/audit', undefined, opKey.body.key)).status, 200, 'audit:read reads the audit log');
  assert.equal((await p.api('GET', '/api/v1/audit', undefined, reader.body.key)).status, 403);
});

const log = createLogger('fatal');
const deps = {
  log,
  version: 'test',
  isReady: () => true,
  authenticate: (authorization: string | undefined) => {
    if (authorization === 'Bearer good') return { userId: 'u_1', email: 'a@b.c', role: 'user' as const };
    throw new HearthError('E_UNAUTHENTICATED');
  },
};

test('a route that does not declare who may call it keeps the server from starting', async () => {
  for (const config of [undefined, { public: true }, { auth: { who: 'pubic' } }, { auth: { who: 'operator', scopes: [] } }, { auth: { who: 'self' } }]) {
    const app = await buildHttpServer(deps);
    app.get('/api/v1/forgotten', { ...(config ? { config: config as never } : {}) }, async () => ({ secret: 'leaked' }));
    await assert.rejects(
      async () => {
        await app.ready();
      },
      /every route must declare who may call it/,
      JSON.stringify(config),
    );
    await app.close().catch(() => undefined);
  }
  // Outside /api too: there is no path that is public because of how it is spelled.
  const app = await buildHttpServer(deps);
  app.get('/console-data', async () => ({ secret: 'leaked' }));
  await assert.rejects(async () => {
    await app.ready();
  }, /GET \/console-data declares no config\.auth/);
  await app.close().catch(() => undefined);
});

test('a declared route is authenticated however its path is spelled', async () => {
  const app = await buildHttpServer(deps);
  app.get('/api/v1/things/:id', { config: { auth: Auth.caller() }, schema: { params: Type.Object({ id: Type.String() }) } }, async () => ({ ok: true }));
  app.get('/api/v1/open', { config: { auth: Auth.public } }, async () => ({ open: true }));
  await app.ready();
  for (const url of ['/api/v1/things/1', '/%61pi/v1/things/1', '/api/v1/%74hings/1', '/%61%70%69/%76%31/%74%68%69%6e%67%73/1']) {
    assert.equal((await app.inject({ url })).statusCode, 401, url);
    assert.equal((await app.inject({ url, headers: { authorization: 'Bearer good' } })).statusCode, 200, url);
  }
  assert.equal((await app.inject({ url: '/%61pi/v1/open' })).statusCode, 200);
  await app.close();
});
