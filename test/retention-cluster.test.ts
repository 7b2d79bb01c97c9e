/**
 * Retention in cluster mode (PostgreSQL, NATS, two nodes as processes): exactly one node prunes
 * (the holder of shard 0's lease), and when it dies the other takes over.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { adminApi as client, connectMqtt as connect, startCluster, type Cluster, type ClusterNode } from './helpers/cluster.ts';
import { eventually } from './helpers/platform.ts';

/** The passes a node logged that dropped day partitions of raw history. */
const drops = (n: ClusterNode) =>
  n
    .output()
    .split('\n')
    .filter((l) => l.includes('retention dropped expired history partitions whole')).length;

/** The passes a node logged that deleted something. */
const passes = (n: ClusterNode) =>
  n
    .output()
    .split('\n')
    .filter((l) => l.includes('retention pass deleted expired data')).length;

describe('retention in cluster mode', {
  timeout: 120_000,
  skip: process.env.HEARTH_TEST_STORE === 'postgres' ? 'the cluster runs on PostgreSQL in both passes' : false,
}, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({
      nodes: 2,
      // Raw points are kept 2 days by default: the day partitions of the 3-day-old points are dropped whole.
      env: {
        HEARTH_SHARDS: '8',
        HEARTH_HISTORY_FLUSH_MS: '50',
        HEARTH_NODE_TIMEOUT_MS: '3000',
        HEARTH_RETENTION_INTERVAL_MS: '200',
        HEARTH_LOG_LEVEL: 'info',
        HEARTH_RETENTION_RAW: '2d',
      },
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  test('exactly one node prunes, and the other takes over when it dies', async () => {
    const [a, b] = cluster.nodes;
    const api = await client(a.httpUrl);
    const model = { properties: [{ id: 'temperature', type: 'number', access: 'r', history: true }], events: [], actions: [] };
    assert.equal((await api('POST', '/api/v1/products', { key: 'cluster_meter', name: 'Cluster meter', category: 'sensor', model })).status, 201);
    assert.equal((await api('PUT', '/api/v1/products/cluster_meter/retention', { raw: '1d' })).status, 200);
    const dev = (await api('POST', '/api/v1/devices', { product: 'cluster_meter', name: 'meter' })).body;
    const points = async (via: (m: string, p: string) => Promise<{ body: any }>) =>
      (await via('GET', `/api/v1/devices/${dev.id}/history?property=temperature&from=${Date.now() - 10 * 86_400_000}&limit=10000`)).body.points?.length;

    /** Sends expired points and one fresh one through `node`; waits until only fresh points are left. */
    const round = async (node: ClusterNode, fresh: number, via: (m: string, p: string) => Promise<{ body: any }>) => {
      const c = await connect(`mqtt://127.0.0.1:${node.mqttPort}`, dev);
      try {
        const now = Date.now();
        for (let k = 0; k < 10; k++)
          await c.publishAsync(`devices/${dev.id}/properties`, JSON.stringify({ ts: now - 3 * 86_400_000 - k * 1000, temperature: k }), { qos: 1 });
        await c.publishAsync(`devices/${dev.id}/properties`, JSON.stringify({ ts: now, temperature: 99 }), { qos: 1 });
      } finally {
        await c.endAsync();
      }
      await eventually(async () => (await points(via)) === fresh, 15_000, `only the ${fresh} fresh points left`);
      // Every point of every round was stored (the day rollups, kept forever, count them), also
      // those written to a day whose partition the pruning node had dropped.
      const days = await via('GET', `/api/v1/devices/${dev.id}/history?property=temperature&from=${Date.now() - 5 * 86_400_000}&bucket=1d&tier=1d`);
      assert.equal(
        days.body.buckets.reduce((n: number, b: { count: number }) => n + b.count, 0),
        11 * fresh,
      );
    };
    // The first round also lets the shards settle between the two nodes (the first to start owned all).
    await round(a, 1, api);
    // Log lines reach the output a moment after the pass.
    await eventually(() => passes(a) + passes(b) >= 1, 5000, 'a pass logged');
    const [a0, b0] = [passes(a), passes(b)];
    await round(b, 2, api);
    await round(a, 3, api);
    await eventually(() => passes(a) + passes(b) >= a0 + b0 + 2, 5000, 'two more passes logged');
    const [pa, pb] = [passes(a) - a0, passes(b) - b0];
    assert.ok(pa === 0 || pb === 0, `one node pruned: a ${pa}, b ${pb}`);
    assert.ok(pa + pb >= 2);
    // The expired days were dropped whole (PostgreSQL day partitions), by that node only; each
    // round's expired points were written to a partition made again, on whichever node ingested them.
    const [da, db] = [drops(a), drops(b)];
    assert.ok(da === 0 || db === 0, `one node dropped partitions: a ${da}, b ${db}`);
    assert.ok(da + db >= 2, `partitions dropped in each round: a ${da}, b ${db}`);

    // The pruning node dies; the other owns shard 0 once its lease expires, and prunes.
    const [pruner, other] = pa > 0 ? [a, b] : [b, a];
    await pruner.kill();
    const apiOther = await client(other.httpUrl);
    const before = passes(other);
    await round(other, 4, apiOther);
    await eventually(() => passes(other) > before, 5000, 'the surviving node pruned');
  });
});
