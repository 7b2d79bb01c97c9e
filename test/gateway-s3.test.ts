import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';

/**
 * The file target's upload to an S3-compatible bucket (docs/message-gateway.md), against a real S3
 * API server on loopback (s3rver): messages of real MQTT devices end up, once each, in gzip NDJSON
 * objects under the target's prefix, and leave the local directory; an upload that fails (no such
 * bucket) keeps the file and is tried again until it goes.
 */
const BUCKET = 'hearth-telemetry';
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const PRODUCT = 's3_meter';
let s3rver: S3rver;
let endpoint: string;
let s3: S3Client;
let p: Platform;
const root = mkdtempSync(join(tmpdir(), 'hearth-gateway-s3-'));

before(async () => {
  s3rver = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory: mkdtempSync(join(tmpdir(), 'hearth-s3rver-')),
    configureBuckets: [{ name: BUCKET, configs: [] }],
  });
  const { port } = await s3rver.run();
  endpoint = `http://127.0.0.1:${port}`;
  s3 = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: CREDENTIALS });
  // The SDK's usual credential chain, as an operator would set it for the process.
  process.env.AWS_ACCESS_KEY_ID = CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = CREDENTIALS.secretAccessKey;
  p = await startPlatform({ env: { HEARTH_GATEWAY_FILES_DIR: root, HEARTH_GATEWAY_S3_ENDPOINT: endpoint } });
  const model = { properties: [{ id: 'power', type: 'number', access: 'r' }], events: [], actions: [] };
  assert.equal((await p.api('POST', '/api/v1/products', { key: PRODUCT, name: 'S3 meter', category: 'sensor', model })).status, 201);
});
after(async () => {
  await p?.stop();
  s3?.destroy();
  await s3rver?.close();
});

async function objects(prefix: string): Promise<{ keys: string[]; docs: any[] }> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  const keys = (listed.Contents ?? []).map((o) => o.Key!).sort();
  const docs: any[] = [];
  for (const key of keys) {
    const body = await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray();
    for (const line of gunzipSync(body).toString('utf8').split('\n')) if (line) docs.push(JSON.parse(line));
  }
  return { keys, docs };
}

async function send(count: number): Promise<string[]> {
  const d = await p.provision(PRODUCT);
  const c = await p.connect(d.id, d.secret);
  const sent: string[] = [];
  for (let k = 0; k < count; k++) {
    sent.push(`${d.id}:${k}`);
    await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ power: k }), { qos: 1 });
  }
  await c.endAsync();
  return sent;
}

test('closed files are uploaded to the bucket under the prefix, every message once, and leave the directory', async () => {
  const r = await p.api('POST', '/api/v1/routes', {
    name: 'meters to S3',
    match: { kind: 'properties', product: PRODUCT },
    targets: [{ type: 'file', directory: 'to-s3', maxBytes: 2048, maxAgeMs: 1000, upload: { bucket: BUCKET, prefix: 'meters/' } }],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const sent = await send(200);
  const got = await eventually(
    async () => {
      const o = await objects('meters/');
      return o.docs.length >= sent.length ? o : undefined;
    },
    20_000,
    'every message in an object of the bucket',
  );
  for (const k of got.keys) assert.match(k, /^meters\/.+\.ndjson\.gz$/);
  assert.deepEqual(got.docs.map((d) => `${d.deviceId}:${d.payload.power}`).sort(), sent.sort());
  const dir = join(root, 'to-s3');
  await eventually(() => (!existsSync(dir) || readdirSync(dir).length === 0 ? true : undefined), 10_000, 'the uploaded files gone from the directory');
});

test('a bucket that does not exist keeps the files and uploads them once it does', async () => {
  const missing = 'hearth-later';
  const r = await p.api('POST', '/api/v1/routes', {
    name: 'meters to a bucket not made yet',
    match: { kind: 'properties', product: PRODUCT },
    targets: [{ type: 'file', directory: 'later', maxAgeMs: 1000, upload: { bucket: missing } }],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const sent = await send(20);
  const dir = join(root, 'later');
  // The file is closed and its upload fails: it stays in the directory.
  await eventually(() => (existsSync(dir) && readdirSync(dir).some((n) => n.endsWith('.ndjson.gz')) ? true : undefined), 10_000, 'a closed file waiting');
  const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
  await s3.send(new CreateBucketCommand({ Bucket: missing }));
  const docs = await eventually(
    async () => {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: missing }));
      if (!listed.Contents?.length) return undefined;
      const all: any[] = [];
      for (const o of listed.Contents) {
        const body = await (await s3.send(new GetObjectCommand({ Bucket: missing, Key: o.Key! }))).Body!.transformToByteArray();
        for (const line of gunzipSync(body).toString('utf8').split('\n')) if (line) all.push(JSON.parse(line));
      }
      return all.length >= sent.length ? all : undefined;
    },
    20_000,
    'the waiting file uploaded after the bucket was made',
  );
  // Every message of this route (the route of the first test sends the same messages to its own bucket).
  assert.deepEqual(docs.map((d) => `${d.deviceId}:${d.payload.power}`).sort(), sent.sort());
  await eventually(() => (readdirSync(dir).length === 0 ? true : undefined), 10_000, 'the uploaded file gone from the directory');
});

test('a bucket name S3 would refuse is a 400 naming the field', async () => {
  const r = await p.api('POST', '/api/v1/routes', {
    name: 'bad bucket',
    match: { kind: 'properties', product: PRODUCT },
    targets: [{ type: 'file', directory: 'bad', upload: { bucket: 'Not_A_Bucket' } }],
  });
  assert.equal(r.status, 400);
  assert.match(JSON.stringify(r.body), /bucket/);
});
