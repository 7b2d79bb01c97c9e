import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createECDH, createDecipheriv, createHmac, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSmtp, type Mail } from './helpers/smtp.ts';
import { WebSocket } from 'ws';
import { startPlatform, eventually, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser } from './helpers/people.ts';
import { ManualClock } from '../src/core/clock.ts';

/**
 * Notifications end to end through HTTP, with every outside service a real local server this
 * suite starts: an SMTP server, an HTTP server playing webhook receiver, chat bots and Web Push
 * service, an FCM fake (token endpoint and send endpoint) and an HTTP/2 APNs fake. Time is a
 * ManualClock, so quiet hours and de-duplication windows are exact.
 */

interface Hit {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

const T0 = Date.parse('2026-11-23T03:00:00.000Z');
const clock = new ManualClock(T0);
let p: Platform;
let http: Server;
let httpBase = '';
const hits: Hit[] = [];
let smtp: Awaited<ReturnType<typeof startSmtp>>;
let mails: Mail[] = [];
let fcmServer: Server;
const fcmHits: Hit[] = [];
let apnsServer: Http2Server;
const apnsHits: Array<{ headers: Record<string, string | string[] | undefined>; body: string }> = [];
let fcmKey: KeyObject;
let apnsKey: KeyObject;

const users: Record<'owner' | 'member' | 'guest' | 'outsider', TestUser> = {} as never;
let homeId = '';

const b64u = (s: string) => Buffer.from(s, 'base64url');
const json = (h: Hit) => JSON.parse(h.body.toString('utf8'));

/** Undoes quoted-printable soft breaks and escapes, so a mail's text can be searched. */
const qp = (raw: string) => raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));

function listen(server: Server | Http2Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/** Checks a compact JWS and returns its header and claims. */
function checkJwt(jwt: string, key: KeyObject, alg: 'RS256' | 'ES256'): { header: any; claims: any } {
  const [h, c, s] = jwt.split('.');
  const ok =
    alg === 'RS256'
      ? verify('sha256', Buffer.from(`${h}.${c}`), key, b64u(s))
      : verify('sha256', Buffer.from(`${h}.${c}`), { key, dsaEncoding: 'ieee-p1363' }, b64u(s));
  assert.ok(ok, `${alg} signature verifies`);
  return { header: JSON.parse(b64u(h).toString()), claims: JSON.parse(b64u(c).toString()) };
}

async function joinHome(home: string, who: { token: string; email: string }, role: 'member' | 'guest' | 'admin', by = users.owner.token): Promise<void> {
  const inv = await p.api('POST', `/api/v1/homes/${home}/invitations`, { email: who.email, role }, by);
  assert.equal(inv.status, 201, JSON.stringify(inv.body));
  const mail = await eventually(() => mails.find((m) => m.to.includes(who.email) && /token=/.test(qp(m.raw)) && !(m as any).used), 5000, 'the invitation mail');
  (mail as any).used = true;
  const token = /token=([A-Za-z0-9_-]+)/.exec(qp(mail.raw))![1];
  assert.equal((await p.api('POST', '/api/v1/invitations/accept', { token }, who.token)).status, 200);
}

async function send(
  body: Record<string, unknown>,
  home = homeId,
  token = users.owner.token,
): Promise<{ id: string; results: Array<{ userId: string | null; channel: string; status: string; reason?: string }> }> {
  const r = await p.api('POST', `/api/v1/homes/${home}/notifications`, body, token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

const resultOf = (res: Awaited<ReturnType<typeof send>>, userId: string | null, channel: string) =>
  res.results.find((r) => r.userId === userId && r.channel === channel);

before(async () => {
  http = createServer(async (req, res) => {
    const u = new URL(req.url!, 'http://x');
    hits.push({ method: req.method!, path: u.pathname, query: u.searchParams, headers: req.headers, body: await readBody(req) });
    const answer = (status: number, body: unknown = {}) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (u.pathname.startsWith('/push/gone')) return answer(410);
    if (u.pathname.startsWith('/push/')) return answer(201);
    if (u.pathname === '/hook/fail') return answer(500, { error: 'down' });
    if (u.pathname === '/bot/dingtalk' || u.pathname === '/bot/wecom') return answer(200, { errcode: 0, errmsg: 'ok' });
    if (u.pathname === '/bot/feishu') return answer(200, { code: 0, msg: 'success' });
    if (u.pathname === '/bot/slack') return res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    return answer(200, { ok: true });
  });
  httpBase = `http://127.0.0.1:${await listen(http)}`;

  smtp = await startSmtp();
  mails = smtp.mails;

  // FCM: a service account whose token_uri is the fake; the fake checks the assertion with the public key.
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  fcmKey = rsa.publicKey;
  fcmServer = createServer(async (req, res) => {
    const u = new URL(req.url!, 'http://x');
    const hit = { method: req.method!, path: u.pathname, query: u.searchParams, headers: req.headers, body: await readBody(req) };
    fcmHits.push(hit);
    if (u.pathname === '/token')
      return res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ access_token: 'fcm-access-1', expires_in: 3600, token_type: 'Bearer' }));
    if (json(hit).message?.token === 'fcm-stale') {
      return res.writeHead(404, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          error: {
            code: 404,
            message: 'Requested entity was not found.',
            status: 'NOT_FOUND',
            details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }],
          },
        }),
      );
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'projects/hearth-test/messages/0:1' }));
  });
  const fcmBase = `http://127.0.0.1:${await listen(fcmServer)}`;
  const dir = mkdtempSync(join(tmpdir(), 'hearth-notify-'));
  const saFile = join(dir, 'service-account.json');
  writeFileSync(
    saFile,
    JSON.stringify({
      type: 'service_account',
      project_id: 'hearth-test',
      client_email: 'hearth@hearth-test.iam.gserviceaccount.com',
      private_key: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      token_uri: `${fcmBase}/token`,
    }),
  );

  // APNs: HTTP/2 without TLS; a .p8 key (PKCS#8 P-256) like Apple's.
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  apnsKey = ec.publicKey;
  const p8 = join(dir, 'AuthKey_KEY1234567.p8');
  writeFileSync(p8, ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  apnsServer = createH2Server();
  apnsServer.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      apnsHits.push({ headers, body: Buffer.concat(chunks).toString('utf8') });
      if (String(headers[':path']).endsWith('/apns-bad')) {
        stream.respond({ ':status': 400, 'content-type': 'application/json' });
        return stream.end(JSON.stringify({ reason: 'BadDeviceToken' }));
      }
      stream.respond({ ':status': 200, 'apns-id': String(headers['apns-id'] ?? '') });
      stream.end();
    });
  });
  const apnsPort = await listen(apnsServer);

  p = await startPlatform({
    clock,
    env: {
      // Channels and the push services are local servers: a home lab's setting.
      HEARTH_OUTBOUND_PRIVATE_NETWORKS: 'allow',
      HEARTH_SMTP_URL: smtp.url,
      HEARTH_MAIL_FROM: 'Hearth Test <hearth@test.local>',
      HEARTH_FCM_SERVICE_ACCOUNT_FILE: saFile,
      HEARTH_FCM_BASE_URL: fcmBase,
      HEARTH_APNS_KEY_FILE: p8,
      HEARTH_APNS_KEY_ID: 'KEY1234567',
      HEARTH_APNS_TEAM_ID: 'TEAM123456',
      HEARTH_APNS_TOPIC: 'org.hearth.app',
      HEARTH_APNS_BASE_URL: `http://127.0.0.1:${apnsPort}`,
    },
  });
  users.owner = await signupUser(p, 'olivia@notify.test');
  users.member = await signupUser(p, 'max@notify.test');
  users.guest = await signupUser(p, 'gail@notify.test');
  users.outsider = await signupUser(p, 'oscar@notify.test');
  const home = await p.api('POST', '/api/v1/homes', { name: 'Lake house', timezone: 'Europe/Berlin' }, users.owner.token);
  homeId = home.body.id;
  await joinHome(homeId, users.member, 'member');
  await joinHome(homeId, users.guest, 'guest');
});

after(async () => {
  await p?.stop();
  await new Promise<void>((r) => http.close(() => r()));
  await new Promise<void>((r) => fcmServer.close(() => r()));
  await new Promise<void>((r) => apnsServer.close(() => r()));
  await smtp.close();
});

/** A WebSocket on the live stream that collects notification events. */
async function stream(token: string): Promise<{ events: any[]; close(): void }> {
  const ws = new WebSocket(`${p.httpUrl.replace('http', 'ws')}/api/v1/stream?types=notification`, { headers: { authorization: `Bearer ${token}` } });
  const events: any[] = [];
  ws.on('message', (buf) => {
    const e = JSON.parse(buf.toString());
    if (e.type === 'notification') events.push(e);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { events, close: () => ws.terminate() };
}

test('inbox: a notification reaches the members (not guests), live on their stream; unread count, read and read-all', async () => {
  const live = await stream(users.member.token);
  const ownerLive = await stream(users.owner.token);
  try {
    const res = await send({ kind: 'device', severity: 'info', title: 'Battery low', body: 'The hall sensor has 10 % left.', data: { deviceId: 'd_x' } });
    assert.match(res.id, /^nt_/);
    assert.equal(resultOf(res, users.member.id, 'inbox')?.status, 'sent');
    assert.equal(resultOf(res, users.owner.id, 'inbox')?.status, 'sent');
    assert.ok(!res.results.some((r) => r.userId === users.guest.id), 'guests are not told by default');
    assert.deepEqual(resultOf(res, users.member.id, 'push'), { userId: users.member.id, channel: 'push', status: 'skipped', reason: 'no-subscriptions' });
    assert.deepEqual(resultOf(res, users.member.id, 'email'), { userId: users.member.id, channel: 'email', status: 'skipped', reason: 'preferences' });

    const list = await p.api('GET', '/api/v1/notifications', undefined, users.member.token);
    assert.equal(list.status, 200);
    assert.equal(list.body.items.length, 1);
    const item = list.body.items[0];
    assert.equal(item.notificationId, res.id);
    assert.equal(item.title, 'Battery low');
    assert.deepEqual(item.data, { deviceId: 'd_x' });
    assert.equal(item.readAt, null);
    assert.equal(item.createdAt, new Date(clock.now()).toISOString(), 'stamped with the platform clock');
    assert.equal(list.body.unread, 1);
    assert.deepEqual((await p.api('GET', '/api/v1/notifications/unread-count', undefined, users.member.token)).body, { count: 1 });
    assert.equal((await p.api('GET', '/api/v1/notifications', undefined, users.guest.token)).body.items.length, 0);

    const created = await eventually(() => live.events.find((e) => e.data.action === 'created'), 3000, 'the created event');
    assert.equal(created.homeId, homeId);
    assert.equal(created.data.notification.id, item.id);
    assert.equal(created.data.unread, 1);
    await eventually(() => ownerLive.events.find((e) => e.data.action === 'created'), 3000, "the owner's own event");
    assert.equal(live.events.filter((e) => e.data.action === 'created').length, 1, 'each user gets only their own item');

    // Someone else's item does not exist for the owner.
    assert.equal((await p.api('POST', `/api/v1/notifications/${item.id}/read`, undefined, users.owner.token)).status, 404);
    const read = await p.api('POST', `/api/v1/notifications/${item.id}/read`, undefined, users.member.token);
    assert.equal(read.status, 200);
    assert.equal(read.body.readAt, new Date(clock.now()).toISOString());
    const readEv = await eventually(() => live.events.find((e) => e.data.action === 'read'), 3000, 'the read event');
    assert.deepEqual(readEv.data, { action: 'read', ids: [item.id], unread: 0 });
    assert.equal(
      (await p.api('POST', `/api/v1/notifications/${item.id}/read`, undefined, users.member.token)).body.readAt,
      read.body.readAt,
      'reading again changes nothing',
    );

    await clock.advance(1000);
    await send({ kind: 'device', severity: 'info', title: 'Door left open', body: 'Front door, 10 minutes.' });
    await clock.advance(1000);
    await send({ kind: 'device', severity: 'warning', title: 'Window open', body: 'Kitchen window, rain expected.' });
    const unread = await p.api('GET', '/api/v1/notifications?unread=true', undefined, users.member.token);
    assert.deepEqual(
      unread.body.items.map((i: any) => i.title),
      ['Window open', 'Door left open'],
      'newest first',
    );
    const page = await p.api('GET', '/api/v1/notifications?limit=1&offset=1', undefined, users.member.token);
    assert.deepEqual(
      page.body.items.map((i: any) => i.title),
      ['Door left open'],
    );
    const all = await p.api('POST', `/api/v1/notifications/read-all?homeId=${homeId}`, undefined, users.member.token);
    assert.deepEqual(all.body, { updated: 2 });
    const ev = await eventually(() => live.events.find((e) => e.data.action === 'read-all'), 3000, 'the read-all event');
    assert.deepEqual(ev.data, { action: 'read-all', count: 2, unread: 0 });
    assert.deepEqual((await p.api('GET', '/api/v1/notifications/unread-count', undefined, users.member.token)).body, { count: 0 });
    assert.equal((await p.api('GET', '/api/v1/notifications?unread=true', undefined, users.member.token)).body.items.length, 0);
    assert.equal((await p.api('GET', '/api/v1/notifications/unread-count', undefined, users.owner.token)).body.count, 3, "the owner's items are still unread");
    const ownerAll = await p.api('POST', '/api/v1/notifications/read-all', undefined, users.owner.token);
    assert.equal(ownerAll.status, 200);
    assert.deepEqual(ownerAll.body, { updated: 3 });
  } finally {
    live.close();
    ownerLive.close();
  }
});

test('sending: owners and admins only; named users must be in the home (a named guest is told)', async () => {
  const body = { kind: 'system', severity: 'info', title: 'Hello', body: 'Only a test.' };
  assert.equal((await p.api('POST', `/api/v1/homes/${homeId}/notifications`, body, users.member.token)).status, 403);
  assert.equal((await p.api('POST', `/api/v1/homes/${homeId}/notifications`, body, users.guest.token)).status, 403);
  assert.equal((await p.api('POST', `/api/v1/homes/${homeId}/notifications`, body, users.outsider.token)).status, 404);
  assert.equal((await p.api('POST', `/api/v1/homes/${homeId}/notifications`, { ...body, severity: 'loud' })).status, 400);
  const res = await send({ ...body, title: 'For the guest', users: [users.guest.id, users.outsider.id] });
  assert.equal(resultOf(res, users.guest.id, 'inbox')?.status, 'sent');
  assert.deepEqual(resultOf(res, users.outsider.id, '*'), { userId: users.outsider.id, channel: '*', status: 'skipped', reason: 'not-a-member' });
  assert.ok(!res.results.some((r) => r.userId === users.member.id));
  assert.equal((await p.api('GET', '/api/v1/notifications', undefined, users.guest.token)).body.items[0].title, 'For the guest');
  assert.equal((await p.api('GET', '/api/v1/notifications', undefined, users.outsider.token)).body.items.length, 0);
});

test("e-mail: nothing goes to an address its account has not verified (a squatter's own home cannot mail the real owner)", async () => {
  const email = 'squatted@notify.test';
  const password = 'password-of-squatter';
  assert.equal((await p.api('POST', '/api/v1/auth/signup', { email, password }, null)).status, 201);
  const token = (await p.api('POST', '/api/v1/auth/login', { email, password }, null)).body.token as string;
  const home = (await p.api('POST', '/api/v1/homes', { name: 'Squat', timezone: 'UTC' }, token)).body.id as string;
  const before = mails.length;
  const res = await send({ kind: 'security', severity: 'alarm', title: 'Smoke', body: 'Nothing to see.' }, home, token);
  assert.equal(res.results.find((r) => r.channel === 'email')?.reason, 'email-not-verified');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(mails.slice(before).filter((m) => m.to.includes(email) && /Smoke/.test(m.raw)).length, 0);
});

test('e-mail: alarms go out over SMTP by default, other severities do not', async () => {
  const before = mails.length;
  const res = await send({ kind: 'security', severity: 'alarm', title: 'Smoke detected', body: 'Kitchen smoke detector.' });
  assert.equal(resultOf(res, users.member.id, 'email')?.status, 'sent');
  assert.equal(resultOf(res, users.owner.id, 'email')?.status, 'sent');
  const mail = mails.slice(before).find((m) => m.to.includes(users.member.email));
  assert.ok(mail, 'the mail is at the SMTP server when send answers');
  assert.match(mail.raw, /^Subject: \[Lake house\] ALARM: Smoke detected/m);
  assert.match(qp(mail.raw), /Kitchen smoke detector\./);
  assert.equal(mails.slice(before).length, 2, 'owner and member, not the guest');
  const info = await send({ kind: 'security', severity: 'info', title: 'Alarm armed', body: 'Away mode.' });
  assert.equal(resultOf(info, users.member.id, 'email')?.reason, 'preferences');
  assert.equal(mails.length, before + 2);
});

test('preferences per kind: a kind switched off reaches nobody, another kind by e-mail too; guests cannot set any', async () => {
  const defaults = await p.api('GET', `/api/v1/homes/${homeId}/notification-preferences`, undefined, users.member.token);
  assert.equal(defaults.status, 200);
  assert.deepEqual(defaults.body, {
    channels: { inbox: true, push: true, email: false, mobile: true },
    kinds: {},
    severities: { alarm: { channels: { email: true } } },
    quietHours: null,
  });
  const put = await p.api(
    'PUT',
    `/api/v1/homes/${homeId}/notification-preferences`,
    {
      kinds: { energy: { enabled: false }, automation: { channels: { email: true, push: false } } },
    },
    users.member.token,
  );
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.deepEqual(put.body.channels, defaults.body.channels, 'what is left out takes its default');
  assert.deepEqual((await p.api('GET', `/api/v1/homes/${homeId}/notification-preferences`, undefined, users.member.token)).body, put.body);

  const off = await send({ kind: 'energy', severity: 'info', title: 'Solar record', body: '42 kWh today.' });
  assert.deepEqual(resultOf(off, users.member.id, '*'), { userId: users.member.id, channel: '*', status: 'skipped', reason: 'kind-disabled' });
  assert.equal(resultOf(off, users.owner.id, 'inbox')?.status, 'sent', "the owner's preferences are their own");

  const before = mails.length;
  const auto = await send({ kind: 'automation', severity: 'info', title: 'Good night ran', body: 'All lights off.' });
  assert.equal(resultOf(auto, users.member.id, 'email')?.status, 'sent');
  assert.equal(resultOf(auto, users.member.id, 'push')?.reason, 'preferences');
  assert.equal(resultOf(auto, users.owner.id, 'email')?.reason, 'preferences');
  assert.deepEqual(
    mails.slice(before).map((m) => m.to),
    [[users.member.email]],
  );

  assert.equal((await p.api('PUT', `/api/v1/homes/${homeId}/notification-preferences`, { channels: { push: false } }, users.guest.token)).status, 403);
  assert.equal((await p.api('PUT', `/api/v1/homes/${homeId}/notification-preferences`, { channels: { push: false } }, users.outsider.token)).status, 404);
  const bad = await p.api('PUT', `/api/v1/homes/${homeId}/notification-preferences`, { quietHours: { start: '25:00', end: '07:00' } }, users.member.token);
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'E_VALIDATION');
});

test('de-duplication: a repeat within the window reaches nobody, the window is not stretched by repeats, a dedupeKey groups different texts', async () => {
  const msg = { kind: 'device', severity: 'warning', title: 'Leak sensor offline', body: 'Basement leak sensor stopped reporting.' };
  const first = await send(msg);
  assert.equal(resultOf(first, users.member.id, 'inbox')?.status, 'sent');
  await clock.advance(4 * 60_000);
  const again = await send(msg);
  assert.deepEqual(resultOf(again, users.member.id, '*'), { userId: users.member.id, channel: '*', status: 'skipped', reason: 'duplicate' });
  assert.deepEqual(resultOf(again, users.owner.id, '*')?.reason, 'duplicate');
  await clock.advance(61_000);
  const later = await send(msg);
  assert.equal(resultOf(later, users.member.id, 'inbox')?.status, 'sent', 'five minutes after the first, even though a repeat came in between');
  const items = (await p.api('GET', '/api/v1/notifications', undefined, users.member.token)).body.items.filter((i: any) => i.title === msg.title);
  assert.equal(items.length, 2);

  const a = await send({ kind: 'security', severity: 'warning', title: 'Motion in the garden', body: '23:10', dedupeKey: 'garden-motion' });
  assert.equal(resultOf(a, users.member.id, 'inbox')?.status, 'sent');
  const b = await send({ kind: 'security', severity: 'warning', title: 'Motion in the garden again', body: '23:11', dedupeKey: 'garden-motion' });
  assert.equal(resultOf(b, users.member.id, '*')?.reason, 'duplicate');
});

test("quiet hours in the home's time zone: push, e-mail and mobile wait except for alarms; the inbox still gets it", async () => {
  const home = await p.api('POST', '/api/v1/homes', { name: 'Tokyo flat', timezone: 'Asia/Tokyo' }, users.owner.token);
  const tokyo = home.body.id;
  await joinHome(tokyo, users.member, 'member');
  const put = await p.api(
    'PUT',
    `/api/v1/homes/${tokyo}/notification-preferences`,
    { channels: { email: true }, quietHours: { start: '22:00', end: '07:00' } },
    users.member.token,
  );
  assert.equal(put.status, 200, JSON.stringify(put.body));
  // 14:30 UTC is 23:30 in Tokyo (and 15:30 in Berlin).
  await clock.set(Date.parse('2026-11-23T14:30:00.000Z'));
  const before = mails.length;
  const night = await send({ kind: 'device', severity: 'warning', title: 'Freezer warm', body: '-12 °C' }, tokyo);
  assert.equal(resultOf(night, users.member.id, 'inbox')?.status, 'sent');
  for (const ch of ['email', 'push', 'mobile'])
    assert.deepEqual(resultOf(night, users.member.id, ch), { userId: users.member.id, channel: ch, status: 'skipped', reason: 'quiet-hours' });
  assert.equal(resultOf(night, users.owner.id, 'email')?.reason, 'preferences', 'the owner set no quiet hours (and no e-mail for warnings)');
  const alarm = await send({ kind: 'security', severity: 'alarm', title: 'Water leak', body: 'Under the sink.' }, tokyo);
  assert.equal(resultOf(alarm, users.member.id, 'email')?.status, 'sent', 'alarms bypass quiet hours');
  assert.deepEqual(
    mails
      .slice(before)
      .filter((m) => m.to.includes(users.member.email))
      .map((m) => /^Subject: (.*)$/m.exec(m.raw)![1]),
    ['[Tokyo flat] ALARM: Water leak'],
  );
  // 23:00 UTC is 08:00 in Tokyo.
  await clock.set(Date.parse('2026-11-23T23:00:00.000Z'));
  const morning = await send({ kind: 'device', severity: 'warning', title: 'Freezer still warm', body: '-10 °C' }, tokyo);
  assert.equal(resultOf(morning, users.member.id, 'email')?.status, 'sent');
  assert.equal((await p.api('GET', `/api/v1/notifications?homeId=${tokyo}`, undefined, users.member.token)).body.items.length, 3);
  // An API key restricted to the Tokyo home sees only that home's inbox items.
  const key = await p.api('POST', '/api/v1/keys', { name: 'tokyo only', scopes: ['homes:read'], homeIds: [tokyo] }, users.member.token);
  assert.equal(key.status, 201, JSON.stringify(key.body));
  const seen = await p.api('GET', '/api/v1/notifications', undefined, key.body.key);
  assert.deepEqual([...new Set(seen.body.items.map((i: any) => i.homeId))], [tokyo]);
  assert.equal(seen.body.items.length, 3);
  assert.equal((await p.api('GET', '/api/v1/notifications/unread-count', undefined, key.body.key)).body.count, 3);
  assert.ok((await p.api('GET', '/api/v1/notifications/unread-count', undefined, users.member.token)).body.count > 3);
});

test('a webhook channel: the notification JSON, signed with x-hearth-signature; filters by kind and severity; failures are results', async () => {
  const secret = 'hook-secret-1';
  const hook = await p.api(
    'POST',
    `/api/v1/homes/${homeId}/notification-channels`,
    { type: 'webhook', name: 'Home server', url: `${httpBase}/hook/ok`, secret },
    users.owner.token,
  );
  assert.equal(hook.status, 201, JSON.stringify(hook.body));
  assert.equal(hook.body.hasSecret, true);
  assert.equal(hook.body.secret, undefined);
  const filtered = await p.api(
    'POST',
    `/api/v1/homes/${homeId}/notification-channels`,
    { type: 'webhook', name: 'Security desk', url: `${httpBase}/hook/security`, kinds: ['security'], minSeverity: 'alarm' },
    users.owner.token,
  );
  const broken = await p.api(
    'POST',
    `/api/v1/homes/${homeId}/notification-channels`,
    { type: 'webhook', name: 'Broken', url: `${httpBase}/hook/fail` },
    users.owner.token,
  );
  assert.equal(
    (await p.api('POST', `/api/v1/homes/${homeId}/notification-channels`, { type: 'webhook', name: 'x', url: 'http://x' }, users.member.token)).status,
    403,
  );
  assert.equal((await p.api('GET', `/api/v1/homes/${homeId}/notification-channels`, undefined, users.member.token)).status, 403);
  const list = await p.api('GET', `/api/v1/homes/${homeId}/notification-channels`, undefined, users.owner.token);
  assert.deepEqual(
    list.body.items.map((c: any) => c.name),
    ['Home server', 'Security desk', 'Broken'],
  );

  const start = hits.length;
  const res = await send({
    kind: 'device',
    severity: 'warning',
    title: 'Garage open',
    body: 'Since 20 minutes.',
    data: { door: 'garage' },
    dedupeKey: 'garage',
  });
  assert.equal(resultOf(res, null, `channel:${hook.body.id}`)?.status, 'sent');
  assert.deepEqual(resultOf(res, null, `channel:${filtered.body.id}`), {
    userId: null,
    channel: `channel:${filtered.body.id}`,
    status: 'skipped',
    reason: 'filtered',
  });
  const failed = resultOf(res, null, `channel:${broken.body.id}`);
  assert.equal(failed?.status, 'failed');
  assert.equal(failed?.reason, 'HTTP 500');
  const got = hits.slice(start).find((h) => h.path === '/hook/ok')!;
  assert.equal(got.headers['content-type'], 'application/json');
  assert.equal(got.headers['x-hearth-signature'], 'sha256=' + createHmac('sha256', secret).update(got.body).digest('hex'));
  const body = json(got);
  assert.equal(body.id, res.id);
  assert.equal(body.homeId, homeId);
  assert.equal(body.homeName, 'Lake house');
  assert.equal(body.title, 'Garage open');
  assert.deepEqual(body.data, { door: 'garage' });
  assert.ok(hits.slice(start).filter((h) => h.path === '/hook/fail').length >= 2, 'a 5xx is retried');
  assert.ok(!hits.slice(start).some((h) => h.path === '/hook/security'));

  const alarm = await send({ kind: 'security', severity: 'alarm', title: 'Glass break', body: 'Living room.' });
  assert.equal(resultOf(alarm, null, `channel:${filtered.body.id}`)?.status, 'sent');
  const dup = await send({ kind: 'security', severity: 'alarm', title: 'Glass break', body: 'Living room.' });
  assert.equal(resultOf(dup, null, `channel:${filtered.body.id}`)?.reason, 'duplicate');

  assert.equal((await p.api('DELETE', `/api/v1/notification-channels/${hook.body.id}`, undefined, users.outsider.token)).status, 404);
  assert.equal((await p.api('DELETE', `/api/v1/notification-channels/${hook.body.id}`, undefined, users.member.token)).status, 403);
  for (const c of [hook, filtered, broken])
    assert.equal((await p.api('DELETE', `/api/v1/notification-channels/${c.body.id}`, undefined, users.owner.token)).status, 200);
  assert.equal((await p.api('DELETE', `/api/v1/notification-channels/${hook.body.id}`, undefined, users.owner.token)).status, 404);
});

test('chat bots: Slack, Feishu (signed), DingTalk (signed URL) and WeCom get their own message formats', async () => {
  const home = await p.api('POST', '/api/v1/homes', { name: 'Bot house', timezone: 'Asia/Shanghai' }, users.owner.token);
  const bots = home.body.id;
  const add = async (type: string, secret?: string) => {
    const r = await p.api(
      'POST',
      `/api/v1/homes/${bots}/notification-channels`,
      { type, name: type, url: `${httpBase}/bot/${type}?key=k-${type}`, ...(secret ? { secret } : {}) },
      users.owner.token,
    );
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };
  const ids = {
    slack: await add('slack'),
    feishu: await add('feishu', 'feishu-secret'),
    dingtalk: await add('dingtalk', 'SEC-ding'),
    wecom: await add('wecom'),
  };
  const start = hits.length;
  const res = await send({ kind: 'security', severity: 'alarm', title: 'Front door forced', body: 'Contact sensor and vibration at 03:12.' }, bots);
  for (const [type, id] of Object.entries(ids)) assert.equal(resultOf(res, null, `channel:${id}`)?.status, 'sent', type);
  const text = '[ALARM] Front door forced\nContact sensor and vibration at 03:12.';
  const at = (type: string) => hits.slice(start).find((h) => h.path === `/bot/${type}`)!;

  assert.deepEqual(json(at('slack')), { text });
  assert.equal(at('slack').query.get('key'), 'k-slack');

  const feishu = json(at('feishu'));
  const ts = Math.floor(clock.now() / 1000);
  assert.equal(feishu.timestamp, String(ts));
  assert.equal(
    feishu.sign,
    createHmac('sha256', `${ts}\nfeishu-secret`).update('').digest('base64'),
    'Feishu: HMAC keyed with "timestamp\\nsecret" over nothing',
  );
  assert.equal(feishu.msg_type, 'text');
  assert.deepEqual(feishu.content, { text });

  const ding = at('dingtalk');
  assert.deepEqual(json(ding), { msgtype: 'text', text: { content: text } });
  assert.equal(ding.query.get('key'), 'k-dingtalk', 'the access token in the URL stays');
  assert.equal(ding.query.get('timestamp'), String(clock.now()));
  assert.equal(
    ding.query.get('sign'),
    createHmac('sha256', 'SEC-ding').update(`${clock.now()}\nSEC-ding`).digest('base64'),
    'DingTalk: HMAC keyed with the secret over "timestamp\\nsecret"',
  );

  assert.deepEqual(json(at('wecom')), { msgtype: 'text', text: { content: text } });
});

/** A browser's push subscription: a P-256 key pair and an auth secret, as the test's own. */
function browserKeys() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  return { ecdh, auth, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } };
}

/** Decrypts an aes128gcm Web Push body (RFC 8291/8188) with the subscription's private key. */
function decryptPush(body: Buffer, ecdh: ReturnType<typeof createECDH>, auth: Buffer): string {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const serverKey = body.subarray(21, 21 + idlen);
  const cipher = body.subarray(21 + idlen);
  const shared = ecdh.computeSecret(serverKey);
  const info = Buffer.concat([Buffer.from('WebPush: info\0'), ecdh.getPublicKey(), serverKey]);
  const ikm = Buffer.from(hkdfSync('sha256', shared, auth, info, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const d = createDecipheriv('aes-128-gcm', cek, nonce);
  d.setAuthTag(cipher.subarray(cipher.length - 16));
  const plain = Buffer.concat([d.update(cipher.subarray(0, cipher.length - 16)), d.final()]);
  let end = plain.length - 1;
  while (end > 0 && plain[end] === 0) end--;
  assert.equal(plain[end], 2, 'the last record ends with the delimiter 0x02');
  return plain.subarray(0, end).toString('utf8');
}

test('Web Push: VAPID-signed, aes128gcm-encrypted for the subscription; a 410 removes the subscription', async () => {
  const vapid = await p.api('GET', '/api/v1/push/vapid-public-key', undefined, users.member.token);
  assert.equal(vapid.status, 200);
  assert.equal(b64u(vapid.body.publicKey).length, 65);
  const browser = browserKeys();
  const good = await p.api(
    'POST',
    '/api/v1/push/subscriptions',
    { endpoint: `${httpBase}/push/ok-1`, keys: browser.keys, expirationTime: null },
    users.member.token,
  );
  assert.equal(good.status, 201, JSON.stringify(good.body));
  const gone = await p.api('POST', '/api/v1/push/subscriptions', { endpoint: `${httpBase}/push/gone-1`, keys: browserKeys().keys }, users.member.token);
  assert.equal(gone.status, 201);
  assert.equal(
    (
      await p.api(
        'POST',
        '/api/v1/push/subscriptions',
        { endpoint: `${httpBase}/push/x`, keys: { p256dh: 'AAAA', auth: browser.keys.auth } },
        users.member.token,
      )
    ).status,
    400,
  );
  assert.equal((await p.api('DELETE', `/api/v1/push/subscriptions/${good.body.id}`, undefined, users.outsider.token)).status, 404);

  const start = hits.length;
  const res = await send({ kind: 'device', severity: 'warning', title: 'Fridge door open', body: 'For 3 minutes.' }, homeId, users.owner.token);
  assert.deepEqual(resultOf(res, users.member.id, 'push'), { userId: users.member.id, channel: 'push', status: 'sent', reason: '1 of 2' });
  const push = hits.slice(start).find((h) => h.path === '/push/ok-1')!;
  assert.equal(push.headers['content-encoding'], 'aes128gcm');
  assert.equal(push.headers['content-type'], 'application/octet-stream');
  assert.ok(Number(push.headers.ttl) > 0);
  const m = /^vapid t=([^,]+), k=(.+)$/.exec(String(push.headers.authorization));
  assert.ok(m, `VAPID authorization header: ${push.headers.authorization}`);
  assert.equal(m[2], vapid.body.publicKey);
  const pub = b64u(m[2]);
  const key = createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') },
    format: 'jwk',
  });
  const { header, claims } = checkJwt(m[1], key, 'ES256');
  assert.equal(header.alg, 'ES256');
  assert.equal(claims.aud, httpBase);
  assert.equal(claims.sub, 'mailto:hearth@test.local');
  assert.ok(claims.exp * 1000 > Date.now());
  const payload = JSON.parse(decryptPush(push.body, browser.ecdh, browser.auth));
  assert.equal(payload.title, 'Fridge door open');
  assert.equal(payload.body, 'For 3 minutes.');
  assert.equal(payload.id, res.id);
  assert.equal(payload.homeId, homeId);

  const left = await p.api('GET', '/api/v1/push/subscriptions', undefined, users.member.token);
  assert.deepEqual(
    left.body.items.map((s: any) => s.id),
    [good.body.id],
    'the push service said 410: gone',
  );
  assert.equal((await p.api('DELETE', `/api/v1/push/subscriptions/${good.body.id}`, undefined, users.member.token)).status, 200);
  assert.equal((await p.api('GET', '/api/v1/push/subscriptions', undefined, users.member.token)).body.items.length, 0);
});

test('mobile push: FCM HTTP v1 with a service-account token, APNs over HTTP/2 with an ES256 provider token; dead tokens are removed', async () => {
  const reg = async (platform: string, token: string) => {
    const r = await p.api('POST', '/api/v1/push/tokens', { platform, token }, users.member.token);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };
  const fcmGood = await reg('fcm', 'fcm-good');
  await reg('fcm', 'fcm-stale');
  const apnsGood = await reg('apns', 'apns-good');
  await reg('apns', 'apns-bad');
  assert.equal((await p.api('POST', '/api/v1/push/tokens', { platform: 'wns', token: 'x' }, users.member.token)).status, 400);

  const fcmStart = fcmHits.length;
  const apnsStart = apnsHits.length;
  const res = await send({
    kind: 'security',
    severity: 'warning',
    title: 'Camera offline',
    body: 'Porch camera lost Wi-Fi.',
    data: { deviceId: 'd_cam', rssi: -91 },
  });
  assert.deepEqual(resultOf(res, users.member.id, 'mobile'), { userId: users.member.id, channel: 'mobile', status: 'sent', reason: '2 of 4' });

  const tokenReq = fcmHits.slice(fcmStart).find((h) => h.path === '/token')!;
  assert.equal(tokenReq.headers['content-type'], 'application/x-www-form-urlencoded');
  const form = new URLSearchParams(tokenReq.body.toString());
  assert.equal(form.get('grant_type'), 'urn:ietf:params:oauth:grant-type:jwt-bearer');
  const { header, claims } = checkJwt(form.get('assertion')!, fcmKey, 'RS256');
  assert.equal(header.alg, 'RS256');
  assert.equal(claims.iss, 'hearth@hearth-test.iam.gserviceaccount.com');
  assert.equal(claims.scope, 'https://www.googleapis.com/auth/firebase.messaging');
  assert.ok(String(claims.aud).endsWith('/token'));
  assert.equal(claims.exp - claims.iat, 3600);
  const sends = fcmHits.slice(fcmStart).filter((h) => h.path === '/v1/projects/hearth-test/messages:send');
  assert.equal(sends.length, 2);
  for (const s of sends) assert.equal(s.headers.authorization, 'Bearer fcm-access-1');
  const msg = sends.map(json).find((b) => b.message.token === 'fcm-good').message;
  assert.deepEqual(msg.notification, { title: 'Camera offline', body: 'Porch camera lost Wi-Fi.' });
  assert.equal(msg.data.notificationId, res.id);
  assert.equal(msg.data.deviceId, 'd_cam');
  assert.equal(msg.data.rssi, '-91', 'FCM data values are strings');

  const apns = apnsHits.slice(apnsStart);
  assert.equal(apns.length, 2);
  const good = apns.find((h) => h.headers[':path'] === '/3/device/apns-good')!;
  assert.equal(good.headers[':method'], 'POST');
  assert.equal(good.headers['apns-topic'], 'org.hearth.app');
  assert.equal(good.headers['apns-push-type'], 'alert');
  assert.equal(good.headers['apns-priority'], '10');
  assert.match(String(good.headers['apns-id']), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  const bearer = /^bearer (.+)$/.exec(String(good.headers.authorization))![1];
  const jwt = checkJwt(bearer, apnsKey, 'ES256');
  assert.deepEqual(jwt.header, { alg: 'ES256', kid: 'KEY1234567' });
  assert.equal(jwt.claims.iss, 'TEAM123456');
  const aps = JSON.parse(good.body);
  assert.deepEqual(aps.aps.alert, { title: 'Camera offline', body: 'Porch camera lost Wi-Fi.' });
  assert.equal(aps.notificationId, res.id);

  const left = await p.api('GET', '/api/v1/push/tokens', undefined, users.member.token);
  assert.deepEqual(left.body.items.map((t: any) => t.id).sort(), [fcmGood, apnsGood].sort(), 'UNREGISTERED and BadDeviceToken remove the tokens');

  // The access token is reused while valid.
  const again = fcmHits.length;
  await send({ kind: 'security', severity: 'info', title: 'Camera back', body: 'Porch camera online.' });
  assert.equal(fcmHits.slice(again).filter((h) => h.path === '/token').length, 0);
  assert.equal(fcmHits.slice(again).filter((h) => h.path.endsWith(':send')).length, 1);
  assert.equal(apnsHits.slice(-1)[0].headers['apns-priority'], '5', 'info is not urgent');

  assert.equal((await p.api('DELETE', `/api/v1/push/tokens/${fcmGood}`, undefined, users.outsider.token)).status, 404);
  assert.equal((await p.api('DELETE', `/api/v1/push/tokens/${fcmGood}`, undefined, users.member.token)).status, 200);
});

test('fan-out is bounded: a user keeps their newest 20 phone tokens, a home at most 20 channels (409 beyond)', async () => {
  const someone = await signupUser(p, 'fanout@notify.test');
  for (let i = 0; i < 25; i++) {
    clock.advance(1);
    assert.equal((await someone.api('POST', '/push/tokens', { platform: 'fcm', token: `fanout-token-${i}` })).status, 201);
  }
  assert.equal((await someone.api('GET', '/push/tokens')).body.items.length, 20);
  const home = (await someone.api('POST', '/homes', { name: 'Fan-out', timezone: 'UTC' })).body.id as string;
  const channel = (i: number) =>
    someone.api('POST', `/homes/${home}/notification-channels`, { type: 'webhook', name: `hook ${i}`, url: `${httpBase}/hook/${i}` });
  for (let i = 0; i < 20; i++) assert.equal((await channel(i)).status, 201);
  const over = await channel(20);
  assert.equal(over.status, 409);
  assert.match(over.body.detail, /at most 20 notification channels/);
});

test('the VAPID key pair is made once and kept: the same public key after a restart', async () => {
  const key = (await p.api('GET', '/api/v1/push/vapid-public-key', undefined, users.member.token)).body.publicKey;
  const { dataDir } = p;
  await p.stop(false);
  p = await startPlatform({ dataDir, clock, env: { HEARTH_OUTBOUND_PRIVATE_NETWORKS: 'allow' } });
  const token = (await p.api('POST', '/api/v1/auth/login', { email: users.member.email, password: 'password-of-' + users.member.email }, null)).body.token;
  assert.equal((await p.api('GET', '/api/v1/push/vapid-public-key', undefined, token)).body.publicKey, key);
});
