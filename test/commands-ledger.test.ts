import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';

// The ledger and the audit log of commands sent at once are written with group commit (one
// transaction for the writes of a moment): every command and every request must still be there.

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

/** A light that answers each command on its result topic; `ok` decides its answer. */
async function light(ok = true) {
  const d = await p.provision('light');
  const c = await p.connect(d.id, d.secret);
  c.on('message', (topic, payload) => {
    if (topic !== `devices/${d.id}/commands`) return;
    const cmd = JSON.parse(payload.toString('utf8')) as { id: string };
    void c.publishAsync(`devices/${d.id}/commands/result`, JSON.stringify(ok ? { id: cmd.id, ok: true } : { id: cmd.id, ok: false, error: 'jammed' }), {
      qos: 1,
    });
  });
  await c.subscribeAsync(`devices/${d.id}/commands`, { qos: 1 });
  await eventually(async () => (await p.device(d.id)).online === true, 3000, 'light online');
  return { ...d, c };
}

async function audited(deviceId: string): Promise<any[]> {
  const r = await p.api('GET', `/api/v1/audit?action=device.command&limit=1000`);
  assert.equal(r.status, 200);
  return r.body.items.filter((e: any) => e.targetId === deviceId);
}

test('commands sent together: each is answered, each answer is in the ledger once the caller has it, and each request is audited', async () => {
  const lights = await Promise.all(Array.from({ length: 5 }, (_, i) => light(i !== 4)));
  const perLight = 8;
  // Many in flight at once, so that the ledger's writes share transactions.
  const answers = await Promise.all(
    lights.flatMap((l) =>
      Array.from({ length: perLight }, async (_, i) => {
        const r = await p.api('POST', `/api/v1/devices/${l.id}/commands`, { action: 'toggle', timeoutMs: 5000, params: {} });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        // Answered means stored: the ledger already has the device's answer.
        const rec = await p.api('GET', `/api/v1/devices/${l.id}/commands/${r.body.id}`);
        assert.equal(rec.status, 200);
        assert.equal(rec.body.status, 'answered');
        assert.equal(rec.body.ok, r.body.ok);
        return { light: l.id, i, body: r.body };
      }),
    ),
  );
  assert.equal(answers.length, lights.length * perLight);
  for (const [n, l] of lights.entries()) {
    const mine = answers.filter((a) => a.light === l.id);
    assert.ok(
      mine.every((a) => a.body.ok === (n !== 4)),
      'each answer is the one its device gave',
    );
    if (n === 4) assert.ok(mine.every((a) => a.body.error === 'jammed'));
    const items = (await p.api('GET', `/api/v1/devices/${l.id}/commands?limit=100`)).body.items;
    assert.deepEqual(new Set(items.map((c: any) => c.id)), new Set(mine.map((a) => a.body.id)), 'the ledger holds every command once');
    assert.ok(items.every((c: any) => c.status === 'answered' && c.source.startsWith('user:')));
    const entries = await audited(l.id);
    assert.equal(entries.length, perLight, 'one audit entry per request');
    assert.ok(entries.every((e: any) => e.details.action === 'toggle'));
  }
});

test('a command that is not sent is audited all the same, and leaves nothing in the ledger', async () => {
  const l = await light();
  await l.c.endAsync();
  await eventually(async () => (await p.device(l.id)).online === false, 5000, 'light offline');
  const offline = await p.api('POST', `/api/v1/devices/${l.id}/commands`, { action: 'toggle' });
  assert.equal(offline.status, 409);
  assert.equal(offline.body.code, 'E_DEVICE_OFFLINE');
  const wrong = await p.api('POST', `/api/v1/devices/${l.id}/commands`, { action: 'no-such-action' });
  assert.equal(wrong.body.code, 'E_MODEL_MISMATCH');
  // Answered means audited: the entries are there at once.
  const entries = await audited(l.id);
  assert.deepEqual(entries.map((e: any) => e.details.action).sort(), ['no-such-action', 'toggle']);
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${l.id}/commands`)).body.items, []);
});

test('a command sent and answered survives a restart in the ledger and the audit log', async () => {
  const l = await light();
  const r = await p.api('POST', `/api/v1/devices/${l.id}/commands`, { action: 'toggle' });
  assert.equal(r.status, 200);
  await p.stop(false);
  p = await startPlatform({ dataDir: p.dataDir });
  const rec = await p.api('GET', `/api/v1/devices/${l.id}/commands/${r.body.id}`);
  assert.equal(rec.body.status, 'answered');
  assert.equal(rec.body.ok, true);
  assert.equal((await audited(l.id)).length, 1);
});
