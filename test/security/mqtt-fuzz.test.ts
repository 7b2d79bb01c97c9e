/**
 * MQTT packet fuzzing against a running Hearth (a child process): valid packets from
 * mqtt-packet's generator with random fields, then bit flips, truncations, bogus remaining
 * lengths and random bytes, sent over raw TCP sockets, unauthenticated and after a valid
 * CONNECT. Afterwards the server must be alive and serving, its memory bounded, and a bystander
 * device's shadow, history and events untouched.
 *
 * Reproduce a failure with the seed it prints: HEARTH_FUZZ_SEED=<seed> (HEARTH_FUZZ_RUNS=<n>).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { startChildPlatform, type ChildPlatform } from '../helpers/child-platform.ts';
import { eventually } from '../helpers/platform.ts';
import { encodeLength } from '../../src/transports/mqtt/packet-guard.ts';

const SEED = Number(process.env.HEARTH_FUZZ_SEED ?? 1883_2026);
const RUNS = Number(process.env.HEARTH_FUZZ_RUNS ?? 300);
const MiB = 1024 * 1024;

let p: ChildPlatform;
let fuzzer: { id: string; secret: string };
let bystander: { id: string; secret: string };
before(async () => {
  p = await startChildPlatform();
  fuzzer = await p.provision('light', 'fuzzer');
  bystander = await p.provision('light', 'bystander');
  const c = await p.connect(bystander.id, bystander.secret);
  await c.publishAsync(`devices/${bystander.id}/properties`, JSON.stringify({ on: true, brightness: 42 }), { qos: 1 });
  await c.endAsync();
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${bystander.id}`)).body.shadow.reported.brightness === 42, 5000, 'bystander state');
});
after(async () => {
  await p?.stop();
});

/** What an outsider can read about the bystander: shadow, history and events. */
async function bystanderView() {
  const dev = (await p.api('GET', `/api/v1/devices/${bystander.id}`)).body;
  const history = (await p.api('GET', `/api/v1/devices/${bystander.id}/history?property=brightness`)).body;
  const events = (await p.api('GET', `/api/v1/devices/${bystander.id}/events`)).body;
  return { shadow: { reported: dev.shadow.reported, desired: dev.shadow.desired, version: dev.shadow.version }, history: history.points, events: events.items };
}

// ---- generators ----------------------------------------------------------------------------

const topicArb = () =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .constantFrom('properties', 'events', 'commands/result', 'children/join', 'presence', 'commands', 'desired', 'errors', '#', '+', 'x/../properties')
        .chain((suffix) => fc.constantFrom(fuzzer.id, bystander.id, bystander.id, '+', '#', 'd_doesnotexist00', '').map((id) => `devices/${id}/${suffix}`)),
    },
    { weight: 1, arbitrary: fc.constantFrom('#', '+', '$SYS/#', 'devices/#', 'a/b/c', '/') },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  );

const payloadArb = () =>
  fc.oneof(
    fc.json().map((s) => Buffer.from(s)),
    fc
      .constantFrom(
        '{"on":false}',
        '{"brightness":7}',
        '{"brightness":1000}',
        '{"event":"x"}',
        '{"product":"light","hwid":"fz"}',
        '{"online":false}',
        '{"id":"c_x","ok":true}',
        'null',
        '',
      )
      .map((s) => Buffer.from(s)),
    fc.constantFrom('{"on":false}', '{"brightness":7}').map((s) => Buffer.from(s)),
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  );

const idArb = () => fc.oneof(fc.constant(fuzzer.id), fc.constant(bystander.id), fc.string({ maxLength: 30 }));

const packetArb = () =>
  fc.oneof(
    fc.record({
      cmd: fc.constant('connect'),
      protocolId: fc.constantFrom('MQTT', 'MQIsdp'),
      protocolVersion: fc.constantFrom(3, 4, 5),
      clientId: idArb(),
      username: fc.option(idArb(), { nil: undefined }),
      password: fc.option(
        fc.oneof(
          fc.constant(Buffer.from('')),
          fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
        ),
        { nil: undefined },
      ),
      clean: fc.boolean(),
      keepalive: fc.integer({ min: 0, max: 65535 }),
      will: fc.option(fc.record({ topic: topicArb(), payload: payloadArb(), qos: fc.constantFrom(0, 1, 2), retain: fc.boolean() }), { nil: undefined }),
    }),
    fc.record({
      cmd: fc.constant('publish'),
      topic: topicArb(),
      payload: payloadArb(),
      qos: fc.constantFrom(0, 1, 2),
      retain: fc.boolean(),
      dup: fc.boolean(),
      messageId: fc.integer({ min: 1, max: 65535 }),
    }),
    fc.record({
      cmd: fc.constant('subscribe'),
      messageId: fc.integer({ min: 1, max: 65535 }),
      subscriptions: fc.array(fc.record({ topic: topicArb(), qos: fc.constantFrom(0, 1, 2) }), { minLength: 1, maxLength: 5 }),
    }),
    fc.record({
      cmd: fc.constant('unsubscribe'),
      messageId: fc.integer({ min: 1, max: 65535 }),
      unsubscriptions: fc.array(topicArb(), { minLength: 1, maxLength: 3 }),
    }),
    fc.record({ cmd: fc.constantFrom('puback', 'pubrec', 'pubrel', 'pubcomp', 'unsuback'), messageId: fc.integer({ min: 1, max: 65535 }) }),
    fc.record({ cmd: fc.constantFrom('pingreq', 'pingresp', 'disconnect', 'connack', 'suback') }),
  );

/** A packet's bytes (random bytes when the generator refuses the fields), then maybe mutated. */
const bytesArb = () =>
  fc
    .tuple(
      packetArb(),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant({ kind: 'none' as const }) },
        {
          weight: 2,
          arbitrary: fc
            .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 6 })
            .map((flips) => ({ kind: 'flip' as const, flips })),
        },
        { weight: 2, arbitrary: fc.nat().map((at) => ({ kind: 'truncate' as const, at })) },
        { weight: 2, arbitrary: fc.integer({ min: 0, max: 268_435_455 }).map((length) => ({ kind: 'length' as const, length })) },
        { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 200 }).map((bytes) => ({ kind: 'random' as const, bytes: Buffer.from(bytes) })) },
      ),
    )
    .map(([packet, mutation]) => {
      let b: Buffer;
      try {
        b = Buffer.from(mqttPacket.generate(packet as mqttPacket.Packet));
      } catch {
        b = Buffer.from(JSON.stringify(packet));
      }
      switch (mutation.kind) {
        case 'flip':
          for (const [i, bit] of mutation.flips) if (b.length) b[i % b.length] ^= 1 << bit;
          return b;
        case 'truncate':
          return b.subarray(0, mutation.at % (b.length + 1));
        case 'length': {
          // keep the type byte, replace the remaining length with a bogus one
          let end = 1;
          while (end < b.length && end < 5 && b[end] & 0x80) end++;
          return Buffer.concat([b.subarray(0, 1), Buffer.from(encodeLength(mutation.length)), b.subarray(end + 1)]);
        }
        case 'random':
          return mutation.bytes;
        default:
          return b;
      }
    });

/** Well-formed publishes for the bystander, which a connection of the fuzzer may not make. */
const forgeryArb = () =>
  fc
    .record({
      suffix: fc.constantFrom('properties', 'events', 'presence', 'commands/result', 'children/join'),
      payload: fc.constantFrom('{"on":false}', '{"brightness":7}', '{"event":"x"}', '{"online":false}', '{"product":"light","hwid":"fz"}'),
      qos: fc.constantFrom(0, 1),
      messageId: fc.integer({ min: 1, max: 65535 }),
    })
    .map(({ suffix, payload, qos, messageId }) =>
      Buffer.from(mqttPacket.generate({ cmd: 'publish', topic: `devices/${bystander.id}/${suffix}`, payload, qos, messageId, retain: false, dup: false })),
    );

const caseArb = () =>
  fc.record({
    authenticated: fc.boolean(),
    packets: fc.array(fc.oneof({ weight: 4, arbitrary: bytesArb() }, { weight: 1, arbitrary: forgeryArb() }), { minLength: 1, maxLength: 5 }),
    cuts: fc.array(fc.nat(), { maxLength: 4 }),
  });

/** Sends one case over a fresh socket; resolves when the server closed it or after a moment. */
function send(bytes: Buffer, cuts: number[]): Promise<void> {
  return new Promise((resolve) => {
    const s = tcpConnect(p.mqttPort, '127.0.0.1');
    s.setNoDelay(true);
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve();
    };
    const t = setTimeout(done, 40);
    s.once('close', done);
    s.once('connect', () => {
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      for (const at of [...points, bytes.length]) {
        if (at > from && !s.destroyed) s.write(bytes.subarray(from, at));
        from = Math.max(from, at);
      }
    });
  });
}

test(`fuzzing the MQTT port (seed ${SEED}, ${RUNS} cases) leaves the server alive, its memory bounded and other devices' data intact`, async (t) => {
  const before = await bystanderView();
  const rssBefore = p.rss();
  const login = mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: fuzzer.id,
    username: fuzzer.id,
    password: Buffer.from(fuzzer.secret),
    clean: true,
    keepalive: 30,
  });
  let cases = 0;
  try {
    await fc.assert(
      fc.asyncProperty(caseArb(), async (c) => {
        cases++;
        await send(Buffer.concat([...(c.authenticated ? [login] : []), ...c.packets]), c.cuts);
        assert.ok(p.alive(), 'the server is alive');
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
  } finally {
    t.diagnostic(`seed ${SEED}, ${cases} cases sent`);
  }

  await new Promise((r) => setTimeout(r, 300));
  assert.ok(p.alive(), 'the server is alive');
  const grown = p.rss() - rssBefore;
  t.diagnostic(`server RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
  assert.ok(grown < 96 * MiB, `server RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
  assert.equal((await fetch(`${p.httpUrl}/healthz`)).status, 200);

  // nothing was written for the bystander by the fuzzed sockets
  assert.deepEqual(await bystanderView(), before);

  // a fresh device connects and its report reaches the API
  const fresh = await p.provision('light', 'after the fuzzing');
  const c = await p.connect(fresh.id, fresh.secret);
  await c.publishAsync(`devices/${fresh.id}/properties`, JSON.stringify({ brightness: 77 }), { qos: 1 });
  await eventually(async () => (await p.api('GET', `/api/v1/devices/${fresh.id}`)).body.shadow.reported.brightness === 77, 5000, 'the fresh device report');
  await c.endAsync();
});
