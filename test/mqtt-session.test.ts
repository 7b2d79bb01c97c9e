/**
 * MQTT sessions with clean=false kept in Hearth's store (issue 17): subscriptions and the QoS 1
 * messages a device has not acknowledged survive a restart of the server, bounded per device;
 * retained messages stay refused. Real MQTT clients against a real platform, restarted on its
 * data directory (SQLite file or PostgreSQL database).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { connectDevice, eventually, inbox, startPlatform, type Platform } from './helpers/platform.ts';

/** A clean=false device that takes its messages but never acknowledges them (it "crashed" before its PUBACK); what it got goes to `seen`. */
async function noAck(p: Platform, d: { id: string; secret: string }, seen: string[] = []): Promise<MqttClient> {
  const c = await connectDevice(p.mqttUrl, d.id, d.secret, { clean: false });
  c.handleMessage = (packet) => void seen.push(packet.payload.toString());
  return c;
}

async function metric(p: Platform, name: string): Promise<number> {
  const text = await (await fetch(`${p.httpUrl}/metrics`, { headers: { authorization: `Bearer ${p.token}` } })).text();
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

test('a clean=false session keeps its subscriptions and unacknowledged QoS 1 messages across a restart of the server', async () => {
  const a = await startPlatform();
  let b: Platform | undefined;
  try {
    const d = await a.provision('light');
    // The device subscribes once, with clean=false; a command reaches it but its PUBACK never leaves.
    const seen: string[] = [];
    const first = await noAck(a, d, seen);
    await first.subscribeAsync([`devices/${d.id}/commands`, `devices/${d.id}/desired`], { qos: 1 });
    await a.until(d.id, (x) => x.online, 'online');
    const call = a.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'blink', params: { times: 2 }, timeoutMs: 500 });
    await eventually(() => seen.length === 1, 3000, 'the command reached the device');
    const sent = JSON.parse(seen[0]);
    assert.equal((await call).status, 504);
    first.stream.destroy();
    await a.until(d.id, (x) => !x.online, 'offline');
    // While it is away, someone wants the light on.
    assert.equal((await a.api('PATCH', `/api/v1/devices/${d.id}/shadow`, { desired: { on: true } })).status, 200);
    await a.stop(false);

    b = await startPlatform({ dataDir: a.dataDir });
    // Back with clean=false and no SUBSCRIBE: the session has the subscriptions, and what was not acknowledged.
    let box!: ReturnType<typeof inbox>;
    const again = await connectDevice(b.mqttUrl, d.id, d.secret, { clean: false }, (c) => {
      box = inbox(c);
    });
    const cmd = await box.next((m) => m.topic === `devices/${d.id}/commands`, 5000);
    assert.deepEqual(cmd.payload, sent, 'the unacknowledged command, again');
    const desired = await box.next((m) => m.topic === `devices/${d.id}/desired`, 5000);
    assert.deepEqual(desired.payload.state, { on: true }, 'the restored subscription counts as subscribing: pending desired state is sent');
    // Acknowledged now: a reconnect does not bring it again.
    await again.endAsync();
    let box3!: ReturnType<typeof inbox>;
    const third = await connectDevice(b.mqttUrl, d.id, d.secret, { clean: false }, (c) => {
      box3 = inbox(c);
    });
    await box3.next((m) => m.topic === `devices/${d.id}/desired`, 5000);
    await b.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle', ttlMs: 60_000, timeoutMs: 300 });
    const next = await box3.next((m) => m.topic === `devices/${d.id}/commands`, 5000);
    assert.equal(next.payload.action, 'toggle', 'the next command comes, not the old one again');
    await third.endAsync();

    // A clean session ends the stored one: nothing comes without subscribing.
    const clean = await connectDevice(b.mqttUrl, d.id, d.secret, { clean: true });
    await clean.endAsync();
    const after = await connectDevice(b.mqttUrl, d.id, d.secret, { clean: false });
    const got: string[] = [];
    after.on('message', (t) => got.push(t));
    const q = await b.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle', ttlMs: 60_000, timeoutMs: 300 });
    assert.equal(q.status, 202);
    await after.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
    assert.deepEqual(got, [], 'no subscription survived the clean session');
    await after.endAsync();
  } finally {
    await (b ?? a).stop();
  }
});

test('a session keeps at most HEARTH_MQTT_SESSION_MAX_MESSAGES messages: the oldest go, counted', async () => {
  const p = await startPlatform({ env: { HEARTH_MQTT_SESSION_MAX_MESSAGES: '2' } });
  try {
    const d = await p.provision('light');
    const c = await noAck(p, d);
    await c.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
    await p.until(d.id, (x) => x.online, 'online');
    const before = await metric(p, 'hearth_mqtt_session_messages_dropped_total');
    // One after the other, so that "the oldest" is times=1 (sent at once, they may reach the broker in any order).
    for (const times of [1, 2, 3]) await p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'blink', params: { times }, timeoutMs: 500 });
    c.stream.destroy();
    await p.until(d.id, (x) => !x.online, 'offline');
    assert.equal(await metric(p, 'hearth_mqtt_session_messages_dropped_total'), before + 1);
    let box!: ReturnType<typeof inbox>;
    const again = await connectDevice(p.mqttUrl, d.id, d.secret, { clean: false }, (c) => {
      box = inbox(c);
    });
    const a = await box.next((m) => m.topic === `devices/${d.id}/commands`);
    const b = await box.next((m) => m.topic === `devices/${d.id}/commands`);
    assert.deepEqual([a.payload.params.times, b.payload.params.times].sort(), [2, 3], 'the oldest was dropped');
    await again.endAsync();
  } finally {
    await p.stop();
  }
});

test('retained messages stay refused for a clean=false session too', async () => {
  const p = await startPlatform();
  try {
    const d = await p.provision('light');
    let box!: ReturnType<typeof inbox>;
    const c = await connectDevice(p.mqttUrl, d.id, d.secret, { clean: false }, (c) => {
      box = inbox(c);
    });
    await c.subscribeAsync(`devices/${d.id}/errors`, { qos: 1 });
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1, retain: true });
    const err = await box.next((m) => m.topic === `devices/${d.id}/errors`);
    assert.equal(err.payload.code, 'E_RETAIN_NOT_SUPPORTED');
    await c.endAsync();
  } finally {
    await p.stop();
  }
});
