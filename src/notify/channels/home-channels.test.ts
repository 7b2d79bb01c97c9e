import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { botRefusal, buildRequest, dingtalkSign, feishuSign } from './home-channels.ts';
import type { NotificationMessage } from './message.ts';

const n: NotificationMessage = {
  id: 'nt_1',
  homeId: 'h_1',
  homeName: 'Home',
  kind: 'security',
  severity: 'warning',
  title: 'Door open',
  body: 'Front door',
  data: {},
  source: null,
  at: '2026-11-23T08:00:00.000Z',
};

test("Feishu and DingTalk signatures follow the vendors' documented recipes", () => {
  // Feishu: HMAC-SHA256 keyed with "timestamp\nsecret" over an empty string.
  assert.equal(feishuSign('s3cret', 1599360473), createHmac('sha256', '1599360473\ns3cret').update('').digest('base64'));
  // DingTalk: HMAC-SHA256 keyed with the secret over "timestamp\nsecret".
  assert.equal(dingtalkSign('SECabc', 1577262236757), createHmac('sha256', 'SECabc').update('1577262236757\nSECabc').digest('base64'));
});

test('a webhook without a secret is not signed; DingTalk keeps the access token and adds timestamp and sign', () => {
  assert.deepEqual(buildRequest({ type: 'webhook', url: 'https://x/h', secret: null }, n, 0).headers, {});
  const d = buildRequest({ type: 'dingtalk', url: 'https://oapi.dingtalk.com/robot/send?access_token=abc', secret: 'SECabc' }, n, 1577262236757);
  const u = new URL(d.url);
  assert.equal(u.searchParams.get('access_token'), 'abc');
  assert.equal(u.searchParams.get('timestamp'), '1577262236757');
  assert.equal(u.searchParams.get('sign'), dingtalkSign('SECabc', 1577262236757));
  assert.deepEqual(JSON.parse(d.body), { msgtype: 'text', text: { content: '[Warning] Door open\nFront door' } });
  assert.deepEqual(JSON.parse(buildRequest({ type: 'feishu', url: 'https://x', secret: null }, n, 0).body), {
    msg_type: 'text',
    content: { text: '[Warning] Door open\nFront door' },
  });
});

test('a chat bot that answers 200 with an error code refused the message', () => {
  assert.match(botRefusal('dingtalk', { errcode: 310000, errmsg: 'sign not match' })!, /310000/);
  assert.equal(botRefusal('wecom', { errcode: 0, errmsg: 'ok' }), undefined);
  assert.match(botRefusal('feishu', { code: 19021, msg: 'sign match fail' })!, /19021/);
  assert.equal(botRefusal('feishu', { StatusCode: 0 }), undefined);
  assert.equal(botRefusal('slack', 'ok'), undefined);
});
