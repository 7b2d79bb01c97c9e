import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFactoryCsv } from './factory-csv.ts';
import { certificateNames, normalizeFingerprint } from './certificate-names.ts';
import { makeSelfSigned } from '../transports/tls/self-signed.ts';
import { X509Certificate } from 'node:crypto';

test('factory CSV: header names the columns, RFC 4180 quoting, CRLF, BOM, blank lines, extra columns as attributes', () => {
  const rows = parseFactoryCsv('\uFEFFHWID,Serial,mac,note\r\nA-1,S1,aa,"x, ""y"""\r\n\r\n"A-2",,,\n');
  assert.deepEqual(rows, [
    { hwid: 'A-1', serial: 'S1', mac: 'aa', attributes: { note: 'x, "y"' } },
    { hwid: 'A-2', serial: null, mac: null, attributes: {} },
  ]);
});

test('factory CSV: every problem names its line', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /line 1: the CSV is empty/],
    ['hwid,hwid\nA,B\n', /line 1: the column "hwid" appears twice/],
    ['serial\nS\n', /line 1: the first line must name a "hwid" column/],
    ['hwid\n', /line 2: the CSV has a header but no records/],
    ['hwid,serial\nA\n', /line 2: 1 fields where the header has 2/],
    ['hwid\nA\nB\nA\n', /line 4: hwid "A" is also on line 2/],
    ['hwid\na b\n', /line 2: hwid "a b" is not a hardware id/],
    ['hwid\n"A\n', /not closed/],
    ['hwid\nA"B\n', /line 2: a quote inside an unquoted field/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseFactoryCsv(text), re, JSON.stringify(text));
});

test('fingerprints: colon or plain hex, any case, to the colon form; anything else is a 400', () => {
  const hex = 'ab'.repeat(32);
  assert.equal(normalizeFingerprint(hex), Array(32).fill('AB').join(':'));
  assert.equal(normalizeFingerprint(Array(32).fill('ab').join(':')), Array(32).fill('AB').join(':'));
  assert.throws(() => normalizeFingerprint('abc'), /64 hex digits/);
});

test('the self-signed certificate names localhost and loopback, verifies itself, and its names are read back', () => {
  const s = makeSelfSigned(['localhost', '127.0.0.1', '::1']);
  const x = new X509Certificate(s.certPem);
  assert.ok(x.verify(x.publicKey));
  assert.equal(x.checkHost('localhost'), 'localhost');
  assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(x.checkIP('::1'), '::1');
  assert.equal(x.ca, false);
  assert.equal(s.fingerprint, x.fingerprint256);
  assert.ok(new Date(x.validTo).getTime() > Date.now() + 800 * 86400_000);
  assert.deepEqual(certificateNames(x), ['Hearth development (localhost)', 'localhost', '127.0.0.1', '0:0:0:0:0:0:0:1']);
});
