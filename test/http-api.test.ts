import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, ADMIN, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

const PROBLEM = 'application/problem+json; charset=utf-8';

test('login gives a token; bad credentials and missing or forged tokens get 401 problems', async () => {
  const ok = await p.api('POST', '/api/v1/auth/login', ADMIN, null);
  assert.equal(ok.status, 200);
  assert.match(ok.body.token, /^hth1\./);
  assert.equal(ok.body.user.role, 'operator');
  const bad = await p.api('POST', '/api/v1/auth/login', { ...ADMIN, password: 'wrong-password' }, null);
  assert.equal(bad.status, 401);
  assert.equal(bad.headers.get('content-type'), PROBLEM);
  assert.equal(bad.body.code, 'E_BAD_CREDENTIALS');
  const unknown = await p.api('POST', '/api/v1/auth/login', { email: 'nobody@test.local', password: 'x' }, null);
  assert.equal(unknown.status, 401);
  const none = await p.api('GET', '/api/v1/devices', undefined, null);
  assert.equal(none.status, 401);
  assert.equal(none.body.code, 'E_UNAUTHENTICATED');
  const forged = await p.api('GET', '/api/v1/devices', undefined, ok.body.token.slice(0, -2) + 'xx');
  assert.equal(forged.status, 401);
  const me = await p.api('GET', '/api/v1/auth/me');
  assert.equal(me.body.email, ADMIN.email);
});

test('the built-in catalog is installed', async () => {
  const r = await p.api('GET', '/api/v1/products');
  const keys = r.body.items.map((x: { key: string }) => x.key);
  for (const k of [
    'hub',
    'light',
    'plug',
    'wall-switch',
    'curtain',
    'door-lock',
    'thermostat',
    'temp-humidity-sensor',
    'contact-sensor',
    'motion-sensor',
    'water-leak-sensor',
    'smoke-sensor',
    'illuminance-sensor',
    'camera',
    'cloud-printer',
    'payment-speaker',
  ]) {
    assert.ok(keys.includes(k), k);
  }
  const lock = await p.api('GET', '/api/v1/products/door-lock');
  assert.deepEqual(
    lock.body.model.events.map((e: { id: string }) => e.id),
    ['lock', 'unlock', 'tamper'],
  );
  assert.equal(lock.body.builtin, true);
});

test('products: create, read, duplicate, invalid model names the field', async () => {
  const model = {
    properties: [{ id: 'level', type: 'integer', min: 0, max: 10, access: 'rw', history: true }],
    events: [{ id: 'ping' }],
    actions: [{ id: 'reset' }],
  };
  const created = await p.api('POST', '/api/v1/products', { key: 'acme-dimmer', name: 'ACME dimmer', category: 'light', model });
  assert.equal(created.status, 201);
  assert.equal(created.body.builtin, false);
  assert.deepEqual(created.body.model.properties[0], model.properties[0]);
  assert.equal((await p.api('GET', '/api/v1/products/acme-dimmer')).body.name, 'ACME dimmer');
  const dup = await p.api('POST', '/api/v1/products', { key: 'acme-dimmer', name: 'again', category: 'light', model });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.code, 'E_PRODUCT_EXISTS');
  const badEnum = await p.api('POST', '/api/v1/products', {
    key: 'acme-bad',
    name: 'bad',
    category: 'x',
    model: { properties: [{ id: 'mode', type: 'enum', access: 'rw' }] },
  });
  assert.equal(badEnum.status, 400);
  assert.equal(badEnum.headers.get('content-type'), PROBLEM);
  assert.equal(badEnum.body.code, 'E_INVALID_MODEL');
  assert.equal(badEnum.body.field, 'model.properties[0].values');
  const badType = await p.api('POST', '/api/v1/products', {
    key: 'acme-bad',
    name: 'bad',
    category: 'x',
    model: { properties: [{ id: 'mode', type: 'float', access: 'rw' }] },
  });
  assert.equal(badType.status, 400);
  assert.match(badType.body.field, /^body\.model\.properties\.0\.type/);
  const missing = await p.api('POST', '/api/v1/products', { key: 'acme-bad', category: 'x', model: {} });
  assert.equal(missing.status, 400);
  assert.equal(missing.body.code, 'E_VALIDATION');
  assert.equal(missing.body.field, 'body.name');
  assert.equal((await p.api('GET', '/api/v1/products/nope')).status, 404);
  // a device of the new product validates against its model
  const d = await p.provision('acme-dimmer');
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { level: 11 } })).status, 400);
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { level: 7 } })).status, 200);
});

test('provisioning: single and bulk, secrets shown once, unknown product refused', async () => {
  const one = await p.api('POST', '/api/v1/devices', { product: 'plug', name: 'Kitchen plug' });
  assert.equal(one.status, 201);
  assert.match(one.body.id, /^d_[0-9a-z]{14}$/);
  assert.ok(one.body.secret.length >= 24);
  assert.match(one.body.pairingCode, /^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/);
  assert.equal(one.body.mqtt.topics.properties, `devices/${one.body.id}/properties`);
  const read = await p.api('GET', `/api/v1/devices/${one.body.id}`);
  assert.equal(read.body.secret, undefined, 'the secret is never shown again');
  assert.equal(read.body.online, false);
  assert.equal(read.body.presence.reason, 'never-connected');
  const bulk = await p.api('POST', '/api/v1/devices/bulk', {
    items: Array.from({ length: 25 }, (_, i) => ({ product: 'temp-humidity-sensor', name: `Sensor ${i}` })),
  });
  assert.equal(bulk.status, 201);
  assert.equal(bulk.body.items.length, 25);
  assert.equal(new Set(bulk.body.items.map((x: { id: string }) => x.id)).size, 25);
  const list = await p.api('GET', '/api/v1/devices?product=temp-humidity-sensor&limit=10');
  assert.equal(list.body.total, 25);
  assert.equal(list.body.items.length, 10);
  const badBulk = await p.api('POST', '/api/v1/devices/bulk', {
    items: [
      { product: 'plug', name: 'ok' },
      { product: 'warp-drive', name: 'no' },
    ],
  });
  assert.equal(badBulk.status, 404);
  assert.equal(badBulk.body.code, 'E_PRODUCT_NOT_FOUND');
  assert.equal((await p.api('GET', '/api/v1/devices?product=plug')).body.items.filter((x: { name: string }) => x.name === 'ok').length, 0, 'all or none');
  const unknown = await p.api('POST', '/api/v1/devices', { product: 'warp-drive', name: 'x' });
  assert.equal(unknown.status, 404);
  assert.equal((await p.api('GET', '/api/v1/devices/d_nothere0000000')).body.code, 'E_DEVICE_NOT_FOUND');
});

test('probes and unknown routes', async () => {
  assert.deepEqual((await p.api('GET', '/healthz', undefined, null)).body, { status: 'ok' });
  assert.deepEqual((await p.api('GET', '/readyz', undefined, null)).body, { status: 'ready' });
  const nf = await p.api('GET', '/api/v1/nothing-here');
  assert.equal(nf.status, 404);
  assert.equal(nf.headers.get('content-type'), PROBLEM);
});

test('the OpenAPI document describes every route with examples', async () => {
  const doc = (await p.api('GET', '/docs/json', undefined, null)).body;
  assert.equal(doc.openapi, '3.1.0');
  const paths = Object.keys(doc.paths);
  for (const path of [
    '/api/v1/auth/login',
    '/api/v1/products',
    '/api/v1/products/{key}',
    '/api/v1/devices',
    '/api/v1/devices/bulk',
    '/api/v1/devices/{id}',
    '/api/v1/devices/{id}/shadow',
    '/api/v1/devices/{id}/commands',
    '/api/v1/devices/{id}/history',
    '/api/v1/devices/{id}/events',
    '/api/v1/devices/{id}/children',
  ]) {
    assert.ok(paths.includes(path), path);
  }
  const missing: string[] = [];
  const hasExample = (media: any): boolean => !!media && (media.example !== undefined || media.examples !== undefined || media.schema?.examples !== undefined);
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    if (!path.startsWith('/api/')) continue;
    for (const [method, op] of Object.entries<any>(ops)) {
      const body = op.requestBody?.content?.['application/json'];
      if (body && !hasExample(body)) missing.push(`${method} ${path} request example`);
      const ok = op.responses?.['200'] ?? op.responses?.['201'] ?? op.responses?.['202'];
      if (!ok && op.responses?.['204']) continue;
      const media = ok?.content?.['application/json'];
      if (!media?.schema) missing.push(`${method} ${path} response schema`);
      else if (!hasExample(media) && !Object.values<any>(media.schema.properties ?? {}).some((x) => x.items?.examples || x.examples))
        missing.push(`${method} ${path} response example`);
    }
  }
  assert.deepEqual(missing, []);
  const ui = await fetch(`${p.httpUrl}/docs`, { redirect: 'follow' });
  assert.equal(ui.status, 200);
});

test('an ordinary call is logged and measured even when it claims to be a stream (Upgrade or text/event-stream headers)', async () => {
  const { request } = await import('node:http');
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      `${p.httpUrl}/api/v1/products`,
      { headers: { authorization: `Bearer ${p.token}`, upgrade: 'x-not-a-stream', accept: 'text/event-stream' } },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
  await eventually(() => p.logs.find((l) => l.msg === 'request' && l.path === '/api/v1/products' && l.status === 200), 2000, 'the request log line');
});
