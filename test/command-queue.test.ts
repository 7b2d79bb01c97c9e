/**
 * Queued commands (issue 17) through real MQTT and HTTP: stored while the device is offline,
 * delivered in order on its next subscription with a bounded number in flight, expired,
 * cancelled, redelivered after a lost answer and settled once, with Idempotency-Key retries,
 * across a restart and a SIGKILL of the server.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { ADMIN, connectDevice, eventually, inbox, requestJson, startPlatform, type Platform } from './helpers/platform.ts';
import { startServer, exitWithin } from './helpers/cli.ts';
import { signupUser } from './helpers/people.ts';
import WebSocket from 'ws';
import { DEMO_CHILDREN, startSimulator } from '../src/simulator/simulator.ts';

const MAX_QUEUED = 120;
const IN_FLIGHT = 4;
let p: Platform;
before(async () => {
  p = await startPlatform({
    env: { HEARTH_COMMAND_QUEUE_MAX: String(MAX_QUEUED), HEARTH_COMMAND_QUEUE_MAX_IN_FLIGHT: String(IN_FLIGHT), HEARTH_COMMAND_QUEUE_MAX_TTL_MS: '600000' },
  });
});
after(async () => {
  await p.stop();
});

/** POST a command with extra headers (Idempotency-Key). */
async function post(base: string, token: string, deviceId: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/api/v1/devices/${deviceId}/commands`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

/** A device comes online and listens on its commands topic. */
async function online(mqttUrl: string, d: { id: string; secret: string }) {
  const c = await connectDevice(mqttUrl, d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync([`devices/${d.id}/commands`, `devices/${d.id}/errors`], { qos: 1 });
  return { c, box };
}

function answer(c: MqttClient, deviceId: string, result: unknown): Promise<unknown> {
  return c.publishAsync(`devices/${deviceId}/commands/result`, JSON.stringify(result), { qos: 1 });
}

async function command(deviceId: string, id: string): Promise<any> {
  const r = await p.api('GET', `/api/v1/devices/${deviceId}/commands/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

test('100 commands queued for an offline device arrive in order after it reconnects, at most N in flight, each answered once', async () => {
  const d = await p.provision('cloud-printer');
  const ids: string[] = [];
  for (let i = 0; i < 100; i++) {
    const r = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: `job ${i}` }, ttlMs: 60_000 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.state, 'queued');
    assert.ok(Date.parse(r.body.expiresAt) > Date.now() + 50_000);
    ids.push(r.body.id);
  }
  assert.equal((await command(d.id, ids[0])).status, 'queued');

  const dev = await online(p.mqttUrl, d);
  // The first N arrive, and no more until one is answered.
  const first: any[] = [];
  for (let i = 0; i < IN_FLIGHT; i++) first.push((await dev.box.next((m) => m.topic === `devices/${d.id}/commands`)).payload);
  assert.deepEqual(
    first.map((c) => c.id),
    ids.slice(0, IN_FLIGHT),
  );
  assert.deepEqual(first[0], { id: ids[0], action: 'print', params: { content: 'job 0' } });
  const ledger = (await p.api('GET', `/api/v1/devices/${d.id}/commands?limit=200`)).body.items;
  assert.equal(ledger.filter((c: any) => c.status === 'sent').length, IN_FLIGHT);
  assert.equal(ledger.filter((c: any) => c.status === 'queued').length, 100 - IN_FLIGHT);

  // Answer each as it comes: all 100 arrive, in order.
  const seen = first.map((c) => c.id);
  for (const c of first) await answer(dev.c, d.id, { id: c.id, ok: true, result: { jobId: `j-${c.id}` } });
  while (seen.length < 100) {
    const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`, 5000);
    seen.push(m.payload.id);
    await answer(dev.c, d.id, { id: m.payload.id, ok: true, result: { jobId: `j-${m.payload.id}` } });
  }
  assert.deepEqual(seen, ids);
  await eventually(async () => (await command(d.id, ids[99])).status === 'answered', 5000, 'the last answered');
  const last = await command(d.id, ids[99]);
  assert.equal(last.ok, true);
  assert.deepEqual(last.result, { jobId: `j-${ids[99]}` });
  assert.ok(last.expiresAt);
  await dev.c.endAsync();
});

test('a queued command to an online device answers 200 with the outcome; without ttlMs an offline device is still 409', async () => {
  const d = await p.provision('cloud-printer');
  const dev = await online(p.mqttUrl, d);
  await p.until(d.id, (x) => x.online, 'online');
  const call = p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: 'now' }, queue: true });
  const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
  await answer(dev.c, d.id, { id: m.payload.id, ok: true, result: { jobId: 'j1' } });
  const r = await call;
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual({ id: r.body.id, ok: r.body.ok, result: r.body.result }, { id: m.payload.id, ok: true, result: { jobId: 'j1' } });
  // "queue": true takes the product's TTL (the printer's model: a day), bounded by HEARTH_COMMAND_QUEUE_MAX_TTL_MS (here 10 minutes)
  const rec = await command(d.id, r.body.id);
  assert.equal(Date.parse(rec.expiresAt) - Date.parse(rec.acceptedAt), 600_000);
  const product = await p.api('POST', '/api/v1/products', {
    key: 'queue-bell',
    name: 'Bell',
    category: 'bell',
    model: { actions: [{ id: 'ring' }], commandTtlMs: 120_000 },
  });
  assert.equal(product.status, 201, JSON.stringify(product.body));
  assert.equal(product.body.model.commandTtlMs, 120_000);
  const bell = await p.provision('queue-bell');
  const s = await p.api('POST', `/api/v1/devices/${bell.id}/commands`, { action: 'ring', queue: true });
  assert.equal(s.status, 202);
  assert.equal(Date.parse(s.body.expiresAt) - Date.parse((await command(bell.id, s.body.id)).acceptedAt), 120_000);
  await dev.c.endAsync();
  await p.until(d.id, (x) => !x.online, 'offline');
  const plain = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: 'x' } });
  assert.equal(plain.status, 409);
  assert.equal(plain.body.code, 'E_DEVICE_OFFLINE');
});

test('a command whose TTL passes is expired and never sent; a cancelled one is never sent; the live states show on GET', async () => {
  const d = await p.provision('payment-speaker');
  const short = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'announce', params: { amount: 1 }, ttlMs: 1000 });
  assert.equal(short.status, 202);
  const cancel = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'announce', params: { amount: 2 }, ttlMs: 60_000 });
  const kept = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'announce', params: { amount: 3 }, ttlMs: 60_000 });
  const del = await p.api('DELETE', `/api/v1/devices/${d.id}/commands/${cancel.body.id}`);
  assert.equal(del.status, 200, JSON.stringify(del.body));
  assert.equal(del.body.status, 'cancelled');
  const again = await p.api('DELETE', `/api/v1/devices/${d.id}/commands/${cancel.body.id}`);
  assert.equal(again.status, 409);
  assert.equal(again.body.code, 'E_CONFLICT');
  assert.match(again.body.detail, /is cancelled/);
  await eventually(async () => (await command(d.id, short.body.id)).status === 'expired', 4000, 'expired');

  const dev = await online(p.mqttUrl, d);
  const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
  assert.equal(m.payload.id, kept.body.id, 'neither the expired nor the cancelled one is sent');
  assert.equal((await command(d.id, kept.body.id)).status, 'sent');
  // a sent command can no longer be cancelled
  const late = await p.api('DELETE', `/api/v1/devices/${d.id}/commands/${kept.body.id}`);
  assert.equal(late.status, 409);
  assert.match(late.body.detail, /is sent/);
  await answer(dev.c, d.id, { id: m.payload.id, ok: false, error: 'speaker muted' });
  await eventually(async () => (await command(d.id, kept.body.id)).status === 'failed', 3000, 'failed');
  assert.equal(dev.box.messages.filter((x) => x.topic === `devices/${d.id}/commands`).length, 0);
  await dev.c.endAsync();
});

test('an unanswered command is sent again on the next subscription with the same id, and a repeated answer changes nothing', async () => {
  const d = await p.provision('payment-speaker');
  const q = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'announce', params: { amount: 9.5 }, ttlMs: 60_000 });
  let dev = await online(p.mqttUrl, d);
  const first = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
  assert.equal(first.payload.id, q.body.id);
  // the answer is lost: the connection drops first
  dev.c.stream.destroy();
  await p.until(d.id, (x) => !x.online, 'offline');
  dev = await online(p.mqttUrl, d);
  const second = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
  assert.deepEqual(second.payload, first.payload, 'the same command, the same id');
  await answer(dev.c, d.id, { id: q.body.id, ok: true });
  await eventually(async () => (await command(d.id, q.body.id)).status === 'answered', 3000, 'answered');
  const settled = await command(d.id, q.body.id);
  // the device saw it twice and answered twice (protocol.md: answer again, do not run again)
  await answer(dev.c, d.id, { id: q.body.id, ok: false, error: 'a second answer' });
  // an online device that does not answer within timeoutMs: 202, the command stays sent (and is sent again on the next subscription)
  const marker = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'announce', params: { amount: 1 }, ttlMs: 60_000, timeoutMs: 300 });
  assert.equal(marker.status, 202);
  assert.equal(marker.body.state, 'sent');
  const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
  assert.equal(m.payload.id, marker.body.id);
  assert.deepEqual(await command(d.id, q.body.id), settled, 'the first answer stands');
  assert.equal(dev.box.messages.filter((x) => x.topic === `devices/${d.id}/errors`).length, 0, 'a repeated answer is not an error');
  await dev.c.endAsync();
});

test('a POST retried with the same Idempotency-Key queues once', async () => {
  const d = await p.provision('cloud-printer');
  const body = { action: 'print', params: { content: 'receipt 7' }, ttlMs: 60_000 };
  const a = await post(p.httpUrl, p.token, d.id, body, { 'idempotency-key': 'order-7' });
  const b = await post(p.httpUrl, p.token, d.id, body, { 'idempotency-key': 'order-7' });
  assert.equal(a.status, 202);
  assert.equal(b.status, 202);
  assert.equal(b.body.id, a.body.id);
  const c = await post(p.httpUrl, p.token, d.id, body, { 'idempotency-key': 'order-8' });
  assert.notEqual(c.body.id, a.body.id);
  const items = (await p.api('GET', `/api/v1/devices/${d.id}/commands`)).body.items;
  assert.equal(items.length, 2);
  // once answered, a retry gets the outcome
  const dev = await online(p.mqttUrl, d);
  for (let i = 0; i < 2; i++) {
    const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
    await answer(dev.c, d.id, { id: m.payload.id, ok: true, result: { jobId: m.payload.id } });
  }
  await eventually(async () => (await command(d.id, a.body.id)).status === 'answered', 3000, 'answered');
  const retry = await post(p.httpUrl, p.token, d.id, body, { 'idempotency-key': 'order-7' });
  assert.equal(retry.status, 200);
  assert.deepEqual({ id: retry.body.id, ok: retry.body.ok, result: retry.body.result }, { id: a.body.id, ok: true, result: { jobId: a.body.id } });
  // the key only means something for a queued command
  const plain = await post(p.httpUrl, p.token, d.id, { action: 'print', params: { content: 'x' } }, { 'idempotency-key': 'order-9' });
  assert.equal(plain.status, 400);
  assert.equal(plain.body.code, 'E_VALIDATION');
  await dev.c.endAsync();
});

test('bad input: a negative, huge or over-the-limit TTL, a full queue (429 naming the limit), unknown command ids', async () => {
  const d = await p.provision('payment-speaker');
  const path = `/api/v1/devices/${d.id}/commands`;
  for (const ttlMs of [-5, 0, 999, 1e12, 1.5]) {
    const r = await p.api('POST', path, { action: 'announce', params: { amount: 1 }, ttlMs });
    assert.equal(r.status, 400, `ttlMs ${ttlMs}`);
    assert.equal(r.body.code, 'E_VALIDATION');
  }
  const over = await p.api('POST', path, { action: 'announce', params: { amount: 1 }, ttlMs: 600_001 });
  assert.equal(over.status, 400);
  assert.match(over.body.detail, /limit of 600000 ms \(HEARTH_COMMAND_QUEUE_MAX_TTL_MS\)/);
  const mismatch = await p.api('POST', path, { action: 'announce', params: { amount: -1 }, ttlMs: 60_000 });
  assert.equal(mismatch.status, 400);
  assert.equal(mismatch.body.code, 'E_MODEL_MISMATCH');

  for (let i = 0; i < MAX_QUEUED; i++) assert.equal((await p.api('POST', path, { action: 'announce', params: { amount: i }, ttlMs: 60_000 })).status, 202);
  const full = await p.api('POST', path, { action: 'announce', params: { amount: 1 }, ttlMs: 60_000 });
  assert.equal(full.status, 429);
  assert.equal(full.body.code, 'E_COMMAND_QUEUE_FULL');
  assert.equal(full.body.limit, MAX_QUEUED);
  assert.match(full.body.detail, new RegExp(`the limit is ${MAX_QUEUED} \\(HEARTH_COMMAND_QUEUE_MAX\\)`));
  // cancelling one makes room
  const first = (await p.api('GET', `${path}?limit=1000`)).body.items.at(-1);
  assert.equal((await p.api('DELETE', `${path}/${first.id}`)).status, 200);
  assert.equal((await p.api('POST', path, { action: 'announce', params: { amount: 1 }, ttlMs: 60_000 })).status, 202);

  const unknown = await p.api('GET', `${path}/c_nosuchcommand`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.code, 'E_COMMAND_NOT_FOUND');
  assert.equal((await p.api('DELETE', `${path}/c_nosuchcommand`)).body.code, 'E_COMMAND_NOT_FOUND');
  const other = await p.provision('payment-speaker');
  assert.equal((await p.api('GET', `/api/v1/devices/${other.id}/commands/${first.id}`)).status, 404, "another device's command is not found");
});

test('the live stream shows a queued command go queued → sent → answered, and expired and cancelled ones', async () => {
  const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream?types=command`, { headers: { authorization: `Bearer ${p.token}` } });
  const events: any[] = [];
  ws.on('message', (buf) => events.push(JSON.parse(buf.toString())));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  try {
    await eventually(() => events.some((e) => e.type === 'hello'), 3000, 'hello');
    const d = await p.provision('cloud-printer');
    const statuses = (id: string) => events.filter((e) => e.type === 'command' && e.data.commandId === id).map((e) => e.data.status);
    const q = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: 'live' }, ttlMs: 60_000 });
    const gone = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: 'cancel me' }, ttlMs: 60_000 });
    const brief = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: 'too late' }, ttlMs: 1000 });
    await eventually(() => statuses(q.body.id).length === 1, 3000, 'queued event');
    const queued = events.find((e) => e.type === 'command' && e.data.commandId === q.body.id);
    assert.deepEqual(queued.data, { commandId: q.body.id, action: 'print', status: 'queued', expiresAt: q.body.expiresAt });
    await p.api('DELETE', `/api/v1/devices/${d.id}/commands/${gone.body.id}`);
    await eventually(() => statuses(brief.body.id).includes('expired'), 4000, 'expired event');
    const dev = await online(p.mqttUrl, d);
    const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
    await answer(dev.c, d.id, { id: m.payload.id, ok: true, result: { jobId: 'live-1' } });
    await eventually(() => statuses(q.body.id).includes('answered'), 3000, 'answered event');
    assert.deepEqual(statuses(q.body.id), ['queued', 'sent', 'answered']);
    assert.deepEqual(statuses(gone.body.id), ['queued', 'cancelled']);
    assert.deepEqual(statuses(brief.body.id), ['queued', 'expired']);
    await dev.c.endAsync();
  } finally {
    ws.terminate();
  }
});

test('a device removed from its home drops its queue; moving it to another room does not', async () => {
  const ana = await signupUser(p, 'ana@queue.test');
  const home = (await ana.api('POST', '/homes', { name: 'Shop', timezone: 'Europe/Berlin' })).body.id;
  const room = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Till' })).body.id;
  const d = await p.provision('cloud-printer');
  assert.equal((await ana.api('POST', `/homes/${home}/devices`, { pairingCode: d.pairingCode })).status, 201);
  const a = await ana.api('POST', `/devices/${d.id}/commands`, { action: 'print', params: { content: 'stays' }, ttlMs: 60_000 });
  assert.equal(a.status, 202, JSON.stringify(a.body));
  assert.equal((await ana.api('PATCH', `/devices/${d.id}`, { roomId: room })).status, 200);
  // a room change keeps the queue: the command arrives and its answer settles it (a dropped one would stay cancelled)
  let dev = await online(p.mqttUrl, d);
  const got = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
  assert.equal(got.payload.id, a.body.id);
  await answer(dev.c, d.id, { id: a.body.id, ok: true });
  await eventually(async () => (await command(d.id, a.body.id)).status === 'answered', 3000, 'answered after the room change');
  await dev.c.endAsync();
  await p.until(d.id, (x) => !x.online, 'offline');

  const b = await ana.api('POST', `/devices/${d.id}/commands`, { action: 'print', params: { content: 'dropped' }, ttlMs: 60_000 });
  assert.equal(b.status, 202);
  assert.equal((await ana.api('DELETE', `/homes/${home}/devices/${d.id}`)).status, 200);
  await eventually(async () => (await command(d.id, b.body.id)).status === 'cancelled', 3000, 'cancelled on unbind');
  dev = await online(p.mqttUrl, d);
  await p.until(d.id, (x) => x.online, 'online');
  const marker = await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: 'new owner' }, ttlMs: 60_000, timeoutMs: 300 });
  const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`);
  assert.equal(m.payload.id, marker.body.id, 'the dropped command never arrives');
  await dev.c.endAsync();
});

test('commands queued for a sub-device while its hub is offline reach it through the hub, each run once (the simulator)', async () => {
  const hub = await p.provision('hub', 'queue hub');
  const sim = () => startSimulator({ mqttUrl: p.mqttUrl, hubId: hub.id, hubSecret: hub.secret, children: DEMO_CHILDREN, intervalMs: 60_000 });
  let s = sim();
  try {
    await s.ready;
    const light = s.children.get(DEMO_CHILDREN.find((c) => c.product === 'light')!.hwid)!.id;
    await s.stop();
    await p.until(light, (x) => !x.online, 'the light offline with its hub');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await p.api('POST', `/api/v1/devices/${light}/commands`, { action: 'toggle', ttlMs: 60_000 })).body.id);
    // The simulator starts its light switched on; three toggles, each run once, leave it off.
    s = sim();
    await s.ready;
    await eventually(
      async () => {
        const states = await Promise.all(ids.map(async (id) => (await command(light, id)).status));
        return states.every((x) => x === 'answered');
      },
      8000,
      'the three answered',
    );
    await p.until(light, (x) => x.shadow.reported.on === false, 'three toggles, so off', 5000);
  } finally {
    await s.stop();
  }
});

describe('queues survive the server', () => {
  test('a queue survives a restart of the platform', async () => {
    const a = await startPlatform();
    const d = await a.provision('cloud-printer');
    const q = await a.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'print', params: { content: 'after restart' }, ttlMs: 60_000 });
    assert.equal(q.status, 202);
    await a.stop(false);
    const b = await startPlatform({ dataDir: a.dataDir });
    try {
      const dev = await online(b.mqttUrl, d);
      const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`, 5000);
      assert.deepEqual(m.payload, { id: q.body.id, action: 'print', params: { content: 'after restart' } });
      await answer(dev.c, d.id, { id: q.body.id, ok: true });
      await eventually(async () => (await b.api('GET', `/api/v1/devices/${d.id}/commands/${q.body.id}`)).body.status === 'answered', 3000, 'answered');
      await dev.c.endAsync();
    } finally {
      await b.stop();
    }
  });

  test('a queue survives a SIGKILL of the server', async () => {
    const env = { HEARTH_DEMO: '0', HEARTH_ADMIN_EMAIL: ADMIN.email, HEARTH_ADMIN_PASSWORD: ADMIN.password, HEARTH_LOG_LEVEL: 'warn' };
    const s = await startServer(env, { until: /Operator login:.*\n/ });
    const login = async (base: string) => (await requestJson(`${base}/api/v1/auth/login`, 'POST', ADMIN)).body.token as string;
    let token = await login(s.base);
    const d = (await requestJson(`${s.base}/api/v1/devices`, 'POST', { product: 'cloud-printer', name: 'till' }, token)).body;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await post(s.base, token, d.id, { action: 'print', params: { content: `k${i}` }, ttlMs: 60_000 })).body.id);
    s.proc.child.kill('SIGKILL');
    await s.proc.exited;
    const t = await startServer(env, { dataDir: s.dataDir, until: /Operator login:.*\n/ });
    try {
      token = await login(t.base);
      const dev = await online(`mqtt://127.0.0.1:${t.mqttPort}`, d);
      const got: string[] = [];
      while (got.length < 5) {
        const m = await dev.box.next((x) => x.topic === `devices/${d.id}/commands`, 5000);
        got.push(m.payload.id);
        await answer(dev.c, d.id, { id: m.payload.id, ok: true });
      }
      assert.deepEqual(got, ids);
      await dev.c.endAsync();
    } finally {
      t.proc.child.kill('SIGTERM');
      await exitWithin(t.proc, 10_000);
    }
  });
});
