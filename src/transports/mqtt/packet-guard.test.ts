import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { connect, createServer, type Socket } from 'node:net';
import {
  encodeLength,
  guardOf,
  guardSocket,
  MqttFramer,
  PacketGuard,
  PacketRefusedError,
  type PacketLimits,
  type Refusal,
  type TruncatedPublish,
} from './packet-guard.ts';

const LIMITS: PacketLimits = { beforeConnack: 64, payload: 300, packet: 200 };
const SEED = Number(process.env.HEARTH_FUZZ_SEED ?? 20261212);

function packet(first: number, body: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([first, ...encodeLength(body.length)]), Buffer.from(body)]);
}

function publish(topic: string, qos: number, messageId: number, payload: Uint8Array, retain = false): Buffer {
  const t = Buffer.from(topic);
  const parts = [Buffer.from([t.length >> 8, t.length & 0xff]), t];
  if (qos > 0) parts.push(Buffer.from([messageId >> 8, messageId & 0xff]));
  parts.push(Buffer.from(payload));
  return packet(0x30 | (qos << 1) | (retain ? 1 : 0), Buffer.concat(parts));
}

/** Feeds `bytes` split at `cuts` and collects what the framer passes on. */
function run(bytes: Buffer, cuts: number[], admitted: boolean, limits = LIMITS) {
  const out: Buffer[] = [];
  const refused: Refusal[] = [];
  const truncated: TruncatedPublish[] = [];
  const f = new MqttFramer(limits, { data: (b) => out.push(b), refused: (r) => refused.push(r), truncated: (t) => truncated.push(t) });
  if (admitted) f.admit();
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const p of [...points, bytes.length]) {
    if (p > from) f.feed(bytes.subarray(from, p));
    from = Math.max(from, p);
  }
  return { out: Buffer.concat(out), chunks: out, refused, truncated };
}

/** A packet of any type but CONNECT with a body within `max` bytes (PUBLISH bodies within the payload limit). */
const anyPacket = (max: number) =>
  fc
    .record({
      type: fc.integer({ min: 2, max: 14 }),
      flags: fc.integer({ min: 0, max: 15 }),
      body: fc.uint8Array({ maxLength: max }),
    })
    .map(({ type, flags, body }) => packet((type << 4) | flags, body));

const cuts = fc.array(fc.nat(), { maxLength: 12 });

test('good traffic passes through byte-identical, whatever the chunk boundaries', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: LIMITS.beforeConnack }), fc.array(anyPacket(LIMITS.packet), { maxLength: 12 }), cuts, (connectBody, rest, cutAt) => {
      const bytes = Buffer.concat([packet(0x10, connectBody), ...rest]);
      // before CONNACK: the CONNECT passes; once admitted: everything.
      const pre = run(packet(0x10, connectBody), cutAt, false);
      assert.deepEqual(pre.refused, []);
      assert.ok(pre.out.equals(packet(0x10, connectBody)));
      const r = run(bytes, cutAt, true);
      assert.deepEqual(r.refused, []);
      assert.deepEqual(r.truncated, []);
      assert.ok(r.out.equals(bytes), 'byte-identical');
    }),
    { seed: SEED, numRuns: 400 },
  );
});

test('good traffic is passed as slices of the chunks it came in (no copies), headers split over chunks aside', () => {
  const bytes = Buffer.concat([packet(0x10, Buffer.alloc(10, 1)), packet(0x30, Buffer.alloc(150, 2)), packet(0xc0, Buffer.alloc(0))]);
  const r = run(bytes, [], true);
  assert.equal(r.chunks.length, 1);
  assert.equal(r.chunks[0].buffer, bytes.buffer, 'the same memory, not a copy');
});

test('a header claiming more than the limit is refused before any of its body is passed on', () => {
  fc.assert(
    fc.property(
      fc.array(anyPacket(LIMITS.packet), { maxLength: 6 }),
      fc.constantFrom(1, 2, 8, 10, 12),
      fc.integer({ min: LIMITS.packet + 1, max: 268_435_455 }),
      fc.uint8Array({ maxLength: 40 }),
      cuts,
      (before, type, claimed, tail, cutAt) => {
        const good = Buffer.concat(before);
        const bad = Buffer.concat([Buffer.from([(type << 4) | (type === 8 || type === 10 ? 2 : 0), ...encodeLength(claimed)]), Buffer.from(tail)]);
        const r = run(Buffer.concat([good, bad]), cutAt, true);
        assert.equal(r.refused.length, 1);
        assert.equal(r.refused[0].reason, 'too-large');
        assert.equal(r.refused[0].remaining, claimed);
        assert.ok(r.out.equals(good), 'nothing of the oversized packet was passed on');
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
});

test('before CONNACK: the first packet must be a CONNECT within the small limit, and so must anything pipelined after it', () => {
  fc.assert(
    fc.property(fc.integer({ min: LIMITS.beforeConnack + 1, max: 268_435_455 }), cuts, (claimed, cutAt) => {
      const r = run(Buffer.from([0x10, ...encodeLength(claimed), 0, 4]), cutAt, false);
      assert.equal(r.refused[0]?.reason, 'too-large');
      assert.equal(r.out.length, 0);
      const pipelined = run(Buffer.concat([packet(0x10, Buffer.alloc(20)), Buffer.from([0x32, ...encodeLength(claimed)])]), cutAt, false);
      assert.equal(pipelined.refused[0]?.reason, 'too-large');
      assert.equal(pipelined.out.length, 22);
    }),
    { seed: SEED, numRuns: 200 },
  );
  assert.equal(run(packet(0x30, Buffer.alloc(3)), [], false).refused[0].reason, 'not-connect');
});

test('a remaining length of more than four bytes is refused', () => {
  const r = run(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]), [2, 3], false);
  assert.equal(r.refused[0].reason, 'malformed');
  assert.equal(r.out.length, 0);
});

test('an admitted PUBLISH over the payload limit is skipped as it arrives: the parser gets it with an empty payload', () => {
  fc.assert(
    fc.property(
      fc.array(anyPacket(LIMITS.packet), { maxLength: 4 }),
      fc.stringMatching(/^[a-z0-9/_-]{1,80}$/),
      fc.constantFrom(0, 1, 2),
      fc.integer({ min: 1, max: 65535 }),
      fc.integer({ min: LIMITS.payload + 1, max: 2000 }),
      fc.boolean(),
      fc.array(anyPacket(LIMITS.packet), { maxLength: 4 }),
      cuts,
      (before, topic, qos, messageId, size, retain, after, cutAt) => {
        const big = publish(topic, qos, messageId, Buffer.alloc(size, 0x7b), retain);
        const r = run(Buffer.concat([...before, big, ...after]), cutAt, true);
        assert.deepEqual(r.refused, []);
        assert.deepEqual(r.truncated, [{ topic, qos, messageId: qos > 0 ? messageId : undefined, payloadBytes: size }]);
        const empty = publish(topic, qos, messageId, Buffer.alloc(0), retain);
        assert.ok(r.out.equals(Buffer.concat([...before, empty, ...after])), 'the others pass unchanged, the big one arrives empty');
        assert.ok(!r.out.includes(Buffer.alloc(8, 0x7b)), 'no payload byte of it was passed on');
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
});

test('a PUBLISH that only looks long because of its topic passes whole', () => {
  const topic = 'devices/d_1/properties';
  const fits = publish(topic, 1, 7, Buffer.alloc(LIMITS.payload, 0x20));
  assert.ok(fits.length > LIMITS.payload + 2);
  const r = run(fits, [1, 3, 10, 40], true);
  assert.deepEqual(r.truncated, []);
  assert.ok(r.out.equals(fits));
});

test('an oversized PUBLISH with a topic no device has, or a QoS of 3, is refused', () => {
  const long = publish('x'.repeat(2000), 0, 0, Buffer.alloc(400));
  assert.equal(run(long, [], true).refused[0].reason, 'too-large');
  const qos3 = Buffer.from([0x36, ...encodeLength(400), 0, 1, 0x61, 0, 1]);
  assert.equal(run(qos3, [], true).refused[0].reason, 'malformed');
});

test('the guard stream: passes bytes both ways, destroys the connection on a refusal, reports it', async () => {
  const written: Buffer[] = [];
  // The connection: what it pushes is what the guard reads; what is written to it is collected.
  const inner = new Duplex({
    read() {},
    write(chunk, _enc, cb) {
      written.push(chunk);
      cb();
    },
  });
  const refusals: Refusal[] = [];
  const guard = new PacketGuard(inner, LIMITS, { refused: (r) => refusals.push(r) });
  const got: Buffer[] = [];
  guard.on('data', (b) => got.push(b));
  const errored = new Promise<Error>((resolve) => guard.once('error', resolve));
  guard.write(Buffer.from([0x20, 2, 0, 0]));
  inner.push(packet(0x10, Buffer.alloc(10)));
  await new Promise((r) => setImmediate(r));
  assert.equal(Buffer.concat(got).length, 12);
  assert.deepEqual(Buffer.concat(written), Buffer.from([0x20, 2, 0, 0]));
  guard.admit();
  inner.push(Buffer.from([0x82, 0xff, 0xff, 0x7f, 0, 5]));
  const err = await errored;
  assert.ok(err instanceof PacketRefusedError);
  assert.equal(refusals[0].reason, 'too-large');
  assert.ok(inner.destroyed, 'the connection itself is destroyed');
});

test('the guard on a socket itself: the reader sees only what the framer passed, a refusal destroys the socket, the end of the stream arrives', async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const refusals: Refusal[] = [];
  const accepted = new Promise<Socket>((resolve) =>
    server.once('connection', (s) => {
      guardSocket(s, LIMITS, { refused: (r) => refusals.push(r) });
      resolve(s);
    }),
  );
  try {
    // A good CONNECT, then after admission an oversized PUBLISH (skipped, answered empty) and an end.
    const client = connect(port, '127.0.0.1');
    const socket = await accepted;
    const got: Buffer[] = [];
    socket.on('data', (b) => got.push(b));
    const ended = new Promise<void>((r) => socket.once('end', () => r()));
    client.write(packet(0x10, Buffer.alloc(10)));
    await eventuallyTrue(() => Buffer.concat(got).length === 12);
    guardOf(socket)!.admit();
    client.end(publish('devices/d1/properties', 1, 7, Buffer.alloc(1000)));
    await ended;
    const truncated = guardOf(socket)!.takeTruncated('devices/d1/properties', 7);
    assert.equal(truncated?.payloadBytes, 1000);
    assert.deepEqual(Buffer.concat(got).subarray(12), publish('devices/d1/properties', 1, 7, Buffer.alloc(0)));
    socket.destroy();

    // A header over the limit before CONNACK: refused, the socket destroyed with the guard's error.
    const bad = connect(port, '127.0.0.1');
    const victim = await new Promise<Socket>((resolve) =>
      server.once('connection', (s) => {
        guardSocket(s, LIMITS, { refused: (r) => refusals.push(r) });
        resolve(s);
      }),
    );
    const seen: Buffer[] = [];
    victim.on('data', (b) => seen.push(b));
    const errored = new Promise<Error>((resolve) => victim.once('error', resolve));
    bad.on('error', () => undefined);
    bad.write(Buffer.from([0x10, 0xff, 0xff, 0x7f, 0, 5]));
    assert.ok((await errored) instanceof PacketRefusedError);
    assert.equal(refusals.at(-1)?.reason, 'too-large');
    assert.equal(seen.length, 0, 'nothing of the refused packet was read');
    assert.ok(victim.destroyed);
    bad.destroy();
  } finally {
    server.close();
  }
});

async function eventuallyTrue(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check());
}
