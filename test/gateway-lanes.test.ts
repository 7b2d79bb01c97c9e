/**
 * Gray lanes end to end: a tester's devices and the tester's API calls reach the gray version of
 * a partner service, everyone else's reach the baseline, and shifting the lane needs no restart.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { MqttClient } from 'mqtt';
import { eventually, startPlatform, type Platform } from './helpers/platform.ts';

interface Hit {
  path: string;
  body: any;
  raw: string;
  headers: Record<string, string | string[] | undefined>;
}

let p: Platform;
let server: Server;
let base = '';
const hits: Hit[] = [];
const SECRET = 'partner-shared-secret';

before(async () => {
  p = await startPlatform();
  server = createServer((req, res) => {
    let raw = '';
    req
      .setEncoding('utf8')
      .on('data', (c: string) => (raw += c))
      .on('end', () => {
        hits.push({ path: req.url ?? '', body: JSON.parse(raw), raw, headers: req.headers });
        res.writeHead(204).end();
      });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await p.stop();
});

/** A device that answers every command with ok. */
async function device(): Promise<{ id: string; client: MqttClient }> {
  const d = await p.provision('light');
  const client = await p.connect(d.id, d.secret);
  await client.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  client.on('message', (topic, buf) => {
    if (topic.endsWith('/commands'))
      client.publish(`devices/${d.id}/commands/result`, JSON.stringify({ id: JSON.parse(buf.toString()).id, ok: true }), { qos: 1 });
  });
  return { id: d.id, client };
}

/**
 * Nothing more is coming: each device reports a marker, and once every marker has reached its
 * target, anything sent before it has too. The markers are then taken out of `hits`.
 */
async function afterMarkers(...marks: Array<[{ id: string; client: MqttClient }, string]>): Promise<void> {
  const isMarker = (h: Hit) => h.body.kind === 'properties' && h.body.payload?.brightness === 99;
  for (const [d] of marks) d.client.publish(`devices/${d.id}/properties`, JSON.stringify({ brightness: 99 }), { qos: 1 });
  await eventually(() => marks.every(([d, path]) => hits.some((h) => isMarker(h) && h.path === path && h.body.deviceId === d.id)), 10_000, 'the markers');
  for (let i = hits.length - 1; i >= 0; i--) if (isMarker(hits[i])) hits.splice(i, 1);
}

const seenBy = (path: string, pred: (h: Hit) => boolean) => hits.filter((h) => h.path === path && pred(h));

test("tagged devices' messages and the tester's API calls go to the gray target, with the lane header; everything else to the baseline", async () => {
  const tester = await device();
  const other = await device();
  const lanes = await p.api('PUT', '/api/v1/gateway/lanes', { lanes: [{ name: 'gray', devices: [tester.id] }] });
  assert.equal(lanes.status, 200, JSON.stringify(lanes.body));
  const route = await p.api('POST', '/api/v1/routes', {
    name: 'partner service',
    match: { kind: ['properties', 'command'] },
    targets: [
      { type: 'webhook', url: `${base}/baseline`, secret: SECRET },
      { type: 'webhook', url: `${base}/gray`, secret: SECRET, lane: 'gray' },
    ],
  });
  assert.equal(route.status, 201, JSON.stringify(route.body));

  tester.client.publish(`devices/${tester.id}/properties`, JSON.stringify({ brightness: 11 }), { qos: 1 });
  other.client.publish(`devices/${other.id}/properties`, JSON.stringify({ brightness: 22 }), { qos: 1 });
  // The tester's app call carries the lane header; the same call without it is baseline traffic.
  const grayCall = await fetch(`${p.httpUrl}/api/v1/devices/${other.id}/commands`, {
    method: 'POST',
    headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json', 'x-hearth-lane': 'gray' },
    body: JSON.stringify({ action: 'toggle' }),
  });
  assert.equal(grayCall.status, 200);
  const grayCommand = (await grayCall.json()) as { id: string };
  const plain = await p.api('POST', `/api/v1/devices/${other.id}/commands`, { action: 'toggle' });
  assert.equal(plain.status, 200);

  await eventually(() => hits.length >= 4, 10_000, 'four deliveries');
  await afterMarkers([tester, '/gray'], [other, '/baseline']);
  const gray = hits.filter((h) => h.path === '/gray');
  const baseline = hits.filter((h) => h.path === '/baseline');
  assert.equal(gray.length, 2, `gray got ${JSON.stringify(gray.map((h) => [h.body.kind, h.body.deviceId]))}`);
  assert.equal(baseline.length, 2, `baseline got ${JSON.stringify(baseline.map((h) => [h.body.kind, h.body.deviceId]))}`);
  assert.equal(seenBy('/gray', (h) => h.body.kind === 'properties' && h.body.deviceId === tester.id).length, 1, "the tester device's report");
  assert.equal(seenBy('/gray', (h) => h.body.kind === 'command' && h.body.payload.id === grayCommand.id).length, 1, "the tester's API call");
  assert.equal(seenBy('/baseline', (h) => h.body.kind === 'properties' && h.body.deviceId === other.id).length, 1);
  assert.equal(seenBy('/baseline', (h) => h.body.kind === 'command' && h.body.payload.id === plain.body.id).length, 1);
  for (const h of gray) assert.equal(h.headers['x-hearth-lane'], 'gray');
  for (const h of baseline) assert.equal(h.headers['x-hearth-lane'], undefined);
  for (const h of hits) assert.equal(h.headers['x-hearth-signature'], `sha256=${createHmac('sha256', SECRET).update(h.raw).digest('hex')}`);

  // Shifting the lane to every device takes effect at once, without a restart.
  hits.length = 0;
  assert.equal((await p.api('PUT', '/api/v1/gateway/lanes', { lanes: [{ name: 'gray', percent: 100 }] })).status, 200);
  other.client.publish(`devices/${other.id}/properties`, JSON.stringify({ brightness: 33 }), { qos: 1 });
  await eventually(() => hits.length >= 1, 10_000, 'the delivery after the shift');
  await afterMarkers([other, '/gray']);
  assert.deepEqual(
    hits.map((h) => [h.path, h.body.deviceId]),
    [['/gray', other.id]],
  );

  for (const c of [tester.client, other.client]) await c.endAsync();
  assert.equal((await p.api('DELETE', `/api/v1/routes/${route.body.id}`)).status, 200);
});
