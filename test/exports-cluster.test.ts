/**
 * Fleet export jobs in cluster mode (PostgreSQL, NATS, two nodes as processes, one shared exports
 * directory): every job is written by exactly one node, whichever node took the request, and
 * either node serves the file.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminApi as client, connectMqtt as connect, startCluster, type Cluster, type ClusterNode } from './helpers/cluster.ts';
import { ADMIN, eventually } from './helpers/platform.ts';

/** The exports a node logged as written. */
const written = (n: ClusterNode) =>
  n
    .output()
    .split('\n')
    .filter((l) => l.includes('export written'))
    .map((l) => JSON.parse(l).exportId as string);

describe('fleet export jobs in cluster mode', {
  timeout: 120_000,
  skip: process.env.HEARTH_TEST_STORE === 'postgres' ? 'the cluster runs on PostgreSQL in both passes' : false,
}, () => {
  let cluster: Cluster;
  const dir = mkdtempSync(join(tmpdir(), 'hearth-exports-shared-'));
  before(async () => {
    cluster = await startCluster({
      nodes: 2,
      env: { HEARTH_SHARDS: '8', HEARTH_HISTORY_FLUSH_MS: '50', HEARTH_EXPORTS_DIR: dir, HEARTH_EXPORTS_POLL_MS: '100', HEARTH_LOG_LEVEL: 'info' },
    });
  });
  after(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('each job is written once, by one node, and both nodes serve it', async () => {
    const [a, b] = cluster.nodes;
    const apiA = await client(a.httpUrl);
    const apiB = await client(b.httpUrl);
    const model = { properties: [{ id: 'power', type: 'number', access: 'r', history: true }], events: [], actions: [] };
    assert.equal((await apiA('POST', '/api/v1/products', { key: 'cluster_export', name: 'Cluster export', category: 'sensor', model })).status, 201);
    const dev = (await apiA('POST', '/api/v1/devices', { product: 'cluster_export', name: 'meter' })).body;
    const t0 = Date.now() - 3_600_000;
    const c = await connect(`mqtt://127.0.0.1:${a.mqttPort}`, dev);
    for (let k = 0; k < 30; k++) await c.publishAsync(`devices/${dev.id}/properties`, JSON.stringify({ ts: t0 + k * 1000, power: k }), { qos: 1 });
    await c.endAsync();
    await eventually(
      async () => (await apiA('GET', `/api/v1/devices/${dev.id}/history?property=power&from=${t0}`)).body.points?.length === 30,
      15_000,
      'points stored',
    );

    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await (i % 2 ? apiB : apiA)('POST', '/api/v1/exports', { product: 'cluster_export', from: String(t0), format: i % 3 === 0 ? 'csv' : 'ndjson' });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(r.body.id);
    }
    for (const id of ids) await eventually(async () => (await apiB('GET', `/api/v1/exports/${id}`)).body.status === 'done', 20_000, `export ${id} done`);
    await eventually(() => written(a).length + written(b).length >= ids.length, 5000, 'the writes logged');
    const all = [...written(a), ...written(b)].sort();
    assert.deepEqual(all, [...ids].sort(), 'every job written exactly once across the nodes');

    const body = async (node: ClusterNode, id: string) => {
      const login = await fetch(`${node.httpUrl}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(ADMIN),
      });
      const { token } = (await login.json()) as { token: string };
      const res = await fetch(`${node.httpUrl}/api/v1/exports/${id}/download`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
      return res.text();
    };
    const fromA = await body(a, ids[1]);
    assert.equal(fromA, await body(b, ids[1]));
    assert.equal(fromA.trim().split('\n').length, 30);
  });
});
