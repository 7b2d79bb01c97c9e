import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser } from './helpers/people.ts';

/**
 * HEARTH_OUTBOUND_PRIVATE_NETWORKS=deny: URLs that people configure may not point into the
 * platform's own network (cloud metadata, loopback services, the LAN). deny is the default (said
 * here explicitly); suites that call local servers set allow, as a home lab would.
 */
let p: Platform;
let owner: TestUser;
let home: string;
before(async () => {
  p = await startPlatform({ env: { HEARTH_OUTBOUND_PRIVATE_NETWORKS: 'deny' } });
  owner = await signupUser(p, 'owner@url-policy.test');
  home = (await owner.api('POST', '/homes', { name: 'Home', timezone: 'UTC' })).body.id;
});
after(async () => {
  await p.stop();
});

test('a webhook action to a non-public address is refused when saved, naming the action', async () => {
  for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://127.0.0.1:4222/', 'http://localhost:5432/', 'http://[::1]/', 'http://10.0.0.8/hook']) {
    const r = await owner.api('POST', `/homes/${home}/automations`, { name: 'Out', triggers: [{ type: 'manual' }], actions: [{ type: 'webhook', url }] });
    assert.equal(r.status, 400, url);
    assert.equal(r.body.code, 'E_AUTOMATION_INVALID');
    assert.match(JSON.stringify(r.body), /actions\[0\]\.url.*does not call/, url);
  }
  const ok = await owner.api('POST', `/homes/${home}/automations`, {
    name: 'Out',
    triggers: [{ type: 'manual' }],
    actions: [{ type: 'webhook', url: 'https://hooks.example.com/x' }],
  });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
});

test('home notification channels and Web Push endpoints are held to the same rule', async () => {
  const ch = await owner.api('POST', `/homes/${home}/notification-channels`, { type: 'webhook', name: 'Metadata', url: 'http://169.254.169.254/' });
  assert.equal(ch.status, 400);
  assert.match(ch.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.match(ch.body.detail ?? ch.body.message ?? JSON.stringify(ch.body), /non-public address/);
  const sub = await owner.api('POST', '/push/subscriptions', { endpoint: 'http://127.0.0.1:9/push', keys: { p256dh: 'x', auth: 'y' } });
  assert.equal(sub.status, 400);
  assert.match(JSON.stringify(sub.body), /endpoint.*does not call/);
});
