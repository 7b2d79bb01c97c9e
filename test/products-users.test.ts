import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser } from './helpers/people.ts';

/**
 * The operator's edits of a product (PATCH /products/{key}: name, category, thing model) as a real
 * device sees them, and the operator's list of accounts (GET /users), with their bad input and scopes.
 */
let p: Platform;
let ana: TestUser;
const PRODUCT = 'edit_meter';

before(async () => {
  p = await startPlatform();
  const model = { properties: [{ id: 'power', type: 'number', access: 'r' }], events: [], actions: [] };
  assert.equal((await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'Meter', category: 'sensor', model })).status, 201);
  ana = await signupUser(p, 'ana.products@example.com');
  await signupUser(p, 'bob.products@example.com');
  await signupUser(p, 'carla_x@example.com');
});
after(async () => {
  await p.stop();
});

test("a changed thing model applies to the product's devices from their next message", async () => {
  const d = await p.provision(PRODUCT);
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ humidity: 40 }), { qos: 1 });
  const refused = await box.next((m) => m.topic.endsWith('/errors'));
  assert.match(JSON.stringify(refused.payload), /humidity/, 'unknown to the model: refused on the error topic');

  const model = {
    properties: [
      { id: 'power', type: 'number', access: 'r' },
      { id: 'humidity', type: 'number', unit: '%', min: 0, max: 100, access: 'r' },
    ],
    events: [],
    actions: [],
  };
  const r = await p.api('PATCH', `/api/v1/products/${PRODUCT}`, { name: 'Meter v2', model });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.name, 'Meter v2');
  assert.equal(r.body.category, 'sensor', 'what the patch leaves out stays');
  assert.deepEqual(
    r.body.model.properties.map((x: { id: string }) => x.id),
    ['power', 'humidity'],
  );
  assert.equal((await p.api('GET', `/api/v1/products/${PRODUCT}`)).body.name, 'Meter v2');

  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ humidity: 41 }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}/shadow`)).body.reported?.humidity === 41, 5000, 'humidity in the shadow');
  // and the new bounds hold
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ humidity: 140 }), { qos: 1 });
  assert.match(JSON.stringify((await box.next((m) => m.topic.endsWith('/errors'))).payload), /humidity/);
  await c.endAsync();
});

test('a bad model, a built-in product, an unknown one and an empty change are refused and change nothing', async () => {
  const before = (await p.api('GET', `/api/v1/products/${PRODUCT}`)).body;
  const bad = await p.api('PATCH', `/api/v1/products/${PRODUCT}`, {
    model: { properties: [{ id: 'level', type: 'enum', access: 'r' }], events: [], actions: [] },
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'E_INVALID_MODEL');
  assert.match(bad.body.detail, /level|values/);
  assert.deepEqual((await p.api('GET', `/api/v1/products/${PRODUCT}`)).body, before);

  const builtin = await p.api('PATCH', '/api/v1/products/light', { name: 'My light' });
  assert.equal(builtin.status, 409);
  assert.match(builtin.body.detail, /built in/);
  assert.equal((await p.api('PATCH', '/api/v1/products/no-such-product', { name: 'x' })).status, 404);
  const empty = await p.api('PATCH', `/api/v1/products/${PRODUCT}`, {});
  assert.equal(empty.status, 400);
  const unknownField = await p.api('PATCH', `/api/v1/products/${PRODUCT}`, { key: 'renamed' });
  assert.equal(unknownField.status, 400);
  assert.equal((await ana.api('PATCH', `/products/${PRODUCT}`, { name: 'mine now' })).status, 403, 'users cannot change products');
});

test('the operator lists accounts by e-mail, searches them and pages through them', async () => {
  const all = await p.api('GET', '/api/v1/users?limit=500');
  assert.equal(all.status, 200, JSON.stringify(all.body));
  const emails = all.body.items.map((u: { email: string }) => u.email);
  assert.deepEqual(emails, [...emails].sort(), 'in e-mail order');
  for (const e of ['ana.products@example.com', 'bob.products@example.com']) assert.ok(emails.includes(e), e);
  const a = all.body.items.find((u: { email: string }) => u.email === 'ana.products@example.com');
  assert.equal(a.id, ana.id);
  assert.equal(a.role, 'user');
  assert.equal(a.emailVerified, true);
  assert.ok(!Number.isNaN(Date.parse(a.createdAt)));
  assert.ok(!('passwordHash' in a) && !JSON.stringify(all.body).includes('scrypt'), 'no secrets');

  const found = await p.api('GET', '/api/v1/users?q=PRODUCTS@');
  assert.deepEqual(
    found.body.items.map((u: { email: string }) => u.email),
    ['ana.products@example.com', 'bob.products@example.com'],
    'a part of the address, any case',
  );
  // _ and % are literal: "o_x" matches nothing, "a_x" only carla_x
  assert.deepEqual((await p.api('GET', '/api/v1/users?q=o_x')).body.items, []);
  assert.deepEqual(
    (await p.api('GET', '/api/v1/users?q=a_x')).body.items.map((u: { email: string }) => u.email),
    ['carla_x@example.com'],
  );

  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page: { status: number; body: { items: Array<{ email: string }>; nextCursor: string | null } } = await p.api(
      'GET',
      `/api/v1/users?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    assert.equal(page.status, 200);
    assert.ok(page.body.items.length <= 1);
    seen.push(...page.body.items.map((u) => u.email));
    cursor = page.body.nextCursor;
  } while (cursor);
  assert.deepEqual(seen, emails, 'the pages together are the whole list, once each');

  assert.equal((await p.api('GET', '/api/v1/users?limit=0')).status, 400);
  assert.equal((await ana.api('GET', '/users')).status, 403, 'users do not see other accounts');
  const key = await p.api('POST', '/api/v1/keys', { name: 'audit only', scopes: ['audit:read'] });
  assert.equal((await p.api('GET', '/api/v1/users', undefined, key.body.key)).status, 403, 'a key needs users:read');
  const reader = await p.api('POST', '/api/v1/keys', { name: 'support', scopes: ['users:read'] });
  assert.equal((await p.api('GET', '/api/v1/users', undefined, reader.body.key)).status, 200);
});
