/**
 * TLS in the process: MQTT over TLS, HTTPS and WSS from PEM files, reloaded when the files change,
 * TLS 1.2 at least, the packet guard behind TLS, a self-signed development certificate, and the
 * plain ports turned off. Through real clients: mqtt.js, mosquitto_pub --cafile, HTTPS requests.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, renameSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import type { IClientOptions } from 'mqtt';
import { ADMIN, connectDevice, eventually, startPlatform, storeEnv, capturingLogger, type Platform } from './helpers/platform.ts';
import { httpsJson, servedFingerprint, TestPki, type Issued } from './helpers/pki.ts';
import { freePort } from './helpers/ports.ts';
import { Hearth } from '../src/app.ts';
import { loadConfig } from '../src/core/config/config-schema.ts';

const run = promisify(execFile);
const pki = new TestPki();
let ca: Issued;
let p: Platform;
let certFile: string;
let keyFile: string;

before(async () => {
  ca = pki.ca('Hearth test server CA');
  const server = pki.server(ca);
  const dir = mkdtempSync(join(tmpdir(), 'hearth-tls-'));
  certFile = join(dir, 'tls.crt');
  keyFile = join(dir, 'tls.key');
  copyFileSync(server.certFile, certFile);
  copyFileSync(server.keyFile, keyFile);
  p = await startPlatform({
    env: {
      HEARTH_TLS_CERT_FILE: certFile,
      HEARTH_TLS_KEY_FILE: keyFile,
      HEARTH_MQTT_TLS_PORT: '0',
      HEARTH_HTTPS_PORT: '0',
      HEARTH_TLS_WATCH_INTERVAL_MS: '100',
    },
  });
});
after(async () => {
  await p?.stop();
  rmSync(pki.dir, { recursive: true, force: true });
});

test('a device reports over MQTT with TLS (mqtt.js trusting the CA) and the API over HTTPS sees it', async () => {
  const d = await p.provision('light');
  const c = await connectDevice(`mqtts://127.0.0.1:${p.hearth.mqttTlsPort}`, d.id, d.secret, { ca: ca.cert, servername: 'localhost' });
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  const https = `https://127.0.0.1:${p.hearth.httpsPort}`;
  await eventually(
    async () => (await httpsJson(`${https}/api/v1/devices/${d.id}`, 'GET', { ca: ca.cert, token: p.token })).body?.shadow?.reported?.on === true,
    3000,
    'the report over HTTPS',
  );
  const health = await httpsJson(`${https}/healthz`, 'GET', { ca: ca.cert });
  assert.equal(health.status, 200);
  assert.equal(health.peerFingerprint, new X509Certificate(readFileSync(certFile)).fingerprint256);
  await c.endAsync();
});

test('mosquitto_pub --cafile publishes over TLS; a wrong secret is refused there too', async () => {
  const d = await p.provision('light');
  const port = String(p.hearth.mqttTlsPort);
  await run('mosquitto_pub', [
    '-h',
    'localhost',
    '-p',
    port,
    '--cafile',
    ca.certFile,
    '-i',
    d.id,
    '-u',
    d.id,
    '-P',
    d.secret,
    '-q',
    '1',
    '-t',
    `devices/${d.id}/properties`,
    '-m',
    '{"on":true}',
  ]);
  await p.until(d.id, (x) => x.shadow?.reported?.on === true, 'the report from mosquitto_pub');
  await assert.rejects(
    run('mosquitto_pub', [
      '-h',
      'localhost',
      '-p',
      port,
      '--cafile',
      ca.certFile,
      '-i',
      d.id,
      '-u',
      d.id,
      '-P',
      'wrong',
      '-q',
      '1',
      '-t',
      `devices/${d.id}/properties`,
      '-m',
      '{}',
    ]),
  );
  // Without trusting the CA the client refuses the server.
  const other = pki.ca('Some other CA');
  await assert.rejects(
    run('mosquitto_pub', [
      '-h',
      'localhost',
      '-p',
      port,
      '--cafile',
      other.certFile,
      '-i',
      d.id,
      '-u',
      d.id,
      '-P',
      d.secret,
      '-t',
      `devices/${d.id}/properties`,
      '-m',
      '{}',
    ]),
  );
});

test('MQTT over WSS at /mqtt on the HTTPS port', async () => {
  const d = await p.provision('light');
  const c = await connectDevice(`wss://127.0.0.1:${p.hearth.httpsPort}/mqtt`, d.id, d.secret, { ca: ca.cert, servername: 'localhost' } as IClientOptions);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await p.until(d.id, (x) => x.shadow?.reported?.on === true, 'the report over WSS');
  await c.endAsync();
});

test('TLS 1.1 is refused on both TLS ports', async () => {
  for (const port of [p.hearth.mqttTlsPort!, p.hearth.httpsPort!]) {
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = tlsConnect(
          { host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' },
          () => resolve(s),
        );
        s.on('error', reject);
      }),
      `port ${port} took TLS 1.1`,
    );
  }
});

test('the packet guard cuts an oversized CONNECT behind TLS before reading it', async () => {
  const closed = await new Promise<boolean>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: p.hearth.mqttTlsPort!, ca: ca.cert, servername: 'localhost' }, () => {
      // CONNECT with a remaining length of 1 MiB (over the 8 KiB before CONNACK).
      s.write(Buffer.from([0x10, 0x80, 0x80, 0x40]));
      s.write(Buffer.alloc(1024));
    });
    s.on('close', () => resolve(true));
    s.on('error', () => undefined);
    setTimeout(() => reject(new Error('connection stayed open')), 3000).unref();
  });
  assert.ok(closed);
});

test('a new certificate in the files is served without a restart; connected devices stay', async () => {
  const d = await p.provision('light');
  const c = await connectDevice(`mqtts://127.0.0.1:${p.hearth.mqttTlsPort}`, d.id, d.secret, { ca: ca.cert, servername: 'localhost' });
  const before = await servedFingerprint(p.hearth.mqttTlsPort!, ca.cert);
  const next = pki.server(ca);
  // A half-done rotation (the certificate without its key) keeps the old pair.
  writeFileSync(certFile, next.cert);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await servedFingerprint(p.hearth.mqttTlsPort!, ca.cert), before);
  // The way a Secret mount swaps files: written aside, then renamed over.
  writeFileSync(`${keyFile}.new`, next.key);
  renameSync(`${keyFile}.new`, keyFile);
  await eventually(
    async () => (await servedFingerprint(p.hearth.mqttTlsPort!, ca.cert)) === next.fingerprint,
    5000,
    'MQTT over TLS to serve the new certificate',
  );
  await eventually(async () => (await servedFingerprint(p.hearth.httpsPort!, ca.cert)) === next.fingerprint, 5000, 'HTTPS to serve the new certificate');
  assert.ok(c.connected, 'the session opened before the rotation is still up');
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await p.until(d.id, (x) => x.shadow?.reported?.on === true, 'a report on the old session');
  assert.ok(p.logs.some((l) => l.msg === 'TLS certificate reloaded' && l.fingerprint === next.fingerprint));
  await c.endAsync();
});

test('HEARTH_TLS_SELF_SIGNED=1 makes a development certificate, keeps it across restarts, and serves only TLS with HEARTH_PLAIN_PORTS=0', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-test-'));
  const plainHttp = await freePort();
  const plainMqtt = await freePort();
  const start = async () => {
    const config = loadConfig(
      { ...(await storeEnv(dataDir)), HEARTH_TLS_SELF_SIGNED: '1', HEARTH_PLAIN_PORTS: '0', HEARTH_MQTT_TLS_PORT: '0', HEARTH_HTTPS_PORT: '0' },
      {
        httpPort: plainHttp,
        mqttPort: plainMqtt,
        httpHost: '127.0.0.1',
        mqttHost: '127.0.0.1',
        dataDir,
        demo: false,
        adminEmail: ADMIN.email,
        adminPassword: ADMIN.password,
      },
    );
    const h = new Hearth(config, { log: capturingLogger().log });
    await h.start();
    return h;
  };
  let h = await start();
  try {
    const served = h.tls!.served;
    assert.equal(served.selfSigned, true);
    const cafile = join(dataDir, 'tls', 'self-signed.crt');
    const pem = readFileSync(cafile, 'utf8');
    assert.equal(await servedFingerprint(h.mqttTlsPort!, pem), served.fingerprint);
    const https = `https://127.0.0.1:${h.httpsPort}`;
    const login = await httpsJson<{ token: string }>(`${https}/api/v1/auth/login`, 'POST', { ca: pem, body: ADMIN });
    assert.equal(login.status, 200);
    const dev = await httpsJson<{ id: string; secret: string }>(`${https}/api/v1/devices`, 'POST', {
      ca: pem,
      token: login.body.token,
      body: { product: 'light', name: 'tls only' },
    });
    assert.equal(dev.status, 201);
    await run('mosquitto_pub', [
      '-h',
      'localhost',
      '-p',
      String(h.mqttTlsPort),
      '--cafile',
      cafile,
      '-i',
      dev.body.id,
      '-u',
      dev.body.id,
      '-P',
      dev.body.secret,
      '-q',
      '1',
      '-t',
      `devices/${dev.body.id}/properties`,
      '-m',
      '{"on":true}',
    ]);
    for (const port of [plainHttp, plainMqtt]) {
      await assert.rejects(
        new Promise((resolve, reject) => {
          const s = netConnect(port, '127.0.0.1', () => {
            s.destroy();
            resolve(undefined);
          });
          s.on('error', reject);
        }),
        `plain port ${port} is open`,
      );
    }
    await h.stop();
    h = await start();
    assert.equal(h.tls!.served.fingerprint, served.fingerprint, 'the same certificate after a restart');
  } finally {
    await h.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a start with a key that does not match the certificate is refused with one line naming the variable', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-test-'));
  const a = pki.server(ca);
  const b = pki.server(ca);
  const config = loadConfig(
    { ...(await storeEnv(dataDir)), HEARTH_TLS_CERT_FILE: a.certFile, HEARTH_TLS_KEY_FILE: b.keyFile, HEARTH_MQTT_TLS_PORT: '0', HEARTH_HTTPS_PORT: '0' },
    {
      httpPort: 0,
      mqttPort: 0,
      httpHost: '127.0.0.1',
      mqttHost: '127.0.0.1',
      dataDir,
      demo: false,
      adminEmail: ADMIN.email,
      adminPassword: ADMIN.password,
    },
  );
  const h = new Hearth(config, { log: capturingLogger().log });
  await assert.rejects(h.start(), (err: Error) => err.name === 'StartupError' && /HEARTH_TLS_CERT_FILE/.test(err.message));
  await h.stop();
  rmSync(dataDir, { recursive: true, force: true });
});
