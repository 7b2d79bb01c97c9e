import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus } from '../../core/bus/memory-bus.ts';
import { createLogger } from '../../core/logger.ts';
import { foreignSubject } from '../../core/bus/events.ts';
import { subjects, type UplinkMessage } from '../../core/bus/subjects.ts';
import type { Bus } from '../../core/bus/bus.ts';
import { MAX_BATCH, UplinkBatcher } from './uplink-batcher.ts';

const msg = (deviceId: string, n: number): UplinkMessage => ({
  id: `m_${deviceId}_${n}`,
  deviceId,
  via: deviceId,
  kind: 'properties',
  topic: `devices/${deviceId}/properties`,
  payload: { n },
  receivedAt: Date.now(),
});

/** What was stored durably: subject and payload, in order. */
async function recorder(): Promise<{ bus: Bus; stored: Array<{ subject: string; data: unknown }> }> {
  const bus = new MemoryBus(createLogger('silent'));
  await bus.ensureStream({ name: 'UPLINK', subjects: [subjects.allUp] });
  const stored: Array<{ subject: string; data: unknown }> = [];
  await bus.consume({ stream: 'UPLINK', durable: 'test', filter: foreignSubject('uplink.>') }, async (m) => {
    stored.push({ subject: m.subject, data: m.data });
    m.ack();
  });
  return { bus, stored };
}

test('uplinks of a shard received in one turn are stored as one batch; a lone one as itself', async () => {
  const { bus, stored } = await recorder();
  const b = new UplinkBatcher(bus);
  await Promise.all([b.add(3, msg('d1', 1)), b.add(3, msg('d2', 1)), b.add(3, msg('d1', 2)), b.add(5, msg('d9', 1))]);
  await b.add(3, msg('d1', 3));
  await bus.flush();
  assert.deepEqual(
    stored.map((s) => s.subject),
    ['uplink.3.batch', 'uplink.5.d9.properties', 'uplink.3.d1.properties'],
  );
  assert.deepEqual(
    (stored[0].data as { batch: UplinkMessage[] }).batch.map((m) => m.id),
    ['m_d1_1', 'm_d2_1', 'm_d1_2'],
    'in the order received',
  );
  await bus.close();
});

test('a busy shard goes out in batches of MAX_BATCH, and every caller hears when its own is stored', async () => {
  const { bus, stored } = await recorder();
  const b = new UplinkBatcher(bus);
  const n = MAX_BATCH * 2 + 1;
  await Promise.all(Array.from({ length: n }, (_, i) => b.add(0, msg('d1', i))));
  await bus.flush();
  const sizes = stored.map((s) => ('batch' in (s.data as object) ? (s.data as { batch: unknown[] }).batch.length : 1));
  assert.deepEqual(sizes, [MAX_BATCH, MAX_BATCH, 1]);
  await bus.close();
});

test('when the batch cannot be stored, every message of it fails (no PUBACK for any)', async () => {
  const bus = new MemoryBus(createLogger('silent'));
  // No stream stores uplinks: a durable publish is refused.
  const b = new UplinkBatcher(bus);
  const results = await Promise.allSettled([b.add(1, msg('d1', 1)), b.add(1, msg('d2', 1))]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['rejected', 'rejected'],
  );
  await bus.close();
});

test('with a largest batch of 1 (HEARTH_UPLINK_BATCH_MAX=1) every message goes alone, as before batches', async () => {
  const { bus, stored } = await recorder();
  const b = new UplinkBatcher(bus, 1);
  await Promise.all([b.add(3, msg('d1', 1)), b.add(3, msg('d2', 1))]);
  await bus.flush();
  assert.deepEqual(
    stored.map((s) => s.subject),
    ['uplink.3.d1.properties', 'uplink.3.d2.properties'],
  );
  await bus.close();
});
