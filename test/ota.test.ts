import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { get } from 'node:http';
import { startPlatform, eventually, inbox, type Platform } from './helpers/platform.ts';
import { startOtaDevice, type OtaDevice } from '../src/simulator/ota-device.ts';
import { waveOf } from '../src/ota/ota-plan.ts';

let p: Platform;
const sims: OtaDevice[] = [];
/** Pairing codes of the fleets' devices, by id. */
const codes = new Map<string, string>();
before(async () => {
  p = await startPlatform({ env: { HEARTH_OTA_TICK_MS: '100' } });
});
after(async () => {
  await Promise.all(sims.map((s) => s.stop()));
  await p.stop();
});

/** Uploads an image as the raw body; the answer parsed. */
async function upload(product: string, query: string, image: Buffer, token: string | null = p.token): Promise<{ status: number; body: any }> {
  const res = await fetch(`${p.httpUrl}/api/v1/products/${product}/firmware?${query}`, {
    method: 'POST',
    body: image,
    headers: { 'content-type': 'application/octet-stream', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** A product of its own per test, so that inventories and campaigns do not mix. */
async function product(key: string): Promise<string> {
  const r = await p.api('POST', '/api/v1/products', {
    key,
    name: key,
    category: 'light',
    model: { properties: [{ id: 'on', type: 'boolean', access: 'rw' }], events: [], actions: [] },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return key;
}

/** Provisions `n` devices of a product and runs a simulated OTA device for each, at `version`. */
async function fleet(productKey: string, n: number, version: string, opts: { failureRate?: number } = {}): Promise<OtaDevice[]> {
  const out: OtaDevice[] = [];
  for (let i = 0; i < n; i++) {
    const d = await p.provision(productKey, `${productKey}-${i}`);
    codes.set(d.id, d.pairingCode);
    const sim = startOtaDevice({ mqttUrl: p.mqttUrl, id: d.id, secret: d.secret, product: productKey, version, failureRate: opts.failureRate });
    sims.push(sim);
    out.push(sim);
  }
  await Promise.all(out.map((s) => s.ready));
  await eventually(
    async () => {
      const inv = (await p.api('GET', `/api/v1/products/${productKey}/firmware-versions`)).body;
      return inv.versions.find((v: any) => v.version === version)?.devices === n;
    },
    5000,
    `${n} devices reporting ${version}`,
  );
  return out;
}

async function campaign(id: string): Promise<any> {
  return (await p.api('GET', `/api/v1/ota/campaigns/${id}`)).body;
}

test('a package is uploaded streamed, signed with the product key, and downloaded with Range and ETag', async () => {
  const key = await product('ota-dl');
  const image = randomBytes(300_000);
  const sha = createHash('sha256').update(image).digest('hex');
  const up = await upload(key, 'version=1.2.0&notes=Faster%20pairing&minVersion=1.0.0', image);
  assert.equal(up.status, 201, JSON.stringify(up.body));
  assert.equal(up.body.size, image.length);
  assert.equal(up.body.sha256, sha);
  assert.equal(up.body.version, '1.2.0');
  assert.equal(up.body.minVersion, '1.0.0');
  assert.match(up.body.id, /^fw_/);

  // The signature verifies with the public key anyone may read, over the digest's 32 bytes.
  const pub = await p.api('GET', `/api/v1/products/${key}/firmware-key`, undefined, null);
  assert.equal(pub.status, 200);
  assert.equal(pub.body.algorithm, 'Ed25519');
  assert.ok(verify(null, Buffer.from(sha, 'hex'), createPublicKey(pub.body.publicKey), Buffer.from(up.body.signature, 'base64')));
  assert.equal(Buffer.from(pub.body.publicKeyRaw, 'base64').length, 32);

  assert.equal((await p.api('GET', `/api/v1/firmware/${up.body.id}`)).body.sha256, sha);
  const list = await p.api('GET', `/api/v1/products/${key}/firmware`);
  assert.deepEqual(
    list.body.items.map((f: any) => f.version),
    ['1.2.0'],
  );

  // A download URL as a job carries it: the token is the only credential.
  const url: string = await p.hearth.services.firmware.downloadUrl(up.body.id, 'd_anydevice00000');
  const whole = await fetch(url);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get('etag'), `"${sha}"`);
  assert.equal(whole.headers.get('accept-ranges'), 'bytes');
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(image));
  // Resume after a dropped link: the rest from byte 100000.
  const rest = await fetch(url, { headers: { range: 'bytes=100000-', 'if-range': `"${sha}"` } });
  assert.equal(rest.status, 206);
  assert.equal(rest.headers.get('content-range'), `bytes 100000-${image.length - 1}/${image.length}`);
  assert.ok(Buffer.from(await rest.arrayBuffer()).equals(image.subarray(100000)));
  const mid = await fetch(url, { headers: { range: 'bytes=10-19' } });
  assert.equal(mid.status, 206);
  assert.ok(Buffer.from(await mid.arrayBuffer()).equals(image.subarray(10, 20)));
  const same = await fetch(url, { headers: { 'if-none-match': `"${sha}"` } });
  assert.equal(same.status, 304);
  const outside = await fetch(url, { headers: { range: `bytes=${image.length}-` } });
  assert.equal(outside.status, 416);
  await outside.arrayBuffer();

  // Without a valid token nothing is served.
  const bad = await fetch(url.replace(/token=[^&]+/, 'token=abc.def'));
  assert.equal(bad.status, 401);
  assert.equal(((await bad.json()) as { code: string }).code, 'E_UNAUTHENTICATED');
  const other = await fetch(url.replace(`/firmware/${up.body.id}/`, '/firmware/fw_other000000000/'));
  assert.equal(other.status, 401);
  await other.arrayBuffer();
});

test('bad uploads are refused and store nothing', async () => {
  const key = await product('ota-bad');
  const image = randomBytes(1000);
  const badVersion = await upload(key, 'version=1.2', image);
  assert.equal(badVersion.status, 400);
  assert.equal(badVersion.body.code, 'E_VALIDATION');
  assert.match(badVersion.body.detail, /semantic version/);
  const unknown = await upload('no-such-product', 'version=1.0.0', image);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.code, 'E_PRODUCT_NOT_FOUND');
  // An image changed on the way (the maker's digest does not match) is refused.
  const tampered = await upload(key, `version=1.0.0&sha256=${createHash('sha256').update(Buffer.from('other')).digest('hex')}`, image);
  assert.equal(tampered.status, 400);
  assert.match(tampered.body.detail, /SHA-256/);
  const empty = await upload(key, 'version=1.0.0', Buffer.alloc(0));
  assert.equal(empty.status, 400);
  const anonymous = await upload(key, 'version=1.0.0', image, null);
  assert.equal(anonymous.status, 401);
  assert.deepEqual((await p.api('GET', `/api/v1/products/${key}/firmware`)).body.items, []);
  const ok = await upload(key, 'version=1.0.0', image);
  assert.equal(ok.status, 201);
  const again = await upload(key, 'version=1.0.0', image);
  assert.equal(again.status, 409);
  assert.equal(again.body.code, 'E_CONFLICT');
  assert.equal((await p.api('GET', '/api/v1/firmware/fw_missing0000000')).status, 404);
});

test('a 3-wave campaign updates 20 devices wave after wave, through MQTT and HTTP', async () => {
  const key = await product('ota-waves');
  const devices = await fleet(key, 20, '1.0.0');
  const image = randomBytes(64 * 1024);
  const fw = (await upload(key, 'version=1.1.0', image)).body;
  const waves = [{ percent: 10 }, { percent: 50 }, { percent: 100 }];
  const created = await p.api('POST', '/api/v1/ota/campaigns', { name: 'waves', product: key, firmware: fw.id, waves, abort: { maxFailureRate: 0.5 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.state, 'running');
  assert.equal(created.body.counts.pending + created.body.counts.inProgress, 20);
  const done = await eventually(
    async () => {
      const c = await campaign(created.body.id);
      return c.state === 'completed' ? c : undefined;
    },
    20_000,
    'the campaign to complete',
  );
  assert.deepEqual(done.counts, { pending: 0, inProgress: 0, succeeded: 20, failed: 0, cancelled: 0 });
  assert.equal(done.wave, 2);
  for (const d of devices) assert.equal(d.version, '1.1.0');
  const jobs = (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices?limit=100`)).body;
  assert.equal(jobs.total, 20);
  // Each device is in the wave its stable hash gives, and no wave started before the previous one ended.
  for (const j of jobs.items) assert.equal(j.wave, waveOf(waves, key, j.device));
  for (let w = 1; w < 3; w++) {
    const prevEnd = Math.max(...jobs.items.filter((j: any) => j.wave === w - 1).map((j: any) => Date.parse(j.finishedAt)), 0);
    const firstSent = Math.min(...jobs.items.filter((j: any) => j.wave === w).map((j: any) => Date.parse(j.sentAt)));
    if (Number.isFinite(firstSent)) assert.ok(firstSent >= prevEnd, `wave ${w} started after wave ${w - 1} ended`);
  }
  const inv = (await p.api('GET', `/api/v1/products/${key}/firmware-versions`)).body;
  assert.deepEqual(inv.versions, [{ version: '1.1.0', devices: 20 }]);
  const view = (await p.api('GET', `/api/v1/devices/${devices[0].id}/firmware`)).body;
  assert.equal(view.version, '1.1.0');
  assert.equal(view.lastJob.state, 'succeeded');
  // The device view shows them too.
  const d = await p.device(devices[0].id);
  assert.equal(d.firmware.version, '1.1.0');
  assert.equal(d.firmware.lastJob.campaign, created.body.id);
  assert.equal(d.shadow.reported.firmware, '1.1.0');
  // A package a live campaign no longer uses may go.
  assert.equal((await p.api('DELETE', `/api/v1/firmware/${fw.id}`)).status, 204);
});

test('failures trip the abort gate: the campaign stops itself and no job goes past the tripping wave', async () => {
  const key = await product('ota-abort');
  const devices = await fleet(key, 20, '1.0.0', { failureRate: 1 });
  const fw = (await upload(key, 'version=2.0.0', randomBytes(4096))).body;
  const waves = [{ percent: 30 }, { percent: 100 }];
  const firstWave = devices.filter((d) => waveOf(waves, key, d.id) === 0);
  assert.ok(firstWave.length > 0, 'the first wave has devices');
  // One failing device is in the operator's home: its owner hears of the abort.
  const home = await p.api('POST', '/api/v1/homes', { name: 'OTA home', timezone: 'Europe/Berlin' });
  assert.equal(home.status, 201, JSON.stringify(home.body));
  assert.equal((await p.api('POST', `/api/v1/homes/${home.body.id}/devices`, { pairingCode: codes.get(firstWave[0].id) })).status, 201);
  const created = await p.api('POST', '/api/v1/ota/campaigns', {
    name: 'bad build',
    product: key,
    firmware: fw.id,
    waves,
    abort: { maxFailureRate: 0.2, minDevices: 1 },
  });
  assert.equal(created.status, 201);
  const aborted = await eventually(
    async () => {
      const c = await campaign(created.body.id);
      return c.state === 'aborted' ? c : undefined;
    },
    15_000,
    'the campaign to abort',
  );
  assert.match(aborted.reason, /failure rate/);
  assert.equal(aborted.wave, 0);
  // Let the ticks that would have come pass: nothing more is sent.
  await new Promise((r) => setTimeout(r, 500));
  const jobs = (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices?limit=100`)).body.items;
  for (const j of jobs.filter((x: any) => x.wave === 1)) {
    assert.equal(j.state, 'cancelled');
    assert.equal(j.sentAt, null);
  }
  for (const d of devices) {
    if (waveOf(waves, key, d.id) === 1) assert.deepEqual(d.jobs, [], `${d.id} of the second wave got no job`);
    assert.equal(d.version, '1.0.0');
  }
  const audit = (await p.api('GET', '/api/v1/audit?action=ota.campaign.abort')).body;
  assert.ok(audit.items.some((e: any) => e.targetId === created.body.id));
  const inbox = await eventually(
    async () => {
      const items = (await p.api('GET', `/api/v1/notifications?homeId=${home.body.id}`)).body.items;
      return items?.find((n: any) => n.data?.campaign === created.body.id);
    },
    5000,
    'the owner notified',
  );
  assert.match(inbox.title, /firmware update was stopped/);
  // Nothing to resume: an aborted campaign is over; a rollback is a new campaign.
  assert.equal((await p.api('POST', `/api/v1/ota/campaigns/${created.body.id}/resume`)).status, 409);
  const metrics = await (await fetch(`${p.httpUrl}/metrics`)).text();
  assert.match(metrics, /^hearth_ota_jobs_total\{state="failed"\} [1-9]/m);
});

test('a device offline during its wave gets its job when it comes back', async () => {
  const key = await product('ota-offline');
  const devices = await fleet(key, 3, '1.0.0');
  await devices[2].powerOff();
  await eventually(async () => !(await p.device(devices[2].id)).online, 3000, 'the device offline');
  const fw = (await upload(key, 'version=1.0.1', randomBytes(2048))).body;
  const created = await p.api('POST', '/api/v1/ota/campaigns', { name: 'offline', product: key, firmware: fw.id });
  await eventually(async () => (await campaign(created.body.id)).counts.succeeded === 2, 10_000, 'the online devices updated');
  const waiting = await campaign(created.body.id);
  assert.equal(waiting.state, 'running');
  assert.equal(waiting.counts.pending, 1);
  assert.deepEqual(devices[2].jobs, []);
  await devices[2].powerOn();
  const done = await eventually(
    async () => {
      const c = await campaign(created.body.id);
      return c.state === 'completed' ? c : undefined;
    },
    10_000,
    'the campaign to complete',
  );
  assert.equal(done.counts.succeeded, 3);
  assert.equal(devices[2].version, '1.0.1');
});

test('a hub downloads once and updates its two sub-devices, reporting per child', async () => {
  const { startSimulator } = await import('../src/simulator/simulator.ts');
  const hub = await p.provision('hub');
  const sim = startSimulator({
    mqttUrl: p.mqttUrl,
    hubId: hub.id,
    hubSecret: hub.secret,
    intervalMs: 60_000,
    children: [
      { product: 'light', hwid: 'ota:00:01' },
      { product: 'light', hwid: 'ota:00:02' },
    ],
  });
  try {
    await sim.ready;
    const children = [...sim.children.values()].map((c) => c.id);
    await eventually(
      async () => (await p.api('GET', '/api/v1/products/light/firmware-versions')).body.versions.some((v: any) => v.version === '1.0.0' && v.devices === 2),
      5000,
      'children reporting 1.0.0',
    );
    const image = randomBytes(100_000);
    const fw = (await upload('light', 'version=1.5.0', image)).body;
    let downloads = 0;
    const counting = p.hearth.services.firmware.open.bind(p.hearth.services.firmware);
    p.hearth.services.firmware.open = (id, start, end) => {
      downloads++;
      return counting(id, start, end);
    };
    const created = await p.api('POST', '/api/v1/ota/campaigns', { name: 'hub children', product: 'light', firmware: fw.id, target: { devices: children } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const done = await eventually(
      async () => {
        const c = await campaign(created.body.id);
        return c.state === 'completed' ? c : undefined;
      },
      10_000,
      'the campaign to complete',
    );
    assert.equal(done.counts.succeeded, 2);
    const jobs = (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices`)).body.items;
    for (const j of jobs) assert.equal(j.hub, hub.id);
    assert.equal(downloads, 1, 'one download for both children');
    for (const id of children) assert.equal((await p.api('GET', `/api/v1/devices/${id}/firmware`)).body.version, '1.5.0');
  } finally {
    await sim.stop();
  }
});

test("a campaign can target devices by the operator's tags", async () => {
  const key = await product('tagged-lamp');
  const devs = await fleet(key, 4, '1.0.0');
  for (const [i, d] of devs.entries()) {
    const r = await p.api('PATCH', `/api/v1/devices/${d.id}`, { tags: { site: i < 2 ? 'berlin' : 'paris' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const fw = (await upload(key, 'version=1.1.0', randomBytes(1024))).body;
  const created = await p.api('POST', '/api/v1/ota/campaigns', { name: 'berlin only', product: key, firmware: fw.id, target: { tags: { site: 'berlin' } } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const jobs = (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices`)).body;
  assert.deepEqual(jobs.items.map((j: any) => j.device).sort(), [devs[0].id, devs[1].id].sort());
  await eventually(async () => (await campaign(created.body.id)).state === 'completed', 15_000, 'the campaign done');
  const bad = await p.api('POST', '/api/v1/ota/campaigns', { name: 'x', product: key, firmware: fw.id, target: { tags: 'site:berlin' } });
  assert.equal(bad.status, 400);
});

test('bad progress changes nothing: unknown or foreign jobs, bad shapes, a contradicting version', async () => {
  const key = await product('ota-progress');
  const devices = await fleet(key, 2, '1.0.0');
  // A device that listens but does not act: the test speaks for it.
  const quiet = await p.provision(key, 'quiet');
  const c = await p.connect(quiet.id, quiet.secret);
  const box = inbox(c);
  await c.subscribeAsync([`devices/${quiet.id}/ota`, `devices/${quiet.id}/errors`], { qos: 1 });
  await c.publishAsync(`devices/${quiet.id}/properties`, JSON.stringify({ firmware: '1.0.0' }), { qos: 1 });
  await devices[0].powerOff();
  await devices[1].powerOff();
  const fw = (await upload(key, 'version=1.1.0', randomBytes(2048))).body;
  const created = await p.api('POST', '/api/v1/ota/campaigns', { name: 'progress', product: key, firmware: fw.id });
  const job = (await box.next((m) => m.topic === `devices/${quiet.id}/ota`, 5000)).payload;
  assert.equal(job.version, '1.1.0');
  assert.equal(job.sha256, fw.sha256);
  assert.match(job.url, /\/api\/v1\/firmware\/fw_[^/]+\/download\?token=/);
  const jobs = (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices`)).body.items;
  const foreign = jobs.find((j: any) => j.device === devices[0].id);
  const send = (payload: unknown) => c.publishAsync(`devices/${quiet.id}/ota/progress`, JSON.stringify(payload), { qos: 1 });
  const error = async () => (await box.next((m) => m.topic === `devices/${quiet.id}/errors`, 3000)).payload;

  await send({ job: foreign.id, state: 'failed', error: 'not mine' });
  const e1 = await error();
  assert.equal(e1.code, 'E_UNKNOWN_OTA_JOB');
  assert.equal(e1.ref, foreign.id);
  await send({ job: 'j_nosuchjob00000', state: 'downloading' });
  assert.equal((await error()).code, 'E_UNKNOWN_OTA_JOB');
  await send({ job: job.job, state: 'exploding' });
  assert.equal((await error()).code, 'E_BAD_MESSAGE');
  await send({ job: job.job, state: 'downloading', progress: 250 });
  assert.equal((await error()).code, 'E_BAD_MESSAGE');
  await send({ job: job.job, state: 'succeeded' });
  assert.match((await error()).message, /version/);
  await send([1, 2]);
  assert.equal((await error()).code, 'E_BAD_MESSAGE');
  const after = (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices`)).body.items;
  assert.equal(after.find((j: any) => j.id === foreign.id).state, 'queued', "the other device's job is unchanged");
  assert.equal(after.find((j: any) => j.id === job.job).state, 'sent');

  await send({ job: job.job, state: 'downloading', progress: 50 });
  await eventually(
    async () => (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices?state=downloading`)).body.total === 1,
    3000,
    'downloading',
  );
  // Success that the reported version contradicts is a failure.
  await send({ job: job.job, state: 'succeeded', version: '1.0.9' });
  assert.match((await error()).message, /1\.0\.9/);
  const failed = await eventually(
    async () => (await p.api('GET', `/api/v1/ota/campaigns/${created.body.id}/devices?state=failed`)).body.items[0],
    3000,
    'the job failed',
  );
  assert.equal(failed.id, job.job);

  // A package a live campaign uses cannot be deleted; pause, resume and cancel move the campaign.
  assert.equal((await p.api('DELETE', `/api/v1/firmware/${fw.id}`)).status, 409);
  assert.equal((await p.api('POST', `/api/v1/ota/campaigns/${created.body.id}/pause`)).body.state, 'paused');
  assert.equal((await p.api('POST', `/api/v1/ota/campaigns/${created.body.id}/pause`)).status, 409);
  assert.equal((await p.api('POST', `/api/v1/ota/campaigns/${created.body.id}/resume`)).body.state, 'running');
  const cancelled = (await p.api('POST', `/api/v1/ota/campaigns/${created.body.id}/cancel`)).body;
  assert.equal(cancelled.state, 'cancelled');
  assert.equal(cancelled.counts.cancelled, 2);
  assert.equal((await p.api('GET', '/api/v1/ota/campaigns/ota_nosuchcampaign')).status, 404);
  const bad = await p.api('POST', '/api/v1/ota/campaigns', { name: 'x', product: key, firmware: fw.id, waves: [{ percent: 50 }] });
  assert.equal(bad.status, 400);
  assert.match(bad.body.detail, /100/);
});

test('a campaign waits for its start time, and jobs wait for their window', async () => {
  const key = await product('ota-window');
  const devices = await fleet(key, 2, '1.0.0');
  const fw = (await upload(key, 'version=1.0.5', randomBytes(1024))).body;
  const later = await p.api('POST', '/api/v1/ota/campaigns', {
    name: 'later',
    product: key,
    firmware: fw.id,
    startAt: new Date(Date.now() + 3_600_000).toISOString(),
  });
  assert.equal(later.body.state, 'scheduled');
  assert.equal((await p.api('POST', `/api/v1/ota/campaigns/${later.body.id}/cancel`)).body.state, 'cancelled');
  // Devices without a home are on UTC: a window that opens in two hours keeps their jobs queued.
  const h = new Date().getUTCHours();
  const created = await p.api('POST', '/api/v1/ota/campaigns', {
    name: 'window',
    product: key,
    firmware: fw.id,
    window: { startHour: (h + 2) % 24, endHour: (h + 3) % 24 },
  });
  assert.equal(created.body.state, 'running');
  await new Promise((r) => setTimeout(r, 600));
  const c = await campaign(created.body.id);
  assert.equal(c.counts.pending, 2);
  for (const d of devices) assert.deepEqual(d.jobs, []);
  const list = (await p.api('GET', `/api/v1/ota/campaigns?product=${key}`)).body;
  assert.deepEqual(
    list.items.map((x: any) => x.name),
    ['window', 'later'],
  );
  await p.api('POST', `/api/v1/ota/campaigns/${created.body.id}/cancel`);
});

test('the live stream carries campaign and job events', async () => {
  const key = await product('ota-stream');
  await fleet(key, 1, '1.0.0');
  const res = await fetch(`${p.httpUrl}/api/v1/stream?types=ota`, { headers: { authorization: `Bearer ${p.token}` } });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  let text = '';
  const reading = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      text += Buffer.from(value).toString();
    }
  })().catch(() => undefined);
  try {
    const fw = (await upload(key, 'version=1.0.1', randomBytes(1024))).body;
    const created = await p.api('POST', '/api/v1/ota/campaigns', { name: 'streamed', product: key, firmware: fw.id });
    await eventually(() => text.includes('"change":"completed"'), 10_000, 'the completed event');
    const events = text
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)))
      .filter((e) => e.type === 'ota');
    assert.ok(events.some((e) => e.data.campaign === created.body.id && e.data.change === 'created'));
    assert.ok(events.some((e) => e.data.job && e.data.state === 'downloading' && e.deviceId));
    assert.ok(events.some((e) => e.data.job && e.data.state === 'succeeded'));
  } finally {
    await reader.cancel();
    await reading;
  }
});

/** A GET on a connection of its own (closed after it): the answer's status, headers and the response to read or drop. */
function getOwn(url: string): Promise<import('node:http').IncomingMessage> {
  return new Promise((resolve, reject) => get(url, { agent: false }, resolve).once('error', reject));
}

test('downloads beyond the per-node cap get 503 with Retry-After', async () => {
  const q = await startPlatform({ env: { HEARTH_OTA_MAX_CONCURRENT_DOWNLOADS: '1' } });
  try {
    const image = randomBytes(8 * 1024 * 1024);
    const res = await fetch(`${q.httpUrl}/api/v1/products/light/firmware?version=3.0.0`, {
      method: 'POST',
      body: image,
      headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${q.token}` },
    });
    const fw = (await res.json()) as { id: string };
    const url = await q.hearth.services.firmware.downloadUrl(fw.id, 'd_anydevice00000');
    // The first transfer is under way (its body not read), so the second finds no slot.
    const first = await getOwn(url);
    assert.equal(first.statusCode, 200);
    const second = await getOwn(url);
    assert.equal(second.statusCode, 503);
    assert.equal(second.headers['retry-after'], '5');
    let text = '';
    for await (const chunk of second) text += chunk;
    assert.equal(JSON.parse(text).code, 'E_UNAVAILABLE');
    // The device drops the link: the slot comes back.
    first.destroy();
    const third = await eventually(
      async () => {
        const r = await getOwn(url);
        if (r.statusCode === 200) return r;
        r.resume();
        return undefined;
      },
      5000,
      'a free slot',
    );
    let size = 0;
    for await (const chunk of third) size += (chunk as Buffer).length;
    assert.equal(size, image.length);
  } finally {
    await q.stop();
  }
});
