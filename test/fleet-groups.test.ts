/**
 * Fleet groups through HTTP (docs/fleet.md): static groups (devices by id, a device in many, one
 * level of nesting) and dynamic groups (a saved query), and what a deleted device leaves behind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

const ids = (r: { body: { items: Array<{ id: string }> } }) => r.body.items.map((x) => x.id).sort();

test('static and dynamic groups, nested one level; their devices paged by cursor', async () => {
  const lights = await Promise.all([1, 2, 3].map((i) => p.provision('light', `light ${i}`)));
  const plug = await p.provision('plug', 'plug');
  for (const l of lights.slice(0, 2)) assert.equal((await p.api('PATCH', `/api/v1/devices/${l.id}`, { tags: { site: 'berlin' } })).status, 200);

  const pilots = await p.api('POST', '/api/v1/fleet/groups', { name: 'Pilots' });
  assert.equal(pilots.status, 201, JSON.stringify(pilots.body));
  assert.equal(pilots.body.type, 'static');
  const berlin = await p.api('POST', '/api/v1/fleet/groups', { name: 'Berlin lights', query: 'product:light AND tag.site:berlin', parentId: pilots.body.id });
  assert.equal(berlin.status, 201, JSON.stringify(berlin.body));
  assert.equal(berlin.body.type, 'dynamic');
  const early = await p.api('POST', '/api/v1/fleet/groups', { name: 'Early', parentId: pilots.body.id });

  assert.deepEqual((await p.api('POST', `/api/v1/fleet/groups/${pilots.body.id}/devices`, { deviceIds: [plug.id] })).body, { added: 1 });
  // A device in many groups; adding it again changes nothing.
  assert.deepEqual((await p.api('POST', `/api/v1/fleet/groups/${early.body.id}/devices`, { deviceIds: [plug.id, lights[2].id] })).body, { added: 2 });
  assert.deepEqual((await p.api('POST', `/api/v1/fleet/groups/${early.body.id}/devices`, { deviceIds: [plug.id] })).body, { added: 0 });

  assert.deepEqual(ids(await p.api('GET', `/api/v1/fleet/groups/${berlin.body.id}/devices`)), [lights[0].id, lights[1].id].sort());
  // The parent holds its own members and its subgroups' devices.
  const all = await p.api('GET', `/api/v1/fleet/groups/${pilots.body.id}/devices`);
  assert.equal(all.status, 200, JSON.stringify(all.body));
  assert.deepEqual(ids(all), [plug.id, ...lights.map((l) => l.id)].sort());
  assert.equal(all.body.total, 4);
  const first = await p.api('GET', `/api/v1/fleet/groups/${pilots.body.id}/devices?limit=3`);
  assert.equal(first.body.items.length, 3);
  const second = await p.api('GET', `/api/v1/fleet/groups/${pilots.body.id}/devices?limit=3&cursor=${first.body.nextCursor}`);
  assert.equal(second.body.items.length, 1);
  assert.equal(second.body.nextCursor, null);
  assert.deepEqual(
    [...first.body.items, ...second.body.items].map((x: any) => x.id),
    ids(all),
  );

  // A dynamic group follows its query: a new matching device is in it at once.
  const l4 = await p.provision('light', 'light 4');
  assert.equal((await p.api('PATCH', `/api/v1/devices/${l4.id}`, { tags: { site: 'berlin' } })).status, 200);
  assert.equal((await p.api('GET', `/api/v1/fleet/groups/${berlin.body.id}/devices`)).body.total, 3);
  const changed = await p.api('PATCH', `/api/v1/fleet/groups/${berlin.body.id}`, { query: 'product:light AND tag.site:paris' });
  assert.equal(changed.status, 200);
  assert.equal((await p.api('GET', `/api/v1/fleet/groups/${berlin.body.id}/devices`)).body.total, 0);

  // Deleting a device takes it out of every group.
  assert.equal((await p.api('DELETE', `/api/v1/devices/${plug.id}`)).status, 204);
  assert.deepEqual(ids(await p.api('GET', `/api/v1/fleet/groups/${early.body.id}/devices`)), [lights[2].id]);
  assert.equal((await p.api('GET', `/api/v1/fleet/groups/${pilots.body.id}/devices`)).body.total, 1);

  // Out of a group, and the group itself.
  assert.equal((await p.api('DELETE', `/api/v1/fleet/groups/${early.body.id}/devices/${lights[2].id}`)).status, 204);
  assert.equal((await p.api('DELETE', `/api/v1/fleet/groups/${early.body.id}/devices/${lights[2].id}`)).status, 404);
  assert.equal((await p.api('DELETE', `/api/v1/fleet/groups/${pilots.body.id}`)).status, 409, 'it has subgroups');
  assert.equal((await p.api('DELETE', `/api/v1/fleet/groups/${early.body.id}`)).status, 204);
  assert.equal((await p.api('GET', `/api/v1/fleet/groups/${early.body.id}`)).status, 404);
  assert.deepEqual(
    (await p.api('GET', '/api/v1/fleet/groups')).body.items.map((g: any) => g.name),
    ['Berlin lights', 'Pilots'],
  );
});

test('bad groups are refused and change nothing', async () => {
  const top = (await p.api('POST', '/api/v1/fleet/groups', { name: 'Top' })).body;
  const sub = (await p.api('POST', '/api/v1/fleet/groups', { name: 'Sub', parentId: top.id })).body;
  const dyn = (await p.api('POST', '/api/v1/fleet/groups', { name: 'Dyn', query: 'online:true' })).body;
  const cases: Array<[unknown, number, RegExp]> = [
    [{ name: 'Deep', parentId: sub.id }, 400, /nest one level only/],
    [{ name: 'Under dynamic', parentId: dyn.id }, 400, /only a static group has subgroups/],
    [{ name: 'Bad query', query: 'product:light AND' }, 400, /body\.query: at position 18/],
    [{ name: 'Unknown field', query: 'colour:red' }, 400, /unknown field "colour"/],
    [{ name: 'Top' }, 409, /exists already/],
    [{ name: 'No parent', parentId: 'fg_nope' }, 400, /does not exist/],
  ];
  for (const [body, status, re] of cases) {
    const r = await p.api('POST', '/api/v1/fleet/groups', body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.match(r.body.detail, re);
  }
  const d = await p.provision('plug');
  const toDyn = await p.api('POST', `/api/v1/fleet/groups/${dyn.id}/devices`, { deviceIds: [d.id] });
  assert.equal(toDyn.status, 409);
  const unknown = await p.api('POST', `/api/v1/fleet/groups/${top.id}/devices`, { deviceIds: [d.id, 'd_doesnotexist0'] });
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.detail, /d_doesnotexist0.*nothing was added/);
  assert.equal((await p.api('GET', `/api/v1/fleet/groups/${top.id}/devices`)).body.total, 0);
  assert.equal((await p.api('GET', `/api/v1/fleet/groups/${top.id}/devices?cursor=%%%`)).status, 400);
  assert.equal((await p.api('GET', '/api/v1/fleet/groups/fg_nope/devices')).status, 404);
});

test("a group's devices with a bounded total (totalLimit), static and dynamic", async () => {
  const plugs = await Promise.all([1, 2, 3].map((i) => p.provision('plug', `bounded plug ${i}`)));
  for (const d of plugs) assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: { lot: 'bounded' } })).status, 200);
  const dynamic = await p.api('POST', '/api/v1/fleet/groups', { name: 'Bounded lot', query: 'tag.lot:bounded' });
  const fixed = await p.api('POST', '/api/v1/fleet/groups', { name: 'Bounded static' });
  assert.equal((await p.api('POST', `/api/v1/fleet/groups/${fixed.body.id}/devices`, { deviceIds: plugs.map((d) => d.id) })).status, 200);
  for (const g of [dynamic.body.id, fixed.body.id]) {
    const exact = await p.api('GET', `/api/v1/fleet/groups/${g}/devices`);
    assert.deepEqual([exact.body.total, 'totalCapped' in exact.body], [3, false], 'without totalLimit the total is exact');
    const capped = await p.api('GET', `/api/v1/fleet/groups/${g}/devices?totalLimit=2&limit=1`);
    assert.equal(capped.status, 200, JSON.stringify(capped.body));
    assert.deepEqual([capped.body.total, capped.body.totalCapped, capped.body.items.length], [2, true, 1]);
    const under = await p.api('GET', `/api/v1/fleet/groups/${g}/devices?totalLimit=3`);
    assert.deepEqual([under.body.total, under.body.totalCapped, under.body.items.length], [3, false, 3]);
    const bad = await p.api('GET', `/api/v1/fleet/groups/${g}/devices?totalLimit=0`);
    assert.equal(bad.status, 400);
    assert.match(bad.body.detail, /totalLimit/);
  }
});
