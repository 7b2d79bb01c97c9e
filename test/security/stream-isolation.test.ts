/**
 * The live stream's isolation, through real WebSockets and Server-Sent Events: a stream lives no
 * longer than the credentials it was opened with (sign-out, key revocation, password change, token
 * expiry; on every node of a cluster), an event reaches only those who could see it when it
 * happened (a device's next home never replays its previous home's events), and one user cannot
 * hold an unbounded number of streams.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import type { MqttClient } from 'mqtt';
import { startPlatform, eventually, type Platform } from '../helpers/platform.ts';
import { joinHome, signupUser } from '../helpers/people.ts';
import { startNats, type NatsServer } from '../helpers/nats.ts';
import { startPostgres, type PostgresServer } from '../helpers/postgres.ts';
import { MemoryBus } from '../../src/core/bus/memory-bus.ts';
import type { Bus } from '../../src/core/bus/bus.ts';
import { subjects } from '../../src/core/bus/subjects.ts';
import { createLogger } from '../../src/core/logger.ts';
import type { AccessService } from '../../src/access/access-service.ts';
import type { DeviceService } from '../../src/devices/device-service.ts';
import type { Principal } from '../../src/access/principal.ts';
import { StreamService, type StreamCloseReason, type StreamEvent } from '../../src/stream/stream-service.ts';
import { Hearth } from '../../src/app.ts';
import { loadConfig } from '../../src/core/config/config-schema.ts';
import { ADMIN, capturingLogger, requestJson } from '../helpers/platform.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What the promise allows between the end of a session and the end of its streams. */
const WITHIN_MS = 1000;

interface WsStream {
  events: StreamEvent[];
  /** Resolves with the close code and reason (and how long after `since()` it came). */
  closed: Promise<{ code: number; reason: string; at: number }>;
  next(pred: (e: StreamEvent) => boolean, timeoutMs?: number, what?: string): Promise<StreamEvent>;
  close(): void;
}

const opened: Array<{ close(): void }> = [];

/** Opens a WebSocket stream on `base` (headers: a bearer token or an API key); resolves when open. */
async function openWs(base: string, query: string, headers: Record<string, string>): Promise<WsStream> {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/stream${query}`, { headers });
  const events: StreamEvent[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (buf) => {
    events.push(JSON.parse(buf.toString()) as StreamEvent);
    for (const w of [...waiters]) w();
  });
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  const close = () => ws.terminate();
  opened.push({ close });
  return {
    events,
    closed,
    close,
    next(pred, timeoutMs = 3000, what = 'event') {
      return new Promise((resolve, reject) => {
        let cursor = 0;
        const look = () => {
          for (; cursor < events.length; cursor++)
            if (pred(events[cursor])) {
              waiters.delete(look);
              clearTimeout(t);
              return resolve(events[cursor]);
            }
        };
        const t = setTimeout(() => {
          waiters.delete(look);
          reject(new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(events.map((e) => `${e.type}:${e.deviceId}`))}`));
        }, timeoutMs);
        waiters.add(look);
        look();
      });
    },
  };
}

/** The status and problem an upgrade is refused with. */
function wsRefusal(base: string, query: string, headers: Record<string, string>): Promise<{ status: number; type: string | undefined; body: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/stream${query}`, { headers });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.once('error', () => undefined);
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body: text ? JSON.parse(text) : undefined }));
    });
  });
}

/** Opens an SSE stream; `ended` resolves when the server ends it. */
async function openSse(
  base: string,
  query: string,
  headers: Record<string, string>,
): Promise<{ events: StreamEvent[]; ended: Promise<number>; close(): void }> {
  const ac = new AbortController();
  const res = await fetch(`${base}/api/v1/stream${query}`, { headers, signal: ac.signal });
  assert.equal(res.status, 200, await (res.status === 200 ? Promise.resolve('') : res.text()));
  const events: StreamEvent[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const ended = (async () => {
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return Date.now();
        buf += decoder.decode(value, { stream: true });
        let at: number;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const data = buf
            .slice(0, at)
            .split('\n')
            .find((l) => l.startsWith('data: '));
          buf = buf.slice(at + 2);
          if (data) events.push(JSON.parse(data.slice(6)) as StreamEvent);
        }
      }
    } catch {
      return -1;
    }
  })();
  const close = () => ac.abort();
  opened.push({ close });
  return { events, ended, close };
}

/** Resolves with what `p` resolves to, or rejects after `ms` (the promise the test holds). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function login(p: Platform, email: string): Promise<string> {
  const l = await p.api('POST', '/api/v1/auth/login', { email, password: `password-of-${email}` }, null);
  assert.equal(l.status, 200, JSON.stringify(l.body));
  return l.body.token as string;
}

after(() => {
  for (const c of opened) c.close();
});

describe('one node', () => {
  let p: Platform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.stop();
  });

  test("signing out ends the session's WebSocket and SSE streams within a second, with an end event and close code 4001", async () => {
    const u = await signupUser(p, 'logout@stream-isolation.test');
    const ws = await openWs(p.httpUrl, '', bearer(u.token));
    const sse = await openSse(p.httpUrl, `?access_token=${u.token}`, {});
    await ws.next((e) => e.type === 'hello');
    const started = Date.now();
    assert.equal((await u.api('POST', '/auth/logout')).status, 204);
    const c = await within(ws.closed, WITHIN_MS, 'the WebSocket stream ends after sign-out');
    assert.equal(c.code, 4001);
    assert.equal(c.reason, 'session-ended');
    assert.ok(c.at - started < WITHIN_MS);
    const end = ws.events.find((e) => e.type === 'end');
    assert.equal(end?.data.reason, 'session-ended', 'an end event says why before the close');
    assert.ok((await within(sse.ended, WITHIN_MS, 'the SSE stream ends after sign-out')) > 0);
    assert.equal(sse.events.at(-1)?.type, 'end');
    assert.equal(sse.events.at(-1)?.data.reason, 'session-ended');
    // and the token does not open a new one
    assert.equal((await wsRefusal(p.httpUrl, '', bearer(u.token))).status, 401);
  });

  test("revoking an API key ends the streams opened with it within a second; the user's other streams stay", async () => {
    const u = await signupUser(p, 'keys@stream-isolation.test');
    const key = await u.api('POST', '/keys', { name: 'dashboard', scopes: ['devices:read', 'homes:read'] });
    assert.equal(key.status, 201, JSON.stringify(key.body));
    const byHeader = await openWs(p.httpUrl, '', { 'x-api-key': key.body.key });
    const byQuery = await openSse(p.httpUrl, `?access_token=${key.body.key}`, {});
    const session = await openWs(p.httpUrl, '', bearer(u.token));
    await byHeader.next((e) => e.type === 'hello');
    assert.equal((await u.api('DELETE', `/keys/${key.body.id}`)).status, 204);
    const c = await within(byHeader.closed, WITHIN_MS, "the key's WebSocket stream ends after revocation");
    assert.deepEqual([c.code, c.reason], [4001, 'key-revoked']);
    await within(sse(byQuery), WITHIN_MS, "the key's SSE stream ends after revocation");
    assert.equal(byQuery.events.at(-1)?.data.reason, 'key-revoked');
    // the session's stream is not the key's: it lives on
    const home = await u.api('POST', '/homes', { name: 'Still here', timezone: 'UTC' });
    await u.api('POST', `/homes/${home.body.id}/notifications`, { kind: 'system', severity: 'info', title: 'ping', body: 'still live' });
    await session.next((e) => e.type === 'notification', 3000, 'the session stream still delivers');
    session.close();
  });

  test('changing the password ends the streams of the other sessions, not of the one that changed it', async () => {
    const u = await signupUser(p, 'password@stream-isolation.test');
    const other = await login(p, u.email);
    const mine = await openWs(p.httpUrl, '', bearer(u.token));
    const theirs = await openWs(p.httpUrl, '', bearer(other));
    const theirsSse = await openSse(p.httpUrl, '', bearer(other));
    await theirs.next((e) => e.type === 'hello');
    const changed = await u.api('POST', '/auth/password', { currentPassword: `password-of-${u.email}`, newPassword: 'a-new-password-1' });
    assert.equal(changed.status, 204, JSON.stringify(changed.body));
    const c = await within(theirs.closed, WITHIN_MS, "the other session's stream ends");
    assert.deepEqual([c.code, c.reason], [4001, 'session-ended']);
    await within(theirsSse.ended, WITHIN_MS, "the other session's SSE stream ends");
    const home = await u.api('POST', '/homes', { name: 'Mine', timezone: 'UTC' });
    await u.api('POST', `/homes/${home.body.id}/notifications`, { kind: 'system', severity: 'info', title: 'ping', body: 'mine' });
    await mine.next((e) => e.type === 'notification', 3000, "the changing session's stream lives on");
    mine.close();
  });

  test("a device's next home does not replay its previous home's events, and the previous home sees none of the next one's", async () => {
    const alice = await signupUser(p, 'alice@stream-isolation.test');
    const bob = await signupUser(p, 'bob@stream-isolation.test');
    const homeA = (await alice.api('POST', '/homes', { name: 'A', timezone: 'UTC' })).body.id as string;
    const homeB = (await bob.api('POST', '/homes', { name: 'B', timezone: 'UTC' })).body.id as string;
    const plug = await p.provision('plug', 'moving plug');
    assert.equal((await alice.api('POST', `/homes/${homeA}/devices`, { pairingCode: plug.pairingCode })).status, 201);
    const aliceLive = await openWs(p.httpUrl, '', bearer(alice.token));
    await aliceLive.next((e) => e.type === 'hello');

    // home A: presence, a property, a command with its result
    const c: MqttClient = await p.connect(plug.id, plug.secret);
    await c.subscribeAsync(`devices/${plug.id}/commands`, { qos: 1 });
    c.on('message', (_t, buf) => {
      const cmd = JSON.parse(buf.toString());
      c.publish(`devices/${plug.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 });
    });
    await c.publishAsync(`devices/${plug.id}/properties`, JSON.stringify({ power: 11 }), { qos: 1 });
    assert.equal((await alice.api('POST', `/devices/${plug.id}/commands`, { action: 'toggle' })).status, 200);
    for (const type of ['presence', 'property', 'command'])
      await aliceLive.next((e) => e.type === type && e.deviceId === plug.id, 3000, `home A's ${type} event`);
    const ofA = aliceLive.events.filter((e) => e.deviceId === plug.id);
    assert.ok(ofA.every((e) => e.homeId === homeA));

    // A lets it go, B claims it
    assert.equal((await alice.api('DELETE', `/homes/${homeA}/devices/${plug.id}`)).status, 200);
    assert.equal((await bob.api('POST', `/homes/${homeB}/devices`, { pairingCode: plug.pairingCode })).status, 201);

    // B asks for everything buffered, over both transports
    const bobWs = await openWs(p.httpUrl, '?lastEventId=0', bearer(bob.token));
    const bobSse = await openSse(p.httpUrl, '', { ...bearer(bob.token), 'last-event-id': '0' });
    await bobWs.next((e) => e.type === 'hello');
    assert.equal(bobWs.events[0].type, 'reset');
    assert.deepEqual(
      bobWs.events.filter((e) => e.deviceId === plug.id || e.homeId === homeA),
      [],
      "none of home A's events are replayed to B",
    );

    // B's own events from now on
    await c.publishAsync(`devices/${plug.id}/properties`, JSON.stringify({ power: 22 }), { qos: 1 });
    assert.equal((await bob.api('POST', `/devices/${plug.id}/commands`, { action: 'toggle' })).status, 200);
    const bobs = await bobWs.next((e) => e.type === 'property' && e.deviceId === plug.id, 3000, 'B sees its device');
    assert.equal(bobs.homeId, homeB);
    await bobWs.next((e) => e.type === 'command' && e.deviceId === plug.id && e.data.status === 'answered', 3000, 'B sees its command');
    assert.ok(
      bobSse.events.filter((e) => e.deviceId === plug.id).every((e) => e.homeId === homeB && BigInt(e.id) > BigInt(ofA.at(-1)!.id)),
      'SSE replay: nothing of A either',
    );

    // A hears nothing of B's, live or replayed; A's own past stays A's
    const aliceReplay = await openWs(p.httpUrl, '?lastEventId=0', bearer(alice.token));
    await aliceReplay.next((e) => e.type === 'hello');
    assert.deepEqual(
      aliceLive.events.filter((e) => e.homeId === homeB || (e.deviceId === plug.id && e.homeId !== homeA)),
      [],
    );
    assert.deepEqual(
      aliceReplay.events.filter((e) => e.homeId === homeB || (e.deviceId === plug.id && e.homeId !== homeA)),
      [],
    );
    assert.ok(
      aliceReplay.events.some((e) => e.deviceId === plug.id && e.homeId === homeA),
      'A may replay what it saw when it happened',
    );
    for (const s of [aliceLive, bobWs, aliceReplay]) s.close();
    bobSse.close();
    await c.endAsync(true);
  });

  test('someone who joins a home later does not replay what happened there before; what happens after, they see', async () => {
    const owner = await signupUser(p, 'owner@stream-isolation.test');
    const late = await signupUser(p, 'late@stream-isolation.test');
    const home = (await owner.api('POST', '/homes', { name: 'Earlier', timezone: 'UTC' })).body.id as string;
    const plug = await p.provision('plug', 'earlier plug');
    assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: plug.pairingCode })).status, 201);
    const watch = await openWs(p.httpUrl, '', bearer(owner.token));
    await watch.next((e) => e.type === 'hello');
    const c = await p.connect(plug.id, plug.secret);
    await c.publishAsync(`devices/${plug.id}/properties`, JSON.stringify({ power: 1 }), { qos: 1 });
    await owner.api('POST', `/homes/${home}/notifications`, { kind: 'system', severity: 'info', title: 'before', body: 'you joined' });
    await watch.next((e) => e.type === 'property' && e.deviceId === plug.id, 3000, 'the earlier event');

    await joinHome(p, owner, home, late, 'member');

    const replay = await openWs(p.httpUrl, '?lastEventId=0', bearer(late.token));
    await replay.next((e) => e.type === 'hello');
    assert.deepEqual(
      replay.events.filter((e) => e.deviceId === plug.id || e.homeId === home),
      [],
      'nothing from before joining',
    );
    await c.publishAsync(`devices/${plug.id}/properties`, JSON.stringify({ power: 2 }), { qos: 1 });
    const now = await replay.next((e) => e.type === 'property' && e.deviceId === plug.id, 3000, 'the member sees what happens now');
    assert.equal((now.data.values as { power: number }).power, 2);
    watch.close();
    replay.close();
    await c.endAsync(true);
  });

  test('a guest given another device does not replay what that device did before the grant', async () => {
    const owner = await signupUser(p, 'owner3@stream-isolation.test');
    const guest = await signupUser(p, 'guest3@stream-isolation.test');
    const home = (await owner.api('POST', '/homes', { name: 'Granting', timezone: 'UTC' })).body.id as string;
    const first = await p.provision('plug', 'granted first');
    const later = await p.provision('plug', 'granted later');
    for (const d of [first, later]) assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: d.pairingCode })).status, 201);
    await joinHome(p, owner, home, guest, 'guest', { deviceIds: [first.id] });
    const watch = await openWs(p.httpUrl, '', bearer(owner.token));
    await watch.next((e) => e.type === 'hello');
    const c = await p.connect(later.id, later.secret);
    await c.publishAsync(`devices/${later.id}/properties`, JSON.stringify({ power: 1 }), { qos: 1 });
    await watch.next((e) => e.type === 'property' && e.deviceId === later.id, 3000, 'the report before the grant');

    assert.equal((await owner.api('PATCH', `/homes/${home}/members/${guest.id}`, { deviceIds: [first.id, later.id] })).status, 200);
    const replay = await openWs(p.httpUrl, '?lastEventId=0', bearer(guest.token));
    await replay.next((e) => e.type === 'hello');
    assert.deepEqual(
      replay.events.filter((e) => e.deviceId === later.id),
      [],
      'nothing of the device from before the grant',
    );
    await c.publishAsync(`devices/${later.id}/properties`, JSON.stringify({ power: 2 }), { qos: 1 });
    const now = await replay.next((e) => e.type === 'property' && e.deviceId === later.id, 3000, 'what the device does after the grant');
    assert.equal((now.data.values as { power: number }).power, 2);
    watch.close();
    replay.close();
    await c.endAsync(true);
  });

  test('a member removed from a home stops receiving its events at once, not when cached rights expire', async () => {
    const owner = await signupUser(p, 'owner2@stream-isolation.test');
    const member = await signupUser(p, 'member2@stream-isolation.test');
    const home = (await owner.api('POST', '/homes', { name: 'Leaving', timezone: 'UTC' })).body.id as string;
    const plug = await p.provision('plug', 'leaving plug');
    assert.equal((await owner.api('POST', `/homes/${home}/devices`, { pairingCode: plug.pairingCode })).status, 201);
    await joinHome(p, owner, home, member, 'member');
    const watch = await openWs(p.httpUrl, '', bearer(owner.token));
    const theirs = await openWs(p.httpUrl, '', bearer(member.token));
    await Promise.all([watch.next((e) => e.type === 'hello'), theirs.next((e) => e.type === 'hello')]);
    const c = await p.connect(plug.id, plug.secret);
    await c.publishAsync(`devices/${plug.id}/properties`, JSON.stringify({ power: 1 }), { qos: 1 });
    await theirs.next((e) => e.type === 'property' && e.deviceId === plug.id, 3000, 'the member sees the home while a member');

    assert.equal((await owner.api('DELETE', `/homes/${home}/members/${member.id}`)).status, 200);
    await c.publishAsync(`devices/${plug.id}/properties`, JSON.stringify({ power: 2 }), { qos: 1 });
    await watch.next(
      (e) => e.type === 'property' && e.deviceId === plug.id && (e.data.values as { power: number }).power === 2,
      3000,
      'the owner sees the second report',
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(
      theirs.events.filter((e) => e.type === 'property' && (e.data.values as { power: number }).power === 2),
      [],
      'nothing after the removal',
    );
    watch.close();
    theirs.close();
    await c.endAsync(true);
  });

  test("one user holds at most 10 streams (API keys' included): the 11th is refused with 429 problem+json", async () => {
    const u = await signupUser(p, 'many@stream-isolation.test');
    const key = (await u.api('POST', '/keys', { name: 'k', scopes: ['devices:read'] })).body.key as string;
    const streams: WsStream[] = [];
    for (let i = 0; i < 9; i++) streams.push(await openWs(p.httpUrl, '', bearer(u.token)));
    streams.push(await openWs(p.httpUrl, '', { 'x-api-key': key }));
    const refused = await wsRefusal(p.httpUrl, '', bearer(u.token));
    assert.equal(refused.status, 429);
    assert.match(refused.type ?? '', /application\/problem\+json/);
    assert.equal(refused.body.code, 'E_TOO_MANY_STREAMS');
    const sse = await fetch(`${p.httpUrl}/api/v1/stream`, { headers: { 'x-api-key': key } });
    assert.equal(sse.status, 429);
    assert.equal(((await sse.json()) as { code: string }).code, 'E_TOO_MANY_STREAMS');
    // another user is not affected; closing one makes room
    const other = await signupUser(p, 'other@stream-isolation.test');
    (await openWs(p.httpUrl, '', bearer(other.token))).close();
    streams[0].close();
    await streams[0].closed;
    let again: WsStream | undefined;
    for (let i = 0; i < 50 && !again; i++) {
      again = await openWs(p.httpUrl, '', bearer(u.token)).catch(() => undefined);
      if (!again) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(again, 'a stream can be opened once one is closed');
    for (const s of [...streams, again]) s.close();
  });
});

function sse(s: { ended: Promise<number> }): Promise<number> {
  return s.ended;
}

/**
 * A cluster node in this process (the cheapest honest second node: its own HTTP server, its own
 * stream service and caches, talking to the other only through NATS and PostgreSQL).
 */
async function startNode(env: Record<string, string>): Promise<Platform> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-node-'));
  const config = loadConfig(
    { HEARTH_RATE_LIMIT_PER_MINUTE: '1000000', HEARTH_RATE_LIMIT_BURST: '100000', ...env },
    {
      httpPort: 0,
      mqttPort: 0,
      httpHost: '127.0.0.1',
      mqttHost: '127.0.0.1',
      dataDir,
      demo: false,
      adminEmail: ADMIN.email,
      adminPassword: ADMIN.password,
    },
  );
  const { log, logs } = capturingLogger();
  const hearth = await Hearth.create(config, { log });
  await hearth.start();
  const httpUrl = `http://127.0.0.1:${hearth.httpPort}`;
  const api: Platform['api'] = (method, path, body, token) => requestJson(httpUrl + path, method, body, token);
  return {
    hearth,
    dataDir,
    httpUrl,
    mqttUrl: '',
    token: '',
    logs,
    api,
    stop: async () => {
      await hearth.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  } as unknown as Platform;
}

describe('two nodes sharing NATS and PostgreSQL', () => {
  let nats: NatsServer;
  let pg: PostgresServer;
  let a: Platform;
  let b: Platform;
  before(async () => {
    [nats, pg] = await Promise.all([startNats(), startPostgres()]);
    const env = { HEARTH_NATS_URL: nats.url, HEARTH_DATABASE_URL: await pg.createDatabase(), HEARTH_SHARDS: '4' };
    a = await startNode(env);
    b = await startNode(env);
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await pg?.stop();
    await nats?.stop();
  });

  test('signing out through node A ends the stream held on node B within a second; so does revoking a key', async () => {
    const u = await signupUser(a, 'cluster@stream-isolation.test');
    const onB = await openWs(b.httpUrl, '', bearer(u.token));
    const sseOnB = await openSse(b.httpUrl, `?access_token=${u.token}`, {});
    await onB.next((e) => e.type === 'hello');
    assert.equal((await u.api('POST', '/auth/logout')).status, 204, 'signed out through node A');
    const c = await within(onB.closed, WITHIN_MS, 'node B ends the stream');
    assert.deepEqual([c.code, c.reason], [4001, 'session-ended']);
    await within(sseOnB.ended, WITHIN_MS, 'node B ends the SSE stream');

    const token = await login(a, u.email);
    const key = await a.api('POST', '/api/v1/keys', { name: 'k', scopes: ['devices:read'] }, token);
    assert.equal(key.status, 201);
    const keyOnB = await openWs(b.httpUrl, '', { 'x-api-key': key.body.key });
    await keyOnB.next((e) => e.type === 'hello');
    assert.equal((await a.api('DELETE', `/api/v1/keys/${key.body.id}`, undefined, token)).status, 204);
    const k = await within(keyOnB.closed, WITHIN_MS, "node B ends the key's stream");
    assert.deepEqual([k.code, k.reason], [4001, 'key-revoked']);
  });
});

// ---- the service on its own: what cannot be timed through the API -------------------------------

describe('service', () => {
  const log = createLogger('silent');
  const devices = { get: async (id: string) => ({ id, parentId: null }) } as unknown as DeviceService;

  test('a stream opened with an access token ends when the token expires, with an end event', async () => {
    const access = { placement: async () => undefined, deviceEventRight: async () => ({ right: 'view', since: 0 }) } as unknown as AccessService;
    const stream = new StreamService({ bus: new MemoryBus(log), access, devices, log });
    stream.start();
    const got: StreamEvent[] = [];
    const closed: StreamCloseReason[] = [];
    const p: Principal = { userId: 'u_1', email: 'u@test', role: 'user', sessionId: 's_1', expiresAt: Date.now() + 150 };
    stream.connect({ principal: p, sink: { write: (ev) => (got.push(ev), true), close: (r) => closed.push(r) } });
    assert.equal(closed.length, 0, 'not before it expires');
    await eventually(() => closed.length > 0, 3000, 'the close at expiry');
    assert.deepEqual(closed, ['token-expired']);
    assert.deepEqual(
      got.map((e) => e.type),
      ['hello', 'end'],
    );
    assert.equal(got[1].id, got[0].id, 'the end carries the last id written: resuming from it loses nothing');
    assert.equal(got[1].data.reason, 'token-expired');
    assert.equal(stream.connections, 0);
    // an expired token does not open one
    stream.connect({ principal: { ...p, expiresAt: Date.now() - 1 }, sink: { write: () => true, close: (r) => closed.push(r) } });
    assert.deepEqual(closed, ['token-expired', 'token-expired']);
    stream.stop();
  });

  test("an event the stream learns of before the device joined its new home is not the new home's (claim racing a placement lookup)", async () => {
    const bus: Bus = new MemoryBus(log);
    let release!: (v: { homeId: string; roomId: null; name: null; boundAt: number }) => void;
    const asked: Array<string | null> = [];
    const access = {
      // the lookup is slow: the device is claimed by home B while it runs
      placement: () => new Promise((resolve) => (release = resolve)),
      // what a check by the device's current home would say: B may see it
      deviceRight: async () => 'control',
      deviceEventRight: async (_p: Principal, _d: unknown, homeId: string | null) => {
        asked.push(homeId);
        return homeId === 'h_B' ? { right: 'control', since: 0 } : { right: 'none', since: Infinity };
      },
    } as unknown as AccessService;
    const stream = new StreamService({ bus, access, devices, log });
    stream.start();
    const got: StreamEvent[] = [];
    stream.connect({ principal: { userId: 'u_b', email: 'b@test', role: 'user' }, sink: { write: (ev) => (got.push(ev), true), close: () => undefined } });
    bus.publish(subjects.reported('d_1'), { deviceId: 'd_1', values: { power: 1 }, changed: ['power'], version: 1, at: Date.now() });
    await bus.flush();
    await eventually(() => release !== undefined, 3000, 'the placement lookup');
    release({ homeId: 'h_B', roomId: null, name: null, boundAt: Date.now() + 1 });
    // the event is decided once the stream has asked for the right; a write would follow at once
    await eventually(() => asked.length > 0, 3000, 'the access check');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      got.filter((e) => e.type === 'property'),
      [],
      'home B does not get an event from before it had the device',
    );
    assert.ok(!asked.includes('h_B'), 'the event was recorded as of no home');
    stream.stop();
  });

  test("a report received before a claim but handled after it (a backlog, a redelivery) is not the new home's", async () => {
    const bus: Bus = new MemoryBus(log);
    const claimedAt = Date.now();
    const asked: Array<string | null> = [];
    const access = {
      placement: async () => ({ homeId: 'h_B', roomId: null, name: null, boundAt: claimedAt }),
      deviceRight: async () => 'control',
      deviceEventRight: async (_p: Principal, _d: unknown, homeId: string | null) => {
        asked.push(homeId);
        return homeId === 'h_B' ? { right: 'control', since: 0 } : { right: 'none', since: Infinity };
      },
    } as unknown as AccessService;
    const stream = new StreamService({ bus, access, devices, log });
    stream.start();
    const got: StreamEvent[] = [];
    stream.connect({ principal: { userId: 'u_b', email: 'b@test', role: 'user' }, sink: { write: (ev) => (got.push(ev), true), close: () => undefined } });
    bus.publish(subjects.reported('d_2'), {
      deviceId: 'd_2',
      values: { power: 1 },
      changed: ['power'],
      version: 1,
      at: claimedAt - 5000,
      receivedAt: claimedAt - 5000,
    });
    bus.publish(subjects.reported('d_2'), {
      deviceId: 'd_2',
      values: { power: 2 },
      changed: ['power'],
      version: 2,
      at: Date.now() + 1,
      receivedAt: Date.now() + 1,
    });
    await eventually(() => got.some((e) => e.type === 'property'), 3000, 'the report received after the claim');
    assert.deepEqual(
      got.filter((e) => e.type === 'property').map((e) => (e.data.values as { power: number }).power),
      [2],
      'only what was received after the claim',
    );
    stream.stop();
  });
});
