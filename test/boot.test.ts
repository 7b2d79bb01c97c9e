import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hearth } from '../src/app.ts';
import { loadConfig } from '../src/core/config/config-schema.ts';
import { createLogger } from '../src/core/logger.ts';
import { MemoryBus } from '../src/core/bus/memory-bus.ts';
import { ADMIN, startPlatform } from './helpers/platform.ts';

/** The boot: an HTTP app built apart from listening, and the start order the units declare. */

test('buildApp: every capability routes into an app that listens nowhere, and inject() reaches them', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-boot-'));
  const hearth = new Hearth(loadConfig({}, { dataDir, httpPort: 0, mqttPort: 0, logLevel: 'silent', demo: false }), { log: createLogger('silent') });
  const app = await hearth.buildApp();
  try {
    assert.equal(app.server.listening, false);
    assert.equal(existsSync(join(dataDir, 'hearth.lock')), false, 'building takes no lock');
    assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
    assert.equal((await app.inject({ url: '/readyz' })).statusCode, 503, 'a node that was not started is not ready');
    const anonymous = await app.inject({ url: '/api/v1/devices' });
    assert.equal(anonymous.statusCode, 401);
    assert.match(String(anonymous.headers['content-type']), /application\/problem\+json/);
    assert.equal(anonymous.json().code, 'E_UNAUTHENTICATED');
    // Each capability's plugin is in the OpenAPI document.
    const paths = Object.keys((await app.inject({ url: '/docs/json' })).json().paths);
    const one = [
      '/api/v1/auth/login',
      '/api/v1/products',
      '/api/v1/devices',
      '/api/v1/devices/{id}/shadow',
      '/api/v1/devices/{id}/commands',
      '/api/v1/devices/{id}/history',
      '/api/v1/audit',
      '/api/v1/homes',
      '/api/v1/gateway/config',
      '/api/v1/stream',
      '/api/v1/dead-letters',
      '/api/v1/partners',
      '/api/v1/scenes/{sceneId}',
      '/api/v1/notifications',
      '/api/v1/automations/{automationId}',
      '/api/v1/devices/{id}/events',
    ];
    for (const path of one) assert.ok(paths.includes(path), `${path} is registered`);
  } finally {
    await app.close();
    await hearth.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('buildApp on a started node: a second, injected app answers as the listening one does', async () => {
  const p = await startPlatform();
  const app = await p.hearth.buildApp();
  try {
    const login = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: ADMIN });
    assert.equal(login.statusCode, 200);
    const token = login.json().token as string;
    await p.provision('plug', 'Plug');
    const injected = await app.inject({ url: '/api/v1/devices', headers: { authorization: `Bearer ${token}` } });
    const overHttp = await p.api('GET', '/api/v1/devices');
    assert.equal(injected.statusCode, 200);
    assert.deepEqual(injected.json(), overHttp.body);
    const openApi = await app.inject({ url: '/docs/json' });
    assert.deepEqual(openApi.json(), (await p.api('GET', '/docs/json', undefined, null)).body, 'the same OpenAPI document');
  } finally {
    await app.close();
    await p.stop(true);
  }
});

test('the start order keeps the graceful stop: HTTP first, MQTT before the shards, then their listeners, bus and store last', () => {
  const hearth = new Hearth(loadConfig({}, { dataDir: mkdtempSync(join(tmpdir(), 'hearth-boot-')), logLevel: 'silent' }), { log: createLogger('silent') });
  const stop = [...hearth.lifecycle.order].reverse().map((u) => u.name);
  const at = (n: string) => {
    assert.ok(stop.includes(n), `${n} is a unit`);
    return stop.indexOf(n);
  };
  assert.equal(stop[0], 'http');
  assert.ok(at('mqtt') < at('shards') && at('amqp-sources') < at('shards'), 'device connections close before the shards are handed back');
  for (const held of ['ingest', 'shadow', 'timers', 'automation-engine']) assert.ok(at('shards') < at(held), `shards are released before ${held} stops`);
  assert.ok(at('ingest') < at('delivery'), 'the ingest settles before the deliveries it enqueues stop');
  assert.deepEqual(stop.slice(-3), ['broadcasts', 'bus', 'store']);
});

test('construction does no I/O on the bus: subscriptions, consumers and streams begin in start()', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-boot-'));
  const calls: string[] = [];
  const inner = new MemoryBus(createLogger('silent'));
  const bus = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function'
        ? (...args: unknown[]) => {
            calls.push(String(prop));
            return v.apply(target, args);
          }
        : v;
    },
  });
  const hearth = new Hearth(loadConfig({}, { dataDir, logLevel: 'silent', demo: false }), { log: createLogger('silent'), bus });
  try {
    assert.deepEqual(calls, [], 'no bus call while constructing');
  } finally {
    await hearth.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
