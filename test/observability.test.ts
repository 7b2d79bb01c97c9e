import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { METRIC_NAMES } from '../src/core/observability/metric-names.ts';
import { freePort } from './helpers/ports.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'hearth.js');
const ADMIN = { email: 'operator@obs.test', password: 'operator-password-1' };

interface OtlpAttribute {
  key: string;
  value: { stringValue?: string; intValue?: string | number };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: OtlpAttribute[];
}
interface Collected {
  span: OtlpSpan;
  resource: OtlpAttribute[];
}

/** A stand-in OTLP/HTTP collector: the exporter POSTs JSON (`application/json`) to /v1/traces. */
const collected: Collected[] = [];
const exports: Array<{ path: string; contentType: string | undefined }> = [];
const collector = createHttpServer((req, res) => {
  let body = '';
  req
    .setEncoding('utf8')
    .on('data', (c: string) => (body += c))
    .on('end', () => {
      exports.push({ path: req.url ?? '', contentType: req.headers['content-type'] });
      const doc = JSON.parse(body) as { resourceSpans: Array<{ resource: { attributes: OtlpAttribute[] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
      for (const rs of doc.resourceSpans)
        for (const ss of rs.scopeSpans) for (const span of ss.spans) collected.push({ span, resource: rs.resource.attributes });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
});

const attr = (attrs: OtlpAttribute[], key: string) => {
  const v = attrs.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue !== undefined ? Number(v.intValue) : undefined);
};

/** The value of one series in a Prometheus text scrape, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('observability of a running server', () => {
  let child: ChildProcess;
  let stdout = '';
  let dataDir: string;
  let base: string;
  let httpPort = 0;
  let mqttPort = 0;
  let exited: Promise<number | null>;

  before(async () => {
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    dataDir = mkdtempSync(join(tmpdir(), 'hearth-obs-'));
    [httpPort, mqttPort] = [await freePort(), await freePort()];
    base = `http://127.0.0.1:${httpPort}`;
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HEARTH_')) env[k] = v;
    child = spawn(process.execPath, [BIN, 'start'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...env,
        HEARTH_HTTP_PORT: String(httpPort),
        HEARTH_MQTT_PORT: String(mqttPort),
        HEARTH_HTTP_HOST: '127.0.0.1',
        HEARTH_MQTT_HOST: '127.0.0.1',
        HEARTH_DATA_DIR: dataDir,
        HEARTH_DEMO: '0',
        HEARTH_ADMIN_EMAIL: ADMIN.email,
        HEARTH_ADMIN_PASSWORD: ADMIN.password,
        HEARTH_NODE_NAME: 'obs-node-1',
        HEARTH_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`,
      },
    });
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const end = Date.now() + 20_000;
    while (!stdout.includes('Hearth is running.')) {
      if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}):\n${stdout}`);
      if (Date.now() > end) throw new Error(`the server did not start:\n${stdout}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    collector.closeAllConnections();
    await new Promise((resolve) => collector.close(resolve));
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function login(headers: Record<string, string> = {}): Promise<string> {
    const res = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(ADMIN),
    });
    assert.equal(res.status, 200);
    return ((await res.json()) as { token: string }).token;
  }

  test("/metrics serves the node's metrics, unauthenticated and outside the API document", async () => {
    const token = await login();
    const missing = await fetch(`${base}/api/v1/devices/d_doesnotexist`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(missing.status, 404);

    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of METRIC_NAMES) assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exposed`);
    assert.match(text, /^hearth_nodejs_eventloop_lag_seconds /m);
    assert.equal(sample(text, 'hearth_http_request_duration_seconds_count{method="POST",route="/api/v1/auth/login",status="2xx"}'), 1);
    assert.equal(
      sample(text, 'hearth_http_request_duration_seconds_count{method="GET",route="/api/v1/devices/:id",status="4xx"}'),
      1,
      'the route pattern, not the URL',
    );
    assert.equal(sample(text, 'hearth_node_ready'), 1);
    assert.match(text, /^hearth_node_info\{version="[^"]+",node="obs-node-1",roles="all"\} 1$/m);
    assert.ok((sample(text, 'hearth_db_query_duration_seconds_count{op="select"}') ?? 0) > 0, 'store queries are timed');
    const docs = (await (await fetch(`${base}/docs/json`)).json()) as { paths: Record<string, unknown> };
    assert.ok(docs.paths['/healthz'] && !docs.paths['/metrics'], '/metrics stays out of the API document');
  });

  test('a device message carrying a traceparent in its JSON continues that trace through MQTT ingest, the bus and its handlers', async () => {
    const token = await login();
    const res = await fetch(`${base}/api/v1/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ product: 'light', name: 'traced light' }),
    });
    const dev = (await res.json()) as { id: string; secret: string };
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0 });
    const traceId = randomBytes(16).toString('hex');
    const deviceSpanId = randomBytes(8).toString('hex');
    try {
      await c.publishAsync(`devices/${dev.id}/properties`, JSON.stringify({ brightness: 33, traceparent: `00-${traceId}-${deviceSpanId}-01` }), { qos: 1 });
      const end = Date.now() + 15_000;
      for (;;) {
        const d = (await (await fetch(`${base}/api/v1/devices/${dev.id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
          shadow: { reported: Record<string, unknown> };
        };
        if (d.shadow.reported.brightness === 33) {
          assert.equal(d.shadow.reported.traceparent, undefined, 'the trace context is not a property');
          break;
        }
        if (Date.now() > end) throw new Error('the report was not applied (rejected because of traceparent?)');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await c.endAsync();
    }
    // The batch exporter sends every few seconds.
    const end = Date.now() + 15_000;
    let spans = collected.filter((x) => x.span.traceId === traceId);
    while (!(spans.some((x) => x.span.name.startsWith('mqtt receive')) && spans.some((x) => x.span.name.startsWith('bus ingest-')))) {
      if (Date.now() > end) throw new Error(`spans of trace ${traceId}: ${JSON.stringify(spans.map((x) => x.span.name))}`);
      await new Promise((r) => setTimeout(r, 100));
      spans = collected.filter((x) => x.span.traceId === traceId);
    }
    const receive = spans.find((x) => x.span.name.startsWith('mqtt receive'))!;
    assert.equal(receive.span.parentSpanId, deviceSpanId, "the gateway span is a child of the device's span");
    const ingest = spans.find((x) => x.span.name.startsWith('bus ingest-'))!;
    assert.equal(ingest.span.parentSpanId, receive.span.spanId, 'the ingest handler span is a child of the gateway span');
  });

  test("a request continues the caller's trace: its span reaches the collector (at the latest on SIGTERM) and its log line carries the trace id", async () => {
    const traceId = randomBytes(16).toString('hex');
    const callerSpanId = randomBytes(8).toString('hex');
    const token = await login({ traceparent: `00-${traceId}-${callerSpanId}-01` });
    const missing = await fetch(`${base}/api/v1/devices/d_untraced`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(missing.status, 404);

    child.kill('SIGTERM');
    assert.equal(await exited, 0, stdout.slice(-2000));
    assert.ok(exports.length > 0 && exports.every((e) => e.path === '/v1/traces' && e.contentType === 'application/json'), JSON.stringify(exports));
    const server = collected.find((c) => c.span.traceId === traceId);
    assert.ok(server, `a span of trace ${traceId} arrived; got ${JSON.stringify(collected.map((c) => [c.span.name, c.span.traceId]))}`);
    assert.equal(server.span.name, 'POST /api/v1/auth/login');
    assert.equal(server.span.parentSpanId, callerSpanId, "child of the caller's span");
    assert.equal(server.span.kind, 2, 'SERVER');
    assert.equal(attr(server.span.attributes, 'http.route'), '/api/v1/auth/login');
    assert.equal(attr(server.span.attributes, 'http.response.status_code'), 200);
    assert.equal(attr(server.resource, 'service.name'), 'hearth');
    assert.equal(attr(server.resource, 'service.instance.id'), 'obs-node-1');
    const untraced = collected.find((c) => attr(c.span.attributes, 'url.path') === '/api/v1/devices/d_untraced');
    assert.ok(untraced, 'the request without traceparent has a span too');
    assert.equal(untraced.span.name, 'GET /api/v1/devices/:id');
    assert.ok(untraced.span.traceId !== traceId && untraced.span.parentSpanId === undefined, 'in a trace of its own');

    const logs = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const line = logs.find((l) => l.msg === 'request' && l.trace_id === traceId);
    assert.ok(
      line,
      `the request is logged with its trace id:\n${logs
        .filter((l) => l.msg === 'request')
        .map((l) => JSON.stringify(l))
        .join('\n')}`,
    );
    assert.equal(line.route, '/api/v1/auth/login');
    assert.equal(line.span_id, server.span.spanId);
    assert.equal(line.status, 200);
    assert.ok(typeof line.reqId === 'string' && line.reqId !== '', 'with the request id');
    assert.equal(logs.find((l) => l.msg === 'request' && l.path === '/api/v1/devices/d_untraced')?.trace_id, untraced.span.traceId);
  });
});
