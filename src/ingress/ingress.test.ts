import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus } from '../core/bus/memory-bus.ts';
import { subjects, UPLINK_STREAM } from '../core/bus/subjects.ts';
import { createLogger } from '../core/logger.ts';
import { MAX_JSON_DEPTH } from '../core/json-limits.ts';
import { UplinkIngress } from './ingress.ts';

const nest = (depth: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { d: v };
  return v;
};

test('every source but MQTT is held to the device depth limit: deeper payloads are refused before they are stored', async () => {
  const bus = new MemoryBus(createLogger('silent'));
  await bus.ensureStream({ name: UPLINK_STREAM, subjects: [subjects.allUp] });
  const ingress = new UplinkIngress({ bus, shards: 4, nodeId: 'test' });
  const stored: unknown[] = [];
  await bus.consume({ stream: UPLINK_STREAM, durable: 'd', filter: subjects.allUp }, (m) => {
    stored.push(m.data);
    m.ack();
  });
  await ingress.submit({ source: 'http', deviceId: 'd_1', kind: 'properties', payload: nest(MAX_JSON_DEPTH) });
  await assert.rejects(
    ingress.submit({ source: 'amqp:p_1', deviceId: 'd_1', kind: 'properties', payload: nest(100_000) }),
    (err: { code?: string; message: string }) => err.code === 'E_VALIDATION' && /deeper than 32 levels/.test(err.message),
  );
  await bus.flush();
  assert.equal(stored.length, 1, 'only the message within the limit is stored');
  await bus.close();
});
