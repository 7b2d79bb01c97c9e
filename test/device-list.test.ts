/**
 * Device lists through HTTP: a page (`GET /api/v1/devices`, a hub's children, a home's devices)
 * shows each device exactly as `GET /api/v1/devices/{id}` does (name and room in its home,
 * presence, a sub-device disabled with its hub), and costs a constant number of store queries
 * whatever its size (read from /metrics), not one or more per device.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { startPlatform, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser } from './helpers/people.ts';

let p: Platform;
let ana: TestUser;
let home: string;
let hubId: string;
const clients: MqttClient[] = [];

/** The fields of a summary, as the list shows them. */
const SUMMARY = ['id', 'product', 'name', 'parentId', 'hwid', 'pairingCode', 'createdAt', 'homeId', 'roomId', 'online', 'lastSeen', 'disabled'];
const pick = (x: any) => Object.fromEntries(SUMMARY.map((k) => [k, x[k]]));

before(async () => {
  p = await startPlatform();
  ana = await signupUser(p, 'ana-lists@example.com');
  home = (await ana.api('POST', '/homes', { name: 'List home', timezone: 'Europe/Berlin' })).body.id;
  const room = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Hall' })).body.id;
  // A hub with three sub-devices, claimed into the home and then disabled by the operator.
  const hub = await p.provision('hub', 'list hub');
  hubId = hub.id;
  for (let i = 0; i < 3; i++) await p.provision('light', `list child ${i}`, hub.id);
  assert.equal((await ana.api('POST', `/homes/${home}/devices`, { pairingCode: hub.pairingCode })).status, 201);
  // Two plugs in the home, one named and in a room, one online.
  const a = await p.provision('plug', 'list plug a');
  assert.equal((await ana.api('POST', `/homes/${home}/devices`, { pairingCode: a.pairingCode, roomId: room, name: 'Coffee' })).status, 201);
  const b = await p.provision('plug', 'list plug b');
  assert.equal((await ana.api('POST', `/homes/${home}/devices`, { pairingCode: b.pairingCode })).status, 201);
  clients.push(await p.connect(b.id, b.secret));
  // And many devices in no home.
  const made = await p.api('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 120 }, (_, i) => ({ product: 'light', name: `list light ${i}` })) });
  assert.equal(made.status, 201);
  assert.equal((await p.api('PATCH', `/api/v1/devices/${hub.id}`, { disabled: true })).status, 200);
  await p.until(b.id, (d) => d.online, 'plug b online');
});

after(async () => {
  for (const c of clients) await c.endAsync();
  await p.stop();
});

async function sameAsOneByOne(items: any[], get: (id: string) => Promise<any>): Promise<void> {
  for (const item of items) assert.deepEqual(pick(item), pick(await get(item.id)), `the list shows ${item.id} as its own page does`);
}

test('a page of the list shows each device as GET /devices/{id} does (operator and home user)', async () => {
  const all = await p.api('GET', '/api/v1/devices?limit=1000');
  assert.equal(all.status, 200);
  assert.ok(all.body.items.length >= 126);
  await sameAsOneByOne(all.body.items, async (id) => (await p.api('GET', `/api/v1/devices/${id}`)).body);
  const byName = new Map(all.body.items.map((x: any) => [x.name, x]));
  assert.equal((byName.get('Coffee') as any)?.roomId !== null, true, 'the home name and room');
  assert.equal((byName.get('list plug b') as any)?.online, true);
  assert.equal((byName.get('list child 1') as any)?.disabled, true, 'a sub-device of a disabled hub is disabled');
  const children = await p.api('GET', `/api/v1/devices/${hubId}/children`);
  assert.equal(children.body.items.length, 3);
  assert.ok(children.body.items.every((c: any) => c.disabled && c.homeId === home));
  await sameAsOneByOne(children.body.items, async (id) => (await p.api('GET', `/api/v1/devices/${id}`)).body);
  // The home's people see the same through their lists.
  const mine = await ana.api('GET', '/devices?limit=100');
  assert.equal(mine.body.items.length, 6);
  await sameAsOneByOne(mine.body.items, async (id) => (await ana.api('GET', `/devices/${id}`)).body);
  const homeList = await ana.api('GET', `/homes/${home}/devices`);
  assert.equal(homeList.body.items.length, 6);
  await sameAsOneByOne(homeList.body.items, async (id) => (await ana.api('GET', `/devices/${id}`)).body);
});

/** Store statements run so far, from /metrics. */
async function statements(): Promise<number> {
  const text = await (await fetch(`${p.httpUrl}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^hearth_db_query_duration_seconds_count\{[^}]*\} (\d+)/gm)) n += Number(m[1]);
  return n;
}

test('a page costs a constant number of store queries, whatever its size', async () => {
  const cost = async (path: string) => {
    const before = await statements();
    const r = await p.api('GET', path);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return { n: (await statements()) - before, items: r.body.items.length };
  };
  const small = await cost('/api/v1/devices?limit=5&offset=5');
  const big = await cost('/api/v1/devices?limit=1000&offset=10');
  assert.ok(big.items >= 110, `${big.items} devices`);
  // A few queries for the page, its placements, presence and hubs (others of the node may run meanwhile).
  assert.ok(big.n <= small.n + 6 && big.n <= 12, `a page of ${big.items} took ${big.n} queries, a page of ${small.items} ${small.n}`);
  const search = await cost(`/api/v1/devices?q=${encodeURIComponent('product:light')}&limit=1000&total=false`);
  assert.ok(search.items >= 120 && search.n <= 12, `a search page of ${search.items} took ${search.n} queries`);
});
