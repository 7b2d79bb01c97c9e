import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseQuery, QueryError, countByProblem } from './fleet-query.ts';

const NOW = Date.parse('2026-12-06T12:00:00Z');
const DAY = 86_400_000;

test('the example of the issue parses into one AND of five conditions', () => {
  const e = parseQuery('product:light AND online:false AND firmware<1.2 AND tag.site:berlin AND lastSeen<-7d', NOW);
  assert.equal(e.kind, 'and');
  assert.deepEqual(
    (e as any).items.map((t: any) => [t.field, t.tag, t.op, t.value]),
    [
      ['product', undefined, '=', { type: 'string', value: 'light', prefix: false }],
      ['online', undefined, '=', { type: 'bool', value: false }],
      ['firmware', undefined, '<', { type: 'version', value: '1.2' }],
      ['tag', 'site', '=', { type: 'string', value: 'berlin', prefix: false }],
      ['lastSeen', undefined, '<', { type: 'time', value: NOW - 7 * DAY }],
    ],
  );
});

test('OR, NOT, parentheses, juxtaposition, quotes, prefixes, none and dates', () => {
  const e: any = parseQuery('(product:light OR product:plug) NOT disabled:true name:"Hall \\"A\\"" id:d_* parent:none lastSeen>=2026-12-01T08:00:00Z', NOW);
  assert.equal(e.kind, 'and');
  assert.equal(e.items[0].kind, 'or');
  assert.equal(e.items[1].kind, 'not');
  assert.deepEqual(e.items[2].value, { type: 'string', value: 'Hall "A"', prefix: false });
  assert.deepEqual(e.items[3].value, { type: 'string', value: 'd_', prefix: true });
  assert.deepEqual(e.items[4].value, { type: 'none' });
  assert.equal(e.items[5].value.value, Date.parse('2026-12-01T08:00:00Z'));
  assert.equal((parseQuery('product:a or hwid:d') as any).kind, 'or', 'keywords in any case');
  assert.equal((parseQuery('tag.site:*') as any).value.type, 'any');
  assert.equal((parseQuery('createdAt>2026-01-01') as any).value.value, Date.parse('2026-01-01T00:00:00Z'));
});

test('syntax errors name the position and the problem', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['colour:red', 1, /unknown field "colour"; fields are id, name, product/],
    ['product:', 9, /expected a value after "product:"/],
    ['product light', 9, /expected an operator/],
    ['(product:light', 15, /expected "\)" to close the "\(" at position 1/],
    ['product:light)', 14, /unexpected "\)"/],
    ['online:maybe', 8, /online is true or false, not "maybe"/],
    ['firmware<1..2', 10, /is not a version/],
    ['lastSeen<yesterday', 10, /lastSeen takes a time/],
    ['product<light', 8, /"<" does not apply to product/],
    ['name:"open', 6, /quoted value is not closed/],
    ['product:light AND', 18, /expected a condition/],
    ['', 1, /the query is empty/],
    ['OR product:a', 1, /expected a condition before OR/],
    ['tag.bad key:x', 9, /expected an operator/],
    ['product:a # b', 11, /unexpected character "#"/],
    ['createdAt:none', 11, /always has a value/],
    ['name:a*b', 6, /a \* may only end a value/],
    ['()', 2, /empty parentheses/],
    ['product!light', 8, /expected "!="/],
  ];
  for (const [q, pos, re] of cases) {
    assert.throws(
      () => parseQuery(q, NOW),
      (err: unknown) => {
        assert.ok(err instanceof QueryError, `${q}: ${String(err)}`);
        assert.equal(err.position, pos, `${q}: ${err.message}`);
        assert.match(err.problem, re, q);
        return true;
      },
    );
  }
  assert.throws(() => parseQuery('x'.repeat(3000)), /longer than 2000/);
  assert.throws(() => parseQuery(`${'('.repeat(20)}product:a${')'.repeat(20)}`), /nest deeper/);
});

test('countBy takes the listed fields and tags', () => {
  assert.equal(countByProblem('firmware'), undefined);
  assert.equal(countByProblem('tag.site'), undefined);
  assert.match(countByProblem('name')!, /not one of product, firmware/);
});

test('attributes: text, prefixes, numbers compared as numbers, has and none', () => {
  const e: any = parseQuery('attr.site:berlin attr.floor>2 attr.floor<=10.5 attr.model:X2* attr.active:true attr.note:* attr.old:none attr.name:"Hall A"', NOW);
  assert.deepEqual(
    e.items.map((t: any) => [t.field, t.attr, t.op, t.value]),
    [
      ['attr', 'site', '=', { type: 'string', value: 'berlin', prefix: false }],
      ['attr', 'floor', '>', { type: 'number', value: 2 }],
      ['attr', 'floor', '<=', { type: 'number', value: 10.5 }],
      ['attr', 'model', '=', { type: 'string', value: 'X2', prefix: true }],
      ['attr', 'active', '=', { type: 'string', value: 'true', prefix: false }],
      ['attr', 'note', '=', { type: 'any' }],
      ['attr', 'old', '=', { type: 'none' }],
      ['attr', 'name', '=', { type: 'string', value: 'Hall A', prefix: false }],
    ],
  );
  assert.deepEqual((parseQuery('attr.floor>=-1') as any).value, { type: 'number', value: -1 });
  assert.equal((parseQuery('attr.site!=paris') as any).op, '!=');
});

test('groups: by id or by name, = and != only', () => {
  assert.deepEqual((parseQuery('group:fg_9x2k7m4p1q8r0t') as any).value, { type: 'group', ref: 'fg_9x2k7m4p1q8r0t' });
  const e: any = parseQuery('group:"Berlin pilots" AND NOT group:beta', NOW);
  assert.deepEqual(e.items[0].value, { type: 'group', ref: 'Berlin pilots' });
  assert.equal(e.items[1].kind, 'not');
  assert.equal((parseQuery('group!=beta') as any).op, '!=');
});

test('attribute and group errors name the position and the problem', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['attr.floor>high', 12, /compares numbers: "high" is not a number/],
    ['attr.:x', 6, /"" is not a searchable attribute key/],
    ['attr.floor<none', 12, /none goes with ":" or "!=" only/],
    ['attr.site:ber*lin', 11, /a \* may only end a value/],
    ['group<beta', 6, /"<" does not apply to group/],
    ['group:bet*', 7, /not a pattern/],
    ['group:""', 7, /1 to 200 characters/],
    ['colour:red', 1, /fields are id, .*group, tag.<key> and attr.<key>/],
  ];
  for (const [q, pos, re] of cases) {
    assert.throws(
      () => parseQuery(q, NOW),
      (err: unknown) => {
        assert.ok(err instanceof QueryError, `${q}: ${String(err)}`);
        assert.equal(err.position, pos, `${q}: ${err.message}`);
        assert.match(err.problem, re, q);
        return true;
      },
    );
  }
});
