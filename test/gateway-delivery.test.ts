import { test, before, after } from 'node:test';
import { foreignSubject } from '../src/core/bus/events.ts';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect } from 'amqplib';
import { startPlatform, type Platform } from './helpers/platform.ts';
import { startRabbit } from './helpers/rabbitmq.ts';
import type { Delivery, Envelope, RouteSpec, Target } from '../src/routing/envelope.ts';

/** What the partner's server saw of one request. */
interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/** A real HTTP server standing in for partners: each path answers as its behaviour says. */
class PartnerServer {
  readonly received: Received[] = [];
  readonly behaviour = new Map<string, (n: number) => number>();
  /** Per path: requests being answered right now, and the most ever at once. */
  readonly inFlight = new Map<string, { now: number; max: number }>();
  delayMs = new Map<string, number>();
  server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', async () => {
        const path = req.url ?? '/';
        const f = this.inFlight.get(path) ?? { now: 0, max: 0 };
        this.inFlight.set(path, f);
        f.now++;
        f.max = Math.max(f.max, f.now);
        const n = this.received.filter((r) => r.path === path).length;
        const status = (this.behaviour.get(path) ?? (() => 200))(n);
        const delay = this.delayMs.get(path);
        if (delay) await new Promise((r) => setTimeout(r, delay));
        f.now--;
        this.received.push({ path, headers: req.headers, body, status });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'nope');
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  at(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

let p: Platform;
const partner = new PartnerServer();
const routes: RouteSpec[] = [];
let seq = 0;

before(async () => {
  await partner.start();
  p = await startPlatform();
});
after(async () => {
  await p.stop();
  await partner.stop();
});

/** Makes a route live on the platform, as the gateway config would. */
async function route(name: string, ...targets: Target[]): Promise<RouteSpec> {
  const r: RouteSpec = { id: `r_${name.replace(/[^a-z0-9]/g, '')}`, name, targets };
  routes.push(r);
  await p.hearth.services.delivery.reconcile(routes);
  return r;
}

async function unroute(r: RouteSpec): Promise<void> {
  routes.splice(routes.indexOf(r), 1);
  await p.hearth.services.delivery.reconcile(routes);
}

function envelope(extra: Partial<Envelope> = {}): Envelope {
  return {
    id: `test.${++seq}`,
    source: 'mqtt',
    deviceId: 'd_testdevice0001',
    product: 'water-leak-sensor',
    kind: 'events',
    topic: 'devices/d_testdevice0001/events',
    payload: { event: 'leak', params: { n: seq } },
    receivedAt: Date.now(),
    tags: {},
    ...extra,
  };
}

/** Enqueues the envelope's payload for target `index` of `r`, as the pipeline would. */
async function deliver(r: RouteSpec, e: Envelope = envelope(), opts: { index?: number; lane?: string } = {}): Promise<Delivery> {
  const index = opts.index ?? 0;
  const d: Delivery = {
    routeId: r.id,
    routeName: r.name,
    targetIndex: index,
    target: r.targets[index] as Delivery['target'],
    envelope: e,
    body: JSON.stringify({ deviceId: e.deviceId, kind: e.kind, payload: e.payload }),
    ...(opts.lane ? { lane: opts.lane } : {}),
  };
  await p.hearth.services.delivery.enqueue(d);
  return d;
}

async function eventually<T>(f: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The value of one series in the platform's scrape. */
async function metric(series: string): Promise<number | undefined> {
  const line = (await p.hearth.metrics.text()).split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('a webhook gets the body with a valid signature, the lane, the message id, the route, its static headers and the trace', async () => {
  const secret = 'partner-secret-1';
  const r = await route('signed', {
    type: 'webhook',
    url: `${partner.url}/signed`,
    secret,
    headers: { Authorization: 'Bearer partner-token', 'X-Hearth-Signature': 'forged' },
  });
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const d = await deliver(r, envelope({ trace: { traceparent } }), { lane: 'gray' });
  const [got] = await eventually(() => (partner.at('/signed').length ? partner.at('/signed') : undefined), 'the webhook call');
  assert.equal(got.body, d.body);
  assert.equal(got.headers['content-type'], 'application/json');
  const expected = 'sha256=' + createHmac('sha256', secret).update(d.body).digest('hex');
  assert.equal(got.headers['x-hearth-signature'], expected, 'signed over the exact body; a static header cannot forge it');
  assert.equal(got.headers['x-hearth-lane'], 'gray');
  assert.equal(got.headers['x-hearth-message-id'], d.envelope.id);
  assert.equal(got.headers['x-hearth-route'], 'signed');
  assert.equal(got.headers.authorization, 'Bearer partner-token');
  assert.equal(got.headers.traceparent, traceparent);
  // Without a secret or a lane: neither header.
  const plain = await route('plain', { type: 'webhook', url: `${partner.url}/plain` });
  await deliver(plain);
  const [p1] = await eventually(() => (partner.at('/plain').length ? partner.at('/plain') : undefined), 'the unsigned call');
  assert.equal(p1.headers['x-hearth-signature'], undefined);
  assert.equal(p1.headers['x-hearth-lane'], undefined);
  // Counted when the answer comes back, which may be after the partner saw the call.
  await eventually(
    async () => ((await metric('hearth_gateway_deliveries_total{target_type="webhook",outcome="ok"}')) ?? 0) >= 2,
    'both deliveries counted as ok',
  );
});

test('a 500 is retried after a backoff and the message is delivered once', async () => {
  partner.behaviour.set('/flaky', (n) => (n === 0 ? 500 : 200));
  const r = await route('flaky', { type: 'webhook', url: `${partner.url}/flaky`, secret: 's' });
  const d = await deliver(r);
  await eventually(() => partner.at('/flaky').some((x) => x.status === 200) || undefined, 'the retried delivery');
  await sleep(700);
  const calls = partner.at('/flaky');
  assert.deepEqual(
    calls.map((c) => c.status),
    [500, 200],
    'one failure, one success, nothing after',
  );
  assert.equal(calls[1].body, d.body);
  assert.equal(calls[1].headers['x-hearth-message-id'], d.envelope.id);
  assert.equal((await p.api('GET', `/api/v1/dead-letters?routeId=${r.id}`)).body.items.length, 0);
});

test('a permanent failure is a dead letter at once: listed with its reason, inspected, replayed, discarded', async () => {
  let gone = true;
  partner.behaviour.set('/gone', () => (gone ? 410 : 200));
  const secret = 'dead-letter-secret';
  const r = await route('gone', { type: 'webhook', url: `${partner.url}/gone`, secret, retries: 5 });
  const d = await deliver(r, envelope({ tags: { class: 'alarm' } }), { lane: 'gray' });
  const list = await eventually(async () => {
    const res = await p.api('GET', `/api/v1/dead-letters?routeId=${r.id}`);
    return res.body.items.length ? res.body.items : undefined;
  }, 'the dead letter');
  assert.equal(partner.at('/gone').length, 1, 'a 410 is not retried');
  const [dl] = list;
  assert.match(dl.id, /^dl_/);
  assert.equal(dl.reason, 'HTTP 410');
  assert.equal(dl.attempts, 1);
  assert.equal(dl.status, 'waiting');
  assert.equal(dl.routeName, 'gone');
  assert.equal(dl.lane, 'gray');
  assert.equal(dl.target.secret, '[redacted]');
  assert.equal(dl.target.url, `${partner.url}/gone`);
  assert.equal(dl.envelope.id, d.envelope.id);
  assert.deepEqual(dl.envelope.tags, { class: 'alarm' });
  assert.equal(dl.body, undefined, 'the listing leaves the body out');
  assert.ok(!JSON.stringify(list).includes(secret));

  const full = await p.api('GET', `/api/v1/dead-letters/${dl.id}`);
  assert.equal(full.status, 200);
  assert.equal(full.body.body, d.body);
  assert.deepEqual(full.body.envelope.payload, d.envelope.payload);
  assert.ok(!JSON.stringify(full.body).includes(secret));

  gone = false;
  const replay = await p.api('POST', `/api/v1/dead-letters/${dl.id}/replay`);
  assert.equal(replay.status, 202);
  assert.equal(replay.body.status, 'replayed');
  const ok = await eventually(() => partner.at('/gone').find((x) => x.status === 200), 'the replayed delivery');
  assert.equal(ok.body, d.body);
  assert.equal(ok.headers['x-hearth-signature'], 'sha256=' + createHmac('sha256', secret).update(d.body).digest('hex'));
  assert.equal(ok.headers['x-hearth-lane'], 'gray');
  assert.equal((await p.api('GET', `/api/v1/dead-letters/${dl.id}`)).body.status, 'replayed');
  assert.equal((await p.api('GET', `/api/v1/dead-letters?status=waiting&routeId=${r.id}`)).body.items.length, 0);

  assert.equal((await p.api('DELETE', `/api/v1/dead-letters/${dl.id}`)).status, 204);
  assert.equal((await p.api('GET', `/api/v1/dead-letters/${dl.id}`)).body.status, 'discarded');
  const missing = await p.api('GET', '/api/v1/dead-letters/dl_nothinghere00');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.code, 'E_DEAD_LETTER_NOT_FOUND');
  assert.equal((await p.api('POST', '/api/v1/dead-letters/dl_nothinghere00/replay')).status, 404);
  assert.equal((await p.api('GET', '/api/v1/dead-letters', undefined, null)).status, 401);
});

test('when the retries are used up the job is a dead letter with the last reason', async () => {
  partner.behaviour.set('/down', () => 503);
  const r = await route('down', { type: 'webhook', url: `${partner.url}/down`, retries: 1 });
  await deliver(r);
  const [dl] = await eventually(async () => {
    const items = (await p.api('GET', `/api/v1/dead-letters?routeId=${r.id}`)).body.items;
    return items.length ? items : undefined;
  }, 'the dead letter');
  assert.equal(dl.reason, 'HTTP 503 after 2 attempts');
  assert.equal(dl.attempts, 2);
  assert.equal(partner.at('/down').length, 2);
  assert.ok((await metric('hearth_dead_letters_total{target_type="webhook"}'))! >= 2);
  assert.ok((await metric('hearth_gateway_deliveries_total{target_type="webhook",outcome="dead"}'))! >= 2);
});

test('a target gets at most its concurrency in flight', async () => {
  partner.delayMs.set('/slow', 100);
  const r = await route('slow', { type: 'webhook', url: `${partner.url}/slow`, concurrency: 2 });
  for (let i = 0; i < 8; i++) await deliver(r);
  await eventually(() => partner.at('/slow').length === 8 || undefined, 'all 8 deliveries');
  assert.equal(partner.inFlight.get('/slow')!.max, 2);
});

test('the circuit breaker opens after repeated failures and stops calling the target', async () => {
  partner.behaviour.set('/broken', () => 503);
  const r = await route('broken', { type: 'webhook', url: `${partner.url}/broken`, concurrency: 5, retries: 20 });
  assert.equal(await metric('hearth_circuit_breaker_state{target="broken#0"}'), 0);
  for (let i = 0; i < 8; i++) await deliver(r);
  await eventually(async () => (await metric('hearth_circuit_breaker_state{target="broken#0"}')) === 2 || undefined, 'the breaker to open');
  await sleep(200);
  const calls = partner.at('/broken').length;
  assert.ok(calls >= 5 && calls <= 8, `five failures in a row open it (${calls} calls; jobs already started when it opened may still call)`);
  await sleep(1300);
  // The other jobs, and the retries (due after 0.25–0.5 s), were held back without a call.
  assert.equal(partner.at('/broken').length, calls);
  assert.ok((await metric('hearth_outbound_requests_total{target="broken#0",outcome="rejected"}'))! >= 3);
  assert.equal((await p.api('GET', `/api/v1/dead-letters?routeId=${r.id}`)).body.items.length, 0, 'held back jobs are not spent attempts');
  await unroute(r);
});

test('a NATS target gets the message as JSON on its subject, with the lane in a header', async () => {
  const seen: Array<{ data: unknown; headers: Record<string, string> }> = [];
  const unsub = p.hearth.bus.subscribe(foreignSubject('partner.acme.in'), (m) => void seen.push({ data: m.data, headers: { ...m.headers } }));
  try {
    const r = await route('to-nats', { type: 'nats', subject: 'partner.acme.in' });
    const d = await deliver(r, envelope(), { lane: 'gray' });
    const [m] = await eventually(() => (seen.length ? seen : undefined), 'the NATS message');
    assert.deepEqual(m.data, JSON.parse(d.body));
    assert.equal(m.headers['x-hearth-lane'], 'gray');
    assert.equal(m.headers['x-hearth-message-id'], d.envelope.id);
  } finally {
    unsub();
  }
});

test('an AMQP target publishes to a real RabbitMQ exchange, confirmed by the broker', async (t) => {
  let rabbit: Awaited<ReturnType<typeof startRabbit>>;
  try {
    rabbit = await startRabbit();
  } catch (err) {
    if (/not installed|is missing/.test((err as Error).message)) return t.skip((err as Error).message);
    throw err;
  }
  const conn = await connect(rabbit.url);
  try {
    const ch = await conn.createChannel();
    await ch.assertExchange('partner.events', 'topic', { durable: false });
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, 'partner.events', 'hearth.#');
    const r = await route('to-amqp', { type: 'amqp', url: rabbit.url, exchange: 'partner.events' });
    const d = await deliver(r, envelope(), { lane: 'gray' });
    const msg = await eventually(async () => (await ch.get(queue, { noAck: true })) || undefined, 'the message in the bound queue');
    assert.equal(msg.content.toString(), d.body);
    assert.equal(msg.fields.routingKey, 'hearth.events');
    assert.equal(msg.properties.contentType, 'application/json');
    assert.equal(msg.properties.messageId, d.envelope.id);
    assert.equal(msg.properties.headers?.['x-hearth-lane'], 'gray');
    await unroute(r);
  } finally {
    await conn.close().catch(() => undefined);
    await rabbit.stop();
  }
});
