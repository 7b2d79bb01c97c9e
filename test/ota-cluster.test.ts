/**
 * Firmware updates in cluster mode (PostgreSQL, NATS, two nodes as processes): packages stored
 * in the database are served by every node, devices on either node get their jobs, and a node
 * killed with SIGKILL in the middle of a campaign loses no job state: the campaign advances once
 * per step on the timer's owner and completes on the survivor.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startCluster, type Cluster } from './helpers/cluster.ts';
import { ADMIN, eventually } from './helpers/platform.ts';
import { startOtaDevice, type OtaDevice } from '../src/simulator/ota-device.ts';

async function client(baseUrl: string) {
  let token = '';
  const call = async (method: string, path: string, body?: unknown, raw?: Buffer): Promise<{ status: number; body: any }> => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (raw) headers['content-type'] = 'application/octet-stream';
    const res = await fetch(baseUrl + path, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const login = await call('POST', '/api/v1/auth/login', ADMIN);
  assert.equal(login.status, 200, JSON.stringify(login.body));
  token = login.body.token;
  return call;
}

describe('firmware updates in cluster mode', {
  timeout: 180_000,
  skip: process.env.HEARTH_TEST_STORE === 'postgres' ? 'the cluster runs on PostgreSQL in both passes' : false,
}, () => {
  let cluster: Cluster;
  const sims: OtaDevice[] = [];
  before(async () => {
    cluster = await startCluster({
      nodes: 2,
      env: { HEARTH_SHARDS: '8', HEARTH_HISTORY_FLUSH_MS: '50', HEARTH_NODE_TIMEOUT_MS: '3000', HEARTH_OTA_TICK_MS: '200' },
    });
  });
  after(async () => {
    await Promise.all(sims.map((s) => s.stop()));
    await cluster?.stop();
  });

  test('a campaign survives a node killed mid-way: every device updated once, every wave started once', async () => {
    const [a, b] = cluster.nodes;
    const apiA = await client(a.httpUrl);
    const apiB = await client(b.httpUrl);
    const product = await apiA('POST', '/api/v1/products', {
      key: 'ota-cluster',
      name: 'OTA cluster',
      category: 'light',
      model: { properties: [], events: [], actions: [] },
    });
    assert.equal(product.status, 201, JSON.stringify(product.body));
    // Uploaded through A, stored in PostgreSQL: B serves it byte for byte.
    const image = randomBytes(600_000);
    const fw = await apiA('POST', '/api/v1/products/ota-cluster/firmware?version=2.0.0', undefined, image);
    assert.equal(fw.status, 201, JSON.stringify(fw.body));
    assert.equal((await apiB('GET', `/api/v1/firmware/${fw.body.id}`)).body.sha256, fw.body.sha256);

    // Devices on either node (straight to a node's port), reconnecting through the balancer when theirs dies.
    for (let i = 0; i < 12; i++) {
      const d = await apiB('POST', '/api/v1/devices', { product: 'ota-cluster', name: `dev-${i}` });
      assert.equal(d.status, 201);
      const node = i % 2 === 0 ? a : b;
      const sim = startOtaDevice({
        mqttUrl: `mqtt://127.0.0.1:${node.mqttPort}`,
        reconnectUrl: cluster.mqttUrl,
        reconnect: true,
        id: d.body.id,
        secret: d.body.secret,
        product: 'ota-cluster',
        version: '1.0.0',
      });
      sims.push(sim);
      await sim.ready;
    }
    await eventually(
      async () => (await apiB('GET', '/api/v1/products/ota-cluster/firmware-versions')).body.versions[0]?.devices === 12,
      10_000,
      'every device reporting 1.0.0',
    );

    const created = await apiA('POST', '/api/v1/ota/campaigns', {
      name: 'cluster',
      product: 'ota-cluster',
      firmware: fw.body.id,
      waves: [{ percent: 40, soakMinutes: 0.05 }, { percent: 100 }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id;
    // The first wave ended: the campaign soaks. Kill a node now, with no goodbye.
    await eventually(async () => (await apiB('GET', `/api/v1/ota/campaigns/${id}`)).body.soakUntil !== null, 30_000, 'the first wave soaking');
    await a.kill();
    const done = await eventually(
      async () => {
        const c = (await apiB('GET', `/api/v1/ota/campaigns/${id}`)).body;
        return c.state === 'completed' ? c : undefined;
      },
      60_000,
      'the campaign to complete on the survivor',
    );
    assert.deepEqual(done.counts, { pending: 0, inProgress: 0, succeeded: 12, failed: 0, cancelled: 0 });
    for (const s of sims) {
      assert.equal(s.version, '2.0.0');
      assert.equal(s.jobs.length, 1, `${s.id} got one job`);
    }
    const audit = (await apiB('GET', '/api/v1/audit?limit=200')).body.items.filter((e: any) => e.targetId === id);
    assert.equal(audit.filter((e: any) => e.action === 'ota.campaign.wave').length, 1, 'the second wave started once');
    assert.equal(audit.filter((e: any) => e.action === 'ota.campaign.complete').length, 1, 'completed once');
  });
});
