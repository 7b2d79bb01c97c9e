import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findBadInput, hasLoneSurrogate } from './input-bounds.ts';
import { jsonDepthExceeded, MAX_BODY_JSON_DEPTH as MAX_JSON_DEPTH } from '../../core/json-limits.ts';
import { authorize, declarationProblem, Auth } from './route-auth.ts';

const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

test('JSON depth is measured on the text: brackets inside strings and escaped quotes do not count', () => {
  assert.equal(jsonDepthExceeded(nest(MAX_JSON_DEPTH)), undefined);
  assert.equal(jsonDepthExceeded(nest(MAX_JSON_DEPTH + 1)), MAX_JSON_DEPTH + 1);
  assert.equal(jsonDepthExceeded(`{"a":"${'['.repeat(500)}","b":"\\"[[[[","c":[{}]}`, 3), undefined);
  assert.equal(jsonDepthExceeded('{"a":{"b":{"c":{}}}}', 3), 4);
  // Siblings do not add up: depth is nesting, not count.
  assert.equal(jsonDepthExceeded(`[${Array(10_000).fill('[]').join(',')}]`, 2), undefined);
  // A million levels: no recursion, no stack to overflow.
  assert.equal(jsonDepthExceeded(nest(1_000_000)), MAX_JSON_DEPTH + 1);
});

test('lone surrogates and non-finite numbers are found anywhere, keys included; paired surrogates are text', () => {
  assert.equal(hasLoneSurrogate('Home 🏠'), false);
  assert.equal(hasLoneSurrogate('a\ud800b'), true);
  assert.equal(hasLoneSurrogate('\udc00'), true);
  assert.equal(hasLoneSurrogate('\ud83c'), true);
  assert.deepEqual(findBadInput({ a: [1, { b: 'ok' }, { c: 'x\ud800' }] }, 'body'), {
    field: 'body.a[2].c',
    message: 'contains an unpaired UTF-16 surrogate (not valid Unicode text)',
  });
  assert.equal(findBadInput({ 'k\udfff': 1 }, 'body')?.field, 'body');
  assert.equal(findBadInput({ limit: Infinity }, 'querystring')?.field, 'querystring.limit');
  assert.equal(findBadInput([NaN], 'body')?.message, 'must be a finite number');
  assert.equal(findBadInput({ ok: ['Home 🏠', 1e300, -0, null, true] }, 'body'), undefined);
});

test('route declarations: unknown or incomplete ones are refused; operator routes check role, homes and scopes', () => {
  assert.match(declarationProblem(undefined)!, /no config\.auth/);
  assert.match(declarationProblem(true)!, /unknown/);
  assert.match(declarationProblem({ who: 'operator', scopes: [] })!, /no scope/);
  assert.equal(declarationProblem(Auth.operator('audit:read')), undefined);
  assert.match(declarationProblem(Auth.operator('devices:read'))!, /outside products:manage/, 'a home-world scope cannot hold an operator route');
  const op = { userId: 'u', email: 'e', role: 'operator' as const };
  const route = Auth.operator('gateway:read', 'gateway:manage');
  assert.doesNotThrow(() => authorize(op, route));
  assert.doesNotThrow(() => authorize({ ...op, keyId: 'k', scopes: ['gateway:read'] }, route));
  assert.throws(() => authorize({ ...op, keyId: 'k', scopes: ['devices:read', 'audit:read'] }, route), /gateway:read or gateway:manage/);
  assert.throws(() => authorize({ ...op, keyId: 'k', scopes: ['gateway:manage'], homeIds: ['h'] }, route), /limited to some homes/);
  assert.throws(() => authorize({ userId: 'u', email: 'e', role: 'user' }, route), /for the operator/);
  assert.throws(() => authorize({ ...op, keyId: 'k', scopes: ['devices:read'] }, Auth.password), /sign in with a password/);
  assert.doesNotThrow(() => authorize({ userId: 'u', email: 'e', role: 'user', keyId: 'k', scopes: ['homes:read'] }, Auth.caller()));
});
