/**
 * The fleet in cluster mode (PostgreSQL, NATS, two nodes as processes): disabling or deleting a
 * device through one node closes its connection on the other and refuses it on both; a bulk job
 * made through either node is run once, each device once, and its live `job` events reach the
 * streams of both nodes.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { adminApi as client, connectMqtt as connect, startCluster, type Cluster } from './helpers/cluster.ts';
import { ADMIN, eventually } from './helpers/platform.ts';

/** The operator's live stream of `job` events on one node (WebSocket). */
async function jobEvents(httpUrl: string): Promise<{ events: any[]; ws: WebSocket }> {
  const login = await fetch(`${httpUrl}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(ADMIN) });
  const { token } = (await login.json()) as { token: string };
  const ws = new WebSocket(`${httpUrl.replace('http', 'ws')}/api/v1/stream?types=job`, { headers: { authorization: `Bearer ${token}` } });
  const events: any[] = [];
  ws.on('message', (buf) => {
    const e = JSON.parse(buf.toString());
    if (e.type === 'job') events.push(e);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { events, ws };
}

function refusal(url: string, dev: { id: string; secret: string }): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0, connectTimeout: 5000 });
    c.once('connect', () => {
      c.end(true);
      reject(new Error('accepted'));
    });
    c.once('error', (err) => {
      c.end(true);
      resolve((err as { code?: number }).code);
    });
  });
}

describe('the fleet in cluster mode', {
  timeout: 120_000,
  skip: process.env.HEARTH_TEST_STORE === 'postgres' ? 'the cluster runs on PostgreSQL in both passes' : false,
}, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 2, env: { HEARTH_SHARDS: '8', HEARTH_HISTORY_FLUSH_MS: '50', HEARTH_NODE_TIMEOUT_MS: '3000' } });
  });
  after(async () => {
    await cluster?.stop();
  });

  test('disabled or deleted through one node, the device is cut off on the other and refused on both', async () => {
    const [a, b] = cluster.nodes;
    const apiA = await client(a.httpUrl);
    const d = (await apiA('POST', '/api/v1/devices', { product: 'plug', name: 'cluster plug' })).body;
    const urlB = `mqtt://127.0.0.1:${b.mqttPort}`;
    const urlA = `mqtt://127.0.0.1:${a.mqttPort}`;
    const c = await connect(urlB, d);
    await eventually(async () => (await apiA('GET', `/api/v1/devices/${d.id}`)).body.online, 5000, 'online');
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    assert.equal((await apiA('PATCH', `/api/v1/devices/${d.id}`, { disabled: true })).status, 200);
    await closed;
    const dev = await eventually(
      async () => {
        const r = (await apiA('GET', `/api/v1/devices/${d.id}`)).body;
        return r.online === false ? r : undefined;
      },
      5000,
      'offline',
    );
    assert.equal(dev.presence.reason, 'disabled');
    assert.equal(await refusal(urlA, d), 5);
    assert.equal(await refusal(urlB, d), 5);

    assert.equal((await apiA('PATCH', `/api/v1/devices/${d.id}`, { disabled: false })).status, 200);
    const again = await connect(urlB, d);
    const gone = new Promise<void>((resolve) => again.once('close', () => resolve()));
    assert.equal((await apiA('DELETE', `/api/v1/devices/${d.id}`)).status, 204);
    await gone;
    assert.equal(await refusal(urlB, d), 4);
    const apiB = await client(b.httpUrl);
    assert.equal((await apiB('GET', `/api/v1/devices/${d.id}`)).status, 404);
  });

  test('a bulk job made through either node runs once, each device once', async () => {
    const [a, b] = cluster.nodes;
    const apiA = await client(a.httpUrl);
    const apiB = await client(b.httpUrl);
    const streams = [await jobEvents(a.httpUrl), await jobEvents(b.httpUrl)];
    const made = await apiA('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 12 }, (_, i) => ({ product: 'light', name: `cluster job ${i}` })) });
    assert.equal(made.status, 201);
    const jobs: string[] = [];
    for (const [api, tag] of [
      [apiA, 'a'],
      [apiB, 'b'],
    ] as const) {
      const ok = await api('POST', '/api/v1/fleet/jobs', {
        spec: { kind: 'tags', tags: { [`via-${tag}`]: 'yes' } },
        target: { deviceIds: made.body.items.map((x: any) => x.id) },
        rate: 20,
      });
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      jobs.push(ok.body.id);
    }
    for (const id of jobs) {
      const done = await eventually(
        async () => {
          const r = (await apiB('GET', `/api/v1/fleet/jobs/${id}`)).body;
          return r.status === 'done' ? r : undefined;
        },
        20_000,
        `job ${id}`,
      );
      assert.deepEqual(done.progress, { pending: 0, running: 0, ok: 12, failed: 0, cancelled: 0 });
    }
    const tagged = await apiA('GET', `/api/v1/devices?q=${encodeURIComponent('tag.via-a:yes tag.via-b:yes')}`);
    assert.equal(tagged.body.total, 12);
    // Each node's stream saw each job from made to done, once, whichever node ran it.
    for (const s of streams) {
      for (const id of jobs) {
        const changes: string[] = await eventually(
          () => {
            const c = s.events.filter((e) => e.data.job === id).map((e) => e.data.change);
            return c.includes('done') ? c : undefined;
          },
          5000,
          `the done event of ${id}`,
        );
        assert.equal(changes[0], 'created');
        assert.equal(changes.filter((c: string) => c === 'done').length, 1);
        assert.ok(changes.includes('started') && changes.includes('progress'), changes.join(','));
      }
      s.ws.terminate();
    }
  });

  test("a product's model changed through one node applies on both: neither keeps the old one cached", async () => {
    const [a, b] = cluster.nodes;
    const apiA = await client(a.httpUrl);
    const apiB = await client(b.httpUrl);
    const model = { properties: [{ id: 'power', type: 'number', access: 'r' }], events: [], actions: [] };
    assert.equal((await apiA('POST', '/api/v1/products', { key: 'cluster-meter', name: 'Cluster meter', category: 'sensor', model })).status, 201);
    // Devices on shards of both nodes, each heard once with the old model (both nodes cache it).
    const devs = (
      await apiA('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 6 }, (_, i) => ({ product: 'cluster-meter', name: `meter ${i}` })) })
    ).body.items as Array<{ id: string; secret: string }>;
    const conns = await Promise.all(devs.map((d, i) => connect(`mqtt://127.0.0.1:${(i % 2 ? a : b).mqttPort}`, d)));
    for (const [i, c] of conns.entries()) await c.publishAsync(`devices/${devs[i].id}/properties`, JSON.stringify({ power: 1 }), { qos: 1 });
    for (const d of devs)
      await eventually(async () => (await apiB('GET', `/api/v1/devices/${d.id}/shadow`)).body.reported?.power === 1, 10_000, 'the old model applied');

    const r = await apiA('PATCH', '/api/v1/products/cluster-meter', {
      model: { ...model, properties: [...model.properties, { id: 'humidity', type: 'number', access: 'r' }] },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // The other node hears of the change over the bus (a broadcast: a moment, not a transaction).
    await eventually(
      async () => (await apiB('GET', '/api/v1/products/cluster-meter')).body.model.properties.length === 2,
      5000,
      'the other node reads the new model',
    );
    for (const [i, c] of conns.entries()) await c.publishAsync(`devices/${devs[i].id}/properties`, JSON.stringify({ humidity: 41 + i }), { qos: 1 });
    for (const [i, d] of devs.entries())
      await eventually(
        async () => (await apiA('GET', `/api/v1/devices/${d.id}/shadow`)).body.reported?.humidity === 41 + i,
        10_000,
        `humidity of ${d.id} accepted`,
      );
    for (const c of conns) c.end(true);
  });
});
