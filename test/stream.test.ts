import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { WebSocket } from 'ws';
import type { MqttClient } from 'mqtt';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';
import { MemoryBus } from '../src/core/bus/memory-bus.ts';
import type { Bus } from '../src/core/bus/bus.ts';
import { subjects } from '../src/core/bus/subjects.ts';
import { createLogger } from '../src/core/logger.ts';
import type { AccessService } from '../src/access/access-service.ts';
import type { DeviceService } from '../src/devices/device-service.ts';
import type { Principal } from '../src/access/principal.ts';
import { HearthError } from '../src/core/errors.ts';
import { buildHttpServer } from '../src/transports/http/http-server.ts';
import { StreamService, type StreamEvent, type StreamSink } from '../src/stream/stream-service.ts';
import { streamRoutes } from '../src/stream/stream-routes.ts';

/**
 * The live event stream at /api/v1/stream, through real sockets: WebSocket (`ws`) and
 * Server-Sent Events (`fetch` with a streaming reader), with real MQTT devices producing the events.
 */
let p: Platform;
const open: Array<{ close(): void }> = [];

before(async () => {
  p = await startPlatform();
});
after(async () => {
  for (const c of open) c.close();
  await p.stop();
});

interface Received {
  events: StreamEvent[];
  next(pred: (e: StreamEvent) => boolean, timeoutMs?: number, what?: string): Promise<StreamEvent>;
}

/** Collects events and waits for the next one that matches (taking everything before it off the list). */
function collector(): Received & { push(e: StreamEvent): void; fail(err: Error): void } {
  const events: StreamEvent[] = [];
  let cursor = 0;
  let waiter: { pred: (e: StreamEvent) => boolean; resolve: (e: StreamEvent) => void; reject: (err: Error) => void } | undefined;
  let failed: Error | undefined;
  const scan = () => {
    if (!waiter) return;
    while (cursor < events.length) {
      const e = events[cursor++];
      if (waiter.pred(e)) {
        const w = waiter;
        waiter = undefined;
        w.resolve(e);
        return;
      }
    }
  };
  return {
    events,
    push(e) {
      events.push(e);
      scan();
    },
    fail(err) {
      failed = err;
      waiter?.reject(err);
    },
    next(pred, timeoutMs = 3000, what = 'event') {
      return new Promise<StreamEvent>((resolve, reject) => {
        if (failed) return reject(failed);
        const t = setTimeout(() => {
          waiter = undefined;
          reject(new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(events.map((e) => `${e.type}:${e.deviceId}`))}`));
        }, timeoutMs);
        waiter = {
          pred,
          resolve: (e) => {
            clearTimeout(t);
            resolve(e);
          },
          reject: (err) => {
            clearTimeout(t);
            reject(err);
          },
        };
        scan();
      });
    },
  };
}

const wsUrl = (query = '') => `${p.httpUrl.replace('http', 'ws')}/api/v1/stream${query}`;

/** Opens a WebSocket stream; resolves once it is open. */
async function openWs(query = '', token: string | null = p.token): Promise<Received & { ws: WebSocket; close(): void }> {
  const ws = new WebSocket(wsUrl(query), token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const box = collector();
  ws.on('message', (buf) => box.push(JSON.parse(buf.toString()) as StreamEvent));
  ws.on('close', () => box.fail(new Error('socket closed')));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  const close = () => ws.terminate();
  open.push({ close });
  return { ...box, events: box.events, next: box.next, ws, close };
}

/** The status an upgrade is refused with. */
function wsRefusal(query: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(query), { headers });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.once('error', () => undefined);
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined, type: res.headers['content-type'] }));
    });
  });
}

interface SseFrame {
  id?: string;
  event?: string;
  data?: string;
  retry?: string;
}

/** Opens a Server-Sent Events stream with fetch and parses its frames. */
async function openSse(query = '', headers: Record<string, string> = {}): Promise<Received & { frames: SseFrame[]; res: Response; close(): void }> {
  const ac = new AbortController();
  const res = await fetch(`${p.httpUrl}/api/v1/stream${query}`, { headers, signal: ac.signal });
  assert.equal(res.status, 200, await (res.status === 200 ? Promise.resolve('') : res.text()));
  const box = collector();
  const frames: SseFrame[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  void (async () => {
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let at: number;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const f: SseFrame = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const k = line.slice(0, i) as keyof SseFrame;
            f[k] = line.slice(i + 1).replace(/^ /, '');
          }
          frames.push(f);
          if (f.data !== undefined) box.push(JSON.parse(f.data) as StreamEvent);
        }
      }
      box.fail(new Error('stream ended'));
    } catch (err) {
      box.fail(err as Error);
    }
  })();
  const close = () => ac.abort();
  open.push({ close });
  return { ...box, events: box.events, next: box.next, frames, res, close };
}

/** A connected plug that answers its commands topic. */
async function plug(name = 'stream plug'): Promise<{ id: string; secret: string; pairingCode: string; c: MqttClient; box: ReturnType<typeof inbox> }> {
  const d = await p.provision('plug', name);
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync([`devices/${d.id}/commands`], { qos: 1 });
  return { ...d, c, box };
}

const report = (d: { id: string; c: MqttClient }, values: Record<string, unknown>) =>
  d.c.publishAsync(`devices/${d.id}/properties`, JSON.stringify(values), { qos: 1 });
const isFor = (type: string, deviceId: string) => (e: StreamEvent) => e.type === type && e.deviceId === deviceId;
const big = (id: string) => BigInt(id);

async function signup(email: string): Promise<string> {
  const password = `password-of-${email}`;
  const s = await p.api('POST', '/api/v1/auth/signup', { email, password }, null);
  assert.equal(s.status, 201, JSON.stringify(s.body));
  const l = await p.api('POST', '/api/v1/auth/login', { email, password }, null);
  assert.equal(l.status, 200, JSON.stringify(l.body));
  return l.body.token as string;
}

test('the operator, over a WebSocket with a bearer header, gets presence, properties, device events and command results', async () => {
  const s = await openWs();
  const hello = await s.next((e) => e.type === 'hello', 3000, 'hello');
  assert.equal(hello.data.resumed, false);
  assert.match(hello.id, /^\d+$/);

  const d = await plug();
  const online = await s.next(isFor('presence', d.id), 3000, 'presence');
  assert.deepEqual(online.data, { online: true, reason: 'connect' });
  assert.equal(online.homeId, null, 'an unclaimed device is in no home');
  assert.ok(!Number.isNaN(Date.parse(online.at)));

  await report(d, { on: true, power: 12.5 });
  const prop = await s.next(isFor('property', d.id), 3000, 'property');
  assert.deepEqual(prop.data.values, { on: true, power: 12.5 });
  assert.deepEqual([...(prop.data.changed as string[])].sort(), ['on', 'power']);
  assert.equal(typeof prop.data.version, 'number');
  assert.ok(big(prop.id) > big(online.id), 'ids increase');

  await d.c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'overload', params: { power: 3900 } }), { qos: 1 });
  const ev = await s.next(isFor('event', d.id), 3000, 'device event');
  assert.equal(ev.data.event, 'overload');
  assert.deepEqual(ev.data.params, { power: 3900 });
  assert.match(ev.data.eventId as string, /^e_/);

  const call = p.api('POST', `/api/v1/devices/${d.id}/commands`, { action: 'toggle', timeoutMs: 3000 });
  const cmd = await d.box.next((m) => m.topic === `devices/${d.id}/commands`);
  const sent = await s.next(isFor('command', d.id), 3000, 'command sent');
  assert.deepEqual(sent.data, { commandId: cmd.payload.id, action: 'toggle', status: 'sent' });
  await d.c.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.payload.id, ok: true, result: {} }), { qos: 1 });
  const answered = await s.next(isFor('command', d.id), 3000, 'command answered');
  assert.deepEqual(answered.data, { commandId: cmd.payload.id, action: 'toggle', status: 'answered', ok: true, result: {} });
  assert.equal((await call).status, 200);

  // one device's events arrive in order, with increasing ids
  const mine = s.events.filter((e) => e.deviceId === d.id);
  for (let i = 1; i < mine.length; i++) assert.ok(big(mine[i].id) > big(mine[i - 1].id));

  await d.c.endAsync(true);
  const offline = await s.next(isFor('presence', d.id), 3000, 'offline');
  assert.equal(offline.data.online, false);
  s.close();
});

test('Server-Sent Events with ?access_token=: id, event and data lines, retry, and filters', async () => {
  const d = await plug('sse plug');
  const all = await openSse(`?access_token=${encodeURIComponent(p.token)}`);
  assert.match(all.res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const onlyEvents = await openSse(`?access_token=${encodeURIComponent(p.token)}&deviceId=${d.id}&types=event,presence`);
  await all.next((e) => e.type === 'hello');
  await onlyEvents.next((e) => e.type === 'hello');
  assert.equal(all.frames[0].retry, '2000');

  await report(d, { power: 40 });
  const prop = await all.next(isFor('property', d.id), 3000, 'property over SSE');
  const frame = all.frames.find((f) => f.id === prop.id)!;
  assert.equal(frame.event, 'property');
  assert.deepEqual(JSON.parse(frame.data!), prop);
  assert.deepEqual(prop.data.values, { power: 40 });

  await d.c.publishAsync(`devices/${d.id}/events`, JSON.stringify({ event: 'overload', params: { power: 4000 } }), { qos: 1 });
  const ev = await onlyEvents.next((e) => e.type !== 'hello', 3000, 'filtered event');
  assert.equal(ev.type, 'event', 'the property report was filtered out');
  assert.equal(ev.deviceId, d.id);
  await all.next(isFor('event', d.id));
  all.close();
  onlyEvents.close();
});

test('a client that reconnects with its last event id gets exactly what it missed, then live events', async () => {
  const d = await plug('resume plug');
  const watcher = await openWs(`?deviceId=${d.id}`);
  const first = await openWs(`?deviceId=${d.id}`);
  await first.next((e) => e.type === 'hello');
  await report(d, { power: 1 });
  const seen = await first.next(isFor('property', d.id));
  await watcher.next((e) => e.id === seen.id);
  first.close();

  for (const power of [2, 3, 4]) await report(d, { power });
  const missed: StreamEvent[] = [];
  for (let i = 0; i < 3; i++) missed.push(await watcher.next(isFor('property', d.id)));
  assert.deepEqual(
    missed.map((e) => (e.data.values as { power: number }).power),
    [2, 3, 4],
  );

  // WebSocket: ?lastEventId=
  const again = await openWs(`?deviceId=${d.id}&lastEventId=${seen.id}`);
  const hello = await again.next((e) => e.type === 'hello');
  assert.equal(hello.data.resumed, true);
  const replayed = again.events.slice(0, again.events.indexOf(hello));
  assert.deepEqual(replayed, missed, 'exactly the missed events, in order, before the hello');
  await report(d, { power: 5 });
  const live = await again.next(isFor('property', d.id));
  assert.deepEqual(live.data.values, { power: 5 });
  assert.ok(big(live.id) > big(missed[2].id));

  // SSE: the Last-Event-ID header, as EventSource sends it on reconnects (it wins over the URL's)
  const sse = await openSse(`?deviceId=${d.id}&lastEventId=${seen.id}`, { authorization: `Bearer ${p.token}`, 'last-event-id': missed[0].id });
  const sseHello = await sse.next((e) => e.type === 'hello');
  assert.deepEqual(sse.events.slice(0, sse.events.indexOf(sseHello)), [...missed.slice(1), live]);
  assert.deepEqual(
    sse.frames.filter((f) => f.id).map((f) => f.id),
    [missed[1].id, missed[2].id, live.id, sseHello.id],
  );

  // an id from before this run (or not one of ours) is a gap: reset first, then what is buffered
  const stale = await openWs(`?deviceId=${d.id}&lastEventId=1000`);
  const reset = await stale.next(() => true);
  assert.equal(reset.type, 'reset');
  const staleHello = await stale.next((e) => e.type === 'hello');
  assert.equal(staleHello.data.resumed, false);
  assert.deepEqual(
    stale.events.filter((e) => e.type === 'property').map((e) => e.id),
    [seen.id, ...missed.map((e) => e.id), live.id],
  );
  const junk = await openSse(`?deviceId=${d.id}&lastEventId=not-an-id&access_token=${p.token}`);
  assert.equal((await junk.next(() => true)).type, 'reset');
  for (const c of [watcher, again, sse, stale, junk]) c.close();
});

test('people only hear about the devices they may see', async () => {
  const alice = await signup('alice.stream@example.test');
  const bob = await signup('bob.stream@example.test');
  const homeA = await p.api('POST', '/api/v1/homes', { name: 'Alice stream home', timezone: 'Europe/Berlin' }, alice);
  assert.equal(homeA.status, 201, JSON.stringify(homeA.body));
  const homeB = await p.api('POST', '/api/v1/homes', { name: 'Bob stream home', timezone: 'Europe/Paris' }, bob);
  assert.equal(homeB.status, 201, JSON.stringify(homeB.body));
  const a = await plug('alice plug');
  const b = await plug('bob plug');
  assert.equal((await p.api('POST', `/api/v1/homes/${homeA.body.id}/devices`, { pairingCode: a.pairingCode }, alice)).status, 201);
  assert.equal((await p.api('POST', `/api/v1/homes/${homeB.body.id}/devices`, { pairingCode: b.pairingCode }, bob)).status, 201);

  const aliceWs = await openWs('', alice);
  const aliceHome = await openSse(`?homeId=${homeA.body.id}&types=property&access_token=${alice}`);
  const bobWs = await openWs(`?access_token=${bob}`, null);
  const operator = await openWs();
  for (const s of [aliceWs, aliceHome, bobWs, operator]) await s.next((e) => e.type === 'hello');

  await report(a, { power: 7 });
  const seen = await aliceWs.next(isFor('property', a.id), 3000, 'alice sees her plug');
  assert.equal(seen.homeId, homeA.body.id);
  assert.deepEqual((await aliceHome.next(isFor('property', a.id))).id, seen.id);
  assert.equal((await operator.next(isFor('property', a.id))).id, seen.id, 'the operator sees everything');

  await report(b, { power: 8 });
  const bobs = await bobWs.next(isFor('property', b.id), 3000, 'bob sees his plug');
  assert.equal(bobs.homeId, homeB.body.id);
  await operator.next(isFor('property', b.id));
  // events reach a connection in order, so by now bob would have had alice's
  assert.deepEqual(
    bobWs.events.filter((e) => e.deviceId === a.id),
    [],
    "nothing about alice's plug",
  );
  await a.c.endAsync(true);
  await operator.next(isFor('presence', a.id));
  await report(b, { power: 9 });
  await bobWs.next((e) => e.type === 'property' && e.deviceId === b.id && (e.data.values as { power: number }).power === 9);
  assert.ok(!bobWs.events.some((e) => e.deviceId === a.id || e.homeId === homeA.body.id));
  assert.ok(!aliceWs.events.some((e) => e.deviceId === b.id), "nor alice about bob's");
  assert.ok(aliceHome.events.every((e) => e.type === 'hello' || (e.type === 'property' && e.homeId === homeA.body.id)));

  // a filter naming what the caller may not see is refused at once, as not found
  const refused = await wsRefusal(`?deviceId=${a.id}&access_token=${bob}`);
  assert.equal(refused.status, 404);
  assert.equal(refused.body.code, 'E_DEVICE_NOT_FOUND');
  const other = await fetch(`${p.httpUrl}/api/v1/stream?homeId=${homeA.body.id}`, { headers: { authorization: `Bearer ${bob}` } });
  assert.equal(other.status, 404);
  assert.equal(((await other.json()) as { code: string }).code, 'E_HOME_NOT_FOUND');
  for (const s of [aliceWs, aliceHome, bobWs, operator]) s.close();
});

test('a bad or missing token is refused with 401 problem+json, before any upgrade', async () => {
  const noToken = await fetch(`${p.httpUrl}/api/v1/stream`);
  assert.equal(noToken.status, 401);
  assert.match(noToken.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(((await noToken.json()) as { code: string }).code, 'E_UNAUTHENTICATED');
  const forged = await fetch(`${p.httpUrl}/api/v1/stream?access_token=hth1.e30.forged`);
  assert.equal(forged.status, 401);
  const badHeader = await fetch(`${p.httpUrl}/api/v1/stream?access_token=${p.token}`, { headers: { authorization: 'Bearer nope' } });
  assert.equal(badHeader.status, 401, 'a header, when sent, is what counts');

  const ws = await wsRefusal('?access_token=nope');
  assert.equal(ws.status, 401);
  assert.equal(ws.body.code, 'E_UNAUTHENTICATED');
  assert.match(ws.type ?? '', /^application\/problem\+json/);
  assert.equal((await wsRefusal('', { authorization: 'Bearer hth1.e30.forged' })).status, 401);
  assert.equal((await wsRefusal('')).status, 401);

  const badType = await fetch(`${p.httpUrl}/api/v1/stream?types=weather`, { headers: { authorization: `Bearer ${p.token}` } });
  assert.equal(badType.status, 400);
  assert.equal(((await badType.json()) as { code: string }).code, 'E_VALIDATION');
});

test('the stream is described in the OpenAPI document', async () => {
  const doc = (await p.api('GET', '/docs/json', undefined, null)).body;
  const op = doc.paths['/api/v1/stream']?.get;
  assert.ok(op, '/api/v1/stream is documented');
  assert.deepEqual(op.tags, ['stream']);
  assert.ok(op.description.includes('WebSocket'));
  const params = op.parameters.map((x: { name: string }) => x.name);
  for (const name of ['access_token', 'lastEventId', 'homeId', 'deviceId', 'types']) assert.ok(params.includes(name), name);
  assert.ok(op.responses['200'].content['text/event-stream']);
  assert.ok(op.responses['200'].content['application/json'].schema.examples.length > 0);
  assert.equal(doc.paths['/api/v1/stream'].head, undefined);
});

// ---- the service on its own: buffer bounds, gaps, slow clients, ordering ------------------------

const OPERATOR: Principal = { userId: 'u_operator', email: 'op@test', role: 'operator' };
const USER: Principal = { userId: 'u_user', email: 'user@test', role: 'user' };

function bench(bufferSize: number, visible: (p: Principal, deviceId: string) => boolean = () => true) {
  const log = createLogger('silent');
  const bus: Bus = new MemoryBus(log);
  let checks = 0;
  const access = {
    placement: async (id: string) => ({ homeId: `h_of_${id}`, roomId: null, name: null, boundAt: 0 }),
    deviceEventRight: async (pr: Principal, d: { id: string }) => {
      checks++;
      await new Promise((r) => setTimeout(r, 1));
      return visible(pr, d.id) ? { right: 'view', since: 0 } : { right: 'none', since: Infinity };
    },
  } as unknown as AccessService;
  const devices = { get: async (id: string) => ({ id, parentId: null }) } as unknown as DeviceService;
  const stream = new StreamService({ bus, access, devices, log, bufferSize });
  stream.start();
  const client = (principal: Principal, lastEventId?: string, accept = () => true) => {
    const got: StreamEvent[] = [];
    const closed: string[] = [];
    const sink: StreamSink = { write: (ev) => (got.push(ev), accept()), close: (r) => closed.push(r) };
    const conn = stream.connect({ principal, lastEventId, sink });
    return { got, closed, conn };
  };
  const reported = (deviceId: string, power: number) =>
    bus.publish(subjects.reported(deviceId), { deviceId, values: { power }, changed: ['power'], version: power, at: Date.now() });
  return { bus, stream, client, reported, checks: () => checks };
}

test('service: the buffer keeps the last N events; older ids get a reset, then what is left', async () => {
  const b = bench(3);
  const watch = b.client(OPERATOR);
  for (let i = 1; i <= 5; i++) b.reported('d_x', i);
  await b.bus.flush();
  await eventually(() => watch.got.filter((e) => e.type === 'property').length >= 5, 5000, 'the five events');
  const ids = watch.got.filter((e) => e.type === 'property').map((e) => e.id);
  assert.equal(ids.length, 5);
  const resumed = b.client(OPERATOR, ids[1]);
  assert.deepEqual(
    resumed.got.map((e) => e.type),
    ['property', 'property', 'property', 'hello'],
    'ids[1] is the newest evicted event: no gap',
  );
  assert.deepEqual(
    resumed.got.slice(0, 3).map((e) => e.id),
    ids.slice(2),
  );
  const gap = b.client(OPERATOR, ids[0]);
  assert.deepEqual(
    gap.got.map((e) => e.type),
    ['reset', 'property', 'property', 'property', 'hello'],
  );
  assert.equal(gap.got[0].id, ids[1], 'the reset carries the position the buffer is whole from');
  assert.equal(gap.got.at(-1)!.id, ids[4]);
  b.stream.stop();
  assert.deepEqual(watch.closed, ['shutdown']);
});

test('service: access is checked once per device per connection, in order, and slow clients are dropped', async () => {
  const b = bench(100, (pr, id) => pr.role === 'operator' || id === 'd_mine');
  const user = b.client(USER);
  for (let i = 0; i < 20; i++) {
    b.reported('d_mine', i);
    b.reported('d_other', i);
  }
  // A last event the user may see: once it is there, every earlier one has been decided (in order).
  b.reported('d_mine', 20);
  await b.bus.flush();
  await eventually(() => user.got.some((e) => e.type === 'property' && (e.data.values as { power: number }).power === 20), 5000, 'the last event');
  const got = user.got.filter((e) => e.type === 'property');
  assert.equal(got.length, 21);
  assert.ok(got.every((e) => e.deviceId === 'd_mine' && e.homeId === 'h_of_d_mine'));
  assert.deepEqual(
    got.map((e) => (e.data.values as { power: number }).power),
    [...Array(21).keys()],
    'in order',
  );
  assert.equal(b.checks(), 2, 'one check per device, then the cached decision');

  let room = 2;
  const slow = b.client(OPERATOR, undefined, () => room-- > 0);
  for (let i = 0; i < 5; i++) b.reported('d_mine', 100 + i);
  await b.bus.flush();
  await eventually(() => slow.closed.length > 0, 5000, 'the slow client to be closed');
  assert.deepEqual(slow.closed, ['slow']);
  assert.equal(b.stream.connections, 1, 'the slow client is gone, the other stays');
  b.stream.stop();
});

test('transport: heartbeats, and a client that stops reading is dropped instead of buffered', async () => {
  const b = bench(100);
  const app = await buildHttpServer({ log: createLogger('silent'), version: 'test', authenticate: () => OPERATOR, isReady: () => true });
  streamRoutes(app, {
    stream: b.stream,
    verifyPrincipal: (t) => {
      if (t !== 'good') throw new HearthError('E_UNAUTHENTICATED', 'invalid access token');
      return OPERATOR;
    },
    options: { wsPingMs: 40, ssePingMs: 40, maxBufferedBytes: 64 * 1024 },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  try {
    // heartbeats: SSE comments, WebSocket pings
    const sse = await fetch(`http://127.0.0.1:${port}/api/v1/stream?access_token=good`);
    const reader = sse.body!.getReader();
    let text = '';
    while (!text.includes(': ping')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v1/stream?access_token=good`);
    await new Promise<void>((resolve) => ws.once('ping', () => resolve()));
    ws.terminate();

    // readers that never read: raw sockets that send their request and pause
    const stalled = (request: string) =>
      new Promise<{ closed: () => Promise<void> }>((resolve) => {
        const sock = tcpConnect(port, '127.0.0.1', () => {
          sock.write(request);
          sock.once('data', () => {
            sock.pause();
            const closed = new Promise<void>((r) => sock.once('close', () => r()));
            // reading again drains what the kernel holds, up to the server's end of the connection
            resolve({ closed: () => (sock.resume(), closed) });
          });
        });
        sock.on('error', () => undefined);
      });
    const sseStalled = await stalled('GET /api/v1/stream?access_token=good HTTP/1.1\r\nHost: x\r\n\r\n');
    const wsStalled = await stalled(
      'GET /api/v1/stream?access_token=good HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    await eventually(() => b.stream.connections === 2, 5000, 'both stalled readers to be connected');
    const blob = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 1000 && b.stream.connections > 0; i++) {
      b.stream.publish('notification', null, null, { blob, i });
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(b.stream.connections, 0, 'both were dropped');
    await Promise.all([sseStalled.closed(), wsStalled.closed()]);
  } finally {
    await app.close();
    b.stream.stop();
  }
});
