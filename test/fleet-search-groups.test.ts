/**
 * Fleet search by the operator's attributes (`attr.<key>`) and by fleet group membership
 * (`group:<id or name>`) through HTTP (docs/fleet.md): text, prefixes, numbers, has / none;
 * static groups with subgroups, dynamic groups, groups whose queries name groups; jobs over such a
 * query; and the 400s / 403s that say what is wrong.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { signupUser } from './helpers/people.ts';

let p: Platform;
let d: string[] = [];

const q = (s: string) => `/api/v1/devices?q=${encodeURIComponent(s)}&limit=1000`;
const found = async (query: string): Promise<string[]> => {
  const r = await p.api('GET', q(query));
  assert.equal(r.status, 200, `${query}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.total, r.body.items.length);
  return r.body.items.map((x: { id: string }) => x.id).sort();
};
const ids = (...i: number[]) => i.map((n) => d[n]).sort();

async function group(body: Record<string, unknown>): Promise<string> {
  const r = await p.api('POST', '/api/v1/fleet/groups', body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

before(async () => {
  p = await startPlatform();
  const made = await p.api('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 7 }, (_, i) => ({ product: 'plug', name: `attr plug ${i}` })) });
  assert.equal(made.status, 201);
  d = made.body.items.map((x: { id: string }) => x.id);
  const attrs: Array<Record<string, unknown>> = [
    { site: 'berlin', floor: 1, active: true },
    { site: 'berlin', floor: 2, active: false, note: 'by the door' },
    { site: 'bern', floor: 3 },
    { site: 'paris', floor: 10, room: 'Hall A' },
    { site: 'paris', floor: '2' },
    { nested: { site: 'berlin' }, long: 'x'.repeat(300) },
    {},
  ];
  for (let i = 0; i < attrs.length; i++) assert.equal((await p.api('PATCH', `/api/v1/devices/${d[i]}`, { attributes: attrs[i] })).status, 200);
});

after(async () => {
  await p.stop();
});

test('attributes: text, prefixes, numbers as numbers, booleans, has and none', async () => {
  assert.deepEqual(await found('attr.site:berlin'), ids(0, 1));
  assert.deepEqual(await found('attr.site:ber*'), ids(0, 1, 2));
  assert.deepEqual(await found('attr.site!=berlin AND attr.site:*'), ids(2, 3, 4));
  assert.deepEqual(await found('attr.floor:2'), ids(1, 4), 'the number 2 and the string "2" both read 2');
  assert.deepEqual(await found('attr.floor>2'), ids(2, 3), 'numbers compare as numbers (10 > 2), strings do not take part');
  assert.deepEqual(await found('attr.floor>=1 AND attr.floor<=2'), ids(0, 1));
  assert.deepEqual(await found('attr.active:true'), ids(0));
  assert.deepEqual(await found('attr.note:*'), ids(1));
  assert.deepEqual(await found('attr.room:"Hall A"'), ids(3));
  assert.deepEqual(await found('attr.floor:none AND name:"attr plug*"'), []);
  assert.deepEqual(await found('attr.floor:none AND name:attr*'), ids(5, 6));
  assert.deepEqual(await found('attr.nested:* OR attr.long:*'), [], 'objects and long strings are kept, not searchable');
  assert.deepEqual(await found('attr.site:paris OR (attr.site:berlin AND attr.floor>1)'), ids(1, 3, 4));
  // A change is searchable at once; a removed attribute is gone; a deleted device is not found.
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d[0]}`, { attributes: { site: 'rome', floor: null } })).status, 200);
  assert.deepEqual(await found('attr.site:rome'), ids(0));
  assert.deepEqual(await found('attr.site:berlin'), ids(1));
  assert.deepEqual(await found('attr.floor:none AND name:attr*'), ids(0, 5, 6));
  assert.deepEqual((await p.device(d[0])).attributes, { site: 'rome', active: true });
  assert.equal((await p.api('PATCH', `/api/v1/devices/${d[0]}`, { attributes: { site: 'berlin', floor: 1 } })).status, 200);
});

test('groups: static with subgroups, dynamic, by id or name, negated, and groups naming groups', async () => {
  const pilots = await group({ name: 'Attr pilots' });
  assert.equal((await p.api('POST', `/api/v1/fleet/groups/${pilots}/devices`, { deviceIds: [d[0], d[5]] })).status, 200);
  const late = await group({ name: 'Attr pilots late', parentId: pilots });
  assert.equal((await p.api('POST', `/api/v1/fleet/groups/${late}/devices`, { deviceIds: [d[6]] })).status, 200);
  await group({ name: 'Attr pilots paris', parentId: pilots, query: 'attr.site:paris AND attr.floor>5' });
  const upper = await group({ name: 'Upper floors', query: 'attr.floor>=2' });

  assert.deepEqual(await found(`group:${pilots}`), ids(0, 3, 5, 6), "its members, its static subgroup's and its dynamic subgroup's matches");
  assert.deepEqual(await found('group:"Attr pilots"'), ids(0, 3, 5, 6), 'by name');
  assert.deepEqual(await found(`group:${late}`), ids(6));
  assert.deepEqual(await found(`group:${upper}`), ids(1, 2, 3));
  assert.deepEqual(await found('group:"Upper floors" AND attr.site:ber*'), ids(1, 2));
  assert.deepEqual(await found(`name:attr* AND NOT group:${pilots}`), ids(1, 2, 4));
  assert.deepEqual(await found(`name:attr* AND group!=${pilots}`), ids(1, 2, 4));
  assert.deepEqual(await found(`group:${late} OR group:"Upper floors"`), ids(1, 2, 3, 6));
  // A dynamic group may name groups in its query.
  const both = await group({ name: 'Pilots upstairs', query: 'group:"Attr pilots" AND group:"Upper floors"' });
  assert.deepEqual(await found(`group:${both}`), ids(3));
  // The group's own device list and a job over such a query agree with the search.
  const list = await p.api('GET', `/api/v1/fleet/groups/${both}/devices`);
  assert.deepEqual(list.body.items.map((x: any) => x.id).sort(), ids(3));
  const job = await p.api('POST', '/api/v1/fleet/jobs', {
    spec: { kind: 'tags', tags: { pilot: 'yes' } },
    target: { query: 'group:"Attr pilots"' },
    rate: 100,
  });
  assert.equal(job.status, 201, JSON.stringify(job.body));
  assert.equal(job.body.total, 4);
  await eventually(async () => (await p.api('GET', `/api/v1/fleet/jobs/${job.body.id}`)).body.status === 'done', 5000, 'the job');
  assert.deepEqual(await found('tag.pilot:yes'), ids(0, 3, 5, 6));
  // Leaving the group is seen at once.
  assert.equal((await p.api('DELETE', `/api/v1/fleet/groups/${pilots}/devices/${d[5]}`)).status, 204);
  assert.deepEqual(await found(`group:${pilots}`), ids(0, 3, 6));
});

test('unknown groups, groups that name themselves and bad attribute values are 400s; home users get 403', async () => {
  await group({ name: 'Cycle A', query: 'group:"Cycle B"' });
  await group({ name: 'Cycle B', query: 'product:plug AND group:"Cycle A"' });
  await group({ name: 'Broken', query: 'group:gone' });
  const cases: Array<[string, RegExp]> = [
    ['product:plug AND group:nope', /querystring\.q: at position 18: fleet group "nope" does not exist/],
    ['name:x* group:"Cycle A"', /at position 9: fleet group "Cycle A" is named by its own query \(Cycle A → Cycle B → Cycle A\)/],
    ['group:Broken', /at position 1: fleet group "gone" \(in the query of group "Broken"\) does not exist/],
    ['attr.floor>high', /at position 12: ">" compares numbers: "high" is not a number/],
    ['attr.bad key:1', /expected an operator/],
  ];
  for (const [query, re] of cases) {
    const r = await p.api('GET', q(query));
    assert.equal(r.status, 400, `${query}: ${JSON.stringify(r.body)}`);
    assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.match(r.body.detail, re, query);
  }
  const unknown = await p.api('GET', q('product:plug AND group:nope'));
  assert.equal(unknown.body.position, 18);
  // A job over such a query is refused and nothing is made.
  const before = (await p.api('GET', '/api/v1/fleet/jobs')).body.items.length;
  const job = await p.api('POST', '/api/v1/fleet/jobs', { spec: { kind: 'disable' }, target: { query: 'group:nope' } });
  assert.equal(job.status, 400, JSON.stringify(job.body));
  assert.match(job.body.detail, /^body\.target\.query: at position 1: fleet group "nope" does not exist/);
  assert.equal((await p.api('GET', '/api/v1/fleet/jobs')).body.items.length, before);
  // Attributes and groups are the operator's.
  const ana = await signupUser(p, 'ana@attr-search.test');
  for (const query of ['attr.site:berlin', 'group:"Upper floors"']) {
    const r = await ana.api('GET', `/devices?q=${encodeURIComponent(query)}`);
    assert.equal(r.status, 403, query);
  }
});
