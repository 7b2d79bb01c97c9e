import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createOutbound, postJson, OutboundError } from './outbound.ts';
import { Metrics } from './observability/metrics.ts';

/** The value of one series in a Prometheus text scrape, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A real HTTP server whose behaviour each test sets; counts the requests it gets. */
let handler: Handler = (_req, res) => res.end();
let hits = 0;
const server = createServer((req, res) => {
  hits++;
  req.resume();
  req.on('end', () => handler(req, res));
});
let url = '';

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function serve(h: Handler): void {
  handler = h;
  hits = 0;
}

const reply =
  (status: number, body = '') =>
  (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  };

describe('outbound calls', () => {
  test('a failing service is retried until it answers', async () => {
    const metrics = new Metrics();
    const out = createOutbound({
      name: 'partner',
      metrics,
      timeoutMs: 1000,
      retries: 3,
      backoff: { initialMs: 5, maxMs: 20 },
      breaker: { consecutiveFailures: 10, halfOpenAfterMs: 1000 },
    });
    let n = 0;
    serve((req, res) => (++n <= 2 ? reply(503, '{"error":"busy"}')(req, res) : reply(200, '{"accepted":true}')(req, res)));
    const r = await postJson(out, url, { hello: 'world' });
    assert.deepEqual(r, { status: 200, body: { accepted: true } });
    assert.equal(hits, 3, 'two failures, then the success');
    const text = await metrics.text();
    assert.equal(sample(text, 'hearth_outbound_requests_total{target="partner",outcome="error"}'), 2);
    assert.equal(sample(text, 'hearth_outbound_requests_total{target="partner",outcome="ok"}'), 1);
    assert.equal(out.state(), 'closed');
  });

  test('429 is retried; other 4xx answers are permanent: not retried, not held against the service', async () => {
    const out = createOutbound({
      name: 'partner',
      timeoutMs: 1000,
      retries: 3,
      backoff: { initialMs: 5, maxMs: 20 },
      breaker: { consecutiveFailures: 2, halfOpenAfterMs: 1000 },
    });
    serve(reply(422, '{"error":"bad field"}'));
    for (let i = 0; i < 3; i++) {
      await assert.rejects(postJson(out, url, {}), (err: unknown) => {
        assert.ok(err instanceof OutboundError);
        assert.equal(err.reason, 'status');
        assert.equal(err.status, 422);
        assert.equal(err.retryable, false);
        // A status line only: what the remote said never reaches traces, results or error messages.
        assert.equal(err.message, 'partner answered 422 Unprocessable Entity');
        return true;
      });
    }
    assert.equal(hits, 3, 'one request per call');
    assert.equal(out.state(), 'closed', 'the service answered, so it is up');

    let n = 0;
    serve((req, res) => (++n === 1 ? reply(429)(req, res) : reply(204)(req, res)));
    assert.deepEqual(await postJson(out, url, {}), { status: 204, body: '' });
    assert.equal(hits, 2);
  });

  test('a service that keeps failing opens the circuit: calls are refused at once, then one trial call closes it', async () => {
    const metrics = new Metrics();
    const halfOpenAfterMs = 300;
    const out = createOutbound({
      name: 'flaky',
      metrics,
      timeoutMs: 1000,
      retries: 5,
      backoff: { initialMs: 1, maxMs: 5 },
      breaker: { consecutiveFailures: 3, halfOpenAfterMs },
    });
    const breakerGauge = async () => sample(await metrics.text(), 'hearth_circuit_breaker_state{target="flaky"}');
    assert.equal(await breakerGauge(), 0);
    serve(reply(500, 'down'));

    await assert.rejects(postJson(out, url, {}), (err: unknown) => err instanceof OutboundError && err.reason === 'open');
    assert.equal(hits, 3, 'the retries stop where the circuit opens');
    assert.equal(out.state(), 'open');
    assert.equal(await breakerGauge(), 2);

    const t = performance.now();
    await assert.rejects(
      postJson(out, url, {}),
      (err: unknown) => err instanceof OutboundError && err.reason === 'open' && /flaky is failing/.test(err.message),
    );
    assert.ok(performance.now() - t < 50, 'refused without waiting');
    assert.equal(hits, 3, 'refused without trying');
    assert.equal(sample(await metrics.text(), 'hearth_outbound_requests_total{target="flaky",outcome="rejected"}'), 2);

    await new Promise((r) => setTimeout(r, halfOpenAfterMs + 20));
    let release!: () => void;
    const answered = new Promise<void>((r) => (release = r));
    serve((req, res) => void answered.then(() => reply(200, '{"ok":true}')(req, res)));
    const trial = postJson(out, url, {});
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(out.state(), 'half-open', 'one trial call is on its way');
    assert.equal(await breakerGauge(), 1);
    release();
    assert.deepEqual(await trial, { status: 200, body: { ok: true } });
    assert.equal(out.state(), 'closed');
    assert.equal(await breakerGauge(), 0);
    assert.equal(hits, 1);
  });

  test('an attempt that takes too long is aborted', async () => {
    const metrics = new Metrics();
    const out = createOutbound({
      name: 'slow',
      metrics,
      timeoutMs: 100,
      retries: 1,
      backoff: { initialMs: 1, maxMs: 1 },
      breaker: { consecutiveFailures: 10, halfOpenAfterMs: 1000 },
    });
    let closedByClient = 0;
    serve((req) => req.socket.once('close', () => closedByClient++)); // never answers
    const signals: AbortSignal[] = [];
    const t = performance.now();
    await assert.rejects(
      out.execute(async (signal) => {
        signals.push(signal);
        const res = await fetch(url, { method: 'POST', body: '{}', signal });
        return res.text();
      }),
      (err: unknown) => err instanceof OutboundError && err.reason === 'timeout' && /slow did not answer within 100 ms/.test(err.message),
    );
    const took = performance.now() - t;
    assert.ok(took >= 190 && took < 1000, `two attempts of 100 ms (took ${Math.round(took)} ms)`);
    assert.equal(hits, 2);
    assert.ok(signals.length === 2 && signals.every((s) => s.aborted), 'each attempt was told to stop');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(closedByClient, 2, 'and the requests were really abandoned');
    assert.equal(sample(await metrics.text(), 'hearth_outbound_requests_total{target="slow",outcome="timeout"}'), 2);
  });
});
