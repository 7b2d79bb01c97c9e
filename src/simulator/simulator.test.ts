/**
 * The simulator against a real MQTT broker (an in-process Aedes) standing in for the cloud:
 * it authenticates the hub, answers joins and lets the test send commands and desired state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import { DEMO_CHILDREN, startSimulator, type RunningSimulator } from './simulator.ts';

interface Seen {
  topic: string;
  payload: unknown;
  clientId: string;
}

class FakeCloud {
  readonly seen: Seen[] = [];
  readonly disconnects: Array<{ id: string; clean: boolean }> = [];
  joins = 0;
  broker!: Aedes;
  server!: Server;
  private waiters: Array<{ match: (s: Seen) => boolean; resolve: (s: Seen) => void }> = [];

  constructor(
    private readonly hubId: string,
    private readonly secret: string,
  ) {}

  async start(): Promise<string> {
    this.broker = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        const ok = client.id === this.hubId && username === this.hubId && password?.toString() === this.secret;
        done(ok ? null : (Object.assign(new Error('bad'), { returnCode: 4 }) as AuthenticateError), ok);
      },
      published: (packet, client, done) => {
        if (client) this.ingest(packet, client);
        done(null);
      },
    });
    this.broker.on('clientDisconnect', (c: Client & { _disconnected?: boolean }) => this.disconnects.push({ id: c.id, clean: c._disconnected === true }));
    this.server = createServer({ noDelay: true }, (s) => this.broker.handle(s));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return `mqtt://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private ingest(packet: PublishPacket, client: Client): void {
    let payload: unknown;
    try {
      payload = JSON.parse(packet.payload.toString());
    } catch {
      payload = packet.payload.toString();
    }
    const s: Seen = { topic: packet.topic, payload, clientId: client.id };
    this.seen.push(s);
    if (packet.topic === `devices/${this.hubId}/children/join`) {
      const { product, hwid } = payload as { product: string; hwid: string };
      this.joins++;
      if (product === 'nope')
        this.send(this.hubId, 'errors', { code: 'E_PRODUCT_NOT_FOUND', message: `product "${product}" does not exist`, topic: packet.topic });
      else this.send(this.hubId, 'children/joined', { hwid, id: childId(hwid), product });
    }
    for (const w of [...this.waiters]) {
      if (w.match(s)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(s);
      }
    }
  }

  send(deviceId: string, kind: string, payload: unknown): void {
    const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    this.broker.publish({ cmd: 'publish', topic: `devices/${deviceId}/${kind}`, payload: Buffer.from(body), qos: 1, retain: false, dup: false }, () => {});
  }

  waitFor(match: (s: Seen) => boolean, timeoutMs = 3000): Promise<Seen> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for a message')), timeoutMs);
      this.waiters.push({
        match,
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
      });
    });
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.broker.close(() => r()));
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function childId(hwid: string): string {
  return `d_${hwid.replace(/:/g, '').slice(-8)}`;
}

const HUB = 'd_hubtest000001';
const SECRET = 's3cret';

test('joins the demo children, reports, answers commands and desired state, reconnects, disconnects cleanly', async () => {
  const cloud = new FakeCloud(HUB, SECRET);
  const url = await cloud.start();
  const logs: string[] = [];
  let sim: RunningSimulator | undefined;
  try {
    sim = startSimulator({ mqttUrl: url, hubId: HUB, hubSecret: SECRET, children: DEMO_CHILDREN, intervalMs: 50, log: (m) => logs.push(m) });
    await sim.ready;
    assert.equal(sim.children.size, DEMO_CHILDREN.length);
    for (const c of DEMO_CHILDREN) {
      const id = childId(c.hwid);
      assert.deepEqual(sim.children.get(c.hwid), { id, product: c.product, hwid: c.hwid });
      assert.ok(
        cloud.seen.some((s) => s.topic === `devices/${id}/presence` && (s.payload as { online: boolean }).online === true),
        `presence of ${c.product}`,
      );
      assert.ok(
        cloud.seen.some((s) => s.topic === `devices/${id}/properties`),
        `properties of ${c.product}`,
      );
    }
    const hubProps = cloud.seen.filter((s) => s.topic === `devices/${HUB}/properties`).map((s) => s.payload as Record<string, unknown>);
    assert.ok(hubProps.some((p) => p.firmware !== undefined && p.permitJoin === false));
    if (!hubProps.some((p) => p.children === DEMO_CHILDREN.length)) {
      await cloud.waitFor((s) => s.topic === `devices/${HUB}/properties` && (s.payload as { children?: number }).children === DEMO_CHILDREN.length);
    }

    // Commands: result first, then the property report.
    const light = childId(DEMO_CHILDREN[0].hwid);
    const result = cloud.waitFor((s) => s.topic === `devices/${light}/commands/result`);
    const props = cloud.waitFor((s) => s.topic === `devices/${light}/properties` && 'on' in (s.payload as object));
    cloud.send(light, 'commands', { id: 'c_1', action: 'toggle', params: {} });
    const r = await result;
    assert.deepEqual(r.payload, { id: 'c_1', ok: true });
    assert.equal(typeof (await props).payload, 'object');
    assert.ok(cloud.seen.indexOf(r) < cloud.seen.indexOf(await props));

    const unk = cloud.waitFor((s) => s.topic === `devices/${light}/commands/result` && (s.payload as { id: string }).id === 'c_2');
    cloud.send(light, 'commands', { id: 'c_2', action: 'fly' });
    assert.deepEqual((await unk).payload, { id: 'c_2', ok: false, error: 'unsupported action' });

    // Garbage never crashes the simulator.
    cloud.send(light, 'commands', '{not json');
    cloud.send(light, 'desired', '[1,2]');
    cloud.send(light, 'commands', { action: 'toggle' });

    // Desired state on the lock: applied, reported, event emitted.
    const lock = childId(DEMO_CHILDREN[2].hwid);
    const lockProps = cloud.waitFor((s) => s.topic === `devices/${lock}/properties` && (s.payload as { locked?: boolean }).locked === false);
    const lockEvent = cloud.waitFor((s) => s.topic === `devices/${lock}/events`);
    cloud.send(lock, 'desired', { state: { locked: false }, version: 7 });
    assert.deepEqual((await lockProps).payload, { locked: false });
    assert.deepEqual((await lockEvent).payload, { event: 'unlock', params: { method: 'app' } });

    // Errors are logged.
    cloud.send(lock, 'errors', { code: 'E_MODEL_MISMATCH', message: 'property "x": nope', topic: `devices/${lock}/properties` });
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(logs.some((l) => l.includes('E_MODEL_MISMATCH')));

    // Periodic changes arrive.
    const sensor = childId(DEMO_CHILDREN[3].hwid);
    await cloud.waitFor((s) => s.topic === `devices/${sensor}/properties` && 'temperature' in (s.payload as object) && !('battery' in (s.payload as object)));

    // Lost connection: the simulator reconnects by itself and joins again.
    const joinsBefore = cloud.joins;
    const rejoined = cloud.waitFor((s) => s.topic === `devices/${sensor}/presence`, 5000);
    for (const c of Object.values((cloud.broker as unknown as { clients: Record<string, { conn: { destroy(): void } }> }).clients)) c.conn.destroy();
    await rejoined;
    assert.ok(cloud.joins >= joinsBefore + DEMO_CHILDREN.length);
    const again = cloud.waitFor((s) => s.topic === `devices/${light}/commands/result`);
    cloud.send(light, 'commands', { id: 'c_3', action: 'toggle' });
    // The child subscriptions follow the joins: send again in case the first one came too early.
    // A redelivered command id gets the remembered result instead of running twice.
    await new Promise((r) => setTimeout(r, 100));
    cloud.send(light, 'commands', { id: 'c_3', action: 'toggle' });
    assert.deepEqual((await again).payload, { id: 'c_3', ok: true });

    await sim.stop();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(cloud.disconnects.at(-1), { id: HUB, clean: true });
  } finally {
    await sim?.stop();
    await cloud.stop();
  }
});

test('refused credentials reject ready and stop reconnecting', async () => {
  const cloud = new FakeCloud(HUB, SECRET);
  const url = await cloud.start();
  try {
    const sim = startSimulator({ mqttUrl: url, hubId: HUB, hubSecret: 'wrong', children: [] });
    await assert.rejects(sim.ready, /refused|Bad username/i);
    await sim.stop();
  } finally {
    await cloud.stop();
  }
});

test('a refused join rejects ready; the other children still join', async () => {
  const cloud = new FakeCloud(HUB, SECRET);
  const url = await cloud.start();
  const sim = startSimulator({
    mqttUrl: url,
    hubId: HUB,
    hubSecret: SECRET,
    children: [{ product: 'nope', hwid: '00:12:4b:00:00:00:00:99' }, DEMO_CHILDREN[0]],
  });
  try {
    await assert.rejects(sim.ready, /E_PRODUCT_NOT_FOUND/);
    assert.deepEqual([...sim.children.keys()], [DEMO_CHILDREN[0].hwid]);
  } finally {
    await sim.stop();
    await cloud.stop();
  }
});
