import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { createServer, type Server } from 'node:net';
import { existsSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { storeEnv, TEST_STORE } from './helpers/platform.ts';
import { freePort } from './helpers/ports.ts';
import { exitWithin, plainLines, run, start, startServer, tempDir, waitFor } from './helpers/cli.ts';

/** Holds a port the way another program would. */
async function occupy(port: number): Promise<Server> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
  return s;
}

async function login(base: string, email: string, password: string) {
  const res = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  return { status: res.status, body: (await res.json()) as { token?: string; refreshToken?: string } };
}

const NO_STACK = /\n\s+at /;
const OPERATOR = /Operator login:\s+(\S+)\s+password: (\S+)/;

describe('the first hour', { concurrency: 3 }, () => {
  test('a busy port stops the start before anything is created: one line naming the variable, exit 78; the next start still lets the operator in', async () => {
    const dataDir = tempDir();
    const [httpPort, mqttPort] = [await freePort(), await freePort()];
    const busy = await occupy(mqttPort);
    const env = { HEARTH_HTTP_HOST: '127.0.0.1', HEARTH_MQTT_HOST: '127.0.0.1', HEARTH_DATA_DIR: dataDir, HEARTH_DEMO: '0', ...(await storeEnv(dataDir)) };
    const failed = await run(['start'], { ...env, HEARTH_HTTP_PORT: String(httpPort), HEARTH_MQTT_PORT: String(mqttPort) });
    busy.close();
    assert.equal(failed.code, 78, failed.stderr);
    assert.equal(failed.stderr, `hearth: port ${mqttPort} is in use (HEARTH_MQTT_PORT); set HEARTH_MQTT_PORT to a free port\n`);
    assert.doesNotMatch(failed.stderr + failed.stdout, NO_STACK);
    assert.doesNotMatch(failed.stdout, /Operator login/);

    // the same with the HTTP port
    const busyHttp = await occupy(httpPort);
    const failedHttp = await run(['start'], { ...env, HEARTH_HTTP_PORT: String(httpPort), HEARTH_MQTT_PORT: String(await freePort()) });
    busyHttp.close();
    assert.equal(failedHttp.code, 78, failedHttp.stderr);
    assert.match(failedHttp.stderr, new RegExp(`^hearth: port ${httpPort} is in use \\(HEARTH_HTTP_PORT\\); set HEARTH_HTTP_PORT to a free port\\n$`));

    // a second start on free ports creates the operator now and its printed password works
    const s = await startServer({ HEARTH_DEMO: '0' }, { dataDir, until: /Operator login:.*\n/ });
    const op = OPERATOR.exec(s.banner);
    assert.ok(op, `the banner shows the generated password:\n${s.banner}`);
    assert.equal((await login(s.base, op[1], op[2])).status, 200);
    s.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(s.proc, 8000)).code, 0);
  });

  test('the generated password stays retrievable until the first sign-in, then is gone; reset-password works on the store', async () => {
    const s = await startServer({ HEARTH_DEMO: '0' }, { until: /Operator login:.*\n.*\n/ });
    const op = OPERATOR.exec(s.banner)!;
    assert.ok(op, s.banner);
    const [, email, password] = op;
    const env = { HEARTH_DATA_DIR: s.dataDir, ...(await storeEnv(s.dataDir)) };
    const file = join(s.dataDir, 'initial-operator-password');
    assert.match(s.banner, /initial-operator-password until the first sign-in/);
    assert.equal(statSync(file).mode & 0o777, 0o600, 'only the owner may read it');
    const shown = await run(['admin', 'show-initial-password'], env);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stdout, `${password}\n`);

    // a restart before any sign-in keeps it
    s.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(s.proc, 8000)).code, 0);
    const again = await startServer({ HEARTH_DEMO: '0' }, { dataDir: s.dataDir, until: /Operator login:.*\n.*\n/ });
    assert.ok(existsSync(file));
    assert.match(again.banner, /generated password not used yet/);
    const session = await login(again.base, email, password);
    assert.equal(session.status, 200);
    assert.ok(!existsSync(file), 'removed at the first sign-in, not only at the next start');

    // signed in once: it stays gone, and the command says how to get back in
    again.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(again.proc, 8000)).code, 0);
    const third = await startServer({ HEARTH_DEMO: '0' }, { dataDir: s.dataDir, until: /Operator login:.*\n/ });
    assert.ok(!existsSync(file), 'removed after the first sign-in');
    const gone = await run(['admin', 'show-initial-password'], env);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /reset-password/);
    assert.doesNotMatch(gone.stderr, NO_STACK);

    // reset-password: generated and printed, the old password and sessions end
    const reset = await run(['admin', 'reset-password'], env);
    assert.equal(reset.code, 0, reset.stderr);
    const fresh = new RegExp(`password of operator ${email.replace(/[.]/g, '\\.')} reset to: (\\S+)`).exec(reset.stdout);
    assert.ok(fresh, reset.stdout);
    assert.equal((await login(third.base, email, password)).status, 401);
    assert.equal((await login(third.base, email, fresh[1])).status, 200);
    const refreshed = await fetch(`${third.base}/api/v1/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: session.body.refreshToken }),
    });
    assert.equal(refreshed.status, 401, 'the sessions from before the reset are ended');
    const chosen = await run(['admin', 'reset-password', '--email', email, '--password', 'a-chosen-password'], env);
    assert.equal(chosen.code, 0, chosen.stderr);
    assert.equal((await login(third.base, email, 'a-chosen-password')).status, 200);
    const bad = await run(['admin', 'reset-password', '--email', 'nobody@example.com'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no operator account has the e-mail nobody@example.com/);
    third.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(third.proc, 8000)).code, 0);

    // HEARTH_ADMIN_PASSWORD alone (without the e-mail) sets the operator's password on a later start
    const fourth = await startServer(
      { HEARTH_DEMO: '0', HEARTH_ADMIN_PASSWORD: 'set-by-the-environment' },
      { dataDir: s.dataDir, until: /Operator login:.*\n/ },
    );
    assert.equal((await login(fourth.base, email, 'set-by-the-environment')).status, 200);
    fourth.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(fourth.proc, 8000)).code, 0);
  });

  test('two servers on one data directory: the second refuses in one line, exit 78; a lock left by a dead process is taken over', {
    skip: TEST_STORE === 'postgres' && 'the lock is for the embedded store',
  }, async () => {
    const s = await startServer({ HEARTH_DEMO: '0' }, { until: /Operator login:.*\n/ });
    const second = await run(['start'], {
      HEARTH_HTTP_PORT: String(await freePort()),
      HEARTH_MQTT_PORT: String(await freePort()),
      HEARTH_HTTP_HOST: '127.0.0.1',
      HEARTH_MQTT_HOST: '127.0.0.1',
      HEARTH_DATA_DIR: s.dataDir,
      HEARTH_DEMO: '0',
    });
    assert.equal(second.code, 78, second.stderr);
    assert.match(
      second.stderr,
      new RegExp(
        `^hearth: data directory \\S+ is in use by another Hearth \\(pid ${s.proc.child.pid}, HTTP ${s.httpPort}, MQTT ${s.mqttPort}\\); stop it, or set HEARTH_DATA_DIR to another directory\\n$`,
      ),
    );
    assert.equal((await fetch(`${s.base}/readyz`)).status, 200, 'the first one goes on');
    s.proc.child.kill('SIGKILL');
    await s.proc.exited;

    // the lock of the killed process names a pid that is gone: the next start takes it over
    const lock = join(s.dataDir, 'hearth.lock');
    assert.ok(existsSync(lock));
    const next = await startServer({ HEARTH_DEMO: '0' }, { dataDir: s.dataDir, until: /Operator login:.*\n/ });
    next.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(next.proc, 8000)).code, 0);
    assert.ok(!existsSync(lock), 'released on stop');

    // a lock of a live pid (this test process) that nobody has touched for a minute is stale too
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: 'elsewhere', startedAt: new Date().toISOString(), nonce: 'x' }));
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    const after = await startServer({ HEARTH_DEMO: '0' }, { dataDir: s.dataDir, until: /Operator login:.*\n/ });
    after.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(after.proc, 8000)).code, 0);

    // on this host the pid decides: a live holder whose event loop stalled past the heartbeat keeps its lock
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), nonce: 'y' }));
    utimesSync(lock, old, old);
    const stalled = await run(['start'], { HEARTH_DATA_DIR: s.dataDir, HEARTH_DEMO: '0', HEARTH_HTTP_PORT: '0', HEARTH_MQTT_PORT: '0' });
    assert.equal(stalled.code, 78, stalled.stderr);
    assert.match(stalled.stderr, /is in use by another Hearth/);
  });

  test('hearth simulate: help, one line when nothing runs, the running server found, the same hub and its pairing code every run', async () => {
    const help = await run(['simulate', '--help'], {});
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: hearth simulate/);
    const wrong = await run(['simulate', '--bogus'], {});
    assert.equal(wrong.code, 2);
    assert.doesNotMatch(wrong.stderr, NO_STACK);
    const port = await freePort();
    const none = await run(['simulate', '--api', `http://localhost:${port}`, '--password', 'whatever-it-is'], { HEARTH_DATA_DIR: tempDir() });
    assert.equal(none.code, 1);
    assert.equal(none.stderr, `hearth simulate: no Hearth at http://localhost:${port} — is it running? set --api/--mqtt\n`);

    // no ports, no password given: the data directory says where the server is, and holds the first password
    const s = await startServer({ HEARTH_DEMO: '0' }, { until: /Operator login:.*\n/ });
    // Embedded, the data directory's lock tells the ports; cluster nodes share no data directory, so there the variables do.
    const ports: Record<string, string> = TEST_STORE === 'postgres' ? { HEARTH_HTTP_PORT: String(s.httpPort), HEARTH_MQTT_PORT: String(s.mqttPort) } : {};
    const env = { HEARTH_DATA_DIR: s.dataDir, ...ports, ...(await storeEnv(s.dataDir)) };
    const runs: Array<{ hub: string; code: string }> = [];
    for (let i = 0; i < 2; i++) {
      const sim = start(['simulate'], env);
      const line = await waitFor(
        'the simulator running',
        () => /simulating hub (\S+) \(pairing code (\S+)\) with 7 sub-devices on mqtt:\/\/localhost:(\d+)/.exec(sim.stdout()) ?? undefined,
        sim,
      );
      assert.equal(Number(line[3]), s.mqttPort);
      runs.push({ hub: line[1], code: line[2] });
      sim.child.kill('SIGINT');
      const exit = await exitWithin(sim, 8000);
      assert.equal(exit.code, 0, sim.stderr());
      assert.doesNotMatch(sim.stderr(), NO_STACK);
    }
    assert.deepEqual(runs[1], runs[0], 'the second run is the same hub');
    assert.equal(plainLines(s.proc.stdout()).filter((l) => l.includes('Hearth is running')).length, 1);
    s.proc.child.kill('SIGTERM');
    assert.equal((await exitWithin(s.proc, 8000)).code, 0);
  });
});
