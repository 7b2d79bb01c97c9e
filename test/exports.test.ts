import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import parquet from '@dsnp/parquetjs';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';

/**
 * Fleet export jobs (docs/telemetry.md#fleet-export-jobs) through real MQTT and HTTP: points with
 * past times from several devices, exported as NDJSON, CSV and Parquet, each read back and
 * compared with what was sent; a job that survives a restart; expiry; the 400s.
 */
let p: Platform;
const PRODUCT = 'export_meter';
const DAY = 86_400_000;
const ENV = { HEARTH_EXPORTS_POLL_MS: '100' };
type Sent = { deviceId: string; ts: number; property: string; value: unknown };
const sent: Sent[] = [];
const base = Math.floor((Date.now() - 3 * DAY) / DAY) * DAY;

before(async () => {
  p = await startPlatform({ env: ENV });
  const model = {
    properties: [
      { id: 'power', type: 'number', access: 'r', history: true },
      { id: 'on', type: 'boolean', access: 'rw', history: true },
      { id: 'label', type: 'string', access: 'rw', history: true },
      { id: 'noHistory', type: 'number', access: 'r' },
    ],
    events: [],
    actions: [],
  };
  const r = await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'Export meter', category: 'sensor', model });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  for (let i = 0; i < 3; i++) {
    const d = await p.provision(PRODUCT);
    const c = await p.connect(d.id, d.secret);
    for (let k = 0; k < 40; k++) {
      const ts = base + k * 3_600_000 + i * 1000;
      const report: Record<string, unknown> = { ts, power: k * 1.5 + i };
      if (k % 4 === 0) report.on = k % 8 === 0;
      if (k % 10 === 0) report.label = `say "hi", ${k}`;
      for (const [property, value] of Object.entries(report)) if (property !== 'ts') sent.push({ deviceId: d.id, ts, property, value });
      await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify(report), { qos: 1 });
    }
    await c.endAsync();
    const n = sent.filter((s) => s.deviceId === d.id && s.property === 'power').length;
    await eventually(
      async () => (await p.api('GET', `/api/v1/devices/${d.id}/history?property=power&from=${base}&to=${base + 2 * DAY}&limit=1000`)).body.points?.length === n,
      10_000,
      'points stored',
    );
  }
});
after(async () => {
  await p.stop();
});

const key = (s: { deviceId: string; ts: number | string; property: string; value: unknown }) =>
  JSON.stringify([s.deviceId, new Date(s.ts).getTime(), s.property, s.value]);
const sentKeys = (props?: string[]) =>
  sent
    .filter((s) => !props || props.includes(s.property))
    .map(key)
    .sort();

async function finished(id: string, platform = p): Promise<any> {
  return eventually(
    async () => {
      const r = await platform.api('GET', `/api/v1/exports/${id}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.notEqual(r.body.status, 'failed', r.body.error);
      return r.body.status === 'done' ? r.body : undefined;
    },
    15_000,
    `export ${id} done`,
  );
}

async function download(url: string, platform = p): Promise<Response> {
  const res = await fetch(platform.httpUrl + url, { headers: { authorization: `Bearer ${platform.token}` } });
  assert.equal(res.status, 200);
  return res;
}

function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(field), (field = '');
    else if (ch === '\n') row.push(field), rows.push(row), (row = []), (field = '');
    else field += ch;
  }
  return rows;
}

test('an NDJSON export of the whole product round-trips, with progress and a download URL', async () => {
  const r = await p.api('POST', '/api/v1/exports', { product: PRODUCT, from: new Date(base).toISOString(), to: String(base + 2 * DAY), format: 'ndjson' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  assert.deepEqual(r.body.properties, ['power', 'on', 'label']);
  const job = await finished(r.body.id);
  assert.deepEqual(job.progress.devices, 3);
  assert.deepEqual(job.progress.devicesDone, 3);
  assert.equal(job.progress.rows, sent.length);
  assert.equal(job.downloadUrl, `/api/v1/exports/${job.id}/download`);
  assert.ok(job.expiresAt > job.finishedAt);
  const res = await download(job.downloadUrl);
  assert.match(res.headers.get('content-type') ?? '', /application\/x-ndjson/);
  const text = await res.text();
  assert.equal(Number(res.headers.get('content-length')), Buffer.byteLength(text));
  assert.equal(job.progress.bytes, Buffer.byteLength(text));
  const got = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(got.map(key).sort(), sentKeys());
  const list = await p.api('GET', '/api/v1/exports?limit=10');
  assert.ok(list.body.items.some((x: { id: string }) => x.id === job.id));
});

test('a CSV export of some properties quotes what needs it and round-trips', async () => {
  const r = await p.api('POST', '/api/v1/exports', { product: PRODUCT, properties: ['label', 'on'], from: String(base), format: 'csv' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const job = await finished(r.body.id);
  const res = await download(job.downloadUrl);
  assert.match(res.headers.get('content-type') ?? '', /text\/csv/);
  const [header, ...rows] = parseCsv(await res.text());
  assert.deepEqual(header, ['ts', 'deviceId', 'property', 'value']);
  const got = rows.map(([ts, deviceId, property, v]) => ({ ts, deviceId, property, value: property === 'on' ? v === 'true' : v }));
  assert.deepEqual(got.map(key).sort(), sentKeys(['label', 'on']));
});

test('a Parquet export reads back with a Parquet reader', async () => {
  const r = await p.api('POST', '/api/v1/exports', { product: PRODUCT, from: String(base), to: String(base + 2 * DAY), format: 'parquet' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const job = await finished(r.body.id);
  const res = await download(job.downloadUrl);
  assert.equal(res.headers.get('content-type'), 'application/vnd.apache.parquet');
  const file = join(mkdtempSync(join(tmpdir(), 'hearth-parquet-')), 'x.parquet');
  writeFileSync(file, Buffer.from(await res.arrayBuffer()));
  const reader = await parquet.ParquetReader.openFile(file);
  const got: Sent[] = [];
  const cursor = reader.getCursor();
  for (let row: any = await cursor.next(); row; row = await cursor.next())
    got.push({ deviceId: row.deviceId, ts: (row.ts as Date).getTime(), property: row.property, value: row.num ?? row.bool ?? row.text });
  await reader.close();
  assert.deepEqual(got.map(key).sort(), sentKeys());
});

test('a job survives a restart, and finished jobs and their files go after their time', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-export-restart-'));
  let q = await startPlatform({ dataDir, env: { ...ENV, HEARTH_EXPORTS_POLL_MS: '600000' } });
  try {
    const product = await q.api('POST', '/api/v1/products', {
      key: 'restart_meter',
      name: 'Restart meter',
      category: 'sensor',
      model: { properties: [{ id: 'power', type: 'number', access: 'r', history: true }], events: [], actions: [] },
    });
    assert.equal(product.status, 201);
    const d = await q.provision('restart_meter');
    const c = await q.connect(d.id, d.secret);
    for (let k = 0; k < 20; k++) await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ ts: base + k * 60_000, power: k }), { qos: 1 });
    await c.endAsync();
    await eventually(
      async () => (await q.api('GET', `/api/v1/devices/${d.id}/history?property=power&from=${base}&to=${base + DAY}`)).body.points?.length === 20,
      10_000,
      'points stored',
    );
    const r = await q.api('POST', '/api/v1/exports', { product: 'restart_meter', from: String(base), format: 'ndjson' });
    assert.equal(r.status, 202);
    // Stopped right away: whatever state the job was in, the next start finishes it.
    await q.stop(false);
    q = await startPlatform({ dataDir, env: ENV });
    const job = await finished(r.body.id, q);
    assert.equal(job.progress.rows, 20);
    const lines = (await (await download(job.downloadUrl, q)).text()).trim().split('\n');
    assert.deepEqual(
      lines.map((l) => JSON.parse(l).value),
      Array.from({ length: 20 }, (_, k) => k),
    );
    const dir = join(dataDir, 'exports');
    assert.deepEqual(readdirSync(dir), [`${job.id}.ndjson`]);
    // A node that died while writing it (its claim runs out in a second): another run writes it again.
    rmSync(join(dir, `${job.id}.ndjson`));
    await q.hearth.db
      .updateTable('export_jobs')
      .set({ status: 'running', owner: 'node-that-died', lease_until: Date.now() + 1000, rows: 3, finished_at: null })
      .where('id', '=', job.id)
      .execute();
    q.hearth.services.exports.poke();
    assert.equal((await q.api('GET', `/api/v1/exports/${job.id}`)).body.status, 'running');
    const again = await finished(job.id, q);
    assert.equal(again.progress.rows, 20);
    assert.deepEqual(readdirSync(dir), [`${job.id}.ndjson`]);
    // Its time has come (as it would after HEARTH_EXPORTS_TTL): the job and the file go.
    await q.hearth.db
      .updateTable('export_jobs')
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', job.id)
      .execute();
    await eventually(async () => (await q.api('GET', `/api/v1/exports/${job.id}`)).status === 404, 5000, 'job expired');
    assert.equal(existsSync(join(dir, `${job.id}.ndjson`)), false);
  } finally {
    await q.stop();
  }
});

test('bad export requests get a 400 naming the problem', async () => {
  const now = Date.now();
  const cases: Array<[Record<string, unknown>, number, RegExp]> = [
    [{ product: PRODUCT, properties: ['nope'], from: String(base) }, 400, /no property "nope"/],
    [{ product: PRODUCT, properties: ['noHistory'], from: String(base) }, 400, /keeps no history/],
    [{ product: PRODUCT, from: String(now - 400 * DAY), to: String(now) }, 400, /at most 366 days/],
    [{ product: PRODUCT, from: String(now), to: String(now - DAY) }, 400, /is after to/],
    [{ product: PRODUCT, from: 'yesterday' }, 400, /ISO 8601/],
    [{ product: PRODUCT, from: String(base), format: 'xlsx' }, 400, /format/],
    [{ product: PRODUCT }, 400, /from/],
    [{ product: 'nope', from: String(base) }, 404, /nope/],
  ];
  for (const [body, status, message] of cases) {
    const r = await p.api('POST', '/api/v1/exports', body);
    assert.equal(r.status, status, JSON.stringify(body));
    assert.match(`${r.body.detail} ${r.body.field ?? ''}`, message, JSON.stringify(body));
  }
  assert.equal((await p.api('GET', '/api/v1/exports/exp_nothing')).status, 404);
  assert.equal((await p.api('GET', '/api/v1/exports/exp_nothing/download')).status, 404);
});
