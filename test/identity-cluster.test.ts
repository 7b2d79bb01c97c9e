/**
 * Device identity in cluster mode (PostgreSQL + NATS, two nodes as child processes): a change made
 * through one node (a revoked certificate, a CA's CRL, a rotated secret) closes the session another node
 * holds, and that node refuses the old credential at once.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { startCluster, type Cluster } from './helpers/cluster.ts';
import { ADMIN, connectDevice, eventually, requestJson } from './helpers/platform.ts';
import { makeCrl, TestPki, type Issued } from './helpers/pki.ts';

const pki = new TestPki();
let cluster: Cluster;
let serverCa: Issued;
let token: string;
const tlsPorts: number[] = [];

before(async () => {
  serverCa = pki.ca('Cluster server CA');
  const server = pki.server(serverCa);
  cluster = await startCluster({
    env: { HEARTH_TLS_CERT_FILE: server.certFile, HEARTH_TLS_KEY_FILE: server.keyFile, HEARTH_MQTT_TLS_PORT: '0', HEARTH_HTTPS_PORT: '0' },
  });
  for (const n of cluster.nodes) {
    tlsPorts.push(await eventually(() => Number(/mqtts:\/\/[^:]+:(\d+)/.exec(n.output())?.[1]) || undefined, 10_000, `${n.name}'s banner with its TLS port`));
  }
  token = (await requestJson<{ token: string }>(`${cluster.nodes[0].httpUrl}/api/v1/auth/login`, 'POST', ADMIN)).body.token;
});
after(async () => {
  await cluster?.stop();
  rmSync(pki.dir, { recursive: true, force: true });
});

const api = (node: number, method: string, path: string, body?: unknown) => requestJson(`${cluster.nodes[node].httpUrl}${path}`, method, body, token);

function closed(c: MqttClient): Promise<void> {
  return new Promise((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));
}

function connectWithCert(port: number, clientId: string, cert: Issued): Promise<MqttClient> {
  const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
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

test('a certificate revoked through node A is closed on node B and refused there', async () => {
  assert.equal(
    (
      await api(0, 'POST', '/api/v1/products', {
        key: 'cl-lamp',
        name: 'cl-lamp',
        category: 'light',
        model: { properties: [{ id: 'on', type: 'boolean', access: 'rw' }] },
      })
    ).status,
    201,
  );
  const ca = pki.ca('Cluster lamp CA');
  assert.equal((await api(0, 'POST', '/api/v1/products/cl-lamp/cas', { pem: ca.cert })).status, 201);
  const d = (await api(0, 'POST', '/api/v1/devices', { product: 'cl-lamp', name: 'lamp' })).body;
  const cert = pki.client(ca, d.id);
  // Node B learnt of the CA registered through node A.
  const c = await eventually(() => connectWithCert(tlsPorts[1], d.id, cert).catch(() => undefined), 5000, 'node B to take the new CA');
  const gone = closed(c);
  assert.equal((await api(0, 'POST', '/api/v1/certificates/revoked', { fingerprint: cert.fingerprint })).status, 201);
  await gone;
  await assert.rejects(connectWithCert(tlsPorts[1], d.id, cert), /Not authorized/i);
});

test("a CA's CRL uploaded through node A closes the listed certificate's session on node B and refuses it there", async () => {
  const product = await api(0, 'POST', '/api/v1/products', {
    key: 'cl-crl-lamp',
    name: 'cl-crl-lamp',
    category: 'light',
    model: { properties: [{ id: 'on', type: 'boolean', access: 'rw' }] },
  });
  assert.equal(product.status, 201);
  const ca = pki.ca('Cluster CRL CA');
  const reg = await api(0, 'POST', '/api/v1/products/cl-crl-lamp/cas', { pem: ca.cert });
  assert.equal(reg.status, 201);
  const d = (await api(0, 'POST', '/api/v1/devices', { product: 'cl-crl-lamp', name: 'lamp' })).body;
  const cert = pki.client(ca, d.id);
  const c = await eventually(() => connectWithCert(tlsPorts[1], d.id, cert).catch(() => undefined), 5000, 'node B to take the new CA');
  const gone = closed(c);
  assert.equal((await api(0, 'PUT', `/api/v1/products/cl-crl-lamp/cas/${reg.body.id}/crl`, { pem: makeCrl(pki, ca, [cert]) })).status, 200);
  await gone;
  await assert.rejects(connectWithCert(tlsPorts[1], d.id, cert), /Not authorized/i);
});

test('a secret rotated through node A closes the old session on node B and node B refuses the old secret', async () => {
  const d = (await api(0, 'POST', '/api/v1/devices', { product: 'light', name: 'rotated' })).body;
  const b = cluster.nodes[1];
  const old = await connectDevice(`mqtt://127.0.0.1:${b.mqttPort}`, d.id, d.secret);
  const gone = closed(old);
  const r = await api(0, 'POST', `/api/v1/devices/${d.id}/secret`, {});
  assert.equal(r.status, 200);
  await gone;
  await assert.rejects(connectDevice(`mqtt://127.0.0.1:${b.mqttPort}`, d.id, d.secret), /Bad username or password|Not authorized/i);
  (await connectDevice(`mqtt://127.0.0.1:${b.mqttPort}`, d.id, r.body.secret)).end(true);
});
