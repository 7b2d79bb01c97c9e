/**
 * Automations in cluster mode (PostgreSQL, NATS, two nodes as processes): an automation created
 * through one node runs on the worker that owns its home's shard, and manual runs sent to either
 * node reach that worker.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { adminApi as client, connectMqtt as connect, startCluster, type Cluster } from './helpers/cluster.ts';
import { eventually } from './helpers/platform.ts';

describe('automations in cluster mode', {
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

  test('created through one node, fired by a device on the other, run by hand through both', async () => {
    const [a, b] = cluster.nodes;
    const apiA = await client(a.httpUrl);
    const apiB = await client(b.httpUrl);
    const home = await apiB('POST', '/api/v1/homes', { name: 'Cluster home', timezone: 'Europe/Berlin' });
    assert.equal(home.status, 201, JSON.stringify(home.body));
    const devs: Record<string, { id: string; secret: string; pairingCode: string }> = {};
    for (const product of ['motion-sensor', 'light']) {
      const d = await apiA('POST', '/api/v1/devices', { product, name: product });
      assert.equal(d.status, 201);
      devs[product] = d.body;
      assert.equal((await apiB('POST', `/api/v1/homes/${home.body.id}/devices`, { pairingCode: d.body.pairingCode })).status, 201);
    }
    const motion = await connect(`mqtt://127.0.0.1:${a.mqttPort}`, devs['motion-sensor']);
    const light = await connect(`mqtt://127.0.0.1:${b.mqttPort}`, devs.light);
    const commands: any[] = [];
    try {
      await light.subscribeAsync(`devices/${devs.light.id}/commands`, { qos: 1 });
      light.on('message', (_t, buf) => {
        const cmd = JSON.parse(buf.toString());
        commands.push(cmd);
        light.publish(`devices/${devs.light.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 });
      });
      for (const d of Object.values(devs)) await eventually(async () => (await apiA('GET', `/api/v1/devices/${d.id}`)).body.online === true, 5000, 'online');

      const auto = await apiB('POST', `/api/v1/homes/${home.body.id}/automations`, {
        name: 'Motion light',
        triggers: [{ type: 'property', device: devs['motion-sensor'].id, property: 'occupancy', to: true }, { type: 'manual' }],
        actions: [{ type: 'command', device: devs.light.id, action: 'blink', params: { times: 1 } }],
        mode: 'parallel',
      });
      assert.equal(auto.status, 201, JSON.stringify(auto.body));
      const id = auto.body.id;
      // the owner of the home's shard loads it (broadcast); a report fires it
      await eventually(
        async () => {
          motion.publish(`devices/${devs['motion-sensor'].id}/properties`, JSON.stringify({ occupancy: false }), { qos: 1 });
          await new Promise((r) => setTimeout(r, 50));
          motion.publish(`devices/${devs['motion-sensor'].id}/properties`, JSON.stringify({ occupancy: true }), { qos: 1 });
          await new Promise((r) => setTimeout(r, 300));
          return commands.length > 0;
        },
        10_000,
        'the light commanded by the automation',
      );
      const runsA = await eventually(
        async () => {
          const r = await apiA('GET', `/api/v1/automations/${id}/runs`);
          return r.body.items.find((x: any) => x.status === 'completed' && x.trace.trigger.type === 'property') ? r.body.items : undefined;
        },
        5000,
        'a completed run listed on node A',
      );
      assert.equal(runsA.find((x: any) => x.trace.trigger.type === 'property').trace.actions[0].result.ok, true);

      // by hand through both nodes: one of them is not the owner and forwards it
      const before = commands.length;
      for (const api of [apiA, apiB]) {
        const r = await api('POST', `/api/v1/automations/${id}/run`, {});
        assert.equal(r.status, 202, JSON.stringify(r.body));
        assert.equal(r.body.status, 'running');
      }
      await eventually(() => commands.length >= before + 2, 5000, 'two manual runs reached the light');
      await eventually(
        async () =>
          (await apiB('GET', `/api/v1/automations/${id}/runs?status=completed`)).body.items.filter((x: any) => x.trace.trigger.type === 'manual').length === 2,
        5000,
        'both manual runs completed',
      );
    } finally {
      await Promise.all([motion.endAsync(true), light.endAsync(true)]);
    }
  });
});
