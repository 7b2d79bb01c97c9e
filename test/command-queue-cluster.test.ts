/**
 * Offline devices in cluster mode (PostgreSQL, NATS JetStream, two Hearth processes): a command
 * queue filled through one node is delivered when the device connects to the other, and survives
 * the SIGKILL of the node it was queued on; a clean=false MQTT session follows its device to the
 * other node.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, type Cluster } from './helpers/cluster.ts';
import { ADMIN, connectDevice, eventually, inbox, requestJson } from './helpers/platform.ts';

const FAST = { HEARTH_ACK_WAIT_MS: '2000', HEARTH_NODE_TIMEOUT_MS: '3000', HEARTH_DRAIN_DELAY_MS: '300', HEARTH_SHUTDOWN_GRACE_MS: '5000', HEARTH_SHARDS: '8' };

let cluster: Cluster;
before(async () => {
  cluster = await startCluster({ nodes: 2, env: FAST });
});
after(async () => {
  await cluster?.stop();
});

async function signIn(base: string): Promise<string> {
  const r = await requestJson(`${base}/api/v1/auth/login`, 'POST', ADMIN);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.token;
}

/** Queues `n` print jobs through one node's API; their ids in order. */
async function queue(base: string, token: string, deviceId: string, n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await requestJson(
      `${base}/api/v1/devices/${deviceId}/commands`,
      'POST',
      { action: 'print', params: { content: `${tag} ${i}` }, ttlMs: 120_000 },
      token,
    );
    assert.equal(r.status, 202, JSON.stringify(r.body));
    ids.push(r.body.id);
  }
  return ids;
}

/** Connects the device to one node, takes `n` commands in order and answers each. */
async function drain(mqttPort: number, d: { id: string; secret: string }, n: number, timeoutMs = 15_000): Promise<string[]> {
  const c = await connectDevice(`mqtt://127.0.0.1:${mqttPort}`, d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  const got: string[] = [];
  try {
    while (got.length < n) {
      const m = await box.next((x) => x.topic === `devices/${d.id}/commands`, timeoutMs);
      if (!got.includes(m.payload.id)) got.push(m.payload.id);
      await c.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: m.payload.id, ok: true, result: { jobId: m.payload.id } }), { qos: 1 });
    }
  } finally {
    await c.endAsync();
  }
  return got;
}

test('a queue filled through one node is delivered on the other, and survives a SIGKILL of the node it was queued on', async () => {
  const [a, b] = cluster.nodes;
  const tokenA = await signIn(a.httpUrl);
  const tokenB = await signIn(b.httpUrl);
  const d = (await requestJson(`${a.httpUrl}/api/v1/devices`, 'POST', { product: 'cloud-printer', name: 'till in a cluster' }, tokenA)).body;

  // queued through node a, taken on node b
  const first = await queue(a.httpUrl, tokenA, d.id, 5, 'first');
  assert.deepEqual(await drain(b.mqttPort, d, 5), first);
  await eventually(
    async () => (await requestJson(`${a.httpUrl}/api/v1/devices/${d.id}/commands/${first[4]}`, 'GET', undefined, tokenA)).body.status === 'answered',
    5000,
    'answered, seen from node a',
  );

  // queued through node a, node a killed, taken on node b once it holds every shard
  const second = await queue(a.httpUrl, tokenA, d.id, 5, 'second');
  await a.kill();
  assert.deepEqual(await drain(b.mqttPort, d, 5, 20_000), second);
  await eventually(
    async () => {
      const items = (await requestJson(`${b.httpUrl}/api/v1/devices/${d.id}/commands?limit=20`, 'GET', undefined, tokenB)).body.items as Array<{
        status: string;
      }>;
      return items.length === 10 && items.every((c) => c.status === 'answered');
    },
    5000,
    'all ten answered once',
  );
});

test('a clean=false session follows its device to another node: subscriptions and the unacknowledged message', async () => {
  const [a, b] = cluster.nodes;
  if (!a.running()) await a.start();
  const token = await signIn(b.httpUrl);
  const d = (await requestJson(`${b.httpUrl}/api/v1/devices`, 'POST', { product: 'light', name: 'moving light' }, token)).body;
  const first = await connectDevice(`mqtt://127.0.0.1:${b.mqttPort}`, d.id, d.secret, { clean: false });
  const seen: string[] = [];
  first.handleMessage = (packet) => void seen.push(packet.payload.toString());
  await first.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  await eventually(async () => (await requestJson(`${b.httpUrl}/api/v1/devices/${d.id}`, 'GET', undefined, token)).body.online, 5000, 'online');
  const r = await requestJson(`${b.httpUrl}/api/v1/devices/${d.id}/commands`, 'POST', { action: 'blink', params: { times: 1 }, timeoutMs: 500 }, token);
  assert.equal(r.status, 504);
  assert.equal(seen.length, 1);
  first.stream.destroy();
  await eventually(async () => !(await requestJson(`${b.httpUrl}/api/v1/devices/${d.id}`, 'GET', undefined, token)).body.online, 5000, 'offline');

  // on node a, without subscribing: the stored session brings the unacknowledged command
  let box!: ReturnType<typeof inbox>;
  const again = await connectDevice(`mqtt://127.0.0.1:${a.mqttPort}`, d.id, d.secret, { clean: false }, (c) => {
    box = inbox(c);
  });
  const m = await box.next((x) => x.topic === `devices/${d.id}/commands`, 5000);
  assert.deepEqual(m.payload, JSON.parse(seen[0]));
  // and the subscription: a new command reaches it on node a
  const call = requestJson(`${b.httpUrl}/api/v1/devices/${d.id}/commands`, 'POST', { action: 'toggle', timeoutMs: 5000 }, token);
  const next = await box.next((x) => x.topic === `devices/${d.id}/commands`, 5000);
  assert.equal(next.payload.action, 'toggle');
  await again.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: next.payload.id, ok: true }), { qos: 1 });
  assert.equal((await call).status, 200);
  await again.endAsync();
});
