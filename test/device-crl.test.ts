/**
 * A product CA's certificate revocation list (docs/tls.md), uploaded by the operator and checked
 * at mutual-TLS connect: a listed certificate's live session is closed and it is refused, the
 * others keep working; malformed lists, lists of another CA and older lists change nothing.
 * CAs, certificates and CRLs are made in the test with `openssl`.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { startPlatform, type Platform } from './helpers/platform.ts';
import { makeCrl, TestPki, type Issued } from './helpers/pki.ts';

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

function connectWithCert(clientId: string, cert: Issued): Promise<MqttClient> {
  const c = mqtt.connect(mqtts, {
    clientId,
    cert: cert.cert,
    key: cert.key,
    ca: serverCa.cert,
    servername: 'localhost',
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
  });
}

test("a CA's CRL closes and refuses the certificates it lists, and only those", async () => {
  const product = await p.api('POST', '/api/v1/products', {
    key: 'crl-lamp',
    name: 'CRL lamp',
    category: 'light',
    model: { properties: [{ id: 'on', type: 'boolean', access: 'rw' }] },
  });
  assert.equal(product.status, 201, JSON.stringify(product.body));
  const ca = pki.ca('CRL lamp CA');
  const reg = await p.api('POST', '/api/v1/products/crl-lamp/cas', { pem: ca.cert });
  assert.equal(reg.status, 201);
  const caId = reg.body.id;
  const crlPath = `/api/v1/products/crl-lamp/cas/${caId}/crl`;
  const a = await p.provision('crl-lamp');
  const b = await p.provision('crl-lamp');
  const certA = pki.client(ca, a.id);
  const certB = pki.client(ca, b.id);
  const ca2 = await connectWithCert(a.id, certA);
  const cb = await connectWithCert(b.id, certB);
  assert.equal((await p.api('GET', crlPath)).status, 404, 'no list yet');

  // Bad lists are refused and change nothing.
  const other = pki.ca('Another CA');
  const cases: Array<[unknown, number, RegExp]> = [
    [{ pem: 'hello' }, 400, /body\.pem: it is not a PEM CRL/],
    [{ pem: '-----BEGIN X509 CRL-----\nMAMCAQE=\n-----END X509 CRL-----' }, 400, /not a CertificateList/],
    [{ pem: makeCrl(pki, other, [certA]) }, 400, /not signed by this CA \(CN=CRL lamp CA\)/],
    [{}, 400, /pem/],
  ];
  for (const [body, status, re] of cases) {
    const r = await p.api('PUT', crlPath, body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.match(r.body.detail, re);
  }
  assert.equal((await p.api('PUT', '/api/v1/products/crl-lamp/cas/ca_nope/crl', { pem: makeCrl(pki, ca, []) })).status, 404);
  assert.equal((await p.api('GET', crlPath)).status, 404, 'still no list');
  assert.ok(ca2.connected && cb.connected);

  // A list revoking A: A's session is closed and A refused; B goes on.
  const closed = new Promise<void>((resolve) => ca2.once('close', () => resolve()));
  const up = await p.api('PUT', crlPath, { pem: makeCrl(pki, ca, [certA], { number: 2 }) });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  assert.equal(up.body.caId, caId);
  assert.equal(up.body.number, '2');
  assert.equal(up.body.serials.length, 1);
  await closed;
  await p.until(a.id, (x) => x.online === false && x.presence?.reason === 'credentials-revoked', 'A offline: credentials-revoked');
  await assert.rejects(connectWithCert(a.id, certA), /Not authorized/i);
  assert.ok(cb.connected, 'B keeps its session');
  await cb.publishAsync(`devices/${b.id}/properties`, JSON.stringify({ on: true }), { qos: 1 });
  await p.until(b.id, (x) => x.shadow?.reported?.on === true, "B's report");
  const certs = await p.api('GET', `/api/v1/devices/${a.id}/certificates`);
  assert.equal(certs.body.items[0].revoked, true);
  assert.equal((await p.api('GET', crlPath)).body.number, '2');
  // A new certificate for A (another serial) works.
  (await connectWithCert(a.id, pki.client(ca, a.id))).end(true);

  // An older list cannot take the revocation back; a newer one replaces it.
  const old = await p.api('PUT', crlPath, { pem: makeCrl(pki, ca, [], { number: 1 }) });
  assert.equal(old.status, 409, JSON.stringify(old.body));
  assert.match(old.body.detail, /older than the CA's current one \(number 2/);
  await assert.rejects(connectWithCert(a.id, certA), /Not authorized/i);
  const newer = await p.api('PUT', crlPath, { pem: makeCrl(pki, ca, [certB], { number: 3 }) });
  assert.equal(newer.status, 200);
  await p.until(b.id, (x) => x.online === false && x.presence?.reason === 'credentials-revoked', 'B offline');
  await assert.rejects(connectWithCert(b.id, certB), /Not authorized/i);
  (await connectWithCert(a.id, certA)).end(true);
  const audit = await p.api('GET', '/api/v1/audit?action=product.ca.crl&limit=10');
  assert.equal(audit.body.items.length, 2);
  cb.end(true);
});
