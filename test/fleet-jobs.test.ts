/**
 * Bulk jobs through HTTP and real MQTT devices (docs/fleet.md): over a query, a group or ids;
 * commands, tags, desired state, disable and delete; progress, per-device results, cancel, the
 * rate, and a restart in the middle of a job.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import WebSocket from 'ws';
import { startPlatform, eventually, inbox, type Platform } from './helpers/platform.ts';
import { signupUser } from './helpers/people.ts';

let p: Platform;
const sockets: WebSocket[] = [];
before(async () => {
  p = await startPlatform();
});
after(async () => {
  for (const ws of sockets) ws.terminate();
  await p.stop();
});

/** A live stream (WebSocket) of one caller, collecting `job` events. */
async function jobStream(token: string): Promise<{ events: any[] }> {
  const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream?types=job`, { headers: { authorization: `Bearer ${token}` } });
  sockets.push(ws);
  const events: any[] = [];
  ws.on('message', (buf) => {
    const e = JSON.parse(buf.toString());
    if (e.type === 'job') events.push(e);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { events };
}

async function finished(id: string, timeoutMs = 10_000): Promise<any> {
  return eventually(
    async () => {
      const r = await p.api('GET', `/api/v1/fleet/jobs/${id}`);
      return r.body.status === 'done' || r.body.status === 'cancelled' ? r.body : undefined;
    },
    timeoutMs,
    `job ${id} to finish`,
  );
}

async function results(id: string): Promise<any[]> {
  const out: any[] = [];
  let cursor: string | null = null;
  do {
    const r: any = await p.api('GET', `/api/v1/fleet/jobs/${id}/devices?limit=4${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    out.push(...r.body.items);
    cursor = r.body.nextCursor;
  } while (cursor);
  return out;
}

/** A connected plug that answers every command ok. */
async function answeringPlug(name: string): Promise<{ id: string; c: MqttClient }> {
  const d = await p.provision('plug', name);
  const c = await p.connect(d.id, d.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  c.on('message', (topic, buf) => {
    if (!topic.endsWith('/commands')) return;
    const cmd = JSON.parse(buf.toString());
    void c.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true, result: { on: true } }), { qos: 1 });
  });
  void box;
  return { id: d.id, c };
}

test('a tag job over a query: every matching device, progress and per-device results', async () => {
  const made = await p.api('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 9 }, (_, i) => ({ product: 'light', name: `job light ${i}` })) });
  const ids: string[] = made.body.items.map((x: any) => x.id);
  const start = Date.now();
  const ok = await p.api('POST', '/api/v1/fleet/jobs', {
    spec: { kind: 'tags', tags: { rollout: 'wave-1' } },
    target: { query: 'product:light AND name:job*' },
    rate: 5,
  });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.equal(ok.body.total, 9);
  const done = await finished(ok.body.id);
  assert.equal(done.status, 'done');
  assert.deepEqual(done.progress, { pending: 0, running: 0, ok: 9, failed: 0, cancelled: 0 });
  assert.ok(Date.now() - start >= 1000, 'at 5 a second, 9 devices take two rounds');
  const rs = await results(ok.body.id);
  assert.deepEqual(rs.map((r) => r.deviceId).sort(), [...ids].sort());
  assert.ok(rs.every((r) => r.status === 'ok' && r.finishedAt));
  const tagged = await p.api('GET', `/api/v1/devices?q=${encodeURIComponent('tag.rollout:wave-1')}`);
  assert.equal(tagged.body.total, 9);
  const audit = await p.api('GET', '/api/v1/audit?action=fleet.job.create&limit=10');
  assert.ok(audit.body.items.some((e: any) => e.targetId === ok.body.id && e.details.devices === 9));
});

test('a command job over a group: answered, offline and failed devices each get their result', async () => {
  const a = await answeringPlug('cmd a');
  const b = await answeringPlug('cmd b');
  const off = await p.provision('plug', 'cmd offline');
  const g = await p.api('POST', '/api/v1/fleet/groups', { name: 'Command group' });
  assert.equal((await p.api('POST', `/api/v1/fleet/groups/${g.body.id}/devices`, { deviceIds: [a.id, b.id, off.id] })).status, 200);
  const job = await p.api('POST', '/api/v1/fleet/jobs', {
    spec: { kind: 'command', action: 'toggle', timeoutMs: 2000 },
    target: { groupId: g.body.id },
    rate: 100,
  });
  assert.equal(job.status, 201, JSON.stringify(job.body));
  const done = await finished(job.body.id);
  assert.deepEqual(done.progress, { pending: 0, running: 0, ok: 2, failed: 1, cancelled: 0 });
  const rs = await results(job.body.id);
  const byId = new Map(rs.map((r) => [r.deviceId, r]));
  assert.deepEqual(byId.get(a.id).result, { ok: true, result: { on: true } });
  assert.match(byId.get(off.id).error, /^E_DEVICE_OFFLINE/);
  const failedOnly = await p.api('GET', `/api/v1/fleet/jobs/${job.body.id}/devices?status=failed`);
  assert.deepEqual(
    failedOnly.body.items.map((r: any) => r.deviceId),
    [off.id],
  );
  // The ledger says who sent them.
  const ledger = await p.api('GET', `/api/v1/devices/${a.id}/commands`);
  assert.equal(ledger.body.items[0].source, `job:${job.body.id}`);
});

test('cancel stops a job: devices not started are cancelled', async () => {
  const made = await p.api('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 6 }, (_, i) => ({ product: 'plug', name: `slow ${i}` })) });
  const ids: string[] = made.body.items.map((x: any) => x.id);
  const job = await p.api('POST', '/api/v1/fleet/jobs', { spec: { kind: 'disable' }, target: { deviceIds: ids }, rate: 1 });
  assert.equal(job.status, 201);
  await eventually(async () => (await p.api('GET', `/api/v1/fleet/jobs/${job.body.id}`)).body.progress.ok >= 1, 5000, 'the first device');
  const c = await p.api('POST', `/api/v1/fleet/jobs/${job.body.id}/cancel`);
  assert.equal(c.status, 200);
  assert.equal(c.body.status, 'cancelled');
  const done = await finished(job.body.id);
  assert.ok(done.progress.cancelled >= 3, JSON.stringify(done.progress));
  assert.equal(done.progress.ok + done.progress.cancelled, 6);
  assert.equal((await p.api('POST', `/api/v1/fleet/jobs/${job.body.id}/cancel`)).status, 409);
  const disabled = await p.api('GET', `/api/v1/devices?q=${encodeURIComponent('disabled:true name:slow*')}`);
  assert.equal(disabled.body.total, done.progress.ok, 'exactly the devices it reached are disabled');
});

test('bad jobs are refused and nothing is made', async () => {
  const before = (await p.api('GET', '/api/v1/fleet/jobs')).body.items.length;
  const cases: Array<[unknown, number, RegExp]> = [
    [{ spec: { kind: 'reboot' }, target: { query: 'product:plug' } }, 400, /spec/],
    [{ spec: { kind: 'tags', tags: {} }, target: { query: 'product:plug' } }, 400, /tags/],
    [{ spec: { kind: 'disable' }, target: { query: 'product:plug AND colour:red' } }, 400, /body\.target\.query: at position 18: unknown field "colour"/],
    [{ spec: { kind: 'disable' }, target: { groupId: 'fg_nope' } }, 404, /fleet group "fg_nope" does not exist/],
    [{ spec: { kind: 'disable' }, target: { deviceIds: ['d_nope0000000000'] } }, 404, /no job was made/],
    [{ spec: { kind: 'disable' }, target: { query: 'product:plug' }, rate: 0 }, 400, /rate/],
  ];
  for (const [body, status, re] of cases) {
    const r = await p.api('POST', '/api/v1/fleet/jobs', body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.match(r.body.detail, re);
  }
  assert.equal((await p.api('GET', '/api/v1/fleet/jobs')).body.items.length, before);
  assert.equal((await p.api('GET', '/api/v1/fleet/jobs/job_nope')).status, 404);
});

test('a job survives a restart in the middle: each device is done once', async () => {
  const made = await p.api('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 8 }, (_, i) => ({ product: 'light', name: `restart ${i}` })) });
  const ids: string[] = made.body.items.map((x: any) => x.id);
  const job = await p.api('POST', '/api/v1/fleet/jobs', { spec: { kind: 'desired', values: { on: true } }, target: { deviceIds: ids }, rate: 2 });
  assert.equal(job.status, 201);
  await eventually(async () => (await p.api('GET', `/api/v1/fleet/jobs/${job.body.id}`)).body.progress.ok >= 2, 5000, 'a first round');
  const dataDir = p.dataDir;
  await p.stop(false);
  p = await startPlatform({ dataDir });
  const done = await finished(job.body.id, 15_000);
  assert.equal(done.status, 'done');
  assert.deepEqual(done.progress, { pending: 0, running: 0, ok: 8, failed: 0, cancelled: 0 });
  const rs = await results(job.body.id);
  assert.equal(rs.length, 8);
  assert.deepEqual(
    rs.map((r) => r.deviceId),
    ids,
    'one result per device, in order',
  );
  for (const id of ids) assert.deepEqual((await p.device(id)).shadow.desired, { on: true });
});

test('the live stream carries a job from made to done, a round at a time, to the operator only', async () => {
  const ops = await jobStream(p.token);
  const ana = await signupUser(p, 'ana-jobs@example.com');
  const anas = await jobStream(ana.token);
  const made = await p.api('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 5 }, (_, i) => ({ product: 'plug', name: `streamed ${i}` })) });
  const ids: string[] = made.body.items.map((x: any) => x.id);
  const job = await p.api('POST', '/api/v1/fleet/jobs', { spec: { kind: 'tags', tags: { streamed: 'yes' } }, target: { deviceIds: ids }, rate: 2 });
  assert.equal(job.status, 201);
  const mine = () => ops.events.filter((e) => e.data.job === job.body.id);
  await eventually(() => mine().some((e) => e.data.change === 'done'), 10_000, 'the done event');
  const evs = mine();
  assert.deepEqual(
    evs.map((e) => e.data.change),
    ['created', 'started', 'progress', 'progress', 'progress', 'done'],
    'made, started, three rounds of at most 2, done',
  );
  for (const e of evs) {
    assert.equal(e.deviceId, null);
    assert.equal(e.homeId, null);
    assert.equal(e.data.kind, 'tags');
    assert.equal(e.data.total, 5);
  }
  assert.deepEqual(evs[0].data.progress, { pending: 5, running: 0, ok: 0, failed: 0, cancelled: 0 });
  assert.equal(evs[0].data.status, 'queued');
  assert.deepEqual(
    evs.filter((e) => e.data.change === 'progress').map((e) => e.data.progress.ok),
    [2, 4, 5],
  );
  assert.equal(evs[5].data.status, 'done');
  assert.deepEqual(evs[5].data.progress, { pending: 0, running: 0, ok: 5, failed: 0, cancelled: 0 });
  // A cancel is an event too.
  const slow = await p.api('POST', '/api/v1/fleet/jobs', { spec: { kind: 'tags', tags: { streamed: 'no' } }, target: { deviceIds: ids }, rate: 1 });
  await eventually(() => ops.events.some((e) => e.data.job === slow.body.id && e.data.change === 'progress'), 5000, 'a first round');
  assert.equal((await p.api('POST', `/api/v1/fleet/jobs/${slow.body.id}/cancel`)).status, 200);
  const cancelled = await eventually(() => ops.events.find((e) => e.data.job === slow.body.id && e.data.change === 'cancelled'), 5000, 'the cancelled event');
  assert.equal(cancelled.data.status, 'cancelled');
  assert.ok(cancelled.data.progress.cancelled >= 3, JSON.stringify(cancelled.data.progress));
  // A home user never sees the operator's jobs.
  assert.deepEqual(anas.events, []);
});
