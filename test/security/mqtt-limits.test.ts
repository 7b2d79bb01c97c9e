/**
 * The MQTT edge reads packets' fixed headers before their bodies: a packet claiming more than
 * the limit is cut off before it is buffered, on TCP and WebSocket, before and after CONNACK.
 * The server runs as a child process so that its own resident memory can be read.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { startChildPlatform, type ChildPlatform } from '../helpers/child-platform.ts';
import { eventually, inbox } from '../helpers/platform.ts';
import { encodeLength } from '../../src/transports/mqtt/packet-guard.ts';

const MiB = 1024 * 1024;
/** What each attacking connection tries to send after its header (the header claims 200 MiB). */
const SEND = 24 * MiB;
/** Eight attackers would add 8 × 24 MiB if their bytes were buffered. */
const RSS_BOUND = 64 * MiB;

let p: ChildPlatform;
let bystander: { id: string; secret: string };
before(async () => {
  p = await startChildPlatform({ env: { HEARTH_MQTT_CONNECT_TIMEOUT_MS: '1500' } });
  bystander = await p.provision('light', 'bystander');
});
after(async () => {
  await p?.stop();
});

/** Resident memory once the server has settled (collections run between measurements). */
async function settledRss(): Promise<number> {
  await new Promise((r) => setTimeout(r, 300));
  return p.rss();
}

/** The bystander device still connects, reports, and its report reaches the API. */
async function bystanderWorks(value: number): Promise<void> {
  const c = await p.connect(bystander.id, bystander.secret);
  await c.publishAsync(`devices/${bystander.id}/properties`, JSON.stringify({ brightness: value }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${bystander.id}`)).body.shadow.reported.brightness === value, 5000, 'the bystander report');
  await c.endAsync();
}

/**
 * Writes `header`, then up to `SEND` body bytes as fast as the socket takes them. Resolves with
 * how many bytes were written before the server closed the connection (or all of them, if it
 * never did within `graceMs` after the last write).
 */
function flood(socket: Socket, header: Buffer, graceMs = 4000): Promise<{ closedByServer: boolean; written: number }> {
  return new Promise((resolve) => {
    let written = 0;
    let closed = false;
    const chunk = Buffer.alloc(MiB, 0x61);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      closed = true;
      resolve({ closedByServer: true, written });
    });
    const pump = () => {
      while (!closed && written < SEND) {
        const ok = socket.write(chunk);
        written += chunk.length;
        if (!ok) return void socket.once('drain', pump);
      }
      if (!closed)
        setTimeout(() => {
          if (!closed) {
            resolve({ closedByServer: false, written });
            socket.destroy();
          }
        }, graceMs);
    };
    socket.write(header, pump);
  });
}

function tcp(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect(p.mqttPort, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

const claim200MiB = (first: number) => Buffer.from([first, ...encodeLength(200 * MiB)]);

test('eight TCP connections whose CONNECT claims 200 MiB are closed at the header; memory stays flat; other devices keep working', async () => {
  await bystanderWorks(10);
  const base = await settledRss();
  const sockets = await Promise.all(Array.from({ length: 8 }, () => tcp()));
  const results = await Promise.all(sockets.map((s) => flood(s, claim200MiB(0x10))));
  for (const r of results) assert.ok(r.closedByServer, `the server closed the connection (${r.written} bytes were sent)`);
  const grown = (await settledRss()) - base;
  assert.ok(grown < RSS_BOUND, `server RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
  assert.ok(p.alive());
  await bystanderWorks(11);
  // the refusals are counted
  const metrics = await (await fetch(`${p.httpUrl}/metrics`)).text();
  assert.match(metrics, /^hearth_connections_refused_total\{[^}]*reason="too-large"[^}]*\} 8$/m);
});

test('the same over MQTT over WebSocket', async () => {
  const base = await settledRss();
  const results = await Promise.all(
    Array.from(
      { length: 8 },
      () =>
        new Promise<{ closedByServer: boolean; written: number }>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${p.httpPort}/mqtt`, 'mqtt');
          let written = 0;
          let closed = false;
          ws.on('error', () => undefined);
          ws.once('close', () => {
            closed = true;
            resolve({ closedByServer: true, written });
          });
          ws.once('open', () => {
            const frame = Buffer.alloc(512 * 1024, 0x61);
            const pump = (): void => {
              if (closed) return;
              if (written >= SEND) {
                setTimeout(() => {
                  if (!closed) {
                    resolve({ closedByServer: false, written });
                    ws.terminate();
                  }
                }, 4000);
                return;
              }
              written += frame.length;
              ws.send(frame, () => (ws.bufferedAmount > 4 * MiB ? setTimeout(pump, 5) : setImmediate(pump)));
            };
            ws.send(claim200MiB(0x10), pump);
          });
          ws.once('unexpected-response', () => reject(new Error('the upgrade was refused')));
        }),
    ),
  );
  for (const r of results) assert.ok(r.closedByServer, `the server closed the WebSocket (${r.written} bytes were sent)`);
  const grown = (await settledRss()) - base;
  assert.ok(grown < RSS_BOUND, `server RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
  await bystanderWorks(12);
});

test("a device's PUBLISH over the payload limit is answered from its header: the payload is skipped as it arrives, never buffered", async () => {
  const d = await p.provision('light');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  const base = await settledRss();
  const topic = Buffer.from(`devices/${d.id}/properties`);
  const body = 200 * MiB;
  // QoS 0, so the raw write below needs no packet id of mqtt.js's own.
  const header = Buffer.concat([Buffer.from([0x30, ...encodeLength(2 + topic.length + body), topic.length >> 8, topic.length & 0xff]), topic]);
  const raw = c.stream as Socket;
  let sent = 0;
  const errorSeen = box.next((m) => m.topic === `devices/${d.id}/errors`, 20_000).then((m) => ({ m, sentBefore: sent }));
  raw.write(header);
  const chunk = Buffer.alloc(MiB, 0x20);
  while (sent < SEND) {
    if (!raw.write(chunk)) await new Promise((r) => raw.once('drain', r));
    sent += chunk.length;
  }
  const { m, sentBefore } = await errorSeen;
  assert.equal(m.payload.code, 'E_PAYLOAD_TOO_LARGE');
  assert.match(m.payload.message, new RegExp(`payload of ${body} bytes exceeds the limit of 65536`));
  assert.ok(sentBefore < body, 'the device heard why long before its payload could have been read whole');
  const grown = (await settledRss()) - base;
  assert.ok(grown < RSS_BOUND, `server RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${d.id}`)).body.shadow.reported, {});
  await c.endAsync(true);
});

test('an over-limit PUBLISH sent whole leaves the connection usable', async () => {
  const d = await p.provision('light');
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
  await c.publishAsync(`devices/${d.id}/properties`, Buffer.alloc(3 * MiB, 0x20), { qos: 1 });
  const err = await box.next((m) => m.topic === `devices/${d.id}/errors`);
  assert.equal(err.payload.code, 'E_PAYLOAD_TOO_LARGE');
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.shadow.reported.on === true, 5000, 'the next report');
  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}`)).body.online, true);
  await c.endAsync();
});

test('after CONNACK, a packet other than PUBLISH over the limit closes the connection at its header', async () => {
  const d = await p.provision('plug');
  const c = await p.connect(d.id, d.secret);
  const raw = c.stream as Socket;
  const r = await flood(raw, claim200MiB(0x82));
  assert.ok(r.closedByServer, 'closed');
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${d.id}`)).body.presence?.reason === 'client-error', 5000, 'presence client-error');
});

test('before CONNACK, a CONNECT over HEARTH_MQTT_CONNECT_MAX_BYTES (8 KiB) is refused; a CONNECT that never completes is closed after the connect timeout', async () => {
  const big = await tcp();
  const r = await flood(big, Buffer.from([0x10, ...encodeLength(8193)]));
  assert.ok(r.closedByServer);
  const slow = await tcp();
  slow.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => slow.once('close', () => resolve()));
  slow.write(Buffer.from([0x10, 40, 0, 4, 0x4d]));
  const timer = setTimeout(() => slow.destroy(new Error('not closed by the server')), 10_000);
  await closed;
  clearTimeout(timer);
  assert.ok(!slow.errored, 'the server closed the half-sent CONNECT');
});
