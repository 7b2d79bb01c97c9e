import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics, sqlOp } from './metrics.ts';
import { METRIC_NAMES, METRIC_TYPES } from './metric-names.ts';

/** The value of one series in a Prometheus text scrape, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Metric name → type, from the `# TYPE` lines of a scrape. */
function declared(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1], m[2]);
  return out;
}

const isDefault = (name: string) => /^hearth_(process|nodejs)_/.test(name);

describe('metrics', () => {
  test('the scrape declares exactly the metrics of metric-names.ts with their types, besides the process and Node.js defaults', async () => {
    const types = declared(await new Metrics().text());
    const own = [...types.keys()].filter((n) => !isDefault(n)).sort();
    assert.deepEqual(own, [...METRIC_NAMES].sort());
    for (const name of METRIC_NAMES) assert.equal(types.get(name), METRIC_TYPES[name], name);
    for (const name of [
      'hearth_nodejs_eventloop_lag_seconds',
      'hearth_process_cpu_user_seconds_total',
      'hearth_process_resident_memory_bytes',
      'hearth_nodejs_heap_size_used_bytes',
    ]) {
      assert.ok(types.has(name), `default metric ${name}`);
    }
    assert.ok(
      [...types.keys()].every((n) => n.startsWith('hearth_')),
      'everything is prefixed',
    );
  });

  test('seriesNames lists every series a scrape can hold, histogram series included', async () => {
    const m = new Metrics();
    const names = new Set(m.seriesNames());
    for (const name of METRIC_NAMES) {
      if (METRIC_TYPES[name] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) assert.ok(names.has(name + s), name + s);
      else assert.ok(names.has(name), name);
    }
    assert.ok(names.has('hearth_nodejs_eventloop_lag_seconds'));
    m.observeHttp('GET', '/healthz', 200, 1);
    m.commandFinished('ok', 5);
    const scraped = new Set(
      (await m.text())
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => /^[^{ ]+/.exec(l)![0]),
    );
    for (const s of scraped) assert.ok(names.has(s), `${s} is in seriesNames`);
  });

  test('device, presence and connection counters carry their label values', async () => {
    const m = new Metrics();
    m.messageIn('properties');
    m.messageIn('properties');
    m.messageIn('result');
    m.messageOut('commands');
    m.messageRejected('E_BAD_JSON');
    m.messageRejected('E_MODEL_MISMATCH');
    m.messageRejected('E_MODEL_MISMATCH');
    m.presenceChanged(true, 'connect');
    m.presenceChanged(false, 'keepalive-timeout');
    m.connectionRefused('admission');
    m.historyPartitionsDropped(3);
    const text = await m.text();
    assert.equal(sample(text, 'hearth_device_messages_total{direction="in",kind="properties"}'), 2);
    assert.equal(sample(text, 'hearth_device_messages_total{direction="in",kind="result"}'), 1);
    assert.equal(sample(text, 'hearth_device_messages_total{direction="out",kind="commands"}'), 1);
    assert.equal(sample(text, 'hearth_device_messages_rejected_total{code="E_BAD_JSON"}'), 1);
    assert.equal(sample(text, 'hearth_device_messages_rejected_total{code="E_MODEL_MISMATCH"}'), 2);
    assert.equal(sample(text, 'hearth_presence_changes_total{online="true",reason="connect"}'), 1);
    assert.equal(sample(text, 'hearth_presence_changes_total{online="false",reason="keepalive-timeout"}'), 1);
    assert.equal(sample(text, 'hearth_connections_refused_total{reason="admission"}'), 1);
    assert.equal(sample(text, 'hearth_history_partitions_dropped_total'), 3);
    assert.equal(sample(text, 'hearth_connections_refused_total{reason="auth"}'), undefined, 'no series before the first observation');
  });

  test('histograms: cumulative buckets in seconds, sum and count', async () => {
    const m = new Metrics();
    m.commandFinished('timeout', 2500);
    m.commandFinished('ok', 3);
    m.commandFinished('ok', 40);
    m.observeHttp('GET', '/api/v1/devices/:id', 404, 12);
    m.observeHttp('POST', '/api/v1/devices/:id/commands', 201, 3);
    m.observeHttp('POST', '/api/v1/devices/:id/commands', 503, 3);
    m.ingestLag(Date.now() - 20);
    m.ingestLag(Date.now() + 1000); // another node's clock ahead: no negative lag
    const text = await m.text();
    const cmd = (le: string, outcome = 'ok') => sample(text, `hearth_command_duration_seconds_bucket{outcome="${outcome}",le="${le}"}`);
    assert.equal(cmd('0.001'), 0);
    assert.equal(cmd('0.005'), 1);
    assert.equal(cmd('0.05'), 2);
    assert.equal(cmd('+Inf'), 2);
    assert.equal(sample(text, 'hearth_command_duration_seconds_count{outcome="ok"}'), 2);
    assert.ok(Math.abs(sample(text, 'hearth_command_duration_seconds_sum{outcome="ok"}')! - 0.043) < 1e-9);
    assert.equal(cmd('1', 'timeout'), 0);
    assert.equal(cmd('2.5', 'timeout'), 1);
    assert.equal(sample(text, 'hearth_http_request_duration_seconds_count{method="GET",route="/api/v1/devices/:id",status="4xx"}'), 1);
    assert.equal(sample(text, 'hearth_http_request_duration_seconds_count{method="POST",route="/api/v1/devices/:id/commands",status="2xx"}'), 1);
    assert.equal(sample(text, 'hearth_http_request_duration_seconds_count{method="POST",route="/api/v1/devices/:id/commands",status="5xx"}'), 1);
    assert.equal(sample(text, 'hearth_ingest_lag_seconds_count'), 2);
    assert.equal(sample(text, 'hearth_ingest_lag_seconds_bucket{le="0.001"}'), 1, 'the future one counts as no lag');
    assert.equal(sample(text, 'hearth_ingest_lag_seconds_bucket{le="0.01"}'), 1);
    assert.equal(sample(text, 'hearth_ingest_lag_seconds_bucket{le="0.1"}'), 2);
  });

  test('database statements are told apart by their first keyword', async () => {
    assert.equal(sqlOp('select * from devices'), 'select');
    assert.equal(sqlOp('  \n\tSELECT 1'), 'select');
    assert.equal(sqlOp('insert into history values (?)'), 'insert');
    assert.equal(sqlOp('Update shadows set x = 1'), 'update');
    assert.equal(sqlOp('delete from sessions'), 'delete');
    assert.equal(sqlOp('with x as (select 1) select * from x'), 'other');
    assert.equal(sqlOp('sel'), 'other');
    assert.equal(sqlOp(''), 'other');
    const m = new Metrics();
    m.observeQuery(0.3, 'select 1');
    m.observeQuery(2, 'insert into t values (1)');
    m.observeQuery(2, 'begin');
    const text = await m.text();
    assert.equal(sample(text, 'hearth_db_query_duration_seconds_bucket{op="select",le="0.0005"}'), 1);
    assert.equal(sample(text, 'hearth_db_query_duration_seconds_count{op="insert"}'), 1);
    assert.equal(sample(text, 'hearth_db_query_duration_seconds_count{op="other"}'), 1);
  });

  test('gauges: read from their sources at scrape time, node info replaced, breakers by target', async () => {
    const m = new Metrics();
    let connected = 3;
    m.setConnectedSource(() => connected);
    m.setStreamClientsSource(() => 2);
    m.setShardsOwned(8);
    let ready = true;
    m.setReadySource(() => ready);
    m.setNodeInfo({ version: '0.1.0', node: 'n1', roles: 'all' });
    m.setNodeInfo({ version: '0.2.0', node: 'n1', roles: 'gateway,api' });
    m.breakerState('slack', 'open');
    m.breakerState('webhooks', 'half-open');
    let text = await m.text();
    assert.equal(sample(text, 'hearth_devices_connected'), 3);
    assert.equal(sample(text, 'hearth_stream_clients'), 2);
    assert.equal(sample(text, 'hearth_shards_owned'), 8);
    assert.equal(sample(text, 'hearth_node_ready'), 1);
    assert.equal(sample(text, 'hearth_node_info{version="0.2.0",node="n1",roles="gateway,api"}'), 1);
    assert.doesNotMatch(text, /hearth_node_info\{version="0\.1\.0"/);
    assert.equal(sample(text, 'hearth_circuit_breaker_state{target="slack"}'), 2);
    assert.equal(sample(text, 'hearth_circuit_breaker_state{target="webhooks"}'), 1);
    connected = 5;
    ready = false;
    text = await m.text();
    assert.equal(sample(text, 'hearth_devices_connected'), 5);
    assert.equal(sample(text, 'hearth_node_ready'), 0);
  });

  test('each instance counts on its own', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.messageIn('events');
    assert.equal(sample(await a.text(), 'hearth_device_messages_total{direction="in",kind="events"}'), 1);
    assert.equal(sample(await b.text(), 'hearth_device_messages_total{direction="in",kind="events"}'), undefined);
  });

  test('the content type is the Prometheus text format', () => {
    assert.match(new Metrics().contentType, /^text\/plain; version=0\.0\.4/);
  });
});
