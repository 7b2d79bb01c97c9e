import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import { compareCrlNumbers, crlSignedBy, CrlError, normalizeSerial, parseCrlPem } from './crl.ts';
import { makeCrl, TestPki } from '../../test/helpers/pki.ts';

const pki = new TestPki();
after(() => rmSync(pki.dir, { recursive: true, force: true }));

test('a CRL made by openssl: its revoked serials, times, number, and its signature by its CA only', () => {
  const ca = pki.ca('CRL CA');
  const other = pki.ca('Other CA');
  const a = pki.client(ca, 'dev-a');
  const b = pki.client(ca, 'dev-b');
  const crl = parseCrlPem(makeCrl(pki, ca, [a, b], { number: 7, hours: 48 }));
  assert.deepEqual(crl.serials.sort(), [a, b].map((c) => normalizeSerial(new X509Certificate(c.cert).serialNumber)).sort());
  assert.equal(crl.number, '7');
  assert.ok(Math.abs(crl.thisUpdate - Date.now()) < 120_000, 'thisUpdate is now');
  assert.ok(crl.nextUpdate !== null && Math.abs(crl.nextUpdate - crl.thisUpdate - 48 * 3_600_000) < 1000);
  assert.equal(crlSignedBy(crl, new X509Certificate(ca.cert).publicKey), true);
  assert.equal(crlSignedBy(crl, new X509Certificate(other.cert).publicKey), false);
  const empty = parseCrlPem(makeCrl(pki, ca, []));
  assert.deepEqual(empty.serials, []);
});

test('malformed CRLs say what is wrong', () => {
  assert.throws(() => parseCrlPem('hello'), CrlError);
  assert.throws(() => parseCrlPem('-----BEGIN X509 CRL-----\n!!!\n-----END X509 CRL-----'), /not base64/);
  assert.throws(() => parseCrlPem('-----BEGIN X509 CRL-----\nMAMCAQE=\n-----END X509 CRL-----'), /CertificateList/);
  const ca = pki.ca('Cut CA');
  const pem = makeCrl(pki, ca, []);
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  assert.throws(() => parseCrlPem(`-----BEGIN X509 CRL-----\n${der.subarray(0, der.length - 5).toString('base64')}\n-----END X509 CRL-----`), CrlError);
});

test('serials and numbers compare as numbers', () => {
  assert.equal(normalizeSerial('00a1'), 'A1');
  assert.equal(normalizeSerial('0'), '0');
  assert.equal(compareCrlNumbers('0A', '9'), 1);
  assert.equal(compareCrlNumbers('1', '01'), 0);
});
