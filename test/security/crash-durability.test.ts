import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { storeEnv } from '../helpers/platform.ts';
import { freePort } from '../helpers/ports.ts';

/**
 * "A PUBACK means the message is stored" (docs/protocol.md), held against the worst a process
 * can suffer: the embedded Hearth runs as a child process, devices publish QoS 1 reports as fast as
 * they can, and the process is SIGKILLed in the middle of the stream. After a restart on the same
 * data directory every report whose PUBACK a device received must be in history.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'hearth.js');
const ADMIN = { email: 'operator@crash.test', password: 'operator-password-1' };

const dirs: string[] = [];
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Server {
  child: ChildProcess;
  base: string;
  mqttUrl: string;
  token: string;
  output: () => string;
}

/** Starts `hearth start` on the data directory and waits until it is ready; logs in as the operator. */
async function startHearth(dataDir: string): Promise<Server> {
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HEARTH_')) env[k] = v;
  Object.assign(env, {
    HEARTH_HTTP_PORT: String(httpPort),
    HEARTH_MQTT_PORT: String(mqttPort),
    HEARTH_HTTP_HOST: '127.0.0.1',
    HEARTH_MQTT_HOST: '127.0.0.1',
    HEARTH_DATA_DIR: dataDir,
    HEARTH_DEMO: '0',
    HEARTH_ADMIN_EMAIL: ADMIN.email,
    HEARTH_ADMIN_PASSWORD: ADMIN.password,
    HEARTH_LOG_LEVEL: 'warn',
    HEARTH_RATE_LIMIT_PER_MINUTE: '1000000',
    HEARTH_RATE_LIMIT_BURST: '100000',
    HEARTH_CONNECT_BURST: '10000',
    ...(await storeEnv(dataDir)),
  });
  const child = spawn(process.execPath, [BIN, 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const base = `http://127.0.0.1:${httpPort}`;
  const end = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`hearth exited (${child.exitCode}) before it was ready:\n${out}`);
    if (Date.now() > end) throw new Error(`hearth was not ready within 30 s:\n${out}`);
    const ok = await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const login = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(ADMIN) });
  assert.equal(login.status, 200, await login.clone().text());
  const token = ((await login.json()) as { token: string }).token;
  return { child, base, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, token, output: () => out };
}

async function api(s: Server, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(s.base + path, {
    method,
    headers: { authorization: `Bearer ${s.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

function kill(s: Server): Promise<void> {
  return new Promise((resolve) => {
    if (s.child.exitCode !== null || s.child.signalCode !== null) return resolve();
    s.child.once('exit', () => resolve());
    s.child.kill('SIGKILL');
  });
}

function connect(url: string, id: string, secret: string): Promise<MqttClient> {
  const c = mqtt.connect(url, { clientId: id, username: id, password: secret, reconnectPeriod: 0, connectTimeout: 5000 });
  c.on('error', () => undefined); // the kill closes the socket under it
  return new Promise((resolve, reject) => {
    c.once('connect', () => {
      (c.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      resolve(c);
    });
    c.once('error', reject);
  });
}

/** Distinct `ts` per report (t0 + i) names it in history; brightness varies as well. */
const T0 = Date.now() - 3_600_000;

interface Run {
  /** Per device: the `i` of every report whose PUBACK arrived before the kill. */
  acked: Map<string, Set<number>>;
  sent: number;
}

/**
 * Publishes `perDevice` reports from each device (all at once, or `perSecond` per device) and
 * SIGKILLs the server as soon as `killAfter` PUBACKs have arrived in total.
 */
async function publishAndKill(
  s: Server,
  devices: Array<{ id: string; secret: string }>,
  perDevice: number,
  killAfter: number,
  perSecond?: number,
): Promise<Run> {
  const acked = new Map<string, Set<number>>(devices.map((d) => [d.id, new Set<number>()]));
  let total = 0;
  let sent = 0;
  let killing: Promise<void> | undefined;
  const clients = await Promise.all(devices.map((d) => connect(s.mqttUrl, d.id, d.secret)));
  const killed = new Promise<void>((resolve) => {
    const onAck = (id: string, i: number) => (err?: Error) => {
      if (err || killing) return; // no PUBACK, or it came after the kill was decided: not counted
      acked.get(id)!.add(i);
      if (++total >= killAfter) {
        killing = kill(s);
        void killing.then(resolve);
      }
    };
    const publish = (k: number, i: number) => {
      const d = devices[k];
      sent++;
      clients[k].publish(`devices/${d.id}/properties`, JSON.stringify({ brightness: i % 101, ts: T0 + i }), { qos: 1 }, onAck(d.id, i));
    };
    if (perSecond === undefined) {
      for (let i = 0; i < perDevice; i++) for (let k = 0; k < devices.length; k++) publish(k, i);
      return;
    }
    let i = 0;
    const start = Date.now();
    const timer = setInterval(() => {
      if (killing) return clearInterval(timer);
      const due = Math.min(perDevice, Math.floor(((Date.now() - start) / 1000) * perSecond));
      for (; i < due; i++) for (let k = 0; k < devices.length; k++) publish(k, i);
      if (i >= perDevice) clearInterval(timer);
    }, 5);
  });
  await killed;
  for (const c of clients) c.end(true);
  return { acked, sent };
}

/** Reads every report of the device back from history: `i` values, each with how often it is there. */
async function historyOf(s: Server, id: string, perDevice: number): Promise<Map<number, number>> {
  const body = await api(s, 'GET', `/api/v1/devices/${id}/history?property=brightness&from=${T0}&to=${T0 + perDevice}&limit=10000`);
  const seen = new Map<number, number>();
  for (const p of body.points as Array<{ ts: string }>) {
    const i = Date.parse(p.ts) - T0;
    seen.set(i, (seen.get(i) ?? 0) + 1);
  }
  return seen;
}

/** Restarts on the data directory and waits until every acknowledged report is in history (or says which are not). */
async function missingAfterRestart(
  dataDir: string,
  run: Run,
  perDevice: number,
): Promise<{ missing: number; duplicates: number; acked: number; server: Server }> {
  const s = await startHearth(dataDir);
  const acked = [...run.acked.values()].reduce((n, set) => n + set.size, 0);
  // Redelivered messages are handled right after the start; give them a moment, not a fixed sleep.
  const end = Date.now() + 15_000;
  for (;;) {
    let missing = 0;
    let duplicates = 0;
    for (const [id, set] of run.acked) {
      const seen = await historyOf(s, id, perDevice);
      for (const i of set) if (!seen.has(i)) missing++;
      for (const n of seen.values()) if (n > 1) duplicates++;
    }
    if (missing === 0 || Date.now() > end) return { missing, duplicates, acked, server: s };
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('crash durability: SIGKILL under load loses no acknowledged report', { concurrency: 1 }, () => {
  /** The server the previous test restarted is where the next one crashes (a crash right after recovering, and one start fewer). */
  let current: { dataDir: string; s: Server } | undefined;
  after(async () => {
    if (current) await kill(current.s);
  });

  async function setUp(devices: number) {
    if (!current) {
      const dataDir = mkdtempSync(join(tmpdir(), 'hearth-crash-'));
      dirs.push(dataDir);
      current = { dataDir, s: await startHearth(dataDir) };
    }
    const created: Array<{ id: string; secret: string }> = [];
    for (let k = 0; k < devices; k++) created.push(await api(current.s, 'POST', '/api/v1/devices', { product: 'light', name: `crash lamp ${k}` }));
    return { ...current, devices: created };
  }

  test('10,000 QoS 1 reports as fast as they go, SIGKILL after 5,000 PUBACKs: every acknowledged report is in history', async () => {
    const perDevice = 2500;
    const { dataDir, s, devices } = await setUp(4);
    const run = await publishAndKill(s, devices, perDevice, 5000);
    current = undefined;
    const { missing, duplicates, acked, server } = await missingAfterRestart(dataDir, run, perDevice);
    current = { dataDir, s: server };
    assert.ok(acked >= 5000, `the kill came after 5,000 PUBACKs (${acked})`);
    assert.equal(missing, 0, `${missing} of ${acked} acknowledged reports are missing from history after the crash`);
    assert.equal(duplicates, 0, 'a redelivered report is recorded once');
  });

  test('paced at 1,000 reports/s, SIGKILL after 800 PUBACKs: every acknowledged report is in history', async () => {
    const perDevice = 1000;
    const { dataDir, s, devices } = await setUp(2);
    const run = await publishAndKill(s, devices, perDevice, 800, 500);
    current = undefined;
    const { missing, acked, server } = await missingAfterRestart(dataDir, run, perDevice);
    current = { dataDir, s: server };
    assert.ok(acked >= 800, `the kill came after 800 PUBACKs (${acked})`);
    assert.equal(missing, 0, `${missing} of ${acked} acknowledged reports are missing from history after the crash`);
  });

  test('device HTTP: every report answered 202 before a SIGKILL is in history', async () => {
    const perDevice = 600;
    const {
      dataDir,
      s,
      devices: [lamp],
    } = await setUp(1);
    const auth = `Basic ${Buffer.from(`${lamp.id}:${lamp.secret}`).toString('base64')}`;
    const answered = new Set<number>();
    let next = 0;
    let killing: Promise<void> | undefined;
    // 20 requests in flight; the kill comes once 300 were answered 202, with others under way.
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (!killing && next < perDevice) {
          const i = next++;
          const res = await fetch(`${s.base}/api/v1/devices/${lamp.id}/messages/properties`, {
            method: 'POST',
            headers: { authorization: auth, 'content-type': 'application/json' },
            body: JSON.stringify({ brightness: i % 101, ts: T0 + i }),
          }).catch(() => undefined);
          if (res?.status === 202 && !killing) {
            answered.add(i);
            if (answered.size >= 300) killing = kill(s);
          }
          await res?.text().catch(() => undefined);
        }
      }),
    );
    await killing;
    current = undefined;
    const { missing, acked, server } = await missingAfterRestart(dataDir, { acked: new Map([[lamp.id, answered]]), sent: next }, perDevice);
    current = { dataDir, s: server };
    assert.ok(acked >= 300, `the kill came after 300 answers (${acked})`);
    assert.equal(missing, 0, `${missing} of ${acked} reports answered 202 are missing from history after the crash`);
  });

  test('an API call answered is audited: SIGKILL right after the answers, every audit entry is there after the restart', async () => {
    const {
      dataDir,
      s,
      devices: [lamp],
    } = await setUp(1);
    // Audited calls of two kinds, answered one by one; the kill follows the last answer at once.
    const keys: string[] = [];
    for (let i = 0; i < 10; i++) keys.push((await api(s, 'POST', '/api/v1/keys', { name: `crash key ${i}`, scopes: ['devices:read'] })).id);
    await api(s, 'PATCH', `/api/v1/devices/${lamp.id}/shadow`, { desired: { brightness: 42 } });
    await kill(s);
    current = undefined;
    const again = await startHearth(dataDir);
    current = { dataDir, s: again };
    const audited = (await api(again, 'GET', '/api/v1/audit?limit=1000')).items as Array<{ action: string; targetId: string }>;
    const created = new Set(audited.filter((e) => e.action === 'key.create').map((e) => e.targetId));
    assert.deepEqual(
      keys.filter((k) => !created.has(k)),
      [],
      'every key answered 201 has its key.create entry',
    );
    assert.ok(
      audited.some((e) => e.action === 'device.desired' && e.targetId === lamp.id),
      'the desired-state change answered 200 has its entry',
    );
    assert.equal((await api(again, 'GET', `/api/v1/devices/${lamp.id}`)).shadow.desired.brightness, 42, 'and the desired state it set is stored');
  });
});
