import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, type Platform } from '../helpers/platform.ts';
import { signupUser } from '../helpers/people.ts';
import { SCOPES } from '../../src/access/principal.ts';
import { deepJson, fillAll, needsPrincipal, operations, raw, type Operation } from './http-helpers.ts';

/**
 * Attacks on every operation of the OpenAPI document (GET /docs/json), so that a route added
 * later is attacked too: without credentials, under spellings of its path that the router may
 * decode, with keys whose scopes or homes do not fit, with numbers and bodies out of bounds.
 * Each route's declaration (`x-hearth-auth`) says what to expect.
 */
let p: Platform;
let ops: Operation[];
const HOME_SCOPES = ['devices:read', 'devices:control', 'homes:read', 'homes:manage', 'automations:manage'];
let userToken = '';
let userKey = '';
let operatorHomeKey = '';
/** Operator keys by the scopes they hold (sorted, joined with ","). */
const operatorKeys = new Map<string, string>();

async function operatorKey(scopes: string[], homeIds?: string[]): Promise<string> {
  const r = await p.api('POST', '/api/v1/keys', { name: `op ${scopes.join(' ')}`.slice(0, 100), scopes, ...(homeIds ? { homeIds } : {}) });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.key;
}

async function keyWith(scopes: string[]): Promise<string> {
  const id = [...scopes].sort().join(',');
  if (!operatorKeys.has(id)) operatorKeys.set(id, await operatorKey(scopes));
  return operatorKeys.get(id)!;
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const send = (o: Operation, path: string, headers: Record<string, string> = {}, body?: string) =>
  raw(p.httpUrl, o.method, path, {
    headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body } : {}),
  });
const name = (o: Operation) => `${o.method} ${o.path}`;
const hasJsonBody = (o: Operation) => o.op.requestBody?.content?.['application/json'] !== undefined;

before(async () => {
  p = await startPlatform();
  const u = await signupUser(p, 'ursula@example.test');
  userToken = u.token;
  const k = await u.api('POST', '/keys', { name: 'everything a user may hold', scopes: HOME_SCOPES });
  assert.equal(k.status, 201, JSON.stringify(k.body));
  userKey = k.body.key;
  const home = await p.api('POST', '/api/v1/homes', { name: 'Operator test home', timezone: 'UTC' });
  assert.equal(home.status, 201, JSON.stringify(home.body));
  operatorHomeKey = await operatorKey([...SCOPES], [home.body.id]);
  ops = operations((await p.api('GET', '/docs/json', undefined, null)).body);
});

after(async () => {
  await p.stop();
});

test('every operation of the API declares who may call it, and operator routes name their scopes', () => {
  assert.ok(ops.length >= 100, `only ${ops.length} operations`);
  const undeclared = ops.filter((o) => !o.auth).map(name);
  assert.deepEqual(undeclared, []);
  const unscoped = ops.filter((o) => o.auth.who === 'operator' && !o.auth.scopes?.length).map(name);
  assert.deepEqual(unscoped, []);
  for (const o of ops) for (const s of o.auth.scopes ?? []) assert.ok((SCOPES as readonly string[]).includes(s), `${name(o)}: unknown scope ${s}`);
  // The operator's areas are declared as such.
  for (const path of ['/api/v1/products', '/api/v1/devices', '/api/v1/devices/bulk', '/api/v1/routes', '/api/v1/partners', '/api/v1/gateway/dry-run']) {
    const o = ops.find((x) => x.path === path && x.method === 'POST');
    assert.equal(o?.auth.who, 'operator', `POST ${path}`);
  }
  assert.equal(ops.find((x) => x.path === '/api/v1/audit')?.auth.who, 'operator');
});

test('without credentials, or with forged ones, every route that needs a caller answers 401; the others never 2xx', async () => {
  const wrong: string[] = [];
  for (const o of ops) {
    if (o.auth.who === 'public') continue;
    const path = fillAll(o.path);
    for (const headers of [{}, bearer('hth1.forged.token'), { 'x-api-key': 'hk_forged' }, bearer('hk_forged')] as Array<Record<string, string>>) {
      const r = await send(o, path, headers);
      const ok = needsPrincipal(o) ? r.status === 401 : r.status >= 400 && r.status < 500;
      if (!ok) wrong.push(`${name(o)} ${JSON.stringify(headers)} → ${r.status}`);
      if (needsPrincipal(o) && r.headers['content-type'] !== 'application/problem+json; charset=utf-8') wrong.push(`${name(o)}: ${r.headers['content-type']}`);
    }
  }
  assert.deepEqual(wrong, []);
});

/** Spellings of a path that a router might decode or normalise to the same route. */
function spellings(path: string): string[] {
  const segs = path.split('/');
  const isStatic = (s: string) => s.length > 0 && !s.startsWith('{');
  const enc = (c: string, lower = false) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')[lower ? 'toLowerCase' : 'toUpperCase']()}`;
  const out: string[] = [];
  segs.forEach((s, i) => {
    if (!isStatic(s)) return;
    const a = [...segs];
    a[i] = enc(s[0], true) + s.slice(1);
    out.push(a.join('/'));
    const b = [...segs];
    b[i] = s.slice(0, -1) + enc(s[s.length - 1]);
    out.push(b.join('/'));
  });
  out.push(segs.map((s) => (isStatic(s) ? [...s].map((c) => enc(c)).join('') : s)).join('/'));
  out.push(segs.map((s) => (isStatic(s) ? s.toUpperCase() : s)).join('/'));
  out.push(
    path.replace('/api/', '//api/'),
    path.replace('/api/v1/', '/api/v1//'),
    path.replace('/api/v1/', '/api%2Fv1/'),
    path.replace('/api/v1/', '/api%2fv1/'),
  );
  out.push(`${path}/`, path.replace('/api/v1/', '/api/./v1/'), path.replace('/api/v1/', '/api/x/../v1/'), path.replace('/api/v1/', '/api/v1/%2e/'));
  return [...new Set(out)].filter((x) => x !== path);
}

test('percent-encoded, case-changed and slash-changed spellings of every protected path never get past authentication', async () => {
  const wrong: string[] = [];
  let tried = 0;
  for (const o of ops) {
    if (o.auth.who === 'public') continue;
    for (const spelling of spellings(o.path)) {
      const path = fillAll(spelling);
      const r = await send(o, path);
      tried++;
      const ok = needsPrincipal(o) ? r.status === 401 || r.status === 404 : r.status >= 400 && r.status < 500;
      if (!ok) wrong.push(`${o.method} ${path} → ${r.status} ${r.text.slice(0, 100)}`);
    }
  }
  assert.ok(tried > 1000, `only ${tried} spellings tried`);
  assert.deepEqual(wrong, []);
  // The issue's own example, and the same with a token: the encoded spelling reaches the route.
  assert.equal((await raw(p.httpUrl, 'GET', '/%61pi/v1/products')).status, 401);
  assert.equal((await raw(p.httpUrl, 'GET', '/%61pi/v1/products', { headers: bearer(p.token) })).status, 200);
});

test('operator routes refuse users, user keys, operator keys without their scope and operator keys limited to homes', async () => {
  const wrong: string[] = [];
  let tried = 0;
  for (const o of ops) {
    const path = fillAll(o.path);
    const declared = o.auth.scopes ?? [];
    const attempts: Array<[string, string]> = [];
    if (o.auth.who === 'operator') {
      attempts.push(['a user', userToken], ['a user key with every home scope', userKey], ['an operator key limited to a home', operatorHomeKey]);
      attempts.push([`an operator key with every scope but ${declared.join(', ')}`, await keyWith(SCOPES.filter((s) => !declared.includes(s)))]);
    } else if (o.auth.who === 'password') {
      attempts.push(['an operator key with every scope', await keyWith([...SCOPES])], ['a user key', userKey]);
    } else if (o.auth.who === 'caller' && declared.length) {
      attempts.push([`an operator key without ${declared.join(', ')}`, await keyWith(SCOPES.filter((s) => !declared.includes(s)))]);
    } else continue;
    for (const [who, credential] of attempts) {
      const r = await send(o, path, bearer(credential));
      tried++;
      if (r.status !== 403) wrong.push(`${name(o)} as ${who} → ${r.status} ${r.text.slice(0, 100)}`);
    }
    // and a key with just the declared scope passes the gate (what follows may still say 4xx)
    if (o.auth.who === 'operator' || (o.auth.who === 'caller' && declared.length)) {
      for (const s of declared) {
        const r = await send(o, path, bearer(await keyWith([s])));
        if (r.status === 401 || r.status === 403) wrong.push(`${name(o)} with an operator key holding ${s} → ${r.status} ${r.text.slice(0, 100)}`);
      }
    }
  }
  assert.ok(tried >= 100, `only ${tried} attempts`);
  assert.deepEqual(wrong, []);
});

const SAFE = Number.MAX_SAFE_INTEGER;

test('every numeric query and path parameter has a safe range, and out-of-range or malformed numbers get 400', async () => {
  const wrong: string[] = [];
  let tried = 0;
  for (const o of ops) {
    for (const param of o.op.parameters ?? []) {
      if (param.in !== 'query' && param.in !== 'path') continue;
      const schema = param.schema ?? {};
      if (schema.type !== 'integer' && schema.type !== 'number') continue;
      if (!(typeof schema.minimum === 'number' && schema.minimum >= -SAFE) || !(typeof schema.maximum === 'number' && schema.maximum <= SAFE)) {
        wrong.push(`${name(o)} ${param.in} ${param.name}: range ${schema.minimum}..${schema.maximum} is not a safe one`);
      }
      const values = ['1e400', '-1e400', '99999999999999999999', 'abc', 'NaN', 'Infinity', '1e-400x'];
      if (schema.minimum > -1) values.push('-1');
      if (schema.type === 'integer') values.push('1.5');
      for (const v of values) {
        const path =
          param.in === 'path' ? fillAll(o.path.replace(`{${param.name}}`, encodeURIComponent(v))) : `${fillAll(o.path)}?${param.name}=${encodeURIComponent(v)}`;
        const r = await send(o, path, bearer(p.token));
        tried++;
        if (r.status !== 400) wrong.push(`${o.method} ${path} → ${r.status} ${r.text.slice(0, 120)}`);
      }
    }
  }
  assert.ok(tried >= 50, `only ${tried} numbers tried`);
  assert.deepEqual(wrong, []);
});

test('every JSON body: 10,000 levels deep, over the size limit, with a lone surrogate or a number out of range is refused with 4xx', async () => {
  const wrong: string[] = [];
  const bodies = ops.filter(hasJsonBody);
  assert.ok(bodies.length >= 40, `only ${bodies.length} operations take JSON`);
  const huge = JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 16) });
  for (const o of bodies) {
    const path = fillAll(o.path);
    // The operator's password sign-in gets past every route's gate, so the body is what is judged.
    const headers = needsPrincipal(o) ? bearer(p.token) : {};
    const judged = o.auth.who !== 'self' || o.path.includes('/partners/') || o.path.includes('/hooks/');
    const cases: Array<[string, string, (r: { status: number; text: string }) => boolean]> = [
      ['10,000 levels deep', deepJson(10_000), (r) => (judged ? r.status === 400 && /deeper than/.test(r.text) : r.status >= 400 && r.status < 500)],
      ['over the size limit', huge, (r) => (judged ? r.status === 413 : r.status >= 400 && r.status < 500)],
      [
        'a lone surrogate',
        '{"name":"bad \\ud800 text","deep":{"list":["ok","\\udc00"]}}',
        (r) => (judged ? r.status === 400 && /surrogate/.test(r.text) : r.status >= 400 && r.status < 500),
      ],
      ['a key with a lone surrogate', '{"\\ud83d":1}', (r) => (judged ? r.status === 400 && /surrogate/.test(r.text) : r.status >= 400 && r.status < 500)],
      ['a number out of range', '{"name":"x","n":1e400}', (r) => (judged ? r.status === 400 && /finite/.test(r.text) : r.status >= 400 && r.status < 500)],
    ];
    for (const [what, body, ok] of cases) {
      const r = await send(o, path, headers, body);
      if (!ok(r)) wrong.push(`${name(o)} with ${what} → ${r.status} ${r.text.slice(0, 120)}`);
    }
  }
  assert.deepEqual(wrong, []);
  // A body at the limit of depth is still read (the answer is about its content, not its shape).
  const ok = await raw(p.httpUrl, 'POST', '/api/v1/homes', {
    headers: { ...bearer(p.token), 'content-type': 'application/json' },
    body: `{"name":"h","timezone":"UTC","x":${'['.repeat(63)}${']'.repeat(63)}}`,
  });
  assert.equal(ok.status, 400);
  assert.match(ok.text, /body\.x is not allowed/);
  // A paired surrogate (an emoji) is text like any other.
  const emoji = await raw(p.httpUrl, 'POST', '/api/v1/homes', {
    headers: { ...bearer(p.token), 'content-type': 'application/json' },
    body: '{"name":"Home \\ud83c\\udfe0","timezone":"UTC"}',
  });
  assert.equal(emoji.status, 201, emoji.text);
  assert.equal(emoji.body.name, 'Home 🏠');
});
