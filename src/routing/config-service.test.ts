import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqlite, migrate } from '../core/store/db.ts';
import { MemoryBus } from '../core/bus/memory-bus.ts';
import { createLogger } from '../core/logger.ts';
import { ProductService } from '../products/product-service.ts';
import { DeviceService } from '../devices/device-service.ts';
import type { DeliveryQueue, RouteSpec } from './envelope.ts';
import { RoutingConfigService } from './config-service.ts';
import { RoutingPipeline } from './pipeline.ts';

/** Two nodes (config services with their pipelines) on one store and one bus. */
async function cluster(t: { after: (fn: () => void | Promise<void>) => void }, file?: string) {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-gw-'));
  const { db } = openSqlite({ dataDir: dir, file: 'gw.sqlite' });
  await migrate(db);
  const log = createLogger('silent');
  const bus = new MemoryBus(log);
  const products = new ProductService({ db });
  const devices = new DeviceService({ db, products });
  const node = () => {
    const reconciled: RouteSpec[][] = [];
    const deliveries: DeliveryQueue = { enqueue: async () => undefined, reconcile: async (routes) => void reconciled.push(routes) };
    const pipeline = new RoutingPipeline();
    const service = new RoutingConfigService({ db, bus, log, pipeline, devices, products, deliveries, file });
    return { service, pipeline, reconciled };
  };
  t.after(async () => {
    await bus.close();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return { node, db, bus };
}

const nats = (subject: string) => ({ type: 'nats' as const, subject });

test('a change on one node is stored as a version and applied on every node, with the delivery side told', async (t) => {
  const { node, bus } = await cluster(t);
  const a = node();
  const b = node();
  await a.service.start();
  await b.service.start();
  assert.equal(a.service.current.version, 0);
  assert.deepEqual(
    b.reconciled.at(-1)!.map((r) => r.id),
    ['device-core'],
    'the default is reconciled at start',
  );
  const { route, version } = await a.service.addRoute({ name: 'out', match: { kind: 'events' }, targets: [nats('partner.x')] }, 'user:u_1');
  assert.equal(version, 1);
  assert.equal(a.pipeline.version, 1);
  await bus.flush();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(b.pipeline.version, 1, 'the other node reloaded');
  assert.deepEqual(
    b.reconciled.at(-1)!.map((r) => r.id),
    ['device-core', route.id],
  );
  await b.service.updateRoute(route.id, { name: 'out', enabled: false, match: {}, targets: [nats('partner.x')] }, 'user:u_2');
  await bus.flush();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(a.service.current.version, 2);
  assert.deepEqual(
    a.reconciled.at(-1)!.map((r) => r.id),
    ['device-core'],
    'a disabled route has no deliveries',
  );
  assert.deepEqual(
    (await a.service.versions()).map((v) => [v.version, v.createdBy]),
    [
      [2, 'user:u_2'],
      [1, 'user:u_1'],
    ],
  );
  a.service.stop();
  b.service.stop();
});

test('changes saved at once on two nodes both land, one version each', async (t) => {
  const { node } = await cluster(t);
  const a = node();
  const b = node();
  await a.service.start();
  await b.service.start();
  await Promise.all([
    a.service.addRoute({ name: 'from-a', match: {}, targets: [nats('a')] }, 'user:a'),
    b.service.addRoute({ name: 'from-b', match: {}, targets: [nats('b')] }, 'user:b'),
  ]);
  const last = (await a.service.versions())[0].version;
  assert.equal(last, 2);
  await new Promise((r) => setTimeout(r, 20));
  for (const n of [a, b]) assert.deepEqual(n.service.current.config.routes.map((r) => r.name).sort(), ['device-core', 'from-a', 'from-b']);
  a.service.stop();
  b.service.stop();
});

test('the config file is applied at start when it differs from the live document, and refused when invalid', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-gw-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'gateway.json');
  const doc = {
    routes: [{ id: 'all', name: 'all', match: {}, targets: [{ type: 'builtin', handler: 'device' }] }],
    filters: [{ type: 'validate' }, { type: 'dedupe', windowMs: 60000 }],
    lanes: [],
  };
  writeFileSync(file, JSON.stringify(doc));
  const { node } = await cluster(t, file);
  const first = node();
  await first.service.start();
  assert.equal(first.service.current.version, 1);
  assert.equal(first.service.current.createdBy, `file:${file}`);
  assert.deepEqual(first.pipeline.config.filters, doc.filters);
  first.service.stop();
  const again = node();
  await again.service.start();
  assert.equal(again.service.current.version, 1, 'unchanged file, no new version');
  again.service.stop();
  writeFileSync(file, JSON.stringify({ ...doc, filters: [{ type: 'rateLimit', scope: 'device', perSecond: -1, burst: 1, action: 'drop' }] }));
  await assert.rejects(node().service.start(), /gateway config file .* is invalid: filters\[0\]\.perSecond/);
});
