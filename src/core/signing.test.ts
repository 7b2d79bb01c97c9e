import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bodySignatureMatches, signBody } from './signing.ts';

test('the signature is the hex HMAC-SHA256 of the exact body (RFC 4231 test case 2)', () => {
  assert.equal(signBody('Jefe', 'what do ya want for nothing?'), 'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  assert.notEqual(signBody('Jefe', '{"a":1}'), signBody('Jefe', '{"a": 1}'), 'whitespace is part of the signed bytes');
});

test('a signature matches only its own body and secret, in the sha256=<hex> form', () => {
  const sig = signBody('s3cret', '{"a":1}');
  assert.equal(bodySignatureMatches('s3cret', Buffer.from('{"a":1}'), sig), true);
  assert.equal(bodySignatureMatches('s3cret', '{"a":1}', ` ${sig} `), true, 'surrounding spaces are trimmed');
  assert.equal(bodySignatureMatches('other', '{"a":1}', sig), false);
  assert.equal(bodySignatureMatches('s3cret', '{"a":2}', sig), false);
  assert.equal(bodySignatureMatches('s3cret', '{"a":1}', sig.slice(7)), false, 'the sha256= prefix is required');
  assert.equal(bodySignatureMatches('s3cret', '{"a":1}', undefined), false);
});
