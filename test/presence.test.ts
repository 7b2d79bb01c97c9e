import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import type { MqttClient } from 'mqtt';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

const device = (id: string) => p.device(id);

const until = (id: string, pred: (d: any) => boolean, what: string, timeoutMs?: number) => p.until(id, pred, what, timeoutMs);

/** Resolves when the client's connection closes; call it before causing the close. */
const closed = (c: MqttClient) => new Promise<void>((resolve) => c.once('close', () => resolve()));

// --- a minimal raw MQTT 3.1.1 client, for a connection that never pings ---

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

function connectPacket(id: string, secret: string, keepalive: number): Buffer {
  const keep = Buffer.alloc(2);
  keep.writeUInt16BE(keepalive);
  // protocol name, level 4, flags: user name + password + clean session
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2]), keep, str(id), str(id), str(secret)]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

/** Connects over a raw socket and resolves with it once the CONNACK accepted the connection. */
function rawConnect(id: string, secret: string, keepalive: number): Promise<Socket> {
  const url = new URL(p.mqttUrl);
  return new Promise((resolve, reject) => {
    const s = netConnect(Number(url.port), url.hostname, () => s.write(connectPacket(id, secret, keepalive)));
    s.once('data', (buf) => {
      if (buf[0] === 0x20 && buf[3] === 0) resolve(s);
      else reject(new Error(`connection refused: ${buf.toString('hex')}`));
    });
    s.once('error', reject);
  });
}

test('connect, clean disconnect and reconnect: reasons and session numbers', async () => {
  const d = await p.provision('plug');
  const fresh = await device(d.id);
  assert.equal(fresh.online, false);
  assert.equal(fresh.presence.reason, 'never-connected');
  assert.equal(fresh.presence.session, 0);
  assert.equal(fresh.lastSeen, null);

  const before1 = Date.now();
  const c1 = await p.connect(d.id, d.secret);
  const on1 = await until(d.id, (x) => x.online, 'online');
  assert.equal(on1.presence.reason, 'connect');
  assert.equal(on1.presence.session, 1);
  assert.ok(Date.parse(on1.presence.changedAt) >= before1 - 5);
  assert.ok(on1.lastSeen);
  const listed = await p.api('GET', '/api/v1/devices?product=plug');
  assert.equal(listed.body.items.find((x: { id: string }) => x.id === d.id).online, true);

  await c1.endAsync();
  const off1 = await until(d.id, (x) => !x.online, 'offline');
  assert.equal(off1.presence.reason, 'disconnect');
  assert.equal(off1.presence.session, 1);
  assert.ok(Date.parse(off1.presence.changedAt) >= Date.parse(on1.presence.changedAt));

  const c2 = await p.connect(d.id, d.secret);
  const on2 = await until(d.id, (x) => x.online, 'online again');
  assert.equal(on2.presence.reason, 'connect');
  assert.equal(on2.presence.session, 2);
  await c2.endAsync();
  const off2 = await until(d.id, (x) => !x.online, 'offline again');
  assert.equal(off2.presence.reason, 'disconnect');
  assert.equal(off2.presence.session, 2);
});

test('session takeover: the kicked connection never marks the device offline', async () => {
  const d = await p.provision('light');
  let current = await p.connect(d.id, d.secret);
  let session = (await until(d.id, (x) => x.online && x.presence.session === 1, 'first session')).presence.session;
  for (let round = 1; round <= 5; round++) {
    const old = current;
    const oldClosed = closed(old);
    current = await p.connect(d.id, d.secret);
    await oldClosed;
    const expected = session + 1;
    const now = await until(d.id, (x) => x.presence.session === expected, `round ${round}: session ${expected}`);
    assert.equal(now.online, true, `round ${round}: online right after the takeover (${JSON.stringify(now.presence)})`);
    assert.equal(now.presence.reason, 'connect');
    // and it stays so once the old connection's disconnect has been handled
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const later = await device(d.id);
      assert.equal(later.online, true, `round ${round}, check ${i}: ${JSON.stringify(later.presence)}`);
      assert.equal(later.presence.session, expected);
    }
    // the new connection works
    await current.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ brightness: round }), { qos: 1 });
    await until(d.id, (x) => x.shadow.reported.brightness === round, `round ${round}: report`);
    session = expected;
  }
  // commands reach the current connection
  const box: string[] = [];
  current.on('message', (t) => box.push(t));
  await current.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  const call = p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle', timeoutMs: 2000 });
  current.once('message', (_t, buf) => {
    const cmd = JSON.parse(buf.toString());
    void current.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 });
  });
  assert.equal((await call).body.ok, true);
  await current.endAsync();
  const off = await until(d.id, (x) => !x.online, 'offline at the end');
  assert.equal(off.presence.reason, 'disconnect');
  assert.equal(off.presence.session, session);
});

test('a connection dropped without DISCONNECT is offline with reason connection-lost', async () => {
  const d = await p.provision('plug');
  const c = await p.connect(d.id, d.secret);
  await until(d.id, (x) => x.online, 'online');
  const gone = closed(c);
  c.stream.destroy();
  await gone;
  const off = await until(d.id, (x) => !x.online, 'offline');
  assert.equal(off.presence.reason, 'connection-lost');
  assert.equal(off.presence.session, 1);
});

test('a silent connection is dropped after 1.5 × keepalive with reason keepalive-timeout', async () => {
  const d = await p.provision('plug');
  const s = await rawConnect(d.id, d.secret, 1);
  const start = Date.now();
  await until(d.id, (x) => x.online, 'online');
  const sockClosed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  s.on('error', () => undefined);
  const off = await until(d.id, (x) => !x.online, 'offline after the keepalive', 4000);
  const took = Date.now() - start;
  assert.equal(off.presence.reason, 'keepalive-timeout');
  assert.ok(took >= 1000 && took < 3500, `took ${took} ms`);
  await sockClosed;
});

test('a connection that keeps pinging stays online past the keepalive', async () => {
  const d = await p.provision('plug');
  await p.connect(d.id, d.secret, { keepalive: 1 });
  await until(d.id, (x) => x.online, 'online');
  await new Promise((r) => setTimeout(r, 2200));
  const still = await device(d.id);
  assert.equal(still.online, true);
  assert.equal(still.presence.session, 1);
});

test('the last will of a lost connection is recorded as an event', async () => {
  const d = await p.provision('door-lock');
  const c = await p.connect(d.id, d.secret, {
    will: { topic: `devices/${d.id}/events`, payload: Buffer.from(JSON.stringify({ event: 'tamper' })), qos: 1, retain: false },
  });
  await until(d.id, (x) => x.online, 'online');
  const gone = closed(c);
  c.stream.destroy();
  await gone;
  const events = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/devices/${d.id}/events`);
      return r.body.items.length > 0 ? r.body.items : undefined;
    },
    3000,
    'the will event',
  );
  assert.equal(events.length, 1);
  assert.equal(events[0].event, 'tamper');
  const off = await until(d.id, (x) => !x.online, 'offline');
  assert.equal(off.presence.reason, 'connection-lost');

  // a clean disconnect does not send the will
  const d2 = await p.provision('door-lock');
  const c2 = await p.connect(d2.id, d2.secret, {
    will: { topic: `devices/${d2.id}/events`, payload: Buffer.from(JSON.stringify({ event: 'tamper' })), qos: 1, retain: false },
  });
  await until(d2.id, (x) => x.online, 'online');
  await c2.endAsync();
  await until(d2.id, (x) => !x.online, 'offline');
  // the device's own event, sent after it comes back, is the only one: a will would have come first
  const c3 = await p.connect(d2.id, d2.secret);
  await c3.publishAsync(`devices/${d2.id}/events`, JSON.stringify({ event: 'tamper' }), { qos: 1 });
  const after = await eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/devices/${d2.id}/events`);
      return r.body.items.length > 0 ? r.body.items : undefined;
    },
    3000,
    'the event sent after the reconnect',
  );
  assert.equal(after.length, 1, JSON.stringify(after));
  await c3.endAsync();
});
