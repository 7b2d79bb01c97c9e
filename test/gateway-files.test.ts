import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';

/**
 * The message gateway's file target (docs/message-gateway.md): messages of real MQTT devices,
 * routed over HTTP-configured routes, batched into NDJSON files (gzip or not) in a directory under
 * the gateway files root, rotated by size and by age; every message in exactly one closed file.
 */
let p: Platform;
const root = mkdtempSync(join(tmpdir(), 'hearth-gateway-files-'));
const PRODUCT = 'file_meter';

before(async () => {
  p = await startPlatform({ env: { HEARTH_GATEWAY_FILES_DIR: root } });
  const model = { properties: [{ id: 'power', type: 'number', access: 'r' }], events: [], actions: [] };
  assert.equal((await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'File meter', category: 'sensor', model })).status, 201);
});
after(async () => {
  await p.stop();
});

/** The documents of the closed files of a directory (a `.part` is still being written), and the names. */
function closedFiles(dir: string): { names: string[]; docs: any[]; open: string[] } {
  if (!existsSync(dir)) return { names: [], docs: [], open: [] };
  const all = readdirSync(dir).sort();
  const names = all.filter((n) => !n.endsWith('.part'));
  const docs = names.flatMap((n) => {
    const raw = readFileSync(join(dir, n));
    const text = n.endsWith('.gz') ? gunzipSync(raw).toString('utf8') : raw.toString('utf8');
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l));
  });
  return { names, docs, open: all.filter((n) => n.endsWith('.part')) };
}

test('a file target batches messages into gzip NDJSON files, rotated by size and by age', async () => {
  const r = await p.api('POST', '/api/v1/routes', {
    name: 'meters to files',
    match: { kind: 'properties', product: PRODUCT },
    targets: [
      { type: 'file', directory: 'meters', maxBytes: 2048, maxAgeMs: 1000 },
      { type: 'file', directory: 'meters-plain', gzip: false, template: { device: '{{deviceId}}', power: '{{payload.power}}' } },
    ],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const sent: Array<{ device: string; power: number }> = [];
  for (let i = 0; i < 2; i++) {
    const d = await p.provision(PRODUCT);
    const c = await p.connect(d.id, d.secret);
    for (let k = 0; k < 150; k++) {
      const power = i * 1000 + k;
      sent.push({ device: d.id, power });
      await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ power }), { qos: 1 });
    }
    await c.endAsync();
  }
  const key = (x: { device: string; power: number }) => `${x.device}:${x.power}`;
  const want = sent.map(key).sort();

  // Gzip, by size (2 KiB) and age (1 s): several closed files, then none left open.
  const gz = await eventually(
    () => {
      const f = closedFiles(join(root, 'meters'));
      return f.docs.length === sent.length && f.open.length === 0 ? f : undefined;
    },
    15_000,
    'every message in a closed gzip file',
  );
  assert.ok(gz.names.length >= 2, `rotated by size: ${gz.names.join(', ')}`);
  for (const n of gz.names) assert.match(n, /\.ndjson\.gz$/);
  assert.deepEqual(gz.docs.map((d) => key({ device: d.deviceId, power: d.payload.power })).sort(), want);
  assert.ok(gz.docs.every((d) => d.kind === 'properties' && d.product === PRODUCT));

  // Plain NDJSON with the target's template; the file stays open (5 minutes) until the route goes.
  await eventually(
    () => {
      const dir = join(root, 'meters-plain');
      return existsSync(dir) && readdirSync(dir).some((n) => n.endsWith('.ndjson.part')) ? true : undefined;
    },
    5000,
    'a plain file being written',
  );
  assert.equal((await p.api('DELETE', `/api/v1/routes/${r.body.id}`)).status, 200);
  const plain = await eventually(
    () => {
      const f = closedFiles(join(root, 'meters-plain'));
      return f.open.length === 0 && f.docs.length === sent.length ? f : undefined;
    },
    5000,
    'the plain file closed when its route went',
  );
  for (const n of plain.names) assert.match(n, /\.ndjson$/);
  assert.deepEqual(plain.docs.map(key).sort(), want);
});

test('a file target names a directory under the root, nothing else', async () => {
  for (const directory of ['../etc', '/tmp/x', 'a/b', '']) {
    const r = await p.api('POST', '/api/v1/routes', { name: 'escape', match: {}, targets: [{ type: 'file', directory }] });
    assert.equal(r.status, 400, directory);
    assert.match(JSON.stringify(r.body), /directory/);
  }
  const big = await p.api('POST', '/api/v1/routes', { name: 'huge', match: {}, targets: [{ type: 'file', directory: 'x', maxBytes: 10 }] });
  assert.equal(big.status, 400);
  assert.match(JSON.stringify(big.body), /maxBytes/);
});

test('a file a node left open when it stopped without closing it is closed when its target starts again there', async () => {
  const r = await p.api('POST', '/api/v1/routes', {
    name: 'after a crash',
    match: { kind: 'properties', product: PRODUCT },
    targets: [{ type: 'file', directory: 'crashed', maxAgeMs: 1000 }],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  // What a crash leaves: complete batches in a .part of this node (embedded mode: "embedded"), for this route's target.
  const dir = join(root, 'crashed');
  mkdirSync(dir, { recursive: true });
  const left = `${r.body.id}-0-20261101T000000000Z-embedded-0.ndjson.gz`;
  writeFileSync(join(dir, `${left}.part`), gzipSync('{"before":"the crash"}\n'));
  const d = await p.provision(PRODUCT);
  const c = await p.connect(d.id, d.secret);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ power: 7 }), { qos: 1 });
  await c.endAsync();
  const f = await eventually(
    () => {
      const x = closedFiles(dir);
      return x.open.length === 0 && x.docs.length === 2 ? x : undefined;
    },
    5000,
    'the left file closed and the new message in a file of its own',
  );
  assert.ok(f.names.includes(left), f.names.join(', '));
  assert.deepEqual(f.docs[0], { before: 'the crash' });
  assert.equal(f.docs[1].payload.power, 7);
  assert.equal((await p.api('DELETE', `/api/v1/routes/${r.body.id}`)).status, 200);
});
