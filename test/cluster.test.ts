/**
 * Cluster mode end to end: real PostgreSQL and NATS JetStream, Hearth nodes as separate
 * processes, devices over real MQTT and the API over real HTTP (through a balancer that sends
 * traffic only to ready nodes, as a Kubernetes Service does).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { startCluster, type Cluster } from './helpers/cluster.ts';
import { ADMIN, eventually, inbox } from './helpers/platform.ts';

const FAST = {
  HEARTH_ACK_WAIT_MS: '2000',
  HEARTH_NODE_TIMEOUT_MS: '3000',
  HEARTH_DRAIN_DELAY_MS: '600',
  HEARTH_SHUTDOWN_GRACE_MS: '10000',
  HEARTH_HISTORY_FLUSH_MS: '50',
  HEARTH_SHARDS: '8',
};

/** A small API client for one base URL, signed in as the operator. */
async function client(baseUrl: string) {
  let token = '';
  const call = async <T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* keep the text */
    }
    return { status: res.status, body: parsed as T };
  };
  const login = await call<{ token: string }>('POST', '/api/v1/auth/login', ADMIN);
  assert.equal(login.status, 200, JSON.stringify(login.body));
  token = login.body.token;
  return {
    call,
    async provision(product: string): Promise<{ id: string; secret: string }> {
      const r = await call<{ id: string; secret: string }>('POST', '/api/v1/devices', { product, name: `${product} in a cluster` });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body;
    },
  };
}

function connectDevice(url: string, dev: { id: string; secret: string }, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = mqtt.connect(url, { clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

/** Answers every command with ok and the action's name. */
function answerCommands(c: MqttClient, id: string): void {
  c.subscribe(`devices/${id}/commands`, { qos: 1 });
  c.on('message', (topic, buf) => {
    if (topic !== `devices/${id}/commands`) return;
    const cmd = JSON.parse(buf.toString()) as { id: string };
    c.publish(`devices/${id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 });
  });
}

/** Every history point of brightness the device stored, by its timestamp. */
async function storedTimestamps(api: Awaited<ReturnType<typeof client>>, id: string, from: number, to: number): Promise<Set<number>> {
  const r = await api.call<{ points: Array<{ ts: string }> }>('GET', `/api/v1/devices/${id}/history?property=brightness&from=${from}&to=${to}&limit=10000`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return new Set(r.body.points.map((p) => Date.parse(p.ts)));
}

/**
 * Publishes numbered QoS 1 reports (`ts` = base + n) from each device as fast as a window of 5
 * allows, across reconnects; records which ones the broker acknowledged.
 */
function publishLoop(c: MqttClient, id: string, base: number) {
  const acked = new Set<number>();
  let n = 0;
  let running = true;
  let inflight = 0;
  const pump = () => {
    while (running && inflight < 5) {
      const seq = n++;
      inflight++;
      c.publish(`devices/${id}/properties`, JSON.stringify({ brightness: seq % 101, ts: base + seq }), { qos: 1 }, (err) => {
        inflight--;
        if (!err) acked.add(base + seq);
        setTimeout(pump, 2);
      });
    }
  };
  pump();
  return { acked, stop: () => void (running = false), sent: () => n };
}

describe('cluster mode', { timeout: 240_000 }, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ nodes: 2, env: FAST });
  });
  after(async () => {
    await cluster?.stop();
  });

  test('a device on node A is commanded and configured through node B, and B sees it online', async () => {
    const [a, b] = cluster.nodes;
    const apiB = await client(b.httpUrl);
    const dev = await apiB.provision('light');
    const c = await connectDevice(`mqtt://127.0.0.1:${a.mqttPort}`, dev);
    try {
      answerCommands(c, dev.id);
      const box = inbox(c);
      await c.subscribeAsync(`devices/${dev.id}/desired`, { qos: 1 });
      await eventually(async () => (await apiB.call('GET', `/api/v1/devices/${dev.id}`)).body.online === true, 5000, 'online on node B');

      const r = await apiB.call('POST', `/api/v1/devices/${dev.id}/commands`, { action: 'toggle' });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.ok, true);

      const d = await apiB.call('PATCH', `/api/v1/devices/${dev.id}/shadow`, { desired: { brightness: 42 } });
      assert.equal(d.status, 200, JSON.stringify(d.body));
      const m = await box.next((x) => x.topic.endsWith('/desired'), 5000);
      assert.deepEqual(m.payload.state, { brightness: 42 });

      c.publish(`devices/${dev.id}/properties`, JSON.stringify({ brightness: 42 }), { qos: 1 });
      await eventually(
        async () => (await apiB.call('GET', `/api/v1/devices/${dev.id}`)).body.shadow?.reported?.brightness === 42,
        5000,
        'report visible on node B',
      );
    } finally {
      await c.endAsync(true);
    }
  });

  test('a node killed with SIGKILL loses no acknowledged message; its devices reconnect elsewhere, the ones that cannot are marked offline', async (t) => {
    const api = await client(cluster.httpUrl);
    const base = Date.now() - 3_600_000;
    const devs = await Promise.all(Array.from({ length: 6 }, () => api.provision('light')));
    const loops: Array<ReturnType<typeof publishLoop>> = [];
    const clients: MqttClient[] = [];
    // Through the balancer, with reconnects: they spread over both nodes and move when one dies.
    for (const [i, dev] of devs.entries()) {
      const c = await connectDevice(cluster.mqttUrl, dev, { reconnectPeriod: 200, clean: true });
      clients.push(c);
      loops.push(publishLoop(c, dev.id, base + i * 1_000_000));
    }
    // One more device straight on node A, without reconnecting: node A's death must show as offline.
    const victim = cluster.nodes[0];
    const stranded = await api.provision('light');
    const sc = await connectDevice(`mqtt://127.0.0.1:${victim.mqttPort}`, stranded);
    sc.on('error', () => undefined);
    await eventually(async () => (await api.call('GET', `/api/v1/devices/${stranded.id}`)).body.online === true, 5000, 'stranded device online');

    await new Promise((r) => setTimeout(r, 1500));
    const killedAt = Date.now();
    await victim.kill();
    await new Promise((r) => setTimeout(r, 2500));
    for (const l of loops) l.stop();
    await new Promise((r) => setTimeout(r, 500));

    const offline = await eventually(
      async () => {
        const d = (await api.call('GET', `/api/v1/devices/${stranded.id}`)).body;
        return d.online === false ? d : undefined;
      },
      15_000,
      'devices of the killed node marked offline',
    );
    assert.equal(offline.presence.reason, 'node-lost');
    const offlineAfterMs = Date.now() - killedAt;

    let totalAcked = 0;
    for (const [i, dev] of devs.entries()) {
      const acked = loops[i].acked;
      totalAcked += acked.size;
      const from = base + i * 1_000_000;
      const missing = await eventually(
        async () => {
          const stored = await storedTimestamps(api, dev.id, from, from + 999_999);
          const lost = [...acked].filter((t) => !stored.has(t));
          return lost.length === 0 ? [] : undefined;
        },
        20_000,
        `every acknowledged report of ${dev.id} stored`,
      ).catch(async (err) => {
        const stored = await storedTimestamps(api, dev.id, from, from + 999_999);
        const lost = [...acked].filter((t) => !stored.has(t));
        const logs = cluster.nodes
          .map((n) =>
            n
              .output()
              .split('\n')
              .filter((l) => /"level":(40|50|60)/.test(l))
              .slice(-15)
              .join('\n'),
          )
          .join('\n---\n');
        throw new Error(
          `${(err as Error).message}: ${lost.length} of ${acked.size} acknowledged reports missing (e.g. ts ${lost.slice(0, 3).map((t) => t - from)}, last acked ${Math.max(...acked) - from}); node warnings:\n${logs}`,
        );
      });
      assert.deepEqual(missing, []);
    }
    assert.ok(totalAcked > 200, `devices published (${totalAcked} acknowledged)`);
    for (const c of [...clients, sc]) await c.endAsync(true).catch(() => undefined);
    await victim.start();
    t.diagnostic(`acknowledged ${totalAcked}; stranded device offline after ${offlineAfterMs} ms`);
  });

  test('a rolling restart fails no request and loses no message', async (t) => {
    const api = await client(cluster.httpUrl);
    const base = Date.now() - 7_200_000;
    const devs = await Promise.all(Array.from({ length: 4 }, () => api.provision('light')));
    const clients: MqttClient[] = [];
    const loops: Array<ReturnType<typeof publishLoop>> = [];
    for (const [i, dev] of devs.entries()) {
      const c = await connectDevice(cluster.mqttUrl, dev, { reconnectPeriod: 200, clean: true });
      clients.push(c);
      loops.push(publishLoop(c, dev.id, base + i * 1_000_000));
    }
    // App traffic through the balancer the whole time: reads, desired-state writes, lists.
    let requests = 0;
    const failures: string[] = [];
    let running = true;
    const traffic = (async () => {
      let k = 0;
      while (running) {
        const dev = devs[k++ % devs.length];
        const calls: Array<[string, string, unknown?]> = [
          ['GET', `/api/v1/devices/${dev.id}`],
          ['PATCH', `/api/v1/devices/${dev.id}/shadow`, { desired: { colorTemp: 2700 + (k % 30) * 100 } }],
          ['GET', '/api/v1/devices?limit=10'],
        ];
        await Promise.all(
          calls.map(async ([m, p, body]) => {
            requests++;
            try {
              const r = await api.call(m, p, body);
              if (r.status >= 300) failures.push(`${m} ${p} → ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
            } catch (err) {
              failures.push(`${m} ${p} → ${(err as Error).message}`);
            }
          }),
        );
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    await new Promise((r) => setTimeout(r, 1000));
    // Requests made while each node was stopped, started and settling: traffic must flow through
    // every restart (a count over the whole run would depend on how fast this machine is).
    const during = new Map<string, number>();
    for (const node of cluster.nodes) {
      const before = requests;
      const code = await node.stop();
      assert.equal(code, 0, `${node.name} exits cleanly:\n${node.output().slice(-2000)}`);
      await node.start();
      await new Promise((r) => setTimeout(r, 1000));
      during.set(node.name, requests - before);
    }
    running = false;
    await traffic;
    for (const l of loops) l.stop();
    await new Promise((r) => setTimeout(r, 500));

    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${requests} requests failed`);
    for (const [name, n] of during) assert.ok(n >= 10, `requests made while ${name} restarted: ${n} (of ${requests})`);
    let totalAcked = 0;
    for (const [i, dev] of devs.entries()) {
      const from = base + i * 1_000_000;
      totalAcked += loops[i].acked.size;
      await eventually(
        async () => {
          const stored = await storedTimestamps(api, dev.id, from, from + 999_999);
          return [...loops[i].acked].every((t) => stored.has(t));
        },
        20_000,
        `every acknowledged report of ${dev.id} stored`,
      );
    }
    assert.ok(totalAcked > 100, `acknowledged reports: ${totalAcked}`);
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    t.diagnostic(`${requests} requests, 0 failed; ${totalAcked} reports acknowledged, 0 lost`);
  });
});
