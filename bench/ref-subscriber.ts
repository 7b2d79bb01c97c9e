/**
 * The reference system's consumer in the ingest benchmark: one MQTT client subscribed to
 * `devices/+/properties` (QoS 1) on the reference broker, in its own process (as Hearth's
 * ingest runs in Hearth's own process). Spawned by bench/run.ts with an IPC channel:
 *   child → parent  {type:'ready'}                 subscribed
 *   parent → child  {type:'expect', count}         how many messages make the run complete
 *   child → parent  {type:'done', count, bytes}    all expected messages received
 * Usage: ref-subscriber.ts <mqtt url>
 */
import type { Socket } from 'node:net';
import mqtt from 'mqtt';

const url = process.argv[2];
if (!url || !process.send) {
  process.stderr.write('usage: node --import tsx bench/ref-subscriber.ts <mqtt url>  (spawned by bench/run.ts with IPC)\n');
  process.exit(2);
}
const send = (m: unknown) => process.send!(m);

// The parent going away ends this helper.
process.on('disconnect', () => process.exit(0));

let expected = Infinity;
let count = 0;
let bytes = 0;
let reported = false;

const client = mqtt.connect(url, { protocolVersion: 4, clientId: `bench-sub-${process.pid}`, clean: true, reconnectPeriod: 0, keepalive: 300 });
client.on('connect', () => {
  (client.stream as Socket).setNoDelay?.(true);
  client.subscribe('devices/+/properties', { qos: 1 }, (err) => {
    if (err) {
      process.stderr.write(`ref-subscriber: subscribe failed: ${err.message}\n`);
      process.exit(1);
    }
    send({ type: 'ready' });
  });
});
client.on('error', (err) => {
  process.stderr.write(`ref-subscriber: ${err.message}\n`);
  process.exit(1);
});
client.on('message', (_topic, payload) => {
  count++;
  bytes += payload.length;
  check();
});

function check(): void {
  if (!reported && count >= expected) {
    reported = true;
    send({ type: 'done', count, bytes });
  }
}

process.on('message', (m: { type: string; count?: number }) => {
  if (m.type === 'expect') {
    expected = m.count ?? Infinity;
    reported = false;
    check();
  } else if (m.type === 'stop') {
    client.end(true, () => process.exit(0));
  }
});
