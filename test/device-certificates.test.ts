/**
 * Device certificates (mutual TLS on the MQTT TLS port): product CAs, a device's id bound to its
 * certificate (CN or SAN), a good, a foreign and a revoked certificate, revoking a CA, and
 * just-in-time registration. CAs and certificates are made in the test with `openssl`; clients
 * are mqtt.js and mosquitto_pub.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { eventually, inbox, startPlatform, type Platform } from './helpers/platform.ts';
import { TestPki, type Issued } from './helpers/pki.ts';

const run = promisify(execFile);
const pki = new TestPki();
let serverCa: Issued;
let p: Platform;
let mqtts: string;

before(async () => {
  serverCa = pki.ca('Hearth server CA');
  const server = pki.server(serverCa);
  p = await startPlatform({
    env: { HEARTH_TLS_CERT_FILE: server.certFile, HEARTH_TLS_KEY_FILE: server.keyFile, HEARTH_MQTT_TLS_PORT: '0', HEARTH_HTTPS_PORT: '0' },
  });
  mqtts = `mqtts://127.0.0.1:${p.hearth.mqttTlsPort}`;
});
after(async () => {
  await p?.stop();
  rmSync(pki.dir, { recursive: true, force: true });
});

/** Connects with a client certificate and no password; resolves the client or rejects with the refusal. */
function connectWithCert(clientId: string, cert: Issued, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = mqtt.connect(mqtts, {
    clientId,
    cert: cert.cert,
    key: cert.key,
    ca: serverCa.cert,
    servername: 'localhost',
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...extra,
  });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
  });
}

function closedSoon(c: MqttClient): Promise<void> {
  return new Promise((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));
}

async function makeProduct(key: string): Promise<void> {
  const r = await p.api('POST', '/api/v1/products', {
    key,
    name: key,
    category: 'light',
    model: { properties: [{ id: 'on', type: 'boolean', access: 'rw' }] },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

test('registering a CA: malformed PEMs, device certificates and duplicates get a 400/409 that says what is wrong', async () => {
  await makeProduct('cert-lamp-a');
  const ca = pki.ca('Lamp A CA');
  const leaf = pki.client(ca, 'x');
  const cases: Array<[unknown, number, RegExp]> = [
    [{ pem: 'hello' }, 400, /not a PEM certificate/],
    [{ pem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' }, 400, /could not be read/],
    [{ pem: ca.cert + ca.cert }, 400, /2 certificates/],
    [{ pem: leaf.cert }, 400, /not a CA certificate/],
    [{ pem: ca.cert, extra: 1 }, 400, /extra/],
    [{}, 400, /pem/],
  ];
  for (const [body, status, re] of cases) {
    const r = await p.api('POST', '/api/v1/products/cert-lamp-a/cas', body);
    assert.equal(r.status, status, JSON.stringify(body).slice(0, 60));
    assert.match(r.body.detail, re);
  }
  assert.equal((await p.api('GET', '/api/v1/products/cert-lamp-a/cas')).body.items.length, 0, 'nothing registered by bad input');
  const ok = await p.api('POST', '/api/v1/products/cert-lamp-a/cas', { pem: ca.cert });
  assert.equal(ok.status, 201);
  assert.equal(ok.body.fingerprint, ca.fingerprint);
  assert.equal(ok.body.jit, false);
  assert.equal((await p.api('POST', '/api/v1/products/cert-lamp-a/cas', { pem: ca.cert })).status, 409);
  assert.equal((await p.api('POST', '/api/v1/products/no-such-product/cas', { pem: ca.cert })).status, 404);
});

test('a good certificate authenticates without a password (its CN is the device id); foreign, misnamed and revoked ones are refused', async () => {
  await makeProduct('cert-lamp-b');
  const ca = pki.ca('Lamp B CA');
  assert.equal((await p.api('POST', '/api/v1/products/cert-lamp-b/cas', { pem: ca.cert })).status, 201);
  const d = await p.provision('cert-lamp-b');
  const good = pki.client(ca, d.id);
  const c = await connectWithCert(d.id, good);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await p.until(d.id, (x) => x.shadow?.reported?.on === true, 'the report over mutual TLS');
  // Bound to the device: listed with it.
  const certs = await p.api('GET', `/api/v1/devices/${d.id}/certificates`);
  assert.deepEqual(
    certs.body.items.map((x: { fingerprint: string }) => x.fingerprint),
    [good.fingerprint],
  );

  // A certificate of a CA nobody registered.
  const foreignCa = pki.ca('Foreign CA');
  await assert.rejects(connectWithCert(d.id, pki.client(foreignCa, d.id)), /Not authorized/i);
  // A certificate of the right CA without the device's name.
  await assert.rejects(connectWithCert(d.id, pki.client(ca, 'someone-else')), /Not authorized/i);
  // The id in a SAN works as well as in the CN.
  const d2 = await p.provision('cert-lamp-b');
  const bySan = pki.client(ca, '', [`URI:urn:x`, `DNS:${d2.id}`]);
  (await connectWithCert(d2.id, bySan)).end(true);
  // Another device may not use a certificate bound to the first one (its name must be in it, too).
  await assert.rejects(connectWithCert(d2.id, good), /Not authorized/i);

  // Revoking the certificate closes the live session and refuses it; bad fingerprints are a 400.
  assert.equal((await p.api('POST', '/api/v1/certificates/revoked', { fingerprint: 'nope' })).status, 400);
  const gone = closedSoon(c);
  const rev = await p.api('POST', '/api/v1/certificates/revoked', { fingerprint: good.fingerprint.replace(/:/g, '').toLowerCase(), reason: 'lost' });
  assert.equal(rev.status, 201);
  assert.equal(rev.body.fingerprint, good.fingerprint);
  assert.equal(rev.body.deviceId, d.id);
  await gone;
  await p.until(d.id, (x) => x.online === false && x.presence?.reason === 'credentials-revoked', 'offline: credentials-revoked');
  await assert.rejects(connectWithCert(d.id, good), /Not authorized/i);
  // A new certificate for the same device works.
  (await connectWithCert(d.id, pki.client(ca, d.id))).end(true);
  assert.ok((await p.api('GET', `/api/v1/devices/${d.id}/certificates`)).body.items.some((x: { revoked: boolean }) => x.revoked));
});

test('mosquitto_pub with --cert/--key and --cafile', async () => {
  await makeProduct('cert-lamp-c');
  const ca = pki.ca('Lamp C CA');
  await p.api('POST', '/api/v1/products/cert-lamp-c/cas', { pem: ca.cert });
  const d = await p.provision('cert-lamp-c');
  const cert = pki.client(ca, d.id);
  await run('mosquitto_pub', [
    '-h',
    'localhost',
    '-p',
    String(p.hearth.mqttTlsPort),
    '--cafile',
    serverCa.certFile,
    '--cert',
    cert.certFile,
    '--key',
    cert.keyFile,
    '-i',
    d.id,
    '-q',
    '1',
    '-t',
    `devices/${d.id}/properties`,
    '-m',
    '{"on":true}',
  ]);
  await p.until(d.id, (x) => x.shadow?.reported?.on === true, 'the report from mosquitto_pub');
});

test('revoking a CA closes the sessions of its certificates on the spot and refuses them', async () => {
  await makeProduct('cert-lamp-d');
  const ca = pki.ca('Lamp D CA');
  const reg = await p.api('POST', '/api/v1/products/cert-lamp-d/cas', { pem: ca.cert });
  const d = await p.provision('cert-lamp-d');
  const cert = pki.client(ca, d.id);
  const c = await connectWithCert(d.id, cert);
  // A device on a secret is not touched.
  const other = await p.provision('light');
  const plain = await p.connect(other.id, other.secret);
  const gone = closedSoon(c);
  const r = await p.api('DELETE', `/api/v1/products/cert-lamp-d/cas/${reg.body.id}`);
  assert.equal(r.status, 200);
  assert.ok(r.body.revokedAt);
  await gone;
  await assert.rejects(connectWithCert(d.id, cert), /Not authorized/i);
  assert.ok(plain.connected);
  assert.equal((await p.api('DELETE', '/api/v1/products/cert-lamp-d/cas/ca_nosuch')).status, 404);
});

test('just-in-time registration: an unknown hardware id becomes a device on its first connect and learns its id', async () => {
  await makeProduct('cert-lamp-e');
  const ca = pki.ca('Lamp E CA');
  const reg = await p.api('POST', '/api/v1/products/cert-lamp-e/cas', { pem: ca.cert, jit: true });
  assert.equal(reg.body.jit, true);
  const hwid = `E-${Date.now()}`;
  const cert = pki.client(ca, hwid);
  const c = await connectWithCert(hwid, cert);
  const box = inbox(c);
  await c.subscribeAsync(`provision/${hwid}/response`, { qos: 1 });
  const hello = await box.next((m) => m.topic === `provision/${hwid}/response`);
  const id = hello.payload.id as string;
  assert.match(id, /^d_/);
  assert.equal(hello.payload.hwid, hwid);
  await c.publishAsync(`devices/${id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  const dev = await p.until(id, (x) => x.shadow?.reported?.on === true, 'the JIT device reports');
  assert.equal(dev.product, 'cert-lamp-e');
  assert.equal(dev.hwid, hwid);
  await c.endAsync();
  // The next connect finds the same device.
  const again = await connectWithCert(hwid, cert);
  const box2 = inbox(again);
  await again.subscribeAsync(`provision/${hwid}/response`, { qos: 1 });
  assert.equal((await box2.next((m) => m.topic === `provision/${hwid}/response`)).payload.id, id);
  // It may not act for other devices.
  const other = await p.provision('cert-lamp-e');
  await assert.rejects(again.subscribeAsync(`devices/${other.id}/commands`, { qos: 1 }), /Subscribe error/);
  again.end(true);
  // Without JIT an unknown hardware id is refused.
  await makeProduct('cert-lamp-f');
  const caF = pki.ca('Lamp F CA');
  await p.api('POST', '/api/v1/products/cert-lamp-f/cas', { pem: caF.cert });
  await assert.rejects(connectWithCert('F-1', pki.client(caF, 'F-1')), /Not authorized/i);
  const list = await p.api('GET', '/api/v1/devices?product=cert-lamp-f');
  assert.equal(list.body.total, 0);
  await eventually(() => true);
});

test('a certificate of no registered CA registered for one device: wrong names, CAs and malformed PEMs get a 400; then it authenticates that device only', async () => {
  const d = await p.provision('light');
  const other = await p.provision('light');
  const unregistered = pki.ca('Some vendor CA');
  const cases: Array<[string, RegExp]> = [
    ['nope', /not a PEM certificate/],
    [unregistered.cert, /is a CA certificate/],
    [pki.client(unregistered, 'someone').cert, new RegExp(`names "someone"; it must carry the device id "${d.id}"`)],
    [pki.client(unregistered, '').cert, /names nobody/],
  ];
  for (const [pem, re] of cases) {
    const r = await p.api('POST', `/api/v1/devices/${d.id}/certificates`, { pem });
    assert.equal(r.status, 400);
    assert.match(r.body.detail, re);
  }
  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}/certificates`)).body.items.length, 0, 'bad input registered nothing');
  const cert = pki.client(unregistered, d.id);
  // Not registered yet: refused.
  await assert.rejects(connectWithCert(d.id, cert), /Not authorized/i);
  const r = await p.api('POST', `/api/v1/devices/${d.id}/certificates`, { pem: cert.cert });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.caId, 'registered');
  const c = await connectWithCert(d.id, cert);
  await c.publishAsync(`devices/${d.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await p.until(d.id, (x) => x.shadow?.reported?.on === true, 'a report with a registered certificate');
  // Bound: not for another device.
  assert.equal((await p.api('POST', `/api/v1/devices/${other.id}/certificates`, { pem: cert.cert })).status, 400, 'it does not name the other device');
  const both = pki.client(unregistered, d.id, [`DNS:${other.id}`]);
  assert.equal((await p.api('POST', `/api/v1/devices/${d.id}/certificates`, { pem: both.cert })).status, 201);
  assert.equal((await p.api('POST', `/api/v1/devices/${other.id}/certificates`, { pem: both.cert })).status, 409);
  await assert.rejects(connectWithCert(other.id, both), /Not authorized/i);
  const gone = closedSoon(c);
  await p.api('POST', '/api/v1/certificates/revoked', { fingerprint: cert.fingerprint });
  await gone;
  await assert.rejects(connectWithCert(d.id, cert), /Not authorized/i);
  assert.equal(
    (await p.api('POST', `/api/v1/devices/${d.id}/certificates`, { pem: cert.cert })).status,
    409,
    'a revoked certificate cannot be registered again',
  );
});
