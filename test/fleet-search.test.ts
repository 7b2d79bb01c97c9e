/**
 * Fleet search through HTTP (docs/fleet.md): the query language over real devices (their
 * presence, the firmware they report over MQTT, the operator's tags), cursor pagination, sort,
 * counts, and the 400s that name what is wrong.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser } from './helpers/people.ts';
import { DeviceSearch } from '../src/devices/device-search.ts';
import { parseQuery } from '../src/devices/fleet-query.ts';

let p: Platform;
const hubs: Record<string, string> = {};
let plugs: string[] = [];

const search = async (query: string) => p.api('GET', `/api/v1/devices?${query}`);
const q = (s: string) => `q=${encodeURIComponent(s)}`;
const ids = (r: { body: { items: Array<{ id: string }> } }) => r.body.items.map((x) => x.id).sort();

before(async () => {
  p = await startPlatform();
  // Four hubs reporting firmware over MQTT, tagged by site; two stay connected.
  for (const [name, fw, site] of [
    ['h1', '1.0', 'berlin'],
    ['h2', '1.10', 'berlin'],
    ['h3', '1.2', 'paris'],
    ['h4', '2.0.1', 'berlin'],
  ]) {
    const d = await p.provision('hub', `hub ${name}`);
    hubs[name] = d.id;
    const c = await p.connect(d.id, d.secret);
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ firmware: fw }), { qos: 1 });
    assert.equal((await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: { site } })).status, 200);
    await eventually(async () => (await p.device(d.id)).firmware?.version === fw, 3000, `firmware of ${name}`);
    if (name === 'h1' || name === 'h3') await c.endAsync();
  }
  await p.until(hubs.h1, (x) => !x.online, 'h1 offline');
  await p.until(hubs.h3, (x) => !x.online, 'h3 offline');
  // h1 was last seen long ago (the store's clock is arranged: nothing in the API sets a past time),
  // after its last-seen times still in memory are written (they would overwrite this).
  await p.hearth.services.presence.flush();
  await p.hearth.db
    .updateTable('presence')
    .set({ last_seen: Date.now() - 10 * 86_400_000 })
    .where('device_id', '=', hubs.h1)
    .execute();
  const r = await p.api('POST', '/api/v1/devices/bulk', {
    items: Array.from({ length: 25 }, (_, i) => ({ product: 'plug', name: `plug ${String(i).padStart(2, '0')}` })),
  });
  assert.equal(r.status, 201);
  plugs = r.body.items.map((x: { id: string }) => x.id);
});
after(async () => {
  await p.stop();
});

test('the query of the issue, and its parts', async () => {
  const r = await search(q('product:hub AND online:false AND firmware<1.2 AND tag.site:berlin AND lastSeen<-7d'));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(ids(r), [hubs.h1]);
  assert.equal(r.body.total, 1);
  assert.equal(r.body.items[0].firmware, '1.0');
  assert.deepEqual(r.body.items[0].tags, { site: 'berlin' });

  assert.deepEqual(ids(await search(q('firmware<1.2'))), [hubs.h1].sort(), '1.10 is after 1.2');
  assert.deepEqual(ids(await search(q('firmware>=1.2'))), [hubs.h2, hubs.h3, hubs.h4].sort());
  assert.deepEqual(ids(await search(q('firmware:none product:hub'))), []);
  assert.equal((await search(q('firmware:none'))).body.total, 25);
  assert.deepEqual(ids(await search(q('online:true'))), [hubs.h2, hubs.h4].sort());
  assert.deepEqual(ids(await search(q('tag.site:berlin AND NOT online:true'))), [hubs.h1]);
  assert.deepEqual(ids(await search(q('tag.site:paris OR tag.site:ber*'))), Object.values(hubs).sort());
  assert.deepEqual(ids(await search(q('product:hub tag.site!=berlin'))), [hubs.h3]);
  assert.deepEqual(ids(await search(q('product:hub lastSeen>-1h'))), [hubs.h2, hubs.h3, hubs.h4].sort());
  assert.deepEqual(ids(await search(q('name:"hub h2"'))), [hubs.h2]);
  assert.deepEqual(ids(await search(q('name:hub* AND (tag.site:paris OR firmware>2)'))), [hubs.h3, hubs.h4].sort());
  assert.equal((await search(q('tag.site:none'))).body.total, 25);
  assert.equal((await search(`${q('createdAt<-1d')}`)).body.total, 0);
  // A disabled device is found as such; a deleted one is gone.
  assert.equal((await p.api('PATCH', `/api/v1/devices/${plugs[0]}`, { disabled: true })).status, 200);
  assert.deepEqual(ids(await search(q('disabled:true'))), [plugs[0]]);
  assert.equal((await p.api('PATCH', `/api/v1/devices/${plugs[0]}`, { disabled: false })).status, 200);
});

test('both ways of checking a tag (leading the search, or per device) find the same devices', async () => {
  const leading = new DeviceSearch({ db: p.hearth.db });
  const perDevice = new DeviceSearch({ db: p.hearth.db, selectiveTags: 0, countSelectiveTags: 0 });
  // A tag may lead a count (total, countBy) but not a page.
  const countsOnly = new DeviceSearch({ db: p.hearth.db, selectiveTags: 0 });
  for (const query of [
    'tag.site:berlin',
    'tag.site:berlin AND online:false',
    'NOT tag.site:paris AND product:hub',
    'tag.site:berlin OR firmware>2',
    'tag.site!=berlin product:hub',
  ]) {
    const run = async (s: DeviceSearch, totalLimit?: number) => {
      const r = await s.search({ expr: parseQuery(query), sort: 'id', desc: false, limit: 1000, total: true, totalLimit, countBy: 'product' });
      return { ids: r.items.map((d) => d.id), total: r.total, capped: r.totalCapped, counts: r.counts };
    };
    for (const totalLimit of [undefined, 2]) {
      const want = await run(perDevice, totalLimit);
      assert.deepEqual(await run(leading, totalLimit), want, query);
      assert.deepEqual(await run(countsOnly, totalLimit), want, query);
    }
  }
});

test('cursor pagination walks every match once, in the asked order', async () => {
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const r = await search(`${q('product:plug')}&sort=-name&limit=10${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.total, 25);
    seen.push(...r.body.items.map((x: { name: string }) => x.name));
    cursor = r.body.nextCursor;
    pages++;
  } while (cursor);
  assert.equal(pages, 3);
  assert.deepEqual(
    seen,
    Array.from({ length: 25 }, (_, i) => `plug ${String(24 - i).padStart(2, '0')}`),
  );
  const noTotal = await search(`${q('product:plug')}&limit=10&total=false`);
  assert.equal(noTotal.body.total, undefined, 'total=false skips the count');
  assert.equal(noTotal.body.items.length, 10);
  const byCreated = await search('sort=createdAt&limit=5');
  assert.equal(byCreated.body.items[0].id, hubs.h1, 'the first provisioned comes first');
  // the plain list keeps its shape
  const plain = await p.api('GET', '/api/v1/devices?product=hub');
  assert.equal(plain.body.total, 4);
  assert.equal(plain.body.nextCursor, undefined);
});

test('counts by a field', async () => {
  const byFw = await search(`${q('product:hub')}&countBy=firmware`);
  assert.deepEqual(byFw.body.counts.map((c: any) => [c.value, c.count]).sort(), [
    ['1.0', 1],
    ['1.10', 1],
    ['1.2', 1],
    ['2.0.1', 1],
  ]);
  const bySite = await search('countBy=tag.site&limit=1');
  assert.deepEqual(bySite.body.counts, [
    { value: null, count: 25 },
    { value: 'berlin', count: 3 },
    { value: 'paris', count: 1 },
  ]);
  const byOnline = await search('countBy=online&limit=1');
  assert.deepEqual(byOnline.body.counts, [
    { value: false, count: 27 },
    { value: true, count: 2 },
  ]);
  const byProduct = await search('countBy=product&limit=1');
  assert.deepEqual(byProduct.body.counts, [
    { value: 'plug', count: 25 },
    { value: 'hub', count: 4 },
  ]);
});

test('bad queries, cursors and counts are 400s that say what is wrong', async () => {
  const cases: Array<[string, RegExp]> = [
    [q('product:hub AND colour:red'), /querystring\.q: at position 17: unknown field "colour"/],
    [q('firmware<'), /at position 10: expected a value after "firmware<"/],
    [q('(product:hub'), /expected "\)" to close the "\(" at position 1/],
    [q('online:maybe'), /online is true or false, not "maybe"/],
    [q('lastSeen<last-week'), /lastSeen takes a time/],
    ['cursor=nonsense', /querystring\.cursor is not a cursor this API gave/],
    ['countBy=name', /countBy "name" is not one of/],
    [`${q('product:plug')}&offset=10`, /offset does not go with fleet search/],
    ['sort=colour', /sort/],
  ];
  for (const [query, re] of cases) {
    const r = await search(query);
    assert.equal(r.status, 400, `${query}: ${JSON.stringify(r.body)}`);
    assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.match(r.body.detail, re, query);
  }
  const r = await search(q('product:hub AND colour:red'));
  assert.equal(r.body.position, 17);
  const first = await search('sort=name&limit=2');
  const wrongSort = await search(`sort=-name&cursor=${first.body.nextCursor}`);
  assert.equal(wrongSort.status, 400);
  assert.match(wrongSort.body.detail, /was made for sort=name/);
});

test("people search only their own devices, and not by the operator's tags", async () => {
  const ana: TestUser = await signupUser(p, 'ana@search.test');
  const home = await ana.api('POST', '/homes', { name: 'Flat', timezone: 'Europe/Berlin' });
  const d = await p.provision('plug', 'ana plug');
  assert.equal((await ana.api('POST', `/homes/${home.body.id}/devices`, { pairingCode: d.pairingCode })).status, 201);
  const mine = await ana.api('GET', `/devices?${q('product:plug')}`);
  assert.equal(mine.status, 200);
  assert.deepEqual(ids(mine), [d.id]);
  assert.equal(mine.body.items[0].tags, undefined);
  const tags = await ana.api('GET', `/devices?${q('tag.site:berlin')}`);
  assert.equal(tags.status, 403);
});

test('totalLimit bounds the count: total at most the limit, totalCapped says whether more match', async () => {
  // Every plug, counted exactly (the earlier tests added one of a person's).
  const exact = await search(`${q('product:plug')}&limit=5`);
  const n: number = exact.body.total;
  assert.ok(n >= 25);
  assert.equal('totalCapped' in exact.body, false, 'without totalLimit, total is exact and there is no totalCapped');
  const capped = await search(`${q('product:plug')}&limit=5&totalLimit=10`);
  assert.equal(capped.status, 200, JSON.stringify(capped.body));
  assert.equal(capped.body.total, 10);
  assert.equal(capped.body.totalCapped, true);
  assert.equal(capped.body.items.length, 5, 'the page is the same');
  assert.ok(capped.body.nextCursor);
  for (const [limit, total] of [
    [n, n],
    [n + 1, n],
    [1_000_000, n],
  ]) {
    const r = await search(`${q('product:plug')}&limit=5&totalLimit=${limit}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([r.body.total, r.body.totalCapped], [total, false], `totalLimit=${limit}`);
  }
  assert.deepEqual(
    [(await search(`${q('product:plug')}&totalLimit=${n - 1}`)).body.total, (await search(`${q('product:plug')}&totalLimit=${n - 1}`)).body.totalCapped],
    [n - 1, true],
  );
  // Alone it makes a search of every device; countBy stays exact.
  const all = await search('totalLimit=3&limit=1&countBy=product');
  assert.deepEqual([all.body.total, all.body.totalCapped], [3, true]);
  assert.deepEqual(
    all.body.counts.find((c: { value: string }) => c.value === 'plug'),
    { value: 'plug', count: n },
  );
  const none = await search(`${q('product:nothing')}&totalLimit=10`);
  assert.deepEqual([none.body.total, none.body.totalCapped, none.body.items.length], [0, false, 0]);
});

test('a bad totalLimit is a 400 that says what is wrong', async () => {
  for (const [query, re] of [
    ['totalLimit=0', /totalLimit.*>= 1/],
    ['totalLimit=1000001', /totalLimit.*<= 1000000/],
    ['totalLimit=many', /totalLimit.*integer/],
    ['totalLimit=2.5', /totalLimit.*integer/],
    [`${q('product:plug')}&totalLimit=10&total=false`, /totalLimit bounds the total: it does not go with total=false/],
  ] as Array<[string, RegExp]>) {
    const r = await search(query);
    assert.equal(r.status, 400, `${query}: ${JSON.stringify(r.body)}`);
    assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.match(r.body.detail, re, query);
  }
});

test('a person bounds the count of their own devices the same way', async () => {
  const bo: TestUser = await signupUser(p, 'bo@search.test');
  const empty = await bo.api('GET', `/devices?${q('product:plug')}&totalLimit=5`);
  assert.equal(empty.status, 200, JSON.stringify(empty.body));
  assert.deepEqual([empty.body.total, empty.body.totalCapped], [0, false]);
  const home = await bo.api('POST', '/homes', { name: 'Loft', timezone: 'Europe/Berlin' });
  for (const name of ['bo plug 1', 'bo plug 2']) {
    const d = await p.provision('plug', name);
    assert.equal((await bo.api('POST', `/homes/${home.body.id}/devices`, { pairingCode: d.pairingCode })).status, 201);
  }
  const mine = await bo.api('GET', `/devices?${q('product:plug')}&totalLimit=1`);
  assert.deepEqual([mine.body.total, mine.body.totalCapped, mine.body.items.length], [1, true, 2]);
});
