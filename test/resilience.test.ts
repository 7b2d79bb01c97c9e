/**
 * A node under a reconnect storm and a node shutting down, embedded mode: admission at the
 * configured rate, readiness turning false first, and device connections closed at a pace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { eventually, startPlatform } from './helpers/platform.ts';

/** Resolves with the CONNACK return code (0 = accepted). */
function tryConnect(url: string, dev: { id: string; secret: string }): Promise<{ code: number; client: mqtt.MqttClient }> {
  const c = mqtt.connect(url, { clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0, connectTimeout: 5000 });
  return new Promise((resolve) => {
    c.once('connect', () => resolve({ code: 0, client: c }));
    c.once('error', (err) => resolve({ code: (err as { code?: number }).code ?? -1, client: c }));
  });
}

test('a reconnect storm is admitted at the configured rate: the rest hear "server unavailable" (3) and get in when they retry', async () => {
  const p = await startPlatform({ env: { HEARTH_CONNECT_RATE_PER_SECOND: '5', HEARTH_CONNECT_BURST: '4' } });
  const clients: mqtt.MqttClient[] = [];
  try {
    const devs = await Promise.all(Array.from({ length: 10 }, () => p.provision('plug')));
    const first = await Promise.all(devs.map((d) => tryConnect(p.mqttUrl, d)));
    clients.push(...first.map((r) => r.client));
    const accepted = first.filter((r) => r.code === 0).length;
    assert.ok(accepted >= 4 && accepted <= 5, `the burst is admitted at once (${accepted} of 10)`);
    assert.ok(
      first.every((r) => r.code === 0 || r.code === 3),
      `the others are told to come back: ${first.map((r) => r.code)}`,
    );
    const metrics = await (await fetch(`${p.httpUrl}/metrics`)).text();
    assert.match(metrics, new RegExp(`hearth_connections_refused_total\\{reason="admission"\\} ${10 - accepted}`));

    // Retrying with a back-off, everyone gets in within about (10 - burst) / rate seconds.
    const started = Date.now();
    for (const [i, r] of first.entries()) {
      if (r.code === 0) continue;
      for (;;) {
        const again = await tryConnect(p.mqttUrl, devs[i]);
        clients.push(again.client);
        if (again.code === 0) break;
        assert.equal(again.code, 3);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    assert.ok(Date.now() - started < 5000, 'all admitted within seconds');
    for (const d of devs) await p.until(d.id, (x) => x.online === true, `${d.id} online`);
  } finally {
    for (const c of clients) c.end(true);
    await p.stop();
  }
});

test('shutdown: readiness turns false first, requests in flight finish, and device connections close at the configured pace', async () => {
  const p = await startPlatform({ env: { HEARTH_DISCONNECT_RATE_PER_SECOND: '40', HEARTH_DRAIN_DELAY_MS: '300' } });
  const devs = await Promise.all(Array.from({ length: 20 }, () => p.provision('plug')));
  const closedAt: number[] = [];
  const clients = await Promise.all(
    devs.map(async (d) => {
      const c = await p.connect(d.id, d.secret);
      c.on('close', () => closedAt.push(Date.now()));
      return c;
    }),
  );
  assert.equal((await fetch(`${p.httpUrl}/readyz`)).status, 200);
  const stopping = p.hearth.stop();
  const ready = await fetch(`${p.httpUrl}/readyz`);
  assert.equal(ready.status, 503, 'not ready any more while still serving');
  const inFlight = await p.api('GET', `/api/v1/devices/${devs[0].id}`);
  assert.equal(inFlight.status, 200, 'requests during the drain delay are still served');
  const t0 = Date.now();
  await stopping;
  await eventually(() => closedAt.length === 20, 2000, 'every device disconnected');
  const spread = Math.max(...closedAt) - Math.min(...closedAt);
  // 20 connections at 40/s: closed in batches over about half a second, not all at once.
  assert.ok(spread >= 300, `disconnects spread over ${spread} ms`);
  assert.ok(Date.now() - t0 < 5000);
  for (const c of clients) c.end(true);
  await p.stop();
});
