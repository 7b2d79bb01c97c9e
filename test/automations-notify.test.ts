import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { startSmtp, type Mail } from './helpers/smtp.ts';
import { signupUser, type TestUser as User } from './helpers/people.ts';

/**
 * Automations notifying people through the NotificationService: the water-leak example lands in
 * the inbox, at the home's webhook channel and at a local SMTP server; the loop guard tells the
 * owner. Devices over real MQTT.
 */
let p: Platform;
let smtp: Awaited<ReturnType<typeof startSmtp>>;
let http: Server;
let httpBase = '';
let mails: Mail[] = [];
const hits: Array<{ path: string; headers: Record<string, unknown>; body: any }> = [];

const signup = (name: string): Promise<User> => signupUser(p, `${name}@notify-auto.test`);

before(async () => {
  http = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      hits.push({ path: req.url ?? '', headers: req.headers, body: text ? JSON.parse(text) : undefined });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  httpBase = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  smtp = await startSmtp();
  mails = smtp.mails;
  p = await startPlatform({
    env: { HEARTH_OUTBOUND_PRIVATE_NETWORKS: 'allow', HEARTH_SMTP_URL: smtp.url, HEARTH_MAIL_FROM: 'Hearth Test <hearth@test.local>' },
  });
});
after(async () => {
  await p.stop();
  await smtp.close();
  http.close();
});

test('a water leak closes the valve and the alarm reaches the inbox, the home webhook and e-mail', async () => {
  const owner = await signup('owner');
  const member = await signup('member');
  const h = await owner.api('POST', '/homes', { name: 'Lake house', timezone: 'Europe/Berlin' });
  const home = h.body.id;
  const inv = await owner.api('POST', `/homes/${home}/invitations`, { email: member.email, role: 'member' });
  assert.equal(inv.status, 201);
  const mail = await eventually(() => mails.find((m) => m.to.includes(member.email)), 5000, 'the invitation mail');
  const token = /token=3D([A-Za-z0-9_=\r\n-]+)|token=([A-Za-z0-9_-]+)/.exec(mail.raw)!;
  const invToken = (token[1] ?? token[2]).replace(/=\r?\n/g, '').replace(/\r?\n.*$/s, '');
  assert.equal((await member.api('POST', '/invitations/accept', { token: invToken })).status, 200);
  const hook = await owner.api('POST', `/homes/${home}/notification-channels`, { type: 'webhook', name: 'Home server', url: `${httpBase}/home-hook` });
  assert.equal(hook.status, 201, JSON.stringify(hook.body));

  const sensor = await p.provision('water-leak-sensor');
  const valve = await p.provision('plug');
  for (const d of [sensor, valve]) assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: d.pairingCode })).status, 201);
  const sc = await p.connect(sensor.id, sensor.secret);
  const vc = await p.connect(valve.id, valve.secret);
  const desired: any[] = [];
  vc.on('message', (_t, b) => desired.push(JSON.parse(b.toString())));
  await vc.subscribeAsync(`devices/${valve.id}/desired`, { qos: 1 });
  await eventually(async () => (await p.device(valve.id)).online === true, 3000, 'valve online');

  const a = await owner.api('POST', `/homes/${home}/automations`, {
    name: 'Water leak',
    triggers: [{ type: 'event', device: sensor.id, event: 'leak' }],
    actions: [
      { type: 'set', device: valve.id, properties: { on: false } },
      { type: 'notify', title: 'Water leak!', message: 'Leak at {{trigger.device}}; the valve is closing.', severity: 'alarm', kind: 'security' },
    ],
  });
  assert.equal(a.status, 201, JSON.stringify(a.body));
  const mailsBefore = mails.length;
  await sc.publishAsync(`devices/${sensor.id}/events`, JSON.stringify({ event: 'leak' }), { qos: 1 });

  await eventually(() => desired.some((d) => d.state?.on === false), 3000, 'the valve told to close');
  const run = await eventually(
    async () => (await owner.api('GET', `/automations/${a.body.id}/runs`)).body.items.find((r: any) => r.status === 'completed'),
    5000,
    'a completed run',
  );
  const notifyTrace = run.trace.actions[1];
  assert.equal(notifyTrace.type, 'notify');
  assert.equal(notifyTrace.status, 'ok');
  assert.match(notifyTrace.result.notificationId, /./);
  const channels = notifyTrace.result.results.map((r: any) => `${r.userId ?? 'home'}:${r.channel}:${r.status}`);
  assert.ok(channels.includes(`${owner.id}:inbox:sent`), channels.join(' '));
  assert.ok(channels.includes(`${member.id}:email:sent`), channels.join(' '));

  for (const u of [owner, member]) {
    const inbox = await u.api('GET', '/notifications');
    const item = inbox.body.items.find((i: any) => i.title === 'Water leak!');
    assert.ok(item, `in ${u.email}'s inbox`);
    assert.equal(item.body, `Leak at ${sensor.id}; the valve is closing.`);
    assert.equal(item.severity, 'alarm');
  }
  const hit = await eventually(() => hits.find((x) => x.path === '/home-hook'), 5000, 'the home webhook');
  assert.equal(hit.body.title, 'Water leak!');
  const sent = await eventually(
    () => {
      const m = mails.slice(mailsBefore).filter((x) => /Water leak!/.test(x.raw));
      return m.length >= 2 ? m : undefined;
    },
    5000,
    'e-mails to both',
  );
  assert.deepEqual(sent.flatMap((m) => m.to).sort(), [member.email, owner.email].sort());
  await Promise.all([sc.endAsync(true), vc.endAsync(true)]);
});

test("the loop guard notifies the home's owner", async () => {
  const owner = await signup('looper');
  const home = (await owner.api('POST', '/homes', { name: 'Loop house', timezone: 'UTC' })).body.id;
  const light = await p.provision('light');
  assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: light.pairingCode })).status, 201);
  const c = await p.connect(light.id, light.secret);
  let on = false;
  c.on('message', (_t, b) => {
    const cmd = JSON.parse(b.toString());
    void c
      .publishAsync(`devices/${light.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 })
      .then(() => c.publishAsync(`devices/${light.id}/properties`, JSON.stringify({ on: (on = !on) }), { qos: 1 }))
      .catch(() => undefined);
  });
  await c.subscribeAsync(`devices/${light.id}/commands`, { qos: 1 });
  await eventually(async () => (await p.device(light.id)).online === true, 3000, 'online');
  const a = await owner.api('POST', `/homes/${home}/automations`, {
    name: 'Flip-flop',
    triggers: [{ type: 'property', device: light.id, property: 'on' }],
    actions: [{ type: 'command', device: light.id, action: 'toggle' }],
  });
  assert.equal((await owner.api('POST', `/automations/${a.body.id}/run`, {})).status, 202);
  const item = await eventually(
    async () => (await owner.api('GET', '/notifications')).body.items.find((i: any) => /Flip-flop/.test(i.title)),
    10_000,
    'the loop guard notice',
  );
  assert.equal(item.title, 'Automation "Flip-flop" was stopped');
  assert.match(item.body, /loop guard/);
  assert.equal(item.severity, 'warning');
  await c.endAsync(true);
});
