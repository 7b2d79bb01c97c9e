import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { eventually, storeEnv, TEST_STORE } from './helpers/platform.ts';
import { ConfigSchema, envName } from '../src/core/config/config-schema.ts';
import { exitWithin, plainLines, run, start, startServer, tempDir, waitFor } from './helpers/cli.ts';

// The tests spawn separate processes: a few run at a time to keep the file fast (the servers mostly wait).
describe('the hearth command', { concurrency: 3 }, () => {
  test('start with the demo: banner, login with the printed password, demo devices online, SIGTERM exits 0', async () => {
    const s = await startServer();
    const { banner, base } = s;
    assert.match(banner, /Hearth is running\./);
    assert.match(banner, new RegExp(`API docs\\s+http://localhost:${s.httpPort}/docs`));
    assert.match(banner, new RegExp(`mqtt://localhost:${s.mqttPort}`));
    const login = /Operator login:\s+(\S+)\s+password: (\S+)/.exec(banner);
    assert.ok(login, `the banner shows the generated operator password:\n${banner}`);
    const [, email, password] = login;
    const pub = /mosquitto_pub -h \S+ -p (\d+) -i (\S+) -u (\S+) -P (\S+) .*-t devices\/(\S+)\/properties/.exec(banner);
    assert.ok(pub, `the banner shows a mosquitto_pub line:\n${banner}`);
    assert.equal(Number(pub[1]), s.mqttPort);
    assert.equal(pub[2], pub[3]);
    assert.equal(pub[2], pub[5]);
    const hubId = /Demo: hub (\S+) with (\d+) simulated sub-devices/.exec(banner);
    assert.ok(hubId, banner);
    // every command line of the banner is complete: balanced parentheses and quotes
    for (const line of banner.split('\n').filter((l) => /curl|mosquitto/.test(l))) {
      const cmd = line.replace(/\s+\((the simulated light answers|it waits for your answer)\)\s*$/, '');
      assert.equal((cmd.match(/\(/g) ?? []).length, (cmd.match(/\)/g) ?? []).length, `balanced parentheses: ${line}`);
      assert.equal((cmd.match(/'/g) ?? []).length % 2, 0, `balanced quotes: ${line}`);
    }
    // the log records are JSON lines
    const logs = s.proc
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    assert.ok(logs.length > 0, 'there are JSON log lines');

    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready' });
    const docs = await fetch(`${base}/docs/json`);
    assert.equal(docs.status, 200);

    const res = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    assert.equal(res.status, 200);
    const { token } = (await res.json()) as { token: string };
    const auth = { authorization: `Bearer ${token}` };
    const online = await eventually(
      async () => {
        const r = await fetch(`${base}/api/v1/devices/${hubId[1]}/children`, { headers: auth });
        const body = (await r.json()) as { items: Array<{ online: boolean; product: string }> };
        const n = body.items.filter((d) => d.online).length;
        return n >= 5 ? body.items : undefined;
      },
      10_000,
      'demo children online',
    );
    assert.ok(online.length >= 5);
    const hub = (await (await fetch(`${base}/api/v1/devices/${hubId[1]}`, { headers: auth })).json()) as { online: boolean; product: string };
    assert.equal(hub.product, 'hub');
    assert.equal(hub.online, true);

    // the banner's "send one" goes to a simulated device that answers
    const sendOne = /Send one:\s+curl .* (http:\/\/\S+\/commands) -d '([^']+)'/.exec(banner);
    assert.ok(sendOne, `the banner shows a command to send:\n${banner}`);
    const sent = await fetch(sendOne[1].replace('localhost', '127.0.0.1'), {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: sendOne[2],
    });
    assert.equal(sent.status, 200, await sent.clone().text());
    assert.equal(((await sent.json()) as { ok: boolean }).ok, true);

    // the desk lamp of the banner can be driven with its printed credentials
    const [, , lampId, , secret] = pub;
    const lamp = mqtt.connect(`mqtt://127.0.0.1:${s.mqttPort}`, { clientId: lampId, username: lampId, password: secret, reconnectPeriod: 0 });
    await new Promise<void>((resolve, reject) => {
      lamp.once('connect', () => resolve());
      lamp.once('error', reject);
    });
    await lamp.publishAsync(`devices/${lampId}/properties`, JSON.stringify({ on: true, brightness: 80 }), { qos: 1 });
    await eventually(
      async () => {
        const r = (await (await fetch(`${base}/api/v1/devices/${lampId}`, { headers: auth })).json()) as { shadow: { reported: { brightness?: number } } };
        return r.shadow.reported.brightness === 80;
      },
      3000,
      'the lamp report',
    );
    await lamp.endAsync();
    await eventually(
      async () => {
        const r = (await (await fetch(`${base}/api/v1/devices/${lampId}`, { headers: auth })).json()) as { online: boolean };
        return r.online === false;
      },
      3000,
      'the lamp offline',
    );

    s.proc.child.kill('SIGTERM');
    const exit = await exitWithin(s.proc, 8000);
    assert.equal(exit.killed, false, `exited by itself after SIGTERM\n${s.proc.stdout().slice(-2000)}`);
    assert.equal(exit.code, 0, s.proc.stderr());
    assert.match(s.proc.stdout(), /"msg":"stopped"/);

    // a second start on the same data directory (without the demo this time) keeps the account and
    // the devices, and prints no new password
    const again = start(['start'], {
      HEARTH_HTTP_PORT: String(s.httpPort),
      HEARTH_MQTT_PORT: String(s.mqttPort),
      HEARTH_HTTP_HOST: '127.0.0.1',
      HEARTH_MQTT_HOST: '127.0.0.1',
      HEARTH_DATA_DIR: s.dataDir,
      HEARTH_DEMO: '0',
      ...(await storeEnv(s.dataDir)),
    });
    const banner2 = await waitFor(
      'the second banner',
      () => {
        const text = plainLines(again.stdout()).join('\n');
        return /Operator login:.*\n/.test(text) ? text : undefined;
      },
      again,
    );
    await new Promise((r) => setTimeout(r, 200)); // see 'SIGTERM soon after start'
    assert.ok(banner2.includes(`Operator login:  ${email}`), banner2);
    assert.doesNotMatch(banner2, /password: /);
    assert.doesNotMatch(banner2, /mosquitto_pub/, 'no demo when HEARTH_DEMO=0');
    const relog = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }),
    });
    assert.equal(relog.status, 200);
    const token2 = ((await relog.json()) as { token: string }).token;
    const kids = (await (await fetch(`${base}/api/v1/devices/${hubId[1]}/children`, { headers: { authorization: `Bearer ${token2}` } })).json()) as {
      items: Array<{ online: boolean }>;
    };
    assert.equal(kids.items.length, online.length, 'the demo devices are still there');
    assert.ok(
      kids.items.every((d) => d.online === false),
      'and offline: nothing simulates them now',
    );
    again.child.kill('SIGTERM');
    const exit2 = await exitWithin(again, 8000);
    assert.equal(exit2.killed, false);
    assert.equal(exit2.code, 0);
  });

  test("the banner's pairing code claims the demo hub; after a restart the banner says it is claimed", async () => {
    const s = await startServer();
    const code = /Pairing code (\S+): an app user claims/.exec(s.banner);
    assert.ok(code, s.banner);
    const post = (path: string, body: unknown, token?: string) =>
      fetch(`${s.base}/api/v1${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
    assert.equal((await post('/auth/signup', { email: 'app@example.test', password: 'app-password-1' })).status, 201);
    const { token } = (await (await post('/auth/login', { email: 'app@example.test', password: 'app-password-1' })).json()) as { token: string };
    const home = (await (await post('/homes', { name: 'Flat', timezone: 'Europe/Berlin' }, token)).json()) as { id: string };
    const claim = await post(`/homes/${home.id}/devices`, { pairingCode: code[1] }, token);
    assert.equal(claim.status, 201, await claim.clone().text());
    s.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(s.proc, 8000)).code, 0);
    const again = await startServer({}, { dataDir: s.dataDir });
    assert.match(again.banner, /The hub belongs to a home already/);
    assert.doesNotMatch(again.banner, /Pairing code/);
    again.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(again.proc, 8000)).code, 0);
  });

  test('SIGTERM exits promptly while a device is connected', async () => {
    const s = await startServer();
    const pub = /-i (\S+) -u \S+ -P (\S+)/.exec(s.banner)!;
    const [, lampId, secret] = pub;
    const lamp = mqtt.connect(`mqtt://127.0.0.1:${s.mqttPort}`, { clientId: lampId, username: lampId, password: secret, reconnectPeriod: 0 });
    lamp.on('error', () => undefined);
    await new Promise<void>((resolve) => lamp.once('connect', () => resolve()));
    const lampClosed = new Promise<void>((resolve) => lamp.once('close', () => resolve()));
    // past the demo's 5 s start-up timer (see the next test), so that only the connection matters
    await new Promise((r) => setTimeout(r, Math.max(0, s.startedAt + 5200 - Date.now())));
    s.proc.child.kill('SIGTERM');
    const exit = await exitWithin(s.proc, 3000);
    lamp.end(true);
    await lampClosed;
    assert.equal(exit.killed, false, 'the process exited within 3 s of SIGTERM');
    assert.equal(exit.code, 0);
  });

  test('SIGTERM soon after start exits promptly', async () => {
    const s = await startServer();
    // main.ts installs its signal handlers right after printing the banner: give it a moment
    await new Promise((r) => setTimeout(r, 200));
    const t = Date.now();
    s.proc.child.kill('SIGTERM');
    // Before the demo's 5 s start-up timer (started before the banner) could fire: a stop that waited
    // for it would take over 5 s. The bound is loose because a loaded CI machine is slow; a unit that
    // took a second or more to stop is named in the log, and so in the message.
    const exit = await exitWithin(s.proc, 4500);
    const slow = s.proc
      .stdout()
      .split('\n')
      .filter((l) => /slow to stop|shutting down|"stopped"/.test(l));
    assert.equal(exit.killed, false, `the process exited within 4.5 s of SIGTERM (it took ${Date.now() - t} ms)\n${slow.join('\n')}`);
    assert.equal(exit.code, 0);
  });

  test('help lists the commands and the configuration variables, each with a description', async () => {
    const r = await run(['help'], {});
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Usage: hearth <command>/);
    for (const s of [
      'start',
      'migrate',
      'simulate',
      'admin',
      'HEARTH_HTTP_PORT',
      'HEARTH_MQTT_PORT',
      'HEARTH_DATA_DIR',
      'HEARTH_DEMO',
      'HEARTH_ADMIN_PASSWORD',
    ])
      assert.ok(r.stdout.includes(s), `help mentions ${s}`);
    for (const v of ['HEARTH_CONFIG', ...Object.keys(ConfigSchema.properties).map(envName)]) {
      const line = r.stdout.split('\n').find((l) => l.trim().startsWith(v + ' '));
      assert.ok(line, `help lists ${v}`);
      assert.ok(
        line
          .slice(line.indexOf(v) + v.length)
          .replace(/\(default [^)]*\)/, '')
          .trim().length > 10,
        `help describes ${v}: ${line}`,
      );
    }
    const sub = await run(['admin', '--help'], {});
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /reset-password/);
    const unknown = await run(['frobnicate'], {});
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
  });

  test('bad configuration exits with 78 and names the variable', async () => {
    const dataDir = tempDir();
    const [port, demo, range] = await Promise.all([
      run(['start'], { HEARTH_HTTP_PORT: 'notaport', HEARTH_DATA_DIR: dataDir }),
      run(['start'], { HEARTH_DEMO: 'maybe', HEARTH_DATA_DIR: dataDir }),
      run(['start'], { HEARTH_MQTT_PORT: '70000', HEARTH_DATA_DIR: dataDir }),
    ]);
    assert.equal(port.code, 78, port.stderr);
    assert.match(port.stderr, /HEARTH_HTTP_PORT/);
    assert.match(port.stderr, /notaport/);
    assert.equal(demo.code, 78, demo.stderr);
    assert.match(demo.stderr, /HEARTH_DEMO/);
    assert.match(demo.stderr, /maybe/);
    assert.equal(range.code, 78, range.stderr);
    assert.match(range.stderr, /HEARTH_MQTT_PORT/);
    assert.doesNotMatch(port.stderr + demo.stderr + range.stderr, /\n\s+at /, 'no stack trace');
    assert.ok(!existsSync(join(dataDir, 'hearth.sqlite')), 'nothing was started');
  });

  test('migrate applies the migrations once, then says the database is up to date', async () => {
    const dataDir = tempDir();
    const store = await storeEnv(dataDir);
    const first = await run(['migrate'], { HEARTH_DATA_DIR: dataDir, ...store });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^applied: \S+/m);
    assert.equal(existsSync(join(dataDir, 'hearth.sqlite')), TEST_STORE === 'sqlite', 'the SQLite file only when no database URL is set');
    const second = await run(['migrate'], { HEARTH_DATA_DIR: dataDir, ...store });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /database is up to date/);
    assert.doesNotMatch(second.stdout, /applied:/);
  });
});
