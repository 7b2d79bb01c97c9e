import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryBus } from '../bus/memory-bus.ts';
import { createLogger } from '../logger.ts';
import { initTracing, withSpan, startSpan, runWithSpan, injectTrace, extractTrace, currentTraceId, tracingEnabled, SpanKind, type Tracing } from './tracing.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  status?: { code?: number };
}

/** A stand-in OTLP/HTTP collector: keeps the spans POSTed to /v1/traces (JSON). */
const spans: OtlpSpan[] = [];
const requests: Array<{ path: string; contentType: string | undefined }> = [];
const collector = createServer((req, res) => {
  let body = '';
  req
    .setEncoding('utf8')
    .on('data', (c: string) => (body += c))
    .on('end', () => {
      requests.push({ path: req.url ?? '', contentType: req.headers['content-type'] });
      const doc = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
      for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
});

/** A log destination that keeps the parsed records. */
function logSink() {
  const records: Array<Record<string, unknown>> = [];
  return { records, log: createLogger('info', {}, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) }) };
}

describe('tracing', () => {
  let tracing: Tracing;
  before(async () => {
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    await tracing?.shutdown();
    collector.closeAllConnections();
    await new Promise((resolve) => collector.close(resolve));
  });

  test('off without an endpoint: helpers are no-ops and logs carry no trace fields', async () => {
    const off = await initTracing({ serviceName: 'hearth', version: '0', nodeName: 'n1' });
    assert.equal(tracingEnabled(), false);
    const { records, log } = logSink();
    const r = withSpan('work', { a: 1 }, (span) => {
      assert.equal(span.isRecording(), false);
      log.info('inside');
      return currentTraceId();
    });
    assert.equal(r, undefined);
    assert.deepEqual(injectTrace({}), {});
    assert.equal(startSpan('x').isRecording(), false);
    assert.equal(records[0].trace_id, undefined);
    assert.equal(records[0].msg, 'inside');
    await off.shutdown();
  });

  test('a trace crosses the bus in the envelope; spans reach the collector as OTLP JSON; logs carry the ids', async () => {
    tracing = await initTracing({
      serviceName: 'hearth',
      version: '0.1.0',
      nodeName: 'n1',
      otlpEndpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}/`,
    });
    assert.equal(tracingEnabled(), true);
    const { records, log } = logSink();
    const bus = new MemoryBus(createLogger('silent'));
    const handled = new Promise<{ traceId?: string }>((resolve) => {
      bus.subscribe<{ payload: number; trace: Record<string, string> }>('device.d1.up.properties', (msg) =>
        withSpan(
          'ingest properties',
          { 'hearth.device': 'd1' },
          async () => {
            await new Promise((r) => setTimeout(r, 5));
            log.info('handled');
            resolve({ traceId: currentTraceId() });
          },
          msg.data.trace,
          SpanKind.CONSUMER,
        ),
      );
    });

    const gatewaySpan = startSpan('mqtt publish', { 'hearth.device': 'd1' }, undefined, SpanKind.PRODUCER);
    const envelope = { payload: 1, trace: injectTrace({}, gatewaySpan) };
    assert.match(envelope.trace.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    runWithSpan(gatewaySpan, () => log.info('received'));
    bus.publish('device.d1.up.properties', envelope);
    gatewaySpan.end();
    const { traceId } = await handled;
    const gatewayTrace = gatewaySpan.spanContext().traceId;
    assert.equal(traceId, gatewayTrace, 'the handler continues the gateway trace');
    assert.equal(records.find((r) => r.msg === 'received')?.trace_id, gatewayTrace);
    assert.equal(records.find((r) => r.msg === 'handled')?.trace_id, gatewayTrace);
    assert.equal(records.find((r) => r.msg === 'received')?.span_id, gatewaySpan.spanContext().spanId);

    // extractTrace: continue a trace without a span of one's own
    const { context } = await import('@opentelemetry/api');
    assert.equal(
      context.with(extractTrace(envelope.trace), () => currentTraceId()),
      gatewayTrace,
    );
    assert.equal(
      context.with(extractTrace({}), () => currentTraceId()),
      undefined,
    );

    // a failure marks the span and is passed on
    assert.throws(
      () =>
        withSpan('broken', undefined, () => {
          throw new Error('boom');
        }),
      /boom/,
    );

    await tracing.shutdown(); // flushes
    assert.equal(tracingEnabled(), false);
    assert.ok(requests.length > 0 && requests.every((r) => r.path === '/v1/traces' && r.contentType === 'application/json'), JSON.stringify(requests));
    const gateway = spans.find((s) => s.name === 'mqtt publish');
    const ingest = spans.find((s) => s.name === 'ingest properties');
    assert.ok(gateway && ingest, JSON.stringify(spans.map((s) => s.name)));
    assert.equal(gateway.traceId, gatewayTrace, 'trace ids are hex');
    assert.equal(ingest.traceId, gatewayTrace);
    assert.equal(ingest.parentSpanId, gateway.spanId);
    assert.equal(ingest.kind, 5, 'CONSUMER (OTLP numbering)');
    assert.equal(spans.find((s) => s.name === 'broken')?.status?.code, 2, 'ERROR');
    await bus.close();
  });
});
