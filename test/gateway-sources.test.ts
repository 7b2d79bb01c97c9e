import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { startRabbit, type RabbitServer } from './helpers/rabbitmq.ts';
import { freePort } from './helpers/ports.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, migrate } from '../src/core/store/db.ts';
import { MemoryBus } from '../src/core/bus/memory-bus.ts';
import { createLogger } from '../src/core/logger.ts';
import { ProductService } from '../src/products/product-service.ts';
import { DeviceService } from '../src/devices/device-service.ts';
import { PartnerService } from '../src/partners/partner-service.ts';
import { UplinkIngress } from '../src/ingress/ingress.ts';
import { AmqpSources } from '../src/partners/amqp-sources.ts';
import { UPLINK_STREAM, subjects } from '../src/core/bus/subjects.ts';

/**
 * The message sources other than MQTT, through real clients: devices posting over HTTP with their
 * own credentials, partners pushing signed batches over HTTP, and partners' AMQP queues on a real
 * RabbitMQ. Each message must end up where an MQTT message would (the shadow, the history).
 */
let p: Platform;
let rabbit: RabbitServer;
let amqp: ChannelModel;
let ch: Channel;

before(async () => {
  [p, rabbit] = await Promise.all([startPlatform(), startRabbit()]);
  amqp = await connect(rabbit.url);
  ch = await amqp.createChannel();
});

after(async () => {
  await amqp?.close().catch(() => undefined);
  await p?.stop();
  await rabbit?.stop();
});

const PROBLEM = 'application/problem+json; charset=utf-8';

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
}

async function post(path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; headers: Headers; body: any }> {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(p.httpUrl + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: raw });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

const sign = (secret: string, raw: string) => `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`;

async function push(partner: { id: string; secret: string }, messages: unknown[], signature?: string) {
  const raw = JSON.stringify({ messages });
  return post(`/api/v1/partners/${partner.id}/messages`, raw, { 'x-hearth-signature': signature ?? sign(partner.secret, raw) });
}

const reported = async (id: string) => (await p.device(id)).shadow.reported;

test("device HTTP: a report with the device's credentials reaches the shadow; an event is recorded", async () => {
  const d = await p.provision('light');
  const r = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true, brightness: 30 }, { authorization: basic(d.id, d.secret) });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.equal(typeof r.body.id, 'string');
  await p.until(d.id, (x) => x.shadow.reported.brightness === 30, 'the report in the shadow');
  assert.deepEqual(await reported(d.id), { on: true, brightness: 30 });

  const lock = await p.provision('door-lock');
  const e = await post(
    `/api/v1/devices/${lock.id}/messages/events`,
    { event: 'unlock', params: { method: 'keypad' } },
    { authorization: basic(lock.id, lock.secret) },
  );
  assert.equal(e.status, 202, JSON.stringify(e.body));
  const events = await eventually(
    async () => {
      const list = await p.api('GET', `/api/v1/devices/${lock.id}/events`);
      return list.body.items?.length ? list.body.items : undefined;
    },
    3000,
    'the event in the history',
  );
  assert.equal(events[0].event, 'unlock');
});

test("device HTTP: wrong or missing credentials are 401, another device's id is 403, a hub posts for its sub-device", async () => {
  const d = await p.provision('light');
  const other = await p.provision('light');
  const wrong = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true }, { authorization: basic(d.id, 'not-the-secret') });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('content-type'), PROBLEM);
  assert.equal(wrong.body.code, 'E_UNAUTHENTICATED');
  assert.match(wrong.headers.get('www-authenticate') ?? '', /^Basic/);
  const none = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true }, {});
  assert.equal(none.status, 401);
  const bearer = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true }, { authorization: `Bearer ${p.token}` });
  assert.equal(bearer.status, 401, 'a user token is not a device credential');
  const foreign = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true }, { authorization: basic(other.id, other.secret) });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.body.code, 'E_FORBIDDEN');

  const hub = await p.provision('hub');
  const child = await p.provision('light', 'child light', hub.id);
  const viaHub = await post(`/api/v1/devices/${child.id}/messages/properties`, { brightness: 12 }, { authorization: basic(hub.id, hub.secret) });
  assert.equal(viaHub.status, 202, JSON.stringify(viaHub.body));
  await p.until(child.id, (x) => x.shadow.reported.brightness === 12, "the hub's report for its child");

  // none of the refused posts changed anything
  await post(`/api/v1/devices/${d.id}/messages/properties`, { brightness: 1 }, { authorization: basic(d.id, d.secret) });
  await p.until(d.id, (x) => x.shadow.reported.brightness === 1, 'the accepted report');
  assert.deepEqual(await reported(d.id), { brightness: 1 });
});

test('device HTTP: a report the model rejects is answered 400 with the problem; bad JSON 400; too large 413', async () => {
  const d = await p.provision('light');
  const auth = { authorization: basic(d.id, d.secret) };
  const r = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true, brightness: 150 }, auth);
  assert.equal(r.status, 400);
  assert.equal(r.body.code, 'E_MODEL_MISMATCH');
  assert.match(r.body.detail, /brightness.*150.*maximum 100/);
  assert.ok(Array.isArray(r.body.problems) && r.body.problems.length === 1);
  const unknown = await post(`/api/v1/devices/${d.id}/messages/events`, { event: 'explode' }, auth);
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.detail, /unknown event "explode"/);
  const badTs = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true, ts: -5 }, auth);
  assert.equal(badTs.status, 400);
  const notJson = await post(`/api/v1/devices/${d.id}/messages/properties`, '{"on": tru', auth);
  assert.equal(notJson.status, 400);
  assert.equal(notJson.headers.get('content-type'), PROBLEM);
  const big = await post(`/api/v1/devices/${d.id}/messages/properties`, { on: true, pad: 'x'.repeat(70_000) }, auth);
  assert.equal(big.status, 413);
  assert.equal(big.body.code, 'E_PAYLOAD_TOO_LARGE');
  // the valid report after them is the only one that counts
  await post(`/api/v1/devices/${d.id}/messages/properties`, { colorTemp: 3000 }, auth);
  await p.until(d.id, (x) => x.shadow.reported.colorTemp === 3000, 'the valid report');
  assert.deepEqual(await reported(d.id), { colorTemp: 3000 });
});

test('device HTTP: a repeated Idempotency-Key is stored once', async () => {
  const d = await p.provision('light');
  const auth = { authorization: basic(d.id, d.secret) };
  for (let i = 0; i < 3; i++) {
    const r = await post(`/api/v1/devices/${d.id}/messages/properties`, { brightness: 10 }, { ...auth, 'idempotency-key': 'report-1' });
    assert.equal(r.status, 202);
  }
  assert.equal((await post(`/api/v1/devices/${d.id}/messages/properties`, { brightness: 20 }, { ...auth, 'idempotency-key': 'report-2' })).status, 202);
  const points = await eventually(
    async () => {
      const h = await p.api('GET', `/api/v1/devices/${d.id}/history?property=brightness`);
      return h.body.points.some((x: { value: number }) => x.value === 20) ? h.body.points : undefined;
    },
    3000,
    'the second report in the history',
  );
  assert.deepEqual(
    points.map((x: { value: number }) => x.value),
    [10, 20],
  );
});

test('partners: the operator registers one; a signed push updates shadows; a bad signature stores nothing', async () => {
  const created = await p.api('POST', '/api/v1/partners', { name: 'Acme Cloud', products: ['light'] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.id, /^pt_[0-9a-z]{14}$/);
  assert.ok(created.body.secret.length >= 24);
  const partner = created.body as { id: string; secret: string };
  const read = await p.api('GET', `/api/v1/partners/${partner.id}`);
  assert.equal(read.body.name, 'Acme Cloud');
  assert.equal(read.body.secret, undefined, 'the secret is shown once');
  assert.ok((await p.api('GET', '/api/v1/partners')).body.items.some((x: { id: string }) => x.id === partner.id));
  assert.equal((await p.api('POST', '/api/v1/partners', { name: 'x', products: ['warp-drive'] })).status, 404);

  const [a, b] = [await p.provision('light'), await p.provision('light')];
  const ok = await push(partner, [
    { deviceId: a.id, kind: 'properties', payload: { on: true }, id: 'acme-1' },
    { deviceId: b.id, kind: 'properties', payload: { brightness: 70 }, id: 'acme-2' },
  ]);
  assert.equal(ok.status, 202, JSON.stringify(ok.body));
  assert.equal(ok.body.accepted, 2);
  assert.equal(ok.body.ids.length, 2);
  await p.until(a.id, (x) => x.shadow.reported.on === true, "a's shadow");
  await p.until(b.id, (x) => x.shadow.reported.brightness === 70, "b's shadow");

  const forged = await push(partner, [{ deviceId: a.id, kind: 'properties', payload: { brightness: 99 } }], sign('guessed-secret', '{}'));
  assert.equal(forged.status, 401);
  assert.equal(forged.body.code, 'E_BAD_SIGNATURE');
  const raw = JSON.stringify({ messages: [{ deviceId: a.id, kind: 'properties', payload: { brightness: 98 } }] });
  const tampered = await post(`/api/v1/partners/${partner.id}/messages`, raw.replace('98', '97'), { 'x-hearth-signature': sign(partner.secret, raw) });
  assert.equal(tampered.status, 401, 'the signature covers the exact body');
  const unsigned = await post(`/api/v1/partners/${partner.id}/messages`, raw, {});
  assert.equal(unsigned.status, 401);
  const unknownPartner = await push({ id: 'pt_nothere000000', secret: partner.secret }, [{ deviceId: a.id, kind: 'properties', payload: { brightness: 96 } }]);
  assert.equal(unknownPartner.status, 401);
  // the last valid push is processed after anything that might have slipped through: nothing did
  assert.equal((await push(partner, [{ deviceId: a.id, kind: 'properties', payload: { colorTemp: 4000 } }])).status, 202);
  await p.until(a.id, (x) => x.shadow.reported.colorTemp === 4000, 'the valid push');
  assert.deepEqual(await reported(a.id), { on: true, colorTemp: 4000 });

  // rotation: the old secret stops working at once
  const rotated = await p.api('POST', `/api/v1/partners/${partner.id}/secret`);
  assert.equal(rotated.status, 200);
  assert.notEqual(rotated.body.secret, partner.secret);
  assert.equal((await push(partner, [{ deviceId: a.id, kind: 'properties', payload: { on: false } }])).status, 401);
  assert.equal((await push({ id: partner.id, secret: rotated.body.secret }, [{ deviceId: a.id, kind: 'properties', payload: { on: false } }])).status, 202);
  await p.until(a.id, (x) => x.shadow.reported.on === false, 'the push signed with the new secret');

  assert.equal((await p.api('DELETE', `/api/v1/partners/${partner.id}`)).status, 204);
  assert.equal((await p.api('GET', `/api/v1/partners/${partner.id}`)).status, 404);
  assert.equal((await push({ id: partner.id, secret: rotated.body.secret }, [{ deviceId: a.id, kind: 'properties', payload: { on: true } }])).status, 401);
});

test("partners: a batch with a device outside the partner's products, or a bad payload, is refused whole, naming the message", async () => {
  const partner = (await p.api('POST', '/api/v1/partners', { name: 'Lights only', products: ['light'] })).body as { id: string; secret: string };
  const light = await p.provision('light');
  const plug = await p.provision('plug');
  const r = await push(partner, [
    { deviceId: light.id, kind: 'properties', payload: { on: true } },
    { deviceId: plug.id, kind: 'properties', payload: { on: true } },
  ]);
  assert.equal(r.status, 403);
  assert.equal(r.body.code, 'E_FORBIDDEN');
  assert.equal(r.body.index, 1);
  assert.match(r.body.detail, /^messages\[1\]: .*"plug".*nothing was stored/);
  const bad = await push(partner, [{ deviceId: light.id, kind: 'properties', payload: { brightness: 101 } }]);
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'E_MODEL_MISMATCH');
  assert.equal(bad.body.field, 'body.messages[0].payload');
  const missing = await push(partner, [{ deviceId: 'd_nothere0000000', kind: 'properties', payload: { on: true } }]);
  assert.equal(missing.status, 404);
  const shape = await push(partner, [{ deviceId: light.id, kind: 'commands', payload: {} }]);
  assert.equal(shape.status, 400);
  assert.equal(shape.body.code, 'E_VALIDATION');

  assert.equal((await push(partner, [{ deviceId: light.id, kind: 'properties', payload: { colorTemp: 5000 } }])).status, 202);
  await p.until(light.id, (x) => x.shadow.reported.colorTemp === 5000, 'the valid push');
  assert.deepEqual(await reported(light.id), { colorTemp: 5000 }, 'the refused batch stored nothing');
  assert.deepEqual(await reported(plug.id), {});
});

test("partners: AMQP messages from the partner's queue reach the shadows and are acked; invalid ones are rejected without requeue", async () => {
  // The partner's queue dead-letters what Hearth rejects.
  await ch.assertExchange('acme-dlx', 'fanout', { durable: false });
  await ch.assertQueue('acme-dead', { durable: false });
  await ch.bindQueue('acme-dead', 'acme-dlx', '');
  await ch.assertQueue('acme-in', { durable: false, arguments: { 'x-dead-letter-exchange': 'acme-dlx' } });

  const created = await p.api('POST', '/api/v1/partners', {
    name: 'Acme AMQP',
    products: ['light'],
    amqp: { url: rabbit.url, queue: 'acme-in', prefetch: 10 },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.amqp.url, rabbit.url.replace(':guest@', ':***@'), 'the password is not shown');
  const partnerId = created.body.id as string;
  await eventually(async () => (await ch.checkQueue('acme-in')).consumerCount === 1, 5000, 'Hearth consuming the partner queue');

  const light = await p.provision('light');
  const plug = await p.provision('plug');
  const send = (body: unknown, opts: { messageId?: string } = {}) =>
    ch.sendToQueue('acme-in', Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), opts);
  send({ deviceId: light.id, kind: 'properties', payload: { on: true, brightness: 64 } }, { messageId: 'acme-m1' });
  await p.until(light.id, (x) => x.shadow.reported.brightness === 64, 'the AMQP report in the shadow', 5000);

  send('{"deviceId": nope');
  send({ deviceId: plug.id, kind: 'properties', payload: { on: true } });
  send({ deviceId: light.id, kind: 'properties', payload: { brightness: 999 } });
  send({ deviceId: 'd_nothere0000000', kind: 'properties', payload: { on: true } });
  const dead = await eventually(
    async () => {
      const n = (await ch.checkQueue('acme-dead')).messageCount;
      return n === 4 ? n : undefined;
    },
    5000,
    'the four invalid messages dead-lettered',
  );
  assert.equal(dead, 4);
  const first = await ch.get('acme-dead', { noAck: true });
  assert.ok(first && first.content.toString() === '{"deviceId": nope', 'rejected as it was sent, not requeued');
  assert.equal(first.properties.headers?.['x-death']?.[0]?.reason, 'rejected');
  assert.deepEqual(await reported(light.id), { on: true, brightness: 64 });
  assert.deepEqual(await reported(plug.id), {});
  assert.ok(p.logs.some((l) => l.msg === 'AMQP message refused (rejected without requeue)' && l.level === 40 && /not valid JSON/.test(l.reason)));

  // Removing the partner stops its consumer; nothing was left unacknowledged.
  assert.equal((await p.api('DELETE', `/api/v1/partners/${partnerId}`)).status, 204);
  const q = await eventually(
    async () => {
      const s = await ch.checkQueue('acme-in');
      return s.consumerCount === 0 ? s : undefined;
    },
    5000,
    'the consumer gone',
  );
  assert.equal(q.messageCount, 0, 'every message was acknowledged or rejected');
});

test('partners: an unreachable broker is retried with backoff and logged, without holding anything up', async () => {
  const port = await freePort();
  const created = await p.api('POST', '/api/v1/partners', { name: 'Down MQ', products: ['light'], amqp: { url: `amqp://u:pw@127.0.0.1:${port}`, queue: 'q' } });
  assert.equal(created.status, 201);
  const warned = await eventually(
    () => p.logs.filter((l) => l.msg === 'AMQP connection failed; retrying with backoff' && l.url === `amqp://u:***@127.0.0.1:${port}`).length >= 2,
    5000,
    'two failed attempts logged',
  );
  assert.ok(warned);
  assert.ok(!JSON.stringify(p.logs).includes(':pw@'), 'the password never reaches the log');
  const t = Date.now();
  assert.equal((await p.api('DELETE', `/api/v1/partners/${created.body.id}`)).status, 204);
  assert.ok(Date.now() - t < 1000);
});

test("partner management is the operator's: a user gets 403 everywhere", async () => {
  const email = 'user@partners.test';
  assert.equal((await p.api('POST', '/api/v1/auth/signup', { email, password: 'password-of-user' }, null)).status, 201);
  const token = (await p.api('POST', '/api/v1/auth/login', { email, password: 'password-of-user' }, null)).body.token as string;
  const partner = (await p.api('POST', '/api/v1/partners', { name: 'Theirs', products: ['light'] })).body as { id: string };
  const calls: Array<[string, string, unknown?]> = [
    ['POST', '/api/v1/partners', { name: 'Mine', products: ['light'] }],
    ['GET', '/api/v1/partners'],
    ['GET', `/api/v1/partners/${partner.id}`],
    ['DELETE', `/api/v1/partners/${partner.id}`],
    ['POST', `/api/v1/partners/${partner.id}/secret`],
  ];
  for (const [method, path, body] of calls) {
    const r = await p.api(method, path, body, token);
    assert.equal(r.status, 403, `${method} ${path}`);
  }
  assert.equal((await p.api('GET', `/api/v1/partners/${partner.id}`)).status, 200, 'still there');
});

test('AMQP: a message that cannot be stored (bus down) is requeued, never lost, and taken once the bus is back', async () => {
  // Sources of their own on a store of their own, over a bus that stores nothing until the stream exists.
  const dir = mkdtempSync(join(tmpdir(), 'hearth-amqp-'));
  const { db } = openStore({ dataDir: dir });
  const lines: any[] = [];
  const log = createLogger('warn', {}, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const bus = new MemoryBus(log);
  try {
    await migrate(db);
    const products = new ProductService({ db });
    await products.installCatalog();
    const devices = new DeviceService({ db, products });
    const light = await devices.provision({ product: 'light', name: 'l' });
    const partners = new PartnerService({ db, devices, products });
    await ch.assertQueue('acme-retry', { durable: false });
    await partners.create({ name: 'Retry', products: ['light'], amqp: { url: rabbit.url, queue: 'acme-retry' } });
    const ingress = new UplinkIngress({ bus, shards: 1, nodeId: 'test' });
    const down = new AmqpSources({ partners, ingress, log, requeueDelayMs: 50 });
    await down.start();
    ch.sendToQueue('acme-retry', Buffer.from(JSON.stringify({ deviceId: light.id, kind: 'properties', payload: { on: true } })), { messageId: 'm-1' });
    await eventually(
      () => lines.filter((l) => l.msg === 'AMQP message could not be stored; requeued').length >= 2,
      5000,
      'the message requeued and redelivered',
    );
    await down.stop();
    const held = await ch.checkQueue('acme-retry');
    assert.equal(held.consumerCount, 0, 'stop cancels the consumer');
    assert.equal(held.messageCount, 1, 'the message is back in the queue');

    await bus.ensureStream({ name: UPLINK_STREAM, subjects: [subjects.allUp] });
    const stored: any[] = [];
    await bus.consume({ stream: UPLINK_STREAM, durable: 'test', filter: subjects.allUp, ackWaitMs: 5000 }, async (m) => {
      stored.push(m.data);
      m.ack();
    });
    const up = new AmqpSources({ partners, ingress, log, requeueDelayMs: 50 });
    await up.start();
    await eventually(() => stored.length === 1, 5000, 'the message stored');
    assert.equal(stored[0].source, `amqp:${(await partners.list())[0].id}`);
    assert.equal(stored[0].sourceId, 'm-1', 'the AMQP message id is the source id');
    assert.deepEqual(stored[0].payload, { on: true });
    await eventually(async () => (await ch.checkQueue('acme-retry')).messageCount === 0, 3000, 'the message acked');
    await up.stop();
  } finally {
    await bus.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
