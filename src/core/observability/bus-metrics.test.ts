import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus } from '../bus/memory-bus.ts';
import { BusError, type BusEngine } from '../bus/bus.ts';
import { createLogger } from '../logger.ts';
import { Metrics } from './metrics.ts';
import { instrumentBus, CORE_PUBLISH_SAMPLE } from './bus-metrics.ts';

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('the instrumented bus passes everything on and times publishes (core ones sampled) and requests', async () => {
  const metrics = new Metrics();
  // Driven as an engine, with test subjects outside the catalogue.
  const bus: BusEngine = instrumentBus(new MemoryBus(createLogger('silent')), metrics);
  const got: unknown[] = [];
  const unsub = bus.subscribe('a.*', (msg) => void got.push(msg.data));
  bus.subscribe('echo', (msg) => msg.respond?.({ echoed: msg.data }));
  for (let i = 0; i < CORE_PUBLISH_SAMPLE * 2; i++) bus.publish('a.b', i);
  await bus.flush();
  assert.equal(got.length, CORE_PUBLISH_SAMPLE * 2);
  unsub();

  assert.deepEqual(await bus.request('echo', 1), { echoed: 1 });
  await assert.rejects(bus.request('nobody', 1), (err: unknown) => err instanceof BusError && err.code === 'NO_RESPONDERS');

  await bus.ensureStream({ name: 'S', subjects: ['s.>'] });
  await bus.publishDurable('s.x', { n: 1 });
  const durable: unknown[] = [];
  const consumer = await bus.consume({ stream: 'S', durable: 'd', filter: 's.>' }, (msg) => {
    durable.push(msg.data);
    msg.ack();
  });
  await bus.flush();
  assert.deepEqual(durable, [{ n: 1 }]);
  await consumer.stop();

  const text = await metrics.text();
  assert.equal(sample(text, 'hearth_bus_publish_duration_seconds_count{kind="core"}'), 2, 'one in sixteen core publishes');
  assert.equal(sample(text, 'hearth_bus_publish_duration_seconds_count{kind="durable"}'), 1);
  assert.equal(sample(text, 'hearth_bus_request_duration_seconds_count'), 2, 'failed requests count too');
  await bus.close();
});
