import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { verifyFirmware, type OtaJob } from './ota-client.ts';

test('a device installs only the image the job names, signed by its product key', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const image = Buffer.from('firmware image bytes '.repeat(100));
  const digest = createHash('sha256').update(image).digest();
  const job: OtaJob = {
    job: 'j_1',
    version: '1.1.0',
    url: 'http://x/',
    size: image.length,
    sha256: digest.toString('hex'),
    signature: sign(null, digest, privateKey).toString('base64'),
  };
  assert.equal(verifyFirmware(image, job, pem), undefined);
  const tampered = Buffer.from(image);
  tampered[10] ^= 1;
  assert.match(verifyFirmware(tampered, job, pem)!, /sha256/);
  assert.match(verifyFirmware(image.subarray(1), job, pem)!, /size/);
  const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString();
  assert.match(verifyFirmware(image, job, other)!, /signature/);
});
