/**
 * Outbound requests made for users (automations' webhook actions, homes' notification channels,
 * Web Push endpoints): by default they may not reach loopback, private or link-local addresses
 * (a home lab opts in with HEARTH_OUTBOUND_PRIVATE_NETWORKS=allow), and what a remote answers is
 * never read back to the user beyond a status line.
 */
import { test, before, after, describe, mock } from 'node:test';
import assert from 'node:assert/strict';
import { createECDH, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import dns from 'node:dns';
import dnsPromises from 'node:dns/promises';
import { syncBuiltinESMExports } from 'node:module';
import { startPlatform, eventually, type Platform } from '../helpers/platform.ts';
import { signupUser, type TestUser } from '../helpers/people.ts';
import { UrlPolicy } from '../../src/core/url-policy.ts';
import { createOutbound, OutboundError, postBody } from '../../src/core/outbound.ts';

const SECRET = 'SECRET-FROM-THE-INSIDE';

/** A service on the platform's own network: it answers with something nobody outside should read. */
let inside: Server;
let insideUrl: string;
const hits: string[] = [];

before(async () => {
  inside = createServer((req, res) => {
    hits.push(req.url!);
    req.resume();
    if (req.url!.startsWith('/forbidden')) return res.writeHead(403, SECRET, { 'content-type': 'text/plain' }).end(`${SECRET}: admin console`);
    if (req.url!.startsWith('/broken')) return res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: SECRET }));
    if (req.url!.startsWith('/bot')) return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ errcode: 40001, errmsg: SECRET }));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: SECRET }));
  });
  await new Promise<void>((r) => inside.listen(0, '127.0.0.1', r));
  insideUrl = `http://127.0.0.1:${(inside.address() as { port: number }).port}`;
});
after(() => {
  inside.close();
});

async function homeOf(u: TestUser): Promise<string> {
  const h = await u.api('POST', '/homes', { name: 'Home', timezone: 'UTC' });
  assert.equal(h.status, 201, JSON.stringify(h.body));
  return h.body.id;
}

describe('the default configuration', () => {
  let p: Platform;
  let u: TestUser;
  let home: string;
  before(async () => {
    p = await startPlatform();
    u = await signupUser(p, 'default@outbound.test');
    home = await homeOf(u);
  });
  after(async () => {
    await p?.stop();
  });

  test('refuses a loopback or private webhook URL with 400 when it is saved', async () => {
    const ecdh = createECDH('prime256v1');
    const pushKeys = { p256dh: ecdh.generateKeys().toString('base64url'), auth: randomBytes(16).toString('base64url') };
    const before = hits.length;
    for (const url of [
      `${insideUrl}/hook`,
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.8/hook',
      'http://[::1]:8080/',
      'http://localhost:5432/',
    ]) {
      const a = await u.api('POST', `/homes/${home}/automations`, { name: 'Out', triggers: [{ type: 'manual' }], actions: [{ type: 'webhook', url }] });
      assert.equal(a.status, 400, `automation webhook ${url}: ${JSON.stringify(a.body)}`);
      assert.match(a.headers.get('content-type') ?? '', /application\/problem\+json/);
      const ch = await u.api('POST', `/homes/${home}/notification-channels`, { type: 'webhook', name: 'Inside', url });
      assert.equal(ch.status, 400, `channel ${url}`);
      // valid keys: the endpoint alone is what is refused
      const sub = await u.api('POST', '/push/subscriptions', { endpoint: url, keys: pushKeys });
      assert.equal(sub.status, 400, `push endpoint ${url}`);
      assert.equal(sub.body.field, 'body.endpoint', `push endpoint ${url}: ${JSON.stringify(sub.body)}`);
    }
    assert.equal(hits.length, before, 'nothing reached the inside');
    const ok = await u.api('POST', `/homes/${home}/automations`, {
      name: 'Out',
      triggers: [{ type: 'manual' }],
      actions: [{ type: 'webhook', url: 'https://hooks.example.com/x' }],
    });
    assert.equal(ok.status, 201, 'a public URL is fine');
  });
});

describe('a home lab (HEARTH_OUTBOUND_PRIVATE_NETWORKS=allow)', () => {
  let p: Platform;
  let u: TestUser;
  let home: string;
  before(async () => {
    p = await startPlatform({ env: { HEARTH_OUTBOUND_PRIVATE_NETWORKS: 'allow' } });
    u = await signupUser(p, 'lab@outbound.test');
    home = await homeOf(u);
  });
  after(async () => {
    await p?.stop();
  });

  test("a webhook action's run trace shows only a status line, never the answer", async () => {
    for (const [path, line] of [
      ['/forbidden', 'answered 403 Forbidden'],
      ['/broken', 'answered 500 Internal Server Error'],
    ]) {
      const a = await u.api('POST', `/homes/${home}/automations`, {
        name: `Call ${path}`,
        triggers: [{ type: 'manual' }],
        actions: [{ type: 'webhook', url: `${insideUrl}${path}` }],
      });
      assert.equal(a.status, 201, JSON.stringify(a.body));
      assert.equal((await u.api('POST', `/automations/${a.body.id}/run`, {})).status, 202);
      const run = await eventually(
        async () => (await u.api('GET', `/automations/${a.body.id}/runs`)).body.items.find((r: any) => r.status !== 'running'),
        10_000,
        'the run ends',
      );
      assert.equal(run.status, 'failed');
      assert.match(run.trace.actions[0].error, new RegExp(`${line}$`));
      const detail = await u.api('GET', `/automations/${a.body.id}/runs/${run.id}`);
      assert.ok(
        !JSON.stringify(run).includes(SECRET) && !JSON.stringify(detail.body).includes(SECRET),
        `the answer is not in the run: ${JSON.stringify(run.trace.actions[0])}`,
      );
    }
  });

  test('notification channel results show a status or a vendor code, never the answer', async () => {
    const hook = await u.api('POST', `/homes/${home}/notification-channels`, { type: 'webhook', name: 'Broken', url: `${insideUrl}/broken` });
    const bot = await u.api('POST', `/homes/${home}/notification-channels`, { type: 'dingtalk', name: 'Bot', url: `${insideUrl}/bot` });
    assert.equal(hook.status, 201);
    assert.equal(bot.status, 201);
    const sent = await u.api('POST', `/homes/${home}/notifications`, { kind: 'system', severity: 'info', title: 'Hello', body: 'there' });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const results = sent.body.results as Array<{ channel: string; status: string; reason?: string }>;
    assert.deepEqual(
      results.find((r) => r.channel === `channel:${hook.body.id}`),
      { userId: null, channel: `channel:${hook.body.id}`, status: 'failed', reason: 'HTTP 500' },
    );
    const refused = results.find((r) => r.channel === `channel:${bot.body.id}`);
    assert.equal(refused?.status, 'failed');
    assert.match(refused?.reason ?? '', /errcode 40001/);
    assert.ok(!JSON.stringify(sent.body).includes(SECRET), JSON.stringify(results));
  });
});

describe('with deny, at connection time', () => {
  test('a name that resolves to a public address for the check and to loopback for the connection (DNS rebinding) is refused', async () => {
    const port = (inside.address() as { port: number }).port;
    const before = hits.length;
    // the check's lookup says public, the connection's says loopback
    const checked = mock.method(dnsPromises, 'lookup', async () => [{ address: '93.184.216.34', family: 4 }]);
    const connected = mock.method(dns, 'lookup', (_host: string, opts: any, cb: any) => {
      const callback = typeof opts === 'function' ? opts : cb;
      if (opts?.all) return process.nextTick(() => callback(null, [{ address: '127.0.0.1', family: 4 }]));
      process.nextTick(() => callback(null, '127.0.0.1', 4));
    });
    syncBuiltinESMExports();
    try {
      const outbound = createOutbound({ name: 'rebinding', timeoutMs: 2000, retries: 0, breaker: { consecutiveFailures: 5, halfOpenAfterMs: 1000 } });
      const err = await postBody(
        outbound,
        `http://rebind.outbound.test:${port}/token`,
        '{}',
        { 'content-type': 'application/json' },
        { urls: new UrlPolicy('deny') },
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof OutboundError, `refused, got ${String(err)}`);
      assert.equal(err.reason, 'refused');
      assert.doesNotMatch(err.message, /127\.0\.0\.1/, 'the message does not name the address');
      assert.equal(hits.length, before, 'nothing reached the inside');
    } finally {
      checked.mock.restore();
      connected.mock.restore();
      syncBuiltinESMExports();
    }
  });
});
