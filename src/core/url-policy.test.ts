import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UrlPolicy, UrlRefused } from './url-policy.ts';

const deny = new UrlPolicy('deny');

test('deny: literal non-public addresses and localhost are named at save time', () => {
  for (const url of [
    'http://127.0.0.1:8123/api',
    'http://10.1.2.3/',
    'http://192.168.1.20/',
    'http://172.16.0.1/',
    'http://169.254.169.254/latest/meta-data',
    'http://[::1]/',
    'http://[fd00::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://0.0.0.0/',
    'http://localhost:3000/',
    'http://api.localhost/',
    'http://100.64.0.1/',
  ]) {
    assert.match(deny.problem(url) ?? '', /does not call/, url);
  }
  for (const url of ['https://hooks.slack.com/services/x', 'http://93.184.216.34/', 'https://[2606:4700::1111]/'])
    assert.equal(deny.problem(url), undefined, url);
  assert.equal(deny.redirect, 'error');
});

test('deny: a name is resolved before the request', async () => {
  await assert.rejects(deny.check('http://localhost:9/'), UrlRefused);
  await assert.rejects(deny.check('http://169.254.169.254/'), /non-public/);
  await deny.check('http://93.184.216.34/'); // a public literal needs no DNS
});

test('allow (the default) lets everything through', async () => {
  const allow = new UrlPolicy('allow');
  assert.equal(allow.problem('http://127.0.0.1/'), undefined);
  await allow.check('http://localhost:9/');
  assert.equal(allow.redirect, 'follow');
});
