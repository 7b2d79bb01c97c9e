import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Aedes, type PublishPacket } from 'aedes';
import { BROKER_CONCURRENCY } from './mqtt-gateway.ts';

const packet = (topic: string): PublishPacket => ({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: false, dup: false });

// With Aedes' default (100 deliveries in flight), this burst overflows the stack in its emitter's
// queue and the process dies: 200 deliveries that finish later, then 30,000 messages that finish at once.
test('a burst of slow deliveries followed by many messages nobody subscribes to does not overflow the stack', async () => {
  const broker = await Aedes.createBroker({ concurrency: BROKER_CONCURRENCY });
  broker.subscribe(
    'slow',
    (_p: PublishPacket, cb: () => void) => setImmediate(cb),
    () => undefined,
  );
  const total = 200 + 30_000;
  let done = 0;
  await new Promise<void>((resolve) => {
    const cb = () => {
      if (++done === total) resolve();
    };
    for (let i = 0; i < 200; i++) broker.publish(packet('slow'), cb);
    for (let i = 0; i < 30_000; i++) broker.publish(packet('nobody'), cb);
  });
  assert.equal(done, total);
  await new Promise<void>((resolve) => broker.close(() => resolve()));
});
